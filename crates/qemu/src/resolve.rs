//! `<interface type='network'>` resolution: what a network (and optionally
//! a pinned network port) turns an interface into at start time — a tap on
//! a bridge, a macvtap on a host NIC, or a VF from a hostdev pool — plus
//! libvirt's checks on the result (`qemuDomainValidateActualNetDef`).

use std::collections::HashMap;

use teamvirt_conf::model::{
    DomainDef, Interface, InterfaceType, NetworkDef, NetworkPortDef, PciAddress, TeamingType,
};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ResolveError {
    #[error("Network not found: no network with matching name '{0}'")]
    NoNetwork(String),
    #[error("internal error: network '{0}' requires exclusive access to interfaces, but none are available")]
    PoolExhausted(String),
    #[error("unsupported configuration: interface {mac} - teaming transient device must be type='hostdev', not '{actual}'")]
    TeamingNotHostdev { mac: String, actual: String },
    #[error("unsupported configuration: interface {mac} - custom tap device path is not supported for network interfaces of type {actual}")]
    CustomTap { mac: String, actual: String },
    #[error("unsupported configuration: network '{0}' has no usable bridge or device")]
    NoUsableDevice(String),
    #[error("Requested operation is not valid: network '{0}' is not active")]
    Inactive(String),
    #[error("{0}")]
    Load(String),
}

/// What an interface is at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualNet {
    pub type_: InterfaceType,
    /// Bridge to put the tap on (bridge/network).
    pub bridge: Option<String>,
    /// Host NIC for macvtap (direct) and its mode.
    pub direct_dev: Option<String>,
    pub direct_mode: Option<String>,
    /// The VF (hostdev).
    pub hostdev: Option<PciAddress>,
    pub managed: bool,
    /// The network the interface was resolved through.
    pub network: Option<String>,
}

impl ActualNet {
    /// An interface that is already what it says (not type='network').
    pub fn direct_of(net: &Interface) -> ActualNet {
        ActualNet {
            type_: net.type_,
            bridge: net.source.as_ref().and_then(|s| s.bridge.clone()),
            direct_dev: net.source.as_ref().and_then(|s| s.dev.clone()),
            direct_mode: net.source.as_ref().and_then(|s| s.mode.clone()),
            hostdev: net.source_pci().copied(),
            managed: net.managed.unwrap_or(false),
            network: None,
        }
    }
}

/// Where network definitions come from.
pub trait NetworkSource {
    /// The network (and a pinned port, if any) for `<source network=NAME>`.
    fn lookup(
        &self,
        name: &str,
    ) -> Result<Option<(NetworkDef, Option<NetworkPortDef>)>, ResolveError>;
}

/// Networks given explicitly, keyed by network name (`--network NET.xml`,
/// `--network NET.xml=PORT.xml`).
#[derive(Debug, Clone, Default)]
pub struct NetworkMap {
    pub networks: HashMap<String, (NetworkDef, Option<NetworkPortDef>)>,
}

impl NetworkMap {
    pub fn insert(&mut self, net: NetworkDef, port: Option<NetworkPortDef>) {
        self.networks.insert(net.name.clone(), (net, port));
    }
}

impl NetworkSource for NetworkMap {
    fn lookup(
        &self,
        name: &str,
    ) -> Result<Option<(NetworkDef, Option<NetworkPortDef>)>, ResolveError> {
        Ok(self.networks.get(name).cloned())
    }
}

fn mac_of(net: &Interface) -> String {
    net.mac
        .as_ref()
        .map(|m| m.address.to_string())
        .unwrap_or_default()
}

/// Resolve every interface. `in_use` lists VFs already given to other
/// domains; a pool hands out its first VF that is neither in use nor
/// taken by an earlier interface of this domain.
pub fn resolve_interfaces(
    def: &DomainDef,
    source: &dyn NetworkSource,
    in_use: &[PciAddress],
) -> Result<Vec<ActualNet>, ResolveError> {
    let mut taken: Vec<PciAddress> = in_use.to_vec();
    let mut out = Vec::with_capacity(def.devices.interfaces.len());
    for net in &def.devices.interfaces {
        let actual = if net.type_ == InterfaceType::Network {
            let name = net.source_network().unwrap_or_default();
            let (nd, port) = source
                .lookup(name)?
                .ok_or_else(|| ResolveError::NoNetwork(name.to_string()))?;
            resolve_one(&nd, port.as_ref(), &mut taken)?
        } else {
            ActualNet::direct_of(net)
        };
        validate_actual(net, &actual)?;
        out.push(actual);
    }
    Ok(out)
}

/// Resolution for checks that must not stop at the first problem
/// (`validate`, `format`): every interface gets an [`ActualNet`], and each
/// problem is returned with the index of its interface. A network nobody
/// described is not an error here: a transient (primary) interface is
/// taken to resolve to a VF, as it must to start at all, so the
/// placement checks still see it; any other one stays `type='network'`.
pub fn resolve_for_checks(
    def: &DomainDef,
    source: &dyn NetworkSource,
) -> (Vec<ActualNet>, Vec<(usize, ResolveError)>) {
    let mut taken = Vec::new();
    let mut actual = Vec::with_capacity(def.devices.interfaces.len());
    let mut problems = Vec::new();
    for (i, net) in def.devices.interfaces.iter().enumerate() {
        let mut a = ActualNet::direct_of(net);
        if net.type_ == InterfaceType::Network {
            let name = net.source_network().unwrap_or_default();
            match source.lookup(name) {
                Ok(Some((nd, port))) => match resolve_one(&nd, port.as_ref(), &mut taken) {
                    Ok(x) => a = x,
                    Err(e) => problems.push((i, e)),
                },
                Ok(None) => {
                    if net.teaming_type() == Some(TeamingType::Transient) {
                        a.type_ = InterfaceType::Hostdev;
                    }
                    a.network = Some(name.to_string());
                    actual.push(a);
                    continue;
                }
                Err(e) => problems.push((i, e)),
            }
        }
        if let Err(e) = validate_actual(net, &a) {
            // Unresolvable networks were reported above already.
            if a.type_ != InterfaceType::Network {
                problems.push((i, e));
            }
        }
        actual.push(a);
    }
    (actual, problems)
}

fn resolve_one(
    nd: &NetworkDef,
    port: Option<&NetworkPortDef>,
    taken: &mut Vec<PciAddress>,
) -> Result<ActualNet, ResolveError> {
    let mut a = ActualNet {
        type_: InterfaceType::Bridge,
        bridge: None,
        direct_dev: None,
        direct_mode: None,
        hostdev: None,
        managed: false,
        network: Some(nd.name.clone()),
    };
    if let Some(plug) = port.and_then(|p| p.plug.as_ref()) {
        match plug.type_.as_str() {
            "hostdev-pci" => {
                a.type_ = InterfaceType::Hostdev;
                a.hostdev = plug.address;
                a.managed = plug.managed.unwrap_or(false);
                if let Some(h) = plug.address {
                    taken.push(h);
                }
            }
            "direct" => {
                a.type_ = InterfaceType::Direct;
                a.direct_dev = plug.dev.clone();
                a.direct_mode = plug.mode.clone();
            }
            _ => {
                a.type_ = InterfaceType::Bridge;
                a.bridge = plug.bridge.clone();
            }
        }
        return Ok(a);
    }
    let fwd = nd.forward.as_ref();
    let mode = fwd.map_or("none", |f| f.mode_str());
    match mode {
        "none" | "nat" | "route" | "open" => {
            a.bridge = nd.bridge.as_ref().and_then(|b| b.name.clone());
        }
        "bridge" if nd.bridge.as_ref().and_then(|b| b.name.as_ref()).is_some() => {
            a.bridge = nd.bridge.as_ref().and_then(|b| b.name.clone());
        }
        "hostdev" => {
            let f = fwd.expect("hostdev mode has <forward>");
            let vf = f
                .addresses
                .iter()
                .find(|cand| !taken.iter().any(|t| t.same_location(cand)))
                .copied()
                .ok_or_else(|| ResolveError::PoolExhausted(nd.name.clone()))?;
            taken.push(vf);
            a.type_ = InterfaceType::Hostdev;
            a.hostdev = Some(vf);
            a.managed = f.managed.unwrap_or(false);
        }
        _ => {
            // bridge without a bridge name, private, vepa, passthrough: macvtap.
            let f = fwd.expect("mode has <forward>");
            let dev = f
                .interfaces
                .first()
                .map(|i| i.dev.clone())
                .or_else(|| f.dev.clone());
            let Some(dev) = dev else {
                return Err(ResolveError::NoUsableDevice(nd.name.clone()));
            };
            a.type_ = InterfaceType::Direct;
            a.direct_dev = Some(dev);
            a.direct_mode = Some(if mode == "bridge" {
                "bridge".into()
            } else {
                mode.to_string()
            });
        }
    }
    Ok(a)
}

/// libvirt's qemuDomainValidateActualNetDef (the checks teamvirt models).
pub fn validate_actual(net: &Interface, actual: &ActualNet) -> Result<(), ResolveError> {
    let actual_str = actual.type_.as_str().to_string();
    if net.teaming_type() == Some(TeamingType::Transient) && actual.type_ != InterfaceType::Hostdev
    {
        return Err(ResolveError::TeamingNotHostdev {
            mac: mac_of(net),
            actual: actual_str,
        });
    }
    let custom_tap = net.backend.as_ref().is_some_and(|b| b.tap.is_some());
    if custom_tap
        && !matches!(
            actual.type_,
            InterfaceType::Bridge | InterfaceType::Network | InterfaceType::Ethernet
        )
    {
        return Err(ResolveError::CustomTap {
            mac: mac_of(net),
            actual: actual_str,
        });
    }
    Ok(())
}

/// libvirt's test-suite convention: `<source network='NET;PORT'/>` names
/// `NET.xml` in `net_dir` and `PORT.xml` in `port_dir`.
#[derive(Debug, Clone)]
pub struct TestNetworkDirs {
    pub net_dir: std::path::PathBuf,
    pub port_dir: Option<std::path::PathBuf>,
}

impl NetworkSource for TestNetworkDirs {
    fn lookup(
        &self,
        name: &str,
    ) -> Result<Option<(NetworkDef, Option<NetworkPortDef>)>, ResolveError> {
        let (net, port) = match name.split_once(';') {
            Some((n, p)) => (n, Some(p)),
            None => (name, None),
        };
        let path = self.net_dir.join(format!("{net}.xml"));
        if !path.exists() {
            return Ok(None);
        }
        let (nd, _) = NetworkDef::load(&path).map_err(|e| ResolveError::Load(e.to_string()))?;
        let port = match (port, &self.port_dir) {
            (Some(p), Some(dir)) => {
                let (pd, _) = NetworkPortDef::load(&dir.join(format!("{p}.xml")))
                    .map_err(|e| ResolveError::Load(e.to_string()))?;
                Some(pd)
            }
            _ => None,
        };
        Ok(Some((nd, port)))
    }
}

/// Tries each source in turn.
pub struct Chain<'a>(pub Vec<&'a dyn NetworkSource>);

impl NetworkSource for Chain<'_> {
    fn lookup(
        &self,
        name: &str,
    ) -> Result<Option<(NetworkDef, Option<NetworkPortDef>)>, ResolveError> {
        for s in &self.0 {
            if let Some(x) = s.lookup(name)? {
                return Ok(Some(x));
            }
        }
        Ok(None)
    }
}
