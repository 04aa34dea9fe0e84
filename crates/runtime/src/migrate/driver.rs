//! The source side of a live migration.
//!
//! Sequence (see `e2e-failover-recipe.md` §3): prechecks, the destination
//! prepares (VFs reserved, QEMU `-incoming defer` listening), migration
//! events on, `migrate`; QEMU then goes `setup -> wait-unplug -> active ->
//! completed`, asking the guest to unplug each primary (`UNPLUG_PRIMARY`)
//! on the way; the destination plugs its own VF back (`FAILOVER_NEGOTIATED`
//! there) and resumes; the source QEMU exits and its VFs return to the pool.
//!
//! In the code, with libvirt's phase names (`qemu_migration.c`: the
//! source's Begin, Perform and Confirm around the destination's Prepare
//! and Finish): [`migrate`] settles a dead job (`recover`) and takes the
//! domain's lock; Begin, `begin::begin`, checks the source and takes what
//! the destination needs; `run_phases` then runs `prepare_destination`
//! (1, the destination's Prepare), Perform in two steps, `perform_start`
//! (2) and `perform_copy` (3), and Confirm: `confirm_completed` (4a, which
//! also has the destination Finish) or `confirm_rollback` (4b), undoing
//! what each failure leaves behind.
//!
//! Rollback: QEMU waits in `wait-unplug` forever, so teamvirt cancels at
//! `--unplug-timeout`, on a failed migration, a destination that died,
//! `domjobabort` or Ctrl-C. On cancel QEMU waits (up to 30 s) for a pending
//! unplug to finish and then plugs the primary back into the guest. A
//! *paused* guest cannot finish the unplug: QEMU sits in `cancelling` for
//! 30 s, "plugs it back", and the guest then ejects it for good at its next
//! resume (`DEVICE_DELETED`; verified under QEMU 7.2). So when the guest is
//! paused with an unplug pending, teamvirt resumes it for the rollback, lets
//! the eject finish and QEMU plug the primary back, and pauses it again.
//! Every primary that was plugged is then verified on the source's bus. A
//! primary the guest deleted cannot come back into the same QEMU (7.2
//! refuses `device_add` with its id, and any other id as a second primary):
//! that is reported, never hidden.

use std::time::{Duration, Instant};

use serde::Serialize;
use teamvirt_qmp::{
    Event, EventStream, MigrateParameters, MigrationCapability, MigrationStatus, Qmp, QmpError,
};
use tokio::sync::watch;

use super::begin::{begin, Source};
use super::dest::{DestEvent, Destination, Prepared};
use super::job::{self, JobInfo, JobPhase};
pub use super::progress::{Progress, Side};
use super::proto::PrepareRequest;
use super::MigrateError;
use crate::run::{self, VfBinding};
use crate::teaming::{self, PairState};
use teamvirt_host::process::ProcId;
use teamvirt_host::state::{remove_optional, StateDir};

/// How to migrate.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Cancel when the guest has not unplugged its primaries this long
    /// after the migration started.
    pub unplug_timeout: Duration,
    /// virsh `--timeout`: when the copy has not converged this long after
    /// the start, pause the source so it can (only once the primaries are
    /// unplugged: a paused guest cannot unplug).
    pub timeout: Option<Duration>,
    /// Bandwidth cap in MiB/s (virsh `--bandwidth`).
    pub bandwidth_mib: Option<u64>,
    /// Define the domain on the destination (virsh `--persistent`).
    pub persistent: bool,
    /// Remove the definition from the source (virsh `--undefinesource`).
    pub undefine_source: bool,
    /// `query-migrate` polling for the figures.
    pub poll: Duration,
    /// `--tls`: the source's certificate directory (QEMU `tls-creds-x509`).
    pub tls_dir: Option<std::path::PathBuf>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            unplug_timeout: Duration::from_secs(30),
            timeout: None,
            bandwidth_mib: None,
            persistent: false,
            undefine_source: false,
            poll: Duration::from_millis(100),
            tls_dir: None,
        }
    }
}

/// A migration that completed.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub job: JobInfo,
    pub destination_pairs: Vec<PairState>,
    pub destination_vfs: Vec<VfBinding>,
    pub released_source_vfs: Vec<VfBinding>,
    pub destination_running: bool,
    pub defined_on_destination: bool,
    pub undefined_on_source: bool,
    pub warnings: Vec<String>,
    /// The guest doctor on the destination (see [`crate::guestdoc`]).
    pub guest: Vec<crate::guestdoc::CheckLine>,
}

/// Why the migration is being abandoned.
#[derive(Debug)]
enum Stop {
    Deadline(Vec<String>),
    Aborted(String),
    QemuFailed(String),
    DestGone,
    ChannelLost(String),
    SourceGone,
}

impl Stop {
    /// The error text the migration fails with.
    fn reason(&self, unplug_timeout: Duration) -> String {
        match self {
            Stop::Deadline(p) => format!(
                "operation failed: migration out job: the guest did not unplug {} within {} s (--unplug-timeout)",
                if p.is_empty() { "its primaries".to_owned() } else { format!("primary {}", p.join(", ")) },
                unplug_timeout.as_secs()
            ),
            Stop::Aborted(r) => format!("operation aborted: migration out job: {r}"),
            Stop::QemuFailed(d) => format!("operation failed: migration out job: {d}"),
            Stop::DestGone => "operation failed: migration out job: the destination QEMU exited".to_owned(),
            Stop::ChannelLost(why) => format!("operation failed: migration out job: {why}"),
            Stop::SourceGone => "operation failed: migration out job: the source QEMU exited during the migration; the domain is shut off".to_owned(),
        }
    }
}

/// How the copy ([`perform_copy`]) ended.
#[derive(Debug)]
enum Copied {
    /// QEMU reported `completed`: the destination takes over.
    Completed,
    /// Abandoned: roll back.
    Stopped {
        stop: Stop,
        /// QEMU's migration status when it was abandoned.
        status: MigrationStatus,
        /// teamvirt paused the source for `--timeout`.
        paused_by_us: bool,
        /// The source's VFs were parked (the guest had let go of them).
        parked: bool,
    },
}

struct Ctx<'a> {
    sd: &'a StateDir,
    name: &'a str,
    job: JobInfo,
    t0: Instant,
    last_publish: Instant,
    progress: &'a mut (dyn FnMut(Progress) + Send),
    /// The copy must run with the source paused (see [`super::tcg_copy`]).
    pause_copy: bool,
    /// When the `migrate` command was sent: the deadlines count from it.
    migrating_since: Instant,
}

impl<'a> Ctx<'a> {
    fn new(
        sd: &'a StateDir,
        name: &'a str,
        job: JobInfo,
        progress: &'a mut (dyn FnMut(Progress) + Send),
    ) -> Ctx<'a> {
        Ctx {
            sd,
            name,
            job,
            t0: Instant::now(),
            last_publish: Instant::now(),
            progress,
            pause_copy: false,
            migrating_since: Instant::now(),
        }
    }
}

impl Ctx<'_> {
    fn ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }
    fn emit(&mut self, p: Progress) {
        (self.progress)(p)
    }
    fn phase(&mut self, phase: JobPhase) {
        if self.job.phase == phase {
            return;
        }
        self.job.phase = phase.clone();
        let phase = phase.as_str();
        crate::domlog::event(self.sd, self.name, &format!("migration out: {phase}"));
        let elapsed_ms = self.ms();
        self.emit(Progress::Phase {
            phase: phase.to_owned(),
            elapsed_ms,
        });
        self.publish(true);
    }
    fn rollback(&mut self, step: String, log: &mut Vec<String>) {
        let elapsed_ms = self.ms();
        crate::domlog::event(
            self.sd,
            self.name,
            &format!("migration out rollback: {step}"),
        );
        log.push(step.clone());
        self.emit(Progress::Rollback { step, elapsed_ms });
    }
    fn publish(&mut self, force: bool) {
        if force || self.last_publish.elapsed() >= Duration::from_millis(200) {
            self.job.tick();
            // Publishing is best effort: a full disk must not break the job.
            let _ = job::publish(self.sd, self.name, &self.job);
            self.last_publish = Instant::now();
        }
    }
}

/// Migrate the running domain `name` of `sd` to `dest`. `abort` carries a
/// reason once the user wants the job cancelled (domjobabort, Ctrl-C).
pub async fn migrate<D: Destination>(
    sd: &StateDir,
    name: &str,
    dest: &mut D,
    opts: &MigrateOptions,
    abort: watch::Receiver<Option<String>>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Outcome, MigrateError> {
    // A migration whose driver died is settled first (see `recover`).
    if let Some(log) = super::recover(sd, name).await? {
        for message in log {
            progress(Progress::Warning { message });
        }
    }
    let _lock = sd
        .try_lock_domain(name)?
        .ok_or_else(|| MigrateError::Locked(name.to_owned()))?;
    _lock.note_holder("teamvirt migrate");
    let src = begin(sd, name, opts, progress).await?;
    run_phases(sd, name, src, dest, opts, abort, progress).await
}

/// The phases after the prechecks, with what each failure undoes: prepare
/// the destination, start the outgoing migration, wait for the unplug and
/// the copy, then hand over ([`confirm_completed`]) or take back ([`confirm_rollback`]).
/// The job file is removed whenever it ends, except on success, where
/// [`confirm_completed`] removes it itself.
async fn run_phases<D: Destination>(
    sd: &StateDir,
    name: &str,
    src: Source,
    dest: &mut D,
    opts: &MigrateOptions,
    mut abort: watch::Receiver<Option<String>>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Outcome, MigrateError> {
    let job = JobInfo {
        source_was_running: Some(src.was_running),
        persistent: opts.persistent,
        undefine_source: opts.undefine_source,
        ..JobInfo::new(&dest.describe())
    };
    let mut cx = Ctx::new(sd, name, job, progress);

    // 1. Prepare. A failed prepare leaves nothing behind on the destination
    //    (see `Destination::prepare`) and the source was not touched: there
    //    is nothing to roll back.
    let mut prepared = match prepare_destination(&mut cx, dest, &src.req).await {
        Ok(p) => p,
        Err(e) => {
            let _ = job::clear(sd, name);
            return Err(e);
        }
    };

    // 2. Start. The source is not migrating when this fails: only the
    //    destination is torn down.
    let mut src_events = src.qmp.subscribe();
    cx.pause_copy = super::tcg_copy::copy_must_pause(src.req.accel, src.qmp.qemu_version());
    if cx.pause_copy {
        cx.emit(Progress::Info {
            message: super::tcg_copy::notice(src.qmp.qemu_version()),
        });
    }
    wire_source_pairs(&mut cx, teamvirt_host::netdev::pair::Active::Handover).await;
    if let Err(e) = perform_start(&src.qmp, opts, &prepared.uri, cx.pause_copy, src.proc.pid).await
    {
        wire_source_pairs(&mut cx, teamvirt_host::netdev::pair::Active::Primary).await;
        let _ = dest.abort().await;
        let _ = job::clear(sd, name);
        return Err(MigrateError::src(e));
    }
    cx.phase(JobPhase::Qemu(MigrationStatus::Setup));
    // Deadlines count from the `migrate` command, not from the prepare.
    cx.migrating_since = Instant::now();

    // 3. The guest unplugs its primaries, QEMU copies.
    let copied = perform_copy(
        &mut cx,
        dest,
        &src.qmp,
        &mut src_events,
        &mut prepared,
        opts,
        &mut abort,
    )
    .await;

    match copied {
        // 4a. Completed: the destination takes over, the source QEMU goes.
        Copied::Completed => {
            let out = confirm_completed(
                &mut cx,
                dest,
                &src.qmp,
                src.proc,
                &mut prepared,
                src.was_running,
                opts,
                src.warnings,
            )
            .await;
            if out.is_err() {
                let _ = job::clear(sd, name);
            }
            out
        }
        // 4b. Abandoned: cancel, tear the destination down, check the
        //     primaries are back on the source.
        Copied::Stopped {
            stop,
            status,
            paused_by_us,
            parked,
        } => {
            let reason = stop.reason(opts.unplug_timeout);
            cx.job.abort_reason = Some(reason.clone());
            let (rollback, primaries_back) = confirm_rollback(
                &mut cx,
                dest,
                &src.qmp,
                &stop,
                status,
                paused_by_us,
                parked,
                &src.plugged_before,
            )
            .await;
            let _ = job::clear(sd, name);
            Err(MigrateError::Failed {
                reason,
                rollback,
                primaries_back,
            })
        }
    }
}

/// Phase 1: the destination reserves its VFs and starts its QEMU listening
/// (`prepare` shown and published first). Says what it reserved.
async fn prepare_destination<D: Destination>(
    cx: &mut Ctx<'_>,
    dest: &mut D,
    req: &PrepareRequest,
) -> Result<Prepared, MigrateError> {
    cx.emit(Progress::Phase {
        phase: "prepare".into(),
        elapsed_ms: 0,
    });
    cx.publish(true);
    let prepared = dest.prepare(req).await?;
    // Whatever the destination is, the source QEMU is only ever told to
    // send over a stream: `exec:` would run a command here (and QEMU's
    // sandbox would kill the source VM for it), `file:` write one.
    let scheme = prepared.uri.split(':').next().unwrap_or("");
    if !matches!(scheme, "tcp" | "unix" | "fd") || prepared.uri.chars().any(char::is_control) {
        let _ = dest.abort().await;
        return Err(MigrateError::remote(super::proto::ErrorCode::Protocol, format!(
            "operation failed: the destination {} gave the migration URI '{}': only tcp:, unix: and fd: URIs are handed to QEMU",
            dest.describe(),
            teamvirt_host::escape::escape_controls(&prepared.uri.chars().take(200).collect::<String>())
        )));
    }
    for v in &prepared.vfs {
        cx.emit(Progress::Info {
            message: format!(
                "destination: VF {} of network '{}' reserved for {}",
                v.address, v.network, v.device
            ),
        });
    }
    for s in &prepared.substitutions {
        cx.emit(Progress::Info {
            message: format!("destination: {s}"),
        });
    }
    cx.emit(Progress::Info {
        message: format!(
            "destination QEMU{} listening on {}",
            prepared
                .pid
                .map(|p| format!(" (pid {})", p.pid))
                .unwrap_or_default(),
            prepared.uri
        ),
    });
    Ok(prepared)
}

/// Phase 2: migration events on, bandwidth and TLS set, `migrate` to `uri`.
/// `pause_copy`: a trickle bandwidth until the source is paused (see
/// [`super::tcg_copy`]).
async fn perform_start(
    qmp: &Qmp,
    opts: &MigrateOptions,
    uri: &str,
    pause_copy: bool,
    src_pid: i32,
) -> Result<(), QmpError> {
    qmp.migrate_set_capabilities(&[MigrationCapability::on("events")])
        .await?;
    // Always set: QEMU keeps the cap of an earlier migration of this
    // process (a cancelled `--bandwidth 1` would throttle the next
    // one for ever). Unset means unlimited, as libvirt does
    // (QEMU_DOMAIN_MIG_BANDWIDTH_MAX), not QEMU's 32 MiB/s default.
    let max = if pause_copy {
        super::tcg_copy::TRICKLE_BYTES_PER_S
    } else {
        super::tcg_copy::max_bandwidth(opts.bandwidth_mib)
    };
    qmp.migrate_set_parameters(&MigrateParameters {
        max_bandwidth: Some(max),
        ..Default::default()
    })
    .await?;
    // A QEMU keeps the TLS settings of its last migration: always set.
    match &opts.tls_dir {
        Some(dir) => {
            let id = teamvirt_host::privdrop::process_identity(src_pid)
                .map_err(|e| QmpError::Protocol(format!("source QEMU's identity: {e}")))?;
            super::remote::source_tls(qmp, dir, uri, &id).await?
        }
        None => {
            qmp.migrate_set_parameters(&MigrateParameters {
                tls_creds: Some(String::new()),
                ..Default::default()
            })
            .await?;
        }
    }
    qmp.migrate(uri).await?;
    Ok(())
}

/// Phase 3: follow the migration until QEMU completes it or it must be
/// abandoned. Shows both QEMUs' events and the figures (polled every
/// `opts.poll`), moves the phase forward only, and stops on QEMU's
/// failure, a destination or source that went away, an abort request, or
/// the guest not unplugging within `--unplug-timeout` of
/// `cx.migrating_since`. Past `--timeout` the copying source is paused so the
/// copy converges; with `cx.pause_copy` it is paused as soon as the copy
/// begins (see [`super::tcg_copy`]).
async fn perform_copy<D: Destination>(
    cx: &mut Ctx<'_>,
    dest: &mut D,
    qmp: &Qmp,
    src_events: &mut EventStream,
    prepared: &mut Prepared,
    opts: &MigrateOptions,
    abort: &mut watch::Receiver<Option<String>>,
) -> Copied {
    let migrating_since = cx.migrating_since;
    let mut w = CopyWatch::new(cx.pause_copy);
    let mut tick = tokio::time::interval(opts.poll);
    let stop: Option<Stop> = loop {
        let mut new_status: Option<MigrationStatus> = None;
        // What QEMU said comes first, in order: an event read before a
        // poll's reply is handled before the next poll (an unbiased pick
        // sometimes polled its way to "completed" with UNPLUG_PRIMARY
        // still queued, and the job never recorded the unplug).
        tokio::select! {
            biased;
            ev = src_events.recv() => match ev {
                None => break Some(Stop::SourceGone),
                Some(ev) => new_status = w.source_event(cx, dest, &ev).await,
            },
            ev = prepared.events.recv() => {
                if let Some(stop) = w.destination_event(cx, ev) {
                    break Some(stop);
                }
            },
            _ = tick.tick() => match w.poll(cx, qmp).await {
                Ok(s) => new_status = s,
                Err(stop) => break Some(stop),
            },
            r = abort.changed() => {
                let reason = match r {
                    Ok(()) => abort.borrow().clone(),
                    Err(_) => None,
                };
                if let Some(reason) = reason {
                    break Some(Stop::Aborted(reason));
                }
            }
        }
        // Events and polled statuses interleave: a late reply must not
        // move the phase backwards.
        if let Some(ns) = new_status.filter(|s| rank(s) > rank(&w.status)) {
            if let Some(stop) = w.advance(cx, qmp, opts, ns).await {
                break Some(stop);
            }
        }
        if let std::ops::ControlFlow::Break(stop) =
            w.check(cx, qmp, prepared, opts, migrating_since).await
        {
            break stop;
        }
    };
    match stop {
        None => Copied::Completed,
        Some(stop) => Copied::Stopped {
            stop,
            status: w.status,
            paused_by_us: w.paused_by_us,
            parked: w.vfs_parked,
        },
    }
}

/// What [`perform_copy`] knows of the migration as it follows it.
struct CopyWatch {
    /// The furthest status QEMU reported (the phase only moves forward).
    status: MigrationStatus,
    /// The source's VFs have their original MACs back (see [`park_source_vfs`]).
    vfs_parked: bool,
    unplug_since: Option<Instant>,
    /// The source's vCPUs were stopped by this migration, not the user.
    paused_by_us: bool,
    /// A copy paused at its start (`cx.pause_copy`) runs again.
    copy_released: bool,
    /// The destination was told the switchover happened.
    switched: bool,
    error_desc: Option<String>,
}

impl CopyWatch {
    fn new(pause_copy: bool) -> CopyWatch {
        CopyWatch {
            status: MigrationStatus::Setup,
            vfs_parked: false,
            unplug_since: None,
            paused_by_us: false,
            copy_released: !pause_copy,
            switched: false,
            error_desc: None,
        }
    }

    /// An event of the source QEMU: a MIGRATION event's status, or shown.
    async fn source_event<D: Destination>(
        &mut self,
        cx: &mut Ctx<'_>,
        dest: &mut D,
        ev: &Event,
    ) -> Option<MigrationStatus> {
        if ev.name == "MIGRATION" {
            return ev.data_str("status").map(MigrationStatus::parse);
        }
        if ev.name == "UNPLUG_PRIMARY" {
            if let Some(d) = ev.data_str("device-id") {
                cx.job.unplugged.push(d.to_owned());
            }
        }
        // The source's vCPUs stopped for good once the
        // copy runs (QEMU's last pass, or a pause of ours
        // that a rollback would undo, re-pinning the
        // source's standby).
        if ev.name == "STOP"
            && !self.switched
            && rank(&self.status) >= rank(&MigrationStatus::Active)
        {
            self.switched = true;
            for p in dest.switchover().await {
                cx.emit(Progress::Info {
                    message: format!("destination: {p}"),
                });
            }
        }
        show(cx, Side::Source, ev);
        None
    }

    /// What the destination reported: shown, or why to stop (it is gone
    /// before the copy completed).
    fn destination_event(&mut self, cx: &mut Ctx<'_>, ev: Option<DestEvent>) -> Option<Stop> {
        match ev {
            None | Some(DestEvent::Exited) => {
                if self.status != MigrationStatus::Completed {
                    return Some(Stop::DestGone);
                }
            }
            Some(DestEvent::Lost(why)) => {
                if self.status != MigrationStatus::Completed {
                    return Some(Stop::ChannelLost(why));
                }
            }
            Some(DestEvent::Qmp(ev)) => {
                if ev.name == "FAILOVER_NEGOTIATED" {
                    if let Some(d) = ev.data_str("device-id") {
                        cx.job.negotiated_on_destination.push(d.to_owned());
                    }
                }
                show(cx, Side::Destination, &ev);
            }
        }
        None
    }

    /// The periodic `query-migrate`: the figures shown and published, and
    /// the status it reports.
    async fn poll(&mut self, cx: &mut Ctx<'_>, qmp: &Qmp) -> Result<Option<MigrationStatus>, Stop> {
        match qmp.query_migrate_timeout(Duration::from_secs(5)).await {
            Ok(q) => {
                cx.job.update_from_query(&q);
                if let Some(d) = q.error_desc {
                    self.error_desc = Some(d);
                }
                let (phase, elapsed_ms) = (cx.job.phase.to_string(), cx.ms());
                let j = &cx.job;
                let stats = Progress::Stats {
                    phase,
                    elapsed_ms,
                    data_processed: j.data_processed,
                    data_remaining: j.data_remaining,
                    data_total: j.data_total,
                    mbps: j.mbps,
                };
                cx.emit(stats);
                cx.publish(false);
                Ok(Some(q.status))
            }
            Err(teamvirt_qmp::QmpError::Disconnected) => Err(Stop::SourceGone),
            Err(_) => Ok(None),
        }
    }

    /// The migration moved on to `ns`: time the unplug, release a paused
    /// copy, publish the phase and park the source's VFs once the guest
    /// has let go of them.
    async fn advance(
        &mut self,
        cx: &mut Ctx<'_>,
        qmp: &Qmp,
        opts: &MigrateOptions,
        ns: MigrationStatus,
    ) -> Option<Stop> {
        if ns == MigrationStatus::WaitUnplug {
            self.unplug_since = Some(Instant::now());
        } else if self.status == MigrationStatus::WaitUnplug {
            if let Some(t) = self.unplug_since {
                cx.job.wait_unplug_ms = Some(t.elapsed().as_millis() as u64);
            }
        }
        self.status = ns;
        // A paused copy is released before anyone hears "active": a
        // migrate process killed at that moment leaves a copy QEMU
        // finishes alone, not one trickling at 10 B/s.
        if !self.copy_released && rank(&self.status) >= rank(&MigrationStatus::Active) {
            self.copy_released = true;
            let running = cx.job.source_was_running == Some(true);
            match super::tcg_copy::pause_now(qmp, opts.bandwidth_mib, running).await {
                Ok(paused) => self.paused_by_us = paused,
                Err(teamvirt_qmp::QmpError::Disconnected) => return Some(Stop::SourceGone),
                Err(_) => {}
            }
            if running && !self.paused_by_us {
                let message = super::tcg_copy::NOT_PAUSED.into();
                cx.emit(Progress::Warning { message });
            }
        }
        cx.phase(JobPhase::Qemu(self.status.clone()));
        // Past wait-unplug the guest has let go of its VFs: the PF gets
        // their original MAC back at once, or the NIC keeps steering the
        // guest's frames to a VF nobody reads instead of the standby.
        if !self.vfs_parked && rank(&self.status) >= rank(&MigrationStatus::Active) {
            self.vfs_parked = true;
            park_source_vfs(cx, true, false).await;
        }
        None
    }

    /// After each step: done (`Break(None)`), abandoned (`Break(Some)`),
    /// or go on; past `--timeout` the copying source is paused.
    async fn check(
        &mut self,
        cx: &mut Ctx<'_>,
        qmp: &Qmp,
        prepared: &mut Prepared,
        opts: &MigrateOptions,
        migrating_since: Instant,
    ) -> std::ops::ControlFlow<Option<Stop>> {
        match self.status {
            MigrationStatus::Completed => return std::ops::ControlFlow::Break(None),
            MigrationStatus::Failed | MigrationStatus::Cancelled => {
                if let Some(cause) = destination_cause(cx, prepared).await {
                    return std::ops::ControlFlow::Break(Some(cause));
                }
                let status = &self.status;
                return std::ops::ControlFlow::Break(Some(Stop::QemuFailed(
                    self.error_desc
                        .clone()
                        .unwrap_or_else(|| format!("QEMU reported the migration {status}")),
                )));
            }
            MigrationStatus::Setup | MigrationStatus::WaitUnplug
                if migrating_since.elapsed() >= opts.unplug_timeout =>
            {
                let pending: Vec<String> = cx.job.unplugged.clone();
                return std::ops::ControlFlow::Break(Some(Stop::Deadline(pending)));
            }
            MigrationStatus::Active => {
                if let Some(t) = opts.timeout {
                    if !self.paused_by_us
                        && migrating_since.elapsed() >= t
                        && qmp.stop().await.is_ok()
                    {
                        self.paused_by_us = true;
                        cx.emit(Progress::Info {
                            message: format!(
                                "--timeout {} s reached: source paused so the migration converges",
                                t.as_secs()
                            ),
                        });
                    }
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// A destination that died (or whose channel broke) makes the source's
/// QEMU fail the migration too, often before the destination's own news
/// arrives: wait briefly for it, so the error names the cause rather than
/// its echo.
async fn destination_cause(cx: &mut Ctx<'_>, prepared: &mut Prepared) -> Option<Stop> {
    let grace = tokio::time::sleep(Duration::from_millis(500));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            _ = &mut grace => return None,
            ev = prepared.events.recv() => match ev {
                None | Some(DestEvent::Exited) => return Some(Stop::DestGone),
                Some(DestEvent::Lost(why)) => return Some(Stop::ChannelLost(why)),
                Some(DestEvent::Qmp(ev)) => show(cx, Side::Destination, &ev),
            },
        }
    }
}

/// Order of QEMU's migration statuses (later ones never go back).
fn rank(s: &MigrationStatus) -> u8 {
    match s {
        MigrationStatus::None => 0,
        MigrationStatus::Setup => 1,
        MigrationStatus::WaitUnplug => 2,
        MigrationStatus::Active | MigrationStatus::PostcopyActive => 3,
        MigrationStatus::PreSwitchover | MigrationStatus::Device => 4,
        MigrationStatus::Cancelling => 5,
        MigrationStatus::Completed | MigrationStatus::Failed | MigrationStatus::Cancelled => 6,
        _ => 3,
    }
}

/// Show destination events that arrived since the loop last looked.
fn drain_dest(cx: &mut Ctx, prepared: &mut Prepared) {
    while let Ok(DestEvent::Qmp(ev)) = prepared.events.try_recv() {
        if ev.name == "FAILOVER_NEGOTIATED" {
            if let Some(d) = ev.data_str("device-id") {
                cx.job.negotiated_on_destination.push(d.to_owned());
            }
        }
        show(cx, Side::Destination, &ev);
    }
}

fn show(cx: &mut Ctx, side: Side, ev: &Event) {
    let elapsed_ms = cx.ms();
    cx.job.message = Some(format!(
        "{} {}{}",
        match side {
            Side::Source => "source",
            Side::Destination => "destination",
        },
        ev.name,
        if ev.data.is_null() {
            String::new()
        } else {
            format!(" {}", ev.data)
        }
    ));
    cx.emit(Progress::Qemu {
        side,
        name: ev.name.clone(),
        data: ev.data.clone(),
        elapsed_ms,
        qemu_time_s: ev.timestamp.0 as f64 + ev.timestamp.1 as f64 / 1e6,
    });
    cx.publish(true);
}

/// Phase 4a, the copy completed: the destination takes over (`finish`),
/// the source QEMU is stopped and its VFs return. A destination that
/// cannot take over gives the domain back to the source, resumed.
#[allow(clippy::too_many_arguments)]
async fn confirm_completed<D: Destination>(
    cx: &mut Ctx<'_>,
    dest: &mut D,
    qmp: &Qmp,
    proc: ProcId,
    prepared: &mut Prepared,
    was_running: bool,
    opts: &MigrateOptions,
    mut warnings: Vec<String>,
) -> Result<Outcome, MigrateError> {
    // QEMU's final figures, and what the destination said until now.
    if let Ok(q) = qmp.query_migrate().await {
        cx.job.update_from_query(&q);
    }
    drain_dest(cx, prepared);
    cx.phase(JobPhase::Finish);
    let fin = match dest.finish(was_running, Duration::from_secs(30)).await {
        Ok(f) => f,
        // A remote destination that lost its channel after the copy
        // completed takes the domain over by itself (see `serve`), so the
        // source must not resume: it hands over as on success.
        Err(MigrateError::Channel(why)) => {
            let m = format!("{why}: the copy had completed, so the destination takes the domain over by itself (its state is not known here)");
            cx.emit(Progress::Warning { message: m.clone() });
            warnings.push(m);
            super::dest::Finished {
                pairs: Vec::new(),
                running: was_running,
                defined: opts.persistent,
                guest: Vec::new(),
            }
        }
        Err(e) => {
            // Like libvirt's Confirm after a failed Finish: the source
            // takes the domain back. QEMU re-plugs primaries only when the
            // migration itself fails, so they stay unplugged here.
            let mut log = Vec::new();
            for l in dest.abort().await.unwrap_or_default() {
                cx.rollback(l, &mut log);
            }
            if was_running && qmp.cont().await.is_ok() {
                cx.rollback("source resumed".into(), &mut log);
            }
            cx.rollback("the primaries stay unplugged on the source: QEMU plugs them back only when the migration itself fails".into(), &mut log);
            return Err(MigrateError::Failed {
                reason: format!(
                    "operation failed: migration out job: the destination could not take over: {e}"
                ),
                rollback: log,
                primaries_back: false,
            });
        }
    };
    drain_dest(cx, prepared);
    for s in &fin.pairs {
        if prepared.pairs.iter().any(|p| p.primary == s.pair.primary) && s.negotiated && !s.plugged
        {
            let m = format!("destination: {} negotiated but not plugged", s.pair.primary);
            cx.emit(Progress::Warning { message: m.clone() });
            warnings.push(m);
        }
    }
    // Confirm: the source QEMU (in `postmigrate`) goes away, its VFs return.
    let _ = crate::stop::stop_qemu(
        cx.sd,
        cx.name,
        proc,
        Some(qmp),
        crate::stop::StopPolicy::MIGRATED_SOURCE,
    )
    .await;
    let _ = job::clear(cx.sd, cx.name);
    let released = run::cleanup_dead(cx.sd, cx.name, Some("migrated"))?;
    let mut undefined = false;
    if opts.undefine_source {
        let p = cx.sd.domain_xml(cx.name)?;
        undefined = p.exists();
        remove_optional(&p)?;
    }
    cx.job.tick();
    cx.job.phase = JobPhase::Done;
    Ok(Outcome {
        job: cx.job.clone(),
        destination_pairs: fin.pairs,
        destination_vfs: prepared.vfs.clone(),
        released_source_vfs: released,
        destination_running: fin.running,
        defined_on_destination: fin.defined,
        undefined_on_source: undefined,
        warnings,
        guest: fin.guest,
    })
}

/// Park (`true`) or unpark the source's real VFs (see
/// [`teamvirt_host::netdev::pair::park_recorded_vfs`]), the pairs' ports with them
/// (`standby_first`: the standbys' halves stay the guest's until it has
/// its primaries again); failures are shown, not fatal: the migration
/// goes on either way.
async fn park_source_vfs(cx: &mut Ctx<'_>, park: bool, standby_first: bool) {
    on_source_run_dir(cx, move |dir| match (park, standby_first) {
        (true, _) => teamvirt_host::netdev::pair::park_recorded_vfs(dir),
        (false, true) => teamvirt_host::netdev::pair::apply_parked_standby_first(dir),
        (false, false) => teamvirt_host::netdev::pair::apply_parked_recorded(dir),
    })
    .await
}

/// Wire the source's failover pairs' bridge ports (see
/// [`teamvirt_host::netdev::pair`]); failures are shown, not fatal.
async fn wire_source_pairs(cx: &mut Ctx<'_>, active: teamvirt_host::netdev::pair::Active) {
    on_source_run_dir(cx, move |dir| {
        teamvirt_host::netdev::pair::wire(dir, active)
    })
    .await
}

/// Run `f` on the source's run directory off the async threads and show
/// the problems it returns (never fatal: the migration goes on).
async fn on_source_run_dir(
    cx: &mut Ctx<'_>,
    f: impl FnOnce(&std::path::Path) -> Vec<String> + Send + 'static,
) {
    let Ok(paths) = cx.sd.checked_run_paths(cx.name) else {
        return;
    };
    let dir = paths.dir;
    let problems = tokio::task::spawn_blocking(move || f(&dir))
        .await
        .unwrap_or_else(|e| vec![e.to_string()]);
    for p in problems {
        cx.emit(Progress::Info {
            message: format!("source: {p}"),
        });
    }
}

/// Phase 4b, the migration is abandoned: cancel it on the source (QEMU
/// plugs the primaries back), tear the destination down, verify every
/// primary that was plugged is plugged again. Returns the steps taken and
/// whether all primaries are back.
#[allow(clippy::too_many_arguments)]
async fn confirm_rollback<D: Destination>(
    cx: &mut Ctx<'_>,
    dest: &mut D,
    qmp: &Qmp,
    stop: &Stop,
    status: MigrationStatus,
    paused_by_us: bool,
    parked: bool,
    plugged_before: &[String],
) -> (Vec<String>, bool) {
    let mut log = Vec::new();
    cx.phase(JobPhase::Rollback);
    if matches!(stop, Stop::SourceGone) {
        rollback_source_gone(cx, dest, &mut log).await;
        return (log, false);
    }
    // The guest's MAC back on the source VFs before QEMU plugs them again.
    park_source_vfs(cx, false, parked).await;
    let repause = cancel_on_source(cx, qmp, &status, paused_by_us, &mut log).await;
    settle_on_source(cx, qmp, status, &mut log).await;
    for l in dest
        .abort()
        .await
        .unwrap_or_else(|e| vec![format!("destination teardown failed: {e}")])
    {
        cx.rollback(l, &mut log);
    }
    let all_back = verify_primaries_back(cx, qmp, plugged_before, &mut log).await;
    primaries_taken_on_source(cx, parked, all_back, &mut log).await;
    if repause {
        // Let the guest process the re-plug before pausing it again.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        if qmp.stop().await.is_ok() {
            cx.rollback("guest paused again, as it was".into(), &mut log);
        }
    }
    let state = qmp
        .query_status()
        .await
        .unwrap_or_else(|_| "unknown".into());
    cx.rollback(
        format!("domain '{}' runs on the source ({state})", cx.name),
        &mut log,
    );
    (log, all_back)
}

/// Rollback, the source QEMU is gone: the destination torn down, the
/// source's VFs returned.
async fn rollback_source_gone<D: Destination>(
    cx: &mut Ctx<'_>,
    dest: &mut D,
    log: &mut Vec<String>,
) {
    for l in dest.abort().await.unwrap_or_default() {
        cx.rollback(l, log);
    }
    match run::cleanup_dead(cx.sd, cx.name, None) {
        Ok(freed) => {
            for v in freed {
                cx.rollback(
                    format!(
                        "source VF {} returned to network '{}'",
                        v.address, v.network
                    ),
                    log,
                );
            }
        }
        Err(e) => cx.rollback(format!("source cleanup failed: {e}"), log),
    }
}

/// Rollback on the source: `migrate_cancel` (unless QEMU already ended
/// the migration), and the guest resumed when this migration paused it or
/// an unplug is pending. True when it must be paused again afterwards.
async fn cancel_on_source(
    cx: &mut Ctx<'_>,
    qmp: &Qmp,
    status: &MigrationStatus,
    paused_by_us: bool,
    log: &mut Vec<String>,
) -> bool {
    if !status.is_final() {
        match qmp.migrate_cancel().await {
            Ok(()) => cx.rollback(
                "migration cancelled on the source (migrate_cancel)".into(),
                log,
            ),
            Err(e) => cx.rollback(format!("migrate_cancel failed: {e}"), log),
        }
    }
    // A paused guest cannot finish a pending unplug (see the module docs).
    let mut repause = false;
    let run_state = qmp.query_status().await.unwrap_or_default();
    let unplug_pending = !cx.job.unplugged.is_empty()
        && matches!(status, MigrationStatus::Setup | MigrationStatus::WaitUnplug);
    if run_state != "running" && (paused_by_us || unplug_pending) && qmp.cont().await.is_ok() {
        if paused_by_us {
            cx.rollback(
                "source resumed (teamvirt had paused it for the copy)".into(),
                log,
            );
        } else {
            repause = true;
            cx.rollback(format!(
                "guest was {run_state} with an unplug pending: resumed it so the unplug finishes and QEMU can plug the primary back (paused, it would delete the primary at its next resume); it is paused again afterwards"
            ), log);
        }
    }
    repause
}

/// Rollback on the source: wait for QEMU to settle (it waits up to 30 s
/// for a pending unplug), and say where it ended.
async fn settle_on_source(
    cx: &mut Ctx<'_>,
    qmp: &Qmp,
    status: MigrationStatus,
    log: &mut Vec<String>,
) {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut final_status = status;
    while !final_status.is_final() && Instant::now() < deadline {
        match qmp.query_migrate().await {
            Ok(q) => {
                final_status = q.status;
                cx.phase(JobPhase::Qemu(final_status.clone()));
            }
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cx.rollback(format!("source migration status: {final_status}"), log);
}

/// Rollback: verify that every primary that was plugged is plugged again.
/// True when all are.
async fn verify_primaries_back(
    cx: &mut Ctx<'_>,
    qmp: &Qmp,
    plugged_before: &[String],
    log: &mut Vec<String>,
) -> bool {
    let mut all_back = true;
    for id in plugged_before {
        let back = wait_plugged(qmp, id, Duration::from_secs(10)).await;
        if back {
            cx.rollback(format!("primary {id} is plugged on the source again"), log);
            continue;
        }
        let exists = qmp
            .peripherals()
            .await
            .map(|p| p.contains(id))
            .unwrap_or(false);
        all_back = false;
        cx.rollback(
            if exists {
                format!("primary {id} is NOT plugged on the source; the domain keeps running on its virtio standby")
            } else {
                // Verified under QEMU 7.2: `device_add` with the same id
                // fails ("Duplicate ID"), another id is refused as a second
                // primary of the standby.
                format!("primary {id} was deleted by the guest (DEVICE_DELETED) and cannot be plugged into this QEMU again; the domain keeps running on its virtio standby until it is restarted")
            },
            log,
        );
    }
    all_back
}

/// Rollback: the primaries' halves of the pairs become the guest's again
/// once it has taken them (netdev::pair); a guest that never let go of
/// them (not parked) has them already: back from the handover at once.
async fn primaries_taken_on_source(
    cx: &mut Ctx<'_>,
    parked: bool,
    all_back: bool,
    log: &mut Vec<String>,
) {
    if !parked {
        wire_source_pairs(cx, teamvirt_host::netdev::pair::Active::Primary).await;
    }
    if let (true, Ok(paths)) = (parked, cx.sd.checked_run_paths(cx.name)) {
        let dir = paths.dir;
        // A primary that did not come back never sends: then the wait is
        // as short as before the longer bound (the guest is on its standby
        // for good until a replug).
        let bound = match all_back {
            true => teamvirt_host::netdev::pair::HEARD_BOUND,
            false => Duration::from_secs(3),
        };
        let problems = tokio::task::spawn_blocking(move || {
            teamvirt_host::netdev::pair::primary_when_heard(&dir, bound, None).problems
        })
        .await
        .unwrap_or_else(|e| vec![e.to_string()]);
        for p in problems {
            cx.rollback(format!("source: {p}"), log);
        }
    }
}

async fn wait_plugged(qmp: &Qmp, id: &str, timeout: Duration) -> bool {
    // A huge bound (API callers; the CLI caps it) must not overflow.
    let deadline = teamvirt_host::process::deadline_after(timeout);
    loop {
        if let Ok(ids) = teaming::pci_device_ids(qmp).await {
            if ids.contains(id) {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
