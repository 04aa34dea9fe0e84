//! Conversions per second of the teaming corpus cases: domain XML parse +
//! validation + defaults + network resolution + command line
//! ([`teamvirt_qemu::command::convert`], what `domxml-to-native` runs),
//! against parsing alone measured in the same run.
//!
//! Each case has two benchmarks, `CASE/parse` and `CASE/convert`, both with
//! `Throughput::Elements(1)`: criterion's `thrpt` line is documents parsed
//! or conversions per second. After criterion's output a table gives, per
//! case, the mean time of each and the ratio convert / parse, from the very
//! iterations criterion timed (warm-up included), so no absolute number is
//! compared with anything.
//!
//! The caps are read once, outside the timed loop: `caps_9.1.0_x86_64.xml`
//! for the current cases, libvirt 8.1's flag set (`virtio-net.failover`,
//! `vfio-pci`, no JSON `-device`) for the `historical/v8.1.0` ones, which
//! exercise the legacy `key=value` syntax. The domain text is read once too;
//! the network case reads its network and port XML in every iteration, as
//! `domxml-to-native --network-dir` does.
//!
//! `cargo bench -p teamvirt-qemu --bench convert [-- --quick]`

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use teamvirt_conf::DomainDef;
use teamvirt_qemu::caps::QemuCaps;
use teamvirt_qemu::command::{convert, BuildOptions};
use teamvirt_qemu::resolve::TestNetworkDirs;

/// One corpus domain and the caps it is converted against.
struct Case<'a> {
    name: String,
    file: PathBuf,
    text: String,
    caps: &'a QemuCaps,
}

/// Parse only: the baseline.
fn parse(case: &Case) -> DomainDef {
    DomainDef::parse_str(black_box(&case.text), Some(&case.file))
        .expect("corpus domain parses")
        .0
}

/// The whole pipeline from text; returns the argv length so nothing is
/// optimised away.
fn full(case: &Case, nets: &TestNetworkDirs, opts: &BuildOptions) -> usize {
    let def = parse(case);
    let conv = convert(def, case.caps, nets, &[], opts).expect("corpus domain converts");
    conv.built.cmd.to_args().len()
}

/// Total time and iterations per (case, kind), as criterion ran them.
type Totals = RefCell<BTreeMap<(String, &'static str), (Duration, u64)>>;

fn timed(
    totals: &Totals,
    key: (String, &'static str),
    iters: u64,
    mut f: impl FnMut(),
) -> Duration {
    let t0 = Instant::now();
    for _ in 0..iters {
        f();
    }
    let took = t0.elapsed();
    let mut map = totals.borrow_mut();
    let e = map.entry(key).or_default();
    e.0 += took;
    e.1 += iters;
    took
}

fn per_iter(total: &(Duration, u64)) -> Option<f64> {
    (total.1 > 0).then(|| total.0.as_secs_f64() / total.1 as f64)
}

fn print_ratios(totals: &Totals) {
    let map = totals.borrow();
    let mut rows = Vec::new();
    for ((case, kind), t) in map.iter() {
        if *kind != "convert" {
            continue;
        }
        let Some(base) = map.get(&(case.clone(), "parse")) else {
            continue;
        };
        if let (Some(c), Some(p)) = (per_iter(t), per_iter(base)) {
            rows.push((case.clone(), p, c));
        }
    }
    if rows.is_empty() {
        return;
    }
    println!(
        "\n{:<40} {:>12} {:>12} {:>14} {:>9}",
        "case", "parse", "convert", "conversions/s", "ratio"
    );
    for (case, p, c) in rows {
        println!(
            "{case:<40} {:>9.1} µs {:>9.1} µs {:>14.0} {:>8.1}x",
            p * 1e6,
            c * 1e6,
            1.0 / c,
            c / p
        );
    }
}

fn load_cases<'a>(corpus: &Path, current: &'a QemuCaps, legacy: &'a QemuCaps) -> Vec<Case<'a>> {
    let mut specs: Vec<(String, PathBuf, &QemuCaps)> = [
        "net-virtio-teaming",
        "net-virtio-teaming-hostdev",
        "net-virtio-teaming-network",
    ]
    .iter()
    .map(|n| {
        let file = corpus.join("qemuxmlconfdata").join(format!("{n}.xml"));
        (n.to_string(), file, current)
    })
    .collect();
    // The historical cases that have `.args` (the network one has none).
    for n in ["net-virtio-teaming", "net-virtio-teaming-hostdev"] {
        let file = corpus
            .join("historical/v8.1.0/qemuxml2argvdata")
            .join(format!("{n}.xml"));
        specs.push((format!("v8.1.0/{n}"), file, legacy));
    }
    specs
        .into_iter()
        .map(|(name, file, caps)| {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            Case {
                name,
                file,
                text,
                caps,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let Some(corpus) = teamvirt_testinfra::corpus_dir() else {
        eprintln!(
            "skipping convert benchmark: libvirt corpus not found at \
             ../shared/conformance/libvirt (set TEAMVIRT_CORPUS)"
        );
        return;
    };
    let current =
        QemuCaps::from_libvirt_xml(corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml"))
            .expect("caps_9.1.0_x86_64.xml loads");
    // libvirt 8.1's DO_TEST(name, VIRTIO_NET_FAILOVER, DEVICE_VFIO_PCI).
    let legacy = QemuCaps::from_flags(
        "/usr/bin/qemu-system-i386",
        "i686",
        ["virtio-net.failover", "vfio-pci"],
    );
    let nets = TestNetworkDirs {
        net_dir: corpus.join("networkxml2xmlin"),
        port_dir: Some(corpus.join("virnetworkportxml2xmldata")),
    };
    let opts = BuildOptions::test_env();
    let cases = load_cases(&corpus, &current, &legacy);
    // A case that fails would time an error path: refuse before timing.
    for case in &cases {
        full(case, &nets, &opts);
    }

    let totals = Totals::default();
    for case in &cases {
        let mut g = c.benchmark_group(&case.name);
        g.throughput(Throughput::Elements(1));
        g.bench_function("parse", |b| {
            b.iter_custom(|iters| {
                timed(&totals, (case.name.clone(), "parse"), iters, || {
                    black_box(parse(case));
                })
            })
        });
        g.bench_function("convert", |b| {
            b.iter_custom(|iters| {
                timed(&totals, (case.name.clone(), "convert"), iters, || {
                    black_box(full(case, &nets, &opts));
                })
            })
        });
        g.finish();
    }
    // Without `--bench` (`cargo test --benches`) criterion runs each routine
    // once as a smoke test: one unoptimised iteration is no measurement.
    if std::env::args().any(|a| a == "--bench") {
        print_ratios(&totals);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
