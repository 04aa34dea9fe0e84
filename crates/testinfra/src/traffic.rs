//! Traffic through a migration as the network sees it: a peer in a test
//! namespace pinging the guest at 100 packets per second (`ping -D -i
//! 0.01`), every reply stamped; figures for a time window (packets lost,
//! longest gap between replies); the guest's own per-interface counters
//! (`E2E CNT` lines of guest/init with `e2e.ip=`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Netns;

/// Now, in seconds since the epoch (the clock `ping -D` stamps with).
pub fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A running `ping -D -i 0.01` from inside a namespace.
pub struct Pinger {
    child: Child,
    replies: Arc<Mutex<Vec<(f64, u64)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub started: f64,
}

/// Packets lost and the longest silence in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub from: f64,
    pub to: f64,
    /// Echo requests sent in the window (by sequence number span).
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    /// Longest time without a reply, seconds (window edges count).
    pub longest_gap: f64,
    /// When that gap began (epoch).
    pub gap_at: f64,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} packets lost, longest gap {:.0} ms",
            self.lost,
            self.sent,
            self.longest_gap * 1000.0
        )
    }
}

impl Pinger {
    /// Ping `addr` from namespace `ns` at 100 pps.
    pub fn start(ns: &Netns, addr: &str) -> Pinger {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "ping", "-D", "-n", "-i", "0.01"])
            .args(["-W", "1", addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping runs (iputils-ping)");
        let out = child.stdout.take().expect("piped");
        let replies = Arc::new(Mutex::new(Vec::new()));
        let r = replies.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(x) = parse_reply(&line) {
                    r.lock().unwrap().push(x);
                }
            }
        });
        Pinger {
            child,
            replies,
            reader: Some(reader),
            started: epoch(),
        }
    }

    /// Replies so far: (epoch, icmp_seq).
    pub fn replies(&self) -> Vec<(f64, u64)> {
        self.replies.lock().unwrap().clone()
    }

    /// Figures for `[from, to]`.
    pub fn window(&self, from: f64, to: f64) -> Window {
        window(&self.replies(), from, to)
    }

    /// Replies received after `t`.
    pub fn replies_after(&self, t: f64) -> usize {
        self.replies().iter().filter(|r| r.0 > t).count()
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        // SIGINT: ping prints its summary and exits.
        // SAFETY: kill(2) takes plain integers and touches none of our memory;
        // the child is not reaped yet, so its pid cannot name another process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// `[1700000000.123456] 64 bytes from 10.0.0.2: icmp_seq=12 ttl=64 ...`
pub fn parse_reply(line: &str) -> Option<(f64, u64)> {
    let t = line.strip_prefix('[')?.split(']').next()?.parse().ok()?;
    let seq = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("icmp_seq="))?
        .parse()
        .ok()?;
    Some((t, seq))
}

/// Figures of `replies` in `[from, to]`: requests are sent every 10 ms,
/// so the sequence numbers between the first reply before the window and
/// the last one in it tell how many were sent.
pub fn window(replies: &[(f64, u64)], from: f64, to: f64) -> Window {
    let inside: Vec<&(f64, u64)> = replies
        .iter()
        .filter(|r| r.0 >= from && r.0 <= to)
        .collect();
    let mut seqs: Vec<u64> = inside.iter().map(|r| r.1).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let sent = match (seqs.first(), seqs.last()) {
        (Some(a), Some(b)) => b - a + 1,
        _ => ((to - from) / 0.01) as u64,
    };
    let mut times: Vec<f64> = inside.iter().map(|r| r.0).collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut edges = vec![from];
    edges.extend(&times);
    edges.push(to);
    let (mut gap, mut at) = (0.0, from);
    for w in edges.windows(2) {
        if w[1] - w[0] > gap {
            gap = w[1] - w[0];
            at = w[0];
        }
    }
    Window {
        from,
        to,
        sent,
        received: seqs.len() as u64,
        lost: sent.saturating_sub(seqs.len() as u64),
        longest_gap: gap,
        gap_at: at,
    }
}

/// Every silence longer than `min` seconds in `[from, to]`: (start, length).
pub fn gaps(replies: &[(f64, u64)], from: f64, to: f64, min: f64) -> Vec<(f64, f64)> {
    let mut times: Vec<f64> = replies
        .iter()
        .map(|r| r.0)
        .filter(|t| *t >= from && *t <= to)
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut edges = vec![from];
    edges.extend(times);
    edges.push(to);
    edges
        .windows(2)
        .filter(|w| w[1] - w[0] > min)
        .map(|w| (w[0], w[1] - w[0]))
        .collect()
}

/// The guest's counters from one `E2E CNT` line: interface -> (rx, tx,
/// master).
#[derive(Debug, Clone, PartialEq)]
pub struct GuestCounters {
    pub uptime: f64,
    pub ifs: BTreeMap<String, (u64, u64, Option<String>)>,
}

impl GuestCounters {
    /// Parse `E2E CNT up=1.2 eth0=5:6 eth1=1:2:eth0 END`.
    pub fn parse(line: &str) -> Option<GuestCounters> {
        let rest = &line[line.find("E2E CNT ")? + 8..];
        let rest = rest.trim_end().strip_suffix("END")?;
        let mut it = rest.split_whitespace();
        let uptime = it.next()?.strip_prefix("up=")?.parse().ok()?;
        let mut ifs = BTreeMap::new();
        for tok in it {
            let (name, v) = tok.split_once('=')?;
            let mut p = v.split(':');
            let rx = p.next()?.parse().ok()?;
            let tx = p.next()?.parse().ok()?;
            ifs.insert(name.to_string(), (rx, tx, p.next().map(str::to_owned)));
        }
        Some(GuestCounters { uptime, ifs })
    }

    /// Every counter line in `lines`.
    pub fn all(lines: &[String]) -> Vec<GuestCounters> {
        lines
            .iter()
            .filter_map(|l| GuestCounters::parse(l))
            .collect()
    }

    /// Transmitted packets of `name` (0 when absent).
    pub fn tx(&self, name: &str) -> u64 {
        self.ifs.get(name).map_or(0, |c| c.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_and_windows() {
        let l = "[1700000000.500000] 64 bytes from 10.77.0.2: icmp_seq=7 ttl=64 time=0.4 ms";
        assert_eq!(parse_reply(l), Some((1700000000.5, 7)));
        assert_eq!(parse_reply("PING 10.77.0.2 (10.77.0.2) 56(84) bytes"), None);
        let r = vec![(10.00, 1), (10.01, 2), (10.50, 52), (10.51, 53)];
        let w = window(&r, 10.0, 10.51);
        assert_eq!((w.sent, w.received, w.lost), (53, 4, 49));
        assert!((w.longest_gap - 0.49).abs() < 1e-9 && w.gap_at == 10.01);
    }

    #[test]
    fn counter_lines() {
        let c = GuestCounters::parse("x E2E CNT up=3.5 eth0=10:11 eth1=4:5:eth0 END").unwrap();
        assert_eq!(c.uptime, 3.5);
        assert_eq!(c.ifs["eth1"], (4, 5, Some("eth0".into())));
        assert_eq!(c.tx("eth0"), 11);
        assert!(GuestCounters::parse("E2E CNT up=3.5 eth0=10").is_none());
    }
}
