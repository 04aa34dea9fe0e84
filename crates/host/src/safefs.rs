//! The state directory as a trust boundary. teamvirt runs as root: a
//! directory in its state that another user can write, or a symbolic link
//! planted there, would let that user steer root's writes, chmods and
//! reads (`locks -> /etc`, `run/NAME/serial.log -> /etc/shadow`). So every
//! directory teamvirt uses must be a real directory owned by the caller and
//! writable by nobody else, and every file in it is opened without
//! following a symbolic link (`O_NOFOLLOW`) and must be a regular file.
//!
//! The root is opened once, from `/` one component at a time without
//! following links, and every check is made on the opened descriptors
//! ([`open_root_checked`](crate::safefs::open_root_checked)); its subdirectories are made and opened
//! relative to it ([`ensure_private_dir_at`](crate::safefs::ensure_private_dir_at)). With every directory on the
//! way private (or sticky above the root), nobody else can swap a
//! component afterwards, so a path-based open with `O_NOFOLLOW` on the last
//! component is enough from then on.

use std::ffi::{CString, OsStr};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The caller's effective uid (the owner every state directory must have).
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// A path of the state directory that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {} {problem}; {fix}", .path.display())]
pub struct Untrusted {
    /// "state directory" or "state file".
    pub kind: &'static str,
    pub path: PathBuf,
    pub problem: String,
    pub fix: String,
}

fn type_name(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device node"
    } else {
        "a regular file"
    }
}

fn link_target(path: &Path) -> String {
    fs::read_link(path)
        .map(|t| format!(" (to {})", t.display()))
        .unwrap_or_default()
}

/// What is wrong with a directory of the state (from `lstat`), if anything.
pub fn dir_problem(path: &Path, m: &Metadata) -> Option<Untrusted> {
    let untrusted = |problem: String, fix: String| {
        Some(Untrusted {
            kind: "state directory",
            path: path.to_owned(),
            problem,
            fix,
        })
    };
    let p = path.display();
    if m.file_type().is_symlink() {
        return untrusted(
            format!("is a symbolic link{}", link_target(path)),
            "teamvirt does not follow links inside its state directory: remove the link (teamvirt recreates the directory) or use another --state-dir".into(),
        );
    }
    if !m.is_dir() {
        return untrusted(
            format!("is not a directory but {}", type_name(m)),
            "remove it or use another --state-dir".into(),
        );
    }
    let me = euid();
    if m.uid() != me {
        return untrusted(
            format!("is owned by uid {}, not by the caller (uid {me})", m.uid()),
            format!("chown it to uid {me} and chmod it to 0700 (`chown {me} {p} && chmod 0700 {p}`) or use another --state-dir"),
        );
    }
    if m.mode() & 0o022 != 0 {
        let who = if m.mode() & 0o002 != 0 {
            "others"
        } else {
            "its group"
        };
        return untrusted(
            format!("is writable by {who} (mode {:04o})", m.mode() & 0o7777),
            format!("chmod it to 0700 (`chmod 0700 {p}`) or use another --state-dir"),
        );
    }
    None
}

/// Check an existing directory of the state (not followed if a link).
pub fn check_dir(path: &Path) -> io::Result<Result<(), Untrusted>> {
    let m = fs::symlink_metadata(path)?;
    Ok(match dir_problem(path, &m) {
        Some(u) => Err(u),
        None => Ok(()),
    })
}

/// A directory above the state root may be shared (`/tmp`), but nobody
/// but root or the caller may be able to rename what is inside it: owned
/// by one of them, and if writable by its group or by others then sticky
/// (as OpenSSH's `StrictModes`: a group member could otherwise swap the
/// state directory for one of her own).
pub fn ancestor_problem(path: &Path, m: &Metadata) -> Option<Untrusted> {
    let me = euid();
    let p = path.display();
    if m.uid() != 0 && m.uid() != me {
        return Some(Untrusted {
            kind: "directory",
            path: path.to_owned(),
            problem: format!(
                "(above the state directory) is owned by uid {}, who could replace the state directory",
                m.uid()
            ),
            fix: "use a --state-dir whose parents belong to root or to the caller".into(),
        });
    }
    if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
        let (who, anyone, bits) = if m.mode() & 0o002 != 0 {
            ("others", "anyone".to_owned(), "o-w")
        } else {
            (
                "its group",
                format!("any member of group {}", m.gid()),
                "g-w",
            )
        };
        return Some(Untrusted {
            kind: "directory",
            path: path.to_owned(),
            problem: format!(
                "(above the state directory) is writable by {who} without the sticky bit (mode {:04o}), so {anyone} could replace the state directory",
                m.mode() & 0o7777
            ),
            fix: format!("chmod {bits} {p} (or +t) or use another --state-dir"),
        });
    }
    None
}

/// Create `dir` (its parent must exist) with mode 0700 if missing, then
/// check it and tighten it to 0700 if teamvirt just made it (see
/// [`ensure_private_dir_at`]).
pub fn ensure_private_dir(dir: &Path) -> io::Result<Result<(), Untrusted>> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a directory name",
        ));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let p = open_dir(parent)?;
    Ok(ensure_private_dir_at(&p, dir, name)?.map(drop))
}

/// Open a directory by path (links followed: for a parent the caller
/// trusts) for use with the `*_at` functions.
pub fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
}

fn cname(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn open_at(parent: &File, name: &OsStr, flags: libc::c_int) -> io::Result<File> {
    let c = cname(name)?;
    // SAFETY: a valid directory descriptor and C string; the returned
    // descriptor is owned by the File made from it.
    let fd = unsafe { libc::openat(parent.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `lstat` of `name` in the opened directory `parent` (a link is not
/// followed: its own metadata).
pub fn lstat_at(parent: &File, name: &OsStr) -> io::Result<Metadata> {
    open_at(parent, name, libc::O_PATH | libc::O_NOFOLLOW)?.metadata()
}

/// Open the directory `name` of the opened directory `parent`, refusing a
/// link (`ELOOP`) or anything that is not a directory (`ENOTDIR`).
pub fn open_dir_at(parent: &File, name: &OsStr) -> io::Result<File> {
    open_at(
        parent,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
}

fn same_file(a: &Metadata, b: &Metadata) -> bool {
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

fn replaced(path: &Path) -> Untrusted {
    Untrusted {
        kind: "state directory",
        path: path.to_owned(),
        problem: "was replaced by another file while teamvirt opened it".into(),
        fix: "someone is changing the state directory under teamvirt: use a --state-dir nobody else can write to".into(),
    }
}

/// Make the directory `name` (mode 0700) in the opened directory `parent`
/// if missing, open it without following a link and check the opened
/// directory (owner, modes). Its mode is set to 0700 only if teamvirt
/// just created it (against the umask); an existing one that is not 0700
/// is not teamvirt's and refused, never chmod'ed (`--state-dir` naming a
/// link to `/var`). `path` is the directory's name in messages.
pub fn ensure_private_dir_at(
    parent: &File,
    path: &Path,
    name: &OsStr,
) -> io::Result<Result<File, Untrusted>> {
    let c = cname(name)?;
    // SAFETY: a valid directory descriptor and C string.
    let created = if unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o700) } == 0 {
        true
    } else {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        false
    };
    let before = lstat_at(parent, name)?;
    if let Some(u) = dir_problem(path, &before) {
        return Ok(Err(u));
    }
    let d = match open_dir_at(parent, name) {
        Ok(d) => d,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            return Ok(Err(replaced(path)))
        }
        Err(e) => return Err(e),
    };
    let m = d.metadata()?;
    if !same_file(&before, &m) {
        return Ok(Err(replaced(path)));
    }
    if let Some(u) = dir_problem(path, &m) {
        return Ok(Err(u));
    }
    if m.mode() & 0o777 != 0o700 {
        if !created {
            // Never chmod a directory teamvirt did not make: it may be
            // another program's (`--state-dir` naming a link to `/var`).
            return Ok(Err(not_private(path, &m)));
        }
        d.set_permissions(fs::Permissions::from_mode(0o700))?;
    }
    Ok(Ok(d))
}

/// Open the state root `root` (absolute, without links: canonical) one
/// component at a time from `/`, never following a link, and check each
/// directory on the way *on the descriptor opened* ([`ancestor_problem`]
/// for those above, [`dir_problem`] for the root itself): what is checked
/// is what is used, so swapping a component between a check and the use
/// (`renameat2(RENAME_EXCHANGE)` in a loop) has nothing to win. With every
/// directory above writable only by root or the caller (or sticky), the
/// path keeps leading to the returned directory afterwards.
pub fn open_root_checked(root: &Path) -> io::Result<Result<File, Untrusted>> {
    let mut cur = open_dir(Path::new("/"))?;
    let mut path = PathBuf::from("/");
    let comps: Vec<&OsStr> = root
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for c in comps {
        if let Some(u) = ancestor_problem(&path, &cur.metadata()?) {
            return Ok(Err(u));
        }
        path.push(c);
        let before = lstat_at(&cur, c)?;
        if !before.is_dir() {
            // The path was canonical a moment ago: a component became a
            // link (or a file) since.
            return Ok(Err(
                dir_problem(&path, &before).unwrap_or_else(|| replaced(&path))
            ));
        }
        cur = match open_dir_at(&cur, c) {
            Ok(d) => d,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Ok(Err(replaced(&path)))
            }
            Err(e) => return Err(e),
        };
        if !same_file(&before, &cur.metadata()?) {
            return Ok(Err(replaced(&path)));
        }
    }
    if let Some(u) = dir_problem(&path, &cur.metadata()?) {
        return Ok(Err(u));
    }
    Ok(Ok(cur))
}

/// Why an existing directory that is not 0700 is not taken as a directory
/// of the state (teamvirt makes them 0700 and does not chmod another's).
pub fn not_private(dir: &Path, m: &Metadata) -> Untrusted {
    let p = dir.display();
    Untrusted {
        kind: "state directory",
        path: dir.to_owned(),
        problem: format!(
            "exists with mode {:04o}, not 0700 as teamvirt makes its directories, so it is not teamvirt's (teamvirt does not chmod a directory it did not create)",
            m.mode() & 0o7777
        ),
        fix: format!("if it is teamvirt's, `chmod 0700 {p}`; else use another --state-dir"),
    }
}

/// [`dir_problem`] plus [`not_private`] for an existing subdirectory
/// `name` of the opened directory `parent` (`path` in messages);
/// `Ok(None)` when it is missing.
pub fn existing_subdir_problem_at(
    parent: &File,
    path: &Path,
    name: &OsStr,
) -> io::Result<Option<Untrusted>> {
    let m = match lstat_at(parent, name) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Some(u) = dir_problem(path, &m) {
        return Ok(Some(u));
    }
    Ok((m.mode() & 0o777 != 0o700).then(|| not_private(path, &m)))
}

/// How [`open_file`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Append, creating the file (mode given) if missing.
    Append(u32),
    /// Read and write, creating if missing (lock files).
    ReadWriteCreate(u32),
}

/// Why a file could not be opened: an I/O error, or the path is not a
/// regular file (a link, a FIFO...).
#[derive(Debug)]
pub enum OpenError {
    Io(io::Error),
    Untrusted(Untrusted),
}

fn file_untrusted(path: &Path, problem: String) -> Untrusted {
    Untrusted {
        kind: "state file",
        path: path.to_owned(),
        problem,
        fix: "teamvirt only uses regular files in its state directory and never follows links there: remove it".into(),
    }
}

/// Open a file of the state directory without following a link at its
/// last component, without blocking on a FIFO, and refuse anything but a
/// regular file.
pub fn open_file(path: &Path, access: Access) -> Result<File, OpenError> {
    let mut o = OpenOptions::new();
    match access {
        Access::Read => {
            o.read(true);
        }
        Access::Append(mode) => {
            o.append(true).create(true).mode(mode);
        }
        Access::ReadWriteCreate(mode) => {
            o.read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(mode);
        }
    }
    o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    let f = match o.open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(OpenError::Untrusted(file_untrusted(
                path,
                format!("is a symbolic link{}", link_target(path)),
            )))
        }
        // O_NONBLOCK on a socket path: ENXIO.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            let what = fs::symlink_metadata(path)
                .map(|m| type_name(&m))
                .unwrap_or("not a regular file");
            return Err(OpenError::Untrusted(file_untrusted(
                path,
                format!("is not a regular file but {what}"),
            )));
        }
        Err(e) => return Err(OpenError::Io(e)),
    };
    let m = f.metadata().map_err(OpenError::Io)?;
    if !m.file_type().is_file() {
        return Err(OpenError::Untrusted(file_untrusted(
            path,
            format!("is not a regular file but {}", type_name(&m)),
        )));
    }
    clear_nonblock(&f);
    Ok(f)
}

/// Reads and writes on `f`, opened `O_NONBLOCK` (so opening a FIFO planted
/// at the path cannot hang), block normally from here on.
pub(crate) fn clear_nonblock(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fd = f.as_raw_fd();
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

/// `lstat` check of a path QEMU will open by name (serial log): absent, or
/// a regular file owned by the caller.
pub fn check_file_for_qemu(path: &Path) -> io::Result<Result<(), Untrusted>> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(())),
        Err(e) => return Err(e),
    };
    if m.file_type().is_symlink() {
        return Ok(Err(file_untrusted(
            path,
            format!("is a symbolic link{}", link_target(path)),
        )));
    }
    if !m.file_type().is_file() {
        return Ok(Err(file_untrusted(
            path,
            format!("is not a regular file but {}", type_name(&m)),
        )));
    }
    let me = euid();
    if m.uid() != me {
        return Ok(Err(file_untrusted(
            path,
            format!("is owned by uid {}, not by the caller (uid {me})", m.uid()),
        )));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_fifos_and_foreign_dirs_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        fs::create_dir(&target).unwrap();
        let link = t.path().join("link");
        symlink(&target, &link).unwrap();
        let u = check_dir(&link).unwrap().unwrap_err();
        assert!(u.to_string().contains("is a symbolic link"), "{u}");
        assert!(ensure_private_dir(&link).unwrap().is_err());

        let open = t.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let u = check_dir(&open).unwrap().unwrap_err();
        assert_eq!(
            u.to_string(),
            format!(
                "state directory {p} is writable by others (mode 0777); chmod it to 0700 (`chmod 0700 {p}`) or use another --state-dir",
                p = open.display()
            )
        );

        let fifo = t.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Must not block on the FIFO.
        match open_file(&fifo, Access::Read) {
            Err(OpenError::Untrusted(u)) => assert!(u.problem.contains("FIFO"), "{u}"),
            other => panic!("{other:?}"),
        }
        let flink = t.path().join("flink");
        symlink(t.path().join("target"), &flink).unwrap();
        match open_file(&flink, Access::Append(0o600)) {
            Err(OpenError::Untrusted(u)) => assert!(u.problem.contains("symbolic link"), "{u}"),
            other => panic!("{other:?}"),
        }
        let reg = t.path().join("reg");
        fs::write(&reg, "x").unwrap();
        assert!(open_file(&reg, Access::Read).is_ok());
        assert!(check_file_for_qemu(&reg).unwrap().is_ok());
        assert!(check_file_for_qemu(&flink).unwrap().is_err());
        assert!(check_file_for_qemu(&t.path().join("absent"))
            .unwrap()
            .is_ok());
    }

    /// What is checked is what was opened: a component that became a link
    /// after the path was resolved is refused, not followed, and the root
    /// returned is the directory the checks saw.
    #[test]
    fn root_is_opened_by_descriptor_without_links() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().canonicalize().unwrap();
        let a = real.join("a");
        fs::create_dir_all(a.join("state")).unwrap();
        let d = open_root_checked(&a.join("state")).unwrap().unwrap();
        let m = d.metadata().unwrap();
        assert!(same_file(&m, &fs::metadata(a.join("state")).unwrap()));
        // `a` swapped for a link to another tree holding a `state`.
        let b = real.join("b");
        fs::create_dir_all(b.join("state")).unwrap();
        fs::rename(&a, real.join("a.old")).unwrap();
        symlink(&b, &a).unwrap();
        let u = open_root_checked(&a.join("state")).unwrap().unwrap_err();
        assert_eq!(u.path, a);
        assert!(u.problem.contains("symbolic link"), "{u}");
        // An existing subdirectory that is not 0700 is not chmod'ed; one
        // made now is 0700 whatever the umask.
        let root = open_dir(&b).unwrap();
        fs::set_permissions(b.join("state"), fs::Permissions::from_mode(0o755)).unwrap();
        let u = ensure_private_dir_at(&root, &b.join("state"), "state".as_ref())
            .unwrap()
            .unwrap_err();
        assert!(u.problem.contains("not 0700"), "{u}");
        assert_eq!(fs::metadata(b.join("state")).unwrap().mode() & 0o777, 0o755);
        ensure_private_dir_at(&root, &b.join("new"), "new".as_ref())
            .unwrap()
            .unwrap();
        assert_eq!(fs::metadata(b.join("new")).unwrap().mode() & 0o777, 0o700);
    }
}
