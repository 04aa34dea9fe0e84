//! `domstate --reason`: why a domain is in its state, in virsh's words
//! (`running (booted)`, `paused (user)`, `shut off (destroyed)`).
//!
//! teamvirt has no daemon keeping a reason in memory as libvirtd does; the
//! domain log ([`crate::domlog`]) has a timestamped line for every
//! lifecycle event, so the reason is the last such line of the current run
//! (for a shut-off domain: of the last stop). Only lines teamvirt wrote
//! count (`YYYY-MM-DD HH:MM:SS.mmm+0000: ` then the event); QEMU's own
//! stderr in the same file is skipped.

use serde::Serialize;

/// A domain's state as virsh names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainState {
    Running,
    Paused,
    ShutOff,
    /// Running, but its monitor is held by another teamvirt right now.
    Busy,
    /// Its QEMU runs but does not answer (stopped with SIGSTOP).
    NotResponding,
    /// Its run record cannot be read: the state is unknown (see
    /// `domain::DomainSummary::problem`); `destroy --force` settles it.
    Damaged,
}

impl std::fmt::Display for DomainState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DomainState::Running => "running",
            DomainState::Paused => "paused",
            DomainState::ShutOff => "shut off",
            DomainState::Busy => "running (monitor busy)",
            DomainState::NotResponding => "running (not responding)",
            DomainState::Damaged => "damaged",
        })
    }
}

/// The lifecycle event of one teamvirt log line, if it is one.
fn event(line: &str) -> Option<&str> {
    // `2026-11-30 23:50:01.123+0000: text`
    let (ts, rest) = line.split_at_checked(30)?;
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shaped = digits(0..4)
        && b[4] == b'-'
        && b[10] == b' '
        && b[19] == b'.'
        && ts.ends_with("+0000: ")
        && digits(20..23);
    shaped.then_some(rest)
}

/// virsh's reason text for `state`, from the domain log's text.
pub fn from_log(state: &DomainState, log: &str) -> &'static str {
    let events: Vec<&str> = log.lines().filter_map(event).collect();
    // The current run (or the last one, for a domain shut off) starts at
    // the last "starting up".
    let start = events
        .iter()
        .rposition(|e| e.starts_with("starting up teamvirt"));
    let run = &events[start.unwrap_or(0)..];
    match state {
        DomainState::ShutOff => {
            let Some(start) = start else {
                return "unknown";
            };
            for e in events[start..].iter().rev() {
                if let Some(r) = e.strip_prefix("shutting down, reason=") {
                    let r = r.split(':').next().unwrap_or("");
                    return match r {
                        "destroyed" => "destroyed",
                        "shutdown" => "shutdown",
                        "crashed" => "crashed",
                        "migrated" => "migrated",
                        _ => "unknown",
                    };
                }
            }
            "unknown"
        }
        DomainState::Running | DomainState::Busy | DomainState::NotResponding => {
            for e in run.iter().rev() {
                if *e == "resumed" {
                    return "unpaused";
                }
                if e.starts_with("migration in: completed") {
                    return "migrated";
                }
                if e.starts_with("migration out rollback") {
                    return "migration canceled";
                }
                if e.starts_with("starting up teamvirt") {
                    return if e.ends_with("(incoming migration)") {
                        "migrated"
                    } else {
                        "booted"
                    };
                }
            }
            "unknown"
        }
        DomainState::Paused => {
            for e in run.iter().rev() {
                if *e == "suspended" {
                    return "user";
                }
                if e.starts_with("migration out:") {
                    return "migrating";
                }
                if e.starts_with("starting up teamvirt") {
                    return if e.ends_with("(incoming migration)") {
                        "migrating"
                    } else if e.ends_with("(paused)") {
                        "user"
                    } else {
                        "unknown"
                    };
                }
                if *e == "resumed" {
                    break;
                }
            }
            "unknown"
        }
        DomainState::Damaged => "unknown",
    }
}

/// virsh's reason for a paused domain from QEMU's own run state
/// (`query-status`), for a pause no log line explains (QEMU stopped the
/// vCPUs itself: a disk error, a watchdog, a guest panic).
pub fn paused_by_qemu(status: &str) -> &'static str {
    match status {
        "io-error" => "I/O error",
        "watchdog" => "watchdog",
        "guest-panicked" => "crashed",
        "inmigrate" | "postmigrate" | "finish-migrate" => "migrating",
        "prelaunch" => "starting up",
        "paused" | "debug" => "user",
        "shutdown" => "shutting down",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-11-30 23:50:01.123+0000: ";

    fn log(lines: &[&str]) -> String {
        lines
            .iter()
            .map(|l| match l.strip_prefix('!') {
                Some(raw) => format!("{raw}\n"),
                None => format!("{TS}{l}\n"),
            })
            .collect()
    }

    #[test]
    fn shut_off_reasons() {
        assert_eq!(from_log(&DomainState::ShutOff, ""), "unknown");
        let l = log(&[
            "starting up teamvirt 0.1.0",
            "!qemu: shutting down, reason=crashed",
            "shutting down, reason=destroyed",
        ]);
        assert_eq!(from_log(&DomainState::ShutOff, &l), "destroyed");
        let l = log(&[
            "starting up teamvirt 0.1.0",
            "shutting down, reason=crashed: qemu process 12 killed by signal 9",
        ]);
        assert_eq!(from_log(&DomainState::ShutOff, &l), "crashed");
        let l = log(&[
            "starting up teamvirt 0.1.0",
            "shutting down, reason=migrated",
        ]);
        assert_eq!(from_log(&DomainState::ShutOff, &l), "migrated");
    }

    #[test]
    fn paused_by_qemu_itself() {
        assert_eq!(paused_by_qemu("io-error"), "I/O error");
        assert_eq!(paused_by_qemu("postmigrate"), "migrating");
        assert_eq!(paused_by_qemu("something-new"), "unknown");
    }

    #[test]
    fn running_and_paused_reasons() {
        let l = log(&["starting up teamvirt 0.1.0"]);
        assert_eq!(from_log(&DomainState::Running, &l), "booted");
        let l = log(&["starting up teamvirt 0.1.0", "suspended"]);
        assert_eq!(from_log(&DomainState::Paused, &l), "user");
        let l = log(&["starting up teamvirt 0.1.0", "suspended", "resumed"]);
        assert_eq!(from_log(&DomainState::Running, &l), "unpaused");
        let l = log(&["starting up teamvirt 0.1.0 (paused)"]);
        assert_eq!(from_log(&DomainState::Paused, &l), "user");
        let l = log(&[
            "starting up teamvirt 0.1.0 (incoming migration)",
            "migration in: completed, guest running",
        ]);
        assert_eq!(from_log(&DomainState::Running, &l), "migrated");
        // An earlier run's events do not count.
        let l = log(&[
            "starting up teamvirt 0.1.0",
            "suspended",
            "shutting down, reason=destroyed",
            "starting up teamvirt 0.1.0",
        ]);
        assert_eq!(from_log(&DomainState::Running, &l), "booted");
    }
}
