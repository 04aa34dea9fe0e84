//! Stopping a domain's QEMU: one sequence (QMP `quit`, a wait, a `/proc`
//! check, signals), a [`StopPolicy`](crate::stop::StopPolicy) per caller saying which steps it
//! takes and for how long. Every way teamvirt ends a QEMU goes through
//! [`stop_qemu`](crate::stop::stop_qemu) (async callers) or
//! [`stop_process`](crate::stop::stop_process) (sync ones).

use std::time::Duration;

use teamvirt_qmp::Qmp;

use crate::identity::IdentityError;
use teamvirt_host::process::{ProcId, ProcessError};
use teamvirt_host::state::StateDir;

/// Why a QEMU was not stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// `/proc` does not confirm the pid is the domain's QEMU: no signal.
    #[error(transparent)]
    NotItsQemu(#[from] IdentityError),
    #[error(transparent)]
    Signal(#[from] ProcessError),
}

/// The signals that end QEMU when it does not go by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signals {
    /// SIGTERM, this long for a clean exit, then SIGKILL
    /// ([`ProcId::kill_painfully`]).
    Painfully(Duration),
    /// SIGTERM only, and an error when QEMU is still there after this
    /// long ([`ProcId::kill_gracefully`], `destroy --graceful`).
    Gracefully(Duration),
}

/// Which steps of the stop sequence a caller takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopPolicy {
    /// Ask QMP `quit` first, waiting this long for the reply.
    pub quit: Option<Duration>,
    /// How long QEMU gets to exit by itself before any signal.
    pub wait: Duration,
    /// Confirm through `/proc` that the pid is the domain's QEMU before
    /// signalling it ([`crate::identity::verify`]): the pid came from a
    /// record, which is a file and proves nothing.
    pub verify: bool,
    pub signals: Signals,
}

impl StopPolicy {
    /// A migrated source in `postmigrate` (Confirm): it has nothing left
    /// to do, so `quit`, then signals.
    pub const MIGRATED_SOURCE: StopPolicy = StopPolicy {
        quit: Some(Duration::from_secs(5)),
        wait: Duration::from_secs(5),
        verify: true,
        signals: Signals::Painfully(Duration::from_secs(3)),
    };
    /// A side of a migration whose driving process died (`recover`).
    pub const RECOVER: StopPolicy = StopPolicy {
        quit: Some(Duration::from_secs(2)),
        wait: Duration::from_secs(3),
        verify: true,
        signals: Signals::Painfully(Duration::from_secs(3)),
    };
    /// The destination QEMU this very process started (abort): its pid is
    /// known first hand, no `/proc` check.
    pub const OWN_DESTINATION: StopPolicy = StopPolicy {
        quit: Some(Duration::from_secs(2)),
        wait: Duration::from_secs(3),
        verify: false,
        signals: Signals::Painfully(Duration::from_secs(3)),
    };
    /// A QEMU this process just spawned whose start failed.
    pub const OWN_CHILD: StopPolicy = StopPolicy {
        quit: None,
        wait: Duration::ZERO,
        verify: false,
        signals: Signals::Painfully(Duration::from_secs(3)),
    };
    /// `destroy`: signals at once to the recorded QEMU (libvirt's
    /// virProcessKillPainfully, 10 s).
    pub const DESTROY: StopPolicy = StopPolicy {
        quit: None,
        wait: Duration::ZERO,
        verify: true,
        signals: Signals::Painfully(Duration::from_secs(10)),
    };
    /// `destroy --graceful`: SIGTERM only.
    pub const DESTROY_GRACEFUL: StopPolicy = StopPolicy {
        signals: Signals::Gracefully(Duration::from_secs(10)),
        ..StopPolicy::DESTROY
    };
    /// `destroy --force` of the QEMUs `/proc` names as the domain's
    /// ([`crate::identity::find_qemus`]): already confirmed.
    pub const DESTROY_FOUND: StopPolicy = StopPolicy {
        verify: false,
        ..StopPolicy::DESTROY
    };
}

/// Stop `proc`, the QEMU of domain `name`, without QMP: wait, check,
/// signal as `policy` says (its `quit` is not used). Blocks.
/// `Ok` when it is gone; a QEMU already gone is `Ok` at once.
pub fn stop_process(
    sd: &StateDir,
    name: &str,
    proc: ProcId,
    policy: &StopPolicy,
) -> Result<(), StopError> {
    if proc.wait_gone(policy.wait) {
        return Ok(());
    }
    if policy.verify {
        crate::identity::verify(sd, name, &proc)?;
    }
    match policy.signals {
        Signals::Painfully(grace) => proc.kill_painfully(grace)?,
        Signals::Gracefully(grace) => proc.kill_gracefully(grace)?,
    }
    Ok(())
}

/// Stop `proc`, the QEMU of domain `name`: `quit` over `qmp` when the
/// policy asks and a connection is at hand, then [`stop_process`] off
/// the async threads.
pub async fn stop_qemu(
    sd: &StateDir,
    name: &str,
    proc: ProcId,
    qmp: Option<&Qmp>,
    policy: StopPolicy,
) -> Result<(), StopError> {
    if let (Some(q), Some(t)) = (qmp, policy.quit) {
        let _ = tokio::time::timeout(t, q.quit()).await;
    }
    let (sd, name) = (sd.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || stop_process(&sd, &name, proc, &policy))
        .await
        .unwrap_or_else(|e| {
            Err(StopError::Signal(ProcessError::Kill {
                pid: proc.pid,
                source: std::io::Error::other(e.to_string()),
            }))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that is not the domain's QEMU is never signalled when
    /// the policy says to check, and is when the caller knows it first
    /// hand; one already gone is fine either way.
    #[test]
    fn verify_guards_the_signal() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let proc = ProcId::of(child.id() as i32).unwrap();
        let quick = StopPolicy {
            wait: Duration::from_millis(50),
            ..StopPolicy::RECOVER
        };
        let e = stop_process(&sd, "vm", proc, &quick).unwrap_err();
        assert!(matches!(e, StopError::NotItsQemu(_)), "{e}");
        assert!(
            proc.is_alive(),
            "a process /proc does not confirm got a signal"
        );
        let own = StopPolicy {
            wait: Duration::from_millis(50),
            ..StopPolicy::OWN_DESTINATION
        };
        // Reap it as its parent so it does not linger as a zombie.
        let reaper = std::thread::spawn(move || child.wait());
        stop_process(&sd, "vm", proc, &own).unwrap();
        reaper.join().unwrap().unwrap();
        assert!(!proc.is_alive());
        stop_process(&sd, "vm", proc, &quick).unwrap();
    }
}
