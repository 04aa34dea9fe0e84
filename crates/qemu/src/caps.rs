//! Capabilities: libvirt's caps cache XML and live probing over QMP.
//!
//! What a QEMU binary can do, in libvirt's terms.
//!
//! A [`QemuCaps`] comes from one of three places:
//!
//! - [`QemuCaps::from_libvirt_xml`]: libvirt's own capabilities cache format
//!   (`<qemuCaps>`, as kept under libvirt's cache directory and in its test
//!   suite's `qemucapabilitiesdata/caps_*.xml`).
//! - `QemuCaps::probe` (async; feature `probe`, on by default): start the
//!   binary with `-machine none` (no guest), ask over QMP, and map the
//!   answers to libvirt flag names the way libvirt does (see the `probe`
//!   module for the subset of flags derived; flags outside it are never
//!   set by a probe). Results are cached as JSON in a cache directory keyed
//!   by the binary's canonical path, size and mtime ([`default_cache_dir`]
//!   computes the default one). The binary drives it on its one runtime
//!   (through `teamvirt_runtime::domain::probe_caps`).
//! - [`QemuCaps::from_flags`]: an explicit flag list, like libvirt's older
//!   tests that ran without a caps file (`historical/v8.1.0`).
//!
//! # Flags
//!
//! [`QemuCaps::flags`] holds libvirt capability flag *names* exactly as they
//! appear in the caps XML (`<flag name='device.json+hotplug'/>`); query them
//! with [`QemuCaps::has`]. The ones the command line consults, as libvirt
//! 10.7's `qemu_command.c` does:
//!
//! | flag | effect | helper |
//! |---|---|---|
//! | `device.json+hotplug` (`QEMU_CAPS_DEVICE_JSON`) | `-device` in JSON syntax, else `driver,key=value` | [`QemuCaps::device_json`] |
//! | `netdev.json` (`QEMU_CAPS_NETDEV_JSON`) | `-netdev` in JSON syntax | [`QemuCaps::netdev_json`] |
//! | `object.qapified` (`QEMU_CAPS_OBJECT_JSON`) | `-object` in JSON syntax (also implied by QEMU ≥ 6.0: later libvirt retired the flag) | [`QemuCaps::object_json`] |
//! | `seccomp-sandbox` | `-sandbox on,...` is emitted | |
//! | `kvm`, `tcg` | accelerators | [`QemuCaps::accelerators`] |
//! | `pcie-root-port.hotplug`, `piix4.acpi-root-pci-hotplug` | `hotplug=off` on root ports / i440fx | |
//! | `virtio-net.failover` (retired in libvirt ≥ 9) | teaming | [`QemuCaps::supports_failover`] |
//!
//! `device.json` (without `+hotplug`) is libvirt's *retired*
//! `X_QEMU_CAPS_DEVICE_JSON_BROKEN_HOTPLUG` and decides nothing. There is no
//! `blockdev` flag in libvirt 10.7 caps: `-blockdev` became unconditional
//! when libvirt required QEMU ≥ 5.2; [`QemuCaps::blockdev`] encodes that.
//!
//! # Machines
//!
//! Machine types are kept per accelerator ([`Accel`]), in the order of the
//! source. [`QemuCaps::canonical_machine`] resolves an alias (`q35` ->
//! `pc-q35-9.1`), [`QemuCaps::default_machine`] gives the one QEMU marks
//! default, [`MachineType::default_ram_id`] is what `memory-backend=` names.
//!
//! # Teaming
//!
//! [`QemuCaps::supports_failover`] says whether `virtio-net-pci` has the
//! `failover` property; [`QemuCaps::check_teaming_supported`] turns a "no"
//! into libvirt's error text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use teamvirt_conf::diag::{unsupported, Diagnostic};

// Without the probe only `CacheKey` is used.
#[cfg_attr(not(feature = "probe"), allow(dead_code))]
mod cache;
#[cfg(feature = "probe")]
pub mod probe;
#[cfg(feature = "probe")]
mod schema;
mod xml;

pub use cache::CacheKey;

/// Everything that can go wrong reading, probing or caching capabilities.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A malformed libvirt caps file; `location` is `file:line:column`.
    #[error("{location}: {message}")]
    Xml { location: String, message: String },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("probing {binary}: {message}")]
    Probe { binary: PathBuf, message: String },
    #[error("probing {binary}: no answer within {seconds} s")]
    Timeout { binary: PathBuf, seconds: u64 },
}

/// A QEMU accelerator as libvirt names it in caps XML (`type='kvm'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
    Hvf,
}

impl Accel {
    pub const ALL: [Accel; 3] = [Accel::Kvm, Accel::Tcg, Accel::Hvf];

    /// libvirt's (and QEMU's `-accel`) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::Hvf => "hvf",
        }
    }

    pub fn parse(s: &str) -> Option<Accel> {
        Accel::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `<machine>` of the caps XML / one entry of QMP `query-machines`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineType {
    /// Canonical name, e.g. `pc-q35-9.1`.
    pub name: String,
    /// Short alias, e.g. `q35`.
    pub alias: Option<String>,
    pub max_cpus: u32,
    pub hotplug_cpus: bool,
    /// QEMU's default machine (`default='yes'` / `is-default`).
    pub default: bool,
    /// QOM type of the default CPU, e.g. `qemu64-x86_64-cpu`.
    pub default_cpu: Option<String>,
    /// Id of the machine's RAM region (`pc.ram`), used as `memory-backend=`.
    pub default_ram_id: Option<String>,
    pub numa_mem_supported: bool,
    pub deprecated: bool,
    /// Whether the machine has an `acpi` property; `None` when not reported
    /// (QEMU < 8.0 does not report it).
    pub acpi: Option<bool>,
}

/// One `<cpu>` model of the caps XML / `query-cpu-definitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuModel {
    pub name: String,
    pub typename: Option<String>,
    pub usable: Option<bool>,
    pub deprecated: bool,
}

/// Per-accelerator data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelCaps {
    pub machines: Vec<MachineType>,
    pub cpu_models: Vec<CpuModel>,
}

/// Where a [`QemuCaps`] came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CapsSource {
    /// libvirt's caps cache XML.
    LibvirtXml { path: PathBuf },
    /// A live probe of the binary, now or earlier: `cache` is the probe
    /// cache file it was read from (`None`: probed just now).
    Probe {
        binary: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<PathBuf>,
    },
    /// An explicit flag list.
    Flags,
}

/// Capabilities of one QEMU binary. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuCaps {
    /// The binary as libvirt would put it first on the command line.
    pub emulator: PathBuf,
    /// libvirt's encoding: `major * 1_000_000 + minor * 1_000 + micro`
    /// (QEMU 9.1.0-rc0 reports 9.0.90 -> `9000090`; 7.2.0 -> `7002000`).
    pub version: u32,
    /// `major.minor.micro` of `version`.
    pub version_string: String,
    /// QEMU's package string (`v9.1.0-rc0-121-g75c7f57403`, `Debian 1:7.2+...`).
    pub package: String,
    /// QEMU target architecture (`x86_64`, `i686`, ...).
    pub arch: String,
    pub microcode_version: Option<u64>,
    pub kernel_version: Option<String>,
    pub host_cpu_signature: Option<String>,
    /// libvirt flag names (`<flag name='...'/>`).
    pub flags: BTreeSet<String>,
    /// Machine types and CPU models per accelerator.
    pub accel: BTreeMap<Accel, AccelCaps>,
    /// Device type -> property names, for the devices probed live
    /// (empty when read from libvirt XML, which does not keep them).
    pub device_props: BTreeMap<String, Vec<String>>,
    pub source: CapsSource,
}

/// libvirt's first release requiring QEMU ≥ 5.2 made `-blockdev`
/// unconditional and dropped the flag from the caps cache.
const BLOCKDEV_ALWAYS_SINCE: u32 = 5_002_000;
/// QEMU 6.0 QAPIfied `object-add`; libvirt after 10.7 stopped recording
/// `object.qapified` once its minimum QEMU always had it.
const OBJECT_JSON_SINCE: u32 = 6_000_000;
/// QEMU 4.2 introduced `virtio-net-pci.failover`; libvirt retired its flag
/// once 4.2 became its minimum, so newer caps XML no longer carries it.
const FAILOVER_SINCE: u32 = 4_002_000;

impl QemuCaps {
    /// Reads libvirt's capabilities cache XML.
    pub fn from_libvirt_xml(path: impl AsRef<Path>) -> Result<QemuCaps, CapsError> {
        xml::read_file(path.as_ref())
    }

    /// Parses libvirt's capabilities cache XML from a string; `origin` names
    /// it in error locations.
    pub fn from_libvirt_xml_str(text: &str, origin: &Path) -> Result<QemuCaps, CapsError> {
        xml::parse(text, origin)
    }

    /// Capabilities given as an explicit flag list, without machine types or
    /// version (version 0), as libvirt's older argv tests did.
    pub fn from_flags<I, S>(emulator: impl Into<PathBuf>, arch: &str, flags: I) -> QemuCaps
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        QemuCaps {
            emulator: emulator.into(),
            version: 0,
            version_string: version_string(0),
            package: String::new(),
            arch: arch.to_string(),
            microcode_version: None,
            kernel_version: None,
            host_cpu_signature: None,
            flags: flags.into_iter().map(Into::into).collect(),
            accel: BTreeMap::new(),
            device_props: BTreeMap::new(),
            source: CapsSource::Flags,
        }
    }

    /// Probes `binary` live (see [`probe`]), using and refreshing the cache
    /// in `cache_dir`.
    #[cfg(feature = "probe")]
    pub async fn probe(
        binary: impl AsRef<Path>,
        cache_dir: impl AsRef<Path>,
    ) -> Result<QemuCaps, CapsError> {
        probe::probe_cached(binary.as_ref(), cache_dir.as_ref()).await
    }

    /// Whether libvirt flag `flag` is set.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }

    /// `-device` takes JSON (`device.json+hotplug`).
    pub fn device_json(&self) -> bool {
        self.has("device.json+hotplug")
    }

    /// `-netdev` takes JSON (`netdev.json`).
    pub fn netdev_json(&self) -> bool {
        self.has("netdev.json")
    }

    /// `-object` takes JSON: flag `object.qapified`, or a QEMU ≥ 6.0 (which
    /// QAPIfied `object-add`) described by a libvirt that retired the flag.
    pub fn object_json(&self) -> bool {
        self.has("object.qapified") || self.version >= OBJECT_JSON_SINCE
    }

    /// Disks use `-blockdev` rather than `-drive`: flag `blockdev` (older
    /// libvirt), or a QEMU new enough that libvirt no longer asks.
    pub fn blockdev(&self) -> bool {
        self.has("blockdev") || self.version >= BLOCKDEV_ALWAYS_SINCE
    }

    /// Accelerators available (flags `kvm`, `tcg`, `hvf`), in that order.
    pub fn accelerators(&self) -> Vec<Accel> {
        Accel::ALL
            .into_iter()
            .filter(|a| self.has(a.as_str()))
            .collect()
    }

    /// Machine types known for `accel` (empty if none).
    pub fn machines(&self, accel: Accel) -> &[MachineType] {
        self.accel
            .get(&accel)
            .map(|a| a.machines.as_slice())
            .unwrap_or(&[])
    }

    /// CPU models known for `accel` (empty if none).
    pub fn cpu_models(&self, accel: Accel) -> &[CpuModel] {
        self.accel
            .get(&accel)
            .map(|a| a.cpu_models.as_slice())
            .unwrap_or(&[])
    }

    /// The machine type `name` (canonical name or alias) for `accel`.
    pub fn machine_for(&self, name: &str, accel: Accel) -> Option<&MachineType> {
        let machines = self.machines(accel);
        machines
            .iter()
            .find(|m| m.name == name)
            .or_else(|| machines.iter().find(|m| m.alias.as_deref() == Some(name)))
    }

    /// The machine type `name` (canonical name or alias), looked up for kvm,
    /// then tcg, then hvf.
    pub fn machine(&self, name: &str) -> Option<&MachineType> {
        Accel::ALL
            .into_iter()
            .find_map(|a| self.machine_for(name, a))
    }

    /// Canonical machine name for `name` under `accel`: the target of an
    /// alias (`q35` -> `pc-q35-9.1`), `name` itself when it is canonical,
    /// `None` when the machine is unknown.
    pub fn canonical_machine(&self, name: &str, accel: Accel) -> Option<&str> {
        self.machine_for(name, accel).map(|m| m.name.as_str())
    }

    /// QEMU's default machine type for `accel`.
    pub fn default_machine(&self, accel: Accel) -> Option<&MachineType> {
        self.machines(accel).iter().find(|m| m.default)
    }

    /// The CPU model name whose QOM type is `typename` (machine
    /// `default_cpu` `qemu64-x86_64-cpu` -> `qemu64`).
    pub fn cpu_model_by_typename(&self, typename: &str, accel: Accel) -> Option<&CpuModel> {
        self.cpu_models(accel)
            .iter()
            .find(|c| c.typename.as_deref() == Some(typename))
    }

    /// Whether `virtio-net-pci` supports `failover=on` (teaming). A live
    /// probe answers from `device-list-properties`; caps XML from the flag
    /// `virtio-net.failover`, or from the version once libvirt retired that
    /// flag (every QEMU ≥ 4.2 has the property).
    pub fn supports_failover(&self) -> bool {
        if let Some(props) = self.device_props.get("virtio-net-pci") {
            return props.iter().any(|p| p == "failover");
        }
        self.has("virtio-net.failover") || self.version >= FAILOVER_SINCE
    }

    /// `Ok(())` when a domain using `<teaming>` can run on this binary,
    /// otherwise libvirt's error text (with its `unsupported configuration: `
    /// prefix).
    /// The text comes from [`failover_capability`], so
    /// there is one copy of libvirt's message.
    pub fn check_teaming_supported(&self) -> Result<(), String> {
        failover_capability(self.supports_failover()).map_err(|d| d.message)
    }
}

/// libvirt v6.1-v8.x's capability check (`virtio-net failover (teaming) is
/// not supported with this QEMU binary`), for a QEMU without the
/// virtio-net `failover` property.
pub fn failover_capability(has_failover: bool) -> Result<(), Diagnostic> {
    if has_failover {
        Ok(())
    } else {
        Err(unsupported(
            "teaming-no-failover-cap",
            "virtio-net failover (teaming) is not supported with this QEMU binary",
        ))
    }
}

/// `major.minor.micro` of a libvirt-encoded version.
pub fn version_string(version: u32) -> String {
    format!(
        "{}.{}.{}",
        version / 1_000_000,
        (version / 1_000) % 1_000,
        version % 1_000
    )
}

/// libvirt's version encoding of QEMU's `major.minor.micro`; `None` when a
/// component is out of range.
pub fn encode_version(major: u64, minor: u64, micro: u64) -> Option<u32> {
    if minor >= 1000 || micro >= 1000 || major > 4000 {
        return None;
    }
    u32::try_from(major * 1_000_000 + minor * 1_000 + micro).ok()
}

/// The default directory for the probe cache (`cache/` in the state
/// directory; see [`crate::dirs`]).
pub fn default_cache_dir() -> Result<PathBuf, crate::dirs::NoDefaultDir> {
    crate::dirs::default_cache_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(name: &str, alias: Option<&str>, default: bool) -> MachineType {
        MachineType {
            name: name.into(),
            alias: alias.map(Into::into),
            max_cpus: 255,
            hotplug_cpus: true,
            default,
            default_cpu: Some("qemu64-x86_64-cpu".into()),
            default_ram_id: Some("pc.ram".into()),
            numa_mem_supported: false,
            deprecated: false,
            acpi: None,
        }
    }

    fn sample() -> QemuCaps {
        let mut caps = QemuCaps::from_flags(
            "/usr/bin/qemu-system-x86_64",
            "x86_64",
            ["tcg", "device.json+hotplug"],
        );
        caps.accel.insert(
            Accel::Tcg,
            AccelCaps {
                machines: vec![
                    machine("pc-i440fx-7.2", Some("pc"), true),
                    machine("pc-q35-7.2", Some("q35"), false),
                    machine("pc-q35-7.1", None, false),
                ],
                cpu_models: vec![CpuModel {
                    name: "qemu64".into(),
                    typename: Some("qemu64-x86_64-cpu".into()),
                    usable: Some(true),
                    deprecated: false,
                }],
            },
        );
        caps
    }

    #[test]
    fn machine_lookup() {
        let caps = sample();
        assert_eq!(
            caps.canonical_machine("q35", Accel::Tcg),
            Some("pc-q35-7.2")
        );
        assert_eq!(
            caps.canonical_machine("pc-q35-7.1", Accel::Tcg),
            Some("pc-q35-7.1")
        );
        assert_eq!(caps.canonical_machine("q35", Accel::Kvm), None);
        assert_eq!(caps.canonical_machine("virt", Accel::Tcg), None);
        assert_eq!(
            caps.default_machine(Accel::Tcg).map(|m| m.name.as_str()),
            Some("pc-i440fx-7.2")
        );
        assert_eq!(caps.default_machine(Accel::Kvm), None);
        assert_eq!(
            caps.machine("pc").map(|m| m.name.as_str()),
            Some("pc-i440fx-7.2")
        );
        assert_eq!(caps.accelerators(), vec![Accel::Tcg]);
        assert_eq!(
            caps.cpu_model_by_typename("qemu64-x86_64-cpu", Accel::Tcg)
                .map(|c| c.name.as_str()),
            Some("qemu64")
        );
    }

    #[test]
    fn syntax_flags() {
        let caps = sample();
        assert!(caps.device_json());
        assert!(!caps.netdev_json());
        assert!(!caps.object_json());
        assert!(!caps.blockdev());
        let mut newer = caps.clone();
        newer.version = 5_002_000;
        assert!(newer.blockdev());
        assert!(!newer.object_json());
        newer.version = 6_000_000;
        assert!(newer.object_json());
        assert!(!newer.device_json() || newer.has("device.json+hotplug"));
    }

    #[test]
    fn failover_rules() {
        let mut caps = sample();
        assert!(!caps.supports_failover());
        let err = caps.check_teaming_supported().unwrap_err();
        assert_eq!(
            err,
            crate::validate::failover_capability(false)
                .unwrap_err()
                .message
        );
        caps.flags.insert("virtio-net.failover".into());
        assert!(caps.supports_failover());
        assert_eq!(caps.check_teaming_supported(), Ok(()));

        let mut old_libvirt = sample();
        old_libvirt.version = 4_002_000;
        assert!(old_libvirt.supports_failover());

        // A probe's answer wins over version and flags.
        let mut probed = sample();
        probed.version = 7_002_000;
        probed
            .device_props
            .insert("virtio-net-pci".into(), vec!["mac".into(), "netdev".into()]);
        assert!(!probed.supports_failover());
        probed
            .device_props
            .get_mut("virtio-net-pci")
            .unwrap()
            .push("failover".into());
        assert!(probed.supports_failover());
    }

    #[test]
    fn versions() {
        assert_eq!(version_string(9_000_090), "9.0.90");
        assert_eq!(version_string(7_002_000), "7.2.0");
        assert_eq!(encode_version(7, 2, 22), Some(7_002_022));
        assert_eq!(encode_version(9, 0, 90), Some(9_000_090));
        assert_eq!(encode_version(1, 1000, 0), None);
        assert_eq!(encode_version(u64::MAX, 0, 0), None);
    }
}
