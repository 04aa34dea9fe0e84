//! The error of the lifecycle API ([`crate::Runtime`]): libvirt's texts
//! where virsh prints one, diagnostics (with the XML text they point into)
//! for problems in a definition.

use teamvirt_conf::Diagnostic;

use crate::pool::PoolError;
use crate::run::RunError;
use crate::teaming::{PairState, TeamingError};
use teamvirt_host::process::ProcessError;
use teamvirt_host::state::StateError;

/// Everything a lifecycle operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Problems in a definition: at least one error, maybe warnings; `text`
    /// is the XML they point into (for rendering the source line).
    #[error("{}", first_error(.diags))]
    Invalid {
        diags: Vec<Diagnostic>,
        text: String,
        file: Option<std::path::PathBuf>,
    },
    #[error("Domain not found: no domain with matching name '{0}'")]
    NoDomain(String),
    #[error("Network not found: no network with matching name '{0}'")]
    NoNetwork(String),
    #[error("Requested operation is not valid: domain is already running")]
    AlreadyRunning(String),
    #[error("Requested operation is not valid: domain is not running")]
    NotRunning(String),
    #[error("operation failed: domain '{name}' already exists with uuid {uuid}")]
    UuidClash { name: String, uuid: String },
    #[error("operation failed: network '{name}' already exists with uuid {uuid}")]
    NetUuidClash { name: String, uuid: String },
    #[error("Requested operation is not valid: network '{name}' still has VFs in use ({})", .users.join(", "))]
    NetworkInUse { name: String, users: Vec<String> },
    #[error("Requested operation is not valid: network '{0}' is not active")]
    NetworkNotActive(String),
    /// `net-start` of a network already started (libvirt's text).
    #[error("Requested operation is not valid: network is already active")]
    NetworkAlreadyActive(String),
    /// Formatting indents nested elements: a deeply nested document can
    /// come out larger than what can be read back, so it is not stored.
    #[error("unsupported configuration: the definition of '{name}' would be {size} bytes once formatted (nested elements are indented), more than the {} bytes teamvirt reads back; remove or flatten the deeply nested elements", teamvirt_conf::MAX_XML_SIZE)]
    TooLargeFormatted { name: String, size: usize },
    #[error("Requested operation is not valid: network '{name}' cannot be started: {reason}")]
    NetworkNotReady { name: String, reason: String },
    #[error("internal error: Could not get Virtual functions on {pf}: {reason}")]
    NoVirtualFunctions { pf: String, reason: String },
    /// Start refused: the domain cannot work as written (topology).
    #[error("{}", refusal(.name, .diags))]
    Refused {
        name: String,
        diags: Vec<Diagnostic>,
        text: String,
        file: Option<std::path::PathBuf>,
    },
    #[error("cannot probe QEMU capabilities: {0}")]
    Caps(#[from] teamvirt_qemu::caps::CapsError),
    /// The domain could not be turned into a QEMU command line.
    #[error(transparent)]
    Convert(#[from] teamvirt_qemu::command::ConvertError),
    /// A network named by an interface could not be looked up or used.
    #[error(transparent)]
    Resolve(#[from] teamvirt_qemu::resolve::ResolveError),
    /// Define-time defaults (machine type, controllers) failed.
    #[error(transparent)]
    Defaults(#[from] teamvirt_qemu::defaults::DefaultsError),
    /// `start --wait-failover` timed out; the domain keeps running.
    #[error("failover not negotiated for domain '{name}' within {secs} s (the domain is left running; `teamvirt destroy {name}` stops it):\n  {}", .problems.join("\n  "))]
    FailoverNotNegotiated {
        name: String,
        secs: u64,
        problems: Vec<String>,
        states: Vec<PairState>,
        /// Lab-mode substitutions made by this start (to print them anyway).
        substitutions: Vec<String>,
    },
    /// `start --wait-failover` gave way to a `destroy` of the domain.
    #[error("domain '{name}' was destroyed while waiting for failover")]
    DestroyedWhileWaiting { name: String },
    /// As [`RuntimeError::DestroyedWhileWaiting`], but the `destroy` ended
    /// (failed or interrupted) with QEMU still running.
    #[error("the wait for failover of domain '{name}' gave way to a destroy that did not stop it; the domain is left running (`teamvirt destroy {name}` stops it)")]
    DestroyInterruptedWait { name: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Hostdev(#[from] teamvirt_host::hostdev::HostdevError),
    #[error(transparent)]
    Netdev(#[from] teamvirt_host::netdev::NetdevError),
    #[error(transparent)]
    Standby(#[from] crate::netsetup::StandbyNotOnVfSegment),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Teaming(#[from] TeamingError),
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    #[error(transparent)]
    Hotplug(#[from] HotplugError),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Errors of `attach-device` / `detach-device` (the hotplug module).
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    #[error("{0}")]
    Plan(#[from] teamvirt_qemu::hotplug::HotplugError),
    #[error("Requested operation is not valid: domain is not running")]
    NotRunning,
    #[error("Requested operation is not valid: cannot modify the persistent configuration of a transient domain")]
    Transient,
    #[error("device not found: no device found with alias {0}")]
    NoAlias(String),
    #[error("device not found: {0}")]
    NotFound(String),
    #[error("operation failed: multiple devices matching MAC address {0} found")]
    Ambiguous(String),
    #[error("Requested operation is not valid: standby {standby} still has its failover primary {} attached; detach the primary first (teamvirt detach-device-alias DOMAIN {})", .primaries.join(", "), .primaries[0])]
    StandbyInUse {
        standby: String,
        primaries: Vec<String>,
    },
    #[error("internal error: unable to execute QEMU command '{cmd}': {desc}")]
    Qemu { cmd: String, desc: String },
    #[error("internal error: live XML of domain '{0}' is missing")]
    NoLiveXml(String),
}

/// Refuse to store a definition that could not be read back (see
/// [`RuntimeError::TooLargeFormatted`]).
pub(crate) fn check_formatted(name: &str, xml: &str) -> Result<(), RuntimeError> {
    if xml.len() as u64 > teamvirt_conf::MAX_XML_SIZE {
        return Err(RuntimeError::TooLargeFormatted {
            name: name.to_owned(),
            size: xml.len(),
        });
    }
    Ok(())
}

fn first_error(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .find(|d| d.is_error())
        .or(diags.first())
        .map(|d| d.message.clone())
        .unwrap_or_else(|| "invalid definition".into())
}

/// First line of a start refusal.
pub fn refusal_header(name: &str) -> String {
    format!(
        "unsupported configuration: domain '{name}' cannot work as defined, refusing to start it"
    )
}

fn refusal(name: &str, diags: &[Diagnostic]) -> String {
    let mut s = format!("{}:", refusal_header(name));
    for d in diags {
        s.push_str(&format!("\n  {}", d.message));
        if let Some(h) = &d.hint {
            s.push_str(&format!("\n    fix: {h}"));
        }
    }
    s
}
