//! Network verbs (`net-define`, `net-undefine`, `net-list`, `net-dumpxml`)
//! and the network lookup used when a domain starts (refused on a network
//! stopped by `net-destroy`, see [`crate::net_state`]); a hostdev
//! network's pool is its `<address>` list, or the VFs of its `<pf>`.

use std::path::Path;

use serde::Serialize;
use teamvirt_conf::{Diagnostic, NetworkDef, NetworkPortDef};
use teamvirt_qemu::resolve::{NetworkSource, ResolveError};

use crate::error::RuntimeError;
pub use crate::hostdev_net::{is_hostdev_network, pool_members};
use crate::pool::VfPool;
use crate::Runtime;
use teamvirt_host::state::{read_optional, remove_optional, write_atomic, StateDir};
pub use teamvirt_host::sysfs::parse_pci;

/// One row of `net-list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkSummary {
    pub name: String,
    /// `<forward mode>` (`nat` when absent, like libvirt).
    pub forward: String,
    /// Pool size for hostdev networks.
    pub vfs_total: Option<usize>,
    pub vfs_used: usize,
    pub emulate_vf: bool,
    /// Lab mode's bridge (`net-define --lab-bridge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab_bridge: Option<String>,
    /// Active, or inactive and why (`net-start` / `net-destroy`).
    pub activity: crate::net_state::Activity,
    pub autostart: bool,
}

/// Set by `net-start` (see [`Runtime::net_start_virsh`]), removed by
/// `net-undefine`.
fn started_marker(sd: &StateDir, name: &str) -> Result<std::path::PathBuf, RuntimeError> {
    Ok(sd.network_xml(name)?.with_extension("started"))
}

/// Parse a network definition, mapping errors to diagnostics.
pub(crate) fn parse_network(
    text: &str,
    file: Option<&Path>,
) -> Result<(NetworkDef, Vec<Diagnostic>), RuntimeError> {
    NetworkDef::parse_str(text, file).map_err(|e| RuntimeError::Invalid {
        diags: vec![e.to_diagnostic(file)],
        text: text.to_owned(),
        file: file.map(Path::to_path_buf),
    })
}

/// Networks of a state directory, as the command-line resolver sees them
/// (a `<pf>` pool is expanded into its VF addresses).
pub(crate) struct StateNetworks<'a> {
    pub sd: &'a StateDir,
}

impl NetworkSource for StateNetworks<'_> {
    fn lookup(
        &self,
        name: &str,
    ) -> Result<Option<(NetworkDef, Option<NetworkPortDef>)>, ResolveError> {
        let path = self
            .sd
            .network_xml(name)
            .map_err(|e| ResolveError::Load(e.to_string()))?;
        let Some(text) = read_optional(&path).map_err(|e| ResolveError::Load(e.to_string()))?
        else {
            return Ok(None);
        };
        // Only devices being plugged look networks up here (start,
        // attach, an incoming migration): none on a stopped network.
        if crate::net_state::is_destroyed(self.sd, name) {
            return Err(ResolveError::Inactive(name.to_owned()));
        }
        let (mut def, _) = NetworkDef::parse_str(&text, Some(&path))
            .map_err(|e| ResolveError::Load(e.to_string()))?;
        if is_hostdev_network(&def) {
            let members = pool_members(&def).map_err(|e| ResolveError::Load(e.to_string()))?;
            if let Some(f) = def.forward.as_mut() {
                f.addresses = members;
            }
        }
        Ok(Some((def, None)))
    }
}

impl Runtime {
    /// Load a defined network.
    pub fn network_def(&self, name: &str) -> Result<NetworkDef, RuntimeError> {
        let path = self.sd.network_xml(name)?;
        let text = read_optional(&path)?.ok_or_else(|| RuntimeError::NoNetwork(name.to_owned()))?;
        Ok(parse_network(&text, Some(&path))?.0)
    }

    /// `net-define`: store the canonical XML; `emulate_vf` sets lab mode for
    /// the network (kept in its state, not in the libvirt XML). Returns the
    /// network name and the parser's warnings.
    pub fn define_network(
        &self,
        text: &str,
        file: Option<&Path>,
        emulate_vf: bool,
    ) -> Result<(String, Vec<Diagnostic>), RuntimeError> {
        let (mut def, warnings) = parse_network(text, file)?;
        teamvirt_host::state::check_name(&def.name)?;
        let _g = self.sd.lock_global()?;
        let path = self.sd.network_xml(&def.name)?;
        if let Some(old) = read_optional(&path)? {
            if let Ok((old, _)) = NetworkDef::parse_str(&old, None) {
                match (&old.uuid, &def.uuid) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(RuntimeError::NetUuidClash {
                            name: def.name.clone(),
                            uuid: a.to_string(),
                        })
                    }
                    (Some(a), None) => def.uuid = Some(*a),
                    _ => {}
                }
            }
        }
        if def.uuid.is_none() {
            def.uuid = Some(crate::uuidgen::random_uuid());
        }
        let xml = def.to_xml();
        crate::error::check_formatted(&def.name, &xml)?;
        write_atomic(&path, xml.as_bytes(), 0o600)?;
        VfPool::new(&self.sd, &def.name).set_emulate_vf(emulate_vf)?;
        Ok((def.name, warnings))
    }

    /// `net-define --lab-bridge`: the bridge lab mode puts each emulated
    /// VF of network `name` on (`None`: isolated backend).
    pub fn set_lab_bridge(&self, name: &str, bridge: Option<String>) -> Result<(), RuntimeError> {
        let _g = self.sd.lock_global()?;
        VfPool::new(&self.sd, name).set_lab_bridge(bridge)?;
        Ok(())
    }

    /// `net-start` as virsh has it: a network is active from `net-define`
    /// on, so the first `net-start` after it succeeds (a virsh script
    /// defines, then starts); starting one already started by `net-start`
    /// is libvirt's error, as a second `virsh net-start` is. After
    /// `net-destroy` it starts again.
    pub fn net_start_virsh(&self, name: &str) -> Result<crate::net_state::Started, RuntimeError> {
        let started = self.net_start(name)?;
        let _g = self.sd.lock_global()?;
        let marker = started_marker(&self.sd, name)?;
        if started.was_active && marker.symlink_metadata().is_ok() {
            return Err(RuntimeError::NetworkAlreadyActive(name.to_owned()));
        }
        write_atomic(&marker, b"", 0o600)?;
        Ok(started)
    }

    /// `net-undefine`: refused while domains hold VFs of it.
    pub fn undefine_network(&self, name: &str) -> Result<(), RuntimeError> {
        let _g = self.sd.lock_global()?;
        let path = self.sd.network_xml(name)?;
        if !path.exists() {
            return Err(RuntimeError::NoNetwork(name.to_owned()));
        }
        let st = VfPool::new(&self.sd, name).state()?;
        if !st.allocations.is_empty() {
            let users = st
                .allocations
                .iter()
                .map(|a| format!("{} by {}/{}", a.address, a.domain, a.device))
                .collect();
            return Err(RuntimeError::NetworkInUse {
                name: name.to_owned(),
                users,
            });
        }
        remove_optional(&path)?;
        remove_optional(&self.sd.network_state(name)?)?;
        crate::net_state::clear_destroyed(&self.sd, name)?;
        remove_optional(&started_marker(&self.sd, name)?)?;
        Ok(())
    }

    /// `net-list`.
    pub fn list_networks(&self) -> Result<Vec<NetworkSummary>, RuntimeError> {
        let mut out = Vec::new();
        for name in self.sd.defined_networks()? {
            let def = self.network_def(&name)?;
            let st = VfPool::new(&self.sd, &name).state()?;
            let (activity, vfs_total) = self.network_activity(&name, &def)?;
            out.push(NetworkSummary {
                forward: def
                    .forward
                    .as_ref()
                    .map_or("nat", |f| f.mode_str())
                    .to_owned(),
                vfs_total,
                vfs_used: st.allocations.len(),
                emulate_vf: st.emulate_vf,
                lab_bridge: st.lab_bridge.clone(),
                activity,
                autostart: crate::autostart::autostart_enabled(
                    &self.sd,
                    crate::autostart::AutostartKind::Network,
                    &name,
                ),
                name,
            });
        }
        Ok(out)
    }

    /// `net-dumpxml --inactive`: the stored canonical XML.
    pub fn network_xml_inactive(&self, name: &str) -> Result<String, RuntimeError> {
        let path = self.sd.network_xml(name)?;
        read_optional(&path)?.ok_or_else(|| RuntimeError::NoNetwork(name.to_owned()))
    }

    /// `net-dumpxml`: the live XML. As libvirt's, a `<pf>` pool lists the
    /// VFs it found (`<address>` after `<pf>`); the rest is as stored.
    pub fn network_xml(&self, name: &str) -> Result<String, RuntimeError> {
        let text = self.network_xml_inactive(name)?;
        let Ok((mut def, _)) = NetworkDef::parse_str(&text, None) else {
            return Ok(text);
        };
        let expandable = def
            .forward
            .as_ref()
            .is_some_and(|f| f.addresses.is_empty() && !f.pfs.is_empty());
        if !is_hostdev_network(&def) || !expandable {
            return Ok(text);
        }
        match pool_members(&def) {
            Ok(vfs) => {
                if let Some(f) = def.forward.as_mut() {
                    f.addresses = vfs;
                }
                Ok(def.to_xml())
            }
            // A PF that is gone: the definition as it is.
            Err(_) => Ok(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostdev_net::pf_virtual_functions_in;
    use teamvirt_conf::model::PciAddress;

    #[test]
    fn pci_round_trip() {
        let a = parse_pci("0000:3b:02.7").unwrap();
        assert_eq!(a.to_string(), "0000:3b:02.7");
        assert!(parse_pci("3b:02.7").is_none());
    }

    #[test]
    fn pf_vfs_from_sysfs_in_virtfn_order() {
        let t = tempfile::tempdir().unwrap();
        let dev = t.path().join("bus/pci/devices");
        let pf = dev.join("0000:03:00.0");
        std::fs::create_dir_all(&pf).unwrap();
        for (n, a) in [
            (10, "0000:03:12.0"),
            (2, "0000:03:10.4"),
            (0, "0000:03:10.0"),
        ] {
            std::fs::create_dir_all(dev.join(a)).unwrap();
            std::os::unix::fs::symlink(format!("../{a}"), pf.join(format!("virtfn{n}"))).unwrap();
        }
        std::fs::create_dir_all(t.path().join("class/net/eth0")).unwrap();
        std::os::unix::fs::symlink(&pf, t.path().join("class/net/eth0/device")).unwrap();
        let got: Vec<String> = pf_virtual_functions_in(t.path(), "eth0")
            .unwrap()
            .iter()
            .map(PciAddress::to_string)
            .collect();
        assert_eq!(got, ["0000:03:10.0", "0000:03:10.4", "0000:03:12.0"]);
        let e = pf_virtual_functions_in(t.path(), "eth9").unwrap_err();
        assert!(
            e.to_string()
                .contains("Could not get Virtual functions on eth9"),
            "{e}"
        );
    }
}
