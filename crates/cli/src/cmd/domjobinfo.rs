//! `teamvirt domjobinfo DOMAIN`: the running job (a migration) as the
//! migrating process publishes it; works from any shell while QEMU's
//! monitor is held by that process.

use std::process::ExitCode;

use teamvirt_runtime::migrate::job;
use teamvirt_runtime::run::RunRecord;
use teamvirt_runtime::state::StateDir;

use super::domain::StateOpt;

#[derive(clap::Args, Debug)]
pub struct DomjobinfoArgs {
    /// Domain name.
    pub domain: String,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn run(a: DomjobinfoArgs) -> ExitCode {
    let res = (|| -> Result<Option<job::JobInfo>, String> {
        let sd = a
            .state
            .state_dir
            .as_deref()
            .map_or_else(|| StateDir::open_default(None), StateDir::open)
            .map_err(|e| e.to_string())?;
        let running = RunRecord::load(&sd, &a.domain)
            .map_err(|e| e.to_string())?
            .is_some_and(|r| r.is_alive());
        let cur = job::current(&sd, &a.domain).map_err(|e| e.to_string())?;
        if cur.is_none() && !running {
            return Err("Requested operation is not valid: domain is not running".into());
        }
        Ok(cur)
    })();
    match res {
        Ok(cur) => {
            if a.json {
                println!(
                    "{}",
                    match &cur {
                        Some(j) => serde_json::to_string_pretty(j).unwrap_or_default(),
                        None => "{\"job\": null}".into(),
                    }
                );
                return ExitCode::SUCCESS;
            }
            match cur {
                None => println!("{:<18}None", "Job type:"),
                Some(j) => {
                    let lines = j.lines();
                    let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
                    for (k, v) in lines {
                        println!("{:<w$}{v}", format!("{k}:"));
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
