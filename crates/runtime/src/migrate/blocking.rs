//! The synchronous entry point the CLI uses: a tokio runtime for the job,
//! and the process signals that cancel it (Ctrl-C, SIGTERM, and
//! `domjobabort`'s [`super::job::ABORT_SIGNAL`]).

use std::path::Path;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use super::dest::LocalDestination;
use super::driver::{migrate, MigrateOptions, Outcome, Progress};
use super::job::ABORT_SIGNAL;
use super::MigrateError;
use crate::state::StateDir;

/// Migrate `name` from `sd` to the state directory `dest_root` of this
/// host, blocking until done. `progress` sees every step.
pub fn migrate_to_state_dir(
    sd: &StateDir,
    name: &str,
    dest_root: &Path,
    opts: &MigrateOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Outcome, MigrateError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| MigrateError::Conf(format!("tokio runtime: {e}")))?;
    let dest_sd = StateDir::open(dest_root)?;
    rt.block_on(async {
        let (tx, rx) = watch::channel(None);
        let mut int = signal(SignalKind::interrupt()).map_err(sig_err)?;
        let mut term = signal(SignalKind::terminate()).map_err(sig_err)?;
        let mut usr = signal(SignalKind::from_raw(ABORT_SIGNAL)).map_err(sig_err)?;
        let watcher = tokio::spawn(async move {
            // Only the first request counts; later ones are ignored while
            // the rollback runs (it must not be interrupted half-way).
            let reason = tokio::select! {
                _ = int.recv() => "interrupted (SIGINT)",
                _ = term.recv() => "terminated (SIGTERM)",
                _ = usr.recv() => "canceled by client",
            };
            let _ = tx.send(Some(reason.to_owned()));
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = usr.recv() => {}
                }
            }
        });
        let mut dest = LocalDestination::new(dest_sd);
        let out = migrate(sd, name, &mut dest, opts, rx, progress).await;
        watcher.abort();
        out
    })
}

fn sig_err(e: std::io::Error) -> MigrateError {
    MigrateError::Conf(format!("cannot install signal handlers: {e}"))
}
