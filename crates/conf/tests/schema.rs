//! The schema check (issue 19 item 3): libvirt's RELAX NG grammars accept
//! every document libvirt's own tests treat as valid, refuse the typos the
//! issue found with libxml2's wording, position and a "did you mean" hint,
//! and cost work linear in the document (counted, not timed).

use std::path::{Path, PathBuf};

use teamvirt_conf::schema::{check_str, SchemaKind};
use teamvirt_conf::Diagnostic;
use teamvirt_testinfra::alloc_count::{allocated, CountingAlloc};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                // Capabilities dumps and the schemas themselves are no
                // documents to validate.
                if !p.ends_with("qemucapabilitiesdata") && !p.ends_with("schemas") {
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
/// holds the link target as text.
fn resolve(path: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path).unwrap();
    if !text.trim_start().starts_with('<') {
        return path.parent().unwrap().join(text.trim());
    }
    path.to_path_buf()
}

fn check_file(path: &Path) -> (String, Vec<Diagnostic>) {
    let text = teamvirt_conf::read_xml_file(path).unwrap();
    let d = check_str(&text, Some(path)).unwrap();
    (text, d)
}

/// libvirt's virschematest validates its domain, network and network-port
/// test inputs and outputs against these grammars; the corpus copy of them
/// (and the hotplug device documents, against their definitions) passes.
#[test]
fn every_corpus_document_passes_the_schema() {
    let Some(corpus) =
        teamvirt_testinfra::corpus_or_skip("every_corpus_document_passes_the_schema")
    else {
        return;
    };
    let mut n = 0;
    let mut failures = Vec::new();
    for f in xml_files(&corpus) {
        let f = resolve(&f);
        let (_, d) = check_file(&f);
        if !d.is_empty() {
            failures.push(format!("{}: {d:?}", f.display()));
        }
        n += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(n > 40, "only {n} documents found");
}

/// What teamvirt writes (canonical XML, `format`/`dumpxml --inactive`)
/// of each corpus document is as valid to libvirt's schema as libvirt's.
#[test]
fn canonical_output_of_the_corpus_passes_the_schema() {
    let Some(corpus) =
        teamvirt_testinfra::corpus_or_skip("canonical_output_of_the_corpus_passes_the_schema")
    else {
        return;
    };
    let mut failures = Vec::new();
    let mut n = 0;
    for f in xml_files(&corpus) {
        let f = resolve(&f);
        let Ok((def, _)) = teamvirt_conf::AnyDef::load(&f) else {
            // libvirt refuses it too (a .err case): no output to check.
            continue;
        };
        let out = def.to_xml();
        let d = check_str(&out, None).unwrap();
        if !d.is_empty() {
            failures.push(format!("{}: {d:?}\n{out}", f.display()));
        }
        n += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(n > 40, "only {n} documents");
}

fn example(name: &str) -> (PathBuf, String) {
    let p = teamvirt_testinfra::workspace_root()
        .join("examples")
        .join(name);
    let t = std::fs::read_to_string(&p).unwrap();
    (p, t)
}

#[test]
fn bundled_examples_pass() {
    let dir = teamvirt_testinfra::workspace_root().join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "xml") {
            let (_, d) = check_file(&p);
            assert!(d.is_empty(), "{}: {d:?}", p.display());
            n += 1;
        }
    }
    assert!(n >= 4, "only {n} examples");
}

/// The typos in the bundled example: each an error at the
/// misspelt element with libxml2's text and the name meant.
fn typo(from: &str, to: &str) -> (String, Vec<Diagnostic>) {
    let (p, t) = example("teaming-q35.xml");
    let text = t.replace(from, to);
    assert_ne!(text, t, "{from} not in the example");
    let d = check_str(&text, Some(&p)).unwrap();
    (text, d)
}

fn line_of(text: &str, needle: &str) -> Vec<u32> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i as u32 + 1)
        .collect()
}

#[test]
fn teamng_is_refused_with_a_hint() {
    let (text, d) = typo(
        "<teaming type='persistent'/>",
        "<teamng type='persistent'/>",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        "XML document failed to validate against schema: Did not expect element teamng there"
    );
    assert_eq!(d[0].hint.as_deref(), Some("did you mean 'teaming'?"));
    let line = line_of(&text, "<teamng")[0];
    assert_eq!(d[0].pos.unwrap().line, line);
    assert!(d[0]
        .location()
        .unwrap()
        .ends_with(&format!("examples/teaming-q35.xml:{line}:7")));
}

#[test]
fn interfce_is_refused_for_each_nic() {
    let (text, d) = typo("interface", "interfce");
    let lines = line_of(&text, "<interfce ");
    assert_eq!(lines.len(), 2);
    assert_eq!(d.len(), 2, "{d:?}");
    for (d, line) in d.iter().zip(lines) {
        assert!(
            d.message.ends_with("Did not expect element interfce there"),
            "{d:?}"
        );
        assert_eq!(d.hint.as_deref(), Some("did you mean 'interface'?"));
        assert_eq!(d.pos.unwrap().line, line);
    }
}

#[test]
fn mdoel_is_refused_not_an_rtl8139_error() {
    let (text, d) = typo("<model type='virtio'/>", "<mdoel type='virtio'/>");
    let lines = line_of(&text, "<mdoel");
    assert_eq!(d.len(), lines.len(), "{d:?}");
    for (d, line) in d.iter().zip(lines) {
        assert!(
            d.message.ends_with("Did not expect element mdoel there"),
            "{d:?}"
        );
        assert!(!d.message.contains("rtl8139"));
        assert_eq!(d.hint.as_deref(), Some("did you mean 'model'?"));
        assert_eq!(d.pos.unwrap().line, line);
    }
}

#[test]
fn network_typos_are_refused_too() {
    let (p, t) = example("vfpool-network.xml");
    let text = t
        .replace("<forward ", "<froward ")
        .replace("</forward>", "</froward>");
    let d = check_str(&text, Some(&p)).unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].hint.as_deref(), Some("did you mean 'forward'?"));
}

fn nics(n: usize) -> String {
    let mut devs = String::new();
    for i in 0..n {
        let (bus, slot) = (i / 32 + 1, i % 32);
        devs.push_str(&format!(
            "<interface type='network'><mac address='52:54:00:00:{:02x}:{:02x}'/>\
             <source network='lan'/><model type='virtio'/><teaming type='persistent'/>\
             <alias name='ua-n{i}'/><address type='pci' domain='0x0000' bus='{bus:#04x}' \
             slot='{slot:#04x}' function='0x0'/></interface>\n",
            i / 256,
            i % 256
        ));
    }
    format!(
        "<domain type='kvm'><name>t</name><memory>1024</memory>\
         <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>\n{devs}</devices></domain>"
    )
}

/// Validating a document twice as large allocates about twice as much
/// (a counting allocator: the count does not depend on machine load).
#[test]
fn schema_check_cost_is_linear() {
    // The grammar compiles once per process: not part of the cost.
    assert!(check_str(&nics(1), None).unwrap().is_empty());
    let cost = |n: usize| {
        let text = nics(n);
        let (a0, b0) = allocated();
        let d = check_str(&text, None).unwrap();
        let (a1, b1) = allocated();
        assert!(d.is_empty(), "{d:?}");
        (a1 - a0, b1 - b0)
    };
    let (a, b) = (cost(300), cost(600));
    for (what, x, y) in [("allocations", a.0, b.0), ("bytes allocated", a.1, b.1)] {
        // Each interface is work of its own: the count sees them.
        assert!(x > 300, "{what}: {x}");
        let ratio = y as f64 / x as f64;
        eprintln!("{what}: {x} -> {y} ({ratio:.2})");
        assert!(
            ratio <= 2.3,
            "doubling the interfaces multiplied the schema check's {what} by {ratio:.2} ({x} -> {y})"
        );
    }
}

#[test]
fn kinds_pick_by_root() {
    assert_eq!(SchemaKind::for_root("domain"), Some(SchemaKind::Domain));
    assert_eq!(SchemaKind::for_root("hostdev"), Some(SchemaKind::Hostdev));
    assert_eq!(SchemaKind::for_root("capabilities"), None);
}

/// Many unknown attributes on one element: errors past the cap are only
/// counted, so placing the reported ones on their attribute does not make
/// the check quadratic (attributes looked at, counted).
#[test]
fn many_bad_attributes_cost_linear_work() {
    let doc = |n: usize| {
        let attrs: String = (0..n).map(|i| format!(" bogus{i}='1'")).collect();
        format!("<domain type='kvm'{attrs}><name>d</name><memory>1024</memory><os><type>hvm</type></os></domain>")
    };
    let reads = |n: usize| {
        let text = doc(n);
        let w0 = teamvirt_conf::work::snapshot();
        let d = check_str(&text, None).unwrap();
        assert_eq!(d.len(), teamvirt_conf::schema::MAX_ERRORS + 1);
        assert!(d.last().unwrap().message.ends_with(&format!(
            "{} more error(s) not shown",
            n - teamvirt_conf::schema::MAX_ERRORS
        )));
        (teamvirt_conf::work::snapshot() - w0).attr_reads
    };
    // Within the parser's cap of attributes per element
    // (parse::limits::MAX_ATTRIBUTES), past the schema's cap of errors.
    let (a, b) = (reads(120), reads(240));
    assert!(a > 0);
    assert!(
        b as f64 / a as f64 <= 2.3,
        "doubling the attributes multiplied the attributes read by {:.2} ({a} -> {b})",
        b as f64 / a as f64
    );
}
