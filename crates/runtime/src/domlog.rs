//! The per-domain log (`log/NAME.log`).
//!
//! The per-domain log, like libvirt's `/var/log/libvirt/qemu/NAME.log`:
//! `log/NAME.log` under the state directory holds, for every run of the
//! domain, a line per lifecycle event written by teamvirt (start, stop,
//! crash with its cause, migration in/out, VF bound/released), the QEMU
//! command line, and QEMU's own stderr (QEMU writes there directly).
//!
//! teamvirt has no daemon, so this file is what an operator has when
//! something went wrong while nobody watched. It is capped: past
//! [`LOG_CAP`] it is rotated once (`NAME.log.1` keeps the previous part).
//! Writing it never fails an operation: a log that cannot be written is
//! reported in the trace and otherwise ignored.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use teamvirt_host::state::StateDir;

/// Size past which the log is rotated (once: `NAME.log.1`).
pub const LOG_CAP: u64 = 1 << 20;

/// `log/NAME.log` of a domain (the directory is created by the state dir).
pub fn path(sd: &StateDir, name: &str) -> PathBuf {
    sd.domain_log(name)
}

/// Move `log` to `log.1` (replacing an older one) once it is past `cap`.
pub fn rotate(log: &Path, cap: u64) {
    let Ok(meta) = std::fs::symlink_metadata(log) else {
        return;
    };
    if meta.is_file() && meta.len() > cap {
        let mut old = log.as_os_str().to_owned();
        old.push(".1");
        if let Err(e) = std::fs::rename(log, &old) {
            tracing::warn!(log = %log.display(), "cannot rotate domain log: {e}");
        }
    }
}

/// The time as libvirt's logs print it: `2026-11-30 23:50:01.123+0000`.
pub fn timestamp(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_millis(t).to_string();
    // 2026-11-30T23:50:01.123Z
    format!("{}+0000", s.replacen('T', " ", 1).trim_end_matches('Z'))
}

/// Append `line` (one event) with a timestamp to the domain's log.
pub fn event(sd: &StateDir, name: &str, line: &str) {
    append(&path(sd, name), line);
}

/// [`event`] on a log path. Control characters in `line` are escaped
/// (`\n` as `\\n`, `\r`, ESC, C1, bidi overrides): text from a definition or
/// a peer cannot start a forged line ("shutting down, reason=destroyed"),
/// hide text with `\r` or drive the terminal of whoever reads the log.
pub fn append(log: &Path, line: &str) {
    let line = &teamvirt_host::escape::escape_controls(line);
    rotate(log, LOG_CAP);
    write_line(log, &format!("{}: {line}\n", timestamp(SystemTime::now())));
    tracing::info!(log = %log.display(), "{line}");
}

/// Append `text` as is, never following a link or blocking on a FIFO.
fn write_line(log: &Path, text: &str) {
    let res = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(log)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = res {
        tracing::warn!(log = %log.display(), "cannot write the domain log: {e}");
    }
}

/// Append one line without a timestamp (the QEMU command line), its
/// control characters escaped as [`append`] does (a `\n` inside it too),
/// then a line end. Never follows a link or blocks on a FIFO.
pub fn append_untimed(log: &Path, line: &str) {
    let mut out = teamvirt_host::escape::escape_controls(line.strip_suffix('\n').unwrap_or(line));
    out.push('\n');
    write_line(log, &out);
}

/// The last `max` bytes of a domain log (lossy UTF-8; empty when there
/// is none). Never follows a link or blocks on a FIFO.
pub fn tail(log: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(log)
    else {
        return String::new();
    };
    let Ok(meta) = f.metadata() else {
        return String::new();
    };
    if !meta.is_file()
        || f.seek(SeekFrom::Start(meta.len().saturating_sub(max)))
            .is_err()
    {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.take(max).read_to_end(&mut buf).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// How the QEMU process `pid` ended, as its reaper wrote it into the log
/// (see `process::spawn_detached`): e.g. `killed by signal 9 (SIGKILL)`.
pub fn exit_cause(log: &Path, pid: i32) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    // The reaper's line is among the last QEMU and teamvirt wrote.
    f.seek(SeekFrom::Start(len.saturating_sub(64 << 10))).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    let tail = String::from_utf8_lossy(&tail);
    let needle = format!("qemu process {pid} ");
    tail.lines().rev().find_map(|l| {
        l.split_once(&needle)
            .map(|(_, cause)| cause.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_libvirts() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_764_546_601_123);
        assert_eq!(timestamp(t), "2025-11-30 23:50:01.123+0000");
    }

    /// A line with `\n`, `\r` or escape sequences stays one line, escaped.
    #[test]
    fn events_cannot_forge_lines() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("vm.log");
        append(
            &log,
            "lab mode: x\n2026-01-01 00:00:00.000+0000: shutting down, reason=destroyed\rhidden\x1b]0;t\x07\u{9b}\u{202e}",
        );
        let s = std::fs::read_to_string(&log).unwrap();
        assert_eq!(s.lines().count(), 1, "{s:?}");
        assert!(
            !s.trim_end_matches('\n').chars().any(|c| c.is_control()),
            "{s:?}"
        );
        assert!(
            s.ends_with(": lab mode: x\\n2026-01-01 00:00:00.000+0000: shutting down, reason=destroyed\\rhidden\\x1b]0;t\\x07\\x9b\\u{202e}\n"),
            "{s:?}"
        );
    }

    #[test]
    fn raw_lines_are_escaped_inside() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("vm.log");
        append_untimed(&log, "qemu -append 'console=ttyS0\nX: shutting down'\n");
        let s = std::fs::read_to_string(&log).unwrap();
        assert_eq!(s, "qemu -append 'console=ttyS0\\nX: shutting down'\n");
    }

    #[test]
    fn events_append_and_rotate_once() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("vm.log");
        append(&log, "starting up");
        append(&log, "shutting down, reason=destroyed");
        let s = std::fs::read_to_string(&log).unwrap();
        assert_eq!(s.lines().count(), 2);
        assert!(s
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(": shutting down, reason=destroyed"));
        // Past the cap, the next write starts a fresh file; the old part is .1.
        std::fs::write(&log, vec![b'x'; (LOG_CAP + 1) as usize]).unwrap();
        append(&log, "starting up");
        assert!(std::fs::read_to_string(&log)
            .unwrap()
            .ends_with(": starting up\n"));
        assert_eq!(
            std::fs::metadata(t.path().join("vm.log.1")).unwrap().len(),
            LOG_CAP + 1
        );
        // Rotated once: a second rotation replaces .1, no .2 appears.
        std::fs::write(&log, vec![b'y'; (LOG_CAP + 1) as usize]).unwrap();
        append(&log, "again");
        assert!(!t.path().join("vm.log.2").exists());
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 2);
    }

    #[test]
    fn symlinked_log_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let log = t.path().join("vm.log");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        append(&log, "starting up");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn exit_cause_is_found_for_its_pid() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("vm.log");
        std::fs::write(
            &log,
            "x: teamvirt: qemu process 11 exited with status 0\n\
             qemu-system-x86_64: terminating on signal 15\n\
             x: teamvirt: qemu process 12 killed by signal 9 (SIGKILL)\n",
        )
        .unwrap();
        assert_eq!(
            exit_cause(&log, 12).unwrap(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(exit_cause(&log, 11).unwrap(), "exited with status 0");
        assert_eq!(exit_cause(&log, 13), None);
    }
}
