//! `teamvirt validate` and `teamvirt format` as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn teamvirt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .args(args)
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
    assert_eq!(
        v["files"][1]["diagnostics"][0]["message"],
        "unsupported configuration: unknown teaming type 'none'"
    );
    assert_eq!(
        v["files"][1]["diagnostics"][0]["code"],
        "teaming-unknown-type"
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
    let out = teamvirt(&["format", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", s(&out.stderr));
    assert_eq!(s(&out.stdout), std::fs::read_to_string(&f).unwrap());
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
    for verb in ["validate", "format"] {
        let out = teamvirt(&[verb, "--help"]);
        assert!(out.status.success());
        assert!(s(&out.stdout).contains("Usage: teamvirt"), "{verb}");
    }
}
