//! Async client for QEMU's QMP monitor (tokio + serde_json).
//!
//! * [`Qmp::connect`] reads the greeting (QEMU's version is kept:
//!   [`Qmp::qemu_version`]) and negotiates `qmp_capabilities`.
//! * [`Qmp::execute`] / [`Qmp::execute_timeout`] send a command and await
//!   its reply, matched by `id`, so any number of tasks may share one
//!   connection (`Qmp` is `Clone`).
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
//! use serde_json::{json, Value};
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
//! qmp.execute("cont", Value::Null).await?;
//! let ev = events
//!     .wait_for("FAILOVER_NEGOTIATED", |e| e.data_str("device-id") == Some("net1"),
//!               Duration::from_secs(60))
//!     .await?;
//! assert!(matches!(ev.typed(), TypedEvent::FailoverNegotiated { .. }));
//!
//! match qmp.execute("qom-get", json!({"path": "/machine/peripheral/hostdev0",
//!                                     "property": "type"})).await {
//!     Err(QmpError::Command { class, .. }) if class == "DeviceNotFound" => {}
//!     other => { other?; }
//! }
//! # Ok(()) }
//! ```

mod client;
mod error;
mod event;
pub mod redact;

pub use client::{EventStream, Greeting, QemuVersion, Qmp, QmpOptions, QomProperty};
pub use error::QmpError;
pub use event::{Event, MigrationStatus, TypedEvent};
