//! Attribute readers with libvirt's error texts, and the parsers of pieces
//! shared by many elements (addresses, device info, MAC, teaming, ...).

use super::{Ctx, El};
use crate::diag::{prefix, Diagnostic, Pos};
use crate::error::ConfError;
use crate::model::*;

type R<T> = Result<T, ConfError>;

/// libvirt's `virStrToLong_uip`-style parse: optional leading whitespace, no
/// sign, base 0 (`0x` hex, leading `0` octal) / 10 / 16, whole string.
pub(crate) fn parse_uint(s: &str, base: u32) -> Option<u64> {
    let t = s.trim_start();
    if t.starts_with('-') {
        return None;
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let (digits, radix) = match base {
        0 => {
            if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                (h, 16)
            } else if t.len() > 1 && t.starts_with('0') {
                (&t[1..], 8)
            } else {
                (t, 10)
            }
        }
        16 => (
            t.strip_prefix("0x")
                .or_else(|| t.strip_prefix("0X"))
                .unwrap_or(t),
            16,
        ),
        b => (t, b),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn invalid_value(el: &El, name: &str, value: &str, tail: &str) -> String {
    format!(
        "Invalid value for attribute '{name}' in element '{}': '{value}'.{tail}",
        el.name()
    )
}

/// `virXMLPropUInt`: unsigned attribute in `base`, range-checked to u32.
pub(crate) fn opt_u32(el: &mut El, cx: &Ctx, name: &str, base: u32) -> R<Option<u32>> {
    opt_u64_max(el, cx, name, base, u32::MAX as u64).map(|v| v.map(|v| v as u32))
}

pub(crate) fn opt_u64_max(
    el: &mut El,
    cx: &Ctx,
    name: &str,
    base: u32,
    max: u64,
) -> R<Option<u64>> {
    let Some(v) = el.attr(name) else {
        return Ok(None);
    };
    match parse_uint(v, base) {
        Some(n) if n <= max => Ok(Some(n)),
        _ => Err(cx.xml_error(
            "invalid-attribute",
            invalid_value(el, name, v, " Expected non-negative integer value"),
            el.attr_pos(name, cx),
        )),
    }
}

/// Unsigned attribute that must not be zero when present.
pub(crate) fn opt_u32_nonzero(el: &mut El, cx: &Ctx, name: &str, base: u32) -> R<Option<u32>> {
    let v = opt_u32(el, cx, name, base)?;
    if v == Some(0) {
        return Err(cx.xml_error(
            "invalid-attribute",
            format!(
                "Invalid value for attribute '{name}' in element '{}': Zero is not permitted",
                el.name()
            ),
            el.attr_pos(name, cx),
        ));
    }
    Ok(v)
}

pub(crate) fn missing_attr(el: &El, cx: &Ctx, name: &str) -> ConfError {
    cx.xml_error(
        "missing-attribute",
        format!(
            "Missing required attribute '{name}' in element '{}'",
            el.name()
        ),
        el.pos,
    )
}

/// Required string attribute (`virXMLPropStringRequired`).
pub(crate) fn req_str(el: &mut El, cx: &Ctx, name: &str) -> R<String> {
    el.attr(name)
        .map(str::to_string)
        .ok_or_else(|| missing_attr(el, cx, name))
}

pub(crate) fn opt_str(el: &mut El, name: &str) -> Option<String> {
    el.attr(name).map(str::to_string)
}

/// Invalid enum value (`virXMLPropEnum`).
pub(crate) fn invalid_enum(el: &El, cx: &Ctx, name: &str, value: &str) -> ConfError {
    cx.xml_error(
        "invalid-attribute",
        invalid_value(el, name, value, ""),
        el.attr_pos(name, cx),
    )
}

/// `virXMLPropTristateBool`: `yes`/`no`.
pub(crate) fn opt_yes_no(el: &mut El, cx: &Ctx, name: &str) -> R<Option<bool>> {
    opt_bool_pair(el, cx, name, "yes", "no")
}

/// `virXMLPropTristateSwitch`: `on`/`off`.
pub(crate) fn opt_on_off(el: &mut El, cx: &Ctx, name: &str) -> R<Option<bool>> {
    opt_bool_pair(el, cx, name, "on", "off")
}

fn opt_bool_pair(el: &mut El, cx: &Ctx, name: &str, t: &str, f: &str) -> R<Option<bool>> {
    match el.attr(name) {
        None => Ok(None),
        Some(v) if v == t => Ok(Some(true)),
        Some(v) if v == f => Ok(Some(false)),
        Some(v) => Err(invalid_enum(el, cx, name, v)),
    }
}

/// Keep what was not consumed.
pub(crate) fn finish(el: El, cx: &mut Ctx) -> (Vec<RawAttr>, Vec<RawElement>) {
    el.finish(cx)
}

/// Host or guest PCI address attributes (`virPCIDeviceAddressParseXML`).
/// A host PCI device in a hostdev `<source>` (libvirt's
/// `virPCIDeviceAddressParseXML`), for `<hostdev>` and `<interface
/// type='hostdev'>` alike. libvirt does not look at its `type` attribute
/// here: `<interface>` takes the subsystem from it beforehand (see
/// `interface::hostdev_source_type`), `<hostdev>` from its own `type`.
pub(crate) fn host_pci_address(mut el: El, cx: &mut Ctx) -> R<PciAddress> {
    el.attr("type");
    let addr = pci_address(&mut el, cx)?;
    finish(el, cx);
    Ok(addr)
}

pub(crate) fn pci_address(el: &mut El, cx: &Ctx) -> R<PciAddress> {
    let domain = opt_u32(el, cx, "domain", 0)?.unwrap_or(0);
    let bus = opt_u32(el, cx, "bus", 0)?.unwrap_or(0);
    let slot = opt_u32(el, cx, "slot", 0)?.unwrap_or(0);
    let function = opt_u32(el, cx, "function", 0)?.unwrap_or(0);
    let multifunction = opt_on_off(el, cx, "multifunction")?;
    let empty = domain == 0 && bus == 0 && slot == 0;
    if !empty {
        let bad = if bus > 0xff {
            Some(format!(
                "Invalid PCI address bus='0x{bus:x}', must be <= 0xFF"
            ))
        } else if slot > 0x1f {
            Some(format!(
                "Invalid PCI address slot='0x{slot:x}', must be <= 0x1F"
            ))
        } else if function > 7 {
            Some(format!(
                "Invalid PCI address function=0x{function:x}, must be <= 7"
            ))
        } else {
            None
        };
        if let Some(msg) = bad {
            return Err(cx.xml_error("invalid-pci-address", msg, el.pos));
        }
    } else if bus > 0xff || slot > 0x1f || function > 7 {
        // Only function can be non-zero here; libvirt would not notice, but a
        // u8 cannot hold it: refuse with libvirt's text for that field.
        return Err(cx.xml_error(
            "invalid-pci-address",
            format!("Invalid PCI address function=0x{function:x}, must be <= 7"),
            el.pos,
        ));
    }
    Ok(PciAddress {
        domain,
        bus: bus as u8,
        slot: slot as u8,
        function: function as u8,
        multifunction,
        pos: el.pos,
    })
}

/// A guest `<address type=...>` (`virDomainDeviceAddressParseXML`).
pub(crate) fn address(mut el: El, cx: &mut Ctx) -> R<Address> {
    let pos = el.pos;
    let Some(type_) = el.attr("type") else {
        return Err(cx.xml_error(
            "address-no-type",
            "No type specified for device address",
            pos,
        ));
    };
    let addr = match type_ {
        "pci" => Address::Pci(pci_address(&mut el, cx)?),
        "drive" => Address::Drive(DriveAddress {
            controller: opt_u32(&mut el, cx, "controller", 10)?.unwrap_or(0),
            bus: opt_u32(&mut el, cx, "bus", 10)?.unwrap_or(0),
            target: opt_u32(&mut el, cx, "target", 10)?.unwrap_or(0),
            unit: opt_u32(&mut el, cx, "unit", 10)?.unwrap_or(0),
            pos,
        }),
        "ccw" => Address::Ccw(CcwAddress {
            cssid: opt_u32(&mut el, cx, "cssid", 0)?.unwrap_or(0),
            ssid: opt_u32(&mut el, cx, "ssid", 0)?.unwrap_or(0),
            devno: opt_u32(&mut el, cx, "devno", 0)?.unwrap_or(0),
            pos,
        }),
        "usb" => Address::Usb(UsbAddress {
            bus: opt_u32(&mut el, cx, "bus", 10)?.unwrap_or(0),
            port: opt_str(&mut el, "port"),
            pos,
        }),
        "virtio-serial" => Address::VirtioSerial(VirtioSerialAddress {
            controller: opt_u32(&mut el, cx, "controller", 10)?.unwrap_or(0),
            bus: opt_u32(&mut el, cx, "bus", 10)?.unwrap_or(0),
            port: opt_u32(&mut el, cx, "port", 10)?.unwrap_or(0),
            pos,
        }),
        "unassigned" => Address::Unassigned { pos },
        "ccid" | "spapr-vio" | "virtio-s390" | "virtio-mmio" | "isa" | "dimm" => {
            let t = type_.to_string();
            let attrs: Vec<RawAttr> = el
                .node
                .attributes()
                .filter(|a| a.name() != "type")
                .map(|a| RawAttr {
                    name: a.name().to_string(),
                    value: a.value().to_string(),
                    pos: cx.pos_at(a.range().start),
                })
                .collect();
            let names: Vec<String> = attrs.iter().map(|a| a.name.clone()).collect();
            for n in &names {
                el.attr(n);
            }
            let extra = el.rest_children().into_iter().map(|n| cx.raw(n)).collect();
            return Ok(Address::Other(OtherAddress {
                type_: t,
                attrs,
                extra,
                pos,
            }));
        }
        other => return Err(invalid_enum(&el, cx, "type", other)),
    };
    finish(el, cx);
    Ok(addr)
}

/// Whether libvirt keeps a user alias on an inactive parse.
pub fn is_valid_user_alias(name: &str) -> bool {
    name.starts_with("ua-")
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Device info children of `el`: `<alias>`, `<boot>`, `<rom>`, `<acpi>`,
/// `<address>` (`virDomainDeviceInfoParseXML`, inactive parse).
pub(crate) fn device_info(el: &mut El, cx: &mut Ctx) -> R<DeviceInfo> {
    let mut info = DeviceInfo::default();
    if let Some(mut a) = el.child("alias", cx) {
        if let Some(name) = a.attr("name").filter(|n| !n.is_empty()) {
            let alias = Alias {
                name: name.to_string(),
                pos: a.pos,
            };
            if is_valid_user_alias(name) {
                info.alias = Some(alias);
            } else {
                info.dropped_alias = Some(alias);
            }
        }
        finish(a, cx);
    }
    if let Some(mut b) = el.child("boot", cx) {
        let order = opt_u32_nonzero(&mut b, cx, "order", 10)?
            .ok_or_else(|| missing_attr(&b, cx, "order"))?;
        let loadparm = opt_str(&mut b, "loadparm");
        info.boot = Some(BootOrder {
            order,
            loadparm,
            pos: b.pos,
        });
        finish(b, cx);
    }
    if let Some(mut r) = el.child("rom", cx) {
        info.rom = Some(Rom {
            enabled: opt_yes_no(&mut r, cx, "enabled")?,
            bar: opt_on_off(&mut r, cx, "bar")?,
            file: opt_str(&mut r, "file"),
            pos: r.pos,
        });
        finish(r, cx);
    }
    if let Some(mut a) = el.child("acpi", cx) {
        info.acpi_index = opt_u32(&mut a, cx, "index", 10)?;
        finish(a, cx);
    }
    if let Some(a) = el.child("address", cx) {
        info.address = Some(address(a, cx)?);
    }
    Ok(info)
}

/// `<mac address=...>` (`virMacAddrParse` + libvirt's messages). `None`
/// when the address is absent (a later stage generates one, like libvirt).
pub(crate) fn mac(mut el: El, cx: &mut Ctx) -> R<Option<Mac>> {
    let pos = el.pos;
    let Some(addr) = el.attr("address") else {
        finish(el, cx);
        return Ok(None);
    };
    let address: MacAddr = addr.parse().map_err(|_| {
        cx.error(
            "invalid-mac",
            format!(
                "{}unable to parse mac address '{addr}'",
                prefix::INTERNAL_ERROR
            ),
            el.attr_pos("address", cx),
        )
    })?;
    if address.is_multicast() {
        return Err(cx.xml_error(
            "invalid-mac",
            format!("expected unicast mac address, found multicast '{addr}'"),
            el.attr_pos("address", cx),
        ));
    }
    let type_ = opt_str(&mut el, "type");
    let check = opt_str(&mut el, "check");
    finish(el, cx);
    Ok(Some(Mac {
        address,
        type_,
        check,
        pos,
    }))
}

/// `<uuid>` text.
pub(crate) fn uuid(text: &str, pos: Pos, cx: &Ctx) -> R<Uuid> {
    text.parse().map_err(|_| {
        cx.error(
            "invalid-uuid",
            format!("{}malformed uuid element", prefix::INTERNAL_ERROR),
            pos,
        )
    })
}

/// `<teaming>` (`virDomainNetTeamingInfoParseXML`): `Ok(None)` when both
/// attributes are absent or empty (libvirt ignores such an element; a
/// warning says so).
pub(crate) fn teaming(parent: &mut El, cx: &mut Ctx) -> R<Option<Teaming>> {
    let Some(mut t) = parent.child("teaming", cx) else {
        return Ok(None);
    };
    let pos = t.pos;
    let type_ = t.attr("type").filter(|s| !s.is_empty());
    let persistent = t
        .attr("persistent")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if type_.is_none() && persistent.is_none() {
        finish(t, cx);
        cx.warn(
            Diagnostic::warning(
                "teaming-ignored",
                "<teaming> without type or persistent attribute is ignored (libvirt drops it silently)",
                "add type='persistent' (standby virtio NIC) or type='transient' persistent='ua-...' (VF)",
            )
            .at(pos),
        );
        return Ok(None);
    }
    let type_ = match type_ {
        Some("persistent") => TeamingType::Persistent,
        Some("transient") => TeamingType::Transient,
        other => {
            return Err(ConfError::from(
                crate::diag::unsupported(
                    "teaming-unknown-type",
                    format!("unknown teaming type '{}'", other.unwrap_or("(null)")),
                )
                .at(pos),
            ))
        }
    };
    finish(t, cx);
    Ok(Some(Teaming {
        type_,
        persistent,
        pos,
    }))
}

/// `<vlan>` (`virNetDevVlanParse`).
pub(crate) fn vlan(mut el: El, cx: &mut Ctx) -> R<Vlan> {
    let pos = el.pos;
    let trunk = opt_yes_no(&mut el, cx, "trunk")?;
    let mut tags = Vec::new();
    for mut t in el.children("tag", cx) {
        let id = opt_u32(&mut t, cx, "id", 10)?.ok_or_else(|| {
            cx.xml_error(
                "vlan-tag-missing-id",
                "missing or invalid vlan tag id attribute",
                t.pos,
            )
        })?;
        if id > 4095 {
            return Err(cx.xml_error(
                "vlan-tag-range",
                format!("vlan tag id {id} too large (maximum 4095)"),
                t.pos,
            ));
        }
        let native_mode = opt_str(&mut t, "nativeMode");
        tags.push(VlanTag {
            id,
            native_mode,
            pos: t.pos,
        });
        finish(t, cx);
    }
    if tags.is_empty() {
        return Err(cx.xml_error("vlan-no-tag", "missing vlan tag data", pos));
    }
    finish(el, cx);
    Ok(Vlan { trunk, tags, pos })
}

/// `<virtualport>` (parameters kept as strings).
pub(crate) fn virtualport(mut el: El, cx: &mut Ctx) -> R<VirtualPort> {
    let pos = el.pos;
    let type_ = opt_str(&mut el, "type");
    let parameters = match el.child("parameters", cx) {
        Some(mut p) => {
            let params = VirtualPortParams {
                managerid: opt_str(&mut p, "managerid"),
                typeid: opt_str(&mut p, "typeid"),
                typeidversion: opt_str(&mut p, "typeidversion"),
                instanceid: opt_str(&mut p, "instanceid"),
                interfaceid: opt_str(&mut p, "interfaceid"),
                profileid: opt_str(&mut p, "profileid"),
                extra_attrs: Vec::new(),
                pos: p.pos,
            };
            let (extra_attrs, _) = finish(p, cx);
            Some(VirtualPortParams {
                extra_attrs,
                ..params
            })
        }
        None => None,
    };
    finish(el, cx);
    Ok(VirtualPort {
        type_,
        parameters,
        pos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_bases() {
        assert_eq!(parse_uint("0x1f", 0), Some(31));
        assert_eq!(parse_uint("010", 0), Some(8));
        assert_eq!(parse_uint("10", 0), Some(10));
        assert_eq!(parse_uint("0", 0), Some(0));
        assert_eq!(parse_uint(" 7", 10), Some(7));
        assert_eq!(parse_uint("7 ", 10), None);
        assert_eq!(parse_uint("-1", 10), None);
        assert_eq!(parse_uint("", 10), None);
        assert_eq!(parse_uint("0x", 0), None);
        assert_eq!(parse_uint("99999999999999999999999", 10), None);
        assert_eq!(parse_uint("ff", 16), Some(255));
    }

    #[test]
    fn user_alias() {
        assert!(is_valid_user_alias("ua-backup0"));
        assert!(is_valid_user_alias("ua-a_b-C"));
        assert!(!is_valid_user_alias("backup0"));
        assert!(!is_valid_user_alias("ua-a.b"));
        assert!(!is_valid_user_alias("ua-a b"));
    }
}
