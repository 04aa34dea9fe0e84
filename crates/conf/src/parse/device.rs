//! A single device document, as `virsh attach-device` / `detach-device`
//! read it (libvirt `virDomainDeviceDefParse`): `<interface>` or
//! `<hostdev>` at the root, parsed exactly as inside `<devices>`, so the
//! errors carry libvirt's texts and this file's line and column.

use std::path::Path;

use super::{devices, interface, parse_document_nested, Ctx, El};
use crate::diag::Diagnostic;
use crate::error::ConfError;
use crate::model::{DeviceInfo, Hostdev, Interface};

/// A device teamvirt can hot(un)plug.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one value per command: size does not matter
pub enum DeviceDef {
    Interface(Interface),
    Hostdev(Hostdev),
}

impl DeviceDef {
    /// Parse device XML text; `file` only labels diagnostics.
    pub fn parse_str(
        text: &str,
        file: Option<&Path>,
    ) -> Result<(DeviceDef, Vec<Diagnostic>), ConfError> {
        super::with_file(file, || {
            // It will live in <domain><devices>: two levels of the
            // domain's depth limit are taken.
            let doc = parse_document_nested(text, 2)?;
            let mut cx = Ctx::new(text);
            let root = doc.root_element();
            let el = El::new(root, &cx);
            let name = if root.tag_name().namespace().is_none() {
                root.tag_name().name()
            } else {
                ""
            };
            let dev = match name {
                "interface" => DeviceDef::Interface(interface::interface(el, &mut cx)?),
                "hostdev" => DeviceDef::Hostdev(devices::hostdev(el, &mut cx)?),
                _ => {
                    return Err(cx.error(
                        "unsupported-device",
                        format!(
                            "unsupported configuration: teamvirt hotplugs <interface> and <hostdev> devices only, not <{}>",
                            el.name()
                        ),
                        el.pos,
                    ))
                }
            };
            Ok((dev, cx.warnings))
        })
    }

    /// Load and parse a device XML file (size cap, UTF-8, no DTD).
    pub fn load(path: &Path) -> Result<(DeviceDef, Vec<Diagnostic>), ConfError> {
        let text = super::read_xml_file(path)?;
        Self::parse_str(&text, Some(path))
    }

    pub fn info(&self) -> &DeviceInfo {
        match self {
            DeviceDef::Interface(i) => &i.info,
            DeviceDef::Hostdev(h) => &h.info,
        }
    }

    pub fn info_mut(&mut self) -> &mut DeviceInfo {
        match self {
            DeviceDef::Interface(i) => &mut i.info,
            DeviceDef::Hostdev(h) => &mut h.info,
        }
    }

    /// `interface` or `hostdev`.
    pub fn element(&self) -> &'static str {
        match self {
            DeviceDef::Interface(_) => "interface",
            DeviceDef::Hostdev(_) => "hostdev",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_and_hostdev_roots() {
        let (d, _) = DeviceDef::parse_str(
            "<interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/><teaming type='persistent'/></interface>",
            None,
        )
        .unwrap();
        assert!(matches!(d, DeviceDef::Interface(ref i) if i.teaming.is_some()));
        let (d, _) = DeviceDef::parse_str(
            "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0' bus='6' slot='0x12' function='2'/></source></hostdev>",
            None,
        )
        .unwrap();
        assert_eq!(d.element(), "hostdev");
    }

    #[test]
    fn errors_carry_libvirt_text_and_position() {
        let e = DeviceDef::parse_str(
            "<interface>\n  <mac/>\n</interface>",
            Some(Path::new("n.xml")),
        )
        .unwrap_err()
        .to_diagnostic(Some(Path::new("n.xml")));
        assert!(e.message.contains("type"), "{}", e.message);
        let e = DeviceDef::parse_str("\n <disk type='file'/>", None)
            .unwrap_err()
            .to_diagnostic(None);
        assert!(
            e.message.starts_with("unsupported configuration:"),
            "{}",
            e.message
        );
        assert_eq!(e.pos.map(|p| (p.line, p.col)), Some((2, 2)));
    }
}
