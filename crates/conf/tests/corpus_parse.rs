//! Every domain, network and network-port document of the libvirt corpus
//! parses.

use std::path::{Path, PathBuf};

use teamvirt_conf::{DomainDef, NetworkDef, NetworkPortDef};

fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.ends_with("qemucapabilitiesdata") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "xml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// libvirt's test tree stores some expected outputs as symlinks; the copy
/// here holds the link target as text. Resolve those.
pub fn resolve(path: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    if !text.trim_start().starts_with('<') {
        return path.parent().unwrap().join(text.trim());
    }
    path.to_path_buf()
}

#[test]
fn every_corpus_document_parses() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("every_corpus_document_parses") else {
        return;
    };
    let mut n = 0;
    for f in xml_files(&corpus) {
        let f = resolve(&f);
        let text = std::fs::read_to_string(&f).unwrap();
        let root = roxmltree::Document::parse(&text)
            .unwrap()
            .root_element()
            .tag_name()
            .name()
            .to_string();
        let res = match root.as_str() {
            "domain" => DomainDef::load(&f).map(|(_, w)| w),
            "network" => NetworkDef::load(&f).map(|(_, w)| w),
            "networkport" => NetworkPortDef::load(&f).map(|(_, w)| w),
            // Hotplug device documents (qemuhotplugtestdevices).
            "interface" | "hostdev" => teamvirt_conf::DeviceDef::load(&f).map(|(_, w)| w),
            other => panic!("{}: unexpected root {other}", f.display()),
        };
        match res {
            Ok(w) => {
                for d in w {
                    eprintln!("{}: warning: {}", f.display(), d);
                }
            }
            Err(e) => {
                let err = f.with_extension("x86_64-latest.err");
                assert!(
                    err.exists(),
                    "{}: {}",
                    f.display(),
                    e.to_diagnostic(Some(&f))
                );
            }
        }
        n += 1;
    }
    assert!(n > 40, "only {n} documents found");
}
