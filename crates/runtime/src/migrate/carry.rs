//! What a destination carries over from the source: the files of the
//! source's run directory its command line names, and the live XML with
//! the destination's VFs in place of the source's.

use std::path::Path;

use teamvirt_conf::DomainDef;

use super::MigrateError;
use crate::teaming::TeamingPair;
use teamvirt_host::state::write_atomic;

/// Files of the source's run directory that QEMU reads at start (the
/// master key `-object secret,file=...`): the destination gets a copy.
/// Logs, sockets and teamvirt's own records are not copied.
pub(crate) fn copy_referenced_files(
    src: &Path,
    dst: &Path,
    argv: &[String],
) -> Result<(), MigrateError> {
    for (name, data) in referenced_files(src, argv)? {
        write_atomic(&dst.join(&name), &data, 0o600)?;
    }
    Ok(())
}

/// The files of run directory `src` that `argv` references (name, content).
pub fn referenced_files(
    src: &Path,
    argv: &[String],
) -> Result<Vec<(String, Vec<u8>)>, MigrateError> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(src) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let skip = name.ends_with(".log")
            || name.ends_with(".json")
            || name.ends_with(".xml")
            || name.ends_with(".sock")
            || name == "pid"
            || name.starts_with('.');
        if skip || !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            continue;
        }
        let path = src.join(&name).display().to_string();
        if argv
            .iter()
            .any(|a| a.contains(&path) || a.contains(&path.replace(',', ",,")))
        {
            let data = std::fs::read(e.path()).map_err(|err| MigrateError::Io {
                what: format!("cannot read {}", e.path().display()),
                source: err,
            })?;
            out.push((name, data));
        }
    }
    Ok(out)
}

/// The source's live XML with the destination's VFs in place of the
/// source's: the host address of each hostdev interface or `<hostdev>`
/// that held a moved pair's VF, and teamvirt's runtime metadata naming it.
/// Edited as the domain model (a guest `<address>` is another field), never
/// as text.
pub(crate) fn retarget_live_xml(
    xml: &str,
    before: &[TeamingPair],
    after: &[TeamingPair],
) -> Result<String, MigrateError> {
    let moves: Vec<(String, String)> = before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| Some((b.vf.clone()?, a.vf.clone()?)))
        .filter(|(old, new)| old != new)
        .collect();
    if moves.is_empty() {
        return Ok(xml.to_owned());
    }
    let (mut def, _) = DomainDef::parse_str(xml, None).map_err(|e| MigrateError::Xml {
        what: "live XML of the source".into(),
        source: e,
    })?;
    def.id = crate::live::live_id(xml);
    // The live XML carries QEMU's aliases (`hostdev0`, `net1`), which a
    // parse sets aside as not the user's: keep them.
    teamvirt_qemu::hotplug::restore_aliases(&mut def);
    let retarget = |pci: &mut Option<teamvirt_conf::model::PciAddress>| {
        let Some(p) = pci.as_mut() else { return };
        if let Some((_, new)) = moves.iter().find(|(old, _)| *old == p.to_string()) {
            if let Some(n) = teamvirt_host::sysfs::parse_pci(new) {
                *p = n;
            }
        }
    };
    for n in &mut def.devices.interfaces {
        if let Some(src) = n.source.as_mut() {
            retarget(&mut src.pci);
        }
    }
    for h in &mut def.devices.hostdevs {
        retarget(&mut h.source.pci);
    }
    for m in def.extra.iter_mut().filter(|e| e.name == "metadata") {
        retarget_raw(m, &moves);
    }
    Ok(crate::live::to_text(&def))
}

/// teamvirt's metadata names VFs in `address=` and `vf=` attributes.
fn retarget_raw(e: &mut teamvirt_conf::model::RawElement, moves: &[(String, String)]) {
    for a in e
        .attrs
        .iter_mut()
        .filter(|a| a.name == "address" || a.name == "vf")
    {
        if let Some((_, new)) = moves.iter().find(|(old, _)| *old == a.value) {
            a.value = new.clone();
        }
    }
    for c in e.children.iter_mut() {
        if let teamvirt_conf::model::RawNode::Element(c) = c {
            retarget_raw(c, moves);
        }
    }
}
