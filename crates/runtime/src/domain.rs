//! Domain verbs other than `start` (see [`crate::start`]): `define`,
//! `undefine`, `list`, `dumpxml`, `destroy`, `shutdown`, `domstate`,
//! `teaming`. Every verb runs on a [`Runtime`], which notices QEMUs that
//! died since the last command ([`crate::run::reconcile`]); commands open
//! it through `teamvirt_runtime::open`, which first settles migrations
//! whose driving process died.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use teamvirt_conf::{Diagnostic, DomainDef};
use teamvirt_qemu::caps::{CapsError, QemuCaps};
use teamvirt_qmp::Qmp;

use crate::error::{check_formatted, RuntimeError};
use crate::run::{self, RunRecord, VfBinding};
use crate::stop::{stop_process, StopPolicy};
use crate::teaming::{self, PairState};
use teamvirt_host::lock::FileLock;
use teamvirt_host::state::{read_optional, remove_optional, write_atomic, StateDir};

/// How long a one-shot command waits for the QMP greeting (another
/// `teamvirt` may hold the single monitor connection).
pub const MONITOR_WAIT: Duration = Duration::from_secs(5);

// Moved out to untie module cycles; kept here for callers of these paths.
pub use crate::identity::emulator_of;
pub use crate::uuidgen::random_uuid;
// Beside the reasons that explain it, which need nothing from here.
pub use crate::reason::DomainState;

/// The lifecycle API over one state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) sd: StateDir,
    /// What opening it settled (see [`Runtime::open`]).
    notices: Vec<String>,
    /// Where real VFs are bound and configured (`/sys`, `ip`).
    pub(crate) host: teamvirt_host::hostdev::HostPrep,
}

/// Capabilities of `binary` (a live probe, cached in `cache_dir`):
/// [`QemuCaps::probe`].
pub async fn probe_caps(binary: &Path, cache_dir: &Path) -> Result<QemuCaps, CapsError> {
    QemuCaps::probe(binary, cache_dir).await
}

/// One row of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainSummary {
    pub id: Option<u32>,
    pub name: String,
    /// From the run record (running), else the definition.
    pub uuid: Option<String>,
    pub state: DomainState,
    pub persistent: bool,
    /// Why the state is not known for sure (damaged record, QEMU not
    /// responding), for the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Runtime {
    /// The lifecycle API over `state_dir`: pool state files repaired (what
    /// was done is in [`Runtime::notices`]) and dead QEMUs noticed.
    /// Migrations whose `teamvirt migrate` process died are not settled
    /// here (migration sits above this module): commands open through
    /// `teamvirt_runtime::open`, which settles them first.
    pub fn open(state_dir: &StateDir) -> Result<Runtime, RuntimeError> {
        Runtime::open_after(state_dir, Vec::new())
    }

    /// [`Runtime::open`] with `notices` already gathered by the caller
    /// (migration recovery, which must run before the sweep below).
    pub(crate) fn open_after(
        state_dir: &StateDir,
        mut notices: Vec<String>,
    ) -> Result<Runtime, RuntimeError> {
        // Pool state files are rebuilt from the run records when lost or
        // damaged, before anything allocates from them.
        for net in state_dir.defined_networks()? {
            match crate::pool::VfPool::new(state_dir, &net).repair() {
                Ok(Some(w)) => notices.push(w),
                Ok(None) => {}
                Err(e) => notices.push(format!("network '{net}': {e}")),
            }
        }
        let rt = Runtime {
            sd: state_dir.clone(),
            notices,
            host: teamvirt_host::hostdev::HostPrep::system(),
        };
        run::reconcile(&rt.sd)?;
        Ok(rt)
    }

    /// Lines for the user about what opening settled (a stale migration
    /// job, a rebuilt pool state file), each a warning.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Prepare real VFs against another sysfs root and `ip` (tests).
    pub fn set_host_prep(&mut self, host: teamvirt_host::hostdev::HostPrep) {
        self.host = host;
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.sd
    }

    /// Capabilities of `binary`, cached in the state directory.
    pub async fn caps(&self, binary: &Path) -> Result<QemuCaps, RuntimeError> {
        probe_caps(binary, &self.sd.cache_dir())
            .await
            .map_err(RuntimeError::from)
    }

    /// The defined (persistent) configuration of `name`.
    pub fn domain_def(&self, name: &str) -> Result<(DomainDef, String), RuntimeError> {
        let path = self.sd.domain_xml(name)?;
        let text = read_optional(&path)?.ok_or_else(|| RuntimeError::NoDomain(name.to_owned()))?;
        let (def, _) =
            DomainDef::parse_str(&text, Some(&path)).map_err(|e| RuntimeError::Invalid {
                diags: vec![e.to_diagnostic(Some(&path))],
                text: text.clone(),
                file: Some(path.clone()),
            })?;
        Ok((def, text))
    }

    /// The running record of `name`, or `NotRunning`/`NoDomain`.
    pub fn running(&self, name: &str) -> Result<RunRecord, RuntimeError> {
        match run::running(&self.sd, name)? {
            Some(r) => Ok(r),
            None if self.sd.domain_xml(name)?.exists() => {
                Err(RuntimeError::NotRunning(name.to_owned()))
            }
            None => Err(RuntimeError::NoDomain(name.to_owned())),
        }
    }

    /// `define`: parse, validate (libvirt's checks + teamvirt's), apply
    /// libvirt's define-time defaults (PCI addresses, MACs, controllers) and
    /// store the canonical XML. Returns the name and the warnings.
    pub async fn define_domain(
        &self,
        text: &str,
        file: Option<&Path>,
    ) -> Result<(String, Vec<Diagnostic>), RuntimeError> {
        let (mut def, warnings) = self.checked_definition(text, file).await?;
        let _g = self.sd.lock_global()?;
        let path = self.sd.domain_xml(&def.name)?;
        self.keep_uuid(&mut def)?;
        let xml = def.to_xml();
        check_formatted(&def.name, &xml)?;
        write_atomic(&path, xml.as_bytes(), 0o600)?;
        Ok((def.name, warnings))
    }

    /// What `define` and `create` both do to a document: parse, check
    /// (libvirt's, QEMU's and teaming checks) and fill in QEMU's defaults.
    async fn checked_definition(
        &self,
        text: &str,
        file: Option<&Path>,
    ) -> Result<(DomainDef, Vec<Diagnostic>), RuntimeError> {
        let invalid = |diags: Vec<Diagnostic>| RuntimeError::Invalid {
            diags,
            text: text.to_owned(),
            file: file.map(Path::to_path_buf),
        };
        let (mut def, mut warnings) =
            DomainDef::parse_str(text, file).map_err(|e| invalid(vec![e.to_diagnostic(file)]))?;
        teamvirt_host::state::check_name(&def.name)?;
        pin_default_emulator(&mut def);
        let caps = self.caps(&emulator_of(&def)).await?;
        let diags = teamvirt_qemu::validate::validate(&def, Some(caps.supports_failover()));
        if diags.iter().any(Diagnostic::is_error) {
            return Err(invalid(diags));
        }
        warnings.extend(diags);
        teamvirt_qemu::defaults::define(&mut def, &caps)?;
        Ok((def, warnings))
    }

    /// A domain defined under `def`'s name keeps its UUID (a different one
    /// is libvirt's clash error); a domain without any gets a new one.
    fn keep_uuid(&self, def: &mut DomainDef) -> Result<(), RuntimeError> {
        let path = self.sd.domain_xml(&def.name)?;
        if let Some(old) = read_optional(&path)? {
            if let Ok((old, _)) = DomainDef::parse_str(&old, None) {
                match (&old.uuid, &def.uuid) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(RuntimeError::UuidClash {
                            name: def.name.clone(),
                            uuid: a.to_string(),
                        })
                    }
                    (Some(a), None) => def.uuid = Some(*a),
                    _ => {}
                }
            }
        }
        if def.uuid.is_none() {
            def.uuid = Some(random_uuid());
        }
        Ok(())
    }

    /// `create FILE`: start a domain from XML without defining it
    /// (transient: gone from `list --all` once it stops), as virsh's
    /// `create`. A domain defined under the same name must have the same
    /// UUID (libvirt's clash error otherwise); its definition stays as it
    /// is. Returns the name, the report of the start and the parser's
    /// warnings.
    pub async fn create_domain(
        &self,
        text: &str,
        file: Option<&Path>,
        opts: &crate::StartOptions,
    ) -> Result<(String, crate::StartReport, Vec<Diagnostic>), RuntimeError> {
        let (mut def, warnings) = self.checked_definition(text, file).await?;
        {
            let _g = self.sd.lock_global()?;
            self.keep_uuid(&mut def)?;
        }
        let xml = def.to_xml();
        check_formatted(&def.name, &xml)?;
        let name = def.name.clone();
        let report = self.start_def(def, &xml, opts).await?;
        Ok((name, report, warnings))
    }

    /// `undefine`: forget the definition. A running domain keeps running
    /// (transient) until it stops, as with libvirt.
    pub fn undefine_domain(&self, name: &str) -> Result<(), RuntimeError> {
        let _g = self.sd.lock_global()?;
        let path = self.sd.domain_xml(name)?;
        if !path.exists() {
            return Err(RuntimeError::NoDomain(name.to_owned()));
        }
        remove_optional(&path)?;
        Ok(())
    }

    /// State of a running domain from QEMU (`None`: shut off). A guest that
    /// powered off leaves QEMU in `shutdown` (libvirt passes -no-shutdown);
    /// like libvirt's SHUTDOWN handler, that QEMU is stopped here.
    pub(crate) async fn live_state(
        &self,
        rec: &RunRecord,
    ) -> Result<Option<DomainState>, RuntimeError> {
        let status = async {
            let q = run::connect(rec, MONITOR_WAIT).await?;
            q.query_status().await.map_err(|source| run::RunError::Qmp {
                name: rec.name.clone(),
                source,
            })
        }
        .await;
        let status = match status {
            Ok(s) => s,
            Err(run::RunError::MonitorBusy { .. }) => return Ok(Some(DomainState::Busy)),
            Err(run::RunError::Stopped { .. } | run::RunError::NotResponding { .. }) => {
                return Ok(Some(DomainState::NotResponding))
            }
            Err(_) if !rec.is_alive() => {
                run::running(&self.sd, &rec.name)?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(match status.as_str() {
            "running" => Some(DomainState::Running),
            "shutdown" => {
                self.stop(&rec.name)?;
                None
            }
            _ => Some(DomainState::Paused),
        })
    }

    /// `domstate`.
    pub async fn domain_state(&self, name: &str) -> Result<DomainState, RuntimeError> {
        match run::running(&self.sd, name)? {
            Some(rec) => Ok(self.live_state(&rec).await?.unwrap_or(DomainState::ShutOff)),
            None if self.sd.domain_xml(name)?.exists() => Ok(DomainState::ShutOff),
            None => Err(RuntimeError::NoDomain(name.to_owned())),
        }
    }

    /// `list [--all]`: running domains, plus shut-off defined ones with `all`.
    pub async fn list_domains(&self, all: bool) -> Result<Vec<DomainSummary>, RuntimeError> {
        let defined = self.sd.defined_domains()?;
        let mut names: Vec<String> = self.sd.run_entries()?;
        names.extend(defined.iter().cloned());
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            let persistent = defined.contains(&name);
            // One domain's trouble (damaged record, frozen QEMU) is shown
            // on its row; the others are listed all the same.
            let (id, state, problem) = match self.list_row(&name).await {
                Ok((id, st)) => (id, st, None),
                Err(RuntimeError::Run(
                    e @ (run::RunError::Stopped { .. } | run::RunError::NotResponding { .. }),
                )) => {
                    let id = RunRecord::load(&self.sd, &name)
                        .ok()
                        .flatten()
                        .map(|r| r.id);
                    (id, DomainState::NotResponding, Some(e.to_string()))
                }
                Err(e) => (None, DomainState::Damaged, Some(e.to_string())),
            };
            if state == DomainState::ShutOff && (!all || !persistent) {
                continue;
            }
            let uuid = self.uuid_of(&name);
            out.push(DomainSummary {
                id,
                uuid,
                name,
                state,
                persistent,
                problem,
            });
        }
        // virsh lists running domains by id first.
        out.sort_by_key(|d| (d.id.is_none(), d.id, d.name.clone()));
        Ok(out)
    }

    /// The UUID of `name`: its running QEMU's, else its definition's.
    pub fn uuid_of(&self, name: &str) -> Option<String> {
        if let Some(u) = RunRecord::load(&self.sd, name)
            .ok()
            .flatten()
            .and_then(|r| r.uuid)
        {
            return Some(u);
        }
        let (def, _) = self.domain_def(name).ok()?;
        def.uuid.map(|u| u.to_string())
    }

    /// `domstate --reason`: the state and virsh's reason text for it
    /// (from the domain log, see [`crate::reason`]).
    pub async fn domain_state_reason(
        &self,
        name: &str,
    ) -> Result<(DomainState, &'static str), RuntimeError> {
        let state = self.domain_state(name).await?;
        let log = crate::domlog::path(&self.sd, name);
        // The log is capped (rotated once): its tail holds the last run.
        let text = crate::domlog::tail(&log, crate::domlog::LOG_CAP);
        let mut reason = crate::reason::from_log(&state, &text);
        if state == DomainState::Paused && reason == "unknown" {
            // Not paused by a teamvirt verb: QEMU's own run state says why.
            if let Some(rec) = run::running(&self.sd, name)? {
                let status = async {
                    let q = run::connect(&rec, MONITOR_WAIT).await.ok()?;
                    q.query_status().await.ok()
                }
                .await;
                if let Some(s) = status {
                    reason = crate::reason::paused_by_qemu(&s);
                }
            }
        }
        Ok((state, reason))
    }

    async fn list_row(&self, name: &str) -> Result<(Option<u32>, DomainState), RuntimeError> {
        Ok(match run::running(&self.sd, name)? {
            Some(rec) => match self.live_state(&rec).await? {
                // Shown with why (on its row, see `list_domains`).
                Some(DomainState::NotResponding) => {
                    let (name, pid) = (rec.name.clone(), rec.proc.pid);
                    return Err(if rec.proc.is_stopped() {
                        run::RunError::Stopped { name, pid }
                    } else {
                        run::RunError::NotResponding {
                            name,
                            pid,
                            secs: MONITOR_WAIT.as_secs(),
                        }
                    }
                    .into());
                }
                Some(st) => (Some(rec.id), st),
                None => (None, DomainState::ShutOff),
            },
            None => (None, DomainState::ShutOff),
        })
    }

    /// `dumpxml [--inactive]`: the live XML of a running domain (with its
    /// VFs, aliases and lab-mode record), else the stored definition.
    pub fn domain_xml(&self, name: &str, inactive: bool) -> Result<String, RuntimeError> {
        if !inactive {
            if let Some(_rec) = run::running(&self.sd, name)? {
                let p = self.sd.run_paths(name)?;
                if let Some(x) = read_optional(&p.live_xml)? {
                    let taps = teamvirt_host::netdev::recorded(&p.dir);
                    return Ok(crate::live::with_host_devices(&x, &taps));
                }
            }
        }
        let path = self.sd.domain_xml(name)?;
        read_optional(&path)?.ok_or_else(|| RuntimeError::NoDomain(name.to_owned()))
    }

    /// `dumpxml --migratable`: what a migration would carry, without the
    /// runtime-only bits of the live XML (the domain id, teamvirt's
    /// `<metadata>` record, tap names); a VF taken from a pool shows as
    /// the `<interface type='network'>` it was defined as (the destination
    /// takes its own VF), as in libvirt. Shut off: the definition.
    pub fn domain_xml_migratable(&self, name: &str) -> Result<String, RuntimeError> {
        if run::running(&self.sd, name)?.is_none() {
            return self.domain_xml(name, true);
        }
        let mut def = self.live_def(name)?;
        def.id = None;
        if let Ok((conf, _)) = self.domain_def(name) {
            for n in def.devices.interfaces.iter_mut() {
                if n.type_ != teamvirt_conf::model::InterfaceType::Hostdev {
                    continue;
                }
                let Some(mac) = n.mac.as_ref().map(|m| m.address.to_string()) else {
                    continue;
                };
                let defined = conf.devices.interfaces.iter().find(|c| {
                    c.type_ == teamvirt_conf::model::InterfaceType::Network
                        && c.mac.as_ref().map(|m| m.address.to_string()) == Some(mac.clone())
                });
                if let Some(c) = defined {
                    n.type_ = c.type_;
                    n.managed = c.managed;
                    n.source = c.source.clone();
                }
            }
        }
        Ok(def.to_xml())
    }

    /// The domain lock for stopping the domain, saying through `on_wait`
    /// what it waits for when another command holds it. A `start
    /// --wait-failover` holding it gives way within half a second: the
    /// second lock returned, held until the stop is done, asks it to
    /// (see [`teamvirt_host::state::StateDir::request_stop`]).
    fn lock_domain_for_stop(
        &self,
        name: &str,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<(FileLock, Option<FileLock>), RuntimeError> {
        if let Some(l) = self.sd.try_lock_domain(name)? {
            return Ok((l, None));
        }
        let request = self.sd.request_stop(name)?;
        let who = self
            .sd
            .domain_lock_holder(name)
            .map(|(pid, what)| format!("'{what}' of domain '{name}' (pid {pid})"))
            .unwrap_or_else(|| format!("another teamvirt command on domain '{name}'"));
        on_wait(&format!(
            "waiting for {who} to finish (Ctrl-C to give up)..."
        ));
        Ok((self.sd.lock_domain(name)?, Some(request)))
    }

    /// Stop QEMU (SIGTERM, then SIGKILL) and release everything. Caller
    /// need not hold the domain lock.
    fn stop(&self, name: &str) -> Result<Vec<VfBinding>, RuntimeError> {
        self.stop_with(name, &mut |_| {})
    }

    fn stop_with(
        &self,
        name: &str,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<Vec<VfBinding>, RuntimeError> {
        self.stop_how(name, false, on_wait)
    }

    /// Stop QEMU; `graceful`: SIGTERM only, and an error (the domain
    /// still running) when QEMU does not exit within 10 s.
    fn stop_how(
        &self,
        name: &str,
        graceful: bool,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<Vec<VfBinding>, RuntimeError> {
        let (l, _request) = self.lock_domain_for_stop(name, on_wait)?;
        l.note_holder("teamvirt destroy");
        let Some(rec) = RunRecord::load(&self.sd, name)? else {
            return Err(RuntimeError::NotRunning(name.to_owned()));
        };
        // The record is a file: the kernel must confirm the pid is this
        // domain's QEMU before it gets a signal.
        let policy = if graceful {
            StopPolicy::DESTROY_GRACEFUL
        } else {
            StopPolicy::DESTROY
        };
        stop_process(&self.sd, name, rec.proc, &policy).map_err(run::RunError::from)?;
        Ok(run::cleanup_dead(&self.sd, name, Some("destroyed"))?)
    }

    /// `destroy --graceful`: SIGTERM, no SIGKILL: QEMU gets to flush its
    /// disks and exit; one that does not within 10 s keeps running and
    /// this fails, as with virsh.
    pub fn destroy_graceful(
        &self,
        name: &str,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<Vec<VfBinding>, RuntimeError> {
        self.running(name)?;
        self.stop_how(name, true, on_wait)
    }

    /// `destroy`: stop the domain now; returns the VFs given back.
    pub fn destroy(&self, name: &str) -> Result<Vec<VfBinding>, RuntimeError> {
        self.destroy_with(name, false, &mut |_| {})
    }

    /// `destroy [--force]`, telling `on_wait` when it has to wait for
    /// another command. `force`: the run record may be damaged or forged;
    /// the domain's QEMU is found by what the kernel says (executable and
    /// a command line opening the domain's QMP socket), stopped, and the
    /// domain's state cleaned up (VFs back to their pools).
    pub fn destroy_with(
        &self,
        name: &str,
        force: bool,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<Vec<VfBinding>, RuntimeError> {
        if !force {
            self.running(name)?;
            return self.stop_with(name, on_wait);
        }
        let paths = self.sd.run_paths(name)?;
        let has_run_dir = std::fs::symlink_metadata(&paths.dir).is_ok();
        if !has_run_dir && !self.sd.domain_xml(name)?.exists() {
            return Err(RuntimeError::NoDomain(name.to_owned()));
        }
        let (l, _request) = self.lock_domain_for_stop(name, on_wait)?;
        l.note_holder("teamvirt destroy --force");
        let mut procs = crate::identity::find_qemus(&self.sd, name);
        let record = RunRecord::load(&self.sd, name);
        if let Ok(Some(rec)) = &record {
            if !procs.contains(&rec.proc)
                && crate::identity::verify(&self.sd, name, &rec.proc).is_ok()
            {
                procs.push(rec.proc);
            }
        }
        let damaged = record.is_err();
        let started = std::fs::symlink_metadata(&paths.state_json).is_ok()
            || std::fs::symlink_metadata(&paths.live_xml).is_ok();
        if procs.is_empty() && !damaged && !started {
            return Err(RuntimeError::NotRunning(name.to_owned()));
        }
        for p in &procs {
            stop_process(&self.sd, name, *p, &StopPolicy::DESTROY_FOUND)
                .map_err(run::RunError::from)?;
        }
        Ok(run::cleanup_dead(&self.sd, name, Some("destroyed"))?)
    }

    /// `shutdown`: ask the guest to power off (ACPI power button) and
    /// return, like virsh. When the guest has powered off, the next command
    /// sees the domain shut off.
    pub async fn shutdown(&self, name: &str) -> Result<(), RuntimeError> {
        let rec = self.running(name)?;
        crate::domlog::event(&self.sd, name, "shutdown requested (ACPI power button)");
        let q = run::connect(&rec, MONITOR_WAIT).await?;
        q.system_powerdown()
            .await
            .map_err(|source| run::RunError::Qmp {
                name: rec.name.clone(),
                source,
            })?;
        Ok(())
    }

    /// `teaming`: the failover state of every pair of a running domain.
    pub async fn teaming(&self, name: &str) -> Result<Vec<PairState>, RuntimeError> {
        let rec = self.running(name)?;
        let q: Qmp = run::connect(&rec, MONITOR_WAIT).await?;
        let states = teaming::query(&q, &rec.pairs)
            .await
            .map_err(|source| run::RunError::Qmp {
                name: rec.name.clone(),
                source,
            })?;
        Ok(states)
    }
}
/// libvirt's post-parse: a definition without `<emulator>` gets the
/// default one's path (`qemu-system-x86_64` as found on `PATH` when it is
/// defined), so that every later command (destroy, migrate, a recovery)
/// means the same binary whatever its own `PATH` is.
fn pin_default_emulator(def: &mut DomainDef) {
    if def.devices.emulator.is_some() {
        return;
    }
    let Some(path) = std::env::var_os("PATH") else {
        return;
    };
    let found = std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file());
    if let Some(p) = found {
        def.devices.emulator = Some(teamvirt_conf::model::Emulator {
            path: p.to_string_lossy().into_owned(),
            pos: Default::default(),
        });
    }
}
