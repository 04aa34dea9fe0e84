//! QEMU-driver validation (libvirt `qemu_validate.c`): the checks of
//! `qemuValidateDomainDeviceDefNetwork` teamvirt cares about, as a
//! [`DriverValidator`] that `teamvirt_conf::validate` calls in libvirt's
//! order (driver check of a device first, then the generic one).

use teamvirt_conf::diag::{unsupported, Diagnostic};
use teamvirt_conf::model::{DomainDef, Interface, InterfaceType};
use teamvirt_conf::validate::{validate_domain, DriverValidator};

/// The QEMU driver's checks.
#[derive(Debug, Clone, Default)]
pub struct QemuValidator {
    /// Whether the QEMU binary has virtio-net `failover`
    /// (`QEMU_CAPS_VIRTIO_NET_FAILOVER`). `None`: not probed, assume yes
    /// (QEMU >= 4.2, libvirt's current minimum, always has it).
    pub has_failover: Option<bool>,
}

impl DriverValidator for QemuValidator {
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

/// `qemuValidateDomainDeviceDefNetwork`, the parts teamvirt models.
pub fn network(def: &DomainDef, net: &Interface) -> Result<(), Diagnostic> {
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
