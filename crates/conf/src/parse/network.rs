//! `<network>` and `<networkport>` (libvirt `virNetworkDefParseXML`,
//! `virNetworkPortDefParseXML`).

use std::path::Path;

use super::domain::expect_root;
use super::{
    finish, invalid_enum, mac, opt_str, opt_u32, opt_yes_no, parse_document, pci_address, req_str,
    uuid, virtualport, vlan, Ctx, El,
};
use crate::diag::{prefix, Diagnostic};
use crate::error::ConfError;
use crate::model::*;

type R<T> = Result<T, ConfError>;

const FORWARD_MODES: &[&str] = &[
    "nat",
    "route",
    "open",
    "bridge",
    "private",
    "vepa",
    "passthrough",
    "hostdev",
];

impl NetworkDef {
    /// Parse network XML text (`virsh net-define`).
    pub fn parse_str(
        text: &str,
        file: Option<&Path>,
    ) -> Result<(NetworkDef, Vec<Diagnostic>), ConfError> {
        super::with_file(file, || {
            let doc = parse_document(text)?;
            let mut cx = Ctx::new(text);
            let def = parse_network(doc.root_element(), &mut cx)?;
            Ok((def, cx.finish()?))
        })
    }

    /// Load and parse a network XML file (size cap, UTF-8, no DTD).
    pub fn load(path: &Path) -> Result<(NetworkDef, Vec<Diagnostic>), ConfError> {
        let text = super::read_xml_file(path)?;
        Self::parse_str(&text, Some(path))
    }
}

impl NetworkPortDef {
    /// Parse network port XML text (`<networkport>`).
    pub fn parse_str(
        text: &str,
        file: Option<&Path>,
    ) -> Result<(NetworkPortDef, Vec<Diagnostic>), ConfError> {
        super::with_file(file, || {
            let doc = parse_document(text)?;
            let mut cx = Ctx::new(text);
            let def = parse_port(doc.root_element(), &mut cx)?;
            Ok((def, cx.finish()?))
        })
    }

    /// Load and parse a network port XML file.
    pub fn load(path: &Path) -> Result<(NetworkPortDef, Vec<Diagnostic>), ConfError> {
        let text = super::read_xml_file(path)?;
        Self::parse_str(&text, Some(path))
    }
}

fn parse_network(node: roxmltree::Node, cx: &mut Ctx) -> R<NetworkDef> {
    let mut el = El::new(node, cx);
    expect_root(&el, cx, "network")?;
    let mut def = NetworkDef {
        pos: el.pos,
        ..Default::default()
    };
    def.ipv6 = opt_yes_no(&mut el, cx, "ipv6")?;
    def.trust_guest_rx_filters = opt_yes_no(&mut el, cx, "trustGuestRxFilters")?;
    match el.child_text("name", cx) {
        Some((name, pos)) => {
            if name.contains('/') {
                return Err(cx.xml_error(
                    "invalid-name",
                    format!("name {name} cannot contain '/'"),
                    pos,
                ));
            }
            def.name = name;
            def.name_pos = pos;
        }
        None => return Err(cx.error("missing-name", "missing name information".into(), el.pos)),
    }
    if let Some((text, pos)) = el.child_text("uuid", cx) {
        def.uuid = Some(uuid(&text, pos, cx)?);
    }
    if let Some(f) = el.child("forward", cx) {
        def.forward = Some(forward(f, cx, &def.name)?);
    }
    if let Some(mut b) = el.child("bridge", cx) {
        let mut br = NetBridge {
            name: opt_str(&mut b, "name"),
            stp: opt_on_off_str(&mut b, cx, "stp")?,
            delay: opt_u32(&mut b, cx, "delay", 10)?,
            pos: b.pos,
            ..Default::default()
        };
        (br.extra_attrs, _) = finish(b, cx);
        def.bridge = Some(br);
    }
    if let Some(mut m) = el.child("mtu", cx) {
        def.mtu = opt_u32(&mut m, cx, "size", 10)?;
        finish(m, cx);
    }
    if let Some(m) = el.child("mac", cx) {
        def.mac = mac(m, cx)?;
    }
    if let Some(v) = el.child("vlan", cx) {
        def.vlan = Some(vlan(v, cx)?);
    }
    for ip in el.children("ip", cx) {
        def.ips.push(net_ip(ip, cx)?);
    }
    if let Some(v) = el.child("virtualport", cx) {
        def.virtualport = Some(virtualport(v, cx)?);
    }
    for mut pg in el.children("portgroup", cx) {
        let mut p = PortGroup {
            name: req_str(&mut pg, cx, "name")?,
            default: opt_yes_no(&mut pg, cx, "default")?,
            trust_guest_rx_filters: opt_yes_no(&mut pg, cx, "trustGuestRxFilters")?,
            pos: pg.pos,
            ..Default::default()
        };
        if let Some(v) = pg.child("vlan", cx) {
            p.vlan = Some(vlan(v, cx)?);
        }
        if let Some(v) = pg.child("virtualport", cx) {
            p.virtualport = Some(virtualport(v, cx)?);
        }
        for b in pg.children("bandwidth", cx) {
            p.extra.push(cx.raw(b.node));
        }
        let (_, extra) = finish(pg, cx);
        p.extra.extend(extra);
        def.portgroups.push(p);
    }
    // libvirt network elements teamvirt passes through untouched.
    def.extra.extend(el.passthrough(
        &["metadata", "domain", "dns", "bandwidth", "route", "port"],
        cx,
    ));
    let (extra_attrs, extra) = finish(el, cx);
    def.extra_attrs = extra_attrs;
    def.extra.extend(extra);
    Ok(def)
}

/// `stp='on|off'` (libvirt compares against "off" only; anything else is on).
fn opt_on_off_str(el: &mut El, _cx: &Ctx, name: &str) -> R<Option<bool>> {
    Ok(el.attr(name).map(|v| v != "off"))
}

fn forward(mut f: El, cx: &mut Ctx, network: &str) -> R<Forward> {
    let mut fw = Forward {
        pos: f.pos,
        ..Default::default()
    };
    fw.mode = match f.attr("mode") {
        None => None,
        Some(m) if FORWARD_MODES.contains(&m) => Some(m.to_string()),
        Some(m) => {
            return Err(cx.error(
                "invalid-forward-mode",
                format!(
                    "{}unknown forwarding type '{m}'",
                    prefix::CONFIG_UNSUPPORTED
                ),
                f.attr_pos("mode", cx),
            ))
        }
    };
    fw.dev = opt_str(&mut f, "dev");
    fw.managed = opt_yes_no(&mut f, cx, "managed")?;
    if let Some(mut d) = f.child("driver", cx) {
        fw.driver_name = opt_str(&mut d, "name");
        finish(d, cx);
    }
    for mut pf in f.children("pf", cx) {
        fw.pfs.push(ForwardPf {
            dev: req_str(&mut pf, cx, "dev")?,
            pos: pf.pos,
        });
        finish(pf, cx);
    }
    // libvirt refuses a device listed twice in the pool (its check is a
    // scan of the earlier ones; a set keeps it linear).
    let mut devs = std::collections::HashSet::new();
    for mut i in f.children("interface", cx) {
        let dev = req_str(&mut i, cx, "dev")?;
        if !devs.insert(dev.clone()) {
            return Err(cx.xml_error(
                "forward-interface-duplicate",
                format!("interface '{dev}' can only be listed once in network {network}"),
                i.pos,
            ));
        }
        fw.interfaces.push(ForwardInterface { dev, pos: i.pos });
        finish(i, cx);
    }
    let mut addrs = std::collections::HashSet::new();
    for mut a in f.children("address", cx) {
        match a.attr("type") {
            Some("pci") => {}
            Some(t) => return Err(invalid_enum(&a, cx, "type", t)),
            None => {
                return Err(cx.xml_error(
                    "address-no-type",
                    "No type specified for device address",
                    a.pos,
                ));
            }
        }
        let addr = pci_address(&mut a, cx)?;
        if !addrs.insert((addr.domain, addr.bus, addr.slot, addr.function)) {
            return Err(cx.xml_error(
                "forward-address-duplicate",
                format!("PCI device '{addr}' can only be listed once in network {network}"),
                a.pos,
            ));
        }
        fw.addresses.push(addr);
        finish(a, cx);
    }
    if let Some(n) = f.child("nat", cx) {
        fw.extra.push(cx.raw(n.node));
    }
    let (extra_attrs, extra) = finish(f, cx);
    fw.extra_attrs = extra_attrs;
    fw.extra.extend(extra);
    Ok(fw)
}

fn net_ip(mut el: El, cx: &mut Ctx) -> R<NetIp> {
    let mut ip = NetIp {
        pos: el.pos,
        family: opt_str(&mut el, "family"),
        address: opt_str(&mut el, "address"),
        netmask: opt_str(&mut el, "netmask"),
        prefix: opt_u32(&mut el, cx, "prefix", 10)?,
        ..Default::default()
    };
    if let Some(mut d) = el.child("dhcp", cx) {
        let mut dhcp = Dhcp {
            pos: d.pos,
            ..Default::default()
        };
        for mut r in d.children("range", cx) {
            let start = req_str(&mut r, cx, "start")?;
            let end = req_str(&mut r, cx, "end")?;
            let pos = r.pos;
            let extra = r.rest_children().into_iter().map(|n| cx.raw(n)).collect();
            finish(r, cx);
            dhcp.ranges.push(DhcpRange {
                start,
                end,
                extra,
                pos,
            });
        }
        for mut h in d.children("host", cx) {
            let mut host = DhcpHost {
                mac: opt_str(&mut h, "mac"),
                id: opt_str(&mut h, "id"),
                name: opt_str(&mut h, "name"),
                ip: opt_str(&mut h, "ip"),
                pos: h.pos,
                ..Default::default()
            };
            (host.extra_attrs, _) = finish(h, cx);
            dhcp.hosts.push(host);
        }
        for b in d.children("bootp", cx) {
            dhcp.extra.push(cx.raw(b.node));
        }
        let (_, extra) = finish(d, cx);
        dhcp.extra.extend(extra);
        ip.dhcp = Some(dhcp);
    }
    for t in el.children("tftp", cx) {
        ip.extra.push(cx.raw(t.node));
    }
    let (extra_attrs, extra) = finish(el, cx);
    ip.extra_attrs = extra_attrs;
    ip.extra.extend(extra);
    Ok(ip)
}

fn parse_port(node: roxmltree::Node, cx: &mut Ctx) -> R<NetworkPortDef> {
    let mut el = El::new(node, cx);
    expect_root(&el, cx, "networkport")?;
    let mut def = NetworkPortDef {
        pos: el.pos,
        ..Default::default()
    };
    if let Some((text, pos)) = el.child_text("uuid", cx) {
        def.uuid = Some(uuid(&text, pos, cx)?);
    }
    if let Some(mut o) = el.child("owner", cx) {
        def.owner_name = o.child_text("name", cx).map(|t| t.0);
        if let Some((text, pos)) = o.child_text("uuid", cx) {
            def.owner_uuid = Some(uuid(&text, pos, cx)?);
        }
        finish(o, cx);
    }
    def.group = el.child_text("group", cx).map(|t| t.0);
    if let Some(m) = el.child("mac", cx) {
        def.mac = mac(m, cx)?;
    }
    if let Some(v) = el.child("vlan", cx) {
        def.vlan = Some(vlan(v, cx)?);
    }
    if let Some(v) = el.child("virtualport", cx) {
        def.virtualport = Some(virtualport(v, cx)?);
    }
    if let Some(mut r) = el.child("rxfilters", cx) {
        def.rxfilters_trust_guest = opt_yes_no(&mut r, cx, "trustGuest")?;
        finish(r, cx);
    }
    if let Some(mut p) = el.child("plug", cx) {
        let mut plug = Plug {
            pos: p.pos,
            type_: req_str(&mut p, cx, "type")?,
            bridge: opt_str(&mut p, "bridge"),
            mac_table_manager: opt_str(&mut p, "macTableManager"),
            dev: opt_str(&mut p, "dev"),
            mode: opt_str(&mut p, "mode"),
            managed: opt_yes_no(&mut p, cx, "managed")?,
            ..Default::default()
        };
        if !["network", "bridge", "direct", "hostdev-pci"].contains(&plug.type_.as_str()) {
            let t = plug.type_.clone();
            return Err(invalid_enum(&p, cx, "type", &t));
        }
        if let Some(mut d) = p.child("driver", cx) {
            plug.driver_name = opt_str(&mut d, "name");
            finish(d, cx);
        }
        if let Some(mut a) = p.child("address", cx) {
            plug.address = Some(pci_address(&mut a, cx)?);
            a.attr("type");
            finish(a, cx);
        }
        (plug.extra_attrs, plug.extra) = finish(p, cx);
        def.plug = Some(plug);
    }
    for b in el.children("bandwidth", cx) {
        def.extra.push(cx.raw(b.node));
    }
    let (extra_attrs, extra) = finish(el, cx);
    def.extra_attrs = extra_attrs;
    def.extra.extend(extra);
    Ok(def)
}
