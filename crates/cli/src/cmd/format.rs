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
    about = "Print the canonical form of domain, network, network-port or device XML",
    long_about = "Validate FILE like `teamvirt validate` and print its canonical form on stdout, as \
                  `virsh define` followed by `virsh dumpxml --inactive` would (libvirt's element order, \
                  quoting, indentation and units). Elements teamvirt does not interpret are kept. \
                  QEMU's define-time defaults are applied first (machine type, implicit devices, \
                  MACs, PCI addresses) for the capabilities of --caps, --emulator, or else the \
                  installed qemu-system-x86_64, as `validate` finds them; without any (or for a \
                  domain whose <emulator> is another program) the XML is printed as written, with a \
                  note. An <interface> or <hostdev> document (`attach-device` input) is printed \
                  as that element. Diagnostics go to stderr (including the placement warnings of `validate`); \
                  exit status 1 when the file is invalid."
)]
pub struct Args {
    /// XML file to format.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The QEMU whose define-time defaults (machine type, implicit
    /// controllers and devices, MACs, PCI addresses) are applied, as `virsh
    /// define` would (default: the installed qemu-system-x86_64). --network
    /// feeds the placement checks.
    #[command(flatten)]
    pub qemu: QemuOpts,
}

pub fn run(args: Args) -> ExitCode {
    let mut qemu = match QemuSide::new(&args.qemu) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    // The capabilities `validate` would use (--caps, --emulator, else the
    // installed default emulator): with them, `defined` carries QEMU's
    // define-time defaults.
    let c = check_all(&args.file, &mut qemu, false, false);
    if matches!(c.def, Some(AnyDef::Domain(_))) && c.defined.is_none() && c.valid() {
        qemu.notes.push(
            "QEMU's define-time defaults not applied (no QEMU capabilities): the domain is \
             printed as written"
                .into(),
        );
    }
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
        (Some(AnyDef::Domain(_)), Some(dom)) => out!("{}", dom.to_xml()),
        (Some(def), _) => out!("{}", def.to_xml()),
        (None, _) => return ExitCode::from(1),
    }
    ExitCode::SUCCESS
}
