//! The guest agent verbs, virsh-style: `domifaddr --source agent`,
//! `shutdown --mode agent|acpi`, and the guest section of `teaming`.
//! Everything the agent said is escaped before it is printed.

use std::process::ExitCode;

use teamvirt_host::escape::escape_controls;
use teamvirt_runtime::guestdoc::{CheckLine, GuestView, IfaceView, Level};

use super::args::StateOpt;
use super::report::report_domain;
use crate::out::outln;

/// `domifaddr NAME --source agent` (the verb is `domif::domifaddr`):
/// virsh's table (Name, MAC address, Protocol, Address), or only the
/// interface `only` names.
pub fn domifaddr_agent(
    domain: &str,
    only: Option<&str>,
    full: bool,
    json: bool,
    state: &StateOpt,
) -> ExitCode {
    let ifaces = match state.open().and_then(|rt| rt.guest_interfaces(domain)) {
        Ok(i) => i,
        Err(e) => return report_domain(domain, "Failed to query for interfaces addresses", &e),
    };
    let ifaces: Vec<_> = ifaces
        .into_iter()
        .filter(|i| only.is_none_or(|n| i.name == n))
        .collect();
    if json {
        // Serialized as given, after escaping (JSON escapes controls itself;
        // bidi overrides and the like are escaped here too).
        let v: Vec<serde_json::Value> = ifaces
            .iter()
            .map(|i| {
                serde_json::json!({
                    "name": escape_controls(&i.name),
                    "hwaddr": i.mac.as_deref().map(escape_controls),
                    "addrs": i.addresses.iter().map(|ad| serde_json::json!({
                        "type": escape_controls(&ad.family),
                        "addr": escape_controls(&ad.address),
                        "prefix": ad.prefix,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
        return ExitCode::SUCCESS;
    }
    outln!(
        " {:<10} {:<20} {:<8}     {}\n{}",
        "Name",
        "MAC address",
        "Protocol",
        "Address",
        "-".repeat(79)
    );
    for i in &ifaces {
        let name = escape_controls(&i.name);
        let mac = escape_controls(i.mac.as_deref().unwrap_or("-"));
        if i.addresses.is_empty() {
            outln!(" {name:<10} {mac:<17}    {:<12} N/A", "N/A");
            continue;
        }
        for (j, ad) in i.addresses.iter().enumerate() {
            let addr = format!(
                "{:<12} {}/{}",
                escape_controls(&ad.family),
                escape_controls(&ad.address),
                ad.prefix
            );
            if full || j == 0 {
                outln!(" {name:<10} {mac:<17}    {addr}");
            } else {
                outln!(" {:<10} {:<17}    {addr}", "-", "-");
            }
        }
    }
    outln!();
    ExitCode::SUCCESS
}

#[derive(clap::Args, Debug)]
pub struct ShutdownArgs {
    /// Domain name.
    pub domain: String,
    /// How to ask the guest, virsh's `--mode`: `acpi` (the power button,
    /// the default) or `agent` (the QEMU guest agent's guest-shutdown, for
    /// guests that ignore ACPI); a comma-separated list tries each in turn.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn shutdown(a: ShutdownArgs) -> ExitCode {
    let modes: Vec<&str> = a
        .mode
        .as_deref()
        .unwrap_or("acpi")
        .split(',')
        .map(str::trim)
        .collect();
    for m in &modes {
        match *m {
            "acpi" | "agent" => {}
            "initctl" | "signal" | "paravirt" => {
                eprintln!("error: Failed to shutdown domain '{}'", a.domain);
                eprintln!(
                    "error: Operation not supported: shutdown mode '{m}' is not supported by teamvirt (acpi, agent)"
                );
                return ExitCode::FAILURE;
            }
            other => {
                eprintln!(
                    "error: Unknown mode {} value, expecting 'acpi', 'agent', 'initctl', 'signal' or 'paravirt'",
                    escape_controls(other)
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let what = format!("Failed to shutdown domain '{}'", a.domain);
    let rt = match a.state.open() {
        Ok(rt) => rt,
        Err(e) => return report_domain(&a.domain, &what, &e),
    };
    let mut last = None;
    for m in &modes {
        let r = match *m {
            "agent" => rt.shutdown_agent(&a.domain),
            _ => crate::block_on(rt.shutdown(&a.domain)),
        };
        match r {
            Ok(()) => {
                outln!("Domain '{}' is being shutdown", a.domain);
                return ExitCode::SUCCESS;
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => report_domain(&a.domain, &what, &e),
        None => ExitCode::FAILURE,
    }
}

fn addrs(i: &IfaceView) -> String {
    let mut v = i.addresses.clone();
    if v.is_empty() {
        v.push("-".into());
    }
    let mut s = v.join(", ");
    if !i.link_local.is_empty() {
        s.push_str(&format!(" (link-local {})", i.link_local.join(", ")));
    }
    if i.default_route == Some(true) {
        s.push_str(" [default route]");
    }
    s
}

/// The guest section of `teaming` (text). Returns how many warnings it printed.
pub fn print_guest_view(v: &GuestView) -> usize {
    match v {
        GuestView::NoAgent => {
            outln!(
                "\nGuest: no guest agent (add <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel> and qemu-guest-agent in the guest to see its side)"
            );
            0
        }
        GuestView::NotResponding { reason } => {
            outln!("\nGuest: the guest agent does not answer ({reason})");
            0
        }
        GuestView::Connected(r) => {
            outln!("\nGuest (QEMU guest agent {}):", r.agent_version);
            let mut n = 0;
            for p in &r.pairs {
                outln!(" pair {} (MAC {}):", p.standby_id, p.mac);
                let rows = [
                    ("master", &p.master),
                    ("standby", &p.standby),
                    ("primary", &p.primary),
                ];
                for (role, i) in rows {
                    match i {
                        Some(i) => outln!("   {role:<8} {:<16} {}", i.name, addrs(i)),
                        None => outln!("   {role:<8} {:<16}", "-"),
                    }
                }
                for i in &p.unknown {
                    outln!("   {:<8} {:<16} {}", "?", i.name, addrs(i));
                }
                match (&r.routes_source, &r.routes_note) {
                    (Some(src), _) => outln!("   routes: from {src}"),
                    (None, Some(why)) => outln!("   routes: not known ({why})"),
                    (None, None) => outln!("   routes: not known"),
                }
                for w in &p.warnings {
                    outln!("   warning: {}", w.message);
                    n += 1;
                }
            }
            n
        }
    }
}

/// The guest doctor's lines of a checkpoint (start, migration, a reboot
/// seen by `teaming`) on stderr; the domain log has them all.
pub fn print_check_lines(lines: &[CheckLine]) {
    for l in lines {
        match l.level {
            Level::Warning => eprintln!("warning: {}", escape_controls(&l.text)),
            Level::Note => eprintln!("note: {}", escape_controls(&l.text)),
            Level::Log => {}
        }
    }
}
