//! The command line, in libvirt's order (`qemuBuildCommandLine`).

use std::collections::HashMap;
use std::path::PathBuf;

use teamvirt_conf::model::{Address, DomainDef, PciAddress};
use thiserror::Error;

use super::aliases::{self, Aliases};
use super::devices;
use super::net;
use super::output::CommandLine;
use super::props::{escape_comma, Props};
use crate::caps::QemuCaps;
use crate::defaults::accel_of;
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

fn env(cmd: &mut CommandLine, ctx: &Ctx) {
    let dir = ctx.domain_dir().display().to_string();
    cmd.env("LC_ALL", "C");
    // libvirt's order: PATH, HOME, USER, LOGNAME, then the rest.
    let given = |k: &str| {
        ctx.opts
            .env
            .as_ref()
            .and_then(|e| e.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    };
    if ctx.opts.test_env {
        cmd.env("PATH", "/bin");
    } else if let Some(p) = given("PATH") {
        cmd.env("PATH", p);
    } else {
        cmd.env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        );
    }
    cmd.env("HOME", dir.clone());
    if ctx.opts.test_env {
        cmd.env("USER", "test");
        cmd.env("LOGNAME", "test");
    } else if let Some(e) = &ctx.opts.env {
        for (k, v) in e.iter().filter(|(k, _)| k != "PATH" && k != "HOME") {
            cmd.env(k, v.clone());
        }
    } else {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        cmd.env("USER", user.clone());
        cmd.env("LOGNAME", std::env::var("LOGNAME").unwrap_or(user));
    }
    cmd.env("XDG_DATA_HOME", format!("{dir}/.local/share"));
    cmd.env("XDG_CACHE_HOME", format!("{dir}/.cache"));
    cmd.env("XDG_CONFIG_HOME", format!("{dir}/.config"));
    // A QEMU unpacked into a private prefix (e.g. bookworm-backports'
    // 10.0 beside the system's 7.2) must load its own modules, not the
    // system QEMU's from the compiled-in directory (QEMU aborts on
    // modules of another build): QEMU's own variable, passed on as set.
    if !ctx.opts.test_env {
        if let Some(m) = std::env::var_os("QEMU_MODULE_DIR") {
            cmd.env("QEMU_MODULE_DIR", m.to_string_lossy().into_owned());
        }
    }
    if ctx.caps.version == 0 {
        // QEMU predating -audiodev picked its audio driver from the environment.
        cmd.env("QEMU_AUDIO_DRV", "none");
    }
}

fn machine(cmd: &mut CommandLine, ctx: &Ctx) {
    let def = ctx.def;
    let name = def.machine().unwrap_or("pc");
    let accel = accel_of(def);
    let m = ctx
        .caps
        .machine_for(name, accel)
        .or_else(|| ctx.caps.machine(name));
    let mut s = escape_comma(name);
    s.push_str(",usb=off,dump-guest-core=off");
    if let Some(ram) = m.and_then(|m| m.default_ram_id.as_deref()) {
        s.push_str(&format!(",memory-backend={ram}"));
    }
    let acpi_on = def.features.as_ref().is_some_and(|f| f.acpi);
    if m.and_then(|m| m.acpi) == Some(true) && !acpi_on {
        s.push_str(",acpi=off");
    }
    cmd.opt("-machine", s);
    cmd.opt("-accel", accel.as_str());
}

fn memory_and_cpu(cmd: &mut CommandLine, ctx: &Ctx) {
    let def = ctx.def;
    if let Some(cpu) = &def.cpu {
        if let Some(model) = &cpu.model {
            cmd.opt("-cpu", escape_comma(&model.name));
        } else if matches!(
            cpu.mode.as_deref(),
            Some("host-passthrough") | Some("host-model")
        ) {
            cmd.opt("-cpu", "host");
        }
    }
    // QEMU wants whole MiB on x86.
    let kib = def.memory.kib.div_ceil(1024) * 1024;
    let m = ctx
        .caps
        .machine_for(def.machine().unwrap_or("pc"), accel_of(def))
        .or_else(|| ctx.caps.machine(def.machine().unwrap_or("pc")));
    if let Some(ram) = m.and_then(|m| m.default_ram_id.as_deref()) {
        cmd.opt("-m", format!("size={kib}k"));
        let mut p = Props::new();
        p.str("qom-type", "memory-backend-ram")
            .str("id", ram)
            .uint("size", kib * 1024);
        ctx.object(cmd, &p);
    } else {
        cmd.opt("-m", format!("{}", kib / 1024));
    }
    if ctx.caps.version == 0 {
        cmd.opt("-realtime", "mlock=off");
    } else {
        cmd.opt("-overcommit", "mem-lock=off");
    }
    let vcpus = def.vcpu.count.max(1);
    let topo = def
        .cpu
        .as_ref()
        .and_then(|c| c.extra.iter().find(|e| e.name == "topology"));
    let mut smp = format!("{vcpus}");
    match topo {
        Some(t) => {
            let get = |n: &str| t.attr(n).and_then(|v| v.parse::<u32>().ok()).unwrap_or(1);
            smp.push_str(&format!(",sockets={}", get("sockets")));
            if ctx.caps.has("smp-dies") {
                smp.push_str(&format!(",dies={}", get("dies")));
            }
            if ctx.caps.has("smp-clusters") && t.attr("clusters").is_some() {
                smp.push_str(&format!(",clusters={}", get("clusters")));
            }
            smp.push_str(&format!(
                ",cores={},threads={}",
                get("cores"),
                get("threads")
            ));
        }
        None => smp.push_str(&format!(",sockets={vcpus},cores=1,threads=1")),
    }
    cmd.opt("-smp", smp);
}

/// Build the command line for a domain that already went through
/// [`crate::defaults::define`], with interfaces resolved by
/// [`crate::resolve::resolve_interfaces`].
pub fn build(
    def: &DomainDef,
    caps: &QemuCaps,
    actual: &[ActualNet],
    opts: &BuildOptions,
) -> Result<Built, CommandError> {
    super::untranslated::check(def)?;
    let aliases = aliases::assign(def, actual);
    let ctx = Ctx {
        def,
        caps,
        opts,
        aliases: &aliases,
        actual,
    };
    let emulator = def
        .devices
        .emulator
        .as_ref()
        .map(|e| e.path.clone())
        .unwrap_or_else(|| caps.emulator.display().to_string());
    let mut cmd = CommandLine::new(emulator);
    env(&mut cmd, &ctx);
    cmd.opt(
        "-name",
        format!("guest={},debug-threads=on", escape_comma(&def.name)),
    );
    cmd.arg("-S");
    let mut key = Props::new();
    key.str("qom-type", "secret")
        .str("id", "masterKey0")
        .str("format", "raw")
        .str(
            "file",
            format!("{}/master-key.aes", ctx.domain_dir().display()),
        );
    ctx.object(&mut cmd, &key);
    machine(&mut cmd, &ctx);
    memory_and_cpu(&mut cmd, &ctx);
    if let Some(u) = &def.uuid {
        cmd.opt("-uuid", u.to_string());
    }
    if def.devices.graphics.is_empty() {
        cmd.opt("-display", "none");
    }
    cmd.arg("-no-user-config");
    cmd.arg("-nodefaults");
    let mon = match &opts.monitor {
        Monitor::Fd(fd) => format!("socket,id=charmonitor,fd={fd},server=on,wait=off"),
        Monitor::Path(p) => format!(
            "socket,id=charmonitor,path={},server=on,wait=off",
            escape_comma(&p.display().to_string())
        ),
    };
    cmd.opt("-chardev", mon);
    cmd.opt("-mon", "chardev=charmonitor,id=monitor,mode=control");
    let offset = def.clock.as_ref().map_or("utc", |c| c.offset.as_str());
    cmd.opt(
        "-rtc",
        if offset == "localtime" {
            "base=localtime"
        } else {
            "base=utc"
        },
    );
    cmd.arg("-no-shutdown");
    let accel = accel_of(def);
    let m = caps.machine_for(def.machine().unwrap_or("pc"), accel);
    if m.is_some_and(|m| m.acpi.is_none()) && !def.features.as_ref().is_some_and(|f| f.acpi) {
        // QEMU without a machine `acpi` property: the old switch.
        cmd.arg("-no-acpi");
    }
    boot(&mut cmd, def);
    devices::controllers(&mut cmd, &ctx)?;
    devices::disks(&mut cmd, &ctx)?;
    net::interfaces(&mut cmd, &ctx)?;
    devices::serials(&mut cmd, &ctx)?;
    devices::channels(&mut cmd, &ctx)?;
    devices::inputs(&ctx)?;
    devices::audio_and_graphics(&mut cmd, &ctx)?;
    devices::videos(&ctx)?;
    devices::watchdogs(&mut cmd, &ctx)?;
    let substitutions = net::hostdevs(&mut cmd, &ctx)?;
    devices::memballoon(&mut cmd, &ctx)?;
    if caps.has("seccomp-sandbox") {
        cmd.opt(
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        );
    }
    cmd.opt("-msg", "timestamp=on");
    Ok(Built {
        cmd,
        substitutions,
        aliases,
    })
}

fn boot(cmd: &mut CommandLine, def: &DomainDef) {
    let mut b = String::new();
    if let Some(menu) = &def.os.bootmenu {
        if menu.enable {
            b.push_str("menu=on,");
            if let Some(t) = menu.timeout {
                b.push_str(&format!("splash-time={t},"));
            }
        }
    }
    b.push_str("strict=on");
    cmd.opt("-boot", b);
    if let Some(k) = &def.os.kernel {
        cmd.opt("-kernel", k.clone());
    }
    if let Some(i) = &def.os.initrd {
        cmd.opt("-initrd", i.clone());
    }
    if let Some(c) = &def.os.cmdline {
        cmd.opt("-append", c.clone());
    }
    if let Some(d) = &def.os.dtb {
        cmd.opt("-dtb", d.clone());
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
