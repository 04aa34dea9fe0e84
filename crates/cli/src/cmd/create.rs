//! `create FILE`: start a domain from XML without defining it, as virsh's
//! `create` (a transient domain: `list --all` forgets it once it stops).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use teamvirt_runtime::accel::Accel;
use teamvirt_runtime::{RuntimeError, StartOptions};

use crate::cmd::args::{StateOpt, MAX_WAIT_SECS};
use crate::cmd::domain::{print_start_failure, print_start_report, schema_check};
use crate::cmd::report::report;
use crate::out::outln;
use crate::render::render;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Domain XML file.
    pub file: PathBuf,
    /// Leave the domain paused (vCPUs stopped); `resume` runs it.
    #[arg(long, conflicts_with = "wait_failover")]
    pub paused: bool,
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
    /// Accelerator (default: kvm if usable on this host, else tcg).
    #[arg(long, value_parser = ["kvm", "tcg"])]
    pub accel: Option<String>,
    /// Lab mode: replace each VF primary by an emulated vmxnet3.
    #[arg(long)]
    pub emulate_vf: bool,
    /// Wait until every teaming pair negotiated failover (default 60 s).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, require_equals = true, default_missing_value = "60",
          value_parser = clap::value_parser!(u64).range(1..=MAX_WAIT_SECS))]
    pub wait_failover: Option<u64>,
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
    let opts = StartOptions {
        accel: a
            .accel
            .as_deref()
            .map(|s| s.parse::<Accel>().expect("clap checked")),
        emulate_vf: a.emulate_vf,
        wait_failover: a.wait_failover.map(Duration::from_secs),
        paused: a.paused,
        ..Default::default()
    };
    let rt = match a.state.open() {
        Ok(rt) => rt,
        Err(e) => return report(&what, &e),
    };
    match rt.create_domain(&text, Some(&a.file), &opts) {
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
