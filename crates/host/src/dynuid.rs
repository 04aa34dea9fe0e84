//! One uid/gid per running VM (systemd's `DynamicUser`, for QEMU).
//!
//! libvirt runs every VM as the same `qemu` user and relies on SELinux or
//! AppArmor labels to keep one QEMU out of another's `/proc/PID/mem` and
//! `/proc/PID/fd/*` (its master key, kernel, guest RAM). teamvirt gives
//! each running VM a uid and gid of its own instead, so plain DAC and the
//! kernel's ptrace-access rules separate them.
//!
//! The ids come from a reserved range, `TEAMVIRT_QEMU_UID_RANGE=FIRST-LAST`
//! (default `DEFAULT_RANGE`, 60578-61183: the block systemd documents as
//! unused, below its own DynamicUser range 61184-65519, so the two never
//! hand out the same id). uid and gid are the same number. A candidate is
//! taken only when no user and no group of the system databases has it
//! (NSS, so also systemd's dynamic users), no running process has it as
//! any of its uids or gids, and no run directory of the state directory
//! records it (a domain whose QEMU died keeps its id until its cleanup has
//! given back what was lent to it). Allocation holds a host-wide lock
//! (`HOST_LOCK`, several state directories share the host's ids) until
//! QEMU runs with the id (`Allocation` is dropped after the spawn).
//!
//! The allocation is recorded in `run/NAME/qemu-uid.json` (and the run
//! record's `qemu_id`) and freed with the run directory's content
//! (`run::forget`: stop, destroy, a QEMU found dead, a start that
//! failed). A migration destination allocates its own id.
//!
//! Run directories are per state directory but the ids are the host's:
//! each allocation is also registered in `HOST_REGISTRY/ID` (the state
//! directory and domain), and an allocation in any state directory counts
//! an id as taken while the registering one still holds it: its record
//! names the id, or a give-back to the id is still pending there
//! (`crate::dac`: an object lent to the id, e.g. `/dev/vfio/N`, that could
//! not be given back yet stays the id's until it is; handing the id out
//! again would hand that object with it). Stale entries (the state
//! directory gone, the record freed, nothing pending) are removed.
//!
//! A QEMU that was killed leaves what it created as its id behind: files
//! in `/tmp`, `/var/tmp`, `/dev/shm`, POSIX message queues (`/dev/mqueue`),
//! SysV IPC objects. Like systemd's `RemoveIPC=` for its dynamic users,
//! an id is swept of them right before it is handed out again (no process
//! runs as it then, so nothing recreates them); an id that cannot be
//! swept clean is skipped. `SWEEP_ENV` replaces the swept directories
//! (and then no SysV IPC is swept): tests point it at their own.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lock::{FileLock, LockMode};
use crate::privdrop::Identity;
use crate::state::{read_optional, remove_optional, write_atomic, StateDir, StateError};

/// Environment variable choosing the range (`FIRST-LAST`, inclusive).
pub const RANGE_ENV: &str = "TEAMVIRT_QEMU_UID_RANGE";
/// The default range (inclusive).
pub const DEFAULT_RANGE: (u32, u32) = (60578, 61183);
/// Serializes allocations of every state directory of the host.
pub const HOST_LOCK: &str = "/run/teamvirt-dynuid.lock";
/// One file per id handed out, naming who holds it (see the module doc).
pub const HOST_REGISTRY: &str = "/run/teamvirt-dynuid.d";
/// Environment variable replacing the swept directories (`DIR:DIR...`;
/// empty: none).
pub const SWEEP_ENV: &str = "TEAMVIRT_DYNUID_SWEEP";
/// Where a dead QEMU's id may have left files.
pub const DEFAULT_SWEEP: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue"];
/// The allocation record in a domain's run directory.
pub const RECORD: &str = "qemu-uid.json";
/// At most this many ids in a range (each allocation scans it).
const MAX_RANGE: u32 = 1 << 20;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum DynUidError {
    #[error("invalid {RANGE_ENV} '{0}': expected FIRST-LAST, 1 <= FIRST <= LAST < 2147483647, at most 1048576 ids")]
    Range(String),
    #[error("no free QEMU uid left in {first}-{last} ({RANGE_ENV}): every id is a user or group of the system, used by a process, or held by a domain")]
    Exhausted { first: u32, last: u32 },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot lock {HOST_LOCK}: {0}")]
    Lock(#[from] crate::lock::LockError),
    #[error("cannot read the running processes' ids in /proc: {0}")]
    Proc(#[source] io::Error),
    #[error("cannot use the host's QEMU uid registry {}: {source}", .path.display())]
    Registry {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the host's ids are allocated, locked, registered and swept.
#[derive(Debug, Clone)]
pub struct Host {
    pub range: (u32, u32),
    pub lock: PathBuf,
    pub registry: PathBuf,
    /// Directories swept of the id's files before it is handed out.
    pub sweep: Vec<PathBuf>,
    /// Also remove the id's SysV IPC objects.
    pub sysv_ipc: bool,
}

impl Host {
    /// The host's settings (`RANGE_ENV`, `SWEEP_ENV`).
    pub fn from_env() -> Result<Host, DynUidError> {
        let (sweep, sysv_ipc) = match std::env::var_os(SWEEP_ENV) {
            Some(v) => (
                std::env::split_paths(&v)
                    .filter(|p| p.is_absolute())
                    .collect(),
                false,
            ),
            None => (DEFAULT_SWEEP.iter().map(PathBuf::from).collect(), true),
        };
        Ok(Host {
            range: range()?,
            lock: PathBuf::from(HOST_LOCK),
            registry: PathBuf::from(HOST_REGISTRY),
            sweep,
            sysv_ipc,
        })
    }
}

/// A registry entry: who holds the id.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    state_dir: PathBuf,
    name: String,
}

/// What a run directory records about its QEMU's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuIds {
    pub uid: u32,
    pub gid: u32,
    /// Allocated from the range (freed at stop), not a configured user.
    #[serde(default)]
    pub dynamic: bool,
}

/// An id allocated for a start; keep it until QEMU has been spawned with
/// it (the host lock is held so long).
#[derive(Debug)]
pub struct Allocation {
    pub id: Identity,
    _host: FileLock,
}

/// The configured range.
pub fn range() -> Result<(u32, u32), DynUidError> {
    match std::env::var(RANGE_ENV) {
        Ok(s) if !s.is_empty() => parse_range(&s),
        _ => Ok(DEFAULT_RANGE),
    }
}

fn parse_range(s: &str) -> Result<(u32, u32), DynUidError> {
    let bad = || DynUidError::Range(s.to_owned());
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    // 2^31 and above trip signedness bugs; 0 is root.
    if a == 0 || a > b || b >= i32::MAX as u32 || b - a >= MAX_RANGE {
        return Err(bad());
    }
    Ok((a, b))
}

/// The identity QEMU gets for a dynamic id: that uid and gid, no other
/// group (the KVM device's group is added when needed, see
/// `dac::kvm_access`).
pub fn identity(uid: u32, gid: u32) -> Identity {
    Identity {
        name: format!("dynamic uid {uid}"),
        uid,
        gid,
        groups: vec![gid],
        switch: true,
    }
}

fn record_path(sd: &StateDir, name: &str) -> Result<PathBuf, StateError> {
    Ok(sd.run_paths(name)?.dir.join(RECORD))
}

/// The ids recorded for domain `name` (its allocation), if any.
pub fn recorded(sd: &StateDir, name: &str) -> Option<QemuIds> {
    let text = read_optional(&record_path(sd, name).ok()?).ok()??;
    serde_json::from_str(&text).ok()
}

/// Free domain `name`'s id: its record goes (the run directory is the
/// trusted one, the caller checked it), and its host registration unless
/// a give-back to it is still pending (see the module doc).
pub fn free(sd: &StateDir, name: &str) -> Result<(), StateError> {
    free_in(Path::new(HOST_REGISTRY), sd, name)
}

/// [`free`] with a given registry.
pub fn free_in(registry: &Path, sd: &StateDir, name: &str) -> Result<(), StateError> {
    let ids = recorded(sd, name);
    remove_optional(&record_path(sd, name)?)?;
    if let Some(ids) = ids.filter(|i| i.dynamic) {
        if !crate::dac::pending_holders(sd).contains(&ids.uid) {
            let entry = registry.join(ids.uid.to_string());
            // Only our own registration (another one is not ours to drop).
            if read_holder(&entry).is_some_and(|h| h.state_dir == sd.root() && h.name == name) {
                remove_optional(&entry)?;
            }
        }
    }
    Ok(())
}

/// Allocate an id for domain `name` (its run directory exists) and record
/// it.
pub fn allocate(sd: &StateDir, name: &str) -> Result<Allocation, DynUidError> {
    allocate_in(&Host::from_env()?, sd, name)
}

/// [`allocate`] with given host settings.
pub fn allocate_in(host: &Host, sd: &StateDir, name: &str) -> Result<Allocation, DynUidError> {
    let (first, last) = host.range;
    let lock = FileLock::acquire(&host.lock, LockMode::Exclusive)?;
    let mut held = std::collections::BTreeSet::new();
    for other in sd.run_entries()? {
        if other == name {
            continue;
        }
        if let Some(ids) = recorded(sd, &other) {
            held.insert(ids.uid);
            held.insert(ids.gid);
        }
    }
    // Objects still lent to an id that could not be given back.
    held.extend(crate::dac::pending_holders(sd));
    held.extend(registered(host, sd, name)?);
    let procs = process_ids().map_err(DynUidError::Proc)?;
    let mut candidates = (first..=last).filter(|&n| {
        !held.contains(&n)
            && !procs.contains(&n)
            // A failed look-up counts as taken.
            && matches!(crate::privdrop::user_exists(n), Ok(false))
            && matches!(crate::privdrop::group_exists(n), Ok(false))
    });
    let n = loop {
        let Some(n) = candidates.next() else {
            return Err(DynUidError::Exhausted { first, last });
        };
        // What a killed QEMU left as this id goes before anyone gets it.
        match sweep::sweep(host, n) {
            Ok(0) => break n,
            Ok(k) => {
                tracing::info!("removed {k} objects left behind by dynamic uid {n}");
                break n;
            }
            Err(e) => tracing::warn!("skipping dynamic uid {n}: {e}"),
        }
    };
    let ids = QemuIds {
        uid: n,
        gid: n,
        dynamic: true,
    };
    let json = serde_json::to_string(&ids).expect("ids serialize");
    write_atomic(&record_path(sd, name)?, json.as_bytes(), 0o600)?;
    let holder = Holder {
        state_dir: sd.root().to_owned(),
        name: name.to_owned(),
    };
    let json = serde_json::to_string(&holder).expect("holder serializes");
    write_atomic(&host.registry.join(n.to_string()), json.as_bytes(), 0o600)?;
    Ok(Allocation {
        id: identity(n, n),
        _host: lock,
    })
}

/// The ids the host registry says another domain (of any state directory)
/// still holds; stale entries are removed. Called under the host lock.
fn registered(
    host: &Host,
    sd: &StateDir,
    name: &str,
) -> Result<std::collections::BTreeSet<u32>, DynUidError> {
    let reg = &host.registry;
    let err = |source| DynUidError::Registry {
        path: reg.clone(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(reg) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    let m = std::fs::symlink_metadata(reg).map_err(err)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !m.is_dir() || m.uid() != me || m.mode() & 0o022 != 0 {
        return Err(err(io::Error::other(
            "not a directory of ours that only we may write",
        )));
    }
    let mut out = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(reg).map_err(err)?.flatten() {
        let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let holds = match read_holder(&e.path()) {
            // Unreadable: taken, to be safe.
            None => true,
            // Our own earlier allocation: ours to replace, unless a
            // give-back to it is pending.
            Some(h) if h.state_dir == sd.root() && h.name == name => false,
            Some(h) => holder_holds(&h, n),
        };
        if holds {
            out.insert(n);
        } else if !crate::dac::pending_holders(sd).contains(&n) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(out)
}

fn read_holder(entry: &Path) -> Option<Holder> {
    let text = read_optional(entry).ok()??;
    serde_json::from_str(&text).ok()
}

/// Does `h` still hold id `n`: its record names it, or a give-back to it
/// is pending in its state directory? A state directory or record gone
/// does not; one that cannot be read (not a trusted directory any more)
/// does, to be safe.
fn holder_holds(h: &Holder, n: u32) -> bool {
    if crate::state::check_name(&h.name).is_err() {
        return false;
    }
    let run = h.state_dir.join("run");
    match read_optional(&run.join(&h.name).join(RECORD)) {
        Ok(Some(text)) => {
            if serde_json::from_str::<QemuIds>(&text).is_ok_and(|i| i.uid == n) {
                return true;
            }
        }
        Ok(None) => {}
        Err(e) if is_not_found(&e) => {}
        Err(_) => return true,
    }
    crate::dac::pending_holders_at(&run).contains(&n)
}

fn is_not_found(e: &StateError) -> bool {
    matches!(e, StateError::Io { source, .. }
        if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory))
}

/// Every uid and gid (real, effective, saved, filesystem) of every
/// running process.
fn process_ids() -> io::Result<std::collections::BTreeSet<u32>> {
    let mut out = std::collections::BTreeSet::new();
    for e in std::fs::read_dir("/proc")?.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        // Gone in between: nothing to count.
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        for l in status.lines() {
            if let Some(v) = l.strip_prefix("Uid:").or_else(|| l.strip_prefix("Gid:")) {
                out.extend(v.split_whitespace().filter_map(|n| n.parse::<u32>().ok()));
            }
        }
    }
    Ok(out)
}

#[path = "dynuid_sweep.rs"]
mod sweep;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("60578-61183").unwrap(), (60578, 61183));
        assert_eq!(parse_range("100-100").unwrap(), (100, 100));
        for bad in ["", "5", "0-10", "10-5", "1-2147483647", "a-b", "1-2000000"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_ids_are_in_use() {
        let ids = process_ids().unwrap();
        // SAFETY: no preconditions.
        let (u, g) = unsafe { (libc::getuid(), libc::getgid()) };
        assert!(ids.contains(&u) && ids.contains(&g), "{ids:?}");
    }

    /// Two domains of a state directory get different ids; a freed id is
    /// handed out again; an id a process runs as is skipped. (A test
    /// host: the default one would sweep the real /tmp.)
    #[test]
    fn allocations_are_distinct_and_freed() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (first, last) = (3_900_001, 3_900_009);
        let host = test_host(t.path(), first, last);
        let sd = StateDir::open(&t.path().join("state")).unwrap();
        sd.create_run_dir("a").unwrap();
        sd.create_run_dir("b").unwrap();
        // A process runs as the first id.
        use std::os::unix::process::CommandExt;
        let mut busy = std::process::Command::new("sleep")
            .arg("60")
            .uid(first)
            .gid(first)
            .spawn()
            .unwrap();
        let a = allocate_in(&host, &sd, "a").unwrap();
        let (ua, ga) = (a.id.uid, a.id.gid);
        drop(a);
        let _ = busy.kill();
        let _ = busy.wait();
        assert_ne!(ua, first, "the id of a running process was handed out");
        assert!((first..=last).contains(&ua));
        let b = allocate_in(&host, &sd, "b").unwrap();
        assert_ne!(b.id.uid, ua);
        assert_eq!((ua, ga), (recorded(&sd, "a").unwrap().uid, ga));
        let ub = b.id.uid;
        drop(b);
        free_in(&host.registry, &sd, "a").unwrap();
        assert!(recorded(&sd, "a").is_none());
        // "a" again: a free id, never b's.
        let a2 = allocate_in(&host, &sd, "a").unwrap();
        assert_ne!(a2.id.uid, ub);
        drop(a2);
        free_in(&host.registry, &sd, "a").unwrap();
        free_in(&host.registry, &sd, "b").unwrap();
        assert_eq!(std::fs::read_dir(&host.registry).unwrap().count(), 0);
    }

    /// Settings of a test: its own lock, registry and swept directory,
    /// and a range of ids far above any real user (and the default
    /// range), one id wide unless said.
    fn test_host(t: &Path, first: u32, last: u32) -> Host {
        let tmp = t.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        use std::os::unix::fs::PermissionsExt;
        // The ids must reach their tmp.
        std::fs::set_permissions(t, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
        Host {
            range: (first, last),
            lock: t.join("dynuid.lock"),
            registry: t.join("registry"),
            sweep: vec![tmp],
            sysv_ipc: false,
        }
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// Issue 17: a QEMU killed (not stopped by teamvirt) leaves files its
    /// dynamic uid owns in /tmp and the like; the next VM given that uid
    /// could read and change them. They are gone before the uid is handed
    /// out again: the id's files, links (not their targets) and
    /// directories with all they hold, wherever they are; nothing of
    /// anyone else.
    #[test]
    fn leftovers_of_a_freed_uid_are_swept_before_it_is_handed_out_again() {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let host = test_host(t.path(), 3_900_101, 3_900_101);
        let tmp = host.sweep[0].clone();
        let sd = StateDir::open(&t.path().join("state")).unwrap();
        sd.create_run_dir("a").unwrap();
        sd.create_run_dir("b").unwrap();
        let a = allocate_in(&host, &sd, "a").unwrap();
        let uid = a.id.uid;
        drop(a);
        // Someone else's directory, and a file of root's the link targets.
        let other = tmp.join("other");
        std::fs::create_dir(&other).unwrap();
        std::os::unix::fs::chown(&other, Some(4242), Some(4242)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(tmp.join("root-file"), b"keep").unwrap();
        // "QEMU" runs as the id, leaves these, and dies.
        use std::os::unix::process::CommandExt;
        let st = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(
                "umask 077; echo x > left; mkdir -p tree/sub; echo y > tree/sub/f; \
                 ln -s root-file link; : > other/in-other; mkfifo fifo",
            )
            .current_dir(&tmp)
            .uid(uid)
            .gid(uid)
            .status()
            .unwrap();
        assert!(st.success());
        assert!(tmp.join("other/in-other").exists());
        free_in(&host.registry, &sd, "a").unwrap();

        let b = allocate_in(&host, &sd, "b").unwrap();
        assert_eq!(b.id.uid, uid, "the only id of the range");
        for gone in ["left", "tree", "link", "fifo", "other/in-other"] {
            assert!(
                std::fs::symlink_metadata(tmp.join(gone)).is_err(),
                "{gone} is still there"
            );
        }
        assert_eq!(std::fs::read(tmp.join("root-file")).unwrap(), b"keep");
        assert!(other.is_dir());
        drop(b);
        free_in(&host.registry, &sd, "b").unwrap();
    }

    /// Issue 17: a uid whose lent object (a VFIO group node) could not be
    /// given back stays taken: not handed to another domain of the same
    /// state directory, nor of another state directory (the ids are the
    /// host's, the records per state directory), until the give-back
    /// completes.
    #[test]
    fn uid_with_a_pending_give_back_is_not_handed_out_again() {
        if !is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let host = test_host(t.path(), 3_900_201, 3_900_201);
        let a = StateDir::open(&t.path().join("a")).unwrap();
        let b = StateDir::open(&t.path().join("b")).unwrap();
        // A fake host: PCI device 0000:3b:02.1 in IOMMU group 9.
        let roots = crate::dac::HostRoots {
            sysfs: t.path().join("sys"),
            dev: t.path().join("dev"),
        };
        let devdir = roots.sysfs.join("bus/pci/devices/0000:3b:02.1");
        std::fs::create_dir_all(&devdir).unwrap();
        std::os::unix::fs::symlink("../../../kernel/iommu_groups/9", devdir.join("iommu_group"))
            .unwrap();
        let vfio = roots.dev.join("vfio");
        std::fs::create_dir_all(&vfio).unwrap();
        let node = vfio.join("9");
        std::fs::write(&node, b"").unwrap();

        a.create_run_dir("vm").unwrap();
        let alloc = allocate_in(&host, &a, "vm").unwrap();
        let uid = alloc.id.uid;
        // What a start lends for `-device vfio-pci,host=0000:3b:02.1`
        // (teamvirt_runtime::lend_argv reads the argv).
        let group = crate::dac::vfio_group(&roots, "0000:3b:02.1").unwrap();
        let mut lender = crate::dac::Lender::new(&alloc.id, &a, "vm");
        lender.device(&group).unwrap();
        lender.record(&a.run_paths("vm").unwrap().dir).unwrap();
        lender.chown_pending().unwrap();
        drop(alloc);
        assert_eq!(std::fs::metadata(&node).unwrap().uid(), uid);
        // QEMU is gone; its give-back cannot complete (the node's
        // directory is not one now).
        let away = roots.dev.join("vfio.away");
        std::fs::rename(&vfio, &away).unwrap();
        std::fs::write(&vfio, b"").unwrap();
        // What the runtime's `run::forget` does with the lent object and
        // the uid.
        let problems = crate::dac::release(&a, "vm").unwrap();
        assert!(
            problems.iter().any(|p| p.contains("retried")),
            "{problems:?}"
        );
        free(&a, "vm").unwrap();
        assert!(recorded(&a, "vm").is_none(), "the domain's record is gone");

        // Still the id's: neither state directory hands it out.
        b.create_run_dir("vm2").unwrap();
        a.create_run_dir("other").unwrap();
        for (sd, name) in [(&b, "vm2"), (&a, "other")] {
            let e = allocate_in(&host, sd, name).unwrap_err();
            assert!(matches!(e, DynUidError::Exhausted { .. }), "{e}");
        }

        // The give-back completes (retried by the next stop): free again.
        std::fs::remove_file(&vfio).unwrap();
        std::fs::rename(&away, &vfio).unwrap();
        assert!(crate::dac::release(&a, "other").unwrap().is_empty());
        assert_eq!(std::fs::metadata(&node).unwrap().uid(), 0);
        let got = allocate_in(&host, &b, "vm2").unwrap();
        assert_eq!(got.id.uid, uid);
        drop(got);
        free_in(&host.registry, &b, "vm2").unwrap();
    }
}
