//! NICs (`-netdev` + `-device`), host PCI devices (`vfio-pci`) with the
//! failover properties in libvirt's order, and lab mode's emulated
//! primaries.

use teamvirt_conf::model::{
    Address, DeviceInfo, Interface, InterfaceType, PciAddress, TeamingType,
};

use super::ctx::{boot_index_net, need_pci, CommandError, Ctx, NetFds, Substitution};
use super::output::CommandLine;
use super::props::Props;
use crate::resolve::ActualNet;

/// The model a lab-mode primary is emulated with. vmxnet3 because its
/// receive path opens when the guest driver starts it, as a VF's does:
/// the guest's net_failover drops frames arriving on the standby from the
/// moment a primary registers, so a model that cannot receive yet leaves
/// the guest deaf. QEMU's e1000e receives only after its emulated 500 ms
/// autonegotiation and e1000 holds frames for 1 s after receive-enable;
/// either costs that much outage after every migration (docs/decisions.md, "Lab
/// primary").
pub const LAB_PRIMARY_MODEL: &str = "vmxnet3";

/// libvirt's test suite: tap fds from 3 (ethernet) or 102 (bridge),
/// vhost fds from 44.
fn test_fds(actual: &ActualNet, queues: u32, vhost: bool) -> (Vec<String>, Vec<String>) {
    let base = if actual.type_ == InterfaceType::Ethernet {
        3
    } else {
        102
    };
    let tap = (0..queues).map(|i| (base + i).to_string()).collect();
    let vh = if vhost {
        (0..queues).map(|i| (44 + i).to_string()).collect()
    } else {
        Vec::new()
    };
    (tap, vh)
}

fn rom_props(p: &mut Props, info: &DeviceInfo) {
    if let Some(rom) = &info.rom {
        p.tristate("rombar", rom.bar);
        if rom.enabled == Some(false) {
            p.str("romfile", "");
        } else if let Some(f) = &rom.file {
            p.str("romfile", f.clone());
        }
    }
}

fn netdev_props(
    ctx: &Ctx,
    i: usize,
    net: &Interface,
    actual: &ActualNet,
    id: &str,
) -> Result<Props, CommandError> {
    let mut p = Props::new();
    match actual.type_ {
        InterfaceType::User => {
            p.str("type", "user");
        }
        InterfaceType::Ethernet
        | InterfaceType::Bridge
        | InterfaceType::Network
        | InterfaceType::Direct => {
            let queues = net
                .driver
                .as_ref()
                .and_then(|d| d.queues)
                .unwrap_or(1)
                .max(1);
            let want_vhost = net.is_virtio()
                && net.driver.as_ref().and_then(|d| d.name.as_deref()) != Some("qemu");
            let (tap, vhost) = if ctx.opts.test_env {
                test_fds(actual, queues, want_vhost)
            } else {
                let f = ctx
                    .opts
                    .net_fds
                    .get(&i)
                    .ok_or_else(|| CommandError::NeedsHostSetup {
                        alias: id.to_string(),
                        at: net.pos.is_known().then_some((net.pos.line, net.pos.col)),
                    })?;
                (
                    f.tap.clone(),
                    if want_vhost {
                        f.vhost.clone()
                    } else {
                        Vec::new()
                    },
                )
            };
            p.str("type", "tap");
            if tap.len() > 1 {
                p.str("fds", tap.join(":"));
            } else {
                p.str("fd", tap.first().cloned().unwrap_or_default());
            }
            if !vhost.is_empty() {
                p.bool("vhost", true);
                if vhost.len() > 1 {
                    p.str("vhostfds", vhost.join(":"));
                } else {
                    p.str("vhostfd", vhost[0].clone());
                }
            }
        }
        other => {
            return Err(CommandError::Unsupported {
                what: format!("<interface type='{}'>", other.as_str()),
                at: net.pos.is_known().then_some((net.pos.line, net.pos.col)),
            })
        }
    }
    p.str("id", format!("host{id}"));
    Ok(p)
}

fn nic_props(ctx: &Ctx, i: usize, net: &Interface, id: &str) -> Result<Props, CommandError> {
    let mut p = Props::new();
    let model = net.model_str().unwrap_or("rtl8139");
    if net.is_virtio() {
        let driver = match model {
            "virtio-transitional" => "virtio-net-pci-transitional",
            "virtio-non-transitional" => "virtio-net-pci-non-transitional",
            _ => "virtio-net-pci",
        };
        p.str("driver", driver);
        let d = net.driver.as_ref();
        if let Some(d) = d {
            p.tristate("iommu_platform", d.iommu)
                .tristate("ats", d.ats)
                .tristate("packed", d.packed);
            p.tristate("page-per-vq", d.page_per_vq);
            match d.txmode.as_deref() {
                Some("iothread") => {
                    p.str("tx", "bh");
                }
                Some("timer") => {
                    p.str("tx", "timer");
                }
                _ => {}
            }
            p.tristate("ioeventfd", d.ioeventfd)
                .tristate("event_idx", d.event_idx);
            if let Some(h) = &d.host {
                p.tristate("csum", h.csum)
                    .tristate("gso", h.gso)
                    .tristate("host_tso4", h.tso4);
                p.tristate("host_tso6", h.tso6)
                    .tristate("host_ecn", h.ecn)
                    .tristate("host_ufo", h.ufo);
                p.tristate("mrg_rxbuf", h.mrg_rxbuf);
            }
            if let Some(g) = &d.guest {
                p.tristate("guest_csum", g.csum)
                    .tristate("guest_tso4", g.tso4)
                    .tristate("guest_tso6", g.tso6);
                p.tristate("guest_ecn", g.ecn).tristate("guest_ufo", g.ufo);
            }
            let queues = d.queues.unwrap_or(1);
            if queues > 1 {
                p.bool("mq", true)
                    .uint("vectors", u64::from(2 * queues + 2));
            }
            if let Some(rx) = d.rx_queue_size {
                p.uint("rx_queue_size", u64::from(rx));
            }
            if let Some(tx) = d.tx_queue_size {
                p.uint("tx_queue_size", u64::from(tx));
            }
            p.tristate("rss", d.rss).tristate("hash", d.rss_hash_report);
        }
        if let Some(mtu) = &net.mtu {
            p.uint("host_mtu", u64::from(mtu.size));
        }
        if net.teaming_type() == Some(TeamingType::Persistent) {
            p.bool("failover", true);
        }
    } else {
        p.str("driver", model);
    }
    p.str("netdev", format!("host{id}"))
        .str("id", id.to_string());
    if let Some(mac) = &net.mac {
        p.str("mac", mac.address.to_string());
    }
    if let Some(b) = boot_index_net(ctx.def, i) {
        p.uint("bootindex", u64::from(b));
    }
    let a = need_pci(&net.info.address, id)?;
    ctx.pci_addr_props(&mut p, a);
    rom_props(&mut p, &net.info);
    Ok(p)
}

/// `-netdev`/`-device` for every interface that is not a VF.
pub fn interfaces(cmd: &mut CommandLine, ctx: &Ctx) -> Result<(), CommandError> {
    for (i, net) in ctx.def.devices.interfaces.iter().enumerate() {
        let fallback = ActualNet::direct_of(net);
        let actual = ctx.actual.get(i).unwrap_or(&fallback);
        if actual.type_ == InterfaceType::Hostdev {
            continue;
        }
        let id = &ctx.aliases.interfaces[i];
        let nd = netdev_props(ctx, i, net, actual, id)?;
        ctx.netdev(cmd, &nd);
        let dev = nic_props(ctx, i, net, id)?;
        ctx.device(cmd, &dev);
    }
    Ok(())
}

/// One host PCI device to emit.
struct HostPci<'a> {
    id: &'a str,
    /// The interface it comes from (index), if any.
    iface: Option<usize>,
    host: PciAddress,
    info: &'a DeviceInfo,
    pair: Option<&'a str>,
    display: Option<bool>,
    ramfb: Option<bool>,
}

/// `-device vfio-pci` for `<interface type='hostdev'>`, plain PCI
/// `<hostdev>`s and network interfaces resolved to a VF, in libvirt's
/// hostdev-list order. Returns the lab-mode substitutions made.
pub fn hostdevs(cmd: &mut CommandLine, ctx: &Ctx) -> Result<Vec<Substitution>, CommandError> {
    let d = &ctx.def.devices;
    let mut list: Vec<HostPci> = Vec::new();
    let transient_pair = |net: &'_ Interface| -> Option<String> {
        net.teaming
            .as_ref()
            .filter(|t| t.type_ == TeamingType::Transient)
            .and_then(|t| t.persistent.clone())
    };
    let mut pairs: Vec<Option<String>> = Vec::new();
    for (i, net) in d.interfaces.iter().enumerate() {
        if net.type_ == InterfaceType::Hostdev {
            if let Some(host) = net.source_pci() {
                pairs.push(transient_pair(net));
                list.push(HostPci {
                    iface: Some(i),
                    id: &ctx.aliases.interfaces[i],
                    host: *host,
                    info: &net.info,
                    pair: None,
                    display: None,
                    ramfb: None,
                });
            }
        }
    }
    for (i, h) in d.hostdevs.iter().enumerate() {
        if !h.is_pci_subsystem() || matches!(h.info.address, Some(Address::Unassigned { .. })) {
            continue;
        }
        let Some(host) = h.source.pci else { continue };
        pairs.push(
            h.teaming
                .as_ref()
                .filter(|t| t.type_ == TeamingType::Transient)
                .and_then(|t| t.persistent.clone()),
        );
        list.push(HostPci {
            iface: None,
            id: &ctx.aliases.hostdevs[i],
            host,
            info: &h.info,
            pair: None,
            display: h.display,
            ramfb: h.ramfb,
        });
    }
    for (i, net) in d.interfaces.iter().enumerate() {
        let Some(actual) = ctx.actual.get(i) else {
            continue;
        };
        if net.type_ != InterfaceType::Hostdev && actual.type_ == InterfaceType::Hostdev {
            if let Some(host) = actual.hostdev {
                pairs.push(transient_pair(net));
                list.push(HostPci {
                    iface: Some(i),
                    id: &ctx.aliases.interfaces[i],
                    host,
                    info: &net.info,
                    pair: None,
                    display: None,
                    ramfb: None,
                });
            }
        }
    }
    let mut subs = Vec::new();
    for (h, pair) in list.iter_mut().zip(pairs.iter()) {
        h.pair = pair.as_deref();
        let addr = need_pci(&h.info.address, h.id)?;
        if ctx.opts.emulate_vf {
            if let Some(pair) = h.pair {
                let fds = h.iface.and_then(|i| ctx.opts.lab_fds.get(&i));
                subs.push(lab_primary(cmd, ctx, h.id, Some(h.host), pair, addr, fds)?);
                continue;
            }
        }
        let mut p = Props::new();
        let nohotplug = h.ramfb == Some(true);
        p.str(
            "driver",
            if nohotplug {
                "vfio-pci-nohotplug"
            } else {
                "vfio-pci"
            },
        );
        p.str("host", h.host.to_string())
            .str("id", h.id.to_string());
        if let Some(b) = &h.info.boot {
            p.uint("bootindex", u64::from(b.order));
        }
        p.opt_str("failover_pair_id", h.pair);
        p.opt_str("display", h.display.map(|d| if d { "on" } else { "off" }));
        if h.ramfb == Some(true) {
            p.bool("ramfb", true);
        }
        ctx.pci_addr_props(&mut p, addr);
        rom_props(&mut p, h.info);
        ctx.device(cmd, &p);
    }
    Ok(subs)
}

/// Lab mode: an emulated NIC ([`LAB_PRIMARY_MODEL`]) stands in for the
/// VF, visibly. It keeps
/// the primary's id, pairing and PCI address, takes the standby's MAC (the
/// guest's failover driver pairs by MAC), has no option ROM, and gets a
/// user-mode backend that cannot reach the outside, or with `fds` (its
/// pool's `--lab-bridge`) a tap on the standby's segment.
fn lab_primary(
    cmd: &mut CommandLine,
    ctx: &Ctx,
    id: &str,
    host: Option<PciAddress>,
    pair: &str,
    addr: &PciAddress,
    fds: Option<&NetFds>,
) -> Result<Substitution, CommandError> {
    let standby = ctx
        .def
        .devices
        .interfaces
        .iter()
        .enumerate()
        .find(|(i, n)| {
            ctx.aliases.interfaces[*i] == pair && n.teaming_type() == Some(TeamingType::Persistent)
        })
        .map(|(_, n)| n)
        .ok_or_else(|| CommandError::NoStandby {
            pair: pair.to_string(),
            id: id.to_string(),
        })?;
    let mac = standby
        .mac
        .as_ref()
        .map(|m| m.address.to_string())
        .unwrap_or_default();
    let netdev = format!("lab-{id}");
    let mut nd = Props::new();
    match fds.and_then(|f| f.tap.first()) {
        Some(fd) => {
            nd.str("type", "tap")
                .str("fd", fd.clone())
                .str("id", netdev.clone());
        }
        None => {
            nd.str("type", "user")
                .str("id", netdev.clone())
                .bool("restrict", true);
        }
    }
    ctx.netdev(cmd, &nd);
    let mut p = Props::new();
    p.str("driver", LAB_PRIMARY_MODEL)
        .str("netdev", netdev.clone())
        .str("id", id.to_string());
    p.str("mac", mac.clone())
        .str("failover_pair_id", pair.to_string());
    ctx.pci_addr_props(&mut p, addr);
    p.str("romfile", "");
    ctx.device(cmd, &p);
    Ok(Substitution {
        id: id.to_string(),
        host: host.map(|h| h.to_string()),
        model: LAB_PRIMARY_MODEL.to_string(),
        mac,
        pair: pair.to_string(),
        netdev,
    })
}
