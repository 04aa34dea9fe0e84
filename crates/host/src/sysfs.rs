//! PCI addresses as sysfs writes them, and the VFs a PF's sysfs directory
//! lists: shared by host-side VF preparation (`hostdev`) and pools
//! (`network`), so neither depends on the other.

use std::path::Path;

use teamvirt_conf::model::PciAddress;

/// The `virtfnN` links of a PF's PCI device directory, by N.
pub fn virtual_functions_at(dir: &Path) -> Result<Vec<(u32, PciAddress)>, String> {
    let mut vfs: Vec<(u32, PciAddress)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix("virtfn")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let target = std::fs::read_link(e.path()).map_err(|e| e.to_string())?;
        let addr = target
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        vfs.push((n, parse_pci(&addr).ok_or(format!("bad VF link {addr}"))?));
    }
    vfs.sort_by_key(|v| v.0);
    Ok(vfs)
}

/// `DDDD:BB:SS.F` (the inverse of `PciAddress`'s `Display`).
pub fn parse_pci(s: &str) -> Option<PciAddress> {
    let (dom, rest) = s.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (slot, func) = rest.split_once('.')?;
    Some(PciAddress::new(
        u32::from_str_radix(dom, 16).ok()?,
        u8::from_str_radix(bus, 16).ok()?,
        u8::from_str_radix(slot, 16).ok()?,
        u8::from_str_radix(func, 16).ok()?,
    ))
}
