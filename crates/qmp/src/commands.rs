//! The typed layer: one method per QMP command teamvirt sends, with typed
//! arguments and replies (QEMU's QAPI names; libvirt's
//! `qemu_monitor_json.c` has one wrapper per command the same way).
//! Replies keep only the members teamvirt reads and ignore the others, so
//! a newer QEMU adding members changes nothing; a reply of the wrong shape
//! is a [`QmpError::Protocol`] naming the command.
//!
//! `device_add` and `netdev_add` take the property object the command-line
//! builder made (`teamvirt_qemu::hotplug`): QEMU's schema types them as
//! open property sets (`'gen': false`), as libvirt passes a JSON object.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::client::{Qmp, QomProperty};
use crate::error::QmpError;
use crate::event::MigrationStatus;

/// `query-migrate`'s reply (`MigrationInfo`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    /// Absent before the first migration of this QEMU: `none`.
    #[serde(default, deserialize_with = "migration_status")]
    pub status: MigrationStatus,
    /// Why a migration failed.
    pub error_desc: Option<String>,
    /// Where an incoming migration listens (`migrate-incoming` to port 0).
    #[serde(default)]
    pub socket_address: Vec<SocketAddress>,
    pub ram: Option<MigrationStats>,
    pub setup_time: Option<u64>,
    pub downtime: Option<u64>,
    pub expected_downtime: Option<u64>,
    pub total_time: Option<u64>,
    /// Why the domain cannot migrate (QEMU 6.0+).
    #[serde(default)]
    pub blocked_reasons: Vec<String>,
}

/// `MigrationInfo.ram` (`MigrationStats`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationStats {
    pub total: Option<u64>,
    pub transferred: Option<u64>,
    pub remaining: Option<u64>,
    pub mbps: Option<f64>,
    pub dirty_pages_rate: Option<u64>,
    pub dirty_sync_count: Option<u64>,
}

/// One `SocketAddress` of `query-migrate`; `port` is a string in QAPI
/// (`InetSocketAddress`), a number from some test servers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SocketAddress {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub host: Option<String>,
    pub port: Option<Value>,
}

impl SocketAddress {
    /// The port as a number, when it is one.
    pub fn port(&self) -> Option<u16> {
        match self.port.as_ref()? {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => None,
        }
    }
}

fn migration_status<'de, D: serde::Deserializer<'de>>(d: D) -> Result<MigrationStatus, D::Error> {
    let s = String::deserialize(d)?;
    Ok(MigrationStatus::parse(&s))
}

/// `migrate-set-parameters`: only the members set are sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrateParameters {
    /// Bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
    /// The id of a `tls-creds-x509` object; `""` turns TLS off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_creds: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_hostname: Option<String>,
}

/// A migration capability and its state (`MigrationCapabilityStatus`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationCapability {
    pub capability: String,
    pub state: bool,
}

impl MigrationCapability {
    /// Capability `name`, turned on.
    pub fn on(name: &str) -> Self {
        MigrationCapability {
            capability: name.to_owned(),
            state: true,
        }
    }
}

/// `object-add` of a `tls-creds-x509` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TlsCredsX509 {
    pub id: String,
    /// The directory QEMU reads `ca-cert.pem` etc. from.
    pub dir: String,
    /// `client` or `server`.
    pub endpoint: String,
    pub verify_peer: bool,
}

/// One device of `query-pci` (`PciDeviceInfo`), reduced to what finds
/// devices by id.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PciDeviceInfo {
    /// The device's id; empty for devices made without one.
    #[serde(default)]
    pub qdev_id: String,
    pub pci_bridge: Option<PciBridgeInfo>,
}

/// The bus behind a PCI bridge (`PciBridgeInfo`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PciBridgeInfo {
    #[serde(default)]
    pub devices: Vec<PciDeviceInfo>,
}

/// One bus of `query-pci` (`PciInfo`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PciInfo {
    pub bus: Option<u64>,
    #[serde(default)]
    pub devices: Vec<PciDeviceInfo>,
}

impl PciInfo {
    /// Ids of every device on these buses, bridges included.
    pub fn device_ids(buses: &[PciInfo]) -> Vec<String> {
        fn walk(devs: &[PciDeviceInfo], out: &mut Vec<String>) {
            for d in devs {
                if !d.qdev_id.is_empty() {
                    out.push(d.qdev_id.clone());
                }
                if let Some(b) = &d.pci_bridge {
                    walk(&b.devices, out);
                }
            }
        }
        let mut out = Vec::new();
        for bus in buses {
            walk(&bus.devices, &mut out);
        }
        out
    }
}

/// One entry of `x-query-virtio` (`VirtioInfo`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VirtioInfo {
    /// QOM path of the virtio device.
    pub path: String,
    #[serde(default)]
    pub name: String,
}

/// `x-query-virtio-status`, reduced to the guest's features.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VirtioStatus {
    #[serde(default)]
    pub guest_features: VirtioDeviceFeatures,
}

/// `VirtioDeviceFeatures`: decoded feature names (`VIRTIO_NET_F_STANDBY:
/// ...`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VirtioDeviceFeatures {
    #[serde(default)]
    pub dev_features: Vec<String>,
}

/// One character device of `query-chardev` (`ChardevInfo`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ChardevInfo {
    pub label: String,
    /// e.g. `pty:/dev/pts/3`, `unix:/path,server=on`.
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub frontend_open: bool,
}

/// `query-version`'s reply (`VersionInfo`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct VersionInfo {
    pub qemu: VersionTriple,
    #[serde(default)]
    pub package: String,
}

/// `VersionTriple`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct VersionTriple {
    pub major: u64,
    pub minor: u64,
    pub micro: u64,
}

/// `query-target`'s reply.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TargetInfo {
    /// QEMU's name of the target (`x86_64`, `i386`, `arm`, ...).
    pub arch: String,
}

/// `query-kvm`'s reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct KvmInfo {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub present: bool,
}

/// One entry of `qom-list-types` (`ObjectTypeInfo`) or `query-commands`
/// (`CommandInfo`): both are a name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NameInfo {
    pub name: String,
}

/// One property of `device-list-properties` (`ObjectPropertyInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ObjectPropertyInfo {
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// One option of `query-command-line-options`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommandLineOptionInfo {
    pub option: String,
    #[serde(default)]
    pub parameters: Vec<NameInfo>,
}

/// One machine type of `query-machines` (`MachineInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MachineInfo {
    pub name: String,
    pub alias: Option<String>,
    pub cpu_max: Option<u64>,
    #[serde(default)]
    pub hotpluggable_cpus: bool,
    #[serde(default)]
    pub is_default: bool,
    pub default_cpu_type: Option<String>,
    pub default_ram_id: Option<String>,
    #[serde(default)]
    pub numa_mem_supported: bool,
    #[serde(default)]
    pub deprecated: bool,
    pub acpi: Option<bool>,
}

/// One CPU model of `query-cpu-definitions` (`CpuDefinitionInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CpuDefinitionInfo {
    pub name: String,
    pub typename: Option<String>,
    /// Absent when QEMU cannot tell (then nobody knows if it is usable).
    pub unavailable_features: Option<Vec<String>>,
    #[serde(default)]
    pub deprecated: bool,
}

impl Qmp {
    /// Send `cmd` with `args` (a JSON object, or `Value::Null` for none)
    /// and read the reply as `T`.
    async fn call<T: DeserializeOwned>(&self, cmd: &str, args: Value) -> Result<T, QmpError> {
        let v = self.execute(cmd, args).await?;
        decode(cmd, v)
    }

    /// A command whose reply is `{}`.
    async fn call_unit(&self, cmd: &str, args: Value) -> Result<(), QmpError> {
        self.execute(cmd, args).await.map(drop)
    }

    /// `cont`: run the vCPUs.
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.call_unit("cont", Value::Null).await
    }

    /// `stop`: pause the vCPUs.
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.call_unit("stop", Value::Null).await
    }

    /// `system_reset`.
    pub async fn system_reset(&self) -> Result<(), QmpError> {
        self.call_unit("system_reset", Value::Null).await
    }

    /// `system_powerdown`: the ACPI power button.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.call_unit("system_powerdown", Value::Null).await
    }

    /// `query-status`'s `status` (e.g. `running`, `paused`, `postmigrate`).
    pub async fn query_status(&self) -> Result<String, QmpError> {
        #[derive(Deserialize)]
        struct StatusInfo {
            status: String,
        }
        Ok(self
            .call::<StatusInfo>("query-status", Value::Null)
            .await?
            .status)
    }

    /// Ask QEMU to exit. A connection that closes before the reply counts
    /// as success: QEMU may exit before flushing it.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.call_unit("quit", Value::Null).await {
            Ok(()) | Err(QmpError::Disconnected) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `qom-list PATH`.
    pub async fn qom_list(&self, path: &str) -> Result<Vec<QomProperty>, QmpError> {
        #[derive(Deserialize)]
        struct Prop {
            name: String,
            #[serde(rename = "type")]
            kind: String,
        }
        let props: Vec<Prop> = self.call("qom-list", json!({ "path": path })).await?;
        Ok(props
            .into_iter()
            .map(|p| QomProperty {
                name: p.name,
                kind: p.kind,
            })
            .collect())
    }

    /// Ids of the user-created devices that exist (`/machine/peripheral`).
    /// A failover primary that QEMU still hides is absent.
    pub async fn peripherals(&self) -> Result<Vec<String>, QmpError> {
        Ok(self
            .qom_list("/machine/peripheral")
            .await?
            .into_iter()
            .filter(|p| p.kind.starts_with("child<"))
            .map(|p| p.name)
            .collect())
    }

    /// `netdev_add` of a backend's properties (`id`, `type`, ...).
    pub async fn netdev_add(&self, props: &Map<String, Value>) -> Result<(), QmpError> {
        self.call_unit("netdev_add", Value::Object(props.clone()))
            .await
    }

    /// `netdev_del ID`.
    pub async fn netdev_del(&self, id: &str) -> Result<(), QmpError> {
        self.call_unit("netdev_del", json!({ "id": id })).await
    }

    /// `device_add` of a device's properties (`driver`, `id`, ...).
    pub async fn device_add(&self, props: &Map<String, Value>) -> Result<(), QmpError> {
        self.call_unit("device_add", Value::Object(props.clone()))
            .await
    }

    /// `device_del ID`: asks the guest to release it; `DEVICE_DELETED`
    /// says when it is gone.
    pub async fn device_del(&self, id: &str) -> Result<(), QmpError> {
        self.call_unit("device_del", json!({ "id": id })).await
    }

    /// `query-pci`.
    pub async fn query_pci(&self) -> Result<Vec<PciInfo>, QmpError> {
        self.call("query-pci", Value::Null).await
    }

    /// `x-query-virtio` (QEMU 7.2+, unstable).
    pub async fn x_query_virtio(&self) -> Result<Vec<VirtioInfo>, QmpError> {
        self.call("x-query-virtio", Value::Null).await
    }

    /// `x-query-virtio-status PATH`.
    pub async fn x_query_virtio_status(&self, path: &str) -> Result<VirtioStatus, QmpError> {
        self.call("x-query-virtio-status", json!({ "path": path }))
            .await
    }

    /// `query-chardev`.
    pub async fn query_chardev(&self) -> Result<Vec<ChardevInfo>, QmpError> {
        self.call("query-chardev", Value::Null).await
    }

    /// `set_password` of `protocol` (`vnc`).
    pub async fn set_password(&self, protocol: &str, password: &str) -> Result<(), QmpError> {
        self.call_unit(
            "set_password",
            json!({ "protocol": protocol, "password": password }),
        )
        .await
    }

    /// `expire_password` of `protocol`: `time` is `now`, `never`, `+N`
    /// or seconds since the epoch.
    pub async fn expire_password(&self, protocol: &str, time: &str) -> Result<(), QmpError> {
        self.call_unit(
            "expire_password",
            json!({ "protocol": protocol, "time": time }),
        )
        .await
    }

    /// `migrate-set-capabilities`.
    pub async fn migrate_set_capabilities(
        &self,
        caps: &[MigrationCapability],
    ) -> Result<(), QmpError> {
        self.call_unit("migrate-set-capabilities", json!({ "capabilities": caps }))
            .await
    }

    /// `migrate-set-parameters` of the members set in `p`.
    pub async fn migrate_set_parameters(&self, p: &MigrateParameters) -> Result<(), QmpError> {
        let args = serde_json::to_value(p)
            .map_err(|e| QmpError::Protocol(format!("migrate-set-parameters: {e}")))?;
        self.call_unit("migrate-set-parameters", args).await
    }

    /// `migrate URI`: start an outgoing migration.
    pub async fn migrate(&self, uri: &str) -> Result<(), QmpError> {
        self.call_unit("migrate", json!({ "uri": uri })).await
    }

    /// `migrate-incoming URI` of a QEMU started with `-incoming defer`.
    pub async fn migrate_incoming(&self, uri: &str) -> Result<(), QmpError> {
        self.call_unit("migrate-incoming", json!({ "uri": uri }))
            .await
    }

    /// `migrate_cancel`.
    pub async fn migrate_cancel(&self) -> Result<(), QmpError> {
        self.call_unit("migrate_cancel", Value::Null).await
    }

    /// `query-migrate`.
    pub async fn query_migrate(&self) -> Result<MigrationInfo, QmpError> {
        self.call("query-migrate", Value::Null).await
    }

    /// `query-migrate`, giving up after `timeout`.
    pub async fn query_migrate_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MigrationInfo, QmpError> {
        let v = self
            .execute_timeout("query-migrate", Value::Null, timeout)
            .await?;
        decode("query-migrate", v)
    }

    /// `object-add` of TLS credentials.
    pub async fn object_add_tls_creds_x509(&self, creds: &TlsCredsX509) -> Result<(), QmpError> {
        let mut args = serde_json::to_value(creds)
            .map_err(|e| QmpError::Protocol(format!("object-add: {e}")))?;
        args["qom-type"] = Value::from("tls-creds-x509");
        self.call_unit("object-add", args).await
    }

    /// `object-del ID`.
    pub async fn object_del(&self, id: &str) -> Result<(), QmpError> {
        self.call_unit("object-del", json!({ "id": id })).await
    }

    /// `query-version`.
    pub async fn query_version(&self) -> Result<VersionInfo, QmpError> {
        self.call("query-version", Value::Null).await
    }

    /// `query-target`.
    pub async fn query_target(&self) -> Result<TargetInfo, QmpError> {
        self.call("query-target", Value::Null).await
    }

    /// `query-kvm`.
    pub async fn query_kvm(&self) -> Result<KvmInfo, QmpError> {
        self.call("query-kvm", Value::Null).await
    }

    /// `qom-list-types`: every QOM type's name.
    pub async fn qom_list_types(&self) -> Result<Vec<NameInfo>, QmpError> {
        self.call("qom-list-types", Value::Null).await
    }

    /// `device-list-properties TYPENAME`.
    pub async fn device_list_properties(
        &self,
        typename: &str,
    ) -> Result<Vec<ObjectPropertyInfo>, QmpError> {
        self.call("device-list-properties", json!({ "typename": typename }))
            .await
    }

    /// `query-qmp-schema`: the introspection list, kept as JSON (its
    /// walker follows type references by name).
    pub async fn query_qmp_schema(&self) -> Result<Vec<Value>, QmpError> {
        self.call("query-qmp-schema", Value::Null).await
    }

    /// `query-commands`: every command's name.
    pub async fn query_commands(&self) -> Result<Vec<NameInfo>, QmpError> {
        self.call("query-commands", Value::Null).await
    }

    /// `query-command-line-options`.
    pub async fn query_command_line_options(&self) -> Result<Vec<CommandLineOptionInfo>, QmpError> {
        self.call("query-command-line-options", Value::Null).await
    }

    /// `query-machines`.
    pub async fn query_machines(&self) -> Result<Vec<MachineInfo>, QmpError> {
        self.call("query-machines", Value::Null).await
    }

    /// `query-cpu-definitions`.
    pub async fn query_cpu_definitions(&self) -> Result<Vec<CpuDefinitionInfo>, QmpError> {
        self.call("query-cpu-definitions", Value::Null).await
    }
}

/// `v` as the reply type of `cmd`; a mismatch shows (the start of) what
/// QEMU sent.
fn decode<T: DeserializeOwned>(cmd: &str, v: Value) -> Result<T, QmpError> {
    T::deserialize(&v).map_err(|e| {
        let mut text = v.to_string();
        if text.len() > 200 {
            let mut cut = 200;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        QmpError::Protocol(format!("unexpected reply to {cmd}: {e}: {text}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_migrate_reads_qemu_shapes() {
        let q: MigrationInfo = decode(
            "query-migrate",
            json!({
                "status": "wait-unplug",
                "socket-address": [{"type": "inet", "host": "::", "port": "4444"}],
                "ram": {"total": 10, "transferred": 4, "remaining": 6, "mbps": 1.5,
                        "dirty-pages-rate": 7, "dirty-sync-count": 2, "skipped": 0},
                "total-time": 12,
                "blocked-reasons": ["VFIO device doesn't support migration"]
            }),
        )
        .unwrap();
        assert_eq!(q.status, MigrationStatus::WaitUnplug);
        assert_eq!(q.socket_address[0].port(), Some(4444));
        assert_eq!(q.ram.as_ref().and_then(|r| r.mbps), Some(1.5));
        assert_eq!(q.total_time, Some(12));
        assert_eq!(q.blocked_reasons.len(), 1);
        // Before any migration QEMU answers `{}`.
        let none: MigrationInfo = decode("query-migrate", json!({})).unwrap();
        assert_eq!(none.status, MigrationStatus::None);
    }

    #[test]
    fn a_reply_of_the_wrong_shape_names_the_command() {
        let e = decode::<MigrationInfo>("query-migrate", json!([1, 2])).unwrap_err();
        assert!(
            e.to_string().contains("unexpected reply to query-migrate")
                && e.to_string().contains("[1,2]"),
            "{e}"
        );
    }

    #[test]
    fn pci_ids_include_bridged_devices() {
        let buses: Vec<PciInfo> = decode(
            "query-pci",
            json!([{"bus": 0, "devices": [
                {"qdev_id": "", "pci_bridge": {"devices": [{"qdev_id": "hostdev0"}]}},
                {"qdev_id": "net0"}
            ]}]),
        )
        .unwrap();
        assert_eq!(PciInfo::device_ids(&buses), vec!["hostdev0", "net0"]);
    }

    #[test]
    fn parameters_send_only_what_is_set() {
        let p = MigrateParameters {
            tls_creds: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&p).unwrap(), json!({"tls-creds": ""}));
        let creds = TlsCredsX509 {
            id: "t".into(),
            dir: "/d".into(),
            endpoint: "client".into(),
            verify_peer: true,
        };
        assert_eq!(
            serde_json::to_value(&creds).unwrap(),
            json!({"id": "t", "dir": "/d", "endpoint": "client", "verify-peer": true})
        );
    }
}
