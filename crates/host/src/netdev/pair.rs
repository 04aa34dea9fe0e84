//! How a failover pair's bridge ports are wired: one port at a time is
//! the guest's ("active"), the one its `net_failover` receives on.
//!
//! The bridge gets one static, sticky forwarding entry for the guest's MAC
//! on the active port, so frames for the guest reach that port only (not
//! every port of the bridge, as flooding did), and moving the entry is one
//! atomic replace (no moment where the MAC is unknown and flooded). The
//! pair's other port is a *locked* bridge port (`bridge link set dev TAP
//! locked on`): a locked port forwards only frames whose source MAC has an
//! entry pointing at it, so with the entry elsewhere nothing the guest
//! sends through its inactive half enters the bridge. That is what keeps
//! the guest's own IPv6 duplicate-address probe (its slaves each probe the
//! master's link-local address with their own nonce) from coming back to
//! the master through the other half of the pair (issue 18).
//!
//! The active port follows the moments of a real VF's MAC
//! ([`crate::hostdev`]): the primary's from start, the standby's once the
//! guest unplugged the primary for a migration, the primary's again on a
//! rollback and on the destination, once the guest has taken the
//! re-plugged primary ([`primary_when_heard`]; until then a lab primary's
//! tap already holds the entry and both halves are open,
//! [`Active::Arriving`]). A lab primary's port is its tap on the lab
//! bridge; a real VF's is its PF when the PF is a port
//! of the standby's bridge (the NIC delivers what the PF sends to the
//! VF). A VF whose PF is not a port of that bridge leaves no entry there:
//! the bridge learns the MAC where the NIC reflects the VF's frames, as
//! before, and the standby's port stays open. The guest's `net_failover`
//! sends through its standby while the VF it registered has no link yet,
//! which takes igbvf seconds on hardware and a minute under nested TCG
//! (issue 16's VF lab: the guest answered 61 s after bonding its VF with
//! the standby locked, 17 s with it open). What the lock is for, the
//! guest's own duplicate-address probe coming back through the other half,
//! needs that other half to be a port of this bridge, which a VF elsewhere
//! is not.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::nl::parse_mac;
use super::{load_record, nl, Created};
use crate::state::{read_optional, remove_optional, write_atomic};

/// A failover pair member's port, as recorded in `netdevs.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Standby,
    Primary,
}

/// Which half of every pair of a run directory is the guest's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    Standby,
    Primary,
    /// A migration asked the guest to unplug its primary: frames for the
    /// guest already go to the standby (which it listens to whichever
    /// slave is active), and both halves are open, because the guest
    /// still sends through its primary until it lets go of it. Pinning
    /// the standby only once QEMU reports the unplug lost what arrived in
    /// between at a primary the guest no longer had (QEMU notices the
    /// eject on a 250 ms beat). The master's address is long past DAD
    /// here, so an open inactive half cannot fail it.
    Handover,
    /// The guest's primary is coming back (a migration's destination
    /// after the resume), not yet heard. A lab primary's tap holds frames
    /// until the guest's NIC takes them, while the guest's `net_failover`
    /// drops what reaches its standby once it registered the primary: the
    /// MAC is pinned on the lab tap at once. Both halves stay open, since
    /// the guest answers through its standby until its primary is up (a
    /// locked standby dropped those replies: the Debian guest lost 37 in a
    /// row right after the resume). A real VF drops what comes before its
    /// driver is up: there the standby keeps the entry, as `Standby`.
    Arriving,
}

/// An entry teamvirt pinned on a port it did not create (a PF): removed
/// when the domain's host networking is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub mac: String,
    pub port: String,
    pub ifindex: u32,
}

fn pin_path(run_dir: &Path) -> PathBuf {
    run_dir.join("fdb.json")
}

fn load_pins(run_dir: &Path) -> Vec<Pin> {
    read_optional(&pin_path(run_dir))
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn save_pins(run_dir: &Path, pins: &[Pin]) -> Result<(), String> {
    if pins.is_empty() {
        return remove_optional(&pin_path(run_dir)).map_err(|e| e.to_string());
    }
    let text = serde_json::to_string_pretty(pins).expect("serializes");
    write_atomic(&pin_path(run_dir), text.as_bytes(), 0o600).map_err(|e| e.to_string())
}

/// Where the primary of the pair with MAC `mac` is reached from its
/// standby's bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryPort {
    /// A port teamvirt made (lab mode's tap).
    Ours(Created),
    /// The VF's PF, a port of the bridge (not teamvirt's).
    Uplink { name: String, ifindex: u32 },
    /// A real VF whose PF is not a port of this bridge.
    Elsewhere,
    /// No primary on the host (none, or a lab primary with no bridge).
    None,
}

/// One pair: its standby's port and how its primary is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPorts {
    pub mac: [u8; 6],
    pub standby: Created,
    pub primary: PrimaryPort,
}

/// The pairs of `created` (a run directory's record), their primaries
/// found among the lab taps of the record and `vf_pfs` (guest MAC, PF
/// netdev of each real VF); `link` looks a PF up by name.
pub fn pairs_of(
    created: &[Created],
    vf_pfs: &[(String, String)],
    link: &dyn Fn(&str) -> Option<nl::Link>,
) -> Vec<PairPorts> {
    let mut out = Vec::new();
    for sb in created {
        let (Some(p), Some(bridge)) = (&sb.pair, &sb.bridge) else {
            continue;
        };
        let Some(mac) = (p.role == Role::Standby)
            .then(|| parse_mac(&p.mac))
            .flatten()
        else {
            continue;
        };
        let same_mac = |m: &str| parse_mac(m) == Some(mac);
        // A lab tap still there (a detached primary's went with QEMU's
        // descriptor).
        let lab = created.iter().find(|c| {
            c.bridge.as_deref() == Some(bridge.as_str())
                && c.pair
                    .as_ref()
                    .is_some_and(|q| q.role == Role::Primary && same_mac(&q.mac))
                && link(&c.ifname).is_some_and(|l| l.index == c.ifindex)
        });
        let primary = if let Some(l) = lab {
            PrimaryPort::Ours(l.clone())
        } else if let Some((_, pf)) = vf_pfs.iter().find(|(m, _)| same_mac(m)) {
            let br = link(bridge).map(|l| l.index);
            match link(pf) {
                Some(l) if br.is_some() && l.master == br => PrimaryPort::Uplink {
                    name: l.name,
                    ifindex: l.index,
                },
                _ => PrimaryPort::Elsewhere,
            }
        } else {
            PrimaryPort::None
        };
        out.push(PairPorts {
            mac,
            standby: sb.clone(),
            primary,
        });
    }
    out
}

/// Primary ports of `created` that are no pair's (their standby is on
/// another bridge, or there is none).
pub fn lone_primaries<'a>(created: &'a [Created], pairs: &[PairPorts]) -> Vec<&'a Created> {
    created
        .iter()
        .filter(|c| c.pair.as_ref().is_some_and(|m| m.role == Role::Primary))
        .filter(|c| {
            !pairs
                .iter()
                .any(|p| matches!(&p.primary, PrimaryPort::Ours(l) if l.ifindex == c.ifindex))
        })
        .collect()
}

/// What wiring one pair takes: the port to pin the MAC on (`None`: no
/// entry), ports to lock and ports to unlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub pin: Option<(u32, String)>,
    pub pin_is_ours: bool,
    pub lock: Vec<(u32, String)>,
    pub unlock: Vec<(u32, String)>,
}

/// The wiring of `p` with `active` the guest's half.
pub fn plan(p: &PairPorts, active: Active) -> Plan {
    let sb = (p.standby.ifindex, p.standby.ifname.clone());
    if active == Active::Handover {
        let mut unlock = vec![sb.clone()];
        if let PrimaryPort::Ours(l) = &p.primary {
            unlock.push((l.ifindex, l.ifname.clone()));
        }
        return Plan {
            pin: Some(sb),
            pin_is_ours: true,
            lock: vec![],
            unlock,
        };
    }
    if let (Active::Arriving, PrimaryPort::Ours(l)) = (active, &p.primary) {
        return Plan {
            pin: Some((l.ifindex, l.ifname.clone())),
            pin_is_ours: true,
            lock: vec![],
            unlock: vec![sb, (l.ifindex, l.ifname.clone())],
        };
    }
    let primary_active = active == Active::Primary;
    match (&p.primary, primary_active) {
        (PrimaryPort::Ours(l), true) => Plan {
            pin: Some((l.ifindex, l.ifname.clone())),
            pin_is_ours: true,
            lock: vec![sb],
            unlock: vec![(l.ifindex, l.ifname.clone())],
        },
        (PrimaryPort::Uplink { name, ifindex }, true) => Plan {
            pin: Some((*ifindex, name.clone())),
            pin_is_ours: false,
            lock: vec![sb],
            unlock: vec![],
        },
        (PrimaryPort::Elsewhere, true) => Plan {
            pin: None,
            pin_is_ours: false,
            lock: vec![],
            unlock: vec![sb],
        },
        (primary, _) => Plan {
            pin: Some(sb.clone()),
            pin_is_ours: true,
            lock: match primary {
                PrimaryPort::Ours(l) => vec![(l.ifindex, l.ifname.clone())],
                _ => vec![],
            },
            unlock: vec![sb],
        },
    }
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Make `active` the guest's half of every pair recorded in `run_dir`.
/// Returns the steps that failed (the caller reports them; the guest
/// keeps running either way).
pub fn wire(run_dir: &Path, active: Active) -> Vec<String> {
    let created = load_record(run_dir);
    if !created.iter().any(|c| c.pair.is_some()) {
        return Vec::new();
    }
    let vf_pfs = crate::hostdev::recorded_vf_pfs(run_dir);
    let link = |n: &str| nl::link_by_name(n).ok().flatten();
    let mut problems = Vec::new();
    let mut pins = load_pins(run_dir);
    let pairs = pairs_of(&created, &vf_pfs, &link);
    // A lab primary on another bridge than its standby is the guest's
    // only port there: its MAC pinned on it, never locked.
    for c in lone_primaries(&created, &pairs) {
        let mac = c.pair.as_ref().and_then(|m| parse_mac(&m.mac));
        let (Some(mac), true) = (mac, link(&c.ifname).is_some_and(|l| l.index == c.ifindex)) else {
            continue;
        };
        for (r, what) in [
            (nl::fdb_pin(c.ifindex, mac), "point the bridge entry at"),
            (nl::set_port_locked(c.ifindex, false), "unlock bridge port"),
        ] {
            if let Err(e) = r {
                problems.push(format!("cannot {what} {}: {e}", c.ifname));
            }
        }
    }
    for p in pairs {
        let w = plan(&p, active);
        let mac = mac_text(p.mac);
        // Order matters: the new port is opened after the entry moved to
        // it, the old one locked after that, so the guest's half is never
        // locked out, and at most one half sends at a time.
        let mut step = |r: std::io::Result<()>, what: String| {
            if let Err(e) = r {
                problems.push(format!("{what}: {e}"));
            }
        };
        match &w.pin {
            Some((idx, name)) => step(
                nl::fdb_pin(*idx, p.mac),
                format!("cannot point the bridge entry of {mac} at {name}"),
            ),
            None => {
                for (idx, name) in pins
                    .iter()
                    .filter(|x| x.mac == mac)
                    .map(|x| (x.ifindex, x.port.clone()))
                    .chain(std::iter::once((
                        p.standby.ifindex,
                        p.standby.ifname.clone(),
                    )))
                    .collect::<Vec<_>>()
                {
                    step(
                        nl::fdb_del(idx, p.mac),
                        format!("cannot remove the bridge entry of {mac} on {name}"),
                    );
                }
            }
        }
        pins.retain(|x| x.mac != mac);
        if let (Some((idx, name)), false) = (&w.pin, w.pin_is_ours) {
            pins.push(Pin {
                mac: mac.clone(),
                port: name.clone(),
                ifindex: *idx,
            });
        }
        for (idx, name) in &w.unlock {
            step(
                nl::set_port_locked(*idx, false),
                format!("cannot unlock bridge port {name}"),
            );
        }
        for (idx, name) in &w.lock {
            step(
                nl::set_port_locked(*idx, true),
                format!("cannot lock bridge port {name}"),
            );
        }
    }
    if let Err(e) = save_pins(run_dir, &pins) {
        problems.push(e);
    }
    problems
}

/// What the guest has done through the primary of `p` so far: a lab
/// tap's received packets, a real VF's transmitted packets and vfio
/// interrupts (`vf_activity`, by MAC); `None` when it cannot be known.
fn primary_sent(p: &PairPorts, vf_activity: &[(String, Option<u64>)]) -> Option<u64> {
    match &p.primary {
        PrimaryPort::Ours(l) => nl::rx_packets(l.ifindex).ok().flatten(),
        PrimaryPort::Uplink { .. } | PrimaryPort::Elsewhere => vf_activity
            .iter()
            .find(|(m, _)| parse_mac(m) == Some(p.mac))
            .and_then(|(_, n)| *n),
        PrimaryPort::None => None,
    }
}

/// How long [`primary_when_heard`] waits for a plugged primary's first
/// frame. A guest's VF driver takes from under a second (hardware) to
/// tens of seconds (igbvf in the nested-TCG VF lab: 16 s after the plug)
/// to register the VF and bring it up; with a 3 s bound the standby the
/// guest still used was locked 3 s after the resume and no reply came
/// back until the VF was up (17.7 s against 0.6 s for plain virtio).
pub const HEARD_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// What [`primary_when_heard`] saw.
#[derive(Debug, Default)]
pub struct Heard {
    /// How long it waited.
    pub waited: std::time::Duration,
    /// Every awaited primary sent (false: the bound ran out, or nothing
    /// could be counted).
    pub heard: bool,
    /// Some awaited primary's activity could be counted at all (false:
    /// no statistics, no interrupts; nothing was waited for).
    pub countable: bool,
    /// The pairs waited for (bridge ports teamvirt wires).
    pub pairs: usize,
    /// Steps of the wiring that failed.
    pub problems: Vec<String>,
}

/// Make the primaries' halves the guest's once the guest has taken its
/// primaries again (a migration destination after the guest resumed, a
/// rollback after the replug): when each awaited primary has sent its
/// first frame (a registered slave's link-up chatter, or the guest's
/// traffic; before `net_failover` registers it, a primary is closed and
/// sends nothing), or after `bound`, whichever comes first. Until then
/// frames for the guest go to its standby, which it listens to until it
/// registers the primary: no loss while the guest probes its new
/// primary. `awaited` names the MACs of the pairs whose primary is
/// plugged (`None`: all); a pair whose primary QEMU did not plug (a
/// guest without failover) is not waited for.
pub fn primary_when_heard(
    run_dir: &Path,
    bound: std::time::Duration,
    awaited: Option<&[String]>,
) -> Heard {
    let created = load_record(run_dir);
    let vf_pfs = crate::hostdev::recorded_vf_pfs(run_dir);
    let link = |n: &str| nl::link_by_name(n).ok().flatten();
    let pairs: Vec<PairPorts> = pairs_of(&created, &vf_pfs, &link)
        .into_iter()
        .filter(|p| awaited.is_none_or(|a| a.iter().any(|m| parse_mac(m) == Some(p.mac))))
        .collect();
    let sent = |vf_activity: &[(String, Option<u64>)]| -> Vec<Option<u64>> {
        pairs.iter().map(|p| primary_sent(p, vf_activity)).collect()
    };
    let base = sent(&crate::hostdev::recorded_vf_activity(run_dir));
    let countable = base.iter().any(Option::is_some);
    // Frames for the guest wait in a lab primary's tap from now on, and
    // the guest may answer through either half until it is heard.
    let mut problems = if countable {
        wire(run_dir, Active::Arriving)
    } else {
        Vec::new()
    };
    let not_guest: Vec<u64> = pairs.iter().map(qemu_frames).collect();
    let start = std::time::Instant::now();
    let mut heard = false;
    while countable && start.elapsed() < bound {
        std::thread::sleep(HEARD_POLL);
        let now = sent(&crate::hostdev::recorded_vf_activity(run_dir));
        heard = base
            .iter()
            .zip(&now)
            .zip(&not_guest)
            .all(|((b, n), q)| sent_by_guest(*b, *n, *q));
        if heard {
            break;
        }
    }
    let waited = start.elapsed();
    problems.extend(wire(run_dir, Active::Primary));
    Heard {
        waited,
        heard,
        countable,
        pairs: pairs.len(),
        problems,
    }
}

/// Frames QEMU itself sends through a lab primary after an incoming
/// migration resumes: its self-announcement, one RARP per round
/// (`announce-rounds`, 5 by default) for a NIC model without a guest-side
/// announce (vmxnet3 has none). Through a real VF QEMU sends nothing.
/// Counted as the guest's, they made a lab primary "heard" 0.0-0.3 s after
/// the resume, before the guest had brought it up, and its standby was
/// locked while the guest still answered through it.
pub const LAB_ANNOUNCE_FRAMES: u64 = 5;

fn qemu_frames(p: &PairPorts) -> u64 {
    match p.primary {
        PrimaryPort::Ours(_) => LAB_ANNOUNCE_FRAMES,
        _ => 0,
    }
}

/// Whether a primary counted `base` then `now` frames has sent one of the
/// guest's, `qemu` of them possibly QEMU's own; `None` base: not counted,
/// not waited for.
fn sent_by_guest(base: Option<u64>, now: Option<u64>, qemu: u64) -> bool {
    match (base, now) {
        (None, _) => true,
        (Some(b), Some(n)) => n > b.saturating_add(qemu),
        (Some(_), None) => false,
    }
}

/// How often [`primary_when_heard`] looks.
const HEARD_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Remove the entries [`wire`] pinned on ports teamvirt did not create
/// (its own ports take theirs with them). Only an entry still on the very
/// port recorded (same index and name).
pub fn release(run_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for p in load_pins(run_dir) {
        let Some(mac) = parse_mac(&p.mac) else {
            continue;
        };
        match nl::link_by_index(p.ifindex) {
            Ok(Some(l)) if l.name == p.port => {
                if let Err(e) = nl::fdb_del(p.ifindex, mac) {
                    problems.push(format!(
                        "cannot remove the bridge entry of {} on {}: {e}",
                        p.mac, p.port
                    ));
                }
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("cannot look up {}: {e}", p.port)),
        }
    }
    let _ = remove_optional(&pin_path(run_dir));
    problems
}

/// Park (`park`) or unpark every VF recorded in `run_dir` (see
/// [`crate::hostdev::PreparedVf::parked`]); the record is updated. The
/// failover pairs' bridge ports follow (standby active while parked),
/// lab primaries included. Returns the failures.
fn park_recorded(run_dir: &Path, park: bool, active: Active) -> Vec<String> {
    let mut problems = crate::hostdev::park_vfs(run_dir, park);
    problems.extend(wire(run_dir, active));
    problems
}

/// Migration source, once the guest has unplugged its VFs: the PF gets
/// the VFs' original MAC and VLAN back at once (libvirt restores them when
/// `DEVICE_DELETED` arrives), so the NIC stops steering the guest's frames
/// to a VF nobody reads and they reach the standby for the rest of the
/// migration. Undone by [`apply_parked_recorded`] on a rollback.
pub fn park_recorded_vfs(run_dir: &Path) -> Vec<String> {
    park_recorded(run_dir, true, Active::Standby)
}

/// The guest's MAC and VLAN on every parked VF of `run_dir`, and the
/// primaries' halves of the pairs the guest's.
pub fn apply_parked_recorded(run_dir: &Path) -> Vec<String> {
    park_recorded(run_dir, false, Active::Primary)
}

/// [`apply_parked_recorded`] for a guest about to take its primaries
/// again (a migration destination right before the guest resumes, a
/// source rolling back): the VFs get the guest's MAC now (its VF driver
/// reads it when it probes), the standbys' halves stay the guest's until
/// [`primary_when_heard`].
pub fn apply_parked_standby_first(run_dir: &Path) -> Vec<String> {
    park_recorded(run_dir, false, Active::Standby)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netdev::PairMember;

    const M: &str = "52:54:00:77:00:02";

    fn port(name: &str, idx: u32, role: Option<Role>, mac: &str) -> Created {
        Created {
            device: name.into(),
            ifname: name.into(),
            ifindex: idx,
            kind: "tap".into(),
            bridge: Some("br0".into()),
            ovs: false,
            pair: role.map(|role| PairMember {
                mac: mac.into(),
                role,
            }),
        }
    }

    fn link(name: &str, idx: u32, master: Option<u32>) -> nl::Link {
        nl::Link {
            index: idx,
            name: name.into(),
            mtu: None,
            kind: None,
            master,
            mac: None,
        }
    }

    #[test]
    fn lab_pair_pins_the_active_half_and_locks_the_other() {
        let rec = vec![
            port("vnet0", 10, Some(Role::Standby), M),
            port("vnet1", 11, Some(Role::Primary), M),
            port("vnet2", 12, None, "52:54:00:00:00:09"),
        ];
        let taps = |n: &str| match n {
            "vnet1" => Some(link("vnet1", 11, Some(2))),
            _ => None,
        };
        let pairs = pairs_of(&rec, &[], &taps);
        assert_eq!(pairs.len(), 1);
        let up = plan(&pairs[0], Active::Primary);
        assert_eq!(up.pin, Some((11, "vnet1".into())));
        assert_eq!(up.lock, vec![(10, "vnet0".into())]);
        assert_eq!(up.unlock, vec![(11, "vnet1".into())]);
        let down = plan(&pairs[0], Active::Standby);
        assert_eq!(down.pin, Some((10, "vnet0".into())));
        assert_eq!(down.lock, vec![(11, "vnet1".into())]);
        assert_eq!(down.unlock, vec![(10, "vnet0".into())]);
        // A migration's unplug under way: frames to the standby, both open.
        let over = plan(&pairs[0], Active::Handover);
        assert_eq!(over.pin, Some((10, "vnet0".into())));
        assert!(over.lock.is_empty());
        assert_eq!(
            over.unlock,
            vec![(10, "vnet0".into()), (11, "vnet1".into())]
        );
        // Its primary coming: frames wait in its tap, both halves open.
        let coming = plan(&pairs[0], Active::Arriving);
        assert_eq!(coming.pin, Some((11, "vnet1".into())));
        assert!(coming.lock.is_empty());
        assert_eq!(
            coming.unlock,
            vec![(10, "vnet0".into()), (11, "vnet1".into())]
        );
        // Its tap gone (primary detached): the standby's alone.
        let p = &pairs_of(&rec, &[], &|_| None)[0];
        assert_eq!(p.primary, PrimaryPort::None);
        assert_eq!(plan(p, Active::Primary).pin, Some((10, "vnet0".into())));
    }

    #[test]
    fn real_vf_pins_its_pf_when_the_pf_is_a_port_of_the_bridge() {
        let rec = vec![port("vnet0", 10, Some(Role::Standby), M)];
        let vfs = vec![(M.to_string(), "enp3s0f0".to_string())];
        let in_bridge = |n: &str| match n {
            "br0" => Some(link("br0", 2, None)),
            "enp3s0f0" => Some(link("enp3s0f0", 3, Some(2))),
            _ => None,
        };
        let p = &pairs_of(&rec, &vfs, &in_bridge)[0];
        let up = plan(p, Active::Primary);
        assert_eq!(
            (up.pin, up.pin_is_ours),
            (Some((3, "enp3s0f0".into())), false)
        );
        assert_eq!(up.lock, vec![(10, "vnet0".into())]);
        assert!(up.unlock.is_empty(), "the PF is never locked");
        let down = plan(p, Active::Standby);
        assert_eq!(down.pin, Some((10, "vnet0".into())));
        assert!(down.lock.is_empty());
        // A real VF coming drops what it gets before its driver is up:
        // the standby keeps the entry until it is heard.
        assert_eq!(plan(p, Active::Arriving), down);

        // A PF behind something else (a bond, a VLAN): no entry, learning.
        let elsewhere = |n: &str| match n {
            "br0" => Some(link("br0", 2, None)),
            "enp3s0f0" => Some(link("enp3s0f0", 3, Some(7))),
            _ => None,
        };
        let p = &pairs_of(&rec, &vfs, &elsewhere)[0];
        assert_eq!(p.primary, PrimaryPort::Elsewhere);
        let up = plan(p, Active::Primary);
        assert_eq!(up.pin, None);
        // The standby stays open: the guest sends through it until its VF
        // has a link (issue 16's lab: 61 s with it locked, 17 s open).
        assert!(up.lock.is_empty(), "{up:?}");
        assert_eq!(up.unlock, vec![(10, "vnet0".into())]);
    }

    #[test]
    fn a_lab_primary_on_another_bridge_is_alone_there() {
        let mut lab = port("vnet1", 11, Some(Role::Primary), M);
        lab.bridge = Some("labbr".into());
        let rec = vec![port("vnet0", 10, Some(Role::Standby), M), lab];
        let taps = |n: &str| (n == "vnet1").then(|| link("vnet1", 11, Some(3)));
        let pairs = pairs_of(&rec, &[], &taps);
        assert_eq!(pairs[0].primary, PrimaryPort::None);
        let lone: Vec<&str> = lone_primaries(&rec, &pairs)
            .iter()
            .map(|c| c.ifname.as_str())
            .collect();
        assert_eq!(lone, vec!["vnet1"]);
        // On the standby's bridge it is a pair: not alone.
        let rec = vec![
            port("vnet0", 10, Some(Role::Standby), M),
            port("vnet1", 11, Some(Role::Primary), M),
        ];
        let pairs = pairs_of(&rec, &[], &taps);
        assert!(lone_primaries(&rec, &pairs).is_empty());
    }

    #[test]
    fn a_standby_without_primary_stays_active() {
        let rec = vec![port("vnet0", 10, Some(Role::Standby), M)];
        let p = &pairs_of(&rec, &[], &|_| None)[0];
        assert_eq!(p.primary, PrimaryPort::None);
        let w = plan(p, Active::Primary);
        assert_eq!(w.pin, Some((10, "vnet0".into())));
        assert!(w.lock.is_empty());
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac(M), Some([0x52, 0x54, 0, 0x77, 0, 2]));
        assert_eq!(parse_mac("52:54:00:77:00"), None);
        assert_eq!(parse_mac("52:54:00:77:00:zz"), None);
    }

    #[test]
    fn qemu_announcing_through_a_lab_primary_is_not_the_guest() {
        // A real VF: its first frame is the guest's.
        assert!(sent_by_guest(Some(10), Some(11), 0));
        assert!(!sent_by_guest(Some(10), Some(10), 0));
        // A lab primary: QEMU's five RARPs after the resume are not.
        assert!(!sent_by_guest(
            Some(0),
            Some(LAB_ANNOUNCE_FRAMES),
            LAB_ANNOUNCE_FRAMES
        ));
        assert!(sent_by_guest(
            Some(0),
            Some(LAB_ANNOUNCE_FRAMES + 1),
            LAB_ANNOUNCE_FRAMES
        ));
        // Not countable: never waited for; lost counter: not heard.
        assert!(sent_by_guest(None, None, 0));
        assert!(!sent_by_guest(Some(3), None, 0));
        assert!(!sent_by_guest(Some(u64::MAX), Some(u64::MAX), 5));
    }
}
