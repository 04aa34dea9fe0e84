//! One uid/gid per running VM (systemd's `DynamicUser`, for QEMU).
//!
//! libvirt runs every VM as the same `qemu` user and relies on SELinux or
//! AppArmor labels to keep one QEMU out of another's `/proc/PID/mem` and
//! `/proc/PID/fd/*` (its master key, kernel, guest RAM). teamvirt gives
//! each running VM a uid and gid of its own instead, so plain DAC and the
//! kernel's ptrace-access rules separate them.
//!
//! The ids come from a reserved range, `TEAMVIRT_QEMU_UID_RANGE=FIRST-LAST`
//! (default `DEFAULT_RANGE`, 60578-61183: the block systemd documents as
//! unused, below its own DynamicUser range 61184-65519, so the two never
//! hand out the same id). uid and gid are the same number. A candidate is
//! taken only when no user and no group of the system databases has it
//! (NSS, so also systemd's dynamic users), no running process has it as
//! any of its uids or gids, and no run directory of the state directory
//! records it (a domain whose QEMU died keeps its id until its cleanup has
//! given back what was lent to it). Allocation holds a host-wide lock
//! (`HOST_LOCK`, several state directories share the host's ids) until
//! QEMU runs with the id (`Allocation` is dropped after the spawn).
//!
//! The allocation is recorded in `run/NAME/qemu-uid.json` (and the run
//! record's `qemu_id`) and freed with the run directory's content
//! (`run::forget`: stop, destroy, a QEMU found dead, a start that
//! failed). A migration destination allocates its own id.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lock::{FileLock, LockMode};
use crate::privdrop::Identity;
use crate::state::{read_optional, remove_optional, write_atomic, StateDir, StateError};

/// Environment variable choosing the range (`FIRST-LAST`, inclusive).
pub const RANGE_ENV: &str = "TEAMVIRT_QEMU_UID_RANGE";
/// The default range (inclusive).
pub const DEFAULT_RANGE: (u32, u32) = (60578, 61183);
/// Serializes allocations of every state directory of the host.
pub const HOST_LOCK: &str = "/run/teamvirt-dynuid.lock";
/// The allocation record in a domain's run directory.
pub const RECORD: &str = "qemu-uid.json";
/// At most this many ids in a range (each allocation scans it).
const MAX_RANGE: u32 = 1 << 20;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum DynUidError {
    #[error("invalid {RANGE_ENV} '{0}': expected FIRST-LAST, 1 <= FIRST <= LAST < 2147483647, at most 1048576 ids")]
    Range(String),
    #[error("no free QEMU uid left in {first}-{last} ({RANGE_ENV}): every id is a user or group of the system, used by a process, or held by a domain")]
    Exhausted { first: u32, last: u32 },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot lock {HOST_LOCK}: {0}")]
    Lock(#[from] crate::lock::LockError),
    #[error("cannot read the running processes' ids in /proc: {0}")]
    Proc(#[source] io::Error),
}

/// What a run directory records about its QEMU's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuIds {
    pub uid: u32,
    pub gid: u32,
    /// Allocated from the range (freed at stop), not a configured user.
    #[serde(default)]
    pub dynamic: bool,
}

/// An id allocated for a start; keep it until QEMU has been spawned with
/// it (the host lock is held so long).
#[derive(Debug)]
pub struct Allocation {
    pub id: Identity,
    _host: FileLock,
}

/// The configured range.
pub fn range() -> Result<(u32, u32), DynUidError> {
    match std::env::var(RANGE_ENV) {
        Ok(s) if !s.is_empty() => parse_range(&s),
        _ => Ok(DEFAULT_RANGE),
    }
}

fn parse_range(s: &str) -> Result<(u32, u32), DynUidError> {
    let bad = || DynUidError::Range(s.to_owned());
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    // 2^31 and above trip signedness bugs; 0 is root.
    if a == 0 || a > b || b >= i32::MAX as u32 || b - a >= MAX_RANGE {
        return Err(bad());
    }
    Ok((a, b))
}

/// The identity QEMU gets for a dynamic id: that uid and gid, no other
/// group (the KVM device's group is added when needed, see
/// `dac::kvm_access`).
pub fn identity(uid: u32, gid: u32) -> Identity {
    Identity {
        name: format!("dynamic uid {uid}"),
        uid,
        gid,
        groups: vec![gid],
        switch: true,
    }
}

fn record_path(sd: &StateDir, name: &str) -> Result<PathBuf, StateError> {
    Ok(sd.run_paths(name)?.dir.join(RECORD))
}

/// The ids recorded for domain `name` (its allocation), if any.
pub fn recorded(sd: &StateDir, name: &str) -> Option<QemuIds> {
    let text = read_optional(&record_path(sd, name).ok()?).ok()??;
    serde_json::from_str(&text).ok()
}

/// Free domain `name`'s id: its record goes (the run directory is the
/// trusted one, the caller checked it).
pub fn free(sd: &StateDir, name: &str) -> Result<(), StateError> {
    remove_optional(&record_path(sd, name)?)
}

/// Allocate an id for domain `name` (its run directory exists) and record
/// it.
pub fn allocate(sd: &StateDir, name: &str) -> Result<Allocation, DynUidError> {
    let (first, last) = range()?;
    let host = FileLock::acquire(Path::new(HOST_LOCK), LockMode::Exclusive)?;
    let mut held = std::collections::BTreeSet::new();
    for other in sd.run_entries()? {
        if other == name {
            continue;
        }
        if let Some(ids) = recorded(sd, &other) {
            held.insert(ids.uid);
            held.insert(ids.gid);
        }
    }
    let procs = process_ids().map_err(DynUidError::Proc)?;
    let free = (first..=last).find(|&n| {
        !held.contains(&n)
            && !procs.contains(&n)
            // A failed look-up counts as taken.
            && matches!(crate::privdrop::user_exists(n), Ok(false))
            && matches!(crate::privdrop::group_exists(n), Ok(false))
    });
    let Some(n) = free else {
        return Err(DynUidError::Exhausted { first, last });
    };
    let ids = QemuIds {
        uid: n,
        gid: n,
        dynamic: true,
    };
    let json = serde_json::to_string(&ids).expect("ids serialize");
    write_atomic(&record_path(sd, name)?, json.as_bytes(), 0o600)?;
    Ok(Allocation {
        id: identity(n, n),
        _host: host,
    })
}

/// Every uid and gid (real, effective, saved, filesystem) of every
/// running process.
fn process_ids() -> io::Result<std::collections::BTreeSet<u32>> {
    let mut out = std::collections::BTreeSet::new();
    for e in std::fs::read_dir("/proc")?.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        // Gone in between: nothing to count.
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        for l in status.lines() {
            if let Some(v) = l.strip_prefix("Uid:").or_else(|| l.strip_prefix("Gid:")) {
                out.extend(v.split_whitespace().filter_map(|n| n.parse::<u32>().ok()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("60578-61183").unwrap(), (60578, 61183));
        assert_eq!(parse_range("100-100").unwrap(), (100, 100));
        for bad in ["", "5", "0-10", "10-5", "1-2147483647", "a-b", "1-2000000"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_ids_are_in_use() {
        let ids = process_ids().unwrap();
        // SAFETY: no preconditions.
        let (u, g) = unsafe { (libc::getuid(), libc::getgid()) };
        assert!(ids.contains(&u) && ids.contains(&g), "{ids:?}");
    }

    /// Two domains of a state directory get different ids; a freed id is
    /// handed out again; an id a process runs as is skipped.
    #[test]
    fn allocations_are_distinct_and_freed() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root (the host lock is in /run)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        sd.create_run_dir("a").unwrap();
        sd.create_run_dir("b").unwrap();
        let a = allocate(&sd, "a").unwrap();
        let (ua, ga) = (a.id.uid, a.id.gid);
        drop(a);
        let b = allocate(&sd, "b").unwrap();
        assert_ne!(b.id.uid, ua);
        assert_eq!(recorded(&sd, "a").unwrap().uid, ua);
        assert_eq!((ua, ga), (recorded(&sd, "a").unwrap().uid, ga));
        let ub = b.id.uid;
        drop(b);
        free(&sd, "a").unwrap();
        assert!(recorded(&sd, "a").is_none());
        // "a" again: its old id (or another free one), never b's.
        let a2 = allocate(&sd, "a").unwrap();
        assert_ne!(a2.id.uid, ub);
        drop(a2);
        free(&sd, "a").unwrap();
        free(&sd, "b").unwrap();
    }
}
