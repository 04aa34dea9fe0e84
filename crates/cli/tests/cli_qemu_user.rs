//! QEMU off root, through the `teamvirt` binary with the test guest in lab
//! mode: QEMU runs as a uid of its own (`teamvirt_host::dynuid`) with
//! no capabilities, the failover pair still negotiates, a kernel and a
//! disk only root could read reach it as descriptors (nothing chowned), a
//! serial file output is created root's 0600 and written through a
//! descriptor, nothing of the state directory (the master key included)
//! is chowned to QEMU, the master key is removed by `destroy` and by the command
//! that notices a killed QEMU; `--qemu-user root` keeps uid 0 without
//! capabilities. Run as non-root, QEMU simply
//! runs as the caller. Skips only when QEMU is not installed.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Env;
use teamvirt_testinfra::xml::{pool_xml, PairDomain};
use teamvirt_testinfra::{guest_lock, qemu_or_skip, test_guest};

/// The VF pool `vfpool`.
fn pool() -> String {
    pool_xml("vfpool", &["0000:3b:02.1"])
}

fn domain(kernel: &Path, initrd: &Path, cmdline: &str, disk: &Path, console: &Path) -> String {
    PairDomain::new("tv")
        .memory_mib(256)
        .standby("ua-backup0")
        .boot(kernel, initrd, cmdline)
        .memballoon(None)
        .devices_first(&format!(
            "    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='{}'/>
      <target port='0'/>
    </serial>
",
            disk.display(),
            console.display()
        ))
        .xml()
}

/// `teamvirt ARGS` with the default QEMU user (the developer's
/// TEAMVIRT_QEMU_USER must not leak in).
fn run(e: &Env, args: &[&str]) -> Output {
    let out = e
        .command(args)
        .env_remove("TEAMVIRT_QEMU_USER")
        .output()
        .unwrap();
    eprintln!(
        "$ teamvirt {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "teamvirt {} failed", args.join(" "));
    out
}

fn status_field(pid: &str, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
}

fn qemu_pid(e: &Env) -> String {
    std::fs::read_to_string(e.run_dir("tv").join("pid"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The exec'd QEMU (the pid is known before the exec).
fn wait_exec(pid: &str) {
    let t0 = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .starts_with("qemu")
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "QEMU never exec'd");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_no_capabilities(pid: &str) {
    for c in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(
            status_field(pid, c),
            "0000000000000000",
            "{c} of QEMU {pid}"
        );
    }
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn qemu_runs_unprivileged_and_failover_negotiates() {
    if qemu_or_skip("qemu_runs_unprivileged_and_failover_negotiates").is_none() {
        return;
    }
    let guest = test_guest().expect("test guest builds");
    let _lock = guest_lock();
    let e = Env::new();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // A kernel only its owner may read, in the test's private directory:
    // QEMU can only read it if teamvirt lends it.
    let kernel = e.files.join("vmlinuz");
    std::fs::copy(&guest.kernel, &kernel).unwrap();
    std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mine = owner(&kernel);
    let disk = e.files.join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let console = e.files.join("console.out");
    let net = e.write("net.xml", &pool());
    let d = e.write(
        "tv.xml",
        &domain(&kernel, &guest.initrd, &guest.cmdline(""), &disk, &console),
    );
    run(&e, &["net-define", &net]);
    run(&e, &["define", &d]);
    run(
        &e,
        &[
            "start",
            "tv",
            "--emulate-vf",
            "--accel",
            "tcg",
            "--wait-failover=120",
        ],
    );
    let pid = qemu_pid(&e);
    wait_exec(&pid);
    let (uid, gid) = if root {
        // The VM's own id from the reserved range (teamvirt_host::dynuid).
        let u: u32 = status_field(&pid, "Uid:")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((60578..=61183).contains(&u), "uid {u}");
        (u, u)
    } else {
        // SAFETY: no preconditions.
        unsafe { (libc::geteuid(), libc::getegid()) }
    };
    assert_eq!(
        status_field(&pid, "Uid:"),
        format!("{uid} {uid} {uid} {uid}")
    );
    assert_eq!(
        status_field(&pid, "Gid:"),
        format!("{gid} {gid} {gid} {gid}")
    );
    assert_no_capabilities(&pid);
    // QEMU's environment, and the one the domain log records, are the
    // QEMU user's (it said USER=root and root's PATH).
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let log = std::fs::read_to_string(e.state.join("log/tv.log")).unwrap();
    if root {
        for v in [
            "USER=teamvirt-qemu",
            "LOGNAME=teamvirt-qemu",
            "PATH=/usr/local/bin:/usr/bin:/bin",
        ] {
            assert!(environ.iter().any(|x| x == v), "{v}: {environ:?}");
            assert!(log.contains(&format!(" {v} ")), "{v}: {log}");
        }
    }
    let home = format!("HOME={}", e.run_dir("tv").display());
    assert!(environ.contains(&home), "{home}: {environ:?}");
    if root {
        let ps = Command::new("ps")
            .args(["-o", "user:20=", "-p", &pid])
            .output()
            .unwrap();
        // No user of the system has it.
        assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), uid.to_string());
        let getent = Command::new("getent")
            .args(["passwd", &uid.to_string()])
            .output()
            .unwrap();
        assert!(!getent.status.success(), "uid {uid} is a user");
    }

    let t = e.json(&["teaming", "tv", "--json"]);
    let p = &t["pairs"][0];
    assert_eq!(p["negotiated"], true, "{t}");
    assert_eq!(p["plugged"], true, "{t}");

    // Lent by descriptor: the kernel (QEMU booted it), the disk and the
    // serial output, none chowned; the master key is QEMU's. teamvirt's
    // own files and directories stay root's and private.
    let dir = e.run_dir("tv");
    let key = dir.join("master-key.aes");
    for f in [&kernel, &disk, &console] {
        let m = std::fs::metadata(f).unwrap();
        assert_eq!(
            ((m.uid(), m.gid()), m.mode() & 0o777),
            (mine, 0o600),
            "{}",
            f.display()
        );
    }
    let held: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    for f in [&disk, &console] {
        assert!(
            held.contains(f),
            "QEMU does not hold {}: {held:?}",
            f.display()
        );
    }
    // Nothing of the state directory is QEMU's, the master key included
    // (QEMU reads a sealed copy through a descriptor).
    assert_eq!(owner(&key), mine);
    if root {
        let mut todo = vec![e.state.clone()];
        while let Some(d) = todo.pop() {
            for f in std::fs::read_dir(&d).unwrap().flatten() {
                let m = std::fs::symlink_metadata(f.path()).unwrap();
                assert!(
                    m.uid() != uid && m.gid() != gid,
                    "{} is QEMU's ({}:{})",
                    f.path().display(),
                    m.uid(),
                    m.gid()
                );
                if m.is_dir() {
                    todo.push(f.path());
                }
            }
        }
    }
    for f in ["state.json", "pid", "live.xml", "qmp.sock"] {
        assert_eq!(owner(&dir.join(f)), mine, "{f}");
    }
    for d in [e.state.clone(), e.state.join("run"), dir.clone()] {
        let m = std::fs::metadata(&d).unwrap();
        assert_eq!(
            (m.uid(), m.mode() & 0o777),
            (mine.0, 0o700),
            "{}",
            d.display()
        );
    }

    // destroy gives everything back.
    run(&e, &["destroy", "tv"]);
    assert_eq!(owner(&kernel), mine);
    assert!(
        std::fs::metadata(&console).unwrap().len() > 0,
        "the guest console reached the serial file"
    );
    assert!(!key.exists(), "master key removed at stop");
    assert!(!dir.join("dac.json").exists());
    assert!(!dir.join("qemu-uid.json").exists(), "uid freed at stop");

    // A QEMU killed behind teamvirt's back: the next command gives back.
    run(&e, &["start", "tv", "--emulate-vf", "--accel", "tcg"]);
    let pid = qemu_pid(&e);
    wait_exec(&pid);
    assert_eq!(owner(&kernel), mine);
    assert!(Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    let t0 = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}/comm")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        assert!(t0.elapsed() < Duration::from_secs(10), "QEMU not killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    if root {
        assert!(dir.join("qemu-uid.json").exists(), "the VM's uid is held");
    }
    run(&e, &["list", "--all"]);
    assert_eq!(owner(&kernel), mine);
    assert!(!key.exists());
    // The dead VM's uid is freed by the command that noticed.
    assert!(!dir.join("qemu-uid.json").exists());

    // root when asked: uid 0, still without capabilities.
    if root {
        run(
            &e,
            &[
                "--qemu-user",
                "root",
                "start",
                "tv",
                "--emulate-vf",
                "--accel",
                "tcg",
            ],
        );
        let pid = qemu_pid(&e);
        wait_exec(&pid);
        assert_eq!(status_field(&pid, "Uid:"), "0 0 0 0");
        assert_no_capabilities(&pid);
        assert_eq!(owner(&kernel), mine, "root reads it as is");
        run(&e, &["destroy", "tv"]);
    }
}

/// The `<emulator>` of a definition is probed as QEMU runs (libvirt
/// probes as its QEMU user): `define`, `validate` and `start` run a fake
/// emulator that records its identity; it is the QEMU user, without
/// capabilities, with no_new_privs (it was full root).
#[test]
fn emulator_is_probed_unprivileged() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let e = Env::new();
    // The fake emulator and where it writes must be reachable by the
    // QEMU user.
    let top = e.files.parent().unwrap();
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&e.files, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = e.files.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let emu = e.files.join("fake-qemu");
    std::fs::write(
        &emu,
        format!(
            "#!/bin/sh\ncat /proc/$$/status > {}/status.$$\nexit 1\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&emu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let xml = e.write(
        "p.xml",
        &format!(
            "<domain type='kvm'>
  <name>p</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>{}</emulator>
  </devices>
</domain>
",
            emu.display()
        ),
    );
    let (uid, gid) = if root {
        (65534, 65534)
    } else {
        // SAFETY: no preconditions.
        unsafe { (libc::geteuid(), libc::getegid()) }
    };
    let user = format!("+{uid}:+{gid}");
    let r = e
        .command(&["--qemu-user", &user, "define", &xml])
        .output()
        .unwrap();
    assert!(!r.status.success(), "a fake emulator cannot be probed");
    let runs: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().collect();
    assert!(
        !runs.is_empty(),
        "the emulator was not run: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    for run in runs {
        let status = std::fs::read_to_string(run.path()).unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(
            field("Uid:"),
            format!("{uid}\t{uid}\t{uid}\t{uid}"),
            "{status}"
        );
        assert_eq!(
            field("Gid:"),
            format!("{gid}\t{gid}\t{gid}\t{gid}"),
            "{status}"
        );
        for c in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
            assert_eq!(field(c), "0000000000000000", "{c}: {status}");
        }
        if root {
            assert_eq!(field("CapBnd:"), "0000000000000000", "{status}");
        }
        assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    }
}
