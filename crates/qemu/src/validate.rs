//! QEMU-driver validation (libvirt's `qemu_validate.c` teaming checks).
//!
//! QEMU-driver validation (libvirt `qemu_validate.c`): the checks of
//! `qemuValidateDomainDeviceDefNetwork` teamvirt cares about, as a
//! [`DriverValidator`] that `teamvirt_conf::validate` calls in libvirt's
//! order (driver check of a device first, then the generic one).

use teamvirt_conf::diag::{unsupported, Diagnostic};
use teamvirt_conf::model::{DomainDef, Interface, InterfaceType};
use teamvirt_conf::validate::{validate_domain, DriverValidator};

pub use crate::caps::failover_capability;
use crate::caps::QemuCaps;

/// The QEMU driver's checks.
#[derive(Debug, Clone, Default)]
pub struct QemuValidator {
    /// Whether the QEMU binary has virtio-net `failover`
    /// (`QEMU_CAPS_VIRTIO_NET_FAILOVER`). `None`: not probed, assume yes
    /// (QEMU >= 4.2, libvirt's current minimum, always has it).
    pub has_failover: Option<bool>,
}

impl DriverValidator for QemuValidator {
    fn domain(&self, def: &DomainDef) -> Result<(), Diagnostic> {
        memory_fits(def)?;
        disk_controllers_in_range(def)?;
        crate::vncauth::check(def)
    }

    fn interface(&self, def: &DomainDef, net: &Interface) -> Result<(), Diagnostic> {
        if let Some(has) = self.has_failover {
            if net.teaming.is_some() {
                failover_capability(has)
                    .map_err(|d| d.at(net.teaming.as_ref().map(|t| t.pos).unwrap_or_default()))?;
            }
        }
        network(def, net)
    }
}

/// Guest physical address bits of an x86 architecture: the most any CPU
/// of it can address (x86-64: 52, i686 with PAE: 36).
fn address_bits(arch: &str) -> Option<u32> {
    match arch {
        "x86_64" => Some(52),
        "i686" => Some(36),
        _ => None,
    }
}

/// `<memory>` the guest's architecture can address at all. libvirt itself
/// only refuses sizes past 2^63 bytes (`numerical overflow`) and leaves the
/// rest to QEMU, which then fails at start to allocate it; no libvirt text
/// exists for this, so the message is teamvirt's.
pub fn memory_fits(def: &DomainDef) -> Result<(), Diagnostic> {
    let arch = def.arch().unwrap_or("x86_64");
    let Some(bits) = address_bits(arch) else {
        return Ok(());
    };
    let max_kib = 1u64 << (bits - 10);
    let mut sizes = vec![&def.memory];
    sizes.extend(def.current_memory.as_ref());
    for m in sizes {
        if m.kib > max_kib {
            return Err(unsupported(
                "memory-too-large",
                format!(
                    "memory size {} KiB is more than a {arch} guest can address ({max_kib} KiB, {bits} physical address bits)",
                    m.kib
                ),
            )
            .at(m.pos));
        }
    }
    Ok(())
}

/// Highest `controller` a disk's drive address may name. libvirt adds a
/// controller for every index up to the highest one a disk uses, with no
/// limit (`controller='4294967295'` would be four billion controllers);
/// a guest has far fewer PCI slots than this, so the limit costs nothing.
pub const MAX_DISK_CONTROLLER_INDEX: u32 = 1023;

/// Disk drive addresses within [`MAX_DISK_CONTROLLER_INDEX`] (teamvirt's
/// check and text: libvirt has none).
pub fn disk_controllers_in_range(def: &DomainDef) -> Result<(), Diagnostic> {
    for d in &def.devices.disks {
        if let Some(teamvirt_conf::model::Address::Drive(a)) = &d.info.address {
            if a.controller > MAX_DISK_CONTROLLER_INDEX {
                return Err(unsupported(
                    "disk-controller-index",
                    format!(
                        "disk controller index {} is out of range (at most {MAX_DISK_CONTROLLER_INDEX})",
                        a.controller
                    ),
                )
                .at(a.pos));
            }
        }
    }
    Ok(())
}

/// `qemuValidateDomainVCpuTopology`'s machine limit: the vCPUs of `def`
/// against the `maxCpus` QEMU reports for its machine type (0: unknown, no
/// limit, as in libvirt). Needs the machine type libvirt's post-parse fills
/// in, so `defaults::define` runs it.
pub fn vcpus_fit_machine(def: &DomainDef, caps: &QemuCaps) -> Result<(), Diagnostic> {
    let accel = crate::machine::accel_of(def);
    let machine = match def.machine() {
        Some(m) => caps.machine_for(m, accel).or_else(|| caps.machine(m)),
        None => caps.default_machine(accel),
    };
    let Some(max) = machine.map(|m| m.max_cpus).filter(|&m| m > 0) else {
        return Ok(());
    };
    if def.vcpu.count > max {
        return Err(unsupported(
            "vcpus-over-machine-limit",
            format!("Maximum CPUs greater than specified machine type limit {max}"),
        )
        .at(def.vcpu.pos));
    }
    Ok(())
}

/// The model libvirt's QEMU driver gives a NIC without `<model>`
/// (`qemuDomainDefaultNetModel`, assuming the binary has the usual NIC
/// devices); `None` for hostdev NICs, which get no model.
pub fn default_net_model(def: &DomainDef, net: &Interface) -> Option<&'static str> {
    if net.type_ == InterfaceType::Hostdev {
        return None;
    }
    if net.type_ == InterfaceType::Vdpa {
        return Some("virtio");
    }
    let arch = def.arch().unwrap_or("x86_64");
    let machine = def.machine().unwrap_or("");
    if arch.starts_with("s390")
        || arch.starts_with("loongarch")
        || (arch.starts_with("riscv") && machine.starts_with("virt"))
    {
        return Some("virtio");
    }
    if arch == "armv7l" || arch == "aarch64" {
        if machine == "versatilepb" {
            return Some("smc91c111");
        }
        if machine == "virt" || machine.starts_with("virt-") {
            return Some("virtio");
        }
        return Some("lan9118");
    }
    Some("rtl8139")
}

/// The model string libvirt prints in messages (`virDomainNetGetModelString`
/// after post-parse), `(null)` when there is none.
pub fn effective_model<'a>(def: &DomainDef, net: &'a Interface) -> &'a str {
    net.model_str()
        .or_else(|| default_net_model(def, net))
        .unwrap_or("(null)")
}

const VIRTIO_MODELS: [&str; 3] = ["virtio", "virtio-transitional", "virtio-non-transitional"];

/// Most queue pairs QEMU's virtio-net accepts (`VIRTIO_QUEUE_MAX` 1024
/// queues: (1024 - 1) / 2).
pub const MAX_NET_QUEUES: u32 = 511;

/// `qemuValidateDomainDeviceDefNetwork`, the parts teamvirt models.
pub fn network(def: &DomainDef, net: &Interface) -> Result<(), Diagnostic> {
    // QEMU's limit (libvirt passes any count on and opens that many taps).
    if let Some(d) = &net.driver {
        if let Some(q) = d.queues.filter(|&q| q > MAX_NET_QUEUES) {
            return Err(unsupported(
                "net-queues-too-many",
                format!(
                    "Invalid number of queue pairs (= {q}), must be a positive integer less than {}",
                    MAX_NET_QUEUES + 1
                ),
            )
            .at(d.pos));
        }
    }
    let model = effective_model(def, net);
    let virtio = VIRTIO_MODELS.contains(&model);
    if virtio {
        if let Some(d) = &net.driver {
            if d.rx_queue_size.is_some_and(|n| n & n.wrapping_sub(1) != 0) {
                return Err(unsupported(
                    "rx-queue-size-power-of-two",
                    "rx_queue_size has to be a power of two",
                )
                .at(d.pos));
            }
            if d.tx_queue_size.is_some_and(|n| n & n.wrapping_sub(1) != 0) {
                return Err(unsupported(
                    "tx-queue-size-power-of-two",
                    "tx_queue_size has to be a power of two",
                )
                .at(d.pos));
            }
        }
    }
    if let Some(t) = &net.teaming {
        use teamvirt_conf::model::TeamingType::*;
        match t.type_ {
            Persistent if !virtio => {
                return Err(unsupported(
                    "teaming-persistent-not-virtio",
                    format!("virtio-net teaming persistent interface must be <model type='virtio'/>, not '{model}'"),
                )
                .at(t.pos));
            }
            Transient if !matches!(net.type_, InterfaceType::Hostdev | InterfaceType::Network) => {
                return Err(unsupported(
                    "teaming-transient-not-hostdev",
                    format!(
                        "virtio-net teaming transient interface must be type='hostdev', not '{}'",
                        net.type_.as_str()
                    ),
                )
                .at(t.pos));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Generic + QEMU validation of a domain, as `virsh define` on the QEMU
/// driver does, plus teamvirt's own teaming checks.
pub fn validate(def: &DomainDef, has_failover: Option<bool>) -> Vec<Diagnostic> {
    validate_domain(def, &QemuValidator { has_failover })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(devices: &str) -> DomainDef {
        let xml = format!(
            "<domain type='qemu'><name>t</name><memory>1024</memory><os><type arch='x86_64'>hvm</type></os><devices>{devices}</devices></domain>"
        );
        DomainDef::parse_str(&xml, None).unwrap().0
    }

    fn first_error(devices: &str) -> Option<String> {
        validate(&parse(devices), None)
            .into_iter()
            .find(|d| d.is_error())
            .map(|d| d.message)
    }

    #[test]
    fn persistent_needs_virtio_with_default_model() {
        assert_eq!(
            first_error("<interface type='user'><teaming type='persistent'/></interface>").unwrap(),
            "unsupported configuration: virtio-net teaming persistent interface must be <model type='virtio'/>, not 'rtl8139'"
        );
        assert_eq!(
            first_error("<interface type='user'><model type='e1000e'/><teaming type='persistent'/></interface>").unwrap(),
            "unsupported configuration: virtio-net teaming persistent interface must be <model type='virtio'/>, not 'e1000e'"
        );
        assert_eq!(
            first_error(
                "<interface type='hostdev'><source><address type='pci' bus='3' slot='7' function='1'/></source><teaming type='persistent'/></interface>"
            )
            .unwrap(),
            "unsupported configuration: virtio-net teaming persistent interface must be <model type='virtio'/>, not '(null)'"
        );
        assert_eq!(
            first_error("<interface type='user'><model type='virtio-transitional'/><teaming type='persistent'/><alias name='ua-a'/></interface>"),
            None
        );
    }

    #[test]
    fn transient_must_be_hostdev_or_network() {
        for t in ["user", "ethernet"] {
            assert_eq!(
                first_error(&format!("<interface type='{t}'><model type='virtio'/><teaming type='transient' persistent='ua-x'/></interface>"))
                    .unwrap(),
                format!("unsupported configuration: virtio-net teaming transient interface must be type='hostdev', not '{t}'")
            );
        }
        assert_eq!(
            first_error("<interface type='bridge'><source bridge='br0'/><teaming type='transient' persistent='ua-x'/></interface>").unwrap(),
            "unsupported configuration: virtio-net teaming transient interface must be type='hostdev', not 'bridge'"
        );
    }

    #[test]
    fn driver_check_runs_before_generic_check() {
        // libvirt's deviceValidateCallback runs before virDomainDeviceDefValidateInternal.
        assert_eq!(
            first_error("<interface type='user'><teaming type='transient'/></interface>").unwrap(),
            "unsupported configuration: virtio-net teaming transient interface must be type='hostdev', not 'user'"
        );
        assert_eq!(
            first_error(
                "<interface type='hostdev'><source><address type='pci' bus='3' slot='7' function='1'/></source><teaming type='transient'/></interface>"
            )
            .unwrap(),
            "unsupported configuration: teaming persistent attribute must be set if teaming type is 'transient'"
        );
    }

    #[test]
    fn queue_sizes() {
        assert_eq!(
            first_error("<interface type='user'><model type='virtio'/><driver rx_queue_size='511'/></interface>").unwrap(),
            "unsupported configuration: rx_queue_size has to be a power of two"
        );
        assert_eq!(first_error("<interface type='user'><model type='virtio'/><driver rx_queue_size='512'/></interface>"), None);
        // Not virtio: libvirt does not look at the queue sizes.
        assert_eq!(first_error("<interface type='user'><model type='e1000'/><driver rx_queue_size='511'/></interface>"), None);
    }

    #[test]
    fn failover_capability_text() {
        assert_eq!(
            failover_capability(false).unwrap_err().message,
            "unsupported configuration: virtio-net failover (teaming) is not supported with this QEMU binary"
        );
        assert!(failover_capability(true).is_ok());
        let def = parse("<interface type='user'><model type='virtio'/><teaming type='persistent'/><alias name='ua-a'/></interface>");
        let errs: Vec<_> = validate(&def, Some(false))
            .into_iter()
            .filter(|d| d.is_error())
            .collect();
        assert_eq!(
            errs[0].message,
            "unsupported configuration: virtio-net failover (teaming) is not supported with this QEMU binary"
        );
        assert!(validate(&def, Some(true)).iter().all(|d| !d.is_error()));
    }

    #[test]
    fn memory_past_the_address_space() {
        let dom = |arch: &str, mem: &str| {
            let xml = format!(
                "<domain type='qemu'><name>t</name><memory unit='KiB'>{mem}</memory><os><type arch='{arch}'>hvm</type></os></domain>"
            );
            DomainDef::parse_str(&xml, None).unwrap().0
        };
        // 4 PiB is the most an x86-64 guest can address.
        assert!(memory_fits(&dom("x86_64", &(1u64 << 42).to_string())).is_ok());
        let e = validate(&dom("x86_64", &((1u64 << 42) + 1).to_string()), None)
            .into_iter()
            .find(|d| d.is_error())
            .unwrap();
        assert_eq!(
            e.message,
            "unsupported configuration: memory size 4398046511105 KiB is more than a x86_64 guest can address (4398046511104 KiB, 52 physical address bits)"
        );
        assert_eq!(e.pos.unwrap().line, 1);
        assert!(memory_fits(&dom("i686", "68719476737")).is_err());
        assert!(memory_fits(&dom("aarch64", "68719476737")).is_ok());
    }

    #[test]
    fn queue_count_bounded() {
        let q = |n: u32| {
            first_error(&format!(
                "<interface type='user'><model type='virtio'/><driver queues='{n}'/></interface>"
            ))
        };
        assert_eq!(q(511), None);
        assert_eq!(
            q(4_294_967_295).unwrap(),
            "unsupported configuration: Invalid number of queue pairs (= 4294967295), must be a positive integer less than 512"
        );
    }

    #[test]
    fn disk_controller_index_bounded() {
        let disk = |c: u32| {
            format!("<disk type='file' device='disk'><source file='/x'/><target dev='sda' bus='scsi'/><address type='drive' controller='{c}' bus='0' target='0' unit='0'/></disk>")
        };
        assert_eq!(first_error(&disk(MAX_DISK_CONTROLLER_INDEX)), None);
        assert_eq!(
            first_error(&disk(u32::MAX)).unwrap(),
            "unsupported configuration: disk controller index 4294967295 is out of range (at most 1023)"
        );
    }

    #[test]
    fn vcpus_over_the_machine_limit() {
        let caps = QemuCaps::from_libvirt_xml_str(
            "<qemuCaps>\n  <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  <flag name='tcg'/>\n  <version>7002000</version>\n  <package>pkg</package>\n  <arch>x86_64</arch>\n  <machine type='tcg' name='pc-q35-7.2' alias='q35' maxCpus='288'/>\n  <machine type='tcg' name='pc-i440fx-7.2' alias='pc' maxCpus='255' default='yes'/>\n</qemuCaps>\n",
            std::path::Path::new("caps.xml"),
        )
        .unwrap();
        let dom = |machine: &str, n: u32| {
            let xml = format!(
                "<domain type='qemu'><name>t</name><memory>1024</memory><vcpu>{n}</vcpu><os><type arch='x86_64' machine='{machine}'>hvm</type></os></domain>"
            );
            DomainDef::parse_str(&xml, None).unwrap().0
        };
        let limit = |m: &str| caps.machine(m).unwrap().max_cpus;
        let pc = limit("pc");
        assert!(vcpus_fit_machine(&dom("pc", pc), &caps).is_ok());
        assert_eq!(
            vcpus_fit_machine(&dom("pc", pc + 1), &caps).unwrap_err().message,
            format!("unsupported configuration: Maximum CPUs greater than specified machine type limit {pc}")
        );
        assert!(vcpus_fit_machine(&dom("q35", 288), &caps).is_ok());
        assert!(vcpus_fit_machine(&dom("pc-q35-7.2", 289), &caps).is_err());
        // define() refuses it too (what validate --caps and domxml-to-native run).
        let mut d = dom("pc", u32::MAX);
        let e = crate::defaults::define(&mut d, &caps).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("unsupported configuration: Maximum CPUs greater than specified machine type limit {pc}")
        );
    }

    #[test]
    fn default_models() {
        let def = parse("<interface type='user'/>");
        assert_eq!(
            default_net_model(&def, &def.devices.interfaces[0]),
            Some("rtl8139")
        );
        let xml = "<domain type='qemu'><name>t</name><memory>1024</memory><os><type arch='s390x'>hvm</type></os><devices><interface type='user'/></devices></domain>";
        let def = DomainDef::parse_str(xml, None).unwrap().0;
        assert_eq!(
            default_net_model(&def, &def.devices.interfaces[0]),
            Some("virtio")
        );
    }
}
