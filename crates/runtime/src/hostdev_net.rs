//! What a network definition offers as a VF pool: whether it is a hostdev
//! network, and its members (its `<address>` list, or the VFs of its `<pf>`
//! from sysfs). Read by `network` (verbs, lookups) and `net_state`
//! (`net-start` checks) alike.

use std::path::Path;

use teamvirt_conf::model::PciAddress;
use teamvirt_conf::NetworkDef;

use crate::error::RuntimeError;
use teamvirt_host::sysfs::virtual_functions_at;

/// The VFs of a `<pf dev='X'/>` from sysfs (`/sys/class/net/X/device/virtfnN`).
pub(crate) fn pf_virtual_functions(pf: &str) -> Result<Vec<PciAddress>, RuntimeError> {
    pf_virtual_functions_in(Path::new("/sys"), pf)
}

/// [`pf_virtual_functions`] under another sysfs root (tests).
pub(crate) fn pf_virtual_functions_in(
    sysfs: &Path,
    pf: &str,
) -> Result<Vec<PciAddress>, RuntimeError> {
    let dir = sysfs.join("class/net").join(pf).join("device");
    let vfs = virtual_functions_at(&dir).map_err(|reason| RuntimeError::NoVirtualFunctions {
        pf: pf.to_owned(),
        reason,
    })?;
    if vfs.is_empty() {
        return Err(RuntimeError::NoVirtualFunctions {
            pf: pf.to_owned(),
            reason: "the device has no SR-IOV virtual functions".into(),
        });
    }
    Ok(vfs.into_iter().map(|v| v.1).collect())
}

/// Is this a VF pool (`<forward mode='hostdev'>`)?
pub fn is_hostdev_network(def: &NetworkDef) -> bool {
    def.forward
        .as_ref()
        .is_some_and(|f| f.mode_str() == "hostdev")
}

/// The pool members in order (`<address>` list, else the `<pf>`'s VFs).
pub fn pool_members(def: &NetworkDef) -> Result<Vec<PciAddress>, RuntimeError> {
    let Some(f) = def.forward.as_ref().filter(|_| is_hostdev_network(def)) else {
        return Ok(Vec::new());
    };
    if !f.addresses.is_empty() {
        return Ok(f.addresses.clone());
    }
    match f.pfs.first() {
        Some(pf) => pf_virtual_functions(&pf.dev),
        None => Ok(Vec::new()),
    }
}
