//! What a migration reports as it goes, from any of its phases (the
//! prechecks of `snapshot` and the driver's later ones alike).

use serde::Serialize;
use serde_json::Value;

/// Which QEMU reported an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Source,
    Destination,
}

/// What the migration reports as it goes (rendered by the CLI: progress
/// bar, plain lines or one JSON object each).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Progress {
    Warning {
        message: String,
    },
    Info {
        message: String,
    },
    /// A new phase: `prepare`, QEMU's statuses, `finish`, `rollback`.
    Phase {
        phase: String,
        elapsed_ms: u64,
    },
    /// A QMP event of either QEMU (UNPLUG_PRIMARY, FAILOVER_NEGOTIATED, ...).
    Qemu {
        side: Side,
        name: String,
        data: Value,
        elapsed_ms: u64,
        /// QEMU's own host-clock stamp of the event (seconds).
        qemu_time_s: f64,
    },
    /// Figures, a few times a second.
    Stats {
        phase: String,
        elapsed_ms: u64,
        data_processed: Option<u64>,
        data_remaining: Option<u64>,
        data_total: Option<u64>,
        mbps: Option<f64>,
    },
    Rollback {
        step: String,
        elapsed_ms: u64,
    },
}
