//! The guest doctor: the failover pairs as the guest sees them, from the
//! QEMU guest agent (no `guest-exec`: only what the agent reports itself).
//!
//! Linux's net_failover gives the three interfaces of a pair one MAC: the
//! failover master, its standby slave (the virtio NIC, renamed to the
//! master's name + `nsby`) and its primary slave (the VF, or lab mode's
//! emulated NIC). Only the master may be configured; the two traps seen
//! with real distros are a slave holding an address (systemd-networkd's
//! `[Match] Name=en*` configures all three) and the default route via a
//! slave (ifupdown configuring the primary after a reboot: traffic stops
//! when a migration unplugs it). Routes come from `guest-network-get-route`
//! where the agent has it (QEMU-GA 9.1 and later), else from the guest's
//! `/proc/net/route` read through the agent's file commands
//! ([`crate::guestroute`]); an agent with neither cannot say, and the
//! report says so.
//!
//! The doctor also runs by itself at the checkpoints where a guest's
//! configuration shows its traps ([`Checkpoint`]): after `start
//! --wait-failover`, after each migration on the destination, and at the
//! first `teaming` after a guest reboot; [`checkpoint_lines`] decides what
//! of its report is said there.

use serde::Serialize;

use crate::agent::{AgentInfo, GuestInterface, GuestRoute};
use crate::teaming::TeamingPair;
use teamvirt_host::escape::escape_controls;

/// The suffix net_failover gives the standby slave's name.
pub const STANDBY_SUFFIX: &str = "nsby";

/// What the agent said, or why there is nothing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum GuestView {
    /// The domain has no guest agent channel.
    NoAgent,
    /// The channel exists but no agent answered (still booting, not
    /// installed, or not running).
    NotResponding {
        reason: String,
    },
    Connected(GuestReport),
}

/// The guest's side of every pair.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GuestReport {
    pub agent_version: String,
    /// Whether the guest's routes are known (`guest-network-get-route`,
    /// or `/proc/net/route` through the agent's file commands).
    pub routes_known: bool,
    /// Where they came from, or why they are not known.
    pub routes_source: Option<String>,
    pub routes_note: Option<String>,
    pub pairs: Vec<PairView>,
}

/// One interface of a pair in the guest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IfaceView {
    pub name: String,
    /// Addresses other than link-local ones, `ADDR/PREFIX`.
    pub addresses: Vec<String>,
    /// Link-local addresses (fe80::/10, 169.254/16).
    pub link_local: Vec<String>,
    /// Carries a default route (`None`: the agent cannot say).
    pub default_route: Option<bool>,
}

/// A finding worth the user's attention.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// Stable code: `slave-address`, `slave-default-route`,
    /// `master-no-address`, `no-guest-interface`, `roles-unknown`.
    pub code: &'static str,
    pub message: String,
}

/// One pair in the guest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PairView {
    /// The standby's QEMU id (the pair's name in `teaming`).
    pub standby_id: String,
    pub mac: String,
    pub master: Option<IfaceView>,
    pub standby: Option<IfaceView>,
    pub primary: Option<IfaceView>,
    /// Interfaces with the pair's MAC whose role cannot be told.
    pub unknown: Vec<IfaceView>,
    pub warnings: Vec<Finding>,
}

fn view(i: &GuestInterface, routes: Option<&[GuestRoute]>) -> IfaceView {
    let fmt =
        |a: &crate::agent::GuestAddress| escape_controls(&format!("{}/{}", a.address, a.prefix));
    IfaceView {
        name: escape_controls(&i.name),
        addresses: i
            .addresses
            .iter()
            .filter(|a| !a.is_link_local() && !a.is_loopback())
            .map(fmt)
            .collect(),
        link_local: i
            .addresses
            .iter()
            .filter(|a| a.is_link_local())
            .map(fmt)
            .collect(),
        default_route: routes.map(|r| r.iter().any(|r| r.iface == i.name && r.is_default())),
    }
}

/// The report for `pairs` from the agent's interfaces (and routes, when
/// `routes` is `Some`).
pub fn diagnose(
    info: &AgentInfo,
    pairs: &[TeamingPair],
    ifaces: &[GuestInterface],
    routes: Option<&[GuestRoute]>,
) -> GuestReport {
    let mut out = Vec::new();
    for p in pairs {
        let Some(mac) = p.standby_mac.as_ref().map(|m| m.to_ascii_lowercase()) else {
            continue;
        };
        out.push(diagnose_pair(p, &mac, ifaces, routes));
    }
    GuestReport {
        agent_version: escape_controls(&info.version),
        routes_known: routes.is_some(),
        routes_source: None,
        routes_note: None,
        pairs: out,
    }
}

fn diagnose_pair(
    p: &TeamingPair,
    mac: &str,
    ifaces: &[GuestInterface],
    routes: Option<&[GuestRoute]>,
) -> PairView {
    let same: Vec<&GuestInterface> = ifaces
        .iter()
        .filter(|i| i.mac.as_deref() == Some(mac))
        .collect();
    // The master is the interface whose name + "nsby" is another one's:
    // neither the virtio standby nor the primary.
    let master = same.iter().copied().find(|m| {
        same.iter()
            .any(|s| s.name.strip_suffix(STANDBY_SUFFIX) == Some(m.name.as_str()))
    });
    let standby = master.and_then(|m| {
        same.iter()
            .copied()
            .find(|s| s.name.strip_suffix(STANDBY_SUFFIX) == Some(m.name.as_str()))
    });
    let rest: Vec<&GuestInterface> = same
        .iter()
        .copied()
        .filter(|i| Some(i.name.as_str()) != master.map(|m| m.name.as_str()))
        .filter(|i| Some(i.name.as_str()) != standby.map(|s| s.name.as_str()))
        .collect();
    let (primary, unknown) = match (master, rest.len()) {
        (Some(_), 1) => (Some(rest[0]), Vec::new()),
        _ => (None, rest),
    };
    let mut v = PairView {
        standby_id: p.standby.clone(),
        mac: mac.to_owned(),
        master: master.map(|i| view(i, routes)),
        standby: standby.map(|i| view(i, routes)),
        primary: primary.map(|i| view(i, routes)),
        unknown: unknown.iter().map(|i| view(i, routes)).collect(),
        warnings: Vec::new(),
    };
    if same.is_empty() {
        v.warnings.push(Finding {
            code: "no-guest-interface",
            message: format!(
                "the guest has no interface with the pair's MAC {mac} (no driver for the standby, or its link is not set up)"
            ),
        });
        return v;
    }
    if master.is_none() {
        v.warnings.push(Finding {
            code: "roles-unknown",
            message: format!(
                "no failover master among the guest interfaces with MAC {mac} ({}): the guest has not bonded the pair (net_failover names the standby after its master + '{STANDBY_SUFFIX}')",
                v.unknown.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    for (role, s) in [("standby", &v.standby), ("primary", &v.primary)] {
        let Some(s) = s else { continue };
        if !s.addresses.is_empty() {
            let mut m = format!(
                "the {role} slave {} holds {}: only the failover master may be configured (a systemd-networkd `[Match] Name=en*` or an ifupdown name pattern also matches the slaves; match the master by its name)",
                s.name,
                s.addresses.join(", ")
            );
            if routes.is_none() {
                m.push_str("; the default route may go via it too (this agent cannot list routes)");
            }
            v.warnings.push(Finding {
                code: "slave-address",
                message: m,
            });
        }
        if s.default_route == Some(true) {
            v.warnings.push(Finding {
                code: "slave-default-route",
                message: format!(
                    "the default route goes via the {role} slave {}: the guest is unreachable {} (route via the failover master instead)",
                    s.name,
                    if role == "primary" {
                        "while a migration has the primary unplugged"
                    } else {
                        "through the VF while it is plugged"
                    }
                ),
            });
        }
    }
    if let Some(m) = &v.master {
        if m.addresses.is_empty() {
            v.warnings.push(Finding {
                code: "master-no-address",
                message: format!(
                    "the failover master {} holds no address (link-local ones aside): the guest's network configuration does not name it",
                    m.name
                ),
            });
        }
    }
    v
}

/// Where the doctor ran by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// `start --wait-failover` succeeded: the guest negotiated failover,
    /// its network configuration may still be on its way.
    Start,
    /// A migration completed, on the destination.
    Migration,
    /// The guest's boot id changed since the doctor last saw it.
    Reboot,
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Checkpoint::Start => "start",
            Checkpoint::Migration => "migration",
            Checkpoint::Reboot => "a guest reboot",
        })
    }
}

/// How a checkpoint line is said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// On the command's stderr and in the domain log.
    Warning,
    Note,
    /// In the domain log only (nothing to act on).
    Log,
}

/// One line a checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CheckLine {
    pub level: Level,
    pub text: String,
}

/// What the doctor says at `at`, from its report. Without a channel,
/// nothing; an agent that does not answer is a note (a guest still
/// booting, or without the agent), never a failure. Right after start a
/// master without an address is a note too: failover is negotiated when
/// the guest's driver loads, before its network configuration ran.
pub fn checkpoint_lines(view: &GuestView, at: Checkpoint) -> Vec<CheckLine> {
    let line = |level, text: String| CheckLine {
        level,
        text: format!("guest doctor after {at}: {text}"),
    };
    match view {
        GuestView::NoAgent => Vec::new(),
        GuestView::NotResponding { reason } => vec![line(
            Level::Note,
            format!("the guest agent does not answer ({reason}); `teaming` checks the guest once it does"),
        )],
        GuestView::Connected(r) => {
            let mut out = Vec::new();
            for p in &r.pairs {
                for w in &p.warnings {
                    let early = at == Checkpoint::Start
                        && matches!(w.code, "master-no-address" | "no-guest-interface");
                    let (level, tail) = match early {
                        true => (Level::Note, " (the guest may not have configured it yet)"),
                        false => (Level::Warning, ""),
                    };
                    out.push(line(
                        level,
                        format!("pair {}: {} [{}]{tail}", p.standby_id, w.message, w.code),
                    ));
                }
            }
            if out.is_empty() {
                out.push(line(
                    Level::Log,
                    format!(
                        "{} pair(s) checked, addresses and the default route on their masters{}",
                        r.pairs.len(),
                        if r.routes_known { "" } else { " (routes not known)" }
                    ),
                ));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::GuestAddress;

    fn iface(name: &str, mac: &str, addrs: &[&str]) -> GuestInterface {
        GuestInterface {
            name: name.into(),
            mac: Some(mac.into()),
            addresses: addrs
                .iter()
                .map(|a| {
                    let (ad, p) = a.split_once('/').unwrap();
                    GuestAddress {
                        family: if ad.contains(':') { "ipv6" } else { "ipv4" }.into(),
                        address: ad.into(),
                        prefix: p.parse().unwrap(),
                    }
                })
                .collect(),
        }
    }

    fn pair() -> TeamingPair {
        TeamingPair {
            standby: "ua-net0".into(),
            primary: "hostdev0".into(),
            standby_mac: Some("52:54:00:6D:90:02".into()),
            primary_mac: Some("52:54:00:6d:90:02".into()),
            vf: None,
            network: None,
            emulated: true,
        }
    }

    const MAC: &str = "52:54:00:6d:90:02";

    fn codes(r: &GuestReport) -> Vec<&'static str> {
        r.pairs[0].warnings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_configured_master_passes() {
        let ifs = [
            iface("lo", "00:00:00:00:00:00", &["127.0.0.1/8"]),
            iface("enp1s0", MAC, &["10.78.0.2/24", "fe80::1/64"]),
            iface("enp1s0nsby", MAC, &[]),
            iface("enp2s0", MAC, &[]),
        ];
        let r = diagnose(&AgentInfo::default(), &[pair()], &ifs, None);
        let p = &r.pairs[0];
        assert_eq!(p.master.as_ref().unwrap().name, "enp1s0");
        assert_eq!(p.standby.as_ref().unwrap().name, "enp1s0nsby");
        assert_eq!(p.primary.as_ref().unwrap().name, "enp2s0");
        assert_eq!(p.master.as_ref().unwrap().addresses, ["10.78.0.2/24"]);
        assert!(codes(&r).is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn the_networkd_en_star_trap_is_flagged() {
        let ifs = [
            iface("enp1s0", MAC, &["10.78.0.2/24"]),
            iface("enp1s0nsby", MAC, &["10.78.0.2/24", "fe80::2/64"]),
            iface("enp2s0", MAC, &["10.78.0.2/24"]),
        ];
        let r = diagnose(&AgentInfo::default(), &[pair()], &ifs, None);
        assert_eq!(codes(&r), ["slave-address", "slave-address"]);
        assert!(r.pairs[0].warnings[0]
            .message
            .contains("cannot list routes"));
    }

    #[test]
    fn a_default_route_via_a_slave_is_flagged_when_routes_are_known() {
        let ifs = [
            iface("enp1s0", MAC, &[]),
            iface("enp1s0nsby", MAC, &[]),
            iface("enp2s0", MAC, &["10.78.0.2/24"]),
        ];
        let routes = [GuestRoute {
            iface: "enp2s0".into(),
            version: 4,
            destination: "0.0.0.0".into(),
            prefix: Some(0),
            gateway: Some("10.78.0.1".into()),
        }];
        let r = diagnose(&AgentInfo::default(), &[pair()], &ifs, Some(&routes));
        assert_eq!(
            codes(&r),
            ["slave-address", "slave-default-route", "master-no-address"]
        );
        assert_eq!(
            r.pairs[0].primary.as_ref().unwrap().default_route,
            Some(true)
        );
    }

    #[test]
    fn no_bond_and_no_interface_are_said_and_names_are_escaped() {
        let ifs = [iface("eth\u{1b}[2J0", MAC, &[])];
        let r = diagnose(&AgentInfo::default(), &[pair()], &ifs, None);
        assert_eq!(codes(&r), ["roles-unknown"]);
        assert!(!r.pairs[0].warnings[0].message.contains('\u{1b}'));
        let r = diagnose(&AgentInfo::default(), &[pair()], &[], None);
        assert_eq!(codes(&r), ["no-guest-interface"]);
    }

    fn connected(ifs: &[GuestInterface], routes: Option<&[GuestRoute]>) -> GuestView {
        GuestView::Connected(diagnose(&AgentInfo::default(), &[pair()], ifs, routes))
    }

    #[test]
    fn the_route_trap_is_flagged_from_the_kernel_table() {
        // Debian 12's agent has no route command: the table comes from
        // /proc/net/route, the default route via the standby slave.
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
enp1s0nsby\t00000000\t01004E0A\t0003\t0\t0\t0\t00000000\t0\t0\t0
";
        let routes = crate::guestroute::parse_proc_route(table);
        let ifs = [
            iface("enp1s0", MAC, &[]),
            iface("enp1s0nsby", MAC, &["10.78.0.2/24"]),
            iface("enp2s0", MAC, &[]),
        ];
        let r = diagnose(&AgentInfo::default(), &[pair()], &ifs, Some(&routes));
        assert_eq!(
            codes(&r),
            ["slave-address", "slave-default-route", "master-no-address"]
        );
        assert!(!r.pairs[0].warnings[0]
            .message
            .contains("cannot list routes"));
    }

    #[test]
    fn checkpoints_warn_note_or_only_log() {
        assert!(checkpoint_lines(&GuestView::NoAgent, Checkpoint::Migration).is_empty());
        let quiet = GuestView::NotResponding {
            reason: "QEMU guest agent is not connected".into(),
        };
        let l = checkpoint_lines(&quiet, Checkpoint::Migration);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].level, Level::Note);
        assert!(l[0]
            .text
            .starts_with("guest doctor after migration: the guest agent does not answer"));
        // The traps are warnings wherever they are seen.
        let trap = connected(
            &[
                iface("enp1s0", MAC, &["10.78.0.2/24"]),
                iface("enp1s0nsby", MAC, &["10.78.0.2/24"]),
                iface("enp2s0", MAC, &[]),
            ],
            None,
        );
        for at in [Checkpoint::Start, Checkpoint::Migration, Checkpoint::Reboot] {
            let l = checkpoint_lines(&trap, at);
            assert_eq!(l.len(), 1, "{l:?}");
            assert_eq!(l[0].level, Level::Warning);
            assert!(l[0].text.contains("[slave-address]") && l[0].text.contains("ua-net0"));
        }
        // An unconfigured master: a note right after start (the guest's
        // configuration may not have run), a warning later.
        let bare = connected(
            &[
                iface("enp1s0", MAC, &[]),
                iface("enp1s0nsby", MAC, &[]),
                iface("enp2s0", MAC, &[]),
            ],
            Some(&[]),
        );
        assert_eq!(
            checkpoint_lines(&bare, Checkpoint::Start)[0].level,
            Level::Note
        );
        assert_eq!(
            checkpoint_lines(&bare, Checkpoint::Reboot)[0].level,
            Level::Warning
        );
        // Nothing to act on: one line for the domain log only.
        let good = connected(
            &[
                iface("enp1s0", MAC, &["10.78.0.2/24"]),
                iface("enp1s0nsby", MAC, &[]),
                iface("enp2s0", MAC, &[]),
            ],
            Some(&[]),
        );
        let l = checkpoint_lines(&good, Checkpoint::Migration);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].level, Level::Log);
        assert!(!l[0].text.contains("not known"), "{}", l[0].text);
    }
}
