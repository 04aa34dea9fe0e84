//! `teamvirt validate FILE...`: check domain, network and network-port XML.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use teamvirt_conf::{AnyDef, Diagnostic};

use crate::render;

#[derive(clap::Args)]
#[command(
    about = "Check domain, network or network-port XML like libvirt does, plus teaming checks libvirt forgets",
    long_about = "Check domain, network or network-port XML (kind chosen by the root element) the way \
                  `virsh define` on the QEMU driver would, with libvirt's error texts, plus teaming checks \
                  libvirt does not make (as warnings with hints).\n\n\
                  Errors and warnings go to stderr in compiler style. Exit status: 0 when every file is \
                  valid, 1 otherwise."
)]
pub struct Args {
    /// XML files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print a machine-readable JSON report on stdout (nothing on stderr).
    #[arg(long)]
    pub json: bool,
}

/// Result of checking one file: its kind (when it parsed), every diagnostic
/// (with the file set) and the source text (for quoting lines).
pub struct Checked {
    pub def: Option<AnyDef>,
    pub diagnostics: Vec<Diagnostic>,
    pub text: Option<String>,
}

impl Checked {
    pub fn valid(&self) -> bool {
        self.def.is_some() && !self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Load, parse and validate one file.
pub fn check(path: &Path, has_failover: Option<bool>) -> Checked {
    let text = match teamvirt_conf::read_xml_file(path) {
        Ok(t) => t,
        Err(e) => {
            return Checked {
                def: None,
                diagnostics: vec![e.to_diagnostic(Some(path))],
                text: None,
            }
        }
    };
    let (def, mut diagnostics) = match AnyDef::parse_str(&text, Some(path)) {
        Ok(x) => x,
        Err(e) => {
            return Checked {
                def: None,
                diagnostics: vec![e.to_diagnostic(Some(path))],
                text: Some(text),
            }
        }
    };
    if let AnyDef::Domain(d) = &def {
        let mut v = teamvirt_qemu::validate::validate(d, has_failover);
        for x in &mut v {
            x.file = Some(path.to_path_buf());
        }
        // Errors first, then warnings in document order.
        v.append(&mut diagnostics);
        v.sort_by_key(|d| (!d.is_error(), d.pos));
        diagnostics = v;
    }
    Checked {
        def: Some(def),
        diagnostics,
        text: Some(text),
    }
}

pub fn run(args: Args) -> ExitCode {
    let mut all_valid = true;
    let mut reports = Vec::new();
    for f in &args.files {
        let c = check(f, None);
        all_valid &= c.valid();
        if args.json {
            reports.push(render::file_json(
                f,
                c.def.as_ref().map(AnyDef::kind),
                &c.diagnostics,
            ));
        } else {
            for d in &c.diagnostics {
                eprint!("{}", render::render(d, c.text.as_deref()));
            }
            let errors = c.diagnostics.iter().filter(|d| d.is_error()).count();
            let warnings = c.diagnostics.len() - errors;
            let status = if c.valid() { "valid" } else { "invalid" };
            eprintln!(
                "{}: {status} ({errors} error(s), {warnings} warning(s))",
                f.display()
            );
        }
    }
    if args.json {
        let v = serde_json::json!({ "valid": all_valid, "files": reports });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
