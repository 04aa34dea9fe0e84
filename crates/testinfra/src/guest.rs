//! The test guest (kernel + busybox initramfs built by
//! `scripts/build-test-guest.sh`) and the lock that keeps guest-booting
//! tests from running at the same time.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::workspace_root;

/// Where the guest is cached: `TEAMVIRT_GUEST_DIR`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/teamvirt/guest` (the script's default).
pub fn guest_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TEAMVIRT_GUEST_DIR") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache")
        });
    cache.join("teamvirt/guest")
}

/// The built guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// `vmlinuz` (QEMU `-kernel`).
    pub kernel: PathBuf,
    /// `initramfs.cpio.gz` (QEMU `-initrd`).
    pub initrd: PathBuf,
}

impl GuestImage {
    /// The kernel command line the guest expects (serial console on
    /// ttyS0, no reboot loop on panic), plus `extra` (e.g. `e2e.skip=virtio_net`).
    pub fn cmdline(&self, extra: &str) -> String {
        let base = "console=ttyS0 panic=-1";
        if extra.is_empty() {
            base.to_owned()
        } else {
            format!("{base} {extra}")
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GuestError {
    #[error("a guest build script could not be run: {0}")]
    Spawn(String),
    #[error("{script} failed ({status}):\n{stderr}")]
    Build {
        script: String,
        status: String,
        stderr: String,
    },
    #[error("the guest build script succeeded but {0} is missing")]
    Missing(PathBuf),
}

/// The test guest, built (or found up to date) by running the script once
/// per process. The script itself caches across processes and serialises
/// concurrent builders with a lock.
pub fn test_guest() -> Result<GuestImage, GuestError> {
    static GUEST: OnceLock<Result<GuestImage, GuestError>> = OnceLock::new();
    GUEST.get_or_init(build).clone()
}

fn build() -> Result<GuestImage, GuestError> {
    let dir = guest_dir();
    let script = workspace_root().join("scripts/build-test-guest.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .output()
        .map_err(|e| GuestError::Spawn(format!("{}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(GuestError::Build {
            script: "scripts/build-test-guest.sh".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let image = GuestImage {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initramfs.cpio.gz"),
    };
    for p in [&image.kernel, &image.initrd] {
        if !p.is_file() {
            return Err(GuestError::Missing(p.clone()));
        }
    }
    Ok(image)
}

/// Held while a test runs a guest; released on drop. Cross-process (flock
/// on `guest_dir()/boot.lock`), so parallel test binaries take turns too.
#[derive(Debug)]
pub struct GuestLock {
    _file: File,
}

/// Block until no other test boots a guest. Call it before starting QEMU
/// and keep the guard alive until QEMU is gone. Blocking: in an async test
/// take it before creating the runtime or via `spawn_blocking`.
pub fn guest_lock() -> GuestLock {
    let dir = guest_dir();
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let path = dir.join("boot.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let fd = file.as_raw_fd();
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!(
            "waiting for the guest lock {} (another test runs a guest)",
            path.display()
        );
        loop {
            // SAFETY: as above.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                panic!("flock {}: {err}", path.display());
            }
        }
    }
    GuestLock { _file: file }
}
