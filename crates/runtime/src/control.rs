//! The everyday verbs of a running or defined domain that are not about
//! its lifecycle or its network pairs: `suspend`, `resume`, `reboot`,
//! `dominfo`, `domiflist`, `autostart`, and finding its serial console.

use std::path::PathBuf;

use serde::Serialize;
use teamvirt_conf::model::interface::TeamingType;
use teamvirt_conf::DomainDef;

use crate::autostart::autostart_path;
pub use crate::autostart::{autostart_enabled, AutostartKind};
use crate::domain::{DomainState, Runtime, MONITOR_WAIT};
use crate::error::RuntimeError;
use crate::run::{self, RunRecord};
use crate::teaming::TeamingPair;
use teamvirt_host::state::{make_private_dir, remove_optional, write_atomic};

/// What `dominfo` shows (virsh's fields, plus the domain log).
#[derive(Debug, Clone, Serialize)]
pub struct DomInfo {
    pub id: Option<u32>,
    pub name: String,
    pub uuid: Option<String>,
    pub os_type: String,
    pub state: String,
    pub cpus: u32,
    pub max_memory_kib: u64,
    pub used_memory_kib: u64,
    pub persistent: bool,
    pub autostart: bool,
    /// `log/NAME.log`: lifecycle, QEMU command line and stderr.
    pub log: PathBuf,
    /// Lab-mode substitutions in effect (running domains).
    pub lab_mode: Vec<String>,
}

/// A lab-mode record line without its "lab mode" lead (`dominfo` says it
/// in the field's name).
fn lab_detail(line: &str) -> String {
    line.strip_prefix("lab mode: ")
        .or_else(|| line.strip_prefix("lab mode "))
        .unwrap_or(line)
        .to_owned()
}

/// One row of `domiflist`.
#[derive(Debug, Clone, Serialize)]
pub struct IfaceRow {
    /// Host-side device (tap, macvtap), if any (`-` in the table).
    pub interface: Option<String>,
    #[serde(rename = "type")]
    pub type_: String,
    /// Network, bridge, host device or PCI address; `-` when none.
    pub source: String,
    /// The NIC model that runs: a lab-mode primary's emulated one
    /// (`vmxnet3`), not the virtio its definition may name.
    pub model: String,
    pub mac: String,
    pub alias: Option<String>,
    /// `standby` (teaming persistent), `primary` (transient) or `-`.
    pub teaming: String,
    /// The other half of the pair (alias), when teaming.
    pub pair: Option<String>,
}

/// The QMP commands on the whole machine that `suspend`, `resume` and
/// `reboot` send.
#[derive(Debug, Clone, Copy)]
enum MachineCommand {
    Stop,
    Cont,
    SystemReset,
}

impl Runtime {
    async fn machine_command(rec: &RunRecord, cmd: MachineCommand) -> Result<(), RuntimeError> {
        let q = run::connect(rec, MONITOR_WAIT).await?;
        match cmd {
            MachineCommand::Stop => q.stop().await,
            MachineCommand::Cont => q.cont().await,
            MachineCommand::SystemReset => q.system_reset().await,
        }
        .map_err(|source| {
            RuntimeError::from(run::RunError::Qmp {
                name: rec.name.clone(),
                source,
            })
        })
    }

    async fn on_running(&self, name: &str, cmd: MachineCommand) -> Result<RunRecord, RuntimeError> {
        let rec = self.running(name)?;
        Self::machine_command(&rec, cmd).await?;
        Ok(rec)
    }

    /// `suspend`: pause the vCPUs (QMP `stop`).
    /// On a paused domain it does nothing and succeeds, as libvirt's
    /// (no second `stop`, no second log line).
    pub async fn suspend(&self, name: &str) -> Result<(), RuntimeError> {
        let rec = self.running(name)?;
        if self.live_state(&rec).await? == Some(DomainState::Paused) {
            return Ok(());
        }
        Self::machine_command(&rec, MachineCommand::Stop).await?;
        crate::domlog::event(&self.sd, name, "suspended");
        Ok(())
    }

    /// `resume`: run the vCPUs again (QMP `cont`); libvirt's error on a
    /// domain that is running.
    pub async fn resume(&self, name: &str) -> Result<(), RuntimeError> {
        let rec = self.running(name)?;
        if self.live_state(&rec).await? == Some(DomainState::Running) {
            return Err(RuntimeError::AlreadyRunning(name.to_owned()));
        }
        Self::machine_command(&rec, MachineCommand::Cont).await?;
        crate::domlog::event(&self.sd, name, "resumed");
        Ok(())
    }

    /// `reboot`: reset the machine (QMP `system_reset`). libvirt's ACPI
    /// reboot needs a daemon to turn the guest's power-off into a reset;
    /// teamvirt has none, so it resets, like `virsh reset`. The guest
    /// negotiates failover again as it boots (QEMU hides the primary until
    /// it does).
    pub async fn reboot(&self, name: &str) -> Result<(), RuntimeError> {
        self.on_running(name, MachineCommand::SystemReset).await?;
        crate::domlog::event(&self.sd, name, "reboot (system_reset)");
        Ok(())
    }

    /// The definition to describe: the live one when running, else the
    /// stored one.
    fn current_def(&self, name: &str) -> Result<(DomainDef, Option<RunRecord>), RuntimeError> {
        let rec = run::running(&self.sd, name)?;
        let text = self.domain_xml(name, false)?;
        let (def, _) = DomainDef::parse_str(&text, None).map_err(|e| {
            RuntimeError::Internal(format!("stored XML of domain '{name}' does not parse: {e}"))
        })?;
        Ok((def, rec))
    }

    /// `dominfo`.
    pub async fn dominfo(&self, name: &str) -> Result<DomInfo, RuntimeError> {
        let (def, rec) = self.current_def(name)?;
        let state = self.domain_state(name).await?;
        let running = state != DomainState::ShutOff;
        Ok(DomInfo {
            id: rec.as_ref().filter(|_| running).map(|r| r.id),
            name: def.name.clone(),
            uuid: def.uuid.as_ref().map(|u| u.to_string()),
            os_type: def.os.type_.value.clone(),
            state: state.to_string(),
            cpus: def.vcpu.current.unwrap_or(def.vcpu.count),
            max_memory_kib: def.memory.kib,
            used_memory_kib: def.current_memory_kib(),
            persistent: self.sd.domain_xml(name)?.exists(),
            autostart: autostart_enabled(&self.sd, AutostartKind::Domain, name),
            log: crate::domlog::path(&self.sd, name),
            lab_mode: rec
                .map(|r| r.substitutions.iter().map(|l| lab_detail(l)).collect())
                .unwrap_or_default(),
        })
    }

    /// `domiflist`: the domain's interfaces with their teaming role.
    pub fn domiflist(&self, name: &str) -> Result<Vec<IfaceRow>, RuntimeError> {
        let (def, rec) = self.current_def(name)?;
        let pairs = rec.map(|r| r.pairs).unwrap_or_default();
        Ok(iface_rows(&def, &pairs))
    }

    /// `autostart [--disable]` and `net-autostart [--disable]`.
    pub fn set_autostart(
        &self,
        kind: AutostartKind,
        name: &str,
        on: bool,
    ) -> Result<(), RuntimeError> {
        let defined = match kind {
            AutostartKind::Domain => self.sd.domain_xml(name)?,
            AutostartKind::Network => self.sd.network_xml(name)?,
        };
        if !defined.exists() {
            return Err(match kind {
                AutostartKind::Domain => RuntimeError::NoDomain(name.to_owned()),
                AutostartKind::Network => RuntimeError::NoNetwork(name.to_owned()),
            });
        }
        let p = autostart_path(&self.sd, kind, name)?;
        if on {
            make_private_dir(p.parent().expect("autostart dir"))?;
            write_atomic(&p, b"", 0o600)?;
        } else {
            remove_optional(&p)?;
        }
        Ok(())
    }

    /// Defined objects of `kind` marked for autostart.
    pub fn autostart_list(&self, kind: AutostartKind) -> Result<Vec<String>, RuntimeError> {
        let names = match kind {
            AutostartKind::Domain => self.sd.defined_domains()?,
            AutostartKind::Network => self.sd.defined_networks()?,
        };
        Ok(names
            .into_iter()
            .filter(|n| autostart_enabled(&self.sd, kind, n))
            .collect())
    }

    /// The host pty of a running domain's first serial port (`console`),
    /// opened: QEMU reports it as `pty:/dev/pts/N` in `query-chardev`, and
    /// is believed only for a pty its own uid owns ([`crate::console`]).
    pub async fn open_console(&self, name: &str) -> Result<(PathBuf, std::fs::File), RuntimeError> {
        let rec = self.running(name)?;
        // The uid that must own the pty is read from the process the
        // kernel confirms is this domain's QEMU, not from the record.
        crate::identity::verify(&self.sd, name, &rec.proc).map_err(run::RunError::from)?;
        let uid = crate::console::uid_of(name, rec.proc.pid)?;
        if !rec.is_alive() {
            return Err(RuntimeError::NotRunning(name.to_owned()));
        }
        let q = run::connect(&rec, MONITOR_WAIT).await?;
        let chardevs = q.query_chardev().await.map_err(|source| {
            RuntimeError::from(run::RunError::Qmp {
                name: rec.name.clone(),
                source,
            })
        })?;
        Ok(crate::console::open_reported(name, &chardevs, uid)?)
    }
}

/// `domiflist` rows for `def` (virsh's columns, then the pair). `pairs`:
/// the running domain's pairs, which know the aliases QEMU gave the
/// primaries (an inactive parse keeps user aliases only).
pub fn iface_rows(def: &DomainDef, pairs: &[TeamingPair]) -> Vec<IfaceRow> {
    let dash = || "-".to_owned();
    let emulated = emulated_models(def);
    def.devices
        .interfaces
        .iter()
        .map(|i| {
            let src = i.source.as_ref();
            let source = src
                .and_then(|s| {
                    s.network
                        .clone()
                        .or_else(|| s.bridge.clone())
                        .or_else(|| s.dev.clone())
                        .or_else(|| s.pci.as_ref().map(|a| a.to_string()))
                })
                .unwrap_or_else(dash);
            let live_primary = |standby: &str| {
                pairs
                    .iter()
                    .find(|p| p.standby == standby)
                    .map(|p| p.primary.clone())
            };
            let alias =
                i.info
                    .alias
                    .as_ref()
                    .map(|a| a.name.clone())
                    .or_else(|| match &i.teaming {
                        Some(t) if t.type_ == TeamingType::Transient => {
                            t.persistent.as_deref().and_then(live_primary)
                        }
                        _ => None,
                    });
            let (teaming, pair) = match &i.teaming {
                Some(t) if t.type_ == TeamingType::Persistent => {
                    // The primary names its standby; find who names this one.
                    let primary = def.devices.interfaces.iter().find(|o| {
                        o.teaming.as_ref().is_some_and(|t| {
                            t.type_ == TeamingType::Transient
                                && t.persistent.is_some()
                                && t.persistent == alias
                        })
                    });
                    let primary = primary
                        .and_then(|p| p.info.alias.as_ref().map(|a| a.name.clone()))
                        .or_else(|| alias.as_deref().and_then(live_primary));
                    ("standby".to_owned(), primary)
                }
                Some(t) => ("primary".to_owned(), t.persistent.clone()),
                None => (dash(), None),
            };
            IfaceRow {
                interface: i.target.as_ref().map(|t| t.dev.clone()),
                type_: i.type_.as_str().to_owned(),
                source,
                model: alias
                    .as_ref()
                    .and_then(|a| emulated.iter().find(|(d, _)| d == a))
                    .map(|(_, m)| m.clone())
                    .or_else(|| i.model.as_ref().map(|m| m.type_.clone()))
                    .unwrap_or_else(dash),
                mac: i
                    .mac
                    .as_ref()
                    .map(|m| m.address.to_string())
                    .unwrap_or_else(dash),
                alias,
                teaming,
                pair,
            }
        })
        .collect()
}

/// (device alias, model) of the lab-mode primaries a live XML records
/// (`<teamvirt:emulated-primary device model>` in its `<metadata>`).
fn emulated_models(def: &DomainDef) -> Vec<(String, String)> {
    let local = |n: &str| n.rsplit(':').next().unwrap_or_default().to_owned();
    def.extra
        .iter()
        .filter(|e| e.name == "metadata")
        .flat_map(|m| m.child_elements())
        .filter(|r| local(&r.name) == "runtime")
        .flat_map(|r| r.child_elements())
        .filter(|e| local(&e.name) == "emulated-primary")
        .filter_map(|e| Some((e.attr("device")?.to_owned(), e.attr("model")?.to_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The live XML of a running lab-mode pair as `start` writes it, and
    /// the tap it recorded for the standby.
    fn running_lab_pair() -> (String, Vec<teamvirt_host::netdev::Created>) {
        let xml = "<domain type='qemu'><name>d</name><memory>262144</memory><os><type>hvm</type></os><devices>\
            <interface type='network'><mac address='52:54:00:00:00:01'/><source network='lan'/><model type='virtio'/>\
              <teaming type='persistent'/><alias name='ua-sb'/></interface>\
            <interface type='hostdev' managed='yes'><mac address='52:54:00:00:00:01'/>\
              <source><address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x1'/></source>\
              <model type='virtio'/><teaming type='transient' persistent='ua-sb'/><alias name='hostdev0'/></interface>\
            </devices></domain>";
        let (mut def, _) = DomainDef::parse_str(xml, None).unwrap();
        let sub = teamvirt_qemu::command::Substitution {
            id: "hostdev0".into(),
            host: Some("0000:3b:02.1".into()),
            model: "vmxnet3".into(),
            mac: "52:54:00:00:00:01".into(),
            pair: "ua-sb".into(),
            netdev: "lab-hostdev0".into(),
        };
        let mut m = teamvirt_conf::model::RawElement::new("metadata");
        m.children.push(teamvirt_conf::model::RawNode::Element(
            crate::live::runtime_metadata(crate::accel::Accel::Tcg, &[], &[sub]),
        ));
        def.extra.push(m);
        def.id = Some(7);
        let taps = vec![teamvirt_host::netdev::Created {
            device: "net0 (52:54:00:00:00:01)".into(),
            ifname: "vnet0".into(),
            ifindex: 12,
            kind: "tap".into(),
            bridge: Some("br0".into()),
            ovs: false,
            pair: None,
        }];
        (crate::live::to_text(&def), taps)
    }

    #[test]
    fn live_xml_names_the_standby_tap() {
        let (xml, taps) = running_lab_pair();
        assert!(!xml.contains("<target dev="), "{xml}");
        let shown = crate::live::with_host_devices(&xml, &taps);
        assert!(shown.starts_with("<domain type='qemu' id='7'>"), "{shown}");
        // Only the target line added, after the standby's <source>.
        let added = xml.replacen(
            "<source network='lan'/>\n",
            "<source network='lan'/>\n      <target dev='vnet0'/>\n",
            1,
        );
        assert_eq!(shown, added);
        let (def, _) = DomainDef::parse_str(&shown, None).unwrap();
        let t: Vec<_> = def
            .devices
            .interfaces
            .iter()
            .map(|i| i.target.as_ref().map(|t| t.dev.as_str()))
            .collect();
        assert_eq!(t, [Some("vnet0"), None]);
        // Nothing recorded: the text as stored.
        assert_eq!(crate::live::with_host_devices(&xml, &[]), xml);
    }

    #[test]
    fn running_lab_pair_rows_show_the_tap_and_what_runs() {
        let (xml, taps) = running_lab_pair();
        let (def, _) =
            DomainDef::parse_str(&crate::live::with_host_devices(&xml, &taps), None).unwrap();
        // The run record's pair: a live parse drops QEMU's own aliases.
        let pair = TeamingPair {
            standby: "ua-sb".into(),
            primary: "hostdev0".into(),
            standby_mac: Some("52:54:00:00:00:01".into()),
            primary_mac: Some("52:54:00:00:00:01".into()),
            vf: Some("0000:3b:02.1".into()),
            network: Some("vfpool".into()),
            emulated: true,
        };
        let rows = iface_rows(&def, &[pair]);
        assert_eq!(rows[0].interface.as_deref(), Some("vnet0"));
        assert_eq!(
            (rows[0].type_.as_str(), rows[0].model.as_str()),
            ("network", "virtio")
        );
        assert_eq!(
            (rows[1].type_.as_str(), rows[1].model.as_str()),
            ("hostdev", "vmxnet3")
        );
        let j = serde_json::to_value(&rows).unwrap();
        assert_eq!(j[0]["type"], "network");
        assert_eq!(j[0]["interface"], "vnet0");
        assert_eq!(j[1]["interface"], Value::Null);
        assert!(j[0].get("type_").is_none(), "{j}");
    }

    #[test]
    fn rows_name_the_pair_both_ways() {
        let xml = "<domain type='kvm'><name>d</name><memory>262144</memory><os><type>hvm</type></os><devices>\
            <interface type='network'><mac address='52:54:00:00:00:01'/><source network='br'/><model type='virtio'/>\
              <teaming type='persistent'/><alias name='ua-sb'/></interface>\
            <interface type='network'><mac address='52:54:00:00:00:01'/><source network='pool'/>\
              <teaming type='transient' persistent='ua-sb'/><alias name='ua-pri'/></interface>\
            <interface type='user'><mac address='52:54:00:00:00:02'/><model type='e1000e'/></interface>\
            </devices></domain>";
        let (def, _) = DomainDef::parse_str(xml, None).unwrap();
        let rows = iface_rows(&def, &[]);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].teaming.as_str(), rows[0].pair.as_deref()),
            ("standby", Some("ua-pri"))
        );
        assert_eq!(
            (rows[1].teaming.as_str(), rows[1].pair.as_deref()),
            ("primary", Some("ua-sb"))
        );
        assert_eq!(rows[1].source, "pool");
        assert_eq!(rows[1].model, "-");
        assert_eq!(
            (rows[2].teaming.as_str(), rows[2].pair.as_deref()),
            ("-", None)
        );
        assert_eq!(rows[2].mac, "52:54:00:00:00:02");
    }
}
