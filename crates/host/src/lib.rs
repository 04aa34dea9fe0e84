//! # teamvirt-host: host plumbing
//!
//! What teamvirt needs from the host, knowing nothing of domains or
//! migrations (libvirt's `src/util`, cloud-hypervisor's `net_util`):
//! processes and their identity across pid reuse, the QEMU user and the
//! privilege drop, flock locks, the state directory as a trust boundary,
//! control characters escaped, the process's one tokio runtime and PCI
//! addresses as sysfs shows them. Everything above (`teamvirt-runtime`)
//! uses it through plain values: paths, names, MACs, PCI addresses.

#![warn(clippy::too_many_lines, clippy::unwrap_used)]

/// The process's one tokio runtime, installed by `main`.
pub mod asyncrt;
/// What an unprivileged QEMU is lent (descriptors, chowns) and given back.
pub mod dac;
/// One uid/gid per running VM, from a reserved range.
pub mod dynuid;
/// Control characters escaped for terminals and logs.
pub mod escape;
/// Host-side VF preparation (vfio-pci binding, MAC/VLAN via the PF).
pub mod hostdev;
pub mod lock;
/// Taps, macvtaps, bridge ports and FDB entries (netlink).
pub mod netdev;
/// Host PCI devices as libvirt's node devices (`nodedev-*`).
pub mod nodedev;
pub mod privdrop;
/// Detached QEMU processes, identity across pid reuse.
pub mod process;
/// Is a process the QEMU one expects (checked in /proc)?
pub mod procmatch;
/// The state directory as a trust boundary: ownership, modes, no links.
pub mod safefs;
/// State directory layout, atomic writes.
pub mod state;
/// PCI addresses and PF/VF links as sysfs shows them.
pub mod sysfs;
