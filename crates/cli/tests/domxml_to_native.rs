//! `teamvirt domxml-to-native` end to end: formats, `--network NET=PORT`,
//! the `NET;PORT` test convention, and error exit.

use std::process::Command;

fn teamvirt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_teamvirt"))
}

#[test]
fn args_format_matches_corpus_and_network_pinning_works() {
    let Some(c) = teamvirt_testinfra::corpus_or_skip("domxml_to_native") else {
        return;
    };
    let caps = c.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let data = c.join("qemuxmlconfdata");
    let expected =
        std::fs::read_to_string(data.join("net-virtio-teaming-network.x86_64-latest.args"))
            .unwrap();

    // libvirt's test convention.
    let out = teamvirt()
        .args([
            "domxml-to-native",
            "--format",
            "args",
            "--test-env",
            "--caps",
        ])
        .arg(&caps)
        .arg("--network-dir")
        .arg(c.join("networkxml2xmlin"))
        .arg("--port-dir")
        .arg(c.join("virnetworkportxml2xmldata"))
        .arg(data.join("net-virtio-teaming-network.xml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);

    // The same through explicit --network NET.xml=PORT.xml, with the
    // domain naming networks plainly.
    let dir = tempfile::tempdir().unwrap();
    let xml = std::fs::read_to_string(data.join("net-virtio-teaming-network.xml"))
        .unwrap()
        .replace("nat-network;plug-bridge-basic", "default")
        .replace("hostdev;plug-hostdev-pci", "hostdev");
    let dom = dir.path().join("dom.xml");
    std::fs::write(&dom, xml).unwrap();
    let out = teamvirt()
        .args([
            "domxml-to-native",
            "--format",
            "json",
            "--test-env",
            "--caps",
        ])
        .arg(&caps)
        .arg("--network")
        .arg(format!(
            "{}={}",
            c.join("networkxml2xmlin/nat-network.xml").display(),
            c.join("virnetworkportxml2xmldata/plug-bridge-basic.xml")
                .display()
        ))
        .arg("--network")
        .arg(format!(
            "{}={}",
            c.join("networkxml2xmlin/hostdev.xml").display(),
            c.join("virnetworkportxml2xmldata/plug-hostdev-pci.xml")
                .display()
        ))
        .arg(&dom)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let argv: Vec<String> = j["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        argv.iter().any(|a| a
            .contains(r#""host":"0001:02:03.4","id":"hostdev0","failover_pair_id":"ua-backup0""#)),
        "{argv:?}"
    );
    assert_eq!(j["env"]["USER"], "test");

    // Without a port, the hostdev network hands out its first VF.
    let out = teamvirt()
        .args(["domxml-to-native", "--test-env", "--caps"])
        .arg(&caps)
        .arg("--network")
        .arg(c.join("networkxml2xmlin/nat-network.xml"))
        .arg("--network")
        .arg(c.join("networkxml2xmlin/hostdev.xml"))
        .arg(&dom)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(line.lines().count(), 1);
    assert!(line.contains(r#""host":"0000:03:00.1""#), "{line}");
}

#[test]
fn transient_on_non_hostdev_network_is_refused_with_libvirts_text() {
    let Some(c) = teamvirt_testinfra::corpus_or_skip("domxml_to_native_refuse") else {
        return;
    };
    let caps = c.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let data = c.join("qemuxmlconfdata");
    let dir = tempfile::tempdir().unwrap();
    let xml = std::fs::read_to_string(data.join("net-virtio-teaming-network.xml"))
        .unwrap()
        .replace("hostdev;plug-hostdev-pci", "nat-network;plug-bridge-basic");
    let dom = dir.path().join("dom.xml");
    std::fs::write(&dom, xml).unwrap();
    let out = teamvirt()
        .args(["domxml-to-native", "--test-env", "--caps"])
        .arg(&caps)
        .arg("--network-dir")
        .arg(c.join("networkxml2xmlin"))
        .arg("--port-dir")
        .arg(c.join("virnetworkportxml2xmldata"))
        .arg(&dom)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unsupported configuration: interface 00:11:22:33:44:55 - teaming transient device must be type='hostdev', not 'bridge'"),
        "{err}"
    );
}

/// `teamvirt format --caps` reproduces every x86_64 XML output of the corpus.
#[test]
fn format_with_caps_matches_corpus() {
    let Some(c) = teamvirt_testinfra::corpus_or_skip("format_with_caps") else {
        return;
    };
    let caps = c.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let data = c.join("qemuxmlconfdata");
    let mut names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .strip_suffix(".x86_64-latest.xml")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    let mut failures = Vec::new();
    for n in &names {
        let mut expected =
            std::fs::read_to_string(data.join(format!("{n}.x86_64-latest.xml"))).unwrap();
        if !expected.contains('<') {
            // libvirt's symlink to the input, stored as its name.
            expected = std::fs::read_to_string(data.join(expected.trim())).unwrap();
        }
        let out = teamvirt()
            .arg("format")
            .arg("--caps")
            .arg(&caps)
            .arg(data.join(format!("{n}.xml")))
            .output()
            .unwrap();
        if !out.status.success() || String::from_utf8_lossy(&out.stdout) != expected {
            failures.push(n.clone());
        }
    }
    assert!(
        failures.is_empty(),
        "format --caps differs for: {failures:?}"
    );
    assert!(names.len() >= 20, "{names:?}");
}
