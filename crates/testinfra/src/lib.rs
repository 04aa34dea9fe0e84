//! Test-only helpers shared by the crates' tests: where the libvirt corpus is,
//! whether QEMU is installed, the test guest image and a cross-process lock
//! so guest-booting tests do not compete for the machine's cores.

use std::path::PathBuf;

/// Counting allocations in test binaries.
pub mod alloc_count;
mod capture;
mod debian;
mod guest;
mod netns;
/// Finding a test's processes in /proc.
pub mod procs;
mod qemu;
mod serial;
pub mod traffic;
mod util;
/// The VF lab: real SR-IOV VFs in a nested guest.
pub mod vflab;
/// Domain and VF-pool XML shared by the tests (no copy per test file).
pub mod xml;

pub use capture::Capture;
pub use debian::{debian_guest_or_skip, mmdebstrap_available, DebianGuest, DEBIAN_GUEST_IP};
pub use guest::{guest_dir, guest_lock, test_guest, GuestError, GuestImage, GuestLock};
pub use netns::{add_claimed_netns, del_claimed_netns, sweep_stale_netns, Netns};
pub use qemu::{qemu_binary, qemu_or_skip};
pub use serial::{
    FailoverGroup, GuestIp6, GuestIp6Addr, GuestNetIf, GuestPciDev, GuestState, SerialError,
    SerialLog,
};
pub use util::{free_port, temp_dir};

/// The libvirt conformance corpus (`../shared/conformance/libvirt` beside the
/// checkout), or `TEAMVIRT_CORPUS` when set. `None` in a user's clone that
/// lacks it: callers print a skip message and return.
pub fn corpus_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TEAMVIRT_CORPUS") {
        let dir = PathBuf::from(dir);
        return dir.is_dir().then_some(dir);
    }
    let dir = workspace_root().join("../shared/conformance/libvirt");
    dir.is_dir().then_some(dir)
}

/// `corpus_dir()` or a printed skip notice; use as
/// `let Some(corpus) = teamvirt_testinfra::corpus_or_skip("name") else { return };`
pub fn corpus_or_skip(test: &str) -> Option<PathBuf> {
    let dir = corpus_dir();
    if dir.is_none() {
        eprintln!("skipping {test}: libvirt corpus not found at ../shared/conformance/libvirt (set TEAMVIRT_CORPUS)");
    }
    dir
}

/// The repository root (the workspace directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The reference notes directory (`../shared/reference`), if present.
pub fn reference_dir() -> Option<PathBuf> {
    let dir = workspace_root().join("../shared/reference");
    dir.is_dir().then_some(dir)
}
