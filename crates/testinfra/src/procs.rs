//! A test's processes in `/proc`. QEMU run as the QEMU user names
//! descriptors, not the state directory's paths: what still ties it to a
//! test is its output, the domain log under the test's directory (which
//! its reaper writes: QEMU's own stdout is a pipe to the reaper).

/// Does process `pid` name `needle` in its command line, or write its
/// stdout to a path containing it (itself, or, for a QEMU, whose output
/// is a pipe to its reaper, through the reaper)?
pub fn mentions(pid: u32, needle: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle));
    let stdout_names = |pid: u32| {
        std::fs::read_link(format!("/proc/{pid}/fd/1"))
            .is_ok_and(|l| l.to_string_lossy().contains(needle))
    };
    cmdline || stdout_names(pid) || parent(pid).is_some_and(|p| is_reaper(p) && stdout_names(p))
}

/// The parent of process `pid`.
pub fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A `teamvirt-reaper`: each QEMU's parent, which logs how it ended; not
/// a VM.
pub fn is_reaper(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.trim() == "teamvirt-reaper")
}

/// The pids in `/proc`.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|d| d.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
