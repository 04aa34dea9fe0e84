//! `start`: from the stored definition to a running QEMU.
//!
//! 1. Accelerator (`--accel`, else kvm only where usable), capabilities,
//!    validation.
//! 2. Under the locks of every VF pool the domain uses: release what it
//!    may still hold, run the command-line pipeline (defaults, network
//!    resolution picking each pool's first free VF, topology checks,
//!    argv), refuse topologies that cannot work, record the VFs taken.
//! 3. Runtime bits of the argv: QMP socket, serial log, master key,
//!    `-incoming` for migration destinations.
//! 4. Live XML: resolved interfaces (VF addresses), aliases, id, and a
//!    `<metadata>` record of the VFs and lab-mode substitutions.
//! 5. Launch detached, wait for QMP, `cont`; optionally wait for failover.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use teamvirt_conf::model::{DomainDef, InterfaceType, PciAddress, Teaming, TeamingType, Vlan};
use teamvirt_conf::{Diagnostic, Severity};
use teamvirt_qemu::command::{convert, BuildOptions, Conversion, Monitor, Substitution};
use teamvirt_qemu::resolve::NetworkSource;
use teamvirt_qemu::topology::fatal_at_start;

use crate::accel::Accel;
use crate::error::RuntimeError;
use crate::identity::emulator_of;
use crate::live;
use crate::network::{is_hostdev_network, StateNetworks};
use crate::pool::{VfAllocation, VfPool};
use crate::run::{self, LaunchSpec, RunRecord, VfBinding};
use crate::teaming::{self, PairState, TeamingPair};
use crate::Runtime;
use teamvirt_host::hostdev::VfRequest;
use teamvirt_host::state::{write_atomic, RunPaths};
use teamvirt_host::sysfs::parse_pci;

/// Options of `start`.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// `None`: kvm if usable here, else tcg.
    pub accel: Option<Accel>,
    /// Lab mode for every VF primary of this start.
    pub emulate_vf: bool,
    /// Wait this long for every pair to negotiate failover.
    pub wait_failover: Option<Duration>,
    /// Migration destination: `-incoming URI` (e.g. `defer`), vCPUs stay
    /// stopped.
    pub incoming: Option<String>,
    /// How long QEMU may take to open its monitor (default 30 s).
    pub monitor_timeout: Option<Duration>,
    /// virsh `start --paused`: QEMU starts with its vCPUs stopped (`-S`)
    /// and is not resumed; `resume` runs it.
    pub paused: bool,
}

/// What `start` did.
#[derive(Debug)]
pub struct StartReport {
    pub record: RunRecord,
    /// Lab-mode substitutions (also printed by the CLI and in the live XML).
    pub substitutions: Vec<Substitution>,
    /// Non-fatal diagnostics (validation and topology warnings).
    pub warnings: Vec<Diagnostic>,
    /// Remarks such as the accelerator chosen.
    pub notes: Vec<String>,
    /// Pair states when `wait_failover` was asked for (all working).
    pub teaming: Option<Vec<PairState>>,
    /// The guest doctor's lines after the failover wait (see
    /// [`crate::guestdoc`]; also in the domain log).
    pub guest: Vec<crate::guestdoc::CheckLine>,
    /// From spawning QEMU until QMP answered and the vCPUs run.
    pub launch_time: Duration,
}

/// Returns once a `destroy` asks to stop `name` (polled: the request is a
/// held lock, see [`teamvirt_host::state::StateDir::request_stop`]).
async fn stop_requested(
    sd: &teamvirt_host::state::StateDir,
    name: &str,
) -> Result<(), RuntimeError> {
    loop {
        if sd.stop_requested(name)? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first substitution line, as printed and recorded.
pub fn describe_substitution(s: &Substitution) -> String {
    format!(
        "lab mode: failover primary {} ({}) emulated by {} (romfile='') with MAC {} paired with standby {}",
        s.id,
        s.host.as_deref().map_or("no VF".to_string(), |h| format!("stands in for VF {h}")),
        s.model,
        s.mac,
        s.pair
    )
}

impl Runtime {
    /// `start NAME`: the defined domain.
    pub async fn start(
        &self,
        name: &str,
        opts: &StartOptions,
    ) -> Result<StartReport, RuntimeError> {
        let (def, text) = match self.domain_def(name) {
            Ok(d) => d,
            // A running transient domain (undefined while it runs) is
            // found, and already running, as libvirt says.
            Err(RuntimeError::NoDomain(n)) => {
                return Err(match crate::run::running(&self.sd, name)? {
                    Some(_) => RuntimeError::AlreadyRunning(n),
                    None => RuntimeError::NoDomain(n),
                })
            }
            Err(e) => return Err(e),
        };
        self.start_def(def, &text, opts).await
    }

    /// Start a domain from a definition that need not be stored here
    /// (transient; the migration destination uses this with `incoming`).
    pub async fn start_def(
        &self,
        def: DomainDef,
        text: &str,
        opts: &StartOptions,
    ) -> Result<StartReport, RuntimeError> {
        let name = def.name.clone();
        teamvirt_host::state::check_name(&name)?;
        // VNC passwords are set over QMP once QEMU runs (`password=on`
        // keeps every client out until then), never on its command line.
        let vnc_auth =
            teamvirt_qemu::vncauth::password_commands(&def, std::time::SystemTime::now());
        let _lock = self.sd.lock_domain(&name)?;
        _lock.note_holder("teamvirt start");
        if let Some(rec) = RunRecord::load(&self.sd, &name)? {
            if rec.is_alive() {
                return Err(RuntimeError::AlreadyRunning(name));
            }
            run::cleanup_dead(&self.sd, &name, None)?;
        }
        let paths = self.sd.create_run_dir(&name)?;
        let prep = match self.prepare(def, text, opts, &paths).await {
            Ok(p) => p,
            Err(e) => {
                let _ = run::release_vfs(&self.sd, &name);
                return Err(e);
            }
        };
        let Prepared {
            spec,
            id,
            substitutions,
            warnings,
            notes,
            host,
            hostnet,
        } = prep;
        self.prepare_host(&name, &paths, &host, opts)?;
        let t0 = Instant::now();
        // A paused guest negotiates nothing: there is nothing to wait for.
        let wait = opts
            .wait_failover
            .filter(|_| opts.incoming.is_none() && !opts.paused);
        let outcome = self
            .launch_and_wait(&name, spec, &vnc_auth, opts, wait, t0)
            .await;
        // QEMU has its own copies of the tap descriptors now.
        drop(hostnet);
        // The id is ours until the record carrying it exists (or the start failed).
        drop(id);
        let (record, launch_time, states) = match outcome {
            Ok(x) => x,
            Err(e) => return Err(self.launch_failed(&name, _lock, e)),
        };
        log_launched(&self.sd, &name, &record);
        let mut report = StartReport {
            record,
            substitutions,
            warnings,
            notes,
            teaming: None,
            guest: Vec::new(),
            launch_time,
        };
        if let (Some(wait), Some(states)) = (wait, states) {
            self.check_failover(name, wait, states, &mut report)?;
        }
        Ok(report)
    }

    /// Start, on the host: real VFs go to vfio-pci and get the guest's
    /// MAC before QEMU opens them, and the pairs' bridge ports are wired.
    fn prepare_host(
        &self,
        name: &str,
        paths: &RunPaths,
        host: &[VfRequest],
        opts: &StartOptions,
    ) -> Result<(), RuntimeError> {
        // Recorded so that whoever sees QEMU gone gives them back.
        if let Err(e) = self.host.prepare_recorded(&paths.dir, host) {
            let _ = run::release_vfs(&self.sd, name);
            return Err(e.into());
        }
        // The pairs' bridge ports follow the VFs' MACs: the primary's half
        // is the guest's from the start (netdev::pair). An incoming start
        // leaves them locked: the guest still runs where it comes from,
        // maybe on this very bridge, and whoever resumes it wires them.
        let wiring = match opts.incoming {
            None => teamvirt_host::netdev::pair::wire(
                &paths.dir,
                teamvirt_host::netdev::pair::Active::Primary,
            ),
            Some(_) => Vec::new(),
        };
        for p in wiring {
            tracing::warn!("{p}");
            crate::domlog::event(&self.sd, name, &format!("warning: {p}"));
        }
        Ok(())
    }

    /// Start: launch QEMU, set its VNC passwords and, when asked, wait for
    /// failover to be negotiated. Returns the record, the launch time and
    /// the pairs' states when waited for.
    async fn launch_and_wait(
        &self,
        name: &str,
        spec: LaunchSpec,
        vnc_auth: &[teamvirt_qemu::vncauth::VncPassword],
        opts: &StartOptions,
        wait: Option<Duration>,
        t0: Instant,
    ) -> Result<(RunRecord, Duration, Option<Vec<PairState>>), RuntimeError> {
        let pairs = spec.pairs.clone();
        // The QMP connection's tasks live on the process's runtime, which
        // outlasts the wait for failover.
        let mut l = run::launch(&self.sd, spec).await?;
        if let Err(e) = set_vnc_passwords(&l.qmp, vnc_auth).await {
            // Nobody could connect to it: stopped, as libvirt does.
            let _ = l.qmp.quit().await;
            return Err(e);
        }
        if opts.paused && opts.incoming.is_none() {
            // Launched as if incoming (no `cont`); it is not a
            // migration destination, which the record must say.
            l.record.incoming = false;
            l.record.save(&self.sd)?;
        }
        let launch_time = t0.elapsed();
        let states = match wait {
            // A `destroy` must not wait out the whole failover wait
            // behind this start's domain lock: it asks, this gives way.
            Some(w) => tokio::select! {
                r = teaming::wait_negotiated(&l.qmp, &mut l.events, &pairs, w) => Some(r?),
                r = stop_requested(&self.sd, name) => {
                    r?;
                    return Err(RuntimeError::DestroyedWhileWaiting { name: name.to_owned() });
                }
            },
            None => None,
        };
        Ok((l.record, launch_time, states))
    }

    /// Start: the launch (or the failover wait) failed. What to report,
    /// once a destroy that interrupted the wait is done.
    fn launch_failed(
        &self,
        name: &str,
        lock: teamvirt_host::lock::FileLock,
        e: RuntimeError,
    ) -> RuntimeError {
        match e {
            RuntimeError::DestroyedWhileWaiting { name } => {
                // The destroy stops QEMU and releases everything under the
                // domain lock; reported once it is done, saying whether it
                // succeeded.
                drop(lock);
                let _done = match self.sd.wait_stop_requests(&name) {
                    Ok(d) => d,
                    Err(e) => return e.into(),
                };
                let running =
                    matches!(RunRecord::load(&self.sd, &name), Ok(Some(r)) if r.is_alive());
                if running {
                    RuntimeError::DestroyInterruptedWait { name }
                } else {
                    RuntimeError::DestroyedWhileWaiting { name }
                }
            }
            e => {
                // A QEMU that failed to come up is gone; one that is running
                // (failover wait failed) keeps its VFs.
                if !matches!(RunRecord::load(&self.sd, name), Ok(Some(r)) if r.is_alive()) {
                    let _ = run::release_vfs(&self.sd, name);
                }
                e
            }
        }
    }

    /// Start, after the failover wait: every pair negotiated, or the start
    /// fails saying which did not; then the guest doctor's checkpoint.
    fn check_failover(
        &self,
        name: String,
        wait: Duration,
        states: Vec<PairState>,
        report: &mut StartReport,
    ) -> Result<(), RuntimeError> {
        let problems: Vec<String> = states.iter().filter_map(PairState::problem).collect();
        if !problems.is_empty() {
            let substitutions = report
                .substitutions
                .iter()
                .map(describe_substitution)
                .collect();
            return Err(RuntimeError::FailoverNotNegotiated {
                name,
                secs: wait.as_secs(),
                problems,
                states,
                substitutions,
            });
        }
        let pairs: Vec<_> = states.iter().map(|s| s.pair.clone()).collect();
        report.guest = crate::agentops::checkpoint(
            &self.sd,
            &name,
            &pairs,
            crate::guestdoc::Checkpoint::Start,
        );
        report.teaming = Some(states);
        Ok(())
    }

    /// Everything a start does before QEMU runs (libvirt's
    /// qemuProcessPrepareDomain and PrepareHost): the accelerator, the
    /// validation, the VF pools, the host's taps, the conversion with its
    /// VFs reserved, and the launch spec.
    async fn prepare(
        &self,
        mut def: DomainDef,
        text: &str,
        opts: &StartOptions,
        paths: &RunPaths,
    ) -> Result<Prepared, RuntimeError> {
        let name = def.name.clone();
        let (accel, notes) = choose_accel(&mut def, opts);
        let caps = self.caps(&emulator_of(&def)).await?;
        let mut warnings = teamvirt_qemu::validate::validate(&def, Some(caps.supports_failover()));
        if warnings.iter().any(Diagnostic::is_error) {
            return Err(RuntimeError::Invalid {
                diags: warnings,
                text: text.to_owned(),
                file: None,
            });
        }

        let src = StateNetworks { sd: &self.sd };
        let pools = self.start_pools(&def, &src, opts)?;
        // Taps, macvtaps and lab-bridge ports, made before QEMU exists
        // (their descriptors are on its command line).
        crate::netsetup::check_standbys(&def, &src)?;
        let hostnet = crate::netsetup::setup_for_start(
            &def,
            &src,
            &pools.lab_bridges,
            pools.emulate,
            &paths.dir,
        )?;
        let bopts = BuildOptions {
            test_env: false,
            domain_dir: Some(paths.dir.clone()),
            monitor: Monitor::Path(paths.qmp_sock.clone()),
            emulate_vf: pools.emulate,
            net_fds: hostnet.net_fds.clone(),
            lab_fds: hostnet.lab_fds.clone(),
            // The QEMU user's USER, LOGNAME and PATH, not root's (the
            // launch fails on an identity that does not resolve).
            env: teamvirt_host::privdrop::qemu_identity()
                .ok()
                .map(|id| teamvirt_host::privdrop::qemu_env(&id)),
        };
        let conv = self.convert_reserving_vfs(&def, text, &caps, &src, &pools, &bopts)?;
        warnings.extend(conv.warnings.iter().cloned());

        let reserved = run::reserve_id(&self.sd)?;
        let id = reserved.id;
        let vfs = vf_bindings(&conv, &pools.labs);
        let pairs = teaming_pairs(&conv);
        let host = host_requests(&conv, &pools.net_vlans);
        let substitutions = conv.built.substitutions.clone();
        let sub_lines: Vec<String> = substitutions.iter().map(describe_substitution).collect();
        let live_xml = live::live_xml(&conv, id, accel, &vfs, &substitutions);
        let (emulator, argv, serial_log) = launch_argv(&conv, paths, opts)?;
        let spec = LaunchSpec {
            name: name.clone(),
            id,
            uuid: def.uuid.map(|u| u.to_string()),
            emulator,
            env: Some(conv.built.cmd.env.clone()),
            args: argv,
            accel,
            serial_log: Some(serial_log),
            pairs,
            vfs,
            substitutions: sub_lines,
            live_xml,
            // No `cont` after the launch: a migration destination waits for
            // its copy, a paused start for `resume` (see `start_def`).
            incoming: opts.incoming.is_some() || opts.paused,
            monitor_timeout: opts.monitor_timeout.unwrap_or(Duration::from_secs(30)),
            pass_fds: hostnet.raw(),
        };
        Ok(Prepared {
            spec,
            id: reserved,
            substitutions,
            warnings,
            notes,
            host,
            hostnet,
        })
    }

    /// Prepare: the VF pools this domain draws from, and whether any of
    /// them is in lab mode.
    fn start_pools(
        &self,
        def: &DomainDef,
        src: &StateNetworks,
        opts: &StartOptions,
    ) -> Result<StartPools, RuntimeError> {
        let mut nets = BTreeSet::new();
        let mut net_vlans = BTreeMap::new();
        for iface in def
            .devices
            .interfaces
            .iter()
            .filter(|i| i.type_ == InterfaceType::Network)
        {
            let net = iface.source_network().unwrap_or_default().to_owned();
            let Some((nd, _)) = src.lookup(&net).map_err(RuntimeError::from)? else {
                return Err(RuntimeError::NoNetwork(net));
            };
            if is_hostdev_network(&nd) {
                net_vlans.insert(net.clone(), vlan_tag(nd.vlan.as_ref()));
                nets.insert(net);
            }
        }
        let pools: Vec<VfPool> = nets.iter().map(|n| VfPool::new(&self.sd, n)).collect();
        let mut emulate = opts.emulate_vf;
        let mut lab_bridges = BTreeMap::new();
        let mut labs = BTreeMap::new();
        for p in &pools {
            let st = p.state()?;
            emulate |= st.emulate_vf;
            labs.insert(p.network().to_owned(), st.lab());
            if let (true, Some(br)) = (st.emulate_vf, st.lab_bridge) {
                lab_bridges.insert(p.network().to_owned(), br);
            }
        }
        Ok(StartPools {
            nets,
            net_vlans,
            pools,
            emulate,
            lab_bridges,
            labs,
        })
    }

    /// Prepare: the conversion to QEMU's command line, under the pools'
    /// locks, with the VFs it chose recorded as this domain's.
    fn convert_reserving_vfs(
        &self,
        def: &DomainDef,
        text: &str,
        caps: &teamvirt_qemu::caps::QemuCaps,
        src: &StateNetworks,
        pools: &StartPools,
        bopts: &BuildOptions,
    ) -> Result<Conversion, RuntimeError> {
        let name = def.name.clone();
        let nets = &pools.nets;
        let conv: Conversion = VfPool::update_many(&pools.pools, |states| {
            for st in states.iter_mut() {
                st.allocations.retain(|a| a.domain != name);
            }
            let in_use: Vec<PciAddress> = states
                .iter()
                .flat_map(|s| s.allocations.iter())
                .filter_map(|a| parse_pci(&a.address))
                .collect();
            let conv = match convert(def.clone(), caps, src, &in_use, bopts) {
                Ok(c) => c,
                Err(e) => return Ok(Err(RuntimeError::from(e))),
            };
            // These only warn elsewhere (domxml-to-native); at start they
            // are errors: QEMU could never plug the primary.
            let fatal: Vec<Diagnostic> = conv
                .warnings
                .iter()
                .filter(|d| fatal_at_start(d.code))
                .map(|d| Diagnostic {
                    severity: Severity::Error,
                    ..d.clone()
                })
                .collect();
            if !fatal.is_empty() {
                let file = self.sd.domain_xml(&name).ok().filter(|p| p.exists());
                return Ok(Err(RuntimeError::Refused {
                    name: name.clone(),
                    diags: fatal,
                    text: text.to_owned(),
                    file,
                }));
            }
            for (i, a) in conv.actual.iter().enumerate() {
                if let (InterfaceType::Hostdev, Some(net), Some(addr)) =
                    (a.type_, &a.network, &a.hostdev)
                {
                    if let Some(k) = nets.iter().position(|n| n == net) {
                        states[k].allocations.push(VfAllocation {
                            address: addr.to_string(),
                            domain: name.clone(),
                            device: conv.built.aliases.interfaces[i].clone(),
                        });
                    }
                }
            }
            Ok(Ok(conv))
        })??;
        Ok(conv)
    }
}

/// The domain's log after a launch: the VFs bound and the lab-mode
/// substitutions.
fn log_launched(sd: &teamvirt_host::state::StateDir, name: &str, record: &RunRecord) {
    for v in &record.vfs {
        crate::domlog::event(
            sd,
            name,
            &format!(
                "VF {} of network '{}' bound to device {}",
                v.address, v.network, v.device
            ),
        );
    }
    // Each line says "lab mode: ..." already.
    for line in &record.substitutions {
        crate::domlog::event(sd, name, line);
    }
}

/// The VF pools a start draws from (see [`Runtime::start_pools`]).
struct StartPools {
    /// The hostdev networks the domain's interfaces name.
    nets: BTreeSet<String>,
    /// Each network's VLAN tag.
    net_vlans: BTreeMap<String, Option<u32>>,
    /// One pool per network of `nets`, in that order.
    pools: Vec<VfPool>,
    /// Lab mode, asked for or set on one of the pools.
    emulate: bool,
    lab_bridges: BTreeMap<String, String>,
    labs: BTreeMap<String, Option<crate::record::LabSettings>>,
}

/// The accelerator a start uses (asked for, else KVM when usable), the
/// domain's type set to match, and a note when KVM was asked for by the
/// domain but cannot be had.
fn choose_accel(def: &mut DomainDef, opts: &StartOptions) -> (Accel, Vec<String>) {
    let name = def.name.clone();
    let mut notes = Vec::new();
    let accel = match opts.accel {
        Some(a) => a,
        None => match crate::accel::kvm_unusable() {
            None => Accel::Kvm,
            Some(why) => {
                if def.type_ == "kvm" {
                    notes.push(format!(
                        "domain type 'kvm' but KVM is not usable on this host ({why}): running '{name}' with TCG (choose with --accel)"
                    ));
                }
                Accel::Tcg
            }
        },
    };
    def.type_ = match accel {
        Accel::Kvm => "kvm".into(),
        Accel::Tcg => "qemu".into(),
    };
    (accel, notes)
}

/// The VFs the conversion chose, by network and device alias.
fn vf_bindings(
    conv: &Conversion,
    labs: &BTreeMap<String, Option<crate::record::LabSettings>>,
) -> Vec<VfBinding> {
    conv.actual
        .iter()
        .enumerate()
        .filter_map(|(i, a)| match (a.type_, &a.network, &a.hostdev) {
            (InterfaceType::Hostdev, Some(net), Some(addr)) => Some(VfBinding {
                network: net.clone(),
                device: conv.built.aliases.interfaces[i].clone(),
                address: addr.to_string(),
                lab: labs.get(net).cloned().flatten(),
            }),
            _ => None,
        })
        .collect()
}

/// The runtime parts of the argv: the master key written, the emulator
/// taken off, `-no-shutdown` dropped for a domain that powers off by
/// itself, the serial log and `-incoming`. Returns the emulator, the
/// arguments and the serial log.
fn launch_argv(
    conv: &Conversion,
    paths: &RunPaths,
    opts: &StartOptions,
) -> Result<(PathBuf, Vec<String>, PathBuf), RuntimeError> {
    write_master_key(&paths.dir)?;
    let mut argv = conv.built.cmd.argv.clone();
    let emulator = PathBuf::from(argv.remove(0));
    if powers_off_by_itself(&conv.def) {
        argv.retain(|a| a != "-no-shutdown");
    }
    let serial_log = serial_logging(&mut argv, &paths.serial_log);
    if let Some(uri) = &opts.incoming {
        argv.push("-incoming".into());
        argv.push(uri.clone());
    }
    Ok((emulator, argv, serial_log))
}

struct Prepared {
    spec: LaunchSpec,
    id: run::IdReservation,
    substitutions: Vec<Substitution>,
    warnings: Vec<Diagnostic>,
    notes: Vec<String>,
    /// Real (not emulated) VF primaries to prepare on the host.
    host: Vec<VfRequest>,
    /// Tap descriptors on QEMU's command line (kept open until it runs).
    hostnet: crate::netsetup::HostNet,
}

/// The first `<tag id>` of a `<vlan>`.
fn vlan_tag(v: Option<&Vlan>) -> Option<u32> {
    v.and_then(|v| v.tags.first()).map(|t| t.id)
}

/// What libvirt does on the host for each real VF primary: a hostdev
/// interface (pool or `type='hostdev'`) gets its MAC and VLAN (the
/// interface's, else its network's) set through the PF, and is bound to
/// vfio-pci when managed; a plain `<hostdev>` primary is only bound when
/// managed, and an unmanaged one must already be on vfio-pci.
/// Lab-mode primaries (substituted) are not VFs and are left out.
fn host_requests(conv: &Conversion, net_vlans: &BTreeMap<String, Option<u32>>) -> Vec<VfRequest> {
    let def = &conv.def;
    let al = &conv.built.aliases;
    let emulated = |alias: &str| conv.built.substitutions.iter().any(|s| s.id == alias);
    let transient = |t: Option<&Teaming>| t.is_some_and(|t| t.type_ == TeamingType::Transient);
    let mut out = Vec::new();
    for (i, (n, a)) in def.devices.interfaces.iter().zip(&conv.actual).enumerate() {
        let (InterfaceType::Hostdev, Some(addr)) = (a.type_, a.hostdev.as_ref()) else {
            continue;
        };
        if !transient(n.teaming.as_ref()) || emulated(&al.interfaces[i]) {
            continue;
        }
        let net_vlan = a
            .network
            .as_ref()
            .and_then(|net| net_vlans.get(net).copied().flatten());
        out.push(VfRequest {
            address: addr.to_string(),
            managed: a.managed,
            mac: n.mac.as_ref().map(|m| m.address.to_string()),
            vlan: vlan_tag(n.vlan.as_ref()).or(net_vlan),
            parked: false,
        });
    }
    for (j, h) in def.devices.hostdevs.iter().enumerate() {
        let Some(addr) = h.source.pci.as_ref() else {
            continue;
        };
        if transient(h.teaming.as_ref()) && !emulated(&al.hostdevs[j]) {
            out.push(VfRequest {
                address: addr.to_string(),
                // libvirt's default for <hostdev> is managed='no'.
                managed: h.managed == Some(true),
                mac: None,
                vlan: None,
                parked: false,
            });
        }
    }
    out
}

/// libvirt passes `-no-shutdown` so that its daemon sees the guest's
/// power-off and applies `<on_poweroff>`. teamvirt has no daemon: with
/// `destroy` (the default) QEMU is let exit by itself, so the next command
/// of any verb notices and the VFs go back, even if nobody asks for the
/// domain's state. (The only difference to `domxml-to-native`'s argv.)
fn powers_off_by_itself(def: &DomainDef) -> bool {
    def.on_poweroff
        .as_ref()
        .is_none_or(|l| l.action == "destroy")
}

/// libvirt keeps a random 32-byte master key per domain and passes it as
/// `-object secret,...,file=DIR/master-key.aes`.
fn write_master_key(dir: &Path) -> Result<(), RuntimeError> {
    let mut key = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| RuntimeError::Internal(format!("cannot read /dev/urandom: {e}")))?;
    write_atomic(&dir.join("master-key.aes"), &key, 0o600)?;
    Ok(())
}

/// Make sure the guest console ends up in a file: a `<serial type='file'>`
/// already does (its path is returned); a pty/null serial gets QEMU's
/// `logfile=` (what libvirt's `<log file=.../>` does); a domain without any
/// serial gets one logging to `log`.
/// Set the passwords of [`teamvirt_qemu::vncauth::password_commands`] on
/// a QEMU just started (`set_password`, then `expire_password`).
pub(crate) async fn set_vnc_passwords(
    qmp: &teamvirt_qmp::Qmp,
    passwords: &[teamvirt_qemu::vncauth::VncPassword],
) -> Result<(), RuntimeError> {
    let failed = |cmd: &str, e: teamvirt_qmp::QmpError| {
        RuntimeError::Internal(format!("cannot set the VNC password ({cmd}): {e}"))
    };
    for p in passwords {
        qmp.set_password("vnc", &p.password)
            .await
            .map_err(|e| failed("set_password", e))?;
        qmp.expire_password("vnc", &p.expire)
            .await
            .map_err(|e| failed("expire_password", e))?;
    }
    Ok(())
}

fn serial_logging(argv: &mut Vec<String>, log: &Path) -> PathBuf {
    let esc = log.display().to_string().replace(',', ",,");
    let mut i = 0;
    while i + 1 < argv.len() {
        if argv[i] == "-chardev" && argv[i + 1].contains("id=charserial") {
            let v = &argv[i + 1];
            if let Some(rest) = v.strip_prefix("file,") {
                if let Some(p) = rest
                    .split(",path=")
                    .nth(1)
                    .or_else(|| rest.strip_prefix("path="))
                {
                    // Unescape QEMU's doubled commas; the path runs to the next single comma.
                    let mut path = String::new();
                    let mut chars = p.chars().peekable();
                    while let Some(c) = chars.next() {
                        if c == ',' {
                            if chars.peek() == Some(&',') {
                                chars.next();
                                path.push(',');
                                continue;
                            }
                            break;
                        }
                        path.push(c);
                    }
                    return PathBuf::from(path);
                }
            }
            if v.starts_with('{') {
                i += 1;
                continue;
            }
            // The domain's own `<log file=.../>`.
            if let Some(p) = teamvirt_qemu::options::value_of(v, "logfile") {
                return PathBuf::from(p);
            }
            argv[i + 1] = format!("{v},logfile={esc},logappend=on");
            return log.to_owned();
        }
        i += 1;
    }
    argv.push("-serial".into());
    argv.push(format!("file:{}", log.display()));
    log.to_owned()
}

/// The standby/primary pairs of the built domain, with the ids QEMU uses.
fn teaming_pairs(conv: &Conversion) -> Vec<TeamingPair> {
    let def = &conv.def;
    let al = &conv.built.aliases;
    let mac_of = |i: usize| {
        def.devices.interfaces[i]
            .mac
            .as_ref()
            .map(|m| m.address.to_string())
    };
    let standby_mac = |id: &str| {
        def.devices
            .interfaces
            .iter()
            .enumerate()
            .find(|(i, n)| {
                al.interfaces[*i] == id && n.teaming_type() == Some(TeamingType::Persistent)
            })
            .and_then(|(i, _)| mac_of(i))
    };
    // Every transient (primary) device, interface or hostdev, with what
    // differs between the two: its alias, its own MAC (a plain <hostdev>
    // VF's MAC is set out of band: unknown here), its VF and network.
    struct Primary<'a> {
        teaming: Option<&'a Teaming>,
        alias: &'a str,
        mac: Option<String>,
        vf: Option<String>,
        network: Option<String>,
    }
    let interfaces = def.devices.interfaces.iter().enumerate().map(|(i, n)| {
        let a = conv.actual.get(i);
        Primary {
            teaming: n.teaming.as_ref(),
            alias: &al.interfaces[i],
            mac: mac_of(i),
            vf: a
                .and_then(|a| a.hostdev.as_ref())
                .map(PciAddress::to_string),
            network: a.and_then(|a| a.network.clone()),
        }
    });
    let hostdevs = def
        .devices
        .hostdevs
        .iter()
        .enumerate()
        .map(|(j, h)| Primary {
            teaming: h.teaming.as_ref(),
            alias: &al.hostdevs[j],
            mac: None,
            vf: h.source.pci.as_ref().map(PciAddress::to_string),
            network: None,
        });
    interfaces
        .chain(hostdevs)
        .filter_map(|p| {
            let t = p.teaming.filter(|t| t.type_ == TeamingType::Transient)?;
            let standby = t.persistent.clone()?;
            let sub = conv.built.substitutions.iter().find(|s| s.id == p.alias);
            Some(TeamingPair {
                standby_mac: standby_mac(&standby),
                primary_mac: sub.map(|s| s.mac.clone()).or(p.mac),
                vf: p.vf,
                network: p.network,
                emulated: sub.is_some(),
                primary: p.alias.to_owned(),
                standby,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Both kinds of primary, a network interface drawn from a pool and a
    /// plain <hostdev>, become pairs with their own VF, MAC and network.
    #[test]
    fn pairs_of_interface_and_hostdev_primaries() {
        let Some(corpus) = teamvirt_testinfra::corpus_dir() else {
            eprintln!("skipping: corpus not found");
            return;
        };
        let caps = teamvirt_qemu::caps::QemuCaps::from_libvirt_xml(
            corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml"),
        )
        .unwrap();
        let net = "<network><name>pool</name><forward mode='hostdev' managed='yes'>\
            <address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x1'/>\
            </forward></network>";
        let mut nets = teamvirt_qemu::resolve::NetworkMap::default();
        nets.insert(
            teamvirt_conf::NetworkDef::parse_str(net, None).unwrap().0,
            None,
        );
        let dom = "<domain type='kvm'><name>d</name><memory unit='MiB'>128</memory>
          <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>
          <interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/>
            <teaming type='persistent'/><alias name='ua-a'/></interface>
          <interface type='network'><source network='pool'/><mac address='52:54:00:00:00:01'/>
            <teaming type='transient' persistent='ua-a'/></interface>
          <interface type='user'><mac address='52:54:00:00:00:02'/><model type='virtio'/>
            <teaming type='persistent'/><alias name='ua-b'/></interface>
          <hostdev mode='subsystem' type='pci' managed='yes'><source>
            <address domain='0x0000' bus='0x5e' slot='0x00' function='0x3'/></source>
            <teaming type='transient' persistent='ua-b'/></hostdev>
          </devices></domain>";
        let def = DomainDef::parse_str(dom, None).unwrap().0;
        let conv = convert(def, &caps, &nets, &[], &BuildOptions::default()).unwrap();
        let pairs = teaming_pairs(&conv);
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        let (i, h) = (&pairs[0], &pairs[1]);
        assert_eq!(
            (i.standby.as_str(), i.primary.as_str()),
            ("ua-a", "hostdev0")
        );
        assert_eq!(i.vf.as_deref(), Some("0000:3b:02.1"));
        assert_eq!(i.network.as_deref(), Some("pool"));
        assert_eq!(i.primary_mac.as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(i.standby_mac, i.primary_mac);
        assert_eq!(h.standby, "ua-b");
        assert_eq!(h.primary, conv.built.aliases.hostdevs[0]);
        assert_eq!(h.vf.as_deref(), Some("0000:5e:00.3"));
        assert_eq!(
            (h.network.as_deref(), h.primary_mac.as_deref()),
            (None, None)
        );
        assert_eq!(h.standby_mac.as_deref(), Some("52:54:00:00:00:02"));
        assert!(!i.emulated && !h.emulated);
    }

    #[test]
    fn serial_file_is_honoured() {
        let mut a = args(&[
            "-chardev",
            "file,id=charserial0,path=/tmp/a,,b.log",
            "-device",
            "x",
        ]);
        let p = serial_logging(&mut a, Path::new("/run/s.log"));
        assert_eq!(p, PathBuf::from("/tmp/a,b.log"));
        assert_eq!(a.len(), 4);
    }

    #[test]
    fn pty_serial_gets_a_logfile() {
        let mut a = args(&["-chardev", "pty,id=charserial0"]);
        let p = serial_logging(&mut a, Path::new("/run/s.log"));
        assert_eq!(p, PathBuf::from("/run/s.log"));
        assert_eq!(a[1], "pty,id=charserial0,logfile=/run/s.log,logappend=on");
    }

    #[test]
    fn serial_with_its_own_log_is_honoured() {
        // `<serial type='pty'><log file='/var/log/a,b.log' append='on'/>`:
        // that log is the console file, no second logfile or serial added.
        let v = "pty,id=charserial0,logfile=/var/log/a,,b.log,logappend=on";
        let mut a = args(&["-chardev", v]);
        let p = serial_logging(&mut a, Path::new("/run/s.log"));
        assert_eq!(p, PathBuf::from("/var/log/a,b.log"));
        assert_eq!(a, args(&["-chardev", v]));
    }

    #[test]
    fn no_serial_adds_one() {
        let mut a = args(&["-chardev", "socket,id=charmonitor,path=/x"]);
        serial_logging(&mut a, Path::new("/run/s.log"));
        assert_eq!(&a[2..], &args(&["-serial", "file:/run/s.log"])[..]);
    }
}
