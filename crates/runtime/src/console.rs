//! `console`: the pty QEMU reports for a domain's serial console, checked
//! before root opens it.
//!
//! The path comes from QEMU (`query-chardev`), which may be compromised:
//! opened as reported, root would print and append to any file. So the
//! path must be `/dev/pts/N`, is opened without following a link and
//! without becoming our controlling terminal, and what was opened must be
//! a character device on a devpts file system owned by the domain's QEMU
//! uid (a pty QEMU made; not another user's terminal).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use teamvirt_qmp::ChardevInfo;

use teamvirt_host::escape::escape_controls;

/// `statfs.f_type` of devpts.
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot find a character device for domain '{name}': it has no serial console on a pty (add <serial type='pty'/>)")]
    NoPty { name: String },
    /// What QEMU reported is not its pty; `path` is escaped (QEMU's text).
    #[error("refusing the console of domain '{name}': QEMU reported {path}, which {reason}")]
    NotItsPty {
        name: String,
        path: String,
        reason: String,
    },
    #[error("cannot open console {path} of domain '{name}': {source}")]
    Open {
        name: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot tell which user domain '{name}''s QEMU (pid {pid}) runs as: {source}")]
    QemuUid {
        name: String,
        pid: i32,
        #[source]
        source: io::Error,
    },
}

/// The effective uid of process `pid` (`/proc/PID/status`).
pub fn uid_of(name: &str, pid: i32) -> Result<u32, ConsoleError> {
    let err = |source| ConsoleError::QemuUid {
        name: name.to_owned(),
        pid,
        source,
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(err)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| err(io::Error::other("no Uid line")))
}

/// The pty of the first serial (`charserial0`), else of the first
/// console, in a `query-chardev` answer.
pub fn pty_of(chardevs: &[ChardevInfo]) -> Option<PathBuf> {
    let pty = |label: &str| {
        chardevs
            .iter()
            .find(|c| c.label == label)
            .and_then(|c| c.filename.strip_prefix("pty:"))
            .map(PathBuf::from)
    };
    pty("charserial0").or_else(|| pty("charconsole0"))
}

/// Open the console pty of domain `name` from QEMU's `query-chardev`
/// answer, refusing anything but a pty owned by `qemu_uid`.
pub fn open_reported(
    name: &str,
    chardevs: &[ChardevInfo],
    qemu_uid: u32,
) -> Result<(PathBuf, File), ConsoleError> {
    let path = pty_of(chardevs).ok_or_else(|| ConsoleError::NoPty {
        name: name.to_owned(),
    })?;
    let file = open_pty(name, &path, qemu_uid)?;
    Ok((path, file))
}

/// Open `path` read-write as the console pty of domain `name`.
pub fn open_pty(name: &str, path: &Path, qemu_uid: u32) -> Result<File, ConsoleError> {
    let shown = escape_controls(&path.display().to_string());
    let refuse = |reason: String| ConsoleError::NotItsPty {
        name: name.to_owned(),
        path: shown.clone(),
        reason,
    };
    // Checked before anything is opened: opening some devices has effects.
    let is_pts = path
        .to_str()
        .and_then(|p| p.strip_prefix("/dev/pts/"))
        .is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()));
    if !is_pts {
        return Err(refuse("is not a /dev/pts/N terminal".into()));
    }
    // O_NONBLOCK: the open itself never waits; cleared below.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| ConsoleError::Open {
            name: name.to_owned(),
            path: shown.clone(),
            source,
        })?;
    // SAFETY: statfs is plain data, filled by fstatfs on our open descriptor.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut fs) } != 0 {
        return Err(refuse(format!(
            "cannot be checked ({})",
            io::Error::last_os_error()
        )));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    if fs.f_type as i64 != DEVPTS_SUPER_MAGIC {
        return Err(refuse("is not on a devpts file system".into()));
    }
    let meta = file.metadata().map_err(|source| ConsoleError::Open {
        name: name.to_owned(),
        path: shown.clone(),
        source,
    })?;
    if meta.mode() & libc::S_IFMT != libc::S_IFCHR {
        return Err(refuse("is not a character device".into()));
    }
    if meta.uid() != qemu_uid {
        return Err(refuse(format!(
            "is owned by uid {}, not by the uid QEMU runs as ({qemu_uid})",
            meta.uid()
        )));
    }
    // SAFETY: fcntl on our open descriptor, no pointers.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    let cleared = flags >= 0 && {
        // SAFETY: as above.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) >= 0 }
    };
    if !cleared {
        return Err(ConsoleError::Open {
            name: name.to_owned(),
            path: shown,
            source: io::Error::last_os_error(),
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::ffi::CStr;
    use std::os::unix::fs::PermissionsExt;

    /// QEMU's answer as the typed layer reads it.
    fn list(v: serde_json::Value) -> Vec<ChardevInfo> {
        serde_json::from_value(v).unwrap()
    }

    fn answer(path: &str) -> Vec<ChardevInfo> {
        list(json!([
            {"label": "charmonitor", "filename": "unix:/x", "frontend-open": true},
            {"label": "charserial0", "filename": format!("pty:{path}"), "frontend-open": true}
        ]))
    }

    /// A pty of our own: the master (kept open) and the slave's path.
    fn own_pty() -> (File, PathBuf) {
        // SAFETY: posix_openpt returns a new descriptor or -1.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(fd >= 0, "{}", io::Error::last_os_error());
        // SAFETY: fd is the master we just opened and own from here on.
        let master = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: fd is a pty master.
        assert_eq!(unsafe { libc::grantpt(fd) }, 0);
        // SAFETY: fd is a pty master.
        assert_eq!(unsafe { libc::unlockpt(fd) }, 0);
        let mut buf = [0 as libc::c_char; 64];
        // SAFETY: buf is writable for its length.
        let r = unsafe { libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len()) };
        assert_eq!(r, 0);
        // SAFETY: ptsname_r wrote a NUL-terminated string into buf.
        let p = unsafe { CStr::from_ptr(buf.as_ptr()) };
        (master, PathBuf::from(p.to_str().unwrap()))
    }

    /// Issue 17, item 7: a compromised QEMU reporting a root-only regular
    /// file (directly, through a link, or by `..`) gets nothing opened,
    /// printed or appended.
    #[test]
    fn a_reported_file_that_is_not_a_pty_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("shadow");
        std::fs::write(&secret, "root:secret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = t.path().join("pts-link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let dotdot = format!("/dev/pts/../..{}", secret.display());
        let uid = std::fs::metadata(&secret).unwrap().uid();
        for p in [
            secret.display().to_string(),
            link.display().to_string(),
            dotdot,
            "/dev/pts/ptmx".into(),
            "/dev/pts/".into(),
            "/dev/pts/1\u{1b}]0;x\u{7}".into(),
        ] {
            let e = open_reported("vm", &answer(&p), uid).unwrap_err();
            assert!(matches!(e, ConsoleError::NotItsPty { .. }), "{p}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("is not a /dev/pts/N terminal"), "{msg}");
            assert!(!msg.contains('\u{1b}'), "{msg:?}");
        }
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root:secret\n");
    }

    #[test]
    fn a_pty_of_another_user_is_refused_its_own_is_opened() {
        let (mut master, slave) = own_pty();
        let me = std::fs::metadata(&slave).unwrap().uid();
        let e = open_reported("vm", &answer(slave.to_str().unwrap()), me + 1).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "is owned by uid {me}, not by the uid QEMU runs as ({})",
                me + 1
            )),
            "{e}"
        );
        let (p, mut f) = open_reported("vm", &answer(slave.to_str().unwrap()), me).unwrap();
        assert_eq!(p, slave);
        // Opened blocking, and really the pty: what the guest side writes
        // arrives.
        use std::io::{Read, Write};
        master.write_all(b"hi\n").unwrap();
        let mut buf = [0u8; 8];
        let n = f.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"hi"), "{:?}", &buf[..n]);
    }

    #[test]
    fn pty_is_found_by_label() {
        let v = json!([
            {"label": "charmonitor", "filename": "unix:/x/qmp.sock,server=on", "frontend-open": true},
            {"label": "charserial0", "filename": "pty:/dev/pts/7", "frontend-open": true}
        ]);
        assert_eq!(pty_of(&list(v)), Some(PathBuf::from("/dev/pts/7")));
        let v = json!([{"label": "charserial0", "filename": "file:/x/serial.log"}]);
        assert_eq!(pty_of(&list(v)), None);
    }

    #[test]
    fn no_serial_pty_is_said() {
        let e = open_reported(
            "vm",
            &list(json!([{"label": "charmonitor", "filename": "unix:/x"}])),
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("add <serial type='pty'/>"), "{e}");
    }
}
