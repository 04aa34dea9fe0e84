//! `<network>` (`virNetworkDefFormatBuf`) and `<networkport>`
//! (`virNetworkPortDefFormatBuf`).

use super::{pci_attrs, raws_named, raws_unordered, virtualport, vlan, Attrs, XmlWriter};
use crate::model::*;

const NETWORK_ORDER: &[&str] = &[
    "name",
    "uuid",
    "metadata",
    "forward",
    "bridge",
    "mtu",
    "mac",
    "domain",
    "dns",
    "vlan",
    "bandwidth",
    "port",
    "ip",
    "route",
    "virtualport",
    "portgroup",
];

impl NetworkDef {
    /// Canonical XML, as `virsh net-dumpxml --inactive` prints it.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::default();
        let at = Attrs::new()
            .yes_no("ipv6", self.ipv6.filter(|&v| v))
            .yes_no("trustGuestRxFilters", self.trust_guest_rx_filters)
            .raw(&self.extra_attrs);
        w.block("network", at, |w| {
            for name in NETWORK_ORDER {
                match *name {
                    "name" => w.text("name", Attrs::new(), &self.name),
                    "uuid" => {
                        if let Some(u) = &self.uuid {
                            w.text("uuid", Attrs::new(), &u.to_string());
                        }
                    }
                    "forward" => {
                        if let Some(f) = &self.forward {
                            forward(w, f);
                        }
                    }
                    "bridge" => {
                        if let Some(b) = &self.bridge {
                            let at = Attrs::new()
                                .opt("name", b.name.as_deref())
                                .on_off("stp", b.stp)
                                .num("delay", b.delay)
                                .raw(&b.extra_attrs);
                            w.empty("bridge", at);
                        }
                    }
                    "mtu" => {
                        if let Some(m) = self.mtu {
                            w.empty("mtu", Attrs::new().num("size", Some(m)));
                        }
                    }
                    "mac" => {
                        if let Some(m) = &self.mac {
                            w.empty("mac", Attrs::new().add("address", m.address.to_string()));
                        }
                    }
                    "vlan" => self.vlan.iter().for_each(|v| vlan(w, v)),
                    "ip" => self.ips.iter().for_each(|ip| net_ip(w, ip)),
                    "virtualport" => self.virtualport.iter().for_each(|v| virtualport(w, v)),
                    "portgroup" => self.portgroups.iter().for_each(|p| portgroup(w, p)),
                    _ => {}
                }
                raws_named(w, &self.extra, name);
            }
            raws_unordered(w, &self.extra, NETWORK_ORDER);
        });
        w.finish()
    }
}

fn forward(w: &mut XmlWriter, f: &Forward) {
    let at = Attrs::new()
        .opt("dev", f.dev.as_deref())
        .opt("mode", f.mode.as_deref())
        .yes_no("managed", f.managed.filter(|&m| m))
        .raw(&f.extra_attrs);
    w.elem("forward", at, |w| {
        if let Some(d) = &f.driver_name {
            w.empty("driver", Attrs::new().add("name", d));
        }
        raws_named(w, &f.extra, "nat");
        for pf in &f.pfs {
            w.empty("pf", Attrs::new().add("dev", &pf.dev));
        }
        for i in &f.interfaces {
            w.empty("interface", Attrs::new().add("dev", &i.dev));
        }
        for a in &f.addresses {
            w.empty("address", pci_attrs(Attrs::new().add("type", "pci"), a));
        }
        w.raws(f.extra.iter().filter(|e| e.name != "nat"));
    });
}

fn net_ip(w: &mut XmlWriter, ip: &NetIp) {
    let at = Attrs::new()
        .opt("family", ip.family.as_deref())
        .opt("address", ip.address.as_deref())
        .opt("netmask", ip.netmask.as_deref())
        .num("prefix", ip.prefix)
        .raw(&ip.extra_attrs);
    // libvirt always writes <ip> with a closing tag.
    w.block("ip", at, |w| {
        raws_named(w, &ip.extra, "tftp");
        if let Some(d) = &ip.dhcp {
            w.elem("dhcp", Attrs::new(), |w| {
                for r in &d.ranges {
                    w.elem(
                        "range",
                        Attrs::new().add("start", &r.start).add("end", &r.end),
                        |w| w.raws(&r.extra),
                    );
                }
                for h in &d.hosts {
                    let at = Attrs::new()
                        .opt("mac", h.mac.as_deref())
                        .opt("id", h.id.as_deref())
                        .opt("name", h.name.as_deref())
                        .opt("ip", h.ip.as_deref())
                        .raw(&h.extra_attrs);
                    w.empty("host", at);
                }
                w.raws(&d.extra);
            });
        }
        w.raws(ip.extra.iter().filter(|e| e.name != "tftp"));
    });
}

fn portgroup(w: &mut XmlWriter, p: &PortGroup) {
    let at = Attrs::new()
        .add("name", &p.name)
        .yes_no("default", p.default.filter(|&d| d))
        .yes_no("trustGuestRxFilters", p.trust_guest_rx_filters);
    w.elem("portgroup", at, |w| {
        if let Some(v) = &p.vlan {
            vlan(w, v);
        }
        if let Some(v) = &p.virtualport {
            virtualport(w, v);
        }
        w.raws(&p.extra);
    });
}

impl NetworkPortDef {
    /// Canonical XML of a network port.
    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::default();
        w.block("networkport", Attrs::new().raw(&self.extra_attrs), |w| {
            if let Some(u) = &self.uuid {
                w.text("uuid", Attrs::new(), &u.to_string());
            }
            if self.owner_name.is_some() || self.owner_uuid.is_some() {
                w.block("owner", Attrs::new(), |w| {
                    if let Some(n) = &self.owner_name {
                        w.text("name", Attrs::new(), n);
                    }
                    if let Some(u) = &self.owner_uuid {
                        w.text("uuid", Attrs::new(), &u.to_string());
                    }
                });
            }
            if let Some(g) = &self.group {
                w.text("group", Attrs::new(), g);
            }
            if let Some(m) = &self.mac {
                w.empty("mac", Attrs::new().add("address", m.address.to_string()));
            }
            raws_named(w, &self.extra, "bandwidth");
            if let Some(v) = &self.vlan {
                vlan(w, v);
            }
            if let Some(v) = &self.virtualport {
                virtualport(w, v);
            }
            if let Some(t) = self.rxfilters_trust_guest {
                w.empty("rxfilters", Attrs::new().yes_no("trustGuest", Some(t)));
            }
            if let Some(p) = &self.plug {
                let at = Attrs::new()
                    .add("type", &p.type_)
                    .opt("bridge", p.bridge.as_deref())
                    .opt("macTableManager", p.mac_table_manager.as_deref())
                    .opt("dev", p.dev.as_deref())
                    .opt("mode", p.mode.as_deref())
                    .yes_no("managed", p.managed)
                    .raw(&p.extra_attrs);
                w.elem("plug", at, |w| {
                    if let Some(d) = &p.driver_name {
                        w.empty("driver", Attrs::new().add("name", d));
                    }
                    if let Some(a) = &p.address {
                        w.empty("address", pci_attrs(Attrs::new(), a));
                    }
                    w.raws(&p.extra);
                });
            }
            w.raws(self.extra.iter().filter(|e| e.name != "bandwidth"));
        });
        w.finish()
    }
}
