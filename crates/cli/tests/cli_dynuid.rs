//! One uid per running VM (`teamvirt_host::dynuid`): two VMs started as root run
//! their QEMUs as two different uids of the reserved range, and from one
//! QEMU's identity the other's `/proc/PID/mem` and `/proc/PID/fd/*` (its
//! master key among them) cannot be opened, while its own identity can
//! (they all ran as `teamvirt-qemu`, so each QEMU could read the others'
//! key and memory). A destroyed VM's id is freed: its allocation record
//! goes, no process keeps it, and the next start gets it again. Needs
//! root (skips otherwise) and QEMU (skips when not installed); the VMs
//! boot no OS (firmware only).

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Env;
use teamvirt_testinfra::{guest_lock, qemu_or_skip};

fn domain(name: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices/>
</domain>
"
    )
}

fn qemu_pid(e: &Env, dom: &str) -> i32 {
    std::fs::read_to_string(e.run_dir(dom).join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Real uid and gid of a process, once it is QEMU (the pid is known
/// before the exec).
fn ids_of(pid: i32) -> (u32, u32) {
    let t0 = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .starts_with("qemu")
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "QEMU never exec'd");
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| -> u32 {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

/// Can a process with this uid and gid (no groups, no capabilities: as
/// teamvirt drops QEMU's privileges) open `path` for reading? The shell
/// exits non-zero when the redirection's open fails (only the open is
/// tried: address 0 of `/proc/PID/mem` cannot be read by anyone).
fn opens_as(uid: u32, gid: u32, path: &Path) -> bool {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "exec 3<\"$0\""]).arg(path);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only raw syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.status().unwrap().success()
}

/// B's descriptors worth stealing: the master key (a memfd copy now, the
/// run directory's file before) and every regular file or memfd.
fn secret_fds(pid: i32) -> Vec<(PathBuf, PathBuf)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let t = std::fs::read_link(e.path()).ok()?;
            let s = t.to_string_lossy();
            (s.starts_with("/memfd:") || s.ends_with("master-key.aes")).then(|| (e.path(), t))
        })
        .collect()
}

#[test]
fn each_vm_has_its_own_uid_and_cannot_read_another() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping each_vm_has_its_own_uid_and_cannot_read_another: needs root");
        return;
    }
    if qemu_or_skip("each_vm_has_its_own_uid_and_cannot_read_another").is_none() {
        return;
    }
    let _lock = guest_lock();
    let e = Env::new();
    for d in ["a", "b", "c"] {
        let x = e.write(&format!("{d}.xml"), &domain(d));
        e.ok(&["define", &x]);
    }
    // The developer's fixed QEMU user must not leak in.
    let start = |d: &str| {
        let out = e
            .command(&["start", d, "--accel", "tcg"])
            .env_remove("TEAMVIRT_QEMU_USER")
            .env_remove("TEAMVIRT_QEMU_UID_RANGE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "start {d}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    start("a");
    start("b");
    let (pa, pb) = (qemu_pid(&e, "a"), qemu_pid(&e, "b"));
    let (ua, ga) = ids_of(pa);
    let (ub, gb) = ids_of(pb);
    assert_ne!(ua, ub, "two VMs, one uid");
    assert_ne!(ga, gb, "two VMs, one gid");
    for u in [ua, ub] {
        assert!(
            (60578..=61183).contains(&u),
            "uid {u} not in the default range"
        );
    }
    // Recorded in the run record and the allocation record.
    for (d, u) in [("a", ua), ("b", ub)] {
        let st: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(e.run_dir(d).join("state.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(st["qemu_id"]["uid"], u, "{st}");
        assert_eq!(st["qemu_id"]["dynamic"], true, "{st}");
        assert!(e.run_dir(d).join("qemu-uid.json").exists());
    }

    // From A's identity: B's memory and B's descriptors are out of reach.
    assert!(
        !opens_as(ua, ga, Path::new(&format!("/proc/{pb}/mem"))),
        "A's uid opened /proc/{pb}/mem of B"
    );
    let fds = secret_fds(pb);
    assert!(!fds.is_empty(), "B holds no master key descriptor");
    for (fd, target) in &fds {
        assert!(
            !opens_as(ua, ga, fd),
            "A's uid read {} ({}) of B",
            fd.display(),
            target.display()
        );
        // The check can fail: B's own identity reads it.
        assert!(
            opens_as(ub, gb, fd),
            "B's own uid cannot read {} ({})",
            fd.display(),
            target.display()
        );
    }

    // Destroy frees A's id: its record goes, no process keeps it, and the
    // next start (lowest free id first) gets it again.
    e.ok(&["destroy", "a"]);
    assert!(!e.run_dir("a").join("qemu-uid.json").exists());
    start("c");
    let (uc, _) = ids_of(qemu_pid(&e, "c"));
    assert_ne!(uc, ub);
    assert!(uc <= ua, "uid {ua} of the destroyed VM leaked (c got {uc})");
    e.ok(&["destroy", "b"]);
    e.ok(&["destroy", "c"]);
    for d in ["a", "b", "c"] {
        assert!(!e.run_dir(d).join("qemu-uid.json").exists(), "{d}");
    }
}

/// A fixed user when asked (`--qemu-user`, `TEAMVIRT_QEMU_USER`): QEMU
/// runs as it, nothing is allocated.
#[test]
fn fixed_user_when_asked() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping fixed_user_when_asked: needs root");
        return;
    }
    if qemu_or_skip("fixed_user_when_asked").is_none() {
        return;
    }
    let _lock = guest_lock();
    let e = Env::new();
    let x = e.write("a.xml", &domain("a"));
    e.ok(&["define", &x]);
    let out = e
        .command(&[
            "--qemu-user",
            "+65534:+65534",
            "start",
            "a",
            "--accel",
            "tcg",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ids_of(qemu_pid(&e, "a")), (65534, 65534));
    assert!(!e.run_dir("a").join("qemu-uid.json").exists());
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.run_dir("a").join("state.json")).unwrap())
            .unwrap();
    assert_eq!(st["qemu_id"]["dynamic"], false, "{st}");
    e.ok(&["destroy", "a"]);
}
