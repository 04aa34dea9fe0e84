//! `<domain>`: the top level of a domain definition.

use crate::diag::Pos;
use crate::model::common::Uuid;
use crate::model::devices::Devices;
use crate::model::raw::{RawAttr, RawElement};

/// A domain definition (libvirt `virDomainDef`), as `virsh define` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainDef {
    /// `<domain type='kvm|qemu|...'>`.
    pub type_: String,
    /// `id='N'` of live XML; never formatted (output is inactive XML).
    pub id: Option<i32>,
    /// Namespace declarations on `<domain>` (prefix, uri), e.g. `qemu`.
    pub namespaces: Vec<(String, String)>,
    pub name: String,
    pub uuid: Option<Uuid>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// `<memory>` in KiB.
    pub memory: Memory,
    /// `<currentMemory>` in KiB; `None` means "same as memory" (formatted so).
    pub current_memory: Option<Memory>,
    pub vcpu: Vcpu,
    pub os: Os,
    pub features: Option<Features>,
    pub cpu: Option<Cpu>,
    pub clock: Option<Clock>,
    pub on_poweroff: Option<Lifecycle>,
    pub on_reboot: Option<Lifecycle>,
    pub on_crash: Option<Lifecycle>,
    pub devices: Devices,
    pub extra_attrs: Vec<RawAttr>,
    /// Top-level elements teamvirt does not model (`<metadata>`,
    /// `<memoryBacking>`, `<seclabel>`, `<qemu:commandline>`, ...), emitted
    /// at libvirt's position for their name.
    pub extra: Vec<RawElement>,
    pub pos: Pos,
    /// Position of `<name>`.
    pub name_pos: Pos,
}

impl DomainDef {
    /// Effective current memory in KiB (libvirt caps it at `<memory>`).
    pub fn current_memory_kib(&self) -> u64 {
        match &self.current_memory {
            Some(c) if c.kib <= self.memory.kib && c.kib != 0 => c.kib,
            _ => self.memory.kib,
        }
    }

    /// The `machine` of `<os><type>`, if given.
    pub fn machine(&self) -> Option<&str> {
        self.os.type_.machine.as_deref()
    }

    /// The `arch` of `<os><type>`, if given.
    pub fn arch(&self) -> Option<&str> {
        self.os.type_.arch.as_deref()
    }
}

/// A memory size normalised to KiB (`unit='KiB'` on output).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Memory {
    pub kib: u64,
    /// `dumpCore='on|off'` (only on `<memory>`).
    pub dump_core: Option<bool>,
    pub pos: Pos,
}

impl Memory {
    pub fn kib(kib: u64) -> Self {
        Memory {
            kib,
            dump_core: None,
            pos: Pos::default(),
        }
    }
}

/// `<vcpu placement cpuset current>N</vcpu>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vcpu {
    pub count: u32,
    /// `static` (default, always formatted) or `auto`.
    pub placement: Option<String>,
    pub cpuset: Option<String>,
    pub current: Option<u32>,
    pub pos: Pos,
}

/// `<os>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Os {
    pub type_: OsType,
    /// `<loader>` and `<nvram>` kept verbatim.
    pub loader: Option<RawElement>,
    pub nvram: Option<RawElement>,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub cmdline: Option<String>,
    pub dtb: Option<String>,
    /// `<boot dev='hd|cdrom|network|fd'/>` in order.
    pub boot: Vec<BootDev>,
    pub bootmenu: Option<BootMenu>,
    pub extra_attrs: Vec<RawAttr>,
    /// `<smbios>`, `<bios>`, `<acpi>`, ... kept verbatim.
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<type arch machine>hvm</type>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsType {
    pub value: String,
    pub arch: Option<String>,
    pub machine: Option<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootDev {
    pub dev: String,
    pub pos: Pos,
}

/// `<bootmenu enable='yes|no' [timeout='ms']/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootMenu {
    pub enable: bool,
    pub timeout: Option<u32>,
    pub pos: Pos,
}

/// `<features>`: the flag features teamvirt cares about are typed, the rest
/// kept verbatim (emitted in libvirt's feature order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Features {
    pub acpi: bool,
    pub apic: bool,
    pub pae: bool,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// libvirt's `<features>` formatting order (`virDomainFeature` enum).
pub const FEATURE_ORDER: &[&str] = &[
    "acpi",
    "apic",
    "pae",
    "hap",
    "viridian",
    "privnet",
    "hyperv",
    "kvm",
    "pvspinlock",
    "capabilities",
    "pmu",
    "vmport",
    "gic",
    "smm",
    "ioapic",
    "hpt",
    "vmcoreinfo",
    "htm",
    "nested-hv",
    "msrs",
    "ccf-assist",
    "xen",
    "cfpc",
    "sbbc",
    "ibs",
    "tcg",
    "async-teardown",
    "ras",
    "ps2",
];

/// `<cpu mode match check>`; `<model>` typed, the rest verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cpu {
    pub mode: Option<String>,
    pub match_: Option<String>,
    pub check: Option<String>,
    pub migratable: Option<bool>,
    pub model: Option<CpuModel>,
    pub extra_attrs: Vec<RawAttr>,
    /// `<vendor>`, `<topology>`, `<feature>`, `<numa>`, `<cache>`, ...
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<model fallback vendor_id>name</model>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuModel {
    pub name: String,
    pub fallback: Option<String>,
    pub vendor_id: Option<String>,
    pub pos: Pos,
}

/// `<clock offset>` with `<timer>` children kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clock {
    pub offset: String,
    pub extra_attrs: Vec<RawAttr>,
    pub extra: Vec<RawElement>,
    pub pos: Pos,
}

/// `<on_poweroff>destroy</on_poweroff>` and friends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lifecycle {
    pub action: String,
    pub pos: Pos,
}

/// libvirt's top-level formatting order (`virDomainDefFormatInternal`),
/// used to place kept-verbatim elements.
pub const DOMAIN_ORDER: &[&str] = &[
    "name",
    "uuid",
    "genid",
    "title",
    "description",
    "metadata",
    "maxMemory",
    "memory",
    "currentMemory",
    "blkiotune",
    "memtune",
    "memoryBacking",
    "vcpu",
    "vcpus",
    "iothreads",
    "iothreadids",
    "defaultiothread",
    "cputune",
    "numatune",
    "resource",
    "sysinfo",
    "bootloader",
    "bootloader_args",
    "os",
    "idmap",
    "features",
    "cpu",
    "clock",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "on_lockfailure",
    "pm",
    "perf",
    "devices",
    "seclabel",
    "keywrap",
    "launchSecurity",
];
