//! `edit DOMAIN`: the persistent definition in `$VISUAL`/`$EDITOR` (else
//! `vi`), re-validated before it is saved, like `virsh edit` (libvirt's
//! RELAX NG schema, then define's checks). An edit that
//! does not validate is never saved and never lost: on a terminal the
//! user is asked to try again; otherwise the edited file is kept and named.

use crate::out::outln;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::{Command, ExitCode};

use crate::cmd::args::StateOpt;
use crate::cmd::domain::schema_check;
use crate::cmd::report::{report, report_domain};

#[derive(clap::Args, Debug)]
pub struct EditArgs {
    /// Domain name.
    pub domain: String,
    /// Do not check the edit against libvirt's RELAX NG schema (virsh
    /// edit checks it, as define --validate, unless told so).
    #[arg(long)]
    pub skip_validate: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn run(a: EditArgs) -> ExitCode {
    let rt = match a.state.open() {
        Ok(rt) => rt,
        Err(e) => return report("Failed to open the state directory", &e),
    };
    let original = match rt.domain_xml(&a.domain, true) {
        Ok(x) => x,
        Err(e) => return report_domain(&a.domain, "", &e),
    };
    let file = match tempfile::Builder::new()
        .prefix(&format!("teamvirt-edit-{}-", a.domain))
        .suffix(".xml")
        .tempfile()
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot create a temporary file: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::write(file.path(), &original) {
        eprintln!("error: cannot write {}: {e}", file.path().display());
        return ExitCode::FAILURE;
    }
    loop {
        if let Err(e) = run_editor(file.path()) {
            eprintln!("error: {e}");
            return keep(file, ExitCode::FAILURE);
        }
        let edited = match std::fs::read_to_string(file.path()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.path().display());
                return keep(file, ExitCode::FAILURE);
            }
        };
        if edited == original {
            outln!("Domain '{}' XML configuration not changed.", a.domain);
            return ExitCode::SUCCESS;
        }
        let what = "Failed to define domain from the edited XML";
        if !a.skip_validate {
            let kind = teamvirt_conf::schema::SchemaKind::Domain;
            if schema_check(what, &edited, file.path(), kind).is_err() {
                if !ask_again() {
                    return keep(file, ExitCode::FAILURE);
                }
                continue;
            }
        }
        match crate::block_on(rt.define_domain(&edited, Some(file.path()))) {
            Ok((name, warnings)) => {
                for w in &warnings {
                    eprint!("{}", crate::render::render(w, Some(&edited)));
                }
                outln!("Domain '{name}' XML configuration edited.");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                report(what, &e);
                if !ask_again() {
                    return keep(file, ExitCode::FAILURE);
                }
            }
        }
    }
}

/// `$VISUAL`, else `$EDITOR`, else `vi`, through the shell as virsh does
/// (so `EDITOR="code --wait"` works).
fn run_editor(path: &Path) -> Result<(), String> {
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|e| !e.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".into());
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .map_err(|e| format!("cannot run editor '{editor}': {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("editor '{editor}' failed ({status})"))
    }
}

/// virsh's question after a failed edit; only on a terminal.
fn ask_again() -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("Failed. Try again? [y,n]: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

/// Keep the user's edit on disk and say where it is.
fn keep(file: tempfile::NamedTempFile, code: ExitCode) -> ExitCode {
    match file.keep() {
        Ok((_, path)) => eprintln!(
            "error: the definition was not changed; your edit is kept in {}",
            path.display()
        ),
        Err(e) => eprintln!("error: the definition was not changed; cannot keep your edit: {e}"),
    }
    code
}
