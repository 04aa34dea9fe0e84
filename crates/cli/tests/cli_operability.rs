//! Issue 11: what an operator reaches for. Logs (`--debug`, `TEAMVIRT_LOG`,
//! the per-domain log telling a start, a crash and a migration with their
//! causes), the virsh verbs (`dominfo`, `domiflist`, `suspend`, `resume`,
//! `reboot`, `autostart`, `start-autostart`, `console`, `edit`), and the
//! completions and man pages generated from the CLI.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use teamvirt_testinfra::xml::pool_xml;
use teamvirt_testinfra::{guest_lock, qemu_or_skip, test_guest, SerialLog};

/// The VF pool `vfpool`.
fn pool() -> String {
    pool_xml("vfpool", &["0000:3b:02.1"])
}

fn domain(name: &str, kernel: &Path, initrd: &Path) -> String {
    teamvirt_testinfra::xml::PairDomain::new(name)
        .memory_mib(256)
        .boot(kernel, initrd, "console=ttyS0 panic=-1")
        .standby("ua-backup0")
        .devices("    <serial type='pty'/>\n    <console type='pty'/>\n")
        .memballoon(None)
        .xml()
}

/// The names of the visible verbs, from `teamvirt help`.
fn verbs() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .arg("help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Vec<String> = text
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_owned)
        .collect();
    assert!(v.len() > 25, "{text}");
    v
}

#[test]
fn completions_and_man_pages_cover_every_verb() {
    let verbs = verbs();
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_teamvirt"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let s = String::from_utf8_lossy(&out.stdout);
        for v in &verbs {
            assert!(s.contains(v.as_str()), "{shell} completion lacks {v}");
        }
    }
    // bash accepts what it is given.
    if Path::new("/bin/bash").exists() {
        let out = Command::new("/bin/bash")
            .arg("-c")
            .arg(format!(
                "source <({} completions bash) && complete -p teamvirt",
                env!("CARGO_BIN_EXE_teamvirt")
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top = std::fs::read_to_string(dir.path().join("teamvirt.1")).unwrap();
    assert!(
        top.starts_with(".ie") || top.contains(".TH teamvirt"),
        "{top}"
    );
    for v in &verbs {
        let page = std::fs::read_to_string(dir.path().join(format!("teamvirt-{v}.1")))
            .unwrap_or_else(|e| panic!("man page of {v}: {e}"));
        assert!(page.contains(&format!(".TH teamvirt-{v}")), "{v}: {page}");
        // roff escapes the hyphens of verb names.
        assert!(
            top.contains(&v.replace('-', "\\-")),
            "teamvirt.1 does not list {v}"
        );
    }
}

#[test]
fn autostart_dominfo_domiflist_and_edit_on_a_defined_domain() {
    let e = Env::new();
    let net = e.write("net.xml", &pool());
    e.ok(&["net-define", &net]);
    let dom = e.write("d.xml", &domain("op1", Path::new("/k"), Path::new("/i")));
    e.ok(&["define", &dom]);

    let info = e.ok(&["dominfo", "op1"]);
    assert!(info.contains("Id:             -\n"), "{info}");
    assert!(info.contains("State:          shut off\n"), "{info}");
    assert!(info.contains("Max memory:     262144 KiB\n"), "{info}");
    assert!(info.contains("Autostart:      disable\n"), "{info}");
    let log = e.state.join("log/op1.log");
    assert!(
        info.contains(&format!("Log file:       {}\n", log.display())),
        "{info}"
    );

    let out = e.ok(&["autostart", "op1"]);
    assert_eq!(out, "Domain 'op1' marked as autostarted\n");
    assert!(e
        .ok(&["dominfo", "op1"])
        .contains("Autostart:      enable\n"));
    let out = e.ok(&["autostart", "op1", "--disable"]);
    assert_eq!(out, "Domain 'op1' unmarked as autostarted\n");
    assert!(e
        .ok(&["dominfo", "op1"])
        .contains("Autostart:      disable\n"));
    let err = e.fail(&["autostart", "nope"]);
    assert!(
        err.starts_with("error: failed to get domain 'nope'"),
        "{err}"
    );
    assert_eq!(
        e.ok(&["net-autostart", "vfpool"]),
        "Network 'vfpool' marked as autostarted\n"
    );

    let list = e.ok(&["domiflist", "op1"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].contains("Interface") && lines[0].contains("Teaming"),
        "{list}"
    );
    assert!(
        lines[2].contains("user") && lines[2].contains("standby"),
        "{list}"
    );
    assert!(
        lines[3].contains("vfpool") && lines[3].contains("primary"),
        "{list}"
    );
    assert!(lines[3].trim_end().ends_with("ua-backup0"), "{list}");

    // edit: unchanged, changed (saved after validation), and broken
    // (never saved, never lost).
    let editor = |script: &str| {
        let p = e.files.join("editor.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    };
    let run_edit = |ed: &Path| {
        e.command(&["edit", "op1"])
            .env("EDITOR", ed)
            .env_remove("VISUAL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run_edit(&editor("true"));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Domain 'op1' XML configuration not changed.\n"
    );
    let out = run_edit(&editor("sed -i 's/262144/524288/' \"$1\""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Domain 'op1' XML configuration edited.\n"
    );
    assert!(e
        .ok(&["dominfo", "op1"])
        .contains("Max memory:     524288 KiB\n"));
    // Broken XML: the parser's error, nothing saved, the edit kept.
    let out = run_edit(&editor("sed -i 's|</domain>|<!-- ua-nope -->|' \"$1\""));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("your edit is kept in "), "{err}");
    let kept = err.split("your edit is kept in ").nth(1).unwrap().trim();
    assert!(std::fs::read_to_string(kept).unwrap().contains("ua-nope"));
    std::fs::remove_file(kept).unwrap();
    assert!(!e.ok(&["dumpxml", "op1"]).contains("ua-nope"));
    // A typo libvirt's schema rejects (virsh edit validates, as define
    // --validate): nothing saved; --skip-validate keeps define's leniency.
    let typo = editor("sed -i 's|<devices>|<devices><interfce type=\"user\"/>|' \"$1\"");
    let out = run_edit(&typo);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: Failed to define domain from the edited XML\n"),
        "{err}"
    );
    assert!(err.contains("interfce"), "{err}");
    assert!(err.contains("did you mean"), "{err}");
    let kept = err.split("your edit is kept in ").nth(1).unwrap().trim();
    std::fs::remove_file(kept).unwrap();
    assert!(!e.ok(&["dumpxml", "op1"]).contains("interfce"));
    let out = e
        .command(&["edit", "op1", "--skip-validate"])
        .env("EDITOR", &typo)
        .env_remove("VISUAL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_trace_filter_is_a_warning_not_a_failure() {
    let e = Env::new();
    let out = e
        .command(&["list", "--all"])
        .env("TEAMVIRT_LOG", "teamvirt=[[[")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: ignoring TEAMVIRT_LOG"));
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_of(e: &Env, dom: &str) -> String {
    std::fs::read_to_string(e.state.join(format!("log/{dom}.log"))).unwrap_or_default()
}

#[test]
fn verbs_and_domain_log_through_a_lab_mode_life() {
    if qemu_or_skip("verbs_and_domain_log_through_a_lab_mode_life").is_none() {
        return;
    }
    let guest = test_guest().expect("test guest builds");
    let _lock = guest_lock();
    let src = Env::new();
    let dst = Env::new();
    for e in [&src, &dst] {
        let net = e.write("net.xml", &pool());
        e.ok(&["net-define", "--emulate-vf", &net]);
    }
    let dom = src.write("d.xml", &domain("op2", &guest.kernel, &guest.initrd));
    src.ok(&["define", &dom]);
    // `event --loop --event failover` sees the pair negotiate and its
    // primary plug in, from the pairs of the running domain.
    let mut events = src
        .command(&["event", "--loop", "--event", "failover", "--timeout", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(events.stderr.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first, "watching events (Ctrl-C stops)\n");
    let events_out = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(std::io::BufReader::new(events_out)).map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });

    // --debug shows the QMP conversation and the QEMU command line.
    let (_, err) = src.ok2(&[
        "--debug",
        "start",
        "op2",
        "--emulate-vf",
        "--accel",
        "tcg",
        "--wait-failover=90",
    ]);
    assert!(err.contains("QMP -> domain=op2"), "{err}");
    assert!(err.contains("\"execute\":\"qmp_capabilities\""), "{err}");
    assert!(err.contains("QMP <- domain=op2"), "{err}");
    assert!(err.contains("launching QEMU"), "{err}");
    let log = log_of(&src, "op2");
    assert!(log.contains(": starting up teamvirt "), "{log}");
    assert!(log.contains("qemu-system-x86_64 -name guest=op2"), "{log}");
    assert!(
        log.contains("VF 0000:3b:02.1 of network 'vfpool' bound to device"),
        "{log}"
    );

    let mut seen = Vec::new();
    while seen.len() < 2 {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(events.id() as i32, libc::SIGINT) };
    assert!(events.wait().unwrap().success());
    assert_eq!(
        seen,
        [
            "event 'failover' for domain 'op2': negotiated ua-backup0/hostdev0",
            "event 'failover' for domain 'op2': primary hostdev0 plugged",
        ]
    );

    // dominfo / domiflist of the running domain.
    let info = src.ok(&["dominfo", "op2"]);
    assert!(info.contains("State:          running\n"), "{info}");
    assert!(info.contains("Lab mode:"), "{info}");
    let ifl = src.ok(&["domiflist", "op2"]);
    assert!(
        ifl.lines().nth(2).unwrap().trim_end().ends_with("hostdev0"),
        "{ifl}"
    );

    // suspend / resume.
    assert_eq!(src.ok(&["suspend", "op2"]), "Domain 'op2' suspended\n");
    assert_eq!(src.ok(&["domstate", "op2"]).trim(), "paused");
    assert_eq!(src.ok(&["resume", "op2"]), "Domain 'op2' resumed\n");
    assert_eq!(src.ok(&["domstate", "op2"]).trim(), "running");

    // console: the guest's heartbeat comes through; Ctrl-] leaves.
    let mut c = src
        .command(&["console", "op2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = c.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("E2E HB") {
                break;
            }
        }
        // Hand the pipe back open: closing it would end the console on
        // EPIPE before the test sends Ctrl-].
        (seen, stdout)
    });
    let t0 = Instant::now();
    while !reader.is_finished() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no guest output on the console"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (seen, _stdout) = reader.join().unwrap();
    assert!(String::from_utf8_lossy(&seen).contains("E2E HB"));
    c.stdin.as_mut().unwrap().write_all(&[0x1d]).unwrap();
    let status = c.wait().unwrap();
    assert!(status.success());
    let mut err = String::new();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("Connected to domain 'op2'"), "{err}");
    assert!(err.contains("Escape character is ^] (Ctrl + ])"), "{err}");

    // reboot: a reset; the guest boots again and renegotiates.
    let serial = SerialLog::new(src.run_dir("op2").join("serial.log"));
    let boots = || {
        std::fs::read_to_string(src.run_dir("op2").join("serial.log"))
            .unwrap_or_default()
            .matches("Linux version")
            .count()
    };
    let before = boots();
    // Reset while paused: the guest cannot negotiate again before the
    // teaming query, which must not say "yes" (QEMU keeps the primary
    // across the reset; it said Negotiated yes).
    src.ok(&["suspend", "op2"]);
    assert_eq!(
        src.ok(&["reboot", "op2"]),
        "Domain 'op2' is being rebooted\n"
    );
    let t = src.json(&["teaming", "op2", "--json"]);
    assert_eq!(t["pairs"][0]["negotiated"], false, "{t}");
    src.ok(&["resume", "op2"]);
    wait_for("the guest to boot again", 90, || boots() > before);
    wait_for("the guest to negotiate again", 90, || {
        src.json(&["teaming", "op2", "--json"])["pairs"][0]["negotiated"] == true
    });
    drop(serial);

    // A crash (kill -9) is told with its cause.
    let pid: u32 = std::fs::read_to_string(src.run_dir("op2").join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    wait_for("the killed QEMU to be gone", 10, || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert_eq!(src.ok(&["domstate", "op2"]).trim(), "shut off");
    let log = log_of(&src, "op2");
    assert!(
        log.contains(&format!(
            "teamvirt: qemu process {pid} killed by signal 9 (SIGKILL)"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "shutting down, reason=crashed: qemu process {pid} killed by signal 9 (SIGKILL)"
        )),
        "{log}"
    );
    assert!(
        log.contains("VF 0000:3b:02.1 of network 'vfpool' released"),
        "{log}"
    );

    // A migration is told on both sides.
    src.ok(&[
        "start",
        "op2",
        "--emulate-vf",
        "--accel",
        "tcg",
        "--wait-failover=90",
    ]);
    let dst_dir = dst.state.display().to_string();
    src.ok(&[
        "migrate",
        "op2",
        "--dest-state-dir",
        &dst_dir,
        "--persistent",
    ]);
    let log = log_of(&src, "op2");
    assert!(log.contains("migration out: wait-unplug"), "{log}");
    assert!(log.contains("migration out: completed"), "{log}");
    assert!(log.contains("shutting down, reason=migrated"), "{log}");
    let dlog = log_of(&dst, "op2");
    assert!(dlog.contains("(incoming migration)"), "{dlog}");
    assert!(
        dlog.contains("migration in: completed, guest running"),
        "{dlog}"
    );

    // destroy, then start-autostart brings it back.
    dst.ok(&["destroy", "op2"]);
    assert!(log_of(&dst, "op2").contains("shutting down, reason=destroyed"));
    dst.ok(&["autostart", "op2"]);
    let out = dst.ok(&["start-autostart", "--emulate-vf", "--accel", "tcg"]);
    assert!(out.contains("Domain 'op2' started"), "{out}");
    assert_eq!(dst.ok(&["domstate", "op2"]).trim(), "running");
    let out = dst.ok(&["start-autostart", "--emulate-vf", "--accel", "tcg"]);
    assert!(out.contains("Domain 'op2' is already running"), "{out}");
    dst.ok(&["destroy", "op2"]);
}

/// The systemd unit in the repo runs the verb that exists.
#[test]
fn systemd_unit_runs_start_autostart() {
    let unit =
        teamvirt_testinfra::workspace_root().join("contrib/systemd/teamvirt-autostart.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert!(words.next().unwrap().ends_with("/teamvirt"));
    let verb: Vec<&str> = words.collect();
    assert_eq!(verb, ["start-autostart"]);
    assert!(verbs().iter().any(|v| v == "start-autostart"));
    assert!(text.contains("WantedBy=multi-user.target"));
}
