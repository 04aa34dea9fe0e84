//! `teamvirt capabilities`: what a QEMU binary can do (version, machines,
//! accelerators, failover support), probed live or read from a libvirt caps
//! cache file.

use crate::cmd::qemu_opts::probe_cache_dir;
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
    /// Probe cache directory (default: `cache/` in the state directory).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// State directory whose `cache/` holds the probe cache (default:
    /// $TEAMVIRT_STATE_DIR, /var/lib/teamvirt for root, else
    /// $XDG_STATE_HOME/teamvirt). Accepted before or after the verb.
    // Same id as the global --state-dir: clap copies its value here.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let loaded = match &args.caps {
        Some(file) => QemuCaps::from_libvirt_xml(file),
        None => {
            let emulator = args
                .emulator
                .clone()
                .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"));
            let cache_dir =
                match probe_cache_dir(args.cache_dir.as_deref(), args.state_dir.as_deref()) {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!("error: {e} (or pass --cache-dir)");
                        return ExitCode::FAILURE;
                    }
                };
            crate::block_on(teamvirt_runtime::domain::probe_caps(&emulator, &cache_dir))
        }
    };
    let caps = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A probe answers for this host: KVM is listed only where `start`
    // would use it (a caps file describes the host it was made on).
    let kvm_unusable = match caps.source {
        CapsSource::Probe { .. } => teamvirt_runtime::accel::kvm_unusable(),
        _ => None,
    };
    let text = if args.json {
        format!("{}\n", to_json(&caps, kvm_unusable.as_deref()))
    } else {
        to_text(&caps, kvm_unusable.as_deref())
    };
    out!("{text}");
    ExitCode::SUCCESS
}

/// The accelerators of `caps` that can run a guest here (`kvm_unusable`:
/// why KVM cannot).
fn usable(caps: &QemuCaps, kvm_unusable: Option<&str>) -> Vec<Accel> {
    caps.accelerators()
        .into_iter()
        .filter(|a| !(*a == Accel::Kvm && kvm_unusable.is_some()))
        .collect()
}

/// The whole [`QemuCaps`] plus the derived answers users ask for.
fn to_json(caps: &QemuCaps, kvm_unusable: Option<&str>) -> String {
    let mut out = serde_json::Map::new();
    out.insert("failover_supported".into(), caps.supports_failover().into());
    let accels: Vec<Value> = usable(caps, kvm_unusable)
        .iter()
        .map(|a| a.as_str().into())
        .collect();
    out.insert("accelerators".into(), accels.into());
    if let Some(why) = kvm_unusable {
        out.insert("kvm_unusable".into(), why.into());
    }
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

fn to_text(caps: &QemuCaps, kvm_unusable: Option<&str>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let source = match &caps.source {
        CapsSource::LibvirtXml { path } => format!("libvirt caps file {}", path.display()),
        CapsSource::Probe { cache: None, .. } => "live probe".to_string(),
        CapsSource::Probe {
            cache: Some(file), ..
        } => format!(
            "probe cache {} (an earlier live probe of this binary, redone when it changes)",
            file.display()
        ),
        CapsSource::Flags => "explicit flags".to_string(),
    };
    let _ = writeln!(s, "emulator: {}", caps.emulator.display());
    let _ = writeln!(s, "source: {source}");
    let _ = writeln!(s, "version: {} ({})", caps.version_string, caps.version);
    if !caps.package.is_empty() {
        let _ = writeln!(s, "package: {}", caps.package);
    }
    let _ = writeln!(s, "arch: {}", caps.arch);
    let usable = usable(caps, kvm_unusable);
    let accels: Vec<&str> = usable.iter().map(|a| a.as_str()).collect();
    let mut accels = if accels.is_empty() {
        "none".to_string()
    } else {
        accels.join(", ")
    };
    if let Some(why) = kvm_unusable {
        let _ = write!(accels, " (kvm not usable on this host: {why})");
    }
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
    for accel in usable {
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
        let mut machines: Vec<&caps::MachineType> = machines.iter().collect();
        machines.sort_by(|a, b| natural_cmp(&a.name, &b.name));
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

/// Names in the order a person sorts them: runs of digits by value
/// (`pc-q35-2.9` before `pc-q35-2.10`), the rest by character.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (x, y) = (chunks(a), chunks(b));
    for ((dx, cx), (dy, cy)) in x.iter().zip(&y) {
        let o = if *dx && *dy {
            let (tx, ty) = (cx.trim_start_matches('0'), cy.trim_start_matches('0'));
            tx.len().cmp(&ty.len()).then(tx.cmp(ty))
        } else {
            cx.cmp(cy)
        };
        if o.is_ne() {
            return o;
        }
    }
    x.len().cmp(&y.len()).then(a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use teamvirt_qemu::caps::{AccelCaps, MachineType};

    fn machine(name: &str) -> MachineType {
        MachineType {
            name: name.into(),
            alias: None,
            max_cpus: 255,
            hotplug_cpus: true,
            default: name == "pc-i440fx-7.2",
            default_cpu: None,
            default_ram_id: None,
            numa_mem_supported: false,
            deprecated: false,
            acpi: None,
        }
    }

    /// A probe of a QEMU that enabled KVM on a host where `start` would
    /// not use it (issue 19: it said `accelerators: kvm, tcg`).
    fn probed() -> QemuCaps {
        let mut c = QemuCaps::from_flags("/usr/bin/qemu-system-x86_64", "x86_64", ["kvm", "tcg"]);
        c.source = CapsSource::Probe {
            binary: "/usr/bin/qemu-system-x86_64".into(),
            cache: None,
        };
        // QEMU's order: the default first, then as its table has them.
        let machines: Vec<MachineType> = [
            "pc-i440fx-7.2",
            "pc-q35-2.10",
            "microvm",
            "pc-q35-2.9",
            "isapc",
        ]
        .into_iter()
        .map(machine)
        .collect();
        for a in [Accel::Kvm, Accel::Tcg] {
            c.accel.insert(
                a,
                AccelCaps {
                    machines: machines.clone(),
                    cpu_models: vec![],
                },
            );
        }
        c
    }

    #[test]
    fn unusable_kvm_is_not_listed_and_says_why() {
        let c = probed();
        let t = to_text(
            &c,
            Some("/dev/kvm cannot be opened read-write: No such file or directory (os error 2)"),
        );
        assert!(
            t.contains("\naccelerators: tcg (kvm not usable on this host: /dev/kvm cannot be opened read-write: No such file or directory (os error 2))\n"),
            "{t}"
        );
        assert!(t.contains("\nmachines (tcg):\n"), "{t}");
        assert!(!t.contains("kvm,") && !t.contains("machines (kvm"), "{t}");
        let v: Value = serde_json::from_str(&to_json(&c, Some("no vmx"))).unwrap();
        assert_eq!(v["accelerators"], serde_json::json!(["tcg"]));
        assert_eq!(v["kvm_unusable"], "no vmx");
        // Where KVM works both are listed.
        let t = to_text(&c, None);
        assert!(t.contains("\naccelerators: kvm, tcg\n"), "{t}");
        assert!(t.contains("\nmachines (kvm, tcg):\n"), "{t}");
    }

    /// Read from the probe cache is not a live probe (issue 19).
    #[test]
    fn source_names_the_cache_file() {
        let mut c = probed();
        assert!(to_text(&c, None).contains("\nsource: live probe\n"));
        c.source = CapsSource::Probe {
            binary: "/usr/bin/qemu-system-x86_64".into(),
            cache: Some("/s/cache/qemucaps-x.json".into()),
        };
        let t = to_text(&c, None);
        assert!(
            t.contains("\nsource: probe cache /s/cache/qemucaps-x.json (an earlier live probe"),
            "{t}"
        );
    }

    #[test]
    fn machines_are_sorted() {
        let t = to_text(&probed(), None);
        let names: Vec<&str> = t
            .lines()
            .filter(|l| l.starts_with("  "))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "isapc",
                "microvm",
                "pc-i440fx-7.2",
                "pc-q35-2.9",
                "pc-q35-2.10"
            ]
        );
        assert!(natural_cmp("pc-q35-2.9", "pc-q35-2.10").is_lt());
    }
}
