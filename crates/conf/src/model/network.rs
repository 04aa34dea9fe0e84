//! `<network>` (libvirt network XML) and `<networkport>`.

use crate::diag::Pos;
use crate::model::common::{Mac, PciAddress, Uuid};
use crate::model::interface::{VirtualPort, Vlan};
use crate::model::raw::{RawAttr, RawElement};

/// A network definition (libvirt `virNetworkDef`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkDef {
    pub name: String,
    pub uuid: Option<Uuid>,
    /// `ipv6='yes|no'`.
    pub ipv6: Option<bool>,
    /// `trustGuestRxFilters='yes|no'`.
    pub trust_guest_rx_filters: Option<bool>,
    pub forward: Option<Forward>,
    pub bridge: Option<NetBridge>,
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    pub vlan: Option<Vlan>,
    pub ips: Vec<NetIp>,
    pub virtualport: Option<VirtualPort>,
    pub portgroups: Vec<PortGroup>,
    pub extra_attrs: Vec<RawAttr>,
    /// `<domain>`, `<dns>`, `<bandwidth>`, `<route>`, `<metadata>`, ...
    pub extra: Vec<RawElement>,
    pub pos: Pos,
    pub name_pos: Pos,
}

/// `<forward mode dev managed>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forward {
    /// `nat` (default when `<forward>` has no mode), `route`, `open`,
    /// `bridge`, `private`, `vepa`, `passthrough`, `hostdev`.
    pub mode: Option<String>,
    pub dev: Option<String>,
    /// `managed='yes|no'` (mode='hostdev').
    pub managed: Option<bool>,
    /// `<driver name='vfio'/>` (mode='hostdev').
    pub driver_name: Option<String>,
    /// `<pf dev='eth2'/>`: VFs are enumerated from this PF.
    pub pfs: Vec<ForwardPf>,
    /// `<interface dev='eth1'/>` entries.
    pub interfaces: Vec<ForwardInterface>,
    /// `<address type='pci' .../>` entries: the VF pool (mode='hostdev').
    pub addresses: Vec<PciAddress>,
    pub extra_attrs: Vec<RawAttr>,
    /// `<nat>` and others, verbatim.
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

impl Forward {
    /// The effective mode (libvirt defaults to `nat`).
    pub fn mode_str(&self) -> &str {
        self.mode.as_deref().unwrap_or("nat")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForwardPf {
    pub dev: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForwardInterface {
    pub dev: String,
    pub pos: Pos,
}

/// `<bridge name stp delay .../>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetBridge {
    pub name: Option<String>,
    pub stp: Option<bool>,
    pub delay: Option<u32>,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// `<ip family address netmask|prefix>` with optional `<dhcp>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetIp {
    pub family: Option<String>,
    pub address: Option<String>,
    pub netmask: Option<String>,
    pub prefix: Option<u32>,
    pub dhcp: Option<Dhcp>,
    pub extra_attrs: Vec<RawAttr>,
    /// `<tftp>` and others, verbatim.
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dhcp {
    pub ranges: Vec<DhcpRange>,
    pub hosts: Vec<DhcpHost>,
    /// `<bootp>` and others, verbatim.
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DhcpRange {
    pub start: String,
    pub end: String,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DhcpHost {
    pub mac: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub ip: Option<String>,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// `<portgroup name default trustGuestRxFilters>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortGroup {
    pub name: String,
    pub default: Option<bool>,
    pub trust_guest_rx_filters: Option<bool>,
    pub vlan: Option<Vlan>,
    pub virtualport: Option<VirtualPort>,
    /// `<bandwidth>`, verbatim.
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// A network port (libvirt `virNetworkPortDef`, `<networkport>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkPortDef {
    pub uuid: Option<Uuid>,
    pub owner_name: Option<String>,
    pub owner_uuid: Option<Uuid>,
    pub group: Option<String>,
    pub mac: Option<Mac>,
    pub vlan: Option<Vlan>,
    pub virtualport: Option<VirtualPort>,
    /// `<rxfilters trustGuest='yes|no'/>`.
    pub rxfilters_trust_guest: Option<bool>,
    pub plug: Option<Plug>,
    pub extra_attrs: Vec<RawAttr>,
    /// `<bandwidth>` and others, verbatim.
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<plug type=...>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plug {
    /// `network`, `bridge`, `direct`, `hostdev-pci`.
    pub type_: String,
    /// type='bridge'/'network': `bridge='virbr0'`.
    pub bridge: Option<String>,
    pub mac_table_manager: Option<String>,
    /// type='direct'.
    pub dev: Option<String>,
    pub mode: Option<String>,
    /// type='hostdev-pci'.
    pub managed: Option<bool>,
    pub driver_name: Option<String>,
    pub address: Option<PciAddress>,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}
