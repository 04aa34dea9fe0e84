//! The entry points the CLI uses: the job, and the process signals that
//! cancel it (Ctrl-C, SIGTERM, and `domjobabort`'s
//! [`super::job::ABORT_SIGNAL`]).

use std::path::Path;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use super::dest::{Destination, LocalDestination};
use super::driver::{migrate, MigrateOptions, Outcome, Progress};
use super::job::ABORT_SIGNAL;
use super::remote::RemoteDestination;
use super::MigrateError;
use teamvirt_host::state::StateDir;

/// Migrate `name` from `sd` to the state directory `dest_root` of this
/// host. `progress` sees every step.
pub async fn migrate_to_state_dir(
    sd: &StateDir,
    name: &str,
    dest_root: &Path,
    opts: &MigrateOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Outcome, MigrateError> {
    check_targets(sd, name, dest_root)?;
    let dest_sd = StateDir::open(dest_root)?;
    let mut dest = LocalDestination::new(dest_sd);
    // A unix socket (the default) has no host name for QEMU's TLS client
    // to check the certificate against: with --tls, loopback TCP, which
    // TLS authenticates.
    dest.unix_incoming = opts.tls_dir.is_none();
    dest.tls_dir = opts.tls_dir.clone();
    // The source QEMU connects to the destination's unix socket itself:
    // the destination gives it to the source's uid (each VM has its own).
    dest.peer = crate::run::RunRecord::load(sd, name)
        .ok()
        .flatten()
        .and_then(|r| teamvirt_host::privdrop::process_identity(r.proc.pid).ok());
    drive(sd, name, dest, opts, progress).await
}

/// Migrate `name` to another host over SSH (see [`super::remote`]).
/// The control channel comes up first (its set-up
/// time is shown apart, as an info line), after the domain is known here.
pub async fn migrate_to_remote(
    sd: &StateDir,
    name: &str,
    mut dest: RemoteDestination,
    opts: &MigrateOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Outcome, MigrateError> {
    if !sd.run_paths(name)?.state_json.exists() && !sd.domain_xml(name)?.exists() {
        return Err(MigrateError::NoDomain(name.to_owned()));
    }
    dest.connect().await?;
    if let (Some(t), Some((version, dir))) = (dest.setup, &dest.remote) {
        progress(Progress::Info {
            message: format!(
                "control channel to {} up in {} ms (remote teamvirt {version}, state directory {dir})",
                dest.target.uri.host,
                t.as_millis()
            ),
        });
    }
    drive(sd, name, dest, opts, progress).await
}

/// The job under the signals that cancel it.
async fn drive<D: Destination>(
    sd: &StateDir,
    name: &str,
    mut dest: D,
    opts: &MigrateOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Outcome, MigrateError> {
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
    let out = migrate(sd, name, &mut dest, opts, rx, progress).await;
    watcher.abort();
    out
}

/// What virsh checks before anything moves, in its order: the domain
/// exists (it is looked up first), then the destination can be reached
/// (an existing state directory: opening one creates it, and a typo would
/// only show later as a missing network there). Nothing is changed on
/// either side.
fn check_targets(sd: &StateDir, name: &str, dest_root: &Path) -> Result<(), MigrateError> {
    if !sd.run_paths(name)?.state_json.exists() && !sd.domain_xml(name)?.exists() {
        return Err(MigrateError::NoDomain(name.to_owned()));
    }
    let reason = match std::fs::metadata(dest_root) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => "is not a directory",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "does not exist (teamvirt does not create it: create it and define the domain's networks there first)"
        }
        Err(_) => "cannot be accessed",
    };
    Err(MigrateError::DestStateDir {
        path: dest_root.to_owned(),
        reason,
    })
}

fn sig_err(e: std::io::Error) -> MigrateError {
    MigrateError::Io {
        what: "cannot install signal handlers".into(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use teamvirt_host::state::write_atomic;

    /// Unknown domain first, then the destination; a missing destination
    /// is neither created nor is anything done on the source.
    #[tokio::test]
    async fn unknown_domain_then_missing_destination_are_refused_up_front() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(&t.path().join("src")).unwrap();
        let typo = t.path().join("dts");
        let mut seen = |_: Progress| panic!("nothing may start");
        let e = migrate_to_state_dir(&sd, "vm", &typo, &MigrateOptions::default(), &mut seen).await;
        assert!(matches!(e, Err(MigrateError::NoDomain(_))), "{e:?}");
        write_atomic(&sd.domain_xml("vm").unwrap(), b"<domain/>", 0o600).unwrap();
        let e = migrate_to_state_dir(&sd, "vm", &typo, &MigrateOptions::default(), &mut seen)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "failed to connect to the hypervisor: the destination state directory {} does not exist (teamvirt does not create it: create it and define the domain's networks there first)",
                typo.display()
            )
        );
        assert!(!typo.exists());
        assert!(!sd.run_paths("vm").unwrap().dir.exists());
        std::fs::write(&typo, b"").unwrap();
        let e = migrate_to_state_dir(&sd, "vm", &typo, &MigrateOptions::default(), &mut seen)
            .await
            .unwrap_err();
        assert!(e.to_string().ends_with("is not a directory"), "{e}");
    }
}
