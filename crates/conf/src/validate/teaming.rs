//! Teaming checks libvirt does not make (warnings with a one-line hint,
//! except two primaries for one standby, which QEMU refuses at start).

use std::collections::HashMap;

use crate::diag::{Diagnostic, Pos};
use crate::model::*;

/// A device that carries a `<teaming type='transient'>`.
struct Transient<'a> {
    what: String,
    persistent: &'a str,
    mac: Option<MacAddr>,
    pos: Pos,
    plain_hostdev: bool,
}

fn describe(i: &Interface) -> String {
    match (&i.mac, i.alias_name()) {
        (_, Some(a)) => format!("<interface type='{}'> '{a}'", i.type_.as_str()),
        (Some(m), None) => format!("<interface type='{}'> {}", i.type_.as_str(), m.address),
        (None, None) => format!("<interface type='{}'>", i.type_.as_str()),
    }
}

fn describe_hostdev(h: &Hostdev) -> String {
    match &h.source.pci {
        Some(p) => format!("<hostdev> {p}"),
        None => "<hostdev>".to_string(),
    }
}

pub fn checks(def: &DomainDef) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let nets = &def.devices.interfaces;

    let mut transients = Vec::new();
    for i in nets {
        if let Some(t) = &i.teaming {
            if let (TeamingType::Transient, Some(p)) = (t.type_, t.persistent.as_deref()) {
                transients.push(Transient {
                    what: describe(i),
                    persistent: p,
                    mac: i.mac.as_ref().map(|m| m.address),
                    pos: t.pos,
                    plain_hostdev: false,
                });
            }
        }
    }
    for h in &def.devices.hostdevs {
        if let Some(t) = &h.teaming {
            if let (TeamingType::Transient, Some(p)) = (t.type_, t.persistent.as_deref()) {
                transients.push(Transient {
                    what: describe_hostdev(h),
                    persistent: p,
                    mac: None,
                    pos: t.pos,
                    plain_hostdev: true,
                });
            }
        }
    }

    // Two primaries for one standby: QEMU refuses to start.
    let mut first: HashMap<&str, &Transient> = HashMap::new();
    for t in &transients {
        if let Some(prev) = first.get(t.persistent) {
            out.push(
                Diagnostic::error(
                    "teaming-duplicate-transient",
                    format!(
                        "{} and {} both name '{}' as their persistent (standby) device; QEMU refuses a second failover primary for one standby at start",
                        prev.what, t.what, t.persistent
                    ),
                )
                .at(t.pos)
                .with_hint("give each transient device its own persistent virtio interface"),
            );
        } else {
            first.insert(t.persistent, t);
        }
    }

    // Lookups by alias, each the first device in document order (what a
    // linear search would find), built once: checks stay linear in the
    // number of devices.
    let mut by_alias: HashMap<&str, &Interface> = HashMap::new();
    let mut by_dropped: HashMap<&str, &Interface> = HashMap::new();
    for i in nets {
        if let Some(a) = i.alias_name() {
            by_alias.entry(a).or_insert(i);
        }
        if let Some(a) = &i.info.dropped_alias {
            by_dropped.entry(a.name.as_str()).or_insert(i);
        }
    }
    let mut other_kinds: HashMap<&str, &'static str> = HashMap::new();
    if !transients.is_empty() {
        for (k, info) in crate::validate::device_infos(def) {
            if k != "interface" {
                if let Some(a) = info.alias_name() {
                    other_kinds.entry(a).or_insert(k);
                }
            }
        }
    }

    for t in &transients {
        let target = by_alias.get(t.persistent).copied();
        match target {
            None => {
                let dropped = by_dropped.get(t.persistent).copied();
                if let Some(d) = dropped {
                    let a = d
                        .info
                        .dropped_alias
                        .as_ref()
                        .map(|a| (a.name.as_str(), a.pos))
                        .unwrap_or(("", Pos::default()));
                    out.push(
                        Diagnostic::warning(
                            "teaming-alias-dropped",
                            format!(
                                "alias '{}' is not a valid user alias, so libvirt silently drops it and persistent='{}' of {} names no device",
                                a.0, t.persistent, t.what
                            ),
                            format!(
                                "user aliases must start with 'ua-' and contain only [A-Za-z0-9_-], e.g. 'ua-{}'",
                                sanitize(a.0)
                            ),
                        )
                        .at(a.1),
                    );
                } else {
                    let on_other = other_kinds.get(t.persistent).copied();
                    let msg = match on_other {
                        Some(kind) => format!(
                            "persistent='{}' of {} names a <{kind}>, not a persistent virtio interface",
                            t.persistent, t.what
                        ),
                        None => format!("persistent='{}' of {} names no device in this domain", t.persistent, t.what),
                    };
                    out.push(
                        Diagnostic::warning(
                            "teaming-dangling-persistent",
                            msg,
                            "set <alias name='...'/> on the virtio standby interface to the same value",
                        )
                        .at(t.pos),
                    );
                }
            }
            Some(standby) => {
                let ok_type = standby.teaming_type() == Some(TeamingType::Persistent);
                if !ok_type || !standby.is_virtio() {
                    out.push(
                        Diagnostic::warning(
                            "teaming-persistent-not-standby",
                            format!(
                                "persistent='{}' of {} names {}, which is not a persistent virtio teaming interface",
                                t.persistent,
                                t.what,
                                describe(standby)
                            ),
                            "the standby needs <model type='virtio'/> and <teaming type='persistent'/>",
                        )
                        .at(t.pos),
                    );
                }
                if !t.plain_hostdev {
                    let smac = standby.mac.as_ref().map(|m| m.address);
                    match (t.mac, smac) {
                        (Some(a), Some(b)) if a == b => {}
                        (Some(a), Some(b)) => out.push(
                            Diagnostic::warning(
                                "teaming-mac-mismatch",
                                format!("MAC {a} of {} differs from MAC {b} of its standby '{}'", t.what, t.persistent),
                                "the guest pairs failover devices by MAC: give both the same <mac address=.../>",
                            )
                            .at(t.pos),
                        ),
                        _ => out.push(
                            Diagnostic::warning(
                                "teaming-mac-unset",
                                format!(
                                    "{} and its standby '{}' do not both set a MAC address; generated MACs will differ",
                                    t.what, t.persistent
                                ),
                                "the guest pairs failover devices by MAC: give both the same <mac address=.../>",
                            )
                            .at(t.pos),
                        ),
                    }
                }
            }
        }
        if t.plain_hostdev {
            out.push(
                Diagnostic::warning(
                    "teaming-hostdev-mac",
                    format!(
                        "{} has no <mac>: the VF's MAC cannot be set from this XML and must equal the standby's MAC",
                        t.what
                    ),
                    "set the VF MAC on the host (ip link set PF vf N mac ...) or use <interface type='hostdev'> with <mac>",
                )
                .at(t.pos),
            );
        }
    }

    // Teaming that the device type ignores.
    for i in nets {
        if let Some(t) = &i.teaming {
            if i.type_ == InterfaceType::Hostdev && t.type_ == TeamingType::Persistent {
                out.push(
                    Diagnostic::warning(
                        "teaming-ignored-type",
                        format!("<teaming type='persistent'/> on {} has no effect: a VF cannot be the standby", describe(i)),
                        "make the standby a virtio interface (type='network', 'bridge', 'user', ...)",
                    )
                    .at(t.pos),
                );
            }
        }
    }
    out
}

fn sanitize(alias: &str) -> String {
    let base = alias.strip_prefix("ua-").unwrap_or(alias);
    base.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}
