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
    /// Apply the QEMU driver's define-time defaults (implicit controllers
    /// and devices, MACs, PCI addresses) with these libvirt capabilities,
    /// as `virsh define` would.
    #[arg(long, value_name = "FILE", conflicts_with = "emulator")]
    pub caps: Option<PathBuf>,
    /// Like --caps, probing this QEMU binary.
    #[arg(long, value_name = "PATH")]
    pub emulator: Option<PathBuf>,
    /// Probe cache directory (with --emulator).
    #[arg(long, value_name = "DIR", requires = "emulator")]
    pub cache_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    if args.caps.is_some() || args.emulator.is_some() {
        return run_with_defaults(&args);
    }
    match load(&args) {
        Ok(def) => {
            print!("{}", def.to_xml());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `--caps`/`--emulator`: the domain after libvirt's QEMU defaults, plus
/// the topology warnings teamvirt adds.
fn run_with_defaults(args: &Args) -> ExitCode {
    let caps = match (&args.caps, &args.emulator) {
        (Some(f), _) => teamvirt_qemu::caps::QemuCaps::from_libvirt_xml(f),
        (None, Some(bin)) => {
            let cache = args
                .cache_dir
                .clone()
                .unwrap_or_else(teamvirt_qemu::caps::default_cache_dir);
            teamvirt_qemu::caps::QemuCaps::probe_blocking(bin, &cache)
        }
        (None, None) => unreachable!("checked by run"),
    };
    let caps = match caps {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let (def, text) = match load_checked(args, Some(caps.supports_failover())) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let AnyDef::Domain(mut dom) = def else {
        print!("{}", def.to_xml());
        return ExitCode::SUCCESS;
    };
    if let Err(e) = teamvirt_qemu::defaults::define(&mut dom, &caps) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    for w in teamvirt_qemu::topology::check(&dom, &[]) {
        eprint!(
            "{}",
            render::render(&w.with_file(Some(args.file.clone())), text.as_deref())
        );
    }
    print!("{}", dom.to_xml());
    ExitCode::SUCCESS
}

/// Load and validate; diagnostics are printed. Later stages (QEMU
/// defaults) transform the returned definition before it is printed.
pub fn load(args: &Args) -> Result<AnyDef, ExitCode> {
    load_checked(args, None).map(|(d, _)| d)
}

/// [`load`] knowing whether QEMU has virtio-net failover; also returns
/// the document text.
fn load_checked(
    args: &Args,
    has_failover: Option<bool>,
) -> Result<(AnyDef, Option<String>), ExitCode> {
    let c = check(&args.file, has_failover);
    for d in &c.diagnostics {
        eprint!("{}", render::render(d, c.text.as_deref()));
    }
    let valid = c.valid();
    match c.def {
        Some(def) if valid => Ok((def, c.text)),
        _ => Err(ExitCode::from(1)),
    }
}
