//! `teamvirt capabilities`: what a QEMU binary can do (version, machines,
//! accelerators, failover support), probed live or read from a libvirt caps
//! cache file.

use crate::out::out;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;
use teamvirt_qemu::caps::{self, Accel, CapsSource, QemuCaps};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// QEMU binary to probe (default: qemu-system-x86_64 on PATH).
    #[arg(long, value_name = "PATH", conflicts_with = "caps")]
    pub emulator: Option<PathBuf>,
    /// Read libvirt's capabilities cache XML instead of probing a binary.
    #[arg(long, value_name = "FILE")]
    pub caps: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Probe cache directory (default: $TEAMVIRT_STATE_DIR/cache, or
    /// /var/lib/teamvirt/cache for root, or $XDG_STATE_HOME/teamvirt/cache).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let loaded = match &args.caps {
        Some(file) => QemuCaps::from_libvirt_xml(file),
        None => {
            let emulator = args
                .emulator
                .clone()
                .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"));
            let cache_dir = match args
                .cache_dir
                .clone()
                .map_or_else(caps::default_cache_dir, Ok)
            {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: {e} (or pass --cache-dir)");
                    return ExitCode::FAILURE;
                }
            };
            QemuCaps::probe_blocking(&emulator, &cache_dir)
        }
    };
    let caps = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = if args.json {
        format!("{}\n", to_json(&caps))
    } else {
        to_text(&caps)
    };
    out!("{text}");
    ExitCode::SUCCESS
}

/// The whole [`QemuCaps`] plus the derived answers users ask for.
fn to_json(caps: &QemuCaps) -> String {
    let mut out = serde_json::Map::new();
    out.insert("failover_supported".into(), caps.supports_failover().into());
    let accels: Vec<Value> = caps
        .accelerators()
        .iter()
        .map(|a| a.as_str().into())
        .collect();
    out.insert("accelerators".into(), accels.into());
    let syntax = serde_json::json!({
        "device_json": caps.device_json(),
        "netdev_json": caps.netdev_json(),
        "object_json": caps.object_json(),
        "blockdev": caps.blockdev(),
    });
    out.insert("syntax".into(), syntax);
    if let Ok(Value::Object(all)) = serde_json::to_value(caps) {
        out.extend(all);
    }
    serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default()
}

fn to_text(caps: &QemuCaps) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let source = match &caps.source {
        CapsSource::LibvirtXml { path } => format!("libvirt caps file {}", path.display()),
        CapsSource::Probe { .. } => "live probe".to_string(),
        CapsSource::Flags => "explicit flags".to_string(),
    };
    let _ = writeln!(s, "emulator: {}", caps.emulator.display());
    let _ = writeln!(s, "source: {source}");
    let _ = writeln!(s, "version: {} ({})", caps.version_string, caps.version);
    if !caps.package.is_empty() {
        let _ = writeln!(s, "package: {}", caps.package);
    }
    let _ = writeln!(s, "arch: {}", caps.arch);
    let accels: Vec<&str> = caps.accelerators().iter().map(|a| a.as_str()).collect();
    let accels = if accels.is_empty() {
        "none".to_string()
    } else {
        accels.join(", ")
    };
    let _ = writeln!(s, "accelerators: {accels}");
    let failover = if caps.supports_failover() {
        "supported"
    } else {
        "not supported"
    };
    let _ = writeln!(s, "failover (teaming): {failover}");
    let json = |on: bool| if on { "json" } else { "key=value" };
    let _ = writeln!(
        s,
        "syntax: -device {}, -netdev {}, -object {}, disks {}",
        json(caps.device_json()),
        json(caps.netdev_json()),
        json(caps.object_json()),
        if caps.blockdev() {
            "-blockdev"
        } else {
            "-drive"
        },
    );
    let _ = writeln!(s, "flags: {}", caps.flags.len());

    // Accelerators with identical machine lists are shown once.
    let mut groups: Vec<(Vec<Accel>, &[caps::MachineType])> = Vec::new();
    for accel in Accel::ALL {
        let machines = caps.machines(accel);
        if machines.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(_, m)| *m == machines) {
            Some((accels, _)) => accels.push(accel),
            None => groups.push((vec![accel], machines)),
        }
    }
    for (accels, machines) in groups {
        let names: Vec<&str> = accels.iter().map(|a| a.as_str()).collect();
        let _ = writeln!(s, "machines ({}):", names.join(", "));
        let width = machines.iter().map(|m| m.name.len()).max().unwrap_or(0);
        for m in machines {
            let mut notes = Vec::new();
            if let Some(alias) = &m.alias {
                notes.push(format!("alias {alias}"));
            }
            if m.default {
                notes.push("default".to_string());
            }
            if m.deprecated {
                notes.push("deprecated".to_string());
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!("  ({})", notes.join(", "))
            };
            let _ = writeln!(s, "  {:width$}  max cpus {}{notes}", m.name, m.max_cpus);
        }
    }
    s
}
