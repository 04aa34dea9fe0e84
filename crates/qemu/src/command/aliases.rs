//! Device aliases as libvirt assigns them at start (`qemu_alias.c`): they
//! become QEMU ids. User aliases (`ua-...`) are kept.

use teamvirt_conf::model::{Alias, DeviceInfo, DomainDef, InterfaceType};

use crate::resolve::ActualNet;

fn index_of(alias: Option<&str>, prefix: &str) -> Option<u32> {
    alias?.strip_prefix(prefix)?.parse().ok()
}

/// One past the highest `PREFIX<n>` among `names` (0 when there is none),
/// as libvirt numbers new aliases.
fn next_index<'a>(names: impl Iterator<Item = &'a Option<String>>, prefix: &str) -> u32 {
    names
        .filter_map(|n| index_of(n.as_deref(), prefix))
        .map(|x| x + 1)
        .max()
        .unwrap_or(0)
}

/// The user's alias, else `PREFIX` and the device's position among its kind.
fn numbered<'a>(infos: impl Iterator<Item = &'a DeviceInfo>, prefix: &str) -> Vec<String> {
    infos
        .enumerate()
        .map(|(i, info)| {
            info.alias_name()
                .map_or_else(|| format!("{prefix}{i}"), str::to_string)
        })
        .collect()
}

/// Ids of the devices of one domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    pub disks: Vec<String>,
    pub interfaces: Vec<String>,
    pub hostdevs: Vec<String>,
    pub controllers: Vec<String>,
    pub serials: Vec<String>,
    pub channels: Vec<String>,
    pub watchdogs: Vec<String>,
    pub videos: Vec<String>,
    pub balloon: String,
}

/// libvirt's alias for a controller (qemuAssignDeviceControllerAlias).
pub fn controller_alias(def: &DomainDef, type_: &str, idx: u32, model: Option<&str>) -> String {
    let machine = def.machine().unwrap_or_default();
    match type_ {
        "pci" if model == Some("pcie-root") => format!("pcie.{idx}"),
        "pci" => format!("pci.{idx}"),
        "ide" if idx == 0 && crate::machine::is_i440fx(machine) => "ide".into(),
        "sata" if idx == 0 && crate::machine::is_q35(machine) => "ide".into(),
        "usb" if idx == 0 => "usb".into(),
        "scsi" if idx == 0 && model == Some("ncr53c90") => "scsi".into(),
        _ => format!("{type_}{idx}"),
    }
}

/// Compute every device's id; `actual` is the resolved type of each
/// interface (a network interface backed by a VF is named `hostdevN`).
pub fn assign(def: &DomainDef, actual: &[ActualNet]) -> Aliases {
    let d = &def.devices;
    let mut a = Aliases::default();
    for disk in &d.disks {
        let name = if let Some(al) = disk.info.alias_name() {
            al.to_string()
        } else {
            let bus = disk.target.bus.as_deref().unwrap_or("ide");
            match &disk.info.address {
                Some(teamvirt_conf::model::Address::Drive(dr)) => {
                    format!("{bus}{}-{}-{}", dr.controller, dr.bus, dr.unit)
                }
                _ => format!(
                    "{bus}-disk{}",
                    crate::defaults::disk_name_to_index(&disk.target.dev).map_or(-1, i64::from)
                ),
            }
        };
        a.disks.push(name);
    }

    // Interfaces first, in order: netN by the highest index so far,
    // hostdevN for those that end up being a VF.
    let mut net_names: Vec<Option<String>> = d
        .interfaces
        .iter()
        .map(|n| n.info.alias_name().map(str::to_string))
        .collect();
    let mut hostdev_names: Vec<Option<String>> = d
        .hostdevs
        .iter()
        .map(|h| h.info.alias_name().map(str::to_string))
        .collect();
    for i in 0..d.interfaces.len() {
        if net_names[i].is_some() {
            continue;
        }
        let is_hostdev = actual
            .get(i)
            .map_or(d.interfaces[i].type_ == InterfaceType::Hostdev, |x| {
                x.type_ == InterfaceType::Hostdev
            });
        let name = if is_hostdev {
            let next = next_index(net_names.iter().chain(&hostdev_names), "hostdev");
            format!("hostdev{next}")
        } else {
            format!("net{}", next_index(net_names.iter(), "net"))
        };
        net_names[i] = Some(name);
    }
    for i in 0..d.hostdevs.len() {
        if hostdev_names[i].is_some() {
            continue;
        }
        let next = next_index(net_names.iter().chain(&hostdev_names), "hostdev");
        hostdev_names[i] = Some(format!("hostdev{next}"));
    }
    a.interfaces = net_names
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    a.hostdevs = hostdev_names
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();

    a.controllers = d
        .controllers
        .iter()
        .map(|c| {
            c.info.alias_name().map(str::to_string).unwrap_or_else(|| {
                controller_alias(def, &c.type_, c.index.unwrap_or(0), c.model.as_deref())
            })
        })
        .collect();
    a.serials = numbered(d.serials.iter().map(|x| &x.info), "serial");
    a.channels = numbered(d.channels.iter().map(|x| &x.info), "channel");
    a.watchdogs = numbered(d.watchdogs.iter().map(|x| &x.info), "watchdog");
    a.videos = numbered(d.videos.iter().map(|x| &x.info), "video");
    a.balloon = d
        .memballoon
        .as_ref()
        .and_then(|m| m.info.alias_name())
        .unwrap_or("balloon0")
        .to_string();
    a
}

/// Write the computed aliases into the definition (live XML shows them).
pub fn apply(def: &mut DomainDef, a: &Aliases) {
    let d = &mut def.devices;
    for (x, n) in d.disks.iter_mut().zip(&a.disks) {
        x.info.alias.get_or_insert_with(|| Alias::new(n.clone()));
    }
    for (x, n) in d.interfaces.iter_mut().zip(&a.interfaces) {
        x.info.alias.get_or_insert_with(|| Alias::new(n.clone()));
    }
    for (x, n) in d.hostdevs.iter_mut().zip(&a.hostdevs) {
        x.info.alias.get_or_insert_with(|| Alias::new(n.clone()));
    }
    for (x, n) in d.controllers.iter_mut().zip(&a.controllers) {
        x.info.alias.get_or_insert_with(|| Alias::new(n.clone()));
    }
}
