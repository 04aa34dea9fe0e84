//! The real-distro test guest: Debian 12 built with mmdebstrap by
//! `scripts/build-debian-guest.sh` (cached), booted from a virtio disk
//! with direct kernel boot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{workspace_root, GuestError};

/// The built Debian guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianGuest {
    /// Root file system (ext4, label `tvroot`); copy it before booting
    /// (see [`DebianGuest::disk_copy`]), the cached one stays pristine.
    pub image: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The address the guest's own ifupdown configuration gives the failover
/// master (`enp1s0`).
pub const DEBIAN_GUEST_IP: &str = "10.78.0.2";

impl DebianGuest {
    /// The kernel command line: root from the disk, serial console, only
    /// warnings and worse on it (info messages would split the reporter's
    /// lines), no reboot on panic.
    pub fn cmdline(&self) -> String {
        "console=ttyS0 root=LABEL=tvroot rw loglevel=4 panic=-1".to_owned()
    }

    /// A private writable copy of the root image in `dir` (sparse; mode
    /// 0666 so the unprivileged QEMU user of either state directory opens
    /// it without a lending of its own).
    pub fn disk_copy(&self, dir: &Path) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dst = dir.join("debian.img");
        let st = Command::new("cp")
            .arg("--sparse=always")
            .arg(&self.image)
            .arg(&dst)
            .status()?;
        if !st.success() {
            return Err(std::io::Error::other(format!("cp {st}")));
        }
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o666))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        Ok(dst)
    }
}

/// Is mmdebstrap installed (the image can be built)?
pub fn mmdebstrap_available() -> bool {
    Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Debian guest, built (or found up to date) once per process; `None`
/// and a printed skip notice when mmdebstrap is missing.
pub fn debian_guest_or_skip(test: &str) -> Option<Result<DebianGuest, GuestError>> {
    if !mmdebstrap_available() {
        eprintln!(
            "skipping {test}: mmdebstrap is not installed (apt-get install mmdebstrap e2fsprogs)"
        );
        return None;
    }
    static GUEST: OnceLock<Result<DebianGuest, GuestError>> = OnceLock::new();
    Some(GUEST.get_or_init(build).clone())
}

fn build() -> Result<DebianGuest, GuestError> {
    let script = workspace_root().join("scripts/build-debian-guest.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| GuestError::Spawn(format!("{}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(GuestError::Build {
            script: "scripts/build-debian-guest.sh".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let g = DebianGuest {
        image: dir.join("debian.img"),
        kernel: dir.join("debian-vmlinuz"),
        initrd: dir.join("debian-initrd.img"),
    };
    for p in [&g.image, &g.kernel, &g.initrd] {
        if !p.is_file() {
            return Err(GuestError::Missing(p.clone()));
        }
    }
    Ok(g)
}
