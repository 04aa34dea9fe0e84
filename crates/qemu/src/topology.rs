//! Placement checks libvirt does not make (issue 3 item 8): a failover
//! primary QEMU can never plug, and a q35 guest without ACPI whose every
//! migration waits longer for the unplug. Run on a domain after
//! define-time defaults (addresses assigned); libvirt's addresses are kept
//! as they are — guest ABI must match libvirt's for the same XML — and the
//! user is told what to change.

use teamvirt_conf::model::{DomainDef, InterfaceType, PciAddress, TeamingType};
use teamvirt_conf::{Diagnostic, Pos};

use crate::machine::is_q35;
use crate::resolve::ActualNet;

/// Codes of the warnings below.
pub mod codes {
    pub const CONVENTIONAL_PCI: &str = "teaming-primary-conventional-pci";
    pub const ROOT_BUS: &str = "teaming-primary-root-bus";
    pub const HOTPLUG_OFF: &str = "teaming-primary-hotplug-off";
    pub const MULTIFUNCTION: &str = "teaming-primary-multifunction";
    pub const RAMFB: &str = "teaming-primary-ramfb";
    pub const DEFAULT_MODEL: &str = "teaming-transient-default-model";
    pub const Q35_NO_ACPI: &str = "teaming-q35-no-acpi";
}

/// Whether a warning with `code` means the VM cannot work at all (so
/// `start` refuses it); the ACPI one only slows migration down.
pub fn fatal_at_start(code: &str) -> bool {
    code.starts_with("teaming-") && code != codes::Q35_NO_ACPI
}

struct Primary<'a> {
    /// How the user recognises it: `<interface>` MAC or `<hostdev>` source.
    what: String,
    addr: Option<&'a PciAddress>,
    pos: Pos,
    ramfb: bool,
    /// Transient `<interface type='network'>` whose model libvirt defaulted.
    defaulted_model: bool,
}

fn primaries<'a>(def: &'a DomainDef, actual: &[ActualNet]) -> Vec<Primary<'a>> {
    let mut out = Vec::new();
    for (i, n) in def.devices.interfaces.iter().enumerate() {
        if n.teaming_type() != Some(TeamingType::Transient) {
            continue;
        }
        let is_vf = n.type_ == InterfaceType::Hostdev
            || actual
                .get(i)
                .is_some_and(|a| a.type_ == InterfaceType::Hostdev);
        if !is_vf && n.type_ != InterfaceType::Network {
            continue;
        }
        let mac = n
            .mac
            .as_ref()
            .map(|m| m.address.to_string())
            .unwrap_or_default();
        out.push(Primary {
            what: format!("<interface type='{}'> {mac}", n.type_.as_str()),
            addr: n.info.pci_address(),
            pos: n.pos,
            ramfb: false,
            defaulted_model: n.type_ == InterfaceType::Network
                && n.model
                    .as_ref()
                    .is_some_and(|m| !m.pos.is_known() && !n.is_virtio()),
        });
    }
    for h in &def.devices.hostdevs {
        if h.teaming.as_ref().map(|t| t.type_) != Some(TeamingType::Transient) {
            continue;
        }
        let src = h.source.pci.map(|p| p.to_string()).unwrap_or_default();
        out.push(Primary {
            what: format!("<hostdev> {src}"),
            addr: h.info.pci_address(),
            pos: h.pos,
            ramfb: h.ramfb == Some(true),
            defaulted_model: false,
        });
    }
    out
}

/// All beyond-libvirt topology warnings for `def`.
pub fn check(def: &DomainDef, actual: &[ActualNet]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let prims = primaries(def, actual);
    for p in &prims {
        if p.defaulted_model {
            out.push(
                Diagnostic::warning(
                    codes::DEFAULT_MODEL,
                    format!(
                        "failover primary {} has no <model type='virtio'/>: libvirt gives it the default model rtl8139, a conventional PCI device, so on q35 its address is behind a pcie-to-pci-bridge; the VF later takes that address and QEMU can never plug it there",
                        p.what
                    ),
                    "add <model type='virtio'/> to the transient interface (and drop its <address>) so it is placed on a pcie-root-port",
                )
                .at(p.pos),
            );
            continue;
        }
        if p.ramfb {
            out.push(
                Diagnostic::warning(
                    codes::RAMFB,
                    format!("failover primary {} has ramfb='on', which makes it vfio-pci-nohotplug: QEMU can never hot-plug it", p.what),
                    "remove ramfb='on' (and display='on') from the teaming hostdev",
                )
                .at(p.pos),
            );
        }
        let Some(a) = p.addr else { continue };
        if a.function != 0 || a.multifunction == Some(true) {
            out.push(
                Diagnostic::warning(
                    codes::MULTIFUNCTION,
                    format!(
                        "failover primary {} is at function {} of slot 0x{:02x}{}: QEMU requires a primary in its own PCI slot (\"failover: primary device must be in its own PCI slot\")",
                        p.what,
                        a.function,
                        a.slot,
                        if a.multifunction == Some(true) { " with multifunction='on'" } else { "" }
                    ),
                    "give the primary function 0 of a slot of its own, without multifunction='on'",
                )
                .at(p.pos),
            );
        }
        let bus = def
            .devices
            .controllers
            .iter()
            .find(|c| c.type_ == "pci" && c.index == Some(u32::from(a.bus)));
        let model = bus.and_then(|c| c.model.as_deref()).unwrap_or("pci-root");
        match model {
            "pcie-root" => out.push(
                Diagnostic::warning(
                    codes::ROOT_BUS,
                    format!(
                        "failover primary {} is on pcie.0, which does not support hotplug: QEMU refuses to start it (\"Bus 'pcie.0' does not support hotplugging\")",
                        p.what
                    ),
                    "remove the primary's <address> so it is placed on a pcie-root-port",
                )
                .at(p.pos),
            ),
            "pci-root" | "pci-bridge" | "pcie-to-pci-bridge" | "dmi-to-pci-bridge" | "pci-expander-bus" => {
                let bus_name = if a.bus == 0 { "pci.0".to_string() } else { format!("pci.{} ({model})", a.bus) };
                let hint = if is_q35(def.machine().unwrap_or_default()) {
                    "remove the primary's <address> so it is placed on a pcie-root-port"
                } else {
                    "use a q35 machine type: a failover primary needs a hot-pluggable PCI Express slot"
                };
                out.push(
                    Diagnostic::warning(
                        codes::CONVENTIONAL_PCI,
                        format!(
                            "failover primary {} is on conventional PCI bus {bus_name}: QEMU can only plug a primary into a PCI Express slot (\"failover primary device must be on PCIExpress bus\"), so the guest never sees the VF",
                            p.what
                        ),
                        hint,
                    )
                    .at(p.pos),
                );
            }
            "pcie-root-port" | "pcie-switch-downstream-port"
                if bus.and_then(|c| c.target.as_ref()).and_then(|t| t.hotplug) == Some(false) =>
            {
                {
                    out.push(
                        Diagnostic::warning(
                            codes::HOTPLUG_OFF,
                            format!(
                                "failover primary {} is on pci.{}, a {model} with <target hotplug='off'/>: QEMU can never plug it there",
                                p.what, a.bus
                            ),
                            "remove hotplug='off' from that controller or move the primary to another port",
                        )
                        .at(p.pos),
                    );
                }
            }
            _ => {}
        }
    }
    let q35 = is_q35(def.machine().unwrap_or_default());
    let acpi = def.features.as_ref().is_some_and(|f| f.acpi);
    if q35 && !acpi && !prims.is_empty() {
        out.push(
            Diagnostic::warning(
                codes::Q35_NO_ACPI,
                "q35 domain with failover pairs has no <features><acpi/></features>: the guest uses native PCIe hotplug, and every migration waits about 5 s more for the primary's unplug",
                "add <features><acpi/></features>",
            )
            .at(def.pos),
        );
    }
    out
}
