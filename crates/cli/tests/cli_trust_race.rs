//! The trust decision on the state directory cannot be raced (issue 17,
//! item 1): a member of the group of the state directory's parent swaps
//! the state directory with one of her own (`renameat2(RENAME_EXCHANGE)`
//! in a loop) while root runs `start`; her `<emulator>` must never run.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use common::{Env, StateVia};

/// The attacker's uid and group (she is a member of the parent's group).
const EVE_UID: u32 = 65534;
const EVE_GROUP: u32 = 54_321;
/// How many times root runs `start` while she swaps (she needed 77 on the
/// code before the fix).
const TRIES: usize = 300;

const SWAP_ENV: &str = "TEAMVIRT_TEST_SWAP";
const SWAP_WITH_ENV: &str = "TEAMVIRT_TEST_SWAP_WITH";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The attacker, when this test binary is run again with [`SWAP_ENV`]
/// set (A, and B in `TEAMVIRT_TEST_SWAP_WITH`): drops to her identity and exchanges A and B until
/// killed. Without the variable (a normal test run) it does nothing.
#[test]
fn swap_helper() {
    let (Some(a), Some(b)) = (std::env::var_os(SWAP_ENV), std::env::var_os(SWAP_WITH_ENV)) else {
        return;
    };
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_bytes()).unwrap();
    let b = std::ffi::CString::new(b.as_bytes()).unwrap();
    // SAFETY: plain identity syscalls; glibc applies them to every thread.
    unsafe {
        assert_eq!(libc::setgroups(1, &EVE_GROUP), 0);
        assert_eq!(libc::setresgid(EVE_GROUP, EVE_GROUP, EVE_GROUP), 0);
        assert_eq!(libc::setresuid(EVE_UID, EVE_UID, EVE_UID), 0);
    }
    loop {
        // SAFETY: valid C strings; renameat2 has no memory effects.
        unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            );
        }
    }
}

/// The swapping process, killed (by its pid) when dropped.
struct Swapper(Child);

impl Swapper {
    fn start(a: &Path, b: &Path) -> Swapper {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "swap_helper", "--test-threads=1", "--nocapture"])
            .env(SWAP_ENV, a)
            .env(SWAP_WITH_ENV, b)
            .spawn()
            .unwrap();
        Swapper(child)
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn domain_xml(emulator: Option<&Path>) -> String {
    let emu = emulator
        .map(|p| format!("    <emulator>{}</emulator>\n", p.display()))
        .unwrap_or_default();
    format!(
        "<domain type='kvm'>
  <name>vm</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
{emu}    <memballoon model='none'/>
  </devices>
</domain>
"
    )
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The attacker's own state directory, shaped like teamvirt's, whose
/// domain `vm` runs `emulator`.
fn eve_state(dir: &Path, emulator: &Path) {
    std::fs::create_dir(dir).unwrap();
    for sub in ["domains", "networks", "run", "locks", "cache", "log"] {
        std::fs::create_dir(dir.join(sub)).unwrap();
        chmod(&dir.join(sub), 0o700);
    }
    std::fs::write(dir.join("domains/vm.xml"), domain_xml(Some(emulator))).unwrap();
    for e in walk(dir) {
        chown(&e, EVE_UID, EVE_GROUP);
    }
    chmod(dir, 0o700);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Root's state directory lives in a directory root owns but its group
/// may write (no sticky bit). Eve, in that group, swaps it with hers in a
/// loop while root runs `start` again and again: her emulator never runs,
/// every try is refused naming the parent and the fix.
#[test]
fn swapping_the_state_directory_never_runs_the_attackers_emulator() {
    if !is_root() {
        eprintln!("skipping: needs root (a second user swaps the directory)");
        return;
    }
    if teamvirt_testinfra::qemu_or_skip("swapping_the_state_directory").is_none() {
        return;
    }
    let mut e = Env::via(StateVia::FlagBefore);
    let top = e.files.parent().unwrap().to_owned();
    chmod(&top, 0o755);
    let shared = top.join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o755);
    e.state = shared.join("state");
    let xml = e.write("vm.xml", &domain_xml(None));
    e.ok(&["define", &xml]);

    // Her emulator leaves a mark when anyone runs it.
    let mark = top.join("eve-was-run");
    let emu = top.join("eve-qemu");
    std::fs::write(
        &emu,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", mark.display()),
    )
    .unwrap();
    chmod(&emu, 0o755);
    let evil = shared.join("evil");
    eve_state(&evil, &emu);

    // The parent becomes writable by her group.
    chown(&shared, 0, EVE_GROUP);
    chmod(&shared, 0o770);
    let _swap = Swapper::start(&e.state, &evil);

    let mut refused = 0;
    for _ in 0..TRIES {
        let out = e.command(&["start", "vm"]).output().unwrap();
        assert!(!mark.exists(), "root ran the attacker's emulator");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started: {err}");
        if err.contains(&format!(
            "directory {} (above the state directory) is writable by its group without the sticky bit",
            shared.display()
        )) && err.contains("chmod g-w")
        {
            refused += 1;
        }
    }
    drop(_swap);
    assert_eq!(refused, TRIES, "not every try was refused for the parent");
    assert!(!mark.exists(), "root ran the attacker's emulator");
}
