//! `<interface>` (libvirt `virDomainNetDefParseXML`, inactive).

use super::{
    device_info, finish, host_pci_address, invalid_enum, mac, missing_attr, opt_on_off, opt_str,
    opt_u32, opt_yes_no, teaming, virtualport, vlan, Ctx, El,
};
use crate::diag::{prefix, Pos};
use crate::error::ConfError;
use crate::model::*;

type R<T> = Result<T, ConfError>;

pub(crate) fn interface(mut el: El, cx: &mut Ctx) -> R<Interface> {
    let type_ = match el.attr("type") {
        None => return Err(missing_attr(&el, cx, "type")),
        Some(t) => {
            InterfaceType::from_str_opt(t).ok_or_else(|| invalid_enum(&el, cx, "type", t))?
        }
    };
    let mut i = Interface::new(type_);
    i.pos = el.pos;
    i.managed = opt_yes_no(&mut el, cx, "managed")?;
    i.trust_guest_rx_filters = opt_yes_no(&mut el, cx, "trustGuestRxFilters")?;

    if let Some(m) = el.child("mac", cx) {
        i.mac = mac(m, cx)?;
    }
    if let Some(s) = el.child("source", cx) {
        i.source = Some(source(s, type_, cx)?);
    }
    required_source(i.source.as_ref(), type_, el.pos, cx)?;
    if let Some(v) = el.child("vlan", cx) {
        i.vlan = Some(vlan(v, cx)?);
    }
    if let Some(v) = el.child("virtualport", cx) {
        i.virtualport = Some(virtualport(v, cx)?);
    }
    if let Some(t) = el.child("target", cx) {
        i.target = target(t, cx)?;
    }
    if let Some(m) = el.child("model", cx) {
        i.model = model(m, cx)?;
    }
    if let Some(d) = el.child("driver", cx) {
        i.driver = Some(driver(d, cx)?);
    }
    if let Some(mut b) = el.child("backend", cx) {
        i.backend = Some(NetBackend {
            tap: opt_str(&mut b, "tap"),
            vhost: opt_str(&mut b, "vhost"),
            pos: b.pos,
        });
        finish(b, cx);
    }
    i.teaming = teaming(&mut el, cx)?;
    if let Some(l) = el.child("link", cx) {
        i.link = link(l, cx)?;
    }
    if let Some(mut m) = el.child("mtu", cx) {
        let size = super::opt_u32_nonzero(&mut m, cx, "size", 10)?
            .ok_or_else(|| missing_attr(&m, cx, "size"))?;
        i.mtu = Some(Mtu { size, pos: m.pos });
        finish(m, cx);
    }
    i.info = device_info(&mut el, cx)?;
    // libvirt elements teamvirt passes through untouched.
    i.extra.extend(el.passthrough(
        &[
            "ip",
            "route",
            "script",
            "downscript",
            "backenddomain",
            "guest",
            "bandwidth",
            "filterref",
            "tune",
            "coalesce",
            "port",
            "portForward",
        ],
        cx,
    ));
    let (extra_attrs, extra) = finish(el, cx);
    i.extra_attrs = extra_attrs;
    i.extra.extend(extra);
    Ok(i)
}

/// The `<source>` attribute an interface of `type_` cannot do without
/// (libvirt's text); a hostdev one without `<source>` has no address type.
fn required_source(
    src: Option<&InterfaceSource>,
    type_: InterfaceType,
    pos: Pos,
    cx: &Ctx,
) -> R<()> {
    let need = |attr: &str| {
        format!(
            "{}No <source> '{attr}' attribute specified with <interface type='{}'/>",
            prefix::XML_ERROR,
            type_.as_str()
        )
    };
    match type_ {
        InterfaceType::Network if src.and_then(|s| s.network.as_ref()).is_none() => {
            Err(cx.error("interface-no-source", need("network"), pos))
        }
        InterfaceType::Bridge if src.and_then(|s| s.bridge.as_ref()).is_none() => {
            Err(cx.error("interface-no-source", need("bridge"), pos))
        }
        InterfaceType::Direct if src.and_then(|s| s.dev.as_ref()).is_none() => {
            Err(cx.error("interface-no-source", need("dev"), pos))
        }
        // No <source> at all: no address type either (with a <source>,
        // `source` has already checked it).
        InterfaceType::Hostdev if src.is_none() => hostdev_source_type(None, false, pos, cx),
        _ => Ok(()),
    }
}

/// `<target dev='...' managed='...'/>` (nothing without `dev`).
fn target(mut t: El, cx: &mut Ctx) -> R<Option<NetTarget>> {
    let mut target = None;
    if let Some(dev) = opt_str(&mut t, "dev") {
        target = Some(NetTarget {
            dev,
            managed: opt_yes_no(&mut t, cx, "managed")?,
            pos: t.pos,
        });
    }
    finish(t, cx);
    Ok(target)
}

/// `<model type='...'/>`: libvirt allows `[A-Za-z0-9_-]` in the name.
fn model(mut m: El, cx: &mut Ctx) -> R<Option<NetModel>> {
    let mut model = None;
    if let Some(t) = opt_str(&mut m, "type") {
        if !t
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            return Err(cx.error(
                "invalid-model",
                format!(
                    "{}Model name contains invalid characters",
                    prefix::INVALID_ARG
                ),
                m.pos,
            ));
        }
        model = Some(NetModel {
            type_: t,
            pos: m.pos,
        });
    }
    finish(m, cx);
    Ok(model)
}

/// `<link state='up|down'/>`.
fn link(mut l: El, cx: &mut Ctx) -> R<Option<Link>> {
    let link = match l.attr("state") {
        None => None,
        Some(s @ ("up" | "down")) => Some(Link {
            state: s.to_string(),
            pos: l.pos,
        }),
        Some(s) => {
            return Err(cx.error(
                "invalid-link-state",
                format!(
                    "{}unknown interface link state '{s}'",
                    prefix::INTERNAL_ERROR
                ),
                l.pos,
            ))
        }
    };
    finish(l, cx);
    Ok(link)
}

/// The host subsystem of an `<interface type='hostdev'>`: libvirt reads it
/// from `<source><address type=...>` (a `<source><vendor>` means usb) and
/// parses the rest like a `<hostdev>` of that type. Only PCI (an SR-IOV VF)
/// can work: libvirt refuses the others when the domain starts, teamvirt
/// right away with the same text.
fn hostdev_source_type(t: Option<&str>, vendor: bool, pos: Pos, cx: &Ctx) -> R<()> {
    match t.or(vendor.then_some("usb")) {
        Some("pci") => Ok(()),
        None => Err(cx.xml_error("hostdev-source-no-type", "missing source address type", pos)),
        Some("usb" | "scsi" | "scsi_host" | "mdev") => Err(cx.error(
            "hostdev-net-not-vf",
            format!(
                "{}Interface type hostdev is currently supported on SR-IOV Virtual Functions only",
                prefix::CONFIG_UNSUPPORTED
            ),
            pos,
        )),
        Some(other) => Err(cx.xml_error(
            "hostdev-source-unknown-type",
            format!("unknown host device source address type '{other}'"),
            pos,
        )),
    }
}

fn source(mut s: El, type_: InterfaceType, cx: &mut Ctx) -> R<InterfaceSource> {
    let mut src = InterfaceSource {
        pos: s.pos,
        ..Default::default()
    };
    src.network = opt_str(&mut s, "network");
    src.portgroup = opt_str(&mut s, "portgroup");
    src.portid = opt_str(&mut s, "portid");
    src.bridge = opt_str(&mut s, "bridge");
    src.dev = opt_str(&mut s, "dev");
    src.mode = opt_str(&mut s, "mode");
    if type_ == InterfaceType::Hostdev {
        let a = s.child("address", cx);
        let vendor = s.node.children().any(|c| c.has_tag_name("vendor"));
        let t = a.as_ref().and_then(|a| a.node.attribute("type"));
        hostdev_source_type(t, vendor, a.as_ref().map_or(s.pos, |a| a.pos), cx)?;
        if let Some(a) = a {
            src.pci = Some(host_pci_address(a, cx)?);
        }
    }
    // Attributes/children of other interface types (vhostuser path, udp
    // address, ...) are libvirt's: kept verbatim without a warning.
    let names: Vec<String> = s
        .node
        .attributes()
        .filter(|a| a.namespace().is_none())
        .map(|a| a.name().to_string())
        .collect();
    for n in names {
        let pos = s.attr_pos(&n, cx);
        let already = matches!(
            n.as_str(),
            "network" | "portgroup" | "portid" | "bridge" | "dev" | "mode"
        );
        if !already {
            if let Some(v) = s.attr(&n) {
                src.other_attrs.push(RawAttr {
                    name: n,
                    value: v.to_string(),
                    pos,
                });
            }
        }
    }
    src.extra = s.rest_children().into_iter().map(|n| cx.raw(n)).collect();
    finish(s, cx);
    Ok(src)
}

fn driver(mut d: El, cx: &mut Ctx) -> R<NetDriver> {
    let mut drv = NetDriver {
        pos: d.pos,
        name: opt_str(&mut d, "name"),
        txmode: opt_str(&mut d, "txmode"),
        ioeventfd: opt_on_off(&mut d, cx, "ioeventfd")?,
        event_idx: opt_on_off(&mut d, cx, "event_idx")?,
        queues: opt_u32(&mut d, cx, "queues", 10)?,
        rx_queue_size: opt_u32(&mut d, cx, "rx_queue_size", 10)?,
        tx_queue_size: opt_u32(&mut d, cx, "tx_queue_size", 10)?,
        rss: opt_on_off(&mut d, cx, "rss")?,
        rss_hash_report: opt_on_off(&mut d, cx, "rss_hash_report")?,
        iommu: opt_on_off(&mut d, cx, "iommu")?,
        ats: opt_on_off(&mut d, cx, "ats")?,
        packed: opt_on_off(&mut d, cx, "packed")?,
        page_per_vq: opt_on_off(&mut d, cx, "page_per_vq")?,
        ..Default::default()
    };
    if let Some(txmode) = &drv.txmode {
        if txmode != "iothread" && txmode != "timer" {
            return Err(invalid_enum(&d, cx, "txmode", &txmode.clone()));
        }
    }
    if let Some(mut h) = d.child("host", cx) {
        let mut host = NetDriverHost {
            csum: opt_on_off(&mut h, cx, "csum")?,
            gso: opt_on_off(&mut h, cx, "gso")?,
            tso4: opt_on_off(&mut h, cx, "tso4")?,
            tso6: opt_on_off(&mut h, cx, "tso6")?,
            ecn: opt_on_off(&mut h, cx, "ecn")?,
            ufo: opt_on_off(&mut h, cx, "ufo")?,
            mrg_rxbuf: opt_on_off(&mut h, cx, "mrg_rxbuf")?,
            pos: h.pos,
            ..Default::default()
        };
        (host.extra_attrs, _) = finish(h, cx);
        drv.host = Some(host);
    }
    if let Some(mut g) = d.child("guest", cx) {
        let mut guest = NetDriverGuest {
            csum: opt_on_off(&mut g, cx, "csum")?,
            tso4: opt_on_off(&mut g, cx, "tso4")?,
            tso6: opt_on_off(&mut g, cx, "tso6")?,
            ecn: opt_on_off(&mut g, cx, "ecn")?,
            ufo: opt_on_off(&mut g, cx, "ufo")?,
            pos: g.pos,
            ..Default::default()
        };
        (guest.extra_attrs, _) = finish(g, cx);
        drv.guest = Some(guest);
    }
    (drv.extra_attrs, drv.extra) = finish(d, cx);
    Ok(drv)
}
