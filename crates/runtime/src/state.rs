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
//!   locks/                      flock files (global, domain-NAME, network-NAME)
//!   cache/                      QEMU capability cache
//! ```
//!
//! Every file is written atomically (temporary file, fsync, rename, fsync of
//! the directory) so a crash leaves either the old or the new content.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::lock::{FileLock, LockError, LockMode};

/// Environment variable overriding the state directory.
pub const STATE_DIR_ENV: &str = teamvirt_qemu::dirs::STATE_DIR_ENV;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot determine the state directory: neither XDG_STATE_HOME nor HOME is set; use --state-dir or {STATE_DIR_ENV}")]
    NoDefault,
    #[error("state directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid name '{0}': names must be non-empty, must not start with '.', and must not contain '/' or control characters")]
    BadName(String),
    #[error(transparent)]
    Lock(#[from] LockError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The default state directory: `/var/lib/teamvirt` for root,
/// `$XDG_STATE_HOME/teamvirt` (or `~/.local/state/teamvirt`) otherwise
/// (one rule for every default directory: [`teamvirt_qemu::dirs`]).
pub fn default_root() -> Result<PathBuf, StateError> {
    teamvirt_qemu::dirs::default_state_root().map_err(|_| StateError::NoDefault)
}

/// `--state-dir` if given, else `TEAMVIRT_STATE_DIR`, else [`default_root`].
pub fn resolve_root(explicit: Option<&Path>) -> Result<PathBuf, StateError> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    match std::env::var_os(STATE_DIR_ENV) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => default_root(),
    }
}

/// Names become file names: refuse anything that could escape the directory.
pub fn check_name(name: &str) -> Result<(), StateError> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains('/')
        || name.chars().any(|c| c.is_control())
        || name.len() > 200
    {
        return Err(StateError::BadName(name.to_owned()));
    }
    Ok(())
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
}

impl StateDir {
    /// Open `root`, creating it and its subdirectories with mode 0700.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        let root = if root.is_absolute() {
            root.to_owned()
        } else {
            std::env::current_dir().map_err(io_err(root))?.join(root)
        };
        let sd = StateDir { root };
        // A root that already exists was chosen by the user (`--state-dir
        // /tmp` or `~` must not be chmod'ed); a new one is made 0700. What
        // teamvirt keeps lives in the subdirectories, which are forced 0700.
        if !sd.root.is_dir() {
            make_private_dir(&sd.root)?;
        }
        for d in [
            sd.domains_dir(),
            sd.networks_dir(),
            sd.run_root(),
            sd.locks_dir(),
            sd.cache_dir(),
            sd.log_dir(),
        ] {
            make_private_dir(&d)?;
        }
        Ok(sd)
    }

    /// [`resolve_root`] + [`StateDir::open`].
    pub fn open_default(explicit: Option<&Path>) -> Result<StateDir, StateError> {
        StateDir::open(&resolve_root(explicit)?)
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
    /// Per-domain logs (see [`crate::domlog`]).
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
            crate::domlog::path(self, name),
        ))
    }
    /// Create the domain's run directory (0700) and return its paths.
    pub fn create_run_dir(&self, name: &str) -> Result<RunPaths, StateError> {
        let p = self.run_paths(name)?;
        make_private_dir(&p.dir)?;
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
            if e.path().is_dir() && check_name(&name).is_ok() {
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
    fn domain_lock_path(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("domain-{name}.lock"))
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

/// Create `dir` (and parents) and force mode 0700 on it.
pub fn make_private_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
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
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
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

/// Read a file that may not exist (`None` then).
pub fn read_optional(path: &Path) -> Result<Option<String>, StateError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
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
    fn explicit_root_wins() {
        let r = resolve_root(Some(Path::new("/some/where"))).unwrap();
        assert_eq!(r, PathBuf::from("/some/where"));
    }

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
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("vm-1_ok.x").is_ok());
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
