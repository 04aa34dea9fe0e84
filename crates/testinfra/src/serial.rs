//! Reading the test guest's serial console (`-serial file:PATH`): the
//! `E2E STATE` lines its init prints (see `guest/init`) parsed into
//! [`GuestState`], and waits with timeouts.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One network interface of the guest (loopback excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNetIf {
    pub name: String,
    pub mac: String,
    /// sysfs operstate: `up`, `down`, `unknown`, ...
    pub oper: String,
    /// The net_failover master this interface is enslaved to.
    pub master: Option<String>,
    /// Kernel driver of the underlying device (`virtio_net`, `vmxnet3`, `e1000e`).
    /// A net_failover master reports its standby's driver (same parent).
    pub driver: Option<String>,
    /// PCI address of the underlying device.
    pub pci: Option<String>,
    /// Lower (slave) interfaces; non-empty only on a failover master.
    pub lower: Vec<String>,
}

/// A PCI device off the root bus (i.e. behind a root port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPciDev {
    pub address: String,
    pub vendor: String,
    pub device: String,
}

/// The guest network state from one `E2E STATE` line.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestState {
    /// Guest uptime in seconds when the line was printed.
    pub uptime: f64,
    pub interfaces: Vec<GuestNetIf>,
    pub pci: Vec<GuestPciDev>,
    /// The line as printed.
    pub raw: String,
}

/// A failover master with its slaves, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverGroup {
    pub master: GuestNetIf,
    /// The virtio-net slave (`drv=virtio_net`).
    pub standby: Option<GuestNetIf>,
    /// The other slaves (the PCI primary, e.g. vmxnet3 or e1000e).
    pub primaries: Vec<GuestNetIf>,
}

impl GuestState {
    /// Parse an `E2E STATE ... END` line; `None` if it is not one or is
    /// damaged (e.g. split by a kernel message).
    pub fn parse(line: &str) -> Option<GuestState> {
        let start = line.find("E2E STATE ")?;
        let body = line[start + "E2E STATE ".len()..].trim_end();
        let body = body.strip_suffix(" END")?;
        let mut toks = body.split_whitespace();
        let uptime = toks.next()?.strip_prefix("up=")?.parse().ok()?;
        if toks.next()? != "net:" {
            return None;
        }
        let mut interfaces = Vec::new();
        let mut pci = Vec::new();
        let mut in_pci = false;
        for tok in toks {
            if tok == "pci:" {
                in_pci = true;
            } else if in_pci {
                let (address, id) = tok.split_once('=')?;
                let (vendor, device) = id.split_once(':')?;
                pci.push(GuestPciDev {
                    address: address.into(),
                    vendor: vendor.into(),
                    device: device.into(),
                });
            } else {
                interfaces.push(parse_netif(tok)?);
            }
        }
        if !in_pci {
            return None;
        }
        Some(GuestState {
            uptime,
            interfaces,
            pci,
            raw: line[start..].trim_end().to_owned(),
        })
    }

    pub fn interface(&self, name: &str) -> Option<&GuestNetIf> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// Interfaces enslaved to `master`.
    pub fn slaves_of(&self, master: &str) -> Vec<&GuestNetIf> {
        self.interfaces
            .iter()
            .filter(|i| i.master.as_deref() == Some(master))
            .collect()
    }

    /// Every failover master whose lower links and the slaves' `master`
    /// links agree.
    pub fn failover_groups(&self) -> Vec<FailoverGroup> {
        self.interfaces
            .iter()
            .filter(|m| !m.lower.is_empty())
            .filter_map(|m| {
                let slaves: Vec<&GuestNetIf> = m
                    .lower
                    .iter()
                    .map(|l| self.interface(l))
                    .collect::<Option<_>>()?;
                if slaves.iter().any(|s| s.master.as_deref() != Some(&m.name)) {
                    return None;
                }
                let standby = slaves
                    .iter()
                    .find(|s| s.driver.as_deref() == Some("virtio_net"))
                    .map(|s| (*s).clone());
                let primaries = slaves
                    .iter()
                    .filter(|s| s.driver.as_deref() != Some("virtio_net"))
                    .map(|s| (*s).clone())
                    .collect();
                Some(FailoverGroup {
                    master: m.clone(),
                    standby,
                    primaries,
                })
            })
            .collect()
    }

    /// A failover master with exactly `n_slaves` consistent slaves.
    pub fn failover_master(&self, n_slaves: usize) -> Option<FailoverGroup> {
        self.failover_groups()
            .into_iter()
            .find(|g| g.master.lower.len() == n_slaves)
    }
}

fn parse_netif(tok: &str) -> Option<GuestNetIf> {
    let (name, rest) = tok.split_once('[')?;
    let fields = rest.strip_suffix(']')?;
    let opt = |v: &str| (v != "-").then(|| v.to_owned());
    let mut i = GuestNetIf {
        name: name.into(),
        mac: String::new(),
        oper: String::new(),
        master: None,
        driver: None,
        pci: None,
        lower: Vec::new(),
    };
    for kv in fields.split(',') {
        let (k, v) = kv.split_once('=')?;
        match k {
            "mac" => i.mac = v.into(),
            "oper" => i.oper = v.into(),
            "master" => i.master = opt(v),
            "drv" => i.driver = opt(v),
            "pci" => i.pci = opt(v),
            "lower" if v != "-" => i.lower = v.split('+').map(str::to_owned).collect(),
            // Fields added to the init later are ignored, not fatal.
            _ => {}
        }
    }
    Some(i)
}

/// One address of an `E2E IP6` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestIp6Addr {
    pub ifname: String,
    pub addr: String,
    /// DAD state words `ip -6 addr` shows: tentative, dadfailed, ...
    pub flags: Vec<String>,
}

/// The guest's IPv6 addresses from one `E2E IP6 up=<s> IF=ADDR[:flag]...
/// END` line (guest/init prints one whenever they change).
#[derive(Debug, Clone, PartialEq)]
pub struct GuestIp6 {
    pub uptime: f64,
    pub addrs: Vec<GuestIp6Addr>,
}

impl GuestIp6 {
    /// Parse a line; `None` if it is not one or is damaged.
    pub fn parse(line: &str) -> Option<GuestIp6> {
        let rest = &line[line.find("E2E IP6 up=")? + "E2E IP6 up=".len()..];
        let rest = rest.trim_end().strip_suffix("END")?;
        let mut it = rest.split_whitespace();
        let uptime = it.next()?.parse().ok()?;
        let mut addrs = Vec::new();
        for tok in it {
            let (ifname, v) = tok.split_once('=')?;
            // Flags follow the address, ':'-separated; an address's own
            // groups are hex, never one of these words.
            let mut parts: Vec<&str> = v.split(':').collect();
            let mut flags = Vec::new();
            while let Some(w) = parts.last() {
                if matches!(*w, "tentative" | "dadfailed" | "optimistic" | "deprecated") {
                    flags.insert(0, (*w).to_owned());
                    parts.pop();
                } else {
                    break;
                }
            }
            addrs.push(GuestIp6Addr {
                ifname: ifname.to_owned(),
                addr: parts.join(":"),
                flags,
            });
        }
        Some(GuestIp6 { uptime, addrs })
    }

    /// The link-local address of `ifname`, if it has one.
    pub fn link_local(&self, ifname: &str) -> Option<&GuestIp6Addr> {
        self.addrs
            .iter()
            .find(|a| a.ifname == ifname && a.addr.starts_with("fe80:"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    #[error("timed out after {timeout:?} waiting for {what} on {path}\nlast state: {last_state}\nlast lines:\n{tail}")]
    Timeout {
        what: String,
        timeout: Duration,
        path: PathBuf,
        last_state: String,
        tail: String,
    },
    #[error("guest kernel panicked (waiting for {what} on {path}):\n{tail}")]
    Panicked {
        what: String,
        path: PathBuf,
        tail: String,
    },
}

#[derive(Default)]
struct Tail {
    pos: u64,
    partial: Vec<u8>,
    lines: Vec<String>,
    states: Vec<GuestState>,
    heartbeats: Vec<f64>,
    panicked: bool,
}

/// Follows a serial log file as the guest writes it. The file may not
/// exist yet (QEMU not started); it then reads as empty.
pub struct SerialLog {
    path: PathBuf,
    tail: Mutex<Tail>,
}

impl SerialLog {
    pub fn new(path: impl AsRef<Path>) -> SerialLog {
        SerialLog {
            path: path.as_ref().to_owned(),
            tail: Mutex::new(Tail::default()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read what was appended since the last call.
    fn poll(&self) -> std::sync::MutexGuard<'_, Tail> {
        let mut t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(mut f) = File::open(&self.path) {
            let mut buf = Vec::new();
            if f.seek(SeekFrom::Start(t.pos)).is_ok() && f.read_to_end(&mut buf).is_ok() {
                t.pos += buf.len() as u64;
                t.partial.extend_from_slice(&buf);
                while let Some(nl) = t.partial.iter().position(|&b| b == b'\n') {
                    let raw: Vec<u8> = t.partial.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&raw)
                        .trim_end_matches(['\r', '\n'])
                        .to_owned();
                    if let Some(s) = GuestState::parse(&line) {
                        t.states.push(s);
                    }
                    if let Some(hb) = line.find("E2E HB up=") {
                        let v = &line[hb + "E2E HB up=".len()..];
                        if let Some(up) = v.split_whitespace().next().and_then(|u| u.parse().ok()) {
                            t.heartbeats.push(up);
                        }
                    }
                    if line.contains("Kernel panic") {
                        t.panicked = true;
                    }
                    t.lines.push(line);
                }
            }
        }
        t
    }

    /// Every `E2E IP6` report so far.
    pub fn ip6(&self) -> Vec<GuestIp6> {
        self.lines()
            .iter()
            .filter_map(|l| GuestIp6::parse(l))
            .collect()
    }

    /// Wait until `ifname`'s link-local address has finished duplicate
    /// address detection (no longer `tentative`); returns it (its flags
    /// say whether DAD failed).
    pub fn wait_for_link_local(
        &self,
        ifname: &str,
        timeout: Duration,
    ) -> Result<GuestIp6Addr, SerialError> {
        self.wait(
            &format!("{ifname}'s IPv6 link-local address past DAD"),
            timeout,
            |t| {
                t.lines
                    .iter()
                    .filter_map(|l| GuestIp6::parse(l))
                    .filter_map(|s| s.link_local(ifname).cloned())
                    .find(|a| {
                        !a.flags.iter().any(|f| f == "tentative")
                            || a.flags.iter().any(|f| f == "dadfailed")
                    })
            },
        )
    }

    /// All complete lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.poll().lines.clone()
    }

    /// Every parsed state so far, oldest first.
    pub fn states(&self) -> Vec<GuestState> {
        self.poll().states.clone()
    }

    /// The most recent state.
    pub fn latest_state(&self) -> Option<GuestState> {
        self.poll().states.last().cloned()
    }

    /// Guest uptimes of the heartbeats seen so far.
    pub fn heartbeats(&self) -> Vec<f64> {
        self.poll().heartbeats.clone()
    }

    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Tail) -> Option<T>,
    ) -> Result<T, SerialError> {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.poll();
            if let Some(v) = check(&t) {
                return Ok(v);
            }
            let tail = t.lines[t.lines.len().saturating_sub(25)..].join("\n");
            if t.panicked {
                return Err(SerialError::Panicked {
                    what: what.into(),
                    path: self.path.clone(),
                    tail,
                });
            }
            if Instant::now() >= deadline {
                return Err(SerialError::Timeout {
                    what: what.into(),
                    timeout,
                    path: self.path.clone(),
                    last_state: t
                        .states
                        .last()
                        .map_or_else(|| "(none)".into(), |s| s.raw.clone()),
                    tail,
                });
            }
            drop(t);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the most recent state satisfies `pred` (blocking).
    pub fn wait_for_state(
        &self,
        what: &str,
        mut pred: impl FnMut(&GuestState) -> bool,
        timeout: Duration,
    ) -> Result<GuestState, SerialError> {
        self.wait(what, timeout, |t| {
            t.states.last().filter(|s| pred(s)).cloned()
        })
    }

    /// Wait until the guest shows a net_failover master with `n_slaves`
    /// enslaved interfaces; returns that state.
    pub fn wait_for_failover_master(
        &self,
        n_slaves: usize,
        timeout: Duration,
    ) -> Result<GuestState, SerialError> {
        self.wait_for_state(
            &format!("a failover master with {n_slaves} slaves"),
            |s| s.failover_master(n_slaves).is_some(),
            timeout,
        )
    }

    /// Wait for a line containing `needle`; returns the line.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<String, SerialError> {
        self.wait(&format!("a line containing {needle:?}"), timeout, |t| {
            t.lines.iter().find(|l| l.contains(needle)).cloned()
        })
    }

    /// Wait for a heartbeat printed at guest uptime > `after` (proves the
    /// guest still runs, e.g. after migration).
    pub fn wait_for_heartbeat_after(
        &self,
        after: f64,
        timeout: Duration,
    ) -> Result<f64, SerialError> {
        self.wait(&format!("a heartbeat after up={after}"), timeout, |t| {
            t.heartbeats.iter().copied().find(|&u| u > after)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip6_lines() {
        let l = "E2E IP6 up=5.15 lo=::1 eth0=fe80::5054:ff:fe77:2:dadfailed:tentative eth1=fe80::5054:ff:fe77:2 END";
        let s = GuestIp6::parse(l).unwrap();
        assert_eq!(s.uptime, 5.15);
        let m = s.link_local("eth0").unwrap();
        assert_eq!(m.addr, "fe80::5054:ff:fe77:2");
        assert_eq!(m.flags, vec!["dadfailed", "tentative"]);
        assert!(s.link_local("eth1").unwrap().flags.is_empty());
        assert!(s.link_local("lo").is_none());
        assert!(GuestIp6::parse("E2E IP6 up=5.15 eth0=fe80::1").is_none());
    }
    use std::io::Write;

    const NEGOTIATED: &str = "E2E STATE up=4.26 net: eth0[mac=52:54:00:12:34:56,oper=up,master=-,drv=virtio_net,pci=0000:01:00.0,lower=eth1+eth2] eth1[mac=52:54:00:12:34:56,oper=up,master=eth0,drv=virtio_net,pci=0000:01:00.0,lower=-] eth2[mac=52:54:00:12:34:56,oper=up,master=eth0,drv=e1000e,pci=0000:02:00.0,lower=-] pci: 0000:01:00.0=1af4:1041 0000:02:00.0=8086:10d3 END";
    const NO_FAILOVER: &str = "E2E STATE up=3.1 net: pci: 0000:01:00.0=1af4:1041 END";

    #[test]
    fn parses_negotiated_state() {
        let s = GuestState::parse(NEGOTIATED).unwrap();
        assert_eq!(s.uptime, 4.26);
        assert_eq!(s.interfaces.len(), 3);
        let g = s.failover_master(2).unwrap();
        assert_eq!(g.master.name, "eth0");
        assert_eq!(g.standby.unwrap().name, "eth1");
        assert_eq!(g.primaries.len(), 1);
        assert_eq!(g.primaries[0].driver.as_deref(), Some("e1000e"));
        assert_eq!(g.primaries[0].pci.as_deref(), Some("0000:02:00.0"));
        assert!(s.failover_master(1).is_none());
        assert_eq!(s.pci[1].vendor, "8086");
        assert_eq!(s.slaves_of("eth0").len(), 2);
    }

    #[test]
    fn parses_empty_and_rejects_damaged() {
        let s = GuestState::parse(NO_FAILOVER).unwrap();
        assert!(s.interfaces.is_empty());
        assert!(s.failover_groups().is_empty());
        // Split by a kernel message: no END.
        assert!(GuestState::parse(&NEGOTIATED[..120]).is_none());
        assert!(GuestState::parse("E2E STATE up=x net: pci: END").is_none());
        assert!(GuestState::parse("E2E STATE up=1 net: eth0[oops pci: END").is_none());
        assert!(GuestState::parse("random").is_none());
        // Junk before the marker is tolerated.
        assert!(GuestState::parse(&format!("\u{0}junk{NEGOTIATED}")).is_some());
    }

    #[test]
    fn inconsistent_links_are_not_a_group() {
        let s = GuestState::parse(&NEGOTIATED.replace(
            "eth2[mac=52:54:00:12:34:56,oper=up,master=eth0",
            "eth2[mac=52:54:00:12:34:56,oper=up,master=-",
        ))
        .unwrap();
        assert!(s.failover_master(2).is_none());
    }

    #[test]
    fn tails_a_growing_file() {
        let dir = crate::temp_dir();
        let path = dir.path().join("serial.log");
        let log = SerialLog::new(&path);
        assert!(log.latest_state().is_none());
        let mut f = File::create(&path).unwrap();
        writeln!(f, "boot noise\r\n{NO_FAILOVER}").unwrap();
        write!(f, "{}", &NEGOTIATED[..50]).unwrap();
        f.flush().unwrap();
        assert_eq!(log.states().len(), 1);
        let e = log
            .wait_for_failover_master(2, Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(e, SerialError::Timeout { .. }), "{e}");
        writeln!(f, "{}", &NEGOTIATED[50..]).unwrap();
        writeln!(f, "E2E HB up=5.24 sig=abcd1234").unwrap();
        let s = log
            .wait_for_failover_master(2, Duration::from_secs(2))
            .unwrap();
        assert_eq!(s.uptime, 4.26);
        assert_eq!(log.heartbeats(), vec![5.24]);
        assert_eq!(
            log.wait_for_heartbeat_after(5.0, Duration::from_secs(1))
                .unwrap(),
            5.24
        );
        writeln!(f, "[    9.1] Kernel panic - not syncing: x").unwrap();
        let e = log
            .wait_for_line("never", Duration::from_secs(5))
            .unwrap_err();
        assert!(matches!(e, SerialError::Panicked { .. }), "{e}");
    }
}
