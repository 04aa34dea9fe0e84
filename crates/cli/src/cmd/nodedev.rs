//! `nodedev-list`, `nodedev-dumpxml`, `nodedev-detach`,
//! `nodedev-reattach`: the host's PCI and network devices as libvirt's
//! node device API shows them (read from sysfs by
//! `teamvirt_host::nodedev`), and binding a PCI device to vfio-pci and
//! back with the code `start` uses for managed hostdevs.

use std::path::Path;
use std::process::ExitCode;

use teamvirt_host::hostdev::HostPrep;
use teamvirt_host::nodedev::{self, Cap};

use crate::cmd::args::StateOpt;
use crate::cmd::report::report;
use crate::out::{out, outln};

/// `--cap`: which devices `nodedev-list` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CapArg {
    /// PCI devices (`pci_DDDD_BB_SS_F`).
    Pci,
    /// Network interfaces (`net_IFNAME_MAC`).
    Net,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only devices with this capability.
    #[arg(long, value_enum)]
    pub cap: Option<CapArg>,
    /// Print JSON instead of text: name, capability, sysfs path.
    #[arg(long)]
    pub json: bool,
}

/// The sysfs root: `/sys`, or `TEAMVIRT_SYSFS` (a fake tree, for tests
/// and for looking at another host's copy).
fn sysfs() -> std::path::PathBuf {
    std::env::var_os("TEAMVIRT_SYSFS")
        .map(Into::into)
        .unwrap_or_else(|| Path::new("/sys").to_path_buf())
}

pub fn list(a: ListArgs) -> ExitCode {
    let cap = a.cap.map(|c| match c {
        CapArg::Pci => Cap::Pci,
        CapArg::Net => Cap::Net,
    });
    let devs = nodedev::list(&sysfs(), cap);
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&devs).expect("serializes")
        );
    } else {
        for d in &devs {
            outln!("{}", d.name);
        }
        outln!();
    }
    ExitCode::SUCCESS
}

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Device name, as nodedev-list prints it.
    pub device: String,
}

pub fn dumpxml(a: DevArgs) -> ExitCode {
    match nodedev::dumpxml(&sysfs(), &a.device) {
        Ok(x) => {
            out!("{x}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: Could not find matching device '{}'", a.device);
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// PCI device name (`pci_DDDD_BB_SS_F`).
    pub device: String,
    /// The driver to bind to: only vfio (libvirt's default).
    #[arg(long, value_parser = ["vfio"])]
    pub driver: Option<String>,
    #[command(flatten)]
    pub state: StateOpt,
}

/// The PCI address of `a.device` when no domain holds it; else the error
/// printed under `what`.
fn free_pci(device: &str, state: &StateOpt, what: &str) -> Result<String, ExitCode> {
    let addr = nodedev::pci_device(&sysfs(), device).map_err(|e| {
        eprintln!("error: Could not find matching device '{device}'");
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })?;
    let users = match state.open_existing() {
        Ok(Some(rt)) => rt.pci_device_users(&addr),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e),
    };
    match users {
        Ok(u) if u.is_empty() => Ok(addr),
        Ok(u) => {
            eprintln!("error: {what}");
            // libvirt's text (virHostdevIsPCINodeDeviceUsed).
            eprintln!(
                "error: Requested operation is not valid: PCI device {addr} is in use by driver QEMU, domain {}",
                u.join(", ")
            );
            Err(ExitCode::FAILURE)
        }
        Err(e) => Err(report(what, &e)),
    }
}

/// `nodedev-detach`: bind to vfio-pci (libvirt's virPCIDeviceDetach),
/// refused while a domain holds the device.
pub fn detach(a: DetachArgs) -> ExitCode {
    rebind(&a, "detach", "detached", |host, addr| {
        host.detach(addr).map(drop)
    })
}

/// `nodedev-reattach`: back to the host driver, refused while a domain
/// holds the device.
pub fn reattach(a: DetachArgs) -> ExitCode {
    rebind(&a, "re-attach", "re-attached", |host, addr| {
        host.reattach(addr)
    })
}

/// Moves a free PCI device between drivers with `op`, in virsh's words.
fn rebind(
    a: &DetachArgs,
    verb: &str,
    done: &str,
    op: impl FnOnce(&HostPrep, &str) -> Result<(), teamvirt_host::hostdev::HostdevError>,
) -> ExitCode {
    let what = format!("Failed to {verb} device {}", a.device);
    let addr = match free_pci(&a.device, &a.state, &what) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let host = HostPrep {
        sysfs: sysfs(),
        ..HostPrep::system()
    };
    match op(&host, &addr) {
        Ok(()) => {
            outln!("Device {} {done}\n", a.device);
            ExitCode::SUCCESS
        }
        Err(e) => report(&what, &e.into()),
    }
}
