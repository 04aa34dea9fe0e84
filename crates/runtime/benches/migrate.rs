//! Migration benchmark, one run on one test guest under TCG (lab mode):
//!
//! 1. teamvirt's migration (`migrate_to_state_dir`: prechecks, VF
//!    reservation on the destination, QEMU `-incoming defer`, events,
//!    deadline watch, finish, confirm, pool bookkeeping) against
//!    `scripts/bench-migrate-raw.py`, which drives the same QEMU migration
//!    over raw QMP and nothing else: ratio of total times (medians), plus
//!    wait-unplug time, downtime and bytes sent for both.
//! 2. The same guest with 8 teaming pairs: every pair negotiated before,
//!    every primary unplugged during and plugged again after, and its
//!    wait-unplug time against the 1-pair run (the guest handles the
//!    unplug requests together, so this should stay near 1x, not 8x).
//!
//! Prints a report; asserts only what must hold functionally, never a time.
//!
//! `cargo bench -p teamvirt-runtime --bench migrate [-- ITERATIONS]`
//! (also `scripts/bench-migrate.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use teamvirt_host::state::StateDir;
use teamvirt_runtime::accel::Accel;
use teamvirt_runtime::migrate::{argv, migrate_to_state_dir, MigrateOptions, Outcome, Progress};
use teamvirt_runtime::run::RunRecord;
use teamvirt_runtime::{Runtime, StartOptions};
use teamvirt_testinfra::{GuestImage, SerialLog};

const NAME: &str = "bench";
const BOOT: Duration = Duration::from_secs(180);

use teamvirt_testinfra::xml;

fn domain_xml(g: &GuestImage, pairs: usize) -> String {
    xml::teaming_domain_xml(NAME, &g.kernel, &g.initrd, &g.cmdline(""), pairs)
}

use xml::vfpool_network_xml as network_xml;

use teamvirt_host::asyncrt::block_on_in_test as block_on;

/// Wait until the guest (its console in `log`) shows `pairs` failover
/// masters with both slaves, in a state printed after uptime `after`.
fn enslaved(log: &Path, pairs: usize, after: f64) -> f64 {
    SerialLog::new(log)
        .wait_for_state(
            &format!("{pairs} failover masters with 2 slaves"),
            |s| {
                s.uptime > after
                    && s.failover_groups()
                        .iter()
                        .filter(|g| g.standby.is_some() && g.primaries.len() == 1)
                        .count()
                        == pairs
            },
            BOOT,
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .uptime
}

fn uptime(log: &Path) -> f64 {
    SerialLog::new(log).latest_state().map_or(0.0, |s| s.uptime)
}

struct Host {
    sd: StateDir,
    rt: Runtime,
}

impl Drop for Host {
    /// Also on a panic: no guest outlives the benchmark.
    fn drop(&mut self) {
        let _ = self.rt.destroy(NAME);
    }
}

/// QEMUs started by the raw script, killed on the way out.
struct RawPids(Vec<i64>);

impl Drop for RawPids {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .arg(pid.to_string())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn host(root: &Path, vfs: usize) -> Host {
    let sd = StateDir::open(root).unwrap();
    let rt = Runtime::open(&sd).unwrap();
    rt.define_network(&network_xml(vfs), None, true).unwrap();
    Host { sd, rt }
}

fn serial_of(h: &Host) -> PathBuf {
    h.sd.run_paths(NAME).unwrap().serial_log
}

/// One teamvirt migration.
struct Run {
    wall: Duration,
    out: Outcome,
    /// QEMU's stamps of the UNPLUG_PRIMARY events (s).
    unplug_events_s: Vec<f64>,
    /// Guest kernel times (s) of "failover primary slave:... unregistered".
    guest_unregistered_s: Vec<f64>,
}

fn teamvirt(from: &Host, to: &Host, pairs: usize) -> Run {
    let src_log = serial_of(from);
    let before = uptime(&src_log);
    let mut unplug_events_s = Vec::new();
    let t = Instant::now();
    let out = block_on(migrate_to_state_dir(
        &from.sd,
        NAME,
        to.sd.root(),
        &MigrateOptions::default(),
        &mut |p| {
            if let Progress::Qemu {
                name, qemu_time_s, ..
            } = p
            {
                if name == "UNPLUG_PRIMARY" {
                    unplug_events_s.push(qemu_time_s);
                }
            }
        },
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let wall = t.elapsed();
    enslaved(&serial_of(to), pairs, before);
    // The guest's own view of the unplugs: dmesg lines in its console dumps.
    let mut guest_unregistered_s: Vec<f64> = SerialLog::new(&src_log)
        .lines()
        .iter()
        .filter(|l| l.contains("failover primary slave") && l.contains("unregistered"))
        .filter_map(|l| {
            let ts = l
                .split('[')
                .nth(1)?
                .split(']')
                .next()?
                .trim()
                .parse::<f64>()
                .ok()?;
            (ts > before).then_some(ts)
        })
        .collect();
    guest_unregistered_s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    guest_unregistered_s.dedup();
    Run {
        wall,
        out,
        unplug_events_s,
        guest_unregistered_s,
    }
}

fn spread_ms(v: &[f64]) -> f64 {
    match (v.first(), v.last()) {
        (Some(a), Some(b)) => (b - a) * 1000.0,
        _ => f64::NAN,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn mib(b: Option<u64>) -> String {
    b.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
}

fn main() {
    let iters: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3)
        .max(1);
    let Some(_) = teamvirt_testinfra::qemu_or_skip("migrate bench") else {
        return;
    };
    let guest = teamvirt_testinfra::test_guest().unwrap_or_else(|e| panic!("{e}"));
    let script = teamvirt_testinfra::workspace_root().join("scripts/bench-migrate-raw.py");
    let _lock = teamvirt_testinfra::guest_lock();
    let tmp = tempfile::tempdir().unwrap();
    let start_opts = StartOptions {
        accel: Some(Accel::Tcg),
        emulate_vf: true,
        wait_failover: Some(BOOT),
        ..Default::default()
    };

    // --- 1 pair: teamvirt vs raw QMP -------------------------------------
    let (a, b) = (
        host(&tmp.path().join("a"), 2),
        host(&tmp.path().join("b"), 2),
    );
    block_on(a.rt.define_domain(&domain_xml(&guest, 1), None)).unwrap();
    block_on(a.rt.start(NAME, &start_opts)).unwrap();
    enslaved(&serial_of(&a), 1, 0.0);
    let mut tv: Vec<Run> = Vec::new();
    for i in 0..iters {
        let (from, to) = [(&a, &b), (&b, &a)][i % 2];
        tv.push(teamvirt(from, to, 1));
    }
    // The raw script continues from wherever the domain is now.
    let home = [&a, &b][iters % 2];
    let rec = RunRecord::load(&home.sd, NAME).unwrap().unwrap();
    let src_dir = home.sd.run_paths(NAME).unwrap().dir;
    let mut src_sock = rec.qmp_socket.clone();
    let mut src_log = serial_of(home);
    let mut raw: Vec<Value> = Vec::new();
    let mut raw_pids = RawPids(Vec::new());
    for i in 0..iters {
        let dir = tmp.path().join(format!("raw{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let key = src_dir.join("master-key.aes");
        if key.exists() {
            std::fs::copy(&key, dir.join("master-key.aes")).unwrap();
        }
        let mut dargv = vec![rec.argv[0].clone()];
        dargv.extend(
            argv::destination_args(&rec.argv[1..], &src_dir, &dir, &BTreeMap::new()).unwrap(),
        );
        let argv_file = dir.join("argv.json");
        std::fs::write(&argv_file, serde_json::to_string(&dargv).unwrap()).unwrap();
        let before = uptime(&src_log);
        let out = Command::new("python3")
            .arg(&script)
            .arg(&src_sock)
            .arg(&argv_file)
            .arg(dir.join("qmp.sock"))
            .arg(dir.join("qemu.log"))
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(v["ok"], true, "{v}");
        raw_pids.0.push(v["dest_pid"].as_i64().unwrap());
        src_sock = dir.join("qmp.sock");
        src_log = dir.join("serial.log");
        enslaved(&src_log, 1, before);
        raw.push(v);
    }
    drop(raw_pids);
    let tv_total: Vec<f64> = tv.iter().map(|r| r.wall.as_secs_f64()).collect();
    let raw_total: Vec<f64> = raw.iter().map(|v| v["total_s"].as_f64().unwrap()).collect();
    let tv_wu: Vec<f64> = tv
        .iter()
        .filter_map(|r| r.out.job.wait_unplug_ms.map(|m| m as f64))
        .collect();
    let raw_wu: Vec<f64> = raw
        .iter()
        .filter_map(|v| v["wait_unplug_ms"].as_f64())
        .collect();

    // --- 8 pairs ----------------------------------------------------------
    const N: usize = 8;
    let (c, d) = (
        host(&tmp.path().join("c"), N),
        host(&tmp.path().join("d"), N),
    );
    block_on(c.rt.define_domain(&domain_xml(&guest, N), None)).unwrap();
    let rep = block_on(c.rt.start(NAME, &start_opts)).unwrap();
    let before = rep.teaming.expect("waited for failover");
    assert!(
        before.len() == N && before.iter().all(|s| s.negotiated && s.plugged),
        "{before:?}"
    );
    enslaved(&serial_of(&c), N, 0.0);
    let mut multi: Vec<Run> = Vec::new();
    for i in 0..iters.clamp(1, 2) {
        let (from, to) = [(&c, &d), (&d, &c)][i % 2];
        let r = teamvirt(from, to, N);
        let o = &r.out;
        let mut unplugged = o.job.unplugged.clone();
        unplugged.sort();
        unplugged.dedup();
        assert_eq!(
            unplugged.len(),
            N,
            "every primary unplugged: {:?}",
            o.job.unplugged
        );
        assert!(
            o.destination_pairs
                .iter()
                .all(|s| s.negotiated && s.plugged),
            "every primary plugged again: {:?}",
            o.destination_pairs
        );
        multi.push(r);
    }
    let multi_wu: Vec<f64> = multi
        .iter()
        .filter_map(|r| r.out.job.wait_unplug_ms.map(|m| m as f64))
        .collect();

    // --- report -----------------------------------------------------------
    println!("\nmigration benchmark (TCG, 256 MiB guest, lab mode; {iters} runs each, medians)\n");
    println!("{:<34}{:>14}{:>14}", "", "teamvirt", "raw QMP");
    println!(
        "{:<34}{:>12.3} s{:>12.3} s",
        "total (prepare..source gone)",
        median(&tv_total),
        median(&raw_total)
    );
    println!(
        "{:<34}{:>11.0} ms{:>11.0} ms",
        "wait-unplug",
        median(&tv_wu),
        median(&raw_wu)
    );
    let dt = |o: Option<u64>| o.map_or(f64::NAN, |v| v as f64);
    println!(
        "{:<34}{:>11.0} ms{:>11.0} ms",
        "downtime (QEMU)",
        median(
            &tv.iter()
                .map(|r| dt(r.out.job.downtime_ms))
                .collect::<Vec<_>>()
        ),
        median(
            &raw.iter()
                .map(|v| v["downtime_ms"].as_f64().unwrap_or(f64::NAN))
                .collect::<Vec<_>>()
        )
    );
    println!(
        "{:<34}{:>14}{:>14}",
        "bytes sent (last run)",
        mib(tv.last().and_then(|r| r.out.job.data_processed)),
        mib(raw.last().and_then(|v| v["bytes_sent"].as_u64()))
    );
    println!(
        "\nratio teamvirt / raw QMP, total time: {:.2}x",
        median(&tv_total) / median(&raw_total)
    );
    println!("  (teamvirt adds: prechecks, VF reservation, run records, job file, finish/confirm, pool release)");
    println!("\n{N} teaming pairs (all negotiated before, {N} UNPLUG_PRIMARY during, all plugged+negotiated after):");
    println!(
        "  total {:.3} s, wait-unplug {:.0} ms, downtime {:.0} ms",
        median(
            &multi
                .iter()
                .map(|r| r.wall.as_secs_f64())
                .collect::<Vec<_>>()
        ),
        median(&multi_wu),
        median(
            &multi
                .iter()
                .map(|r| dt(r.out.job.downtime_ms))
                .collect::<Vec<_>>()
        )
    );
    println!(
        "  wait-unplug {N} pairs / 1 pair: {:.2}x  (~1x: the unplugs overlap; ~{N}x would mean they queue)",
        median(&multi_wu) / median(&tv_wu)
    );
    if let Some(r) = multi.first() {
        let mut ev = r.unplug_events_s.clone();
        ev.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "  where the time goes (first run): QEMU asked for all {} unplugs within {:.0} ms; the guest then unregistered them one after another ({} seen in its console dump, over {:.0} ms, {:.0} ms apart on average)",
            ev.len(),
            spread_ms(&ev),
            r.guest_unregistered_s.len(),
            spread_ms(&r.guest_unregistered_s),
            spread_ms(&r.guest_unregistered_s) / (r.guest_unregistered_s.len().max(2) - 1) as f64
        );
    }
}
