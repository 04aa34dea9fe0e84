//! virsh's small lookup and host verbs: `domid`, `domuuid`, `domname`,
//! `version`, `uri`, `hostname`, `nodeinfo`. Output as virsh prints it
//! (each command's output ends with an empty line, as virsh's does unless
//! `--quiet`); `--json` where there is more than one value.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use teamvirt_runtime::{DomainState, DomainSummary, RuntimeError};

use crate::cmd::args::StateOpt;
use crate::cmd::qemu_opts::DEFAULT_EMULATOR;
use crate::cmd::report::report;
use crate::out::outln;

#[derive(clap::Args, Debug)]
pub struct DomLookupArgs {
    /// Domain name, id (running domains) or UUID.
    pub domain: String,
    #[command(flatten)]
    pub state: StateOpt,
}

/// The domain `key` names, virsh's way: a name first, then an id (a
/// running domain's), then a UUID (any letter case, with or without
/// dashes).
pub fn lookup<'a>(doms: &'a [DomainSummary], key: &str) -> Option<&'a DomainSummary> {
    let norm = |u: &str| u.replace('-', "").to_ascii_lowercase();
    doms.iter()
        .find(|d| d.name == key)
        .or_else(|| {
            let id: u32 = key.parse().ok()?;
            doms.iter().find(|d| d.id == Some(id))
        })
        .or_else(|| {
            let k = norm(key);
            (k.len() == 32)
                .then(|| {
                    doms.iter()
                        .find(|d| d.uuid.as_deref().map(norm) == Some(k.clone()))
                })
                .flatten()
        })
}

/// Every domain (active and defined) and the one `a.domain` names, or
/// virsh's error.
fn find(a: &DomLookupArgs) -> Result<DomainSummary, ExitCode> {
    let doms = match a
        .state
        .open_existing()
        .and_then(|rt| rt.map_or(Ok(vec![]), |rt| crate::block_on(rt.list_domains(true))))
    {
        Ok(d) => d,
        Err(e) => return Err(report("Failed to list domains", &e)),
    };
    lookup(&doms, &a.domain).cloned().ok_or_else(|| {
        report(
            &format!("failed to get domain '{}'", a.domain),
            &RuntimeError::NoDomain(a.domain.clone()),
        )
    })
}

/// `domid`: the id of a running domain, `-` for a shut-off one.
pub fn domid(a: DomLookupArgs) -> ExitCode {
    match find(&a) {
        Ok(d) => {
            match d.id.filter(|_| d.state != DomainState::ShutOff) {
                Some(id) => outln!("{id}\n"),
                None => outln!("-\n"),
            }
            ExitCode::SUCCESS
        }
        Err(c) => c,
    }
}

/// `domuuid`.
pub fn domuuid(a: DomLookupArgs) -> ExitCode {
    match find(&a) {
        Ok(d) => {
            outln!("{}\n", d.uuid.as_deref().unwrap_or(""));
            ExitCode::SUCCESS
        }
        Err(c) => c,
    }
}

/// `domname` (given an id or a UUID).
pub fn domname(a: DomLookupArgs) -> ExitCode {
    match find(&a) {
        Ok(d) => {
            outln!("{}\n", d.name);
            ExitCode::SUCCESS
        }
        Err(c) => c,
    }
}

#[derive(clap::Args, Debug)]
pub struct JsonArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// The `QEMU emulator version X.Y.Z` of `qemu --version`.
pub fn qemu_version(text: &str) -> Option<String> {
    let rest = text.split("QEMU emulator version ").nth(1)?;
    let v: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!v.is_empty()).then_some(v)
}

/// `version`: virsh's layout, teamvirt standing for libvirt (library and
/// API) and the default emulator's QEMU version as the running hypervisor.
pub fn version(a: JsonArgs) -> ExitCode {
    let ours = env!("CARGO_PKG_VERSION");
    let qemu = std::process::Command::new(DEFAULT_EMULATOR)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| qemu_version(&String::from_utf8_lossy(&o.stdout)));
    if a.json {
        let v = serde_json::json!({
            "teamvirt": ours,
            "emulator": DEFAULT_EMULATOR,
            "qemu": qemu,
        });
        outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
        return ExitCode::SUCCESS;
    }
    outln!("Compiled against library: teamvirt {ours}");
    outln!("Using library: teamvirt {ours}");
    outln!("Using API: QEMU {ours}");
    match &qemu {
        Some(q) => outln!("Running hypervisor: QEMU {q}"),
        None => eprintln!("warning: cannot read the version of {DEFAULT_EMULATOR} (not on PATH?)"),
    }
    outln!();
    ExitCode::SUCCESS
}

/// The URI naming a state directory: `teamvirt:///system` for the root
/// default (`/var/lib/teamvirt`, libvirt's `qemu:///system`), else
/// `teamvirt://` followed by the directory's absolute path (the form the
/// path takes after the host in a migration URI, `ssh://HOST/STATE-DIR`).
pub fn uri_of(root: &Path) -> String {
    let system = teamvirt_qemu::dirs::default_state_root_for(true, None, None);
    if system.as_deref().ok() == Some(root) {
        return "teamvirt:///system".into();
    }
    let abs = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    format!("teamvirt://{}", abs.display())
}

/// `uri`: which state directory this command works on, as a URI.
pub fn uri(a: JsonArgs) -> ExitCode {
    let root = match teamvirt_runtime::state_root::resolve_root(a.state.state_dir.as_deref()) {
        Ok(r) => r,
        Err(e) => return report("failed to get the connection URI", &e.into()),
    };
    let u = uri_of(&root);
    if a.json {
        let v = serde_json::json!({ "uri": u, "state_dir": root });
        outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
    } else {
        outln!("{u}\n");
    }
    ExitCode::SUCCESS
}

/// `hostname`.
pub fn hostname(a: JsonArgs) -> ExitCode {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    if name.is_empty() {
        eprintln!("error: failed to get hostname");
        return ExitCode::FAILURE;
    }
    if a.json {
        let v = serde_json::json!({ "hostname": name });
        outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
    } else {
        outln!("{name}\n");
    }
    ExitCode::SUCCESS
}

/// What `nodeinfo` prints (libvirt's virNodeInfo).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NodeInfo {
    /// The machine architecture (`uname -m`), as libvirt's "CPU model".
    pub cpu_model: String,
    pub cpus: u32,
    pub mhz: u32,
    pub numa_cells: u32,
    /// Per NUMA cell, as libvirt counts them.
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    pub memory_kib: u64,
}

/// From `/proc/cpuinfo`, `/proc/meminfo`, the machine name and the number
/// of NUMA nodes. Without topology lines (some architectures, containers):
/// one socket, one thread per core.
pub fn node_info(arch: &str, cpuinfo: &str, meminfo: &str, nodes: u32) -> NodeInfo {
    let mut cpus = 0u32;
    let mut mhz = 0u32;
    let mut cores = std::collections::BTreeSet::new();
    let mut sockets = std::collections::BTreeSet::new();
    for block in cpuinfo.split("\n\n").filter(|b| b.contains("processor")) {
        cpus += 1;
        let field = |k: &str| {
            block.lines().find_map(|l| {
                let (key, v) = l.split_once(':')?;
                (key.trim() == k).then(|| v.trim().to_owned())
            })
        };
        if mhz == 0 {
            mhz = field("cpu MHz")
                .and_then(|v| v.split('.').next()?.parse().ok())
                .unwrap_or(0);
        }
        if let (Some(p), Some(c)) = (field("physical id"), field("core id")) {
            sockets.insert(p.clone());
            cores.insert((p, c));
        }
    }
    let nodes = nodes.max(1);
    let (sockets, cores_per_socket, threads) = if cores.is_empty() || cpus == 0 {
        (1, cpus.max(1), 1)
    } else {
        let s = sockets.len() as u32;
        let c = cores.len() as u32;
        (s, (c / s).max(1), (cpus / c).max(1))
    };
    let memory_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    NodeInfo {
        cpu_model: arch.to_owned(),
        cpus,
        mhz,
        numa_cells: nodes,
        sockets: (sockets / nodes).max(1),
        cores: cores_per_socket,
        threads,
        memory_kib,
    }
}

fn numa_nodes() -> u32 {
    std::fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.strip_prefix("node")
                        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                })
                .count() as u32
        })
        .unwrap_or(1)
}

fn machine() -> String {
    // SAFETY: utsname is plain data: all zeroes is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname only writes into the struct it is given.
    if unsafe { libc::uname(&mut u) } != 0 {
        return std::env::consts::ARCH.to_owned();
    }
    // SAFETY: the kernel NUL-terminates the field.
    unsafe { std::ffi::CStr::from_ptr(u.machine.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `nodeinfo`.
pub fn nodeinfo(a: JsonArgs) -> ExitCode {
    let read = |p: &str| std::fs::read_to_string(PathBuf::from(p)).unwrap_or_default();
    let mut info = node_info(
        &machine(),
        &read("/proc/cpuinfo"),
        &read("/proc/meminfo"),
        numa_nodes(),
    );
    if info.cpus == 0 {
        info.cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&info).expect("serializes")
        );
        return ExitCode::SUCCESS;
    }
    let row = |k: &str, v: String| outln!("{k:<20} {v}");
    row("CPU model:", info.cpu_model.clone());
    row("CPU(s):", info.cpus.to_string());
    row("CPU frequency:", format!("{} MHz", info.mhz));
    row("CPU socket(s):", info.sockets.to_string());
    row("Core(s) per socket:", info.cores.to_string());
    row("Thread(s) per core:", info.threads.to_string());
    row("NUMA cell(s):", info.numa_cells.to_string());
    row("Memory size:", format!("{} KiB", info.memory_kib));
    outln!();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str, id: Option<u32>, uuid: &str) -> DomainSummary {
        DomainSummary {
            id,
            name: name.into(),
            uuid: Some(uuid.into()),
            state: if id.is_some() {
                DomainState::Running
            } else {
                DomainState::ShutOff
            },
            persistent: true,
            problem: None,
        }
    }

    #[test]
    fn lookup_by_name_id_or_uuid() {
        let doms = [
            dom("a", Some(3), "11111111-2222-3333-4444-555555555555"),
            // A domain named like another's id is found by name first.
            dom("3", None, "aaaaaaaa-2222-3333-4444-555555555555"),
        ];
        assert_eq!(lookup(&doms, "a").unwrap().name, "a");
        assert_eq!(lookup(&doms, "3").unwrap().name, "3");
        assert_eq!(
            lookup(&doms, "11111111-2222-3333-4444-555555555555")
                .unwrap()
                .name,
            "a"
        );
        assert_eq!(
            lookup(&doms, "AAAAAAAA222233334444555555555555")
                .unwrap()
                .name,
            "3"
        );
        assert!(lookup(&doms, "4").is_none());
        assert!(lookup(&doms, "b").is_none());
    }

    #[test]
    fn qemu_version_line() {
        assert_eq!(
            qemu_version("QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)\nCopyright"),
            Some("8.2.2".into())
        );
        assert_eq!(qemu_version("nonsense"), None);
    }

    #[test]
    fn uri_names_the_state_dir() {
        assert_eq!(uri_of(Path::new("/var/lib/teamvirt")), "teamvirt:///system");
        assert_eq!(uri_of(Path::new("/tmp/s")), "teamvirt:///tmp/s");
    }

    #[test]
    fn nodeinfo_from_proc() {
        let mut cpuinfo = String::new();
        for (p, c) in [(0, 0), (0, 1), (0, 0), (0, 1)] {
            cpuinfo.push_str(&format!(
                "processor\t: x\ncpu MHz\t\t: 2399.998\nphysical id\t: {p}\ncore id\t\t: {c}\n\n"
            ));
        }
        let i = node_info("x86_64", &cpuinfo, "MemTotal:       16318480 kB\n", 1);
        assert_eq!(
            i,
            NodeInfo {
                cpu_model: "x86_64".into(),
                cpus: 4,
                mhz: 2399,
                numa_cells: 1,
                sockets: 1,
                cores: 2,
                threads: 2,
                memory_kib: 16318480,
            }
        );
        // No topology: every CPU a core of one socket.
        let i = node_info("aarch64", "processor : 0\n\nprocessor : 1\n", "", 0);
        assert_eq!((i.cpus, i.sockets, i.cores, i.threads), (2, 1, 2, 1));
    }
}
