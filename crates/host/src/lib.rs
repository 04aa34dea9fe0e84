//! # teamvirt-host: host plumbing
//!
//! What teamvirt needs from the host, knowing nothing of domains or
//! migrations (libvirt's `src/util` and `security_dac.c`,
//! cloud-hypervisor's `net_util`): the state directory as a trust
//! boundary (`state`, `safefs`), flock locks, processes and their identity
//! across pid reuse (`process`, `procmatch`), the QEMU user and the
//! privilege drop (`privdrop`), what an unprivileged QEMU is lent and
//! given back (`dac`), one uid per VM (`dynuid`), taps, macvtaps, bridge
//! ports and FDB entries (`netdev`), PCI addresses, vfio binding and node
//! devices (`sysfs`, `hostdev`, `nodedev`), control characters escaped
//! and the process's one tokio runtime. Everything above
//! (`teamvirt-runtime`) uses it through plain values: paths, names, MACs,
//! PCI addresses; it depends on no other teamvirt crate but
//! `teamvirt-conf` (for `MacAddr` and `PciAddress`).

#![warn(clippy::too_many_lines, clippy::unwrap_used)]

/// The process's one tokio runtime, installed by `main`.
pub mod asyncrt;
pub mod dac;
/// One uid/gid per running VM, from a reserved range.
pub mod dynuid;
/// Control characters escaped for terminals and logs.
pub mod escape;
/// Host-side VF preparation (vfio-pci binding, MAC/VLAN via the PF).
pub mod hostdev;
pub mod lock;
pub mod netdev;
/// Host PCI devices as libvirt's node devices (`nodedev-*`).
pub mod nodedev;
pub mod privdrop;
/// Detached QEMU processes, identity across pid reuse.
pub mod process;
pub mod procmatch;
/// The state directory as a trust boundary: ownership, modes, no links.
pub mod safefs;
/// State directory layout, atomic writes.
pub mod state;
/// PCI addresses and PF/VF links as sysfs shows them.
pub mod sysfs;
