//! `teamvirt start` (in-process `Runtime::start`: caps from cache, VF pool
//! allocation, command line, detached spawn, QMP handshake, `cont`) against
//! launching the very same QEMU command line by hand (spawn, wait for the
//! QMP greeting, `qmp_capabilities`, `cont`). Both stop timing when the
//! vCPUs run. Reported as a ratio of medians measured in the same run;
//! nothing here asserts an absolute time.
//!
//! `cargo bench -p teamvirt-runtime --bench start_vs_qemu [-- ITERATIONS]`

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use teamvirt_host::state::StateDir;
use teamvirt_runtime::accel::Accel;
use teamvirt_runtime::{Runtime, StartOptions};

use teamvirt_host::asyncrt::block_on_in_test as block_on;

/// The pool `pool` with one VF (lab mode: no VF is touched).
fn net() -> String {
    teamvirt_testinfra::xml::pool_xml("pool", &["0000:3b:02.1"])
}

/// One teaming pair, its primary from `pool`.
fn dom() -> String {
    teamvirt_testinfra::xml::PairDomain::new("bench")
        .domain_type("qemu")
        .memory_mib(128)
        .mac("52:54:00:00:00:01")
        .standby("ua-sb")
        .pool("pool")
        .memballoon(None)
        .xml()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One QMP exchange line by line (QEMU writes one JSON value per line).
fn qmp_roundtrip(r: &mut impl BufRead, w: &mut UnixStream, cmd: &str) {
    w.write_all(format!("{{\"execute\":\"{cmd}\"}}\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "QEMU closed QMP");
        if line.contains("\"return\"") {
            return;
        }
        assert!(!line.contains("\"error\""), "{cmd}: {line}");
    }
}

/// Launch `argv` by hand until the vCPUs run; returns the elapsed time.
fn by_hand(argv: &[String], env: &[(String, String)], sock: &Path, log: &Path) -> Duration {
    let _ = std::fs::remove_file(sock);
    let t0 = Instant::now();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stream = loop {
        match UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(_) => {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "QEMU exited: see {}",
                    log.display()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    assert!(greeting.contains("\"QMP\""), "{greeting}");
    qmp_roundtrip(&mut r, &mut w, "qmp_capabilities");
    qmp_roundtrip(&mut r, &mut w, "cont");
    let took = t0.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    took
}

fn main() {
    if std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping start_vs_qemu: qemu-system-x86_64 not installed");
        return;
    }
    let iters: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let sd = StateDir::open(&dir.path().join("state")).unwrap();
    let rt = Runtime::open(&sd).unwrap();
    rt.define_network(&net(), None, true).unwrap();
    block_on(rt.define_domain(&dom(), None)).unwrap();
    let opts = StartOptions {
        accel: Some(Accel::Tcg),
        ..Default::default()
    };

    // Warm-up: fills the capability cache, page cache, and gives the argv.
    let warm = block_on(rt.start("bench", &opts)).unwrap();
    let argv = warm.record.argv.clone();
    let env: Vec<(String, String)> = {
        // The same environment teamvirt gave QEMU.
        let p = std::fs::read(format!("/proc/{}/environ", warm.record.proc.pid)).unwrap();
        p.split(|b| *b == 0)
            .filter_map(|kv| {
                std::str::from_utf8(kv)
                    .ok()?
                    .split_once('=')
                    .map(|(k, v)| (k.into(), v.into()))
            })
            .collect()
    };
    // The run directory goes with the domain: its master key is taken
    // for the hand-run QEMU first.
    let run = sd.run_paths("bench").unwrap();
    let hand_dir = dir.path().join("hand");
    std::fs::create_dir_all(&hand_dir).unwrap();
    std::fs::copy(
        run.dir.join("master-key.aes"),
        hand_dir.join("master-key.aes"),
    )
    .unwrap();
    rt.destroy("bench").unwrap();
    let run_dir = run.dir.display().to_string();
    let hand_argv: Vec<String> = argv
        .iter()
        .map(|a| a.replace(&run_dir, &hand_dir.display().to_string()))
        .collect();
    let hand_sock = hand_dir.join("qmp.sock");
    let hand_log = hand_dir.join("qemu.log");

    let (mut tv, mut hand) = (Vec::new(), Vec::new());
    for _ in 0..iters {
        let t0 = Instant::now();
        let r = block_on(rt.start("bench", &opts)).unwrap();
        tv.push(t0.elapsed());
        assert!(r.record.is_alive());
        rt.destroy("bench").unwrap();
        hand.push(by_hand(&hand_argv, &env, &hand_sock, &hand_log));
    }
    let (tv_m, hand_m) = (median(&mut tv), median(&mut hand));
    println!("start_vs_qemu ({iters} iterations, TCG, q35 + lab-mode teaming pair)");
    println!("  teamvirt start (until QMP ready, vCPUs running): median {tv_m:?}");
    println!("  same QEMU command line by hand (greeting + cont):  median {hand_m:?}");
    println!(
        "  ratio teamvirt/by-hand: {:.2}",
        tv_m.as_secs_f64() / hand_m.as_secs_f64()
    );
}
