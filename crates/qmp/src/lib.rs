//! Async client for QEMU's QMP monitor (tokio + serde_json).
//!
//! * [`Qmp::connect`] reads the greeting (QEMU's version is kept:
//!   [`Qmp::qemu_version`]) and negotiates `qmp_capabilities`.
//! * One typed method per command teamvirt sends ([`Qmp::cont`],
//!   [`Qmp::query_migrate`], [`Qmp::device_add`], ...; the `commands`
//!   module), with typed arguments and replies ([`MigrationInfo`], ...).
//!   [`Qmp::execute`] / [`Qmp::execute_timeout`] underneath send any
//!   command and await its reply, matched by `id`, so any number of tasks
//!   may share one connection (`Qmp` is `Clone`).
//! * Failures are [`QmpError`] values: `Command { class, desc }` for QEMU's
//!   own errors, `Timeout`, `Disconnected` (for every pending and later
//!   command once QEMU is gone), `Io`, `Protocol`.
//! * Events: [`Qmp::subscribe`] gives an [`EventStream`] of raw [`Event`]s;
//!   unknown events and fields are passed through untouched, and a slow
//!   subscriber never blocks the connection (unbounded per-subscriber
//!   queue). [`Event::typed`] decodes the events teamvirt acts on
//!   ([`TypedEvent`]). [`Qmp::wait_event`] / [`EventStream::wait_for`] wait
//!   for one with a timeout; [`Qmp::subscribe_with_history`] replays what
//!   arrived before the subscription.
//!
//! No call blocks the runtime: socket I/O happens in a reader and a writer
//! task spawned on the current tokio runtime.
//!
//! ```no_run
//! # async fn demo() -> Result<(), teamvirt_qmp::QmpError> {
//! use std::time::Duration;
//! use teamvirt_qmp::{Qmp, QmpError, QmpOptions, TypedEvent};
//!
//! let qmp = Qmp::connect_with(
//!     "/run/vm/qmp.sock",
//!     QmpOptions { wait_for_socket: Duration::from_secs(5), ..Default::default() },
//! )
//! .await?;
//! println!("QEMU {}", qmp.qemu_version());
//!
//! let mut events = qmp.subscribe();
//! qmp.cont().await?;
//! let ev = events
//!     .wait_for("FAILOVER_NEGOTIATED", |e| e.data_str("device-id") == Some("net1"),
//!               Duration::from_secs(60))
//!     .await?;
//! assert!(matches!(ev.typed(), TypedEvent::FailoverNegotiated { .. }));
//!
//! match qmp.device_del("hostdev0").await {
//!     Err(QmpError::Command { class, .. }) if class == "DeviceNotFound" => {}
//!     other => other?,
//! }
//! # Ok(()) }
//! ```
// Issue 20's guard rails, here until every crate of the workspace meets
// them (then `[workspace.lints]`); the threshold is in clippy.toml.
#![warn(clippy::too_many_lines, clippy::unwrap_used)]

mod client;
mod commands;
mod error;
mod event;
pub mod redact;

pub use client::{EventStream, Greeting, QemuVersion, Qmp, QmpOptions, QomProperty};
pub use commands::{
    ChardevInfo, CommandLineOptionInfo, CpuDefinitionInfo, KvmInfo, MachineInfo, MigrateParameters,
    MigrationCapability, MigrationInfo, MigrationStats, NameInfo, ObjectPropertyInfo,
    PciBridgeInfo, PciDeviceInfo, PciInfo, SocketAddress, TargetInfo, TlsCredsX509, VersionInfo,
    VersionTriple, VirtioDeviceFeatures, VirtioInfo, VirtioStatus,
};
pub use error::QmpError;
pub use event::{Event, MigrationStatus, TypedEvent};
