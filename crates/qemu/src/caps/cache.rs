//! On-disk cache of live probes: one JSON file per binary in the cache
//! directory, valid while the binary's canonical path, size and mtime are
//! unchanged (and the file was written by this cache format and teamvirt
//! version, so a teamvirt upgrade that derives more flags re-probes).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::{CapsError, QemuCaps};

/// 2: probes run as the QEMU user, without root's access to /dev/kvm; an
/// entry of format 1 may list KVM machines such a probe cannot see.
const FORMAT: u32 = 2;

/// Identity of a binary for caching purposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// Canonical (symlink-free, absolute) path.
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

impl CacheKey {
    /// The key of `binary` as it is on disk now.
    pub fn of(binary: &Path) -> Result<CacheKey, CapsError> {
        let io = |source| CapsError::Io {
            path: binary.to_path_buf(),
            source,
        };
        let path = std::fs::canonicalize(binary).map_err(io)?;
        let meta = std::fs::metadata(&path).map_err(io)?;
        let modified = meta.modified().map_err(io)?;
        let mtime_ns = match modified.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        Ok(CacheKey {
            path,
            size: meta.len(),
            mtime_ns,
        })
    }

    /// The cache file for this binary inside `dir`: named after the path
    /// (FNV-1a), so each binary has one entry that a re-probe replaces.
    pub fn file_in(&self, dir: &Path) -> PathBuf {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.path.as_os_str().as_encoded_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let stem = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        dir.join(format!("qemucaps-{stem}-{h:016x}.json"))
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    teamvirt: String,
    key: CacheKey,
    caps: QemuCaps,
}

/// Whether `dir` may hold the cache: a real directory (not a link) of the
/// caller that nobody else can write to. Checking verbs use the cache of
/// whatever state directory they are pointed at; one another user
/// controls is neither read (forged capabilities) nor written.
fn trusted_dir(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(dir)
        .map(|m| m.is_dir() && m.uid() == me && m.mode() & 0o022 == 0)
        .unwrap_or(false)
}

/// The cached caps for `key`, if present and still valid. A corrupt or
/// stale file is not an error: the caller probes again and overwrites it.
pub(crate) fn load(dir: &Path, key: &CacheKey) -> Option<QemuCaps> {
    use std::io::Read;
    if !trusted_dir(dir) {
        return None;
    }
    use std::os::unix::fs::OpenOptionsExt;
    // Only a regular file of the cache itself, never a link planted there.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(key.file_in(dir))
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = Vec::new();
    f.read_to_end(&mut text).ok()?;
    let entry: Entry = serde_json::from_slice(&text).ok()?;
    (entry.format == FORMAT && entry.teamvirt == env!("CARGO_PKG_VERSION") && &entry.key == key)
        .then_some(entry.caps)
}

/// Writes the cache entry atomically (temporary file + rename).
pub(crate) fn store(dir: &Path, key: &CacheKey, caps: &QemuCaps) -> Result<(), CapsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CapsError::Io { path, source }
    };
    // 0700 as the state directory makes its own: a `cache` made here is
    // the one a later `StateDir::open` finds, and refuses if it is not.
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    if !trusted_dir(dir) {
        // Not an error: the probe result is used, just not kept.
        return Ok(());
    }
    let entry = Entry {
        format: FORMAT,
        teamvirt: env!("CARGO_PKG_VERSION").to_string(),
        key: key.clone(),
        caps: caps.clone(),
    };
    let json = serde_json::to_vec_pretty(&entry).map_err(|e| CapsError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let target = key.file_in(dir);
    // A fresh file under a random name, created with O_CREAT|O_EXCL (so
    // never through a link planted in the directory) and mode 0600, then
    // renamed over the entry (rename replaces a link, it does not follow
    // it). A failed write removes the temporary file (on drop).
    let write = || -> std::io::Result<()> {
        let mut f = tempfile::Builder::new()
            .prefix(".qemucaps-")
            .suffix(".tmp")
            .rand_bytes(12)
            .tempfile_in(dir)?;
        f.write_all(&json)?;
        f.as_file().sync_all()?;
        f.persist(&target).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(|source| CapsError::Io {
        path: target.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_invalidation() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("fake-qemu");
        std::fs::write(&bin, b"binary").unwrap();
        let key = CacheKey::of(&bin).unwrap();
        assert!(key.path.is_absolute());
        let caps = QemuCaps::from_flags(&bin, "x86_64", ["kvm"]);
        let cache = dir.path().join("cache");
        assert!(load(&cache, &key).is_none());
        store(&cache, &key, &caps).unwrap();
        assert_eq!(load(&cache, &key), Some(caps.clone()));
        // Made as the state directory makes its own (which refuses any
        // other mode there later).
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        // Any change of size or mtime invalidates.
        let mut other = key.clone();
        other.size += 1;
        assert!(load(&cache, &other).is_none());
        let mut other = key.clone();
        other.mtime_ns += 1;
        assert!(load(&cache, &other).is_none());

        // Corrupt file: treated as absent.
        std::fs::write(key.file_in(&cache), b"{not json").unwrap();
        assert!(load(&cache, &key).is_none());
    }

    /// A link planted at the temporary name the cache once used
    /// (`….json.tmpPID`) or at the entry itself is neither followed nor
    /// written through: the file it points to keeps its content.
    #[test]
    fn planted_links_are_not_written_through() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("fake-qemu");
        std::fs::write(&bin, b"binary").unwrap();
        let key = CacheKey::of(&bin).unwrap();
        let caps = QemuCaps::from_flags(&bin, "x86_64", ["kvm"]);
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let secret = dir.path().join("shadow");
        std::fs::write(&secret, b"root:secret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let target = key.file_in(&cache);
        let old_tmp = target.with_extension(format!("json.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&secret, &old_tmp).unwrap();
        store(&cache, &key, &caps).unwrap();
        assert_eq!(std::fs::read(&secret).unwrap(), b"root:secret\n");
        let meta = std::fs::symlink_metadata(&target).unwrap();
        assert!(meta.is_file(), "the entry is a regular file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(load(&cache, &key), Some(caps.clone()));
        // A link at the entry's own name: replaced, not followed; and not
        // read through either.
        std::fs::remove_file(&target).unwrap();
        std::os::unix::fs::symlink(&secret, &target).unwrap();
        assert!(load(&cache, &key).is_none());
        store(&cache, &key, &caps).unwrap();
        assert_eq!(std::fs::read(&secret).unwrap(), b"root:secret\n");
        assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
        // No temporary file left behind.
        let left: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains("tmp"))
            .collect();
        assert_eq!(left, vec![old_tmp.file_name().unwrap().to_owned()]);
    }

    /// A cache directory others can write to, or a link: neither read
    /// nor written.
    #[test]
    fn untrusted_cache_dirs_are_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("fake-qemu");
        std::fs::write(&bin, b"binary").unwrap();
        let key = CacheKey::of(&bin).unwrap();
        let caps = QemuCaps::from_flags(&bin, "x86_64", ["kvm"]);
        let cache = dir.path().join("cache");
        store(&cache, &key, &caps).unwrap();
        assert_eq!(load(&cache, &key), Some(caps.clone()));
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(load(&cache, &key).is_none(), "read from a shared directory");
        std::fs::remove_file(key.file_in(&cache)).unwrap();
        store(&cache, &key, &caps).unwrap();
        assert!(
            !key.file_in(&cache).exists(),
            "written to a shared directory"
        );
        let elsewhere = dir.path().join("etc");
        std::fs::create_dir(&elsewhere).unwrap();
        let link = dir.path().join("linked");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        store(&link, &key, &caps).unwrap();
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn file_names_differ_per_path() {
        let a = CacheKey {
            path: "/usr/bin/qemu-system-x86_64".into(),
            size: 1,
            mtime_ns: 1,
        };
        let b = CacheKey {
            path: "/opt/bin/qemu-system-x86_64".into(),
            size: 1,
            mtime_ns: 1,
        };
        assert_ne!(a.file_in(Path::new("/c")), b.file_in(Path::new("/c")));
        assert!(a
            .file_in(Path::new("/c"))
            .to_string_lossy()
            .contains("qemu-system-x86_64"));
    }
}
