//! Is a recorded pid really the domain's QEMU (checked in /proc)?
//!
//! Is the process a run record names really this domain's QEMU? Before
//! any signal goes to a recorded pid, [`verify`] checks it against the
//! emulator of the domain's *definition* (never the record's own
//! `emulator` field) and the domain's QMP socket, through
//! [`teamvirt_host::procmatch`]. A forged or damaged record then cannot
//! make teamvirt kill an unrelated process. [`find_qemus`] finds a
//! domain's QEMU without a record (for `destroy --force` when the record
//! is damaged).

use std::path::PathBuf;

use teamvirt_conf::DomainDef;

use teamvirt_host::process::ProcId;
use teamvirt_host::procmatch::{self, Expected};
use teamvirt_host::state::{read_optional, StateDir};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("refusing to signal process {pid} recorded for domain '{name}': it is not this domain's QEMU ({reason}); the run record is damaged or forged: `teamvirt destroy --force {name}` finds the domain's QEMU by its command line")]
    Mismatch {
        name: String,
        pid: i32,
        reason: String,
    },
}

/// The emulator of domain `name` as its definition says: the live XML of
/// the running domain, else the persistent definition; `<emulator>`, else
/// `qemu-system-x86_64`.
pub fn definition_emulator(sd: &StateDir, name: &str) -> PathBuf {
    let texts = [
        sd.checked_run_paths(name)
            .ok()
            .and_then(|p| read_optional(&p.live_xml).ok().flatten()),
        sd.domain_xml(name)
            .ok()
            .and_then(|p| read_optional(&p).ok().flatten()),
    ];
    for text in texts.into_iter().flatten() {
        if let Ok((def, _)) = DomainDef::parse_str(&text, None) {
            return emulator_of(&def);
        }
    }
    PathBuf::from("qemu-system-x86_64")
}

/// The emulator named by a live XML (as sent to a migration destination).
pub fn xml_emulator(live_xml: &str) -> PathBuf {
    DomainDef::parse_str(live_xml, None)
        .map(|(def, _)| emulator_of(&def))
        .unwrap_or_else(|_| PathBuf::from("qemu-system-x86_64"))
}

/// What domain `name`'s QEMU looks like to the kernel.
fn expected(sd: &StateDir, name: &str) -> Option<Expected> {
    let emulator = definition_emulator(sd, name);
    Some(Expected::new(emulator, sd.run_paths(name).ok()?.qmp_sock))
}

/// Check that `proc` (from a run record) is domain `name`'s QEMU.
pub fn verify(sd: &StateDir, name: &str, proc: &ProcId) -> Result<(), IdentityError> {
    let reason = match expected(sd, name) {
        Some(e) => e.mismatch(proc),
        None => Some("invalid domain name".into()),
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(IdentityError::Mismatch {
            name: name.to_owned(),
            pid: proc.pid,
            reason,
        }),
    }
}

/// The running processes that are domain `name`'s QEMU by what the kernel
/// says (executable = the definition's emulator, command line opening or
/// descriptors holding the domain's QMP socket), whatever the run record
/// says.
pub fn find_qemus(sd: &StateDir, name: &str) -> Vec<ProcId> {
    match expected(sd, name) {
        Some(want) => procmatch::find(&want),
        None => Vec::new(),
    }
}

/// The QEMU binary of a domain: its `<emulator>`, else `qemu-system-x86_64`.
pub fn emulator_of(def: &DomainDef) -> PathBuf {
    def.devices
        .emulator
        .as_ref()
        .map(|e| PathBuf::from(&e.path))
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_not_a_qemu() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let me = ProcId::of(std::process::id() as i32).unwrap();
        let e = verify(&sd, "vm", &me).unwrap_err().to_string();
        assert!(e.contains("refusing to signal process"), "{e}");
        assert!(find_qemus(&sd, "vm").is_empty());
    }
}
