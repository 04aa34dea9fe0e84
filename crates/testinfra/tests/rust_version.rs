//! The workspace's `rust-version` is true: no dependency in the lock file
//! needs a newer Rust (std APIs newer than it are caught by clippy's
//! `incompatible_msrv`, which reads the same field).

use std::process::Command;

/// `1.89` and `1.89.0` are the same version.
fn version(v: &str) -> [u64; 3] {
    let mut out = [0; 3];
    for (i, x) in v.split('.').take(3).enumerate() {
        out[i] = x.parse().unwrap_or(0);
    }
    out
}

#[test]
fn rust_version_covers_every_dependency() {
    let root = teamvirt_testinfra::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--locked",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "teamvirt")
        .and_then(|p| p["rust_version"].as_str())
        .expect("teamvirt declares rust-version")
        .to_owned();
    let mut members = 0;
    for p in m["packages"].as_array().unwrap() {
        let Some(rv) = p["rust_version"].as_str() else {
            continue;
        };
        let name = p["name"].as_str().unwrap();
        if name.starts_with("teamvirt") {
            members += 1;
            assert_eq!(
                rv, ours,
                "{name} does not inherit the workspace rust-version"
            );
        } else {
            assert!(
                version(rv) <= version(&ours),
                "{name} needs Rust {rv}, the workspace says {ours}"
            );
        }
    }
    // Every member, counted from the workspace itself (a crate added
    // later without `rust-version.workspace = true` fails here).
    let workspace = m["workspace_members"].as_array().map_or(0, Vec::len);
    assert!(workspace >= 7, "workspace members: {workspace}");
    assert_eq!(
        members, workspace,
        "every workspace crate declares rust-version"
    );
}
