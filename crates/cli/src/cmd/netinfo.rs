//! `net-info` and `net-uuid`, in virsh's layout (labels padded to 15
//! columns; every command's output ends with an empty line, as virsh's).
//! A network is named by its name or its UUID, as virsh looks it up.

use std::process::ExitCode;

use serde::Serialize;
use teamvirt_runtime::{Runtime, RuntimeError};

use crate::cmd::args::StateOpt;
use crate::cmd::report::report_network;
use crate::out::outln;

#[derive(clap::Args, Debug)]
pub struct NetInfoArgs {
    /// Network name or UUID.
    pub network: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// What `net-info` prints (virsh's fields, plus why an inactive network
/// is inactive).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NetInfo {
    pub name: String,
    pub uuid: String,
    pub active: bool,
    /// Why not active (`net-destroy`, a missing bridge or PF).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inactive_reason: Option<String>,
    /// Always: teamvirt has no transient networks.
    pub persistent: bool,
    pub autostart: bool,
    /// The `<bridge name>`, printed only when there is one (as virsh).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

/// The network `key` names: a name first, then a UUID (any case, with or
/// without dashes).
fn resolve(rt: &Runtime, key: &str) -> Result<String, RuntimeError> {
    let names: Vec<String> = rt.list_networks()?.into_iter().map(|n| n.name).collect();
    if names.iter().any(|n| n == key) {
        return Ok(key.to_owned());
    }
    let norm = |u: &str| u.replace('-', "").to_ascii_lowercase();
    let k = norm(key);
    if k.len() == 32 {
        for n in &names {
            let uuid = rt.network_def(n)?.uuid.map(|u| norm(&u.to_string()));
            if uuid.as_deref() == Some(k.as_str()) {
                return Ok(n.clone());
            }
        }
    }
    Err(RuntimeError::NoNetwork(key.to_owned()))
}

fn info(a: &NetInfoArgs) -> Result<NetInfo, RuntimeError> {
    let Some(rt) = a.state.open_existing()? else {
        return Err(RuntimeError::NoNetwork(a.network.clone()));
    };
    let name = resolve(&rt, &a.network)?;
    let def = rt.network_def(&name)?;
    let row = rt
        .list_networks()?
        .into_iter()
        .find(|n| n.name == name)
        .ok_or_else(|| RuntimeError::NoNetwork(name.clone()))?;
    let inactive_reason = match row.activity {
        teamvirt_runtime::net_state::Activity::Active => None,
        teamvirt_runtime::net_state::Activity::Inactive(why) => Some(why),
    };
    Ok(NetInfo {
        uuid: def.uuid.map(|u| u.to_string()).unwrap_or_default(),
        active: inactive_reason.is_none(),
        inactive_reason,
        persistent: true,
        autostart: row.autostart,
        bridge: def.bridge.and_then(|b| b.name),
        name,
    })
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// virsh's `net-info` rows.
pub fn render_info(i: &NetInfo) -> String {
    let mut s = String::new();
    let mut row = |k: &str, v: &str| s.push_str(&format!("{k:<15} {v}\n"));
    row("Name:", &i.name);
    row("UUID:", &i.uuid);
    row("Active:", yes_no(i.active));
    row("Persistent:", yes_no(i.persistent));
    row("Autostart:", yes_no(i.autostart));
    if let Some(b) = &i.bridge {
        row("Bridge:", b);
    }
    s
}

/// `net-info NETWORK`.
pub fn net_info(a: NetInfoArgs) -> ExitCode {
    match info(&a) {
        Ok(i) => {
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&i).expect("serializes"));
            } else {
                outln!("{}", render_info(&i));
                if let Some(why) = &i.inactive_reason {
                    eprintln!("note: network '{}' is inactive: {why}", i.name);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => report_network(
            &a.network,
            &format!("failed to get network '{}'", a.network),
            &e,
        ),
    }
}

/// `net-uuid NETWORK`.
pub fn net_uuid(a: NetInfoArgs) -> ExitCode {
    match info(&a) {
        Ok(i) => {
            if a.json {
                let v = serde_json::json!({ "name": i.name, "uuid": i.uuid });
                outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
            } else {
                outln!("{}\n", i.uuid);
            }
            ExitCode::SUCCESS
        }
        Err(e) => report_network(
            &a.network,
            &format!("failed to get network '{}'", a.network),
            &e,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_rows_as_virsh() {
        let mut i = NetInfo {
            name: "lan".into(),
            uuid: "11111111-2222-3333-4444-555555555555".into(),
            active: true,
            inactive_reason: None,
            persistent: true,
            autostart: false,
            bridge: Some("br0".into()),
        };
        assert_eq!(
            render_info(&i),
            "Name:           lan\n\
             UUID:           11111111-2222-3333-4444-555555555555\n\
             Active:         yes\n\
             Persistent:     yes\n\
             Autostart:      no\n\
             Bridge:         br0\n"
        );
        i.bridge = None;
        assert!(!render_info(&i).contains("Bridge"));
    }
}
