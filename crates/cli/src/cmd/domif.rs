//! `domifstat` and `domifaddr`: a running domain's interface counters and
//! addresses, in virsh's layout, read from the host side (the tap's
//! `/sys/class/net/DEV/statistics`, the host's neighbour table).

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use teamvirt_runtime::control::IfaceRow;
use teamvirt_runtime::{DomainState, RuntimeError};

use crate::cmd::args::StateOpt;
use crate::cmd::report::report_domain;
use crate::out::outln;

#[derive(clap::Args, Debug)]
pub struct DomifstatArgs {
    /// Domain name.
    pub domain: String,
    /// The interface: its host device (`vnet0`, as `domiflist` shows) or
    /// its MAC address.
    pub interface: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// virsh's counters of one interface, seen from the guest: what the tap
/// sends is what the guest receives.
#[derive(Debug, Serialize, PartialEq, Eq, Default)]
pub struct IfStats {
    pub interface: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errs: u64,
    pub rx_drop: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errs: u64,
    pub tx_drop: u64,
}

/// The host-side device's counters under `sys` (`/sys` on a host).
/// `swapped`: a tap's transmit is the guest's receive (libvirt swaps them
/// for every device but a macvtap, which shares the guest's view).
pub fn read_stats(sys: &Path, dev: &str, swapped: bool) -> std::io::Result<IfStats> {
    // A name with a slash or dots would read outside the device's directory.
    if dev.is_empty() || dev.contains('/') || dev == "." || dev == ".." {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid interface name '{dev}'"),
        ));
    }
    let dir = sys.join("class/net").join(dev).join("statistics");
    let read = |f: &str| -> std::io::Result<u64> {
        let t = std::fs::read_to_string(dir.join(f))?;
        t.trim().parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not a counter: {:?}", dir.join(f).display(), t.trim()),
            )
        })
    };
    let (rx, tx) = if swapped { ("tx", "rx") } else { ("rx", "tx") };
    Ok(IfStats {
        interface: dev.to_owned(),
        rx_bytes: read(&format!("{rx}_bytes"))?,
        rx_packets: read(&format!("{rx}_packets"))?,
        rx_errs: read(&format!("{rx}_errors"))?,
        rx_drop: read(&format!("{rx}_dropped"))?,
        tx_bytes: read(&format!("{tx}_bytes"))?,
        tx_packets: read(&format!("{tx}_packets"))?,
        tx_errs: read(&format!("{tx}_errors"))?,
        tx_drop: read(&format!("{tx}_dropped"))?,
    })
}

/// virsh's `domifstat` lines.
pub fn render_stats(s: &IfStats) -> String {
    let d = &s.interface;
    [
        ("rx_bytes", s.rx_bytes),
        ("rx_packets", s.rx_packets),
        ("rx_errs", s.rx_errs),
        ("rx_drop", s.rx_drop),
        ("tx_bytes", s.tx_bytes),
        ("tx_packets", s.tx_packets),
        ("tx_errs", s.tx_errs),
        ("tx_drop", s.tx_drop),
    ]
    .iter()
    .map(|(k, v)| format!("{d} {k} {v}\n"))
    .collect()
}

/// The interfaces of a running domain (with their host devices), or
/// libvirt's "not running" error.
fn running_rows(state: &StateOpt, dom: &str) -> Result<Vec<IfaceRow>, RuntimeError> {
    state.read_domain(dom, |rt| {
        if crate::block_on(rt.domain_state(dom))? == DomainState::ShutOff {
            return Err(RuntimeError::NotRunning(dom.to_owned()));
        }
        rt.domiflist(dom)
    })
}

pub fn domifstat(a: DomifstatArgs) -> ExitCode {
    let what = format!("Failed to get interface stats {} {}", a.domain, a.interface);
    let rows = match running_rows(&a.state, &a.domain) {
        Ok(r) => r,
        Err(e) => return report_domain(&a.domain, &what, &e),
    };
    let key = a.interface.to_ascii_lowercase();
    let row = rows
        .iter()
        .find(|r| r.interface.as_deref() == Some(a.interface.as_str()))
        .or_else(|| rows.iter().find(|r| r.mac.to_ascii_lowercase() == key));
    let Some(row) = row else {
        eprintln!("error: {what}");
        eprintln!(
            "error: invalid argument: invalid path, '{}' is not a known interface",
            a.interface
        );
        return ExitCode::FAILURE;
    };
    let Some(dev) = &row.interface else {
        eprintln!("error: {what}");
        eprintln!(
            "error: Operation not supported: interface {} ({}) has no host-side device to count on",
            row.mac, row.type_
        );
        return ExitCode::FAILURE;
    };
    match read_stats(Path::new("/sys"), dev, row.type_ != "direct") {
        Ok(s) => {
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&s).expect("serializes"));
            } else {
                outln!("{}", render_stats(&s));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {what}");
            eprintln!("error: cannot read the counters of {dev}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where `domifaddr` looks (virsh's `--source`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrSource {
    /// DHCP leases of the domain's networks (virsh's default).
    Lease,
    /// The host's neighbour (ARP) table, matched by the guest's MACs.
    Arp,
    /// The guest agent.
    Agent,
}

#[derive(clap::Args, Debug)]
pub struct DomifaddrArgs {
    /// Domain name.
    pub domain: String,
    /// Only this interface (its host device, as virsh).
    pub interface: Option<String>,
    /// Where the addresses come from.
    #[arg(long, value_enum, default_value = "lease")]
    pub source: AddrSource,
    /// Repeat the name and MAC on every address line.
    #[arg(long)]
    pub full: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// One interface with its addresses (libvirt's virDomainInterface).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct IfAddrs {
    /// Host device, `-` when the interface has none (a VF).
    pub name: String,
    pub hwaddr: String,
    pub addrs: Vec<IpAddr>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct IpAddr {
    #[serde(rename = "type")]
    pub type_: String,
    pub addr: String,
    pub prefix: u8,
}

/// Entries of `/proc/net/arp` (IP, MAC) that are complete (flag ATF_COM).
pub fn arp_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (ip, flags, mac) = (f.first()?, f.get(2)?, f.get(3)?);
            let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
            (flags & 0x2 != 0 && *mac != "00:00:00:00:00:00")
                .then(|| (ip.to_string(), mac.to_ascii_lowercase()))
        })
        .collect()
}

/// libvirt's ARP source: each interface, with the IPv4 addresses the
/// neighbour table has for its MAC (prefix 0: the table has none).
/// Interfaces without an entry are left out, as libvirt does.
pub fn arp_addrs(rows: &[IfaceRow], arp: &[(String, String)]) -> Vec<IfAddrs> {
    rows.iter()
        .filter_map(|r| {
            let mac = r.mac.to_ascii_lowercase();
            let addrs: Vec<IpAddr> = arp
                .iter()
                .filter(|(_, m)| *m == mac)
                .map(|(ip, _)| IpAddr {
                    type_: "ipv4".into(),
                    addr: ip.clone(),
                    prefix: 0,
                })
                .collect();
            (!addrs.is_empty()).then(|| IfAddrs {
                name: r.interface.clone().unwrap_or_else(|| "-".into()),
                hwaddr: mac,
                addrs,
            })
        })
        .collect()
}

/// virsh's `domifaddr` table.
pub fn render_addrs(ifaces: &[IfAddrs], only: Option<&str>, full: bool) -> String {
    let mut s = format!(
        " {:<10} {:<20} {:<8}     {}\n{}\n",
        "Name",
        "MAC address",
        "Protocol",
        "Address",
        "-".repeat(79)
    );
    for i in ifaces.iter().filter(|i| only.is_none_or(|o| o == i.name)) {
        if i.addrs.is_empty() {
            s.push_str(&format!(
                " {:<10} {:<17}    {:<12} N/A\n",
                i.name, i.hwaddr, "N/A"
            ));
        }
        for (j, a) in i.addrs.iter().enumerate() {
            let addr = format!("{:<12} {}/{}", a.type_, a.addr, a.prefix);
            let (n, m) = if full || j == 0 {
                (i.name.as_str(), i.hwaddr.as_str())
            } else {
                ("-", "-")
            };
            s.push_str(&format!(" {n:<10} {m:<17}    {addr}\n"));
        }
    }
    s
}

pub fn domifaddr(a: DomifaddrArgs) -> ExitCode {
    let what = "Failed to query for interfaces addresses";
    if a.source == AddrSource::Agent {
        return super::agent::domifaddr_agent(
            &a.domain,
            a.interface.as_deref(),
            a.full,
            a.json,
            &a.state,
        );
    }
    let rows = match running_rows(&a.state, &a.domain) {
        Ok(r) => r,
        Err(e) => return report_domain(&a.domain, what, &e),
    };
    let ifaces = match a.source {
        AddrSource::Arp => {
            let text = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
            arp_addrs(&rows, &arp_entries(&text))
        }
        // teamvirt runs no DHCP server (no dnsmasq) for its networks, so
        // no network of it has leases: libvirt's answer for networks
        // without DHCP is no addresses, and we say why.
        AddrSource::Lease | AddrSource::Agent => {
            eprintln!(
                "note: teamvirt's networks serve no DHCP (no dnsmasq), so there are no leases; --source arp reads the host's neighbour table"
            );
            Vec::new()
        }
    };
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&ifaces).expect("serializes")
        );
    } else {
        outln!("{}", render_addrs(&ifaces, a.interface.as_deref(), a.full));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(dev: Option<&str>, mac: &str, type_: &str) -> IfaceRow {
        IfaceRow {
            interface: dev.map(Into::into),
            type_: type_.into(),
            source: "lan".into(),
            model: "virtio".into(),
            mac: mac.into(),
            alias: None,
            teaming: "-".into(),
            pair: None,
        }
    }

    #[test]
    fn stats_from_a_fake_sysfs_swapped_for_a_tap() {
        let d = tempfile::tempdir().unwrap();
        let st = d.path().join("class/net/vnet0/statistics");
        std::fs::create_dir_all(&st).unwrap();
        for (i, f) in [
            "rx_bytes",
            "rx_packets",
            "rx_errors",
            "rx_dropped",
            "tx_bytes",
            "tx_packets",
            "tx_errors",
            "tx_dropped",
        ]
        .iter()
        .enumerate()
        {
            std::fs::write(st.join(f), format!("{}\n", i + 1)).unwrap();
        }
        let s = read_stats(d.path(), "vnet0", true).unwrap();
        // The tap's tx (5..8) is the guest's rx.
        assert_eq!((s.rx_bytes, s.rx_drop, s.tx_bytes, s.tx_drop), (5, 8, 1, 4));
        assert_eq!(
            render_stats(&s),
            "vnet0 rx_bytes 5\nvnet0 rx_packets 6\nvnet0 rx_errs 7\nvnet0 rx_drop 8\n\
             vnet0 tx_bytes 1\nvnet0 tx_packets 2\nvnet0 tx_errs 3\nvnet0 tx_drop 4\n"
        );
        let s = read_stats(d.path(), "vnet0", false).unwrap();
        assert_eq!(s.rx_bytes, 1);
        assert!(read_stats(d.path(), "vnet1", true).is_err());
        assert!(read_stats(d.path(), "../vnet0", true).is_err());
        std::fs::write(st.join("rx_bytes"), "x\n").unwrap();
        assert!(read_stats(d.path(), "vnet0", false).is_err());
    }

    #[test]
    fn arp_table_matched_by_mac_in_virsh_layout() {
        let arp =
            "IP address       HW type     Flags       HW address            Mask     Device\n\
                   10.77.0.2        0x1         0x2         52:54:00:6D:90:02     *        br0\n\
                   10.77.0.9        0x1         0x0         52:54:00:6d:90:02     *        br0\n\
                   10.77.0.3        0x1         0x2         52:54:00:aa:bb:cc     *        br0\n";
        let e = arp_entries(arp);
        assert_eq!(e.len(), 2, "{e:?}");
        let rows = [
            row(Some("vnet0"), "52:54:00:6d:90:02", "network"),
            row(None, "52:54:00:00:00:09", "hostdev"),
        ];
        let got = arp_addrs(&rows, &e);
        assert_eq!(got.len(), 1);
        assert_eq!(
            render_addrs(&got, None, false),
            format!(
                " Name       MAC address          Protocol     Address\n{}\n \
                 vnet0      52:54:00:6d:90:02    ipv4         10.77.0.2/0\n",
                "-".repeat(79)
            )
        );
        assert!(!render_addrs(&got, Some("vnet9"), false).contains("10.77"));
    }
}
