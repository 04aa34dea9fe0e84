//! Fuzzing the XML entry points: domain, network and network-port XML
//! through parse, format (and reparse: the output must parse and be
//! stable), generic + QEMU validation and, for domains libvirt accepts, the
//! whole conversion to a QEMU command line.
//!
//! Inputs are libvirt's test documents (and the examples) mutated bytewise
//! and structurally: deep nesting, an element repeated many times, many
//! attributes on one element, control characters, numbers at and past
//! their bounds, duplicated and dropped elements and attributes. A deterministic generator (seeded) makes every
//! run reproducible: a failure prints the seed and the iteration and saves
//! the input under `target/fuzz-failures/`.
//!
//! Default `cargo test`: a few hundred inputs, plus every saved regression
//! input in `tests/fuzz_regressions/`. The long run (see README, "Testing"):
//!
//! ```text
//! TEAMVIRT_FUZZ_CASES=1000000 nice cargo test --release -p teamvirt-qemu \
//!     --test fuzz_xml -- --nocapture fuzz_xml_entry_points
//! ```
//!
//! `TEAMVIRT_FUZZ_SEED` picks another seed (default 1).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use teamvirt_conf::{AnyDef, DeviceDef, DomainDef};
use teamvirt_qemu::caps::QemuCaps;
use teamvirt_qemu::command::{convert, BuildOptions};
use teamvirt_qemu::resolve::NetworkMap;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn seed_documents() -> Vec<Vec<u8>> {
    let root = teamvirt_testinfra::workspace_root();
    let mut files: Vec<PathBuf> = vec![
        root.join("examples/teaming-q35.xml"),
        root.join("examples/vfpool-network.xml"),
        root.join("examples/hotplug-standby.xml"),
        root.join("examples/hotplug-primary.xml"),
    ];
    if let Some(c) = teamvirt_testinfra::corpus_dir() {
        for sub in [
            "qemuxmlconfdata",
            "networkxml2xmlin",
            "virnetworkportxml2xmldata",
            "qemuhotplugtestdevices",
        ] {
            if let Ok(rd) = std::fs::read_dir(c.join(sub)) {
                files.extend(
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "xml")),
                );
            }
        }
    } else {
        eprintln!("fuzz_xml: libvirt corpus not found, mutating the examples only");
    }
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .filter(|b| b.first() == Some(&b'<'))
        .collect()
}

/// Byte spans of whole elements (`<x ...>...</x>` or `<x .../>`), found
/// naively: good enough to pick something to repeat, wrap or drop.
fn element_spans(d: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, &[u8])> = Vec::new();
    let mut i = 0;
    while i < d.len() {
        if d[i] != b'<' {
            i += 1;
            continue;
        }
        let Some(end) = d[i..].iter().position(|&c| c == b'>').map(|e| i + e) else {
            break;
        };
        let tag = &d[i + 1..end];
        if tag.first() == Some(&b'/') {
            let name = &tag[1..];
            if let Some(pos) = stack.iter().rposition(|(_, n)| *n == name) {
                let (start, _) = stack[pos];
                stack.truncate(pos);
                out.push((start, end + 1));
            }
        } else if !matches!(tag.first(), Some(b'?' | b'!')) {
            let name_end = tag
                .iter()
                .position(|c| c.is_ascii_whitespace() || *c == b'/')
                .unwrap_or(tag.len());
            if tag.last() == Some(&b'/') {
                out.push((i, end + 1));
            } else {
                stack.push((i, &tag[..name_end]));
            }
        }
        i = end + 1;
    }
    out
}

/// Spans of attribute values and of element text that looks numeric.
fn number_spans(d: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() {
        if d[i].is_ascii_digit() && (i == 0 || matches!(d[i - 1], b'\'' | b'"' | b'>' | b'x')) {
            let s = i;
            while i < d.len() && d[i].is_ascii_alphanumeric() {
                i += 1;
            }
            out.push((s, i));
        }
        i += 1;
    }
    out
}

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "255",
    "256",
    "0xff",
    "0x100",
    "0x1f",
    "0x20",
    "7",
    "8",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "1e3",
    " 1",
    "",
];

const CONTROLS: &[&str] = &[
    "\u{1b}[31m",
    "\r",
    "\u{7}",
    "\u{202e}",
    "\t",
    "\u{85}",
    "&#27;",
    "&#x1F;",
    "&#0;",
    "&#xD;",
    "&lt;",
];

fn mutate(doc: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = doc.to_vec();
    for _ in 0..1 + rng.below(3) {
        if d.is_empty() {
            break;
        }
        let n = d.len();
        match rng.below(12) {
            0 => d[rng.below(n)] = rng.next() as u8,
            1 => d.truncate(rng.below(n)),
            2 => {
                let s = rng.below(n);
                let l = 1 + rng.below(64);
                let span = d[s..(s + l).min(n)].to_vec();
                let at = rng.below(n + 1);
                d.splice(at..at, span);
            }
            3 => {
                let s = rng.below(n);
                d.drain(s..(s + 1 + rng.below(64)).min(n));
            }
            4 | 5 => {
                // Repeat one element: a few times, or very many.
                let spans = element_spans(&d);
                if let Some(&(s, e)) = spans.get(rng.below(spans.len())) {
                    let times = if rng.chance(10) {
                        500 + rng.below(3000)
                    } else {
                        1 + rng.below(4)
                    };
                    let el = d[s..e].to_vec();
                    // Past 2 MB the input only tests the size limit (10 MiB),
                    // which is cheap; keep the fuzzer itself fast.
                    let times = times.min(2_000_000 / el.len().max(1));
                    let rep: Vec<u8> = el.iter().copied().cycle().take(el.len() * times).collect();
                    d.splice(e..e, rep);
                }
            }
            6 => {
                // Wrap one element in deep nesting (around the depth limit).
                let spans = element_spans(&d);
                if let Some(&(s, e)) = spans.get(rng.below(spans.len())) {
                    let depth = match rng.below(3) {
                        0 => 1 + rng.below(8),
                        1 => 250 + rng.below(10),
                        _ => 200 + rng.below(2000),
                    };
                    let name = if rng.chance(50) { "x" } else { "metadata" };
                    d.splice(e..e, format!("</{name}>").repeat(depth).into_bytes());
                    d.splice(s..s, format!("<{name}>").repeat(depth).into_bytes());
                }
            }
            7 => {
                let spans = element_spans(&d);
                if let Some(&(s, e)) = spans.get(rng.below(spans.len())) {
                    d.drain(s..e);
                }
            }
            8 | 9 => {
                let spans = number_spans(&d);
                if let Some(&(s, e)) = spans.get(rng.below(spans.len())) {
                    let v = NUMBERS[rng.below(NUMBERS.len())];
                    d.splice(s..e, v.bytes());
                }
            }
            10 => {
                // Many attributes on one element: a few, around the
                // per-element limit, or very many (the parser's duplicate
                // check is quadratic in them).
                let spans = element_spans(&d);
                if let Some(&(s, _)) = spans.get(rng.below(spans.len())) {
                    let count = match rng.below(4) {
                        0 | 1 => 1 + rng.below(8),
                        2 => 250 + rng.below(10),
                        _ => 1_000 + rng.below(100_000),
                    };
                    let name_end = d[s + 1..]
                        .iter()
                        .position(|&c| c.is_ascii_whitespace() || c == b'>' || c == b'/')
                        .map_or(d.len(), |p| s + 1 + p);
                    let attrs: String = (0..count).map(|i| format!(" fz{i}='x'")).collect();
                    d.splice(name_end..name_end, attrs.into_bytes());
                }
            }
            _ => {
                let c = CONTROLS[rng.below(CONTROLS.len())];
                let at = rng.below(n + 1);
                d.splice(at..at, c.bytes());
            }
        }
    }
    d
}

/// Everything an input goes through. Panics (and failed round trips) are
/// the findings.
/// What every input is checked against, built once per run.
struct Target {
    caps: QemuCaps,
    /// The bundled example domain that device documents are put into.
    base: DomainDef,
}

fn target() -> Target {
    let base = teamvirt_testinfra::workspace_root().join("examples/teaming-q35.xml");
    let Ok((base, _)) = DomainDef::parse_str(&std::fs::read_to_string(base).unwrap(), None) else {
        panic!("the bundled example does not parse");
    };
    Target { caps: caps(), base }
}

fn exercise(bytes: &[u8], t: &Target) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok((def, _)) = AnyDef::parse_str(text, Some(Path::new("fuzz.xml"))) else {
        exercise_device(text, t);
        return;
    };
    let once = def.to_xml();
    if once.len() as u64 > teamvirt_conf::MAX_XML_SIZE {
        return;
    }
    let (again, _) = AnyDef::parse_str(&once, None)
        .unwrap_or_else(|e| panic!("output does not reparse: {e}\n{once}"));
    assert_eq!(again.to_xml(), once, "output not stable");
    if let AnyDef::Domain(d) = def {
        validate_and_convert(d, &t.caps);
    }
}

/// A domain that validates is converted too (errors are fine, panics not).
fn validate_and_convert(d: DomainDef, caps: &QemuCaps) {
    let diags = teamvirt_qemu::validate::validate(&d, Some(true));
    if diags.iter().all(|d| !d.is_error()) {
        let _ = convert(
            d,
            caps,
            &NetworkMap::default(),
            &[],
            &BuildOptions::test_env(),
        );
    }
}

/// A device document (`attach-device`): parsed, then checked and converted
/// inside the bundled example domain, as a hotplug checks it.
fn exercise_device(text: &str, t: &Target) {
    let Ok((dev, _)) = DeviceDef::parse_str(text, Some(Path::new("fuzz-device.xml"))) else {
        return;
    };
    let mut d = t.base.clone();
    match dev {
        DeviceDef::Interface(i) => d.devices.interfaces.push(i),
        DeviceDef::Hostdev(h) => d.devices.hostdevs.push(h),
    }
    let once = d.to_xml();
    // Larger than what can be read back: teamvirt refuses to store it
    // (runtime `check_formatted`).
    if once.len() as u64 > teamvirt_conf::MAX_XML_SIZE {
        return;
    }
    let (again, _) = DomainDef::parse_str(&once, None)
        .unwrap_or_else(|e| panic!("domain with the device does not reparse: {e}\n{once}"));
    assert_eq!(again.to_xml(), once, "output not stable");
    validate_and_convert(d, &t.caps);
}

fn caps() -> QemuCaps {
    let from_corpus = teamvirt_testinfra::corpus_dir()
        .map(|c| c.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml"))
        .filter(|p| p.exists())
        .and_then(|p| QemuCaps::from_libvirt_xml(p).ok());
    from_corpus.unwrap_or_else(|| {
        QemuCaps::from_flags(
            "/usr/bin/qemu-system-x86_64",
            "x86_64",
            [
                "virtio-net-pci",
                "vfio-pci",
                "pcie-root-port",
                "pcie-pci-bridge",
            ],
        )
    })
}

/// The input being exercised: case number, start, bytes, and whether it is
/// finished or already reported as slow.
type Current = (u64, Instant, Vec<u8>, bool);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[test]
fn fuzz_xml_entry_points() {
    let cases = env_u64("TEAMVIRT_FUZZ_CASES", 300);
    let seed = env_u64("TEAMVIRT_FUZZ_SEED", 1).max(1);
    let docs = seed_documents();
    let target = target();
    let mut rng = Rng(seed);
    let out_dir = teamvirt_testinfra::workspace_root().join("target/fuzz-failures");
    let started = Instant::now();
    let mut failures = 0u64;
    let mut slowest = (Duration::ZERO, 0u64);
    // A watchdog saves an input that takes too long (a hang or a cost out
    // of proportion is a finding too).
    let slow_after = Duration::from_secs(env_u64("TEAMVIRT_FUZZ_SLOW_SECS", 10));
    let current: Arc<Mutex<Current>> = Arc::new(Mutex::new((0, Instant::now(), Vec::new(), true)));
    let watch = {
        let current = Arc::clone(&current);
        let out_dir = out_dir.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let mut c = current.lock().unwrap();
            if c.0 == u64::MAX {
                return;
            }
            // c.3: not running (between inputs) or already reported.
            if !c.3 && c.1.elapsed() > slow_after {
                c.3 = true;
                std::fs::create_dir_all(&out_dir).unwrap();
                let f = out_dir.join(format!("seed{seed}-case{}-slow.xml", c.0));
                std::fs::write(&f, &c.2).unwrap();
                eprintln!(
                    "fuzz_xml: SLOW case {} (seed {seed}) over {slow_after:?}, input saved to {}",
                    c.0,
                    f.display()
                );
            }
        })
    };
    // Findings are reported by the message, not a backtrace per input.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..cases {
        let doc = &docs[rng.below(docs.len())];
        let input = mutate(doc, &mut rng);
        *current.lock().unwrap() = (i, Instant::now(), input.clone(), false);
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| exercise(&input, &target)));
        if t.elapsed() > slowest.0 {
            slowest = (t.elapsed(), i);
        }
        {
            let mut c = current.lock().unwrap();
            if c.3 {
                failures += 1;
            }
            c.3 = true;
        }
        if let Err(e) = r {
            failures += 1;
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            std::fs::create_dir_all(&out_dir).unwrap();
            let f = out_dir.join(format!("seed{seed}-case{i}.xml"));
            std::fs::write(&f, &input).unwrap();
            eprintln!(
                "fuzz_xml: FAILURE at case {i} (seed {seed}), input saved to {}: {}",
                f.display(),
                msg.lines().next().unwrap_or("")
            );
        }
        if (i + 1) % 50_000 == 0 {
            eprintln!(
                "fuzz_xml: {} inputs, {failures} failure(s), {:.0} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    std::panic::set_hook(hook);
    current.lock().unwrap().0 = u64::MAX;
    watch.join().unwrap();
    eprintln!(
        "fuzz_xml: done: {cases} inputs (seed {seed}), {failures} failure(s), {:.1} s; slowest input: case {} ({:.3} s)",
        started.elapsed().as_secs_f64(),
        slowest.1,
        slowest.0.as_secs_f64()
    );
    assert_eq!(failures, 0, "see the inputs saved in {}", out_dir.display());
}

/// Inputs that once failed (or that exercise a limit), kept as regressions.
#[test]
fn fuzz_regressions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let target = target();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| exercise(&bytes, &target))) {
            panic!("{}: {e:?}", p.display());
        }
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}
