//! `net-start` / `net-destroy`: whether a defined network serves new
//! devices. teamvirt builds no bridges or NAT, so a network is active when
//! what it stands on exists (the bridge of a `<forward mode='bridge'>`
//! network, the PF of a VF pool, a lab bridge) and no `net-destroy` took
//! it down. Unlike libvirt, `net-define` leaves a network active: there is
//! nothing to create, and scripts written for virsh (`net-define` then
//! `net-start`) still work because `net-start` of an active network that
//! is ready succeeds.

use std::path::{Path, PathBuf};

use serde::Serialize;
use teamvirt_conf::NetworkDef;

use crate::error::RuntimeError;
use crate::hostdev_net::{is_hostdev_network, pool_members};
use crate::pool::VfPool;
use crate::Runtime;
use teamvirt_host::state::{remove_optional, write_atomic, StateDir};

/// A network's state as `net-list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum Activity {
    Active,
    /// Why not: taken down by `net-destroy`, or a missing bridge/PF.
    Inactive(String),
}

impl Activity {
    pub fn is_active(&self) -> bool {
        matches!(self, Activity::Active)
    }
}

/// What `net-start` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// It was active already (as `net-define` leaves it).
    pub was_active: bool,
    /// A VF pool's size (its members as found on this host, or as listed
    /// for a lab-mode pool); `None` for other networks.
    pub vfs: Option<usize>,
}

/// What a network stands on, checked once for both `net-list` and
/// `net-start`.
enum Footing {
    Ready { vfs: Option<usize> },
    Missing(String),
}

/// `networks/NAME.inactive`: present after `net-destroy`.
fn destroyed_marker(sd: &StateDir, name: &str) -> Result<PathBuf, RuntimeError> {
    Ok(sd.network_xml(name)?.with_extension("inactive"))
}

/// Taken down by `net-destroy`?
pub fn is_destroyed(sd: &StateDir, name: &str) -> bool {
    destroyed_marker(sd, name)
        .map(|p| p.symlink_metadata().is_ok())
        .unwrap_or(false)
}

/// Forget the `net-destroy` mark (`net-undefine`).
pub(crate) fn clear_destroyed(sd: &StateDir, name: &str) -> Result<(), RuntimeError> {
    remove_optional(&destroyed_marker(sd, name)?)?;
    Ok(())
}

/// Is `dev` a network interface on this host (in this namespace)?
fn link_exists(sysfs: &Path, dev: &str) -> bool {
    !dev.is_empty() && !dev.contains('/') && sysfs.join("class/net").join(dev).exists()
}

/// Whether the host provides what the network stands on (not the
/// `net-destroy` mark), and a VF pool's size.
fn footing(sd: &StateDir, def: &NetworkDef, sysfs: &Path) -> Result<Footing, RuntimeError> {
    if is_hostdev_network(def) {
        let pool = VfPool::new(sd, &def.name).state()?;
        if let Some(br) = &pool.lab_bridge {
            if !link_exists(sysfs, br) {
                return Ok(Footing::Missing(format!(
                    "its lab bridge '{br}' does not exist"
                )));
            }
        }
        // A lab-mode pool's VFs need not exist. pool_members fails only
        // for a `<pf>` pool whose PF is not found (a listed pool is its
        // list): in lab mode that pool offers none.
        let members = match pool_members(def) {
            Ok(m) => m.len(),
            Err(_) if pool.emulate_vf => 0,
            Err(e) => return Ok(Footing::Missing(e.to_string())),
        };
        return Ok(Footing::Ready { vfs: Some(members) });
    }
    let bridged = def
        .forward
        .as_ref()
        .is_some_and(|f| f.mode_str() == "bridge");
    if let (true, Some(br)) = (bridged, def.bridge.as_ref().and_then(|b| b.name.as_deref())) {
        if !link_exists(sysfs, br) {
            return Ok(Footing::Missing(format!(
                "its bridge '{br}' does not exist"
            )));
        }
    }
    Ok(Footing::Ready { vfs: None })
}

impl Runtime {
    /// Active or not (and why), and a VF pool's size (0 when its
    /// members cannot be found), from one look at what `def` stands on.
    pub(crate) fn network_activity(
        &self,
        name: &str,
        def: &NetworkDef,
    ) -> Result<(Activity, Option<usize>), RuntimeError> {
        let (missing, vfs) = match footing(&self.sd, def, Path::new("/sys"))? {
            Footing::Missing(why) => (Some(why), is_hostdev_network(def).then_some(0)),
            Footing::Ready { vfs } => (None, vfs),
        };
        let activity = if is_destroyed(&self.sd, name) {
            Activity::Inactive("stopped by net-destroy".into())
        } else {
            missing.map_or(Activity::Active, Activity::Inactive)
        };
        Ok((activity, vfs))
    }

    /// `net-start`: check what the network stands on, then serve again.
    pub fn net_start(&self, name: &str) -> Result<Started, RuntimeError> {
        let _g = self.sd.lock_global()?;
        let def = self.network_def(name)?;
        let vfs = match footing(&self.sd, &def, Path::new("/sys"))? {
            Footing::Missing(why) => {
                return Err(RuntimeError::NetworkNotReady {
                    name: name.to_owned(),
                    reason: why,
                })
            }
            Footing::Ready { vfs } => vfs,
        };
        let was_active = !is_destroyed(&self.sd, name);
        if !was_active {
            clear_destroyed(&self.sd, name)?;
        }
        Ok(Started { was_active, vfs })
    }

    /// `net-destroy`: new devices are refused on the network until
    /// `net-start`; devices already using it keep running (as with
    /// libvirt, which does not stop guests either). Returns how many VFs
    /// stay held by domains.
    pub fn net_destroy(&self, name: &str) -> Result<usize, RuntimeError> {
        let _g = self.sd.lock_global()?;
        self.network_def(name)?;
        if is_destroyed(&self.sd, name) {
            return Err(RuntimeError::NetworkNotActive(name.to_owned()));
        }
        write_atomic(&destroyed_marker(&self.sd, name)?, b"", 0o600)?;
        Ok(VfPool::new(&self.sd, name).state()?.allocations.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_names_not_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("class/net/br0")).unwrap();
        assert!(link_exists(d.path(), "br0"));
        assert!(!link_exists(d.path(), "br1"));
        assert!(!link_exists(d.path(), "../net/br0"));
        assert!(!link_exists(d.path(), ""));
    }
}
