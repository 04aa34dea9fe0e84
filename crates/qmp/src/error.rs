//! The one error type of the crate.

use std::sync::Arc;
use std::time::Duration;

/// Everything that can go wrong talking QMP.
///
/// `Clone` so one failure can be handed to every waiter; I/O errors are kept
/// behind an `Arc` for that reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QmpError {
    /// QEMU answered the command with `{"error": {"class": ..., "desc": ...}}`.
    /// `class` is QEMU's error class (`GenericError`, `CommandNotFound`,
    /// `DeviceNotFound`, ...), `desc` its human-readable text.
    #[error("QMP error {class}: {desc}")]
    Command { class: String, desc: String },
    /// No answer (or no matching event) within `after`. For commands the
    /// reply, if it arrives later, is discarded.
    #[error("QMP timeout after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    /// The connection to QEMU is gone (QEMU exited or closed the socket):
    /// given to every pending command and every later one.
    #[error("QMP connection closed (QEMU went away)")]
    Disconnected,
    /// Connecting or talking to the socket failed.
    #[error("QMP I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// The peer did not speak QMP as expected (bad greeting, a reply that is
    /// not JSON, a malformed error object, ...).
    #[error("QMP protocol error: {0}")]
    Protocol(String),
}

impl From<std::io::Error> for QmpError {
    fn from(e: std::io::Error) -> Self {
        QmpError::Io(Arc::new(e))
    }
}

impl QmpError {
    /// QEMU's error class when this is a command error.
    pub fn class(&self) -> Option<&str> {
        match self {
            QmpError::Command { class, .. } => Some(class),
            _ => None,
        }
    }
}
