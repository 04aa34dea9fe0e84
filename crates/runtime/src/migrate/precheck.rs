//! What must hold before anything moves (libvirt `qemuMigrationSrcIsAllowed`
//! and `qemuMigrationSrcIsAllowedHostdev`, v10.7.0 qemu_migration.c l.1319
//! and l.1427), with libvirt's texts:
//!
//! * a host device that is not a teaming transient cannot migrate (its
//!   state lives in hardware QEMU cannot copy); a transient is unplugged by
//!   QEMU before the copy and a VF is plugged again on the destination;
//! * QEMU's own migration blockers (`query-migrate` `blocked-reasons`).
//!
//! libvirt asks QEMU *instead of* checking hostdevs when QEMU reports
//! blockers; teamvirt does both, hostdevs first, because its texts point
//! at the offending element of the live XML.

use std::path::Path;

use teamvirt_conf::diag::Diagnostic;
use teamvirt_conf::model::{InterfaceType, TeamingType};
use teamvirt_conf::DomainDef;
use teamvirt_qmp::MigrationInfo;

/// Hostdevs that block the migration, libvirt's first one first.
/// `actual_hostdev_network(name)` tells whether `<source network=name>`
/// resolves to a VF pool (its interfaces are then hostdevs at run time).
pub fn hostdev_blockers(
    def: &DomainDef,
    file: Option<&Path>,
    actual_hostdev_network: &dyn Fn(&str) -> bool,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let unsupported = |msg: String, pos| {
        Diagnostic::error("migrate-hostdev", format!("Operation not supported: {msg}"))
            .at(pos)
            .with_file(file.map(Path::to_path_buf))
            .with_hint("detach the device before migrating, or make it a teaming transient (<teaming type='transient' persistent='ua-...'/>) paired with a virtio standby")
    };
    for net in &def.devices.interfaces {
        let actual = match net.type_ {
            InterfaceType::Hostdev => Some("hostdev"),
            InterfaceType::Network if net.source_network().is_some_and(actual_hostdev_network) => {
                Some("hostdev")
            }
            _ => None,
        };
        let Some(actual) = actual else { continue };
        if net.teaming_type() == Some(TeamingType::Transient) {
            continue;
        }
        out.push(unsupported(
            format!("cannot migrate a domain with <interface type='{actual}'>"),
            net.pos,
        ));
    }
    for h in &def.devices.hostdevs {
        let msg = match h.mode.as_str() {
            "capabilities" => {
                "cannot migrate a domain with <hostdev mode='capabilities'>".to_owned()
            }
            _ => match h.type_.as_str() {
                "usb" => continue,
                "pci" if h.teaming.as_ref().map(|t| t.type_) == Some(TeamingType::Transient) => {
                    continue
                }
                t => format!("cannot migrate a domain with <hostdev mode='subsystem' type='{t}'>"),
            },
        };
        out.push(unsupported(msg, h.pos));
    }
    out
}

/// `query-migrate`'s `blocked-reasons` as libvirt reports them
/// (`cannot migrate domain: A; B`), or `None` when nothing blocks.
pub fn blocked_reasons(query_migrate: &MigrationInfo) -> Option<String> {
    let reasons = &query_migrate.blocked_reasons;
    (!reasons.is_empty()).then(|| {
        format!(
            "Requested operation is not valid: cannot migrate domain: {}",
            reasons.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(devices: &str) -> DomainDef {
        let xml = format!(
            "<domain type='qemu'><name>vm</name><memory>262144</memory><os><type arch='x86_64' machine='q35'>hvm</type></os><devices>{devices}</devices></domain>"
        );
        DomainDef::parse_str(&xml, None)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .0
    }

    fn texts(d: &DomainDef) -> Vec<String> {
        hostdev_blockers(d, Some(Path::new("live.xml")), &|n| n == "vfpool")
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    const STANDBY: &str = "<interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/><teaming type='persistent'/><alias name='ua-sb'/></interface>";

    #[test]
    fn teaming_transients_pass() {
        let d = def(&format!("{STANDBY}<interface type='hostdev' managed='yes'><mac address='52:54:00:00:00:01'/><source><address type='pci' domain='0x0000' bus='0x03' slot='0x07' function='0x1'/></source><teaming type='transient' persistent='ua-sb'/></interface>\
             <interface type='network'><mac address='52:54:00:00:00:01'/><source network='vfpool'/><teaming type='transient' persistent='ua-sb'/></interface>\
             <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x03' slot='0x07' function='0x2'/></source><teaming type='transient' persistent='ua-sb'/></hostdev>\
             <hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/></source></hostdev>"));
        assert_eq!(texts(&d), Vec::<String>::new());
    }

    #[test]
    fn libvirt_texts_for_blockers() {
        let d = def("<interface type='hostdev' managed='yes'><source><address type='pci' domain='0x0000' bus='0x03' slot='0x07' function='0x1'/></source></interface>\
             <interface type='network'><source network='vfpool'/></interface>\
             <interface type='network'><source network='default'/></interface>\
             <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x03' slot='0x07' function='0x2'/></source></hostdev>");
        assert_eq!(
            texts(&d),
            vec![
                "Operation not supported: cannot migrate a domain with <interface type='hostdev'>",
                "Operation not supported: cannot migrate a domain with <interface type='hostdev'>",
                "Operation not supported: cannot migrate a domain with <hostdev mode='subsystem' type='pci'>",
            ]
        );
        let b = hostdev_blockers(&d, Some(Path::new("live.xml")), &|_| false);
        assert_eq!(b.len(), 2);
        assert!(
            b[0].location().unwrap().starts_with("live.xml:1:"),
            "{:?}",
            b[0].location()
        );
    }

    #[test]
    fn blocked_reasons_joined() {
        let q = |v| serde_json::from_value::<MigrationInfo>(v).unwrap();
        assert_eq!(blocked_reasons(&q(json!({"status": "none"}))), None);
        assert_eq!(blocked_reasons(&q(json!({"blocked-reasons": []}))), None);
        assert_eq!(
            blocked_reasons(&q(json!({"blocked-reasons": ["VFIO device doesn't support migration", "x"]}))).unwrap(),
            "Requested operation is not valid: cannot migrate domain: VFIO device doesn't support migration; x"
        );
    }
}
