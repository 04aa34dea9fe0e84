//! Host networking: taps, macvtaps, bridge ports (netlink).
//!
//! Host networking for tap-backed NICs, as libvirt's QEMU driver does it
//! (`qemuInterfaceBridgeConnect`, `qemuInterfaceEthernetConnect`,
//! `qemuInterfaceDirectConnect`): a tap on a Linux or Open vSwitch bridge,
//! a tap of its own (`type='ethernet'`), or a macvtap on a host NIC, each
//! handed to QEMU as open descriptors (plus vhost-net ones). Also the lab
//! VF's tap on a pool's `--lab-bridge`.
//!
//! Everything created is recorded in the run directory (`netdevs.json`)
//! as it is created, and removed by [`release_recorded`] wherever the VFs
//! are given back (destroy, QEMU found dead, failed start, migration).
//! Taps are not persistent: they vanish with QEMU's descriptors; macvtaps
//! and OVS ports do not, and are deleted.

pub mod dest;
pub mod nl;
pub mod pair;
pub mod tap;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};
use teamvirt_conf::model::{DomainDef, Interface, InterfaceType, MacAddr, TeamingType};
use teamvirt_qemu::command::NetFds;
use teamvirt_qemu::resolve::{ActualNet, NetworkSource};

use crate::state::{read_optional, remove_optional, write_atomic};

/// Errors of host network setup.
#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    #[error("Unable to add bridge {bridge} port {tap}: {source}")]
    Bridge {
        bridge: String,
        tap: String,
        source: std::io::Error,
    },
    #[error("Requested operation is not valid: network '{network}' is not active: its bridge '{bridge}' does not exist")]
    NetworkInactive { network: String, bridge: String },
    #[error("Cannot get interface MTU on '{bridge}': No such device")]
    NoBridge { bridge: String },
    #[error("Unable to create tap device {name}: {source}")]
    Tap {
        name: String,
        source: std::io::Error,
    },
    #[error("Unable to create macvtap device on {dev}: {source}")]
    Macvtap { dev: String, source: std::io::Error },
    #[error("Unable to get index for interface {dev}: No such device")]
    NoDevice { dev: String },
    #[error("Unable to add port {tap} to OVS bridge {bridge}: {reason}")]
    Ovs {
        tap: String,
        bridge: String,
        reason: String,
    },
    #[error("unsupported configuration: interface {mac} is a failover standby on network '{network}' (forward mode '{mode}'), which is not the L2 segment of its VF: while the VF is unplugged (migration) its traffic would go to a different network; put the standby on a bridge over the VF's PF (<forward mode='bridge'/> or <interface type='bridge'>)")]
    StandbyNotOnVfSegment {
        mac: String,
        network: String,
        mode: String,
    },
    #[error("cannot set up host network device {what}: {source}")]
    Link {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// One thing created on the host for a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// What it serves: `net0 (52:54:00:..)` or `lab hostdev0`.
    pub device: String,
    pub ifname: String,
    pub ifindex: u32,
    /// `tap` or `macvtap`.
    pub kind: String,
    pub bridge: Option<String>,
    /// An Open vSwitch port (removed with ovs-vsctl).
    #[serde(default)]
    pub ovs: bool,
    /// A bridge port of one half of a failover pair (see [`pair`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair: Option<PairMember>,
}

/// Which half of which failover pair a bridge port serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairMember {
    /// The guest's MAC (both halves have it).
    pub mac: String,
    pub role: pair::Role,
}

/// The file of what was created, in a run directory.
pub fn record_path(run_dir: &Path) -> std::path::PathBuf {
    run_dir.join("netdevs.json")
}

/// What [`setup`] recorded in `run_dir` (empty when nothing or unreadable).
pub fn recorded(run_dir: &Path) -> Vec<Created> {
    load_record(run_dir)
}

fn load_record(run_dir: &Path) -> Vec<Created> {
    read_optional(&record_path(run_dir))
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn save_record(run_dir: &Path, list: &[Created]) -> Result<(), NetdevError> {
    let text = serde_json::to_string_pretty(list).expect("serializes");
    write_atomic(&record_path(run_dir), text.as_bytes(), 0o600)?;
    Ok(())
}

/// Record one creation at once (before anything else can fail).
fn append_record(run_dir: &Path, c: Created) -> Result<(), NetdevError> {
    let mut list = load_record(run_dir);
    list.push(c);
    save_record(run_dir, &list)
}

/// Remove what [`setup`] recorded in `run_dir` (its QEMU is gone). Returns
/// the steps that failed; the record goes once everything is gone.
pub fn release_recorded(run_dir: &Path) -> Vec<String> {
    let mut problems = pair::release(run_dir);
    let list = load_record(run_dir);
    if list.is_empty() {
        let _ = remove_optional(&record_path(run_dir));
        return problems;
    }
    let mut left = Vec::new();
    for c in list {
        let mut ok = true;
        if c.ovs {
            if let Err(e) = ovs_vsctl(&["--if-exists", "del-port", &c.ifname]) {
                problems.push(format!("cannot remove OVS port {}: {e}", c.ifname));
                ok = false;
            }
        }
        // Only the very link created (same name and index): a tap that
        // vanished with QEMU may have a namesake by now.
        match nl::link_by_index(c.ifindex) {
            Ok(Some(l)) if l.name == c.ifname => {
                if let Err(e) = nl::del_link(c.ifindex) {
                    problems.push(format!("cannot delete {} {}: {e}", c.kind, c.ifname));
                    ok = false;
                }
            }
            Ok(_) => {}
            Err(e) => {
                problems.push(format!("cannot look up {} {}: {e}", c.kind, c.ifname));
                ok = false;
            }
        }
        if !ok {
            left.push(c);
        }
    }
    if left.is_empty() {
        let _ = remove_optional(&record_path(run_dir));
    } else {
        let _ = save_record(run_dir, &left);
    }
    problems
}

/// Descriptors opened for QEMU, by interface index.
#[derive(Debug, Default)]
pub struct HostNet {
    /// Tap/vhost fds of tap-backed interfaces.
    pub net_fds: HashMap<usize, NetFds>,
    /// Tap fds of lab-mode primaries on a lab bridge.
    pub lab_fds: HashMap<usize, NetFds>,
    /// The descriptors themselves: QEMU must inherit them, then they are
    /// closed here.
    pub fds: Vec<OwnedFd>,
}

impl HostNet {
    /// Raw numbers of every descriptor QEMU must inherit.
    pub fn raw(&self) -> Vec<RawFd> {
        self.fds.iter().map(AsRawFd::as_raw_fd).collect()
    }

    fn take(&mut self, fds: Vec<OwnedFd>) -> Vec<String> {
        let nums = fds.iter().map(|f| f.as_raw_fd().to_string()).collect();
        self.fds.extend(fds);
        nums
    }

    /// Keep an interface's tap queues (and vhost-net descriptors when it
    /// wants and can have them) for QEMU, under the interface's index.
    fn hand_over(&mut self, w: &Want, fds: Vec<OwnedFd>, queues: u32) {
        let tap = self.take(fds);
        let vhost = if wants_vhost(w.net) {
            tap::open_vhost(queues)
                .map(|v| self.take(v))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        self.net_fds.insert(w.index, NetFds { tap, vhost });
    }
}

/// Open vSwitch's command, as libvirt runs it.
fn ovs_vsctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ovs-vsctl")
        .arg("--timeout=5")
        .args(args)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "Open vSwitch is not installed (no ovs-vsctl in PATH)".to_string()
            } else {
                format!("cannot run ovs-vsctl: {e}")
            }
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn mac_of(net: &Interface) -> Option<[u8; 6]> {
    net.mac.as_ref().map(|m| m.address.0)
}

fn mac_str(net: &Interface) -> String {
    net.mac
        .as_ref()
        .map(|m| m.address.to_string())
        .unwrap_or_default()
}

/// libvirt gives the host side of a tap the guest's MAC with the first
/// byte 0xFE, so the bridge never takes it as its own address.
pub fn host_mac(guest: [u8; 6]) -> [u8; 6] {
    let mut m = guest;
    m[0] = 0xfe;
    m
}

/// What a standby on a network needs: a bridge on the VF's segment.
/// `Some(mode)` for networks whose traffic goes somewhere else (nat,
/// route, open, isolated).
pub fn other_segment_mode(nd: &teamvirt_conf::NetworkDef) -> Option<String> {
    let mode = nd.forward.as_ref().map_or("none", |f| f.mode_str());
    match mode {
        "nat" | "route" | "open" => Some(mode.to_string()),
        "none" => Some("none (isolated)".to_string()),
        _ => None,
    }
}

/// Refuse a standby on a network that is not the VF's L2 segment.
pub fn check_standbys(def: &DomainDef, source: &dyn NetworkSource) -> Result<(), NetdevError> {
    for net in &def.devices.interfaces {
        if net.type_ != InterfaceType::Network
            || net.teaming_type() != Some(TeamingType::Persistent)
        {
            continue;
        }
        let name = net.source_network().unwrap_or_default();
        if let Ok(Some((nd, _))) = source.lookup(name) {
            if let Some(mode) = other_segment_mode(&nd) {
                return Err(NetdevError::StandbyNotOnVfSegment {
                    mac: mac_str(net),
                    network: name.to_string(),
                    mode,
                });
            }
        }
    }
    Ok(())
}

/// What one interface needs on the host.
struct Want<'a> {
    index: usize,
    net: &'a Interface,
    actual: &'a ActualNet,
    run_dir: &'a Path,
}

fn queues_of(net: &Interface) -> u32 {
    net.driver
        .as_ref()
        .and_then(|d| d.queues)
        .unwrap_or(1)
        .max(1)
}

fn wants_vhost(net: &Interface) -> bool {
    net.is_virtio() && net.driver.as_ref().and_then(|d| d.name.as_deref()) != Some("qemu")
}

/// Create the host side of every tap-backed interface of `def` (resolved
/// as `actual`) and, for `lab` (interface index -> bridge), a tap on the
/// lab bridge for each lab-mode primary. Every creation is recorded in
/// `run_dir` before the next; on error the caller releases the record.
pub fn setup(
    def: &DomainDef,
    actual: &[ActualNet],
    lab: &HashMap<usize, String>,
    run_dir: &Path,
) -> Result<HostNet, NetdevError> {
    let mut host = HostNet::default();
    let vm_uuid = def.uuid.map(|u| u.to_string());
    for (index, (net, actual)) in def.devices.interfaces.iter().zip(actual).enumerate() {
        let w = Want {
            index,
            net,
            actual,
            run_dir,
        };
        match actual.type_ {
            InterfaceType::Bridge | InterfaceType::Network => {
                if let Some(bridge) = actual.bridge.clone() {
                    bridge_tap(&mut host, &w, &bridge, vm_uuid.as_deref())?;
                }
            }
            InterfaceType::Ethernet => ethernet_tap(&mut host, &w)?,
            InterfaceType::Direct => macvtap(&mut host, &w)?,
            _ => {}
        }
    }
    let mut lab: Vec<_> = lab.iter().collect();
    lab.sort();
    for (&index, bridge) in lab {
        let Some(net) = def.devices.interfaces.get(index) else {
            continue;
        };
        let label = format!("lab VF of interface {index} ({})", mac_str(net));
        let fd = lab_tap(&mut host, &label, mac_of(net), bridge, run_dir)?;
        host.lab_fds.insert(
            index,
            NetFds {
                tap: vec![fd],
                vhost: Vec::new(),
            },
        );
    }
    Ok(host)
}

#[allow(clippy::too_many_lines)] // moves to the host crate (issue 20 item 1), split there
fn bridge_tap(
    host: &mut HostNet,
    w: &Want,
    bridge: &str,
    vm_uuid: Option<&str>,
) -> Result<(), NetdevError> {
    let br = nl::link_by_name(bridge)
        .map_err(|source| NetdevError::Link {
            what: bridge.to_string(),
            source,
        })?
        .ok_or_else(|| match &w.actual.network {
            Some(n) => NetdevError::NetworkInactive {
                network: n.clone(),
                bridge: bridge.to_string(),
            },
            None => NetdevError::NoBridge {
                bridge: bridge.to_string(),
            },
        })?;
    let ovs = w
        .net
        .virtualport
        .as_ref()
        .is_some_and(|v| v.type_.as_deref() == Some("openvswitch"));
    if ovs && ovs_vsctl(&["--version"]).is_err() {
        return Err(NetdevError::Ovs {
            tap: "(not created)".into(),
            bridge: bridge.to_string(),
            reason: "Open vSwitch is not installed (no ovs-vsctl in PATH)".into(),
        });
    }
    let template = w
        .net
        .target
        .as_ref()
        .map_or("vnet%d".to_string(), |t| t.dev.clone());
    let queues = queues_of(w.net);
    let (name, fds) =
        tap::open_tap(&template, queues, w.net.is_virtio()).map_err(|source| NetdevError::Tap {
            name: template.clone(),
            source,
        })?;
    let idx = nl::link_by_name(&name)
        .ok()
        .flatten()
        .map(|l| l.index)
        .ok_or_else(|| NetdevError::NoDevice { dev: name.clone() })?;
    let standby = !ovs && w.net.teaming_type() == Some(TeamingType::Persistent);
    // Wired as a pair's half only with the guest's MAC to pin.
    let member = mac_of(w.net).filter(|_| standby).map(|m| PairMember {
        mac: MacAddr(m).to_string(),
        role: pair::Role::Standby,
    });
    let lock = member.is_some();
    append_record(
        w.run_dir,
        Created {
            device: format!("net{} ({})", w.index, mac_str(w.net)),
            ifname: name.clone(),
            ifindex: idx,
            kind: "tap".into(),
            bridge: Some(bridge.to_string()),
            ovs,
            pair: member,
        },
    )?;
    let mtu = w.net.mtu.as_ref().map(|m| m.size).or(br.mtu);
    let mac = mac_of(w.net).map(host_mac);
    let fail = |source| NetdevError::Bridge {
        bridge: bridge.to_string(),
        tap: name.clone(),
        source,
    };
    if ovs {
        nl::configure(idx, mac, mtu, None, false).map_err(fail)?;
        let guest_mac = mac_str(w.net);
        let iface_id = w
            .net
            .virtualport
            .as_ref()
            .and_then(|v| v.parameters.as_ref())
            .and_then(|p| p.interfaceid.clone())
            .unwrap_or_else(|| vm_uuid.unwrap_or_default().to_string());
        let mut args: Vec<String> = vec![
            "--".into(),
            "--may-exist".into(),
            "add-port".into(),
            bridge.into(),
            name.clone(),
            "--".into(),
            "set".into(),
            "Interface".into(),
            name.clone(),
            format!("external-ids:attached-mac=\"{guest_mac}\""),
            "--".into(),
            "set".into(),
            "Interface".into(),
            name.clone(),
            format!("external-ids:iface-id=\"{iface_id}\""),
        ];
        if let Some(u) = vm_uuid {
            args.extend([
                "--".into(),
                "set".into(),
                "Interface".into(),
                name.clone(),
                format!("external-ids:vm-id=\"{u}\""),
            ]);
        }
        args.extend([
            "--".into(),
            "set".into(),
            "Interface".into(),
            name.clone(),
            "external-ids:iface-status=active".into(),
        ]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        // Recorded first: a half-added port is removed with the rest.
        ovs_vsctl(&argv).map_err(|reason| NetdevError::Ovs {
            tap: name.clone(),
            bridge: bridge.to_string(),
            reason,
        })?;
        nl::configure(idx, None, None, None, true).map_err(fail)?;
    } else {
        nl::configure(idx, mac, mtu, Some(br.index), true).map_err(fail)?;
        if standby {
            pair_port(idx, bridge, &name, lock)?;
        }
    }
    host.hand_over(w, fds, queues);
    Ok(())
}

/// `type='ethernet'`: a tap of its own, not on any bridge; with
/// `<target managed='no'>` an existing tap opened as it is.
fn ethernet_tap(host: &mut HostNet, w: &Want) -> Result<(), NetdevError> {
    let target = w.net.target.as_ref();
    let unmanaged = target.is_some_and(|t| t.managed == Some(false));
    let template = target.map_or("vnet%d".to_string(), |t| t.dev.clone());
    let queues = queues_of(w.net);
    if unmanaged && nl::link_by_name(&template).ok().flatten().is_none() {
        return Err(NetdevError::NoDevice { dev: template });
    }
    let (name, fds) =
        tap::open_tap(&template, queues, w.net.is_virtio()).map_err(|source| NetdevError::Tap {
            name: template.clone(),
            source,
        })?;
    if !unmanaged {
        let idx = nl::link_by_name(&name)
            .ok()
            .flatten()
            .map(|l| l.index)
            .ok_or_else(|| NetdevError::NoDevice { dev: name.clone() })?;
        append_record(
            w.run_dir,
            Created {
                device: format!("net{} ({})", w.index, mac_str(w.net)),
                ifname: name.clone(),
                ifindex: idx,
                kind: "tap".into(),
                bridge: None,
                ovs: false,
                pair: None,
            },
        )?;
        let mac = mac_of(w.net).map(host_mac);
        let mtu = w.net.mtu.as_ref().map(|m| m.size);
        nl::configure(idx, mac, mtu, None, true).map_err(|source| NetdevError::Link {
            what: name.clone(),
            source,
        })?;
    }
    host.hand_over(w, fds, queues);
    Ok(())
}

/// `type='direct'`: a macvtap on the host NIC with the guest's MAC, its
/// character device passed to QEMU (libvirt's `macvtap%d` naming).
fn macvtap(host: &mut HostNet, w: &Want) -> Result<(), NetdevError> {
    let dev = w.actual.direct_dev.clone().unwrap_or_default();
    let parent = nl::link_by_name(&dev)
        .ok()
        .flatten()
        .ok_or_else(|| NetdevError::NoDevice { dev: dev.clone() })?;
    let mode = w.actual.direct_mode.as_deref().unwrap_or("vepa");
    let mac = mac_of(w.net);
    let wanted = w.net.target.as_ref().map(|t| t.dev.clone());
    let mut n = 0;
    let (name, idx) = loop {
        let name = wanted.clone().unwrap_or_else(|| format!("macvtap{n}"));
        match nl::add_macvtap(&name, parent.index, mode, mac) {
            Ok(i) => break (name, i),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && wanted.is_none() && n < 1000 => {
                n += 1;
            }
            Err(source) => return Err(NetdevError::Macvtap { dev, source }),
        }
    };
    // Recorded before anything else can fail: the macvtap outlives us.
    append_record(
        w.run_dir,
        Created {
            device: format!("net{} ({})", w.index, mac_str(w.net)),
            ifname: name.clone(),
            ifindex: idx,
            kind: "macvtap".into(),
            bridge: None,
            ovs: false,
            pair: None,
        },
    )?;
    let mtu = w.net.mtu.as_ref().map(|m| m.size);
    nl::configure(idx, None, mtu, None, true).map_err(|source| NetdevError::Link {
        what: name.clone(),
        source,
    })?;
    let queues = queues_of(w.net);
    let fds =
        tap::open_macvtap(&name, idx, queues, w.run_dir).map_err(|source| NetdevError::Link {
            what: format!("/dev/tap{idx} of {name}"),
            source,
        })?;
    host.hand_over(w, fds, queues);
    Ok(())
}

/// Lab mode on a bridge: the emulated primary's backend is a tap on the
/// pool's lab bridge, so its traffic reaches the standby's segment.
/// Returns the descriptor's number.
pub(crate) fn lab_tap(
    host: &mut HostNet,
    label: &str,
    mac: Option<[u8; 6]>,
    bridge: &str,
    run_dir: &Path,
) -> Result<String, NetdevError> {
    let br = nl::link_by_name(bridge)
        .map_err(|source| NetdevError::Link {
            what: bridge.to_string(),
            source,
        })?
        .ok_or_else(|| NetdevError::NoBridge {
            bridge: bridge.to_string(),
        })?;
    let (name, fds) = tap::open_tap("vnet%d", 1, false).map_err(|source| NetdevError::Tap {
        name: "vnet%d".into(),
        source,
    })?;
    let idx = nl::link_by_name(&name)
        .ok()
        .flatten()
        .map(|l| l.index)
        .ok_or_else(|| NetdevError::NoDevice { dev: name.clone() })?;
    append_record(
        run_dir,
        Created {
            device: label.to_string(),
            ifname: name.clone(),
            ifindex: idx,
            kind: "tap".into(),
            bridge: Some(bridge.to_string()),
            ovs: false,
            pair: mac.map(|m| PairMember {
                mac: MacAddr(m).to_string(),
                role: pair::Role::Primary,
            }),
        },
    )?;
    nl::configure(idx, mac.map(host_mac), br.mtu, Some(br.index), true).map_err(|source| {
        NetdevError::Bridge {
            bridge: bridge.to_string(),
            tap: name.clone(),
            source,
        }
    })?;
    pair_port(idx, bridge, &name, mac.is_some())?;
    Ok(host.take(fds).remove(0))
}

/// A bridge port of one half of a failover pair: no address learning,
/// and (`lock`: it is recorded as a pair's half) locked until
/// [`pair::wire`] makes it the guest's half.
///
/// The guest's MAC must not be learnt on either half: the guest's
/// net_failover takes frames only from the primary while one is
/// registered, and only from the standby otherwise; a bridge that learnt
/// the MAC on one port keeps sending there after the other took over
/// (the primary unplugged on the source, re-plugged on the destination):
/// seconds of loss. Where the guest's frames go is [`pair::wire`]'s
/// static entry, moved at exactly those moments.
fn pair_port(idx: u32, bridge: &str, name: &str, lock: bool) -> Result<(), NetdevError> {
    let fail = |source| NetdevError::Bridge {
        bridge: bridge.to_string(),
        tap: name.to_string(),
        source,
    };
    nl::set_port_learning(idx, false).map_err(fail)?;
    if lock {
        nl::set_port_locked(idx, true).map_err(fail)?;
    }
    Ok(())
}

/// [`setup`] for `start`: resolve the interfaces through `source` (taps
/// do not depend on which VF a pool hands out), and give each lab-mode
/// primary drawn from a network of `lab_bridges` a tap on that bridge.
pub fn setup_for_start(
    def: &DomainDef,
    source: &dyn NetworkSource,
    lab_bridges: &std::collections::BTreeMap<String, String>,
    emulate: bool,
    run_dir: &Path,
) -> Result<HostNet, NetdevError> {
    let (actual, _) = teamvirt_qemu::resolve::resolve_for_checks(def, source);
    let mut lab = HashMap::new();
    if emulate {
        for (i, (net, a)) in def.devices.interfaces.iter().zip(&actual).enumerate() {
            if net.teaming_type() != Some(TeamingType::Transient) {
                continue;
            }
            if let Some(br) = a.network.as_ref().and_then(|n| lab_bridges.get(n)) {
                lab.insert(i, br.clone());
            }
        }
    }
    setup(def, &actual, &lab, run_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_side_mac_starts_with_fe() {
        assert_eq!(
            host_mac([0x52, 0x54, 0, 0xaa, 0, 1]),
            [0xfe, 0x54, 0, 0xaa, 0, 1]
        );
    }

    #[test]
    fn which_networks_are_not_the_vf_segment() {
        let mode = |x: &str| {
            let nd = teamvirt_conf::NetworkDef::parse_str(
                &format!("<network><name>n</name>{x}<bridge name='b'/></network>"),
                None,
            )
            .unwrap()
            .0;
            other_segment_mode(&nd)
        };
        assert_eq!(mode("<forward mode='nat'/>").as_deref(), Some("nat"));
        assert_eq!(mode("<forward mode='route'/>").as_deref(), Some("route"));
        assert_eq!(mode("").as_deref(), Some("none (isolated)"));
        assert_eq!(mode("<forward mode='bridge'/>"), None);
    }

    #[test]
    fn release_of_nothing_recorded_is_quiet() {
        let d = tempfile::tempdir().unwrap();
        assert!(release_recorded(d.path()).is_empty());
        // A recorded link that is gone already (QEMU closed its tap).
        save_record(
            d.path(),
            &[Created {
                device: "net0".into(),
                ifname: "tv-gone-xyz".into(),
                ifindex: 999_983,
                kind: "tap".into(),
                bridge: None,
                ovs: false,
                pair: None,
            }],
        )
        .unwrap();
        assert_eq!(release_recorded(d.path()), Vec::<String>::new());
        assert!(!record_path(d.path()).exists());
    }
}
