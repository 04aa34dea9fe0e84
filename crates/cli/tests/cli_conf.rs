//! `teamvirt validate` and `teamvirt format` as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn teamvirt(args: &[&str]) -> Output {
    teamvirt_env(args, &[])
}

/// With a state directory of these tests' own (the QEMU probe cache of the
/// placement checks lives there), plus `env`.
fn teamvirt_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    // One directory under the build's own tmp (cargo's CARGO_TARGET_TMPDIR),
    // reused by every run: only a probe cache lives there.
    let state = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("teamvirt-cli-conf-state");
    Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .args(args)
        .env("TEAMVIRT_STATE_DIR", &state)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn examples() -> PathBuf {
    teamvirt_testinfra::workspace_root().join("examples")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn examples_validate_cleanly() {
    let dom = examples().join("teaming-q35.xml");
    let net = examples().join("vfpool-network.xml");
    let out = teamvirt(&["validate", dom.to_str().unwrap(), net.to_str().unwrap()]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    let err = s(&out.stderr);
    assert!(
        err.contains("teaming-q35.xml: valid (0 error(s), 0 warning(s))"),
        "{err}"
    );
    assert!(
        err.contains("vfpool-network.xml: valid (0 error(s), 0 warning(s))"),
        "{err}"
    );
}

#[test]
fn invalid_domain_compiler_style() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.xml",
        "<domain type='kvm'>\n  <name>x</name>\n  <memory>1024</memory>\n  <os><type>hvm</type></os>\n  <devices>\n    <interface type='user'>\n      <teaming type='persistent'/>\n    </interface>\n  </devices>\n</domain>\n",
    );
    let out = teamvirt(&["validate", &f]);
    assert_eq!(out.status.code(), Some(1));
    let err = s(&out.stderr);
    let want = format!(
        "error: unsupported configuration: virtio-net teaming persistent interface must be <model type='virtio'/>, not 'rtl8139'\n  --> {f}:7:7\n  |\n7 |       <teaming type='persistent'/>\n  |       ^\n"
    );
    assert!(err.starts_with(&want), "{err}");
}

#[test]
fn json_report() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.xml", "<domain type='kvm'><name>x</name><memory>1</memory><os><type>hvm</type></os><devices><interface type='user'><teaming type='none'/></interface></devices></domain>");
    let good = examples().join("teaming-q35.xml");
    let out = teamvirt(&["validate", "--json", good.to_str().unwrap(), &bad]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["files"][0]["valid"], true);
    assert_eq!(v["files"][0]["kind"], "domain");
    // libvirt's schema refuses the value before libvirt's parse would
    // (`virsh define --validate`); the allowed ones are the hint.
    assert_eq!(
        v["files"][1]["diagnostics"][0]["message"],
        "XML document failed to validate against schema: Element teaming failed to validate attributes: type='none' is not allowed"
    );
    assert_eq!(v["files"][1]["diagnostics"][0]["code"], "schema-value");
    assert_eq!(
        v["files"][1]["diagnostics"][0]["hint"],
        "type is one of: persistent, transient"
    );
    assert_eq!(v["files"][1]["diagnostics"][0]["line"], 1);
    assert!(out.stderr.is_empty(), "{}", s(&out.stderr));
}

#[test]
fn warnings_keep_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "w.xml",
        "<domain type='kvm'><name>x</name><memory>1</memory><os><type>hvm</type></os><devices>\
         <interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/><teaming type='persistent'/><alias name='ua-sb'/></interface>\
         <interface type='hostdev'><mac address='52:54:00:00:00:02'/><source><address type='pci' bus='3' slot='16'/></source><teaming type='transient' persistent='ua-sb'/></interface>\
         </devices></domain>",
    );
    let out = teamvirt(&["validate", &f]);
    assert!(out.status.success());
    let err = s(&out.stderr);
    assert!(err.contains("warning: MAC 52:54:00:00:00:02"), "{err}");
    assert!(err.contains("= hint: "), "{err}");
}

#[test]
fn format_prints_canonical_xml() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("format_prints_canonical_xml") else {
        return;
    };
    let f = corpus.join("qemuxmlconfdata/net-virtio-teaming.x86_64-latest.xml");
    // The capabilities libvirt's output was made with (without --caps,
    // format applies the installed QEMU's defaults).
    let caps = corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let out = teamvirt(&[
        "format",
        "--caps",
        caps.to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    assert_eq!(s(&out.stdout), std::fs::read_to_string(&f).unwrap());
}

/// `format FILE` is `format --emulator` of the default emulator, as its
/// help says: QEMU's define-time defaults (the machine type expanded,
/// implicit controllers, addresses) as `define` + `dumpxml --inactive`
/// show them (issue 19: it printed the file as written).
#[test]
fn format_applies_the_default_emulators_defaults() {
    let Some(qemu) =
        teamvirt_testinfra::qemu_or_skip("format_applies_the_default_emulators_defaults")
    else {
        return;
    };
    let dom = examples().join("teaming-q35.xml");
    let dom = dom.to_str().unwrap();
    let plain = teamvirt(&["format", dom]);
    assert!(plain.status.success(), "{}", s(&plain.stderr));
    let explicit = teamvirt(&["format", "--emulator", qemu.to_str().unwrap(), dom]);
    assert!(explicit.status.success(), "{}", s(&explicit.stderr));
    let out = s(&plain.stdout);
    assert_eq!(out, s(&explicit.stdout));
    assert!(!out.contains("machine='q35'"), "{out}");
    assert!(out.contains("machine='pc-q35-"), "{out}");
    assert!(out.contains("<address type='pci'"), "{out}");
    assert!(!s(&plain.stderr).contains("note:"), "{}", s(&plain.stderr));

    // No default emulator to probe: as written, and said so.
    let bare = teamvirt_env(&["format", dom], &[("PATH", "/nonexistent")]);
    assert!(bare.status.success(), "{}", s(&bare.stderr));
    assert!(s(&bare.stdout).contains("machine='q35'"));
    assert!(
        s(&bare.stderr).contains("note: QEMU's define-time defaults not applied"),
        "{}",
        s(&bare.stderr)
    );
}

/// The README's hotplug files are `attach-device` input (an `<interface>`
/// root): validate checks them as devices, format prints them canonically
/// (issue 19: both said "expecting <domain>").
#[test]
fn device_documents_validate_and_format() {
    for (name, kind) in [
        ("hotplug-standby.xml", "interface"),
        ("hotplug-primary.xml", "interface"),
    ] {
        let f = examples().join(name);
        let f = f.to_str().unwrap();
        let out = teamvirt(&["validate", f]);
        let err = s(&out.stderr);
        assert!(out.status.success(), "{name}: {err}");
        assert!(
            err.contains(&format!("{f}: valid (0 error(s), 0 warning(s))")),
            "{name}: {err}"
        );
        let out = teamvirt(&["validate", "--json", f]);
        assert!(out.status.success(), "{name}: {}", s(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["files"][0]["kind"], kind, "{v}");
    }
    let f = examples().join("hotplug-standby.xml");
    let out = teamvirt(&["format", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    assert_eq!(
        s(&out.stdout),
        "<interface type='user'>\n  <mac address='52:54:00:6d:90:03'/>\n  <model type='virtio'/>\n  \
         <teaming type='persistent'/>\n  <alias name='ua-standby1'/>\n</interface>\n"
    );
    // Canonical order whatever the written one, and a fixed point.
    let dir = tempfile::tempdir().unwrap();
    let primary = std::fs::read_to_string(examples().join("hotplug-primary.xml")).unwrap();
    let out = teamvirt(&["format", &write(dir.path(), "p.xml", &primary)]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    let once = s(&out.stdout);
    assert!(
        once.starts_with("<interface type='network'>\n  <mac address="),
        "{once}"
    );
    let out = teamvirt(&["format", &write(dir.path(), "p2.xml", &once)]);
    assert_eq!(s(&out.stdout), once);

    // A device libvirt refuses: its text and place in the device file.
    let bad = write(
        dir.path(),
        "bad-standby.xml",
        "<interface type='user'>\n  <mac address='52:54:00:6d:90:04'/>\n  <teaming type='persistent'/>\n</interface>\n",
    );
    for verb in ["validate", "format"] {
        let out = teamvirt(&[verb, &bad]);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        let err = s(&out.stderr);
        assert!(
            err.contains("error: unsupported configuration: virtio-net teaming persistent interface must be <model type='virtio'/>, not 'rtl8139'"),
            "{verb}: {err}"
        );
        assert!(err.contains(&format!("--> {bad}:3:3")), "{verb}: {err}");
        assert!(out.stdout.is_empty(), "{verb}");
    }
    // Other roots still get libvirt's domain error.
    let disk = write(dir.path(), "disk.xml", "<disk type='file'/>");
    let out = teamvirt(&["validate", &disk]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn format_refuses_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "m.xml",
        "<domain type='kvm'><name>x</name>\n<memory>1</memory",
    );
    let out = teamvirt(&["format", &f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        s(&out.stderr).starts_with("error: XML error: "),
        "{}",
        s(&out.stderr)
    );
    assert!(
        s(&out.stderr).contains(&format!("--> {f}:2:")),
        "{}",
        s(&out.stderr)
    );
}

#[test]
fn bad_inputs_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    let dtd = write(
        dir.path(),
        "dtd.xml",
        "<?xml version='1.0'?>\n<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;'>]>\n<domain type='kvm'><name>&lol2;</name></domain>",
    );
    let out = teamvirt(&["validate", &dtd]);
    assert_eq!(out.status.code(), Some(1));
    assert!(s(&out.stderr).contains("DTD"), "{}", s(&out.stderr));

    let bin = dir.path().join("bin.xml");
    std::fs::write(&bin, b"<domain type='kvm'><name>\xff\xfe</name></domain>").unwrap();
    let out = teamvirt(&["validate", bin.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        s(&out.stderr).contains("not valid UTF-8"),
        "{}",
        s(&out.stderr)
    );

    let big = dir.path().join("big.xml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(100 * 1024 * 1024).unwrap(); // sparse: 100 MB without writing it
    let out = teamvirt(&["validate", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(s(&out.stderr).contains("too large"), "{}", s(&out.stderr));

    let out = teamvirt(&["validate", dir.path().join("missing.xml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn help_for_each_verb() {
    for verb in ["validate", "format", "domxml-to-native", "capabilities"] {
        let out = teamvirt(&[verb, "--help"]);
        assert!(out.status.success());
        assert!(s(&out.stdout).contains("Usage: teamvirt"), "{verb}");
    }
}

/// The rtl8139 trap of issue 3 item 8: a q35 domain, no ACPI, a transient
/// `<interface type='network'>` without a model, its network unknown.
const TRAP: &str = "<domain type='kvm'>\n  <name>trap</name>\n  <memory unit='MiB'>512</memory>\n  <os><type arch='x86_64' machine='q35'>hvm</type></os>\n  <devices>\n    <interface type='network'>\n      <mac address='52:54:00:aa:bb:cc'/>\n      <source network='vfpool'/>\n      <teaming type='transient' persistent='ua-net0'/>\n    </interface>\n    <interface type='bridge'>\n      <mac address='52:54:00:aa:bb:cc'/>\n      <source bridge='br0'/>\n      <model type='virtio'/>\n      <alias name='ua-net0'/>\n      <teaming type='persistent'/>\n    </interface>\n  </devices>\n</domain>\n";

fn diag_codes(report: &serde_json::Value, file: usize) -> Vec<String> {
    report["files"][file]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn validate_runs_placement_checks_with_caps_file() {
    let Some(corpus) =
        teamvirt_testinfra::corpus_or_skip("validate_runs_placement_checks_with_caps_file")
    else {
        return;
    };
    let caps = corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "trap.xml", TRAP);
    let out = teamvirt(&["validate", "--caps", caps.to_str().unwrap(), &f]);
    let err = s(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("rtl8139"), "{err}");
    assert!(err.contains(&format!("--> {f}:6:5")), "{err}");
    assert!(err.contains("<features><acpi/></features>"), "{err}");
    assert!(err.contains("valid (0 error(s), 2 warning(s))"), "{err}");
    assert!(!err.contains("note:"), "{err}");

    let out = teamvirt(&["validate", "--json", "--caps", caps.to_str().unwrap(), &f]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        diag_codes(&v, 0),
        ["teaming-q35-no-acpi", "teaming-transient-default-model"]
    );
    assert_eq!(v["files"][0]["warnings"], 2);
    assert_eq!(v["files"][0]["topology_checked"], true);
    assert_eq!(v["notes"], serde_json::json!([]));
    assert!(out.stderr.is_empty(), "{}", s(&out.stderr));

    // format shows the same warnings, with and without QEMU's defaults.
    for extra in [&["--caps", caps.to_str().unwrap()][..], &[][..]] {
        let mut args = vec!["format"];
        args.extend_from_slice(extra);
        args.push(&f);
        let out = teamvirt(&args);
        let err = s(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("warning: failover primary"), "{args:?}: {err}");
        assert!(err.contains("warning: q35 domain"), "{args:?}: {err}");
    }
}

#[test]
fn validate_uses_installed_qemu_by_default() {
    if teamvirt_testinfra::qemu_or_skip("validate_uses_installed_qemu_by_default").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "trap.xml", TRAP);
    let out = teamvirt(&["validate", "--json", &f]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        diag_codes(&v, 0),
        ["teaming-q35-no-acpi", "teaming-transient-default-model"]
    );
    assert_eq!(v["files"][0]["topology_checked"], true);
}

#[test]
fn validate_without_qemu_says_so_once_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "trap.xml", TRAP);
    let empty = dir.path().join("no-bin");
    std::fs::create_dir(&empty).unwrap();
    let path = [("PATH", empty.to_str().unwrap())];
    let out = teamvirt_env(&["validate", &f, &f], &path);
    let err = s(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("note: ").count(), 1, "{err}");
    assert!(err.contains("skipped"), "{err}");
    assert!(err.contains("--caps FILE"), "{err}");
    assert!(err.contains("valid (0 error(s), 0 warning(s))"), "{err}");

    let out = teamvirt_env(&["validate", "--json", &f], &path);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", s(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"][0]["topology_checked"], false);
    assert_eq!(v["notes"].as_array().unwrap().len(), 1);

    // Asked for explicitly, a missing QEMU is an error.
    let out = teamvirt_env(&["validate", "--emulator", "qemu-system-x86_64", &f], &path);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn validate_resolves_given_networks() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("validate_resolves_given_networks")
    else {
        return;
    };
    let caps = corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let caps = caps.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "trap.xml", TRAP);
    // A VF pool: fine (the warnings stay).
    let pool = examples().join("vfpool-network.xml");
    let out = teamvirt(&[
        "validate",
        "--caps",
        caps,
        "--network",
        pool.to_str().unwrap(),
        &f,
    ]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    // A bridge: libvirt refuses to start it, with this text.
    let br = write(
        dir.path(),
        "br.xml",
        "<network><name>vfpool</name><bridge name='virbr9'/></network>",
    );
    let out = teamvirt(&["validate", "--caps", caps, "--network", &br, &f]);
    assert_eq!(out.status.code(), Some(1));
    let err = s(&out.stderr);
    assert!(
        err.starts_with(&format!("error: unsupported configuration: interface 52:54:00:aa:bb:cc - teaming transient device must be type='hostdev', not 'bridge'\n  --> {f}:6:5\n")),
        "{err}"
    );
    // format still prints what `virsh define` keeps, the error as a warning.
    let out = teamvirt(&["format", "--caps", caps, "--network", &br, &f]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    assert!(s(&out.stderr).contains("warning: unsupported configuration: interface"));
}

/// Issue 12: a checking verb runs no program named by the XML it checks.
/// The domain's `<emulator>` is a script that leaves a marker when run;
/// `validate`, `format` and `domxml-to-native` must not run it, and must
/// say which checks were skipped and why. `--emulator` names it on purpose.
#[test]
fn checking_verbs_never_run_the_emulator_the_xml_names() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // The probe runs as the QEMU user (issue 17): it must reach the script
    // and leave its marker.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let marks = dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o777)).unwrap();
    let marker = marks.join("ran");
    let evil = dir.path().join("evil-qemu");
    std::fs::write(
        &evil,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    let xml = std::fs::read_to_string(examples().join("teaming-q35.xml")).unwrap();
    let xml = xml.replace(
        "<emulator>/usr/bin/qemu-system-x86_64</emulator>",
        &format!("<emulator>{}</emulator>", evil.display()),
    );
    assert!(xml.contains("evil-qemu"));
    let f = write(dir.path(), "dom.xml", &xml);
    let pool = examples().join("vfpool-network.xml");
    let pool = pool.to_str().unwrap();
    // Its own cache dir: a cached probe must not hide a run of the script.
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();

    let out = teamvirt(&["validate", "--cache-dir", cache, &f]);
    let err = s(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("note: QEMU-side checks") && err.contains("skipped"),
        "{err}"
    );
    assert!(
        err.contains("does not run programs named by the XML"),
        "{err}"
    );
    assert!(
        err.contains(&format!("--emulator {}", evil.display())),
        "{err}"
    );

    let out = teamvirt(&["format", "--cache-dir", cache, &f]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    assert!(s(&out.stderr).contains("does not run programs named by the XML"));

    let out = teamvirt(&[
        "domxml-to-native",
        "--cache-dir",
        cache,
        "--network",
        pool,
        &f,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        s(&out.stderr).contains("does not run programs named by the XML"),
        "{}",
        s(&out.stderr)
    );
    assert!(!marker.exists(), "a checking verb ran the XML's <emulator>");

    // Named with --emulator, it is the user's choice: it runs (and fails).
    let evil_s = evil.to_str().unwrap();
    let out = teamvirt(&["validate", "--cache-dir", cache, "--emulator", evil_s, &f]);
    assert_eq!(out.status.code(), Some(1), "{}", s(&out.stderr));
    assert!(
        marker.exists(),
        "--emulator should have probed the named binary"
    );
}

/// The default emulator under another spelling of its path is still the
/// default: it is probed (the placement checks run).
#[test]
fn default_emulator_in_the_xml_is_probed() {
    if teamvirt_testinfra::qemu_or_skip("default_emulator_in_the_xml_is_probed").is_none() {
        return;
    }
    let dom = examples().join("teaming-q35.xml");
    let out = teamvirt(&["validate", "--json", dom.to_str().unwrap()]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"][0]["topology_checked"], true, "{v}");
}
