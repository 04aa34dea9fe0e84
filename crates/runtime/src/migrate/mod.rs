//! Live migration (unplug, migrate, replug; deadline, rollback, job state).
//!
//! Live migration of a running domain (libvirt `qemu_migration.c`), with
//! what libvirt lacks for teaming: a deadline on the guest's unplug of its
//! primaries, a checked rollback (the primary is verified back on the
//! source, the destination torn down and its VF returned), and the phases
//! shown live.
//!
//! * [`precheck`]: hostdevs that cannot move, QEMU's blockers.
//! * [`dest`]: the destination side as a trait ([`dest::Destination`]:
//!   prepare / finish / abort) that a remote host can serve later, and its
//!   local implementation on another state directory of this machine.
//! * [`driver`]: the source side: drives QEMU, shows progress, enforces
//!   deadlines, rolls back.
//! * [`progress`]: what a migration reports as it goes.
//! * `begin`: the source checked and described before anything moves
//!   (the source's Begin phase, as libvirt names it).
//! * [`job`]: the job as other shells see it (`domjobinfo`, `domjobabort`).
//! * [`argv`]: the destination's command line derived from the source's.
//! * [`recover`](mod@recover): settles a migration whose driving process died.
//! * [`remote`]: a destination on another host over SSH (`ssh://`,
//!   `qemu+ssh://`), [`serve`]: the remote helper's side of it, [`proto`]:
//!   their JSON-lines protocol.
//! * [`dest_check`]: the destination's QEMU checked before anything moves.
//! * [`tls`]: QEMU's TLS credentials for `--tls`, either side.
//! * [`tcg_copy`]: the copy paused under TCG on QEMU < 9.0 (a QEMU bug
//!   loses guest writes during a live copy there).

pub mod argv;
mod argvcheck;
mod begin;
pub mod carry;
pub mod dest;
pub mod dest_check;
pub mod driver;
pub mod entry;
pub mod job;
pub mod precheck;
pub mod progress;
pub mod proto;
pub mod recover;
pub mod remote;
pub mod serve;
pub mod tcg_copy;
pub mod tls;

use std::path::PathBuf;

use teamvirt_conf::Diagnostic;
use teamvirt_qmp::QmpError;

pub use dest::{Destination, LocalDestination, PrepareRequest, Prepared};
pub use driver::{migrate, MigrateOptions, Outcome, Progress};
pub use entry::{migrate_to_remote, migrate_to_state_dir};
pub use job::JobInfo;
pub use recover::{recover, recover_stale};
pub use remote::{RemoteDestination, RemoteTarget, SshUri};

/// Errors of a migration. Texts are libvirt's where virsh prints one.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("Domain not found: no domain with matching name '{0}'")]
    NoDomain(String),
    #[error("Requested operation is not valid: domain is not running")]
    NotRunning(String),
    #[error("Timed out during operation: cannot acquire state change lock (another teamvirt command holds domain '{0}')")]
    Locked(String),
    /// Host devices that cannot move (see [`precheck::hostdev_blockers`]).
    #[error("{}", .0.first().map(|d| d.message.as_str()).unwrap_or("Operation not supported"))]
    Unsupported(Vec<Diagnostic>),
    /// QEMU's `blocked-reasons`, libvirt's text.
    #[error("{0}")]
    Blocked(String),
    #[error("Requested operation is not valid: a migration of domain '{name}' is already in progress (QEMU status '{status}')")]
    InProgress { name: String, status: String },
    #[error("Requested operation is not valid: domain '{0}' is an incoming migration that has not finished")]
    Incoming(String),
    /// A mistyped `--dest-state-dir` must not become a new, empty host.
    #[error("failed to connect to the hypervisor: the destination state directory {} {reason}", .path.display())]
    DestStateDir { path: PathBuf, reason: &'static str },
    #[error("Requested operation is not valid: the destination state directory {} is the source's", .0.display())]
    SameHost(PathBuf),
    #[error("Requested operation is not valid: domain '{0}' is already active on the destination")]
    DestActive(String),
    #[error(
        "operation failed: domain '{name}' already exists with uuid {uuid} on the destination"
    )]
    DestUuidClash { name: String, uuid: String },
    #[error("Network not found: no network with matching name '{network}' on the destination (needed by transient {device})")]
    DestNoNetwork { network: String, device: String },
    #[error("unsupported configuration: network '{network}' on the destination is not a hostdev network (<forward mode='hostdev'>), so it cannot give transient {device} a VF")]
    DestNotHostdev { network: String, device: String },
    #[error("unsupported configuration: transient {device} uses the host VF {vf} directly, not from a network pool; the source holds it on this host, so the destination cannot get a VF of its own (use <interface type='network'> on a hostdev network)")]
    DestSharedVf { device: String, vf: String },
    /// libvirt's text when the destination's QEMU lacks the machine type.
    #[error("unsupported configuration: Emulator '{emulator}' does not support machine type '{machine}'")]
    DestMachine { emulator: String, machine: String },
    /// The destination's QEMU cannot run the domain (failover, a device model).
    #[error("{0}")]
    DestQemu(String),
    /// An error the destination reported (or a broken answer of its), its
    /// text as it gave it.
    #[error("{message}")]
    Remote {
        code: proto::ErrorCode,
        message: String,
    },
    /// The SSH control channel could not be set up or was lost.
    #[error("{0}")]
    Channel(String),
    #[error("internal error: QMP of the {side} QEMU: {source}")]
    Qmp {
        side: &'static str,
        source: QmpError,
    },
    /// A live XML or network definition that does not parse.
    #[error("internal error: {what}: {source}")]
    Xml {
        what: String,
        source: teamvirt_conf::ConfError,
    },
    /// A host operation teamvirt needed (a file, a socket, a runtime).
    #[error("internal error: {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// The incoming side failed or did not complete in time.
    #[error("internal error: the incoming migration on the destination ended '{status}'{}", .desc.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    IncomingEnded {
        status: String,
        desc: Option<String>,
    },
    #[error(
        "internal error: the destination did not complete the incoming migration within {0} s"
    )]
    IncomingTimeout(u64),
    /// `finish` called in the wrong order (a bug in the caller).
    #[error("internal error: {0}")]
    Sequence(&'static str),
    #[error("internal error: blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("internal error: {0}")]
    Json(#[from] serde_json::Error),
    /// A runtime error met on the way (a pool's members, ...).
    #[error(transparent)]
    Runtime(Box<crate::error::RuntimeError>),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Hostdev(#[from] teamvirt_host::hostdev::HostdevError),
    #[error(transparent)]
    Netdev(#[from] teamvirt_host::netdev::NetdevError),
    #[error(transparent)]
    Pool(#[from] crate::pool::PoolError),
    #[error(transparent)]
    State(#[from] teamvirt_host::state::StateError),
    #[error(transparent)]
    Job(#[from] job::JobError),
    #[error(transparent)]
    Argv(#[from] argv::ArgvError),
    /// The migration started and did not complete; `rollback` says what
    /// was done about it, `primaries_back` whether every primary that was
    /// plugged before is plugged on the source again.
    #[error("{reason}")]
    Failed {
        reason: String,
        rollback: Vec<String>,
        primaries_back: bool,
    },
}

impl MigrateError {
    pub(crate) fn remote(code: proto::ErrorCode, message: String) -> MigrateError {
        MigrateError::Remote { code, message }
    }

    /// The error's class, as a destination sends it to the source (and
    /// as `migrate --json` shows it).
    pub fn code(&self) -> proto::ErrorCode {
        use proto::ErrorCode as C;
        match self {
            MigrateError::Remote { code, .. } => *code,
            MigrateError::NoDomain(_) => C::NoDomain,
            MigrateError::DestNoNetwork { .. } => C::NoNetwork,
            MigrateError::NotRunning(_)
            | MigrateError::Locked(_)
            | MigrateError::InProgress { .. }
            | MigrateError::Incoming(_)
            | MigrateError::SameHost(_)
            | MigrateError::DestActive(_)
            | MigrateError::DestStateDir { .. } => C::OperationInvalid,
            MigrateError::Unsupported(_)
            | MigrateError::DestNotHostdev { .. }
            | MigrateError::DestSharedVf { .. }
            | MigrateError::DestMachine { .. }
            | MigrateError::DestQemu(_) => C::ConfigUnsupported,
            MigrateError::Blocked(_)
            | MigrateError::DestUuidClash { .. }
            | MigrateError::Failed { .. }
            | MigrateError::IncomingEnded { .. }
            | MigrateError::IncomingTimeout(_)
            | MigrateError::Channel(_)
            | MigrateError::Hostdev(_)
            | MigrateError::Netdev(_)
            | MigrateError::Pool(_) => C::OperationFailed,
            MigrateError::Qmp { .. }
            | MigrateError::Xml { .. }
            | MigrateError::Io { .. }
            | MigrateError::Sequence(_)
            | MigrateError::Join(_)
            | MigrateError::Json(_)
            | MigrateError::Runtime(_)
            | MigrateError::Run(_)
            | MigrateError::State(_)
            | MigrateError::Job(_)
            | MigrateError::Argv(_) => C::Internal,
        }
    }

    pub(crate) fn src(source: QmpError) -> MigrateError {
        MigrateError::Qmp {
            side: "source",
            source,
        }
    }
    pub(crate) fn dst(source: QmpError) -> MigrateError {
        MigrateError::Qmp {
            side: "destination",
            source,
        }
    }
}
