//! Failover state of a running domain's teaming pairs, observed over QMP.
//!
//! `teamvirt` is not a daemon, so the one-shot `FAILOVER_NEGOTIATED` event
//! is only seen by an invocation that is connected when it fires (`start
//! --wait-failover`). Every other invocation infers it from QEMU's state:
//! QEMU keeps a primary *hidden* (not created, absent from
//! `/machine/peripheral`) until the guest acks VIRTIO_NET_F_STANDBY on its
//! standby, and never deletes it afterwards (even a migration's unplug keeps
//! it there). So "primary exists under `/machine/peripheral`" is exactly
//! "negotiated". "Plugged" means the primary is on the guest's PCI bus
//! (`query-pci`, bridges included). Where QEMU has `x-query-virtio-status`
//! the standby's acked feature bits are reported too, as a cross-check.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use teamvirt_qmp::{EventStream, Qmp, QmpError};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum TeamingError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("QEMU exited while waiting for failover negotiation")]
    QemuGone,
}

/// A standby/primary pair as started (recorded in the run state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamingPair {
    /// QEMU id (= libvirt alias) of the virtio-net standby (`failover=on`).
    pub standby: String,
    /// QEMU id of the primary (`failover_pair_id=STANDBY`).
    pub primary: String,
    pub standby_mac: Option<String>,
    pub primary_mac: Option<String>,
    /// Host PCI address of the VF backing the primary, if any.
    pub vf: Option<String>,
    /// Network the VF came from, for `<interface type='network'>`.
    pub network: Option<String>,
    /// Lab mode: the primary is an emulated vmxnet3, not a VF.
    #[serde(default)]
    pub emulated: bool,
}

impl TeamingPair {
    /// Linux net_failover pairs the two NICs by MAC: a mismatch means the
    /// guest never bonds them even though QEMU negotiates.
    pub fn mac_match(&self) -> bool {
        match (&self.standby_mac, &self.primary_mac) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            // A VF whose MAC teamvirt does not set (plain <hostdev>) cannot
            // be judged here.
            _ => true,
        }
    }
}

/// Observed state of one pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairState {
    #[serde(flatten)]
    pub pair: TeamingPair,
    /// The guest negotiated failover on the standby.
    pub negotiated: bool,
    /// The primary is plugged into the guest's PCI bus.
    pub plugged: bool,
    /// Standby and primary MACs are equal.
    pub mac_match: bool,
    /// VIRTIO_NET_F_STANDBY among the standby's guest-acked features
    /// (`x-query-virtio-status`); `None` when QEMU cannot tell.
    pub standby_feature_acked: Option<bool>,
    /// The primary is gone from QEMU although the guest negotiated: the
    /// guest ejected it, or a cancelled migration's unplug completed
    /// (QEMU never plugs it back). Its VF stays held for it, so
    /// `teaming --replug` plugs it again with the same alias and address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
}

impl PairState {
    /// Would the guest bond this pair?
    pub fn is_working(&self) -> bool {
        self.negotiated && self.mac_match && self.removed.is_none()
    }

    /// Why the pair does not work (for error messages).
    pub fn problem(&self) -> Option<String> {
        let p = &self.pair;
        if let Some(why) = &self.removed {
            Some(format!(
                "pair {} (standby) / {} (primary): {why}",
                p.standby, p.primary
            ))
        } else if !self.negotiated && self.plugged {
            Some(format!(
                "pair {} (standby) / {} (primary): the guest has not negotiated failover on {} since it was reset (reboot): it negotiates again when its virtio-net driver starts",
                p.standby, p.primary, p.standby
            ))
        } else if !self.negotiated {
            Some(format!(
                "pair {} (standby) / {} (primary): the guest did not negotiate failover on {}: its virtio-net driver lacks VIRTIO_NET_F_STANDBY support (no net_failover/failover modules, or virtio_net not loaded), so QEMU keeps {} hidden",
                p.standby, p.primary, p.standby, p.primary
            ))
        } else if !self.mac_match {
            Some(format!(
                "pair {} (standby) / {} (primary): MACs differ ({} vs {}): the guest's net_failover pairs devices by MAC and will not bond them; give both interfaces the same <mac address=.../>",
                p.standby,
                p.primary,
                p.standby_mac.as_deref().unwrap_or("?"),
                p.primary_mac.as_deref().unwrap_or("?")
            ))
        } else {
            None
        }
    }
}

/// qdev ids of every device in `query-pci`, recursing into bridges.
pub async fn pci_device_ids(qmp: &Qmp) -> Result<HashSet<String>, QmpError> {
    Ok(teamvirt_qmp::PciInfo::device_ids(&qmp.query_pci().await?)
        .into_iter()
        .collect())
}

/// `Some(acked)` when `x-query-virtio-status` can tell whether the guest
/// acked VIRTIO_NET_F_STANDBY on the standby `id`.
async fn standby_feature_acked(qmp: &Qmp, id: &str) -> Option<bool> {
    let list = qmp.x_query_virtio().await.ok()?;
    let prefix = format!("/machine/peripheral/{id}/");
    let path = list.into_iter().find(|e| e.path.starts_with(&prefix))?.path;
    let st = qmp.x_query_virtio_status(&path).await.ok()?;
    Some(
        st.guest_features
            .dev_features
            .iter()
            .any(|f| f.starts_with("VIRTIO_NET_F_STANDBY")),
    )
}

/// Current state of every pair (see the module comment for the method).
pub async fn query(qmp: &Qmp, pairs: &[TeamingPair]) -> Result<Vec<PairState>, QmpError> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    // Three separate questions, not one snapshot: ask whether the guest
    // acked STANDBY first. QEMU creates the primary in the same step as
    // the ack, so a primary missing from a later answer was removed, not
    // still hidden; asked the other way round, a guest negotiating in
    // between looked like an ejected primary (seen under load in the VF
    // lab: "unplugged and removed" while the guest was still booting).
    let mut acks = Vec::with_capacity(pairs.len());
    for p in pairs {
        acks.push(standby_feature_acked(qmp, &p.standby).await);
    }
    let periph: HashSet<String> = qmp.peripherals().await?.into_iter().collect();
    let pci = pci_device_ids(qmp).await?;
    let mut out = Vec::with_capacity(pairs.len());
    for (p, acked) in pairs.iter().zip(acks) {
        let exists = periph.contains(&p.primary) || pci.contains(&p.primary);
        // A primary QEMU no longer has while the standby's STANDBY feature
        // is acked was not hidden: it was removed (QEMU only creates it
        // once, at negotiation).
        let removed = (!exists && acked == Some(true)).then(|| {
            format!(
                "primary {} was unplugged and removed from the guest (the guest ejected it, or a cancelled migration left it unplugged); the guest runs on standby {} alone{}; `teamvirt teaming DOMAIN --replug` plugs it again",
                p.primary,
                p.standby,
                p.vf.as_deref()
                    .map(|v| format!(", VF {v} stays held for it"))
                    .unwrap_or_default()
            )
        });
        out.push(PairState {
            // A primary QEMU still has while the standby's features say
            // STANDBY is not acked: the guest was reset (reboot) and has
            // not negotiated again yet. QEMU keeps the device across a
            // reset, so its presence alone would say "yes" too early.
            negotiated: (exists || removed.is_some()) && acked != Some(false),
            plugged: pci.contains(&p.primary),
            mac_match: p.mac_match(),
            standby_feature_acked: acked,
            removed,
            pair: p.clone(),
        });
    }
    Ok(out)
}

/// Wait until every pair negotiated (the `FAILOVER_NEGOTIATED` event on
/// `events`, subscribed before the vCPUs started, or the primary appearing,
/// checked every 500 ms) and its primary is plugged, or `timeout` passes.
/// Returns the final state of all pairs; the caller decides on failure.
pub async fn wait_negotiated(
    qmp: &Qmp,
    events: &mut EventStream,
    pairs: &[TeamingPair],
    timeout: Duration,
) -> Result<Vec<PairState>, TeamingError> {
    // A huge bound (API callers; the CLI caps it) must not overflow.
    let deadline = teamvirt_host::process::deadline_after(timeout);
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let states = query(qmp, pairs).await.map_err(gone)?;
        let done = states
            .iter()
            .all(|s| (s.negotiated || seen.contains(&s.pair.standby)) && s.plugged);
        if done || Instant::now() >= deadline {
            return Ok(states);
        }
        let tick = (Instant::now() + Duration::from_millis(500)).min(deadline);
        loop {
            match tokio::time::timeout_at(tick.into(), events.recv()).await {
                Err(_) => break,
                Ok(None) => return Err(TeamingError::QemuGone),
                Ok(Some(ev)) if ev.name == "FAILOVER_NEGOTIATED" => {
                    if let Some(id) = ev.data_str("device-id") {
                        seen.insert(id.to_owned());
                    }
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

fn gone(e: QmpError) -> TeamingError {
    match e {
        QmpError::Disconnected => TeamingError::QemuGone,
        e => TeamingError::Qmp(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pair(sm: &str, pm: &str) -> TeamingPair {
        TeamingPair {
            standby: "ua-sb".into(),
            primary: "hostdev0".into(),
            standby_mac: Some(sm.into()),
            primary_mac: Some(pm.into()),
            vf: None,
            network: None,
            emulated: true,
        }
    }

    #[test]
    fn problems_name_the_pair_and_cause() {
        let st = |neg, p: TeamingPair| PairState {
            negotiated: neg,
            plugged: neg,
            mac_match: p.mac_match(),
            standby_feature_acked: None,
            removed: None,
            pair: p,
        };
        let ok = st(true, pair("52:54:00:00:00:01", "52:54:00:00:00:01"));
        assert!(ok.is_working() && ok.problem().is_none());
        let no = st(false, pair("52:54:00:00:00:01", "52:54:00:00:00:01"));
        assert!(no
            .problem()
            .unwrap()
            .contains("did not negotiate failover on ua-sb"));
        let mac = st(true, pair("52:54:00:00:00:01", "52:54:00:00:00:02"));
        assert!(!mac.is_working());
        assert!(mac.problem().unwrap().contains("MACs differ"));
    }

    #[test]
    fn json_shape_is_flat() {
        let s = PairState {
            negotiated: true,
            plugged: false,
            mac_match: true,
            standby_feature_acked: Some(true),
            removed: None,
            pair: pair("a", "a"),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["standby"], "ua-sb");
        assert_eq!(v["negotiated"], true);
        assert_eq!(v["plugged"], false);
    }

    /// A guest that negotiates while `query` asks its questions: QEMU
    /// answers each from its state at that moment. The first answer is
    /// given before the guest acks STANDBY, every later one after (the
    /// primary then exists). It must never read as an ejected primary.
    #[tokio::test]
    async fn a_guest_negotiating_during_the_query_is_not_an_ejected_primary() {
        use serde_json::{json, Value};
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (client, server) = tokio::net::UnixStream::pair().unwrap();
        let fake = tokio::spawn(async move {
            let (rd, mut wr) = server.into_split();
            let mut rd = BufReader::new(rd);
            let greeting = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;
            wr.write_all(format!("{greeting}\r\n").as_bytes())
                .await
                .unwrap();
            let mut answered = 0;
            let mut line = String::new();
            loop {
                line.clear();
                if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let msg: Value = serde_json::from_str(&line).unwrap();
                let cmd = msg["execute"].as_str().unwrap().to_owned();
                let negotiated = answered > 0;
                let ret = match cmd.as_str() {
                    "qmp_capabilities" => json!({}),
                    "qom-list" => {
                        let mut l = vec![json!({"name": "ua-sb", "type": "child<virtio-net-pci>"})];
                        if negotiated {
                            l.push(json!({"name": "hostdev0", "type": "child<vfio-pci>"}));
                        }
                        json!(l)
                    }
                    "query-pci" => {
                        let mut d = vec![json!({"qdev_id": "ua-sb"})];
                        if negotiated {
                            d.push(json!({"qdev_id": "hostdev0"}));
                        }
                        json!([{"bus": 0, "devices": d}])
                    }
                    "x-query-virtio" => {
                        json!([{"path": "/machine/peripheral/ua-sb/virtio-backend", "name": "virtio-net"}])
                    }
                    "x-query-virtio-status" => {
                        let f = if negotiated {
                            vec!["VIRTIO_NET_F_STANDBY: standby"]
                        } else {
                            vec![]
                        };
                        json!({"guest-features": {"dev-features": f}})
                    }
                    other => panic!("unexpected {other}"),
                };
                if cmd != "qmp_capabilities" {
                    answered += 1;
                }
                let reply = json!({"return": ret, "id": msg["id"]});
                wr.write_all(format!("{reply}\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let q = Qmp::from_stream(client, Default::default()).await.unwrap();
        let st = query(&q, &[pair("52:54:00:00:00:01", "52:54:00:00:00:01")])
            .await
            .unwrap();
        assert_eq!(st[0].removed, None, "{:?}", st[0]);
        drop(q);
        fake.abort();
    }

    /// Right after a reset (reboot) QEMU still has the plugged primary,
    /// but the standby's acked features are cleared until the guest's
    /// driver negotiates again: not negotiated yet (it said yes).
    #[tokio::test]
    async fn a_reset_guest_has_not_negotiated_again() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (client, server) = tokio::net::UnixStream::pair().unwrap();
        let fake = tokio::spawn(async move {
            let (rd, mut wr) = server.into_split();
            let mut rd = BufReader::new(rd);
            let greeting = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;
            wr.write_all(format!("{greeting}\r\n").as_bytes())
                .await
                .unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let msg: Value = serde_json::from_str(&line).unwrap();
                let ret = match msg["execute"].as_str().unwrap() {
                    "qmp_capabilities" => json!({}),
                    "qom-list" => json!([
                        {"name": "ua-sb", "type": "child<virtio-net-pci>"},
                        {"name": "hostdev0", "type": "child<vfio-pci>"}
                    ]),
                    "query-pci" => {
                        json!([{"bus": 0, "devices": [{"qdev_id": "ua-sb"}, {"qdev_id": "hostdev0"}]}])
                    }
                    "x-query-virtio" => {
                        json!([{"path": "/machine/peripheral/ua-sb/virtio-backend", "name": "virtio-net"}])
                    }
                    "x-query-virtio-status" => json!({"guest-features": {"dev-features": []}}),
                    other => panic!("unexpected {other}"),
                };
                let reply = json!({"return": ret, "id": msg["id"]});
                wr.write_all(format!("{reply}\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let q = Qmp::from_stream(client, Default::default()).await.unwrap();
        let st = query(&q, &[pair("52:54:00:00:00:01", "52:54:00:00:00:01")])
            .await
            .unwrap();
        assert!(!st[0].negotiated, "{:?}", st[0]);
        assert!(st[0].plugged, "{:?}", st[0]);
        assert!(
            st[0].problem().unwrap().contains("since it was reset"),
            "{:?}",
            st[0].problem()
        );
        drop(q);
        fake.abort();
    }
}
