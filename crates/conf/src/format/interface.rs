//! `<interface>` (libvirt `virDomainNetDefFormat`, inactive).

use super::{
    device_info, hostdev_pci_source, raws_named, teaming, virtualport, vlan, Attrs, XmlWriter,
};
use crate::model::*;

/// Children kept verbatim, placed by name in libvirt's order relative to
/// the typed ones (see `interface`).
const BEFORE_TARGET: &[&str] = &[
    "bandwidth",
    "port",
    "ip",
    "route",
    "portForward",
    "script",
    "downscript",
    "backenddomain",
];

pub(crate) fn interface(w: &mut XmlWriter, i: &Interface) {
    let hostdev = i.type_ == InterfaceType::Hostdev;
    let at = Attrs::new()
        .add("type", i.type_.as_str())
        .yes_no(
            "managed",
            if hostdev {
                i.managed.filter(|&m| m)
            } else {
                None
            },
        )
        .yes_no("trustGuestRxFilters", i.trust_guest_rx_filters)
        .raw(&i.extra_attrs);
    w.block("interface", at, |w| {
        if let Some(m) = &i.mac {
            w.empty(
                "mac",
                Attrs::new()
                    .add("address", m.address.to_string())
                    .opt("type", m.type_.as_deref())
                    .opt("check", m.check.as_deref()),
            );
        }
        // A hostdev NIC's <driver name> belongs to its hostdev part, which
        // libvirt formats with the source.
        let hostdev_driver = hostdev && i.driver.as_ref().is_some_and(driver_is_name_only);
        if hostdev_driver {
            if let Some(d) = &i.driver {
                w.empty("driver", Attrs::new().opt("name", d.name.as_deref()));
            }
        }
        if let Some(s) = &i.source {
            source(w, i.type_, s);
        }
        if let Some(v) = &i.vlan {
            vlan(w, v);
        }
        if let Some(v) = &i.virtualport {
            virtualport(w, v);
        }
        for name in BEFORE_TARGET {
            raws_named(w, &i.extra, name);
        }
        if let Some(t) = &i.target {
            w.empty(
                "target",
                Attrs::new().add("dev", &t.dev).yes_no("managed", t.managed),
            );
        }
        raws_named(w, &i.extra, "guest");
        if let Some(m) = &i.model {
            w.empty("model", Attrs::new().add("type", &m.type_));
        }
        if let Some(d) = &i.driver {
            if !hostdev_driver {
                driver(w, d);
            }
        }
        if let Some(b) = &i.backend {
            let at = Attrs::new()
                .opt("tap", b.tap.as_deref())
                .opt("vhost", b.vhost.as_deref());
            if !at.0.is_empty() {
                w.empty("backend", at);
            }
        }
        raws_named(w, &i.extra, "filterref");
        raws_named(w, &i.extra, "tune");
        if let Some(t) = &i.teaming {
            teaming(w, t);
        }
        if let Some(l) = &i.link {
            w.empty("link", Attrs::new().add("state", &l.state));
        }
        if let Some(m) = &i.mtu {
            w.empty("mtu", Attrs::new().num("size", Some(m.size)));
        }
        raws_named(w, &i.extra, "coalesce");
        device_info(w, &i.info);
        const PLACED: &[&str] = &[
            "bandwidth",
            "port",
            "ip",
            "route",
            "portForward",
            "script",
            "downscript",
            "backenddomain",
            "guest",
            "filterref",
            "tune",
            "coalesce",
        ];
        super::raws_unordered(w, &i.extra, PLACED);
    });
}

fn driver_is_name_only(d: &NetDriver) -> bool {
    let only = NetDriver {
        name: d.name.clone(),
        pos: d.pos,
        ..Default::default()
    };
    *d == only
}

fn source(w: &mut XmlWriter, t: InterfaceType, s: &InterfaceSource) {
    if t == InterfaceType::Hostdev {
        if let Some(p) = &s.pci {
            hostdev_pci_source(w, p, true, &s.other_attrs);
            return;
        }
    }
    let at = Attrs::new()
        .opt("network", s.network.as_deref())
        .opt("portgroup", s.portgroup.as_deref())
        .opt("bridge", s.bridge.as_deref())
        .opt("dev", s.dev.as_deref())
        .opt("mode", s.mode.as_deref())
        .raw(&s.other_attrs);
    // portid is runtime state: inactive XML drops it (like libvirt).
    if at.0.is_empty() && s.extra.is_empty() {
        return;
    }
    w.elem("source", at, |w| w.raws(&s.extra));
}

fn driver(w: &mut XmlWriter, d: &NetDriver) {
    let at = Attrs::new()
        .opt("name", d.name.as_deref())
        .opt("txmode", d.txmode.as_deref())
        .on_off("ioeventfd", d.ioeventfd)
        .on_off("event_idx", d.event_idx)
        .num("queues", d.queues)
        .num("rx_queue_size", d.rx_queue_size)
        .num("tx_queue_size", d.tx_queue_size)
        .on_off("rss", d.rss)
        .on_off("rss_hash_report", d.rss_hash_report)
        .on_off("iommu", d.iommu)
        .on_off("ats", d.ats)
        .on_off("packed", d.packed)
        .on_off("page_per_vq", d.page_per_vq)
        .raw(&d.extra_attrs);
    w.elem("driver", at, |w| {
        if let Some(h) = &d.host {
            let at = Attrs::new()
                .on_off("csum", h.csum)
                .on_off("gso", h.gso)
                .on_off("tso4", h.tso4)
                .on_off("tso6", h.tso6)
                .on_off("ecn", h.ecn)
                .on_off("ufo", h.ufo)
                .on_off("mrg_rxbuf", h.mrg_rxbuf)
                .raw(&h.extra_attrs);
            if !at.0.is_empty() {
                w.empty("host", at);
            }
        }
        if let Some(g) = &d.guest {
            let at = Attrs::new()
                .on_off("csum", g.csum)
                .on_off("tso4", g.tso4)
                .on_off("tso6", g.tso6)
                .on_off("ecn", g.ecn)
                .on_off("ufo", g.ufo)
                .raw(&g.extra_attrs);
            if !at.0.is_empty() {
                w.empty("guest", at);
            }
        }
        w.raws(&d.extra);
    });
}
