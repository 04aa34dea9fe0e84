//! `teamvirt format FILE`: canonical XML, as `virsh define` + `dumpxml
//! --inactive` would print it.

use std::path::PathBuf;
use std::process::ExitCode;

use teamvirt_conf::AnyDef;

use crate::cmd::validate::check;
use crate::render;

#[derive(clap::Args)]
#[command(
    about = "Print the canonical form of domain, network or network-port XML",
    long_about = "Validate FILE like `teamvirt validate` and print its canonical form on stdout, as \
                  `virsh define` followed by `virsh dumpxml --inactive` would (libvirt's element order, \
                  quoting, indentation and units). Elements teamvirt does not interpret are kept. \
                  Diagnostics go to stderr; exit status 1 when the file is invalid."
)]
pub struct Args {
    /// XML file to format.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub fn run(args: Args) -> ExitCode {
    match load(&args) {
        Ok(def) => {
            print!("{}", def.to_xml());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Load and validate; diagnostics are printed. Later stages (QEMU
/// defaults) transform the returned definition before it is printed.
pub fn load(args: &Args) -> Result<AnyDef, ExitCode> {
    let c = check(&args.file, None);
    for d in &c.diagnostics {
        eprint!("{}", render::render(d, c.text.as_deref()));
    }
    let valid = c.valid();
    match c.def {
        Some(def) if valid => Ok(def),
        _ => Err(ExitCode::from(1)),
    }
}
