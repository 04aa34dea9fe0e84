//! Host-side preparation of real VFs, what libvirt does for
//! `managed='yes'` hostdevs and hostdev-network interfaces: bind the VF to
//! vfio-pci before QEMU starts (`virPCIDeviceDetach`) and give it back to
//! its driver afterwards (`virPCIDeviceReattach`); set the VF's MAC (and
//! VLAN) through its PF, because the guest pairs standby and primary by
//! MAC. Lab-mode (emulated) primaries never get here.
//!
//! What was done is recorded in the run directory (`hostdev.json`, with
//! the sysfs root and `ip` used) so that whichever later command notices
//! the QEMU is gone undoes exactly that.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::state::{read_optional, remove_optional, write_atomic};

const VFIO: &str = "vfio-pci";
const RECORD: &str = "hostdev.json";

/// Errors of this module; each names the VF and the sysfs path involved.
#[derive(Debug, thiserror::Error)]
pub enum HostdevError {
    #[error("Failed to bind PCI device {addr} to vfio-pci: {reason}")]
    Bind { addr: String, reason: String },
    #[error("Failed to reattach PCI device {addr} to its host driver: {reason}")]
    Reattach { addr: String, reason: String },
    #[error("Failed to set MAC {mac} on VF {addr} of PF {pf} (vf {index}): {reason}")]
    SetVf {
        addr: String,
        pf: String,
        index: u32,
        mac: String,
        reason: String,
    },
    /// libvirt's text (`virHostdevPreparePCIDevicesImpl`): a
    /// `managed='no'` device must already be on a stub driver; teamvirt
    /// never binds or unbinds it.
    #[error("Requested operation is not valid: Unmanaged PCI device {addr} must be manually detached from the host")]
    Unmanaged {
        addr: String,
        driver: Option<String>,
    },
    #[error("Cannot find the PF of VF {addr}: {reason}")]
    NoPf { addr: String, reason: String },
    #[error("internal error: host VF record {path}: {reason}")]
    Record { path: String, reason: String },
}

/// What to do to one VF before QEMU gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfRequest {
    /// `DDDD:BB:SS.F`.
    pub address: String,
    /// Bind to vfio-pci (and back afterwards).
    pub managed: bool,
    /// Set through the PF (`ip link set dev PF vf N mac MAC`).
    pub mac: Option<String>,
    pub vlan: Option<u32>,
    /// Bind it, but set MAC and VLAN only when `netdev::pair::apply_parked_recorded`
    /// says so (a migration destination, right before the guest resumes).
    pub parked: bool,
}

/// What was done to one VF, to undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedVf {
    pub address: String,
    /// Set when teamvirt bound the VF to vfio-pci; the driver it had
    /// (`None` inside: it had none).
    pub detached_from: Option<Option<String>>,
    /// PF netdev and VF index, when the MAC was set.
    pub pf: Option<(String, u32)>,
    /// The PF's administrative MAC for the VF before (`ip link show PF`,
    /// `vf N ... link/ether MAC`), restored on release. All zeros when
    /// none was set: writing zeros back clears it, which lets the host
    /// driver choose again (igb and ixgbe take zeros for exactly that).
    pub original_mac: Option<String>,
    /// The VF's administrative VLAN before (0: none), restored on release.
    #[serde(default)]
    pub original_vlan: Option<u32>,
    pub vlan_set: bool,
    /// The guest's MAC and VLAN, set while the VF is the guest's.
    #[serde(default)]
    pub want: Option<(String, Option<u32>)>,
    /// The PF holds the original settings for now, not `want`: the NIC
    /// then steers the guest's frames to the PF (its bridge and the
    /// standby) rather than to a VF the guest does not have. Set while a
    /// migration's destination waits for the guest, and on the source
    /// once the guest unplugged the VF.
    #[serde(default)]
    pub parked: bool,
}

impl PreparedVf {
    /// The `vlan` to give `ip link set PF vf N` to put the VF's VLAN back
    /// as it was: the original one, 0 to clear one set for the guest, or
    /// none to leave it alone.
    fn original_vlan_arg(&self) -> Option<u32> {
        match self.original_vlan {
            Some(v) if v != 0 || self.vlan_set => Some(v),
            _ => self.vlan_set.then_some(0),
        }
    }
}

/// The host this runs against: sysfs root and the `ip` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPrep {
    pub sysfs: PathBuf,
    pub ip: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    host: HostPrep,
    vfs: Vec<PreparedVf>,
}

impl Default for HostPrep {
    fn default() -> Self {
        HostPrep::system()
    }
}

fn write(path: &Path, data: &str) -> Result<(), String> {
    tracing::debug!(path = %path.display(), data, "sysfs write");
    std::fs::write(path, data)
        .map_err(|e| format!("cannot write '{data}' to {}: {e}", path.display()))
}

impl HostPrep {
    /// The real host: `/sys` and `ip` from `PATH`.
    pub fn system() -> HostPrep {
        HostPrep {
            sysfs: PathBuf::from("/sys"),
            ip: PathBuf::from("ip"),
        }
    }

    fn device(&self, addr: &str) -> PathBuf {
        self.sysfs.join("bus/pci/devices").join(addr)
    }

    /// The driver the device is bound to, if any.
    pub fn driver(&self, addr: &str) -> Option<String> {
        std::fs::read_link(self.device(addr).join("driver"))
            .ok()
            .and_then(|t| t.file_name().map(|f| f.to_string_lossy().into_owned()))
    }

    fn drivers_probe(&self, addr: &str) -> Result<(), String> {
        write(&self.sysfs.join("bus/pci/drivers_probe"), addr)
    }

    /// Bind to vfio-pci (driver_override, unbind, reprobe). Returns the
    /// driver it had, `None` when it already was on vfio-pci.
    pub fn detach(&self, addr: &str) -> Result<Option<Option<String>>, HostdevError> {
        let err = |reason: String| HostdevError::Bind {
            addr: addr.to_owned(),
            reason,
        };
        let dev = self.device(addr);
        if !dev.exists() {
            return Err(err(format!("{} does not exist", dev.display())));
        }
        let orig = self.driver(addr);
        if orig.as_deref() == Some(VFIO) {
            return Ok(None);
        }
        // Else the override leaves the VF with no driver at all.
        let vfio = self.sysfs.join("bus/pci/drivers").join(VFIO);
        if !vfio.is_dir() {
            return Err(err(format!(
                "the vfio-pci driver is not loaded ({} does not exist; modprobe vfio-pci)",
                vfio.display()
            )));
        }
        write(&dev.join("driver_override"), VFIO).map_err(err)?;
        if orig.is_some() {
            write(&dev.join("driver/unbind"), addr).map_err(err)?;
        }
        self.drivers_probe(addr).map_err(err)?;
        Ok(Some(orig))
    }

    /// Undo [`HostPrep::detach`]: off vfio-pci, clear the override, reprobe
    /// (the host driver takes it back).
    pub fn reattach(&self, addr: &str) -> Result<(), HostdevError> {
        let err = |reason: String| HostdevError::Reattach {
            addr: addr.to_owned(),
            reason,
        };
        let dev = self.device(addr);
        if self.driver(addr).as_deref() == Some(VFIO) {
            write(&dev.join("driver/unbind"), addr).map_err(err)?;
        }
        write(&dev.join("driver_override"), "\n").map_err(err)?;
        self.drivers_probe(addr).map_err(err)
    }

    /// PF netdev and VF index of a VF (`physfn/net/*`, `virtfnN`).
    pub fn pf_of(&self, addr: &str) -> Result<(String, u32), HostdevError> {
        let physfn = self.device(addr).join("physfn");
        let err = |reason: String| HostdevError::NoPf {
            addr: addr.to_owned(),
            reason,
        };
        let pf_addr = std::fs::read_link(&physfn)
            .map_err(|e| err(format!("{}: {e}", physfn.display())))?
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let net = physfn.join("net");
        let mut names: Vec<String> = std::fs::read_dir(&net)
            .map_err(|e| err(format!("{}: {e}", net.display())))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let pf = names
            .into_iter()
            .next()
            .ok_or_else(|| err(format!("{} is empty", net.display())))?;
        let vfs = crate::sysfs::virtual_functions_at(&self.device(&pf_addr))
            .map_err(|e| err(e.to_string()))?;
        let index = vfs
            .iter()
            .find(|(_, a)| a.to_string() == addr)
            .map(|(n, _)| *n)
            .ok_or_else(|| {
                err(format!(
                    "no virtfnN of {} points to it",
                    self.device(&pf_addr).display()
                ))
            })?;
        Ok((pf, index))
    }

    /// The PF's administrative settings for VF `index`: MAC and VLAN
    /// (0: none), from `ip -j -d link show dev PF` (`vfinfo_list`), which
    /// is what libvirt saves before it changes them (virNetDevSaveNetConfig).
    pub fn vf_admin(&self, pf: &str, index: u32) -> Option<(String, u32)> {
        let out = Command::new(&self.ip)
            .args(["-j", "-d", "link", "show", "dev", pf])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let vf = links
            .as_array()?
            .iter()
            .filter_map(|l| l.get("vfinfo_list")?.as_array())
            .flatten()
            .find(|v| v.get("vf").and_then(|n| n.as_u64()) == Some(u64::from(index)))?;
        let mac = vf.get("address")?.as_str()?.to_owned();
        // iproute2 prints either a list (IFLA_VF_VLAN_LIST) or a plain vlan.
        let vlan = vf
            .get("vlan_list")
            .and_then(|l| l.as_array()?.first()?.get("vlan")?.as_u64())
            .or_else(|| vf.get("vlan")?.as_u64())
            .unwrap_or(0);
        Some((mac, u32::try_from(vlan).ok()?))
    }

    /// Packets VF `index` of `pf` has sent, from the PF's per-VF
    /// statistics (`ip -s -j link show dev PF`), when the driver has them.
    pub fn vf_tx_packets(&self, pf: &str, index: u32) -> Option<u64> {
        let out = Command::new(&self.ip)
            .args(["-s", "-j", "link", "show", "dev", pf])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        links
            .as_array()?
            .iter()
            .filter_map(|l| l.get("vfinfo_list")?.as_array())
            .flatten()
            .find(|v| v.get("vf").and_then(|n| n.as_u64()) == Some(u64::from(index)))?
            .get("stats")?
            .get("tx")?
            .get("packets")?
            .as_u64()
    }

    /// The VF's own MAC, readable while a host driver has it.
    fn vf_mac(&self, addr: &str) -> Option<String> {
        let net = self.device(addr).join("net");
        let dev = std::fs::read_dir(net).ok()?.flatten().next()?;
        let mac = std::fs::read_to_string(dev.path().join("address")).ok()?;
        Some(mac.trim().to_owned()).filter(|m| !m.is_empty())
    }

    /// `ip link set dev PF vf N mac MAC [vlan TAG]`.
    fn set_vf(
        &self,
        addr: &str,
        pf: &str,
        index: u32,
        mac: &str,
        vlan: Option<u32>,
    ) -> Result<(), HostdevError> {
        let mut cmd = Command::new(&self.ip);
        cmd.args([
            "link",
            "set",
            "dev",
            pf,
            "vf",
            &index.to_string(),
            "mac",
            mac,
        ]);
        if let Some(v) = vlan {
            cmd.args(["vlan", &v.to_string()]);
        }
        let err = |reason: String| HostdevError::SetVf {
            addr: addr.to_owned(),
            pf: pf.to_owned(),
            index,
            mac: mac.to_owned(),
            reason,
        };
        tracing::debug!(command = ?cmd, "link operation");
        let out = cmd
            .output()
            .map_err(|e| err(format!("cannot run {}: {e}", self.ip.display())))?;
        if !out.status.success() {
            return Err(err(format!(
                "{} {}: {}",
                self.ip.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Prepare one VF; on failure what was done to it is undone.
    fn prepare_one(&self, r: &VfRequest) -> Result<PreparedVf, HostdevError> {
        let mut p = PreparedVf {
            address: r.address.clone(),
            detached_from: None,
            pf: None,
            original_mac: None,
            original_vlan: None,
            vlan_set: false,
            want: r.mac.clone().map(|m| (m, r.vlan)),
            parked: false,
        };
        if let Some(mac) = &r.mac {
            // What to restore: the PF's administrative MAC and VLAN for
            // the VF (the VF netdev's address is only what its driver
            // chose), read before anything changes.
            let admin = self
                .pf_of(&r.address)
                .ok()
                .and_then(|(pf, n)| self.vf_admin(&pf, n));
            match admin {
                Some((m, v)) => {
                    p.original_mac = Some(m);
                    p.original_vlan = Some(v);
                }
                None => p.original_mac = self.vf_mac(&r.address),
            }
            tracing::debug!(vf = %r.address, requested = %mac, original = ?p.original_mac, "VF MAC");
        }
        if r.managed {
            p.detached_from = self.detach(&r.address)?;
        } else {
            // QEMU's vfio-pci device needs the vfio-pci driver; libvirt
            // also knows pci-stub and xen-pciback, which QEMU cannot use.
            let driver = self.driver(&r.address);
            if driver.as_deref() != Some(VFIO) {
                return Err(HostdevError::Unmanaged {
                    addr: r.address.clone(),
                    driver,
                });
            }
        }
        if let Some(mac) = &r.mac {
            let res = self.pf_of(&r.address).and_then(|(pf, n)| {
                if r.parked {
                    return Ok((pf, n));
                }
                self.set_vf(&r.address, &pf, n, mac, r.vlan)
                    .map(|_| (pf, n))
            });
            match res {
                Ok(pfn) => {
                    p.pf = Some(pfn);
                    p.vlan_set = r.vlan.is_some() && !r.parked;
                    p.parked = r.parked;
                }
                Err(e) => {
                    let _ = self.release_one(&p);
                    return Err(e);
                }
            }
        }
        Ok(p)
    }

    /// Prepare every VF in order; on a failure the ones done are undone.
    pub fn prepare(&self, reqs: &[VfRequest]) -> Result<Vec<PreparedVf>, HostdevError> {
        let mut done = Vec::new();
        for r in reqs {
            match self.prepare_one(r) {
                Ok(p) => done.push(p),
                Err(e) => {
                    self.release(&done);
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    /// The PF's settings for the VF as they were before ([`PreparedVf::parked`]).
    fn park_one(&self, p: &mut PreparedVf) -> Result<(), HostdevError> {
        if p.parked {
            return Ok(());
        }
        if let (Some((pf, n)), Some(mac)) = (&p.pf, &p.original_mac) {
            let vlan = p.original_vlan_arg();
            self.set_vf(&p.address, pf, *n, mac, vlan)?;
            p.parked = true;
            p.vlan_set = false;
        }
        Ok(())
    }

    /// The guest's MAC and VLAN on the VF again (undoes [`Self::park_one`]).
    fn unpark_one(&self, p: &mut PreparedVf) -> Result<(), HostdevError> {
        if !p.parked {
            return Ok(());
        }
        if let (Some((pf, n)), Some((mac, vlan))) = (&p.pf, &p.want) {
            self.set_vf(&p.address, pf, *n, mac, *vlan)?;
            p.vlan_set = vlan.is_some();
        }
        p.parked = false;
        Ok(())
    }

    fn release_one(&self, p: &PreparedVf) -> Vec<String> {
        let mut problems = Vec::new();
        if p.parked {
            // The PF holds the original settings already.
        } else if let (Some((pf, n)), Some(mac)) = (&p.pf, &p.original_mac) {
            let vlan = p.original_vlan_arg();
            if let Err(e) = self.set_vf(&p.address, pf, *n, mac, vlan) {
                problems.push(e.to_string());
            }
        }
        if p.detached_from.is_some() {
            if let Err(e) = self.reattach(&p.address) {
                problems.push(e.to_string());
            }
        }
        problems
    }

    /// Undo in reverse order; every step is tried, the failures returned.
    pub fn release(&self, done: &[PreparedVf]) -> Vec<String> {
        done.iter()
            .rev()
            .flat_map(|p| self.release_one(p))
            .collect()
    }

    /// Prepare and record in `run_dir` (for [`release_recorded`]).
    pub fn prepare_recorded(&self, run_dir: &Path, reqs: &[VfRequest]) -> Result<(), HostdevError> {
        if reqs.is_empty() {
            return Ok(());
        }
        let vfs = self.prepare(reqs)?;
        let rec = Record {
            host: self.clone(),
            vfs,
        };
        let path = run_dir.join(RECORD);
        if let Err(e) = save_record(&path, &rec) {
            self.release(&rec.vfs);
            return Err(HostdevError::Record {
                path: path.display().to_string(),
                reason: e.to_string(),
            });
        }
        Ok(())
    }
}

/// Hotplug: prepare more VFs of a running domain, adding them to what
/// its run directory records (start's [`HostPrep::prepare_recorded`]
/// replaces the record).
pub fn prepare_more_recorded(
    host: &HostPrep,
    run_dir: &Path,
    reqs: &[VfRequest],
) -> Result<(), HostdevError> {
    if reqs.is_empty() {
        return Ok(());
    }
    let path = run_dir.join(RECORD);
    let corrupt = |reason: String| HostdevError::Record {
        path: path.display().to_string(),
        reason,
    };
    let mut rec = match read_optional(&path).map_err(|e| corrupt(e.to_string()))? {
        Some(t) => serde_json::from_str::<Record>(&t).map_err(|e| corrupt(e.to_string()))?,
        None => Record {
            host: host.clone(),
            vfs: Vec::new(),
        },
    };
    let done = rec.host.prepare(reqs)?;
    rec.vfs.extend(done.iter().cloned());
    if let Err(e) = save_record(&path, &rec) {
        rec.host.release(&done);
        return Err(corrupt(e.to_string()));
    }
    Ok(())
}

/// Hotplug: undo the host preparation of one VF (`address`) of a running
/// domain and drop it from the record. Returns the steps that failed.
pub fn release_recorded_one(run_dir: &Path, address: &str) -> Vec<String> {
    let path = run_dir.join(RECORD);
    let mut rec = match load_record(&path) {
        Ok(Some(r)) => r,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![e],
    };
    let (gone, kept): (Vec<PreparedVf>, Vec<PreparedVf>) =
        rec.vfs.into_iter().partition(|v| v.address == address);
    let mut problems = rec.host.release(&gone);
    rec.vfs = kept;
    if let Err(e) = save_record(&path, &rec) {
        problems.push(e.to_string());
    }
    problems
}

/// The record of a run directory, if any; unreadable or corrupt is the
/// problem to report.
fn load_record(path: &Path) -> Result<Option<Record>, String> {
    match read_optional(path) {
        Ok(Some(t)) => serde_json::from_str::<Record>(&t)
            .map(Some)
            .map_err(|e| format!("{} is corrupt: {e}", path.display())),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn save_record(path: &Path, rec: &Record) -> Result<(), crate::state::StateError> {
    let json = serde_json::to_string_pretty(rec).expect("record serializes");
    write_atomic(path, json.as_bytes(), 0o600)
}

/// Park (`park`) or unpark every VF recorded in `run_dir` (see
/// [`PreparedVf::parked`]); the record is updated. Returns the failures.
/// The failover pairs' bridge ports follow in `netdev::pair`, which calls
/// this.
pub(crate) fn park_vfs(run_dir: &Path, park: bool) -> Vec<String> {
    let path = run_dir.join(RECORD);
    let mut rec = match load_record(&path) {
        Ok(Some(r)) => r,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![e],
    };
    let host = rec.host.clone();
    let mut problems: Vec<String> = rec
        .vfs
        .iter_mut()
        .filter_map(|v| match park {
            true => host.park_one(v).err(),
            false => host.unpark_one(v).err(),
        })
        .map(|e| e.to_string())
        .collect();
    if let Err(e) = save_record(&path, &rec) {
        problems.push(e.to_string());
    }
    if park {
        // A bridge that learnt the guest's MAC on its uplink (the VF's
        // frames came in there) would keep sending its frames there, past
        // the standby's tap (which never learns): forget it (the pair's
        // own static entry then takes the frames to the standby).
        for (mac, _) in rec.vfs.iter().filter_map(|v| v.want.as_ref()) {
            if let Err(e) = forget_learned_mac(mac) {
                problems.push(format!("cannot make the bridges forget {mac}: {e}"));
            }
        }
    }
    problems
}

/// (guest MAC, PF netdev) of every real VF recorded in `run_dir` that
/// gets the guest's MAC through its PF.
pub fn recorded_vf_pfs(run_dir: &Path) -> Vec<(String, String)> {
    let Ok(Some(rec)) = load_record(&run_dir.join(RECORD)) else {
        return Vec::new();
    };
    rec.vfs
        .iter()
        .filter_map(|v| match (&v.want, &v.pf) {
            (Some((mac, _)), Some((pf, _))) => Some((mac.clone(), pf.clone())),
            _ => None,
        })
        .collect()
}

/// The PCI addresses of every host device recorded in `run_dir`.
pub fn recorded_addresses(run_dir: &Path) -> Vec<String> {
    match load_record(&run_dir.join(RECORD)) {
        Ok(Some(rec)) => rec.vfs.into_iter().map(|v| v.address).collect(),
        _ => Vec::new(),
    }
}

/// Remove every bridge's learnt (dynamic) entry for `mac`.
fn forget_learned_mac(mac: &str) -> std::io::Result<()> {
    let bytes = crate::netdev::nl::parse_mac(mac)
        .ok_or_else(|| std::io::Error::other(format!("bad MAC {mac}")))?;
    for port in crate::netdev::nl::fdb_ports(bytes)? {
        crate::netdev::nl::fdb_del(port, bytes)?;
    }
    Ok(())
}

/// How much each real VF of `run_dir` has done for its guest, by the
/// guest's MAC: the packets it sent (`ip -s -j link show PF`,
/// `vfinfo_list` stats) plus the interrupts its vfio-pci device raised
/// (`/proc/interrupts`). A PF driver without per-VF statistics (igb:
/// none, or zeros) still shows the guest's driver at work through the
/// interrupts, which start when the driver opens the VF. `None` where
/// neither can be read.
pub fn recorded_vf_activity(run_dir: &Path) -> Vec<(String, Option<u64>)> {
    let Ok(Some(rec)) = load_record(&run_dir.join(RECORD)) else {
        return Vec::new();
    };
    let interrupts = std::fs::read_to_string("/proc/interrupts").ok();
    rec.vfs
        .iter()
        .filter_map(|v| {
            let ((mac, _), (pf, index)) = (v.want.as_ref()?, v.pf.as_ref()?);
            let tx = rec.host.vf_tx_packets(pf, *index);
            let irqs = interrupts
                .as_deref()
                .map(|t| vfio_interrupts(t, &v.address));
            let activity = match (tx, irqs) {
                (None, None) => None,
                (t, i) => Some(t.unwrap_or(0) + i.unwrap_or(0)),
            };
            Some((mac.clone(), activity))
        })
        .collect()
}

/// The interrupts vfio-pci took for the device `addr` (every CPU's count
/// of the `vfio-msix[N](ADDR)`, `vfio-msi…`, `vfio-intx…` lines of
/// `/proc/interrupts`); 0 before the guest's driver enabled any.
pub fn vfio_interrupts(proc_interrupts: &str, addr: &str) -> u64 {
    let tag = format!("({addr})");
    proc_interrupts
        .lines()
        .filter(|l| l.contains("vfio-") && l.trim_end().ends_with(&tag))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|w| w.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Undo what [`HostPrep::prepare_recorded`] did for a run directory (with
/// the host it recorded) and forget it. Returns the steps that failed.
pub fn release_recorded(run_dir: &Path) -> Vec<String> {
    let path = run_dir.join(RECORD);
    let text = match read_optional(&path) {
        Ok(Some(t)) => t,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![format!("{}: {e}", path.display())],
    };
    let mut problems = match serde_json::from_str::<Record>(&text) {
        Ok(rec) => rec.host.release(&rec.vfs),
        Err(e) => vec![format!("{} is corrupt: {e}", path.display())],
    };
    if let Err(e) = remove_optional(&path) {
        problems.push(e.to_string());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vfio_interrupts_of_one_device_summed_over_cpus() {
        let text = "           CPU0       CPU1       \n  \
 24:          3          0   PCI-MSI 49152-edge      virtio0-config\n  \
 45:          7         12  IR-PCI-MSIX-0000:00:13.2    0-edge      vfio-msix[0](0000:00:13.2)\n  \
 46:          1          2  IR-PCI-MSIX-0000:00:13.2    1-edge      vfio-msix[1](0000:00:13.2)\n  \
 47:        100          0  IR-PCI-MSIX-0000:00:13.3    0-edge      vfio-msix[0](0000:00:13.3)\n";
        assert_eq!(vfio_interrupts(text, "0000:00:13.2"), 22);
        assert_eq!(vfio_interrupts(text, "0000:00:13.3"), 100);
        assert_eq!(vfio_interrupts(text, "0000:00:13.4"), 0);
    }
    use std::os::unix::fs::{symlink, PermissionsExt};

    const VF: &str = "0000:03:10.2";
    const PF: &str = "0000:03:00.0";

    /// A sysfs with a PF (netdev `enp3s0f0`, VFs 0..=2) whose VF 1 is
    /// `VF` bound to ixgbevf with netdev `eth5`, and an `ip` recording its argv.
    struct Fake {
        dir: tempfile::TempDir,
        host: HostPrep,
    }

    impl Fake {
        fn new(ip_exit: i32) -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("sys");
            let devs = root.join("bus/pci/devices");
            let drivers = root.join("bus/pci/drivers");
            for d in ["ixgbevf", "vfio-pci", "ixgbe"] {
                std::fs::create_dir_all(drivers.join(d)).unwrap();
                std::fs::write(drivers.join(d).join("bind"), "").unwrap();
                std::fs::write(drivers.join(d).join("unbind"), "").unwrap();
            }
            std::fs::write(root.join("bus/pci/drivers_probe"), "").unwrap();
            for (n, a) in [(0, "0000:03:10.0"), (1, VF), (2, "0000:03:10.4")] {
                let d = devs.join(a);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("driver_override"), "(null)\n").unwrap();
                symlink("../../drivers/ixgbevf", d.join("driver")).unwrap();
                symlink(format!("../{PF}"), d.join("physfn")).unwrap();
                std::fs::create_dir_all(devs.join(PF)).unwrap();
                symlink(format!("../{a}"), devs.join(PF).join(format!("virtfn{n}"))).unwrap();
            }
            std::fs::create_dir_all(devs.join(PF).join("net/enp3s0f0")).unwrap();
            std::fs::create_dir_all(devs.join(VF).join("net/eth5")).unwrap();
            std::fs::write(
                devs.join(VF).join("net/eth5/address"),
                "aa:bb:cc:00:00:01\n",
            )
            .unwrap();
            let ip = dir.path().join("ip");
            let log = dir.path().join("ip.log");
            std::fs::write(
                &ip,
                format!(
                    "#!/bin/sh\ncase \"$*\" in *' show '*) cat '{}'; exit 0;; esac\necho \"$*\" >> '{}'\necho 'RTNETLINK answers: nope' >&2\nexit {ip_exit}\n",
                    dir.path().join("show.json").display(),
                    log.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).unwrap();
            // The PF's view, as iproute2 6.1 prints it: VF 1 has an
            // administrative MAC of its own and VLAN 7.
            std::fs::write(
                dir.path().join("show.json"),
                r#"[{"ifname":"enp3s0f0","vfinfo_list":[{"vf":0,"link_type":"ether","address":"00:00:00:00:00:00","spoofchk":true},{"vf":1,"link_type":"ether","address":"52:54:00:00:00:90","vlan_list":[{"vlan":7}],"spoofchk":true,"trust":false}]}]"#,
            )
            .unwrap();
            Fake {
                host: HostPrep { sysfs: root, ip },
                dir,
            }
        }
        fn read(&self, rel: &str) -> String {
            std::fs::read_to_string(self.host.sysfs.join(rel)).unwrap()
        }
        fn ip_log(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join("ip.log"))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        }
        /// What the kernel would do on drivers_probe: follow the override.
        fn rebind(&self, driver: &str) {
            let l = self
                .host
                .sysfs
                .join("bus/pci/devices")
                .join(VF)
                .join("driver");
            std::fs::remove_file(&l).unwrap();
            symlink(format!("../../drivers/{driver}"), l).unwrap();
        }
    }

    fn req(managed: bool, mac: Option<&str>, vlan: Option<u32>) -> VfRequest {
        VfRequest {
            address: VF.into(),
            managed,
            mac: mac.map(str::to_owned),
            vlan,
            parked: false,
        }
    }

    #[test]
    fn managed_vf_is_bound_to_vfio_and_given_back() {
        let f = Fake::new(0);
        let done = f.host.prepare(&[req(true, None, None)]).unwrap();
        let dev = format!("bus/pci/devices/{VF}");
        assert_eq!(f.read(&format!("{dev}/driver_override")), "vfio-pci");
        assert_eq!(f.read("bus/pci/drivers/ixgbevf/unbind"), VF);
        assert_eq!(f.read("bus/pci/drivers_probe"), VF);
        assert_eq!(done[0].detached_from, Some(Some("ixgbevf".into())));
        assert!(f.ip_log().is_empty(), "no MAC asked for");

        f.rebind("vfio-pci");
        std::fs::write(f.host.sysfs.join("bus/pci/drivers_probe"), "").unwrap();
        assert!(f.host.release(&done).is_empty());
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), VF);
        assert_eq!(f.read(&format!("{dev}/driver_override")), "\n");
        assert_eq!(f.read("bus/pci/drivers_probe"), VF);
    }

    #[test]
    fn unmanaged_vf_on_its_host_driver_is_refused_untouched() {
        let f = Fake::new(0);
        let e = f
            .host
            .prepare(&[req(false, Some("52:54:00:6d:90:02"), None)])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Requested operation is not valid: Unmanaged PCI device {VF} must be manually detached from the host")
        );
        assert!(matches!(e, HostdevError::Unmanaged { driver: Some(ref d), .. } if d == "ixgbevf"));
        assert_eq!(
            f.read(&format!("bus/pci/devices/{VF}/driver_override")),
            "(null)\n"
        );
        assert_eq!(f.read("bus/pci/drivers/ixgbevf/unbind"), "");
        assert!(f.ip_log().is_empty(), "no MAC set on a refused VF");
    }

    #[test]
    fn unmanaged_vf_bound_by_the_admin_is_used_as_is() {
        let f = Fake::new(0);
        f.rebind("vfio-pci");
        let done = f.host.prepare(&[req(false, None, None)]).unwrap();
        assert_eq!(done[0].detached_from, None);
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
        assert!(f.host.release(&done).is_empty());
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), "", "left bound");
        assert_eq!(
            f.read(&format!("bus/pci/devices/{VF}/driver_override")),
            "(null)\n"
        );
    }

    #[test]
    fn already_on_vfio_is_left_alone() {
        let f = Fake::new(0);
        f.rebind("vfio-pci");
        let done = f.host.prepare(&[req(true, None, None)]).unwrap();
        assert_eq!(done[0].detached_from, None);
        assert_eq!(f.read("bus/pci/drivers_probe"), "");
        assert!(f.host.release(&done).is_empty());
        assert_eq!(f.read("bus/pci/drivers/vfio-pci/unbind"), "");
    }

    #[test]
    fn mac_and_vlan_set_through_the_pf_and_restored() {
        let f = Fake::new(0);
        // managed='no': the admin bound it; teamvirt leaves the binding.
        f.rebind("vfio-pci");
        let done = f
            .host
            .prepare(&[req(false, Some("52:54:00:6d:90:02"), Some(42))])
            .unwrap();
        assert_eq!(
            f.ip_log(),
            ["link set dev enp3s0f0 vf 1 mac 52:54:00:6d:90:02 vlan 42"]
        );
        assert_eq!(
            f.read(&format!("bus/pci/devices/{VF}/driver_override")),
            "(null)\n"
        );
        assert!(f.host.release(&done).is_empty());
        // The PF's administrative MAC and VLAN come back, not the
        // address the VF's netdev had (aa:bb:cc:00:00:01).
        assert_eq!(
            f.ip_log()[1],
            "link set dev enp3s0f0 vf 1 mac 52:54:00:00:00:90 vlan 7"
        );
    }

    /// A migration destination binds its VF but leaves the PF's settings
    /// until the guest resumes there; a source parks them once the guest
    /// unplugged the VF and unparks them on a rollback; release restores
    /// what a parked VF does not hold already.
    #[test]
    fn parked_vfs_hold_the_original_settings_until_applied() {
        use crate::netdev::pair::{apply_parked_recorded, park_recorded_vfs};
        let f = Fake::new(0);
        let run = f.dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let mut r = req(true, Some("52:54:00:6d:90:02"), Some(42));
        r.parked = true;
        f.host.prepare_recorded(&run, &[r]).unwrap();
        assert!(f.ip_log().is_empty(), "nothing set while parked");
        assert!(apply_parked_recorded(&run).is_empty());
        assert_eq!(
            f.ip_log(),
            ["link set dev enp3s0f0 vf 1 mac 52:54:00:6d:90:02 vlan 42"]
        );
        assert!(apply_parked_recorded(&run).is_empty());
        assert_eq!(f.ip_log().len(), 1, "applied once");
        assert!(park_recorded_vfs(&run).is_empty());
        assert_eq!(
            f.ip_log()[1],
            "link set dev enp3s0f0 vf 1 mac 52:54:00:00:00:90 vlan 7"
        );
        f.rebind("vfio-pci");
        assert!(release_recorded(&run).is_empty());
        assert_eq!(
            f.ip_log().len(),
            2,
            "a parked VF holds the original settings already"
        );
    }

    #[test]
    fn no_administrative_mac_before_is_cleared_with_zeros() {
        let f = Fake::new(0);
        std::fs::write(
            f.dir.path().join("show.json"),
            r#"[{"ifname":"enp3s0f0","vfinfo_list":[{"vf":1,"link_type":"ether","address":"00:00:00:00:00:00"}]}]"#,
        )
        .unwrap();
        let done = f
            .host
            .prepare(&[req(true, Some("52:54:00:6d:90:02"), Some(42))])
            .unwrap();
        assert_eq!(done[0].original_mac.as_deref(), Some("00:00:00:00:00:00"));
        f.rebind("vfio-pci");
        assert!(f.host.release(&done).is_empty());
        assert_eq!(
            f.ip_log(),
            [
                "link set dev enp3s0f0 vf 1 mac 52:54:00:6d:90:02 vlan 42",
                "link set dev enp3s0f0 vf 1 mac 00:00:00:00:00:00 vlan 0"
            ]
        );
    }

    #[test]
    fn failed_ip_undoes_the_binding_and_names_the_vf() {
        let f = Fake::new(2);
        let e = f
            .host
            .prepare(&[req(true, Some("52:54:00:6d:90:02"), None)])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "Failed to set MAC 52:54:00:6d:90:02 on VF 0000:03:10.2 of PF enp3s0f0 (vf 1)"
            ),
            "{e}"
        );
        assert!(e.contains("RTNETLINK answers: nope"), "{e}");
        // Undone: the override cleared again and the device reprobed.
        assert_eq!(
            f.read(&format!("bus/pci/devices/{VF}/driver_override")),
            "\n"
        );
    }

    #[test]
    fn missing_device_names_vf_and_path() {
        let f = Fake::new(0);
        let mut r = req(true, None, None);
        r.address = "0000:99:00.1".into();
        let e = f.host.prepare(&[req(true, None, None), r]).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("Failed to bind PCI device 0000:99:00.1 to vfio-pci: "),
            "{s}"
        );
        assert!(
            s.contains("sys/bus/pci/devices/0000:99:00.1 does not exist"),
            "{s}"
        );
        // The first VF, already bound, was given back.
        assert_eq!(
            f.read(&format!("bus/pci/devices/{VF}/driver_override")),
            "\n"
        );
    }

    #[test]
    fn vfio_pci_not_loaded_is_said_before_anything_is_written() {
        let f = Fake::new(0);
        std::fs::remove_dir_all(f.host.sysfs.join("bus/pci/drivers/vfio-pci")).unwrap();
        let e = f
            .host
            .prepare(&[req(true, None, None)])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("Failed to bind PCI device 0000:03:10.2 to vfio-pci: the vfio-pci driver is not loaded"),
            "{e}"
        );
        assert_eq!(
            f.read(&format!("bus/pci/devices/{VF}/driver_override")),
            "(null)\n"
        );
    }

    #[test]
    fn recorded_prep_is_released_once_from_the_run_dir() {
        let f = Fake::new(0);
        let run = f.dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        f.host
            .prepare_recorded(&run, &[req(true, Some("52:54:00:6d:90:02"), None)])
            .unwrap();
        assert!(run.join(RECORD).exists());
        std::fs::write(f.host.sysfs.join("bus/pci/drivers_probe"), "").unwrap();
        assert!(release_recorded(&run).is_empty());
        assert!(!run.join(RECORD).exists());
        assert_eq!(f.read("bus/pci/drivers_probe"), VF);
        assert_eq!(f.ip_log().len(), 2);
        assert!(release_recorded(&run).is_empty(), "nothing left to undo");
        assert_eq!(f.ip_log().len(), 2);
    }
}
