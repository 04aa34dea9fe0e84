//! Giving back what QEMU was lent: owners, groups and modes of what was
//! chowned, to the same inode only; what cannot be given back yet is kept
//! in `run/dac-pending.json` and retried (see [`super`]).

use super::*;

/// Give back what domain `name` was lent (its QEMU is gone): owners of the
/// recorded files, unless another domain of this state directory still
/// holds them; the master key is removed. Returns what could not be done.
pub fn release(sd: &StateDir, name: &str) -> Result<Vec<String>, DacError> {
    let _l = dac_lock(sd)?;
    let dir = sd.run_paths(name)?.dir;
    let rec = load(&dir)?;
    let problems = give_back_all(sd, name, rec.labels)?;
    remove_optional(&dir.join(RECORD))?;
    remove_optional(&dir.join(MASTER_KEY))?;
    retry_pending(sd);
    Ok(problems)
}

/// Give back `labels` (of domain `name`, whose record is about to go)
/// unless another running domain still holds them; what cannot be given
/// back is added to the pending list first (so it is never lost) and
/// reported.
pub(super) fn give_back_all(
    sd: &StateDir,
    name: &str,
    labels: Vec<Label>,
) -> Result<Vec<String>, DacError> {
    let others = other_labels(sd, name);
    let mut problems = Vec::new();
    let mut failed = Vec::new();
    for l in labels {
        if others.iter().any(|o| (o.dev, o.ino) == (l.dev, l.ino)) {
            continue;
        }
        if let Err(e) = give_back(&l) {
            problems.push(format!(
                "{} not restored: {e}; kept in {} and retried by the next start or stop",
                l.describe(),
                sd.run_root().join(PENDING).display()
            ));
            failed.push(l);
        }
    }
    if !failed.is_empty() {
        let mut pending = load_at(&sd.run_root().join(PENDING))?;
        for l in failed {
            if !pending
                .labels
                .iter()
                .any(|p| (p.dev, p.ino) == (l.dev, l.ino))
            {
                pending.labels.push(l);
            }
        }
        save_at(&sd.run_root().join(PENDING), &pending)?;
    }
    Ok(problems)
}

/// Retry the pending give-backs (under the dac lock): each that completes
/// (or whose object is gone for good) leaves the list; one that a running
/// domain holds again waits for it.
pub fn retry_pending(sd: &StateDir) {
    let path = sd.run_root().join(PENDING);
    let Ok(mut pending) = load_at(&path) else {
        return;
    };
    if pending.labels.is_empty() {
        return;
    }
    let held = other_labels(sd, "");
    let before = pending.labels.len();
    pending.labels.retain(|l| {
        if held.iter().any(|o| (o.dev, o.ino) == (l.dev, l.ino)) {
            return true;
        }
        match give_back(l) {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!("{} still not restored: {e}", l.describe());
                true
            }
        }
    });
    if pending.labels.len() != before {
        let r = if pending.labels.is_empty() {
            remove_optional(&path)
        } else {
            write_record(&path, &pending)
        };
        if let Err(e) = r {
            tracing::warn!("cannot update {}: {e}", path.display());
        }
    }
}

/// The uids that objects whose give-back is pending in `sd` are still lent
/// to: the one recorded, and the object's owner now if the path still
/// names it (see `crate::dynuid`: such a uid is not handed out again).
pub fn pending_holders(sd: &StateDir) -> std::collections::BTreeSet<u32> {
    pending_holders_at(&sd.run_root())
}

/// [`pending_holders`] of the state directory whose run root is `run`.
pub fn pending_holders_at(run: &Path) -> std::collections::BTreeSet<u32> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(pending) = load_at(&run.join(PENDING)) else {
        return out;
    };
    for l in pending.labels {
        out.extend(l.lent_to);
        if let Ok(m) = std::fs::symlink_metadata(&l.path) {
            if (m.dev(), m.ino()) == (l.dev, l.ino) {
                out.insert(m.uid());
            }
        }
    }
    out
}

impl Label {
    fn describe(&self) -> String {
        let mode = self
            .mode
            .map(|m| format!(" mode {m:04o}"))
            .unwrap_or_default();
        format!(
            "owner {}:{}{mode} of {}",
            self.uid,
            self.gid,
            self.path.display()
        )
    }
}

/// Hotplug: give back the VFIO group of `host` (a VF about to leave
/// vfio-pci) lent to domain `name`, and forget its label: the node goes
/// with the group, and the same VF plugged again is a new node.
pub fn give_back_vfio(sd: &StateDir, name: &str, host: &str) -> Result<Vec<String>, DacError> {
    give_back_vfio_in(sd, name, host, &HostRoots::default())
}

/// [`give_back_vfio`] for a given host tree.
pub fn give_back_vfio_in(
    sd: &StateDir,
    name: &str,
    host: &str,
    roots: &HostRoots,
) -> Result<Vec<String>, DacError> {
    let Some(group) = vfio_group(roots, host) else {
        return Ok(Vec::new());
    };
    let _l = dac_lock(sd)?;
    let dir = sd.run_paths(name)?.dir;
    let mut rec = load(&dir)?;
    let (gone, kept): (Vec<Label>, Vec<Label>) =
        rec.labels.into_iter().partition(|l| l.path == group);
    rec.labels = kept;
    let problems = give_back_all(sd, name, gone)?;
    save(&dir, &rec)?;
    Ok(problems)
}

pub(super) fn load(dir: &Path) -> Result<Record, DacError> {
    load_at(&dir.join(RECORD))
}

pub(super) fn load_at(path: &Path) -> Result<Record, DacError> {
    Ok(read_optional(path)?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default())
}

pub fn save(dir: &Path, rec: &Record) -> Result<(), DacError> {
    save_at(&dir.join(RECORD), rec)
}

pub(super) fn save_at(path: &Path, rec: &Record) -> Result<(), DacError> {
    Ok(write_record(path, rec)?)
}

pub(super) fn write_record(path: &Path, rec: &Record) -> Result<(), StateError> {
    let json = serde_json::to_string_pretty(rec).expect("record serializes");
    write_atomic(path, json.as_bytes(), 0o600)
}

/// Labels recorded by the other domains of `sd`.
pub(super) fn other_labels(sd: &StateDir, name: &str) -> Vec<Label> {
    let mut out = Vec::new();
    for other in sd.run_entries().unwrap_or_default() {
        if other == name {
            continue;
        }
        if let Ok(p) = sd.run_paths(&other) {
            if let Ok(r) = load(&p.dir) {
                out.extend(r.labels);
            }
        }
    }
    out
}

/// `.../vfio/N`: a VFIO group device node (see [`vfio_group`]).
pub(super) fn is_vfio_group_node(path: &Path) -> bool {
    let parent_is_vfio = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "vfio");
    let numeric = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    parent_is_vfio && numeric
}

/// Give a lent object back: done, or gone for good (a VFIO group node
/// goes with its group when the VF leaves vfio-pci, and a node made again
/// is a new one), or an error (kept pending by the caller).
pub(super) fn give_back(l: &Label) -> io::Result<()> {
    let vfio = is_vfio_group_node(&l.path);
    match restore(l) {
        Ok(true) => Ok(()),
        Ok(false) if vfio => Ok(()),
        Ok(false) => Err(io::Error::other(
            "it was replaced by another file (the lent one is given back when it is there again)",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound && vfio => Ok(()),
        Err(e) => Err(e),
    }
}

/// Give the labeled object its owner, group and mode back if the path
/// still names it (same device and inode, the path itself not followed):
/// `Ok(false)` when it names another file.
pub(super) fn restore(l: &Label) -> io::Result<bool> {
    // O_PATH: no side effect of opening (a VFIO group, a FIFO).
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(&l.path)?;
    let m = f.metadata()?;
    if (m.dev(), m.ino()) != (l.dev, l.ino) {
        return Ok(false);
    }
    chown_fd(&f, l.uid, l.gid)?;
    // After the chown (which may clear set-id bits), as QEMU may have
    // chmod'ed it while it was its own.
    if let Some(mode) = l.mode {
        if m.mode() & 0o7777 != mode || m.mode() & 0o6000 != 0 {
            chmod_fd(&f, mode)?;
        }
    }
    Ok(true)
}

/// chmod through a descriptor, `O_PATH` ones included (their
/// `/proc/self/fd` link reaches the inode; fchmod refuses them).
pub(super) fn chmod_fd(f: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        format!("/proc/self/fd/{}", f.as_raw_fd()),
        std::fs::Permissions::from_mode(mode),
    )
}
