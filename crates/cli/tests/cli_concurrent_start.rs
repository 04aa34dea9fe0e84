//! 100 concurrent `teamvirt start` processes against one VF pool of 8
//! (issue 4 item 4), through the binary and its real start path (pool locks
//! in name order, resolution under them): exactly 8 start, each with its
//! own VF; the other 92 fail with libvirt's exhaustion error and leave no
//! QEMU behind; destroying the 8 empties the pool. Lab mode (`net-define
//! --emulate-vf`), so no SR-IOV is needed; the guests have no disk and need
//! not boot (SeaBIOS just keeps looking for a boot device). Skips only when
//! QEMU is not installed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use teamvirt_testinfra::{guest_lock, procs, qemu_or_skip};

/// VFs in the pool.
const VFS: usize = 8;
/// Domains started at once.
const DOMAINS: usize = 100;
const NET: &str = "vfpool";

fn vf(i: usize) -> String {
    format!("0000:3b:{:02x}.{}", 2 + i / 8, i % 8)
}

fn net_xml() -> String {
    let vfs: Vec<String> = (0..VFS).map(vf).collect();
    let vfs: Vec<&str> = vfs.iter().map(String::as_str).collect();
    teamvirt_testinfra::xml::pool_xml(NET, &vfs)
}

fn dom_name(i: usize) -> String {
    format!("cs{i:03}")
}

/// Smallest domain with one teaming pair drawing its primary from the pool.
fn domain_xml(i: usize) -> String {
    let mac = format!("52:54:00:cc:{:02x}:{:02x}", i / 256, i % 256);
    teamvirt_testinfra::xml::PairDomain::new(&dom_name(i))
        .mac(&mac)
        .pool(NET)
        .xml()
}

/// Pids of every process whose command line or stdout mentions `needle`
/// (the test's private state directory: every QEMU started here writes
/// its stdout to `log/NAME.log`; its argv names descriptors, not the
/// run directory's files).
fn processes_mentioning(needle: &str) -> BTreeSet<u32> {
    let me = std::process::id();
    procs::pids()
        .into_iter()
        .filter(|&pid| pid != me && !procs::is_reaper(pid) && procs::mentions(pid, needle))
        .collect()
}

fn pid_of(e: &Env, dom: &str) -> u32 {
    std::fs::read_to_string(e.run_dir(dom).join("pid"))
        .unwrap_or_else(|err| panic!("pid of {dom}: {err}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn hundred_concurrent_starts_never_hand_out_a_vf_twice() {
    if qemu_or_skip("hundred_concurrent_starts_never_hand_out_a_vf_twice").is_none() {
        return;
    }
    let _lock = guest_lock();
    let e = Env::new();
    let state = e.state.display().to_string();
    // Probe QEMU once so the 100 starts race for the pool, not for the
    // capabilities cache.
    e.ok(&["capabilities"]);
    e.ok(&[
        "net-define",
        "--emulate-vf",
        &e.write("net.xml", &net_xml()),
    ]);
    for i in 0..DOMAINS {
        let f = e.write(&format!("{}.xml", dom_name(i)), &domain_xml(i));
        e.ok(&["define", &f]);
    }
    assert_eq!(e.vfs_used(NET), 0);

    // Spawn all, then wait for all.
    let t0 = Instant::now();
    let children: Vec<(String, Child)> = (0..DOMAINS)
        .map(|i| {
            let name = dom_name(i);
            let child = e
                .command(&["start", &name, "--accel", "tcg", "--emulate-vf"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (name, child)
        })
        .collect();
    let mut started = BTreeSet::new();
    let mut failed = BTreeMap::new();
    for (name, child) in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            assert!(
                stdout.contains(&format!("Domain '{name}' started")),
                "{name}: {stdout}"
            );
            started.insert(name);
        } else {
            failed.insert(name, stderr);
        }
    }
    eprintln!(
        "{DOMAINS} concurrent starts took {:?}: {} started",
        t0.elapsed(),
        started.len()
    );

    // Every loser failed for the one expected reason, in virsh's words.
    for (name, err) in &failed {
        assert_eq!(
            err.trim_end(),
            format!(
                "error: Failed to start domain '{name}'\n\
                 error: internal error: network '{NET}' requires exclusive access to interfaces, but none are available"
            ),
            "{name}"
        );
    }
    assert_eq!(started.len(), VFS, "started: {started:?}");
    assert_eq!(failed.len(), DOMAINS - VFS);

    // The winners run, each on its own VF of the pool, as recorded in the
    // teaming report, the live XML and the pool.
    let listed: BTreeSet<String> = e
        .ok(&["list", "--name"])
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, started);
    let mut vfs = BTreeSet::new();
    for name in &started {
        assert_eq!(e.ok(&["domstate", name]).trim(), "running", "{name}");
        let t = e.json(&["teaming", name, "--json"]);
        let pairs = t["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), 1, "{t}");
        assert_eq!(pairs[0]["network"], NET, "{t}");
        assert_eq!(pairs[0]["emulated"], true, "{t}");
        let addr = pairs[0]["vf"].as_str().unwrap().to_owned();
        let live = e.ok(&["dumpxml", name]);
        assert!(
            live.contains(&format!(
                "<teamvirt:vf network='{NET}' device='hostdev0' address='{addr}'/>"
            )),
            "{name} holds {addr}: {live}"
        );
        assert!(vfs.insert(addr.clone()), "VF {addr} handed out twice");
    }
    let pool: BTreeSet<String> = (0..VFS).map(vf).collect();
    assert_eq!(vfs, pool, "every VF of the pool in use, once");
    assert_eq!(e.vfs_used(NET), VFS as u64);

    // Distinct domain ids, like libvirt's.
    let list = e.ok(&["list"]);
    let ids: Vec<&str> = list
        .lines()
        .filter(|l| started.iter().any(|n| l.contains(n.as_str())))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids.len(), VFS, "{list}");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        VFS,
        "domain ids handed out twice: {list}"
    );

    // Only the winners have a QEMU; the losers are shut off with nothing
    // left running or recorded.
    let pids: BTreeSet<u32> = started.iter().map(|n| pid_of(&e, n)).collect();
    assert_eq!(processes_mentioning(&state), pids);
    for name in failed.keys() {
        assert_eq!(e.ok(&["domstate", name]).trim(), "shut off", "{name}");
        assert!(!e.run_dir(name).join("pid").exists(), "{name}");
        assert!(!e.run_dir(name).join("state.json").exists(), "{name}");
        assert!(!e.run_dir(name).join("qemu-uid.json").exists(), "{name}");
    }
    // As root each winner's QEMU runs as a uid of its own, allocated by
    // concurrent starts (teamvirt_host::dynuid).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && std::env::var_os("TEAMVIRT_QEMU_USER").is_none() {
        let uids: BTreeSet<String> = pids
            .iter()
            .map(|p| {
                let s = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap();
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(uids.len(), VFS, "QEMU uids handed out twice: {uids:?}");
    }

    for name in &started {
        e.ok(&["destroy", name]);
    }
    assert_eq!(e.vfs_used(NET), 0);
    assert_eq!(e.ok(&["list", "--name"]).trim(), "");
    let t1 = Instant::now();
    while !processes_mentioning(&state).is_empty() {
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "QEMU left after destroy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
