//! PCI address assignment for a domain, as libvirt's
//! `qemuDomainAssignPCIAddresses` does it: a dry run that grows the bus set
//! (auto-adding pcie-root-ports, bridges) and records the new controllers,
//! then the real pass over the now complete topology, in libvirt's device
//! order: PCI controllers, NICs, sound, other controllers, virtio disks,
//! host devices, balloon, watchdog, video, serials.

use teamvirt_conf::model::{
    Address, Controller, ControllerModelName, ControllerTarget, DomainDef, InterfaceType,
    PciAddress,
};
use thiserror::Error;

use super::alloc::{AddressSet, BusModel, Connect, PciAddr, PciError};
use crate::caps::QemuCaps;
use crate::machine::{is_i440fx, is_q35};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AssignError {
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error("internal error: Primary IDE controller must have PCI address 0:0:1.1")]
    PrimaryIde,
    #[error("internal error: PIIX3 USB controller at index 0 must have PCI address 0:0:1.2")]
    PiixUsb,
    #[error("internal error: Primary SATA controller must have PCI address 0:0:1f.2")]
    PrimarySata,
    #[error("unsupported configuration: PCI controller at index {idx} (0x{idx:02x}) has bus='0x{bus:02x}', but index must be larger than bus")]
    BridgeIndex { idx: u32, bus: u32 },
    #[error("XML error: Invalid PCI controller model '{0}'")]
    UnknownModel(String),
    /// teamvirt's text: libvirt sizes its bus table by the highest index
    /// without a bound.
    #[error("unsupported configuration: PCI controller index {0} is out of range (PCI bus numbers go up to 255)")]
    IndexTooLarge(i64),
}

/// Where a device sits in the domain, so one loop can address any kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevRef {
    Controller(usize),
    Interface(usize),
    Disk(usize),
    /// A plain `<hostdev>`.
    Hostdev(usize),
    Memballoon,
    Watchdog(usize),
    Video(usize),
    Serial(usize),
}

fn to_conf(a: PciAddr, multi: Option<bool>) -> PciAddress {
    PciAddress {
        domain: a.domain,
        bus: a.bus as u8,
        slot: a.slot as u8,
        function: a.function as u8,
        multifunction: multi,
        pos: Default::default(),
    }
}

fn from_conf(a: &PciAddress) -> PciAddr {
    PciAddr {
        domain: a.domain,
        bus: u32::from(a.bus),
        slot: u32::from(a.slot),
        function: u32::from(a.function),
    }
}

fn address_mut(def: &mut DomainDef, r: DevRef) -> &mut Option<Address> {
    let d = &mut def.devices;
    match r {
        DevRef::Controller(i) => &mut d.controllers[i].info.address,
        DevRef::Interface(i) => &mut d.interfaces[i].info.address,
        DevRef::Disk(i) => &mut d.disks[i].info.address,
        DevRef::Hostdev(i) => &mut d.hostdevs[i].info.address,
        DevRef::Memballoon => {
            &mut d
                .memballoon
                .as_mut()
                .expect("memballoon present")
                .info
                .address
        }
        DevRef::Watchdog(i) => &mut d.watchdogs[i].info.address,
        DevRef::Video(i) => &mut d.videos[i].info.address,
        DevRef::Serial(i) => &mut d.serials[i].info.address,
    }
}

fn address_of(def: &DomainDef, r: DevRef) -> Option<&Address> {
    let d = &def.devices;
    match r {
        DevRef::Controller(i) => d.controllers[i].info.address.as_ref(),
        DevRef::Interface(i) => d.interfaces[i].info.address.as_ref(),
        DevRef::Disk(i) => d.disks[i].info.address.as_ref(),
        DevRef::Hostdev(i) => d.hostdevs[i].info.address.as_ref(),
        DevRef::Memballoon => d.memballoon.as_ref().and_then(|m| m.info.address.as_ref()),
        DevRef::Watchdog(i) => d.watchdogs[i].info.address.as_ref(),
        DevRef::Video(i) => d.videos[i].info.address.as_ref(),
        DevRef::Serial(i) => d.serials[i].info.address.as_ref(),
    }
}

/// libvirt's virDeviceInfoPCIAddressIsWanted: no address, or a PCI one
/// that is all zeros.
fn wanted(def: &DomainDef, r: DevRef) -> bool {
    match address_of(def, r) {
        None => true,
        Some(Address::Pci(p)) => p.is_empty(),
        Some(_) => false,
    }
}

fn present(def: &DomainDef, r: DevRef) -> Option<PciAddr> {
    match address_of(def, r) {
        Some(Address::Pci(p)) if !p.is_empty() => Some(from_conf(p)),
        _ => None,
    }
}

/// The flag sets of one domain (pcie vs. conventional).
#[derive(Debug, Clone, Copy)]
pub struct Flags {
    pub pci: Connect,
    pub pcie: Connect,
    pub virtio: Connect,
}

impl Flags {
    pub fn for_domain(def: &DomainDef, caps: &QemuCaps) -> Flags {
        let pci = Connect::PCI_DEVICE | Connect::AUTOASSIGN;
        let pcie = if has_pcie_root(def) {
            Connect::PCIE_DEVICE | Connect::AUTOASSIGN
        } else {
            pci
        };
        let virtio = if caps.has("virtio-pci-non-transitional") {
            pcie
        } else {
            pci
        };
        Flags { pci, pcie, virtio }
    }
}

pub fn has_pcie_root(def: &DomainDef) -> bool {
    def.devices
        .controllers
        .iter()
        .any(|c| c.type_ == "pci" && c.index == Some(0) && c.model.as_deref() == Some("pcie-root"))
}

pub fn has_pci_root(def: &DomainDef) -> bool {
    def.devices
        .controllers
        .iter()
        .any(|c| c.type_ == "pci" && c.index == Some(0) && c.model.as_deref() == Some("pci-root"))
}

fn controller_bus_model(c: &Controller) -> Result<BusModel, AssignError> {
    let m = c.model.as_deref().unwrap_or("pci-root");
    BusModel::from_name(m).ok_or_else(|| AssignError::UnknownModel(m.to_string()))
}

/// The connection a device needs (qemuDomainDeviceCalculatePCIConnectFlags).
pub fn connect_flags(def: &DomainDef, r: DevRef, f: Flags) -> Connect {
    let d = &def.devices;
    match r {
        DevRef::Controller(i) => {
            let c = &d.controllers[i];
            match c.type_.as_str() {
                "pci" => controller_bus_model(c)
                    .map(BusModel::connect_type)
                    .unwrap_or(Connect::NONE),
                "sata" | "ide" => f.pci,
                "usb" => match c.model.as_deref() {
                    None => f.pci,
                    Some("nec-xhci") | Some("qemu-xhci") => f.pcie,
                    Some("none") | Some("qusb1") | Some("qusb2") => Connect::NONE,
                    Some(_) => f.pci,
                },
                "scsi" => match c.model.as_deref() {
                    None | Some("ncr53c90") => Connect::NONE,
                    Some("virtio-scsi") | Some("virtio-non-transitional") => f.virtio,
                    Some(_) => f.pci,
                },
                "virtio-serial" => match c.model.as_deref() {
                    Some("virtio-transitional") => f.pci,
                    _ => f.virtio,
                },
                _ => Connect::NONE,
            }
        }
        DevRef::Interface(i) => {
            let n = &d.interfaces[i];
            if n.type_ == InterfaceType::Hostdev {
                return Connect::NONE;
            }
            match n.model_str() {
                Some("virtio") | Some("virtio-non-transitional") => f.virtio,
                Some("virtio-transitional") => f.pci,
                Some("e1000e") | Some("igb") => f.pcie,
                Some("usb-net") => Connect::NONE,
                None => f.pcie,
                Some(_) => f.pci,
            }
        }
        DevRef::Disk(i) => {
            let disk = &d.disks[i];
            if disk.target.bus.as_deref() != Some("virtio") {
                return Connect::NONE;
            }
            match disk
                .extra_attrs
                .iter()
                .find(|a| a.name == "model")
                .map(|a| a.value.as_str())
            {
                Some("virtio-transitional") => f.pci,
                _ => f.virtio,
            }
        }
        DevRef::Hostdev(i) => {
            let h = &d.hostdevs[i];
            if h.mode != "subsystem" || !matches!(h.type_.as_str(), "pci" | "scsi_host" | "mdev") {
                return Connect::NONE;
            }
            // Assignable host devices are overwhelmingly PCI Express; libvirt
            // assumes so when it cannot read the device's config space.
            f.pcie
        }
        DevRef::Memballoon => match d.memballoon.as_ref().map(|m| m.model.as_str()) {
            Some("virtio-transitional") => f.pci,
            Some("virtio") | Some("virtio-non-transitional") => f.virtio,
            _ => Connect::NONE,
        },
        DevRef::Watchdog(i) => {
            if d.watchdogs[i].model == "i6300esb" {
                f.pci
            } else {
                Connect::NONE
            }
        }
        DevRef::Video(i) => match d.videos[i].model_type.as_deref() {
            Some("virtio") => f.virtio,
            Some("bochs") => f.pcie,
            None | Some("none") | Some("ramfb") | Some("gop") | Some("default") => Connect::NONE,
            Some(_) => f.pci,
        },
        DevRef::Serial(i) => {
            if d.serials[i]
                .target
                .as_ref()
                .and_then(|t| t.type_.as_deref())
                == Some("pci-serial")
            {
                f.pci
            } else {
                Connect::NONE
            }
        }
    }
}

fn all_devices(def: &DomainDef) -> Vec<DevRef> {
    let d = &def.devices;
    let mut v = Vec::new();
    v.extend((0..d.disks.len()).map(DevRef::Disk));
    v.extend((0..d.interfaces.len()).map(DevRef::Interface));
    v.extend((0..d.hostdevs.len()).map(DevRef::Hostdev));
    v.extend((0..d.videos.len()).map(DevRef::Video));
    v.extend((0..d.controllers.len()).map(DevRef::Controller));
    v.extend((0..d.watchdogs.len()).map(DevRef::Watchdog));
    if d.memballoon.is_some() {
        v.push(DevRef::Memballoon);
    }
    v.extend((0..d.serials.len()).map(DevRef::Serial));
    v
}

/// The address set with every bus's model and every address already
/// given in the configuration (qemuDomainPCIAddressSetCreate).
fn create_set(
    def: &DomainDef,
    caps: &QemuCaps,
    nbuses: usize,
    dry_run: bool,
    f: Flags,
) -> Result<AddressSet, AssignError> {
    let mut set = AddressSet::new(nbuses, dry_run);
    set.pcie_to_pci_bridge_supported = caps.has("pcie-pci-bridge");
    let mut pcie_root = false;
    for c in def.devices.controllers.iter().filter(|c| c.type_ == "pci") {
        let idx = c.index.unwrap_or(0) as usize;
        if idx >= nbuses {
            continue;
        }
        let model = controller_bus_model(c)?;
        let hotplug = c.target.as_ref().and_then(|t| t.hotplug) != Some(false);
        set.buses[idx].set_model(model, hotplug);
        pcie_root |= model == BusModel::PcieRoot;
    }
    if nbuses > 0 && set.buses[0].model.is_none() {
        set.buses[0].set_model(BusModel::PciRoot, true);
    }
    let default = if pcie_root {
        BusModel::PcieRootPort
    } else {
        BusModel::PciBridge
    };
    for b in set.buses.iter_mut().skip(1) {
        if b.model.is_none() {
            b.set_model(default, true);
        }
    }
    for r in all_devices(def) {
        let Some(addr) = present(def, r) else {
            continue;
        };
        if let DevRef::Controller(i) = r {
            // The PIIX3 IDE/USB functions are reserved with the chipset.
            let c = &def.devices.controllers[i];
            let piix = addr.bus == 0
                && addr.slot == 1
                && c.index == Some(0)
                && ((c.type_ == "ide" && addr.function == 1)
                    || (c.type_ == "usb"
                        && matches!(c.model.as_deref(), None | Some("piix3-uhci"))
                        && addr.function == 2));
            if piix {
                continue;
            }
        }
        let mut flags = connect_flags(def, r, f);
        if flags.is_empty() {
            flags = Connect::PCI_DEVICE;
        }
        set.reserve(&addr, flags)?;
    }
    Ok(set)
}

fn set_addr(def: &mut DomainDef, r: DevRef, a: PciAddr, multi: Option<bool>) {
    *address_mut(def, r) = Some(Address::Pci(to_conf(a, multi)));
}

/// Chipset-fixed addresses (qemuDomainValidateDevicePCISlotsPIIX3 / Q35).
fn reserve_chipset(
    def: &mut DomainDef,
    set: &mut AddressSet,
    machine: &str,
    f: Flags,
) -> Result<(), AssignError> {
    if is_i440fx(machine) {
        let flags = Connect::AUTOASSIGN | Connect::PCI_DEVICE;
        for i in 0..def.devices.controllers.len() {
            let c = &def.devices.controllers[i];
            let (want, err) = if c.type_ == "ide" && c.index == Some(0) {
                (PciAddr::new(0, 1, 1), AssignError::PrimaryIde)
            } else if c.type_ == "usb"
                && c.index == Some(0)
                && matches!(c.model.as_deref(), None | Some("piix3-uhci"))
            {
                (PciAddr::new(0, 1, 2), AssignError::PiixUsb)
            } else {
                continue;
            };
            match present(def, DevRef::Controller(i)) {
                Some(a) if a != want => return Err(err),
                Some(_) => {}
                None => set_addr(def, DevRef::Controller(i), want, None),
            }
            if !set.buses.is_empty() {
                set.reserve(&want, flags)?;
            }
        }
        if !set.buses.is_empty() {
            set.reserve(&PciAddr::new(0, 1, 0), flags)?;
            set.reserve(&PciAddr::new(0, 1, 3), flags)?;
        }
        reserve_primary_video(def, set, 2, flags)?;
    }
    if is_q35(machine) {
        let flags = Connect::PCIE_DEVICE;
        for i in 0..def.devices.controllers.len() {
            let c = &def.devices.controllers[i];
            if c.type_ == "sata" && c.index == Some(0) {
                let want = PciAddr::new(0, 0x1f, 2);
                match present(def, DevRef::Controller(i)) {
                    Some(a) if a != want => return Err(AssignError::PrimarySata),
                    Some(_) => {}
                    None => set_addr(def, DevRef::Controller(i), want, None),
                }
            } else if c.type_ == "pci"
                && c.model.as_deref() == Some("dmi-to-pci-bridge")
                && c.info.address.is_none()
            {
                let want = PciAddr::new(0, 0x1e, 0);
                if !set.buses[0].slot_in_use(0x1e) {
                    set.reserve(&want, flags)?;
                    set_addr(def, DevRef::Controller(i), want, None);
                }
            }
        }
        if !set.buses.is_empty() {
            set.reserve(&PciAddr::new(0, 0x1f, 0), flags)?;
            set.reserve(&PciAddr::new(0, 0x1f, 3), flags)?;
        }
        reserve_primary_video(def, set, 1, flags)?;
    }
    let _ = f;
    Ok(())
}

fn reserve_primary_video(
    def: &mut DomainDef,
    set: &mut AddressSet,
    slot: u32,
    flags: Connect,
) -> Result<(), AssignError> {
    let Some(v) = def.devices.videos.first() else {
        return Ok(());
    };
    if matches!(v.model_type.as_deref(), None | Some("none") | Some("ramfb"))
        || !wanted(def, DevRef::Video(0))
    {
        return Ok(());
    }
    let a = PciAddr::new(0, slot, 0);
    set.validate(&a, flags, true)?;
    if set.buses[0].slot_in_use(slot) {
        let f = connect_flags(
            def,
            DevRef::Video(0),
            Flags {
                pci: flags,
                pcie: flags,
                virtio: flags,
            },
        );
        let got = set.reserve_next(f, None)?;
        if !set.dry_run {
            set_addr(def, DevRef::Video(0), got, None);
        }
    } else {
        set.reserve(&a, flags)?;
        set_addr(def, DevRef::Video(0), a, None);
    }
    Ok(())
}

fn next(def: &mut DomainDef, set: &mut AddressSet, r: DevRef, f: Flags) -> Result<(), AssignError> {
    let flags = connect_flags(def, r, f);
    let a = set.reserve_next(flags, None)?;
    if !set.dry_run {
        set_addr(def, r, a, None);
    }
    Ok(())
}

/// qemuDomainAssignDevicePCISlots.
fn assign_slots(def: &mut DomainDef, set: &mut AddressSet, f: Flags) -> Result<(), AssignError> {
    let n_ctrl = def.devices.controllers.len();
    for i in 0..n_ctrl {
        let c = &def.devices.controllers[i];
        if c.type_ != "pci" || matches!(c.model.as_deref(), Some("pci-root") | Some("pcie-root")) {
            continue;
        }
        if wanted(def, DevRef::Controller(i)) {
            next(def, set, DevRef::Controller(i), f)?;
        }
    }
    for i in 0..def.devices.interfaces.len() {
        if def.devices.interfaces[i].type_ == InterfaceType::Hostdev
            || !wanted(def, DevRef::Interface(i))
        {
            continue;
        }
        next(def, set, DevRef::Interface(i), f)?;
    }
    for i in 0..n_ctrl {
        let c = &def.devices.controllers[i];
        let skip = c.type_ == "pci"
            || (c.type_ == "usb" && c.model.as_deref() == Some("none"))
            || matches!(c.type_.as_str(), "fdc" | "ccid")
            || (c.type_ == "ide" && c.index == Some(0))
            || (c.type_ == "scsi" && c.model.as_deref() == Some("ncr53c90"));
        if skip
            || !wanted(def, DevRef::Controller(i))
            || connect_flags(def, DevRef::Controller(i), f).is_empty()
        {
            continue;
        }
        next(def, set, DevRef::Controller(i), f)?;
    }
    for i in 0..def.devices.disks.len() {
        if def.devices.disks[i].target.bus.as_deref() != Some("virtio")
            || !wanted(def, DevRef::Disk(i))
        {
            continue;
        }
        next(def, set, DevRef::Disk(i), f)?;
    }
    // Host devices: `<interface type='hostdev'>` first (libvirt inserts
    // their hostdev while parsing interfaces), then plain `<hostdev>`s.
    for i in 0..def.devices.interfaces.len() {
        if def.devices.interfaces[i].type_ != InterfaceType::Hostdev
            || !wanted(def, DevRef::Interface(i))
        {
            continue;
        }
        let flags = f.pcie;
        let a = set.reserve_next(flags, None)?;
        if !set.dry_run {
            set_addr(def, DevRef::Interface(i), a, None);
        }
    }
    for i in 0..def.devices.hostdevs.len() {
        let h = &def.devices.hostdevs[i];
        if h.mode != "subsystem" || !matches!(h.type_.as_str(), "pci" | "scsi_host" | "mdev") {
            continue;
        }
        if matches!(h.info.address, Some(Address::Unassigned { .. }))
            || !wanted(def, DevRef::Hostdev(i))
        {
            continue;
        }
        next(def, set, DevRef::Hostdev(i), f)?;
    }
    if def.devices.memballoon.is_some()
        && wanted(def, DevRef::Memballoon)
        && !connect_flags(def, DevRef::Memballoon, f).is_empty()
    {
        next(def, set, DevRef::Memballoon, f)?;
    }
    for i in 0..def.devices.watchdogs.len() {
        if def.devices.watchdogs[i].model == "i6300esb" && wanted(def, DevRef::Watchdog(i)) {
            next(def, set, DevRef::Watchdog(i), f)?;
        }
    }
    for i in 0..def.devices.videos.len() {
        if connect_flags(def, DevRef::Video(i), f).is_empty() || !wanted(def, DevRef::Video(i)) {
            continue;
        }
        next(def, set, DevRef::Video(i), f)?;
    }
    for i in 0..def.devices.serials.len() {
        if !connect_flags(def, DevRef::Serial(i), f).is_empty() && wanted(def, DevRef::Serial(i)) {
            next(def, set, DevRef::Serial(i), f)?;
        }
    }
    Ok(())
}

/// Assign PCI addresses to every device that needs one, adding the PCI
/// controllers that requires, and fill in controller model names and
/// chassis/port numbers.
pub fn assign_pci_addresses(def: &mut DomainDef, caps: &QemuCaps) -> Result<(), AssignError> {
    let machine = def.machine().unwrap_or_default().to_string();
    let max_idx: i64 = def
        .devices
        .controllers
        .iter()
        .filter(|c| c.type_ == "pci")
        .map(|c| i64::from(c.index.unwrap_or(0)))
        .max()
        .unwrap_or(-1);
    if max_idx < 0 {
        return Ok(());
    }
    if max_idx >= crate::pci::alloc::MAX_BUSES as i64 {
        return Err(AssignError::IndexTooLarge(max_idx));
    }
    let f = Flags::for_domain(def, caps);
    let mut nbuses = (max_idx + 1) as usize;

    // Dry run: find out which buses must be added.
    let mut set = create_set(def, caps, nbuses, true, f)?;
    reserve_chipset(def, &mut set, &machine, f)?;
    if has_pci_root(def) && !set.buses.iter().all(|b| b.is_fully_reserved()) {
        // Keep a slot free for a future pci-bridge.
        set.reserve_next(Connect::AUTOASSIGN | Connect::PCI_DEVICE, None)?;
    }
    assign_slots(def, &mut set, f)?;
    if max_idx <= 0 && set.buses.len() > (max_idx + 1) as usize && has_pcie_root(def) {
        // One spare hotpluggable root port for guests whose topology
        // libvirt manages.
        set.reserve_next(Connect::AUTOASSIGN | Connect::PCIE_DEVICE, None)?;
    }
    for i in 1..set.buses.len() {
        let exists = def
            .devices
            .controllers
            .iter()
            .any(|c| c.type_ == "pci" && c.index == Some(i as u32));
        if exists {
            continue;
        }
        let model = set.buses[i].model.unwrap_or(BusModel::PciBridge);
        // libvirt's virDomainDefAddController appends: the controllers
        // the definition lists keep their order, new ones come last.
        def.devices
            .controllers
            .push(Controller::new("pci", i as u32, Some(model.name())));
        if !matches!(model, BusModel::PciRoot | BusModel::PcieRoot) {
            set.reserve_next(model.connect_type(), None)?;
        }
    }
    nbuses = set.buses.len();

    // Real pass.
    let mut set = create_set(def, caps, nbuses, false, f)?;
    reserve_chipset(def, &mut set, &machine, f)?;
    assign_slots(def, &mut set, f)?;
    set_all_multi(def);
    controller_defaults(def, caps)?;
    Ok(())
}

/// The PCI address of a device hot-plugged into a running domain, as
/// libvirt's `qemuDomainEnsurePCIAddress` gives it: the running topology
/// only (no controller can be added to a running guest), an address the
/// XML gave is validated against it, else the first free slot on a bus
/// that accepts hotplug (a `pcie-root-port` with hotplug on, never
/// `pcie.0`). No slot left: libvirt's "No more available PCI slots".
pub fn assign_hotplug_address(
    def: &mut DomainDef,
    r: DevRef,
    caps: &QemuCaps,
) -> Result<(), AssignError> {
    let machine = def.machine().unwrap_or_default().to_string();
    let max_idx: i64 = def
        .devices
        .controllers
        .iter()
        .filter(|c| c.type_ == "pci")
        .map(|c| i64::from(c.index.unwrap_or(0)))
        .max()
        .unwrap_or(-1);
    if max_idx < 0 {
        return Ok(());
    }
    let f = Flags::for_domain(def, caps);
    // Every present address is reserved here, the new device's too when
    // its XML gave one (validated like any other).
    let mut set = create_set(def, caps, (max_idx + 1) as usize, false, f)?;
    reserve_chipset(def, &mut set, &machine, f)?;
    if !wanted(def, r) {
        return Ok(());
    }
    let flags = match r {
        DevRef::Interface(i) if def.devices.interfaces[i].type_ == InterfaceType::Hostdev => f.pcie,
        _ => connect_flags(def, r, f),
    };
    if flags.is_empty() {
        return Ok(());
    }
    let a = set.reserve_next(flags | Connect::HOTPLUGGABLE, None)?;
    set_addr(def, r, a, None);
    Ok(())
}

/// virDomainPCIAddressSetAllMulti: function 0 of a slot with other
/// functions in use gets `multifunction='on'` unless set explicitly.
fn set_all_multi(def: &mut DomainDef) {
    let refs = all_devices(def);
    let mut slots = std::collections::HashSet::new();
    for r in &refs {
        if let Some(Address::Pci(p)) = address_of(def, *r) {
            if p.function != 0 {
                slots.insert((p.domain, p.bus, p.slot));
            }
        }
    }
    for r in refs {
        if let Some(Address::Pci(p)) = address_mut(def, r) {
            if p.function == 0
                && p.multifunction.is_none()
                && slots.contains(&(p.domain, p.bus, p.slot))
            {
                p.multifunction = Some(true);
            }
        }
    }
}

fn controller_defaults(def: &mut DomainDef, caps: &QemuCaps) -> Result<(), AssignError> {
    for c in def
        .devices
        .controllers
        .iter_mut()
        .filter(|c| c.type_ == "pci")
    {
        let model = controller_bus_model(c)?;
        let name = match model {
            BusModel::PciBridge => Some("pci-bridge"),
            BusModel::DmiToPciBridge => Some("i82801b11-bridge"),
            BusModel::PcieToPciBridge => Some("pcie-pci-bridge"),
            BusModel::PcieRootPort => {
                Some(if caps.has("pcie-root-port") || caps.flags.is_empty() {
                    "pcie-root-port"
                } else {
                    "ioh3420"
                })
            }
            BusModel::PcieSwitchUpstreamPort => Some("x3130-upstream"),
            BusModel::PcieSwitchDownstreamPort => Some("xio3130-downstream"),
            BusModel::PciExpanderBus => Some("pxb"),
            BusModel::PcieExpanderBus => Some("pxb-pcie"),
            BusModel::PciRoot | BusModel::PcieRoot => None,
        };
        if c.model_name.is_none() {
            if let Some(n) = name {
                c.model_name = Some(ControllerModelName {
                    name: n.into(),
                    pos: Default::default(),
                });
            }
        }
        let idx = c.index.unwrap_or(0);
        let addr = c.info.pci_address().copied();
        match model {
            BusModel::PciBridge => {
                let t = c.target.get_or_insert_with(ControllerTarget::default);
                if t.chassis_nr.is_none() {
                    t.chassis_nr = Some(idx);
                }
            }
            BusModel::PcieRootPort | BusModel::PcieSwitchDownstreamPort => {
                let t = c.target.get_or_insert_with(ControllerTarget::default);
                if t.chassis.is_none() {
                    t.chassis = Some(idx);
                }
                if t.port.is_none() {
                    if let Some(a) = addr {
                        t.port = Some(if model == BusModel::PcieRootPort {
                            (u32::from(a.slot) << 3) + u32::from(a.function)
                        } else {
                            u32::from(a.slot)
                        });
                    }
                }
            }
            _ => {}
        }
        if model == BusModel::PciBridge {
            if let Some(a) = addr {
                if idx <= u32::from(a.bus) {
                    return Err(AssignError::BridgeIndex {
                        idx,
                        bus: u32::from(a.bus),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root ports define adds go after every controller the definition
    /// lists (libvirt appends them), not next to the listed root ports.
    #[test]
    fn auto_added_root_ports_come_last() {
        let xml = "<domain type='kvm'><name>d</name><memory unit='MiB'>128</memory>
          <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>
          <controller type='pci' index='0' model='pcie-root'/>
          <controller type='pci' index='1' model='pcie-root-port'/>
          <controller type='usb' index='0' model='qemu-xhci'/>
          <controller type='sata' index='0'/>
          <interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/></interface>
          <interface type='user'><mac address='52:54:00:00:00:02'/><model type='virtio'/></interface>
          </devices></domain>";
        let mut def = DomainDef::parse_str(xml, None).unwrap().0;
        let caps = QemuCaps::from_flags(
            "/usr/bin/qemu-system-x86_64",
            "x86_64",
            ["pcie-root-port", "qemu-xhci", "virtio-pci-non-transitional"],
        );
        assign_pci_addresses(&mut def, &caps).unwrap();
        let order: Vec<(String, u32)> = def
            .devices
            .controllers
            .iter()
            .map(|c| (c.type_.clone(), c.index.unwrap_or(0)))
            .collect();
        let pos = |t: &str, i: u32| order.iter().position(|x| x.0 == t && x.1 == i).unwrap();
        assert!(order.len() > 4, "{order:?}");
        assert_eq!(
            &order[..4],
            &[
                ("pci".to_string(), 0),
                ("pci".to_string(), 1),
                ("usb".to_string(), 0),
                ("sata".to_string(), 0),
            ]
        );
        assert!(pos("pci", 2) > pos("sata", 0), "{order:?}");
    }
}
