//! `teamvirt domxml-to-native`: the QEMU command line libvirt would build
//! for a domain, as one shell line, libvirt's `.args` layout, or JSON.

use crate::out::out;
use std::path::PathBuf;
use std::process::ExitCode;

use teamvirt_conf::model::InterfaceType;
use teamvirt_conf::{Diagnostic, DomainDef, Pos};
use teamvirt_qemu::command::{convert, BuildOptions, CommandError, ConvertError, Format};
use teamvirt_qemu::resolve::{Chain, NetworkSource, ResolveError, TestNetworkDirs};

use crate::cmd::qemu_opts::QemuOpts;
use crate::render::render;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Domain XML (libvirt format).
    pub domain: PathBuf,
    #[command(flatten)]
    pub qemu: QemuOpts,
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
    /// Lab mode: emulate each VF primary with vmxnet3 (visibly).
    #[arg(long)]
    pub emulate_vf: bool,
    /// Accelerator, as `start --accel`. Default: `start`'s choice on this
    /// host (kvm where usable, else tcg; said on stderr when that is not
    /// the domain's type); with --test-env or --caps, the domain's type
    /// as written (libvirt's tests, another host's capabilities).
    #[arg(long, value_parser = ["kvm", "tcg"])]
    pub accel: Option<String>,
}

/// The domain type the command line is built for: `--accel`, else the
/// one `start` would use on this host (`this_host`), else as written.
/// Returns the type and a note when it differs from the XML's.
pub fn domain_type_for(
    written: &str,
    accel: Option<&str>,
    this_host: bool,
    kvm_unusable: impl FnOnce() -> Option<String>,
) -> (String, Option<String>) {
    if let Some(a) = accel {
        return (if a == "kvm" { "kvm" } else { "qemu" }.to_owned(), None);
    }
    if !this_host {
        return (written.to_owned(), None);
    }
    // start's rule (runtime::start): kvm where usable, else tcg.
    match kvm_unusable() {
        None if written == "kvm" => (written.to_owned(), None),
        None => (
            "kvm".into(),
            Some(format!(
                "domain type '{written}': the command line is built for KVM, which `start` \
                 uses where it is usable (choose with --accel)"
            )),
        ),
        Some(_) if written != "kvm" => (written.to_owned(), None),
        Some(why) => (
            "qemu".into(),
            Some(format!(
                "domain type 'kvm' but KVM is not usable on this host ({why}): the command line \
                 is built for TCG, as `start` would run it (choose with --accel)"
            )),
        ),
    }
}

/// A conversion error as a diagnostic, positioned where the error knows
/// its element (libvirt's validation errors, untranslatable XML, the
/// interface needing host setup) or, for a network not found, at the first
/// `<interface>` of `def` on that network.
fn convert_error_diagnostic(e: &ConvertError, def: &DomainDef) -> Diagnostic {
    match e {
        ConvertError::Invalid(d) => (**d).clone(),
        ConvertError::Command(CommandError::Unsupported {
            at: Some((l, c)), ..
        }) => Diagnostic::error("untranslatable", e.to_string()).at(Pos::new(*l, *c)),
        ConvertError::Command(CommandError::NeedsHostSetup { at, .. }) => {
            let d = Diagnostic::error("needs-host-setup", e.to_string()).with_hint(
                "pass --test-env for the command line with libvirt's test placeholders \
                 instead (fixed descriptor numbers, monitor fd=1729, \
                 /var/lib/libvirt/qemu/domain--1-NAME)",
            );
            match at {
                Some((l, c)) => d.at(Pos::new(*l, *c)),
                None => d,
            }
        }
        ConvertError::Resolve(ResolveError::NoNetwork(name)) => {
            let on_it = def.devices.interfaces.iter().find(|i| {
                i.type_ == InterfaceType::Network
                    && i.source_network()
                        .is_some_and(|n| n == name || n.split(';').next() == Some(name.as_str()))
            });
            let d = Diagnostic::error("network-not-found", e.to_string());
            match on_it {
                Some(i) => d.at(i.pos),
                None => d,
            }
        }
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
    let mut def = def;
    let this_host = !args.test_env && args.qemu.caps.is_none();
    let (ty, note) = domain_type_for(
        &def.type_,
        args.accel.as_deref(),
        this_host,
        teamvirt_runtime::accel::kvm_unusable,
    );
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    def.type_ = ty;
    let caps = match args.qemu.caps_for(&def) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let map = match args.qemu.load_networks() {
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
    let conv = match convert(def.clone(), &caps, &chain, &[], &opts) {
        Ok(c) => c,
        Err(e) => {
            let d = convert_error_diagnostic(&e, &def).with_file(Some(args.domain.clone()));
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

#[cfg(test)]
mod tests {
    use super::domain_type_for;

    #[test]
    fn kvm_domain_built_for_what_start_runs() {
        let no_kvm = || Some("no vmx".to_string());
        let kvm = || None;
        let (t, n) = domain_type_for("kvm", None, true, no_kvm);
        assert_eq!(t, "qemu");
        assert!(n.unwrap().contains("no vmx"));
        assert_eq!(
            domain_type_for("kvm", None, true, kvm),
            ("kvm".into(), None)
        );
        let (t, n) = domain_type_for("qemu", None, true, kvm);
        assert_eq!(t, "kvm");
        assert!(n.is_some());
        // libvirt's test convention / another host's caps: as written.
        assert_eq!(
            domain_type_for("kvm", None, false, no_kvm),
            ("kvm".into(), None)
        );
        assert_eq!(
            domain_type_for("qemu", None, true, no_kvm),
            ("qemu".into(), None)
        );
        assert_eq!(
            domain_type_for("qemu", Some("kvm"), true, no_kvm),
            ("kvm".into(), None)
        );
        assert_eq!(
            domain_type_for("kvm", Some("tcg"), false, kvm),
            ("qemu".into(), None)
        );
    }
}
