//! Is QEMU installed?

use std::path::{Path, PathBuf};

/// The `qemu-system-x86_64` to test with: `TEAMVIRT_QEMU` when set, else
/// the first one on `PATH`. `None` when there is none.
pub fn qemu_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TEAMVIRT_QEMU") {
        let p = PathBuf::from(p);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| is_executable(p))
}

/// `qemu_binary()` or a printed skip notice; use as
/// `let Some(qemu) = teamvirt_testinfra::qemu_or_skip("name") else { return };`
///
/// `TEAMVIRT_EXPECT_QEMU` (set by `scripts/test.sh` for its QEMU 10.0
/// pass) makes any other binary a failure, so that a pass meant for one
/// QEMU cannot quietly run another.
pub fn qemu_or_skip(test: &str) -> Option<PathBuf> {
    let q = qemu_binary();
    if let Some(want) = std::env::var_os("TEAMVIRT_EXPECT_QEMU") {
        let got = q.as_ref().and_then(|q| q.canonicalize().ok());
        let want = Path::new(&want).canonicalize().ok();
        assert!(
            got.is_some() && got == want,
            "{test}: TEAMVIRT_EXPECT_QEMU={want:?} but the QEMU found is {got:?}"
        );
    }
    if q.is_none() {
        eprintln!(
            "skipping {test}: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86, or set TEAMVIRT_QEMU)"
        );
    }
    q
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
