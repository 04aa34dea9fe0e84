//! The connection: a reader task that routes replies by `id` and fans events
//! out, a writer task that owns the socket's write half, and cheap `Clone`
//! handles that send commands.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::error::QmpError;
use crate::event::Event;

/// A message bigger than this without a complete JSON value is treated as a
/// broken peer rather than buffered forever.
const MAX_MESSAGE: usize = 64 << 20;

/// Connection settings. `Default` suits a local QEMU.
#[derive(Debug, Clone)]
pub struct QmpOptions {
    /// Keep retrying for this long while the socket does not exist yet or
    /// refuses connections (QEMU still starting). Zero: a single attempt.
    pub wait_for_socket: Duration,
    /// Deadline for the greeting plus the `qmp_capabilities` round trip.
    pub handshake_timeout: Duration,
    /// Timeout used by [`Qmp::execute`].
    pub command_timeout: Duration,
    /// How many past events [`Qmp::history`] and
    /// [`Qmp::subscribe_with_history`] keep (oldest are forgotten first).
    pub history_limit: usize,
    /// Names the peer in trace output (the domain name); the socket path
    /// when empty.
    pub label: String,
}

impl Default for QmpOptions {
    fn default() -> Self {
        QmpOptions {
            wait_for_socket: Duration::ZERO,
            handshake_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            history_limit: 4096,
            label: String::new(),
        }
    }
}

/// QEMU's version from the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QemuVersion {
    pub major: u64,
    pub minor: u64,
    pub micro: u64,
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// The `{"QMP": {...}}` greeting.
#[derive(Debug, Clone, PartialEq)]
pub struct Greeting {
    pub version: QemuVersion,
    /// Distribution package string, e.g. `Debian 1:7.2+dfsg-7+deb12u18`.
    pub package: String,
    /// Capabilities QEMU offers (e.g. `oob`); none are enabled by this client.
    pub capabilities: Vec<String>,
    /// The whole greeting object, for anything not decoded above.
    pub raw: Value,
}

impl Greeting {
    fn parse(v: Value) -> Result<Greeting, QmpError> {
        let qmp = v
            .get("QMP")
            .ok_or_else(|| QmpError::Protocol(format!("expected QMP greeting, got {v}")))?;
        let ver = &qmp["version"]["qemu"];
        let num = |k: &str| {
            ver.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| QmpError::Protocol(format!("greeting lacks version.qemu.{k}: {v}")))
        };
        let version = QemuVersion {
            major: num("major")?,
            minor: num("minor")?,
            micro: num("micro")?,
        };
        let package = qmp["version"]["package"]
            .as_str()
            .unwrap_or("")
            .trim()
            .to_owned();
        let capabilities = qmp["capabilities"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Greeting {
            version,
            package,
            capabilities,
            raw: v,
        })
    }
}

/// One entry of `qom-list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QomProperty {
    pub name: String,
    /// e.g. `child<e1000e>`, `link<...>`, `string`.
    pub kind: String,
}

type Reply = Result<Value, QmpError>;

struct State {
    closed: bool,
    pending: BTreeMap<u64, oneshot::Sender<Reply>>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    history: VecDeque<Event>,
    history_limit: usize,
}

/// What the reader task, the writer task and the handles share.
struct Shared {
    state: Mutex<State>,
    connected: watch::Sender<bool>,
    /// For trace output: which QEMU this is.
    label: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in
        // a way that matters here, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// QEMU is gone: fail every pending command, end every event stream.
    fn close(&self) {
        let pending = {
            let mut st = self.lock();
            st.closed = true;
            st.subscribers.clear();
            std::mem::take(&mut st.pending)
        };
        for (_, tx) in pending {
            let _ = tx.send(Err(QmpError::Disconnected));
        }
        self.connected.send_replace(false);
    }

    fn dispatch(&self, msg: Value) {
        let Value::Object(mut map) = msg else {
            return;
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            let shown = crate::redact::redacted(&Value::Object(map.clone()));
            tracing::debug!(domain = %self.label, msg = %shown, "QMP <-");
        }
        if map.contains_key("event") {
            if let Some(ev) = Event::from_message(map) {
                let mut st = self.lock();
                // Unbounded per-subscriber channels: a slow subscriber only
                // costs memory and never stalls this task.
                st.subscribers.retain(|s| s.send(ev.clone()).is_ok());
                if st.history_limit > 0 {
                    if st.history.len() >= st.history_limit {
                        st.history.pop_front();
                    }
                    st.history.push_back(ev);
                }
            }
            return;
        }
        let reply = if let Some(ret) = map.remove("return") {
            Ok(ret)
        } else if let Some(err) = map.remove("error") {
            let class = err.get("class").and_then(Value::as_str);
            let desc = err.get("desc").and_then(Value::as_str);
            match (class, desc) {
                (Some(c), Some(d)) => Err(QmpError::Command {
                    class: c.to_owned(),
                    desc: d.to_owned(),
                }),
                _ => Err(QmpError::Protocol(format!("malformed error reply: {err}"))),
            }
        } else {
            // A second greeting or something unknown: nothing waits for it.
            return;
        };
        let mut st = self.lock();
        let tx = match map.get("id").and_then(Value::as_u64) {
            Some(id) => st.pending.remove(&id),
            // QEMU answers input it could not parse without an id. Without
            // out-of-band execution replies come in order, so it belongs to
            // the oldest outstanding command.
            None => st.pending.pop_first().map(|(_, tx)| tx),
        };
        drop(st);
        // No waiter: the command already timed out; the late reply is dropped.
        if let Some(tx) = tx {
            let _ = tx.send(reply);
        }
    }
}

/// Splits the byte stream into JSON values. QEMU ends each message with a
/// newline; parsing by value rather than by line also copes with `pretty=on`.
struct Framer {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
    ready: VecDeque<Value>,
}

impl Framer {
    fn new(rd: OwnedReadHalf) -> Self {
        Framer {
            rd,
            buf: Vec::with_capacity(8192),
            ready: VecDeque::new(),
        }
    }

    /// The next JSON value, or `Ok(None)` at end of stream.
    async fn next(&mut self) -> Result<Option<Value>, QmpError> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(v) = self.ready.pop_front() {
                return Ok(Some(v));
            }
            let n = self.rd.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
            // Only a newline can end a message, so skip parsing otherwise:
            // keeps large replies from being re-parsed on every read.
            if chunk[..n].contains(&b'\n') {
                self.parse_buffered();
            }
            if self.buf.len() > MAX_MESSAGE {
                return Err(QmpError::Protocol(format!(
                    "message larger than {MAX_MESSAGE} bytes"
                )));
            }
        }
    }

    fn parse_buffered(&mut self) {
        let mut consumed = 0;
        loop {
            let rest = &self.buf[consumed..];
            let mut it = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => {
                    consumed += it.byte_offset();
                    self.ready.push_back(v);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    // Not JSON: skip the line. Nothing can be matched to it;
                    // if it was meant as a reply, its command times out.
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(nl) => consumed += nl + 1,
                        None => break,
                    }
                }
                None => {
                    consumed = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..consumed);
    }
}

struct Inner {
    shared: Arc<Shared>,
    writer: mpsc::UnboundedSender<Vec<u8>>,
    next_id: AtomicU64,
    command_timeout: Duration,
    greeting: Greeting,
    reader: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Last handle gone: stop reading. The writer task ends on its own
        // when `writer` (its only sender) is dropped.
        self.reader.abort();
    }
}

/// A QMP connection. Cheap to clone; clones share the connection, and
/// commands from any number of tasks run concurrently (matched by `id`).
/// The connection closes when the last clone is dropped.
#[derive(Clone)]
pub struct Qmp {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("qemu", &self.inner.greeting.version)
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// Removes a pending entry if the waiting future is dropped or times out.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.id);
    }
}

impl Qmp {
    /// Connect with default options (one attempt, 10 s handshake, 30 s
    /// command timeout).
    pub async fn connect(path: impl AsRef<Path>) -> Result<Qmp, QmpError> {
        Self::connect_with(path, QmpOptions::default()).await
    }

    /// Connect, read the greeting and negotiate capabilities.
    pub async fn connect_with(path: impl AsRef<Path>, opts: QmpOptions) -> Result<Qmp, QmpError> {
        let path = path.as_ref();
        let deadline = Instant::now() + opts.wait_for_socket;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(QmpError::Io(Arc::new(std::io::Error::new(
                        e.kind(),
                        format!("connect {}: {e}", path.display()),
                    ))))
                }
            }
        };
        Self::from_stream(stream, opts).await
    }

    /// Run the handshake over an already connected stream (e.g. one end of
    /// a socketpair, or a fd inherited from a parent).
    pub async fn from_stream(stream: UnixStream, opts: QmpOptions) -> Result<Qmp, QmpError> {
        let handshake = opts.handshake_timeout;
        let label_fallback = stream
            .peer_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_default();
        let (rd, wr) = stream.into_split();
        let mut framer = Framer::new(rd);
        let greeting = match tokio::time::timeout(handshake, framer.next()).await {
            Err(_) => {
                return Err(QmpError::Timeout {
                    what: "QMP greeting".into(),
                    after: handshake,
                })
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(None)) => return Err(QmpError::Disconnected),
            Ok(Ok(Some(v))) => Greeting::parse(v)?,
        };

        let (connected, _) = watch::channel(true);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                closed: false,
                pending: BTreeMap::new(),
                subscribers: Vec::new(),
                history: VecDeque::new(),
                history_limit: opts.history_limit,
            }),
            connected,
            label: if opts.label.is_empty() {
                label_fallback
            } else {
                opts.label.clone()
            },
        });
        let reader = tokio::spawn(read_loop(framer, shared.clone())).abort_handle();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(wr, rx, shared.clone()));
        let qmp = Qmp {
            inner: Arc::new(Inner {
                shared,
                writer: tx,
                next_id: AtomicU64::new(0),
                command_timeout: opts.command_timeout,
                greeting,
                reader,
            }),
        };
        qmp.execute_timeout("qmp_capabilities", Value::Null, handshake)
            .await?;
        Ok(qmp)
    }

    /// The greeting QEMU sent.
    pub fn greeting(&self) -> &Greeting {
        &self.inner.greeting
    }

    /// QEMU's version from the greeting.
    pub fn qemu_version(&self) -> QemuVersion {
        self.inner.greeting.version
    }

    /// Run a command with the default timeout. `args` is a JSON object, or
    /// `Value::Null` for none. Returns the `return` member.
    pub async fn execute(&self, cmd: &str, args: Value) -> Result<Value, QmpError> {
        self.execute_timeout(cmd, args, self.inner.command_timeout)
            .await
    }

    /// Run a command, giving up after `timeout`. On timeout QEMU may still
    /// run the command; its late reply is discarded.
    pub async fn execute_timeout(
        &self,
        cmd: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        let mut msg = Map::new();
        msg.insert("execute".into(), Value::String(cmd.to_owned()));
        match args {
            Value::Null => {}
            Value::Object(a) if a.is_empty() => {}
            Value::Object(a) => {
                msg.insert("arguments".into(), Value::Object(a));
            }
            other => {
                return Err(QmpError::Protocol(format!(
                    "arguments of {cmd} must be a JSON object, got {other}"
                )))
            }
        }
        let inner = &*self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        msg.insert("id".into(), Value::from(id));
        let msg = Value::Object(msg);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let shown = crate::redact::redacted(&msg);
            tracing::debug!(domain = %inner.shared.label, msg = %shown, "QMP ->");
        }
        let mut bytes = serde_json::to_vec(&msg)
            .map_err(|e| QmpError::Protocol(format!("cannot encode {cmd}: {e}")))?;
        bytes.push(b'\n');

        let (tx, rx) = oneshot::channel();
        {
            let mut st = inner.shared.lock();
            if st.closed {
                return Err(QmpError::Disconnected);
            }
            st.pending.insert(id, tx);
        }
        let _guard = PendingGuard {
            shared: &inner.shared,
            id,
        };
        // Whole messages go through the writer task, so a cancelled caller
        // can never leave half a command on the socket.
        if inner.writer.send(bytes).is_err() {
            return Err(QmpError::Disconnected);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(QmpError::Disconnected),
            Err(_) => Err(QmpError::Timeout {
                what: format!("reply to {cmd}"),
                after: timeout,
            }),
        }
    }

    /// Events from now on. Every event reaches every live stream; a stream
    /// nobody reads only grows (it never blocks the connection).
    pub fn subscribe(&self) -> EventStream {
        self.subscribe_inner(false)
    }

    /// Like [`subscribe`](Self::subscribe) but first replays the remembered
    /// past events (see [`QmpOptions::history_limit`]), with no gap and no
    /// duplicate between the replay and the live events.
    pub fn subscribe_with_history(&self) -> EventStream {
        self.subscribe_inner(true)
    }

    fn subscribe_inner(&self, replay: bool) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = self.inner.shared.lock();
        if replay {
            for ev in &st.history {
                let _ = tx.send(ev.clone());
            }
        }
        // After a disconnect the sender is dropped here: the stream yields
        // the replay, then ends.
        if !st.closed {
            st.subscribers.push(tx);
        }
        EventStream { rx }
    }

    /// The remembered past events, oldest first.
    pub fn history(&self) -> Vec<Event> {
        self.inner.shared.lock().history.iter().cloned().collect()
    }

    /// Wait for the next event called `name` for which `pred` holds.
    /// Only events arriving after the call count; to avoid missing one that
    /// a command triggers, `subscribe()` before sending the command and use
    /// [`EventStream::wait_for`].
    pub async fn wait_event(
        &self,
        name: &str,
        pred: impl FnMut(&Event) -> bool,
        timeout: Duration,
    ) -> Result<Event, QmpError> {
        self.subscribe().wait_for(name, pred, timeout).await
    }

    /// False once QEMU has gone away.
    pub fn is_connected(&self) -> bool {
        *self.inner.shared.connected.borrow()
    }

    /// Resolves when QEMU goes away (immediately if it already has).
    pub async fn disconnected(&self) {
        let mut rx = self.inner.shared.connected.subscribe();
        let _ = rx.wait_for(|c| !*c).await;
    }
}

/// A subscriber's events. Ends (`None`) when the connection closes.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl EventStream {
    /// The next event, or `None` once QEMU has gone away and everything
    /// queued has been read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// An already queued event, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Read events until one is called `name` and satisfies `pred`; the
    /// events read before it are consumed.
    pub async fn wait_for(
        &mut self,
        name: &str,
        mut pred: impl FnMut(&Event) -> bool,
        timeout: Duration,
    ) -> Result<Event, QmpError> {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => {
                    return Err(QmpError::Timeout {
                        what: format!("event {name}"),
                        after: timeout,
                    })
                }
                Ok(None) => return Err(QmpError::Disconnected),
                Ok(Some(ev)) if ev.name == name && pred(&ev) => return Ok(ev),
                Ok(Some(_)) => {}
            }
        }
    }
}

async fn read_loop(mut framer: Framer, shared: Arc<Shared>) {
    // Any read error ends the connection the same way EOF does.
    while let Ok(Some(msg)) = framer.next().await {
        shared.dispatch(msg);
    }
    shared.close();
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    while let Some(bytes) = rx.recv().await {
        if wr.write_all(&bytes).await.is_err() {
            shared.close();
            return;
        }
    }
    // Every handle is gone.
    let _ = wr.shutdown().await;
}
