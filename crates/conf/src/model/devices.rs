//! `<devices>` and the device kinds other than `<interface>`.

use crate::diag::Pos;
use crate::model::common::{DeviceInfo, PciAddress};
use crate::model::interface::{Interface, Teaming};
use crate::model::raw::{RawAttr, RawElement};

/// `<devices>`. Device lists keep document order within each kind; the
/// formatter emits kinds in libvirt's order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Devices {
    pub emulator: Option<Emulator>,
    pub disks: Vec<Disk>,
    pub controllers: Vec<Controller>,
    pub interfaces: Vec<Interface>,
    pub serials: Vec<Chardev>,
    pub consoles: Vec<Chardev>,
    /// `<channel>`: guest-host channels (the QEMU guest agent's
    /// `org.qemu.guest_agent.0` virtio port).
    pub channels: Vec<Chardev>,
    pub inputs: Vec<Input>,
    pub graphics: Vec<Graphics>,
    pub audios: Vec<Audio>,
    pub videos: Vec<Video>,
    pub hostdevs: Vec<Hostdev>,
    pub watchdogs: Vec<Watchdog>,
    pub memballoon: Option<Memballoon>,
    pub panics: Vec<Panic>,
    /// Devices teamvirt does not model (`<rng>`, `<tpm>`,
    /// `<filesystem>`, ...), kept verbatim and emitted at libvirt's
    /// position for their element name (unknown names last).
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Emulator {
    pub path: String,
    pub pos: Pos,
}

/// `<disk type device>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disk {
    /// `file`, `block`, `network`, `volume`, `dir`, `nvme`, `vhostuser`, `vhostvdpa`.
    pub type_: String,
    /// `disk` (default), `cdrom`, `floppy`, `lun`.
    pub device: Option<String>,
    pub driver: Option<DiskDriver>,
    pub source: Option<DiskSource>,
    pub target: DiskTarget,
    pub readonly: bool,
    pub shareable: bool,
    pub transient: bool,
    pub serial: Option<String>,
    pub info: DeviceInfo,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<driver name type [cache] [io] ...>` of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskDriver {
    pub name: Option<String>,
    pub type_: Option<String>,
    pub cache: Option<String>,
    pub io: Option<String>,
    pub discard: Option<String>,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<source file=.../>` or `<source dev=.../>` (other types: attributes kept).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskSource {
    pub file: Option<String>,
    pub dev: Option<String>,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<target dev bus/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskTarget {
    pub dev: String,
    /// `ide`, `sata`, `virtio`, `scsi`, `usb`, `fdc`, ...
    pub bus: Option<String>,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// `<controller type index model>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Controller {
    /// `pci`, `usb`, `ide`, `sata`, `scsi`, `virtio-serial`, `fdc`, ...
    pub type_: String,
    /// `None` when not given (libvirt assigns one).
    pub index: Option<u32>,
    /// `pci-root`, `pcie-root`, `pcie-root-port`, `pci-bridge`,
    /// `pcie-switch-upstream-port`, ..., `piix3-uhci`, `qemu-xhci`, ...
    pub model: Option<String>,
    /// `ports='N'` (usb, virtio-serial).
    pub ports: Option<u32>,
    /// `vectors='N'` (virtio-serial).
    pub vectors: Option<u32>,
    /// `<model name='...'/>` (pci controllers: the QEMU device).
    pub model_name: Option<ControllerModelName>,
    /// `<target .../>` (pci controllers).
    pub target: Option<ControllerTarget>,
    pub info: DeviceInfo,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

impl Controller {
    pub fn new(type_: impl Into<String>, index: u32, model: Option<&str>) -> Self {
        Controller {
            type_: type_.into(),
            index: Some(index),
            model: model.map(str::to_string),
            ..Default::default()
        }
    }

    pub fn is_pci(&self) -> bool {
        self.type_ == "pci"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControllerModelName {
    pub name: String,
    pub pos: Pos,
}

/// `<target chassisNr chassis port busNr index hotplug memReserve><node/></target>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControllerTarget {
    pub chassis_nr: Option<u32>,
    pub chassis: Option<u32>,
    pub port: Option<u32>,
    pub bus_nr: Option<u32>,
    pub index: Option<u32>,
    /// `hotplug='on|off'`.
    pub hotplug: Option<bool>,
    pub mem_reserve: Option<u64>,
    pub node: Option<u32>,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// `<hostdev mode type managed>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hostdev {
    /// `subsystem` or `capabilities`.
    pub mode: String,
    /// `pci`, `usb`, `scsi`, `scsi_host`, `mdev` (subsystem) or
    /// `storage`, `misc`, `net` (capabilities).
    pub type_: String,
    /// `managed='yes|no'`; formatted always for subsystem hostdevs (default no).
    pub managed: Option<bool>,
    /// `display='on|off'` (pci/mdev).
    pub display: Option<bool>,
    /// `ramfb='on|off'` (pci/mdev).
    pub ramfb: Option<bool>,
    /// `<driver name='vfio'/>`.
    pub driver: Option<HostdevDriver>,
    pub source: HostdevSource,
    pub teaming: Option<Teaming>,
    pub readonly: bool,
    pub shareable: bool,
    pub info: DeviceInfo,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

impl Hostdev {
    /// A managed PCI subsystem hostdev for the given host device.
    pub fn pci(host: PciAddress) -> Self {
        Hostdev {
            mode: "subsystem".into(),
            type_: "pci".into(),
            managed: Some(true),
            source: HostdevSource {
                pci: Some(host),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    pub fn is_pci_subsystem(&self) -> bool {
        self.mode == "subsystem" && self.type_ == "pci"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostdevDriver {
    pub name: Option<String>,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// `<source>` of a hostdev.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostdevSource {
    /// type='pci': `<address domain bus slot function/>`.
    pub pci: Option<PciAddress>,
    /// type='usb'.
    pub usb: Option<UsbHostSource>,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<vendor id/><product id/><address bus device/>` of a USB hostdev.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsbHostSource {
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub bus: Option<u32>,
    pub device: Option<u32>,
    pub pos: Pos,
}

/// `<serial>` / `<console>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chardev {
    /// `pty`, `file`, `stdio`, `unix`, `tcp`, `null`, ...
    pub type_: String,
    /// `<source .../>` kept verbatim (path, mode, host, service, ...).
    pub source: Option<RawElement>,
    pub target: Option<ChardevTarget>,
    pub info: DeviceInfo,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<target type port [name]><model name/></target>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChardevTarget {
    pub type_: Option<String>,
    pub port: Option<u32>,
    /// A virtio channel's port name (`org.qemu.guest_agent.0`).
    pub name: Option<String>,
    pub model_name: Option<String>,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// The QEMU guest agent's virtio port name.
pub const GUEST_AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";

impl Chardev {
    /// `<source path>` (file and unix backends).
    pub fn source_path(&self) -> Option<&str> {
        self.source.as_ref().and_then(|s| s.attr("path"))
    }

    /// A `<channel>`'s virtio port name, if it is a virtio channel.
    pub fn virtio_name(&self) -> Option<&str> {
        let t = self.target.as_ref()?;
        (t.type_.as_deref() == Some("virtio"))
            .then_some(t.name.as_deref())
            .flatten()
    }

    /// Is this the QEMU guest agent's channel (a unix socket on the
    /// `org.qemu.guest_agent.0` virtio port)?
    pub fn is_guest_agent(&self) -> bool {
        self.type_ == "unix" && self.virtio_name() == Some(GUEST_AGENT_CHANNEL)
    }
}

/// `<input type bus/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Input {
    pub type_: String,
    pub bus: Option<String>,
    pub info: DeviceInfo,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<graphics>`: attributes and children kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Graphics {
    pub type_: String,
    pub attrs: Vec<RawAttr>,
    pub children: Vec<RawElement>,
    pub pos: Pos,
}

/// `<audio id type/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audio {
    pub id: Option<u32>,
    pub type_: String,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<video><model type .../></video>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Video {
    pub model_type: Option<String>,
    /// Other `<model>` attributes (vram, heads, primary, ...), verbatim.
    pub model_attrs: Vec<RawAttr>,
    pub model_pos: Pos,
    pub info: DeviceInfo,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<watchdog model action/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Watchdog {
    pub model: String,
    pub action: Option<String>,
    pub info: DeviceInfo,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// `<memballoon model>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Memballoon {
    /// `virtio`, `none`, `virtio-transitional`, ...
    pub model: String,
    pub autodeflate: Option<bool>,
    pub free_page_reporting: Option<bool>,
    pub info: DeviceInfo,
    pub extra_attrs: Vec<RawAttr>,
    /// `<stats>`, `<driver>`.
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<panic [model]/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Panic {
    pub model: Option<String>,
    pub info: DeviceInfo,
    pub extra_attrs: Vec<RawAttr>,
    pub pos: Pos,
}

/// libvirt's device formatting order (`virDomainDefFormatInternal`), used to
/// place kept-verbatim devices.
pub const DEVICE_ORDER: &[&str] = &[
    "emulator",
    "disk",
    "controller",
    "lease",
    "filesystem",
    "interface",
    "smartcard",
    "serial",
    "parallel",
    "console",
    "channel",
    "input",
    "tpm",
    "graphics",
    "sound",
    "audio",
    "video",
    "hostdev",
    "redirdev",
    "redirfilter",
    "hub",
    "watchdog",
    "memballoon",
    "rng",
    "nvram",
    "panic",
    "shmem",
    "memory",
    "iommu",
    "vsock",
    "crypto",
    "pstore",
];
