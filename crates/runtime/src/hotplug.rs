//! `attach-device`, `detach-device`, `detach-device-alias`: hotplug and
//! unplug of NICs (teaming standbys and primaries, plain NICs) and PCI
//! hostdevs on a running domain, and the same edits of its persistent
//! definition (libvirt `qemu_hotplug.c`, `qemuDomainAttachDeviceFlags`).
//!
//! Attach: the device is planned by [`teamvirt_qemu::hotplug`] (checks,
//! VF from the pool under its lock, alias, hot-pluggable PCI address,
//! arguments), the VF is prepared on the host as at start, then
//! `netdev_add` + `device_add`. Only when QEMU accepted both are the run
//! record (argv, VFs, pairs: what a migration and the next command read)
//! and the live XML rewritten; any failure before undoes every step.
//!
//! Detach: `device_del`, then `DEVICE_DELETED` within a deadline; only
//! then `netdev_del`, the VF back to its pool, the host side undone and
//! the records rewritten. A guest that does not release the device in
//! time keeps it, and so does the live XML (libvirt's behaviour).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use teamvirt_conf::model::{DomainDef, InterfaceType, PciAddress, TeamingType};
use teamvirt_conf::{DeviceDef, Diagnostic};
use teamvirt_qemu::hotplug::{self as plan, AttachPlan, Slot};
use teamvirt_qmp::{EventStream, Qmp, QmpError};

use crate::domain::MONITOR_WAIT;
use crate::error::RuntimeError;
use crate::identity::emulator_of;
use crate::network::{is_hostdev_network, StateNetworks};
use crate::pool::{VfAllocation, VfPool};
use crate::run::{self, RunRecord, VfBinding};
use crate::start::describe_substitution;
use crate::teaming::{self, PairState, TeamingPair};
use crate::Runtime;
use teamvirt_host::hostdev::{self, VfRequest};
use teamvirt_host::state::write_atomic;
use teamvirt_host::sysfs::parse_pci;

/// How long `detach-device` waits for the guest by default (libvirt
/// waits 5 s; a TCG guest and PCIe native hotplug's 5 s button delay
/// need more).
pub const DETACH_WAIT: Duration = Duration::from_secs(15);

// Defined with the lifecycle error that wraps it, so that error.rs needs
// nothing from this module (which returns that error).
pub use crate::error::HotplugError;

fn qemu_err(cmd: &str, e: QmpError) -> HotplugError {
    let desc = match e {
        QmpError::Command { desc, .. } => desc,
        e => e.to_string(),
    };
    HotplugError::Qemu {
        cmd: cmd.to_owned(),
        desc,
    }
}

/// Which definition(s) an operation changes (virsh's flags, resolved).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Affect {
    /// `--live`.
    pub live: bool,
    /// `--config`.
    pub config: bool,
}

impl Affect {
    /// virsh's meaning: `--current` (or nothing) is live when running,
    /// else config; `--persistent` is config plus live when running;
    /// `--live`/`--config` are what they say.
    pub fn resolve(live: bool, config: bool, persistent: bool, running: bool) -> Affect {
        if persistent {
            return Affect {
                live: running,
                config: true,
            };
        }
        if !live && !config {
            return Affect {
                live: running,
                config: !running,
            };
        }
        Affect { live, config }
    }
}

/// Options of `attach-device`.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub affect: Affect,
    /// Lab mode for a VF primary (also implied by the domain or pool).
    pub emulate_vf: bool,
    /// Wait this long for the pair(s) the device completes to negotiate.
    pub wait_failover: Option<Duration>,
}

/// What `attach-device` did.
#[derive(Debug, Clone, Serialize)]
pub struct AttachReport {
    /// The device's alias in the running domain (live only).
    pub alias: Option<String>,
    pub live: bool,
    pub config: bool,
    /// The VF taken from a pool.
    pub vf: Option<VfBinding>,
    /// Lab-mode substitution, described.
    pub substitution: Option<String>,
    /// A primary QEMU keeps hidden until the guest negotiates failover
    /// on its standby.
    pub hidden_primary: Option<String>,
    /// Pair states after `--wait-failover`.
    pub teaming: Option<Vec<PairState>>,
    #[serde(skip)]
    pub warnings: Vec<Diagnostic>,
}

/// What `detach-device` did.
#[derive(Debug, Clone, Serialize)]
pub struct DetachReport {
    pub alias: Option<String>,
    pub live: bool,
    pub config: bool,
    /// The guest released the device (live). `false`: the request is
    /// pending; the device stays until the guest lets it go.
    pub removed: bool,
    /// VFs given back to their pools.
    pub vfs_returned: Vec<VfBinding>,
    /// Problems undoing the host side (the VF is back in the pool anyway).
    pub host_problems: Vec<String>,
}

fn device_error(e: teamvirt_conf::ConfError, text: &str, file: Option<&Path>) -> RuntimeError {
    RuntimeError::Invalid {
        diags: vec![e.to_diagnostic(file)],
        text: text.to_owned(),
        file: file.map(Path::to_path_buf),
    }
}

fn plan_error(
    e: teamvirt_qemu::hotplug::HotplugError,
    text: &str,
    file: Option<&Path>,
) -> RuntimeError {
    match e {
        teamvirt_qemu::hotplug::HotplugError::Invalid(d) => {
            let mut d = *d;
            d.file = file.map(Path::to_path_buf);
            RuntimeError::Invalid {
                diags: vec![d],
                text: text.to_owned(),
                file: file.map(Path::to_path_buf),
            }
        }
        e => HotplugError::Plan(e).into(),
    }
}

impl Runtime {
    /// Is `name` running (for virsh's `--current`)? Unknown: `NoDomain`.
    pub fn is_active(&self, name: &str) -> Result<bool, RuntimeError> {
        match run::running(&self.sd, name)? {
            Some(_) => Ok(true),
            None if self.sd.domain_xml(name)?.exists() => Ok(false),
            None => Err(RuntimeError::NoDomain(name.to_owned())),
        }
    }

    /// The live definition of a running domain, its device aliases back.
    pub(crate) fn live_def(&self, name: &str) -> Result<DomainDef, RuntimeError> {
        crate::live::live_def_in(&self.sd, name)
    }

    /// Write the live XML of `conv` (the running domain's whole
    /// definition) with the record's VFs and lab-mode substitutions.
    fn write_live(
        &self,
        rec: &RunRecord,
        conv: &teamvirt_qemu::command::Conversion,
    ) -> Result<(), RuntimeError> {
        let xml =
            crate::live::live_xml(conv, rec.id, rec.accel, &rec.vfs, &conv.built.substitutions);
        write_atomic(
            &self.sd.run_paths(&rec.name)?.live_xml,
            xml.as_bytes(),
            0o600,
        )?;
        Ok(())
    }

    /// Re-convert a live definition (for its live XML after a change).
    async fn convert_live(
        &self,
        def: DomainDef,
        emulate: bool,
    ) -> Result<teamvirt_qemu::command::Conversion, RuntimeError> {
        let caps = self.caps(&emulator_of(&def)).await?;
        let src = StateNetworks { sd: &self.sd };
        let bopts = teamvirt_qemu::command::BuildOptions {
            test_env: true,
            emulate_vf: emulate,
            ..Default::default()
        };
        Ok(teamvirt_qemu::command::convert(
            def,
            &caps,
            &src,
            &[],
            &bopts,
        )?)
    }

    /// `attach-device DOMAIN FILE`.
    pub async fn attach_device(
        &self,
        name: &str,
        text: &str,
        file: Option<&Path>,
        opts: &AttachOptions,
    ) -> Result<AttachReport, RuntimeError> {
        let (dev, mut warnings) =
            DeviceDef::parse_str(text, file).map_err(|e| device_error(e, text, file))?;
        let running = run::running(&self.sd, name)?;
        let defined = self.sd.domain_xml(name)?.exists();
        if running.is_none() && !defined {
            return Err(RuntimeError::NoDomain(name.to_owned()));
        }
        let Affect { live, config } = opts.affect;
        if live && running.is_none() {
            return Err(HotplugError::NotRunning.into());
        }
        if config && !defined {
            return Err(HotplugError::Transient.into());
        }
        // The persistent definition with the device, checked before
        // anything changes (written after the live part worked).
        let new_config = if config {
            let (mut def, _) = self.domain_def(name)?;
            match dev.clone() {
                DeviceDef::Interface(n) => def.devices.interfaces.push(n),
                DeviceDef::Hostdev(h) => def.devices.hostdevs.push(h),
            }
            let caps = self.caps(&emulator_of(&def)).await?;
            let v = teamvirt_qemu::validate::QemuValidator {
                has_failover: Some(caps.supports_failover()),
            };
            teamvirt_conf::validate::libvirt_checks(&def, &v).map_err(|mut d| {
                d.file = file.map(Path::to_path_buf);
                RuntimeError::Invalid {
                    diags: vec![d],
                    text: text.to_owned(),
                    file: file.map(Path::to_path_buf),
                }
            })?;
            Some(def)
        } else {
            None
        };
        let mut report = AttachReport {
            alias: None,
            live,
            config,
            vf: None,
            substitution: None,
            hidden_primary: None,
            teaming: None,
            warnings: Vec::new(),
        };
        if live {
            let rec = running.expect("checked");
            let _l = self.sd.lock_domain(name)?;
            let r = self.attach_live(rec, dev, text, file, opts).await?;
            report = AttachReport {
                config,
                warnings: r.warnings.clone(),
                ..r
            };
        }
        if let Some(def) = new_config {
            let (_, w) = self.define_domain(&def.to_xml(), None).await?;
            warnings.extend(w);
        }
        report.warnings.splice(0..0, warnings);
        Ok(report)
    }

    async fn attach_live(
        &self,
        mut rec: RunRecord,
        dev: DeviceDef,
        text: &str,
        file: Option<&Path>,
        opts: &AttachOptions,
    ) -> Result<AttachReport, RuntimeError> {
        let name = rec.name.clone();
        let live = self.live_def(&name)?;
        let caps = self.caps(&emulator_of(&live)).await?;
        let src = StateNetworks { sd: &self.sd };
        let ap = self.attach_pool(&dev, &src, opts, &rec)?;
        // Plan; a VF is booked in the same step, under the pool's lock.
        let plan = self
            .plan_booking_vf(&name, &live, dev, &caps, &src, &ap)?
            .map_err(|e| plan_error(e, text, file))?;
        let AttachPool {
            pool,
            net_vlan,
            lab,
            ..
        } = ap;
        let alias = plan.alias.clone();
        let vf = match (&pool, plan.actual.as_ref().and_then(|a| a.hostdev.as_ref())) {
            (Some(p), Some(addr)) => Some(VfBinding {
                network: p.network().to_owned(),
                device: alias.clone(),
                address: addr.to_string(),
                lab,
            }),
            _ => None,
        };
        let sub = plan
            .conv
            .built
            .substitutions
            .iter()
            .find(|s| s.id == alias)
            .cloned();
        let pair = new_pair(&plan, vf.as_ref(), sub.is_some());

        // Undo for every failure from here on.
        let paths = self.sd.run_paths(&name)?;
        let give_back = |host_done: bool| {
            if host_done {
                if let Some(v) = &vf {
                    let _ = hostdev::release_recorded_one(&paths.dir, &v.address);
                }
            }
            if let (Some(p), Some(v)) = (&pool, &vf) {
                let _ = p.release(&v.address, &name);
            }
        };

        // A real VF is bound to vfio-pci and gets the guest's MAC first.
        let req = host_request(&plan, sub.is_some(), net_vlan);
        if let Err(e) = hostdev::prepare_more_recorded(&self.host, &paths.dir, &req) {
            give_back(false);
            return Err(e.into());
        }
        // An unprivileged QEMU opens the VF's VFIO group itself and pins
        // guest memory for it: lend the node, raise its memlock limit.
        if !req.is_empty() {
            if let Err(e) =
                crate::lend_argv::lend_hotplug(&self.sd, &name, rec.proc.pid, &rec.argv, &plan.argv)
            {
                for r in &req {
                    let _ = teamvirt_host::dac::give_back_vfio(&self.sd, &name, &r.address);
                }
                give_back(true);
                return Err(RuntimeError::from(crate::run::RunError::from(e)));
            }
        }

        let plugged = plug_and_wait(&rec, &plan, pair.as_ref(), opts.wait_failover).await;
        let (states, hidden) = match plugged {
            Ok(x) => x,
            Err(e) => {
                for r in &req {
                    let _ = teamvirt_host::dac::give_back_vfio(&self.sd, &name, &r.address);
                }
                give_back(true);
                return Err(e);
            }
        };

        // QEMU has the device: record it.
        rec.argv.extend(plan.argv.iter().cloned());
        if let Some(v) = &vf {
            rec.vfs.push(v.clone());
        }
        if let Some(p) = &pair {
            rec.pairs.push(p.clone());
        }
        let sub_line = sub.as_ref().map(describe_substitution);
        if let Some(l) = &sub_line {
            rec.substitutions.push(l.clone());
        }
        rec.save(&self.sd)?;
        self.write_live(&rec, &plan.conv)?;
        // A new primary's half becomes the guest's (netdev::pair).
        for p in teamvirt_host::netdev::pair::wire(
            &paths.dir,
            teamvirt_host::netdev::pair::Active::Primary,
        ) {
            crate::domlog::event(&self.sd, &name, &format!("warning: {p}"));
        }
        Ok(AttachReport {
            alias: Some(alias),
            live: true,
            config: false,
            vf,
            substitution: sub_line,
            hidden_primary: hidden,
            teaming: states,
            warnings: plan.warnings.clone(),
        })
    }

    /// Live attach: the pool an interface draws from, if any, and whether
    /// the attach is in lab mode.
    fn attach_pool(
        &self,
        dev: &DeviceDef,
        src: &StateNetworks,
        opts: &AttachOptions,
        rec: &RunRecord,
    ) -> Result<AttachPool, RuntimeError> {
        let mut pool = None;
        let mut net_vlan = None;
        if let DeviceDef::Interface(n) = dev {
            if n.type_ == InterfaceType::Network {
                let net = n.source_network().unwrap_or_default().to_owned();
                let Some((nd, _)) = teamvirt_qemu::resolve::NetworkSource::lookup(src, &net)
                    .map_err(RuntimeError::from)?
                else {
                    return Err(RuntimeError::NoNetwork(net));
                };
                if is_hostdev_network(&nd) {
                    net_vlan = nd.vlan.as_ref().and_then(|v| v.tags.first()).map(|t| t.id);
                    pool = Some(VfPool::new(&self.sd, &net));
                }
            }
        }
        let mut emulate = opts.emulate_vf || !rec.substitutions.is_empty();
        let mut lab = None;
        if let Some(p) = &pool {
            let st = p.state()?;
            emulate |= st.emulate_vf;
            lab = st.lab();
        }
        Ok(AttachPool {
            pool,
            net_vlan,
            emulate,
            lab,
        })
    }

    /// Live attach: the plan, with its VF (if any) booked under the pool's
    /// lock. The inner error is the plan's, for [`plan_error`].
    fn plan_booking_vf(
        &self,
        name: &str,
        live: &DomainDef,
        dev: DeviceDef,
        caps: &teamvirt_qemu::caps::QemuCaps,
        src: &StateNetworks,
        ap: &AttachPool,
    ) -> Result<Result<AttachPlan, plan::HotplugError>, RuntimeError> {
        let bopts = teamvirt_qemu::command::BuildOptions {
            emulate_vf: ap.emulate,
            ..Default::default()
        };
        Ok(match &ap.pool {
            Some(p) => VfPool::update_many(std::slice::from_ref(p), |states| {
                let in_use: Vec<_> = states[0]
                    .allocations
                    .iter()
                    .filter_map(|a| parse_pci(&a.address))
                    .collect();
                let plan = match plan::plan_attach(live, dev.clone(), caps, src, &in_use, &bopts) {
                    Ok(p) => p,
                    Err(e) => return Ok(Err(e)),
                };
                if let Some(addr) = plan.actual.as_ref().and_then(|a| a.hostdev.as_ref()) {
                    states[0].allocations.push(VfAllocation {
                        address: addr.to_string(),
                        domain: name.to_owned(),
                        device: plan.alias.clone(),
                    });
                }
                Ok(Ok(plan))
            })?,
            None => plan::plan_attach(live, dev, caps, src, &[], &bopts),
        })
    }

    /// `detach-device DOMAIN FILE`.
    pub async fn detach_device(
        &self,
        name: &str,
        text: &str,
        file: Option<&Path>,
        affect: Affect,
        wait: Duration,
    ) -> Result<DetachReport, RuntimeError> {
        let (dev, _) = DeviceDef::parse_str(text, file).map_err(|e| device_error(e, text, file))?;
        self.detach(name, Target::Device(&dev), affect, wait).await
    }

    /// `detach-device-alias DOMAIN ALIAS`.
    pub async fn detach_device_alias(
        &self,
        name: &str,
        alias: &str,
        affect: Affect,
        wait: Duration,
    ) -> Result<DetachReport, RuntimeError> {
        self.detach(name, Target::Alias(alias), affect, wait).await
    }

    async fn detach(
        &self,
        name: &str,
        target: Target<'_>,
        affect: Affect,
        wait: Duration,
    ) -> Result<DetachReport, RuntimeError> {
        let running = run::running(&self.sd, name)?;
        let defined = self.sd.domain_xml(name)?.exists();
        if running.is_none() && !defined {
            return Err(RuntimeError::NoDomain(name.to_owned()));
        }
        if affect.live && running.is_none() {
            return Err(HotplugError::NotRunning.into());
        }
        if affect.config && !defined {
            return Err(HotplugError::Transient.into());
        }
        // The persistent definition without the device, found first.
        let new_config = if affect.config {
            let (mut def, _) = self.domain_def(name)?;
            let slot = target.find(&def)?;
            refuse_standby_in_use(&def, slot)?;
            plan::remove_device(&mut def, slot);
            Some(def)
        } else {
            None
        };
        let mut report = DetachReport {
            alias: None,
            live: affect.live,
            config: affect.config,
            removed: false,
            vfs_returned: Vec::new(),
            host_problems: Vec::new(),
        };
        if affect.live {
            let rec = running.expect("checked");
            let _l = self.sd.lock_domain(name)?;
            let r = self.detach_live(rec, &target, wait).await?;
            report = DetachReport {
                config: affect.config,
                ..r
            };
        }
        if let Some(def) = new_config {
            self.define_domain(&def.to_xml(), None).await?;
        }
        Ok(report)
    }

    async fn detach_live(
        &self,
        mut rec: RunRecord,
        target: &Target<'_>,
        wait: Duration,
    ) -> Result<DetachReport, RuntimeError> {
        let name = rec.name.clone();
        let mut live = self.live_def(&name)?;
        let slot = target.find(&live)?;
        refuse_standby_in_use(&live, slot)?;
        let alias = plan::alias_at(&live, slot)
            .map(str::to_owned)
            .ok_or_else(|| RuntimeError::Internal("device without alias in live XML".into()))?;
        let netdev = plan::netdev_of(&rec.argv, &alias);

        let q = run::connect(&rec, MONITOR_WAIT).await?;
        let removed = unplug(&q, &alias, netdev.as_deref(), wait).await?;
        let mut report = DetachReport {
            alias: Some(alias.clone()),
            live: true,
            config: false,
            removed,
            vfs_returned: Vec::new(),
            host_problems: Vec::new(),
        };
        if !removed {
            // libvirt: the request stays pending, the device stays.
            return Ok(report);
        }
        let paths = self.sd.run_paths(&name)?;
        let (gone, kept): (Vec<VfBinding>, Vec<VfBinding>) =
            rec.vfs.drain(..).partition(|v| v.device == alias);
        rec.vfs = kept;
        for v in gone {
            // The VFIO group node goes when the VF leaves vfio-pci.
            match teamvirt_host::dac::give_back_vfio(&self.sd, &name, &v.address) {
                Ok(p) => report.host_problems.extend(p),
                Err(e) => report.host_problems.push(e.to_string()),
            }
            report
                .host_problems
                .extend(hostdev::release_recorded_one(&paths.dir, &v.address));
            VfPool::new(&self.sd, &v.network).release(&v.address, &name)?;
            report.vfs_returned.push(v);
        }
        // A plain <hostdev> or a type='hostdev' interface has no pool
        // but may have been prepared on the host.
        if let Some(addr) = vf_address(&live, slot) {
            match teamvirt_host::dac::give_back_vfio(&self.sd, &name, &addr) {
                Ok(p) => report.host_problems.extend(p),
                Err(e) => report.host_problems.push(e.to_string()),
            }
            report
                .host_problems
                .extend(hostdev::release_recorded_one(&paths.dir, &addr));
        }
        // A pair that lost its primary is its standby's alone again.
        report
            .host_problems
            .extend(teamvirt_host::netdev::pair::wire(
                &paths.dir,
                teamvirt_host::netdev::pair::Active::Primary,
            ));
        rec.pairs.retain(|p| p.primary != alias);
        let marker = format!("failover primary {alias} ");
        rec.substitutions.retain(|l| !l.contains(&marker));
        plan::remove_option(&mut rec.argv, "-device", &alias);
        if let Some(n) = &netdev {
            plan::remove_option(&mut rec.argv, "-netdev", n);
        }
        plan::remove_device(&mut live, slot);
        let emulate = !rec.substitutions.is_empty();
        rec.save(&self.sd)?;
        let conv = self.convert_live(live, emulate).await?;
        self.write_live(&rec, &conv)?;
        Ok(report)
    }
}

impl Runtime {
    /// `teaming DOMAIN --replug`: plug every primary the guest removed
    /// (see [`PairState::removed`]) back, with its alias, PCI address and
    /// the VF still held for it, then wait up to `wait` for the pairs to
    /// work again. Returns the state of every pair.
    pub async fn replug(&self, name: &str, wait: Duration) -> Result<Vec<PairState>, RuntimeError> {
        let rec = self.running(name)?;
        let _l = self.sd.lock_domain(name)?;
        let live = self.live_def(name)?;
        let caps = self.caps(&emulator_of(&live)).await?;
        let src = StateNetworks { sd: &self.sd };
        let emulate = !rec.substitutions.is_empty();
        let q = run::connect(&rec, MONITOR_WAIT).await?;
        let mut events = q.subscribe();
        let states = teaming::query(&q, &rec.pairs)
            .await
            .map_err(|e| qemu_err("query-pci", e))?;
        let todo: Vec<TeamingPair> = states
            .iter()
            .filter(|s| s.removed.is_some())
            .map(|s| s.pair.clone())
            .collect();
        if todo.is_empty() {
            return Ok(states);
        }
        for p in &todo {
            let (device, netdev) = plan::device_args(&live, &caps, &src, &p.primary, emulate)
                .map_err(HotplugError::Plan)?;
            if let Some(n) = netdev {
                // The guest's eject leaves the backend in place.
                match q.netdev_add(&n).await {
                    Ok(()) => {}
                    Err(QmpError::Command { desc, .. }) if desc.contains("Duplicate") => {}
                    Err(e) => return Err(qemu_err("netdev_add", e).into()),
                }
            }
            q.device_add(&device)
                .await
                .map_err(|e| qemu_err("device_add", e))?;
        }
        teaming::wait_negotiated(&q, &mut events, &rec.pairs, wait)
            .await
            .map_err(RuntimeError::from)
    }
}

/// What a detach names.
enum Target<'a> {
    Device(&'a DeviceDef),
    Alias(&'a str),
}

impl Target<'_> {
    fn find(&self, def: &DomainDef) -> Result<Slot, HotplugError> {
        match self {
            Target::Alias(a) => {
                plan::find_alias(def, a).ok_or_else(|| HotplugError::NoAlias((*a).to_owned()))
            }
            Target::Device(d) => plan::find_device(def, d).map_err(|e| {
                if e == plan::FindError::Ambiguous {
                    let mac = match d {
                        DeviceDef::Interface(n) => n.mac.as_ref().map(|m| m.address.to_string()),
                        DeviceDef::Hostdev(_) => None,
                    };
                    return HotplugError::Ambiguous(mac.unwrap_or_default());
                }
                HotplugError::NotFound(match d {
                    DeviceDef::Interface(n) => match &n.mac {
                        Some(m) => format!("no device matching MAC address {} found", m.address),
                        None => "no matching network device was found".into(),
                    },
                    DeviceDef::Hostdev(h) => match h.source.pci.as_ref() {
                        Some(p) => format!("host pci device {p} not found"),
                        None => "no matching host device was found".into(),
                    },
                })
            }),
        }
    }
}

/// A standby whose primary is still attached cannot go: the primary's
/// `failover_pair_id` would point nowhere.
fn refuse_standby_in_use(def: &DomainDef, slot: Slot) -> Result<(), HotplugError> {
    let Slot::Interface(i) = slot else {
        return Ok(());
    };
    let n = &def.devices.interfaces[i];
    if n.teaming_type() != Some(TeamingType::Persistent) {
        return Ok(());
    }
    let Some(alias) = n.info.alias_name() else {
        return Ok(());
    };
    let primaries = plan::primaries_of(def, alias);
    if primaries.is_empty() {
        return Ok(());
    }
    Err(HotplugError::StandbyInUse {
        standby: alias.to_owned(),
        primaries,
    })
}

/// The host VF address of the device at `slot`, if it is one.
fn vf_address(def: &DomainDef, slot: Slot) -> Option<String> {
    match slot {
        Slot::Interface(i) => {
            let n = &def.devices.interfaces[i];
            (n.type_ == InterfaceType::Hostdev)
                .then(|| n.source_pci().map(PciAddress::to_string))
                .flatten()
        }
        Slot::Hostdev(j) => def.devices.hostdevs[j]
            .source
            .pci
            .as_ref()
            .map(PciAddress::to_string),
    }
}

/// The pool a live attach draws its VF from (see [`Runtime::attach_pool`]).
struct AttachPool {
    pool: Option<VfPool>,
    /// The pool's network's VLAN tag.
    net_vlan: Option<u32>,
    /// Lab mode: asked for, the domain's already, or the pool's.
    emulate: bool,
    lab: Option<crate::record::LabSettings>,
}

/// Live attach in QEMU: plug the device, then wait for (or query) the
/// failover negotiation of its pair. Returns the pair's states when waited
/// for, and the primary when QEMU hides it (not negotiated).
async fn plug_and_wait(
    rec: &RunRecord,
    plan: &AttachPlan,
    pair: Option<&TeamingPair>,
    wait: Option<Duration>,
) -> Result<(Option<Vec<PairState>>, Option<String>), RuntimeError> {
    let q = run::connect(rec, MONITOR_WAIT).await?;
    let mut events = q.subscribe();
    plug(&q, plan).await?;
    let mut states = None;
    let mut hidden = None;
    if let Some(p) = pair {
        let st = match wait {
            Some(w) => {
                teaming::wait_negotiated(&q, &mut events, std::slice::from_ref(p), w).await?
            }
            None => teaming::query(&q, std::slice::from_ref(p))
                .await
                .map_err(|e| qemu_err("query-pci", e))?,
        };
        if st.iter().any(|s| !s.negotiated) {
            hidden = Some(p.primary.clone());
        }
        if wait.is_some() {
            states = Some(st);
        }
    } else if let (Some(w), Some(standby)) = (wait, standby_alias(plan)) {
        // A standby alone: its negotiation is the event.
        let _ = events
            .wait_for(
                "FAILOVER_NEGOTIATED",
                |e| e.data_str("device-id") == Some(standby.as_str()),
                w,
            )
            .await;
    }
    Ok((states, hidden))
}

/// The alias of the planned device when it is a standby.
fn standby_alias(plan: &AttachPlan) -> Option<String> {
    match plan.slot {
        Slot::Interface(i) => {
            let n = &plan.def.devices.interfaces[i];
            (n.teaming_type() == Some(TeamingType::Persistent)).then(|| plan.alias.clone())
        }
        Slot::Hostdev(_) => None,
    }
}

/// The teaming pair a planned primary completes.
fn new_pair(plan: &AttachPlan, vf: Option<&VfBinding>, emulated: bool) -> Option<TeamingPair> {
    let d = &plan.def.devices;
    let (teaming, mac, host) = match plan.slot {
        Slot::Interface(i) => {
            let n = &d.interfaces[i];
            (
                n.teaming.as_ref(),
                n.mac.as_ref().map(|m| m.address.to_string()),
                n.source_pci().map(PciAddress::to_string),
            )
        }
        Slot::Hostdev(j) => {
            let h = &d.hostdevs[j];
            (
                h.teaming.as_ref(),
                None,
                h.source.pci.as_ref().map(PciAddress::to_string),
            )
        }
    };
    let t = teaming.filter(|t| t.type_ == TeamingType::Transient)?;
    let standby = t.persistent.clone()?;
    let standby_mac = d
        .interfaces
        .iter()
        .find(|n| n.info.alias_name() == Some(standby.as_str()))
        .and_then(|n| n.mac.as_ref().map(|m| m.address.to_string()));
    let sub = plan
        .conv
        .built
        .substitutions
        .iter()
        .find(|s| s.id == plan.alias);
    Some(TeamingPair {
        standby,
        primary: plan.alias.clone(),
        standby_mac,
        primary_mac: sub.map(|s| s.mac.clone()).or(mac),
        vf: vf.map(|v| v.address.clone()).or(host),
        network: vf.map(|v| v.network.clone()),
        emulated,
    })
}

/// The host preparation of a real VF primary (as `start` does it).
fn host_request(plan: &AttachPlan, emulated: bool, net_vlan: Option<u32>) -> Vec<VfRequest> {
    if emulated {
        return Vec::new();
    }
    let d = &plan.def.devices;
    let transient = |t: Option<&teamvirt_conf::model::Teaming>| {
        t.is_some_and(|t| t.type_ == TeamingType::Transient)
    };
    match plan.slot {
        Slot::Interface(i) => {
            let n = &d.interfaces[i];
            match (n.type_, n.source_pci(), transient(n.teaming.as_ref())) {
                (InterfaceType::Hostdev, Some(addr), true) => vec![VfRequest {
                    address: addr.to_string(),
                    managed: n.managed.unwrap_or(false),
                    mac: n.mac.as_ref().map(|m| m.address.to_string()),
                    vlan: n
                        .vlan
                        .as_ref()
                        .and_then(|v| v.tags.first())
                        .map(|t| t.id)
                        .or(net_vlan),
                    parked: false,
                }],
                _ => Vec::new(),
            }
        }
        Slot::Hostdev(j) => {
            let h = &d.hostdevs[j];
            match h.source.pci.as_ref() {
                Some(addr) if transient(h.teaming.as_ref()) => {
                    vec![VfRequest {
                        address: addr.to_string(),
                        managed: h.managed == Some(true),
                        mac: None,
                        vlan: None,
                        parked: false,
                    }]
                }
                _ => Vec::new(),
            }
        }
    }
}

/// `netdev_add` then `device_add`; a refused `device_add` takes its
/// backend away again.
async fn plug(q: &Qmp, plan: &AttachPlan) -> Result<(), RuntimeError> {
    if let Some(n) = &plan.netdev {
        q.netdev_add(n)
            .await
            .map_err(|e| qemu_err("netdev_add", e))?;
    }
    if let Err(e) = q.device_add(&plan.device).await {
        if let Some(id) = plan
            .netdev
            .as_ref()
            .and_then(|n| n.get("id"))
            .and_then(Value::as_str)
        {
            let _ = q.netdev_del(id).await;
        }
        return Err(qemu_err("device_add", e).into());
    }
    Ok(())
}

/// `device_del`, wait for `DEVICE_DELETED` (or the device gone), then
/// `netdev_del`. `Ok(false)`: the guest did not release it in time.
async fn unplug(
    q: &Qmp,
    alias: &str,
    netdev: Option<&str>,
    wait: Duration,
) -> Result<bool, RuntimeError> {
    let mut events: EventStream = q.subscribe();
    match q.device_del(alias).await {
        Ok(()) => {}
        // A primary QEMU still hides was never created: nothing to wait for.
        Err(QmpError::Command { class, .. }) if class == "DeviceNotFound" => {
            del_netdev(q, netdev).await?;
            return Ok(true);
        }
        // Asked before and still pending: keep waiting for it.
        Err(QmpError::Command { desc, .. })
            if desc.contains("already in the process of unplug") => {}
        Err(e) => return Err(qemu_err("device_del", e).into()),
    }
    let deadline = Instant::now() + wait;
    loop {
        let tick = (Instant::now() + Duration::from_millis(500)).min(deadline);
        match tokio::time::timeout_at(tick.into(), events.recv()).await {
            Ok(Some(ev)) if ev.name == "DEVICE_DELETED" && ev.data_str("device") == Some(alias) => {
                break
            }
            Ok(Some(_)) => continue,
            Ok(None) => return Err(qemu_err("device_del", QmpError::Disconnected).into()),
            Err(_) => {}
        }
        // An event missed (e.g. between two commands): ask QEMU.
        let periph = q.peripherals().await.map_err(|e| qemu_err("qom-list", e))?;
        if !periph.iter().any(|p| p == alias) {
            break;
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
    del_netdev(q, netdev).await?;
    Ok(true)
}

async fn del_netdev(q: &Qmp, netdev: Option<&str>) -> Result<(), RuntimeError> {
    if let Some(id) = netdev {
        match q.netdev_del(id).await {
            Ok(()) => {}
            Err(QmpError::Command { class, .. }) if class == "DeviceNotFound" => {}
            Err(e) => return Err(qemu_err("netdev_del", e).into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virsh_flag_meanings() {
        let a = |l, c, p, r| {
            let x = Affect::resolve(l, c, p, r);
            (x.live, x.config)
        };
        assert_eq!(a(false, false, false, true), (true, false));
        assert_eq!(a(false, false, false, false), (false, true));
        assert_eq!(a(false, false, true, true), (true, true));
        assert_eq!(a(false, false, true, false), (false, true));
        assert_eq!(a(true, true, false, true), (true, true));
        assert_eq!(a(false, true, false, true), (false, true));
    }
}
