//! Live migration through the `teamvirt` binary under TCG with the test
//! guest in lab mode, between two state directories of this host (each
//! with its own VF pool `vfpool`):
//!
//! * a negotiated pair: phases in order, UNPLUG_PRIMARY on the source,
//!   FAILOVER_NEGOTIATED on the destination, the guest alive with its
//!   primary enslaved again there (serial console), the source VF free;
//!   then back the other way;
//! * a paused guest cannot unplug: the deadline fires, the migration is
//!   cancelled and the primary is verified back on the source, also after
//!   the guest resumes;
//! * the destination QEMU killed mid-migration, and `domjobabort` from
//!   another process (with `domjobinfo` showing the job): the VM keeps
//!   running on the source with its primary; a non-teaming hostdev is
//!   refused with libvirt's text;
//! * a guest without failover support migrates plainly, with a warning;
//! * a `migrate` process SIGKILLed mid-copy is settled by the next command
//!   of any verb (`domstate`, `list`, `domjobinfo`), from either side;
//! * a destination state directory that does not exist is refused up front.
//!
//! Skips only when QEMU is not installed.

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use teamvirt_testinfra::{guest_lock, qemu_or_skip, test_guest, GuestLock, SerialLog};

const NAME: &str = "mig";
const BOOT: Duration = Duration::from_secs(120);

struct Hosts {
    _dir: tempfile::TempDir,
    src: PathBuf,
    dst: PathBuf,
    files: PathBuf,
}

fn tv(state: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .args(args)
        .env("TEAMVIRT_STATE_DIR", state)
        .output()
        .unwrap();
    eprintln!(
        "$ teamvirt {} [{}]\n{}{}",
        args.join(" "),
        state.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(state: &Path, args: &[&str]) -> String {
    let out = tv(state, args);
    assert!(out.status.success(), "teamvirt {} failed", args.join(" "));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

mod migjson;

use migjson::{events, has_qemu_event, phases, qmp};
use teamvirt_testinfra::xml::{teaming_domain_xml, vfpool_network_xml as network_xml};

impl Hosts {
    /// Two state directories with a lab-mode VF pool each, and the domain
    /// defined on the source.
    fn new(cmdline_extra: &str, pairs: usize) -> Hosts {
        let guest = test_guest().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        let h = Hosts {
            src: dir.path().join("src"),
            dst: dir.path().join("dst"),
            files: dir.path().join("files"),
            _dir: dir,
        };
        std::fs::create_dir_all(&h.files).unwrap();
        let net = h.files.join("net.xml");
        std::fs::write(&net, network_xml(2 * pairs)).unwrap();
        let dom = h.files.join("dom.xml");
        std::fs::write(
            &dom,
            teaming_domain_xml(
                NAME,
                &guest.kernel,
                &guest.initrd,
                &guest.cmdline(cmdline_extra),
                pairs,
            ),
        )
        .unwrap();
        for s in [&h.src, &h.dst] {
            ok(s, &["net-define", "--emulate-vf", net.to_str().unwrap()]);
        }
        ok(&h.src, &["define", dom.to_str().unwrap()]);
        h
    }

    fn serial(&self, state: &Path) -> SerialLog {
        SerialLog::new(state.join("run").join(NAME).join("serial.log"))
    }

    fn qmp(&self, state: &Path) -> PathBuf {
        state.join("run").join(NAME).join("qmp.sock")
    }

    fn vfs_used(&self, state: &Path) -> u64 {
        let v: Value = serde_json::from_str(&ok(state, &["net-list", "--all", "--json"])).unwrap();
        v.as_array().unwrap()[0]["vfs_used"].as_u64().unwrap()
    }

    fn pairs(&self, state: &Path) -> Vec<Value> {
        let v: Value = serde_json::from_str(&ok(state, &["teaming", "--json", NAME])).unwrap();
        v["pairs"].as_array().unwrap().clone()
    }

    fn destroy_all(&self) {
        for s in [&self.src, &self.dst] {
            let _ = tv(s, &["destroy", NAME]);
        }
    }
}

impl Drop for Hosts {
    /// A failed assertion must not leave a guest running.
    fn drop(&mut self) {
        for s in [&self.src, &self.dst] {
            let _ = Command::new(env!("CARGO_BIN_EXE_teamvirt"))
                .args(["destroy", NAME])
                .env("TEAMVIRT_STATE_DIR", s)
                .output();
        }
    }
}

fn start(h: &Hosts, wait: bool) {
    let mut args = vec!["start", "--emulate-vf", NAME];
    if wait {
        args.push("--wait-failover=120");
    }
    ok(&h.src, &args);
}

/// The guest shows its failover master with both slaves; returns its uptime.
fn enslaved(log: &SerialLog) -> f64 {
    log.wait_for_failover_master(2, BOOT)
        .unwrap_or_else(|e| panic!("{e}"))
        .uptime
}

/// A guest booted on the source with its pair enslaved. Fields drop in
/// order: the guests are destroyed before the guest lock is released.
struct Booted {
    h: Hosts,
    log: SerialLog,
    _lock: GuestLock,
}

fn booted(test: &str) -> Option<Booted> {
    qemu_or_skip(test)?;
    let lock = guest_lock();
    let h = Hosts::new("", 1);
    start(&h, true);
    let log = h.serial(&h.src);
    enslaved(&log);
    Some(Booted {
        h,
        log,
        _lock: lock,
    })
}

/// `migrate --json --bandwidth MIB` from `from` to `to`, read until the
/// `active` phase (the lines seen are returned, the rest is left to read).
fn migrate_until_active(
    from: &Path,
    to: &Path,
    mib: &str,
) -> (Child, Lines<BufReader<ChildStdout>>, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .args(["migrate", "--json", "--bandwidth", mib, "--dest-state-dir"])
        .arg(to)
        .arg(NAME)
        .env("TEAMVIRT_STATE_DIR", from)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        let active = l.contains("\"phase\":\"active\"");
        seen.push(l);
        if active {
            break;
        }
    }
    (child, lines, seen)
}

#[test]
fn negotiated_pair_migrates_and_back() {
    let Some(Booted { h, .. }) = booted("negotiated_pair_migrates_and_back") else {
        return;
    };
    assert_eq!(h.vfs_used(&h.src), 1);

    for (from, to) in [(&h.src, &h.dst), (&h.dst, &h.src)] {
        let before = h.serial(from).latest_state().map_or(0.0, |s| s.uptime);
        let first = from == &h.src;
        let mut args = vec![
            "migrate",
            "--json",
            "--dest-state-dir",
            to.to_str().unwrap(),
            NAME,
        ];
        if first {
            args.extend(["--persistent", "--undefinesource"]);
        }
        let out = tv(from, &args);
        assert!(out.status.success());
        let ev = events(&String::from_utf8_lossy(&out.stdout));
        let ph = phases(&ev);
        // QEMU enters wait-unplug only while an unplug is still pending
        // when the setup ends: a guest that let go of its primary during
        // the setup goes straight to active (seen on a loaded machine).
        let waited = ph.iter().any(|p| p == "wait-unplug");
        let order = [
            "prepare",
            "setup",
            "wait-unplug",
            "active",
            "completed",
            "finish",
        ];
        let idx: Vec<usize> = order
            .iter()
            .filter(|p| waited || **p != "wait-unplug")
            .map(|p| {
                ph.iter()
                    .position(|x| x == p)
                    .unwrap_or_else(|| panic!("no phase {p} in {ph:?}"))
            })
            .collect();
        assert!(
            idx.windows(2).all(|w| w[0] < w[1]),
            "phases out of order: {ph:?}"
        );
        assert!(has_qemu_event(&ev, "source", "UNPLUG_PRIMARY"), "{ev:?}");
        assert!(
            has_qemu_event(&ev, "destination", "FAILOVER_NEGOTIATED"),
            "{ev:?}"
        );
        let res = ev.last().unwrap();
        assert_eq!(res["event"], "result");
        assert_eq!(res["ok"], true);
        assert_eq!(res["outcome"]["job"]["unplugged"][0], "hostdev0");
        assert_eq!(
            res["outcome"]["job"]["wait_unplug_ms"].as_u64().is_some(),
            waited,
            "{res}"
        );

        // The destination runs with its primary plugged and negotiated ...
        let pairs = h.pairs(to);
        assert_eq!(pairs[0]["negotiated"], true, "{pairs:?}");
        assert_eq!(pairs[0]["plugged"], true, "{pairs:?}");
        assert_eq!(
            pairs[0]["emulated"], true,
            "lab mode carried over: {pairs:?}"
        );
        assert_eq!(h.vfs_used(to), 1);
        // ... the guest is alive and enslaved the primary again there ...
        let log = h.serial(to);
        let st = log
            .wait_for_state(
                "master with 2 slaves after the migration",
                |s| s.uptime > before && s.failover_master(2).is_some(),
                BOOT,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        log.wait_for_heartbeat_after(st.uptime, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        // ... and the source is gone, its VF back in its pool.
        assert!(!tv(from, &["domstate", NAME]).stdout.starts_with(b"running"));
        assert_eq!(h.vfs_used(from), 0);
        assert!(!from.join("run").join(NAME).join("job.json").exists());
        // virsh semantics: --persistent defines it on the destination,
        // --undefinesource forgets it on the source; without them the
        // destination copy is transient and the source keeps its definition.
        if first {
            assert!(tv(to, &["dumpxml", "--inactive", NAME]).status.success());
            assert!(!tv(from, &["dumpxml", "--inactive", NAME]).status.success());
            assert_eq!(res["outcome"]["defined_on_destination"], true);
            assert_eq!(res["outcome"]["undefined_on_source"], true);
        } else {
            assert_eq!(res["outcome"]["defined_on_destination"], false);
            assert!(tv(from, &["dumpxml", "--inactive", NAME]).status.success());
        }
    }
    h.destroy_all();
}

#[test]
fn paused_guest_deadline_rolls_back() {
    let Some(Booted { h, log, .. }) = booted("paused_guest_deadline_rolls_back") else {
        return;
    };
    assert!(qmp(&h.qmp(&h.src), "stop").get("return").is_some());

    let t = Instant::now();
    let out = tv(
        &h.src,
        &[
            "migrate",
            "--json",
            "--unplug-timeout",
            "3",
            "--dest-state-dir",
            h.dst.to_str().unwrap(),
            NAME,
        ],
    );
    assert!(!out.status.success());
    // QEMU alone would sit in `cancelling` for 30 s.
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("operation failed: migration out job: the guest did not unplug primary hostdev0 within 3 s"),
        "{stderr}"
    );
    let ev = events(&String::from_utf8_lossy(&out.stdout));
    assert!(ev
        .iter()
        .any(|e| e["event"] == "warning" && e["message"].as_str().unwrap().contains("is paused")));
    assert!(phases(&ev).contains(&"wait-unplug".to_owned()));
    let res = ev.last().unwrap();
    assert_eq!(res["ok"], false);
    assert_eq!(res["primaries_back"], true, "{res}");

    // Still paused, as the user left it, with the primary on the bus.
    let st = qmp(&h.qmp(&h.src), "query-status");
    assert_eq!(st["return"]["status"], "paused", "{st}");
    assert_eq!(h.pairs(&h.src)[0]["plugged"], true);
    assert_eq!(h.vfs_used(&h.dst), 0);
    assert!(!h.dst.join("run").join(NAME).join("state.json").exists());

    // Resumed, the guest keeps (re-enslaves) its primary: no pending eject.
    qmp(&h.qmp(&h.src), "cont");
    let up = log.latest_state().map_or(0.0, |s| s.uptime);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(h.pairs(&h.src)[0]["plugged"], true);
    let st = log
        .wait_for_state(
            "master with 2 slaves after resume",
            |s| s.uptime >= up && s.failover_master(2).is_some(),
            BOOT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(st.failover_master(2).is_some());
    h.destroy_all();
}

#[test]
fn dest_killed_and_aborted_jobs_keep_the_vm_on_the_source() {
    let Some(Booted { h, log, .. }) =
        booted("dest_killed_and_aborted_jobs_keep_the_vm_on_the_source")
    else {
        return;
    };

    for how in ["kill-destination", "domjobabort", "ctrl-c"] {
        // A bandwidth cap keeps the copy running for seconds.
        let (mut child, lines, mut seen) = migrate_until_active(&h.src, &h.dst, "10");
        // The figures appear with the first statistics poll after `active`;
        // on a loaded machine that can take a while.
        let t = Instant::now();
        let info = loop {
            let info = ok(&h.src, &["domjobinfo", NAME]);
            if info.contains("Data processed:") || t.elapsed() > Duration::from_secs(15) {
                break info;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(info.contains("Phase:") && info.contains("active"), "{info}");
        assert!(info.contains("Data processed:"), "{info}");
        let incoming = ok(&h.dst, &["domjobinfo", NAME]);
        assert!(incoming.contains("Migration in"), "{incoming}");
        let expect = match how {
            "kill-destination" => {
                let pid =
                    std::fs::read_to_string(h.dst.join("run").join(NAME).join("pid")).unwrap();
                assert!(Command::new("kill")
                    .args(["-9", pid.trim()])
                    .status()
                    .unwrap()
                    .success());
                "operation failed: migration out job: the destination QEMU exited"
            }
            "domjobabort" => {
                ok(&h.src, &["domjobabort", NAME]);
                "operation aborted: migration out job: canceled by client"
            }
            _ => {
                assert!(Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status()
                    .unwrap()
                    .success());
                "operation aborted: migration out job: interrupted (SIGINT)"
            }
        };
        seen.extend(lines.map(|l| l.unwrap()));
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        eprintln!("{how}:\n{}\n{stderr}", seen.join("\n"));
        assert!(!status.success());
        assert!(stderr.contains(expect), "{stderr}");
        let res: Value = serde_json::from_str(seen.last().unwrap()).unwrap();
        assert_eq!(res["primaries_back"], true, "{res}");

        // The VM runs on the source with its primary; nothing is left on
        // the destination.
        assert!(ok(&h.src, &["domstate", NAME]).starts_with("running"));
        let p = h.pairs(&h.src);
        assert_eq!(
            (p[0]["negotiated"].clone(), p[0]["plugged"].clone()),
            (Value::Bool(true), Value::Bool(true))
        );
        assert_eq!(h.vfs_used(&h.src), 1);
        assert_eq!(h.vfs_used(&h.dst), 0);
        assert!(!h.dst.join("run").join(NAME).join("state.json").exists());
        let out = tv(&h.src, &["domjobinfo", NAME]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("None"));
        let out = tv(&h.src, &["domjobabort", NAME]);
        assert!(String::from_utf8_lossy(&out.stderr)
            .contains("Requested operation is not valid: no job is active on the domain"));
        let up = log.latest_state().map_or(0.0, |s| s.uptime);
        log.wait_for_state(
            "master with 2 slaves again",
            |s| s.uptime >= up && s.failover_master(2).is_some(),
            BOOT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    // A non-teaming hostdev blocks the migration with libvirt's text. No
    // VF can be passed through on this host, so the hostdev is put into the
    // running domain's live XML directly (as a hot-plug would record it).
    let live = h.src.join("run").join(NAME).join("live.xml");
    let xml = std::fs::read_to_string(&live).unwrap();
    let xml = xml.replacen(
        "</devices>",
        "  <hostdev mode='subsystem' type='pci' managed='yes'>\n      <source>\n        <address domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>\n      </source>\n    </hostdev>\n  </devices>",
        1,
    );
    std::fs::write(&live, xml).unwrap();
    let out = tv(
        &h.src,
        &["migrate", "--dest-state-dir", h.dst.to_str().unwrap(), NAME],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: Operation not supported: cannot migrate a domain with <hostdev mode='subsystem' type='pci'>"),
        "{stderr}"
    );
    assert!(stderr.contains("live.xml:"), "{stderr}");
    assert!(ok(&h.src, &["domstate", NAME]).starts_with("running"));
    assert!(!h.dst.join("run").join(NAME).join("state.json").exists());
    h.destroy_all();
}

#[test]
fn guest_without_failover_migrates_plain() {
    let Some(_) = qemu_or_skip("guest_without_failover_migrates_plain") else {
        return;
    };
    let _lock = guest_lock();
    let h = Hosts::new("e2e.skip=virtio_net", 1);
    start(&h, false);
    let log = h.serial(&h.src);
    log.wait_for_line("E2E MODULES", BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.pairs(&h.src)[0]["negotiated"], false);

    let out = tv(
        &h.src,
        &[
            "migrate",
            "--json",
            "--dest-state-dir",
            h.dst.to_str().unwrap(),
            NAME,
        ],
    );
    assert!(out.status.success());
    let ev = events(&String::from_utf8_lossy(&out.stdout));
    assert!(
        ev.iter().any(|e| e["event"] == "warning"
            && e["message"]
                .as_str()
                .unwrap()
                .contains("never negotiated failover")),
        "{ev:?}"
    );
    assert!(!has_qemu_event(&ev, "source", "UNPLUG_PRIMARY"), "{ev:?}");
    let ph = phases(&ev);
    assert!(!ph.contains(&"wait-unplug".to_owned()), "{ph:?}");
    assert!(ph.contains(&"completed".to_owned()), "{ph:?}");
    assert!(ok(&h.dst, &["domstate", NAME]).starts_with("running"));
    let p = h.pairs(&h.dst);
    assert_eq!(
        p[0]["negotiated"], false,
        "still hidden on the destination: {p:?}"
    );
    assert_eq!(h.vfs_used(&h.src), 0);
    let dlog = h.serial(&h.dst);
    dlog.wait_for_line("E2E HB", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    h.destroy_all();
}

/// A mistyped `--dest-state-dir` is refused before anything happens, and
/// is not created: after an unknown domain (virsh looks the domain up
/// first) and before a domain that does not run (virsh connects to the
/// destination before the migration checks the domain).
#[test]
fn missing_destination_state_dir_is_refused_up_front() {
    let Some(_) = qemu_or_skip("missing_destination_state_dir_is_refused_up_front") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let typo = dir.path().join("dts");
    let existing = dir.path().join("dst");
    std::fs::create_dir(&existing).unwrap();
    let net = dir.path().join("net.xml");
    std::fs::write(&net, network_xml(2)).unwrap();
    let dom = dir.path().join("dom.xml");
    let k = Path::new("/nonexistent/vmlinuz");
    std::fs::write(&dom, teaming_domain_xml(NAME, k, k, "", 1)).unwrap();
    let migrate = |name: &str, to: &Path| {
        let out = tv(
            &src,
            &["migrate", "--dest-state-dir", to.to_str().unwrap(), name],
        );
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let err = migrate("nosuch", &typo);
    assert!(
        err.contains("Domain not found: no domain with matching name 'nosuch'"),
        "{err}"
    );
    ok(&src, &["net-define", "--emulate-vf", net.to_str().unwrap()]);
    ok(&src, &["define", dom.to_str().unwrap()]);
    let err = migrate(NAME, &typo);
    assert!(
        err.contains(&format!(
            "error: failed to connect to the hypervisor: the destination state directory {} does not exist",
            typo.display()
        )),
        "{err}"
    );
    assert!(!typo.exists(), "the mistyped destination was created");
    assert!(!src.join("run").join(NAME).exists());
    let err = migrate(NAME, &existing);
    assert!(
        err.contains("Requested operation is not valid: domain is not running"),
        "{err}"
    );
}

/// Both state directories agree: the domain runs in `owner` only, with
/// its primary plugged, and only `owner`'s pool holds a VF.
fn runs_only_on(h: &Hosts, owner: &Path) {
    let other = if owner == h.src { &h.dst } else { &h.src };
    assert!(ok(owner, &["domstate", NAME]).starts_with("running"));
    assert!(!tv(other, &["domstate", NAME])
        .stdout
        .starts_with(b"running"));
    assert!(!tv(other, &["domstate", NAME]).stdout.starts_with(b"paused"));
    assert_eq!((h.vfs_used(owner), h.vfs_used(other)), (1, 0));
    // The destination plugs its primary while the device state loads; on
    // a loaded machine the hotplug can show on the bus a little later.
    let t = Instant::now();
    let p = loop {
        let p = h.pairs(owner);
        if p[0]["plugged"] == true || t.elapsed() > Duration::from_secs(20) {
            break p;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(p[0]["plugged"], true, "{p:?}");
    for s in [&h.src, &h.dst] {
        assert!(!s.join("run").join(NAME).join("job.json").exists());
    }
}

#[test]
fn killed_migrate_process_is_settled_by_the_next_command() {
    let Some(Booted { h, .. }) = booted("killed_migrate_process_is_settled_by_the_next_command")
    else {
        return;
    };
    // SIGKILLed during the copy, and QEMU finishes it alone: the source
    // sits in postmigrate, the destination paused. Any teamvirt command
    // would settle it now, so the end of the copy is watched over raw QMP
    // (nobody holds the monitors once the process is dead).
    let (mut child, _, _) = migrate_until_active(&h.src, &h.dst, "40");
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Instant::now();
    let status = |s: &Path| qmp(&h.qmp(s), "query-migrate")["return"]["status"].clone();
    while status(&h.dst) != "completed" || status(&h.src) != "completed" {
        assert!(t.elapsed() < Duration::from_secs(60), "copy never ended");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A plain `domstate` on the source settles it for both sides: the dead
    // process's job is not shown as running, and the domain ends up
    // running on the destination only.
    let out = tv(&h.src, &["domstate", NAME]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: stale migration job"), "{err}");
    assert!(err.contains("the destination received everything"), "{err}");
    assert!(out.stdout.starts_with(b"shut off"), "{out:?}");
    runs_only_on(&h, &h.dst);

    // SIGKILLed with most of the copy ahead (1 MiB/s): the next command of
    // any verb cancels it, the source keeps the domain with its primary
    // back. Settled by `list` on the destination's side, then by
    // `domjobinfo` on the source's.
    for (settler, verb) in [(&h.src, "list"), (&h.dst, "domjobinfo")] {
        let (mut child, _, _) = migrate_until_active(&h.dst, &h.src, "1");
        child.kill().unwrap();
        child.wait().unwrap();
        let args = if verb == "list" {
            vec![verb]
        } else {
            vec![verb, NAME]
        };
        let out = tv(settler, &args);
        assert!(out.status.success(), "{verb}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("the source keeps the domain"), "{verb}: {err}");
        assert!(
            err.contains("primary hostdev0 is plugged on the source"),
            "{verb}: {err}"
        );
        runs_only_on(&h, &h.dst);
    }

    // That run's 1 MiB/s cap stays set in the QEMU that now runs the
    // domain; a migration without --bandwidth must not inherit it (it
    // would never converge: the guest dirties more than 1 MiB/s).
    let out = Command::new("timeout")
        .arg("90")
        .arg(env!("CARGO_BIN_EXE_teamvirt"))
        .args(["migrate", "--dest-state-dir"])
        .arg(&h.src)
        .arg(NAME)
        .env("TEAMVIRT_STATE_DIR", &h.dst)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    runs_only_on(&h, &h.src);
    h.destroy_all();
}
