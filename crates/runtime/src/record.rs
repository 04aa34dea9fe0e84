//! The run record, `run/NAME/state.json`: what a running domain's QEMU
//! is (process, argv, monitor, log) and holds (teaming pairs, VFs), as
//! written by `run` at launch and read by every later command. Kept apart
//! from the launcher so the VF pools, which the launcher uses, can rebuild
//! their state from the records without it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::accel::Accel;
use crate::teaming::TeamingPair;
use teamvirt_host::process::ProcId;
use teamvirt_host::state::{read_optional, StateDir};

/// What `run/NAME/state.json` records about a running domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub name: String,
    /// virsh-style domain id (unique among running domains of a state dir).
    #[serde(default)]
    pub id: u32,
    pub uuid: Option<String>,
    pub proc: ProcId,
    pub emulator: String,
    pub argv: Vec<String>,
    pub accel: Accel,
    pub qmp_socket: PathBuf,
    pub serial_log: Option<PathBuf>,
    pub qemu_log: PathBuf,
    #[serde(default)]
    pub pairs: Vec<TeamingPair>,
    #[serde(default)]
    pub vfs: Vec<VfBinding>,
    /// Lab-mode substitutions, one human-readable line each.
    #[serde(default)]
    pub substitutions: Vec<String>,
    /// Started with `-incoming` (a migration destination not yet resumed).
    #[serde(default)]
    pub incoming: bool,
    pub started_unix: u64,
    /// The uid and gid QEMU runs as (absent: teamvirt's own, or a record
    /// of an older teamvirt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu_id: Option<teamvirt_host::dynuid::QemuIds>,
}

/// A VF bound to a device of a running domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfBinding {
    pub network: String,
    /// Device alias (QEMU id).
    pub device: String,
    /// Host PCI address.
    pub address: String,
    /// The pool's lab settings when the VF was taken (`None`: not in lab
    /// mode), so a lost pool state is rebuilt with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<LabSettings>,
}

/// Lab mode of a pool (`net-define --emulate-vf [--lab-bridge BR]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

impl RunRecord {
    pub fn is_alive(&self) -> bool {
        self.proc.is_alive()
    }
}

/// Why a run record cannot be read (its domain's state is then unknown:
/// `run::RunError::Damaged` says so to the user).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct Unreadable {
    pub reason: String,
}

/// The record of `name` in `sd`, if any, checked: in the domain's own run
/// directory, for that domain, naming its own monitor and log.
pub fn read(sd: &StateDir, name: &str) -> Result<Option<RunRecord>, Unreadable> {
    let damaged = |reason: String| Unreadable { reason };
    let p = sd
        .checked_run_paths(name)
        .map_err(|e| damaged(e.to_string()))?;
    let text = match read_optional(&p.state_json) {
        Ok(None) => return Ok(None),
        Ok(Some(s)) => s,
        Err(e) => return Err(damaged(e.to_string())),
    };
    let rec: RunRecord = serde_json::from_str(&text).map_err(|e| {
        damaged(format!(
            "run record {} is unreadable ({e})",
            p.state_json.display()
        ))
    })?;
    if rec.name != name {
        return Err(damaged(format!(
            "run record {} is for domain '{}'",
            p.state_json.display(),
            rec.name
        )));
    }
    // teamvirt connects to the socket and reads the log it names: only
    // the domain's own (a record could name any socket on the host).
    if rec.qmp_socket != p.qmp_sock || rec.qemu_log != p.qemu_log {
        return Err(damaged(format!(
            "run record {} names monitor {} and log {}, not the domain's own",
            p.state_json.display(),
            rec.qmp_socket.display(),
            rec.qemu_log.display()
        )));
    }
    Ok(Some(rec))
}
