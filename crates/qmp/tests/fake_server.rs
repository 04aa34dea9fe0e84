//! Protocol behaviour against a scripted in-process QMP server: things a
//! real QEMU will not do on demand (unknown events, out-of-order replies,
//! id-less errors, pretty-printed JSON, garbage lines).

use std::time::Duration;

use serde_json::{json, Value};
use teamvirt_qmp::{Qmp, QmpError, QmpOptions, TypedEvent};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18"}, "capabilities": ["oob"]}}"#;

struct Server {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

impl Server {
    async fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.rd.read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap()
    }
    async fn send(&mut self, s: &str) {
        self.wr.write_all(s.as_bytes()).await.unwrap();
        self.wr.write_all(b"\r\n").await.unwrap();
    }
}

/// Connect a client to a fresh server that has done the handshake.
async fn pair() -> (Qmp, Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (rd, wr) = s.into_split();
        let mut srv = Server {
            rd: BufReader::new(rd),
            wr,
        };
        srv.send(GREETING).await;
        let cap = srv.recv().await;
        assert_eq!(cap["execute"], "qmp_capabilities");
        assert!(cap.get("arguments").is_none());
        srv.send(&json!({"return": {}, "id": cap["id"]}).to_string())
            .await;
        srv
    });
    let qmp = Qmp::connect(&sock).await.unwrap();
    (qmp, server.await.unwrap(), dir)
}

#[tokio::test]
async fn greeting_is_decoded() {
    let (qmp, _srv, _d) = pair().await;
    assert_eq!(qmp.qemu_version().to_string(), "7.2.22");
    assert_eq!(qmp.greeting().package, "Debian 1:7.2+dfsg-7+deb12u18");
    assert_eq!(qmp.greeting().capabilities, vec!["oob".to_string()]);
}

#[tokio::test]
async fn replies_are_matched_by_id_not_order() {
    let (qmp, mut srv, _d) = pair().await;
    let a = tokio::spawn({
        let q = qmp.clone();
        async move { q.execute("cmd-a", json!({"x": 1})).await }
    });
    let first = srv.recv().await;
    let b = tokio::spawn({
        let q = qmp.clone();
        async move { q.execute("cmd-b", Value::Null).await }
    });
    let second = srv.recv().await;
    assert_eq!(first["arguments"], json!({"x": 1}));
    let (ida, idb) = if first["execute"] == "cmd-a" {
        (first["id"].clone(), second["id"].clone())
    } else {
        (second["id"].clone(), first["id"].clone())
    };
    // Answer in reverse order.
    srv.send(
        &json!({"id": idb, "error": {"class": "GenericError", "desc": "b failed"}}).to_string(),
    )
    .await;
    srv.send(&json!({"return": {"who": "a"}, "id": ida}).to_string())
        .await;
    assert_eq!(a.await.unwrap().unwrap(), json!({"who": "a"}));
    match b.await.unwrap() {
        Err(QmpError::Command { class, desc }) => {
            assert_eq!(class, "GenericError");
            assert_eq!(desc, "b failed");
        }
        other => panic!("expected command error, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_events_pass_through_and_slow_subscriber_does_not_block() {
    let (qmp, mut srv, _d) = pair().await;
    let mut slow = qmp.subscribe();
    let mut fast = qmp.subscribe();
    srv.send(r#"{"event": "BRAND_NEW", "data": {"weird": [1, {"x": null}]}, "timestamp": {"seconds": 5, "microseconds": 6}, "extra-top": true}"#).await;
    srv.send(r#"{"timestamp": {"seconds": 7, "microseconds": 8}, "event": "FAILOVER_NEGOTIATED", "data": {"device-id": "net1", "unknown-field": 3}}"#).await;
    // Many events nobody reads from `slow`: the connection must stay usable.
    for i in 0..5000 {
        srv.send(&json!({"event": "SPAM", "data": {"i": i}}).to_string())
            .await;
    }
    let ev = fast.recv().await.unwrap();
    assert_eq!(ev.name, "BRAND_NEW");
    assert_eq!(ev.data, json!({"weird": [1, {"x": null}]}));
    assert_eq!(ev.timestamp, (5, 6));
    assert_eq!(ev.typed(), TypedEvent::Other);
    let ev = fast.recv().await.unwrap();
    assert_eq!(
        ev.typed(),
        TypedEvent::FailoverNegotiated {
            device_id: "net1".into()
        }
    );
    assert_eq!(ev.data["unknown-field"], 3);

    let q = qmp.clone();
    let t = tokio::spawn(async move { q.execute("query-status", Value::Null).await });
    let cmd = srv.recv().await;
    srv.send(&json!({"return": {"status": "running"}, "id": cmd["id"]}).to_string())
        .await;
    assert_eq!(t.await.unwrap().unwrap()["status"], "running");

    // Nothing was dropped for the slow one.
    let mut n = 0;
    while let Some(ev) = slow.try_recv() {
        n += 1;
        if ev.name == "SPAM" {
            assert_eq!(ev.data["i"], n - 3);
        }
    }
    assert_eq!(n, 5002);
    // History keeps the newest 4096 (the default limit); replay matches it.
    let hist = qmp.history();
    assert_eq!(hist.len(), 4096);
    assert_eq!(hist[0].data["i"], 5002 - 4096 - 2);
    let mut replay = qmp.subscribe_with_history();
    assert_eq!(replay.recv().await.unwrap(), hist[0]);
}

#[tokio::test]
async fn pretty_json_garbage_and_idless_errors() {
    let (qmp, mut srv, _d) = pair().await;
    let mut events = qmp.subscribe();
    let q = qmp.clone();
    let t = tokio::spawn(async move { q.execute("one", Value::Null).await });
    let cmd = srv.recv().await;
    srv.send("this is not json").await;
    srv.send(
        "{\n  \"event\": \"STOP\",\n  \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}\n}",
    )
    .await;
    // QEMU answers unparsable input without an id: goes to the oldest command.
    srv.send(r#"{"error": {"class": "GenericError", "desc": "JSON parse error"}}"#)
        .await;
    let err = t.await.unwrap().unwrap_err();
    assert_eq!(err.class(), Some("GenericError"));
    let ev = events.recv().await.unwrap();
    assert_eq!(ev.typed(), TypedEvent::Stop);
    assert_eq!(ev.timestamp, (1, 2));
    let _ = cmd;
    // Arguments that are not an object are refused locally.
    assert!(matches!(
        qmp.execute("x", json!([1])).await,
        Err(QmpError::Protocol(_))
    ));
}

#[tokio::test]
async fn timeout_then_late_reply_is_ignored() {
    let (qmp, mut srv, _d) = pair().await;
    let err = qmp
        .execute_timeout("slow", Value::Null, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, QmpError::Timeout { .. }), "{err:?}");
    let slow = srv.recv().await;
    srv.send(&json!({"return": "late", "id": slow["id"]}).to_string())
        .await;
    let q = qmp.clone();
    let t = tokio::spawn(async move { q.execute("next", Value::Null).await });
    let next = srv.recv().await;
    srv.send(&json!({"return": "on time", "id": next["id"]}).to_string())
        .await;
    assert_eq!(t.await.unwrap().unwrap(), json!("on time"));
}

#[tokio::test]
async fn peer_close_fails_pending_and_later_commands() {
    let (qmp, mut srv, _d) = pair().await;
    let mut events = qmp.subscribe();
    let q = qmp.clone();
    let t = tokio::spawn(async move { q.execute("hang", Value::Null).await });
    let _ = srv.recv().await;
    drop(srv);
    assert!(matches!(t.await.unwrap(), Err(QmpError::Disconnected)));
    assert!(matches!(
        qmp.execute("after", Value::Null).await,
        Err(QmpError::Disconnected)
    ));
    assert!(events.recv().await.is_none());
    qmp.disconnected().await;
    assert!(!qmp.is_connected());
    let w = qmp
        .wait_event("STOP", |_| true, Duration::from_secs(5))
        .await;
    assert!(matches!(w, Err(QmpError::Disconnected)));
}

#[tokio::test]
async fn bad_greeting_and_missing_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    assert!(matches!(Qmp::connect(&sock).await, Err(QmpError::Io(_))));
    let listener = UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        let (mut s, _): (UnixStream, _) = listener.accept().await.unwrap();
        s.write_all(b"{\"hello\": 1}\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    assert!(matches!(
        Qmp::connect(&sock).await,
        Err(QmpError::Protocol(_))
    ));

    // A socket that appears late is waited for.
    let late = dir.path().join("late.sock");
    let l2 = late.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let listener = UnixListener::bind(&l2).unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let (rd, wr) = s.into_split();
        let mut srv = Server {
            rd: BufReader::new(rd),
            wr,
        };
        srv.send(GREETING).await;
        let cap = srv.recv().await;
        srv.send(&json!({"return": {}, "id": cap["id"]}).to_string())
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let opts = QmpOptions {
        wait_for_socket: Duration::from_secs(5),
        ..Default::default()
    };
    let q = Qmp::connect_with(&late, opts).await.unwrap();
    assert_eq!(q.qemu_version().major, 7);
}
