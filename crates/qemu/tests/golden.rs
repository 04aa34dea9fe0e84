//! Golden test: every x86_64 `.args` / `.err` of libvirt's qemuxmlconfdata
//! corpus, and the historical v8.1.0 legacy-syntax cases, reproduced byte
//! for byte. Prints every differing case with its first differing line.

use std::path::{Path, PathBuf};

use teamvirt_conf::DomainDef;
use teamvirt_qemu::caps::QemuCaps;
use teamvirt_qemu::command::{convert, BuildOptions};
use teamvirt_qemu::resolve::TestNetworkDirs;

fn first_diff(expected: &str, got: &str) -> String {
    let (e, g): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
    for i in 0..e.len().max(g.len()) {
        let (a, b) = (
            e.get(i).copied().unwrap_or("<eof>"),
            g.get(i).copied().unwrap_or("<eof>"),
        );
        if a != b {
            return format!("line {}:\n    expected: {a}\n    got:      {b}", i + 1);
        }
    }
    "trailing whitespace/newline differs".into()
}

/// Domain XML -> argv text or error text, as `domxml-to-native --format
/// args --test-env` prints them.
fn run(corpus: &Path, xml: &Path, caps: &QemuCaps) -> Result<String, String> {
    let (def, _) = DomainDef::load(xml).map_err(|e| e.to_string())?;
    let nets = TestNetworkDirs {
        net_dir: corpus.join("networkxml2xmlin"),
        port_dir: Some(corpus.join("virnetworkportxml2xmldata")),
    };
    let conv =
        convert(def, caps, &nets, &[], &BuildOptions::test_env()).map_err(|e| e.to_string())?;
    Ok(conv.built.cmd.to_args())
}

/// The `qemuxmlconfdata` directory and the caps its `x86_64-latest` outputs
/// were made with.
fn corpus_cases(corpus: &Path) -> (PathBuf, QemuCaps) {
    let caps =
        QemuCaps::from_libvirt_xml(corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml"))
            .unwrap();
    (corpus.join("qemuxmlconfdata"), caps)
}

/// A directory's entries in name order, so failures list stably.
fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

#[test]
fn corpus_args_and_errors() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("corpus_args_and_errors") else {
        return;
    };
    let (data, caps) = corpus_cases(&corpus);
    let (mut failures, mut total) = (Vec::new(), 0);
    for path in sorted_files(&data) {
        let fname = path.file_name().unwrap().to_string_lossy().to_string();
        let (name, is_err) = if let Some(n) = fname.strip_suffix(".x86_64-latest.args") {
            (n.to_string(), false)
        } else if let Some(n) = fname.strip_suffix(".x86_64-latest.err") {
            (n.to_string(), true)
        } else {
            continue;
        };
        total += 1;
        let expected = std::fs::read_to_string(&path).unwrap();
        let got = run(&corpus, &data.join(format!("{name}.xml")), &caps);
        let msg = match (is_err, got) {
            (false, Ok(args)) if args == expected => continue,
            (false, Ok(args)) => first_diff(&expected, &args),
            (false, Err(e)) => format!("unexpected error: {e}"),
            (true, Err(e)) if e.trim_end() == expected.trim_end() => continue,
            (true, Err(e)) => format!(
                "error text differs:\n    expected: {}\n    got:      {e}",
                expected.trim_end()
            ),
            (true, Ok(_)) => format!("expected error: {}", expected.trim_end()),
        };
        failures.push(format!("{name}: {msg}"));
    }
    if !failures.is_empty() {
        panic!(
            "{} of {total} corpus cases differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    eprintln!("{total} corpus cases reproduced");
}

/// The `-netdev`/`-device` lines of an args file.
fn net_device_lines(args: &str) -> Vec<String> {
    args.lines()
        .filter(|l| l.starts_with("-netdev ") || l.starts_with("-device "))
        .map(|l| l.trim_end_matches(" \\").to_string())
        .collect()
}

#[test]
fn historical_legacy_syntax() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("historical_legacy_syntax") else {
        return;
    };
    let dir = corpus.join("historical/v8.1.0/qemuxml2argvdata");
    // libvirt 8.1's DO_TEST(name, VIRTIO_NET_FAILOVER, DEVICE_VFIO_PCI).
    let caps = QemuCaps::from_flags(
        "/usr/bin/qemu-system-i386",
        "i686",
        ["virtio-net.failover", "vfio-pci"],
    );
    let mut failures = Vec::new();
    for name in ["net-virtio-teaming", "net-virtio-teaming-hostdev"] {
        let expected = std::fs::read_to_string(dir.join(format!("{name}.args"))).unwrap();
        match run(&corpus, &dir.join(format!("{name}.xml")), &caps) {
            Ok(got) => {
                let (e, g) = (net_device_lines(&expected), net_device_lines(&got));
                if e != g {
                    failures.push(format!(
                        "{name}: {}",
                        first_diff(&e.join("\n"), &g.join("\n"))
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: unexpected error: {e}")),
        }
    }
    // DO_TEST_PARSE_ERROR_NOCAPS: no failover property.
    let nocaps = QemuCaps::from_flags("/usr/bin/qemu-system-i386", "i686", Vec::<String>::new());
    let expected = std::fs::read_to_string(dir.join("net-virtio-teaming.err")).unwrap();
    match run(&corpus, &dir.join("net-virtio-teaming.xml"), &nocaps) {
        Err(e) if e.trim_end() == expected.trim_end() => {}
        other => failures.push(format!(
            "net-virtio-teaming.err: expected {:?}, got {other:?}",
            expected.trim_end()
        )),
    }
    if !failures.is_empty() {
        panic!("historical cases differ:\n{}", failures.join("\n"));
    }
}

/// libvirt's tree stores some expected outputs as symlinks to the input;
/// the copy here has them as a file holding the target's name.
fn read_expected_xml(dir: &Path, path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    if !text.contains('<') && text.trim().ends_with(".xml") {
        return std::fs::read_to_string(dir.join(text.trim())).unwrap();
    }
    text
}

#[test]
fn corpus_format_with_defaults() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("corpus_format_with_defaults") else {
        return;
    };
    let (data, caps) = corpus_cases(&corpus);
    let (mut failures, mut total) = (Vec::new(), 0);
    for path in sorted_files(&data) {
        let fname = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(name) = fname.strip_suffix(".x86_64-latest.xml") else {
            continue;
        };
        total += 1;
        let expected = read_expected_xml(&data, &path);
        let got = DomainDef::load(&data.join(format!("{name}.xml")))
            .map_err(|e| e.to_string())
            .and_then(|(mut def, _)| {
                teamvirt_qemu::defaults::define(&mut def, &caps).map_err(|e| e.to_string())?;
                Ok(def.to_xml())
            });
        match got {
            Ok(x) if x == expected => {}
            Ok(x) => failures.push(format!("{name}: {}", first_diff(&expected, &x))),
            Err(e) => failures.push(format!("{name}: unexpected error: {e}")),
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {total} corpus XML outputs differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    eprintln!("{total} corpus XML outputs reproduced");
}
