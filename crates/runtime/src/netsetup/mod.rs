//! The host network devices of a domain's interfaces: which tap, macvtap
//! or bridge port each tap-backed `<interface>` wants (read from the
//! definition and its resolved networks), made through
//! [`teamvirt_host::netdev`] and handed to QEMU as descriptors.

pub mod dest;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use teamvirt_conf::model::{DomainDef, Interface, InterfaceType, TeamingType};
use teamvirt_host::netdev::{self, tap, NetdevError, OvsPort, TapSpec};
use teamvirt_qemu::command::NetFds;
use teamvirt_qemu::resolve::{ActualNet, NetworkSource};

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
    fn hand_over(&mut self, index: usize, net: &Interface, fds: Vec<OwnedFd>, queues: u32) {
        let tap = self.take(fds);
        let vhost = if wants_vhost(net) {
            tap::open_vhost(queues)
                .map(|v| self.take(v))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        self.net_fds.insert(index, NetFds { tap, vhost });
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

/// A failover standby on a network that is not its VF's L2 segment.
#[derive(Debug, thiserror::Error)]
#[error("unsupported configuration: interface {mac} is a failover standby on network '{network}' (forward mode '{mode}'), which is not the L2 segment of its VF: while the VF is unplugged (migration) its traffic would go to a different network; put the standby on a bridge over the VF's PF (<forward mode='bridge'/> or <interface type='bridge'>)")]
pub struct StandbyNotOnVfSegment {
    pub mac: String,
    pub network: String,
    pub mode: String,
}

/// Refuse a standby on a network that is not the VF's L2 segment.
pub fn check_standbys(
    def: &DomainDef,
    source: &dyn NetworkSource,
) -> Result<(), StandbyNotOnVfSegment> {
    for net in &def.devices.interfaces {
        if net.type_ != InterfaceType::Network
            || net.teaming_type() != Some(TeamingType::Persistent)
        {
            continue;
        }
        let name = net.source_network().unwrap_or_default();
        if let Ok(Some((nd, _))) = source.lookup(name) {
            if let Some(mode) = other_segment_mode(&nd) {
                return Err(StandbyNotOnVfSegment {
                    mac: mac_str(net),
                    network: name.to_string(),
                    mode,
                });
            }
        }
    }
    Ok(())
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

/// The tap of interface `index` (`net`) in plain values.
fn tap_spec<'a>(index: usize, net: &Interface, run_dir: &'a Path) -> TapSpec<'a> {
    TapSpec {
        device: format!("net{index} ({})", mac_str(net)),
        template: net
            .target
            .as_ref()
            .map_or("vnet%d".to_string(), |t| t.dev.clone()),
        queues: queues_of(net),
        vnet_hdr: net.is_virtio(),
        mac: mac_of(net),
        mtu: net.mtu.as_ref().map(|m| m.size),
        run_dir,
    }
}

/// The Open vSwitch port of `net`, when its virtualport is one.
fn ovs_port(net: &Interface, vm_uuid: Option<&str>) -> Option<OvsPort> {
    let vp = net.virtualport.as_ref()?;
    if vp.type_.as_deref() != Some("openvswitch") {
        return None;
    }
    Some(OvsPort {
        guest_mac: mac_str(net),
        iface_id: vp
            .parameters
            .as_ref()
            .and_then(|p| p.interfaceid.clone())
            .unwrap_or_else(|| vm_uuid.unwrap_or_default().to_string()),
        vm_uuid: vm_uuid.map(str::to_string),
    })
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
        let spec = tap_spec(index, net, run_dir);
        let fds = match actual.type_ {
            InterfaceType::Bridge | InterfaceType::Network => {
                let Some(bridge) = actual.bridge.as_deref() else {
                    continue;
                };
                let ovs = ovs_port(net, vm_uuid.as_deref());
                let standby = net.teaming_type() == Some(TeamingType::Persistent);
                let network = actual.network.as_deref();
                netdev::bridge_tap(&spec, bridge, network, ovs.as_ref(), standby)?
            }
            InterfaceType::Ethernet => {
                let unmanaged = net
                    .target
                    .as_ref()
                    .is_some_and(|t| t.managed == Some(false));
                netdev::ethernet_tap(&spec, unmanaged)?
            }
            InterfaceType::Direct => {
                let dev = actual.direct_dev.clone().unwrap_or_default();
                let mode = actual.direct_mode.as_deref().unwrap_or("vepa");
                netdev::macvtap(&spec, &dev, mode, net.target.is_some())?
            }
            _ => continue,
        };
        host.hand_over(index, net, fds, spec.queues);
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

/// [`netdev::lab_tap`], its descriptor kept in `host`: its number.
pub(crate) fn lab_tap(
    host: &mut HostNet,
    label: &str,
    mac: Option<[u8; 6]>,
    bridge: &str,
    run_dir: &Path,
) -> Result<String, NetdevError> {
    let fd = netdev::lab_tap(label, mac, bridge, run_dir)?;
    Ok(host.take(vec![fd]).remove(0))
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

    /// `start` refuses a persistent (standby) interface on a NAT network,
    /// with the text it had when the error was `NetdevError`'s.
    #[test]
    fn standby_on_a_nat_network_is_refused() {
        let nd = teamvirt_conf::NetworkDef::parse_str(
            "<network><name>nat0</name><forward mode='nat'/><bridge name='virbr9'/></network>",
            None,
        )
        .unwrap()
        .0;
        let mut nets = teamvirt_qemu::resolve::NetworkMap::default();
        nets.insert(nd, None);
        let def = DomainDef::parse_str(
            "<domain type='qemu'><name>vm</name><memory>131072</memory><os><type>hvm</type></os>\
             <devices><interface type='network'><mac address='52:54:00:aa:00:01'/>\
             <source network='nat0'/><model type='virtio'/><teaming type='persistent'/>\
             <alias name='ua-net0'/></interface></devices></domain>",
            None,
        )
        .unwrap()
        .0;
        let e = check_standbys(&def, &nets).unwrap_err().to_string();
        assert_eq!(
            e,
            "unsupported configuration: interface 52:54:00:aa:00:01 is a failover standby on network 'nat0' (forward mode 'nat'), which is not the L2 segment of its VF: while the VF is unplugged (migration) its traffic would go to a different network; put the standby on a bridge over the VF's PF (<forward mode='bridge'/> or <interface type='bridge'>)"
        );
    }
}
