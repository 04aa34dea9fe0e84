//! `<devices>` children other than `<interface>`.

use super::{
    device_info, finish, host_pci_address, interface, opt_on_off, opt_str, opt_u32, opt_u64_max,
    opt_yes_no, req_str, teaming, Ctx, El,
};
use crate::diag::Diagnostic;
use crate::error::ConfError;
use crate::model::*;

type R<T> = Result<T, ConfError>;

pub(crate) fn parse_devices(mut el: El, cx: &mut Ctx) -> R<Devices> {
    let mut d = Devices {
        pos: el.pos,
        ..Default::default()
    };
    if let Some((path, pos)) = el.child_text("emulator", cx) {
        d.emulator = Some(Emulator { path, pos });
    }
    for node in el.rest_children() {
        if node.tag_name().namespace().is_some() {
            keep_unknown(&mut d, node, cx);
            continue;
        }
        let e = El::new(node, cx);
        match node.tag_name().name() {
            "disk" => d.disks.push(disk(e, cx)?),
            "controller" => d.controllers.push(controller(e, cx)?),
            "interface" => d.interfaces.push(interface::interface(e, cx)?),
            "serial" => d.serials.push(chardev(e, cx)?),
            "console" => d.consoles.push(chardev(e, cx)?),
            "channel" => d.channels.push(channel(e, cx)?),
            "input" => d.inputs.push(input(e, cx)?),
            "graphics" => d.graphics.push(graphics(e, cx)),
            "audio" => d.audios.push(audio(e, cx)?),
            "video" => d.videos.push(video(e, cx)?),
            "hostdev" => {
                let h = hostdev(e, cx)?;
                check_duplicate_hostdev(&d, &h, cx)?;
                d.hostdevs.push(h);
            }
            "watchdog" => d.watchdogs.push(watchdog(e, cx)?),
            "memballoon" if d.memballoon.is_none() => d.memballoon = Some(memballoon(e, cx)?),
            "panic" => d.panics.push(panic(e, cx)?),
            _ => keep_unknown(&mut d, node, cx),
        }
    }
    finish(el, cx);
    Ok(d)
}

fn keep_unknown(d: &mut Devices, node: roxmltree::Node, cx: &mut Ctx) {
    let raw = cx.raw(node);
    let known = DEVICE_ORDER.contains(&raw.name.as_str());
    let (message, hint) = if known {
        (
            format!("device <{}> is not interpreted by teamvirt", raw.name),
            "it is kept verbatim; starting the domain will refuse it",
        )
    } else {
        (
            format!("unknown device element <{}>", raw.name),
            "libvirt ignores it; check its spelling",
        )
    };
    cx.warn(Diagnostic::warning("unknown-element", message, hint).at(raw.pos));
    d.extra.push(raw);
}

/// Parsed hostdevs with the same host device (`virDomainHostdevFind`);
/// `<interface type='hostdev'>` sources count too.
fn check_duplicate_hostdev(d: &Devices, h: &Hostdev, cx: &Ctx) -> R<()> {
    let same = |a: &PciAddress, b: &PciAddress| a.same_location(b);
    let dup = match (&h.source.pci, &h.source.usb) {
        (Some(p), _) if h.is_pci_subsystem() => {
            d.hostdevs
                .iter()
                .any(|o| o.is_pci_subsystem() && o.source.pci.as_ref().is_some_and(|q| same(p, q)))
                || d.interfaces.iter().any(|i| {
                    i.type_ == InterfaceType::Hostdev && i.source_pci().is_some_and(|q| same(p, q))
                })
        }
        (_, Some(u)) if h.mode == "subsystem" && h.type_ == "usb" => d.hostdevs.iter().any(|o| {
            o.mode == "subsystem"
                && o.type_ == "usb"
                && o.source.usb.as_ref().is_some_and(|v| {
                    (v.vendor.is_some() || v.bus.is_some())
                        && v.vendor == u.vendor
                        && v.product == u.product
                        && v.bus == u.bus
                        && v.device == u.device
                })
        }),
        _ => false,
    };
    if dup {
        return Err(cx.xml_error(
            "hostdev-duplicate",
            "Hostdev already exists in the domain configuration",
            h.pos,
        ));
    }
    Ok(())
}

fn disk(mut el: El, cx: &mut Ctx) -> R<Disk> {
    let mut d = Disk {
        pos: el.pos,
        type_: opt_str(&mut el, "type").unwrap_or_else(|| "file".into()),
        device: opt_str(&mut el, "device"),
        ..Default::default()
    };
    if let Some(mut dr) = el.child("driver", cx) {
        let mut drv = DiskDriver {
            name: opt_str(&mut dr, "name"),
            type_: opt_str(&mut dr, "type"),
            cache: opt_str(&mut dr, "cache"),
            io: opt_str(&mut dr, "io"),
            discard: opt_str(&mut dr, "discard"),
            pos: dr.pos,
            ..Default::default()
        };
        (drv.extra_attrs, drv.extra) = finish(dr, cx);
        d.driver = Some(drv);
    }
    if let Some(mut s) = el.child("source", cx) {
        let mut src = DiskSource {
            file: opt_str(&mut s, "file"),
            dev: opt_str(&mut s, "dev"),
            pos: s.pos,
            ..Default::default()
        };
        // Other disk types' source attributes/children are libvirt's, not
        // unknown: keep them without a warning.
        let names: Vec<String> = s
            .node
            .attributes()
            .filter(|a| a.namespace().is_none() && a.name() != "file" && a.name() != "dev")
            .map(|a| a.name().to_string())
            .collect();
        for n in names {
            if let Some(v) = s.attr(&n) {
                src.extra_attrs.push(RawAttr {
                    name: n.clone(),
                    value: v.to_string(),
                    pos: s.attr_pos(&n, cx),
                });
            }
        }
        src.extra = s.rest_children().into_iter().map(|n| cx.raw(n)).collect();
        finish(s, cx);
        d.source = Some(src);
    }
    match el.child("target", cx) {
        Some(mut t) => {
            let mut tgt = DiskTarget {
                dev: req_str(&mut t, cx, "dev")?,
                bus: opt_str(&mut t, "bus"),
                pos: t.pos,
                ..Default::default()
            };
            (tgt.extra_attrs, _) = finish(t, cx);
            d.target = tgt;
        }
        None => {
            return Err(cx.xml_error(
                "disk-no-target",
                "missing target information for device",
                el.pos,
            ))
        }
    }
    d.readonly = el.child("readonly", cx).map(|e| finish(e, cx)).is_some();
    d.shareable = el.child("shareable", cx).map(|e| finish(e, cx)).is_some();
    d.transient = el.child("transient", cx).map(|e| finish(e, cx)).is_some();
    d.serial = el.child_text("serial", cx).map(|t| t.0);
    d.info = device_info(&mut el, cx)?;
    (d.extra_attrs, d.extra) = finish(el, cx);
    Ok(d)
}

fn controller(mut el: El, cx: &mut Ctx) -> R<Controller> {
    let mut c = Controller {
        pos: el.pos,
        type_: opt_str(&mut el, "type").unwrap_or_else(|| "ide".into()),
        ..Default::default()
    };
    c.index = match el.attr("index") {
        None => None,
        Some(v) => Some(
            super::parse_uint(v, 10)
                .filter(|&n| n <= i32::MAX as u64)
                .ok_or_else(|| {
                    cx.error(
                        "invalid-controller-index",
                        format!(
                            "{}Cannot parse controller index {v}",
                            crate::diag::prefix::INTERNAL_ERROR
                        ),
                        el.attr_pos("index", cx),
                    )
                })? as u32,
        ),
    };
    c.model = opt_str(&mut el, "model");
    c.ports = opt_u32(&mut el, cx, "ports", 10)?;
    c.vectors = opt_u32(&mut el, cx, "vectors", 10)?;
    if let Some(mut m) = el.child("model", cx) {
        if let Some(name) = opt_str(&mut m, "name") {
            c.model_name = Some(ControllerModelName { name, pos: m.pos });
        }
        finish(m, cx);
    }
    if let Some(mut t) = el.child("target", cx) {
        let mut tgt = ControllerTarget {
            chassis_nr: opt_u32(&mut t, cx, "chassisNr", 0)?,
            chassis: opt_u32(&mut t, cx, "chassis", 0)?,
            port: opt_u32(&mut t, cx, "port", 0)?,
            bus_nr: opt_u32(&mut t, cx, "busNr", 0)?,
            index: opt_u32(&mut t, cx, "index", 0)?,
            hotplug: opt_on_off(&mut t, cx, "hotplug")?,
            mem_reserve: opt_u64_max(&mut t, cx, "memReserve", 10, u64::MAX)?,
            pos: t.pos,
            ..Default::default()
        };
        if let Some((n, p)) = t.child_text("node", cx) {
            tgt.node = Some(
                super::parse_uint(&n, 10)
                    .filter(|&v| v <= i32::MAX as u64)
                    .ok_or_else(|| {
                        cx.xml_error(
                            "invalid-node",
                            format!("invalid NUMA node in target, '{n}'"),
                            p,
                        )
                    })? as u32,
            );
        }
        (tgt.extra_attrs, _) = finish(t, cx);
        c.target = Some(tgt);
    }
    c.info = device_info(&mut el, cx)?;
    (c.extra_attrs, c.extra) = finish(el, cx);
    Ok(c)
}

pub(crate) fn hostdev(mut el: El, cx: &mut Ctx) -> R<Hostdev> {
    let mut h = Hostdev {
        pos: el.pos,
        ..Default::default()
    };
    h.mode = opt_str(&mut el, "mode").unwrap_or_else(|| "subsystem".into());
    h.type_ = match el.attr("type") {
        Some(t) => t.to_string(),
        None => return Err(super::missing_attr(&el, cx, "type")),
    };
    h.managed = opt_yes_no(&mut el, cx, "managed")?;
    h.display = opt_on_off(&mut el, cx, "display")?;
    h.ramfb = opt_on_off(&mut el, cx, "ramfb")?;
    if let Some(mut d) = el.child("driver", cx) {
        let mut drv = HostdevDriver {
            name: opt_str(&mut d, "name"),
            pos: d.pos,
            ..Default::default()
        };
        (drv.extra_attrs, _) = finish(d, cx);
        h.driver = Some(drv);
    }
    match el.child("source", cx) {
        Some(s) => h.source = hostdev_source(s, &h.mode, &h.type_, cx)?,
        None if h.mode == "subsystem" && (h.type_ == "pci" || h.type_ == "usb") => {
            return Err(cx.xml_error(
                "hostdev-no-source",
                "Missing <source> element in hostdev device",
                el.pos,
            ));
        }
        None => {}
    }
    h.teaming = teaming(&mut el, cx)?;
    h.readonly = el.child("readonly", cx).map(|e| finish(e, cx)).is_some();
    h.shareable = el.child("shareable", cx).map(|e| finish(e, cx)).is_some();
    h.info = device_info(&mut el, cx)?;
    (h.extra_attrs, h.extra) = finish(el, cx);
    Ok(h)
}

fn hostdev_source(mut s: El, mode: &str, type_: &str, cx: &mut Ctx) -> R<HostdevSource> {
    let mut src = HostdevSource {
        pos: s.pos,
        ..Default::default()
    };
    match (mode, type_) {
        ("subsystem", "pci") => {
            // libvirt takes a missing <address> as host device 0000:00:00.0
            // and only fails when the domain starts: keep it, but say so.
            src.pci = Some(match s.child("address", cx) {
                Some(a) => host_pci_address(a, cx)?,
                None => {
                    cx.warn(
                        Diagnostic::warning(
                            "hostdev-source-no-address",
                            "PCI <hostdev> <source> has no <address>: libvirt takes host device 0000:00:00.0 (the host bridge), which cannot be assigned to a guest",
                            "add <address domain='0x....' bus='0x..' slot='0x..' function='0x.'/> naming the host device to <source>",
                        )
                        .at(s.pos),
                    );
                    PciAddress::default()
                }
            });
        }
        ("subsystem", "usb") => {
            let mut u = UsbHostSource {
                pos: s.pos,
                ..Default::default()
            };
            if let Some(mut v) = s.child("vendor", cx) {
                u.vendor = opt_str(&mut v, "id");
                finish(v, cx);
            }
            if let Some(mut p) = s.child("product", cx) {
                u.product = opt_str(&mut p, "id");
                finish(p, cx);
            }
            if let Some(mut a) = s.child("address", cx) {
                u.bus = opt_u32(&mut a, cx, "bus", 0)?;
                u.device = opt_u32(&mut a, cx, "device", 0)?;
                finish(a, cx);
            }
            src.usb = Some(u);
        }
        _ => {
            // Other hostdev kinds are libvirt's, just not teamvirt's.
            src.extra = s.rest_children().into_iter().map(|n| cx.raw(n)).collect();
        }
    }
    (src.extra_attrs, _) = finish(s, cx);
    Ok(src)
}

fn chardev(el: El, cx: &mut Ctx) -> R<Chardev> {
    chardev_of(el, cx, false)
}

/// `<channel>`: a chardev whose `<target>` has a type (`virtio`,
/// `guestfwd`, `xen`) and, for virtio, a port `name`
/// (virDomainChrDefParseTargetXML).
fn channel(el: El, cx: &mut Ctx) -> R<Chardev> {
    let pos = el.pos;
    let c = chardev_of(el, cx, true)?;
    let Some(t) = &c.target else {
        return Err(cx.xml_error(
            "channel-target",
            "target type must be specified for channel device",
            pos,
        ));
    };
    match t.type_.as_deref() {
        Some("virtio" | "guestfwd" | "xen") => {}
        Some(other) => {
            return Err(cx.xml_error(
                "channel-target",
                format!("unknown target type '{other}' specified for character device"),
                t.pos,
            ))
        }
        None => {
            return Err(cx.xml_error(
                "channel-target",
                "target type must be specified for channel device",
                t.pos,
            ))
        }
    }
    if c.type_ == "unix" {
        if let Some(src) = &c.source {
            if let Some(m) = src
                .attr("mode")
                .filter(|m| !matches!(*m, "bind" | "connect"))
            {
                return Err(cx.error(
                    "chardev-source-mode",
                    format!(
                        "{}Unknown source mode '{m}'",
                        crate::diag::prefix::CONFIG_UNSUPPORTED
                    ),
                    src.pos,
                ));
            }
        }
    }
    Ok(c)
}

fn chardev_of(mut el: El, cx: &mut Ctx, is_channel: bool) -> R<Chardev> {
    let mut c = Chardev {
        pos: el.pos,
        type_: opt_str(&mut el, "type").unwrap_or_else(|| "pty".into()),
        ..Default::default()
    };
    if let Some(s) = el.child("source", cx) {
        c.source = Some(cx.raw(s.node));
    }
    if let Some(mut t) = el.child("target", cx) {
        let mut tgt = ChardevTarget {
            type_: opt_str(&mut t, "type"),
            port: opt_u32(&mut t, cx, "port", 10)?,
            pos: t.pos,
            ..Default::default()
        };
        if is_channel {
            tgt.name = opt_str(&mut t, "name");
        }
        if let Some(mut m) = t.child("model", cx) {
            tgt.model_name = opt_str(&mut m, "name");
            finish(m, cx);
        }
        (tgt.extra_attrs, _) = finish(t, cx);
        c.target = Some(tgt);
    }
    c.info = device_info(&mut el, cx)?;
    (c.extra_attrs, c.extra) = finish(el, cx);
    Ok(c)
}

fn input(mut el: El, cx: &mut Ctx) -> R<Input> {
    let mut i = Input {
        pos: el.pos,
        ..Default::default()
    };
    i.type_ = req_str(&mut el, cx, "type")?;
    i.bus = opt_str(&mut el, "bus");
    i.info = device_info(&mut el, cx)?;
    (i.extra_attrs, i.extra) = finish(el, cx);
    Ok(i)
}

fn graphics(mut el: El, cx: &mut Ctx) -> Graphics {
    let pos = el.pos;
    let type_ = opt_str(&mut el, "type").unwrap_or_default();
    let attrs = cx
        .raw(el.node)
        .attrs
        .into_iter()
        .filter(|a| a.name != "type")
        .collect::<Vec<_>>();
    for a in &attrs {
        el.attr(&a.name);
    }
    let children = el.rest_children().into_iter().map(|n| cx.raw(n)).collect();
    finish(el, cx);
    Graphics {
        type_,
        attrs,
        children,
        pos,
    }
}

fn audio(mut el: El, cx: &mut Ctx) -> R<Audio> {
    let mut a = Audio {
        pos: el.pos,
        ..Default::default()
    };
    a.id = opt_u32(&mut el, cx, "id", 10)?;
    a.type_ = req_str(&mut el, cx, "type")?;
    (a.extra_attrs, a.extra) = finish(el, cx);
    Ok(a)
}

fn video(mut el: El, cx: &mut Ctx) -> R<Video> {
    let mut v = Video {
        pos: el.pos,
        ..Default::default()
    };
    if let Some(mut m) = el.child("model", cx) {
        v.model_type = opt_str(&mut m, "type");
        v.model_pos = m.pos;
        v.model_attrs = cx
            .raw(m.node)
            .attrs
            .into_iter()
            .filter(|a| a.name != "type")
            .collect();
        for a in v.model_attrs.clone() {
            m.attr(&a.name);
        }
        let kids = m.rest_children();
        if !kids.is_empty() {
            // <acceleration>, <resolution>: keep the whole model verbatim.
            v.extra.push(cx.raw(m.node));
            v.model_type = None;
            v.model_attrs.clear();
        }
        finish(m, cx);
    }
    v.info = device_info(&mut el, cx)?;
    let (_, extra) = finish(el, cx);
    v.extra.extend(extra);
    Ok(v)
}

fn watchdog(mut el: El, cx: &mut Ctx) -> R<Watchdog> {
    let mut w = Watchdog {
        pos: el.pos,
        ..Default::default()
    };
    w.model = req_str(&mut el, cx, "model")?;
    w.action = opt_str(&mut el, "action");
    w.info = device_info(&mut el, cx)?;
    (w.extra_attrs, _) = finish(el, cx);
    Ok(w)
}

fn memballoon(mut el: El, cx: &mut Ctx) -> R<Memballoon> {
    let mut m = Memballoon {
        pos: el.pos,
        ..Default::default()
    };
    m.model = req_str(&mut el, cx, "model")?;
    m.autodeflate = opt_on_off(&mut el, cx, "autodeflate")?;
    m.free_page_reporting = opt_on_off(&mut el, cx, "freePageReporting")?;
    m.info = device_info(&mut el, cx)?;
    m.extra = el.rest_children().into_iter().map(|n| cx.raw(n)).collect();
    (m.extra_attrs, _) = finish(el, cx);
    Ok(m)
}

fn panic(mut el: El, cx: &mut Ctx) -> R<Panic> {
    let mut p = Panic {
        pos: el.pos,
        ..Default::default()
    };
    p.model = opt_str(&mut el, "model");
    p.info = device_info(&mut el, cx)?;
    (p.extra_attrs, _) = finish(el, cx);
    Ok(p)
}
