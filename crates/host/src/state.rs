//! The per-host state directory and its layout:
//!
//! ```text
//! ROOT/                         0700 when teamvirt creates it
//!   domains/NAME.xml            defined domains (canonical XML)
//!   networks/NAME.xml           defined networks (canonical XML)
//!   networks/NAME.state.json    network runtime state: VF allocations, lab mode
//!   run/NAME/                   one per running domain (0700)
//!     live.xml pid qmp.sock serial.log state.json
//!   log/NAME.log                per-domain log: lifecycle, QEMU argv and stderr
//!   locks/                      flock files (global, domain-NAME, stop-NAME, network-NAME)
//!   cache/                      QEMU capability cache
//! ```
//!
//! Every file is written atomically (temporary file, fsync, rename, fsync of
//! the directory) so a crash leaves either the old or the new content.
//!
//! The directory is a trust boundary (see [`crate::safefs`]): the root and
//! every directory in it must be owned by the caller and writable by nobody
//! else, and files are opened without following links.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::lock::{FileLock, LockError, LockMode};
use crate::safefs::{self, Access, OpenError};

/// Environment variable overriding the state directory (the same name as
/// `teamvirt_qemu::dirs::STATE_DIR_ENV`, which picks the default root; a
/// runtime test checks they agree).
pub const STATE_DIR_ENV: &str = "TEAMVIRT_STATE_DIR";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot determine the state directory: neither XDG_STATE_HOME nor HOME is set; use --state-dir or {STATE_DIR_ENV}")]
    NoDefault,
    #[error("state directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid name '{}': names must be non-empty, must not start with '.', and must not contain '/', control characters or bidirectional overrides", crate::escape::escape_controls(.0))]
    BadName(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Untrusted(#[from] crate::safefs::Untrusted),
}

impl From<(&Path, OpenError)> for StateError {
    fn from((path, e): (&Path, OpenError)) -> StateError {
        match e {
            OpenError::Io(source) => StateError::Io {
                path: path.to_owned(),
                source,
            },
            OpenError::Untrusted(u) => StateError::Untrusted(u),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Names become file names: refuse anything that could escape the directory.
pub fn check_name(name: &str) -> Result<(), StateError> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || name.chars().any(|c| c.is_control() || is_bidi_control(c))
        || name.len() > 200
    {
        return Err(StateError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Characters that reorder the text after them on a terminal (bidirectional
/// embeddings, overrides, isolates and marks): a name `vm\u{202e}lpb.exe`
/// would show in `list` as something else than it is.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
    )
}

/// Files belonging to one running domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    pub dir: PathBuf,
    pub live_xml: PathBuf,
    pub pid: PathBuf,
    pub qmp_sock: PathBuf,
    pub serial_log: PathBuf,
    /// The domain's log (`log/NAME.log`, outside the run dir: it outlives
    /// the run): QEMU's stderr goes there.
    pub qemu_log: PathBuf,
    pub state_json: PathBuf,
}

impl RunPaths {
    fn new(dir: PathBuf, qemu_log: PathBuf) -> RunPaths {
        RunPaths {
            live_xml: dir.join("live.xml"),
            pid: dir.join("pid"),
            qmp_sock: dir.join("qmp.sock"),
            serial_log: dir.join("serial.log"),
            qemu_log,
            state_json: dir.join("state.json"),
            dir,
        }
    }
}

/// An opened (created if needed) state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    /// The root as opened and checked by [`StateDir::open`].
    dir: std::sync::Arc<File>,
}

/// The subdirectories of the root.
const SUBDIRS: [&str; 6] = ["domains", "networks", "run", "locks", "cache", "log"];

impl StateDir {
    /// Open `root`, creating it and its subdirectories with mode 0700.
    /// Refuses a root or subdirectory that is a link, belongs to someone
    /// else or is writable by others (see [`crate::safefs`]).
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        let root = if root.is_absolute() {
            root.to_owned()
        } else {
            std::env::current_dir().map_err(io_err(root))?.join(root)
        };
        // A root that already exists was chosen by the user (`--state-dir
        // /tmp/x` must not be chmod'ed) but must be safe as it is; a new one
        // is made 0700. What teamvirt keeps lives in the subdirectories,
        // which are forced 0700.
        if fs::symlink_metadata(&root).is_err() {
            if let Some(parent) = root.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(io_err(parent))?;
            }
            safefs::ensure_private_dir(&root).map_err(io_err(&root))??;
        }
        // A root that is a link the user chose (`/var/lib/teamvirt ->
        // /data/teamvirt`) is resolved once; the checks apply to its target,
        // and to the link and the directories above it (whoever may swap
        // the link chooses the state directory).
        let given = root;
        let root = fs::canonicalize(&given).map_err(io_err(&given))?;
        if root != given {
            let m = fs::symlink_metadata(&given).map_err(io_err(&given))?;
            if m.file_type().is_symlink() && m.uid() != 0 && m.uid() != safefs::euid() {
                return Err(safefs::Untrusted {
                    kind: "state directory",
                    path: given.clone(),
                    problem: format!("is a symbolic link owned by uid {}", m.uid()),
                    fix: "use a --state-dir that belongs to root or to the caller".into(),
                }
                .into());
            }
            for a in given.ancestors().skip(1) {
                let m = fs::symlink_metadata(a).map_err(io_err(a))?;
                if let Some(u) = safefs::ancestor_problem(a, &m) {
                    return Err(u.into());
                }
            }
        }
        // From here on by descriptor: the root opened from `/` without
        // following links and checked with every directory above it on
        // what was opened, its subdirectories made and opened relative
        // to it.
        let dir = safefs::open_root_checked(&root).map_err(io_err(&root))??;
        // All that exist are checked before any is made: a directory that
        // is not teamvirt's (`--state-dir` naming a link to `/var`, whose
        // `log` and `cache` are 0755) is refused untouched, with nothing
        // created in it.
        for d in SUBDIRS {
            let path = root.join(d);
            if let Some(u) = safefs::existing_subdir_problem_at(&dir, &path, d.as_ref())
                .map_err(io_err(&path))?
            {
                return Err(u.into());
            }
        }
        for d in SUBDIRS {
            let path = root.join(d);
            safefs::ensure_private_dir_at(&dir, &path, d.as_ref()).map_err(io_err(&path))??;
        }
        // Everything else names the state by path: it must lead to the
        // directory just checked (nobody else can change that now).
        let now = fs::metadata(&root).map_err(io_err(&root))?;
        let opened = dir.metadata().map_err(io_err(&root))?;
        if (now.dev(), now.ino()) != (opened.dev(), opened.ino()) {
            return Err(safefs::Untrusted {
                kind: "state directory",
                path: root,
                problem: "was replaced by another directory while teamvirt opened it".into(),
                fix: "use a --state-dir nobody else can write to".into(),
            }
            .into());
        }
        Ok(StateDir {
            root,
            dir: std::sync::Arc::new(dir),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn domains_dir(&self) -> PathBuf {
        self.root.join("domains")
    }
    pub fn networks_dir(&self) -> PathBuf {
        self.root.join("networks")
    }
    pub fn run_root(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }
    /// Per-domain logs (see the `domlog` module).
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }
    /// Capability cache directory (for `QemuCaps::probe`).
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    pub fn domain_xml(&self, name: &str) -> Result<PathBuf, StateError> {
        check_name(name)?;
        Ok(self.domains_dir().join(format!("{name}.xml")))
    }
    pub fn network_xml(&self, name: &str) -> Result<PathBuf, StateError> {
        check_name(name)?;
        Ok(self.networks_dir().join(format!("{name}.xml")))
    }
    pub fn network_state(&self, name: &str) -> Result<PathBuf, StateError> {
        check_name(name)?;
        Ok(self.networks_dir().join(format!("{name}.state.json")))
    }
    /// Paths of a running domain's files (the directory is not created).
    pub fn run_paths(&self, name: &str) -> Result<RunPaths, StateError> {
        check_name(name)?;
        Ok(RunPaths::new(
            self.run_root().join(name),
            self.domain_log(name),
        ))
    }
    /// `log/NAME.log`: the domain's log (see `domlog`), kept after it stops.
    /// The name is checked by the caller.
    pub fn domain_log(&self, name: &str) -> PathBuf {
        self.log_dir().join(format!("{name}.log"))
    }
    /// Create the domain's run directory (0700) and return its paths.
    pub fn create_run_dir(&self, name: &str) -> Result<RunPaths, StateError> {
        let p = self.run_paths(name)?;
        // Relative to the opened root: `run` itself is not followed if it
        // became a link since the root was opened.
        let run_root = self.run_root();
        let run = safefs::open_dir_at(&self.dir, "run".as_ref()).map_err(io_err(&run_root))?;
        safefs::ensure_private_dir_at(&run, &p.dir, name.as_ref()).map_err(io_err(&p.dir))??;
        Ok(p)
    }
    /// The paths of a domain's run directory after checking that the
    /// directory, if it exists, can be trusted (see [`crate::safefs`]).
    pub fn checked_run_paths(&self, name: &str) -> Result<RunPaths, StateError> {
        let p = self.run_paths(name)?;
        match safefs::check_dir(&p.dir) {
            Ok(r) => r?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p.dir)(e)),
        }
        Ok(p)
    }

    /// Names of defined domains (sorted).
    pub fn defined_domains(&self) -> Result<Vec<String>, StateError> {
        list_suffix(&self.domains_dir(), ".xml")
    }
    /// Names of defined networks (sorted).
    pub fn defined_networks(&self) -> Result<Vec<String>, StateError> {
        list_suffix(&self.networks_dir(), ".xml")
    }
    /// Names with a run directory (running, starting, or dead but not yet reaped).
    pub fn run_entries(&self) -> Result<Vec<String>, StateError> {
        let dir = self.run_root();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            // Not followed: a link here is reported when the domain is used.
            let t = e.file_type().map_err(io_err(&dir))?;
            if (t.is_dir() || t.is_symlink()) && check_name(&name).is_ok() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Exclusive lock over the set of definitions (define/undefine).
    pub fn lock_global(&self) -> Result<FileLock, StateError> {
        Ok(FileLock::acquire(
            &self.locks_dir().join("global.lock"),
            LockMode::Exclusive,
        )?)
    }
    /// Lock serializing lifecycle operations on one domain.
    pub fn lock_domain(&self, name: &str) -> Result<FileLock, StateError> {
        check_name(name)?;
        Ok(FileLock::acquire(
            &self.domain_lock_path(name),
            LockMode::Exclusive,
        )?)
    }
    /// Non-blocking [`StateDir::lock_domain`]: `None` while another process
    /// holds it (e.g. a `start` in progress).
    pub fn try_lock_domain(&self, name: &str) -> Result<Option<FileLock>, StateError> {
        check_name(name)?;
        Ok(FileLock::try_acquire(
            &self.domain_lock_path(name),
            LockMode::Exclusive,
        )?)
    }
    /// Who holds the domain lock, if it said so (pid, what it does).
    pub fn domain_lock_holder(&self, name: &str) -> Option<(i32, String)> {
        check_name(name).ok()?;
        crate::lock::holder(&self.domain_lock_path(name))
    }
    fn domain_lock_path(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("domain-{name}.lock"))
    }
    /// Held (shared) by a `destroy` for as long as it runs once it found
    /// the domain lock taken: a `start` waiting for failover under that
    /// lock sees it ([`StateDir::stop_requested`]) and gives way. A lock,
    /// not a file, so a killed `destroy` leaves no stale request.
    pub fn request_stop(&self, name: &str) -> Result<FileLock, StateError> {
        check_name(name)?;
        Ok(FileLock::acquire(
            &self.stop_request_path(name),
            LockMode::Shared,
        )?)
    }
    /// Whether a `destroy` holds [`StateDir::request_stop`] for `name`.
    pub fn stop_requested(&self, name: &str) -> Result<bool, StateError> {
        check_name(name)?;
        Ok(FileLock::try_acquire(&self.stop_request_path(name), LockMode::Exclusive)?.is_none())
    }
    /// Block until no `destroy` holds [`StateDir::request_stop`] for
    /// `name` (the returned lock keeps new ones out until dropped).
    pub fn wait_stop_requests(&self, name: &str) -> Result<FileLock, StateError> {
        check_name(name)?;
        Ok(FileLock::acquire(
            &self.stop_request_path(name),
            LockMode::Exclusive,
        )?)
    }
    fn stop_request_path(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("stop-{name}.lock"))
    }
    /// Lock of a network's VF pool (held only while allocating/releasing).
    pub fn lock_network(&self, name: &str) -> Result<FileLock, StateError> {
        check_name(name)?;
        let p = self.locks_dir().join(format!("network-{name}.lock"));
        Ok(FileLock::acquire(&p, LockMode::Exclusive)?)
    }
}

fn list_suffix(dir: &Path, suffix: &str) -> Result<Vec<String>, StateError> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let f = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = f.strip_suffix(suffix) {
            // Skip `NAME.state.json`-like and temporary files.
            if !n.contains(".tmp") && check_name(n).is_ok() && !f.ends_with(".state.json") {
                out.push(n.to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Create `dir` (its parent must exist) with mode 0700, or check an
/// existing one (a real directory of ours, writable by nobody else) and
/// force 0700 on it.
pub fn make_private_dir(dir: &Path) -> Result<(), StateError> {
    safefs::ensure_private_dir(dir).map_err(io_err(dir))??;
    Ok(())
}

/// Write `data` to `path` atomically with the given mode: write a temporary
/// file beside it, fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fname = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and call, so concurrent writers never share a temp file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{fname}.tmp{}.{seq}", std::process::id()));
    let res = (|| -> io::Result<()> {
        // A fresh file: never an existing one nor a link planted there.
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
        };
        let mut f = match open() {
            // Left by a crashed process that had our pid: unlink (which
            // does not follow links) and create anew.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                open()?
            }
            r => r?,
        };
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(io_err(path))
}

/// Read a file of the state directory that may not exist (`None` then).
/// A link, FIFO or other non-regular file is refused, not followed.
pub fn read_optional(path: &Path) -> Result<Option<String>, StateError> {
    let mut f = match safefs::open_file(path, Access::Read) {
        Ok(f) => f,
        Err(OpenError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err((path, e).into()),
    };
    let mut s = String::new();
    io::Read::read_to_string(&mut f, &mut s).map_err(io_err(path))?;
    Ok(Some(s))
}

/// Remove a file; a missing file is fine.
pub fn remove_optional(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn layout_is_private() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("state");
        let sd = StateDir::open(&root).unwrap();
        for d in [
            sd.root().to_owned(),
            sd.domains_dir(),
            sd.networks_dir(),
            sd.run_root(),
            sd.cache_dir(),
        ] {
            assert_eq!(
                fs::metadata(&d).unwrap().mode() & 0o777,
                0o700,
                "{}",
                d.display()
            );
        }
        let rp = sd.create_run_dir("vm1").unwrap();
        assert_eq!(fs::metadata(&rp.dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(rp.qmp_sock, root.join("run/vm1/qmp.sock"));
    }

    #[test]
    fn existing_root_keeps_its_mode() {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        assert_eq!(fs::metadata(t.path()).unwrap().mode() & 0o777, 0o755);
        for d in [sd.domains_dir(), sd.networks_dir(), sd.run_root()] {
            assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        }
    }

    #[test]
    fn names_cannot_escape() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "a\nb",
            "a\u{1b}[2Jb",
            "a\u{9b}b",
            "vm\u{202e}exe.txt",
            "a\u{2067}b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("vm-1_ok.x").is_ok());
        let e = check_name("vm\u{202e}exe.txt").unwrap_err().to_string();
        assert!(
            e.contains("'vm\\u{202e}exe.txt'") && !e.contains('\u{202e}'),
            "{e}"
        );
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        assert!(sd.domain_xml("../etc").is_err());
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
    }

    #[test]
    fn lists_definitions_only() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        write_atomic(&sd.network_xml("pool").unwrap(), b"<network/>", 0o600).unwrap();
        write_atomic(&sd.network_state("pool").unwrap(), b"{}", 0o600).unwrap();
        write_atomic(&sd.domain_xml("b").unwrap(), b"<domain/>", 0o600).unwrap();
        write_atomic(&sd.domain_xml("a").unwrap(), b"<domain/>", 0o600).unwrap();
        assert_eq!(sd.defined_networks().unwrap(), vec!["pool"]);
        assert_eq!(sd.defined_domains().unwrap(), vec!["a", "b"]);
    }
}
