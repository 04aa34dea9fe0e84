//! The phases after the prechecks ([`run_phases`]) against a scripted
//! in-process source QEMU (QMP on a unix socket) and a fake destination
//! that records its calls. `migrate()` as a whole needs a real QEMU (it
//! checks the source's identity through /proc): `tests/cli_migrate.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use super::*;
use crate::accel::Accel;
use crate::migrate::dest::Finished;
use crate::teaming::TeamingPair;

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#;
const NAME: &str = "vm1";
const URI: &str = "tcp:127.0.0.1:4444";
const DEST_TORN_DOWN: &str = "destination QEMU stopped, VF 0000:03:00.1 returned";

/// One `query-migrate` of the fake source: the events QEMU sends first,
/// then its reply.
#[derive(Clone)]
struct Step {
    events: Vec<(&'static str, Value)>,
    reply: Value,
}

fn step(events: Vec<(&'static str, Value)>, reply: Value) -> Step {
    Step { events, reply }
}

fn migration(status: &str) -> (&'static str, Value) {
    ("MIGRATION", json!({ "status": status }))
}

/// How the fake source QEMU answers. Each `query-migrate` takes the next
/// step (the last one repeats); after `migrate_cancel` it says `cancelled`.
struct Script {
    steps: VecDeque<Step>,
    /// This command fails (GenericError "CMD refused").
    fail: Option<&'static str>,
    /// `query-status`; `cont` and `stop` change it.
    run_state: &'static str,
    /// qdev ids on the guest's PCI bus (`query-pci`).
    pci: Vec<&'static str>,
}

impl Script {
    fn new(steps: Vec<Step>) -> Script {
        Script {
            steps: steps.into(),
            fail: None,
            run_state: "running",
            pci: vec!["hostdev0"],
        }
    }
}

/// Commands the fake source received (name, arguments), handshake excluded.
type CommandLog = Arc<Mutex<Vec<(String, Value)>>>;

async fn send(wr: &mut OwnedWriteHalf, v: &Value) {
    wr.write_all(v.to_string().as_bytes()).await.unwrap();
    wr.write_all(b"\r\n").await.unwrap();
}

async fn serve(listener: UnixListener, mut script: Script, log: CommandLog) {
    let (s, _) = listener.accept().await.unwrap();
    let (rd, mut wr) = s.into_split();
    let mut rd = BufReader::new(rd);
    wr.write_all(GREETING.as_bytes()).await.unwrap();
    wr.write_all(b"\r\n").await.unwrap();
    let mut cancelled = false;
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let msg: Value = serde_json::from_str(&line).unwrap();
        let cmd = msg["execute"].as_str().unwrap().to_owned();
        let id = msg["id"].clone();
        if cmd != "qmp_capabilities" {
            let args = msg.get("arguments").cloned().unwrap_or(Value::Null);
            log.lock().unwrap().push((cmd.clone(), args));
        }
        if script.fail == Some(cmd.as_str()) {
            let desc = format!("{cmd} refused");
            send(
                &mut wr,
                &json!({"error": {"class": "GenericError", "desc": desc}, "id": id}),
            )
            .await;
            continue;
        }
        let ret = match cmd.as_str() {
            "query-migrate" if cancelled => json!({"status": "cancelled"}),
            "query-migrate" => {
                let st = if script.steps.len() > 1 {
                    script.steps.pop_front().unwrap()
                } else {
                    script.steps.front().cloned().unwrap()
                };
                for (name, data) in st.events {
                    let ev = json!({"event": name, "data": data,
                        "timestamp": {"seconds": 1, "microseconds": 0}});
                    send(&mut wr, &ev).await;
                }
                st.reply
            }
            "migrate_cancel" => {
                cancelled = true;
                json!({})
            }
            "query-status" => {
                json!({"status": script.run_state, "running": script.run_state == "running"})
            }
            "cont" => {
                script.run_state = "running";
                json!({})
            }
            "stop" => {
                script.run_state = "paused";
                json!({})
            }
            "query-pci" => {
                let devs: Vec<Value> = script.pci.iter().map(|id| json!({"qdev_id": id})).collect();
                json!([{"bus": 0, "devices": devs}])
            }
            _ => json!({}),
        };
        send(&mut wr, &json!({"return": ret, "id": id})).await;
        if cmd == "quit" {
            return;
        }
    }
}

/// A destination that records its calls.
#[derive(Default)]
struct FakeDest {
    calls: Vec<String>,
    fail_prepare: bool,
    fail_finish: bool,
    /// Its QEMU is gone as soon as it is prepared (the event channel closes).
    gone: bool,
    /// Its QEMU dies this long after it is prepared.
    dies_after: Option<Duration>,
    /// The URI it answers with (default [`URI`]).
    uri: Option<&'static str>,
    tx: Option<mpsc::UnboundedSender<DestEvent>>,
}

impl Destination for FakeDest {
    fn describe(&self) -> String {
        "fake-destination".into()
    }

    async fn prepare(&mut self, req: &PrepareRequest) -> Result<Prepared, MigrateError> {
        self.calls.push(format!("prepare {}", req.name));
        if self.fail_prepare {
            return Err(MigrateError::DestQemu(
                "the destination QEMU did not start".into(),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(d) = self.dies_after {
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                let _ = tx.send(DestEvent::Exited);
            });
        } else if !self.gone {
            self.tx = Some(tx);
        }
        Ok(Prepared {
            uri: self.uri.unwrap_or(URI).into(),
            pairs: req.pairs.clone(),
            vfs: vec![VfBinding {
                network: "pool".into(),
                device: "hostdev0".into(),
                address: "0000:03:00.1".into(),
                lab: None,
            }],
            substitutions: Vec::new(),
            pid: None,
            events: rx,
        })
    }

    async fn finish(&mut self, resume: bool, _timeout: Duration) -> Result<Finished, MigrateError> {
        self.calls.push(format!("finish resume={resume}"));
        if self.fail_finish {
            return Err(MigrateError::remote(
                crate::migrate::proto::ErrorCode::OperationFailed,
                "the destination QEMU did not resume".into(),
            ));
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(DestEvent::Qmp(Event {
                name: "FAILOVER_NEGOTIATED".into(),
                data: json!({"device-id": "net0"}),
                timestamp: (1, 0),
            }));
        }
        Ok(Finished {
            pairs: Vec::new(),
            running: resume,
            defined: false,
            guest: Vec::new(),
        })
    }

    async fn abort(&mut self) -> Result<Vec<String>, MigrateError> {
        self.calls.push("abort".into());
        self.tx = None;
        Ok(vec![DEST_TORN_DOWN.into()])
    }
}

struct Fixture {
    _t: tempfile::TempDir,
    sd: StateDir,
    log: CommandLog,
    src: Option<Source>,
}

impl Fixture {
    /// A state directory with the domain's run directory, and the source
    /// as the prechecks would have found it, its QMP on `script` (QEMU
    /// 7.2), under KVM.
    async fn new(script: Script) -> Fixture {
        Fixture::with_accel(script, Accel::Kvm).await
    }

    /// The same with the accelerator `accel` (TCG on QEMU 7.2 copies with
    /// the guest paused, see `tcg_copy`).
    async fn with_accel(script: Script, accel: Accel) -> Fixture {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(&t.path().join("state")).unwrap();
        let paths = sd.create_run_dir(NAME).unwrap();
        let sock = t.path().join("qmp.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let log = CommandLog::default();
        tokio::spawn(serve(listener, script, log.clone()));
        let qmp = Qmp::connect(&sock).await.unwrap();
        let pair = TeamingPair {
            standby: "net0".into(),
            primary: "hostdev0".into(),
            standby_mac: None,
            primary_mac: None,
            vf: Some("0000:02:00.1".into()),
            network: Some("pool".into()),
            emulated: false,
        };
        let req = PrepareRequest {
            name: NAME.into(),
            uuid: None,
            emulator: "/usr/bin/qemu-system-x86_64".into(),
            argv: vec!["/usr/bin/qemu-system-x86_64".into()],
            accel,
            source_run_dir: paths.dir.clone(),
            source_serial_log: None,
            source_root: sd.root().to_owned(),
            pairs: vec![pair],
            live_xml: String::new(),
            persistent_xml: None,
        };
        let src = Source {
            qmp,
            // No such process: it is "gone" as soon as it is asked to quit.
            proc: ProcId {
                pid: i32::MAX - 1,
                start_time: 1,
            },
            req,
            was_running: true,
            plugged_before: vec!["hostdev0".into()],
            warnings: Vec::new(),
        };
        Fixture {
            _t: t,
            sd,
            log,
            src: Some(src),
        }
    }

    /// Run the phases; what was reported, in order.
    async fn run(
        &mut self,
        dest: &mut FakeDest,
        opts: &MigrateOptions,
        abort: watch::Receiver<Option<String>>,
    ) -> (Result<Outcome, MigrateError>, Vec<Progress>) {
        let mut seen = Vec::new();
        let mut progress = |p: Progress| seen.push(p);
        let src = self.src.take().unwrap();
        let fut = run_phases(&self.sd, NAME, src, dest, opts, abort, &mut progress);
        let r = tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .expect("the phases did not end");
        (r, seen)
    }

    fn commands(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect()
    }

    fn args_of(&self, cmd: &str) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == cmd)
            .map(|(_, a)| a.clone())
            .collect()
    }

    fn job_file_exists(&self) -> bool {
        job::job_path(&self.sd, NAME).unwrap().exists()
    }
}

fn opts() -> MigrateOptions {
    MigrateOptions {
        poll: Duration::from_millis(10),
        unplug_timeout: Duration::from_secs(10),
        ..MigrateOptions::default()
    }
}

fn no_abort() -> watch::Receiver<Option<String>> {
    let (tx, rx) = watch::channel(None);
    // The sender gone means "never aborted" to the loop.
    drop(tx);
    rx
}

fn phases(seen: &[Progress]) -> Vec<String> {
    seen.iter()
        .filter_map(|p| match p {
            Progress::Phase { phase, .. } => Some(phase.clone()),
            _ => None,
        })
        .collect()
}

fn qemu_events(seen: &[Progress]) -> Vec<(Side, String)> {
    seen.iter()
        .filter_map(|p| match p {
            Progress::Qemu { side, name, .. } => Some((*side, name.clone())),
            _ => None,
        })
        .collect()
}

fn failed(r: Result<Outcome, MigrateError>) -> (String, Vec<String>, bool) {
    match r {
        Err(MigrateError::Failed {
            reason,
            rollback,
            primaries_back,
        }) => (reason, rollback, primaries_back),
        Err(e) => panic!("expected a rolled back migration, got error {e}"),
        Ok(o) => panic!("expected a rolled back migration, got {o:?}"),
    }
}

/// `setup -> wait-unplug -> active -> completed`, each status sent as an
/// event one poll before `query-migrate` reports it (as QEMU does).
fn completing() -> Vec<Step> {
    vec![
        step(vec![migration("setup")], json!({"status": "setup"})),
        step(
            vec![
                migration("wait-unplug"),
                ("UNPLUG_PRIMARY", json!({"device-id": "hostdev0"})),
            ],
            json!({"status": "setup"}),
        ),
        step(vec![migration("active")], json!({"status": "wait-unplug"})),
        step(
            vec![migration("completed")],
            json!({"status": "active", "ram": {"total": 1000, "transferred": 400, "remaining": 600}}),
        ),
        step(
            vec![],
            json!({"status": "completed", "ram": {"total": 1000, "transferred": 1000, "remaining": 0}}),
        ),
    ]
}

/// QEMU fails the migration: its socket to the destination broke.
fn failing_on_the_wire() -> Vec<Step> {
    vec![
        step(vec![migration("setup")], json!({"status": "setup"})),
        step(
            vec![],
            json!({"status": "failed", "error-desc": "Unable to write to socket: Connection reset by peer"}),
        ),
    ]
}

/// The guest never unplugs: QEMU stays in `wait-unplug`.
fn stuck_in_wait_unplug() -> Vec<Step> {
    vec![
        step(
            vec![
                migration("setup"),
                migration("wait-unplug"),
                ("UNPLUG_PRIMARY", json!({"device-id": "hostdev0"})),
            ],
            json!({"status": "setup"}),
        ),
        step(vec![], json!({"status": "wait-unplug"})),
    ]
}

const START: [&str; 4] = [
    "migrate-set-capabilities",
    "migrate-set-parameters",
    "migrate-set-parameters",
    "migrate",
];

#[tokio::test]
async fn failed_prepare_touches_nothing_and_aborts_nothing() {
    let mut f = Fixture::new(Script::new(completing())).await;
    let mut dest = FakeDest {
        fail_prepare: true,
        ..FakeDest::default()
    };
    let (r, seen) = f.run(&mut dest, &opts(), no_abort()).await;
    match r {
        Err(MigrateError::DestQemu(m)) => assert_eq!(m, "the destination QEMU did not start"),
        other => panic!("expected the destination's error, got {other:?}"),
    }
    // `prepare` leaves nothing behind by contract: no abort.
    assert_eq!(dest.calls, ["prepare vm1"]);
    assert!(f.commands().is_empty(), "source got {:?}", f.commands());
    assert_eq!(phases(&seen), ["prepare"]);
    assert!(!f.job_file_exists());
}

/// A destination answering with an `exec:` (or `file:`) URI: refused
/// before the source QEMU hears of it, the destination torn down, the
/// source untouched (still running).
#[tokio::test]
async fn hostile_destination_uri_never_reaches_the_source() {
    for uri in [
        "exec:touch /tmp/pwned",
        "file:/etc/shadow",
        "rdma:1.2.3.4:5",
    ] {
        let mut f = Fixture::new(Script::new(completing())).await;
        let mut dest = FakeDest {
            uri: Some(uri),
            ..FakeDest::default()
        };
        let (r, seen) = f.run(&mut dest, &opts(), no_abort()).await;
        let e = r.unwrap_err().to_string();
        assert!(e.contains(uri) && e.contains("only tcp:"), "{e}");
        assert_eq!(dest.calls, ["prepare vm1", "abort"]);
        assert!(f.commands().is_empty(), "source got {:?}", f.commands());
        assert_eq!(phases(&seen), ["prepare"]);
    }
}

#[tokio::test]
async fn failed_start_tears_the_destination_down() {
    let mut script = Script::new(completing());
    script.fail = Some("migrate");
    let mut f = Fixture::new(script).await;
    let mut dest = FakeDest::default();
    let (r, seen) = f.run(&mut dest, &opts(), no_abort()).await;
    match r {
        Err(e @ MigrateError::Qmp { side: "source", .. }) => {
            assert!(e.to_string().contains("migrate refused"), "{e}")
        }
        other => panic!("expected the source's QMP error, got {other:?}"),
    }
    assert_eq!(dest.calls, ["prepare vm1", "abort"]);
    // Nothing is cancelled: the source never started migrating.
    assert_eq!(f.commands(), START);
    assert_eq!(phases(&seen), ["prepare"]);
    assert!(!f.job_file_exists());
}

#[tokio::test]
async fn completed_migration_hands_over() {
    let mut f = Fixture::new(Script::new(completing())).await;
    let mut dest = FakeDest::default();
    let (r, seen) = f.run(&mut dest, &opts(), no_abort()).await;
    let out = r.expect("the migration completes");
    assert_eq!(dest.calls, ["prepare vm1", "finish resume=true"]);
    assert_eq!(
        phases(&seen),
        [
            "prepare",
            "setup",
            "wait-unplug",
            "active",
            "completed",
            "finish"
        ]
    );
    assert_eq!(
        qemu_events(&seen),
        [
            (Side::Source, "UNPLUG_PRIMARY".to_owned()),
            (Side::Destination, "FAILOVER_NEGOTIATED".to_owned()),
        ]
    );
    let cmds = f.commands();
    assert_eq!(cmds[..4], START);
    assert_eq!(cmds.last().map(String::as_str), Some("quit"));
    for c in ["migrate_cancel", "cont", "stop"] {
        assert!(!cmds.iter().any(|x| x == c), "{c} sent: {cmds:?}");
    }
    assert_eq!(f.args_of("migrate"), [json!({ "uri": URI })]);
    assert_eq!(
        f.args_of("migrate-set-parameters"),
        [
            json!({"max-bandwidth": (i64::MAX as u64 >> 20) << 20}),
            json!({"tls-creds": ""}),
        ]
    );
    assert_eq!(out.job.phase, JobPhase::Done);
    assert_eq!(out.job.unplugged, ["hostdev0"]);
    assert_eq!(out.job.negotiated_on_destination, ["net0"]);
    assert!(out.job.wait_unplug_ms.is_some());
    assert_eq!(out.job.data_processed, Some(1000));
    assert!(out.job.abort_reason.is_none());
    assert!(out.destination_running);
    assert_eq!(out.destination_vfs.len(), 1);
    assert!(!f.job_file_exists());
}

/// TCG on QEMU 7.2 (the fixture's greeting): nothing but a trickle leaves
/// while the guest runs and unplugs; once QEMU leaves wait-unplug the
/// source is stopped and only then does the copy get its bandwidth; the
/// destination resumes the guest as usual.
#[tokio::test]
async fn tcg_before_qemu_9_copies_with_the_guest_paused() {
    let mut f = Fixture::with_accel(Script::new(completing()), Accel::Tcg).await;
    let mut dest = FakeDest::default();
    let (r, seen) = f.run(&mut dest, &opts(), no_abort()).await;
    r.expect("the migration completes");
    assert_eq!(dest.calls, ["prepare vm1", "finish resume=true"]);
    let unlimited = json!({"max-bandwidth": (i64::MAX as u64 >> 20) << 20});
    assert_eq!(
        f.args_of("migrate-set-parameters"),
        [
            json!({"max-bandwidth": super::super::tcg_copy::TRICKLE_BYTES_PER_S}),
            json!({"tls-creds": ""}),
            unlimited,
        ]
    );
    let cmds = f.commands();
    let at = |c: &str| cmds.iter().position(|x| x == c);
    let stop = at("stop").expect("source stopped");
    assert!(at("migrate").unwrap() < stop, "{cmds:?}");
    // The bandwidth comes back after the stop, never before.
    let restored = cmds
        .iter()
        .rposition(|x| x == "migrate-set-parameters")
        .unwrap();
    assert!(stop < restored, "{cmds:?}");
    assert!(!cmds.iter().any(|c| c == "cont"), "{cmds:?}");
    assert!(seen.iter().any(|p| matches!(p,
        Progress::Info { message } if message.contains("QEMU 7.2.0 under TCG") && message.contains("03bfc2188f"))));
}

/// The same with a guest paused before the migration: not stopped again,
/// left paused on the destination.
#[tokio::test]
async fn tcg_before_qemu_9_leaves_a_paused_guest_paused() {
    let mut script = Script::new(completing());
    script.run_state = "paused";
    let mut f = Fixture::with_accel(script, Accel::Tcg).await;
    f.src.as_mut().unwrap().was_running = false;
    let mut dest = FakeDest::default();
    let (r, _) = f.run(&mut dest, &opts(), no_abort()).await;
    r.expect("the migration completes");
    assert_eq!(dest.calls, ["prepare vm1", "finish resume=false"]);
    let cmds = f.commands();
    assert!(!cmds.iter().any(|c| c == "stop" || c == "cont"), "{cmds:?}");
    assert_eq!(f.args_of("migrate-set-parameters").len(), 3, "{cmds:?}");
}

/// QEMU fails after the copy began with the source paused for it: the
/// rollback resumes the guest it paused.
#[tokio::test]
async fn tcg_before_qemu_9_rollback_resumes_the_paused_source() {
    let steps = vec![
        step(vec![migration("setup")], json!({"status": "setup"})),
        step(vec![migration("active")], json!({"status": "active"})),
        step(
            vec![],
            json!({"status": "failed", "error-desc": "Unable to write to socket: Connection reset by peer"}),
        ),
    ];
    let mut f = Fixture::with_accel(Script::new(steps), Accel::Tcg).await;
    let mut dest = FakeDest::default();
    let (r, _) = f.run(&mut dest, &opts(), no_abort()).await;
    let (_, rollback, _) = failed(r);
    assert!(
        rollback
            .iter()
            .any(|s| s == "source resumed (teamvirt had paused it for the copy)"),
        "{rollback:?}"
    );
    let cmds = f.commands();
    let pos = |c: &str| cmds.iter().position(|x| x == c).unwrap();
    assert!(pos("stop") < pos("cont"), "{cmds:?}");
}

#[tokio::test]
async fn failed_finish_gives_the_domain_back_to_the_source() {
    let mut f = Fixture::new(Script::new(completing())).await;
    let mut dest = FakeDest {
        fail_finish: true,
        ..FakeDest::default()
    };
    let (r, _) = f.run(&mut dest, &opts(), no_abort()).await;
    let (reason, rollback, back) = failed(r);
    assert_eq!(
        reason,
        "operation failed: migration out job: the destination could not take over: the destination QEMU did not resume"
    );
    assert_eq!(
        rollback,
        [
            DEST_TORN_DOWN,
            "source resumed",
            "the primaries stay unplugged on the source: QEMU plugs them back only when the migration itself fails",
        ]
    );
    assert!(!back);
    assert_eq!(dest.calls, ["prepare vm1", "finish resume=true", "abort"]);
    let cmds = f.commands();
    assert_eq!(cmds.last().map(String::as_str), Some("cont"));
    assert!(!cmds.iter().any(|c| c == "quit" || c == "migrate_cancel"));
    assert!(!f.job_file_exists());
}

#[tokio::test]
async fn qemu_failure_rolls_back() {
    let mut f = Fixture::new(Script::new(failing_on_the_wire())).await;
    let mut dest = FakeDest::default();
    let (r, seen) = f.run(&mut dest, &opts(), no_abort()).await;
    let (reason, rollback, back) = failed(r);
    assert_eq!(
        reason,
        "operation failed: migration out job: Unable to write to socket: Connection reset by peer"
    );
    assert_eq!(
        rollback,
        [
            "source migration status: failed",
            DEST_TORN_DOWN,
            "primary hostdev0 is plugged on the source again",
            "domain 'vm1' runs on the source (running)",
        ]
    );
    assert!(back);
    assert_eq!(dest.calls, ["prepare vm1", "abort"]);
    assert_eq!(phases(&seen), ["prepare", "setup", "failed", "rollback"]);
    let cmds = f.commands();
    // QEMU already gave up: nothing to cancel, the guest was running.
    assert!(!cmds.iter().any(|c| c == "migrate_cancel" || c == "cont"));
    assert!(cmds.iter().any(|c| c == "query-pci"));
    assert!(!f.job_file_exists());
}

#[tokio::test]
async fn unplug_deadline_cancels_and_rolls_back() {
    let mut f = Fixture::new(Script::new(stuck_in_wait_unplug())).await;
    let mut dest = FakeDest::default();
    let o = MigrateOptions {
        unplug_timeout: Duration::from_millis(300),
        ..opts()
    };
    let t0 = Instant::now();
    let (r, seen) = f.run(&mut dest, &o, no_abort()).await;
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let (reason, rollback, back) = failed(r);
    assert_eq!(
        reason,
        "operation failed: migration out job: the guest did not unplug primary hostdev0 within 0 s (--unplug-timeout)"
    );
    assert_eq!(
        rollback,
        [
            "migration cancelled on the source (migrate_cancel)",
            "source migration status: cancelled",
            DEST_TORN_DOWN,
            "primary hostdev0 is plugged on the source again",
            "domain 'vm1' runs on the source (running)",
        ]
    );
    assert!(back);
    assert_eq!(dest.calls, ["prepare vm1", "abort"]);
    assert_eq!(
        phases(&seen),
        ["prepare", "setup", "wait-unplug", "rollback", "cancelled"]
    );
    let cmds = f.commands();
    let cancels: Vec<usize> = (0..cmds.len())
        .filter(|&i| cmds[i] == "migrate_cancel")
        .collect();
    assert_eq!(cancels.len(), 1, "{cmds:?}");
    assert!(cancels[0] > 3 && cmds[3] == "migrate");
    assert!(!cmds.iter().any(|c| c == "cont" || c == "stop"));
    assert!(!f.job_file_exists());
}

#[tokio::test]
async fn paused_guest_is_resumed_for_the_rollback_and_paused_again() {
    let mut script = Script::new(stuck_in_wait_unplug());
    script.run_state = "paused";
    let mut f = Fixture::new(script).await;
    let mut dest = FakeDest::default();
    let o = MigrateOptions {
        unplug_timeout: Duration::from_millis(200),
        ..opts()
    };
    let (r, _) = f.run(&mut dest, &o, no_abort()).await;
    let (_, rollback, back) = failed(r);
    assert!(back);
    assert!(
        rollback[1].starts_with("guest was paused with an unplug pending: resumed it"),
        "{rollback:?}"
    );
    assert_eq!(
        rollback[rollback.len() - 2..],
        [
            "guest paused again, as it was",
            "domain 'vm1' runs on the source (paused)",
        ]
    );
    let cmds = f.commands();
    let pos = |c: &str| cmds.iter().position(|x| x == c).unwrap();
    assert!(pos("migrate_cancel") < pos("cont") && pos("cont") < pos("stop"));
}

#[tokio::test]
async fn abort_request_cancels() {
    let mut f = Fixture::new(Script::new(stuck_in_wait_unplug())).await;
    let mut dest = FakeDest::default();
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tx.send(Some("domjobabort".to_owned()));
        // Keep the sender until the job is over.
        tx.closed().await;
    });
    let (r, _) = f.run(&mut dest, &opts(), rx).await;
    let (reason, rollback, back) = failed(r);
    assert_eq!(reason, "operation aborted: migration out job: domjobabort");
    assert_eq!(
        rollback[0],
        "migration cancelled on the source (migrate_cancel)"
    );
    assert!(back);
    assert_eq!(dest.calls, ["prepare vm1", "abort"]);
}

/// A killed destination makes the source's QEMU fail too, and its failure
/// may be seen first: the error still names the destination.
#[tokio::test]
async fn source_failure_caused_by_a_dead_destination_names_it() {
    let mut f = Fixture::new(Script::new(failing_on_the_wire())).await;
    let mut dest = FakeDest {
        dies_after: Some(Duration::from_millis(150)),
        ..FakeDest::default()
    };
    let (r, _) = f.run(&mut dest, &opts(), no_abort()).await;
    let (reason, _, back) = failed(r);
    assert_eq!(
        reason,
        "operation failed: migration out job: the destination QEMU exited"
    );
    assert!(back);
}

#[tokio::test]
async fn destination_gone_cancels() {
    let mut f = Fixture::new(Script::new(stuck_in_wait_unplug())).await;
    let mut dest = FakeDest {
        gone: true,
        ..FakeDest::default()
    };
    let (r, _) = f.run(&mut dest, &opts(), no_abort()).await;
    let (reason, rollback, _) = failed(r);
    assert_eq!(
        reason,
        "operation failed: migration out job: the destination QEMU exited"
    );
    assert_eq!(
        rollback[0],
        "migration cancelled on the source (migrate_cancel)"
    );
    assert_eq!(dest.calls, ["prepare vm1", "abort"]);
}
