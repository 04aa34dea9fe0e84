//! Host devices as libvirt's node device API shows them (`nodedev-list`,
//! `nodedev-dumpxml`), read from sysfs: PCI devices (with SR-IOV's
//! `virt_functions` / `phys_function` capabilities, so a PF's VFs can be
//! found for a `<forward mode='hostdev'>` pool) and network interfaces.
//! libvirt's names: `pci_DDDD_BB_SS_F`, `net_IFNAME_MAC` (colons as `_`).
//!
//! The sysfs root is a parameter, so tests run against a fake tree.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum NodeDevError {
    /// libvirt's text for an unknown device name.
    #[error("Node device not found: no node device with matching name '{0}'")]
    NotFound(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A capability `nodedev-list --cap` selects by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cap {
    Pci,
    Net,
}

/// One device of `nodedev-list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeDev {
    pub name: String,
    pub cap: Cap,
    /// The device's directory under sysfs (canonical where it is a link).
    pub path: PathBuf,
}

fn pci_name(addr: &str) -> String {
    format!("pci_{}", addr.replace([':', '.'], "_"))
}

/// `DDDD:BB:SS.F` back from `pci_DDDD_BB_SS_F`.
fn pci_addr_of(name: &str) -> Option<String> {
    let rest = name.strip_prefix("pci_")?;
    let p: Vec<&str> = rest.split('_').collect();
    match p.as_slice() {
        [d, b, s, f] => Some(format!("{d}:{b}:{s}.{f}")),
        _ => None,
    }
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()?
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
}

/// The names in `dir`, sorted (empty when it cannot be read).
pub fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn net_name(ifname: &str, mac: &str) -> String {
    format!("net_{ifname}_{}", mac.replace(':', "_"))
}

/// Every PCI and network device under `sys`, optionally of one
/// capability, sorted by name (as `virsh nodedev-list` prints them).
pub fn list(sys: &Path, cap: Option<Cap>) -> Vec<NodeDev> {
    let mut out = Vec::new();
    if cap != Some(Cap::Net) {
        let devs = sys.join("bus/pci/devices");
        for a in sorted_entries(&devs) {
            if crate::sysfs::parse_pci(&a).is_some() {
                let p = devs.join(&a);
                out.push(NodeDev {
                    name: pci_name(&a),
                    cap: Cap::Pci,
                    path: p.canonicalize().unwrap_or(p),
                });
            }
        }
    }
    if cap != Some(Cap::Pci) {
        let nets = sys.join("class/net");
        for n in sorted_entries(&nets) {
            // A name with odd characters cannot be a nodedev name libvirt
            // would print; skipped rather than printed mangled.
            if !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
            {
                continue;
            }
            let p = nets.join(&n);
            let mac = read_trim(&p.join("address")).unwrap_or_default();
            out.push(NodeDev {
                name: net_name(&n, &mac),
                cap: Cap::Net,
                path: p.canonicalize().unwrap_or(p),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

fn address_xml(addr: &str) -> Option<String> {
    let a = crate::sysfs::parse_pci(addr)?;
    Some(format!(
        "<address domain='0x{:04x}' bus='0x{:02x}' slot='0x{:02x}' function='0x{:x}'/>",
        a.domain, a.bus, a.slot, a.function
    ))
}

/// The parent's nodedev name: the PCI device (bridge) whose directory
/// holds this one, else `computer`.
fn parent_of(path: &Path) -> String {
    let mut p = path.parent();
    while let Some(d) = p {
        if let Some(n) = d.file_name().map(|f| f.to_string_lossy().into_owned()) {
            if crate::sysfs::parse_pci(&n).is_some() {
                return pci_name(&n);
            }
        }
        p = d.parent();
    }
    "computer".into()
}

/// `nodedev-dumpxml NAME`: libvirt's node device XML.
pub fn dumpxml(sys: &Path, name: &str) -> Result<String, NodeDevError> {
    let dev = list(sys, None)
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| NodeDevError::NotFound(name.to_owned()))?;
    let mut x = String::from("<device>\n");
    let _ = writeln!(x, "  <name>{}</name>", esc(&dev.name));
    let _ = writeln!(x, "  <path>{}</path>", esc(&dev.path.display().to_string()));
    match dev.cap {
        Cap::Pci => pci_xml(sys, &dev, &mut x)?,
        Cap::Net => net_xml(&dev, &mut x),
    }
    x.push_str("</device>\n");
    Ok(x)
}

fn pci_xml(sys: &Path, dev: &NodeDev, x: &mut String) -> Result<(), NodeDevError> {
    let addr = pci_addr_of(&dev.name).unwrap_or_default();
    let dir = sys.join("bus/pci/devices").join(&addr);
    let a =
        crate::sysfs::parse_pci(&addr).ok_or_else(|| NodeDevError::NotFound(dev.name.clone()))?;
    let _ = writeln!(x, "  <parent>{}</parent>", esc(&parent_of(&dev.path)));
    if let Some(d) = link_name(&dir.join("driver")) {
        let _ = writeln!(x, "  <driver>\n    <name>{}</name>\n  </driver>", esc(&d));
    }
    x.push_str("  <capability type='pci'>\n");
    // class is 0xCCSSPP in sysfs already; libvirt prints it so.
    if let Some(c) = read_trim(&dir.join("class")).filter(|c| {
        c.len() == 8 && c.starts_with("0x") && c[2..].bytes().all(|b| b.is_ascii_hexdigit())
    }) {
        let _ = writeln!(x, "    <class>{c}</class>");
    }
    let _ = writeln!(
        x,
        "    <domain>{}</domain>\n    <bus>{}</bus>\n    <slot>{}</slot>\n    <function>{}</function>",
        a.domain, a.bus, a.slot, a.function
    );
    let id = |f: &str| {
        read_trim(&dir.join(f))
            .filter(|v| {
                v.starts_with("0x") && v.len() > 2 && v[2..].bytes().all(|b| b.is_ascii_hexdigit())
            })
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_else(|| "0x0000".into())
    };
    let _ = writeln!(x, "    <product id='{}'/>", id("device"));
    let _ = writeln!(x, "    <vendor id='{}'/>", id("vendor"));
    if let Some(pf) = link_name(&dir.join("physfn")).and_then(|p| address_xml(&p)) {
        let _ = writeln!(
            x,
            "    <capability type='phys_function'>\n      {pf}\n    </capability>"
        );
    }
    let total: Option<u32> = read_trim(&dir.join("sriov_totalvfs")).and_then(|t| t.parse().ok());
    let vfs = crate::sysfs::virtual_functions_at(&dir).unwrap_or_default();
    if total.is_some_and(|t| t > 0) || !vfs.is_empty() {
        let max = total
            .map(|t| format!(" maxCount='{t}'"))
            .unwrap_or_default();
        let _ = writeln!(x, "    <capability type='virt_functions'{max}>");
        for (_, vf) in &vfs {
            if let Some(ax) = address_xml(&vf.to_string()) {
                let _ = writeln!(x, "      {ax}");
            }
        }
        x.push_str("    </capability>\n");
    }
    if let Some(g) = link_name(&dir.join("iommu_group")) {
        let members = sorted_entries(&sys.join("kernel/iommu_groups").join(&g).join("devices"));
        let addrs: Vec<String> = members.iter().filter_map(|m| address_xml(m)).collect();
        if g.parse::<u32>().is_ok() && !addrs.is_empty() {
            let _ = writeln!(x, "    <iommuGroup number='{g}'>");
            for ax in addrs {
                let _ = writeln!(x, "      {ax}");
            }
            x.push_str("    </iommuGroup>\n");
        }
    }
    if let Some(n) = read_trim(&dir.join("numa_node")).and_then(|n| n.parse::<i32>().ok()) {
        if n >= 0 {
            let _ = writeln!(x, "    <numa node='{n}'/>");
        }
    }
    x.push_str("  </capability>\n");
    Ok(())
}

fn net_xml(dev: &NodeDev, x: &mut String) {
    let dir = &dev.path;
    let ifname = dir
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The PCI device the interface belongs to (`device` link), else the
    // directory that holds it.
    let parent = link_name(&dir.join("device"))
        .filter(|d| crate::sysfs::parse_pci(d).is_some())
        .map(|d| pci_name(&d))
        .unwrap_or_else(|| parent_of(dir));
    let _ = writeln!(x, "  <parent>{}</parent>", esc(&parent));
    x.push_str("  <capability type='net'>\n");
    let _ = writeln!(x, "    <interface>{}</interface>", esc(&ifname));
    let mac = read_trim(&dir.join("address")).filter(|m| {
        m.len() == 17
            && m.split(':')
                .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if let Some(m) = &mac {
        let _ = writeln!(x, "    <address>{m}</address>");
    }
    let state = read_trim(&dir.join("operstate")).filter(|s| {
        [
            "unknown",
            "notpresent",
            "down",
            "lowerlayerdown",
            "testing",
            "dormant",
            "up",
        ]
        .contains(&s.as_str())
    });
    // sysfs says -1 (or refuses to read) when the link is down.
    let speed = read_trim(&dir.join("speed")).and_then(|s| s.parse::<u32>().ok());
    match (speed, state) {
        (Some(sp), Some(st)) => {
            let _ = writeln!(x, "    <link speed='{sp}' state='{st}'/>");
        }
        (None, Some(st)) => {
            let _ = writeln!(x, "    <link state='{st}'/>");
        }
        (Some(sp), None) => {
            let _ = writeln!(x, "    <link speed='{sp}'/>");
        }
        (None, None) => {}
    }
    // ARPHRD_ETHER (type 1) is libvirt's 80203 capability.
    if read_trim(&dir.join("type")).as_deref() == Some("1") {
        x.push_str("    <capability type='80203'/>\n");
    }
    x.push_str("  </capability>\n");
}

/// The PCI address (`DDDD:BB:SS.F`) a `pci_…` nodedev name stands for
/// (`nodedev-detach`, `nodedev-reattach`), if that device exists.
pub fn pci_device(sys: &Path, name: &str) -> Result<String, NodeDevError> {
    pci_addr_of(name)
        .filter(|a| crate::sysfs::parse_pci(a).is_some())
        .filter(|a| sys.join("bus/pci/devices").join(a).exists())
        .ok_or_else(|| NodeDevError::NotFound(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_libvirt() {
        assert_eq!(pci_name("0000:03:10.2"), "pci_0000_03_10_2");
        assert_eq!(
            pci_addr_of("pci_0000_03_10_2").as_deref(),
            Some("0000:03:10.2")
        );
        assert_eq!(pci_addr_of("net_x"), None);
        assert_eq!(
            net_name("eth0", "aa:bb:cc:00:00:01"),
            "net_eth0_aa_bb_cc_00_00_01"
        );
    }
}
