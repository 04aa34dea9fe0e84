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

/// XML kept verbatim that would change libvirt's command line is refused,
/// naming the element and its place; names libvirt ignores too pass.
#[test]
fn untranslatable_xml_is_refused_with_its_location() {
    let Some(c) = teamvirt_testinfra::corpus_or_skip("untranslatable_xml_is_refused") else {
        return;
    };
    let caps = c.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let dir = tempfile::tempdir().unwrap();
    let dom = |devices: &str, top: &str| {
        format!(
            "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n  <name>u</name>\n  <memory unit='KiB'>219100</memory>\n  <os><type arch='x86_64' machine='q35'>hvm</type></os>\n  <devices>\n    {devices}\n  </devices>\n  {top}\n</domain>\n"
        )
    };
    let run = |name: &str, xml: String| {
        let f = dir.path().join(name);
        std::fs::write(&f, xml).unwrap();
        let out = teamvirt()
            .arg("domxml-to-native")
            .arg("--caps")
            .arg(&caps)
            .arg(&f)
            .output()
            .unwrap();
        (f.display().to_string(), out)
    };
    for (name, devices, top, what, line) in [
        (
            "sound.xml",
            "<sound model='ich9'/>",
            "",
            "device <sound>",
            6,
        ),
        (
            "qemu.xml",
            "",
            "<qemu:commandline><qemu:arg value='-foo'/></qemu:commandline>",
            "<qemu:commandline>",
            8,
        ),
        (
            "timer.xml",
            "",
            "<clock offset='utc'><timer name='hpet' present='no'/></clock>",
            "<clock><timer>",
            8,
        ),
    ] {
        let (f, out) = run(name, dom(devices, top));
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("error: unsupported configuration: {what} is not supported by teamvirt's command line builder")),
            "{name}: {err}"
        );
        assert!(err.contains(&format!("--> {f}:{line}:")), "{name}: {err}");
        assert!(out.stdout.is_empty());
    }
    // libvirt ignores an element it does not know: so does the builder.
    let (_, out) = run("typo.xml", dom("<soundd model='ich9'/>", "<frobnicate/>"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shell_quoting_and_json_for_awkward_names() {
    let Some(c) = teamvirt_testinfra::corpus_or_skip("shell_quoting_and_json") else {
        return;
    };
    let caps = c.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("q.xml");
    let name = "it's a \"vm\", really";
    std::fs::write(
        &f,
        "<domain type='qemu'><name>it&apos;s a &quot;vm&quot;, really</name><memory>219100</memory><os><type arch='x86_64' machine='q35'>hvm</type></os></domain>",
    )
    .unwrap();
    let out = teamvirt()
        .args(["domxml-to-native", "--test-env", "--caps"])
        .arg(&caps)
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The shell line, split by a real shell, gives back the argument.
    let line = String::from_utf8(out.stdout).unwrap();
    let sh = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s\\n' {}",
            line.trim_end().split_once(' ').map_or("", |x| x.1)
        ))
        .output()
        .unwrap();
    let words = String::from_utf8(sh.stdout).unwrap();
    assert!(
        words
            .lines()
            .any(|w| w == "guest=it's a \"vm\",, really,debug-threads=on"),
        "{words}"
    );

    let out = teamvirt()
        .args([
            "domxml-to-native",
            "--test-env",
            "--format",
            "json",
            "--caps",
        ])
        .arg(&caps)
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let argv: Vec<&str> = v["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let i = argv.iter().position(|a| *a == "-name").unwrap();
    assert_eq!(
        argv[i + 1],
        format!("guest={},debug-threads=on", name.replace(',', ",,"))
    );
    assert_eq!(v["env"]["LC_ALL"], "C");
}

/// The README's `domxml-to-native domain.xml --network pool.xml` on the
/// bundled example: the tap-backed standby needs descriptors only `start`
/// has, so the error says `--test-env` gives libvirt's placeholders, and
/// it and "Network not found" point at the `<interface>` (issue 19).
#[test]
fn host_setup_and_network_errors_name_the_interface_and_test_env() {
    let Some(c) = teamvirt_testinfra::corpus_or_skip("host_setup_and_network_errors") else {
        return;
    };
    let caps = c.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let ex = teamvirt_testinfra::workspace_root().join("examples");
    let dom = ex.join("teaming-q35.xml");
    let text = std::fs::read_to_string(&dom).unwrap();
    // The standby: the first <interface>, on network 'lan'.
    let (line, col) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find("<interface").map(|c| (i + 1, c + 1)))
        .unwrap();
    assert!(text.contains("<source network='lan'/>"));
    let at = format!("--> {}:{line}:{col}\n", dom.display());
    let run = |nets: &[&str], test_env: bool| {
        let mut cmd = teamvirt();
        cmd.arg("domxml-to-native").arg("--caps").arg(&caps);
        for n in nets {
            cmd.arg("--network").arg(ex.join(n));
        }
        if test_env {
            cmd.arg("--test-env");
        }
        let out = cmd.arg(&dom).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, err) = run(&["lan-network.xml", "vfpool-network.xml"], false);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("needs host network setup"), "{err}");
    assert!(err.contains(&at), "{err}");
    assert!(err.contains("= hint: pass --test-env"), "{err}");
    let (code, err) = run(&["lan-network.xml", "vfpool-network.xml"], true);
    assert_eq!(code, Some(0), "{err}");

    let (code, err) = run(&["vfpool-network.xml"], false);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("error: Network not found: no network with matching name 'lan'"),
        "{err}"
    );
    assert!(err.contains(&at), "{err}");
}

/// A type='kvm' domain's command line is built for the accelerator
/// `start` would use here: `-accel tcg` (with a note) where KVM is not
/// usable, `-accel kvm` where it is; `--accel` chooses; `--test-env` keeps
/// libvirt's output for the type as written.
#[test]
fn kvm_domain_gets_the_accelerator_start_would_use() {
    if teamvirt_testinfra::qemu_or_skip("kvm_domain_gets_the_accelerator_start_would_use").is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dom = dir.path().join("k.xml");
    std::fs::write(
        &dom,
        "<domain type='kvm'><name>k</name><memory unit='MiB'>64</memory>
         <os><type arch='x86_64' machine='q35'>hvm</type></os></domain>",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let o = teamvirt()
            .arg("domxml-to-native")
            .args(extra)
            .arg(&dom)
            .env("TEAMVIRT_STATE_DIR", dir.path().join("state"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (out, err) = run(&[]);
    match teamvirt_runtime::accel::kvm_unusable() {
        Some(_) => {
            assert!(out.contains("-accel tcg"), "{out}");
            assert!(!out.contains("-accel kvm"), "{out}");
            assert!(err.contains("KVM is not usable on this host"), "{err}");
        }
        None => assert!(out.contains("-accel kvm"), "{out}"),
    }
    assert!(run(&["--accel", "kvm"]).0.contains("-accel kvm"));
    assert!(run(&["--accel", "tcg"]).0.contains("-accel tcg"));
}
