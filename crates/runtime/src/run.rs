//! Running domains: launching a prepared QEMU command line detached, the
//! run record that lets later invocations find it (`run/NAME/state.json`),
//! connecting to its QMP socket, stopping it, and noticing a QEMU that died.
//!
//! This layer knows nothing about XML: it takes the argv and the facts the
//! XML layer derived (teaming pairs, VFs). The migration module uses it
//! directly: [`launch`] with `incoming: true` (the argv carries
//! `-incoming defer`), [`RunRecord::load`]/[`RunRecord::save`] to read or
//! move ownership of a running domain, [`connect`] for its QMP.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use teamvirt_qmp::{EventStream, Qmp, QmpError, QmpOptions};

use crate::accel::Accel;
use crate::lock::{FileLock, LockMode};
use crate::pool::{PoolError, VfPool};
use crate::process::{spawn_detached_passing, ProcId, ProcessError};
use crate::state::{read_optional, remove_optional, write_atomic, RunPaths, StateDir, StateError};
use crate::teaming::TeamingPair;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Hostdev(#[from] crate::hostdev::HostdevError),
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
    #[error("internal error: run record {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("internal error: QMP socket path {} is too long for a unix socket ({len} > 107 bytes); use a shorter --state-dir", .path.display())]
    SocketPathTooLong { path: PathBuf, len: usize },
}

fn log_tail(log: &str) -> String {
    let t = log.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(": {t}")
    }
}

/// A VF bound to a device of a running domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfBinding {
    pub network: String,
    /// Device alias (QEMU id).
    pub device: String,
    /// Host PCI address.
    pub address: String,
}

/// What `run/NAME/state.json` records about a running domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub name: String,
    /// virsh-style domain id (unique among running domains of a state dir).
    #[serde(default)]
    pub id: u32,
    pub uuid: Option<String>,
    pub proc: ProcId,
    pub emulator: String,
    pub argv: Vec<String>,
    pub accel: Accel,
    pub qmp_socket: PathBuf,
    pub serial_log: Option<PathBuf>,
    pub qemu_log: PathBuf,
    #[serde(default)]
    pub pairs: Vec<TeamingPair>,
    #[serde(default)]
    pub vfs: Vec<VfBinding>,
    /// Lab-mode substitutions, one human-readable line each.
    #[serde(default)]
    pub substitutions: Vec<String>,
    /// Started with `-incoming` (a migration destination not yet resumed).
    #[serde(default)]
    pub incoming: bool,
    pub started_unix: u64,
}

impl RunRecord {
    /// The record of `name` in `sd`, if any.
    pub fn load(sd: &StateDir, name: &str) -> Result<Option<RunRecord>, RunError> {
        let p = sd.run_paths(name)?;
        match read_optional(&p.state_json)? {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| RunError::Corrupt {
                    path: p.state_json.display().to_string(),
                    reason: e.to_string(),
                }),
        }
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

    pub fn is_alive(&self) -> bool {
        self.proc.is_alive()
    }
}

/// Remove a domain's run directory content (record, pid, live XML, socket)
/// without touching the process. Logs are kept for post-mortems.
pub fn forget(sd: &StateDir, name: &str) -> Result<(), RunError> {
    let p = sd.run_paths(name)?;
    for f in [&p.state_json, &p.pid, &p.live_xml, &p.qmp_sock] {
        remove_optional(f)?;
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
    for net in sd.defined_networks()? {
        for a in VfPool::new(sd, &net).release_domain(name)? {
            out.push(VfBinding {
                network: net.clone(),
                device: a.device,
                address: a.address,
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
/// (see [`crate::hostdev`]); the steps that failed.
pub fn release_host(sd: &StateDir, name: &str) -> Result<Vec<String>, RunError> {
    let dir = sd.run_paths(name)?.dir;
    let mut problems = crate::hostdev::release_recorded(&dir);
    problems.extend(crate::netdev::release_recorded(&dir));
    Ok(problems)
}

/// Is the domain running? `Some(record)` when its QEMU is alive. A record
/// whose QEMU died is cleaned up on the spot (VFs back to the pool), unless
/// another process holds the domain lock (it is starting or stopping it).
pub fn running(sd: &StateDir, name: &str) -> Result<Option<RunRecord>, RunError> {
    let Some(rec) = RunRecord::load(sd, name)? else {
        return Ok(None);
    };
    if rec.is_alive() {
        return Ok(Some(rec));
    }
    if let Some(_lock) = sd.try_lock_domain(name)? {
        cleanup_dead(sd, name)?;
    }
    Ok(None)
}

/// Cleanup after a QEMU that is gone. Caller holds the domain lock.
pub fn cleanup_dead(sd: &StateDir, name: &str) -> Result<Vec<VfBinding>, RunError> {
    // A VF the host did not take back is reported, but the domain is
    // still gone (its record must go, or every command would retry).
    let freed = release_vfs(sd, name);
    forget(sd, name)?;
    freed
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
        let alive = matches!(RunRecord::load(sd, &name), Ok(Some(r)) if r.is_alive());
        if alive {
            continue;
        }
        if let Some(_lock) = sd.try_lock_domain(&name)? {
            // Re-check under the lock: a start may have just finished.
            let rec = RunRecord::load(sd, &name).ok().flatten();
            if rec.is_some_and(|r| r.is_alive()) {
                continue;
            }
            cleanup_dead(sd, &name)?;
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
            if sd
                .run_paths(&owner)
                .map(|p| p.state_json.exists())
                .unwrap_or(false)
            {
                continue;
            }
            if let Some(_lock) = sd.try_lock_domain(&owner)? {
                if !sd.run_paths(&owner)?.state_json.exists() {
                    pool.release_domain(&owner)?;
                }
            }
        }
    }
    Ok(cleaned)
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
    /// Migration destination: do not resume the vCPUs.
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
    // QEMU creates files with the umask; make ours private up front (it
    // truncates or appends, which keeps the mode).
    if let Some(log) = spec
        .serial_log
        .as_ref()
        .filter(|l| l.starts_with(&paths.dir))
    {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log);
    }
    // Mark where this start's log begins, so errors show only its output.
    let log_start = std::fs::metadata(&paths.qemu_log)
        .map(|m| m.len())
        .unwrap_or(0);

    let proc = spawn_detached_passing(
        &spec.emulator,
        &spec.args,
        spec.env.as_deref(),
        &paths.qemu_log,
        &spec.pass_fds,
    )?;
    let mut argv = vec![spec.emulator.display().to_string()];
    argv.extend(spec.args.iter().cloned());
    let record = RunRecord {
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
    };
    let fail = |e: RunError| {
        let _ = proc.kill_painfully(Duration::from_secs(3));
        let _ = forget(sd, &spec.name);
        e
    };
    record.save(sd).map_err(fail)?;

    let qmp = match wait_monitor(&record, spec.monitor_timeout, log_start).await {
        Ok(q) => q,
        Err(e) => return Err(fail(e)),
    };
    // The directory is private already; the socket itself should be too.
    let _ = std::fs::set_permissions(&paths.qmp_sock, std::fs::Permissions::from_mode(0o600));
    let events = qmp.subscribe();
    if !spec.incoming {
        if let Err(source) = qmp.execute("cont", serde_json::Value::Null).await {
            return Err(fail(died_or(
                &record,
                log_start,
                RunError::Qmp {
                    name: spec.name.clone(),
                    source,
                },
            )));
        }
    }
    Ok(Launched {
        record,
        qmp,
        events,
    })
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

fn read_log_from(path: &Path, start: u64) -> String {
    let data = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(start).unwrap_or(0).min(data.len());
    String::from_utf8_lossy(&data[from..]).into_owned()
}

fn died_or(rec: &RunRecord, log_start: u64, other: RunError) -> RunError {
    // Give a dying QEMU a moment to finish writing its error.
    if rec.proc.wait_gone(Duration::from_millis(300)) {
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
            ));
        }
        if rec.qmp_socket.exists() {
            match Qmp::connect(&rec.qmp_socket).await {
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
                    ))
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
    let opts = QmpOptions {
        handshake_timeout: timeout,
        ..Default::default()
    };
    match Qmp::connect_with(&rec.qmp_socket, opts).await {
        Ok(q) => Ok(q),
        Err(QmpError::Timeout { .. }) => Err(RunError::MonitorBusy {
            name: rec.name.clone(),
        }),
        Err(source) => Err(RunError::Qmp {
            name: rec.name.clone(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::VfPool;

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
        // A VF held by a domain that never got a record (crashed start).
        pool.reserve("0000:09:00.0", "orphan", "hostdev0").unwrap();

        let cleaned = reconcile(&sd).unwrap();
        assert_eq!(cleaned, vec!["dead"]);
        let st = pool.state().unwrap();
        assert_eq!(st.allocations.len(), 1);
        assert_eq!(st.allocations[0].domain, "alive");
        assert!(RunRecord::load(&sd, "dead").unwrap().is_none());
        assert!(running(&sd, "alive").unwrap().is_some());
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
    fn monitor_args_escape_commas() {
        let a = monitor_args(Path::new("/tmp/a,b/qmp.sock"));
        assert_eq!(
            a[1],
            "socket,id=charmonitor,path=/tmp/a,,b/qmp.sock,server=on,wait=off"
        );
    }
}
