//! Bad input never panics and is refused clearly: mutated corpus documents
//! (property test, through the schema check too), DTDs and entities, huge files, non-UTF-8, malformed XML.

use std::path::PathBuf;

use proptest::prelude::*;
use teamvirt_conf::validate::{validate_domain, NoDriver};
use teamvirt_conf::{bytes_to_text, AnyDef, ConfError, DomainDef, MAX_XML_SIZE};
use teamvirt_testinfra::alloc_count::{allocated, CountingAlloc};

// Bytes allocated per thread: "refused before reading" is checked by what
// was allocated, not by a time that load can stretch (issue 19).
#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn seed_documents() -> Vec<Vec<u8>> {
    let root = teamvirt_testinfra::workspace_root();
    let mut files: Vec<PathBuf> = vec![
        root.join("examples/teaming-q35.xml"),
        root.join("examples/vfpool-network.xml"),
    ];
    if let Some(c) = teamvirt_testinfra::corpus_dir() {
        for sub in [
            "qemuxmlconfdata",
            "networkxml2xmlin",
            "virnetworkportxml2xmldata",
            "historical/v8.1.0/qemuxml2argvdata",
        ] {
            if let Ok(rd) = std::fs::read_dir(c.join(sub)) {
                files.extend(
                    rd.map(|e| e.unwrap().path())
                        .filter(|p| p.extension().is_some_and(|x| x == "xml")),
                );
            }
        }
    } else {
        eprintln!("robustness: libvirt corpus not found, mutating the examples only");
    }
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .filter(|b| b.first() == Some(&b'<'))
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Duplicate(usize, usize, usize),
    Delete(usize, usize),
    SwapValues(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..64, any::<usize>())
            .prop_map(|(s, l, a)| Mutation::Duplicate(s, l, a)),
        (any::<usize>(), 1usize..64).prop_map(|(s, l)| Mutation::Delete(s, l)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapValues(a, b)),
    ]
}

/// Spans of attribute values (`='...'`).
fn value_spans(doc: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < doc.len() {
        if doc[i] == b'=' && (doc[i + 1] == b'\'' || doc[i + 1] == b'"') {
            let q = doc[i + 1];
            if let Some(end) = doc[i + 2..].iter().position(|&c| c == q) {
                out.push((i + 2, i + 2 + end));
                i += end + 2;
            }
        }
        i += 1;
    }
    out
}

fn apply(doc: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut d = doc.to_vec();
    for m in muts {
        if d.is_empty() {
            break;
        }
        let n = d.len();
        match *m {
            Mutation::Flip(p, b) => d[p % n] = b,
            Mutation::Truncate(p) => d.truncate(p % n),
            Mutation::Duplicate(s, l, a) => {
                let s = s % n;
                let span: Vec<u8> = d[s..(s + l).min(n)].to_vec();
                let at = a % (n + 1);
                d.splice(at..at, span);
            }
            Mutation::Delete(s, l) => {
                let s = s % n;
                d.drain(s..(s + l).min(n));
            }
            Mutation::SwapValues(a, b) => {
                let spans = value_spans(&d);
                if spans.len() >= 2 {
                    let (x, y) = (spans[a % spans.len()], spans[b % spans.len()]);
                    let (x, y) = if x.0 <= y.0 { (x, y) } else { (y, x) };
                    if x != y && x.1 <= y.0 {
                        let vx = d[x.0..x.1].to_vec();
                        let vy = d[y.0..y.1].to_vec();
                        d.splice(y.0..y.1, vx);
                        d.splice(x.0..x.1, vy);
                    }
                }
            }
        }
    }
    d
}

/// Parse, validate, format; formatted output must parse again and be stable.
fn exercise(bytes: Vec<u8>) {
    let Ok(text) = bytes_to_text(bytes) else {
        return;
    };
    // The schema check (validate's first step) takes any loaded document.
    let _ = teamvirt_conf::schema::check_str(&text, None);
    let Ok((def, _)) = AnyDef::parse_str(&text, None) else {
        return;
    };
    if let AnyDef::Domain(d) = &def {
        let _ = validate_domain(d, &NoDriver);
    }
    let once = def.to_xml();
    let (again, _) = AnyDef::parse_str(&once, None)
        .unwrap_or_else(|e| panic!("output does not reparse: {e}\n{once}"));
    assert_eq!(again.to_xml(), once, "output not stable");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_documents_never_panic(idx in any::<usize>(), muts in prop::collection::vec(mutation(), 1..4)) {
        let docs = seed_documents();
        let doc = &docs[idx % docs.len()];
        exercise(apply(doc, &muts));
    }
}

#[test]
fn billion_laughs_refused() {
    let xml = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<domain type='kvm'><name>&lol2;</name></domain>"#;
    let e = DomainDef::parse_str(xml, None).unwrap_err();
    let d = e.to_diagnostic(None);
    assert_eq!(d.code, "xml-malformed");
    assert!(
        d.message
            .starts_with("XML error: DTD and entity declarations are not allowed"),
        "{}",
        d.message
    );
    assert_eq!(d.pos.unwrap().line, 2);
    // An undeclared entity is not expanded either.
    let e =
        DomainDef::parse_str("<domain type='kvm'><name>&xxe;</name></domain>", None).unwrap_err();
    assert!(e.to_diagnostic(None).message.starts_with("XML error: "));
}

#[test]
fn huge_file_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.xml");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(100 * 1024 * 1024).unwrap();
    let before = allocated().1;
    let e = DomainDef::load(&p).unwrap_err();
    let allocated = allocated().1 - before;
    assert!(allocated < 64 * 1024, "{allocated} bytes allocated");
    assert!(matches!(e, ConfError::TooLarge { size, .. } if size == 100 * 1024 * 1024));
    assert!(e.to_string().contains("too large"), "{e}");
    // Just over the limit is refused too; exactly at the limit is read.
    f.set_len(MAX_XML_SIZE + 1).unwrap();
    assert!(matches!(
        DomainDef::load(&p),
        Err(ConfError::TooLarge { .. })
    ));
    // Inline text is capped as well.
    let big = format!("<domain>{}</domain>", " ".repeat(MAX_XML_SIZE as usize));
    assert!(matches!(
        DomainDef::parse_str(&big, None),
        Err(ConfError::TooLarge { .. })
    ));
}

#[test]
fn non_utf8_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("latin1.xml");
    std::fs::write(&p, b"<domain type='kvm'><name>caf\xe9</name></domain>").unwrap();
    let e = DomainDef::load(&p).unwrap_err();
    assert_eq!(e, ConfError::NotUtf8 { offset: 28 });
    assert!(e
        .to_diagnostic(Some(&p))
        .message
        .contains("not valid UTF-8"));
}

#[test]
fn malformed_xml_has_line_and_column() {
    let e = DomainDef::parse_str(
        "<domain type='kvm'>\n  <name>x</name>\n  <memory>1</memry>\n</domain>",
        None,
    )
    .unwrap_err();
    let d = e.to_diagnostic(None);
    assert!(d.message.starts_with("XML error: "), "{}", d.message);
    let p = d.pos.unwrap();
    assert_eq!(p.line, 3, "{d:?}");
    assert!(p.col > 1);
}

#[test]
fn wrong_types_and_ranges() {
    let dom = |dev: &str| {
        format!("<domain type='kvm'><name>x</name><memory>1</memory><os><type>hvm</type></os><devices>{dev}</devices></domain>")
    };
    let err = |dev: &str| {
        DomainDef::parse_str(&dom(dev), None)
            .unwrap_err()
            .to_diagnostic(None)
            .message
    };
    assert_eq!(
        err("<interface type='user'><driver queues='many'/></interface>"),
        "XML error: Invalid value for attribute 'queues' in element 'driver': 'many'. Expected non-negative integer value"
    );
    assert_eq!(
        err("<interface type='user'><driver queues='99999999999'/></interface>"),
        "XML error: Invalid value for attribute 'queues' in element 'driver': '99999999999'. Expected non-negative integer value"
    );
    assert_eq!(
        err("<interface type='user'><driver rss='maybe'/></interface>"),
        "XML error: Invalid value for attribute 'rss' in element 'driver': 'maybe'."
    );
    assert_eq!(
        err("<interface type='user'><address type='pci' bus='0x100' slot='1'/></interface>"),
        "XML error: Invalid PCI address bus='0x100', must be <= 0xFF"
    );
    assert_eq!(
        err("<interface type='user'><address type='pci' slot='0x20'/></interface>"),
        "XML error: Invalid PCI address slot='0x20', must be <= 0x1F"
    );
    assert_eq!(
        err("<interface type='user'><address type='pci' slot='1' function='8'/></interface>"),
        "XML error: Invalid PCI address function=0x8, must be <= 7"
    );
    assert_eq!(
        err("<interface type='bogus'/>"),
        "XML error: Invalid value for attribute 'type' in element 'interface': 'bogus'."
    );
    assert_eq!(
        err("<interface/>"),
        "XML error: Missing required attribute 'type' in element 'interface'"
    );
    assert_eq!(
        err("<interface type='user'><mac address='zz'/></interface>"),
        "internal error: unable to parse mac address 'zz'"
    );
    assert_eq!(
        err("<interface type='user'><mac address='01:00:00:00:00:01'/></interface>"),
        "XML error: expected unicast mac address, found multicast '01:00:00:00:00:01'"
    );
    assert_eq!(
        err("<interface type='user'><boot order='0'/></interface>"),
        "XML error: Invalid value for attribute 'order' in element 'boot': Zero is not permitted"
    );
    let mem = |m: &str| {
        DomainDef::parse_str(
            &format!("<domain type='kvm'><name>x</name>{m}<os><type>hvm</type></os></domain>"),
            None,
        )
        .unwrap_err()
        .to_diagnostic(None)
        .message
    };
    assert_eq!(
        mem("<memory unit='parsecs'>1</memory>"),
        "invalid argument: unknown suffix 'parsecs'"
    );
    assert_eq!(
        mem("<memory>lots</memory>"),
        "XML error: could not parse element ./memory[1]"
    );
    assert_eq!(
        mem("<memory unit='EiB'>16</memory>"),
        "numerical overflow: value too large: 16EiB"
    );
}
