//! Repair after the process driving a migration died without cleaning up
//! (SIGKILL, OOM, a crash): its `job.json` stays behind with a dead
//! driver. QEMU does not need that process to go on: the copy may still
//! complete (source `postmigrate`, destination paused and waiting for a
//! `cont` that never comes), or the source may sit in `wait-unplug` for
//! ever. Either way the VM runs nowhere, or in one place with a VF
//! reserved in both pools.
//!
//! [`recover`] settles it the way libvirt's migration recovery does
//! (`qemuMigrationSrcRecoverOut`/`DstRecover`): when the destination has
//! received everything (its incoming migration `completed`, and the
//! source `completed` or gone), the destination wins: it is resumed and
//! takes the domain over, the source QEMU is stopped and its VFs return.
//! Otherwise the source wins: the migration is cancelled (QEMU plugs the
//! primaries back), the source resumed if it was running, and the
//! destination torn down with its VF returned. Either state directory can
//! start it: each job file names the other one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use teamvirt_qmp::{MigrationStatus, Qmp};

use super::job::{self, JobInfo};
use super::MigrateError;
use crate::run::{self, RunRecord};
use crate::stop::StopPolicy;
use teamvirt_host::lock::FileLock;
use teamvirt_host::state::{read_optional, remove_optional, write_atomic, StateDir};

/// One side of the abandoned migration.
struct Side {
    sd: StateDir,
    _lock: FileLock,
    rec: Option<RunRecord>,
    qmp: Option<Qmp>,
}

impl Side {
    /// The guest's MAC back on its parked VFs and the primaries' halves
    /// of the pairs the guest's (`netdev::pair::apply_parked_recorded`).
    async fn unpark(&self, name: &str, log: &mut Vec<String>) {
        let Ok(paths) = self.sd.run_paths(name) else {
            return;
        };
        let dir = paths.dir;
        let problems = tokio::task::spawn_blocking(move || {
            teamvirt_host::netdev::pair::apply_parked_recorded(&dir)
        })
        .await
        .unwrap_or_else(|e| vec![e.to_string()]);
        log.extend(problems);
    }

    async fn open(sd: StateDir, name: &str) -> Result<Option<Side>, MigrateError> {
        // Somebody holds the domain (a live command, or another recovery).
        let Some(lock) = sd.try_lock_domain(name)? else {
            return Ok(None);
        };
        let rec = RunRecord::load(&sd, name)?.filter(|r| r.is_alive());
        let qmp = match &rec {
            Some(r) => run::connect(r, Duration::from_secs(5)).await.ok(),
            None => None,
        };
        Ok(Some(Side {
            sd,
            _lock: lock,
            rec,
            qmp,
        }))
    }

    async fn status(&self) -> Option<MigrationStatus> {
        Some(self.qmp.as_ref()?.query_migrate().await.ok()?.status)
    }

    /// Stop this side's QEMU (if any) and free what it held.
    async fn teardown(&self, name: &str, what: &str, log: &mut Vec<String>) {
        if let Some(rec) = &self.rec {
            let gone = stop_qemu(&self.sd, self.qmp.as_ref(), rec).await;
            log.push(format!(
                "{what} QEMU (pid {}) {}",
                rec.proc.pid,
                if gone {
                    "stopped"
                } else {
                    "could not be stopped"
                }
            ));
        }
        match run::cleanup_dead(
            &self.sd,
            name,
            Some("migration settled after its teamvirt process died"),
        ) {
            Ok(freed) => log.extend(freed.into_iter().map(|v| {
                format!(
                    "{what} VF {} returned to network '{}'",
                    v.address, v.network
                )
            })),
            Err(e) => log.push(format!("{what} cleanup failed: {e}")),
        }
        let _ = job::clear(&self.sd, name);
    }
}

/// Ask QEMU to quit, then make sure it is gone. True when it is.
/// A recorded pid is signalled only once `/proc` confirms it is the
/// domain's QEMU (see [`crate::identity`]).
pub(crate) async fn stop_qemu(sd: &StateDir, qmp: Option<&Qmp>, rec: &RunRecord) -> bool {
    crate::stop::stop_qemu(sd, &rec.name, rec.proc, qmp, StopPolicy::RECOVER)
        .await
        .is_ok()
}

/// The job file of `name` when the process that wrote it is dead.
fn stale_job(sd: &StateDir, name: &str) -> Result<Option<JobInfo>, MigrateError> {
    let Some(text) = read_optional(&job::job_path(sd, name)?)? else {
        return Ok(None);
    };
    let Ok(j) = serde_json::from_str::<JobInfo>(&text) else {
        // Unreadable: nothing to act on, and nobody can use it either.
        job::clear(sd, name)?;
        return Ok(None);
    };
    Ok((!j.driver_alive()).then_some(j))
}

/// Settle a migration of `name` whose driving process died (see the
/// module docs). `None` when there is nothing to do (no job file, its
/// process alive, or the domain held by another command); otherwise one
/// line per thing done.
pub async fn recover(sd: &StateDir, name: &str) -> Result<Option<Vec<String>>, MigrateError> {
    let Some(j) = stale_job(sd, name)? else {
        return Ok(None);
    };
    let outgoing = j.operation != "migration in";
    let mut log = vec![format!(
        "the process (pid {}) that drove the {} of domain '{name}' died in phase '{}'",
        j.driver.map_or(0, |p| p.pid),
        j.operation,
        j.phase
    )];
    let (src_sd, dst_sd) = side_dirs(sd, &j, outgoing)?;
    // The source's job carries the flags (the destination's may not).
    let j = match (&src_sd, outgoing) {
        (Some(s), false) => read_optional(&job::job_path(s, name)?)?
            .and_then(|t| serde_json::from_str::<JobInfo>(&t).ok())
            .unwrap_or(j),
        _ => j,
    };
    // Source first, then destination: the order every recovery takes.
    let src = match src_sd {
        Some(s) => match Side::open(s, name).await? {
            Some(s) => Some(s),
            None => return Ok(None),
        },
        None => None,
    };
    let dst = match dst_sd {
        Some(d) => match Side::open(d, name).await? {
            Some(d) => Some(d),
            None => return Ok(None),
        },
        None => None,
    };
    // Re-read under the locks: another recovery may have finished first.
    if stale_job(sd, name)?.is_none() {
        return Ok(None);
    }
    let src_status = match &src {
        Some(s) => s.status().await,
        None => None,
    };
    // A destination already resumed (the driver died after its finish)
    // has taken over; an incoming one has once its copy completed.
    let (dst_done, dst_resumed) = match &dst {
        Some(d) => match &d.rec {
            Some(r) if !r.incoming => (true, true),
            Some(_) => (d.status().await == Some(MigrationStatus::Completed), false),
            None => (false, false),
        },
        None => (false, false),
    };
    let src_done = matches!(src_status, None | Some(MigrationStatus::Completed));

    // A destination on another host decides alone when its control channel
    // ends (see `serve`): a copy that completed is its, anything else it
    // tears down. The source follows the same rule from its own QEMU.
    if outgoing && super::remote::SshUri::is_remote(&j.destination) {
        if let (Some(s), Some(MigrationStatus::Completed)) = (&src, &src_status) {
            remote_takes_over(name, &j, s, &mut log).await?;
            return Ok(Some(log));
        }
    }

    if let (true, true, Some(d)) = (src_done, dst_done, &dst) {
        destination_takes_over(name, &j, d, src.as_ref(), dst_resumed, &mut log).await?;
        return Ok(Some(log));
    }

    source_keeps(name, &j, src.as_ref(), dst.as_ref(), src_status, &mut log).await;
    Ok(Some(log))
}

/// Recovery: the source's and the destination's state directories, from
/// the side `sd` is and the other its job file names. Only a state
/// directory of this host can be repaired from here.
fn side_dirs(
    sd: &StateDir,
    j: &JobInfo,
    outgoing: bool,
) -> Result<(Option<StateDir>, Option<StateDir>), MigrateError> {
    let other = PathBuf::from(&j.destination);
    let other_sd = if other.is_absolute() && other.join("run").is_dir() {
        Some(StateDir::open(&other)?)
    } else {
        None
    };
    Ok(match (outgoing, other_sd) {
        (true, d) => (Some(sd.clone()), d),
        (false, s) => (s, Some(sd.clone())),
    })
}

/// Recovery, the copy to a remote destination completed: it is the
/// destination's; the source goes.
async fn remote_takes_over(
    name: &str,
    j: &JobInfo,
    s: &Side,
    log: &mut Vec<String>,
) -> Result<(), MigrateError> {
    log.push(format!(
        "the copy to {} completed: the remote destination takes the domain over",
        j.destination
    ));
    s.teardown(name, "source", log).await;
    if j.undefine_source {
        remove_optional(&s.sd.domain_xml(name)?)?;
        log.push("domain undefined on the source (--undefinesource)".into());
    }
    log.push(format!("domain '{name}' runs on {}", j.destination));
    Ok(())
}

/// Recovery, the destination received everything: it is resumed and
/// takes the domain over, the source goes.
async fn destination_takes_over(
    name: &str,
    j: &JobInfo,
    d: &Side,
    src: Option<&Side>,
    dst_resumed: bool,
    log: &mut Vec<String>,
) -> Result<(), MigrateError> {
    log.push("the destination received everything: it takes the domain over".into());
    let q = d.qmp.as_ref().expect("status came from it");
    // What the killed migration would have done right before the
    // guest resumes: the VFs' MACs, the pairs' ports.
    d.unpark(name, log).await;
    // Resume unless the source was known to be paused.
    if !dst_resumed && j.source_was_running != Some(false) {
        match q.cont().await {
            Ok(()) => log.push("destination resumed".into()),
            Err(e) => log.push(format!("destination could not be resumed: {e}")),
        }
    }
    if let Some(mut rec) = d.rec.clone() {
        rec.incoming = false;
        rec.save(&d.sd)?;
    }
    let _ = job::clear(&d.sd, name);
    if let Some(s) = src {
        let def = read_optional(&s.sd.domain_xml(name)?)?;
        if let (true, Some(xml)) = (j.persistent, def) {
            write_atomic(&d.sd.domain_xml(name)?, xml.as_bytes(), 0o600)?;
            log.push("domain defined on the destination (--persistent)".into());
        }
        s.teardown(name, "source", log).await;
        if j.undefine_source {
            remove_optional(&s.sd.domain_xml(name)?)?;
            log.push("domain undefined on the source (--undefinesource)".into());
        }
    }
    log.push(format!(
        "domain '{name}' runs on the destination {}",
        d.sd.root().display()
    ));
    Ok(())
}

/// Recovery, the destination did not receive everything: the migration
/// is cancelled and the source resumed, the destination torn down.
async fn source_keeps(
    name: &str,
    j: &JobInfo,
    src: Option<&Side>,
    dst: Option<&Side>,
    src_status: Option<MigrationStatus>,
    log: &mut Vec<String>,
) {
    log.push("the destination did not receive everything: the source keeps the domain".into());
    let Some(s) = src.filter(|s| s.rec.is_some()) else {
        if let Some(d) = dst {
            d.teardown(name, "destination", log).await;
        }
        if let Some(s) = src {
            s.teardown(name, "source", log).await;
        }
        log.push(format!(
            "the source QEMU is gone too: domain '{name}' is shut off"
        ));
        return;
    };
    let q = s.qmp.as_ref();
    if let (Some(q), Some(st)) = (q, &src_status) {
        cancel_and_resume_source(s, q, st, j, log).await;
    }
    // Cancelled first (QEMU plugs the primaries back), then torn down.
    if let Some(d) = dst {
        d.teardown(name, "destination", log).await;
    }
    if let (Some(q), Some(rec)) = (q, &s.rec) {
        primaries_back_on_source(name, s, q, rec, log).await;
    }
    let _ = job::clear(&s.sd, name);
    log.push(format!(
        "domain '{name}' runs on the source {}",
        s.sd.root().display()
    ));
}

/// Recovery on the source: cancel a migration still running (QEMU plugs
/// the primaries back) and resume the guest if it was running.
async fn cancel_and_resume_source(
    s: &Side,
    q: &Qmp,
    st: &MigrationStatus,
    j: &JobInfo,
    log: &mut Vec<String>,
) {
    if !st.is_final() {
        let _ = q.migrate_cancel().await;
        log.push(format!("migration cancelled on the source (it was {st})"));
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            let now = s.status().await;
            if now.as_ref().is_none_or(MigrationStatus::is_final) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let state = q.query_status().await.unwrap_or_default();
    if state != "running" && j.source_was_running != Some(false) {
        match q.cont().await {
            Ok(()) => log.push(format!("source resumed (it was {state})")),
            Err(e) => log.push(format!("source could not be resumed: {e}")),
        }
    }
    if *st == MigrationStatus::Completed {
        log.push("the source had completed the copy: QEMU does not plug its primaries back, so the domain runs on its virtio standbys until restarted".into());
    }
}

/// Recovery on the source, after the cancel: wait for QEMU to plug the
/// primaries back, give the guest their MACs and ports, and say which are.
async fn primaries_back_on_source(
    name: &str,
    s: &Side,
    q: &Qmp,
    rec: &RunRecord,
    log: &mut Vec<String>,
) {
    // QEMU plugs them back shortly after the cancel settles.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pairs = crate::teaming::query(q, &rec.pairs).await.ok();
    while pairs
        .as_ref()
        .is_some_and(|ps| ps.iter().any(|p| p.negotiated && !p.plugged))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        pairs = crate::teaming::query(q, &rec.pairs).await.ok();
    }
    // The guest has its primaries again: their MACs and ports too.
    s.unpark(name, log).await;
    if let Some(pairs) = pairs {
        for p in pairs.iter().filter(|p| p.negotiated) {
            log.push(format!(
                "primary {} is {}plugged on the source",
                p.pair.primary,
                if p.plugged { "" } else { "NOT " }
            ));
        }
    }
}

/// [`recover`] for every domain of `sd` with a job file left by a dead
/// process, from either side (the entry point of the lifecycle verbs, see
/// [`crate::Runtime::open`]). One line per thing done, or per migration
/// that could not be settled. Costs a `stat` per running domain when
/// nothing is stale.
pub async fn recover_stale(sd: &StateDir) -> Vec<String> {
    let mut out = Vec::new();
    let mut stale = Vec::new();
    match sd.run_entries() {
        Ok(names) => {
            for name in names {
                match job::job_path(sd, &name) {
                    Ok(p) if !p.exists() => {}
                    Ok(_) => match stale_job(sd, &name) {
                        Ok(Some(_)) => stale.push(name),
                        Ok(None) => {}
                        Err(e) => out.push(unsettled(&name, &e)),
                    },
                    Err(e) => out.push(unsettled(&name, &e.into())),
                }
            }
        }
        Err(e) => out.push(format!("stale migration jobs cannot be looked for: {e}")),
    }
    if stale.is_empty() {
        return out;
    }
    for name in stale {
        match recover(sd, &name).await {
            Ok(Some(log)) => {
                out.extend(log.into_iter().map(|l| format!("stale migration job: {l}")))
            }
            Ok(None) => {}
            Err(e) => out.push(unsettled(&name, &e)),
        }
    }
    out
}

fn unsettled(name: &str, e: &MigrateError) -> String {
    format!("stale migration job of domain '{name}' could not be settled: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use teamvirt_host::process::ProcId;

    #[tokio::test]
    async fn live_or_missing_jobs_are_left_alone_and_dead_ones_without_qemu_cleared() {
        let t = tempfile::tempdir().unwrap();
        let src = StateDir::open(&t.path().join("src")).unwrap();
        let dst = StateDir::open(&t.path().join("dst")).unwrap();
        assert!(recover(&src, "vm").await.unwrap().is_none());
        src.create_run_dir("vm").unwrap();
        dst.create_run_dir("vm").unwrap();
        let mut j = JobInfo::new(&dst.root().display().to_string());
        job::publish(&src, "vm", &j).unwrap();
        // Its driver (this test) is alive: not stale.
        assert!(recover(&src, "vm").await.unwrap().is_none());
        let me = j.driver.unwrap();
        j.driver = Some(ProcId {
            pid: me.pid,
            start_time: me.start_time + 3,
        });
        job::publish(&src, "vm", &j).unwrap();
        let mut inc = JobInfo::new(&src.root().display().to_string());
        inc.operation = "migration in".into();
        inc.driver = j.driver;
        job::publish(&dst, "vm", &inc).unwrap();
        // No QEMU on either side: both job files go, the domain is off.
        let log = recover(&dst, "vm").await.unwrap().unwrap();
        assert!(log.iter().any(|l| l.contains("shut off")), "{log:?}");
        assert!(!job::job_path(&src, "vm").unwrap().exists());
        assert!(!job::job_path(&dst, "vm").unwrap().exists());
        assert!(recover(&src, "vm").await.unwrap().is_none());
    }

    /// The verbs' sweep settles a dead job from the destination's side and
    /// leaves a live one alone.
    #[tokio::test]
    async fn sweep_settles_dead_jobs_only() {
        let t = tempfile::tempdir().unwrap();
        let src = StateDir::open(&t.path().join("src")).unwrap();
        let dst = StateDir::open(&t.path().join("dst")).unwrap();
        assert!(recover_stale(&dst).await.is_empty());
        for n in ["dead", "live"] {
            src.create_run_dir(n).unwrap();
            dst.create_run_dir(n).unwrap();
            let mut j = JobInfo::new(&dst.root().display().to_string());
            let mut inc = JobInfo::new(&src.root().display().to_string());
            inc.operation = "migration in".into();
            if n == "dead" {
                let me = j.driver.unwrap();
                j.driver = Some(ProcId {
                    pid: me.pid,
                    start_time: me.start_time + 3,
                });
                inc.driver = j.driver;
            }
            job::publish(&src, n, &j).unwrap();
            job::publish(&dst, n, &inc).unwrap();
        }
        let log = recover_stale(&dst).await;
        assert!(
            log.iter()
                .any(|l| l.starts_with("stale migration job: ") && l.contains("'dead'")),
            "{log:?}"
        );
        assert!(!log.iter().any(|l| l.contains("'live'")), "{log:?}");
        for sd in [&src, &dst] {
            assert!(!job::job_path(sd, "dead").unwrap().exists());
            assert!(job::job_path(sd, "live").unwrap().exists());
        }
        assert!(recover_stale(&src).await.is_empty());
    }
}
