//! The live XML of a running domain: the definition after define-time
//! defaults, with the aliases QEMU uses, the domain id, resolved
//! interfaces (a VF from a pool shows as `type='hostdev'` with its
//! address, as in libvirt), and a `<metadata>` element in teamvirt's own
//! namespace recording the accelerator, the VFs taken from pools and every
//! lab-mode substitution. `<metadata>` with a foreign namespace is
//! libvirt-compatible (libvirt keeps such elements verbatim), and the
//! inactive XML never carries it.

use teamvirt_conf::model::{
    InterfaceSource, InterfaceType, NetTarget, RawAttr, RawElement, RawNode,
};
use teamvirt_conf::DomainDef;
use teamvirt_qemu::command::{aliases, Conversion, Substitution};

use crate::accel::Accel;
use crate::run::VfBinding;

/// teamvirt's metadata namespace.
pub const NAMESPACE: &str = "https://teamvirt.dev/xmlns/runtime/1";
const PREFIX: &str = "teamvirt";

fn el(name: &str, attrs: &[(&str, &str)]) -> RawElement {
    let mut e = RawElement::new(format!("{PREFIX}:{name}"));
    e.attrs = attrs.iter().map(|(k, v)| RawAttr::new(*k, *v)).collect();
    e
}

/// The `<teamvirt:runtime>` element.
pub fn runtime_metadata(accel: Accel, vfs: &[VfBinding], subs: &[Substitution]) -> RawElement {
    let mut root = el("runtime", &[("accel", accel.as_str())]);
    root.namespaces.push((PREFIX.into(), NAMESPACE.into()));
    for v in vfs {
        root.children.push(RawNode::Element(el(
            "vf",
            &[
                ("network", &v.network),
                ("device", &v.device),
                ("address", &v.address),
            ],
        )));
    }
    for s in subs {
        let mut attrs = vec![
            ("device", s.id.as_str()),
            ("model", s.model.as_str()),
            ("mac", s.mac.as_str()),
        ];
        attrs.push(("pair", s.pair.as_str()));
        if let Some(h) = &s.host {
            attrs.push(("vf", h.as_str()));
        }
        attrs.push(("netdev", s.netdev.as_str()));
        root.children
            .push(RawNode::Element(el("emulated-primary", &attrs)));
    }
    root
}

/// Build the live XML text.
pub fn live_xml(
    conv: &Conversion,
    id: u32,
    accel: Accel,
    vfs: &[VfBinding],
    subs: &[Substitution],
) -> String {
    let mut def = conv.def.clone();
    aliases::apply(&mut def, &conv.built.aliases);
    show_actual(&mut def, conv);
    def.id = Some(id as i32);
    def.type_ = match accel {
        Accel::Kvm => "kvm".into(),
        Accel::Tcg => "qemu".into(),
    };
    let meta = runtime_metadata(accel, vfs, subs);
    match def.extra.iter_mut().find(|e| e.name == "metadata") {
        Some(m) => m.children.push(RawNode::Element(meta)),
        None => {
            let mut m = RawElement::new("metadata");
            m.children.push(RawNode::Element(meta));
            def.extra.push(m);
        }
    }
    to_text(&def)
}

/// The domain `id` of a live XML text (the parser reads definitions, which
/// have none).
pub fn live_id(xml: &str) -> Option<i32> {
    let root = &xml[xml.find("<domain")?..];
    let tag = &root[..root.find('>')?];
    let at = tag.find(" id=")? + 4;
    let q = tag[at..].chars().next()?;
    let rest = &tag[at + 1..];
    rest[..rest.find(q)?].parse().ok()
}

/// The text of a live definition: the canonical form plus the domain `id`
/// (the formatter writes the inactive form, without it).
pub fn to_text(def: &DomainDef) -> String {
    let xml = def.to_xml();
    let Some(id) = def.id else {
        return xml;
    };
    match xml.find(">") {
        Some(end) if !xml[..end].contains(" id=") && xml.starts_with("<domain") => {
            format!("{} id='{id}'{}", &xml[..end], &xml[end..])
        }
        _ => xml,
    }
}

/// Rewrite a resolved `<interface type='network'>` the way libvirt's live
/// XML shows it: the actual type and source.
pub(crate) fn show_actual(def: &mut DomainDef, conv: &Conversion) {
    for (n, a) in def.devices.interfaces.iter_mut().zip(&conv.actual) {
        if n.type_ == InterfaceType::Network && a.type_ == InterfaceType::Hostdev {
            n.type_ = InterfaceType::Hostdev;
            n.managed = Some(a.managed);
            n.source = Some(InterfaceSource {
                pci: a.hostdev,
                ..Default::default()
            });
        }
    }
}

/// libvirt's live XML names the host side of each tap-backed interface
/// (`<target dev='vnet0'/>`, `macvtap0`): the devices `start` or a
/// migration destination created for it, as recorded in its run directory
/// (`netdevs.json`, labelled `netN (MAC)` by interface index). Matched by
/// index and MAC, else by the MAC alone when one record has it (a detach
/// shifted the indexes). The stored live XML does not carry them: a
/// migration destination makes taps of its own from it.
pub fn show_host_devices(def: &mut DomainDef, created: &[teamvirt_host::netdev::Created]) -> bool {
    let recs: Vec<(usize, &str, &str)> = created
        .iter()
        .filter_map(|c| {
            let (idx, mac) = c.device.strip_prefix("net")?.split_once(" (")?;
            Some((idx.parse().ok()?, mac.strip_suffix(')')?, c.ifname.as_str()))
        })
        .collect();
    let mut changed = false;
    for (i, n) in def.devices.interfaces.iter_mut().enumerate() {
        if n.target.is_some() || n.type_ == InterfaceType::Hostdev {
            continue;
        }
        let Some(mac) = n.mac.as_ref().map(|m| m.address.to_string()) else {
            continue;
        };
        let same: Vec<_> = recs
            .iter()
            .filter(|(_, m, _)| m.eq_ignore_ascii_case(&mac))
            .collect();
        let found = same
            .iter()
            .find(|(idx, _, _)| *idx == i)
            .or_else(|| (same.len() == 1).then(|| &same[0]));
        if let Some((_, _, ifname)) = found {
            n.target = Some(NetTarget {
                dev: (*ifname).to_owned(),
                ..Default::default()
            });
            changed = true;
        }
    }
    changed
}

/// The live XML text `xml` with [`show_host_devices`] applied (unchanged
/// when there is nothing to add).
pub fn with_host_devices(xml: &str, created: &[teamvirt_host::netdev::Created]) -> String {
    if created.is_empty() {
        return xml.to_owned();
    }
    let Ok((mut def, _)) = DomainDef::parse_str(xml, None) else {
        return xml.to_owned();
    };
    if !show_host_devices(&mut def, created) {
        return xml.to_owned();
    }
    def.id = live_id(xml);
    to_text(&def)
}

/// The teamvirt runtime element inside `<metadata>`, dropped from a live
/// definition before it is rebuilt.
pub(crate) fn strip_runtime_metadata(def: &mut DomainDef) {
    for m in def.extra.iter_mut().filter(|e| e.name == "metadata") {
        m.children.retain(|c| match c {
            teamvirt_conf::model::RawNode::Element(e) => !e.name.ends_with(":runtime"),
            _ => true,
        });
    }
    def.extra
        .retain(|e| e.name != "metadata" || !e.children.is_empty());
}

/// The live definition of `name` in `sd` (see [`Runtime::live_def`]);
/// also for a migration's destination, which has no [`Runtime`].
pub(crate) fn live_def_in(
    sd: &teamvirt_host::state::StateDir,
    name: &str,
) -> Result<DomainDef, crate::error::RuntimeError> {
    let p = sd.run_paths(name)?;
    let text = teamvirt_host::state::read_optional(&p.live_xml)?
        .ok_or_else(|| crate::error::HotplugError::NoLiveXml(name.to_owned()))?;
    let (mut def, _) = DomainDef::parse_str(&text, Some(&p.live_xml)).map_err(|e| {
        crate::error::RuntimeError::Invalid {
            diags: vec![e.to_diagnostic(Some(&p.live_xml))],
            text: text.clone(),
            file: Some(p.live_xml.clone()),
        }
    })?;
    teamvirt_qemu::hotplug::restore_aliases(&mut def);
    strip_runtime_metadata(&mut def);
    Ok(def)
}
