//! The migration job as other shells see it. QEMU's monitor serves one
//! client at a time and the migrating `teamvirt` holds it, so the job's
//! phase and figures are published to `run/NAME/job.json` (rewritten
//! atomically a few times a second) for `domjobinfo`, and `domjobabort`
//! asks the migrating process to cancel by signalling it (SIGUSR1) through
//! the pid recorded there (checked against its start time, so a recycled
//! pid is never signalled).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use teamvirt_qmp::MigrationStatus;

use teamvirt_host::process::ProcId;
use teamvirt_host::state::{read_optional, remove_optional, write_atomic, StateDir, StateError};

/// The signal `domjobabort` sends to the migrating process.
pub const ABORT_SIGNAL: i32 = libc::SIGUSR1;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// libvirt's text (`qemuDomainAbortJob`).
    #[error("Requested operation is not valid: no job is active on the domain")]
    NoJob,
    #[error("internal error: job file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Process(#[from] teamvirt_host::process::ProcessError),
    #[error("refusing to signal process {pid} named as the driver of the job of domain '{name}': /proc/{pid}/exe is {exe}, not teamvirt ({me}); the job file is damaged or forged")]
    NotTeamvirt {
        name: String,
        pid: i32,
        exe: String,
        me: String,
    },
}

/// Where a migration job is: teamvirt's own steps around QEMU's status.
/// Written as its name (`prepare`, `wait-unplug`, `done`, ...) in
/// `job.json`, `domjobinfo` and the progress lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum JobPhase {
    /// The destination is checked, reserved and started.
    #[default]
    Prepare,
    /// QEMU's migration status (`setup`, `wait-unplug`, `active`,
    /// `completed`, `cancelling`, `cancelled`, `failed`, ...).
    Qemu(MigrationStatus),
    /// The destination takes over (resume, primaries, records).
    Finish,
    /// The source gets the domain back.
    Rollback,
    Done,
    /// The destination side's job (`migration in`).
    Incoming,
}

impl JobPhase {
    pub fn as_str(&self) -> &str {
        match self {
            JobPhase::Prepare => "prepare",
            JobPhase::Qemu(s) => s.as_str(),
            JobPhase::Finish => "finish",
            JobPhase::Rollback => "rollback",
            JobPhase::Done => "done",
            JobPhase::Incoming => "incoming",
        }
    }

    pub fn parse(s: &str) -> JobPhase {
        match s {
            "prepare" => JobPhase::Prepare,
            "finish" => JobPhase::Finish,
            "rollback" => JobPhase::Rollback,
            "done" => JobPhase::Done,
            "incoming" => JobPhase::Incoming,
            other => JobPhase::Qemu(MigrationStatus::parse(other)),
        }
    }
}

impl std::fmt::Display for JobPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JobPhase {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JobPhase {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JobPhase, D::Error> {
        Ok(JobPhase::parse(&String::deserialize(d)?))
    }
}

/// One published snapshot of a migration job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// `migration out`.
    pub operation: String,
    /// The process driving the job (receives [`ABORT_SIGNAL`]).
    pub driver: Option<ProcId>,
    /// Where the domain goes (state directory or URI).
    pub destination: String,
    /// `prepare`, then QEMU's status (`setup`, `wait-unplug`, `active`,
    /// `completed`, `cancelling`, `cancelled`, `failed`), then `finish`,
    /// `rollback`, `done`.
    pub phase: JobPhase,
    pub started_unix_ms: u64,
    /// Time since the job started.
    pub elapsed_ms: u64,
    /// From QEMU's `query-migrate` (`ram`): bytes.
    pub data_total: Option<u64>,
    pub data_processed: Option<u64>,
    pub data_remaining: Option<u64>,
    /// Transfer rate in Mbit/s (`ram.mbps`).
    pub mbps: Option<f64>,
    pub dirty_rate_pages: Option<u64>,
    pub iteration: Option<u64>,
    /// QEMU's own figures once known.
    pub setup_time_ms: Option<u64>,
    pub downtime_ms: Option<u64>,
    pub expected_downtime_ms: Option<u64>,
    pub total_time_ms: Option<u64>,
    /// Time the source spent waiting for the guest to unplug its primaries.
    pub wait_unplug_ms: Option<u64>,
    /// Primaries QEMU asked the guest to unplug (`UNPLUG_PRIMARY`).
    pub unplugged: Vec<String>,
    /// Standbys that negotiated failover on the destination.
    pub negotiated_on_destination: Vec<String>,
    /// An abort was requested (domjobabort, Ctrl-C, deadline) and why.
    pub abort_reason: Option<String>,
    /// Last notable thing that happened (human readable).
    pub message: Option<String>,
    /// What recovery (`migrate::recover`) needs when the driver dies:
    /// whether the source ran (the winner is resumed only then) and the
    /// virsh flags.
    #[serde(default)]
    pub source_was_running: Option<bool>,
    #[serde(default)]
    pub persistent: bool,
    #[serde(default)]
    pub undefine_source: bool,
}

impl JobInfo {
    /// A fresh job of this process.
    pub fn new(destination: &str) -> JobInfo {
        JobInfo {
            operation: "migration out".into(),
            driver: ProcId::of(std::process::id() as i32),
            destination: destination.to_owned(),
            phase: JobPhase::Prepare,
            started_unix_ms: now_ms(),
            ..Default::default()
        }
    }

    /// Fill the figures from a `query-migrate` reply.
    pub fn update_from_query(&mut self, q: &teamvirt_qmp::MigrationInfo) {
        if let Some(ram) = &q.ram {
            self.data_total = ram.total.or(self.data_total);
            self.data_processed = ram.transferred.or(self.data_processed);
            self.data_remaining = ram.remaining.or(self.data_remaining);
            self.mbps = ram.mbps.or(self.mbps);
            self.dirty_rate_pages = ram.dirty_pages_rate.or(self.dirty_rate_pages);
            self.iteration = ram.dirty_sync_count.or(self.iteration);
        }
        self.setup_time_ms = q.setup_time.or(self.setup_time_ms);
        self.downtime_ms = q.downtime.or(self.downtime_ms);
        self.expected_downtime_ms = q.expected_downtime.or(self.expected_downtime_ms);
        self.total_time_ms = q.total_time.or(self.total_time_ms);
    }

    /// Refresh `elapsed_ms`.
    pub fn tick(&mut self) {
        self.elapsed_ms = now_ms().saturating_sub(self.started_unix_ms);
    }

    /// Is the process that published this still running it?
    pub fn driver_alive(&self) -> bool {
        self.driver.is_some_and(|p| p.is_alive())
    }

    /// virsh `domjobinfo`-style lines (label, value).
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("Job type".into(), "Unbounded".into()),
            ("Operation".into(), capitalize(&self.operation)),
            ("Phase".into(), self.phase.to_string()),
            ("Destination".into(), self.destination.clone()),
            ("Time elapsed".into(), format!("{} ms", self.elapsed_ms)),
        ];
        let mib = |b: u64| format!("{:.3} MiB", b as f64 / 1048576.0);
        let mut opt = |label: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push((label.into(), v));
            }
        };
        opt("Data processed", self.data_processed.map(mib));
        opt("Data remaining", self.data_remaining.map(mib));
        opt("Data total", self.data_total.map(mib));
        opt(
            "Memory bandwidth",
            self.mbps.map(|m| format!("{m:.1} Mbit/s")),
        );
        opt(
            "Dirty rate",
            self.dirty_rate_pages.map(|d| format!("{d} pages/s")),
        );
        opt("Iteration", self.iteration.map(|i| i.to_string()));
        opt("Setup time", self.setup_time_ms.map(|t| format!("{t} ms")));
        opt(
            "Wait-unplug time",
            self.wait_unplug_ms.map(|t| format!("{t} ms")),
        );
        opt(
            "Expected downtime",
            self.expected_downtime_ms.map(|t| format!("{t} ms")),
        );
        opt("Downtime", self.downtime_ms.map(|t| format!("{t} ms")));
        opt("Total time", self.total_time_ms.map(|t| format!("{t} ms")));
        if !self.unplugged.is_empty() {
            opt("Primaries unplugged", Some(self.unplugged.join(", ")));
        }
        if !self.negotiated_on_destination.is_empty() {
            opt(
                "Negotiated on destination",
                Some(self.negotiated_on_destination.join(", ")),
            );
        }
        opt("Abort requested", self.abort_reason.clone());
        opt("Last event", self.message.clone());
        out
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `run/NAME/job.json`.
pub fn job_path(sd: &StateDir, name: &str) -> Result<PathBuf, StateError> {
    Ok(sd.checked_run_paths(name)?.dir.join("job.json"))
}

/// Publish a snapshot (atomic replace).
pub fn publish(sd: &StateDir, name: &str, job: &JobInfo) -> Result<(), JobError> {
    let p = job_path(sd, name)?;
    if !p.parent().is_some_and(|d| d.is_dir()) {
        // The run directory is gone (domain forgotten): nothing to publish to.
        return Ok(());
    }
    let json = serde_json::to_string_pretty(job).expect("job serializes");
    write_atomic(&p, json.as_bytes(), 0o600)?;
    Ok(())
}

/// Remove the job file (the job ended).
pub fn clear(sd: &StateDir, name: &str) -> Result<(), JobError> {
    remove_optional(&job_path(sd, name)?)?;
    Ok(())
}

/// The running job of `name`, if a live process publishes one. A file
/// left by a process that died is stale and reported as no job.
pub fn current(sd: &StateDir, name: &str) -> Result<Option<JobInfo>, JobError> {
    let p = job_path(sd, name)?;
    let Some(text) = read_optional(&p)? else {
        return Ok(None);
    };
    let job: JobInfo = serde_json::from_str(&text).map_err(|e| JobError::Corrupt {
        path: p.display().to_string(),
        reason: e.to_string(),
    })?;
    // Elapsed as of now: a snapshot may be seconds old (the destination's
    // incoming job is written once).
    let mut job = job;
    job.tick();
    Ok(job.driver_alive().then_some(job))
}

/// `domjobabort`: ask the process driving `name`'s job to cancel it.
/// Returns the job as it was when asked.
pub fn request_abort(sd: &StateDir, name: &str) -> Result<JobInfo, JobError> {
    let job = current(sd, name)?.ok_or(JobError::NoJob)?;
    let pid = job.driver.ok_or(JobError::NoJob)?;
    // The job file is a file: SIGUSR1 kills most processes, so it goes
    // only to a process running teamvirt's own binary.
    let exe = teamvirt_host::procmatch::exe_of(pid.pid);
    let me = teamvirt_host::procmatch::exe_of(std::process::id() as i32);
    if exe.is_none() || exe != me {
        let show = |p: Option<std::path::PathBuf>| {
            p.map_or_else(|| "unknown".into(), |p| p.display().to_string())
        };
        return Err(JobError::NotTeamvirt {
            name: name.to_owned(),
            pid: pid.pid,
            exe: show(exe),
            me: show(me),
        });
    }
    pid.signal(ABORT_SIGNAL)?;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn figures_from_query_migrate() {
        let mut j = JobInfo::new("dst");
        let q = |v| serde_json::from_value::<teamvirt_qmp::MigrationInfo>(v).unwrap();
        j.update_from_query(&q(json!({
            "status": "active", "setup-time": 251, "total-time": 500, "expected-downtime": 300,
            "ram": {"total": 268_566_528u64, "transferred": 1000, "remaining": 2000, "mbps": 900.5,
                    "dirty-sync-count": 2, "dirty-pages-rate": 10}
        })));
        assert_eq!(j.data_total, Some(268_566_528));
        assert_eq!(j.data_processed, Some(1000));
        assert_eq!(j.data_remaining, Some(2000));
        assert_eq!(j.setup_time_ms, Some(251));
        assert_eq!(j.iteration, Some(2));
        // A later reply without figures keeps the last known ones.
        j.update_from_query(&q(json!({"status": "completed", "downtime": 22})));
        assert_eq!(j.data_processed, Some(1000));
        assert_eq!(j.downtime_ms, Some(22));
        let lines = j.lines();
        assert!(lines
            .iter()
            .any(|(l, v)| l == "Data processed" && v.ends_with("MiB")));
        assert!(lines.iter().any(|(l, v)| l == "Downtime" && v == "22 ms"));
    }

    /// A job file naming an unrelated process as its driver: domjobabort
    /// must not send it SIGUSR1 (which would kill it).
    #[test]
    fn abort_refuses_a_forged_driver() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        sd.create_run_dir("vm").unwrap();
        let mut victim = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        let mut j = JobInfo::new("dst");
        j.driver = ProcId::of(victim.id() as i32);
        publish(&sd, "vm", &j).unwrap();
        let e = request_abort(&sd, "vm").unwrap_err().to_string();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let alive = victim.try_wait().unwrap().is_none();
        let _ = victim.kill();
        let _ = victim.wait();
        assert!(alive, "domjobabort killed an unrelated process");
        assert!(e.contains("refusing to signal process"), "{e}");
    }

    #[test]
    fn publish_read_abort_and_stale() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        assert!(current(&sd, "vm").unwrap().is_none());
        assert!(matches!(request_abort(&sd, "vm"), Err(JobError::NoJob)));
        sd.create_run_dir("vm").unwrap();
        let mut j = JobInfo::new("dst");
        // A driver that is gone (same pid, other start time): stale.
        let me = j.driver.unwrap();
        j.driver = Some(ProcId {
            pid: me.pid,
            start_time: me.start_time + 3,
        });
        publish(&sd, "vm", &j).unwrap();
        assert!(current(&sd, "vm").unwrap().is_none());
        assert!(matches!(request_abort(&sd, "vm"), Err(JobError::NoJob)));
        // A live driver: readable. (Not signalled here: it is this test.)
        j.driver = Some(me);
        j.phase = JobPhase::Qemu(MigrationStatus::WaitUnplug);
        publish(&sd, "vm", &j).unwrap();
        assert_eq!(
            current(&sd, "vm").unwrap().unwrap().phase,
            JobPhase::Qemu(MigrationStatus::WaitUnplug)
        );
        // Written as its name, read back the same.
        let text = std::fs::read_to_string(job_path(&sd, "vm").unwrap()).unwrap();
        assert!(text.contains("\"phase\": \"wait-unplug\""), "{text}");
        for p in [
            "prepare",
            "setup",
            "wait-unplug",
            "finish",
            "rollback",
            "done",
            "incoming",
        ] {
            assert_eq!(JobPhase::parse(p).as_str(), p);
        }
        clear(&sd, "vm").unwrap();
        assert!(current(&sd, "vm").unwrap().is_none());
    }
}
