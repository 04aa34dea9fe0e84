//! Removing what a dead QEMU left behind as its dynamic id (see
//! [`super`]): files in the swept directories and SysV IPC objects.
//!
//! The swept directories are shared (`/tmp` is everyone's), so the walk
//! never follows a path twice: each directory is opened relative to the
//! descriptor of its parent without following links, checked to be what
//! was `lstat`ed, and entries are removed with `unlinkat` relative to it;
//! a user swapping a directory for a link mid-walk makes root remove
//! nothing outside it. Other file systems below a swept directory are not
//! entered.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::Host;

/// Deeper than this is not walked (the id's own trees are removed whole).
const MAX_DEPTH: usize = 64;
/// At most this many entries are looked at per swept directory.
const MAX_ENTRIES: usize = 1_000_000;

/// Remove everything `uid` owns in the host's swept directories (a
/// directory it owns with all it holds) and, if asked, its SysV IPC
/// objects; how many objects went. An error leaves the id unclean.
pub(super) fn sweep(host: &Host, uid: u32) -> io::Result<usize> {
    let mut n = 0;
    for d in &host.sweep {
        n += sweep_dir(d, uid)
            .map_err(|e| io::Error::new(e.kind(), format!("sweeping {}: {e}", d.display())))?;
    }
    if host.sysv_ipc {
        n += sweep_ipc(uid)?;
    }
    Ok(n)
}

/// [`sweep`] of one directory (missing: nothing to do).
pub(super) fn sweep_dir(root: &Path, uid: u32) -> io::Result<usize> {
    let dir = match File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)
    {
        Ok(f) => OwnedFd::from(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let st = fstat(&dir)?;
    let mut w = Walk {
        uid,
        dev: st.st_dev,
        budget: MAX_ENTRIES,
        removed: 0,
    };
    w.walk(&dir, 0)?;
    Ok(w.removed)
}

struct Walk {
    uid: u32,
    dev: libc::dev_t,
    budget: usize,
    removed: usize,
}

impl Walk {
    /// Look for the id's entries in `dir`.
    fn walk(&mut self, dir: &OwnedFd, depth: usize) -> io::Result<()> {
        for name in names(dir)? {
            self.spend()?;
            let Some(st) = lstatat(dir, &name)? else {
                continue;
            };
            if st.st_uid == self.uid {
                self.remove(dir, &name, &st, depth)?;
            } else if is_dir(&st) && st.st_dev == self.dev && depth < MAX_DEPTH {
                // Not ours to enter (a user's private directory root cannot
                // see into is still entered: root can).
                if let Some(sub) = open_dir_at(dir, &name, &st)? {
                    self.walk(&sub, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    /// Remove `name` of `dir` (a directory with everything in it).
    fn remove(
        &mut self,
        dir: &OwnedFd,
        name: &CString,
        st: &libc::stat,
        depth: usize,
    ) -> io::Result<()> {
        if is_dir(st) {
            if st.st_dev != self.dev || depth >= MAX_DEPTH {
                return Err(io::Error::other(format!(
                    "directory {} of the id is a mount point or too deep",
                    name.to_string_lossy()
                )));
            }
            let Some(sub) = open_dir_at(dir, name, st)? else {
                return Ok(());
            };
            for child in names(&sub)? {
                self.spend()?;
                if let Some(cst) = lstatat(&sub, &child)? {
                    self.remove(&sub, &child, &cst, depth + 1)?;
                }
            }
        }
        let flags = if is_dir(st) { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: a valid directory descriptor and a NUL-terminated name.
        if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
        }
        self.removed += 1;
        Ok(())
    }

    fn spend(&mut self) -> io::Result<()> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| io::Error::other(format!("more than {MAX_ENTRIES} entries")))?;
        Ok(())
    }
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The entry names of an opened directory (read through its descriptor,
/// not its path).
fn names(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let e = e?;
        if let Ok(c) = CString::new(e.file_name().as_bytes()) {
            out.push(c);
        }
    }
    Ok(out)
}

fn fstat(f: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain old data; all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid out pointer.
    if unsafe { libc::fstat(f.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// `lstat` of `name` in `dir`; `None` when it is gone.
fn lstatat(dir: &OwnedFd, name: &CString) -> io::Result<Option<libc::stat>> {
    // SAFETY: stat is plain old data; all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, a NUL-terminated name, a valid out pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::NotFound {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(st))
}

/// Open the directory `name` of `dir` that was `lstat`ed as `st`, never
/// through a link; `None` when it is gone or was replaced meanwhile.
fn open_dir_at(dir: &OwnedFd, name: &CString, st: &libc::stat) -> io::Result<Option<OwnedFd>> {
    // SAFETY: a valid descriptor and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: a descriptor openat just returned, owned by nobody else.
    let sub = unsafe { OwnedFd::from_raw_fd(fd) };
    let now = fstat(&sub)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Ok(None);
    }
    Ok(Some(sub))
}

/// Remove the SysV shared memory segments, message queues and semaphore
/// sets that `uid` owns or created (`/proc/sysvipc`, this IPC namespace).
fn sweep_ipc(uid: u32) -> io::Result<usize> {
    let mut n = 0;
    for (table, id_col) in [("shm", "shmid"), ("msg", "msqid"), ("sem", "semid")] {
        let text = match std::fs::read_to_string(format!("/proc/sysvipc/{table}")) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for id in ipc_ids_of(&text, id_col, uid) {
            // SAFETY: IPC_RMID takes no buffer (null is allowed).
            let r = unsafe {
                match table {
                    "shm" => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
                    "msg" => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
                    _ => libc::semctl(id, 0, libc::IPC_RMID),
                }
            };
            if r != 0 {
                let e = io::Error::last_os_error();
                // Removed meanwhile.
                if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EIDRM)) {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("removing SysV {table} {id}: {e}"),
                    ));
                }
            }
            n += 1;
        }
    }
    Ok(n)
}

/// The ids of a `/proc/sysvipc/*` table's rows whose owner or creator is
/// `uid` (columns found by the header's names).
fn ipc_ids_of(text: &str, id_col: &str, uid: u32) -> Vec<i32> {
    let mut lines = text.lines();
    let Some(head) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = head.split_whitespace().collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(id), Some(u), Some(cu)) = (at(id_col), at("uid"), at("cuid")) else {
        return Vec::new();
    };
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let is = |i: usize| f.get(i).and_then(|v| v.parse::<u32>().ok()) == Some(uid);
            (is(u) || is(cu)).then(|| f.get(id)?.parse().ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipc_tables_are_read_by_their_header() {
        let shm = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid\n\
                   0 32769 600 4096 10 10 0 60600 60600 60600 60600\n\
                   0 32770 600 4096 10 10 0 0 0 60600 0\n\
                   0 32771 600 4096 10 10 0 0 0 0 0\n";
        assert_eq!(ipc_ids_of(shm, "shmid", 60600), vec![32769, 32770]);
        assert!(ipc_ids_of(shm, "msqid", 60600).is_empty());
        assert!(ipc_ids_of("", "shmid", 1).is_empty());
    }

    #[test]
    fn missing_directory_is_nothing_to_do() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(sweep_dir(&t.path().join("none"), 12345).unwrap(), 0);
    }

    /// A SysV shared memory segment of the id goes; one of another owner
    /// stays.
    #[test]
    fn sysv_segments_of_the_id_are_removed() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return;
        }
        let uid = 3_900_301;
        // SAFETY: plain syscalls; the buffer is a valid shmid_ds.
        let (mine, other) = unsafe {
            let mine = libc::shmget(libc::IPC_PRIVATE, 4096, 0o600);
            let other = libc::shmget(libc::IPC_PRIVATE, 4096, 0o600);
            assert!(mine >= 0 && other >= 0);
            let mut ds: libc::shmid_ds = std::mem::zeroed();
            assert_eq!(libc::shmctl(mine, libc::IPC_STAT, &mut ds), 0);
            ds.shm_perm.uid = uid;
            assert_eq!(libc::shmctl(mine, libc::IPC_SET, &mut ds), 0);
            (mine, other)
        };
        let n = sweep_ipc(uid);
        let text = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
        let ids = |t: &str| -> Vec<i32> {
            t.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
                .collect()
        };
        let left = ids(&text);
        // SAFETY: removing our own segments (a gone one is EINVAL).
        unsafe {
            libc::shmctl(mine, libc::IPC_RMID, std::ptr::null_mut());
            libc::shmctl(other, libc::IPC_RMID, std::ptr::null_mut());
        }
        assert_eq!(n.unwrap(), 1);
        assert!(!left.contains(&mine) && left.contains(&other), "{left:?}");
    }
}
