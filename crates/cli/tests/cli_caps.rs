//! `teamvirt capabilities` end to end: from libvirt's caps file and live.

use std::path::Path;
use std::process::{Command, Output};

fn teamvirt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .args(args)
        .output()
        .expect("run teamvirt")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn caps_file_text() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("caps_file_text") else {
        return;
    };
    let file = corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let o = teamvirt(&["capabilities", "--caps", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "emulator: /usr/bin/qemu-system-x86_64",
        "version: 9.0.90 (9000090)",
        "package: v9.1.0-rc0-121-g75c7f57403",
        "accelerators: kvm, tcg",
        "failover (teaming): supported",
        "syntax: -device json, -netdev json, -object json, disks -blockdev",
        "machines (kvm, tcg):",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let q35 = out
        .lines()
        .find(|l| l.trim_start().starts_with("pc-q35-9.1 "))
        .expect("pc-q35-9.1 line");
    assert!(q35.contains("alias q35"), "{q35}");
    let pc = out
        .lines()
        .find(|l| l.trim_start().starts_with("pc-i440fx-9.1 "))
        .expect("pc line");
    assert!(pc.contains("alias pc, default"), "{pc}");
    assert!(out
        .lines()
        .any(|l| l.contains("pc-q35-5.2") && l.contains("deprecated")));
}

#[test]
fn caps_file_json() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("caps_file_json") else {
        return;
    };
    let file = corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let o = teamvirt(&["capabilities", "--caps", file.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(v["version"], 9000090);
    assert_eq!(v["version_string"], "9.0.90");
    assert_eq!(v["failover_supported"], true);
    assert_eq!(v["accelerators"], serde_json::json!(["kvm", "tcg"]));
    assert_eq!(v["syntax"]["device_json"], true);
    assert!(v["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "device.json+hotplug"));
    let tcg = v["accel"]["tcg"]["machines"].as_array().unwrap();
    let q35 = tcg.iter().find(|m| m["alias"] == "q35").unwrap();
    assert_eq!(q35["name"], "pc-q35-9.1");
    assert_eq!(q35["default_ram_id"], "pc.ram");
}

#[test]
fn bad_caps_file_is_reported_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.xml");
    std::fs::write(
        &file,
        "<qemuCaps>\n  <version>nine</version>\n</qemuCaps>\n",
    )
    .unwrap();
    let o = teamvirt(&["capabilities", "--caps", file.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:2:3: invalid <version> 'nine'", file.display())),
        "{err}"
    );
    let o = teamvirt(&["capabilities", "--caps", "/nonexistent/caps.xml"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/caps.xml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn live_probe_of_installed_qemu() {
    if teamvirt_qemu_missing() {
        eprintln!("skipping live_probe_of_installed_qemu: qemu-system-x86_64 not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let o = teamvirt(&["capabilities", "--cache-dir", cache.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("source: live probe"), "{out}");
    assert!(out.contains("version: 7.2."), "{out}");
    assert!(out.contains("failover (teaming): supported"), "{out}");
    let q35 = out
        .lines()
        .find(|l| l.trim_start().starts_with("pc-q35-7.2 "))
        .expect("pc-q35-7.2 line");
    assert!(q35.contains("alias q35"), "{q35}");
    // KVM only where `start` would use it, else the reason (issue 19: a
    // host with /dev/kvm but no vmx/svm was told `kvm, tcg`).
    let accels = out
        .lines()
        .find(|l| l.starts_with("accelerators: "))
        .expect("accelerators line");
    match teamvirt_runtime::accel::kvm_unusable() {
        Some(why) => {
            assert_eq!(
                accels,
                format!("accelerators: tcg (kvm not usable on this host: {why})")
            );
            assert!(!out.contains("machines (kvm"), "{out}");
        }
        None => assert_eq!(accels, "accelerators: kvm, tcg"),
    }
    assert!(
        std::fs::read_dir(&cache).unwrap().count() >= 1,
        "cache entry written"
    );

    let o = teamvirt(&[
        "capabilities",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["failover_supported"], true);
    assert!(v["device_props"]["virtio-net-pci"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "failover"));
}

/// `--state-dir` (either side of the verb) places the probe cache of the
/// verbs that probe QEMU, as `TEAMVIRT_STATE_DIR` does; `capabilities`
/// says when it read that cache (issue 19: they used
/// /var/lib/teamvirt/cache and said `source: live probe`).
#[test]
fn probe_cache_follows_state_dir() {
    if teamvirt_qemu_missing() {
        eprintln!("skipping probe_cache_follows_state_dir: qemu-system-x86_64 not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let example = teamvirt_testinfra::workspace_root().join("examples/teaming-q35.xml");
    let example = example.to_str().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_teamvirt"))
            .args(args)
            .env_remove("TEAMVIRT_STATE_DIR")
            .env("XDG_STATE_HOME", dir.path().join("xdg"))
            .output()
            .unwrap()
    };
    let entries = |state: &Path| -> Vec<std::path::PathBuf> {
        match std::fs::read_dir(state.join("cache")) {
            Ok(d) => d.map(|e| e.unwrap().path()).collect(),
            Err(_) => vec![],
        }
    };
    for (i, verb) in [
        vec!["capabilities"],
        vec!["validate", example],
        vec!["format", example],
    ]
    .into_iter()
    .enumerate()
    {
        for before in [false, true] {
            let state = dir.path().join(format!("s{i}{before}"));
            let s = state.to_str().unwrap();
            let args: Vec<&str> = if before {
                [&["--state-dir", s][..], &verb].concat()
            } else {
                [&verb[..], &["--state-dir", s]].concat()
            };
            let o = run(&args);
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
            let cached = entries(&state);
            assert_eq!(cached.len(), 1, "{args:?}: {cached:?}");
            if verb[0] == "capabilities" {
                assert!(
                    stdout(&o).contains("\nsource: live probe\n"),
                    "{}",
                    stdout(&o)
                );
                let o = run(&args);
                let want = format!("\nsource: probe cache {} (", cached[0].display());
                assert!(stdout(&o).contains(&want), "{}", stdout(&o));
            }
        }
    }
    // Nothing went to the default state directory.
    assert!(!dir.path().join("xdg").exists());
}

#[test]
fn missing_emulator_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let o = teamvirt(&[
        "capabilities",
        "--emulator",
        "/nonexistent/qemu",
        "--cache-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/qemu"), "{}", stderr(&o));
}

fn teamvirt_qemu_missing() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    !std::env::split_paths(&path).any(|d| Path::new(&d).join("qemu-system-x86_64").is_file())
}
