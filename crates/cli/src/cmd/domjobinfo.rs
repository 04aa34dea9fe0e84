//! `teamvirt domjobinfo DOMAIN`: the running job (a migration) as the
//! migrating process publishes it; works from any shell while QEMU's
//! monitor is held by that process. A job whose process died is settled
//! first (see `teamvirt_runtime::migrate::recover`).

use crate::out::outln;
use std::process::ExitCode;

use teamvirt_host::state::StateDir;
use teamvirt_runtime::migrate::job;
use teamvirt_runtime::run::RunRecord;

use super::args::StateOpt;

#[derive(clap::Args, Debug)]
pub struct DomjobinfoArgs {
    /// Domain name.
    pub domain: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateOpt,
}

/// The state directory, with a dead migration of `name` settled (what was
/// done goes to stderr), and libvirt's texts for a domain that does not
/// exist or does not run. Shared by `domjobinfo` and `domjobabort`.
pub(crate) fn open_for_job(state: &StateOpt, name: &str) -> Result<(StateDir, bool), String> {
    let sd = state
        .state_dir
        .as_deref()
        .map_or_else(
            || teamvirt_runtime::state_root::open_default(None),
            StateDir::open,
        )
        .map_err(|e| e.to_string())?;
    match crate::block_on(teamvirt_runtime::migrate::recover(&sd, name)) {
        Ok(Some(log)) => {
            for l in log {
                eprintln!("warning: stale migration job: {l}");
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("warning: stale migration job could not be settled: {e}"),
    }
    let rec = RunRecord::load(&sd, name).map_err(|e| e.to_string())?;
    let defined = sd.domain_xml(name).map_err(|e| e.to_string())?.exists();
    if rec.is_none() && !defined {
        return Err(format!(
            "Domain not found: no domain with matching name '{name}'"
        ));
    }
    let running = rec.is_some_and(|r| r.is_alive());
    Ok((sd, running))
}

pub fn run(a: DomjobinfoArgs) -> ExitCode {
    let res = (|| -> Result<Option<job::JobInfo>, String> {
        let (sd, running) = open_for_job(&a.state, &a.domain)?;
        let cur = job::current(&sd, &a.domain).map_err(|e| e.to_string())?;
        if cur.is_none() && !running {
            return Err("Requested operation is not valid: domain is not running".into());
        }
        Ok(cur)
    })();
    match res {
        Ok(cur) => {
            if a.json {
                outln!(
                    "{}",
                    match &cur {
                        Some(j) => serde_json::to_string_pretty(j).unwrap_or_default(),
                        None => "{\"job\": null}".into(),
                    }
                );
                return ExitCode::SUCCESS;
            }
            match cur {
                None => outln!("{:<18}None", "Job type:"),
                Some(j) => {
                    let lines = j.lines();
                    let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
                    for (k, v) in lines {
                        outln!("{:<w$}{v}", format!("{k}:"));
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
