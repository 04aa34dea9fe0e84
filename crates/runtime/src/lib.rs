//! Running teamvirt domains: the per-host state directory and its locks,
//! VF pools, QEMU processes, lifecycle verbs and the guest's failover state.
//! libvirt counterparts: `qemu_process.c`, the network driver's port
//! allocation, `qemu_migration.c` (in `migrate`, separate).

/// kvm or tcg.
pub mod accel;
/// flock-based advisory locks.
pub mod lock;
/// VF pools of hostdev networks.
pub mod pool;
/// Detached QEMU processes, identity across pid reuse.
pub mod process;
/// Launching and finding running QEMUs (XML-agnostic).
pub mod run;
/// State directory layout, atomic writes.
pub mod state;
/// Failover state of teaming pairs (over QMP).
pub mod teaming;
