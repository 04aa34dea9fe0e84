//! Lending QEMU what its command line names (libvirt's DAC security
//! driver, the QEMU side): the argv is read option by option (`-chardev`,
//! `-serial file:`, `-kernel`, `-initrd`, `-object secret`, `-blockdev`,
//! `-drive`, `-device vfio-pci`) and rewritten to descriptors; what is
//! opened, chowned, recorded and given back is [`teamvirt_host::dac`]'s
//! (see there for the rules).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use serde_json::Value;
use teamvirt_host::dac::{
    check_exec, dac_lock, kvm_access, raise_memlock, release, retry_pending, vfio_group, DacError,
    HostRoots, Lender, MASTER_KEY,
};
use teamvirt_host::privdrop::{ChildSetup, Identity};
use teamvirt_host::state::StateDir;

/// What [`lend`] prepared for one launch.
#[derive(Debug)]
pub struct Lent {
    /// The argv to exec (descriptors instead of paths).
    pub args: Vec<String>,
    /// Identity switch and inherited descriptors, for the child.
    pub setup: ChildSetup,
    /// Keep open until QEMU is spawned, then drop.
    pub fds: Vec<OwnedFd>,
}

/// Prepare the launch of domain `name` with `args` (after the emulator)
/// as `id` (the VM's own uid, see `dynuid`, or the configured QEMU
/// user): its descriptors, its labels.
pub fn lend(
    sd: &StateDir,
    name: &str,
    emulator: &Path,
    args: &[String],
    id: &Identity,
) -> Result<Lent, DacError> {
    check_exec(emulator, id)?;
    lend_as(sd, name, args, id, &HostRoots::default())
}

/// [`lend`] for a given identity and host tree.
pub fn lend_as(
    sd: &StateDir,
    name: &str,
    args: &[String],
    id: &Identity,
    roots: &HostRoots,
) -> Result<Lent, DacError> {
    let _l = dac_lock(sd)?;
    retry_pending(sd);
    let dir = sd.run_paths(name)?.dir;
    let mut b = Lender::new(id, sd, name);
    let res = translate(&mut b, args, &dir, roots);
    b.record(&dir)?;
    let out = res.and_then(|args| b.chown_pending().map(|()| args));
    let args = match out {
        Ok(a) => a,
        Err(e) => {
            drop(_l);
            let _ = release(sd, name);
            return Err(e);
        }
    };
    let (fds, fdsets) = b.into_parts();
    let mut setup = ChildSetup::for_identity(id);
    setup.keep_fds = fds.iter().map(AsRawFd::as_raw_fd).collect();
    if uses_kvm(&args) {
        if let Err(e) = kvm_access(&mut setup, id, &roots.dev.join("kvm")) {
            // release takes the lock itself (a second flock of it here
            // would wait for ever).
            drop(_l);
            let _ = release(sd, name);
            return Err(e);
        }
    }
    if args.iter().any(|a| is_vfio_device(a)) {
        setup.memlock = Some(memlock_bytes(&args));
    }
    Ok(Lent {
        args: with_fdsets(args, &fdsets),
        setup,
        fds,
    })
}

/// Hotplug: lend what the new options `new` of running domain `name`
/// need (a VF's `/dev/vfio/N`), recorded like a start's labels, and raise
/// its QEMU's RLIMIT_MEMLOCK for VFIO as a start with the VF would have
/// (guest memory from `argv` + 1 GiB), as libvirt does on hotplug.
pub fn lend_hotplug(
    sd: &StateDir,
    name: &str,
    pid: i32,
    argv: &[String],
    new: &[String],
) -> Result<(), DacError> {
    if !new.iter().any(|a| is_vfio_device(a)) {
        return Ok(());
    }
    // Lent to the running QEMU's own identity (its dynamic uid, see
    // `dynuid`), as the kernel reports it: not the configuration's.
    let id = teamvirt_host::privdrop::process_identity(pid).map_err(|source| DacError::Access {
        user: format!("of process {pid}"),
        what: "identity (/proc/PID/status) of QEMU",
        path: PathBuf::from(format!("/proc/{pid}/status")),
        source,
    })?;
    lend_hotplug_as(sd, name, pid, argv, new, &id, &HostRoots::default())
}

/// [`lend_hotplug`] for a given identity and host tree.
pub fn lend_hotplug_as(
    sd: &StateDir,
    name: &str,
    pid: i32,
    argv: &[String],
    new: &[String],
    id: &Identity,
    roots: &HostRoots,
) -> Result<(), DacError> {
    let _l = dac_lock(sd)?;
    let dir = sd.run_paths(name)?.dir;
    let mut b = Lender::new(id, sd, name);
    translate(&mut b, new, &dir, roots)?;
    b.record(&dir)?;
    b.chown_pending()?;
    let mut all = argv.to_vec();
    all.extend(new.iter().cloned());
    match raise_memlock(pid, memlock_bytes(&all)) {
        // Best effort, as at start: without CAP_SYS_RESOURCE (a container)
        // the limit stays and QEMU names the VFIO mapping that failed.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            tracing::warn!(pid, "cannot raise QEMU's RLIMIT_MEMLOCK for VFIO: {e}");
            Ok(())
        }
        r => r.map_err(|source| DacError::Access {
            user: id.name.clone(),
            what: "locked memory limit (RLIMIT_MEMLOCK) of QEMU",
            path: PathBuf::from(format!("/proc/{pid}")),
            source,
        }),
    }
}

fn translate(
    b: &mut Lender,
    args: &[String],
    dir: &Path,
    roots: &HostRoots,
) -> Result<Vec<String>, DacError> {
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(v) = args.get(i + 1) else {
            out.push(a.clone());
            break;
        };
        let nv = match a.as_str() {
            "-chardev" => chardev(b, v)?,
            "-serial" => match v.strip_prefix("file:") {
                Some(p) => Some(format!("file:{}", b.log(Path::new(p))?)),
                None => None,
            },
            "-kernel" => Some(b.boot_file("kernel", Path::new(v))?),
            "-initrd" => Some(b.boot_file("initrd", Path::new(v))?),
            "-object" => object(b, v, dir)?,
            "-blockdev" => blockdev(b, v)?,
            "-drive" => drive(b, v)?,
            "-device" => {
                if let Some(host) = vfio_host(v) {
                    if let Some(g) = vfio_group(roots, &host) {
                        b.device(&g)?;
                    }
                }
                None
            }
            _ => {
                out.push(a.clone());
                i += 1;
                continue;
            }
        };
        out.push(a.clone());
        out.push(nv.unwrap_or_else(|| v.clone()));
        i += 2;
    }
    Ok(out)
}

fn chardev(b: &mut Lender, v: &str) -> Result<Option<String>, DacError> {
    if v.starts_with('{') {
        return Ok(None);
    }
    let mut opts = teamvirt_qemu::options::split(v);
    let backend = opts.first().cloned().unwrap_or_default();
    let mut changed = false;
    for o in opts.iter_mut() {
        if backend == "socket" && o.starts_with("path=") && v.contains("server=on") {
            let p = PathBuf::from(&o["path=".len()..]);
            *o = format!("fd={}", b.listen(&p)?);
            changed = true;
        } else if backend == "file" && o.starts_with("path=") {
            *o = format!("path={}", b.log(Path::new(&o["path=".len()..]))?);
            changed = true;
        } else if o.starts_with("logfile=") {
            *o = format!("logfile={}", b.log(Path::new(&o["logfile=".len()..]))?);
            changed = true;
        }
    }
    Ok(changed.then(|| teamvirt_qemu::options::join(&opts)))
}

/// `-object secret,...,file=DIR/master-key.aes` (either syntax): the
/// key stays root's; QEMU reads a sealed copy through its descriptor
/// (nothing of the state directory is chowned).
fn object(b: &mut Lender, v: &str, dir: &Path) -> Result<Option<String>, DacError> {
    let key = dir.join(MASTER_KEY);
    if v.starts_with('{') {
        let Ok(mut j) = serde_json::from_str::<Value>(v) else {
            return Ok(None);
        };
        let file = j.get("file").and_then(Value::as_str).map(PathBuf::from);
        match file {
            Some(p) if j["qom-type"] == "secret" && p == key => {
                j["file"] = Value::String(b.master_key(&p)?);
                Ok(Some(j.to_string()))
            }
            _ => Ok(None),
        }
    } else {
        let mut opts = teamvirt_qemu::options::split(v);
        if opts.first().map(String::as_str) != Some("secret") {
            return Ok(None);
        }
        let mut changed = false;
        for o in opts.iter_mut() {
            if let Some(p) = o.strip_prefix("file=") {
                if Path::new(p) == key {
                    *o = format!("file={}", b.master_key(&key)?);
                    changed = true;
                }
            }
        }
        Ok(changed.then(|| teamvirt_qemu::options::join(&opts)))
    }
}

/// A `file`/`host_device` blockdev: its image through a descriptor.
fn blockdev(b: &mut Lender, v: &str) -> Result<Option<String>, DacError> {
    let Ok(mut j) = serde_json::from_str::<Value>(v) else {
        return Ok(None);
    };
    let driver = j.get("driver").and_then(Value::as_str).unwrap_or("");
    if driver != "file" && driver != "host_device" {
        return Ok(None);
    }
    let Some(p) = j.get("filename").and_then(Value::as_str).map(PathBuf::from) else {
        return Ok(None);
    };
    let write = j.get("read-only").and_then(Value::as_bool) != Some(true);
    let auto_ro = j.get("auto-read-only").and_then(Value::as_bool) == Some(true);
    j["filename"] = Value::String(b.disk(&p, write, auto_ro)?);
    Ok(Some(j.to_string()))
}

fn drive(b: &mut Lender, v: &str) -> Result<Option<String>, DacError> {
    let mut opts = teamvirt_qemu::options::split(v);
    let write = !opts.iter().any(|o| o == "readonly=on");
    let mut changed = false;
    for o in opts.iter_mut() {
        if let Some(p) = o.strip_prefix("file=") {
            let p = PathBuf::from(p);
            *o = format!("file={}", b.disk(&p, write, false)?);
            changed = true;
        }
    }
    Ok(changed.then(|| teamvirt_qemu::options::join(&opts)))
}

fn uses_kvm(args: &[String]) -> bool {
    args.windows(2).any(|w| {
        (w[0] == "-accel"
            && teamvirt_qemu::options::split(&w[1])
                .first()
                .is_some_and(|a| a == "kvm"))
            || (w[0] == "-machine"
                && teamvirt_qemu::options::split(&w[1])
                    .iter()
                    .any(|o| o == "accel=kvm"))
            || (w[0] == "-enable-kvm")
    })
}

/// `-add-fd fd=N,set=S` first (QEMU needs the sets before the chardevs).
fn with_fdsets(args: Vec<String>, sets: &[(RawFd, u32)]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 2 * sets.len());
    for (fd, set) in sets {
        out.push("-add-fd".into());
        out.push(format!("fd={fd},set={set}"));
    }
    out.extend(args);
    out
}

fn is_vfio_device(a: &str) -> bool {
    vfio_host(a).is_some()
}

/// The host address of a `vfio-pci` `-device` value (either syntax).
fn vfio_host(v: &str) -> Option<String> {
    if v.starts_with('{') {
        let j: Value = serde_json::from_str(v).ok()?;
        if j.get("driver")?.as_str()? != "vfio-pci" {
            return None;
        }
        return j.get("host")?.as_str().map(str::to_owned);
    }
    let opts = teamvirt_qemu::options::split(v);
    if opts.first().map(String::as_str) != Some("vfio-pci") {
        return None;
    }
    opts.iter()
        .find_map(|o| o.strip_prefix("host=").map(str::to_owned))
}

/// Guest memory (`-m`) + 1 GiB, libvirt's VFIO memlock limit; unlimited
/// when `-m` cannot be read.
fn memlock_bytes(args: &[String]) -> u64 {
    let m = args
        .iter()
        .position(|a| a == "-m")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| parse_mem(v));
    match m {
        Some(b) => b.saturating_add(1 << 30),
        None => libc::RLIM_INFINITY,
    }
}

/// `-m 256`, `-m 256M`, `-m size=219136k,slots=...`: bytes (default unit MiB).
fn parse_mem(v: &str) -> Option<u64> {
    let first = teamvirt_qemu::options::split(v).into_iter().next()?;
    let s = first.strip_prefix("size=").unwrap_or(&first);
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        't' | 'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1 << 20),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
#[path = "lend_argv_tests.rs"]
mod tests;
