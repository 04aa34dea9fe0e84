//! The lifecycle API's guest agent verbs: `domifaddr --source agent`,
//! `shutdown --mode agent`, and the guest doctor of `teaming` and of the
//! checkpoints where it runs by itself (see [`crate::guestdoc`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use teamvirt_conf::model::GUEST_AGENT_CHANNEL;

use crate::agent::{Agent, AgentError, GuestInterface};
use crate::guestdoc::{self, CheckLine, Checkpoint, GuestView};
use crate::guestroute::{self, Routes};
use crate::teaming::TeamingPair;
use crate::{Runtime, RuntimeError};
use teamvirt_host::state::StateDir;

/// How long one agent command may take (a TCG guest on a loaded host is slow).
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The same for the doctor's checkpoints, which a start or a migration
/// waits for: a guest without a running agent costs this once.
pub const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(5);
use crate::run::DOCTOR_RECORD;

#[derive(Debug, Default, Serialize, Deserialize)]
struct DoctorRecord {
    boot_id: Option<String>,
}

/// The socket of `name`'s guest agent channel in `sd`, from its live
/// definition; `None` when it has none. A channel without `<source path>`
/// has its socket in the run directory (the command line builder's rule),
/// so it follows the domain to a migration's destination.
pub(crate) fn agent_socket_in(sd: &StateDir, name: &str) -> Result<Option<PathBuf>, RuntimeError> {
    let live = crate::live::live_def_in(sd, name)?;
    let Some(ch) = live.devices.channels.iter().find(|c| c.is_guest_agent()) else {
        return Ok(None);
    };
    Ok(Some(match ch.source_path() {
        Some(p) => PathBuf::from(p),
        None => sd.run_paths(name)?.dir.join(GUEST_AGENT_CHANNEL),
    }))
}

/// The guest's boot id (`/proc/sys/kernel/random/boot_id`), when the
/// agent can read files; anything but a UUID is none.
fn boot_id(a: &mut Agent) -> Result<Option<String>, AgentError> {
    match a.read_file("/proc/sys/kernel/random/boot_id", 64) {
        Ok(b) => {
            let t = String::from_utf8_lossy(&b).trim().to_owned();
            let ok = t.len() == 36 && t.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
            Ok(ok.then_some(t))
        }
        Err(AgentError::Command { .. } | AgentError::BadReply { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The doctor on the agent at `sock`: the view and the guest's boot id.
/// An agent that does not answer is a view, not an error.
fn view_at(
    sock: &Path,
    pairs: &[TeamingPair],
    timeout: Duration,
) -> Result<(GuestView, Option<String>), RuntimeError> {
    let res = (|| {
        let mut a = Agent::connect(sock, timeout)?;
        let info = a.info()?;
        let ifaces = a.interfaces()?;
        let routes = guestroute::read(&mut a, &info)?;
        let boot = if info.supports("guest-file-read") {
            boot_id(&mut a)?
        } else {
            None
        };
        let (list, source, note) = match routes {
            Routes::Known { routes, source } => (Some(routes), Some(source.to_owned()), None),
            Routes::Unknown(why) => (None, None, Some(why)),
        };
        let mut r = guestdoc::diagnose(&info, pairs, &ifaces, list.as_deref());
        r.routes_source = source;
        r.routes_note = note.map(|n| teamvirt_host::escape::escape_controls(&n));
        Ok::<_, AgentError>((r, boot))
    })();
    match res {
        Ok((r, boot)) => Ok((GuestView::Connected(r), boot)),
        Err(e @ (AgentError::NotConnected { .. } | AgentError::Timeout(_))) => Ok((
            GuestView::NotResponding {
                reason: e.to_string(),
            },
            None,
        )),
        Err(e) => Err(e.into()),
    }
}

/// Whether the guest rebooted since the doctor last saw it: two known
/// boot ids that differ. No earlier id (a new run, see [`checkpoint`]) or
/// no id now (an agent that cannot read files) is not a reboot.
fn rebooted(before: Option<&str>, now: Option<&str>) -> bool {
    matches!((before, now), (Some(b), Some(n)) if b != n)
}

fn record_path(sd: &StateDir, name: &str) -> Result<PathBuf, RuntimeError> {
    Ok(sd.run_paths(name)?.dir.join(DOCTOR_RECORD))
}

fn load_record(sd: &StateDir, name: &str) -> DoctorRecord {
    record_path(sd, name)
        .ok()
        .and_then(|p| teamvirt_host::state::read_optional(&p).ok().flatten())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Remember the boot id (best effort: the doctor never fails a command).
fn save_record(sd: &StateDir, name: &str, boot: Option<&str>) {
    let Some(boot) = boot else { return };
    let rec = DoctorRecord {
        boot_id: Some(boot.to_owned()),
    };
    if let (Ok(p), Ok(text)) = (record_path(sd, name), serde_json::to_vec(&rec)) {
        let _ = teamvirt_host::state::write_atomic(&p, &text, 0o600);
    }
}

fn log_lines(sd: &StateDir, name: &str, lines: &[CheckLine]) {
    for l in lines {
        let text = match l.level {
            guestdoc::Level::Warning => format!("warning: {}", l.text),
            _ => l.text.clone(),
        };
        crate::domlog::event(sd, name, &text);
    }
}

/// The doctor at a checkpoint of `name` in `sd` (a start, or a migration's
/// destination): its lines, also written to the domain log. Never an
/// error: a domain without a channel says nothing, anything that goes
/// wrong is a note.
pub fn checkpoint(
    sd: &StateDir,
    name: &str,
    pairs: &[TeamingPair],
    at: Checkpoint,
) -> Vec<CheckLine> {
    // A start or an arrival begins a new run here: a boot id remembered
    // from an earlier run of the same name (the run directory outlives
    // it) is no sign of a reboot.
    if let Ok(p) = record_path(sd, name) {
        let _ = std::fs::remove_file(p);
    }
    let lines = match agent_socket_in(sd, name) {
        Ok(None) => return Vec::new(),
        Ok(Some(sock)) => match view_at(&sock, pairs, CHECKPOINT_TIMEOUT) {
            Ok((view, boot)) => {
                save_record(sd, name, boot.as_deref());
                guestdoc::checkpoint_lines(&view, at)
            }
            Err(e) => vec![CheckLine {
                level: guestdoc::Level::Note,
                text: format!("guest doctor after {at}: not run: {e}"),
            }],
        },
        Err(e) => vec![CheckLine {
            level: guestdoc::Level::Note,
            text: format!("guest doctor after {at}: not run: {e}"),
        }],
    };
    log_lines(sd, name, &lines);
    lines
}

impl Runtime {
    /// The socket of a running domain's guest agent channel; `None` when
    /// its definition has none (see `agent_socket_in`).
    pub fn agent_socket(&self, name: &str) -> Result<Option<PathBuf>, RuntimeError> {
        self.running(name)?;
        agent_socket_in(&self.sd, name)
    }

    fn agent(&self, name: &str) -> Result<Agent, RuntimeError> {
        let sock = self
            .agent_socket(name)?
            .ok_or(RuntimeError::Agent(AgentError::NotConfigured))?;
        Ok(Agent::connect(&sock, AGENT_TIMEOUT)?)
    }

    /// `domifaddr --source agent`: the guest's interfaces and addresses.
    pub fn guest_interfaces(&self, name: &str) -> Result<Vec<GuestInterface>, RuntimeError> {
        Ok(self.agent(name)?.interfaces()?)
    }

    /// `shutdown --mode agent`: the guest agent powers the guest off.
    pub fn shutdown_agent(&self, name: &str) -> Result<(), RuntimeError> {
        let mut a = self.agent(name)?;
        crate::domlog::event(&self.sd, name, "shutdown requested (guest agent)");
        Ok(a.shutdown()?)
    }

    /// The guest doctor for `pairs`: no agent channel and an agent that
    /// does not answer are reports, not errors. The lines are those of a
    /// reboot checkpoint when the guest's boot id changed since the doctor
    /// last saw it (also written to the domain log), else none.
    pub fn guest_view(
        &self,
        name: &str,
        pairs: &[TeamingPair],
    ) -> Result<(GuestView, Vec<CheckLine>), RuntimeError> {
        let Some(sock) = self.agent_socket(name)? else {
            return Ok((GuestView::NoAgent, Vec::new()));
        };
        let (view, boot) = view_at(&sock, pairs, AGENT_TIMEOUT)?;
        let before = load_record(&self.sd, name).boot_id;
        let rebooted = rebooted(before.as_deref(), boot.as_deref());
        save_record(&self.sd, name, boot.as_deref());
        if !rebooted {
            return Ok((view, Vec::new()));
        }
        let lines = guestdoc::checkpoint_lines(&view, Checkpoint::Reboot);
        log_lines(&self.sd, name, &lines);
        Ok((view, lines))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "6f1c1a52-8d0e-4c1e-9d39-0a2b3c4d5e6f";
    const B: &str = "0b7e9c3a-1111-4c1e-9d39-0a2b3c4d5e6f";

    #[test]
    fn a_reboot_is_a_changed_boot_id_and_a_new_run_forgets_the_old_one() {
        assert!(rebooted(Some(A), Some(B)));
        assert!(!rebooted(Some(A), Some(A)));
        assert!(!rebooted(None, Some(A)));
        assert!(!rebooted(Some(A), None));
        // The record: kept per run directory, cleared by a checkpoint (a
        // start or an arrival), so an earlier run's id is not compared.
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(&t.path().join("state")).unwrap();
        sd.create_run_dir("vm").unwrap();
        save_record(&sd, "vm", Some(A));
        assert_eq!(load_record(&sd, "vm").boot_id.as_deref(), Some(A));
        // No live definition: the checkpoint says nothing it could not
        // run, and the old id is gone.
        let lines = checkpoint(&sd, "vm", &[], Checkpoint::Start);
        assert!(
            lines.iter().all(|l| l.level == guestdoc::Level::Note),
            "{lines:?}"
        );
        assert_eq!(load_record(&sd, "vm").boot_id, None);
    }
}
