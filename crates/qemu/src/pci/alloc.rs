//! PCI address bookkeeping the way libvirt's `domain_addr.c` does it: a set
//! of buses, each with connection flags saying what may plug into it, and a
//! per-slot bitmap of used functions. Auto-assignment takes the first bus,
//! first slot (from the bus's minimum) that is entirely free, except that
//! devices allowed to share a slot (pcie-root-ports) fill the free
//! functions of a slot already holding root ports.

use std::fmt;

use thiserror::Error;

/// What a device needs from its bus / what a bus offers (libvirt's
/// `virDomainPCIConnectFlags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Connect(pub u32);

impl Connect {
    pub const NONE: Connect = Connect(0);
    pub const HOTPLUGGABLE: Connect = Connect(1 << 0);
    pub const AUTOASSIGN: Connect = Connect(1 << 1);
    pub const PCI_DEVICE: Connect = Connect(1 << 2);
    pub const PCIE_DEVICE: Connect = Connect(1 << 3);
    pub const PCIE_ROOT_PORT: Connect = Connect(1 << 4);
    pub const PCIE_SWITCH_UPSTREAM_PORT: Connect = Connect(1 << 5);
    pub const PCIE_SWITCH_DOWNSTREAM_PORT: Connect = Connect(1 << 6);
    pub const DMI_TO_PCI_BRIDGE: Connect = Connect(1 << 7);
    pub const PCI_EXPANDER_BUS: Connect = Connect(1 << 8);
    pub const PCIE_EXPANDER_BUS: Connect = Connect(1 << 9);
    pub const PCI_BRIDGE: Connect = Connect(1 << 10);
    pub const PCIE_TO_PCI_BRIDGE: Connect = Connect(1 << 11);
    pub const AGGREGATE_SLOT: Connect = Connect(1 << 12);
    pub const INTEGRATED: Connect = Connect(1 << 13);

    /// Every connection-type bit.
    pub const TYPES_MASK: Connect = Connect(
        Self::PCI_DEVICE.0
            | Self::PCIE_DEVICE.0
            | Self::PCIE_ROOT_PORT.0
            | Self::PCIE_SWITCH_UPSTREAM_PORT.0
            | Self::PCIE_SWITCH_DOWNSTREAM_PORT.0
            | Self::DMI_TO_PCI_BRIDGE.0
            | Self::PCI_EXPANDER_BUS.0
            | Self::PCIE_EXPANDER_BUS.0
            | Self::PCI_BRIDGE.0
            | Self::PCIE_TO_PCI_BRIDGE.0,
    );
    /// Endpoint devices (PCI or PCIe).
    pub const TYPES_ENDPOINT: Connect = Connect(Self::PCI_DEVICE.0 | Self::PCIE_DEVICE.0);

    pub fn has(self, other: Connect) -> bool {
        self.0 & other.0 != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Connect {
    type Output = Connect;
    fn bitor(self, rhs: Connect) -> Connect {
        Connect(self.0 | rhs.0)
    }
}
impl std::ops::BitOrAssign for Connect {
    fn bitor_assign(&mut self, rhs: Connect) {
        self.0 |= rhs.0;
    }
}
impl std::ops::BitAnd for Connect {
    type Output = Connect;
    fn bitand(self, rhs: Connect) -> Connect {
        Connect(self.0 & rhs.0)
    }
}

/// PCI controller models (libvirt's `virDomainControllerModelPCI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BusModel {
    PciRoot,
    PcieRoot,
    PciBridge,
    DmiToPciBridge,
    PcieToPciBridge,
    PcieRootPort,
    PcieSwitchUpstreamPort,
    PcieSwitchDownstreamPort,
    PciExpanderBus,
    PcieExpanderBus,
}

impl BusModel {
    pub fn from_name(s: &str) -> Option<BusModel> {
        Some(match s {
            "pci-root" => BusModel::PciRoot,
            "pcie-root" => BusModel::PcieRoot,
            "pci-bridge" => BusModel::PciBridge,
            "dmi-to-pci-bridge" => BusModel::DmiToPciBridge,
            "pcie-to-pci-bridge" => BusModel::PcieToPciBridge,
            "pcie-root-port" => BusModel::PcieRootPort,
            "pcie-switch-upstream-port" => BusModel::PcieSwitchUpstreamPort,
            "pcie-switch-downstream-port" => BusModel::PcieSwitchDownstreamPort,
            "pci-expander-bus" => BusModel::PciExpanderBus,
            "pcie-expander-bus" => BusModel::PcieExpanderBus,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            BusModel::PciRoot => "pci-root",
            BusModel::PcieRoot => "pcie-root",
            BusModel::PciBridge => "pci-bridge",
            BusModel::DmiToPciBridge => "dmi-to-pci-bridge",
            BusModel::PcieToPciBridge => "pcie-to-pci-bridge",
            BusModel::PcieRootPort => "pcie-root-port",
            BusModel::PcieSwitchUpstreamPort => "pcie-switch-upstream-port",
            BusModel::PcieSwitchDownstreamPort => "pcie-switch-downstream-port",
            BusModel::PciExpanderBus => "pci-expander-bus",
            BusModel::PcieExpanderBus => "pcie-expander-bus",
        }
    }

    /// How a controller of this model plugs into its parent bus.
    pub fn connect_type(self) -> Connect {
        match self {
            BusModel::PciRoot | BusModel::PcieRoot => Connect::NONE,
            BusModel::PciBridge => Connect::PCI_BRIDGE,
            BusModel::PciExpanderBus => Connect::PCI_EXPANDER_BUS,
            BusModel::PcieExpanderBus => Connect::PCIE_EXPANDER_BUS,
            BusModel::DmiToPciBridge => Connect::DMI_TO_PCI_BRIDGE,
            BusModel::PcieToPciBridge => Connect::PCIE_TO_PCI_BRIDGE,
            BusModel::PcieRootPort => Connect::PCIE_ROOT_PORT | Connect::AGGREGATE_SLOT,
            BusModel::PcieSwitchUpstreamPort => Connect::PCIE_SWITCH_UPSTREAM_PORT,
            BusModel::PcieSwitchDownstreamPort => Connect::PCIE_SWITCH_DOWNSTREAM_PORT,
        }
    }
}

impl fmt::Display for BusModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A guest PCI address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct PciAddr {
    pub domain: u32,
    pub bus: u32,
    pub slot: u32,
    pub function: u32,
}

impl PciAddr {
    pub const fn new(bus: u32, slot: u32, function: u32) -> Self {
        PciAddr {
            domain: 0,
            bus,
            slot,
            function,
        }
    }
}

impl fmt::Display for PciAddr {
    /// libvirt's virPCIDeviceAddressAsString.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

pub const SLOT_LAST: u32 = 31;
/// Buses a PCI domain has (bus numbers are 8 bits).
pub const MAX_BUSES: usize = 256;
pub const FUNCTION_LAST: u32 = 7;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    functions: u8,
    aggregate: bool,
}

/// One bus of the set.
#[derive(Debug, Clone)]
pub struct Bus {
    pub model: Option<BusModel>,
    pub flags: Connect,
    pub min_slot: u32,
    pub max_slot: u32,
    slots: [Slot; 32],
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            model: None,
            flags: Connect::NONE,
            min_slot: 0,
            max_slot: 0,
            slots: [Slot::default(); 32],
        }
    }
}

impl Bus {
    /// Flags, min and max slot for a bus provided by `model`
    /// (virDomainPCIAddressBusSetModel).
    pub fn set_model(&mut self, model: BusModel, allow_hotplug: bool) {
        let hp = if allow_hotplug {
            Connect::HOTPLUGGABLE
        } else {
            Connect::NONE
        };
        let (flags, min, max) = match model {
            BusModel::PciRoot => (
                Connect::AUTOASSIGN
                    | Connect::PCI_DEVICE
                    | Connect::PCI_BRIDGE
                    | Connect::PCI_EXPANDER_BUS
                    | hp,
                1,
                SLOT_LAST,
            ),
            BusModel::PciBridge | BusModel::PcieToPciBridge => (
                Connect::AUTOASSIGN | Connect::PCI_DEVICE | Connect::PCI_BRIDGE | hp,
                1,
                SLOT_LAST,
            ),
            BusModel::PciExpanderBus => (
                Connect::AUTOASSIGN | Connect::PCI_DEVICE | Connect::PCI_BRIDGE | hp,
                0,
                SLOT_LAST,
            ),
            BusModel::PcieRoot => (
                Connect::PCIE_DEVICE
                    | Connect::PCIE_ROOT_PORT
                    | Connect::DMI_TO_PCI_BRIDGE
                    | Connect::PCIE_EXPANDER_BUS,
                1,
                SLOT_LAST,
            ),
            BusModel::DmiToPciBridge => (Connect::PCI_DEVICE | Connect::PCI_BRIDGE, 0, SLOT_LAST),
            BusModel::PcieRootPort | BusModel::PcieSwitchDownstreamPort => (
                Connect::AUTOASSIGN
                    | Connect::PCIE_DEVICE
                    | Connect::PCIE_SWITCH_UPSTREAM_PORT
                    | Connect::PCIE_TO_PCI_BRIDGE
                    | hp,
                0,
                0,
            ),
            BusModel::PcieSwitchUpstreamPort => {
                (Connect::PCIE_SWITCH_DOWNSTREAM_PORT, 0, SLOT_LAST)
            }
            BusModel::PcieExpanderBus => (
                Connect::PCIE_ROOT_PORT | Connect::DMI_TO_PCI_BRIDGE,
                0,
                SLOT_LAST,
            ),
        };
        self.model = Some(model);
        self.flags = flags;
        self.min_slot = min;
        self.max_slot = max;
    }

    pub fn is_empty(&self) -> bool {
        (self.min_slot..=self.max_slot).all(|s| self.slots[s as usize].functions == 0)
    }

    pub fn is_fully_reserved(&self) -> bool {
        (self.min_slot..=self.max_slot).all(|s| self.slots[s as usize].functions != 0)
    }

    pub fn slot_in_use(&self, slot: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_some_and(|s| s.functions != 0)
    }

    /// Functions used in `slot`, as a bitmap.
    pub fn functions(&self, slot: u32) -> u8 {
        self.slots.get(slot as usize).map_or(0, |s| s.functions)
    }
}

/// Errors with libvirt's texts. `xml` tells whether the address came from
/// the user's XML (libvirt reports those as `XML error:`) or was computed
/// (`internal error:`).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PciError {
    #[error("{}", prefixed(*xml, msg))]
    Address { xml: bool, msg: String },
    #[error("internal error: No more available PCI slots")]
    NoSlots,
    #[error("XML error: No PCI buses available")]
    NoBuses,
    #[error("internal error: {0}")]
    CannotGrow(String),
}

fn prefixed(xml: bool, msg: &str) -> String {
    if xml {
        format!("XML error: {msg}")
    } else {
        format!("internal error: {msg}")
    }
}

/// The address set (libvirt's virDomainPCIAddressSet).
#[derive(Debug, Clone, Default)]
pub struct AddressSet {
    /// The buses. Set their models before the first `reserve_next`: the
    /// search hints below assume a bus's flags do not change afterwards.
    pub buses: Vec<Bus>,
    /// First pass: grow the set with new buses instead of failing.
    pub dry_run: bool,
    /// QEMU has pcie-pci-bridge: prefer it over dmi-to-pci-bridge.
    pub pcie_to_pci_bridge_supported: bool,
    /// Per kind of request (connect flags, function), the first bus that
    /// may still have room for it. Slots are only ever taken, never given
    /// back, so a bus that had no room for a request never has again:
    /// searching from here finds what libvirt's search from bus 0 finds,
    /// without rescanning the full buses for every device.
    hints: std::collections::HashMap<(u32, Option<u32>), usize>,
}

impl AddressSet {
    pub fn new(nbuses: usize, dry_run: bool) -> Self {
        AddressSet {
            buses: vec![Bus::default(); nbuses],
            dry_run,
            pcie_to_pci_bridge_supported: false,
            hints: Default::default(),
        }
    }

    fn flags_compatible(
        addr: &PciAddr,
        mut bus_flags: Connect,
        mut dev_flags: Connect,
        report: bool,
        from_config: bool,
    ) -> Result<bool, PciError> {
        let err = |msg: String| PciError::Address {
            xml: from_config,
            msg,
        };
        if dev_flags.has(Connect::INTEGRATED) {
            if addr.bus == 0 {
                bus_flags |= Connect::AUTOASSIGN;
            } else {
                if report {
                    return Err(err(format!(
                        "The device at PCI address {addr} needs to be an integrated device (bus=0)"
                    )));
                }
                return Ok(false);
            }
        }
        if from_config {
            if bus_flags.has(Connect::TYPES_ENDPOINT) {
                bus_flags |= Connect::TYPES_ENDPOINT;
            }
            if dev_flags.has(Connect::PCI_BRIDGE) {
                dev_flags |= Connect::PCI_DEVICE;
            }
        } else if dev_flags.has(Connect::AUTOASSIGN) && !bus_flags.has(Connect::AUTOASSIGN) {
            if report {
                return Err(err(format!(
                    "The device at PCI address {addr} was auto-assigned this address, but the PCI controller with index='{}' doesn't allow auto-assignment",
                    addr.bus
                )));
            }
            return Ok(false);
        }
        if dev_flags.has(Connect::HOTPLUGGABLE) && !bus_flags.has(Connect::HOTPLUGGABLE) {
            if report {
                return Err(err(format!(
                    "The device at PCI address {addr} requires hotplug capability, but the PCI controller with index='{}' doesn't support hotplug",
                    addr.bus
                )));
            }
            return Ok(false);
        }
        if (dev_flags & bus_flags & Connect::TYPES_MASK).is_empty() {
            if !report {
                return Ok(false);
            }
            let what = [
                (Connect::PCI_DEVICE, "standard PCI device"),
                (Connect::PCIE_DEVICE, "PCI Express device"),
                (Connect::PCIE_ROOT_PORT, "pcie-root-port"),
                (
                    Connect::PCIE_SWITCH_UPSTREAM_PORT,
                    "pcie-switch-upstream-port",
                ),
                (
                    Connect::PCIE_SWITCH_DOWNSTREAM_PORT,
                    "pcie-switch-downstream-port",
                ),
                (Connect::DMI_TO_PCI_BRIDGE, "dmi-to-pci-bridge"),
                (Connect::PCIE_TO_PCI_BRIDGE, "pcie-to-pci-bridge"),
                (Connect::PCI_EXPANDER_BUS, "pci-expander-bus"),
                (Connect::PCIE_EXPANDER_BUS, "pcie-expander-bus"),
                (Connect::PCI_BRIDGE, "pci-bridge"),
            ]
            .iter()
            .find(|(f, _)| dev_flags.has(*f))
            .map(|(_, s)| *s);
            return Err(match what {
                Some(what) => err(format!(
                    "The device at PCI address {addr} cannot be plugged into the PCI controller with index='{}'. It requires a controller that accepts a {what}.",
                    addr.bus
                )),
                None => err(format!(
                    "The device at PCI address {addr} has unrecognized connection type flags 0x{:02x}",
                    (dev_flags & Connect::TYPES_MASK).0
                )),
            });
        }
        Ok(true)
    }

    /// virDomainPCIAddressValidate.
    pub fn validate(
        &self,
        addr: &PciAddr,
        flags: Connect,
        from_config: bool,
    ) -> Result<(), PciError> {
        let err = |msg: String| PciError::Address {
            xml: from_config,
            msg,
        };
        if self.buses.is_empty() {
            return Err(err("No PCI buses available".into()));
        }
        if addr.domain != 0 {
            return Err(err(format!(
                "Invalid PCI address {addr}. Only PCI domain 0 is available"
            )));
        }
        if addr.bus as usize >= self.buses.len() {
            return Err(err(format!(
                "Invalid PCI address {addr}. Only PCI buses up to {} are available",
                self.buses.len() - 1
            )));
        }
        let bus = &self.buses[addr.bus as usize];
        Self::flags_compatible(addr, bus.flags, flags, true, from_config)?;
        if bus.min_slot != 0 && addr.slot < bus.min_slot {
            return Err(err(format!(
                "Invalid PCI address {addr}. slot must be >= {}",
                bus.min_slot
            )));
        }
        if addr.slot > bus.max_slot {
            return Err(err(format!(
                "Invalid PCI address {addr}. slot must be <= {}",
                bus.max_slot
            )));
        }
        if addr.function > FUNCTION_LAST {
            return Err(err(format!(
                "Invalid PCI address {addr}. function must be <= {FUNCTION_LAST}"
            )));
        }
        Ok(())
    }

    /// Add buses so that `addr.bus` exists, choosing controller models for
    /// the new buses from the kind of device that needs the slot
    /// (virDomainPCIAddressSetGrow). Returns the number of buses added.
    pub fn grow(&mut self, addr: &mut PciAddr, flags: Connect) -> Result<usize, PciError> {
        let mut add = addr.bus as i64 - self.buses.len() as i64 + 1;
        if add <= 0 {
            return Ok(0);
        }
        let mut need_dmi = false;
        let mut need_pcie_to_pci = false;
        let model = if flags.has(Connect::PCI_DEVICE) {
            need_dmi = true;
            need_pcie_to_pci = true;
            if self.buses.iter().any(|b| b.flags.has(Connect::PCI_BRIDGE)) {
                need_dmi = false;
                need_pcie_to_pci = false;
            }
            if self.pcie_to_pci_bridge_supported {
                need_dmi = false;
            } else {
                need_pcie_to_pci = false;
            }
            if (need_dmi || need_pcie_to_pci) && add == 1 {
                // One more controller than the device's bus number implies:
                // the bridge needs somewhere to plug in.
                add += 1;
                addr.bus += 1;
            }
            BusModel::PciBridge
        } else if flags.has(Connect::PCIE_DEVICE) || flags.has(Connect::PCIE_SWITCH_UPSTREAM_PORT) {
            BusModel::PcieRootPort
        } else {
            let existing = [
                (Connect::PCIE_ROOT_PORT, BusModel::PcieRootPort),
                (
                    Connect::PCIE_SWITCH_UPSTREAM_PORT,
                    BusModel::PcieSwitchUpstreamPort,
                ),
                (
                    Connect::PCIE_SWITCH_DOWNSTREAM_PORT,
                    BusModel::PcieSwitchDownstreamPort,
                ),
                (Connect::DMI_TO_PCI_BRIDGE, BusModel::DmiToPciBridge),
                (Connect::PCI_EXPANDER_BUS, BusModel::PciExpanderBus),
                (Connect::PCIE_EXPANDER_BUS, BusModel::PcieExpanderBus),
                (Connect::PCI_BRIDGE, BusModel::PciBridge),
            ]
            .iter()
            .find(|(f, _)| flags.has(*f))
            .map(|(_, m)| *m);
            return Err(PciError::CannotGrow(match existing {
                Some(m) => format!(
                    "a PCI slot is needed to connect a PCI controller model='{m}', but none is available, and it cannot be automatically added"
                ),
                None => format!("Cannot automatically add a new PCI bus for a device with connect flags {:02x}", flags.0),
            }));
        };
        // libvirt grows without a limit and fails later; PCI has 256 buses,
        // and addresses past them must never wrap into existing ones.
        if self.buses.len() + add as usize > MAX_BUSES {
            return Err(PciError::Address {
                xml: false,
                msg: format!(
                    "Invalid PCI address bus='{:#x}', must be <= {:#x}",
                    addr.bus,
                    MAX_BUSES - 1
                ),
            });
        }
        let mut i = self.buses.len();
        self.buses
            .resize(self.buses.len() + add as usize, Bus::default());
        if need_dmi {
            self.buses[i].set_model(BusModel::DmiToPciBridge, false);
            i += 1;
        }
        if need_pcie_to_pci {
            // The root port added for the bridge accepts only the bridge, so
            // a later "spare hotplug port" reservation gets its own port.
            self.buses[i].set_model(BusModel::PcieRootPort, true);
            self.buses[i].flags = Connect::PCIE_TO_PCI_BRIDGE;
            i += 1;
            self.buses[i].set_model(BusModel::PcieToPciBridge, true);
            i += 1;
        }
        for b in &mut self.buses[i..] {
            b.set_model(model, true);
        }
        Ok(add as usize)
    }

    fn reserve_internal(
        &mut self,
        addr: &mut PciAddr,
        flags: Connect,
        from_config: bool,
    ) -> Result<(), PciError> {
        if self.dry_run {
            self.grow(addr, flags)?;
        }
        self.validate(addr, flags, from_config)?;
        let bus = &mut self.buses[addr.bus as usize];
        let slot = &mut bus.slots[addr.slot as usize];
        if slot.functions & (1 << addr.function) != 0 {
            return Err(PciError::Address {
                xml: from_config,
                msg: format!("Attempted double use of PCI Address {addr}"),
            });
        }
        if slot.functions == 0 && flags.has(Connect::AGGREGATE_SLOT) {
            slot.aggregate = true;
        }
        slot.functions |= 1 << addr.function;
        Ok(())
    }

    /// Reserve an address given in the configuration.
    pub fn reserve(&mut self, addr: &PciAddr, flags: Connect) -> Result<(), PciError> {
        let mut a = *addr;
        self.reserve_internal(&mut a, flags, true)
    }

    fn find_on_bus(bus: &Bus, a: &mut PciAddr, function: Option<u32>, flags: Connect) -> bool {
        if !Self::flags_compatible(a, bus.flags, flags, false, false).unwrap_or(false) {
            return false;
        }
        while a.slot <= bus.max_slot {
            let s = bus.slots[a.slot as usize];
            if s.functions == 0 {
                return true;
            }
            if flags.has(Connect::AGGREGATE_SLOT) && s.aggregate {
                if s.functions & (1 << a.function) == 0 {
                    return true;
                }
                if function.is_none() {
                    while a.function <= FUNCTION_LAST {
                        if s.functions & (1 << a.function) == 0 {
                            return true;
                        }
                        a.function += 1;
                    }
                    a.function = 0;
                }
            }
            a.slot += 1;
        }
        false
    }

    /// virDomainPCIAddressGetNextAddr (isolation groups are a pSeries
    /// matter and are not modelled).
    fn next_addr(&mut self, flags: Connect, function: Option<u32>) -> Result<PciAddr, PciError> {
        if self.buses.is_empty() {
            return Err(PciError::NoBuses);
        }
        let mut a = PciAddr {
            function: function.unwrap_or(0),
            ..Default::default()
        };
        let key = (flags.0, function);
        let first = self.hints.get(&key).copied().unwrap_or(0);
        for b in first..self.buses.len() {
            a.bus = b as u32;
            a.slot = self.buses[b].min_slot;
            if Self::find_on_bus(&self.buses[b], &mut a, function, flags) {
                self.hints.insert(key, b);
                return Ok(a);
            }
        }
        self.hints.insert(key, self.buses.len());
        if self.dry_run {
            a.bus = self.buses.len() as u32;
            self.grow(&mut a, flags)?;
            a.slot = self.buses[a.bus as usize].min_slot;
            return Ok(a);
        }
        Err(PciError::NoSlots)
    }

    /// Find and reserve the next free address for a device with `flags`
    /// (virDomainPCIAddressReserveNextAddr with function -1 or a given one).
    pub fn reserve_next(
        &mut self,
        flags: Connect,
        function: Option<u32>,
    ) -> Result<PciAddr, PciError> {
        let mut a = self.next_addr(flags, function)?;
        self.reserve_internal(&mut a, flags, false)?;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc() -> AddressSet {
        let mut s = AddressSet::new(1, false);
        s.buses[0].set_model(BusModel::PciRoot, true);
        s
    }

    const PCI: Connect = Connect(Connect::PCI_DEVICE.0 | Connect::AUTOASSIGN.0);
    const PCIE: Connect = Connect(Connect::PCIE_DEVICE.0 | Connect::AUTOASSIGN.0);

    #[test]
    fn pc_first_free_slot_after_piix3() {
        let mut s = pc();
        s.reserve(&PciAddr::new(0, 1, 0), PCI).unwrap();
        assert_eq!(s.reserve_next(PCI, None).unwrap(), PciAddr::new(0, 2, 0));
        assert_eq!(s.reserve_next(PCI, None).unwrap(), PciAddr::new(0, 3, 0));
    }

    #[test]
    fn double_use_is_an_xml_error() {
        let mut s = pc();
        s.reserve(&PciAddr::new(0, 3, 0), PCI).unwrap();
        let e = s.reserve(&PciAddr::new(0, 3, 0), PCI).unwrap_err();
        assert_eq!(
            e.to_string(),
            "XML error: Attempted double use of PCI Address 0000:00:03.0"
        );
    }

    #[test]
    fn root_ports_aggregate_into_one_slot() {
        let mut s = AddressSet::new(1, true);
        s.buses[0].set_model(BusModel::PcieRoot, false);
        let rp = BusModel::PcieRootPort.connect_type();
        for f in 0..8 {
            assert_eq!(s.reserve_next(rp, None).unwrap(), PciAddr::new(0, 1, f));
        }
        assert_eq!(s.reserve_next(rp, None).unwrap(), PciAddr::new(0, 2, 0));
    }

    #[test]
    fn pcie_device_on_q35_grows_a_root_port() {
        let mut s = AddressSet::new(1, true);
        s.buses[0].set_model(BusModel::PcieRoot, false);
        let a = s.reserve_next(PCIE, None).unwrap();
        assert_eq!(a, PciAddr::new(1, 0, 0));
        assert_eq!(s.buses[1].model, Some(BusModel::PcieRootPort));
    }

    #[test]
    fn pci_device_on_q35_grows_root_port_and_bridge() {
        let mut s = AddressSet::new(1, true);
        s.pcie_to_pci_bridge_supported = true;
        s.buses[0].set_model(BusModel::PcieRoot, false);
        let a = s.reserve_next(PCI, None).unwrap();
        assert_eq!(a, PciAddr::new(2, 1, 0));
        assert_eq!(s.buses[1].model, Some(BusModel::PcieRootPort));
        assert_eq!(s.buses[2].model, Some(BusModel::PcieToPciBridge));
    }

    #[test]
    fn no_slot_without_dry_run() {
        let mut s = AddressSet::new(1, false);
        s.buses[0].set_model(BusModel::PcieRoot, false);
        assert_eq!(s.reserve_next(PCIE, None).unwrap_err(), PciError::NoSlots);
    }

    #[test]
    fn incompatible_bus_reports_libvirt_text() {
        let mut s = AddressSet::new(2, false);
        s.buses[0].set_model(BusModel::PcieRoot, false);
        s.buses[1].set_model(BusModel::PcieSwitchUpstreamPort, false);
        let e = s.reserve(&PciAddr::new(1, 0, 0), PCIE).unwrap_err();
        assert!(
            e.to_string()
                .contains("It requires a controller that accepts a PCI Express device."),
            "{e}"
        );
    }
}
