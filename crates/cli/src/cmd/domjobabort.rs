//! `teamvirt domjobabort DOMAIN`: ask the process running the domain's job
//! (a migration) to cancel it; that process rolls back and reports.

use std::process::ExitCode;

use teamvirt_runtime::migrate::job;
use teamvirt_runtime::state::StateDir;

use super::domain::StateOpt;

#[derive(clap::Args, Debug)]
pub struct DomjobabortArgs {
    /// Domain name.
    pub domain: String,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn run(a: DomjobabortArgs) -> ExitCode {
    let res = a
        .state
        .state_dir
        .as_deref()
        .map_or_else(|| StateDir::open_default(None), StateDir::open)
        .map_err(|e| e.to_string())
        .and_then(|sd| job::request_abort(&sd, &a.domain).map_err(|e| e.to_string()));
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
