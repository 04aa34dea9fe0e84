//! The migration destination's host networking: the source's argv names
//! the source's tap descriptors, so the destination makes its own (from
//! the live XML, resolved through the destination's networks, and its
//! pools' lab bridges) and puts their numbers into the `-netdev` options.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;
use teamvirt_conf::model::MacAddr;
use teamvirt_conf::DomainDef;
use teamvirt_qemu::command::NetFds;
use teamvirt_qemu::resolve::NetworkSource;

use super::{lab_tap, setup, HostNet, NetdevError};
use crate::teaming::TeamingPair;

/// Create the destination's taps and rewrite `args` to use them.
/// `lab_bridges`: network -> lab bridge of the destination's pools.
pub fn setup_for_destination(
    live_xml: &str,
    source: &dyn NetworkSource,
    pairs: &[TeamingPair],
    lab_bridges: &BTreeMap<String, String>,
    run_dir: &Path,
    args: &mut [String],
) -> Result<HostNet, NetdevError> {
    let Ok((def, _)) = DomainDef::parse_str(live_xml, None) else {
        return Ok(HostNet::default());
    };
    let (actual, _) = teamvirt_qemu::resolve::resolve_for_checks(&def, source);
    let mut host = setup(&def, &actual, &HashMap::new(), run_dir)?;
    let mut by_id: HashMap<String, NetdevValue> = HashMap::new();
    for (i, net) in def.devices.interfaces.iter().enumerate() {
        let (Some(fds), Some(alias)) = (host.net_fds.get(&i), net.info.alias.as_ref()) else {
            continue;
        };
        by_id.insert(format!("host{}", alias.name), NetdevValue::Tap(fds.clone()));
    }
    for p in pairs.iter().filter(|p| p.emulated) {
        let id = format!("lab-{}", p.primary);
        let bridge = p.network.as_ref().and_then(|n| lab_bridges.get(n));
        let v = match bridge {
            Some(br) => {
                let mac = p
                    .primary_mac
                    .as_deref()
                    .and_then(|m| m.parse::<MacAddr>().ok())
                    .map(|m| m.0);
                let label = format!(
                    "lab VF {} ({})",
                    p.primary,
                    p.primary_mac.as_deref().unwrap_or("-")
                );
                let tap = lab_tap(&mut host, &label, mac, br, run_dir)?;
                NetdevValue::LabTap(tap)
            }
            None => NetdevValue::LabUser,
        };
        by_id.insert(id, v);
    }
    rewrite_netdevs(args, &by_id);
    Ok(host)
}

/// The lab bridges of the destination pools the VFs came from.
pub fn lab_bridges(
    sd: &teamvirt_host::state::StateDir,
    vfs: &[crate::pool::VfBinding],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for v in vfs {
        if let Ok(st) = crate::pool::VfPool::new(sd, &v.network).state() {
            if let (true, Some(br)) = (st.emulate_vf, st.lab_bridge) {
                out.insert(v.network.clone(), br);
            }
        }
    }
    out
}

/// What a `-netdev` becomes on the destination.
#[derive(Debug, Clone)]
pub(crate) enum NetdevValue {
    /// Same options, the destination's descriptors.
    Tap(NetFds),
    /// A lab primary on a lab bridge.
    LabTap(String),
    /// A lab primary without a lab bridge (isolated).
    LabUser,
}

/// Replace the descriptors (or the whole backend of a lab primary) of the
/// `-netdev` options whose id is in `by_id`, keeping the syntax (JSON or
/// key=value) the source used.
pub(crate) fn rewrite_netdevs(args: &mut [String], by_id: &HashMap<String, NetdevValue>) {
    for k in 1..args.len() {
        if args[k - 1] != "-netdev" {
            continue;
        }
        let old = args[k].clone();
        if old.trim_start().starts_with('{') {
            let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(&old) else {
                continue;
            };
            let Some(id) = m.get("id").and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            let Some(v) = by_id.get(&id) else { continue };
            match v {
                NetdevValue::Tap(f) => {
                    for key in ["fd", "fds", "vhost", "vhostfd", "vhostfds"] {
                        m.remove(key);
                    }
                    let mut out = serde_json::Map::new();
                    for (key, val) in m {
                        if key == "id" {
                            put_fds_json(&mut out, f);
                        }
                        out.insert(key, val);
                    }
                    args[k] = Value::Object(out).to_string();
                }
                NetdevValue::LabTap(fd) => {
                    args[k] = serde_json::json!({"type": "tap", "fd": fd, "id": id}).to_string();
                }
                NetdevValue::LabUser => {
                    args[k] =
                        serde_json::json!({"type": "user", "id": id, "restrict": true}).to_string();
                }
            }
        } else {
            let parts: Vec<&str> = old.split(',').collect();
            let Some(id) = parts.iter().find_map(|p| p.strip_prefix("id=")) else {
                continue;
            };
            let Some(v) = by_id.get(id) else { continue };
            args[k] = match v {
                NetdevValue::Tap(f) => {
                    let mut out: Vec<String> = Vec::new();
                    for p in &parts {
                        let key = p.split('=').next().unwrap_or("");
                        if matches!(key, "fd" | "fds" | "vhost" | "vhostfd" | "vhostfds") {
                            continue;
                        }
                        if key == "id" {
                            out.extend(fds_legacy(f));
                        }
                        out.push(p.to_string());
                    }
                    out.join(",")
                }
                NetdevValue::LabTap(fd) => format!("tap,fd={fd},id={id}"),
                NetdevValue::LabUser => format!("user,id={id},restrict=on"),
            };
        }
    }
}

fn put_fds_json(out: &mut serde_json::Map<String, Value>, f: &NetFds) {
    if f.tap.len() > 1 {
        out.insert("fds".into(), f.tap.join(":").into());
    } else if let Some(t) = f.tap.first() {
        out.insert("fd".into(), t.clone().into());
    }
    if !f.vhost.is_empty() {
        out.insert("vhost".into(), true.into());
        if f.vhost.len() > 1 {
            out.insert("vhostfds".into(), f.vhost.join(":").into());
        } else {
            out.insert("vhostfd".into(), f.vhost[0].clone().into());
        }
    }
}

fn fds_legacy(f: &NetFds) -> Vec<String> {
    let mut out = Vec::new();
    if f.tap.len() > 1 {
        out.push(format!("fds={}", f.tap.join(":")));
    } else if let Some(t) = f.tap.first() {
        out.push(format!("fd={t}"));
    }
    if !f.vhost.is_empty() {
        out.push("vhost=on".into());
        if f.vhost.len() > 1 {
            out.push(format!("vhostfds={}", f.vhost.join(":")));
        } else {
            out.push(format!("vhostfd={}", f.vhost[0]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn json_and_legacy_netdevs_get_the_destination_fds() {
        let mut a = s(&[
            "-netdev",
            r#"{"type":"tap","fd":"7","vhost":true,"vhostfd":"8","id":"hostua-sb"}"#,
            "-netdev",
            "tap,fds=7:8,id=hostnet1",
            "-netdev",
            r#"{"type":"user","id":"lab-hostdev0","restrict":true}"#,
            "-netdev",
            "tap,fd=9,id=lab-hostdev1",
            "-netdev",
            r#"{"type":"user","id":"hostnet9"}"#,
        ]);
        let mut m = HashMap::new();
        m.insert(
            "hostua-sb".to_string(),
            NetdevValue::Tap(NetFds {
                tap: vec!["11".into()],
                vhost: vec![],
            }),
        );
        m.insert(
            "hostnet1".to_string(),
            NetdevValue::Tap(NetFds {
                tap: vec!["12".into(), "13".into()],
                vhost: vec!["14".into(), "15".into()],
            }),
        );
        m.insert("lab-hostdev0".to_string(), NetdevValue::LabTap("16".into()));
        m.insert("lab-hostdev1".to_string(), NetdevValue::LabUser);
        rewrite_netdevs(&mut a, &m);
        assert_eq!(a[1], r#"{"type":"tap","fd":"11","id":"hostua-sb"}"#);
        assert_eq!(a[3], "tap,fds=12:13,vhost=on,vhostfds=14:15,id=hostnet1");
        assert_eq!(a[5], r#"{"type":"tap","fd":"16","id":"lab-hostdev0"}"#);
        assert_eq!(a[7], "user,id=lab-hostdev1,restrict=on");
        assert_eq!(a[9], r#"{"type":"user","id":"hostnet9"}"#);
    }
}
