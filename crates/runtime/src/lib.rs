//! Running teamvirt domains: the per-host state directory and its locks,
//! VF pools, QEMU processes, lifecycle verbs and the guest's failover state.
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
/// The process's one tokio runtime, installed by `main`.
pub mod asyncrt;
/// Autostart flags of domains and networks.
pub mod autostart;
/// `console`: the pty QEMU reports, checked before it is opened.
pub mod console;
/// The virsh verbs beyond the lifecycle: suspend, resume, reboot,
/// dominfo, domiflist, autostart, console.
pub mod control;
pub mod dac;
/// Domain verbs and the [`Runtime`] handle.
pub mod domain;
pub mod domlog;
/// One uid/gid per running VM, from a reserved range.
pub mod dynuid;
/// The lifecycle error type.
pub mod error;
pub mod guestdoc;
pub mod guestroute;
/// Host-side VF preparation (vfio-pci binding, MAC/VLAN via the PF).
pub mod hostdev;
/// attach-device / detach-device on running and defined domains.
pub mod hotplug;
pub mod identity;
/// Emulator probes run as QEMU runs.
pub mod jail;
/// Live XML with teamvirt's runtime metadata.
pub mod live;
pub mod lock;
pub mod migrate;
/// `net-start` / `net-destroy`: is a network serving new devices?
pub mod netactive;
/// Hostdev networks as VF pools: the rule and the members.
pub mod netdef;
pub mod netdev;
/// Network verbs and the network lookup used at start.
pub mod network;
pub mod nodedev;
/// A command's way in: stale migrations settled, then the [`Runtime`].
mod open;
pub mod pool;
pub mod privdrop;
/// Detached QEMU processes, identity across pid reuse.
pub mod process;
/// `domstate --reason`: virsh's reason texts from the domain log.
pub mod reason;
/// The run record of a running domain (`run/NAME/state.json`).
pub mod record;
pub mod run;
/// The state directory as a trust boundary: ownership, modes, no links.
pub mod safefs;
/// `start`: definition to running QEMU.
pub mod start;
/// State directory layout, atomic writes.
pub mod state;
/// Stopping a domain's QEMU, one sequence with a policy per caller.
pub mod stop;
/// PCI addresses and PF/VF links as sysfs shows them.
pub mod sysfs;
/// Failover state of teaming pairs (over QMP).
pub mod teaming;
/// A fresh UUID; control characters escaped.
pub mod util;

pub use domain::{DomainState, DomainSummary, Runtime};
pub use error::RuntimeError;
pub use open::{open, open_default};
pub use start::{StartOptions, StartReport};
