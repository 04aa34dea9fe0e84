//! What the per-device builders share: the builder's inputs, its error,
//! the context each device is built in, and the lookups more than one
//! device kind needs (PCI address, boot index). It sits below `build` and
//! the device modules so that they need not import each other.

use std::collections::HashMap;
use std::path::PathBuf;

use teamvirt_conf::model::{Address, DomainDef, PciAddress};
use thiserror::Error;

use super::aliases::Aliases;
use super::output::CommandLine;
use super::props::Props;
use crate::caps::QemuCaps;
use crate::resolve::ActualNet;

/// How QEMU's monitor is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Monitor {
    /// An already-open listening socket passed as this fd (libvirt's way;
    /// its tests use 1729).
    Fd(i32),
    /// A unix socket QEMU creates at this path.
    Path(PathBuf),
}

/// File descriptors the caller opened for a tap-backed interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetFds {
    pub tap: Vec<String>,
    pub vhost: Vec<String>,
}

/// Inputs of the builder besides the domain and the capabilities.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Use the fixed host values of libvirt's test suite (monitor fd 1729,
    /// tap fds, `/var/lib/libvirt/qemu/domain--1-NAME`, test environment).
    pub test_env: bool,
    /// Per-domain private directory (HOME, master key). Default in test
    /// env: `/var/lib/libvirt/qemu/domain--1-NAME`.
    pub domain_dir: Option<PathBuf>,
    pub monitor: Monitor,
    /// Tap/vhost fds per interface index (non-test runs).
    pub net_fds: HashMap<usize, NetFds>,
    /// Lab mode: replace each vfio-pci failover primary by an emulated
    /// vmxnet3 (see [`Substitution`]).
    pub emulate_vf: bool,
    /// Lab mode on a bridge: tap fds for the emulated primary of the
    /// interface with this index (else its backend is isolated user mode).
    pub lab_fds: HashMap<usize, NetFds>,
    /// Environment for non-test runs; `None` takes PATH/USER from the
    /// current process.
    pub env: Option<Vec<(String, String)>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            test_env: false,
            domain_dir: None,
            monitor: Monitor::Fd(1729),
            net_fds: HashMap::new(),
            emulate_vf: false,
            lab_fds: HashMap::new(),
            env: None,
        }
    }
}

impl BuildOptions {
    /// libvirt's test-suite values.
    pub fn test_env() -> Self {
        BuildOptions {
            test_env: true,
            ..Default::default()
        }
    }
}

/// One vfio-pci primary replaced by an emulated NIC (lab mode).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Substitution {
    /// QEMU id kept from the primary (`hostdev0`).
    pub id: String,
    /// The VF it stands for (`0000:03:07.1`).
    pub host: Option<String>,
    /// The emulated model (`vmxnet3`).
    pub model: String,
    /// MAC taken from the standby.
    pub mac: String,
    /// `failover_pair_id` (the standby's id).
    pub pair: String,
    /// The user-mode backend added for it.
    pub netdev: String,
}

/// What the builder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub cmd: CommandLine,
    pub substitutions: Vec<Substitution>,
    pub aliases: Aliases,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// A device teamvirt cannot translate, named with its element and line.
    #[error("unsupported configuration: {what} is not supported by teamvirt's command line builder{}", at.map(|(l, c)| format!(" (line {l}, column {c})")).unwrap_or_default())]
    Unsupported {
        what: String,
        at: Option<(u32, u32)>,
    },
    /// `at`: line and column of the `<interface>`.
    #[error("internal error: interface {alias} needs host network setup (tap file descriptors) that only `teamvirt start` can provide")]
    NeedsHostSetup {
        alias: String,
        at: Option<(u32, u32)>,
    },
    #[error("internal error: no PCI address assigned to {0}; apply define-time defaults first")]
    NoAddress(String),
    #[error("internal error: cannot find standby '{pair}' for primary {id} in lab mode")]
    NoStandby { pair: String, id: String },
}

/// Context shared by the per-device builders.
pub struct Ctx<'a> {
    pub def: &'a DomainDef,
    pub caps: &'a QemuCaps,
    pub opts: &'a BuildOptions,
    pub aliases: &'a Aliases,
    pub actual: &'a [ActualNet],
}

impl Ctx<'_> {
    pub fn json_device(&self) -> bool {
        self.caps.device_json()
    }

    /// `-device` with the syntax the capabilities call for.
    pub fn device(&self, cmd: &mut CommandLine, p: &Props) {
        let s = if self.json_device() {
            p.to_json()
        } else {
            p.to_legacy(Some("driver"))
        };
        cmd.opt("-device", s);
    }

    pub fn netdev(&self, cmd: &mut CommandLine, p: &Props) {
        let s = if self.caps.netdev_json() {
            p.to_json()
        } else {
            p.to_legacy(Some("type"))
        };
        cmd.opt("-netdev", s);
    }

    pub fn object(&self, cmd: &mut CommandLine, p: &Props) {
        let s = if self.caps.object_json() {
            p.to_json()
        } else {
            p.to_legacy(Some("qom-type"))
        };
        cmd.opt("-object", s);
    }

    /// Alias of the PCI controller with `index` (the QEMU bus name).
    pub fn pci_bus_name(&self, index: u32) -> String {
        let c = self
            .def
            .devices
            .controllers
            .iter()
            .position(|c| c.type_ == "pci" && c.index == Some(index));
        match c {
            Some(i) => self.aliases.controllers[i].clone(),
            None => format!("pci.{index}"),
        }
    }

    /// `bus`, `multifunction`, `addr` of a PCI address (qemuBuildDeviceAddressProps).
    pub fn pci_addr_props(&self, p: &mut Props, a: &PciAddress) {
        p.str("bus", self.pci_bus_name(u32::from(a.bus)));
        if let Some(m) = a.multifunction {
            p.bool("multifunction", m);
        }
        if a.function == 0 {
            p.str("addr", format!("0x{:x}", a.slot));
        } else {
            p.str("addr", format!("0x{:x}.0x{:x}", a.slot, a.function));
        }
    }

    /// Where a virtio channel without a `<source path>` gets its socket:
    /// libvirt's channel target directory for the domain in its test
    /// suite, else the domain's private (run) directory.
    pub fn channel_dir(&self) -> PathBuf {
        if self.opts.test_env && self.opts.domain_dir.is_none() {
            return PathBuf::from(format!(
                "/var/lib/libvirt/qemu/channel/target/domain--1-{}",
                self.def.name
            ));
        }
        self.domain_dir()
    }

    pub fn domain_dir(&self) -> PathBuf {
        if let Some(d) = &self.opts.domain_dir {
            return d.clone();
        }
        PathBuf::from(format!("/var/lib/libvirt/qemu/domain--1-{}", self.def.name))
    }
}

/// Address of a device, required for PCI devices.
pub fn need_pci<'a>(addr: &'a Option<Address>, what: &str) -> Result<&'a PciAddress, CommandError> {
    match addr {
        Some(Address::Pci(p)) => Ok(p),
        _ => Err(CommandError::NoAddress(what.to_string())),
    }
}

/// bootindex of every disk/interface from `<os><boot dev>` (libvirt's
/// qemuProcessPrepareDeviceBootorder) or explicit `<boot order>`.
pub fn boot_index_disk(def: &DomainDef, i: usize) -> Option<u32> {
    let disk = &def.devices.disks[i];
    if let Some(b) = &disk.info.boot {
        return Some(b.order);
    }
    let want = match disk.device.as_deref().unwrap_or("disk") {
        "cdrom" => "cdrom",
        "floppy" => "fd",
        _ => "hd",
    };
    let pos = def.os.boot.iter().position(|b| b.dev == want)? as u32 + 1;
    let first = def.devices.disks.iter().position(|d| {
        let k = match d.device.as_deref().unwrap_or("disk") {
            "cdrom" => "cdrom",
            "floppy" => "fd",
            _ => "hd",
        };
        k == want
    })?;
    (first == i).then_some(pos)
}

pub fn boot_index_net(def: &DomainDef, i: usize) -> Option<u32> {
    if let Some(b) = &def.devices.interfaces[i].info.boot {
        return Some(b.order);
    }
    let pos = def.os.boot.iter().position(|b| b.dev == "network")? as u32 + 1;
    (i == 0).then_some(pos)
}
