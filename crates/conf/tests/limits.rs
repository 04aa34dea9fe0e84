//! Bounded cost for any input (issue 12): limits on nesting, elements and
//! kept-verbatim XML, output linear in the input, checks linear in the
//! number of devices, duplicate pool entries refused with libvirt's texts.
//!
//! Growth is checked by counting work for N and 2N items, never by timing
//! it (issue 19: time ratios flipped when the tests ran beside each other
//! on 2 cores): bytes of output, allocations and bytes allocated (a
//! counting allocator, per thread), and the operations `teamvirt_conf::work`
//! counts (bytes scanned for positions, alias reads in lookups). Counts do
//! not depend on load: about 2 when linear, about 4 when quadratic.

use teamvirt_conf::parse::limits::{MAX_ATTRIBUTES, MAX_DEPTH, MAX_ELEMENTS, MAX_KEPT_ELEMENTS};
use teamvirt_conf::validate::teaming;
use teamvirt_conf::{work, AnyDef, DomainDef, NetworkDef};
use teamvirt_testinfra::alloc_count::{allocated, CountingAlloc};

// Allocations counted per thread (the tests of this file run on threads
// of their own).
#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// The work `f` does on this thread.
#[derive(Debug, Clone, Copy)]
struct Cost {
    allocs: u64,
    alloc_bytes: u64,
    ops: work::Work,
}

fn cost(f: &dyn Fn()) -> Cost {
    let (a0, b0) = allocated();
    let w0 = work::snapshot();
    f();
    let (a1, b1) = allocated();
    Cost {
        allocs: a1 - a0,
        alloc_bytes: b1 - b0,
        ops: work::snapshot() - w0,
    }
}

/// Asserts that each count of `f(2n)` is at most `max` times that of
/// `f(n)` (2 when linear, 4 when quadratic; counts of zero stay zero).
fn assert_linear(what: &str, f: &dyn Fn(usize), n: usize, max: f64) {
    let a = cost(&|| f(n));
    let b = cost(&|| f(2 * n));
    let counts = [
        ("allocations", a.allocs, b.allocs),
        ("bytes allocated", a.alloc_bytes, b.alloc_bytes),
        (
            "bytes scanned for positions",
            a.ops.pos_bytes,
            b.ops.pos_bytes,
        ),
        ("alias reads", a.ops.alias_reads, b.ops.alias_reads),
    ];
    for (name, x, y) in counts {
        let ratio = y as f64 / (x as f64).max(1.0);
        assert!(
            ratio <= max,
            "{what}: doubling the input multiplied the {name} by {ratio:.2} ({x} -> {y}; {a:?} -> {b:?})"
        );
    }
}

fn domain(devices: &str, metadata: &str) -> String {
    format!(
        "<domain type='kvm'><name>t</name><memory>1024</memory><os><type>hvm</type></os><metadata>{metadata}</metadata><devices>{devices}</devices></domain>"
    )
}

fn err(xml: &str) -> String {
    AnyDef::parse_str(xml, None)
        .unwrap_err()
        .to_diagnostic(None)
        .message
}

#[test]
fn deep_nesting_refused_with_position() {
    // The document: 12,400 levels in 37 KB.
    let deep = domain(
        &format!("{}{}", "<a>".repeat(12_400), "</a>".repeat(12_400)),
        "",
    );
    let e = AnyDef::parse_str(&deep, None)
        .unwrap_err()
        .to_diagnostic(None);
    assert_eq!(
        e.message,
        "XML error: document nesting too deep (more than 256 levels, libxml2's limit)"
    );
    let p = e.pos.unwrap();
    assert_eq!(p.line, 1);
    // <domain> is level 1, <devices> level 2: the 255th <a> is level 257.
    let at = deep.find("<devices>").unwrap() + "<devices>".len() + 3 * 254;
    assert_eq!(p.col as usize, at + 1);
}

#[test]
fn kept_xml_output_is_linear() {
    // 8,000 nested unknown elements were formatted as 128 MB. Within the
    // depth limit, doubling the depth must about double the output.
    let out = |depth: usize| {
        let md = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        DomainDef::parse_str(&domain("", &md), None)
            .unwrap()
            .0
            .to_xml()
            .len()
    };
    let (small, big) = (out(120), out(240));
    let ratio = big as f64 / small as f64;
    assert!(ratio < 2.2, "{small} -> {big} bytes ({ratio:.2}x)");
    // And in absolute terms: a few bytes of output per input byte.
    let depth = MAX_DEPTH - 3;
    let md = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
    assert!(out(depth) < 20 * md.len(), "{} bytes", out(depth));
}

#[test]
fn kept_verbatim_elements_are_capped() {
    let many = |n: usize| {
        domain(
            "",
            &format!("<app:r xmlns:app='urn:a'>{}</app:r>", "<app:x/>".repeat(n)),
        )
    };
    // <metadata> and <app:r> count too.
    let (d, warnings) = DomainDef::parse_str(&many(MAX_KEPT_ELEMENTS - 2), None).unwrap();
    assert_eq!(d.extra.len(), 1);
    assert!(warnings.len() <= 101);
    assert_eq!(
        err(&many(MAX_KEPT_ELEMENTS - 1)),
        "XML error: too much XML that teamvirt does not interpret and would keep verbatim (more than 20000 elements)"
    );
}

#[test]
fn element_count_is_capped() {
    let xml = domain(&"<input type='tablet'/>".repeat(MAX_ELEMENTS), "");
    assert_eq!(
        err(&xml),
        "XML error: document has too many elements (more than 100000)"
    );
}

/// `count` attributes (names `a0`, `a1`, ...) on one `<interface>`.
fn attribute_heavy(elements: usize, count: usize) -> String {
    let attrs: String = (0..count).map(|i| format!(" a{i}='x'")).collect();
    domain(
        &format!("<interface type='user'{attrs}/>").repeat(elements),
        "",
    )
}

/// 100,000 attributes on one element took 55.6 s in `validate` (issue 17):
/// the parser compares each attribute with every one before it on the
/// element. Refused by the scan before any tree is built, at the first
/// attribute past the limit.
#[test]
fn attributes_per_element_are_capped() {
    // `type` and 255 others: at the limit.
    let (d, _) = DomainDef::parse_str(&attribute_heavy(1, MAX_ATTRIBUTES - 1), None).unwrap();
    assert_eq!(d.devices.interfaces.len(), 1);
    let e = AnyDef::parse_str(&attribute_heavy(1, MAX_ATTRIBUTES), None)
        .unwrap_err()
        .to_diagnostic(None);
    assert_eq!(
        e.message,
        "XML error: element has too many attributes (more than 256)"
    );
    let head = attribute_heavy(1, MAX_ATTRIBUTES - 1);
    let col = head.find("/>").unwrap() + 2;
    assert_eq!(e.location(), Some(format!("1:{col}")));
    // The document: refused for the cost of the scan alone.
    let huge = attribute_heavy(1, 100_000);
    let c = cost(&|| {
        let e = err(&huge);
        assert!(e.contains("too many attributes"), "{e}");
    });
    assert!(
        c.alloc_bytes < 64 * 1024 && c.ops.pos_bytes <= huge.len() as u64,
        "refusing {} bytes cost {c:?}",
        huge.len()
    );
}

/// Many elements each at the attribute limit: parse and validation stay
/// linear in the number of elements (the parser's per-element check is
/// bounded by the limit).
#[test]
fn attribute_heavy_elements_are_linear() {
    let docs: Vec<(usize, String)> = [100usize, 200]
        .iter()
        .map(|&n| (n, attribute_heavy(n, MAX_ATTRIBUTES - 1)))
        .collect();
    let run = |n: usize| {
        let xml = &docs.iter().find(|(k, _)| *k == n).unwrap().1;
        let (d, w) = DomainDef::parse_str(xml, None).unwrap();
        assert_eq!(d.devices.interfaces.len(), n);
        assert_eq!(w.len(), 101);
        let _ = teamvirt_conf::validate::libvirt_checks(&d, &teamvirt_conf::validate::NoDriver);
    };
    assert_linear("attribute-heavy elements", &run, 100, 2.3);
}

#[test]
fn warnings_are_capped() {
    let warnings = |n: usize| {
        let xml = domain(&"<bogus/>".repeat(n), "");
        DomainDef::parse_str(&xml, None).unwrap().1
    };
    let other = warnings(10).len() - 10;
    let w = warnings(5_000);
    assert_eq!(w.len(), 101);
    assert_eq!(
        w[100].message,
        format!("{} more warning(s) not shown", 5_000 + other - 100)
    );
}

fn pool(addrs: &[(u8, u8, u8)]) -> String {
    let a: String = addrs
        .iter()
        .map(|(b, s, f)| {
            format!("<address type='pci' domain='0' bus='{b}' slot='{s}' function='{f}'/>")
        })
        .collect();
    format!(
        "<network><name>pool</name><forward mode='hostdev' managed='yes'>{a}</forward></network>"
    )
}

#[test]
fn duplicate_pool_entries_refused_with_libvirts_text() {
    let xml = pool(&[(3, 0, 1), (3, 0, 2), (3, 0, 1)]);
    let e = AnyDef::parse_str(&xml, None)
        .unwrap_err()
        .to_diagnostic(None);
    assert_eq!(
        e.message,
        "XML error: PCI device '0000:03:00.1' can only be listed once in network pool"
    );
    let third = xml.match_indices("<address").nth(2).unwrap().0;
    assert_eq!(e.pos.unwrap().col as usize, third + 1);
    let xml = "<network><name>pool</name><forward mode='passthrough'><interface dev='eth1'/><interface dev='eth2'/><interface dev='eth1'/></forward></network>";
    assert_eq!(
        err(xml),
        "XML error: interface 'eth1' can only be listed once in network pool"
    );
    // Distinct entries are fine, however many.
    let distinct: Vec<_> = (0..=255u8)
        .flat_map(|b| (0..32u8).map(move |s| (b, s, 0)))
        .collect();
    let (n, _) = NetworkDef::parse_str(&pool(&distinct), None).unwrap();
    assert_eq!(n.forward.unwrap().addresses.len(), 256 * 32);
}

#[test]
fn pool_parse_is_linear() {
    // One line of 65k addresses took 8.6 s: every position was counted
    // from the start of its line.
    let parse = |n: usize| {
        let addrs: Vec<_> = (0..n)
            .map(|i| ((i >> 8) as u8, (i & 31) as u8, ((i >> 5) & 7) as u8))
            .collect();
        let xml = pool(&addrs);
        NetworkDef::parse_str(&xml, None).unwrap();
    };
    assert_linear("pool parse", &parse, 4_000, 2.3);
    // Positions cost a bounded scan each, whatever the line's length: the
    // document is one line of about 70 bytes per address.
    let c = cost(&|| parse(8_000));
    assert!(
        c.ops.pos_bytes < 8_000 * (70 + 2 * 256),
        "{} bytes scanned for positions",
        c.ops.pos_bytes
    );
}

#[test]
fn teaming_checks_are_linear() {
    // Every transient names a standby that does not exist: each lookup
    // used to scan every interface (and every device) again.
    let defs: Vec<(usize, DomainDef)> = [3_000usize, 6_000]
        .iter()
        .map(|&n| {
            let nets: String = (0..n)
                .map(|i| {
                    format!(
                        "<interface type='hostdev'><mac address='52:54:00:00:{:02x}:{:02x}'/><source><address type='pci' bus='{}' slot='{}' function='{}'/></source><teaming type='transient' persistent='ua-missing{i}'/></interface>",
                        i >> 8 & 255, i & 255, (i >> 8) & 255, i & 31, (i >> 5) & 7
                    )
                })
                .collect();
            (n, DomainDef::parse_str(&domain(&nets, ""), None).unwrap().0)
        })
        .collect();
    let check = |n: usize| {
        let d = &defs.iter().find(|(k, _)| *k == n).unwrap().1;
        assert!(teaming::checks(d).len() >= n);
    };
    assert_linear("teaming checks", &check, 3_000, 2.3);
}
