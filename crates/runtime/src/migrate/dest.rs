//! The destination side of a migration, as an API a remote host can serve
//! later (`teamvirt migrate DOMAIN URI`): [`Destination::prepare`] checks
//! and reserves a VF for every transient, starts QEMU with `-incoming
//! defer`, enables migration events and makes it listen, returning the URI
//! the source sends to; [`Destination::finish`] resumes it and checks that
//! its primaries are plugged; [`Destination::abort`] tears it down and
//! returns its VFs. [`LocalDestination`] serves another state directory of
//! this machine over TCP on loopback.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use teamvirt_conf::NetworkDef;
use teamvirt_qmp::{Event, MigrationCapability, MigrationStatus, Qmp};
use tokio::sync::mpsc;

use super::argv::{destination_args, device_props};
pub use super::carry::referenced_files;
use super::carry::{copy_referenced_files, retarget_live_xml};
use super::job::{self, JobInfo};
pub use super::proto::PrepareRequest;
use super::MigrateError;
use crate::pool::{PoolError, VfAllocation, VfPool};
use crate::run::{self, LaunchSpec, RunRecord, VfBinding};
use crate::teaming::{self, PairState, TeamingPair};
use teamvirt_host::hostdev::{HostPrep, VfRequest};
use teamvirt_host::lock::FileLock;
use teamvirt_host::process::ProcId;
use teamvirt_host::state::{read_optional, write_atomic, StateDir};

/// Something the destination QEMU reported while the migration runs.
#[derive(Debug, Clone)]
pub enum DestEvent {
    Qmp(Event),
    /// The destination QEMU is gone (its monitor closed).
    Exited,
    /// The control channel to a remote destination is gone (why).
    Lost(String),
}

/// A destination ready to receive.
#[derive(Debug)]
pub struct Prepared {
    /// Where the source must send (`tcp:HOST:PORT`, or `unix:PATH` on the
    /// same host and through a tunnel).
    pub uri: String,
    /// The pairs as they are on the destination (its VFs).
    pub pairs: Vec<TeamingPair>,
    /// VFs reserved on the destination.
    pub vfs: Vec<VfBinding>,
    /// Lab-mode substitutions on the destination, one line each.
    pub substitutions: Vec<String>,
    pub pid: Option<ProcId>,
    pub events: mpsc::UnboundedReceiver<DestEvent>,
}

/// A destination that took over the domain.
#[derive(Debug, Clone)]
pub struct Finished {
    pub pairs: Vec<PairState>,
    pub running: bool,
    pub defined: bool,
    /// The guest doctor's lines on the destination (already in its domain
    /// log), for the source to show.
    pub guest: Vec<crate::guestdoc::CheckLine>,
}

/// The destination side of a migration.
pub trait Destination: Send {
    /// Human-readable name (state directory, URI).
    fn describe(&self) -> String;
    /// Check, reserve, start the incoming QEMU and make it listen. On error
    /// nothing is left behind.
    fn prepare(
        &mut self,
        req: &PrepareRequest,
    ) -> impl Future<Output = Result<Prepared, MigrateError>> + Send;
    /// The source completed: wait for the incoming side to complete too,
    /// resume the vCPUs if `resume`, check the primaries, record the domain.
    fn finish(
        &mut self,
        resume: bool,
        timeout: Duration,
    ) -> impl Future<Output = Result<Finished, MigrateError>> + Send;
    /// Tear the destination down and release what it reserved. Returns one
    /// line per thing done. Safe to call after a failed `prepare` or twice.
    fn abort(&mut self) -> impl Future<Output = Result<Vec<String>, MigrateError>> + Send;
    /// The source stopped its vCPUs for the last pass: from now on frames
    /// for the guest are only of use where it resumes. A destination on
    /// this host's bridges takes them at its standby (its tap queues them
    /// until the guest runs); another host's bridges are not the source's,
    /// nothing to do there. Returns problems to show (never fatal).
    fn switchover(&mut self) -> impl Future<Output = Vec<String>> + Send {
        async { Vec::new() }
    }
}

/// The pairs of `states`.
fn a_pairs(states: &[PairState]) -> Vec<TeamingPair> {
    states.iter().map(|s| s.pair.clone()).collect()
}

struct Active {
    name: String,
    _lock: FileLock,
    vfs: Vec<VfBinding>,
    pairs: Vec<TeamingPair>,
    persistent_xml: Option<String>,
    qmp: Option<Qmp>,
    record: Option<RunRecord>,
}

/// A destination on another state directory of this host.
pub struct LocalDestination {
    sd: StateDir,
    /// Address QEMU listens on (loopback by default).
    pub listen: String,
    /// Port QEMU listens on (0: the kernel picks one).
    pub port: u16,
    /// Address the source sends to when it is not `listen` (a wildcard
    /// `listen`, or `--migrateuri`).
    pub advertise: Option<String>,
    /// Listen on a unix socket in a private directory instead of TCP: a
    /// same-host migration (the default of [`LocalDestination::new`]: no
    /// local user can connect first, as one could to a loopback port), or
    /// a stream through an SSH tunnel (see `remote`).
    pub unix_incoming: bool,
    /// `--tls`: QEMU's `tls-creds-x509` (endpoint server) from this directory.
    pub tls_dir: Option<PathBuf>,
    /// Files of the source's run directory QEMU reads at start (name,
    /// content), sent by a remote source (see [`referenced_files`]).
    pub run_files: Vec<(String, Vec<u8>)>,
    /// Where the destination's real VFs are bound and configured.
    pub host: HostPrep,
    /// Run this host's own emulator (see [`own_emulator`]), never the one
    /// the request names: set for a remote source (`__migrate-dest`). A
    /// local source (`--dest-state-dir`) is this host's own user, and the
    /// domain's `<emulator>` is used as for a start.
    pub own_emulator: bool,
    /// The emulator prepare chose.
    emulator: Option<PathBuf>,
    active: Option<Active>,
    /// Where the unix incoming socket lives (see `privdrop::socket_dir`).
    sock_dir: Option<PathBuf>,
    /// The source QEMU's identity when it connects to the unix incoming
    /// socket itself (a same-host migration; each VM has its own uid,
    /// see `teamvirt_host::dynuid`). `None`: root connects (the tunnel's relay).
    pub peer: Option<teamvirt_host::privdrop::Identity>,
}

impl Drop for LocalDestination {
    fn drop(&mut self) {
        if let Some(d) = self.sock_dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl LocalDestination {
    pub fn new(sd: StateDir) -> LocalDestination {
        LocalDestination {
            sd,
            listen: "127.0.0.1".into(),
            port: 0,
            advertise: None,
            unix_incoming: true,
            tls_dir: None,
            run_files: Vec::new(),
            host: HostPrep::system(),
            own_emulator: false,
            emulator: None,
            active: None,
            sock_dir: None,
            peer: None,
        }
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.sd
    }

    #[cfg(test)]
    fn reserve(&self, req: &PrepareRequest) -> Result<Vec<VfBinding>, MigrateError> {
        reserve_in(&self.sd, req)
    }

    fn release(&self, name: &str, vfs: &[VfBinding]) -> Vec<String> {
        let mut out: Vec<String> = match run::release_host(&self.sd, name) {
            Ok(p) => p,
            Err(e) => vec![e.to_string()],
        };
        for v in vfs {
            match VfPool::new(&self.sd, &v.network).release(&v.address, name) {
                Ok(true) => out.push(format!(
                    "destination VF {} returned to network '{}'",
                    v.address, v.network
                )),
                Ok(false) => {}
                Err(e) => out.push(format!(
                    "could not return destination VF {} to network '{}': {e}",
                    v.address, v.network
                )),
            }
        }
        out
    }

    /// libvirt's Prepare on the destination: plan the incoming QEMU from
    /// the request, set up the host and launch it paused, configure its
    /// monitor, and make it listen.
    async fn start(
        &mut self,
        req: &PrepareRequest,
        vfs: &[VfBinding],
    ) -> Result<Prepared, MigrateError> {
        let plan = self.plan_incoming(req, vfs)?;
        let launched = self.launch_incoming(req, vfs, &plan).await?;
        let active = self.active.as_mut().expect("set by prepare");
        active.qmp = Some(launched.qmp.clone());
        active.record = Some(launched.record.clone());
        let me = self.configure_incoming(req, &launched).await?;
        let uri = self.listen_incoming(&launched.qmp, &me).await?;
        Ok(self.prepared(
            uri,
            plan.pairs,
            vfs,
            plan.substitutions,
            launched.record.proc,
            launched.events,
        ))
    }

    /// Prepare, step 1: what the destination runs, worked out from the
    /// request before anything on this host changes.
    fn plan_incoming(
        &self,
        req: &PrepareRequest,
        vfs: &[VfBinding],
    ) -> Result<IncomingPlan, MigrateError> {
        let dst_paths = self.sd.run_paths(&req.name)?;
        let host: BTreeMap<String, String> = req
            .pairs
            .iter()
            .filter(|p| !p.emulated)
            .filter_map(|p| {
                vfs.iter()
                    .find(|v| v.device == p.primary)
                    .map(|v| (p.primary.clone(), v.address.clone()))
            })
            .collect();
        let src_args = req.argv.get(1..).unwrap_or_default();
        let args = destination_args(src_args, &req.source_run_dir, &dst_paths.dir, &host)?;
        let (pairs, substitutions) = destination_pairs(req, vfs, &args);
        // The serial log is a file of the run directory (see `start`): the
        // destination's own, never a path the request names elsewhere.
        let serial_log = match &req.source_serial_log {
            None => None,
            Some(p) => {
                let rel = p
                    .strip_prefix(&req.source_run_dir)
                    .ok()
                    .and_then(|r| r.to_str())
                    .filter(|r| super::proto::plain_name(r).is_ok())
                    .ok_or_else(|| {
                        MigrateError::remote(super::proto::ErrorCode::Protocol, format!(
                            "protocol error: the serial log {} is not a file of the source's run directory",
                            teamvirt_host::escape::escape_controls(&p.display().to_string())
                        ))
                    })?;
                Some(dst_paths.dir.join(rel))
            }
        };
        super::proto::check_files(&self.run_files).map_err(|why| {
            MigrateError::remote(
                super::proto::ErrorCode::Protocol,
                format!("protocol error: {why}"),
            )
        })?;
        let live_xml = retarget_live_xml(&req.live_xml, &req.pairs, &pairs)?;
        Ok(IncomingPlan {
            dir: dst_paths.dir,
            args,
            pairs,
            substitutions,
            serial_log,
            live_xml,
        })
    }

    /// Prepare, step 2: the run directory with the carried files, the
    /// host's VFs and taps, and QEMU started with `-incoming defer`.
    async fn launch_incoming(
        &self,
        req: &PrepareRequest,
        vfs: &[VfBinding],
        plan: &IncomingPlan,
    ) -> Result<run::Launched, MigrateError> {
        self.sd.create_run_dir(&req.name)?;
        if !self.own_emulator {
            // A source on this host: its run directory is here.
            copy_referenced_files(&req.source_run_dir, &plan.dir, &req.argv)?;
        }
        for (name, data) in &self.run_files {
            write_atomic(&plan.dir.join(name), data, 0o600)?;
        }
        // Held until `launch` has saved the record carrying the id, so a
        // start or another migration into this state dir cannot take it.
        let reserved = run::reserve_id(&self.sd)?;
        // Like a start: the destination's real VFs are bound to vfio-pci
        // and get the guest's MAC before QEMU opens them.
        let host = host_requests(&self.sd, &req.live_xml, &req.pairs, &plan.pairs)?;
        // sysfs writes (driver unbind/bind can take a while) and netlink
        // run off the async worker.
        let (hp, dir) = (self.host.clone(), plan.dir.clone());
        blocking(move || hp.prepare_recorded(&dir, &host)).await??;
        // The destination's own taps (the source's descriptors are its own).
        let (sd, live, pairs_c, bridges, dir, args) = (
            self.sd.clone(),
            req.live_xml.clone(),
            plan.pairs.clone(),
            crate::netsetup::dest::lab_bridges(&self.sd, vfs),
            plan.dir.clone(),
            plan.args.clone(),
        );
        let (hostnet, new_args) = blocking(move || {
            let mut args = args;
            crate::netsetup::dest::setup_for_destination(
                &live,
                &crate::network::StateNetworks { sd: &sd },
                &pairs_c,
                &bridges,
                &dir,
                &mut args,
            )
            .map(|h| (h, args))
        })
        .await??;
        let args = new_args;
        let spec = LaunchSpec {
            name: req.name.clone(),
            uuid: req.uuid.clone(),
            // What prepare chose: the domain's XML, as for a start (not a
            // path taken from a run record), or this host's own.
            emulator: self
                .emulator
                .clone()
                .unwrap_or_else(|| crate::identity::xml_emulator(&req.live_xml)),
            args,
            accel: req.accel,
            serial_log: plan.serial_log.clone(),
            pairs: plan.pairs.clone(),
            vfs: vfs.to_vec(),
            substitutions: plan.substitutions.clone(),
            live_xml: plan.live_xml.clone(),
            incoming: true,
            monitor_timeout: Duration::from_secs(30),
            id: reserved.id,
            // The QEMU user's environment, not this process's.
            env: teamvirt_host::privdrop::qemu_identity()
                .ok()
                .map(|id| teamvirt_host::privdrop::qemu_process_env(&id, &plan.dir)),
            pass_fds: hostnet.raw(),
        };
        let launched = run::launch(&self.sd, spec).await;
        drop(hostnet);
        let launched = launched?;
        drop(reserved);
        Ok(launched)
    }

    /// Prepare, step 3: the incoming QEMU's VNC passwords, the incoming
    /// job, migration events and TLS. Returns the QEMU's identity.
    async fn configure_incoming(
        &self,
        req: &PrepareRequest,
        launched: &run::Launched,
    ) -> Result<teamvirt_host::privdrop::Identity, MigrateError> {
        // The VNC password, as a start sets it (it is not in the argv).
        if let Ok((def, _)) = teamvirt_conf::DomainDef::parse_str(&req.live_xml, None) {
            let cmds =
                teamvirt_qemu::vncauth::password_commands(&def, std::time::SystemTime::now());
            crate::start::set_vnc_passwords(&launched.qmp, &cmds)
                .await
                .map_err(|e| MigrateError::DestQemu(e.to_string()))?;
        }
        // `domjobinfo` on the destination shows the incoming job, and
        // `domjobabort` there reaches the process driving the migration.
        let mut incoming = JobInfo::new(&req.source_root.display().to_string());
        incoming.operation = "migration in".into();
        incoming.phase = super::job::JobPhase::Incoming;
        job::publish(&self.sd, &req.name, &incoming)?;
        let qmp = &launched.qmp;
        qmp.migrate_set_capabilities(&[MigrationCapability::on("events")])
            .await
            .map_err(MigrateError::dst)?;
        // This QEMU's own identity (its uid, see `teamvirt_host::dynuid`).
        let me =
            teamvirt_host::privdrop::process_identity(launched.record.proc.pid).map_err(|e| {
                MigrateError::Io {
                    what: "cannot read the destination QEMU's identity".into(),
                    source: e,
                }
            })?;
        if let Some(dir) = &self.tls_dir {
            super::tls::tls_setup(qmp, dir, "server", None, &me)
                .await
                .map_err(MigrateError::dst)?;
        }
        Ok(me)
    }

    /// Prepare, step 4: `migrate-incoming` on a socket only the source may
    /// reach, or on TCP. Returns the URI the source sends to.
    async fn listen_incoming(
        &mut self,
        qmp: &Qmp,
        me: &teamvirt_host::privdrop::Identity,
    ) -> Result<String, MigrateError> {
        if self.unix_incoming {
            // QEMU binds it, and the source QEMU (or root's relay)
            // connects: neither QEMU can enter the root-only run
            // directory, so it is a fresh directory of this QEMU's uid
            // that only the source's gid may also enter, the socket given
            // to the source (nobody else gets in).
            let dir = teamvirt_host::privdrop::socket_dir("migrate-in", me, self.peer.as_ref())
                .map_err(|e| MigrateError::Io {
                    what: "cannot make the incoming socket directory".into(),
                    source: e,
                })?;
            let sock = dir.join("migrate-in.sock");
            self.sock_dir = Some(dir);
            let uri = format!("unix:{}", sock.display());
            qmp.migrate_incoming(&uri)
                .await
                .map_err(MigrateError::dst)?;
            if let Some(peer) = &self.peer {
                teamvirt_host::privdrop::give_socket(&sock, peer).map_err(|e| {
                    MigrateError::Io {
                        what: format!("cannot give {} to the source QEMU", sock.display()),
                        source: e,
                    }
                })?;
            }
            return Ok(uri);
        }
        // Port 0: the kernel picks a free port; QEMU reports it back.
        let listen = if self.listen.contains(':') {
            format!("[{}]", self.listen)
        } else {
            self.listen.clone()
        };
        qmp.migrate_incoming(&format!("tcp:{listen}:{}", self.port))
            .await
            .map_err(MigrateError::dst)?;
        let q = qmp.query_migrate().await.map_err(MigrateError::dst)?;
        let port = q
            .socket_address
            .first()
            .and_then(teamvirt_qmp::SocketAddress::port)
            .ok_or_else(|| {
                MigrateError::dst(teamvirt_qmp::QmpError::Protocol(format!(
                    "query-migrate did not report the listening port: {:?}",
                    q.socket_address
                )))
            })?;
        let host = self.advertise.clone().unwrap_or(listen);
        Ok(format!("tcp:{host}:{port}"))
    }

    fn prepared(
        &self,
        uri: String,
        pairs: Vec<TeamingPair>,
        vfs: &[VfBinding],
        substitutions: Vec<String>,
        pid: ProcId,
        mut events: teamvirt_qmp::EventStream,
    ) -> Prepared {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if tx.send(DestEvent::Qmp(ev)).is_err() {
                    return;
                }
            }
            let _ = tx.send(DestEvent::Exited);
        });
        Prepared {
            uri,
            pairs,
            vfs: vfs.to_vec(),
            substitutions,
            pid: Some(pid),
            events: rx,
        }
    }
}

/// The incoming QEMU as Prepare plans it from the request (see
/// [`LocalDestination::plan_incoming`]).
struct IncomingPlan {
    /// The destination's run directory.
    dir: PathBuf,
    args: Vec<String>,
    /// The pairs with the destination's VFs.
    pairs: Vec<TeamingPair>,
    substitutions: Vec<String>,
    serial_log: Option<PathBuf>,
    live_xml: String,
}

/// The request's pairs with the destination's VFs, and a line for each
/// emulated primary carried over from a lab-mode source.
fn destination_pairs(
    req: &PrepareRequest,
    vfs: &[VfBinding],
    args: &[String],
) -> (Vec<TeamingPair>, Vec<String>) {
    let mut pairs = req.pairs.clone();
    let mut substitutions = Vec::new();
    for p in pairs.iter_mut() {
        if let Some(v) = vfs.iter().find(|v| v.device == p.primary) {
            p.vf = Some(v.address.clone());
            p.network = Some(v.network.clone());
        }
        if p.emulated {
            let model = device_props(args, &p.primary)
                .and_then(|m| m.get("driver").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| "an emulated NIC".into());
            substitutions.push(format!(
                "lab mode (carried over from the source): {} is an emulated {model}{}, not a VF",
                p.primary,
                match (&p.vf, &p.network) {
                    (Some(vf), Some(net)) => format!(" standing for VF {vf} of network '{net}'"),
                    (Some(vf), None) => format!(" standing for VF {vf}"),
                    _ => String::new(),
                }
            ));
        }
    }
    (pairs, substitutions)
}

/// The emulator a destination serving a remote source runs: its own
/// definition's `<emulator>` when the domain is defined here, else
/// `qemu-system-x86_64` on `PATH`. The request's emulator (and its live
/// XML's) must be that same file, or the migration is refused: the
/// source never chooses a program this host runs.
pub fn own_emulator(sd: &StateDir, req: &PrepareRequest) -> Result<PathBuf, MigrateError> {
    use crate::identity::xml_emulator;
    use teamvirt_host::procmatch::resolve_program;
    let configured = read_optional(&sd.domain_xml(&req.name)?)?
        .and_then(|text| teamvirt_conf::DomainDef::parse_str(&text, None).ok())
        .map(|(def, _)| crate::identity::emulator_of(&def))
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"));
    let own = resolve_program(&configured).ok_or_else(|| {
        MigrateError::DestQemu(format!(
            "internal error: the destination's emulator {} is not installed",
            configured.display()
        ))
    })?;
    for asked in [PathBuf::from(&req.emulator), xml_emulator(&req.live_xml)] {
        if resolve_program(&asked).as_deref() != Some(own.as_path()) {
            return Err(MigrateError::DestQemu(format!(
                "unsupported configuration: the source's emulator '{}' is not the destination's ({}): \
                 a destination runs only its own emulator (the domain's definition there, else \
                 qemu-system-x86_64 on PATH)",
                teamvirt_host::escape::escape_controls(&asked.display().to_string()),
                own.display()
            )));
        }
    }
    Ok(own)
}

/// The pool members of a destination network, for transient `device`: the
/// definition loaded from the state directory, then
/// [`crate::network::pool_members`], with the migration's errors.
fn pool_members(sd: &StateDir, net: &str, device: String) -> Result<Vec<String>, MigrateError> {
    let path = sd.network_xml(net)?;
    let Some(text) = read_optional(&path)? else {
        return Err(MigrateError::DestNoNetwork {
            network: net.to_owned(),
            device,
        });
    };
    let (def, _) = NetworkDef::parse_str(&text, Some(&path)).map_err(|e| MigrateError::Xml {
        what: path.display().to_string(),
        source: e,
    })?;
    if !crate::network::is_hostdev_network(&def) {
        return Err(MigrateError::DestNotHostdev {
            network: net.to_owned(),
            device,
        });
    }
    crate::network::pool_members(&def)
        .map(|v| v.iter().map(ToString::to_string).collect())
        .map_err(|e| MigrateError::Runtime(Box::new(e)))
}

/// The host preparation of the destination's real VF primaries. What the
/// source's live XML says about each primary (found by its source VF):
/// managed, MAC and VLAN of a hostdev interface (else its network's VLAN),
/// managed of a plain `<hostdev>`. Emulated primaries are left out.
fn host_requests(
    sd: &StateDir,
    live_xml: &str,
    before: &[TeamingPair],
    after: &[TeamingPair],
) -> Result<Vec<VfRequest>, MigrateError> {
    if after.iter().all(|a| a.emulated || a.vf.is_none()) {
        return Ok(Vec::new());
    }
    let live = teamvirt_conf::DomainDef::parse_str(live_xml, None)
        .map_err(|e| MigrateError::Xml {
            what: "source live XML".into(),
            source: e,
        })?
        .0;
    let tag = |v: Option<&teamvirt_conf::model::Vlan>| v.and_then(|v| v.tags.first()).map(|t| t.id);
    let mut out = Vec::new();
    for (b, a) in before.iter().zip(after) {
        let (Some(src_vf), Some(vf)) = (&b.vf, &a.vf) else {
            continue;
        };
        if a.emulated {
            continue;
        }
        let is_src = |p: Option<&teamvirt_conf::model::PciAddress>| {
            p.is_some_and(|p| p.to_string() == *src_vf)
        };
        if let Some(n) = live
            .devices
            .interfaces
            .iter()
            .find(|n| is_src(n.source_pci()))
        {
            let net_vlan = match &a.network {
                Some(net) => {
                    let path = sd.network_xml(net)?;
                    read_optional(&path)?
                        .and_then(|t| NetworkDef::parse_str(&t, Some(&path)).ok())
                        .and_then(|(d, _)| tag(d.vlan.as_ref()))
                }
                None => None,
            };
            out.push(VfRequest {
                address: vf.clone(),
                managed: n.managed.unwrap_or(false),
                mac: a.primary_mac.clone(),
                vlan: tag(n.vlan.as_ref()).or(net_vlan),
                // While the guest still runs on the source, frames for its
                // MAC must not be steered to this VF (on one PF, or a NIC
                // that sees them): the MAC is set right before it resumes.
                parked: true,
            });
        } else if let Some(h) = live
            .devices
            .hostdevs
            .iter()
            .find(|h| is_src(h.source.pci.as_ref()))
        {
            out.push(VfRequest {
                address: vf.clone(),
                managed: h.managed == Some(true),
                mac: None,
                vlan: None,
                parked: false,
            });
        }
    }
    Ok(out)
}

/// Reserve a destination VF for every transient that has a network, in
/// one step over all pools involved (so the check and the reservation
/// cannot be separated by another process).
fn reserve_in(sd: &StateDir, req: &PrepareRequest) -> Result<Vec<VfBinding>, MigrateError> {
    let mut wanted: Vec<(&TeamingPair, &str)> = Vec::new();
    for p in &req.pairs {
        match (&p.network, &p.vf) {
            (Some(net), _) => wanted.push((p, net)),
            (None, Some(vf)) if !p.emulated => {
                return Err(MigrateError::DestSharedVf {
                    device: p.primary.clone(),
                    vf: vf.clone(),
                })
            }
            _ => {}
        }
    }
    let mut nets: Vec<&str> = wanted.iter().map(|w| w.1).collect();
    nets.sort();
    nets.dedup();
    let mut members: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for net in &nets {
        let device = wanted
            .iter()
            .find(|w| w.1 == *net)
            .map(|w| w.0.primary.clone());
        members.insert(net, pool_members(sd, net, device.unwrap_or_default())?);
    }
    let pools: Vec<VfPool> = nets.iter().map(|n| VfPool::new(sd, n)).collect();
    let name = req.name.clone();
    let got = VfPool::update_many(&pools, |states| {
        let mut got = Vec::new();
        for (pair, net) in &wanted {
            let i = nets.iter().position(|n| n == net).expect("listed");
            let st = &mut states[i];
            let free = members[net]
                .iter()
                .find(|m| !st.allocations.iter().any(|a| &a.address == *m))
                .ok_or_else(|| PoolError::Exhausted {
                    network: net.to_string(),
                })?;
            st.allocations.push(VfAllocation {
                address: free.clone(),
                domain: name.clone(),
                device: pair.primary.clone(),
            });
            got.push(VfBinding {
                network: net.to_string(),
                device: pair.primary.clone(),
                address: free.clone(),
                lab: st.lab(),
            });
        }
        Ok(got)
    })?;
    Ok(got)
}

impl Destination for LocalDestination {
    fn describe(&self) -> String {
        self.sd.root().display().to_string()
    }

    async fn prepare(&mut self, req: &PrepareRequest) -> Result<Prepared, MigrateError> {
        if same_dir(self.sd.root(), &req.source_root) {
            return Err(MigrateError::SameHost(self.sd.root().to_owned()));
        }
        let lock = self
            .sd
            .try_lock_domain(&req.name)?
            .ok_or_else(|| MigrateError::Locked(req.name.clone()))?;
        if let Some(rec) = RunRecord::load(&self.sd, &req.name)? {
            if rec.is_alive() {
                return Err(MigrateError::DestActive(req.name.clone()));
            }
            run::cleanup_dead(&self.sd, &req.name, None)?;
        }
        if let (Some(text), Some(uuid)) = (
            read_optional(&self.sd.domain_xml(&req.name)?)?,
            req.uuid.as_deref(),
        ) {
            if let Ok((def, _)) = teamvirt_conf::DomainDef::parse_str(&text, None) {
                if let Some(have) = def.uuid.map(|u| u.to_string()) {
                    if !have.eq_ignore_ascii_case(uuid) {
                        return Err(MigrateError::DestUuidClash {
                            name: req.name.clone(),
                            uuid: have,
                        });
                    }
                }
            }
        }
        let emulator = if self.own_emulator {
            own_emulator(&self.sd, req)?
        } else {
            PathBuf::from(&req.emulator)
        };
        self.emulator = Some(emulator.clone());
        // The destination's own QEMU must run what the source runs.
        crate::jail::install_probe_jail();
        let caps = teamvirt_qemu::caps::QemuCaps::probe(&emulator, self.sd.cache_dir())
            .await
            .map_err(|e| {
                MigrateError::DestQemu(format!(
                    "internal error: the destination cannot probe its QEMU: {e}"
                ))
            })?;
        super::dest_check::check_qemu(req, &caps)?;
        // Pool locks may wait for another teamvirt: off the async worker.
        let (sd, req_c) = (self.sd.clone(), req.clone());
        let vfs = blocking(move || reserve_in(&sd, &req_c)).await??;
        self.active = Some(Active {
            name: req.name.clone(),
            _lock: lock,
            vfs: vfs.clone(),
            pairs: req.pairs.clone(),
            persistent_xml: req.persistent_xml.clone(),
            qmp: None,
            record: None,
        });
        match self.start(req, &vfs).await {
            Ok(p) => {
                if let Some(a) = self.active.as_mut() {
                    a.pairs = p.pairs.clone();
                }
                Ok(p)
            }
            Err(e) => {
                let _ = self.abort().await;
                Err(e)
            }
        }
    }

    /// libvirt's Finish on the destination: wait for the incoming state,
    /// give the VFs the guest's MACs, resume, check that the primaries are
    /// plugged and taken, and make the domain this host's.
    async fn finish(&mut self, resume: bool, timeout: Duration) -> Result<Finished, MigrateError> {
        let a = self
            .active
            .as_mut()
            .ok_or_else(|| MigrateError::Sequence("finish without prepare"))?;
        let qmp = a
            .qmp
            .clone()
            .ok_or_else(|| MigrateError::Sequence("finish without a destination QEMU"))?;
        wait_incoming_completed(&qmp, timeout).await?;
        give_vfs_guest_macs(&self.sd, &a.name).await?;
        if resume {
            qmp.cont().await.map_err(MigrateError::dst)?;
        }
        let states = wait_primaries_plugged(&qmp, &a.pairs).await?;
        let running = qmp.query_status().await.map_err(MigrateError::dst)? == "running";
        watch_primaries_taken(&self.sd, &a.name, running, &states).await?;
        crate::domlog::event(
            &self.sd,
            &a.name,
            &format!(
                "migration in: completed, guest {}",
                if running { "running" } else { "paused" }
            ),
        );
        if let Some(rec) = a.record.as_mut() {
            rec.incoming = false;
            rec.save(&self.sd)?;
        }
        // Persistent on the destination when --persistent wrote it or it
        // was already defined there (libvirt keeps that definition).
        let def_path = self.sd.domain_xml(&a.name)?;
        if let Some(xml) = &a.persistent_xml {
            write_atomic(&def_path, xml.as_bytes(), 0o600)?;
        }
        let defined = def_path.exists();
        // The domain belongs to the destination now: drop the lock.
        job::clear(&self.sd, &a.name)?;
        let name = a.name.clone();
        self.active = None;
        // The guest doctor, once the guest runs here with its primaries
        // (a paused guest's agent cannot answer).
        let guest = match running {
            true => {
                let (sd, pairs) = (self.sd.clone(), a_pairs(&states));
                blocking(move || {
                    crate::agentops::checkpoint(
                        &sd,
                        &name,
                        &pairs,
                        crate::guestdoc::Checkpoint::Migration,
                    )
                })
                .await?
            }
            false => Vec::new(),
        };
        Ok(Finished {
            pairs: states,
            running,
            defined,
            guest,
        })
    }

    async fn switchover(&mut self) -> Vec<String> {
        let Some(a) = self.active.as_ref() else {
            return Vec::new();
        };
        let Ok(paths) = self.sd.run_paths(&a.name) else {
            return Vec::new();
        };
        let dir = paths.dir;
        blocking(move || {
            teamvirt_host::netdev::pair::wire(&dir, teamvirt_host::netdev::pair::Active::Standby)
        })
        .await
        .unwrap_or_else(|e| vec![e.to_string()])
    }

    async fn abort(&mut self) -> Result<Vec<String>, MigrateError> {
        let Some(a) = self.active.take() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if let Some(rec) = &a.record {
            if rec.is_alive() {
                let gone = crate::stop::stop_qemu(
                    &self.sd,
                    &a.name,
                    rec.proc,
                    a.qmp.as_ref(),
                    crate::stop::StopPolicy::OWN_DESTINATION,
                )
                .await
                .is_ok();
                out.push(if gone {
                    format!("destination QEMU (pid {}) stopped", rec.proc.pid)
                } else {
                    format!(
                        "destination QEMU (pid {}) could not be stopped",
                        rec.proc.pid
                    )
                });
            } else {
                out.push(format!(
                    "destination QEMU (pid {}) had already exited",
                    rec.proc.pid
                ));
            }
            run::forget(&self.sd, &a.name)?;
            job::clear(&self.sd, &a.name)?;
        }
        out.extend(self.release(&a.name, &a.vfs));
        Ok(out)
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Finish, step 1: until the incoming migration has completed (or failed,
/// or `timeout` passed).
async fn wait_incoming_completed(qmp: &Qmp, timeout: Duration) -> Result<(), MigrateError> {
    let deadline = Instant::now() + timeout;
    // Woken by QEMU's MIGRATION events (the `events` capability is on),
    // not a poll period: every millisecond between the load's end and
    // `cont` is guest downtime. The timer only bounds a missed event.
    let mut events = qmp.subscribe();
    loop {
        let q = qmp.query_migrate().await.map_err(MigrateError::dst)?;
        match q.status {
            MigrationStatus::Completed => return Ok(()),
            MigrationStatus::Failed | MigrationStatus::Cancelled => {
                return Err(MigrateError::IncomingEnded {
                    status: q.status.to_string(),
                    desc: q.error_desc,
                })
            }
            _ if Instant::now() >= deadline => {
                return Err(MigrateError::IncomingTimeout(timeout.as_secs()))
            }
            _ => {
                // Also ends at once when QEMU goes away (the stream
                // closes), so the next query reports that without
                // delay and a killed destination is named as such.
                let _ = tokio::time::timeout(Duration::from_millis(250), async {
                    while let Some(ev) = events.recv().await {
                        if ev.name == "MIGRATION" {
                            return;
                        }
                    }
                })
                .await;
            }
        }
    }
}

/// Finish, step 2: the VFs get the guest's MAC (and VLAN) now: QEMU plugs
/// them when the guest runs here. The guest listens on its standbys until
/// it has taken them (netdev::pair, see [`watch_primaries_taken`]).
async fn give_vfs_guest_macs(sd: &StateDir, name: &str) -> Result<(), MigrateError> {
    let dir = sd.run_paths(name)?.dir;
    let problems =
        blocking(move || teamvirt_host::netdev::pair::apply_parked_standby_first(&dir)).await?;
    if !problems.is_empty() {
        return Err(MigrateError::remote(
            super::proto::ErrorCode::OperationFailed,
            format!(
                "operation failed: the destination's VFs could not take the guest's MAC: {}",
                problems.join("; ")
            ),
        ));
    }
    Ok(())
}

/// Finish, step 3: the primaries are plugged while the device state loads;
/// give the hotplug a moment to show on the bus.
async fn wait_primaries_plugged(
    qmp: &Qmp,
    pairs: &[TeamingPair],
) -> Result<Vec<PairState>, MigrateError> {
    let mut states = teaming::query(qmp, pairs)
        .await
        .map_err(MigrateError::dst)?;
    let plug_deadline = Instant::now() + Duration::from_secs(10);
    while states.iter().any(|s| s.negotiated && !s.plugged) && Instant::now() < plug_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        states = teaming::query(qmp, pairs)
            .await
            .map_err(MigrateError::dst)?;
    }
    Ok(states)
}

/// Finish, step 4: the pairs' active halves become the primaries once a
/// running guest is heard on them (a paused guest's at once), logged.
async fn watch_primaries_taken(
    sd: &StateDir,
    name: &str,
    running: bool,
    states: &[PairState],
) -> Result<(), MigrateError> {
    // A paused guest takes its primaries whenever it is resumed, with
    // nobody watching: theirs at once.
    let dir = sd.run_paths(name)?.dir;
    // Only primaries QEMU plugged are waited for (by their MACs).
    let plugged: Vec<String> = states
        .iter()
        .filter(|s| s.negotiated && s.plugged)
        .filter_map(|s| s.pair.primary_mac.clone().or(s.pair.standby_mac.clone()))
        .collect();
    let awaited = plugged.clone();
    let heard = blocking(move || match running {
        true => teamvirt_host::netdev::pair::primary_when_heard(
            &dir,
            teamvirt_host::netdev::pair::HEARD_BOUND,
            Some(&awaited),
        ),
        false => teamvirt_host::netdev::pair::Heard {
            problems: teamvirt_host::netdev::pair::wire(
                &dir,
                teamvirt_host::netdev::pair::Active::Primary,
            ),
            ..Default::default()
        },
    })
    .await?;
    if running && !plugged.is_empty() && heard.pairs > 0 {
        crate::domlog::event(
            sd,
            name,
            &if !heard.countable {
                "warning: nothing shows when the guest takes its primaries (no per-VF statistics or vfio interrupts to read); their halves of the pairs are its ports at once".to_string()
            } else if heard.heard {
                format!(
                    "the guest took its primaries {:.1} s after the resume; their halves of the pairs are its ports now",
                    heard.waited.as_secs_f64()
                )
            } else {
                format!(
                    "warning: the guest sent nothing through its primaries within {} s; their halves of the pairs are its ports anyway",
                    heard.waited.as_secs()
                )
            },
        );
    }
    for p in heard.problems {
        crate::domlog::event(sd, name, &format!("warning: {p}"));
    }
    Ok(())
}

/// Run blocking host work (sysfs, netlink, flock) on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MigrateError> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::Accel;
    use teamvirt_conf::DomainDef;

    fn pair(net: Option<&str>, vf: Option<&str>, emulated: bool) -> TeamingPair {
        TeamingPair {
            standby: "ua-sb".into(),
            primary: "hostdev0".into(),
            standby_mac: None,
            primary_mac: None,
            vf: vf.map(Into::into),
            network: net.map(Into::into),
            emulated,
        }
    }

    /// The destination prepares its own VFs like the source did: managed,
    /// MAC and VLAN from the source's live XML, plain <hostdev> bound only;
    /// an unmanaged plain hostdev is checked (it must already be on
    /// vfio-pci there), emulated primaries are left alone.
    #[test]
    fn destination_host_requests_follow_the_source_live_xml() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let live = "<domain type='qemu'><name>vm</name><memory unit='MiB'>64</memory>
          <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>
          <interface type='hostdev' managed='yes'><mac address='52:54:00:00:00:01'/>
            <source><address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x1'/></source>
            <vlan><tag id='7'/></vlan><teaming type='transient' persistent='ua-sb'/></interface>
          <hostdev mode='subsystem' type='pci' managed='yes'><source>
            <address domain='0x0000' bus='0x5e' slot='0x00' function='0x3'/></source></hostdev>
          <hostdev mode='subsystem' type='pci' managed='no'><source>
            <address domain='0x0000' bus='0x5e' slot='0x00' function='0x4'/></source></hostdev>
          </devices></domain>";
        let mut a = pair(Some("pool"), Some("0000:3b:02.1"), false);
        a.primary_mac = Some("52:54:00:00:00:01".into());
        let before = vec![
            a.clone(),
            pair(None, Some("0000:5e:00.3"), false),
            pair(None, Some("0000:5e:00.4"), false),
            pair(Some("pool"), Some("0000:3b:02.2"), true),
        ];
        let mut after = before.clone();
        after[0].vf = Some("0000:af:10.0".into());
        let got = host_requests(&sd, live, &before, &after).unwrap();
        assert_eq!(
            got,
            [
                VfRequest {
                    address: "0000:af:10.0".into(),
                    managed: true,
                    mac: Some("52:54:00:00:00:01".into()),
                    vlan: Some(7),
                    parked: true,
                },
                VfRequest {
                    address: "0000:5e:00.3".into(),
                    managed: true,
                    mac: None,
                    vlan: None,
                    parked: false,
                },
                VfRequest {
                    address: "0000:5e:00.4".into(),
                    managed: false,
                    mac: None,
                    vlan: None,
                    parked: false,
                },
            ]
        );
        // Lab mode only: nothing to prepare, the live XML is not even read.
        assert!(host_requests(&sd, "", &before[3..], &after[3..])
            .unwrap()
            .is_empty());
    }

    fn req(pairs: Vec<TeamingPair>) -> PrepareRequest {
        PrepareRequest {
            name: "vm".into(),
            uuid: None,
            emulator: "/bin/false".into(),
            argv: vec![],
            accel: Accel::Tcg,
            source_run_dir: "/src/run/vm".into(),
            source_serial_log: None,
            source_root: "/src".into(),
            pairs,
            live_xml: String::new(),
            persistent_xml: None,
        }
    }

    const POOL: &str = "<network><name>vfpool</name><forward mode='hostdev' managed='yes'><address type='pci' domain='0x0000' bus='0x81' slot='0x00' function='0x1'/><address type='pci' domain='0x0000' bus='0x81' slot='0x00' function='0x2'/></forward></network>";

    #[test]
    fn reserve_checks_network_and_pool() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let d = LocalDestination::new(sd.clone());
        let r = req(vec![pair(Some("vfpool"), Some("0000:03:07.1"), true)]);
        assert!(matches!(
            d.reserve(&r),
            Err(MigrateError::DestNoNetwork { .. })
        ));
        write_atomic(
            &sd.network_xml("vfpool").unwrap(),
            b"<network><name>vfpool</name><forward mode='nat'/></network>",
            0o600,
        )
        .unwrap();
        assert!(matches!(
            d.reserve(&r),
            Err(MigrateError::DestNotHostdev { .. })
        ));
        write_atomic(&sd.network_xml("vfpool").unwrap(), POOL.as_bytes(), 0o600).unwrap();
        let got = d.reserve(&r).unwrap();
        assert_eq!(got[0].address, "0000:81:00.1");
        let pool = VfPool::new(&sd, "vfpool");
        pool.reserve("0000:81:00.2", "other", "hostdev0").unwrap();
        let mut r2 = r.clone();
        r2.name = "vm2".into();
        let e = d.reserve(&r2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "internal error: network 'vfpool' requires exclusive access to interfaces, but none are available"
        );
        assert_eq!(d.release("vm", &got).len(), 1);
        assert_eq!(pool.state().unwrap().allocations.len(), 1);
    }

    #[test]
    fn direct_real_vf_cannot_be_shared_on_one_host() {
        let t = tempfile::tempdir().unwrap();
        let d = LocalDestination::new(StateDir::open(t.path()).unwrap());
        let e = d
            .reserve(&req(vec![pair(None, Some("0000:03:07.1"), false)]))
            .unwrap_err();
        assert!(matches!(e, MigrateError::DestSharedVf { .. }), "{e}");
        // Lab mode without a network: nothing to reserve.
        assert!(d
            .reserve(&req(vec![pair(None, Some("0000:03:07.1"), true)]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn live_xml_source_address_is_retargeted() {
        let xml = "<domain type='qemu' id='3'><name>vm</name><memory unit='KiB'>65536</memory>
<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
<devices>
<interface type='hostdev' managed='yes'><mac address='52:54:00:00:00:01'/>
<source><address type='pci' domain='0x0000' bus='0x03' slot='0x07' function='0x1'/></source>
<teaming type='transient' persistent='ua-sb'/>
<alias name='hostdev0'/>
<address type='pci' domain='0x0000' bus='0x03' slot='0x07' function='0x1'/></interface>
</devices>
<metadata><teamvirt:runtime xmlns:teamvirt='https://teamvirt.dev/xmlns/runtime/1' accel='tcg'>
<teamvirt:vf network='vfpool' device='hostdev0' address='0000:03:07.1'/></teamvirt:runtime></metadata>
</domain>";
        let out = retarget_live_xml(
            xml,
            &[pair(Some("vfpool"), Some("0000:03:07.1"), true)],
            &[pair(Some("vfpool"), Some("0000:81:00.2"), true)],
        )
        .unwrap();
        let (def, _) = DomainDef::parse_str(&out, None).unwrap();
        let n = &def.devices.interfaces[0];
        assert_eq!(
            n.source.as_ref().unwrap().pci.unwrap().to_string(),
            "0000:81:00.2",
            "{out}"
        );
        // The guest-side address is another field: untouched.
        assert!(
            out.contains(
                "<address type='pci' domain='0x0000' bus='0x03' slot='0x07' function='0x1'/>"
            ),
            "{out}"
        );
        assert!(out.contains("address='0000:81:00.2'/>"), "{out}");
        assert!(!out.contains("address='0000:03:07.1'"), "{out}");
        assert!(out.starts_with("<domain type='qemu' id='3'"), "{out}");
        // QEMU's aliases stay: hotplug finds devices by them on the
        // destination (`detach-device-alias NAME hostdev0`).
        assert!(out.contains("<alias name='hostdev0'/>"), "{out}");
        // Nothing moved: the text is kept as is.
        let same = retarget_live_xml(
            xml,
            &[pair(Some("vfpool"), Some("0000:03:07.1"), true)],
            &[pair(Some("vfpool"), Some("0000:03:07.1"), true)],
        )
        .unwrap();
        assert_eq!(same, xml);
    }
}
