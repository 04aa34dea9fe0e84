//! `teamvirt format FILE`: canonical XML, as `virsh define` + `dumpxml
//! --inactive` would print it.

use crate::out::out;
use std::path::PathBuf;
use std::process::ExitCode;

use teamvirt_conf::AnyDef;

use crate::cmd::qemu_opts::QemuOpts;
use crate::cmd::validate::{check_all, QemuSide};
use crate::render;

#[derive(clap::Args)]
#[command(
    about = "Print the canonical form of domain, network or network-port XML",
    long_about = "Validate FILE like `teamvirt validate` and print its canonical form on stdout, as \
                  `virsh define` followed by `virsh dumpxml --inactive` would (libvirt's element order, \
                  quoting, indentation and units). Elements teamvirt does not interpret are kept. \
                  With --caps or --emulator, QEMU's define-time defaults are applied first (implicit \
                  devices, MACs, PCI addresses). Diagnostics go to stderr (including the placement \
                  warnings of `validate`); exit status 1 when the file is invalid."
)]
pub struct Args {
    /// XML file to format.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// With --caps or --emulator: apply the QEMU driver's define-time
    /// defaults (implicit controllers and devices, MACs, PCI addresses) as
    /// `virsh define` would. --network feeds the placement checks.
    #[command(flatten)]
    pub qemu: QemuOpts,
}

pub fn run(args: Args) -> ExitCode {
    let with_defaults = args.qemu.given();
    let mut qemu = match QemuSide::new(&args.qemu) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    // Without --caps/--emulator the placement checks still run (on the
    // installed QEMU when there is one), but the XML printed is the one
    // written, without QEMU's defaults.
    let c = check_all(&args.file, &mut qemu, false);
    for d in &c.diagnostics {
        eprint!("{}", render::render(d, c.text.as_deref()));
    }
    for n in &qemu.notes {
        eprintln!("note: {n}");
    }
    if !c.valid() {
        return ExitCode::from(1);
    }
    match (c.def, c.defined) {
        (Some(AnyDef::Domain(_)), Some(dom)) if with_defaults => out!("{}", dom.to_xml()),
        (Some(def), _) => out!("{}", def.to_xml()),
        (None, _) => return ExitCode::from(1),
    }
    ExitCode::SUCCESS
}
