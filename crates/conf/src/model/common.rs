//! Pieces shared by several device kinds: addresses, device info (alias,
//! boot order, rom, address), MAC addresses.

use std::fmt;
use std::str::FromStr;

use crate::diag::Pos;
use crate::model::raw::{RawAttr, RawElement};

/// A PCI address. Used both as a guest address (`<address type='pci' .../>`)
/// and as a host address (`<source><address .../></source>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
    /// `multifunction='on|off'` (guest addresses only).
    pub multifunction: Option<bool>,
    pub pos: Pos,
}

impl PciAddress {
    pub fn new(domain: u32, bus: u8, slot: u8, function: u8) -> Self {
        PciAddress {
            domain,
            bus,
            slot,
            function,
            multifunction: None,
            pos: Pos::default(),
        }
    }

    /// libvirt's "empty" PCI address (`virPCIDeviceAddressIsEmpty`): domain,
    /// bus and slot all zero, meaning "assign one for me" on a guest address.
    pub fn is_empty(&self) -> bool {
        self.domain == 0 && self.bus == 0 && self.slot == 0
    }

    /// Same device location, ignoring `multifunction` and position.
    pub fn same_location(&self, other: &PciAddress) -> bool {
        (self.domain, self.bus, self.slot, self.function)
            == (other.domain, other.bus, other.slot, other.function)
    }
}

impl fmt::Display for PciAddress {
    /// `DDDD:BB:SS.F`, the sysfs / QEMU `host=` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

/// `<address type='drive' controller bus target unit/>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DriveAddress {
    pub controller: u32,
    pub bus: u32,
    pub target: u32,
    pub unit: u32,
    pub pos: Pos,
}

/// `<address type='ccw' cssid ssid devno/>` (s390).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CcwAddress {
    pub cssid: u32,
    pub ssid: u32,
    pub devno: u32,
    pub pos: Pos,
}

/// `<address type='usb' bus port/>`; `port` is a dotted path like `1.2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UsbAddress {
    pub bus: u32,
    pub port: Option<String>,
    pub pos: Pos,
}

/// `<address type='virtio-serial' controller bus port/>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VirtioSerialAddress {
    pub controller: u32,
    pub bus: u32,
    pub port: u32,
    pub pos: Pos,
}

/// Any other address type, attributes kept verbatim (e.g. `isa`, `spapr-vio`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OtherAddress {
    pub type_: String,
    pub attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// A device's guest address (`<address type=...>` in device info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Pci(PciAddress),
    Drive(DriveAddress),
    Ccw(CcwAddress),
    Usb(UsbAddress),
    VirtioSerial(VirtioSerialAddress),
    /// `<address type='unassigned'/>`: hostdev kept out of the guest.
    Unassigned {
        pos: Pos,
    },
    Other(OtherAddress),
}

impl Address {
    pub fn type_str(&self) -> &str {
        match self {
            Address::Pci(_) => "pci",
            Address::Drive(_) => "drive",
            Address::Ccw(_) => "ccw",
            Address::Usb(_) => "usb",
            Address::VirtioSerial(_) => "virtio-serial",
            Address::Unassigned { .. } => "unassigned",
            Address::Other(o) => &o.type_,
        }
    }

    pub fn pos(&self) -> Pos {
        match self {
            Address::Pci(a) => a.pos,
            Address::Drive(a) => a.pos,
            Address::Ccw(a) => a.pos,
            Address::Usb(a) => a.pos,
            Address::VirtioSerial(a) => a.pos,
            Address::Unassigned { pos } => *pos,
            Address::Other(a) => a.pos,
        }
    }

    pub fn as_pci(&self) -> Option<&PciAddress> {
        match self {
            Address::Pci(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_pci_mut(&mut self) -> Option<&mut PciAddress> {
        match self {
            Address::Pci(p) => Some(p),
            _ => None,
        }
    }
}

/// `<alias name='...'/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Alias {
    pub name: String,
    pub pos: Pos,
}

impl Alias {
    pub fn new(name: impl Into<String>) -> Self {
        Alias {
            name: name.into(),
            pos: Pos::default(),
        }
    }
}

/// `<boot order='N' [loadparm='...']/>` on a device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootOrder {
    pub order: u32,
    pub loadparm: Option<String>,
    pub pos: Pos,
}

/// `<rom [enabled='yes|no'] [bar='on|off'] [file='...']/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rom {
    pub enabled: Option<bool>,
    pub bar: Option<bool>,
    pub file: Option<String>,
    pub pos: Pos,
}

/// Device info common to all devices (libvirt `virDomainDeviceInfo`).
/// Formatted as `<boot/>`, `<alias/>`, `<rom/>`, `<acpi/>`, `<address/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    /// The alias that will be used. On an inactive parse only user aliases
    /// (`ua-` + `[A-Za-z0-9_-]`) are kept, like libvirt; QEMU-assigned
    /// aliases (`net0`, `hostdev0`) are set here by later stages.
    pub alias: Option<Alias>,
    /// An `<alias>` that was written but dropped because it is not a valid
    /// user alias (libvirt drops it silently; teamvirt warns). Never formatted.
    pub dropped_alias: Option<Alias>,
    pub boot: Option<BootOrder>,
    pub rom: Option<Rom>,
    /// `<acpi index='N'/>`.
    pub acpi_index: Option<u32>,
    pub address: Option<Address>,
}

impl DeviceInfo {
    pub fn alias_name(&self) -> Option<&str> {
        crate::work::alias_read();
        self.alias.as_ref().map(|a| a.name.as_str())
    }

    pub fn pci_address(&self) -> Option<&PciAddress> {
        self.address.as_ref().and_then(Address::as_pci)
    }
}

/// A MAC address (formatted lowercase, like libvirt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = ();

    /// libvirt's `virMacAddrParse`: six `:`-separated hex bytes of 1-2 digits.
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let p = parts.next().ok_or(())?;
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(MacAddr(out))
    }
}

impl MacAddr {
    /// Multicast bit set (libvirt refuses those for NICs).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

/// `<mac address='..' [type='..'] [check='..']/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mac {
    pub address: MacAddr,
    pub type_: Option<String>,
    pub check: Option<String>,
    pub pos: Pos,
}

impl Mac {
    pub fn new(address: MacAddr) -> Self {
        Mac {
            address,
            ..Default::default()
        }
    }
}

/// A UUID as written (validated, formatted lowercase with dashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Uuid {
    type Err = ();

    /// libvirt's `virUUIDParse`: 32 hex digits, `-` and spaces allowed
    /// between byte pairs, leading/trailing spaces ignored.
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut out = [0u8; 16];
        let mut digits = s.trim().bytes().filter(|&c| c != b'-' && c != b' ');
        for byte in out.iter_mut() {
            let hi = digits.next().ok_or(())?;
            let lo = digits.next().ok_or(())?;
            let v = |c: u8| (c as char).to_digit(16).ok_or(());
            *byte = (v(hi)? * 16 + v(lo)?) as u8;
        }
        if digits.next().is_some() {
            return Err(());
        }
        Ok(Uuid(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_roundtrip() {
        let m: MacAddr = "52:54:00:e5:48:5A".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:e5:48:5a");
        assert!("52:54:00:e5:48".parse::<MacAddr>().is_err());
        assert!("52:54:00:e5:48:5a:1".parse::<MacAddr>().is_err());
        assert!("52:54:00:e5:48:zz".parse::<MacAddr>().is_err());
        assert!("1:2:3:4:5:6".parse::<MacAddr>().is_ok());
    }

    #[test]
    fn uuid_roundtrip() {
        let u: Uuid = "C7A5FDBD-edaf-9455-926a-d65c16db1809".parse().unwrap();
        assert_eq!(u.to_string(), "c7a5fdbd-edaf-9455-926a-d65c16db1809");
        assert!("c7a5fdbd".parse::<Uuid>().is_err());
    }

    #[test]
    fn pci_display() {
        assert_eq!(PciAddress::new(0, 3, 7, 1).to_string(), "0000:03:07.1");
    }
}
