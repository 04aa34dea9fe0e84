//! The guest's routes for the doctor, from whichever source its agent has:
//! `guest-network-get-route` (QEMU-GA 9.1 and later), else the kernel's
//! own tables read with `guest-file-open`/`-read`/`-close` (every QEMU-GA;
//! Debian 12's 7.2 has no route command): `/proc/net/route` and
//! `/proc/net/ipv6_route`. Both files are the guest's, so they are parsed
//! as untrusted text: bounded in size and lines, a malformed line skipped.

use crate::agent::{Agent, AgentError, AgentInfo, GuestRoute, MAX_ITEMS};

/// Largest route table read from the guest (a few hundred routes).
pub const MAX_ROUTE_FILE: usize = 256 * 1024;
/// Most routes taken from one table.
const MAX_ROUTES: usize = MAX_ITEMS * 4;

/// `rtentry` flags (`linux/route.h`), the same in both files.
const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;

/// Where the routes came from, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routes {
    Known {
        routes: Vec<GuestRoute>,
        /// `guest-network-get-route` or `/proc/net/route`.
        source: &'static str,
    },
    Unknown(String),
}

/// The commands reading a guest file takes.
const FILE_COMMANDS: [&str; 3] = ["guest-file-open", "guest-file-read", "guest-file-close"];

/// The guest's routes by the best means `info` advertises. An agent that
/// refuses (a command disabled, the file not readable) leaves them
/// unknown; an agent that stops answering is an error.
pub fn read(a: &mut Agent, info: &AgentInfo) -> Result<Routes, AgentError> {
    if info.supports("guest-network-get-route") {
        return Ok(Routes::Known {
            routes: a.routes()?,
            source: "guest-network-get-route",
        });
    }
    let missing: Vec<&str> = FILE_COMMANDS
        .iter()
        .copied()
        .filter(|c| !info.supports(c))
        .collect();
    if !missing.is_empty() {
        return Ok(Routes::Unknown(format!(
            "this agent has no guest-network-get-route (QEMU-GA 9.1 and later), and {} disabled or missing",
            missing.join(", ")
        )));
    }
    let v4 = match a.read_file("/proc/net/route", MAX_ROUTE_FILE) {
        Ok(b) => b,
        Err(e @ (AgentError::Command { .. } | AgentError::BadReply { .. })) => {
            return Ok(Routes::Unknown(format!(
                "the agent did not read /proc/net/route: {e}"
            )))
        }
        Err(e) => return Err(e),
    };
    let mut routes = parse_proc_route(&String::from_utf8_lossy(&v4));
    // A guest without IPv6 has no such file: its IPv4 routes are all.
    match a.read_file("/proc/net/ipv6_route", MAX_ROUTE_FILE) {
        Ok(b) => routes.extend(parse_proc_ipv6_route(&String::from_utf8_lossy(&b))),
        Err(AgentError::Command { .. } | AgentError::BadReply { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(Routes::Known {
        routes,
        source: "/proc/net/route",
    })
}

fn hex_u32(s: &str) -> Option<u32> {
    (!s.is_empty() && s.len() <= 8)
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

/// An IPv4 address as `/proc/net/route` prints it: the network-order
/// word as a host-order hex number (the guest is x86, little-endian).
fn proc_v4(s: &str) -> Option<std::net::Ipv4Addr> {
    (s.len() == 8).then_some(())?;
    Some(std::net::Ipv4Addr::from(hex_u32(s)?.to_le_bytes()))
}

fn proc_v6(s: &str) -> Option<std::net::Ipv6Addr> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut b = [0u8; 16];
    for (i, o) in b.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(std::net::Ipv6Addr::from(b))
}

fn name_ok(n: &str) -> bool {
    // Linux names: at most 15 bytes, no '/', no whitespace (split on it).
    !n.is_empty() && n.len() <= 15 && !n.contains('/') && !n.chars().any(char::is_control)
}

/// `/proc/net/route`: a header, then `Iface Destination Gateway Flags
/// RefCnt Use Metric Mask MTU Window IRTT`. Routes that are up and not
/// reject routes.
pub fn parse_proc_route(text: &str) -> Vec<GuestRoute> {
    let mut out = Vec::new();
    for line in text.lines().skip(1).take(MAX_ROUTES) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || !name_ok(f[0]) {
            continue;
        }
        let (Some(dest), Some(gw), Some(flags), Some(mask)) =
            (proc_v4(f[1]), proc_v4(f[2]), hex_u32(f[3]), proc_v4(f[7]))
        else {
            continue;
        };
        if flags & RTF_UP == 0 || flags & RTF_REJECT != 0 {
            continue;
        }
        let m = u32::from(mask);
        if m.leading_ones() + m.trailing_zeros() != 32 && m != 0 {
            continue;
        }
        out.push(GuestRoute {
            iface: f[0].to_owned(),
            version: 4,
            destination: dest.to_string(),
            prefix: Some(m.count_ones() as u8),
            gateway: (!gw.is_unspecified()).then(|| gw.to_string()),
        });
    }
    out
}

/// `/proc/net/ipv6_route`: per line `dest plen src plen nexthop metric
/// refcnt use flags iface` (addresses as 32 hex digits, the rest hex).
pub fn parse_proc_ipv6_route(text: &str) -> Vec<GuestRoute> {
    let mut out = Vec::new();
    for line in text.lines().take(MAX_ROUTES) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 10 || !name_ok(f[9]) {
            continue;
        }
        let (Some(dest), Some(plen), Some(hop), Some(flags)) =
            (proc_v6(f[0]), hex_u32(f[1]), proc_v6(f[4]), hex_u32(f[8]))
        else {
            continue;
        };
        if plen > 128 || flags & RTF_UP == 0 || flags & RTF_REJECT != 0 || f[9] == "lo" {
            continue;
        }
        out.push(GuestRoute {
            iface: f[9].to_owned(),
            version: 6,
            destination: dest.to_string(),
            prefix: Some(plen as u8),
            gateway: (!hop.is_unspecified()).then(|| hop.to_string()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Debian 12 guest's table with the default route via the standby
    /// slave (the ifupdown trap), as the kernel prints it.
    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
enp1s0nsby\t00000000\t01004E0A\t0003\t0\t0\t0\t00000000\t0\t0\t0
enp1s0nsby\t00004E0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";
    const IPV6: &str = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001   enp1s0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     enp2s0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
";

    #[test]
    fn the_kernel_tables_are_read() {
        let r = parse_proc_route(ROUTE);
        assert_eq!(r.len(), 2);
        assert!(r[0].is_default() && r[0].iface == "enp1s0nsby");
        assert_eq!(r[0].gateway.as_deref(), Some("10.78.0.1"));
        assert_eq!(r[1].destination, "10.78.0.0");
        assert_eq!(r[1].prefix, Some(24));
        assert!(!r[1].is_default() && r[1].gateway.is_none());
        let r6 = parse_proc_ipv6_route(IPV6);
        // The reject default and the loopback's own route are not routes out.
        assert_eq!(r6.len(), 2, "{r6:?}");
        assert_eq!(r6[0].destination, "fe80::");
        assert_eq!(r6[0].prefix, Some(64));
        assert!(r6[1].is_default() && r6[1].iface == "enp2s0");
        assert_eq!(r6[1].gateway.as_deref(), Some("fe80::1"));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let bad = "Iface\tDestination
only-header-like
eth0\tZZZZZZZZ\t00000000\t0003\t0\t0\t0\t00000000
eth0\t00000000\t0000000\t0003\t0\t0\t0\t00000000
eth0\t00000000\t00000000\t0003\t0\t0\t0
eth0\t00000000\t00000000\t0002\t0\t0\t0\t00000000
eth0\t00000000\t00000000\t0203\t0\t0\t0\t00000000
eth0\t00004E0A\t00000000\t0001\t0\t0\t0\t00FF00FF
a/b\t00000000\t00000000\t0003\t0\t0\t0\t00000000
averyveryverylongname\t00000000\t00000000\t0003\t0\t0\t0\t00000000
eth0\t00000000\t00000000\tFFFFFFFFF\t0\t0\t0\t00000000
\u{1b}[2J\t00000000\t00000000\t0003\t0\t0\t0\t00000000
ok0\t00000000\t00000000\t0001\t0\t0\t0\t00000000
";
        let r = parse_proc_route(bad);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].iface, "ok0");
        for bad6 in [
            "",
            "00 00 00 00 00 00 00 00 00 eth0",
            "0000000000000000000000000000000g 00 00000000000000000000000000000000 00 00000000000000000000000000000000 0 1 0 1 eth0",
            "00000000000000000000000000000000 81 00000000000000000000000000000000 00 00000000000000000000000000000000 0 1 0 1 eth0",
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 0 1 0 1 eth0 extra",
            "éééééééééééééééé 00 00000000000000000000000000000000 00 00000000000000000000000000000000 0 1 0 1 eth0",
        ] {
            assert!(parse_proc_ipv6_route(bad6).is_empty(), "{bad6:?}");
        }
        // Bounded: a table of endless lines gives at most MAX_ROUTES.
        let many = format!(
            "h\n{}",
            "e\t00000000\t00000000\t0001\t0\t0\t0\t00000000\n".repeat(MAX_ROUTES + 10)
        );
        assert_eq!(parse_proc_route(&many).len(), MAX_ROUTES);
    }

    fn b64(s: &str) -> String {
        // Only for the test's texts: three bytes at a time.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in s.as_bytes().chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..=c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    fn info(cmds: &[&str]) -> AgentInfo {
        AgentInfo {
            version: "7.2.0".into(),
            commands: cmds.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn the_best_source_the_agent_has_is_used() {
        use crate::agent::tests::fake;
        use std::time::Duration;
        // A 9.1+ agent: its route command, no file read.
        let d = tempfile::tempdir().unwrap();
        let (p, h) = fake(
            d.path(),
            vec!["{\"return\": [{\"iface\": \"enp2s0\", \"destination\": \"0.0.0.0\", \"mask\": \"0.0.0.0\", \"version\": 4}]}\n".into()],
        );
        let mut a = Agent::connect(&p, Duration::from_secs(5)).unwrap();
        let all = [
            "guest-network-get-route",
            "guest-file-open",
            "guest-file-read",
            "guest-file-close",
        ];
        let r = read(&mut a, &info(&all)).unwrap();
        assert!(
            matches!(&r, Routes::Known { source: "guest-network-get-route", routes } if routes[0].is_default()),
            "{r:?}"
        );
        drop(a);
        assert_eq!(
            h.join().unwrap(),
            ["guest-sync-delimited", "guest-network-get-route"]
        );
        // Debian 12's 7.2: the kernel's tables through the file commands;
        // no ipv6_route (IPv6 off) is no IPv6 routes.
        let d = tempfile::tempdir().unwrap();
        let read_reply = |text: &str| {
            format!(
                "{{\"return\": {{\"count\": {}, \"buf-b64\": \"{}\", \"eof\": true}}}}\n",
                text.len(),
                b64(text)
            )
        };
        let (p, h) = fake(
            d.path(),
            vec![
                "{\"return\": 3}\n".into(),
                read_reply(ROUTE),
                "{\"return\": {}}\n".into(),
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"No such file\"}}\n".into(),
            ],
        );
        let mut a = Agent::connect(&p, Duration::from_secs(5)).unwrap();
        let r = read(&mut a, &info(&all[1..])).unwrap();
        match &r {
            Routes::Known { source, routes } => {
                assert_eq!(*source, "/proc/net/route");
                assert_eq!(routes.len(), 2);
                assert!(routes[0].is_default() && routes[0].iface == "enp1s0nsby");
            }
            other => panic!("{other:?}"),
        }
        drop(a);
        assert_eq!(
            h.join().unwrap(),
            [
                "guest-sync-delimited",
                "guest-file-open",
                "guest-file-read",
                "guest-file-close",
                "guest-file-open"
            ]
        );
        // An agent with the file commands disabled: unknown, not an error,
        // and nothing asked of it.
        let d = tempfile::tempdir().unwrap();
        let (p, h) = fake(d.path(), Vec::new());
        let mut a = Agent::connect(&p, Duration::from_secs(5)).unwrap();
        let r = read(&mut a, &info(&["guest-file-open"])).unwrap();
        assert!(matches!(r, Routes::Unknown(_)), "{r:?}");
        drop(a);
        assert_eq!(h.join().unwrap(), ["guest-sync-delimited"]);
    }
}
