//! Device hotplug planning (libvirt `qemu_hotplug.c`, the parts that do
//! not touch QEMU): from the running domain's live definition and one
//! `<interface>`/`<hostdev>`, the live definition with the device added
//! (alias, PCI address on a hot-pluggable bus, the VF its network gave),
//! and the `netdev_add`/`device_add` arguments libvirt would send. The
//! arguments come from the same command-line builder `start` uses, so a
//! hot-added device is exactly what a cold start would have created.

use serde_json::{Map, Value};
use teamvirt_conf::model::{
    Address, DeviceInfo, DomainDef, Hostdev, HostdevDriver, InterfaceSource, InterfaceType,
    NetDriver, PciAddress, TeamingType,
};
use teamvirt_conf::validate::{libvirt_checks, teaming};
use teamvirt_conf::{DeviceDef, Diagnostic};
use thiserror::Error;

use crate::caps::QemuCaps;
use crate::command::{aliases, convert, BuildOptions, Conversion, ConvertError};
use crate::pci::assign::{assign_hotplug_address, DevRef};
use crate::pci::{AssignError, PciError};
use crate::resolve::{resolve_interfaces, ActualNet, NetworkSource, ResolveError};
use crate::validate::QemuValidator;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum HotplugError {
    /// A libvirt validation error (libvirt's text, the device file's position).
    #[error("{}", .0.message)]
    Invalid(Box<Diagnostic>),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// libvirt's text; the CLI adds the hint about root ports.
    #[error("internal error: No more available PCI slots")]
    NoSlots,
    #[error(transparent)]
    Address(AssignError),
    #[error("unsupported configuration: teaming primary {device}: its standby '{standby}' is not present in the running domain; attach the standby (<teaming type='persistent'/>, <alias name='{standby}'/>) first")]
    NoStandby { device: String, standby: String },
    #[error("unsupported configuration: interface type '{0}' needs host network setup (tap devices) that teamvirt cannot hotplug; use type 'user', 'hostdev' or a hostdev network")]
    NeedsHostSetup(String),
    #[error("internal error: the command line built for the new device {0} has no -device for it")]
    NoDeviceArgs(String),
}

/// Arguments of one QMP command.
pub type QmpArgs = Map<String, Value>;

/// Where the new device sits in the planned definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Interface(usize),
    Hostdev(usize),
}

/// Everything needed to hot-add one device.
#[derive(Debug, Clone)]
pub struct AttachPlan {
    /// The live definition with the device (aliases set, VF shown as
    /// `type='hostdev'`).
    pub def: DomainDef,
    /// The conversion of that definition (argv, substitutions, aliases).
    pub conv: Conversion,
    pub slot: Slot,
    /// The device's alias (QEMU id).
    pub alias: String,
    /// What the interface resolved to (`None` for a `<hostdev>`).
    pub actual: Option<ActualNet>,
    /// `device_add` arguments (typed JSON).
    pub device: Map<String, Value>,
    /// `netdev_add` arguments, when the device has a backend.
    pub netdev: Option<Map<String, Value>>,
    /// `-device`/`-netdev` pairs in the domain's own command-line syntax
    /// (so a migration destination recreates the device), netdev first.
    pub argv: Vec<String>,
    /// teamvirt's teaming findings (warnings).
    pub warnings: Vec<Diagnostic>,
}

/// Put back the QEMU-assigned device aliases of a live XML (an inactive parse
/// drops every alias that is not a user alias).
pub fn restore_aliases(def: &mut DomainDef) {
    fn fix(i: &mut DeviceInfo) {
        if i.alias.is_none() {
            i.alias = i.dropped_alias.take();
        }
    }
    let d = &mut def.devices;
    d.disks.iter_mut().for_each(|x| fix(&mut x.info));
    // Controller aliases are left to the builder: they follow from type
    // and index, and are QEMU bus names (libvirt shows pci-root as `pci`,
    // its bus is `pci.0`).
    d.interfaces.iter_mut().for_each(|x| fix(&mut x.info));
    d.hostdevs.iter_mut().for_each(|x| fix(&mut x.info));
    d.serials.iter_mut().for_each(|x| fix(&mut x.info));
    d.watchdogs.iter_mut().for_each(|x| fix(&mut x.info));
    d.videos.iter_mut().for_each(|x| fix(&mut x.info));
    if let Some(m) = d.memballoon.as_mut() {
        fix(&mut m.info);
    }
}

fn device_info(def: &DomainDef, slot: Slot) -> &DeviceInfo {
    match slot {
        Slot::Interface(i) => &def.devices.interfaces[i].info,
        Slot::Hostdev(j) => &def.devices.hostdevs[j].info,
    }
}

/// The alias of the standby a transient device names, if the domain has
/// that standby.
fn has_standby(def: &DomainDef, alias: &str) -> bool {
    def.devices.interfaces.iter().any(|n| {
        n.info.alias_name() == Some(alias) && n.teaming_type() == Some(TeamingType::Persistent)
    })
}

/// Plan the hot-add of `dev` to the running domain whose live definition
/// (aliases restored, see [`restore_aliases`]) is `live`. `in_use`: VFs
/// held by anyone (pools), so a pool gives its first free one.
pub fn plan_attach(
    live: &DomainDef,
    dev: DeviceDef,
    caps: &QemuCaps,
    networks: &dyn NetworkSource,
    in_use: &[PciAddress],
    opts: &BuildOptions,
) -> Result<AttachPlan, HotplugError> {
    let mut def = live.clone();
    let teaming = match &dev {
        DeviceDef::Interface(n) => n.teaming.clone(),
        DeviceDef::Hostdev(h) => h.teaming.clone(),
    };
    let slot = match dev {
        DeviceDef::Interface(n) => {
            def.devices.interfaces.push(n);
            Slot::Interface(def.devices.interfaces.len() - 1)
        }
        DeviceDef::Hostdev(h) => {
            def.devices.hostdevs.push(h);
            Slot::Hostdev(def.devices.hostdevs.len() - 1)
        }
    };
    // As at define: libvirt's checks on the domain with the device.
    let validator = QemuValidator {
        has_failover: Some(caps.supports_failover()),
    };
    libvirt_checks(&def, &validator).map_err(|d| HotplugError::Invalid(Box::new(d)))?;
    if let Some(t) = teaming.filter(|t| t.type_ == TeamingType::Transient) {
        if let Some(standby) = t.persistent.filter(|s| !has_standby(live, s)) {
            let device = device_info(&def, slot)
                .alias_name()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("<{}>", dev_element(slot)));
            return Err(HotplugError::NoStandby { device, standby });
        }
    }
    let warnings = teaming::checks(&def);

    let actual = match slot {
        Slot::Interface(i) => Some(resolve_new_interface(&mut def, i, networks, in_use)?),
        Slot::Hostdev(j) => {
            vfio_driver(&mut def.devices.hostdevs[j]);
            None
        }
    };
    let alias = set_alias(&mut def, slot);
    let r = match slot {
        Slot::Interface(i) => DevRef::Interface(i),
        Slot::Hostdev(j) => DevRef::Hostdev(j),
    };
    assign_hotplug_address(&mut def, r, caps).map_err(|e| match e {
        AssignError::Pci(PciError::NoSlots) => HotplugError::NoSlots,
        e => HotplugError::Address(e),
    })?;
    let DeviceLines {
        conv,
        device,
        netdev,
        argv,
    } = device_lines(def, caps, networks, in_use, opts, &alias)?;

    let mut def = conv.def.clone();
    aliases::apply(&mut def, &conv.built.aliases);
    Ok(AttachPlan {
        def,
        conv,
        slot,
        alias,
        actual,
        device,
        netdev,
        argv,
        warnings,
    })
}

/// The new interface `i`'s network gives it a VF (or a bridge we cannot
/// plug); a VF shows as libvirt's live XML shows it, bound to vfio.
fn resolve_new_interface(
    def: &mut DomainDef,
    i: usize,
    networks: &dyn NetworkSource,
    in_use: &[PciAddress],
) -> Result<ActualNet, HotplugError> {
    let all = resolve_interfaces(def, networks, in_use)?;
    let a = all[i].clone();
    match a.type_ {
        InterfaceType::Bridge | InterfaceType::Ethernet | InterfaceType::Direct => {
            return Err(HotplugError::NeedsHostSetup(a.type_.as_str().to_owned()))
        }
        _ => {}
    }
    let n = &mut def.devices.interfaces[i];
    if a.type_ == InterfaceType::Hostdev {
        n.type_ = InterfaceType::Hostdev;
        n.managed = Some(a.managed);
        if n.source_pci().is_none() {
            n.source = Some(InterfaceSource {
                pci: a.hostdev,
                ..Default::default()
            });
        }
        let drv = n.driver.get_or_insert_with(NetDriver::default);
        drv.name.get_or_insert_with(|| "vfio".into());
    }
    Ok(a)
}

/// A PCI `<hostdev>` is bound to vfio (libvirt's default driver).
fn vfio_driver(h: &mut Hostdev) {
    if h.mode == "subsystem" && h.type_ == "pci" {
        let drv = h.driver.get_or_insert_with(|| HostdevDriver {
            name: None,
            extra_attrs: Vec::new(),
            pos: Default::default(),
        });
        drv.name.get_or_insert_with(|| "vfio".into());
    }
}

/// libvirt's alias for the new device: netN/hostdevN after the highest
/// one in use (a user alias it has stays). Returns the QEMU id.
fn set_alias(def: &mut DomainDef, slot: Slot) -> String {
    let actuals: Vec<ActualNet> = def
        .devices
        .interfaces
        .iter()
        .map(ActualNet::direct_of)
        .collect();
    let al = aliases::assign(def, &actuals);
    let alias = match slot {
        Slot::Interface(i) => al.interfaces[i].clone(),
        Slot::Hostdev(j) => al.hostdevs[j].clone(),
    };
    let info: &mut DeviceInfo = match slot {
        Slot::Interface(i) => &mut def.devices.interfaces[i].info,
        Slot::Hostdev(j) => &mut def.devices.hostdevs[j].info,
    };
    info.alias
        .get_or_insert_with(|| teamvirt_conf::model::Alias::new(alias.clone()));
    alias
}

/// The new device's part of the command line, as QMP arguments and as
/// command-line options.
struct DeviceLines {
    conv: Conversion,
    device: Map<String, Value>,
    netdev: Option<Map<String, Value>>,
    argv: Vec<String>,
}

/// Build the whole domain as start would; the device's own lines are what
/// gets plugged. Test-env fds stand in for other NICs' taps: only this
/// device's lines are used, and it needs none.
fn device_lines(
    def: DomainDef,
    caps: &QemuCaps,
    networks: &dyn NetworkSource,
    in_use: &[PciAddress],
    opts: &BuildOptions,
    alias: &str,
) -> Result<DeviceLines, HotplugError> {
    let bopts = BuildOptions {
        test_env: true,
        emulate_vf: opts.emulate_vf,
        ..Default::default()
    };
    let conv = convert(def.clone(), caps, networks, in_use, &bopts)?;
    let mut json_caps = caps.clone();
    json_caps.flags.insert("device.json+hotplug".into());
    json_caps.flags.insert("netdev.json".into());
    let jconv = convert(def, &json_caps, networks, in_use, &bopts)?;
    let jargs = &jconv.built.cmd.argv;
    let device =
        find_json(jargs, "-device", alias).ok_or(HotplugError::NoDeviceArgs(alias.to_owned()))?;
    let netdev_id = device
        .get("netdev")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let netdev = netdev_id
        .as_deref()
        .and_then(|id| find_json(jargs, "-netdev", id));
    let mut argv = Vec::new();
    if let Some(id) = &netdev_id {
        if let Some(s) = find_raw(&conv.built.cmd.argv, "-netdev", id) {
            argv.push("-netdev".into());
            argv.push(s);
        }
    }
    let s = find_raw(&conv.built.cmd.argv, "-device", alias)
        .ok_or(HotplugError::NoDeviceArgs(alias.to_owned()))?;
    argv.push("-device".into());
    argv.push(s);
    Ok(DeviceLines {
        conv,
        device,
        netdev,
        argv,
    })
}

/// `device_add` (and `netdev_add`) arguments of the existing device
/// `alias` of a live definition, as the builder makes them: what plugs a
/// removed primary back with its alias, address and backend.
pub fn device_args(
    def: &DomainDef,
    caps: &QemuCaps,
    networks: &dyn NetworkSource,
    alias: &str,
    emulate_vf: bool,
) -> Result<(QmpArgs, Option<QmpArgs>), HotplugError> {
    let bopts = BuildOptions {
        test_env: true,
        emulate_vf,
        ..Default::default()
    };
    let mut json_caps = caps.clone();
    json_caps.flags.insert("device.json+hotplug".into());
    json_caps.flags.insert("netdev.json".into());
    let conv = convert(def.clone(), &json_caps, networks, &[], &bopts)?;
    let args = &conv.built.cmd.argv;
    let device =
        find_json(args, "-device", alias).ok_or(HotplugError::NoDeviceArgs(alias.to_owned()))?;
    let netdev = device
        .get("netdev")
        .and_then(Value::as_str)
        .and_then(|id| find_json(args, "-netdev", id));
    Ok((device, netdev))
}

fn dev_element(slot: Slot) -> &'static str {
    match slot {
        Slot::Interface(_) => "interface",
        Slot::Hostdev(_) => "hostdev",
    }
}

/// `id` of one `-device`/`-netdev` value in either syntax.
fn id_of(value: &str) -> Option<String> {
    crate::options::prop_of(value, "id")
}

/// The value of the `opt` option (`-device`, `-netdev`) whose id is `id`.
pub fn find_raw(args: &[String], opt: &str, id: &str) -> Option<String> {
    args.windows(2)
        .find(|w| w[0] == opt && id_of(&w[1]).as_deref() == Some(id))
        .map(|w| w[1].clone())
}

fn find_json(args: &[String], opt: &str, id: &str) -> Option<Map<String, Value>> {
    let raw = find_raw(args, opt, id)?;
    serde_json::from_str::<Value>(&raw)
        .ok()?
        .as_object()
        .cloned()
}

/// Remove the `opt` option whose id is `id` from an argv (detach).
pub fn remove_option(args: &mut Vec<String>, opt: &str, id: &str) -> bool {
    if let Some(i) = (0..args.len().saturating_sub(1))
        .find(|&i| args[i] == opt && id_of(&args[i + 1]).as_deref() == Some(id))
    {
        args.drain(i..i + 2);
        return true;
    }
    false
}

/// The `netdev` id a `-device` in `args` uses.
pub fn netdev_of(args: &[String], device: &str) -> Option<String> {
    crate::options::prop_of(&find_raw(args, "-device", device)?, "netdev")
}

/// The device of `def` that `dev` names, the way libvirt's detach finds
/// it: an interface by MAC (`virDomainNetFindIdx`; an alias or PCI address
/// given in the XML must match too), a PCI hostdev by its host address.
pub fn find_device(def: &DomainDef, dev: &DeviceDef) -> Result<Slot, FindError> {
    let info_matches = |want: &DeviceInfo, have: &DeviceInfo| {
        want.alias_name()
            .is_none_or(|a| have.alias_name() == Some(a))
            && pci_of(want).is_none_or(|p| pci_of(have).is_some_and(|q| p.same_location(q)))
    };
    match dev {
        DeviceDef::Interface(n) => {
            let mac = n.mac.as_ref().map(|m| m.address.to_string());
            // A teaming pair shares its MAC: the type tells standby from
            // primary (a live XML shows a pool interface as its VF).
            let same_type = |t: InterfaceType| {
                t == n.type_ || (n.type_ == InterfaceType::Network && t == InterfaceType::Hostdev)
            };
            let hits: Vec<usize> = def
                .devices
                .interfaces
                .iter()
                .enumerate()
                .filter(|(_, x)| {
                    mac.as_ref().is_none_or(|m| {
                        x.mac
                            .as_ref()
                            .is_some_and(|xm| xm.address.to_string().eq_ignore_ascii_case(m))
                    }) && same_type(x.type_)
                        && info_matches(&n.info, &x.info)
                })
                .map(|(i, _)| i)
                .collect();
            match hits.as_slice() {
                [i] => Ok(Slot::Interface(*i)),
                [] => Err(FindError::None),
                _ => Err(FindError::Ambiguous),
            }
        }
        DeviceDef::Hostdev(h) => {
            let src = h.source.pci.as_ref().ok_or(FindError::None)?;
            def.devices
                .hostdevs
                .iter()
                .position(|x| {
                    x.source.pci.as_ref().is_some_and(|p| p.same_location(src))
                        && info_matches(&h.info, &x.info)
                })
                .map(Slot::Hostdev)
                .ok_or(FindError::None)
        }
    }
}

/// Why [`find_device`] found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindError {
    None,
    /// Several interfaces match (libvirt: "multiple devices matching MAC
    /// address ... found"); an alias in the XML picks one.
    Ambiguous,
}

/// The device with QEMU id `alias` (interfaces and hostdevs).
pub fn find_alias(def: &DomainDef, alias: &str) -> Option<Slot> {
    let d = &def.devices;
    d.interfaces
        .iter()
        .position(|n| n.info.alias_name() == Some(alias))
        .map(Slot::Interface)
        .or_else(|| {
            d.hostdevs
                .iter()
                .position(|h| h.info.alias_name() == Some(alias))
                .map(Slot::Hostdev)
        })
}

/// The alias of the device at `slot`.
pub fn alias_at(def: &DomainDef, slot: Slot) -> Option<&str> {
    device_info(def, slot).alias_name()
}

/// Remove the device at `slot`.
pub fn remove_device(def: &mut DomainDef, slot: Slot) {
    match slot {
        Slot::Interface(i) => {
            def.devices.interfaces.remove(i);
        }
        Slot::Hostdev(j) => {
            def.devices.hostdevs.remove(j);
        }
    }
}

/// Primaries (transient devices) of `def` paired with the standby `alias`.
pub fn primaries_of(def: &DomainDef, alias: &str) -> Vec<String> {
    let d = &def.devices;
    let named = |t: Option<&teamvirt_conf::model::Teaming>| {
        t.is_some_and(|t| {
            t.type_ == TeamingType::Transient && t.persistent.as_deref() == Some(alias)
        })
    };
    d.interfaces
        .iter()
        .filter(|n| named(n.teaming.as_ref()))
        .map(|n| &n.info)
        .chain(
            d.hostdevs
                .iter()
                .filter(|h| named(h.teaming.as_ref()))
                .map(|h| &h.info),
        )
        .map(|i| {
            i.alias_name().map_or_else(
                || "a teaming primary without alias".to_owned(),
                str::to_owned,
            )
        })
        .collect()
}

/// The PCI address of a device, for messages.
pub fn pci_of(info: &DeviceInfo) -> Option<&PciAddress> {
    match &info.address {
        Some(Address::Pci(p)) => Some(p),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::NetworkMap;

    fn caps() -> Option<QemuCaps> {
        let corpus = teamvirt_testinfra::corpus_or_skip("hotplug teaming plans")?;
        Some(
            QemuCaps::from_libvirt_xml(corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml"))
                .unwrap(),
        )
    }

    /// A running q35 domain with a standby and spare root ports, one of
    /// them with hotplug off.
    fn live(caps: &QemuCaps) -> DomainDef {
        let xml = "<domain type='kvm'><name>d</name><memory unit='MiB'>128</memory>
          <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>
          <controller type='pci' index='0' model='pcie-root'/>
          <controller type='pci' index='1' model='pcie-root-port'/>
          <controller type='pci' index='2' model='pcie-root-port'><target hotplug='off'/></controller>
          <controller type='pci' index='3' model='pcie-root-port'/>
          <controller type='pci' index='4' model='pcie-root-port'/>
          <controller type='pci' index='5' model='pcie-root-port'/>
          <interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/>
            <teaming type='persistent'/><alias name='ua-sb'/></interface>
          <memballoon model='none'/>
          </devices></domain>";
        let def = DomainDef::parse_str(xml, None).unwrap().0;
        let conv = convert(
            def,
            caps,
            &NetworkMap::default(),
            &[],
            &BuildOptions::default(),
        )
        .unwrap();
        let mut d = conv.def.clone();
        aliases::apply(&mut d, &conv.built.aliases);
        d
    }

    const PRIMARY: &str = "<hostdev mode='subsystem' type='pci' managed='yes'><source>
        <address domain='0x0000' bus='0x5e' slot='0x00' function='0x3'/></source>
        <teaming type='transient' persistent='ua-sb'/></hostdev>";

    /// A hostdev primary goes on a free root port that accepts hotplug
    /// (never pcie.0, never the hotplug='off' port), paired with the
    /// standby; in lab mode it is the emulated vmxnet3 with its backend.
    #[test]
    fn transient_hostdev_on_a_hotpluggable_root_port() {
        let Some(caps) = caps() else { return };
        let live = live(&caps);
        let used: Vec<u8> = live
            .devices
            .interfaces
            .iter()
            .filter_map(|n| pci_of(&n.info).map(|p| p.bus))
            .chain(
                live.devices
                    .controllers
                    .iter()
                    .filter(|c| c.type_ == "usb")
                    .filter_map(|c| pci_of(&c.info).map(|p| p.bus)),
            )
            .collect();
        let (dev, _) = DeviceDef::parse_str(PRIMARY, None).unwrap();
        let p = plan_attach(
            &live,
            dev.clone(),
            &caps,
            &NetworkMap::default(),
            &[],
            &BuildOptions::default(),
        )
        .unwrap();
        assert_eq!(p.alias, "hostdev0");
        assert_eq!(p.device["driver"], "vfio-pci");
        assert_eq!(p.device["failover_pair_id"], "ua-sb");
        let bus = p.device["bus"].as_str().unwrap().to_owned();
        assert!(bus.starts_with("pci.") && bus != "pci.2", "{bus}");
        let n: u8 = bus["pci.".len()..].parse().unwrap();
        assert!(!used.contains(&n), "{bus} already used: {used:?}");
        assert!(p.netdev.is_none());

        let lab = BuildOptions {
            emulate_vf: true,
            ..Default::default()
        };
        let p = plan_attach(&live, dev, &caps, &NetworkMap::default(), &[], &lab).unwrap();
        assert_eq!(p.device["driver"], "vmxnet3");
        assert_eq!(p.device["mac"], "52:54:00:00:00:01");
        assert_eq!(p.netdev.as_ref().unwrap()["type"], "user");
        assert_eq!(p.argv.len(), 4, "{:?}", p.argv);
    }

    /// No free hot-pluggable port left: libvirt's error, and a primary
    /// naming a standby the domain lacks is refused.
    #[test]
    fn no_slot_and_no_standby() {
        let Some(caps) = caps() else { return };
        let mut live = live(&caps);
        let mut n = 0;
        let err = loop {
            let (dev, _) = DeviceDef::parse_str(
                &format!("<interface type='user'><mac address='52:54:00:00:01:{n:02x}'/><model type='virtio'/></interface>"),
                None,
            )
            .unwrap();
            match plan_attach(
                &live,
                dev,
                &caps,
                &NetworkMap::default(),
                &[],
                &BuildOptions::default(),
            ) {
                Ok(p) => live = p.def,
                Err(e) => break e,
            }
            n += 1;
            assert!(n < 10, "slots never ran out");
        };
        assert_eq!(err, HotplugError::NoSlots);
        let (dev, _) = DeviceDef::parse_str(&PRIMARY.replace("ua-sb", "ua-other"), None).unwrap();
        let err = plan_attach(
            &live,
            dev,
            &caps,
            &NetworkMap::default(),
            &[],
            &BuildOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, HotplugError::NoStandby { ref standby, .. } if standby == "ua-other"),
            "{err}"
        );
    }

    #[test]
    fn options_by_id_in_both_syntaxes() {
        let mut a: Vec<String> = [
            "-netdev",
            "user,id=hostua-sb,restrict=on",
            "-device",
            r#"{"driver":"virtio-net-pci","netdev":"hostua-sb","id":"ua-sb"}"#,
            "-device",
            "e1000e,netdev=x,,y,id=hostdev0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(netdev_of(&a, "ua-sb").as_deref(), Some("hostua-sb"));
        assert_eq!(netdev_of(&a, "hostdev0").as_deref(), Some("x,y"));
        assert!(find_raw(&a, "-netdev", "hostua-sb").is_some());
        assert!(remove_option(&mut a, "-device", "ua-sb"));
        assert!(!remove_option(&mut a, "-device", "ua-sb"));
        assert_eq!(a.len(), 4);
    }
}
