//! 100 concurrent allocations (50 threads + 50 processes) against one pool
//! of 64 VFs: every VF is handed out at most once, the other 36 requests get
//! libvirt's exhaustion error, and releasing everything empties the pool.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};

use teamvirt_host::state::StateDir;
use teamvirt_runtime::pool::VfPool;

const POOL_SIZE: usize = 64;
const THREADS: usize = 50;
const PROCS: usize = 50;
const CHILD_ENV: &str = "TEAMVIRT_POOL_TEST_CHILD";

fn members() -> Vec<String> {
    (0..POOL_SIZE)
        .map(|i| format!("0000:3b:{:02x}.{}", i / 8, i % 8))
        .collect()
}

/// One allocation; prints `OK addr` or `ERR message`.
fn allocate_once(root: &Path, domain: &str) -> Result<String, String> {
    let sd = StateDir::open(root).map_err(|e| e.to_string())?;
    VfPool::new(&sd, "pool")
        .allocate(&members(), domain, "hostdev0")
        .map_err(|e| e.to_string())
}

/// Entry point of the child processes (a no-op when run as a normal test).
#[test]
fn child_allocator() {
    let (Ok(root), Ok(domain)) = (
        std::env::var(CHILD_ENV),
        std::env::var("TEAMVIRT_POOL_TEST_DOMAIN"),
    ) else {
        return;
    };
    match allocate_once(Path::new(&root), &domain) {
        Ok(a) => println!("RESULT OK {a}"),
        Err(e) => println!("RESULT ERR {e}"),
    }
}

#[test]
fn hundred_concurrent_allocations_never_share_a_vf() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_owned();
    StateDir::open(&root).unwrap();
    let exe = std::env::current_exe().unwrap();

    // Processes first (they take longer to get going), then threads.
    let children: Vec<_> = (0..PROCS)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_allocator",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &root)
                .env("TEAMVIRT_POOL_TEST_DOMAIN", format!("proc{i}"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let (b, root) = (barrier.clone(), root.clone());
            std::thread::spawn(move || {
                b.wait();
                allocate_once(&root, &format!("thread{i}"))
            })
        })
        .collect();

    let mut results: Vec<(String, Result<String, String>)> = Vec::new();
    for (i, h) in threads.into_iter().enumerate() {
        results.push((format!("thread{i}"), h.join().unwrap()));
    }
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        // The harness prints `test child_allocator ... ` before our line.
        let line = text
            .lines()
            .find_map(|l| l.find("RESULT ").map(|i| &l[i..]))
            .expect("child printed a result");
        let r = match line.strip_prefix("RESULT OK ") {
            Some(a) => Ok(a.to_owned()),
            None => Err(line.trim_start_matches("RESULT ERR ").to_owned()),
        };
        results.push((format!("proc{i}"), r));
    }

    let ok: Vec<&String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let unique: HashSet<&&String> = ok.iter().collect();
    assert_eq!(unique.len(), ok.len(), "a VF was handed out twice: {ok:?}");
    assert_eq!(ok.len(), POOL_SIZE, "every VF is used exactly once");
    for (who, r) in &results {
        if let Err(e) = r {
            assert_eq!(
                e,
                "internal error: network 'pool' requires exclusive access to interfaces, but none are available",
                "{who}"
            );
        }
    }

    // The recorded state agrees with what the callers were told.
    let sd = StateDir::open(&root).unwrap();
    let pool = VfPool::new(&sd, "pool");
    let st = pool.state().unwrap();
    assert_eq!(st.allocations.len(), POOL_SIZE);
    for (who, r) in &results {
        if let Ok(a) = r {
            assert!(
                st.allocations
                    .iter()
                    .any(|x| &x.address == a && &x.domain == who),
                "{who} {a}"
            );
        }
    }
    for (who, _) in &results {
        pool.release_domain(who).unwrap();
    }
    assert!(pool.state().unwrap().allocations.is_empty());
}
