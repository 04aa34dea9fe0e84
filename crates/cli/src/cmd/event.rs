//! `event [--loop] [--domain NAME] [--timeout SECS]`: domain events as they
//! happen, in virsh's words (`event 'lifecycle' for domain 'X': Started
//! Booted`).
//!
//! teamvirt has no daemon to broadcast events, so this watches what every
//! command leaves behind: lifecycle events are the timestamped lines the
//! domain logs get (the lines `domstate --reason` reads), definitions come
//! and go in the state directory, and failover events come from asking
//! each running domain's QEMU for its pairs every two seconds (on a thread
//! of its own, so a monitor busy with a migration delays only those).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use teamvirt_runtime::{DomainState, Runtime};

use crate::cmd::args::{StateOpt, MAX_WAIT_SECS};
use crate::cmd::report::report;
use crate::out::outln;

/// Set by SIGINT: the loop ends and says how many events it printed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Which events to print (virsh's `--event`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Started, suspended, resumed, stopped, defined, undefined.
    Lifecycle,
    /// A reset of the guest (`reboot`).
    Reboot,
    /// teamvirt's: a pair negotiated, its primary plugged or unplugged.
    Failover,
}

impl EventKind {
    fn name(self) -> &'static str {
        match self {
            EventKind::Lifecycle => "lifecycle",
            EventKind::Reboot => "reboot",
            EventKind::Failover => "failover",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct EventArgs {
    /// Only events of this domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Only events of this kind (default: all).
    #[arg(long, value_enum)]
    pub event: Option<EventKind>,
    /// All kinds (virsh's --all; the default).
    #[arg(long, conflicts_with = "event")]
    pub all: bool,
    /// Keep printing events until Ctrl-C or --timeout (else stop after
    /// the first).
    #[arg(long = "loop")]
    pub loop_: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_WAIT_SECS))]
    pub timeout: Option<u64>,
    /// Print each event's time first.
    #[arg(long)]
    pub timestamp: bool,
    /// List the event kinds and exit.
    #[arg(long)]
    pub list: bool,
    /// Print JSON instead of text: one object per event, a line each.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub domain: String,
    /// `Started Booted`, `negotiated ua-standby0/hostdev0`, ...
    pub detail: String,
}

/// The events one domain log line (without its timestamp) stands for.
pub fn from_log_line(domain: &str, line: &str) -> Vec<Event> {
    let life = |d: &str| Event {
        kind: EventKind::Lifecycle,
        domain: domain.to_owned(),
        detail: d.to_owned(),
    };
    if let Some(rest) = line.strip_prefix("starting up teamvirt ") {
        return if rest.ends_with("(incoming migration)") {
            vec![life("Started Migrated")]
        } else if rest.ends_with("(paused)") {
            vec![life("Started Booted"), life("Suspended Paused")]
        } else {
            vec![life("Started Booted")]
        };
    }
    if let Some(r) = line.strip_prefix("shutting down, reason=") {
        let d = match r.split(':').next().unwrap_or("") {
            "destroyed" => "Stopped Destroyed",
            "shutdown" => "Stopped Shutdown",
            "crashed" => "Stopped Crashed",
            "migrated" => "Stopped Migrated",
            _ => "Stopped Failed",
        };
        return vec![life(d)];
    }
    match line {
        "suspended" => vec![life("Suspended Paused")],
        "resumed" => vec![life("Resumed Unpaused")],
        "reboot (system_reset)" => vec![Event {
            kind: EventKind::Reboot,
            domain: domain.to_owned(),
            detail: String::new(),
        }],
        _ if line.starts_with("migration in: completed") => vec![life("Resumed Migrated")],
        _ if line.starts_with("migration out: wait-unplug") => vec![Event {
            kind: EventKind::Failover,
            domain: domain.to_owned(),
            detail: "primaries being unplugged for a migration".into(),
        }],
        _ => Vec::new(),
    }
}

/// The text after a log line's `YYYY-MM-DD HH:MM:SS.mmm+0000: `, for lines
/// teamvirt wrote (QEMU's own output in the same file has none).
fn untimed(line: &str) -> Option<&str> {
    let (ts, rest) = line.split_at_checked(30)?;
    let b = ts.as_bytes();
    let shaped = b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b' '
        && b[19] == b'.'
        && ts.ends_with("+0000: ");
    shaped.then_some(rest)
}

/// virsh's line for `e`.
pub fn render(e: &Event) -> String {
    if e.detail.is_empty() {
        format!("event '{}' for domain '{}'", e.kind.name(), e.domain)
    } else {
        format!(
            "event '{}' for domain '{}': {}",
            e.kind.name(),
            e.domain,
            e.detail
        )
    }
}

/// Printing, counting, and the stop after the first event without --loop.
struct Sink {
    only: Option<EventKind>,
    domain: Option<String>,
    json: bool,
    timestamp: bool,
    count: AtomicUsize,
    done: AtomicBool,
    once: bool,
    lock: std::sync::Mutex<()>,
}

impl Sink {
    fn emit(&self, e: Event) {
        if self.only.is_some_and(|k| k != e.kind)
            || self.domain.as_deref().is_some_and(|d| d != e.domain)
        {
            return;
        }
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.once && self.done.load(Ordering::Relaxed) {
            return;
        }
        let now = teamvirt_runtime::domlog::timestamp(SystemTime::now());
        if self.json {
            let v = serde_json::json!({
                "event": e.kind.name(),
                "domain": e.domain,
                "detail": e.detail,
                "time": now,
            });
            outln!("{v}");
        } else if self.timestamp {
            outln!("{now}: {}", render(&e));
        } else {
            outln!("{}", render(&e));
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        if self.once {
            self.done.store(true, Ordering::Relaxed);
        }
    }
}

/// Where each domain log was read up to.
fn log_sizes(rt: &Runtime) -> BTreeMap<String, u64> {
    let dir = rt.state_dir().log_dir();
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(dom) = n.strip_suffix(".log") {
            m.insert(dom.to_owned(), e.metadata().map(|m| m.len()).unwrap_or(0));
        }
    }
    m
}

/// New complete lines of `dom`'s log since `from` (a rotated log is read
/// from its start); returns them and the new offset.
fn new_lines(rt: &Runtime, dom: &str, from: u64) -> (Vec<String>, u64) {
    let path = rt.state_dir().domain_log(dom);
    let Ok(mut f) = std::fs::File::open(&path) else {
        return (Vec::new(), from);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = if len < from { 0 } else { from };
    // At most 1 MiB per look (the log's cap): a huge jump is skipped.
    let start = from.max(len.saturating_sub(1 << 20));
    if f.seek(SeekFrom::Start(start)).is_err() {
        return (Vec::new(), from);
    }
    let mut buf = Vec::new();
    if f.take(len - start).read_to_end(&mut buf).is_err() {
        return (Vec::new(), from);
    }
    // Only whole lines: the rest is read next time.
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&buf[..end]);
    let lines = text.lines().map(str::to_owned).collect();
    (lines, start + end as u64)
}

/// The defined domains, or `last` when they cannot be listed right now: a
/// failed listing is not "every domain was undefined" (it made a spurious
/// Undefined/Defined pair, or hid a definition until the next success).
fn defined(rt: &Runtime, last: &BTreeSet<String>) -> BTreeSet<String> {
    match rt.state_dir().defined_domains() {
        Ok(v) => v.into_iter().collect(),
        Err(_) => last.clone(),
    }
}

/// Per running domain, per pair (standby), (negotiated, plugged).
type PairView = BTreeMap<String, BTreeMap<String, (bool, bool, String)>>;

fn pair_view(rt: &Runtime, only: Option<&str>) -> PairView {
    let mut v = PairView::new();
    let doms = crate::block_on(rt.list_domains(false)).unwrap_or_default();
    for d in doms.iter().filter(|d| d.state == DomainState::Running) {
        if only.is_some_and(|o| o != d.name) {
            continue;
        }
        let Ok(states) = crate::block_on(rt.teaming(&d.name)) else {
            continue;
        };
        let m = states
            .into_iter()
            .map(|s| {
                (
                    s.pair.standby.clone(),
                    (s.negotiated, s.plugged, s.pair.primary.clone()),
                )
            })
            .collect();
        v.insert(d.name.clone(), m);
    }
    v
}

/// Failover events between two looks at the pairs.
pub fn pair_changes(before: &PairView, after: &PairView) -> Vec<Event> {
    let mut out = Vec::new();
    for (dom, pairs) in after {
        for (standby, (neg, plugged, primary)) in pairs {
            let (was_neg, was_plugged) = before
                .get(dom)
                .and_then(|p| p.get(standby))
                .map_or((false, false), |(n, p, _)| (*n, *p));
            let ev = |detail: String| Event {
                kind: EventKind::Failover,
                domain: dom.clone(),
                detail,
            };
            if *neg && !was_neg {
                out.push(ev(format!("negotiated {standby}/{primary}")));
            }
            if *plugged && !was_plugged {
                out.push(ev(format!("primary {primary} plugged")));
            }
            if !*plugged && was_plugged {
                out.push(ev(format!("primary {primary} unplugged")));
            }
        }
    }
    out
}

pub fn run(a: EventArgs) -> ExitCode {
    if a.list {
        for k in ["lifecycle", "reboot", "failover"] {
            outln!("{k}");
        }
        return ExitCode::SUCCESS;
    }
    let rt = match a.state.open() {
        Ok(rt) => rt,
        Err(e) => return report("failed to watch events", &e),
    };
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
    let sink = Arc::new(Sink {
        only: a.event,
        domain: a.domain.clone(),
        json: a.json,
        timestamp: a.timestamp,
        count: AtomicUsize::new(0),
        done: AtomicBool::new(false),
        once: !a.loop_,
        lock: std::sync::Mutex::new(()),
    });
    let deadline = a.timeout.map(|s| Instant::now() + Duration::from_secs(s));
    let stop = Arc::new(AtomicBool::new(false));
    let failover = (a.event.is_none() || a.event == Some(EventKind::Failover)).then(|| {
        let (sink, stop, state, dom) = (
            sink.clone(),
            stop.clone(),
            a.state.clone(),
            a.domain.clone(),
        );
        std::thread::spawn(move || {
            let Ok(rt) = state.open() else { return };
            let mut seen = pair_view(&rt, dom.as_deref());
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let now = pair_view(&rt, dom.as_deref());
                for e in pair_changes(&seen, &now) {
                    sink.emit(e);
                }
                seen = now;
            }
        })
    });
    let mut offsets = log_sizes(&rt);
    let mut defs = defined(&rt, &BTreeSet::new());
    // From here on nothing is missed: said on stderr for whoever waits
    // to drive the domains (a script, the tests).
    eprintln!("watching events (Ctrl-C stops)");
    let timed_out = loop {
        if INTERRUPTED.load(Ordering::Relaxed) || sink.done.load(Ordering::Relaxed) {
            break false;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break true;
        }
        std::thread::sleep(Duration::from_millis(200));
        let now_defs = defined(&rt, &defs);
        for d in now_defs.difference(&defs) {
            sink.emit(Event {
                kind: EventKind::Lifecycle,
                domain: d.clone(),
                detail: "Defined Added".into(),
            });
        }
        let doms: BTreeSet<String> = log_sizes(&rt)
            .into_keys()
            .chain(offsets.keys().cloned())
            .collect();
        for dom in doms {
            let from = offsets.get(&dom).copied().unwrap_or(0);
            let (lines, to) = new_lines(&rt, &dom, from);
            offsets.insert(dom.clone(), to);
            for l in lines.iter().filter_map(|l| untimed(l)) {
                for e in from_log_line(&dom, l) {
                    sink.emit(e);
                }
            }
        }
        for d in defs.difference(&now_defs) {
            sink.emit(Event {
                kind: EventKind::Lifecycle,
                domain: d.clone(),
                detail: "Undefined Removed".into(),
            });
        }
        defs = now_defs;
    };
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = failover {
        let _ = t.join();
    }
    if timed_out {
        outln!("event loop timed out");
    }
    outln!("events received: {}", sink.count.load(Ordering::Relaxed));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_as_virsh_events() {
        let d = |l: &str| {
            from_log_line("vm", l)
                .iter()
                .map(render)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            d("starting up teamvirt 0.1.0"),
            ["event 'lifecycle' for domain 'vm': Started Booted"]
        );
        assert_eq!(
            d("starting up teamvirt 0.1.0 (paused)"),
            [
                "event 'lifecycle' for domain 'vm': Started Booted",
                "event 'lifecycle' for domain 'vm': Suspended Paused"
            ]
        );
        assert_eq!(
            d("shutting down, reason=crashed: qemu process 12 killed by signal 9"),
            ["event 'lifecycle' for domain 'vm': Stopped Crashed"]
        );
        assert_eq!(
            d("reboot (system_reset)"),
            ["event 'reboot' for domain 'vm'"]
        );
        assert!(d("VF 0000:3b:02.1 of network 'pool' bound to device hostdev0").is_empty());
        assert_eq!(
            untimed("2026-11-30 23:50:01.123+0000: resumed"),
            Some("resumed")
        );
        assert_eq!(untimed("qemu: 2026-11-30 23:50:01.123+0000: resumed"), None);
    }

    #[test]
    fn pair_changes_are_failover_events() {
        let view = |neg, plugged| {
            let mut p = BTreeMap::new();
            p.insert("ua-sb".to_string(), (neg, plugged, "hostdev0".to_string()));
            let mut v = PairView::new();
            v.insert("vm".to_string(), p);
            v
        };
        let r =
            |a: &PairView, b: &PairView| pair_changes(a, b).iter().map(render).collect::<Vec<_>>();
        assert_eq!(
            r(&view(false, false), &view(true, true)),
            [
                "event 'failover' for domain 'vm': negotiated ua-sb/hostdev0",
                "event 'failover' for domain 'vm': primary hostdev0 plugged"
            ]
        );
        assert_eq!(
            r(&view(true, true), &view(true, false)),
            ["event 'failover' for domain 'vm': primary hostdev0 unplugged"]
        );
        assert!(r(&view(true, true), &view(true, true)).is_empty());
    }
}
