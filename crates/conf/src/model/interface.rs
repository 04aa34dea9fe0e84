//! `<interface>`: guest NICs, including `<teaming>`.

use crate::diag::Pos;
use crate::model::common::{DeviceInfo, Mac, PciAddress};
use crate::model::raw::{RawAttr, RawElement};

/// `<interface type=...>` (libvirt `virDomainNetType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InterfaceType {
    User,
    Ethernet,
    VhostUser,
    Server,
    Client,
    Mcast,
    Network,
    Bridge,
    Internal,
    Direct,
    Hostdev,
    Udp,
    Vdpa,
    Null,
    Vds,
}

impl InterfaceType {
    pub const ALL: [InterfaceType; 15] = [
        InterfaceType::User,
        InterfaceType::Ethernet,
        InterfaceType::VhostUser,
        InterfaceType::Server,
        InterfaceType::Client,
        InterfaceType::Mcast,
        InterfaceType::Network,
        InterfaceType::Bridge,
        InterfaceType::Internal,
        InterfaceType::Direct,
        InterfaceType::Hostdev,
        InterfaceType::Udp,
        InterfaceType::Vdpa,
        InterfaceType::Null,
        InterfaceType::Vds,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InterfaceType::User => "user",
            InterfaceType::Ethernet => "ethernet",
            InterfaceType::VhostUser => "vhostuser",
            InterfaceType::Server => "server",
            InterfaceType::Client => "client",
            InterfaceType::Mcast => "mcast",
            InterfaceType::Network => "network",
            InterfaceType::Bridge => "bridge",
            InterfaceType::Internal => "internal",
            InterfaceType::Direct => "direct",
            InterfaceType::Hostdev => "hostdev",
            InterfaceType::Udp => "udp",
            InterfaceType::Vdpa => "vdpa",
            InterfaceType::Null => "null",
            InterfaceType::Vds => "vds",
        }
    }

    pub fn from_str_opt(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// `<teaming type=... [persistent=...]/>` (libvirt `virDomainNetTeamingType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TeamingType {
    /// The virtio standby NIC (QEMU `failover=on`).
    Persistent,
    /// The VF primary (QEMU `failover_pair_id=<persistent>`).
    Transient,
}

impl TeamingType {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamingType::Persistent => "persistent",
            TeamingType::Transient => "transient",
        }
    }
}

/// `<teaming>` on an `<interface>` or a plain `<hostdev>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teaming {
    pub type_: TeamingType,
    /// Alias of the persistent (standby) device; stored verbatim like libvirt.
    pub persistent: Option<String>,
    pub pos: Pos,
}

impl Teaming {
    pub fn persistent() -> Self {
        Teaming {
            type_: TeamingType::Persistent,
            persistent: None,
            pos: Pos::default(),
        }
    }

    pub fn transient(persistent: impl Into<String>) -> Self {
        Teaming {
            type_: TeamingType::Transient,
            persistent: Some(persistent.into()),
            pos: Pos::default(),
        }
    }
}

/// `<source .../>` of an interface; which fields apply depends on the type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InterfaceSource {
    /// type='network'
    pub network: Option<String>,
    pub portgroup: Option<String>,
    /// Only formatted for live XML (like libvirt).
    pub portid: Option<String>,
    /// type='bridge'
    pub bridge: Option<String>,
    /// type='direct': host device; also `dev` of other types.
    pub dev: Option<String>,
    /// type='direct': `mode='vepa|bridge|private|passthrough'`.
    pub mode: Option<String>,
    /// type='hostdev': the host PCI device (`<address type='pci' .../>`).
    pub pci: Option<PciAddress>,
    /// type='vhostuser'/'server'/'client'/'mcast'/'udp': kept verbatim.
    pub other_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<model type='...'/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetModel {
    pub type_: String,
    pub pos: Pos,
}

impl NetModel {
    pub fn new(type_: impl Into<String>) -> Self {
        NetModel {
            type_: type_.into(),
            pos: Pos::default(),
        }
    }
}

/// `<driver><host .../></driver>` offload switches (`on`/`off`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetDriverHost {
    pub csum: Option<bool>,
    pub gso: Option<bool>,
    pub tso4: Option<bool>,
    pub tso6: Option<bool>,
    pub ecn: Option<bool>,
    pub ufo: Option<bool>,
    pub mrg_rxbuf: Option<bool>,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// `<driver><guest .../></driver>` offload switches (`on`/`off`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetDriverGuest {
    pub csum: Option<bool>,
    pub tso4: Option<bool>,
    pub tso6: Option<bool>,
    pub ecn: Option<bool>,
    pub ufo: Option<bool>,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// `<driver>` of an interface. For `type='hostdev'` only `name` applies
/// (`vfio`), as the hostdev backend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetDriver {
    pub name: Option<String>,
    pub txmode: Option<String>,
    pub ioeventfd: Option<bool>,
    pub event_idx: Option<bool>,
    pub queues: Option<u32>,
    pub rx_queue_size: Option<u32>,
    pub tx_queue_size: Option<u32>,
    pub rss: Option<bool>,
    pub rss_hash_report: Option<bool>,
    /// virtio options.
    pub iommu: Option<bool>,
    pub ats: Option<bool>,
    pub packed: Option<bool>,
    pub page_per_vq: Option<bool>,
    pub host: Option<NetDriverHost>,
    pub guest: Option<NetDriverGuest>,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<backend tap='..' vhost='..'/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetBackend {
    pub tap: Option<String>,
    pub vhost: Option<String>,
    pub pos: Pos,
}

/// `<vlan [trunk='yes']><tag id='N' [nativeMode='..']/>...</vlan>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vlan {
    pub trunk: Option<bool>,
    pub tags: Vec<VlanTag>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VlanTag {
    pub id: u32,
    pub native_mode: Option<String>,
    pub pos: Pos,
}

/// `<virtualport [type='..']><parameters .../></virtualport>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualPort {
    pub type_: Option<String>,
    pub parameters: Option<VirtualPortParams>,
    pub pos: Pos,
}

/// Parameters are kept as strings: their meaning depends on the port type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualPortParams {
    pub managerid: Option<String>,
    pub typeid: Option<String>,
    pub typeidversion: Option<String>,
    pub instanceid: Option<String>,
    pub interfaceid: Option<String>,
    pub profileid: Option<String>,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// `<target dev='vnet0' [managed='no']/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetTarget {
    pub dev: String,
    pub managed: Option<bool>,
    pub pos: Pos,
}

/// `<link state='up|down'/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub state: String,
    pub pos: Pos,
}

/// `<mtu size='N'/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mtu {
    pub size: u32,
    pub pos: Pos,
}

/// `<interface>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub type_: InterfaceType,
    /// `managed='yes|no'` (type='hostdev').
    pub managed: Option<bool>,
    pub trust_guest_rx_filters: Option<bool>,
    pub mac: Option<Mac>,
    pub source: Option<InterfaceSource>,
    pub vlan: Option<Vlan>,
    pub virtualport: Option<VirtualPort>,
    pub target: Option<NetTarget>,
    pub model: Option<NetModel>,
    pub driver: Option<NetDriver>,
    pub backend: Option<NetBackend>,
    pub teaming: Option<Teaming>,
    pub link: Option<Link>,
    pub mtu: Option<Mtu>,
    /// alias, boot order, rom, acpi index, guest address.
    pub info: DeviceInfo,
    pub extra_attrs: Vec<RawAttr>,
    /// Children teamvirt does not interpret (`<bandwidth>`, `<filterref>`,
    /// `<tune>`, `<ip>`, ...), formatted at libvirt's position for their name.
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// Models libvirt treats as virtio (`virDomainNetIsVirtioModel`).
pub const VIRTIO_MODELS: [&str; 3] = ["virtio", "virtio-transitional", "virtio-non-transitional"];

impl Interface {
    pub fn new(type_: InterfaceType) -> Self {
        Interface {
            type_,
            managed: None,
            trust_guest_rx_filters: None,
            mac: None,
            source: None,
            vlan: None,
            virtualport: None,
            target: None,
            model: None,
            driver: None,
            backend: None,
            teaming: None,
            link: None,
            mtu: None,
            info: DeviceInfo::default(),
            extra_attrs: Vec::new(),
            extra: Vec::new(),
            pos: Pos::default(),
        }
    }

    /// The model string as written (`None` when there is no `<model>`).
    pub fn model_str(&self) -> Option<&str> {
        self.model.as_ref().map(|m| m.type_.as_str())
    }

    /// libvirt's `virDomainNetIsVirtioModel`.
    pub fn is_virtio(&self) -> bool {
        self.model_str().is_some_and(|m| VIRTIO_MODELS.contains(&m))
    }

    pub fn teaming_type(&self) -> Option<TeamingType> {
        self.teaming.as_ref().map(|t| t.type_)
    }

    pub fn alias_name(&self) -> Option<&str> {
        self.info.alias_name()
    }

    /// `<source network=...>` for type='network'.
    pub fn source_network(&self) -> Option<&str> {
        self.source.as_ref().and_then(|s| s.network.as_deref())
    }

    /// Host PCI address for type='hostdev'.
    pub fn source_pci(&self) -> Option<&PciAddress> {
        self.source.as_ref().and_then(|s| s.pci.as_ref())
    }
}
