//! End-to-end through the `teamvirt` binary under TCG with the test guest:
//! a VF pool network and a q35 domain with a teaming pair, started in lab
//! mode; the pair negotiates, the primary is plugged, the guest shows a
//! net_failover master with two slaves, the pool hands out its only VF
//! once, a destroyed or dead QEMU gives the VF back. Negative: a guest
//! without virtio_net failover support is reported as not negotiated.
//! Skips only when QEMU is not installed.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Env;
use serde_json::Value;
use teamvirt_testinfra::xml::{pool_xml, PairDomain};
use teamvirt_testinfra::{guest_lock, qemu_or_skip, test_guest, SerialLog};

const MAC: &str = "52:54:00:12:34:56";

fn serial(e: &Env, dom: &str) -> SerialLog {
    SerialLog::new(e.run_dir(dom).join("serial.log"))
}

/// A pool with exactly one VF.
fn net() -> String {
    pool_xml("vfpool", &["0000:3b:02.1"])
}

fn domain(name: &str, kernel: &Path, initrd: &Path, cmdline: &str) -> String {
    PairDomain::new(name)
        .memory_mib(256)
        .mac(MAC)
        .standby("ua-backup0")
        .boot(kernel, initrd, cmdline)
        .memballoon(None)
        .xml()
}

fn pair(v: &Value) -> &Value {
    let pairs = v["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{v}");
    &pairs[0]
}

#[test]
fn failover_pair_negotiates_in_lab_mode_and_vf_returns() {
    if qemu_or_skip("failover_pair_negotiates_in_lab_mode_and_vf_returns").is_none() {
        return;
    }
    let guest = test_guest().expect("test guest builds");
    let _lock = guest_lock();
    let e = Env::new();
    let net = e.write("net.xml", &net());
    let d1 = e.write(
        "tv1.xml",
        &domain("tv1", &guest.kernel, &guest.initrd, &guest.cmdline("")),
    );
    let d2 = e.write(
        "tv2.xml",
        &domain("tv2", &guest.kernel, &guest.initrd, &guest.cmdline("")),
    );
    e.ok(&["net-define", &net]);
    e.ok(&["define", &d1]);
    e.ok(&["define", &d2]);
    let out = e.ok(&["list", "--all"]);
    assert!(out.contains("tv1") && out.contains("shut off"), "{out}");

    let (out, err) = e.ok2(&[
        "start",
        "tv1",
        "--emulate-vf",
        "--accel",
        "tcg",
        "--wait-failover=120",
    ]);
    assert!(out.contains("Domain 'tv1' started"), "{out}");
    assert!(
        err.contains("lab mode: failover primary hostdev0 (stands in for VF 0000:3b:02.1) emulated by vmxnet3"),
        "substitution is printed: {err}"
    );
    assert_eq!(e.vfs_used("vfpool"), 1);

    let t = e.json(&["teaming", "tv1", "--json"]);
    let p = pair(&t);
    assert_eq!(p["standby"], "ua-backup0");
    assert_eq!(p["primary"], "hostdev0");
    assert_eq!(p["negotiated"], true, "{t}");
    assert_eq!(p["plugged"], true, "{t}");
    assert_eq!(p["vf"], "0000:3b:02.1");
    assert_eq!(p["emulated"], true);

    // The guest bonds both NICs under a net_failover master.
    let st = serial(&e, "tv1")
        .wait_for_failover_master(2, Duration::from_secs(60))
        .expect("guest failover master");
    let g = st.failover_master(2).unwrap();
    assert!(g.standby.is_some() && g.primaries.len() == 1, "{g:?}");
    // The guest drives the stand-in with its own driver, as it would a VF.
    assert_eq!(g.primaries[0].driver.as_deref(), Some("vmxnet3"), "{g:?}");

    // Live XML records the VF and the substitution; the inactive XML is untouched.
    let live = e.ok(&["dumpxml", "tv1"]);
    assert!(
        live.contains("<teamvirt:vf network='vfpool' device='hostdev0' address='0000:3b:02.1'/>"),
        "{live}"
    );
    assert!(
        live.contains("<teamvirt:emulated-primary device='hostdev0' model='vmxnet3'"),
        "{live}"
    );
    assert!(
        live.contains("<interface type='hostdev' managed='yes'>"),
        "{live}"
    );
    let inactive = e.ok(&["dumpxml", "--inactive", "tv1"]);
    assert!(
        !inactive.contains("teamvirt:")
            && !inactive.contains("<metadata")
            && inactive.contains("<source network='vfpool'/>"),
        "{inactive}"
    );
    assert_eq!(e.ok(&["domstate", "tv1"]).trim(), "running");

    // The pool's only VF is taken: libvirt's exhaustion error.
    let err = e.fail(&["start", "tv2", "--emulate-vf", "--accel", "tcg"]);
    assert!(
        err.contains(
            "network 'vfpool' requires exclusive access to interfaces, but none are available"
        ),
        "{err}"
    );
    assert_eq!(e.ok(&["domstate", "tv2"]).trim(), "shut off");

    let (out, err) = e.ok2(&["destroy", "tv1"]);
    assert!(out.contains("Domain 'tv1' destroyed"), "{out}");
    assert!(
        err.contains("VF 0000:3b:02.1 (hostdev0) returned to network 'vfpool'"),
        "{err}"
    );
    assert_eq!(e.vfs_used("vfpool"), 0);
    assert_eq!(e.ok(&["domstate", "tv1"]).trim(), "shut off");

    // A QEMU that dies behind teamvirt's back is noticed by the next command.
    e.ok(&["start", "tv2", "--emulate-vf", "--accel", "tcg"]);
    assert_eq!(e.vfs_used("vfpool"), 1);
    let pid = std::fs::read_to_string(e.state.join("run/tv2/pid"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap()
        .success());
    // Gone once its parent reaped it; then the next command frees the VF.
    let t0 = std::time::Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "killed QEMU {pid} lingers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(e.vfs_used("vfpool"), 0);
    assert_eq!(e.ok(&["domstate", "tv2"]).trim(), "shut off");

    // A running domain cannot be started again (virsh's text).
    e.ok(&["start", "tv1", "--emulate-vf", "--accel", "tcg"]);
    let err = e.fail(&["start", "tv1", "--emulate-vf", "--accel", "tcg"]);
    assert_eq!(err.trim(), "error: Domain is already active");
    // shutdown: the test guest powers off on the ACPI power button; QEMU
    // then exits by itself and the next command of any verb (here
    // net-list) gives the VF back, without anyone asking for the state.
    serial(&e, "tv1")
        .wait_for_line("E2E ACPID", Duration::from_secs(60))
        .expect("guest acpid up");
    let out = e.ok(&["shutdown", "tv1"]);
    assert!(out.contains("Domain 'tv1' is being shutdown"), "{out}");
    serial(&e, "tv1")
        .wait_for_line("E2E POWEROFF", Duration::from_secs(60))
        .expect("guest powers off");
    let t0 = std::time::Instant::now();
    while e.vfs_used("vfpool") != 0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "VF not returned");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!e.run_dir("tv1").join("state.json").exists());
    assert_eq!(e.ok(&["domstate", "tv1"]).trim(), "shut off");
    let err = e.fail(&["shutdown", "tv1"]);
    assert!(
        err.contains("error: Requested operation is not valid: domain is not running"),
        "{err}"
    );
    e.ok(&["undefine", "tv1"]);
    e.ok(&["undefine", "tv2"]);
    e.ok(&["net-undefine", "vfpool"]);
}

#[test]
fn guest_without_failover_support_is_reported() {
    if qemu_or_skip("guest_without_failover_support_is_reported").is_none() {
        return;
    }
    let guest = test_guest().expect("test guest builds");
    let _lock = guest_lock();
    let e = Env::new();
    let net = e.write("net.xml", &net());
    let d = e.write(
        "tv.xml",
        &domain(
            "tv",
            &guest.kernel,
            &guest.initrd,
            &guest.cmdline("e2e.skip=virtio_net"),
        ),
    );
    e.ok(&["net-define", "--emulate-vf", &net]);
    e.ok(&["define", &d]);
    // Lab mode comes from the network here.
    let err = e.fail(&["start", "tv", "--accel", "tcg", "--wait-failover=15"]);
    assert!(
        err.contains("failover not negotiated for domain 'tv' within 15 s"),
        "{err}"
    );
    assert!(
        err.contains(
            "pair ua-backup0 (standby) / hostdev0 (primary): the guest did not negotiate failover"
        ),
        "{err}"
    );
    assert!(
        err.contains("lab mode") || err.contains("emulated"),
        "substitution printed: {err}"
    );

    let t = e.json(&["teaming", "tv", "--json"]);
    let p = pair(&t);
    assert_eq!(p["negotiated"], false, "{t}");
    assert_eq!(p["plugged"], false, "{t}");
    // No guest agent channel: said plainly, not an error.
    assert_eq!(t["guest"]["status"], "no-agent", "{t}");
    let out = e.ok(&["teaming", "tv"]);
    assert!(out.contains("Guest: no guest agent"), "{out}");
    let err = e.fail(&["domifaddr", "tv", "--source", "agent"]);
    assert!(
        err.contains("error: argument unsupported: QEMU guest agent is not configured"),
        "{err}"
    );

    // A pool with a VF in use cannot be undefined.
    let err = e.fail(&["net-undefine", "vfpool"]);
    assert!(
        err.contains("error: Requested operation is not valid: network 'vfpool' still has VFs in use (0000:3b:02.1 by tv/hostdev0)"),
        "{err}"
    );
    // Undefining a running domain makes it transient (virsh does the
    // same): it keeps running and listed, and is gone once stopped.
    e.ok(&["undefine", "tv"]);
    assert!(e.ok(&["list"]).contains(" tv "), "transient domain listed");
    assert_eq!(e.ok(&["domstate", "tv"]).trim(), "running");
    e.ok(&["destroy", "tv"]);
    assert_eq!(e.vfs_used("vfpool"), 0);
    assert!(!e.ok(&["list", "--all"]).contains(" tv "));
    let err = e.fail(&["domstate", "tv"]);
    assert!(err.contains("failed to get domain 'tv'"), "{err}");
    e.ok(&["net-undefine", "vfpool"]);
}
