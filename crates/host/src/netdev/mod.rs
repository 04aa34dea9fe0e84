//! Host networking: taps, macvtaps, bridge ports (netlink).
//!
//! The host side of tap-backed NICs, as libvirt's QEMU driver makes it
//! (`qemuInterfaceBridgeConnect`, `qemuInterfaceEthernetConnect`,
//! `qemuInterfaceDirectConnect`): a tap on a Linux or Open vSwitch bridge
//! ([`bridge_tap`]), a tap of its own ([`ethernet_tap`]), or a macvtap on
//! a host NIC ([`macvtap`]), each returned as open descriptors for QEMU.
//! Also the lab VF's tap on a pool's `--lab-bridge` ([`lab_tap`]). Which
//! interface wants what is the caller's (`teamvirt_runtime::netsetup`):
//! these functions take plain values ([`TapSpec`]).
//!
//! Everything created is recorded in the run directory (`netdevs.json`)
//! as it is created, and removed by [`release_recorded`] wherever the VFs
//! are given back (destroy, QEMU found dead, failed start, migration).
//! Taps are not persistent: they vanish with QEMU's descriptors; macvtaps
//! and OVS ports do not, and are deleted.

pub mod nl;
pub mod pair;
pub mod tap;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};
use teamvirt_conf::model::MacAddr;

use crate::state::{read_optional, remove_optional, write_atomic};

/// Errors of host network setup.
#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    #[error("Unable to add bridge {bridge} port {tap}: {source}")]
    Bridge {
        bridge: String,
        tap: String,
        source: std::io::Error,
    },
    #[error("Requested operation is not valid: network '{network}' is not active: its bridge '{bridge}' does not exist")]
    NetworkInactive { network: String, bridge: String },
    #[error("Cannot get interface MTU on '{bridge}': No such device")]
    NoBridge { bridge: String },
    #[error("Unable to create tap device {name}: {source}")]
    Tap {
        name: String,
        source: std::io::Error,
    },
    #[error("Unable to create macvtap device on {dev}: {source}")]
    Macvtap { dev: String, source: std::io::Error },
    #[error("Unable to get index for interface {dev}: No such device")]
    NoDevice { dev: String },
    #[error("Unable to add port {tap} to OVS bridge {bridge}: {reason}")]
    Ovs {
        tap: String,
        bridge: String,
        reason: String,
    },
    #[error("cannot set up host network device {what}: {source}")]
    Link {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// One thing created on the host for a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// What it serves: `net0 (52:54:00:..)` or `lab hostdev0`.
    pub device: String,
    pub ifname: String,
    pub ifindex: u32,
    /// `tap` or `macvtap`.
    pub kind: String,
    pub bridge: Option<String>,
    /// An Open vSwitch port (removed with ovs-vsctl).
    #[serde(default)]
    pub ovs: bool,
    /// A bridge port of one half of a failover pair (see [`pair`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair: Option<PairMember>,
}

/// Which half of which failover pair a bridge port serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairMember {
    /// The guest's MAC (both halves have it).
    pub mac: String,
    pub role: pair::Role,
}

/// The file of what was created, in a run directory.
pub fn record_path(run_dir: &Path) -> std::path::PathBuf {
    run_dir.join("netdevs.json")
}

/// What the tap functions recorded in `run_dir` (empty when nothing or unreadable).
pub fn recorded(run_dir: &Path) -> Vec<Created> {
    load_record(run_dir)
}

fn load_record(run_dir: &Path) -> Vec<Created> {
    read_optional(&record_path(run_dir))
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn save_record(run_dir: &Path, list: &[Created]) -> Result<(), NetdevError> {
    let text = serde_json::to_string_pretty(list).expect("serializes");
    write_atomic(&record_path(run_dir), text.as_bytes(), 0o600)?;
    Ok(())
}

/// Record one creation at once (before anything else can fail).
fn append_record(run_dir: &Path, c: Created) -> Result<(), NetdevError> {
    let mut list = load_record(run_dir);
    list.push(c);
    save_record(run_dir, &list)
}

/// Remove what the tap functions recorded in `run_dir` (its QEMU is gone). Returns
/// the steps that failed; the record goes once everything is gone.
pub fn release_recorded(run_dir: &Path) -> Vec<String> {
    let mut problems = pair::release(run_dir);
    let list = load_record(run_dir);
    if list.is_empty() {
        let _ = remove_optional(&record_path(run_dir));
        return problems;
    }
    let mut left = Vec::new();
    for c in list {
        let mut ok = true;
        if c.ovs {
            if let Err(e) = ovs_vsctl(&["--if-exists", "del-port", &c.ifname]) {
                problems.push(format!("cannot remove OVS port {}: {e}", c.ifname));
                ok = false;
            }
        }
        // Only the very link created (same name and index): a tap that
        // vanished with QEMU may have a namesake by now.
        match nl::link_by_index(c.ifindex) {
            Ok(Some(l)) if l.name == c.ifname => {
                if let Err(e) = nl::del_link(c.ifindex) {
                    problems.push(format!("cannot delete {} {}: {e}", c.kind, c.ifname));
                    ok = false;
                }
            }
            Ok(_) => {}
            Err(e) => {
                problems.push(format!("cannot look up {} {}: {e}", c.kind, c.ifname));
                ok = false;
            }
        }
        if !ok {
            left.push(c);
        }
    }
    if left.is_empty() {
        let _ = remove_optional(&record_path(run_dir));
    } else {
        let _ = save_record(run_dir, &left);
    }
    problems
}

/// Open vSwitch's command, as libvirt runs it.
fn ovs_vsctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ovs-vsctl")
        .arg("--timeout=5")
        .args(args)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "Open vSwitch is not installed (no ovs-vsctl in PATH)".to_string()
            } else {
                format!("cannot run ovs-vsctl: {e}")
            }
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// libvirt gives the host side of a tap the guest's MAC with the first
/// byte 0xFE, so the bridge never takes it as its own address.
pub fn host_mac(guest: [u8; 6]) -> [u8; 6] {
    let mut m = guest;
    m[0] = 0xfe;
    m
}

/// One tap (or macvtap) to create for a guest interface, in plain values.
#[derive(Debug, Clone)]
pub struct TapSpec<'a> {
    /// What it serves, as recorded: `net0 (52:54:00:..)`.
    pub device: String,
    /// The name or name template (`vnet%d`).
    pub template: String,
    /// Queues (descriptors) to open, at least 1.
    pub queues: u32,
    /// With a virtio-net header (a virtio NIC).
    pub vnet_hdr: bool,
    /// The guest's MAC (the host side gets [`host_mac`] of it).
    pub mac: Option<[u8; 6]>,
    /// The interface's own MTU.
    pub mtu: Option<u32>,
    /// The domain's run directory (the record).
    pub run_dir: &'a Path,
}

/// An Open vSwitch port's external ids (libvirt's).
#[derive(Debug, Clone)]
pub struct OvsPort {
    /// The guest's MAC as text.
    pub guest_mac: String,
    /// `<parameters interfaceid>`, else the domain's UUID.
    pub iface_id: String,
    /// The domain's UUID.
    pub vm_uuid: Option<String>,
}

/// A tap on `bridge` for `spec`: on Open vSwitch when `ovs` is given,
/// else on a Linux bridge, as a failover pair's standby half (no
/// learning, see [`pair`]) when `standby`. `network` names the network
/// the bridge serves (for the error when it is missing).
pub fn bridge_tap(
    spec: &TapSpec,
    bridge: &str,
    network: Option<&str>,
    ovs: Option<&OvsPort>,
    standby: bool,
) -> Result<Vec<OwnedFd>, NetdevError> {
    let br = bridge_link(bridge, network)?;
    if ovs.is_some() && ovs_vsctl(&["--version"]).is_err() {
        return Err(NetdevError::Ovs {
            tap: "(not created)".into(),
            bridge: bridge.to_string(),
            reason: "Open vSwitch is not installed (no ovs-vsctl in PATH)".into(),
        });
    }
    let (name, fds) = open_tap(spec)?;
    let idx = link_index(&name)?;
    let standby = ovs.is_none() && standby;
    // Wired as a pair's half only with the guest's MAC to pin.
    let member = spec.mac.filter(|_| standby).map(|m| PairMember {
        mac: MacAddr(m).to_string(),
        role: pair::Role::Standby,
    });
    let lock = member.is_some();
    append_record(
        spec.run_dir,
        Created {
            device: spec.device.clone(),
            ifname: name.clone(),
            ifindex: idx,
            kind: "tap".into(),
            bridge: Some(bridge.to_string()),
            ovs: ovs.is_some(),
            pair: member,
        },
    )?;
    let mtu = spec.mtu.or(br.mtu);
    let mac = spec.mac.map(host_mac);
    let fail = |source| NetdevError::Bridge {
        bridge: bridge.to_string(),
        tap: name.clone(),
        source,
    };
    if let Some(port) = ovs {
        nl::configure(idx, mac, mtu, None, false).map_err(fail)?;
        // Recorded first: a half-added port is removed with the rest.
        ovs_add_port(bridge, &name, port)?;
        nl::configure(idx, None, None, None, true).map_err(fail)?;
    } else {
        nl::configure(idx, mac, mtu, Some(br.index), true).map_err(fail)?;
        if standby {
            pair_port(idx, bridge, &name, lock)?;
        }
    }
    Ok(fds)
}

/// The bridge a tap goes on: missing is the network's being inactive
/// when it serves one.
fn bridge_link(bridge: &str, network: Option<&str>) -> Result<nl::Link, NetdevError> {
    nl::link_by_name(bridge)
        .map_err(|source| NetdevError::Link {
            what: bridge.to_string(),
            source,
        })?
        .ok_or_else(|| match network {
            Some(n) => NetdevError::NetworkInactive {
                network: n.to_string(),
                bridge: bridge.to_string(),
            },
            None => NetdevError::NoBridge {
                bridge: bridge.to_string(),
            },
        })
}

/// Open the tap of `spec`: its name, queue descriptors and link index.
/// The tap `spec` asks for: its name and queue descriptors.
fn open_tap(spec: &TapSpec) -> Result<(String, Vec<OwnedFd>), NetdevError> {
    tap::open_tap(&spec.template, spec.queues, spec.vnet_hdr).map_err(|source| NetdevError::Tap {
        name: spec.template.clone(),
        source,
    })
}

fn link_index(name: &str) -> Result<u32, NetdevError> {
    nl::link_by_name(name)
        .ok()
        .flatten()
        .map(|l| l.index)
        .ok_or_else(|| NetdevError::NoDevice {
            dev: name.to_string(),
        })
}

/// `ovs-vsctl add-port` with libvirt's external ids.
fn ovs_add_port(bridge: &str, name: &str, port: &OvsPort) -> Result<(), NetdevError> {
    let set = |kv: String| -> [String; 5] {
        [
            "--".into(),
            "set".into(),
            "Interface".into(),
            name.to_string(),
            kv,
        ]
    };
    let mut args: Vec<String> = vec![
        "--".into(),
        "--may-exist".into(),
        "add-port".into(),
        bridge.into(),
        name.to_string(),
    ];
    args.extend(set(format!(
        "external-ids:attached-mac=\"{}\"",
        port.guest_mac
    )));
    args.extend(set(format!("external-ids:iface-id=\"{}\"", port.iface_id)));
    if let Some(u) = &port.vm_uuid {
        args.extend(set(format!("external-ids:vm-id=\"{u}\"")));
    }
    args.extend(set("external-ids:iface-status=active".into()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    ovs_vsctl(&argv).map_err(|reason| NetdevError::Ovs {
        tap: name.to_string(),
        bridge: bridge.to_string(),
        reason,
    })
}

/// `type='ethernet'`: a tap of its own, not on any bridge; `unmanaged`
/// (`<target managed='no'>`): an existing tap opened as it is.
pub fn ethernet_tap(spec: &TapSpec, unmanaged: bool) -> Result<Vec<OwnedFd>, NetdevError> {
    if unmanaged && nl::link_by_name(&spec.template).ok().flatten().is_none() {
        return Err(NetdevError::NoDevice {
            dev: spec.template.clone(),
        });
    }
    let (name, fds) = open_tap(spec)?;
    if !unmanaged {
        let idx = link_index(&name)?;
        append_record(
            spec.run_dir,
            Created {
                device: spec.device.clone(),
                ifname: name.clone(),
                ifindex: idx,
                kind: "tap".into(),
                bridge: None,
                ovs: false,
                pair: None,
            },
        )?;
        let mac = spec.mac.map(host_mac);
        nl::configure(idx, mac, spec.mtu, None, true).map_err(|source| NetdevError::Link {
            what: name.clone(),
            source,
        })?;
    }
    Ok(fds)
}

/// `type='direct'`: a macvtap on host NIC `dev` (mode `mode`) with the
/// guest's MAC, named `spec.template` when `named`, else libvirt's
/// `macvtap%d`; its character device's descriptors for QEMU.
pub fn macvtap(
    spec: &TapSpec,
    dev: &str,
    mode: &str,
    named: bool,
) -> Result<Vec<OwnedFd>, NetdevError> {
    let parent = nl::link_by_name(dev)
        .ok()
        .flatten()
        .ok_or_else(|| NetdevError::NoDevice {
            dev: dev.to_string(),
        })?;
    let mut n = 0;
    let (name, idx) = loop {
        let name = if named {
            spec.template.clone()
        } else {
            format!("macvtap{n}")
        };
        match nl::add_macvtap(&name, parent.index, mode, spec.mac) {
            Ok(i) => break (name, i),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && !named && n < 1000 => {
                n += 1;
            }
            Err(source) => {
                return Err(NetdevError::Macvtap {
                    dev: dev.to_string(),
                    source,
                })
            }
        }
    };
    // Recorded before anything else can fail: the macvtap outlives us.
    append_record(
        spec.run_dir,
        Created {
            device: spec.device.clone(),
            ifname: name.clone(),
            ifindex: idx,
            kind: "macvtap".into(),
            bridge: None,
            ovs: false,
            pair: None,
        },
    )?;
    nl::configure(idx, None, spec.mtu, None, true).map_err(|source| NetdevError::Link {
        what: name.clone(),
        source,
    })?;
    tap::open_macvtap(&name, idx, spec.queues, spec.run_dir).map_err(|source| NetdevError::Link {
        what: format!("/dev/tap{idx} of {name}"),
        source,
    })
}

/// Lab mode on a bridge: the emulated primary's backend is a tap on the
/// pool's lab bridge, so its traffic reaches the standby's segment.
/// Returns its descriptor.
pub fn lab_tap(
    label: &str,
    mac: Option<[u8; 6]>,
    bridge: &str,
    run_dir: &Path,
) -> Result<OwnedFd, NetdevError> {
    let br = bridge_link(bridge, None)?;
    let (name, mut fds) = tap::open_tap("vnet%d", 1, false).map_err(|source| NetdevError::Tap {
        name: "vnet%d".into(),
        source,
    })?;
    let idx = link_index(&name)?;
    append_record(
        run_dir,
        Created {
            device: label.to_string(),
            ifname: name.clone(),
            ifindex: idx,
            kind: "tap".into(),
            bridge: Some(bridge.to_string()),
            ovs: false,
            pair: mac.map(|m| PairMember {
                mac: MacAddr(m).to_string(),
                role: pair::Role::Primary,
            }),
        },
    )?;
    nl::configure(idx, mac.map(host_mac), br.mtu, Some(br.index), true).map_err(|source| {
        NetdevError::Bridge {
            bridge: bridge.to_string(),
            tap: name.clone(),
            source,
        }
    })?;
    pair_port(idx, bridge, &name, mac.is_some())?;
    Ok(fds.remove(0))
}

/// A bridge port of one half of a failover pair: no address learning,
/// and (`lock`: it is recorded as a pair's half) locked until
/// [`pair::wire`] makes it the guest's half.
///
/// The guest's MAC must not be learnt on either half: the guest's
/// net_failover takes frames only from the primary while one is
/// registered, and only from the standby otherwise; a bridge that learnt
/// the MAC on one port keeps sending there after the other took over
/// (the primary unplugged on the source, re-plugged on the destination):
/// seconds of loss. Where the guest's frames go is [`pair::wire`]'s
/// static entry, moved at exactly those moments.
fn pair_port(idx: u32, bridge: &str, name: &str, lock: bool) -> Result<(), NetdevError> {
    let fail = |source| NetdevError::Bridge {
        bridge: bridge.to_string(),
        tap: name.to_string(),
        source,
    };
    nl::set_port_learning(idx, false).map_err(fail)?;
    if lock {
        nl::set_port_locked(idx, true).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_side_mac_starts_with_fe() {
        assert_eq!(
            host_mac([0x52, 0x54, 0, 0xaa, 0, 1]),
            [0xfe, 0x54, 0, 0xaa, 0, 1]
        );
    }

    #[test]
    fn release_of_nothing_recorded_is_quiet() {
        let d = tempfile::tempdir().unwrap();
        assert!(release_recorded(d.path()).is_empty());
        // A recorded link that is gone already (QEMU closed its tap).
        save_record(
            d.path(),
            &[Created {
                device: "net0".into(),
                ifname: "tv-gone-xyz".into(),
                ifindex: 999_983,
                kind: "tap".into(),
                bridge: None,
                ovs: false,
                pair: None,
            }],
        )
        .unwrap();
        assert_eq!(release_recorded(d.path()), Vec::<String>::new());
        assert!(!record_path(d.path()).exists());
    }
}
