//! `create FILE`: start a domain from XML without defining it, as virsh's
//! `create` (a transient domain: `list --all` forgets it once it stops).

use std::path::PathBuf;
use std::process::ExitCode;

use teamvirt_runtime::RuntimeError;

use crate::cmd::args::{LaunchArgs, StateOpt};
use crate::cmd::domain::{print_start_failure, print_start_report, schema_check};
use crate::cmd::report::report;
use crate::out::outln;
use crate::render::render;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Domain XML file.
    pub file: PathBuf,
    /// Attach to the serial console once started (Ctrl-] leaves).
    #[arg(long, conflicts_with = "json")]
    pub console: bool,
    /// Print JSON instead of text: the domain's name, id, UUID and
    /// accelerator.
    #[arg(long)]
    pub json: bool,
    /// Check the XML against libvirt's RELAX NG schema first (virsh's
    /// --validate).
    #[arg(long)]
    pub validate: bool,
    #[command(flatten)]
    pub launch: LaunchArgs,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn run(a: CreateArgs) -> ExitCode {
    let what = format!("Failed to create domain from {}", a.file.display());
    let text = match teamvirt_conf::read_xml_file(&a.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: Failed to read file '{}'", a.file.display());
            eprint!("{}", render(&e.to_diagnostic(Some(&a.file)), None));
            return ExitCode::FAILURE;
        }
    };
    if a.validate {
        let kind = teamvirt_conf::schema::SchemaKind::Domain;
        if let Err(c) = schema_check(&what, &text, &a.file, kind) {
            return c;
        }
    }
    let opts = a.launch.options();
    let rt = match a.state.open() {
        Ok(rt) => rt,
        Err(e) => return report(&what, &e),
    };
    match crate::block_on(rt.create_domain(&text, Some(&a.file), &opts)) {
        Ok((name, r, warnings)) => {
            for w in &warnings {
                let w = w.clone().with_file(Some(a.file.clone()));
                eprint!("{}", render(&w, Some(&text)));
            }
            print_start_report(&r);
            if a.json {
                let v = serde_json::json!({
                    "name": name,
                    "id": r.record.id,
                    "uuid": r.record.uuid,
                    "accel": r.record.accel,
                });
                outln!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
                return ExitCode::SUCCESS;
            }
            outln!("Domain '{name}' created from {}", a.file.display());
            if a.console {
                return crate::cmd::console::attach(&rt, &name);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_start_failure(&e);
            if let RuntimeError::AlreadyRunning(n) = &e {
                // libvirt's virDomainObjListAdd text.
                eprintln!("error: {what}");
                eprintln!(
                    "error: Requested operation is not valid: domain '{n}' is already active"
                );
                return ExitCode::FAILURE;
            }
            report(&what, &e)
        }
    }
}
