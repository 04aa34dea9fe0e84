//! Trust boundaries through the binary (issue 12, items 1 and 4): an
//! unsafe state directory is refused with the path and the fix, a forged
//! run record cannot make `destroy` kill another process, a damaged one
//! never turns a running domain into "shut off", out-of-range waits are
//! refused, and `destroy` says what it waits for.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use teamvirt_host::process::ProcId;
use teamvirt_runtime::accel::Accel;
use teamvirt_runtime::run::RunRecord;
use teamvirt_testinfra::{guest_lock, qemu_or_skip};

const NET: &str = "trustpool";
const VF: &str = "0000:3b:02.0";

fn net_xml() -> String {
    teamvirt_testinfra::xml::pool_xml(NET, &[VF])
}

/// A domain with one teaming pair whose primary comes from the pool (lab
/// mode); no disk: QEMU runs, the guest never boots.
fn domain_xml(name: &str) -> String {
    teamvirt_testinfra::xml::PairDomain::new(name)
        .mac("52:54:00:dd:00:01")
        .pool(NET)
        .xml()
}

/// Define the pool (lab mode) and the domain.
fn define(e: &Env, name: &str) {
    let n = e.write("net.xml", &net_xml());
    e.ok(&["net-define", "--emulate-vf", &n]);
    let d = e.write(&format!("{name}.xml"), &domain_xml(name));
    e.ok(&["define", &d]);
}

/// Every QEMU whose command line names this state directory.
fn qemus_of(e: &Env) -> Vec<i32> {
    let needle = e.state.display().to_string();
    let mut out = Vec::new();
    for pid in teamvirt_testinfra::procs::pids() {
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("/")
            && cmd.contains("qemu-system")
            && teamvirt_testinfra::procs::mentions(pid, &needle)
        {
            out.push(pid as i32);
        }
    }
    out
}

/// Kills this state directory's QEMUs when dropped (damaged state is out
/// of reach of [`Env`]'s own cleanup).
struct KillQemus<'a>(&'a Env);

impl Drop for KillQemus<'_> {
    fn drop(&mut self) {
        for pid in qemus_of(self.0) {
            // SAFETY: kill has no memory preconditions.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn unsafe_state_directory_is_refused_with_the_fix() {
    let e = Env::new();
    std::fs::create_dir(&e.state).unwrap();
    std::fs::set_permissions(&e.state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = e.fail(&["list", "--all"]);
    assert!(
        err.contains(&format!(
            "state directory {} is writable by others (mode 0777); chmod it to 0700",
            e.state.display()
        )) && err.contains("--state-dir"),
        "{err}"
    );
    // `locks -> /etc`-style: refused, the target keeps its mode.
    std::fs::set_permissions(&e.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let victim = e.files.join("etc");
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink(&victim, e.state.join("locks")).unwrap();
    let err = e.fail(&["list", "--all"]);
    assert!(err.contains("locks is a symbolic link"), "{err}");
    assert_eq!(std::fs::metadata(&victim).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
}

#[test]
fn out_of_range_waits_are_refused() {
    let e = Env::new();
    for args in [
        &["start", "vm", "--wait-failover=99999999999999999"][..],
        &["start", "vm", "--wait-failover=0"][..],
        &[
            "migrate",
            "vm",
            "--dest-state-dir",
            "/nonexistent",
            "--unplug-timeout",
            "99999999999999999",
        ][..],
        &[
            "migrate",
            "vm",
            "--dest-state-dir",
            "/nonexistent",
            "--timeout",
            "0",
        ][..],
    ] {
        let out = e.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("is not in 1..=86400"), "{args:?}: {err}");
    }
}

/// A run record naming an unrelated process (a `sleep`, with its real
/// start time and binary): `destroy` refuses to signal it; it lives on.
#[test]
fn destroy_does_not_kill_a_forged_pid() {
    let e = Env::new();
    // A verb that writes makes the state tree (`list` only reads).
    e.fail(&["undefine", "vm"]);
    let mut sleep = Command::new("sleep").arg("300").spawn().unwrap();
    let proc = ProcId::of(sleep.id() as i32).unwrap();
    let run = e.run_dir("vm");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let exe = std::fs::read_link(format!("/proc/{}/exe", proc.pid)).unwrap();
    let rec = RunRecord {
        name: "vm".into(),
        id: 1,
        uuid: None,
        proc,
        emulator: exe.display().to_string(),
        argv: vec![exe.display().to_string()],
        accel: Accel::Tcg,
        qmp_socket: run.join("qmp.sock"),
        serial_log: None,
        qemu_log: e.state.join("log/vm.log"),
        pairs: vec![],
        vfs: vec![],
        substitutions: vec![],
        incoming: false,
        started_unix: 0,
        qemu_id: None,
    };
    std::fs::write(run.join("state.json"), serde_json::to_string(&rec).unwrap()).unwrap();
    let out = e.run(&["destroy", "vm"]);
    std::thread::sleep(Duration::from_millis(200));
    let alive = sleep.try_wait().unwrap().is_none();
    let _ = sleep.kill();
    let _ = sleep.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(alive, "destroy killed an unrelated process: {err}");
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("refusing to signal process {}", proc.pid)),
        "{err}"
    );
}

/// A compromised QEMU answering `query-chardev` with a root-only regular
/// file as its "pty" (issue 17, item 7): `console` refuses it; nothing of
/// the file is printed and nothing is written into it. The QEMU is a
/// script the domain names as its emulator, serving QMP on the domain's
/// monitor socket (so the kernel confirms it is the domain's QEMU).
#[test]
fn console_refuses_a_pty_path_that_is_a_root_file() {
    let e = Env::new();
    e.fail(&["undefine", "vm"]);
    let secret = e.files.join("shadow");
    std::fs::write(&secret, "root:SECRET-HASH\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = e.run_dir("vm");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sock = run.join("qmp.sock");
    let qemu = e.files.join("fake-qemu");
    std::fs::write(
        &qemu,
        format!(
            r#"#!/usr/bin/python3
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[2].split("path=")[1].split(",")[0])
s.listen(1)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    f = c.makefile("rw")
    f.write(json.dumps({{"QMP": {{"version": {{"qemu": {{"micro": 0, "minor": 2, "major": 7}}, "package": ""}}, "capabilities": []}}}}) + "\n")
    f.flush()
    for line in f:
        cmd = json.loads(line)
        ret = {{}}
        if cmd.get("execute") == "query-chardev":
            ret = [{{"label": "charserial0", "filename": "pty:{secret}", "frontend-open": True}}]
        out = {{"return": ret}}
        if "id" in cmd:
            out["id"] = cmd["id"]
        f.write(json.dumps(out) + "\n")
        f.flush()
"#,
            secret = secret.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        e.state.join("domains/vm.xml"),
        format!(
            "<domain type='qemu'>\n  <name>vm</name>\n  <memory unit='KiB'>65536</memory>\n  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n  <devices>\n    <emulator>{}</emulator>\n  </devices>\n</domain>\n",
            qemu.display()
        ),
    )
    .unwrap();
    let mut fake = Command::new(&qemu)
        .arg("-chardev")
        .arg(format!(
            "socket,id=charmonitor,path={},server=on,wait=off",
            sock.display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut ready = String::new();
    BufReader::new(fake.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let fake = KillOnDrop(fake);
    assert_eq!(ready, "ready\n");
    let proc = ProcId::of(fake.0.id() as i32).unwrap();
    let rec = RunRecord {
        name: "vm".into(),
        id: 1,
        uuid: None,
        proc,
        emulator: qemu.display().to_string(),
        argv: vec![qemu.display().to_string()],
        accel: Accel::Tcg,
        qmp_socket: sock.clone(),
        serial_log: None,
        qemu_log: e.state.join("log/vm.log"),
        pairs: vec![],
        vfs: vec![],
        substitutions: vec![],
        incoming: false,
        started_unix: 0,
        qemu_id: None,
    };
    std::fs::write(run.join("state.json"), serde_json::to_string(&rec).unwrap()).unwrap();
    let mut console = e
        .command(&["console", "vm"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = console.stdin.take().unwrap();
        let _ = stdin.write_all(b"INJECTED\n");
    }
    let out = console.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        !stdout.contains("SECRET") && !stderr.contains("SECRET"),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "refusing the console of domain 'vm': QEMU reported {}, which is not a /dev/pts/N terminal",
            secret.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "root:SECRET-HASH\n"
    );
    drop(fake);
}

/// `state.json` emptied while the domain runs: `list` still lists it (as
/// damaged, saying why), its VF stays taken, `destroy` says what is wrong,
/// `destroy --force` stops QEMU and returns the VF.
#[test]
fn damaged_run_record_through_the_cli() {
    if qemu_or_skip("damaged_run_record_through_the_cli").is_none() {
        return;
    }
    let _g = guest_lock();
    let e = Env::new();
    let _k = KillQemus(&e);
    define(&e, "vm");
    e.ok(&["start", "vm", "--accel", "tcg"]);
    assert_eq!(qemus_of(&e).len(), 1);
    std::fs::write(e.run_dir("vm").join("state.json"), "").unwrap();

    let (out, err) = e.ok2(&["list", "--all"]);
    assert!(
        out.lines()
            .any(|l| l.contains("vm") && l.contains("damaged")),
        "{out}"
    );
    assert!(
        err.contains("warning: state of domain 'vm' is damaged"),
        "{err}"
    );
    assert_eq!(e.vfs_used(NET), 1, "the running domain's VF was freed");
    assert_eq!(qemus_of(&e).len(), 1);
    assert!(e.run_dir("vm").join("qmp.sock").exists());

    let err = e.fail(&["destroy", "vm"]);
    assert!(err.contains("destroy --force vm"), "{err}");
    let (out, err) = e.ok2(&["destroy", "--force", "vm"]);
    assert!(out.contains("Domain 'vm' destroyed"), "{out}");
    assert!(err.contains(&format!("VF {VF}")), "{err}");
    assert!(qemus_of(&e).is_empty());
    assert_eq!(e.vfs_used(NET), 0);
}

/// The pool's state file deleted or corrupt while the domain holds a VF:
/// rebuilt from the run records with a warning; verbs keep working.
#[test]
fn lost_pool_state_through_the_cli() {
    if qemu_or_skip("lost_pool_state_through_the_cli").is_none() {
        return;
    }
    let _g = guest_lock();
    let e = Env::new();
    let _k = KillQemus(&e);
    define(&e, "vm");
    e.ok(&["start", "vm", "--accel", "tcg"]);
    let f = e.state.join("networks").join(format!("{NET}.state.json"));
    std::fs::write(&f, "{ garbage").unwrap();
    let (_, err) = e.ok2(&["list"]);
    assert!(err.contains("rebuilt"), "{err}");
    assert_eq!(e.vfs_used(NET), 1);
    std::fs::remove_file(&f).unwrap();
    assert_eq!(
        e.vfs_used(NET),
        1,
        "a deleted pool file shows the pool empty"
    );
    // Lab mode survives (issue 17, item 11): it is the network's, recorded
    // with the running domain's VF, and kept once the domain is gone, so
    // the next start emulates the VF again instead of binding a real one.
    e.ok(&["destroy", "vm"]);
    assert_eq!(e.vfs_used(NET), 0);
    assert!(qemus_of(&e).is_empty());
    let (_, err) = e.ok2(&["start", "vm", "--accel", "tcg"]);
    assert!(err.contains("lab mode: failover primary"), "{err}");
    e.ok(&["destroy", "vm"]);
}

/// `destroy` behind a `start --wait-failover` (which holds the domain lock
/// while it waits for a guest that never negotiates) says what it waits
/// for, and the start gives way (issue 17, item 11): the wait ends, the
/// domain is destroyed and the start says why, long before its 600 s.
#[test]
fn destroy_preempts_start_wait_failover() {
    if qemu_or_skip("destroy_preempts_start_wait_failover").is_none() {
        return;
    }
    let _g = guest_lock();
    let e = Env::new();
    let _k = KillQemus(&e);
    define(&e, "vm");
    let start = e
        .command(&["start", "vm", "--accel", "tcg", "--wait-failover=600"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut start = KillOnDrop(start);
    let start_pid = start.0.id();
    let record = e.run_dir("vm").join("state.json");
    let t0 = Instant::now();
    while !record.exists() {
        assert!(start.0.try_wait().unwrap().is_none(), "start exited early");
        assert!(t0.elapsed() < Duration::from_secs(60), "QEMU never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the start reach its wait (it holds the lock from before the record).
    std::thread::sleep(Duration::from_millis(500));
    let destroy = e
        .command(&["destroy", "vm"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut destroy = KillOnDrop(destroy);
    let stderr = destroy.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // A guard against a hang only: the start would wait 600 s.
    let finished = |c: &mut Child, what: &str| {
        let t0 = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                break s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "{what} did not finish"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let status = finished(&mut destroy.0, "destroy (behind the start's wait)");
    let line = rx.recv_timeout(Duration::from_secs(5));
    let line = line.expect("destroy printed nothing while it waited");
    assert_eq!(
        line,
        format!("waiting for 'teamvirt start' of domain 'vm' (pid {start_pid}) to finish (Ctrl-C to give up)...")
    );
    let mut out = String::new();
    std::io::Read::read_to_string(destroy.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("Domain 'vm' destroyed"), "{out}");
    let status = finished(&mut start.0, "start");
    let mut err = String::new();
    std::io::Read::read_to_string(start.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("domain 'vm' was destroyed while waiting for failover"),
        "{err}"
    );
    assert!(qemus_of(&e).is_empty());
    assert_eq!(e.vfs_used(NET), 0);
    assert!(!e.run_dir("vm").join("state.json").exists());
    let (log, _) = e.ok2(&["domstate", "vm", "--reason"]);
    assert!(log.contains("shut off (destroyed)"), "{log}");
}

/// A forged `emulator` (and argv) in `state.json` must not be what root
/// runs at the next `migrate`: the destination runs the domain's own
/// emulator (from its XML), and a recorded option the kernel does not show
/// for the source QEMU makes the record damaged (the migration is refused
/// before anything moves).
#[test]
fn migrate_does_not_run_the_emulator_of_a_forged_record() {
    if qemu_or_skip("migrate_does_not_run_the_emulator_of_a_forged_record").is_none() {
        return;
    }
    let _g = guest_lock();
    let e = Env::new();
    let _k = KillQemus(&e);
    define(&e, "vm");
    let dst = std::path::PathBuf::from(format!("{}-dst", e.state.display()));
    let on_dst = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_teamvirt"))
            .env("TEAMVIRT_STATE_DIR", &dst)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    on_dst(&[
        "net-define",
        "--emulate-vf",
        &e.files.join("net.xml").display().to_string(),
    ]);
    e.ok(&["start", "vm", "--accel", "tcg"]);

    let marker = e.files.join("pwned");
    let evil = e.write(
        "evil.sh",
        &format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    );
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rec_path = e.run_dir("vm").join("state.json");
    let mut rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rec_path).unwrap()).unwrap();
    rec["emulator"] = evil.clone().into();
    rec["argv"][0] = evil.clone().into();
    rec["argv"]
        .as_array_mut()
        .unwrap()
        .push("-forged-option".into());
    std::fs::write(&rec_path, rec.to_string()).unwrap();

    let migrate = || {
        e.run(&[
            "migrate",
            "--unplug-timeout",
            "20",
            "--dest-state-dir",
            dst.to_str().unwrap(),
            "vm",
        ])
    };
    let out = migrate();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!marker.exists(), "migrate ran the forged emulator: {err}");
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("state of domain 'vm' is damaged: its run record names `-forged-option`"),
        "{err}"
    );
    assert_eq!(e.ok(&["domstate", "vm"]).trim(), "running");

    // The forged emulator alone: the definition's emulator runs.
    rec["argv"].as_array_mut().unwrap().pop();
    std::fs::write(&rec_path, rec.to_string()).unwrap();
    let out = migrate();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!marker.exists(), "migrate ran the forged emulator: {err}");
    assert!(out.status.success(), "{err}");
    // Clean up on the destination (KillQemus covers a failure).
    on_dst(&["destroy", "vm"]);
}
