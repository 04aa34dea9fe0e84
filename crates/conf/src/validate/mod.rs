//! Validation of a parsed domain: libvirt's generic checks with libvirt's
//! texts (`domain_validate.c`), a hook for driver checks (the QEMU driver's
//! live in `teamvirt_qemu::validate`), and teaming checks libvirt does not
//! make ([`teaming`]).
//!
//! Order is libvirt's: the driver's domain check, then per device (disks,
//! interfaces, hostdevs, ...) the driver's device check followed by the
//! generic one, then alias uniqueness. Like libvirt, only the first of
//! these errors is reported; teamvirt's own checks and all warnings are
//! collected after it.

pub mod teaming;

use crate::diag::{prefix, unsupported, Diagnostic, Severity};
use crate::model::*;

/// Driver-specific checks, called in libvirt's order. Each returns the
/// first problem found.
pub trait DriverValidator {
    /// libvirt's `domainValidateCallback`.
    fn domain(&self, _def: &DomainDef) -> Result<(), Diagnostic> {
        Ok(())
    }
    /// libvirt's `deviceValidateCallback` for an `<interface>`.
    fn interface(&self, _def: &DomainDef, _net: &Interface) -> Result<(), Diagnostic> {
        Ok(())
    }
    /// libvirt's `deviceValidateCallback` for a `<hostdev>`.
    fn hostdev(&self, _def: &DomainDef, _hostdev: &Hostdev) -> Result<(), Diagnostic> {
        Ok(())
    }
}

/// Generic checks only.
pub struct NoDriver;

impl DriverValidator for NoDriver {}

/// libvirt's checks: the first error, if any.
pub fn libvirt_checks(def: &DomainDef, driver: &dyn DriverValidator) -> Result<(), Diagnostic> {
    driver.domain(def)?;
    // virDomainDeviceInfoIterate order: disks, nets, sounds, hostdevs, ...
    for net in &def.devices.interfaces {
        driver.interface(def, net)?;
        net_def(net)?;
    }
    // libvirt keeps an <interface type='hostdev'> in its hostdev list too
    // (ahead of the plain ones), so its guest address is checked as one.
    for net in &def.devices.interfaces {
        if net.type_ == InterfaceType::Hostdev {
            hostdev_guest_address("pci", &net.info)?;
        }
    }
    for h in &def.devices.hostdevs {
        driver.hostdev(def, h)?;
        hostdev_def(h)?;
    }
    aliases_unique(def)
}

/// Everything: libvirt's first error, teamvirt's own errors, then all
/// warnings (each with a hint). Diagnostics carry positions, not files.
pub fn validate_domain(def: &DomainDef, driver: &dyn DriverValidator) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Err(e) = libvirt_checks(def, driver) {
        out.push(e);
    }
    out.extend(teaming::checks(def));
    out.sort_by_key(|d| d.severity != Severity::Error);
    out
}

/// `virDomainNetDefValidate`: the teaming part.
pub fn net_def(net: &Interface) -> Result<(), Diagnostic> {
    if let Some(t) = &net.teaming {
        match t.type_ {
            TeamingType::Transient if t.persistent.is_none() => {
                return Err(unsupported(
                    "teaming-transient-no-persistent",
                    "teaming persistent attribute must be set if teaming type is 'transient'",
                )
                .at(t.pos));
            }
            TeamingType::Persistent if t.persistent.is_some() => {
                return Err(unsupported(
                    "teaming-persistent-with-persistent",
                    "teaming persistent attribute not allowed if teaming type is 'persistent'",
                )
                .at(t.pos));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `virDomainHostdevDefValidate`'s guest address check for a host device
/// of subsystem `subsys`.
fn hostdev_guest_address(subsys: &str, info: &DeviceInfo) -> Result<(), Diagnostic> {
    let Some(a) = &info.address else {
        return Ok(());
    };
    let t = a.type_str();
    let err = match subsys {
        "pci" if !matches!(t, "pci" | "unassigned") => Diagnostic::error(
            "hostdev-address-type",
            format!(
                "{}PCI host devices must use 'pci' or 'unassigned' address type",
                prefix::INTERNAL_ERROR
            ),
        ),
        "usb" if t != "usb" => unsupported(
            "hostdev-address-type",
            "USB host device must use 'usb' address type",
        ),
        _ => return Ok(()),
    };
    Err(err.at(a.pos()))
}

/// `virDomainHostdevDefValidate`: the guest address type, then teaming
/// (plain `<hostdev>`).
pub fn hostdev_def(h: &Hostdev) -> Result<(), Diagnostic> {
    if h.mode == "subsystem" {
        hostdev_guest_address(&h.type_, &h.info)?;
    }
    if let Some(t) = &h.teaming {
        if t.type_ != TeamingType::Transient {
            return Err(unsupported(
                "teaming-hostdev-not-transient",
                "teaming hostdev devices must have type='transient'",
            )
            .at(t.pos));
        }
        if t.persistent.is_none() {
            return Err(unsupported(
                "teaming-hostdev-no-persistent",
                "missing required persistent attribute in hostdev teaming element",
            )
            .at(t.pos));
        }
        if !h.is_pci_subsystem() {
            return Err(unsupported(
                "teaming-hostdev-not-pci",
                "teaming is only supported for pci hostdev devices",
            )
            .at(t.pos));
        }
    }
    Ok(())
}

/// Every device's info with its kind, in libvirt's iteration order.
pub fn device_infos(def: &DomainDef) -> Vec<(&'static str, &DeviceInfo)> {
    let d = &def.devices;
    let mut v: Vec<(&'static str, &DeviceInfo)> = Vec::new();
    v.extend(d.disks.iter().map(|x| ("disk", &x.info)));
    v.extend(d.interfaces.iter().map(|x| ("interface", &x.info)));
    v.extend(d.hostdevs.iter().map(|x| ("hostdev", &x.info)));
    v.extend(d.videos.iter().map(|x| ("video", &x.info)));
    v.extend(d.controllers.iter().map(|x| ("controller", &x.info)));
    v.extend(d.serials.iter().map(|x| ("serial", &x.info)));
    // The first console may be libvirt's copy of the first serial port and
    // shares its alias; libvirt skips it.
    v.extend(
        d.consoles
            .iter()
            .enumerate()
            .filter(|(i, c)| {
                let target = c.target.as_ref().and_then(|t| t.type_.as_deref());
                !(*i == 0 && matches!(target, None | Some("serial")))
            })
            .map(|(_, x)| ("console", &x.info)),
    );
    v.extend(d.inputs.iter().map(|x| ("input", &x.info)));
    v.extend(d.watchdogs.iter().map(|x| ("watchdog", &x.info)));
    v.extend(d.memballoon.iter().map(|x| ("memballoon", &x.info)));
    v.extend(d.panics.iter().map(|x| ("panic", &x.info)));
    v
}

/// `virDomainDefValidateAliases`: user aliases must be unique.
pub fn aliases_unique(def: &DomainDef) -> Result<(), Diagnostic> {
    let mut seen = std::collections::HashSet::new();
    for (_, info) in device_infos(def) {
        if let Some(a) = &info.alias {
            if a.name.starts_with("ua-") && !seen.insert(a.name.as_str()) {
                return Err(unsupported(
                    "alias-not-unique",
                    format!("non unique alias detected: {}", a.name),
                )
                .at(a.pos));
            }
        }
    }
    Ok(())
}
