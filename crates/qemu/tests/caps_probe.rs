//! Live probe of the installed QEMU (skipped when none is installed), the
//! probe cache, and process hygiene on failure.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use teamvirt_qemu::caps::probe::{self, ProbeOptions};
use teamvirt_qemu::caps::{Accel, CacheKey, CapsError, CapsSource, QemuCaps};

/// The async probe from a plain test thread (the binary runs it on its
/// one runtime; a test has none).
fn probe_blocking(
    binary: impl AsRef<std::path::Path>,
    cache_dir: impl AsRef<std::path::Path>,
) -> Result<QemuCaps, teamvirt_qemu::caps::CapsError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(QemuCaps::probe(binary, cache_dir))
}

fn installed_qemu(test: &str) -> Option<PathBuf> {
    match probe::resolve_binary(Path::new("qemu-system-x86_64")) {
        Ok(p) => Some(p),
        Err(_) => {
            eprintln!("skipping {test}: qemu-system-x86_64 not installed");
            None
        }
    }
}

/// Pids of live processes whose executable is `exe`.
fn processes_running(exe: &Path) -> Vec<u32> {
    let exe = std::fs::canonicalize(exe).unwrap();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("exe")).is_ok_and(|p| p == exe) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn probe_installed_qemu() {
    let Some(qemu) = installed_qemu("probe_installed_qemu") else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let caps = probe_blocking(&qemu, cache.path()).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        caps.version / 1000,
        7_002,
        "QEMU 7.2.x expected, got {}",
        caps.version_string
    );
    assert!(caps.version_string.starts_with("7.2."));
    assert_eq!(caps.arch, "x86_64");
    assert!(caps.package.contains("7.2"), "{}", caps.package);
    assert!(matches!(caps.source, CapsSource::Probe { .. }));

    assert_eq!(
        caps.canonical_machine("q35", Accel::Tcg),
        Some("pc-q35-7.2")
    );
    assert_eq!(
        caps.canonical_machine("pc", Accel::Tcg),
        Some("pc-i440fx-7.2")
    );
    assert_eq!(
        caps.default_machine(Accel::Tcg).map(|m| m.name.as_str()),
        Some("pc-i440fx-7.2")
    );
    assert_eq!(
        caps.machines(Accel::Tcg)[0].name,
        "pc-i440fx-7.2",
        "default first, like libvirt"
    );
    assert!(caps.machine("none").is_none());
    let q35 = caps.machine("q35").unwrap();
    assert_eq!(q35.default_ram_id.as_deref(), Some("pc.ram"));
    assert_eq!(q35.default_cpu.as_deref(), Some("qemu64-x86_64-cpu"));
    assert_eq!(
        caps.cpu_model_by_typename("qemu64-x86_64-cpu", Accel::Tcg)
            .map(|c| c.name.as_str()),
        Some("qemu64")
    );

    assert!(caps.supports_failover());
    assert_eq!(caps.check_teaming_supported(), Ok(()));
    assert!(caps.device_props["virtio-net-pci"]
        .iter()
        .any(|p| p == "failover"));
    assert!(caps.device_props["vfio-pci"]
        .iter()
        .any(|p| p == "failover_pair_id"));
    assert!(caps.device_props["e1000e"]
        .iter()
        .any(|p| p == "failover_pair_id"));
    assert!(caps.device_props["e1000e"].iter().any(|p| p == "romfile"));
    assert!(caps.has("virtio-net.failover"));

    // QEMU 7.2: JSON for -device (json-cli-hotplug), -netdev (dgram), -object.
    assert!(caps.device_json());
    assert!(caps.netdev_json());
    assert!(caps.object_json());
    assert!(caps.blockdev());
    assert!(caps.has("tcg"));
    assert!(caps.accelerators().contains(&Accel::Tcg));
    for flag in [
        "vfio-pci",
        "pcie-root-port",
        "pcie-root-port.hotplug",
        "qemu-xhci",
        "piix3-usb-uhci",
        "seccomp-sandbox",
        "migration.blocked-reasons",
    ] {
        assert!(caps.has(flag), "{flag}");
    }
    assert!(
        caps.has("netdev.stream"),
        "QEMU 7.2 added the stream netdev"
    );
}

/// Every flag a probe derives is spelled like libvirt spells it: it occurs in
/// libvirt 10.7's caps for QEMU 9.1 (a superset of 7.2's features), except
/// the teaming flag libvirt retired.
#[test]
fn probed_flag_names_are_libvirt_names() {
    let Some(qemu) = installed_qemu("probed_flag_names_are_libvirt_names") else {
        return;
    };
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("probed_flag_names_are_libvirt_names")
    else {
        return;
    };
    let reference =
        QemuCaps::from_libvirt_xml(corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml"))
            .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let caps = probe_blocking(&qemu, cache.path()).unwrap();
    let unknown: Vec<&String> = caps
        .flags
        .iter()
        .filter(|f| !reference.has(f) && f.as_str() != "virtio-net.failover")
        .collect();
    assert!(
        unknown.is_empty(),
        "flags not in libvirt's caps: {unknown:?}"
    );
    // The derivable flags libvirt set for 9.1 but the probe did not set for
    // 7.2 must be features newer than 7.2, never mapping mistakes.
    let derivable: Vec<&str> = probe::OBJECT_TYPES
        .iter()
        .map(|(_, f)| *f)
        .chain(probe::DEVICE_PROPS.iter().map(|(_, _, f)| *f))
        .chain(probe::SCHEMA_QUERIES.iter().map(|(_, f)| *f))
        .chain(probe::COMMANDS.iter().map(|(_, f)| *f))
        .chain(probe::CMDLINE_OPTIONS.iter().map(|(_, _, f)| *f))
        .collect();
    let missing: Vec<&str> = derivable
        .into_iter()
        .filter(|f| reference.has(f) && !caps.has(f))
        .collect();
    // Cross-checked with libvirt's own caps_7.2.0_x86_64.xml (upstream
    // tests/qemucapabilitiesdata): neither flag is set for QEMU 7.2 there.
    // QEMU 7.2 lists no `hpet` parameter under `-machine` in
    // query-command-line-options; stream reconnect arrived in QEMU 8.0.
    let newer_than_7_2 = ["machine-hpet", "netdev.stream.reconnect"];
    let unexplained: Vec<&&str> = missing
        .iter()
        .filter(|f| !newer_than_7_2.contains(f))
        .collect();
    assert_eq!(
        missing.len(),
        unexplained.len() + newer_than_7_2.len(),
        "stale exception list: {missing:?}"
    );
    assert!(
        unexplained.is_empty(),
        "libvirt sets these for 9.1 but the 7.2 probe did not: {unexplained:?}"
    );
}

fn copy_qemu(qemu: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("qemu-copy");
    std::fs::copy(qemu, &copy).unwrap();
    copy
}

#[test]
fn cache_hit_and_invalidation_on_changed_binary() {
    let Some(qemu) = installed_qemu("cache_hit_and_invalidation_on_changed_binary") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = copy_qemu(&qemu, dir.path());
    let cache = dir.path().join("cache");

    let first = probe_blocking(&bin, &cache).unwrap();
    assert_eq!(
        processes_running(&bin),
        Vec::<u32>::new(),
        "probe left QEMU running"
    );
    let key = CacheKey::of(&bin).unwrap();
    let file = key.file_in(&cache);
    assert!(file.is_file(), "cache entry {file:?} missing");

    // Mark the cached entry: a cache hit returns the marker.
    let mut entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    entry["caps"]["flags"]
        .as_array_mut()
        .unwrap()
        .push("marker-from-cache".into());
    std::fs::write(&file, serde_json::to_vec(&entry).unwrap()).unwrap();
    let second = probe_blocking(&bin, &cache).unwrap();
    assert!(
        second.has("marker-from-cache"),
        "unchanged binary must come from the cache"
    );
    assert_eq!(second.version, first.version);

    // A changed mtime means a changed binary: probed again, marker gone.
    let f = std::fs::File::options().write(true).open(&bin).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    let third = probe_blocking(&bin, &cache).unwrap();
    assert!(
        !third.has("marker-from-cache"),
        "changed binary must be re-probed"
    );
    assert_eq!(third.flags, first.flags);
    assert!(CacheKey::of(&bin).unwrap() != key);
    assert_eq!(processes_running(&bin), Vec::<u32>::new());
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn hung_binary_is_killed_on_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let bin = script(
        dir.path(),
        "hang",
        &format!("echo $$ > {}\nexec sleep 600", pidfile.display()),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = ProbeOptions {
        timeout: Duration::from_secs(2),
        try_kvm: false,
    };
    let err = rt.block_on(probe::probe_uncached(&bin, &opts)).unwrap_err();
    assert!(matches!(err, CapsError::Timeout { .. }), "{err}");
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} outlived the probe"
    );
}

#[test]
fn early_exit_reports_qemu_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let bin = script(
        dir.path(),
        "broken",
        "echo 'qemu: unsupported accelerator' >&2\nexit 1",
    );
    let err = probe_blocking(&bin, dir.path().join("cache"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("qemu: unsupported accelerator"), "{err}");
}

#[test]
fn missing_binary_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = probe_blocking("/nonexistent/qemu-system-x86_64", dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/qemu-system-x86_64"),
        "{err}"
    );
    let err = probe_blocking("no-such-qemu-binary-on-path", dir.path()).unwrap_err();
    assert!(err.to_string().contains("not found on PATH"), "{err}");
}
