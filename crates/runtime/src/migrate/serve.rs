//! The destination half of a migration between hosts: what the remote
//! `teamvirt __migrate-dest` runs for the length of one migration, serving
//! a [`LocalDestination`] on its own state directory over the JSON lines of
//! [`super::proto`] on stdin/stdout (the SSH session's channel).
//!
//! The process lives only as long as the control channel. When the
//! channel ends without a `finish` (the source's `teamvirt` or its SSH
//! connection died, a keepalive fired, SIGTERM/SIGHUP) the destination
//! decides alone, by the one rule the source's recovery applies too (see
//! [`super::recover`](fn@super::recover)): an incoming migration that completed takes the
//! domain over; anything else is torn down (QEMU stopped, VFs back in the
//! pool). Nothing listens except that QEMU's incoming port.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::dest::{DestEvent, Destination, LocalDestination};
use super::job::ABORT_SIGNAL;
use super::proto::{
    check_files, read_line_bounded, ErrorCode, FromDest, Incoming, LineError, ToDest, MAGIC,
    MAX_REQUESTS, MAX_REQUEST_LINE, VERSION,
};
use super::MigrateError;
use teamvirt_host::state::StateDir;

/// How long the destination waits, after losing the channel, for an
/// incoming copy to complete before it tears it down: long enough for
/// the last bytes already on the wire, short enough that a dead source
/// leaves no QEMU for long.
const ALONE_GRACE: Duration = Duration::from_secs(3);

/// Serve one migration on `sd` until the source says goodbye or the
/// channel ends. Returns what was done when the destination had to decide
/// alone (for the helper's stderr, which SSH shows on the source).
pub async fn serve<R, W>(sd: StateDir, input: R, output: W) -> Result<Vec<String>, MigrateError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, writer) = spawn_writer(output);
    let _ = tx.send(FromDest::Hello {
        magic: MAGIC.into(),
        version: VERSION,
        teamvirt: env!("CARGO_PKG_VERSION").into(),
        state_dir: sd.root().display().to_string(),
    });
    let mut session = Session::new(sd, tx);
    let mut input = input;
    let mut requests = 0usize;
    let mut signals = Signals::install()?;
    let mut alone = Vec::new();
    loop {
        let line = tokio::select! {
            l = read_line_bounded(&mut input, MAX_REQUEST_LINE) => l,
            _ = signals.term.recv() => Ok(None),
            _ = signals.hup.recv() => Ok(None),
            _ = signals.int.recv() => Ok(None),
            _ = signals.usr.recv() => {
                // `domjobabort` on this host: stopping the incoming QEMU
                // makes the source roll back (it sees the destination exit).
                let log = session.dest.abort().await.unwrap_or_default();
                for l in log {
                    eprintln!("teamvirt: domjobabort: {l}");
                }
                continue;
            }
        };
        requests += 1;
        let line = match line {
            Err(e @ LineError::TooLong(_)) => {
                // Not read further: the source is broken or hostile.
                session.send(FromDest::Error {
                    code: ErrorCode::Protocol,
                    message: e.to_string(),
                });
                Ok(None)
            }
            _ if requests > MAX_REQUESTS => {
                session.send(FromDest::Error {
                    code: ErrorCode::Protocol,
                    message: format!(
                        "protocol error: the source sent more than {MAX_REQUESTS} lines"
                    ),
                });
                Ok(None)
            }
            l => l,
        };
        let Ok(Some(line)) = line else {
            // The channel is gone: decide alone.
            if session.prepared {
                alone = decide_alone(&mut session.dest, session.source_was_running).await;
            }
            break;
        };
        if line.trim().is_empty() {
            continue;
        }
        let msg: ToDest = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                session.send(FromDest::Error {
                    code: ErrorCode::Protocol,
                    message: format!(
                        "internal error: the destination does not understand the request: {e}"
                    ),
                });
                continue;
            }
        };
        session.handle(msg).await;
    }
    // The destination outlives the writer, as it did when this was one
    // function: its incoming socket directory goes last.
    let Session { tx, dest, .. } = session;
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    drop(dest);
    Ok(alone)
}

/// The task writing [`FromDest`] lines to the channel, and its sender.
fn spawn_writer<W>(output: W) -> (mpsc::UnboundedSender<FromDest>, tokio::task::JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<FromDest>();
    let writer = tokio::spawn(async move {
        let mut out = output;
        while let Some(m) = rx.recv().await {
            let mut line = serde_json::to_string(&m).unwrap_or_default();
            line.push('\n');
            // A closed channel shows on stdin too; the loop below ends then.
            if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                return;
            }
        }
    });
    (tx, writer)
}

/// The signals that end the session (TERM, HUP, INT: the channel is taken
/// as gone) and `domjobabort`'s.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, MigrateError> {
        let sig = |k: SignalKind| {
            signal(k).map_err(|e| MigrateError::Io {
                what: "cannot install signal handlers".into(),
                source: e,
            })
        };
        Ok(Signals {
            term: sig(SignalKind::terminate())?,
            hup: sig(SignalKind::hangup())?,
            int: sig(SignalKind::interrupt())?,
            usr: sig(SignalKind::from_raw(ABORT_SIGNAL))?,
        })
    }
}

/// One migration served: the destination and what the channel told it.
struct Session {
    dest: LocalDestination,
    tx: mpsc::UnboundedSender<FromDest>,
    source_was_running: bool,
    /// A destination QEMU is prepared and not yet finished or aborted.
    prepared: bool,
}

impl Session {
    fn new(sd: StateDir, tx: mpsc::UnboundedSender<FromDest>) -> Session {
        let mut dest = LocalDestination::new(sd);
        // A remote source names no program: this host's own emulator runs.
        dest.own_emulator = true;
        Session {
            dest,
            tx,
            source_was_running: true,
            prepared: false,
        }
    }

    fn send(&self, m: FromDest) {
        let _ = self.tx.send(m);
    }

    /// Answer one request of the source.
    async fn handle(&mut self, msg: ToDest) {
        match msg {
            ToDest::Prepare {
                req,
                incoming,
                tls_dir,
                files,
                source_was_running: r,
            } => {
                self.source_was_running = r;
                if let Err(why) = check_files(&files) {
                    self.send(FromDest::Error {
                        code: ErrorCode::Protocol,
                        message: format!("protocol error: the prepare request carries {why}"),
                    });
                    return;
                }
                self.listen_as_asked(incoming);
                self.dest.tls_dir = tls_dir;
                self.dest.run_files = files;
                self.prepare(&req).await;
            }
            ToDest::Finish { resume, timeout_ms } => {
                match self
                    .dest
                    .finish(resume, Duration::from_millis(timeout_ms))
                    .await
                {
                    Ok(f) => {
                        self.prepared = false;
                        self.send(FromDest::Finished {
                            pairs: f.pairs,
                            running: f.running,
                            defined: f.defined,
                            guest: f.guest,
                        })
                    }
                    Err(e) => self.send(FromDest::Error {
                        code: e.code(),
                        message: e.to_string(),
                    }),
                }
            }
            ToDest::Abort => {
                let log = self
                    .dest
                    .abort()
                    .await
                    .unwrap_or_else(|e| vec![format!("destination teardown failed: {e}")]);
                self.prepared = false;
                self.send(FromDest::Aborted { log });
            }
        }
    }

    /// Where the incoming QEMU listens, as the prepare request asks.
    fn listen_as_asked(&mut self, incoming: Incoming) {
        let dest = &mut self.dest;
        match incoming {
            Incoming::Tcp {
                listen,
                port,
                advertise,
            } => {
                // The destination's choice: the address the source's
                // SSH connection reached (sshd's SSH_CONNECTION), so
                // QEMU listens there only.
                let reached = std::env::var("SSH_CONNECTION")
                    .ok()
                    .and_then(|s| s.split_whitespace().nth(2).map(str::to_owned));
                let listen = listen
                    .or_else(|| reached.clone())
                    .unwrap_or_else(|| "0.0.0.0".into());
                let wildcard = matches!(listen.as_str(), "0.0.0.0" | "::" | "[::]");
                let advertise = advertise.or(if wildcard { reached } else { None });
                dest.listen = listen;
                dest.port = port;
                dest.advertise = advertise.map(|a| {
                    if a.contains(':') && !a.starts_with('[') {
                        format!("[{a}]")
                    } else {
                        a
                    }
                });
                dest.unix_incoming = false;
            }
            Incoming::Tunnel => dest.unix_incoming = true,
        }
    }

    /// Prepare the destination and, once prepared, forward its QEMU's
    /// events to the source.
    async fn prepare(&mut self, req: &super::proto::PrepareRequest) {
        match self.dest.prepare(req).await {
            Ok(mut p) => {
                self.prepared = true;
                self.send(FromDest::Prepared {
                    uri: p.uri.clone(),
                    pairs: p.pairs.clone(),
                    vfs: p.vfs.clone(),
                    substitutions: p.substitutions.clone(),
                    pid: p.pid.map(|p| p.pid as u32),
                });
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    while let Some(ev) = p.events.recv().await {
                        let m = match ev {
                            DestEvent::Qmp(e) => FromDest::Event {
                                name: e.name,
                                data: e.data,
                                seconds: e.timestamp.0,
                                microseconds: e.timestamp.1,
                            },
                            _ => FromDest::Exited,
                        };
                        if tx.send(m).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => self.send(FromDest::Error {
                code: e.code(),
                message: e.to_string(),
            }),
        }
    }
}

/// The channel is lost with the destination prepared: take over when the
/// copy completed (within [`ALONE_GRACE`]), otherwise tear down.
async fn decide_alone(dest: &mut LocalDestination, resume: bool) -> Vec<String> {
    match dest.finish(resume, ALONE_GRACE).await {
        Ok(f) => vec![format!(
            "control channel lost after the copy completed: the destination took the domain over ({})",
            if f.running { "running" } else { "paused" }
        )],
        Err(e) => {
            let mut log = vec![format!(
                "control channel lost before the migration completed ({e}): the destination tears its half down"
            )];
            log.extend(
                dest.abort()
                    .await
                    .unwrap_or_else(|e| vec![format!("destination teardown failed: {e}")]),
            );
            log
        }
    }
}

/// [`serve`] on this process's stdin/stdout (the helper verb).
pub async fn serve_stdio(sd: StateDir) -> Result<Vec<String>, MigrateError> {
    // tokio's stdin thread may sit in a read(2) that never returns: the
    // binary's main shuts its runtime down without waiting for it.
    serve(
        sd,
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// The helper greets first, answers a request it cannot parse with an
    /// error (and keeps serving), an abort with nothing prepared with an
    /// empty log, and ends at EOF.
    #[tokio::test]
    async fn greets_first_answers_errors_and_ends_at_eof() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let (mut to_helper, helper_in) = tokio::io::duplex(4096);
        let (helper_out, from_helper) = tokio::io::duplex(4096);
        let task = tokio::spawn(serve(sd, BufReader::new(helper_in), helper_out));
        let mut lines = BufReader::new(from_helper).lines();
        macro_rules! next {
            () => {
                serde_json::from_str::<FromDest>(&lines.next_line().await.unwrap().unwrap())
                    .unwrap()
            };
        }
        match next!() {
            FromDest::Hello { magic, version, .. } => {
                assert_eq!((magic.as_str(), version), (MAGIC, VERSION))
            }
            m => panic!("{m:?}"),
        }
        to_helper
            .write_all(b"{\"msg\":\"launch-missiles\"}\n")
            .await
            .unwrap();
        match next!() {
            FromDest::Error { code, message } => {
                assert_eq!(code, ErrorCode::Protocol);
                assert!(message.contains("does not understand"), "{message}")
            }
            m => panic!("{m:?}"),
        }
        to_helper.write_all(b"{\"msg\":\"abort\"}\n").await.unwrap();
        match next!() {
            FromDest::Aborted { log } => assert!(log.is_empty()),
            m => panic!("{m:?}"),
        }
        drop(to_helper);
        let alone = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(alone.is_empty());
    }

    fn hostile_request(
        dir: &std::path::Path,
        emulator: &str,
    ) -> super::super::proto::PrepareRequest {
        super::super::proto::PrepareRequest {
            name: "vm".into(),
            uuid: None,
            emulator: emulator.into(),
            argv: vec![emulator.into(), "-S".into()],
            accel: crate::accel::Accel::Tcg,
            source_run_dir: "/src/run/vm".into(),
            source_serial_log: None,
            source_root: dir.join("elsewhere"),
            pairs: Vec::new(),
            live_xml: format!(
                "<domain type='qemu'><name>vm</name><memory unit='KiB'>65536</memory>\
                 <os><type arch='x86_64' machine='q35'>hvm</type></os>\
                 <devices><emulator>{emulator}</emulator></devices></domain>"
            ),
            persistent_xml: None,
        }
    }

    async fn one_prepare(
        sd: StateDir,
        req: super::super::proto::PrepareRequest,
        files: Vec<(String, Vec<u8>)>,
    ) -> FromDest {
        let (mut to_helper, helper_in) = tokio::io::duplex(1 << 16);
        let (helper_out, from_helper) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(serve(sd, BufReader::new(helper_in), helper_out));
        let mut lines = BufReader::new(from_helper).lines();
        let _hello = lines.next_line().await.unwrap().unwrap();
        let msg = ToDest::Prepare {
            req: Box::new(req),
            incoming: Incoming::Tunnel,
            tls_dir: None,
            files,
            source_was_running: true,
        };
        let mut line = serde_json::to_string(&msg).unwrap();
        line.push('\n');
        to_helper.write_all(line.as_bytes()).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        drop(to_helper);
        let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        serde_json::from_str(&reply).unwrap()
    }

    /// A source cannot name where the destination writes: run-directory
    /// files are plain names (no `/`, no `..`), checked before anything
    /// is prepared.
    #[tokio::test]
    async fn hostile_source_file_names_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(&t.path().join("dst")).unwrap();
        let qemu =
            teamvirt_host::procmatch::resolve_program(std::path::Path::new("qemu-system-x86_64"))
                .unwrap_or_else(|| "/usr/bin/qemu-system-x86_64".into());
        let target = t.path().join("escaped");
        for name in [
            "../../escaped".to_string(),
            target.display().to_string(),
            "..".into(),
        ] {
            let req = hostile_request(t.path(), &qemu.display().to_string());
            match one_prepare(sd.clone(), req, vec![(name.clone(), b"owned".to_vec())]).await {
                FromDest::Error { message, .. } => {
                    assert!(
                        message.contains("not a plain file name"),
                        "{name}: {message}"
                    )
                }
                m => panic!("{name}: {m:?}"),
            }
            assert!(!target.exists(), "{name}");
        }
    }

    /// The destination never runs the emulator a remote source names: a
    /// program that is not this host's emulator is refused unrun.
    #[tokio::test]
    async fn hostile_source_emulator_is_not_run() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(&t.path().join("dst")).unwrap();
        let marker = t.path().join("ran");
        let evil = t.path().join("evil-qemu");
        std::fs::write(
            &evil,
            format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
        let req = hostile_request(t.path(), &evil.display().to_string());
        match one_prepare(sd, req, Vec::new()).await {
            FromDest::Error { message, .. } => assert!(
                message.contains("is not the destination's") || message.contains("not installed"),
                "{message}"
            ),
            m => panic!("{m:?}"),
        }
        assert!(!marker.exists(), "the source's emulator was run");
    }

    /// An unterminated line is refused once past the bound (with an error
    /// line), not buffered until the source stops sending.
    #[tokio::test]
    async fn endless_request_line_ends_the_session() {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(t.path()).unwrap();
        let (mut to_helper, helper_in) = tokio::io::duplex(1 << 16);
        let (helper_out, from_helper) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(serve(sd, BufReader::new(helper_in), helper_out));
        let flood = tokio::spawn(async move {
            let chunk = vec![b'a'; 1 << 16];
            // Far more than the bound; never a newline, never EOF.
            for _ in 0..(1024 * 1024 * 1024 / chunk.len()) {
                if to_helper.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            std::future::pending::<()>().await;
        });
        let mut lines = BufReader::new(from_helper).lines();
        let _hello = lines.next_line().await.unwrap().unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the helper kept reading the endless line")
            .unwrap()
            .unwrap();
        match serde_json::from_str::<FromDest>(&reply).unwrap() {
            FromDest::Error { message, .. } => {
                assert!(message.contains("longer than"), "{message}")
            }
            m => panic!("{m:?}"),
        }
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the helper ends")
            .unwrap()
            .unwrap();
        flood.abort();
    }
}
