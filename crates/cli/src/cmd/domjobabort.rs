//! `teamvirt domjobabort DOMAIN`: ask the process running the domain's job
//! (a migration) to cancel it; that process rolls back and reports.

use std::process::ExitCode;

use teamvirt_runtime::migrate::job;

use super::args::StateOpt;
use super::domjobinfo::open_for_job;

#[derive(clap::Args, Debug)]
pub struct DomjobabortArgs {
    /// Domain name.
    pub domain: String,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn run(a: DomjobabortArgs) -> ExitCode {
    let res = open_for_job(&a.state, &a.domain).and_then(|(sd, running)| {
        match job::request_abort(&sd, &a.domain) {
            // libvirt checks that the domain runs before looking for a job.
            Err(job::JobError::NoJob) if !running => {
                Err("Requested operation is not valid: domain is not running".into())
            }
            r => r.map_err(|e| e.to_string()),
        }
    });
    match res {
        Ok(j) => {
            eprintln!(
                "abort requested for the {} job of domain '{}' (phase {}); its process rolls back",
                j.operation, a.domain, j.phase
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
