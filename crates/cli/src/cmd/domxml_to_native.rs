//! `teamvirt domxml-to-native`: the QEMU command line libvirt would build
//! for a domain, as one shell line, libvirt's `.args` layout, or JSON.

use crate::out::out;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use teamvirt_conf::{Diagnostic, DomainDef, NetworkDef, NetworkPortDef, Pos};
use teamvirt_qemu::caps::{self, QemuCaps};
use teamvirt_qemu::command::{convert, BuildOptions, CommandError, ConvertError, Format};
use teamvirt_qemu::resolve::{Chain, NetworkMap, NetworkSource, TestNetworkDirs};

use crate::render::render;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain XML (libvirt format).
    pub domain: PathBuf,
    /// libvirt capabilities cache XML to use instead of probing a binary.
    #[arg(long, value_name = "FILE", conflicts_with = "emulator")]
    pub caps: Option<PathBuf>,
    /// QEMU binary to probe (default: the domain's <emulator>).
    #[arg(long, value_name = "PATH")]
    pub emulator: Option<PathBuf>,
    /// A network definition, optionally with a network port pinning the
    /// interface's resource: `NET.xml` or `NET.xml=PORT.xml`. Repeatable.
    #[arg(long = "network", value_name = "NET.xml[=PORT.xml]")]
    pub networks: Vec<String>,
    /// libvirt test convention: `<source network='NET;PORT'/>` is
    /// `DIR/NET.xml` (with the port from --port-dir).
    #[arg(long, value_name = "DIR")]
    pub network_dir: Option<PathBuf>,
    /// Directory of network port XML for the `NET;PORT` convention.
    #[arg(long, value_name = "DIR")]
    pub port_dir: Option<PathBuf>,
    /// shell (one line), args (libvirt's .args layout) or json.
    #[arg(long, default_value = "shell", value_parser = ["shell", "args", "json"])]
    pub format: String,
    /// Use the fixed host values of libvirt's test suite (monitor fd 1729,
    /// tap fds, /var/lib/libvirt/qemu/domain--1-NAME, test environment).
    #[arg(long)]
    pub test_env: bool,
    /// Lab mode: emulate each VF primary with e1000e (visibly).
    #[arg(long)]
    pub emulate_vf: bool,
    /// Probe cache directory.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// `--network NET.xml[=PORT.xml]` arguments, loaded.
pub fn load_networks(specs: &[String]) -> Result<NetworkMap, String> {
    let mut map = NetworkMap::default();
    for spec in specs {
        let (net, port) = match spec.split_once('=') {
            Some((n, p)) => (n, Some(p)),
            None => (spec.as_str(), None),
        };
        let (nd, _) = NetworkDef::load(Path::new(net))
            .map_err(|e| e.to_diagnostic(Some(Path::new(net))).to_string())?;
        let pd = match port {
            Some(p) => Some(
                NetworkPortDef::load(Path::new(p))
                    .map_err(|e| e.to_diagnostic(Some(Path::new(p))).to_string())?
                    .0,
            ),
            None => None,
        };
        map.insert(nd, pd);
    }
    Ok(map)
}

/// Capabilities from `--caps`, `--emulator`, or the domain's emulator.
pub fn load_caps(
    caps_file: Option<&Path>,
    emulator: Option<&Path>,
    def: &DomainDef,
    cache_dir: Option<&Path>,
) -> Result<QemuCaps, String> {
    match caps_file {
        Some(f) => QemuCaps::from_libvirt_xml(f).map_err(|e| e.to_string()),
        None => {
            let bin = emulator
                .map(Path::to_path_buf)
                .or_else(|| {
                    def.devices
                        .emulator
                        .as_ref()
                        .map(|e| PathBuf::from(&e.path))
                })
                .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"));
            let cache = cache_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(caps::default_cache_dir);
            QemuCaps::probe_blocking(&bin, &cache).map_err(|e| e.to_string())
        }
    }
}

/// A conversion error as a diagnostic, positioned where the error knows
/// its element (libvirt's validation errors, untranslatable XML).
fn convert_error_diagnostic(e: &ConvertError) -> Diagnostic {
    match e {
        ConvertError::Invalid(d) => (**d).clone(),
        ConvertError::Command(CommandError::Unsupported {
            at: Some((l, c)), ..
        }) => Diagnostic::error("untranslatable", e.to_string()).at(Pos::new(*l, *c)),
        _ => Diagnostic::error("convert", e.to_string()),
    }
}

pub fn run(args: Args) -> ExitCode {
    let text = match teamvirt_conf::read_xml_file(&args.domain) {
        Ok(t) => t,
        Err(e) => {
            eprint!("{}", render(&e.to_diagnostic(Some(&args.domain)), None));
            return ExitCode::FAILURE;
        }
    };
    let (def, parse_warnings) = match DomainDef::parse_str(&text, Some(&args.domain)) {
        Ok(x) => x,
        Err(e) => {
            eprint!(
                "{}",
                render(&e.to_diagnostic(Some(&args.domain)), Some(&text))
            );
            return ExitCode::FAILURE;
        }
    };
    for w in &parse_warnings {
        eprint!("{}", render(w, Some(&text)));
    }
    let caps = match load_caps(
        args.caps.as_deref(),
        args.emulator.as_deref(),
        &def,
        args.cache_dir.as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let map = match load_networks(&args.networks) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dirs = args.network_dir.clone().map(|d| TestNetworkDirs {
        net_dir: d,
        port_dir: args.port_dir.clone(),
    });
    let mut sources: Vec<&dyn NetworkSource> = vec![&map];
    if let Some(d) = &dirs {
        sources.push(d);
    }
    let chain = Chain(sources);
    let opts = BuildOptions {
        test_env: args.test_env,
        emulate_vf: args.emulate_vf,
        ..Default::default()
    };
    let conv = match convert(def, &caps, &chain, &[], &opts) {
        Ok(c) => c,
        Err(e) => {
            let d = convert_error_diagnostic(&e).with_file(Some(args.domain.clone()));
            eprint!("{}", render(&d, Some(&text)));
            return ExitCode::FAILURE;
        }
    };
    for w in &conv.warnings {
        let w = w.clone().with_file(Some(args.domain.clone()));
        eprint!("{}", render(&w, Some(&text)));
    }
    for s in &conv.built.substitutions {
        eprintln!(
            "lab mode: primary {} ({}) emulated by {} with MAC {} paired with {}",
            s.id,
            s.host.as_deref().unwrap_or("no VF"),
            s.model,
            s.mac,
            s.pair
        );
    }
    let format: Format = args.format.parse().unwrap_or(Format::Shell);
    out!("{}", conv.built.cmd.render(format));
    ExitCode::SUCCESS
}
