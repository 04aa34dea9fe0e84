//! Network verbs, virsh-style: `net-define`, `net-undefine`, `net-list`,
//! `net-dumpxml`. A `<forward mode='hostdev'>` network is a VF pool that
//! `start` draws from; `net-define --emulate-vf` puts it in lab mode
//! (recorded in the network's state, never in its libvirt XML).

use crate::out::{out, outln};
use std::path::PathBuf;
use std::process::ExitCode;

use super::args::StateOpt;
use super::report::{report, report_network};
use crate::render::render;
use teamvirt_runtime::RuntimeError;

#[derive(clap::Args, Debug)]
pub struct NetDefineArgs {
    /// Network XML file.
    pub file: PathBuf,
    /// Lab mode for this pool: its VFs are stood in for by emulated vmxnet3
    /// NICs when domains start (every substitution is printed).
    #[arg(long)]
    pub emulate_vf: bool,
    /// With --emulate-vf: each emulated VF is a tap on this host bridge, so
    /// its traffic reaches the standby's segment (without it the emulated
    /// VF has an isolated backend).
    #[arg(long, value_name = "BRIDGE", requires = "emulate_vf")]
    pub lab_bridge: Option<String>,
    /// Check the XML against libvirt's RELAX NG schema first (virsh's
    /// --validate, as virt-xml-validate).
    #[arg(long)]
    pub validate: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn define(a: NetDefineArgs) -> ExitCode {
    let text = match teamvirt_conf::read_xml_file(&a.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: Failed to read file '{}'", a.file.display());
            eprint!("{}", render(&e.to_diagnostic(Some(&a.file)), None));
            return ExitCode::FAILURE;
        }
    };
    if a.validate {
        let what = format!("Failed to define network from {}", a.file.display());
        let kind = teamvirt_conf::schema::SchemaKind::Network;
        if let Err(c) = super::domain::schema_check(&what, &text, &a.file, kind) {
            return c;
        }
    }
    match a.state.open().and_then(|rt| {
        let r = rt.define_network(&text, Some(&a.file), a.emulate_vf)?;
        rt.set_lab_bridge(&r.0, a.lab_bridge.clone())?;
        Ok(r)
    }) {
        Ok((name, warnings)) => {
            for w in &warnings {
                let w = w.clone().with_file(Some(a.file.clone()));
                eprint!("{}", render(&w, Some(&text)));
            }
            if a.emulate_vf {
                match &a.lab_bridge {
                    Some(br) => eprintln!(
                        "lab mode: VFs of network '{name}' will be emulated by {} NICs, each a tap on bridge '{br}'",
                        teamvirt_qemu::command::LAB_PRIMARY_MODEL
                    ),
                    None => eprintln!(
                        "lab mode: VFs of network '{name}' will be emulated by {} NICs on an isolated backend (no traffic leaves QEMU; --lab-bridge BRIDGE puts them on a bridge)",
                        teamvirt_qemu::command::LAB_PRIMARY_MODEL
                    ),
                }
            }
            outln!("Network {name} defined from {}", a.file.display());
            ExitCode::SUCCESS
        }
        Err(e) => report(
            &format!("Failed to define network from {}", a.file.display()),
            &e,
        ),
    }
}

#[derive(clap::Args, Debug)]
pub struct NetNameArgs {
    /// Network name.
    pub network: String,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn undefine(a: NetNameArgs) -> ExitCode {
    match a
        .state
        .open()
        .and_then(|rt| rt.undefine_network(&a.network))
    {
        Ok(()) => {
            outln!("Network {} has been undefined", a.network);
            ExitCode::SUCCESS
        }
        Err(e) => report_network(
            &a.network,
            &format!("Failed to undefine network {}", a.network),
            &e,
        ),
    }
}

/// `net-start`, as virsh words it. The first one after `net-define`
/// (which leaves the network active) checks it and says started, so a
/// virsh script's `net-define` + `net-start` works unchanged; one on a
/// network already started is libvirt's error, and says only that.
pub fn start(a: NetNameArgs) -> ExitCode {
    match a.state.open().and_then(|rt| rt.net_start_virsh(&a.network)) {
        Ok(_) => {
            outln!("Network {} started", a.network);
            ExitCode::SUCCESS
        }
        Err(e) => report_network(
            &a.network,
            &format!("Failed to start network {}", a.network),
            &e,
        ),
    }
}

/// `net-destroy`: stop serving new devices; running domains keep theirs.
pub fn destroy(a: NetNameArgs) -> ExitCode {
    match a.state.open().and_then(|rt| rt.net_destroy(&a.network)) {
        Ok(held) => {
            outln!("Network {} destroyed", a.network);
            if held > 0 {
                eprintln!(
                    "note: {held} VF(s) of network '{}' stay with their running domains until they stop",
                    a.network
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => report_network(
            &a.network,
            &format!("Failed to destroy network {}", a.network),
            &e,
        ),
    }
}

#[derive(clap::Args, Debug)]
pub struct NetDumpxmlArgs {
    /// Network name.
    pub network: String,
    /// The definition as stored (a `<pf>` pool without the VFs found).
    #[arg(long)]
    pub inactive: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn dumpxml(a: NetDumpxmlArgs) -> ExitCode {
    let xml = a.state.open_existing().and_then(|rt| match rt {
        Some(rt) if a.inactive => rt.network_xml_inactive(&a.network),
        Some(rt) => rt.network_xml(&a.network),
        None => Err(RuntimeError::NoNetwork(a.network.clone())),
    });
    match xml {
        Ok(x) => {
            out!("{x}");
            ExitCode::SUCCESS
        }
        Err(e) => report_network(
            &a.network,
            &format!("Failed to get XML of network {}", a.network),
            &e,
        ),
    }
}

#[derive(clap::Args, Debug)]
pub struct NetListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also list inactive networks (virsh: the default is active ones only).
    #[arg(long)]
    pub all: bool,
    /// List inactive networks only.
    #[arg(long, conflicts_with = "all")]
    pub inactive: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// Networks are active as soon as they are defined (no net-start needed)
/// unless what they stand on is missing or `net-destroy` stopped them. As
/// virsh: active ones by default, `--all` adds the inactive ones,
/// `--inactive` lists only those (the JSON too).
pub fn list(a: NetListArgs) -> ExitCode {
    let nets = match a
        .state
        .open_existing()
        .and_then(|rt| rt.map_or(Ok(vec![]), |rt| rt.list_networks()))
    {
        Ok(n) => n,
        Err(e) => return report("Failed to list networks", &e),
    };
    let nets: Vec<_> = nets
        .into_iter()
        .filter(|n| match n.activity.is_active() {
            true => !a.inactive,
            false => a.all || a.inactive,
        })
        .collect();
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&nets).expect("serializes")
        );
        return ExitCode::SUCCESS;
    }
    let w = nets.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
    outln!(
        " {:<w$}   State    Autostart   Persistent   Forward   VFs",
        "Name"
    );
    outln!("{}", "-".repeat(w + 60));
    for n in &nets {
        let vfs = match n.vfs_total {
            Some(t) => format!(
                "{}/{t} in use{}",
                n.vfs_used,
                match (n.emulate_vf, &n.lab_bridge) {
                    (true, Some(br)) => format!(" (lab mode, bridge {br})"),
                    (true, None) => " (lab mode)".to_string(),
                    _ => String::new(),
                }
            ),
            None => "-".into(),
        };
        outln!(
            " {:<w$}   {:<8} {:<11} yes          {:<9} {vfs}",
            n.name,
            if n.activity.is_active() {
                "active"
            } else {
                "inactive"
            },
            if n.autostart { "yes" } else { "no" },
            n.forward
        );
    }
    outln!();
    ExitCode::SUCCESS
}
