//! What an unprivileged QEMU is lent (descriptors, chowns) and given back.
//!
//! What an unprivileged QEMU is lent for its lifetime (libvirt's DAC
//! security driver), and giving it back when it stops.
//!
//! The state directory stays root's and private (0700 all the way): QEMU
//! never opens anything in it by path. Instead, right before the launch,
//! teamvirt opens what the command line names and QEMU inherits the
//! descriptors (libvirt passes its monitor socket and logs the same way):
//!
//! Everything teamvirt can open itself is lent by descriptor, never by
//! chown: it is opened by root without following a link (`O_NOFOLLOW`,
//! after an `lstat` that the opened file's `fstat` must match) and must
//! be a regular file (or a block device for `host_device` disks), so a
//! path swapped for a link before the start lends nothing it points to:
//!
//! - the QMP socket is bound by teamvirt (root-only socket file) and passed
//!   as `-chardev socket,...,fd=N`;
//! - log files of `-chardev file`/`logfile=`/`-serial file:` (serial
//!   `type='file'` outputs included: created 0600) go through `-add-fd` +
//!   `/dev/fdset/N`;
//! - disk images (`-blockdev` `file`/`host_device`, `-drive file=`) too,
//!   one read-only descriptor and, for a writable disk, a read-write one in
//!   the same set (QEMU 7.2's `qemu_open` picks the one whose access mode
//!   it asks for; `auto-read-only` reopens switch between them);
//! - the kernel and initrd are named `/proc/self/fd/N` (QEMU 7.2 reads
//!   them with a plain `open`, which knows no fdsets): the opened file
//!   itself when the QEMU user may read it by its mode, else a sealed copy
//!   in a memfd (QEMU reopens the descriptor, which checks the inode's mode);
//! - the master key (root's 0600 file in the run directory, removed at
//!   stop) as `/proc/self/fd/N` of a sealed memfd copy: QEMU 7.2 reads
//!   `secret` files with glib's `g_file_get_contents`, which knows no
//!   fdsets, and the memfd is readable by its holder whatever its uid.
//!
//! What QEMU must open by path itself, the VFIO group devices
//! (`/dev/vfio/N` of each `vfio-pci` host address), is chowned to the QEMU
//! user; RLIMIT_MEMLOCK is raised to guest memory + 1 GiB for VFIO
//! (libvirt's rule). Every chown is recorded first in `run/NAME/dac.json`
//! (path, device, inode, original owner, group and mode), so whichever
//! later `teamvirt` sees the domain stopped gives it back exactly
//! ([`release`], from `run::forget`), to the same inode only
//! (found again by device and inode), mode included even when QEMU
//! chmod'ed it. A give-back that cannot complete is kept in
//! `run/dac-pending.json` and retried by every later start and stop,
//! never forgotten. A file lent to several running domains of the state
//! directory is given back by the last one (`locks/dac.lock` serializes
//! this).
//!
//! The argv recorded in the run record keeps the paths (migration reads
//! it); only the exec'd copy carries the descriptors.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lock::{FileLock, LockMode};
use crate::privdrop::{ChildSetup, Identity, PrivError};
use crate::state::{read_optional, remove_optional, write_atomic, StateDir, StateError};

/// The record of what was chowned for a domain.
pub const RECORD: &str = "dac.json";
/// The per-domain master key (libvirt's name).
pub const MASTER_KEY: &str = "master-key.aes";
/// Give-backs that could not complete, in the run root (retried).
pub const PENDING: &str = "dac-pending.json";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum DacError {
    #[error(transparent)]
    Priv(#[from] PrivError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot give QEMU (user {user}) access to {what} {}: {source}", .path.display())]
    Access {
        user: String,
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("QEMU user {user} cannot execute the emulator {}: {} (owner {owner}) keeps it out; install the emulator where that user can reach it, or run QEMU as root with --qemu-user root", .emulator.display(), .path.display())]
    Exec {
        user: String,
        emulator: PathBuf,
        path: PathBuf,
        owner: String,
    },
    #[error("refusing to lend {what} {} to QEMU: it {problem}", .path.display())]
    Refused {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("QEMU (user {user}) cannot open {} (owner {owner}): give the device a group with rw access (udev's default: root:kvm 0660), choose --accel tcg, or run QEMU as root with --qemu-user root", .path.display())]
    Kvm {
        user: String,
        path: PathBuf,
        owner: String,
    },
}

/// One file whose owner was changed for QEMU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// The owner to give back.
    pub uid: u32,
    pub gid: u32,
    /// The permission bits to give back (absent in records of a teamvirt
    /// that restored owners only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The uid it was lent to: while it is not given back, that uid must
    /// not be handed to another VM (`dynuid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lent_to: Option<u32>,
}

/// The labels recorded for a domain (`run/NAME/dac.json`) or pending.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Record {
    pub labels: Vec<Label>,
}

/// Where VFIO groups are looked up (tests use a fake tree).
#[derive(Debug, Clone)]
pub struct HostRoots {
    pub sysfs: PathBuf,
    pub dev: PathBuf,
}

impl Default for HostRoots {
    fn default() -> Self {
        HostRoots {
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// The QEMU user must be able to execute the emulator itself (libvirt
/// fails the same way); say which directory or file keeps it out rather
/// than leave it to a bare EACCES from exec.
pub fn check_exec(emulator: &Path, id: &Identity) -> Result<(), DacError> {
    // A bare name is looked up in PATH by exec; a relative path is
    // resolved from here like exec does.
    if !id.switch || emulator.components().count() < 2 {
        return Ok(());
    }
    let deny = |path: &Path, m: &std::fs::Metadata| DacError::Exec {
        user: id.name.clone(),
        emulator: emulator.to_owned(),
        path: path.to_owned(),
        owner: format!("{}:{} mode {:04o}", m.uid(), m.gid(), m.mode() & 0o7777),
    };
    let mut cur = PathBuf::new();
    let comps: Vec<_> = emulator.components().collect();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let Ok(m) = std::fs::metadata(&cur) else {
            // Missing: exec reports it.
            return Ok(());
        };
        let last = i + 1 == comps.len();
        if (m.is_dir() || last) && !may_exec(&m, id) {
            return Err(deny(&cur, &m));
        }
    }
    Ok(())
}

/// Search (directory) or execute (file) permission by mode alone.
fn may_exec(m: &std::fs::Metadata, id: &Identity) -> bool {
    let x = if m.uid() == id.uid {
        0o100
    } else if m.gid() == id.gid || id.groups.contains(&m.gid()) {
        0o010
    } else {
        0o001
    };
    m.mode() & x != 0
}

/// Raise (never lower) a running process's RLIMIT_MEMLOCK.
pub fn raise_memlock(pid: i32, bytes: u64) -> io::Result<()> {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads the limit into `cur`, a valid rlimit.
    if unsafe { libc::prlimit(pid, libc::RLIMIT_MEMLOCK, std::ptr::null(), &mut cur) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if cur.rlim_cur == libc::RLIM_INFINITY || cur.rlim_cur >= bytes {
        return Ok(());
    }
    let new = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes.max(cur.rlim_max),
    };
    // SAFETY: prlimit sets the limit from `new`, a valid rlimit.
    if unsafe { libc::prlimit(pid, libc::RLIMIT_MEMLOCK, &new, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The lock serializing lending and giving back in `sd`.
pub fn dac_lock(sd: &StateDir) -> Result<FileLock, DacError> {
    Ok(
        FileLock::acquire(&sd.locks_dir().join("dac.lock"), LockMode::Exclusive)
            .map_err(StateError::from)?,
    )
}

fn chown_fd(f: &File, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: the descriptor is valid; the empty path with AT_EMPTY_PATH
    // means the descriptor itself (works for O_PATH ones too).
    let rc = unsafe { libc::fchownat(f.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// May `id` open a file with metadata `m` for reading (and writing), by
/// its mode alone (QEMU has no capabilities, not even as uid 0)?
fn may_access(m: &std::fs::Metadata, id: &Identity, write: bool) -> bool {
    let (r, w) = if m.uid() == id.uid {
        (0o400, 0o200)
    } else if m.gid() == id.gid || id.groups.contains(&m.gid()) {
        (0o040, 0o020)
    } else {
        (0o004, 0o002)
    };
    m.mode() & r != 0 && (!write || m.mode() & w != 0)
}

/// What one launch (or hotplug) of a domain's QEMU is lent, gathered
/// while its command line is rewritten (`teamvirt_runtime::lend_argv`
/// knows QEMU's options): descriptors QEMU inherits, fdsets, and the
/// labels of what is chowned, recorded before the first chown.
pub struct Lender<'a> {
    id: &'a Identity,
    sd: &'a StateDir,
    name: &'a str,
    fds: Vec<OwnedFd>,
    labels: Vec<Label>,
    /// Opened files still to be chowned (after the record is written).
    pending: Vec<(File, Label, &'static str)>,
    /// (fd, set) pairs for `-add-fd`.
    fdsets: Vec<(RawFd, u32)>,
    /// The last fdset number used.
    last_set: u32,
}

impl<'a> Lender<'a> {
    /// Lending for domain `name` of `sd` to `id`.
    pub fn new(id: &'a Identity, sd: &'a StateDir, name: &'a str) -> Lender<'a> {
        Lender {
            id,
            sd,
            name,
            fds: Vec::new(),
            labels: Vec::new(),
            pending: Vec::new(),
            fdsets: Vec::new(),
            last_set: 0,
        }
    }

    /// Add this launch's labels to the run directory's record, before the
    /// first chown: a crash in between still gives back.
    pub fn record(&self, dir: &Path) -> Result<(), DacError> {
        if self.labels.is_empty() {
            return Ok(());
        }
        let mut rec = load(dir)?;
        rec.labels.extend(self.labels.iter().cloned());
        save(dir, &rec)
    }

    /// Give QEMU's identity the files opened for labeling.
    pub fn chown_pending(&self) -> Result<(), DacError> {
        for (f, label, what) in &self.pending {
            chown_fd(f, self.id.uid, self.id.gid).map_err(|source| DacError::Access {
                user: self.id.name.clone(),
                what,
                path: label.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    pub fn access_err(&self, what: &'static str, path: &Path, source: io::Error) -> DacError {
        DacError::Access {
            user: self.id.name.clone(),
            what,
            path: path.to_owned(),
            source,
        }
    }

    pub fn keep(&mut self, fd: impl Into<OwnedFd>) -> RawFd {
        let fd: OwnedFd = fd.into();
        let raw = fd.as_raw_fd();
        self.fds.push(fd);
        raw
    }

    fn refused(&self, what: &'static str, path: &Path, problem: String) -> DacError {
        DacError::Refused {
            what,
            path: path.to_owned(),
            problem,
        }
    }

    /// A new fdset holding `fds`: its `/dev/fdset/N` name.
    pub fn fdset(&mut self, fds: Vec<File>) -> String {
        self.last_set += 1;
        let set = self.last_set;
        for f in fds {
            let fd = self.keep(f);
            self.fdsets.push((fd, set));
        }
        format!("/dev/fdset/{set}")
    }

    /// Open `path` for lending: never through a link at its last
    /// component (`O_NOFOLLOW`) unless `follow_trusted` and only root can
    /// have made it (see [`trusted_link`]), the opened file the one `lstat` saw, and
    /// a regular file (or a block device when `block`). `O_NONBLOCK` while
    /// opening, so a FIFO planted there cannot block; cleared after.
    fn open_checked(
        &self,
        what: &'static str,
        path: &Path,
        opts: &mut OpenOptions,
        block: bool,
        follow_trusted: bool,
    ) -> Result<File, DacError> {
        let link = |p: &Path| {
            let to = std::fs::read_link(p)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            format!("is a symbolic link{to}; teamvirt opens what it lends to QEMU without following links: name the file itself")
        };
        // What is read (a disk, a kernel) may be named through a link only
        // root can have made or changed, as `/dev/disk/by-id/...` are:
        // followed; a link another user could have planted or swapped is
        // refused. What is written (a log) is never followed.
        let mut resolved = path.to_path_buf();
        let mut hops = 0;
        let before = loop {
            match std::fs::symlink_metadata(&resolved) {
                Ok(m) if m.file_type().is_symlink() => {
                    if !follow_trusted || hops >= 8 || !trusted_link(&resolved, &m) {
                        return Err(self.refused(what, path, link(&resolved)));
                    }
                    let to = std::fs::read_link(&resolved)
                        .map_err(|e| self.access_err(what, path, e))?;
                    let dir = resolved.parent().map(Path::to_path_buf).unwrap_or_default();
                    resolved = dir.join(to);
                    hops += 1;
                }
                Ok(m) => break Some(m),
                Err(e) if e.kind() == io::ErrorKind::NotFound => break None,
                Err(e) => return Err(self.access_err(what, path, e)),
            }
        };
        let path = resolved.as_path();
        let f = match opts
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(self.refused(what, path, link(path)))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err(self.refused(what, path, "is not a regular file".into()))
            }
            Err(e) => return Err(self.access_err(what, path, e)),
        };
        let m = f.metadata().map_err(|e| self.access_err(what, path, e))?;
        if before.is_some_and(|b| (b.dev(), b.ino()) != (m.dev(), m.ino())) {
            return Err(self.refused(
                what,
                path,
                "was replaced by another file while teamvirt opened it".into(),
            ));
        }
        let t = m.file_type();
        let ok = t.is_file() || (block && std::os::unix::fs::FileTypeExt::is_block_device(&t));
        if !ok {
            let kind = if t.is_dir() {
                "a directory"
            } else if std::os::unix::fs::FileTypeExt::is_fifo(&t) {
                "a FIFO"
            } else {
                "a device node or socket"
            };
            return Err(self.refused(what, path, format!("is not a regular file but {kind}")));
        }
        crate::safefs::clear_nonblock(&f);
        Ok(f)
    }

    /// A log QEMU appends to (serial `type='file'` outputs, `logfile=`,
    /// the run directory's logs): opened here (created 0600, never through
    /// a link, a regular file only), handed over as an fdset.
    pub fn log(&mut self, path: &Path) -> Result<String, DacError> {
        let f = self.open_checked(
            "log file",
            path,
            OpenOptions::new().create(true).append(true).mode(0o600),
            false,
            false,
        )?;
        Ok(self.fdset(vec![f]))
    }

    /// A kernel or initrd, which QEMU reads with a plain `open` (no
    /// fdsets in QEMU 7.2's loader): `/proc/self/fd/N` of the opened file
    /// when the QEMU user may read it by its mode, else of a sealed copy
    /// in a memfd, so nothing is chowned.
    pub fn boot_file(&mut self, what: &'static str, path: &Path) -> Result<String, DacError> {
        let mut f = self.open_checked(what, path, OpenOptions::new().read(true), false, true)?;
        let m = f.metadata().map_err(|e| self.access_err(what, path, e))?;
        if !self.id.switch || may_access(&m, self.id, false) {
            return Ok(format!("/proc/self/fd/{}", self.keep(f)));
        }
        let copy = sealed_copy(&mut f).map_err(|e| self.access_err(what, path, e))?;
        Ok(format!("/proc/self/fd/{}", self.keep(copy)))
    }

    /// A disk image (or block device): an fdset with a read-only
    /// descriptor and, when `write`, a read-write one of the same file.
    /// `auto_ro`: QEMU may do with read-only (`auto-read-only`), so a file
    /// root cannot open read-write is lent read-only.
    pub fn disk(&mut self, path: &Path, write: bool, auto_ro: bool) -> Result<String, DacError> {
        let what = "disk image";
        let ro = self.open_checked(what, path, OpenOptions::new().read(true), true, true)?;
        let mut fds = Vec::new();
        if write {
            // The same inode again, through the descriptor: no second
            // look-up of the path.
            let rw = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(format!("/proc/self/fd/{}", ro.as_raw_fd()));
            match rw {
                Ok(f) => fds.push(f),
                Err(e)
                    if auto_ro
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EROFS | libc::EACCES | libc::EPERM)
                        ) => {}
                Err(e) => return Err(self.access_err(what, path, e)),
            }
        }
        fds.push(ro);
        Ok(self.fdset(fds))
    }

    /// The identity lent to.
    pub fn id(&self) -> &Identity {
        self.id
    }

    /// The descriptors QEMU inherits and the `(fd, set)` pairs of its
    /// `-add-fd` options, once the command line is rewritten.
    pub fn into_parts(self) -> (Vec<OwnedFd>, Vec<(RawFd, u32)>) {
        (self.fds, self.fdsets)
    }

    /// A server socket QEMU listens on (its monitor): bound here (a stale
    /// socket removed first, the file root's 0600), handed over as a
    /// descriptor.
    pub fn listen(&mut self, p: &Path) -> Result<RawFd, DacError> {
        // A stale socket would make bind fail.
        remove_optional(p)?;
        let l = UnixListener::bind(p).map_err(|e| self.access_err("monitor socket", p, e))?;
        set_mode(p, 0o600);
        Ok(self.keep(l))
    }

    /// The master key at `p` (root's, in the run directory): its
    /// `/proc/self/fd/N` name, a sealed copy when QEMU runs as another
    /// user (nothing of the state directory is chowned).
    pub fn master_key(&mut self, p: &Path) -> Result<String, DacError> {
        let what = "master key";
        let mut f = self.open_checked(what, p, OpenOptions::new().read(true), false, false)?;
        if !self.id.switch {
            return Ok(format!("/proc/self/fd/{}", self.keep(f)));
        }
        let copy = sealed_copy(&mut f).map_err(|e| self.access_err(what, p, e))?;
        Ok(format!("/proc/self/fd/{}", self.keep(copy)))
    }

    fn label_needed(&self, m: &std::fs::Metadata, write: bool) -> bool {
        // Only root can chown; QEMU as the caller reaches what the caller does.
        if !self.id.switch {
            return false;
        }
        // Lent by another running domain: share it (it must stay lent
        // until the last of them stops).
        if self.shared(m).is_some() {
            return true;
        }
        !may_access(m, self.id, write)
    }

    fn shared(&self, m: &std::fs::Metadata) -> Option<Label> {
        other_labels(self.sd, self.name)
            .into_iter()
            .find(|o| (o.dev, o.ino) == (m.dev(), m.ino()))
    }

    fn label_for(&self, path: &Path, m: &std::fs::Metadata) -> Label {
        // Shared, or still to be given back: the true original owner and
        // mode are in the first record.
        let pending = || {
            load_at(&self.sd.run_root().join(PENDING))
                .ok()?
                .labels
                .into_iter()
                .find(|o| (o.dev, o.ino) == (m.dev(), m.ino()))
        };
        match self.shared(m).or_else(pending) {
            Some(o) => Label {
                path: path.to_owned(),
                lent_to: Some(self.id.uid),
                ..o
            },
            None => Label {
                path: path.to_owned(),
                dev: m.dev(),
                ino: m.ino(),
                uid: m.uid(),
                gid: m.gid(),
                mode: Some(m.mode() & 0o7777),
                lent_to: Some(self.id.uid),
            },
        }
    }

    /// A device node QEMU opens by path (VFIO group): chowned.
    pub fn device(&mut self, path: &Path) -> Result<(), DacError> {
        let what = "VFIO group device";
        // The node itself, never a link's target (O_PATH: opening a VFIO
        // group has effects).
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| self.access_err(what, path, e))?;
        let m = f.metadata().map_err(|e| self.access_err(what, path, e))?;
        if m.file_type().is_symlink() {
            return Err(self.refused(what, path, "is a symbolic link".into()));
        }
        if self.label_needed(&m, true) {
            let label = self.label_for(path, &m);
            self.labels.push(label.clone());
            self.pending.push((f, label, what));
        }
        Ok(())
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
}

/// `/dev/kvm` for the QEMU user. libvirt's user is in the `kvm` group
/// udev gives the device; where the user is not, the device's group is
/// added to QEMU's groups (the device is never chowned: it is shared by
/// every VM of the host). A root-only `/dev/kvm` is an error naming the fix.
pub fn kvm_access(setup: &mut ChildSetup, id: &Identity, kvm: &Path) -> Result<(), DacError> {
    let Some((_, _, groups)) = setup.switch.as_mut() else {
        return Ok(());
    };
    let m = std::fs::metadata(kvm).map_err(|e| DacError::Access {
        user: id.name.clone(),
        what: "KVM device",
        path: kvm.to_owned(),
        source: e,
    })?;
    if may_access(&m, id, true) {
        return Ok(());
    }
    if m.gid() != 0 && m.mode() & 0o060 == 0o060 {
        groups.push(m.gid());
        return Ok(());
    }
    Err(DacError::Kvm {
        user: id.name.clone(),
        path: kvm.to_owned(),
        owner: format!("{}:{} mode {:04o}", m.uid(), m.gid(), m.mode() & 0o7777),
    })
}

/// A sealed in-memory copy of `src` (a memfd: readable by whoever holds
/// the descriptor, whatever the original's owner and mode).
fn sealed_copy(src: &mut File) -> io::Result<File> {
    // SAFETY: a valid C string; the descriptor returned is owned below.
    let fd = unsafe {
        libc::memfd_create(
            c"teamvirt-boot".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let mut copy = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    io::copy(src, &mut copy)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(copy)
}

/// `/dev/vfio/N` of a PCI address (its IOMMU group in sysfs).
pub fn vfio_group(roots: &HostRoots, host: &str) -> Option<PathBuf> {
    let host = if host.matches(':').count() == 1 {
        format!("0000:{host}")
    } else {
        host.to_owned()
    };
    let link = roots
        .sysfs
        .join("bus/pci/devices")
        .join(&host)
        .join("iommu_group");
    let target = std::fs::read_link(link).ok()?;
    let group = target.file_name()?;
    if !group.as_bytes().iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(roots.dev.join("vfio").join(group))
}

#[path = "dac_giveback.rs"]
mod giveback;
pub use giveback::{
    give_back_vfio, give_back_vfio_in, pending_holders, pending_holders_at, release, retry_pending,
    save,
};
use giveback::{load, load_at, other_labels};

/// A link only root can have made or replaced: owned by root, in a
/// directory owned by root that nobody else can write to.
fn trusted_link(link: &Path, m: &std::fs::Metadata) -> bool {
    let dir_ok = link
        .parent()
        .and_then(|d| std::fs::metadata(d).ok())
        .is_some_and(|d| d.uid() == 0 && d.mode() & 0o022 == 0);
    m.uid() == 0 && dir_ok
}
