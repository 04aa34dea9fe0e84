//! flock-based advisory locks.
//!
//! Advisory file locks (`flock(2)`): held for the lifetime of a [`FileLock`],
//! released by the kernel when the holder dies, so a crashed `teamvirt`
//! never leaves a stale lock behind.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::safefs::{open_file, Access, OpenError};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open lock file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Untrusted(#[from] crate::safefs::Untrusted),
}

/// Shared (readers) or exclusive (writers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A held `flock` on a file; dropping it unlocks.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Block until the lock is acquired.
    pub fn acquire(path: &Path, mode: LockMode) -> Result<FileLock, LockError> {
        Self::take(path, mode, true).map(|l| l.expect("blocking lock always returns a lock"))
    }

    /// Take the lock only if nobody holds a conflicting one (`None` otherwise).
    pub fn try_acquire(path: &Path, mode: LockMode) -> Result<Option<FileLock>, LockError> {
        Self::take(path, mode, false)
    }

    fn take(path: &Path, mode: LockMode, block: bool) -> Result<Option<FileLock>, LockError> {
        // Never through a link (`locks/x.lock -> /etc/shadow`) nor a FIFO.
        let file = match open_file(path, Access::ReadWriteCreate(0o600)) {
            Ok(f) => f,
            Err(OpenError::Untrusted(u)) => return Err(u.into()),
            Err(OpenError::Io(source)) => {
                return Err(LockError::Open {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let mut op = match mode {
            LockMode::Shared => libc::LOCK_SH,
            LockMode::Exclusive => libc::LOCK_EX,
        };
        // Blocking takes are tried without blocking first, so a wait shows in
        // the trace (who waits for what is the first question when stuck).
        op |= libc::LOCK_NB;
        let mut waited: Option<std::time::Instant> = None;
        loop {
            // SAFETY: flock on a valid, owned descriptor.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                if let Some(t) = waited {
                    tracing::debug!(lock = %path.display(), waited_ms = t.elapsed().as_millis() as u64, "lock acquired");
                }
                return Ok(Some(FileLock {
                    file,
                    path: path.to_owned(),
                }));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if !block => return Ok(None),
                Some(libc::EWOULDBLOCK) => {
                    tracing::debug!(lock = %path.display(), "waiting for lock");
                    waited = Some(std::time::Instant::now());
                    op &= !libc::LOCK_NB;
                }
                _ => {
                    return Err(LockError::Lock {
                        path: path.to_owned(),
                        source: err,
                    })
                }
            }
        }
    }

    /// Say who holds the lock (`PID WHAT` in the file), so that a command
    /// waiting for it can tell the user what it waits for.
    pub fn note_holder(&self, what: &str) {
        use std::os::unix::fs::FileExt;
        let line = format!("{} {what}\n", std::process::id());
        if self.file.set_len(0).is_ok() {
            let _ = self.file.write_at(line.as_bytes(), 0);
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying file (e.g. to keep it open across a fork).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Who noted holding the lock at `path` ([`FileLock::note_holder`]), if
/// that process still runs: its pid and what it does.
pub fn holder(path: &Path) -> Option<(i32, String)> {
    let mut f = open_file(path, Access::Read).ok()?;
    let mut s = String::new();
    io::Read::read_to_string(&mut io::Read::take(&mut f, 4096), &mut s).ok()?;
    let (pid, what) = s.trim().split_once(' ')?;
    let pid: i32 = pid.parse().ok()?;
    crate::process::ProcId::of(pid)?;
    Some((pid, what.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_releases_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let a = FileLock::acquire(&p, LockMode::Exclusive).unwrap();
        assert!(FileLock::try_acquire(&p, LockMode::Exclusive)
            .unwrap()
            .is_none());
        assert!(FileLock::try_acquire(&p, LockMode::Shared)
            .unwrap()
            .is_none());
        drop(a);
        assert!(FileLock::try_acquire(&p, LockMode::Exclusive)
            .unwrap()
            .is_some());
    }

    #[test]
    fn shared_locks_coexist() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let _a = FileLock::acquire(&p, LockMode::Shared).unwrap();
        let b = FileLock::try_acquire(&p, LockMode::Shared).unwrap();
        assert!(b.is_some());
        assert!(FileLock::try_acquire(&p, LockMode::Exclusive)
            .unwrap()
            .is_none());
    }
}
