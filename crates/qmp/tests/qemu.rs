//! The client against a real QEMU (`-machine none`: no guest, starts in
//! well under a second). Skips only when qemu-system-x86_64 is missing.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use teamvirt_qmp::{Qmp, QmpError, QmpOptions, TypedEvent};
use tokio::process::{Child, Command};

struct Qemu {
    child: Child,
    qmp: Qmp,
    _dir: tempfile::TempDir,
}

impl Qemu {
    fn pid(&self) -> i32 {
        self.child.id().expect("QEMU already reaped") as i32
    }
    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }
}

async fn start(qemu: PathBuf) -> Qemu {
    let dir = teamvirt_testinfra::temp_dir();
    let sock = dir.path().join("qmp.sock");
    let child = Command::new(qemu)
        .args([
            "-machine",
            "none",
            "-nodefaults",
            "-display",
            "none",
            "-qmp",
        ])
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn qemu");
    let opts = QmpOptions {
        wait_for_socket: Duration::from_secs(20),
        ..Default::default()
    };
    let qmp = Qmp::connect_with(&sock, opts).await.expect("QMP handshake");
    Qemu {
        child,
        qmp,
        _dir: dir,
    }
}

macro_rules! qemu_or_skip {
    ($name:expr) => {
        match teamvirt_testinfra::qemu_or_skip($name) {
            Some(q) => start(q).await,
            None => return,
        }
    };
}

#[tokio::test]
async fn query_version_matches_greeting() {
    let q = qemu_or_skip!("query_version_matches_greeting");
    let v = q.qmp.execute("query-version", Value::Null).await.unwrap();
    let g = q.qmp.qemu_version();
    assert_eq!(v["qemu"]["major"], g.major);
    assert_eq!(v["qemu"]["minor"], g.minor);
    assert_eq!(v["qemu"]["micro"], g.micro);
    assert!(g.major >= 4, "failover needs QEMU >= 4.2, got {g}");
    assert_eq!(q.qmp.query_status().await.unwrap(), "running");
    let names: Vec<_> = q.qmp.qom_list("/machine").await.unwrap();
    assert!(names.iter().any(|p| p.name == "type"), "{names:?}");
}

#[tokio::test]
async fn command_errors_are_typed() {
    let q = qemu_or_skip!("command_errors_are_typed");
    match q.qmp.execute("no-such-command", Value::Null).await {
        Err(QmpError::Command { class, desc }) => {
            assert_eq!(class, "CommandNotFound");
            assert!(desc.contains("no-such-command"), "{desc}");
        }
        other => panic!("{other:?}"),
    }
    match q
        .qmp
        .execute("qom-get", json!({"path": "/machine", "property": "nope"}))
        .await
    {
        Err(QmpError::Command { class, desc }) => {
            assert_eq!(class, "GenericError");
            assert!(desc.contains("nope"), "{desc}");
        }
        other => panic!("{other:?}"),
    }
    let e = q
        .qmp
        .qom_list("/machine/peripheral/hostdev0")
        .await
        .unwrap_err();
    assert_eq!(e.class(), Some("DeviceNotFound"));
    // The connection is still fine after errors.
    q.qmp.execute("query-version", json!({})).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_get_their_own_replies() {
    let q = qemu_or_skip!("concurrent_commands_get_their_own_replies");
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let qmp = q.qmp.clone();
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                // The error text echoes the command name: proves the reply
                // is this task's own.
                0 => {
                    let cmd = format!("bogus-{i}");
                    let e = qmp.execute(&cmd, Value::Null).await.unwrap_err();
                    match e {
                        QmpError::Command { desc, .. } => {
                            assert!(desc.contains(&format!("{cmd} ")), "{cmd}: {desc}")
                        }
                        other => panic!("{other:?}"),
                    }
                }
                1 => {
                    let v = qmp.execute("query-version", Value::Null).await.unwrap();
                    assert!(v["qemu"]["major"].is_u64());
                }
                _ => {
                    let v = qmp
                        .execute("qom-get", json!({"path": "/machine", "property": "type"}))
                        .await
                        .unwrap();
                    assert_eq!(v, "none-machine");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn timeout_then_recovery() {
    let q = qemu_or_skip!("timeout_then_recovery");
    // A stopped QEMU process cannot answer.
    q.signal(libc::SIGSTOP);
    let e = q
        .qmp
        .execute_timeout("query-version", Value::Null, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, QmpError::Timeout { .. }), "{e:?}");
    q.signal(libc::SIGCONT);
    // The late reply to the timed-out command must not be taken for this one.
    let v = q
        .qmp
        .execute("qom-get", json!({"path": "/machine", "property": "type"}))
        .await
        .unwrap();
    assert_eq!(v, "none-machine");
}

#[tokio::test]
async fn killed_qemu_gives_disconnected() {
    let mut q = qemu_or_skip!("killed_qemu_gives_disconnected");
    let mut events = q.qmp.subscribe();
    q.signal(libc::SIGSTOP);
    let pending: Vec<_> = (0..3)
        .map(|_| {
            let qmp = q.qmp.clone();
            tokio::spawn(async move { qmp.execute("query-version", Value::Null).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.signal(libc::SIGKILL);
    q.child.wait().await.unwrap();
    for p in pending {
        let r = p.await.unwrap();
        assert!(matches!(r, Err(QmpError::Disconnected)), "{r:?}");
    }
    let r = q.qmp.execute("query-version", Value::Null).await;
    assert!(matches!(r, Err(QmpError::Disconnected)), "{r:?}");
    assert!(events.recv().await.is_none());
    assert!(!q.qmp.is_connected());
}

#[tokio::test]
async fn events_and_quit() {
    let mut q = qemu_or_skip!("events_and_quit");
    let mut events = q.qmp.subscribe();
    q.qmp.execute("stop", Value::Null).await.unwrap();
    let ev = events
        .wait_for("STOP", |_| true, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ev.typed(), TypedEvent::Stop);
    assert!(ev.timestamp.0 > 0);
    assert_eq!(q.qmp.query_status().await.unwrap(), "paused");

    let waiter = {
        let qmp = q.qmp.clone();
        tokio::spawn(async move {
            qmp.wait_event("RESUME", |_| true, Duration::from_secs(10))
                .await
        })
    };
    // Give the waiter time to subscribe before the event can happen.
    tokio::time::sleep(Duration::from_millis(100)).await;
    q.qmp.execute("cont", Value::Null).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap().typed(), TypedEvent::Resume);

    // An event that never comes times out.
    let e = q
        .qmp
        .wait_event("FAILOVER_NEGOTIATED", |_| true, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(e, QmpError::Timeout { .. }), "{e:?}");

    q.qmp.quit().await.unwrap();
    let ev = events
        .wait_for("SHUTDOWN", |_| true, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        ev.typed(),
        TypedEvent::Shutdown {
            guest: Some(false),
            reason: Some("host-qmp-quit".into())
        }
    );
    let status = tokio::time::timeout(Duration::from_secs(10), q.child.wait())
        .await
        .expect("QEMU did not exit after quit")
        .unwrap();
    assert!(status.success(), "{status}");
    tokio::time::timeout(Duration::from_secs(10), q.qmp.disconnected())
        .await
        .expect("disconnect not noticed");
    // History kept them all, in order.
    let names: Vec<_> = q.qmp.history().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["STOP", "RESUME", "SHUTDOWN"]);
}
