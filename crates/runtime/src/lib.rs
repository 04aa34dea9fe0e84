//! Running teamvirt domains: VF pools, QEMU processes, lifecycle verbs and
//! the guest's failover state, over the host plumbing of `teamvirt_host`
//! (state directory, locks, processes, privilege drop and lending, taps,
//! vfio binding), which knows no domain.
//! libvirt counterparts: `qemu_process.c`, the network driver's port
//! allocation, `qemu_migration.c` (in `migrate`, separate).
//!
//! Entry point: [`Runtime`] (one state directory, opened by [`open()`]): `define_domain`,
//! `start`/`start_def`, `destroy`, `shutdown`, `domain_state`,
//! `list_domains`, `domain_xml`, `teaming`, and the network verbs. The
//! layers below are public for the migration module: [`run`] (launch with
//! `-incoming`, run records, QMP connect, ownership moves), [`pool`]
//! (reserve/release VFs), [`teaming`] (pair states).

// Issue 20's guard rails, here until every crate of the workspace meets
// them (then `[workspace.lints]`); the threshold is in clippy.toml.
#![warn(clippy::too_many_lines, clippy::unwrap_used)]

/// kvm or tcg.
pub mod accel;
pub mod agent;
mod agentops;
/// Autostart flags of domains and networks.
pub mod autostart;
/// `console`: the pty QEMU reports, checked before it is opened.
pub mod console;
/// The virsh verbs beyond the lifecycle: suspend, resume, reboot,
/// dominfo, domiflist, autostart, console.
pub mod control;
/// Domain verbs and the [`Runtime`] handle.
pub mod domain;
pub mod domlog;
/// The lifecycle error type.
pub mod error;
pub mod guestdoc;
pub mod guestroute;
/// Hostdev networks as VF pools: the rule and the members.
pub mod hostdev_net;
/// attach-device / detach-device on running and defined domains.
pub mod hotplug;
pub mod identity;
/// Emulator probes run as QEMU runs.
pub mod jail;
/// Lending QEMU what its command line names (descriptors, chowns).
pub mod lend_argv;
/// Live XML with teamvirt's runtime metadata.
pub mod live;
pub mod migrate;
/// `net-start` / `net-destroy`: is a network serving new devices?
pub mod net_state;
/// The host network devices of a domain's interfaces (taps, macvtaps).
pub mod netsetup;
/// Network verbs and the network lookup used at start.
pub mod network;
/// A command's way in: stale migrations settled, then the [`Runtime`].
mod open;
/// Who holds a PCI device (VF pools, prepared VFs).
mod pci_users;
pub mod pool;
/// `domstate --reason`: virsh's reason texts from the domain log.
pub mod reason;
/// The run record of a running domain (`run/NAME/state.json`).
pub mod record;
pub mod run;
/// `start`: definition to running QEMU.
pub mod start;
/// Which state directory: `--state-dir`, the environment, the default.
pub mod state_root;
/// Stopping a domain's QEMU, one sequence with a policy per caller.
pub mod stop;
/// Failover state of teaming pairs (over QMP).
pub mod teaming;

/// A fresh UUID for definitions that lack one.
pub mod uuidgen;

pub use domain::{DomainState, DomainSummary, Runtime};
pub use error::RuntimeError;
pub use open::{open, open_default};
pub use start::{StartOptions, StartReport};
