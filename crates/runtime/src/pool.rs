//! VF pools of hostdev networks.
//!
//! VF pools of `<forward mode='hostdev'>` networks. The pool's members come
//! from the network XML; which of them are in use lives in
//! `networks/NAME.state.json`, read and rewritten under the network's flock,
//! so concurrent `teamvirt` processes never hand out a VF twice and the
//! allocations survive a restart of teamvirt.
//!
//! The run records of running domains are the truth about VFs in use: the
//! state file is merged with them on every read, and rebuilt from them when
//! missing or damaged ([`VfPool::repair`] says so), so a lost or corrupt
//! file can neither hand out a VF a running QEMU holds nor stop every verb.

use serde::{Deserialize, Serialize};

// Recorded in the run records, which the pools are rebuilt from.
pub use crate::record::{LabSettings, VfBinding};
use teamvirt_host::state::{read_optional, write_atomic, StateDir, StateError};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// libvirt's text (`networkAllocatePort`, VIR_ERR_INTERNAL_ERROR).
    #[error("internal error: network '{network}' requires exclusive access to interfaces, but none are available")]
    Exhausted { network: String },
    #[error(transparent)]
    State(#[from] StateError),
}

/// One VF handed to a domain's device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfAllocation {
    /// PCI address `DDDD:BB:SS.F`.
    pub address: String,
    /// Domain owning it.
    pub domain: String,
    /// Device alias in that domain (e.g. `hostdev0`).
    pub device: String,
}

/// Runtime state of a network (`networks/NAME.state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// Lab mode: primaries from this network are emulated (`net-define --emulate-vf`).
    #[serde(default)]
    pub emulate_vf: bool,
    /// Lab mode on a bridge (`net-define --lab-bridge BR`): each emulated
    /// VF is a tap on this bridge instead of an isolated backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_bridge: Option<String>,
    /// VFs currently in use.
    #[serde(default)]
    pub allocations: Vec<VfAllocation>,
}

/// Handle on one network's pool state in a state directory.
#[derive(Debug, Clone)]
pub struct VfPool {
    sd: StateDir,
    network: String,
}

impl VfPool {
    pub fn new(sd: &StateDir, network: &str) -> VfPool {
        VfPool {
            sd: sd.clone(),
            network: network.to_owned(),
        }
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    /// Current state (read without the lock: the file is replaced atomically).
    pub fn state(&self) -> Result<NetworkState, PoolError> {
        self.load()
    }

    fn load(&self) -> Result<NetworkState, PoolError> {
        Ok(self.load_checked()?.0)
    }

    /// The state file merged with the running domains' records; second,
    /// what was wrong with the file (damaged, or missing VFs in use).
    fn load_checked(&self) -> Result<(NetworkState, Option<String>), PoolError> {
        let path = self.sd.network_state(&self.network)?;
        let mut missing = false;
        let (mut st, damaged) = match read_optional(&path) {
            Ok(None) => {
                missing = true;
                (NetworkState::default(), None)
            }
            Ok(Some(s)) => match serde_json::from_str(&s) {
                Ok(st) => (st, None),
                Err(e) => (
                    NetworkState::default(),
                    Some(format!("state file {} is damaged ({e})", path.display())),
                ),
            },
            Err(StateError::Io { source, .. })
                if source.kind() != std::io::ErrorKind::PermissionDenied =>
            {
                (
                    NetworkState::default(),
                    Some(format!(
                        "state file {} cannot be read ({source})",
                        path.display()
                    )),
                )
            }
            Err(StateError::Untrusted(u)) => (NetworkState::default(), Some(u.to_string())),
            Err(e) => return Err(e.into()),
        };
        let added = self.merge_running(&mut st, missing || damaged.is_some());
        let problem = match (damaged, added.is_empty()) {
            (Some(d), _) => Some(d),
            (None, false) => Some(format!(
                "state file {} did not record VFs in use ({})",
                path.display(),
                added.join(", ")
            )),
            (None, true) => None,
        };
        Ok((st, problem))
    }

    /// Add what running domains' records say they hold and the file lacks
    /// (a record wins over a stale allocation of the same VF); returns the
    /// VFs added. `rebuild`: the file was lost or damaged, so the lab
    /// settings come from the records too (those of the VFs taken in lab
    /// mode: a pool is put in lab mode, never out of it, by a record).
    fn merge_running(&self, st: &mut NetworkState, rebuild: bool) -> Vec<String> {
        let mut added = Vec::new();
        let Ok(names) = self.sd.run_entries() else {
            return added;
        };
        for name in names {
            let Ok(Some(rec)) = crate::record::read(&self.sd, &name) else {
                continue;
            };
            if !rec.is_alive() {
                continue;
            }
            for vf in rec.vfs.iter().filter(|v| v.network == self.network) {
                if let (true, Some(lab)) = (rebuild, &vf.lab) {
                    st.emulate_vf = true;
                    if st.lab_bridge.is_none() {
                        st.lab_bridge.clone_from(&lab.bridge);
                    }
                }
                let held = st
                    .allocations
                    .iter()
                    .any(|a| a.address == vf.address && a.domain == rec.name);
                if held {
                    continue;
                }
                st.allocations.retain(|a| a.address != vf.address);
                st.allocations.push(VfAllocation {
                    address: vf.address.clone(),
                    domain: rec.name.clone(),
                    device: vf.device.clone(),
                });
                added.push(format!("{} held by domain '{}'", vf.address, rec.name));
            }
        }
        added
    }

    /// Rewrite a missing or damaged state file from the running domains'
    /// records; what was wrong, for a warning (None: nothing was).
    pub fn repair(&self) -> Result<Option<String>, PoolError> {
        let _lock = self.sd.lock_network(&self.network)?;
        let (st, problem) = self.load_checked()?;
        if problem.is_some() {
            self.save(&st)?;
        }
        Ok(problem.map(|p| {
            format!(
                "network '{}': {p}; rebuilt from the running domains' records ({} VF(s) in use)",
                self.network,
                st.allocations.len()
            )
        }))
    }

    fn save(&self, st: &NetworkState) -> Result<(), PoolError> {
        let path = self.sd.network_state(&self.network)?;
        let json = serde_json::to_string_pretty(st).expect("state serializes");
        write_atomic(&path, json.as_bytes(), 0o600)?;
        Ok(())
    }

    /// Read-modify-write under the network lock.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut NetworkState) -> Result<T, PoolError>,
    ) -> Result<T, PoolError> {
        let _lock = self.sd.lock_network(&self.network)?;
        let mut st = self.load()?;
        let before = st.clone();
        let out = f(&mut st)?;
        if st != before {
            self.save(&st)?;
        }
        Ok(out)
    }

    /// Read-modify-write several pools at once, as one step: their locks are
    /// taken in name order (so two callers cannot deadlock), `f` sees every
    /// state, and changed states are written back before the locks go.
    /// Used when a domain takes VFs from more than one pool, or resolution
    /// of all its interfaces must see every pool's allocations.
    pub fn update_many<T>(
        pools: &[VfPool],
        f: impl FnOnce(&mut [NetworkState]) -> Result<T, PoolError>,
    ) -> Result<T, PoolError> {
        let mut order: Vec<usize> = (0..pools.len()).collect();
        order.sort_by(|&a, &b| pools[a].network.cmp(&pools[b].network));
        order.dedup_by(|a, b| pools[*a].network == pools[*b].network);
        assert_eq!(
            order.len(),
            pools.len(),
            "update_many: each pool at most once"
        );
        let mut locks = Vec::with_capacity(pools.len());
        for &i in &order {
            locks.push(pools[i].sd.lock_network(&pools[i].network)?);
        }
        let mut states = pools
            .iter()
            .map(|p| p.load())
            .collect::<Result<Vec<_>, _>>()?;
        let before = states.clone();
        let out = f(&mut states)?;
        for ((p, st), old) in pools.iter().zip(&states).zip(&before) {
            if st != old {
                p.save(st)?;
            }
        }
        drop(locks);
        Ok(out)
    }

    /// Give `domain`'s `device` the first member of `members` (XML order)
    /// that nobody uses. A device that already holds a VF of this pool keeps
    /// it (idempotent, so a retried start does not leak).
    pub fn allocate(
        &self,
        members: &[String],
        domain: &str,
        device: &str,
    ) -> Result<String, PoolError> {
        self.update(|st| {
            if let Some(a) = st
                .allocations
                .iter()
                .find(|a| a.domain == domain && a.device == device)
            {
                return Ok(a.address.clone());
            }
            let free = members
                .iter()
                .find(|m| !st.allocations.iter().any(|a| &a.address == *m))
                .ok_or_else(|| PoolError::Exhausted {
                    network: self.network.clone(),
                })?;
            st.allocations.push(VfAllocation {
                address: free.clone(),
                domain: domain.to_owned(),
                device: device.to_owned(),
            });
            Ok(free.clone())
        })
    }

    /// Take a specific VF (e.g. the one recorded in a live XML being adopted).
    pub fn reserve(&self, address: &str, domain: &str, device: &str) -> Result<(), PoolError> {
        self.update(
            |st| match st.allocations.iter().find(|a| a.address == address) {
                Some(a) if a.domain == domain && a.device == device => Ok(()),
                Some(_) => Err(PoolError::Exhausted {
                    network: self.network.clone(),
                }),
                None => {
                    st.allocations.push(VfAllocation {
                        address: address.to_owned(),
                        domain: domain.to_owned(),
                        device: device.to_owned(),
                    });
                    Ok(())
                }
            },
        )
    }

    /// Return one VF held by `domain`.
    pub fn release(&self, address: &str, domain: &str) -> Result<bool, PoolError> {
        self.update(|st| {
            let n = st.allocations.len();
            st.allocations
                .retain(|a| !(a.address == address && a.domain == domain));
            Ok(st.allocations.len() != n)
        })
    }

    /// Return every VF held by `domain`; returns what was released.
    pub fn release_domain(&self, domain: &str) -> Result<Vec<VfAllocation>, PoolError> {
        self.update(|st| {
            let (gone, keep): (Vec<_>, Vec<_>) =
                st.allocations.drain(..).partition(|a| a.domain == domain);
            st.allocations = keep;
            Ok(gone)
        })
    }

    /// Set or clear lab mode for this network.
    pub fn set_emulate_vf(&self, on: bool) -> Result<(), PoolError> {
        self.update(|st| {
            st.emulate_vf = on;
            Ok(())
        })
    }

    /// Set or clear the lab bridge of this network.
    pub fn set_lab_bridge(&self, bridge: Option<String>) -> Result<(), PoolError> {
        self.update(|st| {
            st.lab_bridge = bridge;
            Ok(())
        })
    }
}

impl NetworkState {
    /// The lab settings a VF taken from this pool now is recorded with.
    pub fn lab(&self) -> Option<LabSettings> {
        self.emulate_vf.then(|| LabSettings {
            bridge: self.lab_bridge.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("0000:03:{:02x}.{}", i / 8, i % 8))
            .collect()
    }

    #[test]
    fn first_free_in_order_and_release() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let pool = VfPool::new(&sd, "pool");
        let m = members(3);
        assert_eq!(pool.allocate(&m, "a", "hostdev0").unwrap(), m[0]);
        assert_eq!(pool.allocate(&m, "b", "hostdev0").unwrap(), m[1]);
        // Idempotent for the same device.
        assert_eq!(pool.allocate(&m, "a", "hostdev0").unwrap(), m[0]);
        assert!(pool.release(&m[0], "a").unwrap());
        assert_eq!(pool.allocate(&m, "c", "hostdev0").unwrap(), m[0]);
        assert_eq!(pool.allocate(&m, "c", "hostdev1").unwrap(), m[2]);
        let err = pool.allocate(&m, "d", "hostdev0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "internal error: network 'pool' requires exclusive access to interfaces, but none are available"
        );
        let gone = pool.release_domain("c").unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(pool.state().unwrap().allocations.len(), 1);
    }

    #[test]
    fn survives_reopen() {
        let t = tempfile::tempdir().unwrap();
        let m = members(2);
        {
            let sd = StateDir::open(t.path()).unwrap();
            VfPool::new(&sd, "p").allocate(&m, "a", "hostdev0").unwrap();
            VfPool::new(&sd, "p").set_emulate_vf(true).unwrap();
        }
        let sd = StateDir::open(t.path()).unwrap();
        let st = VfPool::new(&sd, "p").state().unwrap();
        assert!(st.emulate_vf);
        assert_eq!(st.allocations[0].address, m[0]);
        assert_eq!(VfPool::new(&sd, "p").allocate(&m, "b", "x").unwrap(), m[1]);
    }

    #[test]
    fn update_many_is_atomic_over_pools() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let (a, b) = (VfPool::new(&sd, "b-pool"), VfPool::new(&sd, "a-pool"));
        VfPool::update_many(&[a.clone(), b.clone()], |st| {
            st[0].allocations.push(VfAllocation {
                address: "0000:01:00.1".into(),
                domain: "d".into(),
                device: "x".into(),
            });
            st[1].emulate_vf = true;
            Ok(())
        })
        .unwrap();
        assert_eq!(a.state().unwrap().allocations.len(), 1);
        assert!(b.state().unwrap().emulate_vf);
        // An error writes nothing.
        let r: Result<(), _> = VfPool::update_many(std::slice::from_ref(&a), |st| {
            st[0].allocations.clear();
            Err(PoolError::Exhausted {
                network: "b-pool".into(),
            })
        });
        assert!(r.is_err());
        assert_eq!(a.state().unwrap().allocations.len(), 1);
    }

    #[test]
    fn reserve_conflicts() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let pool = VfPool::new(&sd, "p");
        pool.reserve("0000:01:00.1", "a", "hostdev0").unwrap();
        pool.reserve("0000:01:00.1", "a", "hostdev0").unwrap();
        assert!(pool.reserve("0000:01:00.1", "b", "hostdev0").is_err());
    }

    #[test]
    fn corrupt_state_is_rebuilt_and_reported() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        std::fs::write(sd.network_state("p").unwrap(), "{not json").unwrap();
        let pool = VfPool::new(&sd, "p");
        assert!(pool.state().unwrap().allocations.is_empty());
        let w = pool.repair().unwrap().unwrap();
        assert!(w.contains("is damaged") && w.contains("rebuilt"), "{w}");
        assert!(pool.repair().unwrap().is_none());
    }
}
