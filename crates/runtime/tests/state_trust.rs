//! The state directory as a trust boundary (issue 12, item 1): the attacks
//! a local user could mount through it, each refused with a clear error and
//! without touching what the attacker pointed at.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use teamvirt_host::state::StateDir;
use teamvirt_runtime::accel::Accel;
use teamvirt_runtime::run::{self, monitor_args, LaunchSpec, RunRecord};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn chown(p: &Path, uid: u32) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::lchown(c.as_ptr(), uid, u32::MAX) }, 0);
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

fn open_err(root: &Path) -> String {
    StateDir::open(root).unwrap_err().to_string()
}

#[test]
fn root_owned_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipping root_owned_by_another_user_is_refused: needs root (chown)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("state");
    fs::create_dir(&root).unwrap();
    chown(&root, 65534);
    let e = open_err(&root);
    assert!(
        e.contains(&format!("state directory {}", root.display()))
            && e.contains("is owned by uid 65534")
            && e.contains("--state-dir"),
        "{e}"
    );
    // Nothing was created inside the attacker's directory.
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
}

#[test]
fn root_writable_by_others_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("state");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    let e = open_err(&root);
    assert_eq!(
        e,
        format!(
            "state directory {p} is writable by others (mode 0777); chmod it to 0700 (`chmod 0700 {p}`) or use another --state-dir",
            p = root.display()
        )
    );
    fs::set_permissions(&root, fs::Permissions::from_mode(0o775)).unwrap();
    assert!(open_err(&root).contains("writable by its group"));
}

#[test]
fn parent_writable_by_anyone_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let parent = t.path().join("shared");
    fs::create_dir(&parent).unwrap();
    // Writable by all and not sticky: anyone could rename the state away.
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o777)).unwrap();
    let e = open_err(&parent.join("state"));
    assert!(e.contains("without the sticky bit"), "{e}");
    // Sticky (like /tmp) is fine.
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o1777)).unwrap();
    StateDir::open(&parent.join("state")).unwrap();
}

/// A parent owned by root but writable by its group (no sticky bit): a
/// group member could swap the state directory for her own
/// (`renameat2(RENAME_EXCHANGE)`) and have root run her `<emulator>`.
/// Refused as OpenSSH's StrictModes refuses it; sticky is fine.
#[test]
fn parent_writable_by_its_group_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let parent = t.path().join("shared");
    fs::create_dir(&parent).unwrap();
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o775)).unwrap();
    let root = parent.join("state");
    let e = open_err(&root);
    assert!(
        e.contains(&parent.display().to_string())
            && e.contains("writable by its group without the sticky bit (mode 0775)")
            && e.contains("chmod g-w"),
        "{e}"
    );
    // Also when the state directory already exists there.
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o755)).unwrap();
    StateDir::open(&root).unwrap();
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o770)).unwrap();
    assert!(open_err(&root).contains("writable by its group"));
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o1770)).unwrap();
    StateDir::open(&root).unwrap();
}

/// `--state-dir` naming a link to a directory that holds no state (here
/// one shaped like `/var`: `log` and `cache` 0755): refused, nothing in it
/// chmod'ed or created.
#[test]
fn symlinked_state_dir_to_a_foreign_directory_is_not_chmoded() {
    let t = tempfile::tempdir().unwrap();
    let var = t.path().join("var");
    fs::create_dir(&var).unwrap();
    for sub in ["log", "cache"] {
        fs::create_dir(var.join(sub)).unwrap();
        fs::set_permissions(var.join(sub), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let link = t.path().join("state");
    symlink(&var, &link).unwrap();
    let e = open_err(&link);
    assert!(
        e.contains("not 0700") && e.contains("does not chmod a directory it did not create"),
        "{e}"
    );
    for sub in ["log", "cache"] {
        assert_eq!(mode(&var.join(sub)), 0o755, "{sub} was chmod'ed");
    }
    assert_eq!(fs::read_dir(&var).unwrap().count(), 2, "created something");
    // A link to an empty directory (or one holding teamvirt's state) is
    // still a state directory, as README says.
    let data = t.path().join("data");
    fs::create_dir(&data).unwrap();
    let link2 = t.path().join("state2");
    symlink(&data, &link2).unwrap();
    let sd = StateDir::open(&link2).unwrap();
    assert_eq!(sd.root(), data.canonicalize().unwrap());
    assert_eq!(mode(&data.join("run")), 0o700);
    StateDir::open(&link2).unwrap();
}

#[test]
fn new_root_is_private_and_existing_root_keeps_its_mode() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("new");
    StateDir::open(&root).unwrap();
    assert_eq!(mode(&root), 0o700);
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    StateDir::open(t.path()).unwrap();
    assert_eq!(mode(t.path()), 0o755);
}

#[test]
fn subdirectories_must_be_private_and_ours() {
    for sub in ["domains", "networks", "run", "locks", "cache"] {
        let t = tempfile::tempdir().unwrap();
        StateDir::open(t.path()).unwrap();
        let d = t.path().join(sub);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o757)).unwrap();
        let e = open_err(t.path());
        assert!(
            e.contains(&d.display().to_string()) && e.contains("writable by others (mode 0757)"),
            "{sub}: {e}"
        );
        if is_root() {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
            chown(&d, 65534);
            let e = open_err(t.path());
            assert!(e.contains("is owned by uid 65534"), "{sub}: {e}");
        }
    }
}

/// `locks -> /etc`: today root chmods the link's target to 0700 and
/// creates its lock files there.
#[test]
fn symlinked_subdirectory_is_refused_and_its_target_untouched() {
    for sub in ["locks", "run", "domains"] {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("etc");
        fs::create_dir(&victim).unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o755)).unwrap();
        let root = t.path().join("state");
        fs::create_dir(&root).unwrap();
        symlink(&victim, root.join(sub)).unwrap();
        let e = open_err(&root);
        assert!(
            e.contains(&format!("{}/{sub} is a symbolic link", root.display())),
            "{e}"
        );
        assert_eq!(
            mode(&victim),
            0o755,
            "{sub}: the link's target was chmod'ed"
        );
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
    }
}

/// A lock file planted as a link to a file elsewhere: not opened, not created.
#[test]
fn symlinked_lock_file_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let sd = StateDir::open(&t.path().join("state")).unwrap();
    let victim = t.path().join("victim");
    symlink(&victim, sd.locks_dir().join("domain-vm.lock")).unwrap();
    let e = sd.lock_domain("vm").unwrap_err().to_string();
    assert!(e.contains("is a symbolic link"), "{e}");
    assert!(!victim.exists(), "the lock was created through the link");
}

/// A run directory of a domain that another user owns (or that is a link)
/// is not read: its record could say anything.
#[test]
fn foreign_or_linked_run_directory_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let sd = StateDir::open(&t.path().join("state")).unwrap();
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("state.json"), "{}").unwrap();
    symlink(&elsewhere, sd.run_root().join("vm")).unwrap();
    let e = RunRecord::load(&sd, "vm").unwrap_err().to_string();
    assert!(e.contains("is a symbolic link"), "{e}");
    if is_root() {
        let p = sd.create_run_dir("vm2").unwrap();
        chown(&p.dir, 65534);
        let e = RunRecord::load(&sd, "vm2").unwrap_err().to_string();
        assert!(e.contains("is owned by uid 65534"), "{e}");
        let e = sd.create_run_dir("vm2").unwrap_err().to_string();
        assert!(e.contains("is owned by uid 65534"), "{e}");
    }
}

/// A FIFO as state.json: refused at once (today the read blocks forever).
#[test]
fn fifo_run_record_is_refused_without_blocking() {
    let t = tempfile::tempdir().unwrap();
    let sd = StateDir::open(&t.path().join("state")).unwrap();
    let p = sd.create_run_dir("vm").unwrap();
    let c = std::ffi::CString::new(p.state_json.to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let sd2 = sd.clone();
    std::thread::spawn(move || {
        let _ = tx.send(
            RunRecord::load(&sd2, "vm")
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    });
    let res = rx.recv_timeout(Duration::from_secs(10));
    if res.is_err() {
        // Unblock the reader so the test process can exit.
        let _ = fs::OpenOptions::new().write(true).open(&p.state_json);
    }
    let e = res.expect("reading a FIFO record blocked").unwrap_err();
    assert!(e.contains("not a regular file but a FIFO"), "{e}");
}

fn qemu_spec(sd: &StateDir, qemu: &Path, name: &str) -> LaunchSpec {
    let p = sd.run_paths(name).unwrap();
    let mut args: Vec<String> = [
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-m",
        "64",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-chardev",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!(
        "file,id=charserial0,path={}",
        p.serial_log.display()
    ));
    args.extend(["-serial".into(), "chardev:charserial0".into()]);
    args.extend(monitor_args(&p.qmp_sock));
    LaunchSpec {
        name: name.into(),
        id: 1,
        uuid: None,
        emulator: qemu.to_owned(),
        env: None,
        args,
        accel: Accel::Tcg,
        serial_log: Some(p.serial_log),
        pairs: vec![],
        vfs: vec![],
        substitutions: vec![],
        live_xml: "<domain/>".into(),
        incoming: false,
        monitor_timeout: Duration::from_secs(20),
        pass_fds: Vec::new(),
    }
}

/// `run/NAME/serial.log -> /some/file`: QEMU (root) would open the link's
/// target and write the guest's console into it. The launch is refused
/// before QEMU runs; the target keeps its content.
#[tokio::test(flavor = "current_thread")]
async fn symlinked_serial_log_is_refused_before_qemu_runs() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("symlinked_serial_log") else {
        return;
    };
    let t = teamvirt_testinfra::temp_dir();
    let sd = StateDir::open(&t.path().join("s")).unwrap();
    let victim = t.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let p = sd.create_run_dir("vm").unwrap();
    symlink(&victim, &p.serial_log).unwrap();
    let res = run::launch(&sd, qemu_spec(&sd, &qemu, "vm")).await;
    if let Ok(l) = &res {
        let _ = l.record.proc.kill_painfully(Duration::from_secs(5));
    }
    let e = res.unwrap_err().to_string();
    assert!(
        e.contains(&format!("{} is a symbolic link", p.serial_log.display())),
        "{e}"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(RunRecord::load(&sd, "vm").unwrap().is_none());

    // The same for QEMU's own log (a FIFO this time).
    fs::remove_file(&p.serial_log).unwrap();
    let _ = fs::remove_file(&p.qemu_log);
    let c = std::ffi::CString::new(p.qemu_log.to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let res = run::launch(&sd, qemu_spec(&sd, &qemu, "vm")).await;
    if let Ok(l) = &res {
        let _ = l.record.proc.kill_painfully(Duration::from_secs(5));
    }
    let e = res.unwrap_err().to_string();
    assert!(e.contains("is not a regular file but a FIFO"), "{e}");
}

/// `run/NAME -> elsewhere`: nothing teamvirt does to settle the domain
/// (reading its host-prep record, removing its files) goes through the
/// link, `destroy --force` included.
#[test]
fn cleanup_never_goes_through_a_linked_run_directory() {
    let t = tempfile::tempdir().unwrap();
    let sd = StateDir::open(&t.path().join("state")).unwrap();
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    for f in ["state.json", "pid", "live.xml", "qmp.sock"] {
        fs::write(elsewhere.join(f), "keep").unwrap();
    }
    symlink(&elsewhere, sd.run_root().join("vm")).unwrap();
    let rt = teamvirt_runtime::Runtime::open(&sd).unwrap();
    let e = rt
        .destroy_with("vm", true, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a symbolic link"), "{e}");
    for f in ["state.json", "pid", "live.xml", "qmp.sock"] {
        assert_eq!(
            fs::read_to_string(elsewhere.join(f)).unwrap(),
            "keep",
            "{f}"
        );
    }
}
