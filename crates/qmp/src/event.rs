//! QMP events: the raw form every event arrives in, and typed views of the
//! ones teamvirt acts on.

use serde_json::{Map, Value};

/// One asynchronous QMP event, exactly as QEMU sent it.
///
/// Nothing is ever dropped or rejected: an event teamvirt does not know, or a
/// known one carrying fields it does not know, arrives here with its `data`
/// untouched. [`Event::typed`] is an optional, lossy view on top.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event name, e.g. `FAILOVER_NEGOTIATED`.
    pub name: String,
    /// The `data` member; `Value::Null` when the event has none (STOP, RESUME).
    pub data: Value,
    /// QEMU's host-clock stamp `(seconds, microseconds)`; `(0, 0)` if absent.
    pub timestamp: (i64, i64),
}

impl Event {
    /// Build from a decoded QMP message that has an `event` member.
    pub(crate) fn from_message(mut msg: Map<String, Value>) -> Option<Event> {
        let name = match msg.remove("event")? {
            Value::String(s) => s,
            // A non-string name is still an event; keep it visible as text.
            other => other.to_string(),
        };
        let data = msg.remove("data").unwrap_or(Value::Null);
        let timestamp = msg
            .get("timestamp")
            .map(|t| {
                let field = |k: &str| t.get(k).and_then(Value::as_i64).unwrap_or(0);
                (field("seconds"), field("microseconds"))
            })
            .unwrap_or((0, 0));
        Some(Event {
            name,
            data,
            timestamp,
        })
    }

    /// A string member of `data`, if present.
    pub fn data_str(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }

    /// The typed view of this event. Unknown events, and known ones whose
    /// required fields are missing or mistyped, give [`TypedEvent::Other`];
    /// the raw event is always still available.
    pub fn typed(&self) -> TypedEvent {
        let s = |k: &str| self.data_str(k).map(str::to_owned);
        let typed = match self.name.as_str() {
            "FAILOVER_NEGOTIATED" => {
                s("device-id").map(|device_id| TypedEvent::FailoverNegotiated { device_id })
            }
            "UNPLUG_PRIMARY" => {
                s("device-id").map(|device_id| TypedEvent::UnplugPrimary { device_id })
            }
            "MIGRATION" => s("status").map(|st| TypedEvent::Migration {
                status: MigrationStatus::parse(&st),
            }),
            "MIGRATION_PASS" => self
                .data
                .get("pass")
                .and_then(Value::as_u64)
                .map(|pass| TypedEvent::MigrationPass { pass }),
            "STOP" => Some(TypedEvent::Stop),
            "RESUME" => Some(TypedEvent::Resume),
            "SHUTDOWN" => Some(TypedEvent::Shutdown {
                guest: self.data.get("guest").and_then(Value::as_bool),
                reason: s("reason"),
            }),
            "DEVICE_DELETED" => s("path").map(|path| TypedEvent::DeviceDeleted {
                device: s("device"),
                path,
            }),
            _ => None,
        };
        typed.unwrap_or(TypedEvent::Other)
    }
}

/// Typed view of the events teamvirt cares about (see QEMU's QAPI schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedEvent {
    /// The guest acked VIRTIO_NET_F_STANDBY on the standby `device_id`;
    /// QEMU unhides (plugs) the primary paired with it.
    FailoverNegotiated { device_id: String },
    /// Migration asked the guest to unplug the primary `device_id`.
    UnplugPrimary { device_id: String },
    /// Migration status change (needs the `events` migration capability).
    Migration { status: MigrationStatus },
    /// A RAM pass of the migration started.
    MigrationPass { pass: u64 },
    /// vCPUs stopped.
    Stop,
    /// vCPUs resumed.
    Resume,
    /// The machine is shutting down. Both fields are optional because old
    /// QEMUs omit them.
    Shutdown {
        guest: Option<bool>,
        reason: Option<String>,
    },
    /// A device finished unplugging; `device` is its id when it had one.
    DeviceDeleted {
        device: Option<String>,
        path: String,
    },
    /// Any other event, or a known one with unexpected data: use the raw
    /// [`Event`].
    Other,
}

/// QEMU's `MigrationStatus` enum. Values QEMU adds later arrive as `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MigrationStatus {
    None,
    Setup,
    Cancelling,
    Cancelled,
    Active,
    PostcopyActive,
    PostcopyPaused,
    PostcopyRecover,
    Completed,
    Failed,
    Colo,
    PreSwitchover,
    Device,
    /// Waiting for the guest to unplug failover primaries.
    WaitUnplug,
    Other(String),
}

impl Default for MigrationStatus {
    /// QEMU's status before any migration.
    fn default() -> Self {
        MigrationStatus::None
    }
}

impl MigrationStatus {
    const NAMES: &'static [(&'static str, MigrationStatus)] = &[
        ("none", MigrationStatus::None),
        ("setup", MigrationStatus::Setup),
        ("cancelling", MigrationStatus::Cancelling),
        ("cancelled", MigrationStatus::Cancelled),
        ("active", MigrationStatus::Active),
        ("postcopy-active", MigrationStatus::PostcopyActive),
        ("postcopy-paused", MigrationStatus::PostcopyPaused),
        ("postcopy-recover", MigrationStatus::PostcopyRecover),
        ("completed", MigrationStatus::Completed),
        ("failed", MigrationStatus::Failed),
        ("colo", MigrationStatus::Colo),
        ("pre-switchover", MigrationStatus::PreSwitchover),
        ("device", MigrationStatus::Device),
        ("wait-unplug", MigrationStatus::WaitUnplug),
    ];

    /// Parse QEMU's spelling; never fails.
    pub fn parse(s: &str) -> MigrationStatus {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| MigrationStatus::Other(s.to_owned()))
    }

    /// QEMU's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            MigrationStatus::Other(s) => s,
            known => Self::NAMES
                .iter()
                .find(|(_, v)| v == known)
                .map(|(n, _)| *n)
                .unwrap_or("unknown"),
        }
    }

    /// True once the migration cannot progress any more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            MigrationStatus::Completed | MigrationStatus::Failed | MigrationStatus::Cancelled
        )
    }
}

impl std::fmt::Display for MigrationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: Value) -> Event {
        match v {
            Value::Object(m) => Event::from_message(m).unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn typed_known_events() {
        let e = ev(
            json!({"event":"FAILOVER_NEGOTIATED","data":{"device-id":"net1"},
                          "timestamp":{"seconds":17,"microseconds":42}}),
        );
        assert_eq!(e.timestamp, (17, 42));
        assert_eq!(
            e.typed(),
            TypedEvent::FailoverNegotiated {
                device_id: "net1".into()
            }
        );
        let e = ev(json!({"event":"MIGRATION","data":{"status":"wait-unplug"}}));
        assert_eq!(
            e.typed(),
            TypedEvent::Migration {
                status: MigrationStatus::WaitUnplug
            }
        );
        let e = ev(json!({"event":"STOP"}));
        assert_eq!(e.data, Value::Null);
        assert_eq!(e.timestamp, (0, 0));
        assert_eq!(e.typed(), TypedEvent::Stop);
        let e = ev(
            json!({"event":"DEVICE_DELETED","data":{"path":"/machine/peripheral/hostdev0","device":"hostdev0"}}),
        );
        assert_eq!(
            e.typed(),
            TypedEvent::DeviceDeleted {
                device: Some("hostdev0".into()),
                path: "/machine/peripheral/hostdev0".into()
            }
        );
        let e = ev(json!({"event":"SHUTDOWN","data":{"guest":true,"reason":"guest-shutdown"}}));
        assert_eq!(
            e.typed(),
            TypedEvent::Shutdown {
                guest: Some(true),
                reason: Some("guest-shutdown".into())
            }
        );
        let e = ev(json!({"event":"MIGRATION_PASS","data":{"pass":3}}));
        assert_eq!(e.typed(), TypedEvent::MigrationPass { pass: 3 });
    }

    #[test]
    fn unknown_and_malformed_stay_raw() {
        let e =
            ev(json!({"event":"SOMETHING_NEW","data":{"x":[1,2]},"timestamp":"garbage","extra":1}));
        assert_eq!(e.name, "SOMETHING_NEW");
        assert_eq!(e.data, json!({"x":[1,2]}));
        assert_eq!(e.typed(), TypedEvent::Other);
        // Known name, unknown extra field: still typed, extra field kept raw.
        let e = ev(json!({"event":"UNPLUG_PRIMARY","data":{"device-id":"hostdev0","new":true}}));
        assert_eq!(
            e.typed(),
            TypedEvent::UnplugPrimary {
                device_id: "hostdev0".into()
            }
        );
        assert_eq!(e.data["new"], json!(true));
        // Known name, wrong field type: Other, not a failure.
        let e = ev(json!({"event":"MIGRATION_PASS","data":{"pass":"three"}}));
        assert_eq!(e.typed(), TypedEvent::Other);
        let e = ev(json!({"event":"MIGRATION","data":{"status":"brand-new-state"}}));
        assert_eq!(
            e.typed(),
            TypedEvent::Migration {
                status: MigrationStatus::Other("brand-new-state".into())
            }
        );
    }

    #[test]
    fn migration_status_round_trip() {
        for (name, v) in MigrationStatus::NAMES {
            assert_eq!(&MigrationStatus::parse(name), v);
            assert_eq!(v.as_str(), *name);
        }
        assert!(MigrationStatus::Completed.is_final());
        assert!(!MigrationStatus::WaitUnplug.is_final());
    }
}
