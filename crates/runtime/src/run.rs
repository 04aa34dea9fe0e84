//! Launching and finding running QEMUs (XML-agnostic).
//!
//! Running domains: launching a prepared QEMU command line detached, the
//! run record that lets later invocations find it (`run/NAME/state.json`),
//! connecting to its QMP socket, stopping it, and noticing a QEMU that died.
//!
//! This layer knows nothing about XML: it takes the argv and the facts the
//! XML layer derived (teaming pairs, VFs). The migration module uses it
//! directly: [`launch`] with `incoming: true` (the argv carries
//! `-incoming defer`), [`RunRecord::load`]/[`RunRecord::save`] to read or
//! move ownership of a running domain, [`connect`] for its QMP.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use teamvirt_qmp::{EventStream, Qmp, QmpError, QmpOptions};

use crate::accel::Accel;
use teamvirt_host::lock::{FileLock, LockMode};
// The record is read below the pools (they rebuild their state from it).
use crate::pool::{PoolError, VfPool};
pub use crate::record::{RunRecord, VfBinding};
use crate::teaming::TeamingPair;
use teamvirt_host::process::{spawn_detached_as, ProcessError};
use teamvirt_host::state::{remove_optional, write_atomic, RunPaths, StateDir, StateError};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Stop(#[from] crate::stop::StopError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Hostdev(#[from] teamvirt_host::hostdev::HostdevError),
    #[error(transparent)]
    Dac(#[from] teamvirt_host::dac::DacError),
    #[error(transparent)]
    DynUid(#[from] teamvirt_host::dynuid::DynUidError),
    #[error("internal error: files lent to the QEMU of domain '{name}' were not fully given back: {}", .problems.join("; "))]
    Restore { name: String, problems: Vec<String> },
    #[error("internal error: VFs of domain '{name}' were not fully given back to the host: {}", .problems.join("; "))]
    HostRelease { name: String, problems: Vec<String> },
    #[error("internal error: QEMU for domain '{name}' exited while starting{}", log_tail(.log))]
    DiedAtStart { name: String, log: String },
    #[error("internal error: QEMU for domain '{name}' did not open its QMP socket {} within {secs} s", .socket.display())]
    NoMonitor {
        name: String,
        socket: PathBuf,
        secs: u64,
    },
    #[error("internal error: cannot talk to the QMP monitor of domain '{name}': {source}")]
    Qmp { name: String, source: QmpError },
    #[error("internal error: QMP monitor of domain '{name}' is busy: another teamvirt command is connected to it (QEMU serves one client at a time); retry when it finishes")]
    MonitorBusy { name: String },
    #[error("internal error: QEMU of domain '{name}' (pid {pid}) is not responding: the process is stopped (SIGSTOP or a debugger); `kill -CONT {pid}` resumes it, `teamvirt destroy {name}` stops it")]
    Stopped { name: String, pid: i32 },
    #[error("internal error: QEMU of domain '{name}' (pid {pid}) is not responding: no QMP greeting within {secs} s and no other client holds its monitor; `teamvirt destroy {name}` stops it")]
    NotResponding { name: String, pid: i32, secs: u64 },
    /// The record cannot be read: the domain's state is unknown, never
    /// taken as "shut off" (its QEMU may run and hold VFs).
    #[error("state of domain '{name}' is damaged: {reason}; `teamvirt destroy --force {name}` stops its QEMU if one runs and cleans up")]
    Damaged { name: String, reason: String },
    #[error("internal error: QMP socket path {} is too long for a unix socket ({len} > 107 bytes); use a shorter --state-dir", .path.display())]
    SocketPathTooLong { path: PathBuf, len: usize },
}

fn log_tail(log: &str) -> String {
    let t = log.trim();
    if t.is_empty() {
        String::new()
    } else {
        // Escaped by the reaper already; again, line by line, since this
        // goes to a terminal whatever wrote the log.
        let lines: Vec<String> = t
            .lines()
            .map(teamvirt_host::escape::escape_controls)
            .collect();
        format!(": {}", lines.join("\n"))
    }
}

impl RunRecord {
    /// The record of `name` in `sd`, if any ([`crate::record::read`]); one
    /// that cannot be read is [`RunError::Damaged`].
    pub fn load(sd: &StateDir, name: &str) -> Result<Option<RunRecord>, RunError> {
        crate::record::read(sd, name).map_err(|e| RunError::Damaged {
            name: name.to_owned(),
            reason: e.reason,
        })
    }

    /// Write the record (and the plain `pid` file) into `sd`'s run dir
    /// for this domain. Saving a record into another state directory is how
    /// ownership of a running QEMU moves (migration).
    pub fn save(&self, sd: &StateDir) -> Result<(), RunError> {
        let p = sd.create_run_dir(&self.name)?;
        write_atomic(&p.pid, format!("{}\n", self.proc.pid).as_bytes(), 0o600)?;
        let json = serde_json::to_string_pretty(self).expect("record serializes");
        write_atomic(&p.state_json, json.as_bytes(), 0o600)?;
        Ok(())
    }
}

/// Where the guest doctor (`agentops`) keeps the guest's boot id in the
/// run directory (a reboot is told from a changed one); it goes with the
/// run.
pub(crate) const DOCTOR_RECORD: &str = "guest-doctor.json";

/// Remove a domain's run directory content (record, pid, live XML, socket,
/// master key) without touching the process, after giving back the files
/// lent to its QEMU ([`teamvirt_host::dac::release`]). Logs are kept for
/// post-mortems.
pub fn forget(sd: &StateDir, name: &str) -> Result<(), RunError> {
    // Never through a run directory that is a link or someone else's.
    let p = sd.checked_run_paths(name)?;
    let problems = teamvirt_host::dac::release(sd, name)?;
    // The guest agent's socket (teamvirt's when the channel has no path
    // of its own) and the guest doctor's record go with the run too.
    let agent = p.dir.join(teamvirt_conf::model::GUEST_AGENT_CHANNEL);
    let doctor = p.dir.join(DOCTOR_RECORD);
    for f in [
        &p.state_json,
        &p.pid,
        &p.live_xml,
        &p.qmp_sock,
        &agent,
        &doctor,
    ] {
        remove_optional(f)?;
    }
    // The VM's uid goes last: what was lent to it is given back.
    teamvirt_host::dynuid::free(sd, name)?;
    if !problems.is_empty() {
        return Err(RunError::Restore {
            name: name.to_owned(),
            problems,
        });
    }
    Ok(())
}

/// Return every VF the domain holds in `sd`'s pools (all networks: the
/// record may be missing if a start crashed half-way), after giving the
/// host back what start did to real VFs (vfio-pci binding, MAC). The
/// single place VFs are released once their QEMU is gone.
pub fn release_vfs(sd: &StateDir, name: &str) -> Result<Vec<VfBinding>, RunError> {
    let problems = release_host(sd, name)?;
    let mut out = Vec::new();
    let log = sd.run_paths(name)?.qemu_log;
    for net in sd.defined_networks()? {
        for a in VfPool::new(sd, &net).release_domain(name)? {
            crate::domlog::append(
                &log,
                &format!(
                    "VF {} of network '{net}' released (device {})",
                    a.address, a.device
                ),
            );
            out.push(VfBinding {
                network: net.clone(),
                device: a.device,
                address: a.address,
                lab: None,
            });
        }
    }
    if !problems.is_empty() {
        return Err(RunError::HostRelease {
            name: name.to_owned(),
            problems,
        });
    }
    Ok(out)
}

/// Undo the host-side VF preparation recorded in the domain's run dir
/// (see [`teamvirt_host::hostdev`]); the steps that failed.
pub fn release_host(sd: &StateDir, name: &str) -> Result<Vec<String>, RunError> {
    // The record says what to write to sysfs: only from a trusted dir.
    let dir = sd.checked_run_paths(name)?.dir;
    let mut problems = teamvirt_host::hostdev::release_recorded(&dir);
    problems.extend(teamvirt_host::netdev::release_recorded(&dir));
    Ok(problems)
}

/// Is the domain running? `Some(record)` when its QEMU is alive. A record
/// whose QEMU died is cleaned up on the spot (VFs back to the pool), unless
/// another process holds the domain lock (it is starting or stopping it).
pub fn running(sd: &StateDir, name: &str) -> Result<Option<RunRecord>, RunError> {
    let Some(rec) = RunRecord::load(sd, name)? else {
        check_no_orphan_qemu(sd, name)?;
        return Ok(None);
    };
    if rec.is_alive() {
        return Ok(Some(rec));
    }
    if let Some(_lock) = sd.try_lock_domain(name)? {
        cleanup_dead(sd, name, None)?;
    }
    Ok(None)
}

/// A domain without a run record whose QEMU runs anyway (the record was
/// deleted): damaged, not shut off. Only looked for while a live XML says
/// it was started and nobody is starting it right now (cheap otherwise).
fn check_no_orphan_qemu(sd: &StateDir, name: &str) -> Result<(), RunError> {
    let p = sd.run_paths(name)?;
    if std::fs::symlink_metadata(&p.live_xml).is_err() {
        return Ok(());
    }
    let Some(_lock) = sd.try_lock_domain(name)? else {
        return Ok(());
    };
    // /proc is read while processes come and go; a QEMU that runs shows on
    // one of a few looks (this path is rare: a live XML with no record).
    let mut found = crate::identity::find_qemus(sd, name);
    for _ in 0..4 {
        if !found.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        found = crate::identity::find_qemus(sd, name);
    }
    match found.first() {
        None => Ok(()),
        Some(q) => Err(RunError::Damaged {
            name: name.to_owned(),
            reason: format!(
                "its run record {} is missing but its QEMU (pid {}) runs",
                p.state_json.display(),
                q.pid
            ),
        }),
    }
}

/// Cleanup after a QEMU that is gone. Caller holds the domain lock.
/// `reason` goes to the domain log (`destroyed`, `migrated`, ...); `None`
/// for a QEMU found dead: the log then says how it ended, from its
/// reaper's line (a guest that powered off exits with status 0).
pub fn cleanup_dead(
    sd: &StateDir,
    name: &str,
    reason: Option<&str>,
) -> Result<Vec<VfBinding>, RunError> {
    let log = sd.run_paths(name)?.qemu_log;
    match (reason, RunRecord::load(sd, name).ok().flatten()) {
        (Some(r), _) => crate::domlog::append(&log, &format!("shutting down, reason={r}")),
        (None, Some(rec)) => {
            let cause = crate::domlog::exit_cause(&log, rec.proc.pid);
            let reason = match cause.as_deref() {
                Some("exited with status 0") => "shutdown",
                _ => "crashed",
            };
            let cause = cause.unwrap_or_else(|| "ended, cause not recorded".into());
            crate::domlog::append(
                &log,
                &format!(
                    "shutting down, reason={reason}: qemu process {} {cause}",
                    rec.proc.pid
                ),
            );
        }
        (None, None) => {}
    }
    // Files lent to QEMU first: a VF's `/dev/vfio/N` disappears when the
    // VF goes back to its host driver, and its owner is given back by
    // the device it still is.
    let lent = teamvirt_host::dac::release(sd, name);
    // A VF the host did not take back is reported, but the domain is
    // still gone (its record must go, or every command would retry).
    let freed = release_vfs(sd, name);
    forget(sd, name)?;
    match lent? {
        problems if problems.is_empty() => freed,
        problems => Err(RunError::Restore {
            name: name.to_owned(),
            problems,
        }),
    }
}

/// A domain id held for a domain being started. Concurrent starts all see
/// the same running domains, so "highest running id + 1" alone hands the
/// same id to several of them; each candidate id is therefore claimed with
/// a lock file (`locks/id-N.lock`) held until the run record carrying the
/// id is written (keep this value alive until then). A crashed start's
/// claim goes with its process.
#[derive(Debug)]
pub struct IdReservation {
    pub id: u32,
    _lock: FileLock,
}

/// The ids of the domains running in `sd`.
fn live_ids(sd: &StateDir) -> Result<Vec<u32>, RunError> {
    let mut ids = Vec::new();
    for name in sd.run_entries()? {
        if let Ok(Some(r)) = RunRecord::load(sd, &name) {
            if r.is_alive() {
                ids.push(r.id);
            }
        }
    }
    Ok(ids)
}

/// Claim the id for a domain being started: above every running domain's,
/// and not claimed by another start in progress (libvirt's ids are unique
/// among running domains).
pub fn reserve_id(sd: &StateDir) -> Result<IdReservation, RunError> {
    let mut id = live_ids(sd)?.into_iter().max().unwrap_or(0);
    loop {
        id = id.saturating_add(1);
        let path = sd.locks_dir().join(format!("id-{id}.lock"));
        let Some(lock) =
            FileLock::try_acquire(&path, LockMode::Exclusive).map_err(StateError::from)?
        else {
            continue;
        };
        // Its previous holder may have written its record (and let go)
        // since the first look.
        if !live_ids(sd)?.contains(&id) {
            return Ok(IdReservation { id, _lock: lock });
        }
    }
}

/// Notice every QEMU that died since the last command: their domains
/// become shut off and their VFs go back to the pools. Also frees VFs held
/// by domains that have no run record (a start that crashed). Skips
/// domains whose lock is held (being started/stopped right now).
pub fn reconcile(sd: &StateDir) -> Result<Vec<String>, RunError> {
    let mut cleaned = Vec::new();
    for name in sd.run_entries()? {
        // A record that cannot be read is left alone: the domain may run
        // (its error shows when it is used; `destroy --force` settles it).
        match RunRecord::load(sd, &name) {
            Ok(Some(r)) if r.is_alive() => continue,
            Err(_) => continue,
            Ok(_) => {}
        }
        if let Some(_lock) = sd.try_lock_domain(&name)? {
            // Re-check under the lock: a start may have just finished.
            match RunRecord::load(sd, &name) {
                Ok(Some(r)) if r.is_alive() => continue,
                Err(_) => continue,
                // No record but a live XML: started once; if its QEMU
                // runs, the record was lost, the domain was not.
                Ok(None)
                    if live_xml_exists(sd, &name)
                        && !crate::identity::find_qemus(sd, &name).is_empty() =>
                {
                    continue
                }
                Ok(_) => {}
            }
            cleanup_dead(sd, &name, None)?;
            cleaned.push(name);
        }
    }
    for net in sd.defined_networks()? {
        let pool = VfPool::new(sd, &net);
        let owners: std::collections::BTreeSet<String> = pool
            .state()?
            .allocations
            .into_iter()
            .map(|a| a.domain)
            .collect();
        for owner in owners {
            let has_record = |o: &str| {
                sd.run_paths(o)
                    .map(|p| std::fs::symlink_metadata(p.state_json).is_ok())
                    .unwrap_or(false)
            };
            if has_record(&owner) {
                continue;
            }
            if let Some(_lock) = sd.try_lock_domain(&owner)? {
                // No record: a crashed start, unless its QEMU runs (the
                // record was deleted): then the VF stays taken.
                if !has_record(&owner) && crate::identity::find_qemus(sd, &owner).is_empty() {
                    pool.release_domain(&owner)?;
                }
            }
        }
    }
    Ok(cleaned)
}

fn live_xml_exists(sd: &StateDir, name: &str) -> bool {
    sd.run_paths(name)
        .map(|p| std::fs::symlink_metadata(p.live_xml).is_ok())
        .unwrap_or(false)
}

/// What [`launch`] needs besides the argv.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub name: String,
    pub id: u32,
    pub uuid: Option<String>,
    pub emulator: PathBuf,
    /// Environment (replaces ours); `None` inherits.
    pub env: Option<Vec<(String, String)>>,
    /// Arguments after the emulator; must contain `-S` and a QMP monitor on
    /// [`RunPaths::qmp_sock`] (see [`monitor_args`]).
    pub args: Vec<String>,
    pub accel: Accel,
    pub serial_log: Option<PathBuf>,
    pub pairs: Vec<TeamingPair>,
    pub vfs: Vec<VfBinding>,
    pub substitutions: Vec<String>,
    /// The live XML to store as `live.xml`.
    pub live_xml: String,
    /// Do not resume the vCPUs: a migration destination (the argv has
    /// `-incoming`), or a `start --paused`.
    pub incoming: bool,
    /// How long QEMU may take to open its monitor.
    pub monitor_timeout: Duration,
    /// Open descriptors QEMU inherits (taps, vhost-net), by number.
    pub pass_fds: Vec<i32>,
}

/// The QMP monitor options for a socket path (libvirt's chardev + mon pair).
pub fn monitor_args(sock: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!(
            "socket,id=charmonitor,path={},server=on,wait=off",
            sock.display().to_string().replace(',', ",,")
        ),
        "-mon".into(),
        "chardev=charmonitor,id=monitor,mode=control".into(),
    ]
}

/// A launched (or found) domain with an open QMP connection.
#[derive(Debug)]
pub struct Launched {
    pub record: RunRecord,
    pub qmp: Qmp,
    /// Events subscribed before the vCPUs started (nothing is missed).
    pub events: EventStream,
}

/// Start QEMU detached, record it, connect to QMP and (unless incoming)
/// resume the vCPUs. The caller holds the domain lock and has already
/// allocated the VFs. On failure the process is killed and the run record
/// removed; VFs are left to the caller.
pub async fn launch(sd: &StateDir, spec: LaunchSpec) -> Result<Launched, RunError> {
    let paths = sd.create_run_dir(&spec.name)?;
    check_socket_path(&paths)?;
    // A stale socket from a dead QEMU would make connect fail confusingly.
    remove_optional(&paths.qmp_sock)?;
    write_atomic(&paths.live_xml, spec.live_xml.as_bytes(), 0o600)?;
    let log_start = open_logs(sd, &paths, &spec)?;
    let (proc, id, dynamic) = spawn_qemu(sd, &spec, &paths, log_start)?;
    let record = launched_record(&spec, &paths, proc, &id, dynamic);
    // Killing waits for QEMU to go: off the async worker.
    let name = spec.name.as_str();
    let fail = |e: RunError| async move {
        let policy = crate::stop::StopPolicy::OWN_CHILD;
        let _ = crate::stop::stop_qemu(sd, name, proc, None, policy).await;
        let _ = forget(sd, name);
        e
    };
    if let Err(e) = record.save(sd) {
        return Err(fail(e).await);
    }

    let qmp = match wait_monitor(&record, spec.monitor_timeout, log_start).await {
        Ok(q) => q,
        Err(e) => return Err(fail(e).await),
    };
    // The directory is private already; the socket itself should be too
    // (only if it is the socket: chmod follows links).
    if std::fs::symlink_metadata(&paths.qmp_sock).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::set_permissions(&paths.qmp_sock, std::fs::Permissions::from_mode(0o600));
    }
    let events = qmp.subscribe();
    if !spec.incoming {
        if let Err(source) = qmp.cont().await {
            let e = died_or(
                &record,
                log_start,
                RunError::Qmp {
                    name: spec.name.clone(),
                    source,
                },
            )
            .await;
            return Err(fail(e).await);
        }
    }
    Ok(Launched {
        record,
        qmp,
        events,
    })
}

/// Launch, step 1: the log files QEMU opens made safe, the start and the
/// command line logged. Returns where this start's log begins.
fn open_logs(sd: &StateDir, paths: &RunPaths, spec: &LaunchSpec) -> Result<u64, RunError> {
    // QEMU opens its log files by name, as root: each must be a regular
    // file of ours, never a link planted there (`serial.log -> /etc/x`).
    // Created private up front (QEMU truncates or appends, keeping the mode).
    for log in [Some(&paths.qemu_log), spec.serial_log.as_ref()]
        .into_iter()
        .flatten()
    {
        // A file the definition names elsewhere is the user's business.
        if !log.starts_with(&paths.dir) && !log.starts_with(sd.log_dir()) {
            continue;
        }
        teamvirt_host::safefs::open_file(log, teamvirt_host::safefs::Access::Append(0o600))
            .map_err(|e| StateError::from((log.as_path(), e)))?;
        teamvirt_host::safefs::check_file_for_qemu(log)
            .map_err(|source| StateError::Io {
                path: log.clone(),
                source,
            })?
            .map_err(StateError::from)?;
    }
    crate::domlog::append(
        &paths.qemu_log,
        &format!(
            "starting up teamvirt {}{}",
            env!("CARGO_PKG_VERSION"),
            match (spec.incoming, spec.args.iter().any(|a| a == "-incoming")) {
                (true, true) => " (incoming migration)",
                // `start --paused`: launched without `cont` (see `reason`).
                (true, false) => " (paused)",
                _ => "",
            }
        ),
    );
    let cmdline = shell_line(spec.env.as_deref(), &spec.emulator, &spec.args);
    tracing::debug!(domain = %spec.name, argv = %cmdline, "launching QEMU");
    // Escaped: a `<cmdline>` with a newline must not forge log lines.
    crate::domlog::append_untimed(&paths.qemu_log, &cmdline);
    // Mark where this start's log begins, so errors show only its output.
    Ok(std::fs::metadata(&paths.qemu_log)
        .map(|m| m.len())
        .unwrap_or(0))
}

/// Launch, step 2: QEMU spawned detached under its identity, with the
/// run directory's files lent to it. Returns its process, its identity
/// and whether that is a per-VM uid.
fn spawn_qemu(
    sd: &StateDir,
    spec: &LaunchSpec,
    paths: &RunPaths,
    log_start: u64,
) -> Result<
    (
        teamvirt_host::process::ProcId,
        teamvirt_host::privdrop::Identity,
        bool,
    ),
    RunError,
> {
    // QEMU runs as the VM's own uid (see crate::dynuid) or the configured
    // QEMU user, reaching the run dir's files only through the
    // descriptors it inherits (see teamvirt_host::dac).
    let (alloc, id) = if teamvirt_host::privdrop::dynamic_per_vm() {
        let a = teamvirt_host::dynuid::allocate(sd, &spec.name)?;
        let id = a.id.clone();
        (Some(a), id)
    } else {
        let id =
            teamvirt_host::privdrop::qemu_identity().map_err(teamvirt_host::dac::DacError::from)?;
        (None, id)
    };
    let lent = crate::lend_argv::lend(sd, &spec.name, &spec.emulator, &spec.args, &id)
        .inspect_err(|_| {
            let _ = teamvirt_host::dynuid::free(sd, &spec.name);
        })?;
    let proc = spawn_detached_as(
        &spec.emulator,
        &lent.args,
        spec.env.as_deref(),
        &paths.qemu_log,
        Some(lent.setup),
        &spec.pass_fds,
    )
    .map_err(|e| {
        let _ = teamvirt_host::dac::release(sd, &spec.name);
        let _ = teamvirt_host::dynuid::free(sd, &spec.name);
        match e {
            ProcessError::ExitedAtStart { .. } => RunError::DiedAtStart {
                name: spec.name.clone(),
                log: read_log_from(&paths.qemu_log, log_start),
            },
            e => e.into(),
        }
    })?;
    // QEMU has its copies now, and runs as its id (others see it in /proc).
    drop(lent.fds);
    let dynamic = alloc.is_some();
    drop(alloc);
    Ok((proc, id, dynamic))
}

/// Launch, step 3: the run record of the QEMU just spawned.
fn launched_record(
    spec: &LaunchSpec,
    paths: &RunPaths,
    proc: teamvirt_host::process::ProcId,
    id: &teamvirt_host::privdrop::Identity,
    dynamic: bool,
) -> RunRecord {
    let mut argv = vec![spec.emulator.display().to_string()];
    argv.extend(spec.args.iter().cloned());
    RunRecord {
        name: spec.name.clone(),
        id: spec.id,
        uuid: spec.uuid.clone(),
        proc,
        emulator: spec.emulator.display().to_string(),
        argv,
        accel: spec.accel,
        qmp_socket: paths.qmp_sock.clone(),
        serial_log: spec.serial_log.clone(),
        qemu_log: paths.qemu_log.clone(),
        pairs: spec.pairs.clone(),
        vfs: spec.vfs.clone(),
        substitutions: spec.substitutions.clone(),
        incoming: spec.incoming,
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        qemu_id: id.switch.then_some(teamvirt_host::dynuid::QemuIds {
            uid: id.uid,
            gid: id.gid,
            dynamic,
        }),
    }
}

/// The environment and command line as a shell would take them (libvirt
/// logs QEMU's this way, so it can be pasted to reproduce a start).
fn shell_line(env: Option<&[(String, String)]>, emulator: &Path, args: &[String]) -> String {
    fn quote(s: &str) -> String {
        let plain = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b",._+:@%/=-".contains(&b));
        if plain {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    }
    let mut parts: Vec<String> = env
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect();
    parts.push(quote(&emulator.display().to_string()));
    parts.extend(args.iter().map(|a| quote(a)));
    parts.join(" ")
}

fn check_socket_path(paths: &RunPaths) -> Result<(), RunError> {
    let len = paths.qmp_sock.as_os_str().len();
    if len > 107 {
        return Err(RunError::SocketPathTooLong {
            path: paths.qmp_sock.clone(),
            len,
        });
    }
    Ok(())
}

/// The log of a QEMU that is gone, from `start`: QEMU's last words pass
/// through its reaper, so they are complete once the reaper's line saying
/// how QEMU ended is there (waited for, 2 s at most).
fn read_log_from(path: &Path, start: u64) -> String {
    let mut tries = 100;
    loop {
        let data = std::fs::read(path).unwrap_or_default();
        let from = usize::try_from(start).unwrap_or(0).min(data.len());
        let text = String::from_utf8_lossy(&data[from..]).into_owned();
        tries -= 1;
        if tries == 0 || text.contains(": teamvirt: qemu process ") {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn died_or(rec: &RunRecord, log_start: u64, other: RunError) -> RunError {
    // Give a dying QEMU a moment to finish writing its error.
    let proc = rec.proc;
    let gone = tokio::task::spawn_blocking(move || proc.wait_gone(Duration::from_millis(300)))
        .await
        .unwrap_or(false);
    if gone {
        RunError::DiedAtStart {
            name: rec.name.clone(),
            log: read_log_from(&rec.qemu_log, log_start),
        }
    } else {
        other
    }
}

async fn wait_monitor(rec: &RunRecord, timeout: Duration, log_start: u64) -> Result<Qmp, RunError> {
    let deadline = Instant::now() + timeout;
    loop {
        if !rec.is_alive() {
            return Err(died_or(
                rec,
                log_start,
                RunError::DiedAtStart {
                    name: rec.name.clone(),
                    log: String::new(),
                },
            )
            .await);
        }
        if rec.qmp_socket.exists() {
            // teamvirt binds the socket before QEMU runs (it is lent as a
            // descriptor, see teamvirt_host::dac): the connection is queued at once
            // and the greeting comes only when QEMU has exec'd and built its
            // machine. That is what the whole `timeout` is for; QMP's own
            // 10 s greeting limit made a start on a loaded host fail after
            // 10 s with 20 s of its 30 left.
            let opts = QmpOptions {
                label: rec.name.clone(),
                handshake_timeout: deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1)),
                ..Default::default()
            };
            match Qmp::connect_with(&rec.qmp_socket, opts).await {
                Ok(q) => return Ok(q),
                Err(QmpError::Io(_)) if Instant::now() < deadline => {}
                Err(source) => {
                    return Err(died_or(
                        rec,
                        log_start,
                        RunError::Qmp {
                            name: rec.name.clone(),
                            source,
                        },
                    )
                    .await)
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(RunError::NoMonitor {
                name: rec.name.clone(),
                socket: rec.qmp_socket.clone(),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Connect to a running domain's QMP monitor. QEMU serves one client at a
/// time: if another `teamvirt` is connected, the greeting never comes and
/// this reports the monitor as busy after `timeout`.
pub async fn connect(rec: &RunRecord, timeout: Duration) -> Result<Qmp, RunError> {
    // A stopped QEMU never answers: say so at once instead of blaming
    // another client after the timeout.
    let stopped = || RunError::Stopped {
        name: rec.name.clone(),
        pid: rec.proc.pid,
    };
    if rec.proc.is_stopped() {
        return Err(stopped());
    }
    let opts = QmpOptions {
        handshake_timeout: timeout,
        label: rec.name.clone(),
        ..Default::default()
    };
    match Qmp::connect_with(&rec.qmp_socket, opts).await {
        Ok(q) => Ok(q),
        Err(QmpError::Timeout { .. }) if rec.proc.is_stopped() => Err(stopped()),
        // Busy only if another client really holds the monitor.
        Err(QmpError::Timeout { .. })
            if monitor_client_connected(&rec.qmp_socket) == Some(false) =>
        {
            Err(RunError::NotResponding {
                name: rec.name.clone(),
                pid: rec.proc.pid,
                secs: timeout.as_secs(),
            })
        }
        Err(QmpError::Timeout { .. }) => Err(RunError::MonitorBusy {
            name: rec.name.clone(),
        }),
        Err(source) => Err(RunError::Qmp {
            name: rec.name.clone(),
            source,
        }),
    }
}

/// Has QEMU accepted a client on its monitor socket (another teamvirt
/// holding it)? From `/proc/net/unix`: the listener and an accepted
/// connection both carry the path; only the accepted one is connected
/// (state 03) with an inode. `None` when the listener is not visible (other
/// network namespace): unknown.
fn monitor_client_connected(sock: &Path) -> Option<bool> {
    let entries = teamvirt_host::procmatch::unix_sockets_at(Path::new("/proc/net/unix"), sock)?;
    let listener = entries.iter().any(|(state, _)| state == "01");
    let accepted = entries
        .iter()
        .any(|(state, inode)| state == "03" && inode != "0");
    listener.then_some(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::VfPool;
    use teamvirt_host::process::ProcId;

    fn record(sd: &StateDir, name: &str, proc: ProcId) -> RunRecord {
        let p = sd.run_paths(name).unwrap();
        RunRecord {
            name: name.into(),
            id: 1,
            uuid: None,
            proc,
            emulator: "/bin/true".into(),
            argv: vec![],
            accel: Accel::Tcg,
            qmp_socket: p.qmp_sock,
            serial_log: None,
            qemu_log: p.qemu_log,
            pairs: vec![],
            vfs: vec![],
            substitutions: vec![],
            incoming: false,
            started_unix: 0,
            qemu_id: None,
        }
    }

    #[test]
    fn dead_domain_is_reconciled_and_vfs_return() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        write_atomic(&sd.network_xml("pool").unwrap(), b"<network/>", 0o600).unwrap();
        let pool = VfPool::new(&sd, "pool");
        let m = vec!["0000:01:00.1".to_string(), "0000:01:00.2".to_string()];
        pool.allocate(&m, "dead", "hostdev0").unwrap();
        pool.allocate(&m, "alive", "hostdev0").unwrap();
        let me = ProcId::of(std::process::id() as i32).unwrap();
        let gone = ProcId {
            pid: me.pid,
            start_time: me.start_time + 7,
        };
        record(&sd, "dead", gone).save(&sd).unwrap();
        record(&sd, "alive", me).save(&sd).unwrap();
        // What its run left: the agent's socket, the doctor's record.
        let dead_dir = sd.run_paths("dead").unwrap().dir;
        for f in ["org.qemu.guest_agent.0", "guest-doctor.json"] {
            std::fs::write(dead_dir.join(f), b"x").unwrap();
        }
        // A VF held by a domain that never got a record (crashed start).
        pool.reserve("0000:09:00.0", "orphan", "hostdev0").unwrap();

        let cleaned = reconcile(&sd).unwrap();
        assert_eq!(cleaned, vec!["dead"]);
        let st = pool.state().unwrap();
        assert_eq!(st.allocations.len(), 1);
        assert_eq!(st.allocations[0].domain, "alive");
        assert!(RunRecord::load(&sd, "dead").unwrap().is_none());
        for f in ["org.qemu.guest_agent.0", "guest-doctor.json"] {
            assert!(!dead_dir.join(f).exists(), "{f} left behind");
        }
        assert!(running(&sd, "alive").unwrap().is_some());
    }

    /// Issue 17, item 11: a pool state file lost or damaged while a domain
    /// holds a VF taken in lab mode is rebuilt in lab mode, with its lab
    /// bridge, so the next start does not try real VFs.
    #[test]
    fn rebuilt_pool_state_keeps_lab_settings() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let pool = VfPool::new(&sd, "pool");
        pool.set_emulate_vf(true).unwrap();
        pool.set_lab_bridge(Some("br0".into())).unwrap();
        let lab = pool.state().unwrap().lab();
        assert!(lab.is_some());
        pool.reserve("0000:01:00.1", "alive", "hostdev0").unwrap();
        let mut rec = record(&sd, "alive", ProcId::of(std::process::id() as i32).unwrap());
        rec.vfs.push(VfBinding {
            network: "pool".into(),
            device: "hostdev0".into(),
            address: "0000:01:00.1".into(),
            lab,
        });
        rec.save(&sd).unwrap();
        let file = sd.network_state("pool").unwrap();
        for damage in [None, Some("{ garbage")] {
            match damage {
                None => std::fs::remove_file(&file).unwrap(),
                Some(d) => std::fs::write(&file, d).unwrap(),
            }
            let st = pool.state().unwrap();
            assert!(st.emulate_vf, "{damage:?}");
            assert_eq!(st.lab_bridge.as_deref(), Some("br0"), "{damage:?}");
            assert!(pool.repair().unwrap().unwrap().contains("rebuilt"));
            // Written back: still lab mode once the domain is gone.
            let kept: crate::pool::NetworkState =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            assert!(kept.emulate_vf && kept.lab_bridge.as_deref() == Some("br0"));
        }
        // A sane file is the admin's: a record does not turn lab mode back on.
        pool.set_emulate_vf(false).unwrap();
        assert!(!pool.state().unwrap().emulate_vf);
    }

    #[test]
    fn locked_domain_is_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let me = ProcId::of(std::process::id() as i32).unwrap();
        let gone = ProcId {
            pid: me.pid,
            start_time: me.start_time + 7,
        };
        record(&sd, "busy", gone).save(&sd).unwrap();
        let _held = sd.lock_domain("busy").unwrap();
        assert!(reconcile(&sd).unwrap().is_empty());
        assert!(RunRecord::load(&sd, "busy").unwrap().is_some());
    }

    /// Starts in progress hold distinct ids; a running domain's id is never
    /// handed out again; a claim dropped without a record frees its id.
    #[test]
    fn reserved_ids_are_distinct() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let me = ProcId::of(std::process::id() as i32).unwrap();
        let mut r = record(&sd, "running", me);
        r.id = 2;
        r.save(&sd).unwrap();
        let a = reserve_id(&sd).unwrap();
        let b = reserve_id(&sd).unwrap();
        assert_eq!((a.id, b.id), (3, 4));
        drop(a);
        let c = reserve_id(&sd).unwrap();
        assert_eq!(c.id, 3);
        // A claim whose holder wrote its record and let go: that record
        // keeps the id taken.
        let mut r = record(&sd, "started", me);
        r.id = 4;
        r.save(&sd).unwrap();
        drop(b);
        assert_eq!(reserve_id(&sd).unwrap().id, 5);
    }

    #[test]
    fn shell_line_quotes_what_needs_it() {
        let env = vec![
            ("LC_ALL".to_owned(), "C".to_owned()),
            ("HOME".into(), "/a b".into()),
        ];
        let args = vec![
            "-name".to_owned(),
            "guest=vm,debug-threads=on".into(),
            "it's".into(),
        ];
        assert_eq!(
            shell_line(Some(&env), Path::new("/usr/bin/qemu-system-x86_64"), &args),
            "LC_ALL=C HOME='/a b' /usr/bin/qemu-system-x86_64 -name guest=vm,debug-threads=on 'it'\\''s'"
        );
    }

    #[test]
    fn monitor_args_escape_commas() {
        let a = monitor_args(Path::new("/tmp/a,b/qmp.sock"));
        assert_eq!(
            a[1],
            "socket,id=charmonitor,path=/tmp/a,,b/qmp.sock,server=on,wait=off"
        );
    }
}
