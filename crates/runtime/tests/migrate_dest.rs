//! The local migration destination against a real QEMU (`-machine none`,
//! no guest): prepare reserves a VF, starts QEMU with `-incoming defer`
//! listening on a unix socket in a private directory (never a TCP port)
//! and records it; abort stops it and returns the VF; failed checks leave
//! nothing behind. Skips only without QEMU.

use std::time::Duration;

use teamvirt_host::state::{write_atomic, StateDir};
use teamvirt_runtime::accel::Accel;
use teamvirt_runtime::migrate::dest::{Destination, LocalDestination, PrepareRequest};
use teamvirt_runtime::migrate::MigrateError;
use teamvirt_runtime::pool::VfPool;
use teamvirt_runtime::run::{monitor_args, RunRecord};
use teamvirt_runtime::teaming::TeamingPair;

/// The pool `vfpool` with one VF.
fn pool() -> String {
    teamvirt_testinfra::xml::pool_xml("vfpool", &["0000:81:00.1"])
}

fn request(src: &StateDir, qemu: &str) -> PrepareRequest {
    let run = src.run_paths("vm").unwrap();
    let mut argv: Vec<String> = vec![qemu.into(), "-machine".into(), "none".into()];
    argv.extend(["-nodefaults", "-display", "none", "-S"].map(String::from));
    argv.extend(monitor_args(&run.qmp_sock));
    PrepareRequest {
        name: "vm".into(),
        uuid: None,
        emulator: qemu.into(),
        argv,
        accel: Accel::Tcg,
        source_run_dir: run.dir.clone(),
        source_serial_log: None,
        source_root: src.root().to_owned(),
        pairs: vec![TeamingPair {
            standby: "ua-sb".into(),
            primary: "hostdev0".into(),
            standby_mac: None,
            primary_mac: None,
            vf: Some("0000:03:10.0".into()),
            network: Some("vfpool".into()),
            emulated: true,
        }],
        live_xml: "<domain type='qemu'><name>vm</name><memory unit='KiB'>65536</memory><os><type arch='x86_64' machine='q35'>hvm</type></os></domain>".into(),
        persistent_xml: None,
    }
}

/// The TCP sockets process `pid` holds that listen (`/proc/net/tcp*`
/// entries in state 0A whose inode is one of its descriptors).
fn tcp_listeners_of(pid: i32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                out.push(format!("{table} {}", f[1]));
            }
        }
    }
    out
}

#[test]
fn prepare_listens_and_abort_cleans_up() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("prepare_listens_and_abort_cleans_up") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let src = StateDir::open(&t.path().join("src")).unwrap();
    let dst = StateDir::open(&t.path().join("dst")).unwrap();
    let req = request(&src, qemu.to_str().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut d = LocalDestination::new(dst.clone());
        // No such network on the destination: refused, nothing started.
        let e = d.prepare(&req).await.unwrap_err();
        assert!(matches!(e, MigrateError::DestNoNetwork { .. }), "{e}");
        assert!(RunRecord::load(&dst, "vm").unwrap().is_none());
        // Its own state directory is not a destination.
        let mut me = LocalDestination::new(src.clone());
        assert!(matches!(
            me.prepare(&req).await.unwrap_err(),
            MigrateError::SameHost(_)
        ));

        write_atomic(
            &dst.network_xml("vfpool").unwrap(),
            pool().as_bytes(),
            0o600,
        )
        .unwrap();
        let pool = VfPool::new(&dst, "vfpool");
        // The only VF is taken: refused before QEMU starts.
        pool.reserve("0000:81:00.1", "other", "hostdev0").unwrap();
        let e = d.prepare(&req).await.unwrap_err();
        assert!(e.to_string().contains("none are available"), "{e}");
        assert!(RunRecord::load(&dst, "vm").unwrap().is_none());
        pool.release("0000:81:00.1", "other").unwrap();

        let p = d.prepare(&req).await.unwrap();
        // Same host: a unix socket nobody but root and the QEMU user can
        // reach, not a loopback port any local user could connect to
        // first (issue 17, item 6).
        let sock = std::path::PathBuf::from(p.uri.strip_prefix("unix:").unwrap_or_else(|| {
            panic!("{}", p.uri);
        }));
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        assert!(std::fs::symlink_metadata(&sock)
            .unwrap()
            .file_type()
            .is_socket());
        let dir = std::fs::metadata(sock.parent().unwrap()).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
        assert_eq!(p.vfs[0].address, "0000:81:00.1");
        assert_eq!(p.pairs[0].vf.as_deref(), Some("0000:81:00.1"));
        assert!(
            p.substitutions[0].contains("lab mode"),
            "{:?}",
            p.substitutions
        );
        let rec = RunRecord::load(&dst, "vm").unwrap().unwrap();
        assert!(rec.incoming && rec.is_alive());
        assert!(rec
            .argv
            .ends_with(&["-incoming".to_string(), "defer".to_string()]));
        let sock = dst.run_paths("vm").unwrap().qmp_sock;
        assert!(rec
            .argv
            .iter()
            .any(|a| a.contains(&sock.display().to_string())));
        // Really listening there, and on no TCP port.
        assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
        assert_eq!(tcp_listeners_of(rec.proc.pid), Vec::<String>::new());
        assert_eq!(pool.state().unwrap().allocations[0].domain, "vm");
        let j = teamvirt_runtime::migrate::job::current(&dst, "vm")
            .unwrap()
            .expect("incoming job published");
        assert_eq!(
            (j.operation.as_str(), j.phase.as_str()),
            ("migration in", "incoming")
        );

        let done = d.abort().await.unwrap();
        assert!(
            done.iter()
                .any(|l| l.contains("returned to network 'vfpool'")),
            "{done:?}"
        );
        assert!(rec.proc.wait_gone(Duration::from_secs(5)));
        assert!(pool.state().unwrap().allocations.is_empty());
        assert!(RunRecord::load(&dst, "vm").unwrap().is_none());
        assert!(teamvirt_runtime::migrate::job::current(&dst, "vm")
            .unwrap()
            .is_none());
        // Twice is fine.
        assert!(d.abort().await.unwrap().is_empty());
    });
}
