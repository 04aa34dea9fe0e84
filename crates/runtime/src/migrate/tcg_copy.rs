//! A work-around for a QEMU bug that corrupts TCG guests on migration.
//!
//! QEMU before 9.0 loses guest writes during a live copy under TCG: the
//! fast path of its dirty-bitmap sync (`cpu_physical_memory_sync_dirty_bitmap`,
//! taken for RAM blocks aligned to 64 pages, i.e. guest RAM) clears the
//! migration dirty bits without resetting the vCPUs' TLB write entries, so
//! stores through entries made before the sync never mark their page dirty
//! again and the destination resumes with stale pages: slab free lists and
//! virtio rings of a busy guest kernel (issue 18: "list_del corruption",
//! "is not a head!", general protection faults right after the
//! switchover). Fixed in QEMU 9.0 by commit 03bfc2188f ("physmem: Fix
//! migration dirty bitmap coherency with TCG memory access").
//!
//! Under an affected QEMU (TCG, version < 9.0) the guest is paused for the
//! copy instead: the migration starts with a trickle bandwidth (one page
//! per rate window, so nearly nothing is copied while the guest still runs
//! and unplugs its primaries), and as soon as QEMU leaves `wait-unplug` the
//! source is stopped and the bandwidth restored. Every page is then copied
//! from a guest that no longer writes, as in the final pass of any
//! migration. The cost is downtime: the whole copy instead of the last
//! pass. KVM guests and fixed QEMUs migrate live as before.

use teamvirt_qmp::{MigrateParameters, QemuVersion, Qmp, QmpError};

use crate::accel::Accel;

/// Bandwidth (bytes/s) until the source is paused. QEMU enforces a tenth
/// of it per 100 ms window and stops sending once a window's budget is
/// exceeded, so 10 B/s lets one page out per window.
pub const TRICKLE_BYTES_PER_S: u64 = 10;

/// The warning when `stop` failed.
pub const NOT_PAUSED: &str =
    "the source could not be paused for the copy: the guest runs while it is copied";

/// Does a source with this accelerator and QEMU version lose writes during
/// a live copy?
pub fn copy_must_pause(accel: Accel, qemu: QemuVersion) -> bool {
    accel == Accel::Tcg && (qemu.major, qemu.minor) < (9, 0)
}

/// What the user is told when the work-around applies.
pub fn notice(qemu: QemuVersion) -> String {
    format!(
        "QEMU {qemu} under TCG loses guest writes during a live copy (fixed in QEMU 9.0, commit 03bfc2188f): the source is paused for the copy once the guest has unplugged its primaries"
    )
}

/// `max-bandwidth` in bytes/s for a cap of `mib` MiB/s, unlimited (as
/// libvirt) when none.
pub fn max_bandwidth(mib: Option<u64>) -> u64 {
    let mib = mib.unwrap_or(i64::MAX as u64 >> 20);
    mib.saturating_mul(1 << 20).min(i64::MAX as u64)
}

/// The copy began: pause the source (when `running`: a guest paused before
/// stays as it is), then let the copy run at the user's bandwidth. Returns
/// whether this paused the source; the bandwidth is restored either way (a
/// failed `stop` must not leave the copy at a trickle).
pub async fn pause_now(
    qmp: &Qmp,
    bandwidth_mib: Option<u64>,
    running: bool,
) -> Result<bool, QmpError> {
    let paused = running && qmp.stop().await.is_ok();
    qmp.migrate_set_parameters(&MigrateParameters {
        max_bandwidth: Some(max_bandwidth(bandwidth_mib)),
        ..Default::default()
    })
    .await?;
    Ok(paused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u64, minor: u64, micro: u64) -> QemuVersion {
        QemuVersion {
            major,
            minor,
            micro,
        }
    }

    #[test]
    fn only_tcg_before_9_0_pauses() {
        assert!(copy_must_pause(Accel::Tcg, v(7, 2, 0)));
        assert!(copy_must_pause(Accel::Tcg, v(8, 2, 9)));
        assert!(!copy_must_pause(Accel::Tcg, v(9, 0, 0)));
        assert!(!copy_must_pause(Accel::Tcg, v(10, 0, 2)));
        assert!(!copy_must_pause(Accel::Kvm, v(7, 2, 0)));
    }

    #[test]
    fn bandwidth_in_bytes() {
        assert_eq!(max_bandwidth(Some(5)), 5 << 20);
        assert_eq!(max_bandwidth(None), (i64::MAX as u64 >> 20) << 20);
        assert_eq!(max_bandwidth(Some(u64::MAX)), i64::MAX as u64);
    }
}
