//! Begin, the first phase of the source side of a migration (libvirt's
//! `qemuMigrationSrcBegin`; the driver is `driver.rs`): the prechecks, and
//! what the later phases need from the source, taken before anything
//! moves.

use std::time::Duration;

use teamvirt_conf::DomainDef;
use teamvirt_qmp::{MigrationStatus, Qmp};

use super::progress::Progress;
use super::proto::PrepareRequest;
use super::{precheck, MigrateError};
use crate::run::{self, RunRecord};
use crate::teaming;
use teamvirt_host::process::ProcId;
use teamvirt_host::state::{read_optional, StateDir};

/// What the prechecks found on the source: all the later phases need.
/// Nothing has changed anywhere yet.
pub(super) struct Source {
    /// The source QEMU's monitor.
    pub(super) qmp: Qmp,
    /// The source QEMU (stopped once the destination took over).
    pub(super) proc: ProcId,
    /// What the destination is asked to prepare.
    pub(super) req: PrepareRequest,
    /// The guest ran (the destination resumes it only then).
    pub(super) was_running: bool,
    /// Primaries on the guest's bus: verified back after a rollback.
    pub(super) plugged_before: Vec<String>,
    /// Warnings shown so far (they end up in the [`super::Outcome`]).
    pub(super) warnings: Vec<String>,
}

/// Begin: check that the domain runs and can move (hostdevs, QEMU's
/// blockers, no migration in progress, the record matches the QEMU the
/// kernel shows) and take what the destination needs. Warns about a
/// paused guest and primaries that will not unplug. Changes nothing.
pub(super) async fn begin(
    sd: &StateDir,
    name: &str,
    opts: &super::MigrateOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Source, MigrateError> {
    let rec = running_record(sd, name)?;
    let paths = sd.run_paths(name)?;
    let live_xml = read_optional(&paths.live_xml)?.unwrap_or_default();
    check_hostdevs(sd, &paths, &live_xml)?;
    let qmp = run::connect(&rec, Duration::from_secs(5)).await?;
    check_no_migration(&qmp, name).await?;
    let run_state = qmp.query_status().await.map_err(MigrateError::src)?;
    let was_running = run_state == "running";
    let mut warnings = Vec::new();
    let mut warn = |progress: &mut (dyn FnMut(Progress) + Send), m: String| {
        progress(Progress::Warning { message: m.clone() });
        warnings.push(m);
    };
    if !was_running {
        warn(progress, format!("domain '{name}' is {run_state}: a paused guest cannot unplug its primaries, so the migration will wait --unplug-timeout and roll back unless it has none plugged"));
    }
    let before = teaming::query(&qmp, &rec.pairs)
        .await
        .map_err(MigrateError::src)?;
    for s in &before {
        if !s.negotiated {
            warn(progress, format!(
                "pair {} / {}: the guest never negotiated failover, so QEMU keeps {} hidden and the migration is plain for it (no unplug; hidden on the destination too)",
                s.pair.standby, s.pair.primary, s.pair.primary
            ));
        } else if !s.plugged {
            warn(
                progress,
                format!(
                    "pair {} / {}: negotiated but {} is not on the guest's bus right now",
                    s.pair.standby, s.pair.primary, s.pair.primary
                ),
            );
        }
    }
    let plugged_before: Vec<String> = before
        .iter()
        .filter(|s| s.negotiated && s.plugged)
        .map(|s| s.pair.primary.clone())
        .collect();
    let persistent_xml = if opts.persistent {
        Some(read_optional(&sd.domain_xml(name)?)?.unwrap_or_else(|| live_xml.clone()))
    } else {
        None
    };
    let req = prepare_request(sd, name, &rec, &paths.dir, live_xml, persistent_xml)?;
    Ok(Source {
        qmp,
        proc: rec.proc,
        req,
        was_running,
        plugged_before,
        warnings,
    })
}

/// Phase 0: the domain's run record, when its QEMU runs and is not a
/// migration's destination.
fn running_record(sd: &StateDir, name: &str) -> Result<RunRecord, MigrateError> {
    let rec = match RunRecord::load(sd, name)? {
        Some(r) if r.is_alive() => r,
        Some(_) => return Err(MigrateError::NotRunning(name.to_owned())),
        None if sd.domain_xml(name)?.exists() => {
            return Err(MigrateError::NotRunning(name.to_owned()))
        }
        None => return Err(MigrateError::NoDomain(name.to_owned())),
    };
    if rec.incoming {
        return Err(MigrateError::Incoming(name.to_owned()));
    }
    Ok(rec)
}

/// Phase 0: no hostdev of the live definition that cannot migrate.
fn check_hostdevs(
    sd: &StateDir,
    paths: &teamvirt_host::state::RunPaths,
    live_xml: &str,
) -> Result<(), MigrateError> {
    if !live_xml.trim().is_empty() {
        let (def, _) = DomainDef::parse_str(live_xml, Some(&paths.live_xml)).map_err(|e| {
            MigrateError::Xml {
                what: format!("live XML {}", paths.live_xml.display()),
                source: e,
            }
        })?;
        let blockers = precheck::hostdev_blockers(&def, Some(&paths.live_xml), &|n| {
            network_is_hostdev_pool(sd, n)
        });
        if !blockers.is_empty() {
            return Err(MigrateError::Unsupported(blockers));
        }
    }
    Ok(())
}

/// Phase 0: QEMU knows no blocker, and no migration is in progress.
async fn check_no_migration(qmp: &Qmp, name: &str) -> Result<(), MigrateError> {
    let q = qmp.query_migrate().await.map_err(MigrateError::src)?;
    if let Some(reasons) = precheck::blocked_reasons(&q) {
        return Err(MigrateError::Blocked(reasons));
    }
    let status = q.status;
    if !matches!(
        status,
        MigrationStatus::None
            | MigrationStatus::Completed
            | MigrationStatus::Failed
            | MigrationStatus::Cancelled
    ) {
        return Err(MigrateError::InProgress {
            name: name.to_owned(),
            status: status.to_string(),
        });
    }
    Ok(())
}

/// Phase 0: what the destination is asked to prepare. The record is a
/// file: the destination runs the definition's emulator, with the
/// recorded command line only as far as it agrees with the one the kernel
/// shows for the source QEMU (see argvcheck).
fn prepare_request(
    sd: &StateDir,
    name: &str,
    rec: &RunRecord,
    run_dir: &std::path::Path,
    live_xml: String,
    persistent_xml: Option<String>,
) -> Result<PrepareRequest, MigrateError> {
    crate::identity::verify(sd, name, &rec.proc).map_err(run::RunError::from)?;
    let emulator = crate::identity::definition_emulator(sd, name);
    let kernel_argv = teamvirt_host::procmatch::cmdline_of(rec.proc.pid).unwrap_or_default();
    let recorded = rec.argv.get(1..).unwrap_or_default();
    if let Err(what) = super::argvcheck::check(recorded, kernel_argv.get(1..).unwrap_or_default()) {
        return Err(run::RunError::Damaged {
            name: name.to_owned(),
            reason: format!(
                "its run record names `{what}`, which QEMU (pid {}) was not started with",
                rec.proc.pid
            ),
        }
        .into());
    }
    let mut argv = vec![emulator.display().to_string()];
    argv.extend(recorded.iter().cloned());
    Ok(PrepareRequest {
        name: name.to_owned(),
        uuid: rec.uuid.clone(),
        emulator: emulator.display().to_string(),
        argv,
        accel: rec.accel,
        source_run_dir: run_dir.to_owned(),
        source_serial_log: rec.serial_log.clone(),
        source_root: sd.root().to_owned(),
        pairs: rec.pairs.clone(),
        live_xml,
        persistent_xml,
    })
}

/// Whether network `net` of the state directory is defined, readable and a
/// VF pool ([`crate::network::is_hostdev_network`]); false otherwise.
fn network_is_hostdev_pool(sd: &StateDir, net: &str) -> bool {
    let Ok(path) = sd.network_xml(net) else {
        return false;
    };
    let Ok(Some(text)) = read_optional(&path) else {
        return false;
    };
    teamvirt_conf::NetworkDef::parse_str(&text, None)
        .is_ok_and(|(d, _)| crate::network::is_hostdev_network(&d))
}
