//! virsh's everyday verbs: `dominfo`, `domiflist`, `suspend`, `resume`,
//! `reboot`, `autostart`, `net-autostart`, `start-autostart`, `console`,
//! `edit`. Texts follow virsh's.

use crate::out::outln;
use std::process::ExitCode;
use std::time::Duration;

use teamvirt_runtime::accel::Accel;
use teamvirt_runtime::control::AutostartKind;
use teamvirt_runtime::{Runtime, StartOptions};

use crate::cmd::args::{NameArgs, StateOpt};
use crate::cmd::report::{report, report_domain, report_network};

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Domain name.
    pub domain: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn dominfo(a: InfoArgs) -> ExitCode {
    let info = match a
        .state
        .read_domain(&a.domain, |rt| crate::block_on(rt.dominfo(&a.domain)))
    {
        Ok(i) => i,
        Err(e) => return report_domain(&a.domain, "", &e),
    };
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&info).expect("serializes")
        );
        return ExitCode::SUCCESS;
    }
    let row = |k: &str, v: &str| outln!("{:<15} {v}", format!("{k}:"));
    row("Id", &info.id.map_or("-".into(), |i| i.to_string()));
    row("Name", &info.name);
    row("UUID", info.uuid.as_deref().unwrap_or(""));
    row("OS Type", &info.os_type);
    row("State", &info.state);
    row("CPU(s)", &info.cpus.to_string());
    row("Max memory", &format!("{} KiB", info.max_memory_kib));
    row("Used memory", &format!("{} KiB", info.used_memory_kib));
    row("Persistent", if info.persistent { "yes" } else { "no" });
    row(
        "Autostart",
        if info.autostart { "enable" } else { "disable" },
    );
    row("Log file", &info.log.display().to_string());
    for l in &info.lab_mode {
        row("Lab mode", l);
    }
    outln!();
    ExitCode::SUCCESS
}

pub fn domiflist(a: InfoArgs) -> ExitCode {
    let rows = match a.state.read_domain(&a.domain, |rt| rt.domiflist(&a.domain)) {
        Ok(r) => r,
        Err(e) => return report_domain(&a.domain, "", &e),
    };
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serializes")
        );
        return ExitCode::SUCCESS;
    }
    let header = [
        "Interface",
        "Type",
        "Source",
        "Model",
        "MAC",
        "Teaming",
        "Pair",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.interface.clone().unwrap_or_else(|| "-".into()),
                r.type_.clone(),
                r.source.clone(),
                r.model.clone(),
                r.mac.clone(),
                r.teaming.clone(),
                r.pair.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut w = header.map(str::len);
    for c in &cells {
        for (i, v) in c.iter().enumerate() {
            w[i] = w[i].max(v.len());
        }
    }
    let line = |c: &[&str]| {
        let mut s = String::new();
        for (i, v) in c.iter().enumerate() {
            s.push(' ');
            s.push_str(&format!("{v:<width$}", width = w[i]));
            s.push_str("  ");
        }
        s.trim_end().to_owned()
    };
    outln!("{}", line(&header));
    outln!("{}", "-".repeat(w.iter().map(|x| x + 3).sum::<usize>()));
    for c in &cells {
        outln!("{}", line(&c.each_ref().map(String::as_str)));
    }
    outln!();
    ExitCode::SUCCESS
}

fn simple(
    a: NameArgs,
    act: impl FnOnce(&Runtime, &str) -> Result<(), teamvirt_runtime::RuntimeError>,
    done: &str,
    failed: &str,
) -> ExitCode {
    match a.state.open().and_then(|rt| act(&rt, &a.domain)) {
        Ok(()) => {
            outln!("Domain '{}' {done}", a.domain);
            ExitCode::SUCCESS
        }
        Err(e) => report_domain(
            &a.domain,
            &format!("Failed to {failed} domain '{}'", a.domain),
            &e,
        ),
    }
}

pub fn suspend(a: NameArgs) -> ExitCode {
    simple(
        a,
        |rt, d| crate::block_on(rt.suspend(d)),
        "suspended",
        "suspend",
    )
}

pub fn resume(a: NameArgs) -> ExitCode {
    simple(
        a,
        |rt, d| crate::block_on(rt.resume(d)),
        "resumed",
        "resume",
    )
}

pub fn reboot(a: NameArgs) -> ExitCode {
    simple(
        a,
        |rt, d| crate::block_on(rt.reboot(d)),
        "is being rebooted",
        "reboot",
    )
}

#[derive(clap::Args, Debug)]
pub struct AutostartArgs {
    /// Domain (or network) name.
    pub name: String,
    /// Turn autostart off.
    #[arg(long)]
    pub disable: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn autostart(a: AutostartArgs, kind: AutostartKind) -> ExitCode {
    let res = a
        .state
        .open()
        .and_then(|rt| rt.set_autostart(kind, &a.name, !a.disable));
    let (what, un) = match kind {
        AutostartKind::Domain => ("Domain", if a.disable { "un" } else { "" }),
        AutostartKind::Network => ("Network", if a.disable { "un" } else { "" }),
    };
    match res {
        Ok(()) => {
            outln!("{what} '{}' {un}marked as autostarted", a.name);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let msg = format!(
                "Failed to {un}mark {} '{}' as autostarted",
                what.to_lowercase(),
                a.name
            );
            match kind {
                AutostartKind::Domain => report_domain(&a.name, &msg, &e),
                AutostartKind::Network => report_network(&a.name, &msg, &e),
            }
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct StartAutostartArgs {
    /// Accelerator for the domains started (default: kvm if usable, else tcg).
    #[arg(long, value_parser = ["kvm", "tcg"])]
    pub accel: Option<String>,
    /// Lab mode for every domain started (emulated vmxnet3 primaries).
    #[arg(long)]
    pub emulate_vf: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// At boot (the systemd unit in `contrib/systemd`): bring back what is
/// marked autostart. Networks first (their VF pools are checked), then
/// every autostart domain not already running. One failing domain does
/// not stop the others; the exit status says whether all came up.
pub fn start_autostart(a: StartAutostartArgs) -> ExitCode {
    let rt = match a.state.open() {
        Ok(rt) => rt,
        Err(e) => return report("Failed to open the state directory", &e),
    };
    let mut ok = true;
    match rt.autostart_list(AutostartKind::Network) {
        Ok(nets) => {
            for n in nets {
                // Autostart brings a net-destroy'ed network back, as at boot.
                match rt.net_start(&n).map(|s| s.vfs) {
                    Ok(Some(vfs)) => outln!("Network '{n}' is active ({vfs} VFs)"),
                    Ok(None) => outln!("Network '{n}' is active"),
                    Err(e) => {
                        ok = false;
                        report_network(&n, &format!("Failed to start network '{n}'"), &e);
                    }
                }
            }
        }
        Err(e) => return report("Failed to list autostart networks", &e),
    }
    let doms = match rt.autostart_list(AutostartKind::Domain) {
        Ok(d) => d,
        Err(e) => return report("Failed to list autostart domains", &e),
    };
    let opts = StartOptions {
        accel: a
            .accel
            .as_deref()
            .map(|s| s.parse::<Accel>().expect("clap checked")),
        emulate_vf: a.emulate_vf,
        wait_failover: None,
        incoming: None,
        monitor_timeout: Some(Duration::from_secs(30)),
        paused: false,
    };
    for d in doms {
        match crate::block_on(rt.domain_state(&d)) {
            Ok(teamvirt_runtime::domain::DomainState::ShutOff) => {}
            Ok(_) => {
                outln!("Domain '{d}' is already running");
                continue;
            }
            Err(e) => {
                ok = false;
                report_domain(&d, &format!("Failed to start domain '{d}'"), &e);
                continue;
            }
        }
        match crate::block_on(rt.start(&d, &opts)) {
            Ok(_) => outln!("Domain '{d}' started"),
            Err(e) => {
                ok = false;
                report_domain(&d, &format!("Failed to start domain '{d}'"), &e);
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
