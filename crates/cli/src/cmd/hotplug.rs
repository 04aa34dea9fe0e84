//! `attach-device`, `detach-device`, `detach-device-alias`: virsh's verbs
//! and flags (`--live`, `--config`, `--current`, `--persistent`) for NICs
//! (teaming standbys and primaries) and PCI hostdevs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use teamvirt_runtime::hotplug::{
    Affect, AttachOptions, AttachReport, DetachReport, HotplugError, DETACH_WAIT,
};
use teamvirt_runtime::{Runtime, RuntimeError};

use crate::cmd::args::StateOpt;
use crate::cmd::report::report_domain;
use crate::out::outln;
use crate::render::render;

/// virsh's target flags.
#[derive(clap::Args, Debug, Clone)]
pub struct AffectArgs {
    /// Affect the running domain.
    #[arg(long)]
    pub live: bool,
    /// Affect the persistent definition (next start).
    #[arg(long)]
    pub config: bool,
    /// Affect the current state: live if running, else the definition (default).
    #[arg(long, conflicts_with_all = ["live", "config", "persistent"])]
    pub current: bool,
    /// The definition, and the running domain if it runs.
    #[arg(long, conflicts_with_all = ["live", "config"])]
    pub persistent: bool,
}

impl AffectArgs {
    fn resolve(&self, rt: &Runtime, dom: &str) -> Result<Affect, RuntimeError> {
        let running = rt.is_active(dom)?;
        Ok(Affect::resolve(
            self.live,
            self.config,
            self.persistent,
            running,
        ))
    }
}

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Domain name.
    pub domain: String,
    // clap's --help text, not rustdoc: the XML element names are meant literally.
    #[allow(rustdoc::invalid_html_tags)]
    /// XML file with one <interface> or <hostdev>.
    pub file: PathBuf,
    #[command(flatten)]
    pub affect: AffectArgs,
    /// Lab mode: a VF primary is emulated by a vmxnet3 (no SR-IOV needed).
    #[arg(long)]
    pub emulate_vf: bool,
    /// Wait until the pair the device completes negotiated failover
    /// (default 60 s), like `start --wait-failover`.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, require_equals = true, default_missing_value = "60")]
    pub wait_failover: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// Domain name.
    pub domain: String,
    // clap's --help text, not rustdoc: the XML element names are meant literally.
    #[allow(rustdoc::invalid_html_tags)]
    /// XML file with the <interface> (matched by MAC) or <hostdev>
    /// (matched by host address) to remove.
    pub file: PathBuf,
    #[command(flatten)]
    pub affect: AffectArgs,
    /// How long the guest may take to release the device.
    #[arg(long, value_name = "SECONDS", default_value_t = DETACH_WAIT.as_secs())]
    pub timeout: u64,
    #[command(flatten)]
    pub state: StateOpt,
}

#[derive(clap::Args, Debug)]
pub struct DetachAliasArgs {
    /// Domain name.
    pub domain: String,
    /// Device alias (QEMU id), as `dumpxml` shows it.
    pub alias: String,
    #[command(flatten)]
    pub affect: AffectArgs,
    /// How long the guest may take to release the device.
    #[arg(long, value_name = "SECONDS", default_value_t = DETACH_WAIT.as_secs())]
    pub timeout: u64,
    #[command(flatten)]
    pub state: StateOpt,
}

fn read(path: &std::path::Path) -> Result<String, ExitCode> {
    teamvirt_conf::read_xml_file(path).map_err(|e| {
        eprintln!("error: Failed to read file '{}'", path.display());
        eprint!("{}", render(&e.to_diagnostic(Some(path)), None));
        ExitCode::FAILURE
    })
}

fn fail(dom: &str, what: &str, e: &RuntimeError) -> ExitCode {
    let code = report_domain(dom, what, e);
    if let RuntimeError::Hotplug(HotplugError::Plan(
        teamvirt_qemu::hotplug::HotplugError::NoSlots,
    )) = e
    {
        eprintln!(
            "hint: the running domain has no free hot-pluggable PCI slot; add <controller type='pci' model='pcie-root-port'/> controllers (hotplug on) to its definition: they exist after the next start"
        );
    }
    code
}

pub fn attach(a: AttachArgs) -> ExitCode {
    let text = match read(&a.file) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let what = "Failed to attach device";
    let res = a.state.open().and_then(|rt| {
        let affect = a.affect.resolve(&rt, &a.domain)?;
        let opts = AttachOptions {
            affect,
            emulate_vf: a.emulate_vf,
            wait_failover: a.wait_failover.map(Duration::from_secs),
        };
        crate::block_on(rt.attach_device(&a.domain, &text, Some(&a.file), &opts))
    });
    let r: AttachReport = match res {
        Ok(r) => r,
        Err(e) => return fail(&a.domain, what, &e),
    };
    for w in &r.warnings {
        let w = w
            .clone()
            .with_file(w.file.clone().or_else(|| Some(a.file.clone())));
        eprint!("{}", render(&w, Some(&text)));
    }
    if let Some(s) = &r.substitution {
        eprintln!("{s}");
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r).expect("serializes"));
    }
    if let Some(states) = &r.teaming {
        for s in states {
            eprintln!(
                "failover: standby {} / primary {}: negotiated={} plugged={}",
                s.pair.standby, s.pair.primary, s.negotiated, s.plugged
            );
        }
        let problems: Vec<String> = states.iter().filter_map(|s| s.problem()).collect();
        if !problems.is_empty() {
            eprintln!(
                "error: the device was attached, but failover was not negotiated within {} s:",
                a.wait_failover.unwrap_or(0)
            );
            for p in problems {
                eprintln!("  {p}");
            }
            return ExitCode::FAILURE;
        }
    } else if let Some(p) = &r.hidden_primary {
        eprintln!(
            "note: QEMU keeps failover primary {p} hidden until the guest negotiates failover (VIRTIO_NET_F_STANDBY) on its standby; `teamvirt teaming {}` shows when it is plugged, --wait-failover waits for it",
            a.domain
        );
    }
    if !a.json {
        outln!("Device attached successfully");
    }
    ExitCode::SUCCESS
}

fn print_detach(dom: &str, r: &DetachReport, by_alias: bool, timeout: u64) -> ExitCode {
    for v in &r.vfs_returned {
        eprintln!("VF {} returned to network '{}'", v.address, v.network);
    }
    for p in &r.host_problems {
        eprintln!("warning: {p}");
    }
    if r.live && !r.removed {
        // libvirt: the request stays pending; the device is still there.
        outln!("Device detach request sent successfully");
        eprintln!(
            "warning: the guest did not release device {} within {timeout} s: it stays attached to domain '{dom}' (and keeps its VF) until the guest lets it go; run the detach again to wait for it",
            r.alias.as_deref().unwrap_or("?")
        );
        return ExitCode::SUCCESS;
    }
    if by_alias {
        outln!("Device detach request sent successfully");
    } else {
        outln!("Device detached successfully");
    }
    ExitCode::SUCCESS
}

pub fn detach(a: DetachArgs) -> ExitCode {
    let text = match read(&a.file) {
        Ok(t) => t,
        Err(c) => return c,
    };
    let res = a.state.open().and_then(|rt| {
        let affect = a.affect.resolve(&rt, &a.domain)?;
        crate::block_on(rt.detach_device(
            &a.domain,
            &text,
            Some(&a.file),
            affect,
            Duration::from_secs(a.timeout),
        ))
    });
    match res {
        Ok(r) => print_detach(&a.domain, &r, false, a.timeout),
        Err(e) => fail(&a.domain, "Failed to detach device", &e),
    }
}

pub fn detach_alias(a: DetachAliasArgs) -> ExitCode {
    let res = a.state.open().and_then(|rt| {
        let affect = a.affect.resolve(&rt, &a.domain)?;
        crate::block_on(rt.detach_device_alias(
            &a.domain,
            &a.alias,
            affect,
            Duration::from_secs(a.timeout),
        ))
    });
    match res {
        Ok(r) => print_detach(&a.domain, &r, true, a.timeout),
        Err(e) => fail(
            &a.domain,
            &format!("Failed to detach device with alias {}", a.alias),
            &e,
        ),
    }
}
