//! Lifecycle verbs through the `teamvirt` binary without booting a guest:
//! define/undefine/list/dumpxml round trips, libvirt's error texts, the
//! start refusal for a primary QEMU can never plug, and net-* verbs. They
//! need QEMU only for the capability probe (skipped without it).

mod common;

use common::{Env, StateVia};
use teamvirt_testinfra::xml::pool_xml;

/// The VF pool `pool`.
fn pool() -> String {
    pool_xml("pool", &["0000:3b:02.1", "0000:3b:02.2"])
}

fn domain(name: &str, primary_extra: &str, teaming: &str) -> String {
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <interface type='user'>
      <mac address='52:54:00:00:00:01'/>
      <model type='virtio'/>
      <teaming type='{teaming}'/>
      <alias name='ua-sb'/>
    </interface>
    <interface type='network'>
      <source network='pool'/>
      <mac address='52:54:00:00:00:01'/>
      <model type='virtio'/>
      <teaming type='transient' persistent='ua-sb'/>{primary_extra}
    </interface>
  </devices>
</domain>
"
    )
}

#[test]
fn define_list_dumpxml_undefine() {
    if teamvirt_testinfra::qemu_or_skip("define_list_dumpxml_undefine").is_none() {
        return;
    }
    // The state directory as an option after the verb.
    let e = Env::via(StateVia::FlagAfter);
    let f = e.write("d.xml", &domain("d1", "", "persistent"));
    assert!(e.ok(&["define", &f]).contains("Domain 'd1' defined from"));
    assert_eq!(
        e.ok(&["list"]).lines().filter(|l| l.contains("d1")).count(),
        0
    );
    assert!(e.ok(&["list", "--all"]).contains("shut off"));
    assert_eq!(e.ok(&["domstate", "d1"]).trim(), "shut off");
    let xml = e.ok(&["dumpxml", "d1"]);
    assert_eq!(xml, e.ok(&["dumpxml", "--inactive", "d1"]));
    // Define-time defaults were applied (uuid, root ports, addresses, and
    // the default emulator's path, as libvirt's post-parse does).
    assert!(
        xml.contains("<uuid>") && xml.contains("pcie-root-port"),
        "{xml}"
    );
    let qemu = teamvirt_testinfra::qemu_binary().unwrap();
    assert!(
        xml.contains(&format!("<emulator>{}</emulator>", qemu.display())),
        "{xml}"
    );
    // Redefining the canonical XML changes nothing and keeps the uuid.
    let again = e.write("again.xml", &xml);
    e.ok(&["define", &again]);
    assert_eq!(e.ok(&["dumpxml", "d1"]), xml);
    let err = e.fail(&["destroy", "d1"]);
    assert!(
        err.contains("error: Requested operation is not valid: domain is not running"),
        "{err}"
    );
    assert!(e
        .ok(&["undefine", "d1"])
        .contains("Domain 'd1' has been undefined"));
    let err = e.fail(&["dumpxml", "d1"]);
    assert!(
        err.contains("error: Domain not found: no domain with matching name 'd1'"),
        "{err}"
    );
}

#[test]
fn define_reports_libvirt_error_with_location() {
    if teamvirt_testinfra::qemu_or_skip("define_reports_libvirt_error_with_location").is_none() {
        return;
    }
    let e = Env::new();
    let f = e.write("bad.xml", &domain("d2", "", "none"));
    let err = e.fail(&["define", &f]);
    assert!(
        err.contains("error: unsupported configuration: unknown teaming type 'none'"),
        "{err}"
    );
    assert!(err.contains("bad.xml:9:"), "location: {err}");
    assert!(e.ok(&["list", "--all", "--name"]).trim().is_empty());
}

#[test]
fn start_refuses_a_primary_qemu_can_never_plug() {
    if teamvirt_testinfra::qemu_or_skip("start_refuses_a_primary_qemu_can_never_plug").is_none() {
        return;
    }
    let e = Env::new();
    e.ok(&["net-define", &e.write("n.xml", &pool())]);
    let on_root =
        "\n      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>";
    e.ok(&[
        "define",
        &e.write("d.xml", &domain("d3", on_root, "persistent")),
    ]);
    let err = e.fail(&["start", "d3", "--accel", "tcg", "--emulate-vf"]);
    assert!(
        err.contains(
            "unsupported configuration: domain 'd3' cannot work as defined, refusing to start it"
        ),
        "{err}"
    );
    assert!(err.contains("pcie.0"), "reason: {err}");
    assert!(err.contains("hint:"), "fix: {err}");
    assert!(
        err.contains("domains/d3.xml:"),
        "location in the stored definition: {err}"
    );
    // Nothing was taken from the pool, nothing runs.
    let nets: serde_json::Value =
        serde_json::from_str(&e.ok(&["net-list", "--all", "--json"])).unwrap();
    assert_eq!(nets[0]["vfs_used"], 0);
    assert_eq!(e.ok(&["domstate", "d3"]).trim(), "shut off");
}

/// A running lab-mode domain (QEMU runs its firmware, no guest boots):
/// the lab-mode line is said once in the log and in `dominfo`, a second
/// `suspend` does nothing and succeeds (libvirt), a second `resume` is
/// libvirt's error, and `start` of the domain once undefined (transient)
/// says it is running, not "Domain not found" (issue 19).
#[test]
fn running_domain_suspend_resume_and_transient_start() {
    if teamvirt_testinfra::qemu_or_skip("running_domain_suspend_resume_and_transient_start")
        .is_none()
    {
        return;
    }
    let e = Env::new();
    e.ok(&["net-define", &e.write("n.xml", &pool())]);
    e.ok(&["define", &e.write("d.xml", &domain("d5", "", "persistent"))]);
    e.ok(&["start", "d5", "--accel", "tcg", "--emulate-vf"]);
    let log = || std::fs::read_to_string(e.state.join("log/d5.log")).unwrap();
    let l = log();
    assert!(l.contains("lab mode: failover primary"), "{l}");
    assert!(!l.contains("lab mode: lab mode"), "{l}");
    let info = e.json(&["dominfo", "d5", "--json"]);
    let lab = info["lab_mode"][0].as_str().unwrap();
    assert!(lab.starts_with("failover primary "), "{info}");
    let text = e.ok(&["dominfo", "d5"]);
    assert!(text.contains("Lab mode:       failover primary "), "{text}");

    let suspended = || log().matches("suspended").count();
    for _ in 0..2 {
        assert_eq!(e.ok(&["suspend", "d5"]), "Domain 'd5' suspended\n");
        assert_eq!(e.ok(&["domstate", "d5"]).trim(), "paused");
        assert_eq!(suspended(), 1, "{}", log());
    }
    assert_eq!(e.ok(&["resume", "d5"]), "Domain 'd5' resumed\n");
    let err = e.fail(&["resume", "d5"]);
    assert!(
        err.ends_with("error: Requested operation is not valid: domain is already running\n"),
        "{err}"
    );
    assert_eq!(log().matches("resumed").count(), 1, "{}", log());

    // Undefined while it runs: transient, and still already running.
    e.ok(&["undefine", "d5"]);
    assert!(e.ok(&["list"]).contains("d5"));
    let err = e.fail(&["start", "d5", "--accel", "tcg", "--emulate-vf"]);
    assert_eq!(err, "error: Domain is already active\n");
    e.ok(&["destroy", "d5"]);
    let err = e.fail(&["start", "d5"]);
    assert!(err.contains("Domain not found"), "{err}");
}

/// Verbs that only read leave a state directory that does not exist alone
/// (issue 19: `list` as root created /var/lib/teamvirt and its tree), and
/// answer as on an empty one.
#[test]
fn read_only_verbs_create_no_state_directory() {
    let fresh = Env::new();
    let empty = Env::new();
    // Any verb that writes makes the tree.
    empty.fail(&["undefine", "nosuch"]);
    assert!(empty.state.join("domains").is_dir());
    for args in [
        &["list"][..],
        &["list", "--all"],
        &["list", "--name"],
        &["net-list"],
        &["net-list", "--json"],
        &["dominfo", "x"],
        &["dominfo", "x", "--json"],
        &["domiflist", "x"],
        &["domstate", "x"],
        &["domstate", "x", "--reason"],
        &["dumpxml", "x"],
        &["dumpxml", "--migratable", "x"],
        &["list", "--inactive", "--uuid"],
        &["net-list", "--all"],
        &["domid", "x"],
        &["domuuid", "x"],
        &["domname", "1"],
        &["hostname"],
        &["nodeinfo"],
        &["net-dumpxml", "x"],
    ] {
        let (a, b) = (fresh.run(args), empty.run(args));
        assert_eq!(a.status.code(), b.status.code(), "{args:?}");
        assert_eq!(a.stdout, b.stdout, "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr),
            "{args:?}"
        );
        assert!(
            !fresh.state.exists(),
            "{args:?} created {}",
            fresh.state.display()
        );
    }
    // `uri` names the directory, whether it exists or not.
    fresh.ok(&["uri"]);
    assert!(!fresh.state.exists());
}

#[test]
fn network_verbs() {
    if teamvirt_testinfra::qemu_or_skip("network_verbs").is_none() {
        return;
    }
    // The state directory as a global option before the verb (virsh style).
    let e = Env::via(StateVia::FlagBefore);
    let f = e.write("n.xml", &pool());
    assert!(e
        .ok(&["net-define", &f])
        .contains("Network pool defined from"));
    let out = e.ok(&["net-list", "--all"]);
    assert!(out.contains("pool") && out.contains("0/2 in use"), "{out}");
    let xml = e.ok(&["net-dumpxml", "pool"]);
    assert!(
        xml.contains("<forward mode='hostdev' managed='yes'>") && xml.contains("<uuid>"),
        "{xml}"
    );
    // Lab mode is network state, never libvirt XML.
    e.ok(&["net-define", "--emulate-vf", &f]);
    assert!(!e.ok(&["net-dumpxml", "pool"]).contains("emulate"));
    assert!(e.ok(&["net-list", "--all"]).contains("(lab mode)"));
    // A domain on a missing network cannot start.
    let d = domain("d4", "", "persistent").replace("network='pool'", "network='nope'");
    e.ok(&["define", &e.write("d.xml", &d)]);
    let err = e.fail(&["start", "d4", "--accel", "tcg"]);
    assert!(
        err.contains("Network not found: no network with matching name 'nope'"),
        "{err}"
    );
    assert!(e
        .ok(&["net-undefine", "pool"])
        .contains("Network pool has been undefined"));
    let err = e.fail(&["net-dumpxml", "pool"]);
    assert!(
        err.contains("Network not found: no network with matching name 'pool'"),
        "{err}"
    );
}

/// `--state-dir` works before the verb (global, like virsh's `-c`) and
/// after it, overrides `TEAMVIRT_STATE_DIR`, and all three reach the same
/// private directory. Needs no QEMU: networks are defined without a probe.
#[test]
fn state_dir_before_or_after_the_verb_or_from_the_environment() {
    use std::os::unix::fs::MetadataExt;

    let before = Env::via(StateVia::FlagBefore);
    let f = before.write("n.xml", &pool());
    before.ok(&["net-define", &f]);
    assert!(before.state.join("networks/pool.xml").exists());
    for via in [StateVia::FlagAfter, StateVia::Env] {
        // Same directory, another way of naming it.
        let mut other = Env::via(via);
        other.state = before.state.clone();
        let nets = other.json(&["net-list", "--all", "--json"]);
        assert_eq!(nets[0]["name"], "pool", "{via:?}");
    }
    // The option beats the environment variable, in either position.
    let decoy = Env::new();
    for pos in ["before", "after"] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_teamvirt"));
        c.env("TEAMVIRT_STATE_DIR", &decoy.state);
        if pos == "before" {
            c.arg("--state-dir")
                .arg(&before.state)
                .args(["net-list", "--all", "--json"]);
        } else {
            c.args(["net-list", "--all", "--json", "--state-dir"])
                .arg(&before.state);
        }
        let out = c.output().unwrap();
        let nets: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(nets[0]["name"], "pool", "--state-dir {pos} the verb");
    }
    // Private: every directory 0700, every file 0600.
    for entry in walk(&before.state) {
        let mode = std::fs::metadata(&entry).unwrap().mode() & 0o777;
        let want = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_owned()];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `shutdown --mode` takes virsh's modes; those teamvirt has not and
/// unknown ones are refused before anything is looked up. `domifaddr
/// --source agent` looks the domain up first, as virsh does.
#[test]
fn shutdown_modes_and_domifaddr_sources_are_checked() {
    let e = Env::new();
    let err = e.fail(&["shutdown", "nope", "--mode", "acpi,bogus"]);
    assert_eq!(
        err,
        "error: Unknown mode bogus value, expecting 'acpi', 'agent', 'initctl', 'signal' or 'paravirt'\n"
    );
    let err = e.fail(&["shutdown", "nope", "--mode", "initctl"]);
    assert!(
        err.contains("shutdown mode 'initctl' is not supported"),
        "{err}"
    );
    let err = e.fail(&["shutdown", "nope", "--mode", "agent"]);
    assert!(
        err.starts_with("error: failed to get domain 'nope'\n"),
        "{err}"
    );
    let err = e.fail(&["domifaddr", "nope", "--source", "agent"]);
    assert!(
        err.starts_with("error: failed to get domain 'nope'\n"),
        "{err}"
    );
}

/// virsh looks the object up first and says so when it is missing; the
/// driver's text follows. Needs no QEMU.
#[test]
fn missing_domain_or_network_is_reported_like_virsh() {
    let e = Env::new();
    for verb in [
        "start",
        "destroy",
        "shutdown",
        "domstate",
        "dumpxml",
        "undefine",
        "teaming",
        "domifaddr",
    ] {
        let err = e.fail(&[verb, "nope"]);
        assert!(
            err.starts_with(
                "error: failed to get domain 'nope'\n\
                 error: Domain not found: no domain with matching name 'nope'\n"
            ),
            "{verb}: {err}"
        );
    }
    for verb in ["net-dumpxml", "net-undefine"] {
        let err = e.fail(&[verb, "nope"]);
        assert!(
            err.starts_with(
                "error: failed to get network 'nope'\n\
                 error: Network not found: no network with matching name 'nope'\n"
            ),
            "{verb}: {err}"
        );
    }
}
