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

/// The teaming warnings of `def`, one rule after another, in document
/// order within each rule.
pub fn checks(def: &DomainDef) -> Vec<Diagnostic> {
    let transients = transients(def);
    let mut out = duplicate_standby(&transients);
    let found = Lookups::new(def, !transients.is_empty());
    for t in &transients {
        match found.by_alias.get(t.persistent).copied() {
            None => out.push(no_standby(t, &found)),
            Some(standby) => {
                out.extend(standby_not_persistent_virtio(t, standby));
                if !t.plain_hostdev {
                    out.extend(mac_pairing(t, standby));
                }
            }
        }
        if t.plain_hostdev {
            out.push(hostdev_without_mac(t));
        }
    }
    out.extend(ignored_teaming(&def.devices.interfaces));
    out
}

/// `persistent` and position of a `<teaming type='transient'>`.
fn transient(t: &Option<Teaming>) -> Option<(&str, Pos)> {
    match t {
        Some(t) if t.type_ == TeamingType::Transient => t.persistent.as_deref().map(|p| (p, t.pos)),
        _ => None,
    }
}

/// Every device with `<teaming type='transient' persistent='...'>`,
/// interfaces first, then hostdevs.
fn transients(def: &DomainDef) -> Vec<Transient<'_>> {
    let nets = def.devices.interfaces.iter().filter_map(|i| {
        transient(&i.teaming).map(|(persistent, pos)| Transient {
            what: describe(i),
            persistent,
            mac: i.mac.as_ref().map(|m| m.address),
            pos,
            plain_hostdev: false,
        })
    });
    let hostdevs = def.devices.hostdevs.iter().filter_map(|h| {
        transient(&h.teaming).map(|(persistent, pos)| Transient {
            what: describe_hostdev(h),
            persistent,
            mac: None,
            pos,
            plain_hostdev: true,
        })
    });
    nets.chain(hostdevs).collect()
}

/// Two primaries for one standby: QEMU refuses to start.
fn duplicate_standby(transients: &[Transient]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut first: HashMap<&str, &Transient> = HashMap::new();
    for t in transients {
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
    out
}

/// Lookups by alias, each the first device in document order (what a
/// linear search would find), built once: checks stay linear in the
/// number of devices.
struct Lookups<'a> {
    by_alias: HashMap<&'a str, &'a Interface>,
    by_dropped: HashMap<&'a str, &'a Interface>,
    /// Device kind of every other device's alias (only when some device
    /// is transient: nothing else asks).
    other_kinds: HashMap<&'a str, &'static str>,
}

impl<'a> Lookups<'a> {
    fn new(def: &'a DomainDef, any_transient: bool) -> Self {
        let mut by_alias = HashMap::new();
        let mut by_dropped = HashMap::new();
        for i in &def.devices.interfaces {
            if let Some(a) = i.alias_name() {
                by_alias.entry(a).or_insert(i);
            }
            if let Some(a) = &i.info.dropped_alias {
                by_dropped.entry(a.name.as_str()).or_insert(i);
            }
        }
        let mut other_kinds = HashMap::new();
        if any_transient {
            for (k, info) in crate::validate::device_infos(def) {
                if k != "interface" {
                    if let Some(a) = info.alias_name() {
                        other_kinds.entry(a).or_insert(k);
                    }
                }
            }
        }
        Lookups {
            by_alias,
            by_dropped,
            other_kinds,
        }
    }
}

/// `persistent` names no interface: an alias libvirt dropped, another
/// kind of device, or nothing.
fn no_standby(t: &Transient, found: &Lookups) -> Diagnostic {
    if let Some(d) = found.by_dropped.get(t.persistent).copied() {
        let a = d
            .info
            .dropped_alias
            .as_ref()
            .map(|a| (a.name.as_str(), a.pos))
            .unwrap_or(("", Pos::default()));
        return Diagnostic::warning(
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
        .at(a.1);
    }
    let msg = match found.other_kinds.get(t.persistent).copied() {
        Some(kind) => format!(
            "persistent='{}' of {} names a <{kind}>, not a persistent virtio interface",
            t.persistent, t.what
        ),
        None => format!(
            "persistent='{}' of {} names no device in this domain",
            t.persistent, t.what
        ),
    };
    Diagnostic::warning(
        "teaming-dangling-persistent",
        msg,
        "set <alias name='...'/> on the virtio standby interface to the same value",
    )
    .at(t.pos)
}

/// The named standby must be a virtio interface with
/// `<teaming type='persistent'/>`.
fn standby_not_persistent_virtio(t: &Transient, standby: &Interface) -> Option<Diagnostic> {
    let ok_type = standby.teaming_type() == Some(TeamingType::Persistent);
    if ok_type && standby.is_virtio() {
        return None;
    }
    Some(
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
    )
}

/// The guest pairs failover devices by MAC: both must set the same one.
fn mac_pairing(t: &Transient, standby: &Interface) -> Option<Diagnostic> {
    const HINT: &str =
        "the guest pairs failover devices by MAC: give both the same <mac address=.../>";
    let smac = standby.mac.as_ref().map(|m| m.address);
    let d = match (t.mac, smac) {
        (Some(a), Some(b)) if a == b => return None,
        (Some(a), Some(b)) => Diagnostic::warning(
            "teaming-mac-mismatch",
            format!(
                "MAC {a} of {} differs from MAC {b} of its standby '{}'",
                t.what, t.persistent
            ),
            HINT,
        ),
        _ => Diagnostic::warning(
            "teaming-mac-unset",
            format!(
                "{} and its standby '{}' do not both set a MAC address; generated MACs will differ",
                t.what, t.persistent
            ),
            HINT,
        ),
    };
    Some(d.at(t.pos))
}

/// A `<hostdev>` primary has no `<mac>` of its own to match the standby's.
fn hostdev_without_mac(t: &Transient) -> Diagnostic {
    Diagnostic::warning(
        "teaming-hostdev-mac",
        format!(
            "{} has no <mac>: the VF's MAC cannot be set from this XML and must equal the standby's MAC",
            t.what
        ),
        "set the VF MAC on the host (ip link set PF vf N mac ...) or use <interface type='hostdev'> with <mac>",
    )
    .at(t.pos)
}

/// Teaming that the device type ignores: a VF cannot be the standby.
fn ignored_teaming(nets: &[Interface]) -> Vec<Diagnostic> {
    nets.iter()
        .filter_map(|i| {
            let t = i.teaming.as_ref()?;
            (i.type_ == InterfaceType::Hostdev && t.type_ == TeamingType::Persistent).then(|| {
                Diagnostic::warning(
                    "teaming-ignored-type",
                    format!("<teaming type='persistent'/> on {} has no effect: a VF cannot be the standby", describe(i)),
                    "make the standby a virtio interface (type='network', 'bridge', 'user', ...)",
                )
                .at(t.pos)
            })
        })
        .collect()
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
