//! Migration to another host over SSH (`teamvirt migrate DOMAIN URI`), as
//! libvirt's `qemu+ssh://`: the system `ssh` (the user's keys, known_hosts
//! and ssh_config, ProxyJump included) runs the remote `teamvirt
//! __migrate-dest`, which serves the [`Destination`] API as the JSON lines
//! of [`super::proto`] (see `migrate::serve` for its side). teamvirt stays
//! daemonless: the remote helper lives for one migration.
//!
//! * `BatchMode=yes`: a missing key is an error, never a password prompt
//!   that hangs; keepalives (`ServerAliveInterval`/`CountMax`) notice a dead
//!   peer, and the lost channel rolls the migration back on the source while
//!   the remote side tears its half down by itself.
//! * The memory stream goes straight from QEMU to QEMU over TCP by default
//!   (the destination listens on the address the SSH connection reached it
//!   on, unless `--migrateuri`/`--listen-address` say otherwise).
//!   `--tunnelled` carries it through a second SSH session instead: the
//!   destination QEMU listens on a unix socket that the remote `teamvirt
//!   __migrate-dest --relay` connects to, and the source QEMU sends to a
//!   unix socket in its run directory that this process pipes into that
//!   session. Only sshd needs to be reachable.
//! * `--tls`: QEMU's `tls-creds-x509` on both sides (libvirt's file names
//!   in `--tls-dir`, default `/etc/pki/qemu`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use teamvirt_qmp::{Event, Qmp, QmpError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::dest::{referenced_files, DestEvent, Destination, Finished, Prepared};
use super::proto::{
    read_line_bounded, FromDest, Incoming, LineError, PrepareRequest, ToDest, MAGIC, MAX_MESSAGES,
    MAX_REPLY_LINE, VERSION,
};
use super::MigrateError;
use teamvirt_host::process::ProcId;

pub use super::tls::DEFAULT_TLS_DIR;

/// A parsed `ssh://` or `qemu+ssh://` destination URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUri {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// The remote state directory (`None`: the remote's default).
    pub state_dir: Option<String>,
    pub keyfile: Option<String>,
    pub known_hosts: Option<String>,
    pub no_verify: bool,
    /// libvirt's `command=`: the ssh binary.
    pub command: Option<String>,
    /// teamvirt's: seconds between SSH keepalives, and how many may go
    /// unanswered before the channel counts as dead.
    pub keepalive_interval: u32,
    pub keepalive_count: u32,
}

/// Errors of a destination URI (virsh's wording where it has one).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("invalid argument: unsupported migration URI '{0}': use ssh://[user@]host[:port][/STATE-DIR] or qemu+ssh://[user@]host[:port]/system")]
    Scheme(String),
    #[error("invalid argument: migration URI '{0}' has no host")]
    NoHost(String),
    #[error("invalid argument: migration URI '{uri}': bad port '{port}'")]
    Port { uri: String, port: String },
    #[error("invalid argument: migration URI '{uri}': qemu+ssh:// takes /system or /session as path (use ssh://host/STATE-DIR for a state directory), not '{path}'")]
    Path { uri: String, path: String },
    #[error("invalid argument: migration URI '{uri}': unknown parameter '{param}' (known: keyfile, known_hosts, no_verify, no_tty, command, keepalive_interval, keepalive_count)")]
    Param { uri: String, param: String },
    #[error("invalid argument: migration URI '{uri}': bad value '{value}' for '{param}'")]
    Value {
        uri: String,
        param: String,
        value: String,
    },
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl SshUri {
    /// Whether `s` names a remote host (an `ssh://`-like URI) rather than
    /// something else.
    pub fn is_remote(s: &str) -> bool {
        s.starts_with("ssh://") || s.starts_with("qemu+ssh://")
    }

    pub fn parse(uri: &str) -> Result<SshUri, UriError> {
        let (libvirt, rest) = if let Some(r) = uri.strip_prefix("ssh://") {
            (false, r)
        } else if let Some(r) = uri.strip_prefix("qemu+ssh://") {
            (true, r)
        } else {
            return Err(UriError::Scheme(uri.into()));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(unescape(u)), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| UriError::NoHost(uri.into()))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(UriError::NoHost(uri.into()));
        }
        let port =
            match port {
                None | Some("") => None,
                Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                    UriError::Port {
                        uri: uri.into(),
                        port: p.into(),
                    }
                })?),
            };
        let state_dir = if libvirt {
            match path {
                "" | "/" | "/system" | "/session" => None,
                p => {
                    return Err(UriError::Path {
                        uri: uri.into(),
                        path: p.into(),
                    })
                }
            }
        } else {
            match path {
                "" | "/" => None,
                p => Some(unescape(p)),
            }
        };
        let mut out = SshUri {
            user,
            host,
            port,
            state_dir,
            keyfile: None,
            known_hosts: None,
            no_verify: false,
            command: None,
            keepalive_interval: 5,
            keepalive_count: 3,
        };
        for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = unescape(v);
            let bad = || UriError::Value {
                uri: uri.into(),
                param: k.into(),
                value: v.clone(),
            };
            match k {
                "keyfile" => out.keyfile = Some(v.clone()),
                "known_hosts" => out.known_hosts = Some(v.clone()),
                "no_verify" => out.no_verify = v != "0",
                "no_tty" | "sshauth" | "known_hosts_verify" => {}
                "command" => out.command = Some(v.clone()),
                "keepalive_interval" => {
                    out.keepalive_interval = v.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?
                }
                "keepalive_count" => {
                    out.keepalive_count = v.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?
                }
                _ => {
                    return Err(UriError::Param {
                        uri: uri.into(),
                        param: k.into(),
                    })
                }
            }
        }
        Ok(out)
    }

    /// The URI without its parameters (for messages and the job file).
    pub fn display(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "ssh://{}{host}{}{}",
            self.user
                .as_ref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            self.port.map(|p| format!(":{p}")).unwrap_or_default(),
            self.state_dir.as_deref().unwrap_or("")
        )
    }

    /// `ssh` running `remote` (one shell command line) on the host.
    pub fn command(&self, remote: &str) -> Command {
        let mut c = Command::new(self.command.as_deref().unwrap_or("ssh"));
        c.args([
            "-T",
            "-e",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
        ])
        .arg("-o")
        .arg(format!("ServerAliveInterval={}", self.keepalive_interval))
        .arg("-o")
        .arg(format!("ServerAliveCountMax={}", self.keepalive_count));
        if let Some(k) = &self.keyfile {
            c.arg("-i").arg(k);
        }
        if let Some(k) = &self.known_hosts {
            c.arg("-o").arg(format!("UserKnownHostsFile={k}"));
        }
        if self.no_verify {
            c.args(["-o", "StrictHostKeyChecking=no"]);
        }
        if let Some(p) = self.port {
            c.arg("-p").arg(p.to_string());
        }
        if let Some(u) = &self.user {
            c.arg("-l").arg(u);
        }
        c.arg("--").arg(&self.host).arg(remote);
        tracing::debug!(host = %self.host, "ssh: {c:?}");
        c
    }
}

/// Quote `s` for the remote shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,@+".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Everything about reaching the destination host.
#[derive(Debug, Clone)]
pub struct RemoteTarget {
    pub uri: SshUri,
    /// The `teamvirt` to run there (`--remote-teamvirt`, default `teamvirt`).
    pub remote_teamvirt: String,
    /// `--migrateuri tcp://ADDR[:PORT]`: where the source QEMU sends.
    pub migrate_addr: Option<String>,
    pub migrate_port: u16,
    /// `--listen-address`: what the destination QEMU binds.
    pub listen_address: Option<String>,
    pub tunnelled: bool,
    /// `--tls`: certificate directory (the same path on both hosts).
    pub tls_dir: Option<PathBuf>,
}

/// Parse `--migrateuri tcp://ADDR[:PORT]` (libvirt also accepts `tcp:ADDR`).
pub fn parse_migrateuri(s: &str) -> Result<(String, u16), UriError> {
    let bad = || UriError::Scheme(s.into());
    let rest = s
        .strip_prefix("tcp://")
        .or_else(|| s.strip_prefix("tcp:"))
        .ok_or_else(bad)?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or_else(bad)?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(UriError::NoHost(s.into()));
    }
    let port = match port {
        None | Some("") => 0,
        Some(p) => p.parse::<u16>().map_err(|_| UriError::Port {
            uri: s.into(),
            port: p.into(),
        })?,
    };
    Ok((host, port))
}

struct Conn {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: mpsc::UnboundedReceiver<FromDest>,
    events: Option<mpsc::UnboundedReceiver<DestEvent>>,
}

struct Tunnel {
    child: Child,
    task: tokio::task::JoinHandle<()>,
    sock: PathBuf,
}

/// A destination on another host, reached over SSH.
pub struct RemoteDestination {
    pub target: RemoteTarget,
    conn: Option<Conn>,
    tunnel: Option<Tunnel>,
    stderr: Arc<Mutex<String>>,
    /// How long the SSH control channel took to come up (connect, auth,
    /// remote teamvirt started, greeting read).
    pub setup: Option<Duration>,
    /// The remote teamvirt's version and state directory (its greeting).
    pub remote: Option<(String, String)>,
}

impl RemoteDestination {
    pub fn new(target: RemoteTarget) -> RemoteDestination {
        RemoteDestination {
            target,
            conn: None,
            tunnel: None,
            stderr: Arc::new(Mutex::new(String::new())),
            setup: None,
            remote: None,
        }
    }

    fn helper_command(&self, extra: &[&str]) -> Command {
        let mut cmd = vec![shell_quote(&self.target.remote_teamvirt)];
        if let Some(dir) = &self.target.uri.state_dir {
            cmd.push("--state-dir".into());
            cmd.push(shell_quote(dir));
        }
        cmd.push("__migrate-dest".into());
        cmd.extend(extra.iter().map(|s| shell_quote(s)));
        self.target.uri.command(&cmd.join(" "))
    }

    fn stderr_text(&self) -> String {
        let s = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        let s = s.trim();
        // The last lines say why; ssh's banner noise comes first.
        let lines: Vec<&str> = s.lines().collect();
        peer_text(&lines[lines.len().saturating_sub(6)..].join("; "))
    }

    /// Start the control channel and check the remote's greeting. Safe to
    /// call again (a no-op once connected).
    pub async fn connect(&mut self) -> Result<(), MigrateError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let t0 = Instant::now();
        let host = self.target.uri.host.clone();
        let mut child = self
            .helper_command(&[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                MigrateError::Channel(format!(
                    "failed to connect to the hypervisor: cannot run ssh: {e}"
                ))
            })?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        collect_stderr(stderr, self.stderr.clone());
        let mut lines = BufReader::new(stdout);
        self.read_greeting(&mut child, &mut lines, &host).await?;
        let stdin = child.stdin.take();
        let (replies, events) = spawn_reader(lines, &host, self.stderr.clone());
        self.conn = Some(Conn {
            child,
            stdin,
            replies,
            events: Some(events),
        });
        self.setup = Some(t0.elapsed());
        Ok(())
    }

    /// Connect, step 2: the remote helper's first line must be its hello,
    /// in this teamvirt's protocol version.
    async fn read_greeting(
        &mut self,
        child: &mut Child,
        lines: &mut BufReader<tokio::process::ChildStdout>,
        host: &str,
    ) -> Result<(), MigrateError> {
        // ConnectTimeout bounds the TCP part; this bounds the rest (auth,
        // a remote that never answers).
        let first = tokio::time::timeout(
            Duration::from_secs(60),
            read_line_bounded(lines, MAX_REPLY_LINE),
        )
        .await;
        let first = match first {
            Ok(Ok(Some(l))) => l,
            Ok(Err(e @ LineError::TooLong(_))) => {
                return Err(MigrateError::Channel(format!(
                    "failed to connect to the hypervisor: the remote teamvirt on {host}: {e}"
                )))
            }
            Ok(_) => {
                let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .ok()
                    .and_then(Result::ok);
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(self.start_failure(status.and_then(|s| s.code())));
            }
            Err(_) => {
                return Err(MigrateError::Channel(format!(
                    "failed to connect to the hypervisor: no answer from the remote teamvirt on {host} within 60 s{}",
                    with_detail(&self.stderr_text())
                )))
            }
        };
        let tv = &self.target.remote_teamvirt;
        match parse_from_dest(&first) {
            Ok(FromDest::Hello {
                magic,
                version,
                teamvirt,
                state_dir,
            }) if magic == MAGIC => {
                if version != VERSION {
                    return Err(MigrateError::Channel(format!(
                        "failed to connect to the hypervisor: the remote teamvirt '{tv}' on {host} (version {teamvirt}) speaks migration protocol {version}, this teamvirt ({}) speaks {VERSION}: install the same teamvirt on both hosts",
                        env!("CARGO_PKG_VERSION")
                    )));
                }
                self.remote = Some((teamvirt, state_dir));
                Ok(())
            }
            // The helper could not start (its state directory is missing).
            Ok(FromDest::Error { message, .. }) => Err(MigrateError::Channel(format!(
                "{} ({host})",
                peer_text(&message)
            ))),
            _ => {
                let shown: String = peer_text(&first.chars().take(120).collect::<String>());
                Err(MigrateError::Channel(format!(
                    "failed to connect to the hypervisor: '{tv}' on {host} does not speak teamvirt's migration protocol (it printed '{shown}')"
                )))
            }
        }
    }

    /// Why the remote helper never greeted: ssh's own failure (exit 255),
    /// no such command (127), or a teamvirt without the helper verb.
    fn start_failure(&self, code: Option<i32>) -> MigrateError {
        let host = &self.target.uri.host;
        let tv = &self.target.remote_teamvirt;
        let detail = with_detail(&self.stderr_text());
        MigrateError::Channel(match code {
            Some(255) => format!(
                "failed to connect to the hypervisor: cannot connect to {host} over SSH (BatchMode: key authentication only){detail}"
            ),
            Some(126) | Some(127) => format!(
                "failed to connect to the hypervisor: the remote teamvirt '{tv}' cannot be run on {host} (is teamvirt installed there? --remote-teamvirt names its path){detail}"
            ),
            Some(c) => format!(
                "failed to connect to the hypervisor: the remote teamvirt '{tv}' on {host} exited ({c}) without starting the migration helper (a teamvirt without migration between hosts?){detail}"
            ),
            None => format!(
                "failed to connect to the hypervisor: the SSH session to {host} ended before the remote teamvirt answered{detail}"
            ),
        })
    }

    fn lost(&self) -> MigrateError {
        MigrateError::Channel(format!(
            "operation failed: the SSH control channel to {} closed{}",
            self.target.uri.host,
            with_detail(&self.stderr_text())
        ))
    }

    async fn request(&mut self, msg: &ToDest, timeout: Duration) -> Result<FromDest, MigrateError> {
        let lost = self.lost();
        let conn = self.conn.as_mut().ok_or(lost)?;
        let mut line = serde_json::to_string(msg)?;
        line.push('\n');
        let stdin = conn.stdin.as_mut().ok_or_else(|| self_lost(&self.target))?;
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            return Err(self.lost());
        }
        let conn = self.conn.as_mut().expect("checked");
        match tokio::time::timeout(timeout, conn.replies.recv()).await {
            Ok(Some(FromDest::Error { code, message })) => {
                Err(MigrateError::remote(code, peer_text(&message)))
            }
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(self.lost()),
            Err(_) => Err(MigrateError::Channel(format!(
                "operation failed: the destination {} did not answer within {} s",
                self.target.uri.host,
                timeout.as_secs()
            ))),
        }
    }

    /// End the session: close its stdin (the helper exits at EOF) and let
    /// ssh exit; kill it if it does not.
    async fn close(&mut self) {
        if let Some(mut t) = self.tunnel.take() {
            t.task.abort();
            let _ = t.child.start_kill();
            let _ = t.child.wait().await;
            let _ = std::fs::remove_dir_all(t.sock.parent().unwrap_or(&t.sock));
        }
        if let Some(mut c) = self.conn.take() {
            drop(c.stdin.take());
            if tokio::time::timeout(Duration::from_secs(10), c.child.wait())
                .await
                .is_err()
            {
                let _ = c.child.start_kill();
                let _ = c.child.wait().await;
            }
        }
    }

    /// `--tunnelled`: a unix socket in the source's run directory that the
    /// source QEMU sends to, piped into `teamvirt __migrate-dest --relay`
    /// on the destination, which pipes into the destination QEMU's socket.
    async fn open_tunnel(
        &mut self,
        run_dir: &Path,
        remote_sock: &str,
    ) -> Result<String, MigrateError> {
        // The source QEMU (its own uid) connects: not in the run dir.
        let id = run_dir_qemu(run_dir).map_err(|e| MigrateError::Io {
            what: "cannot read the source QEMU's identity".into(),
            source: e,
        })?;
        let dir =
            teamvirt_host::privdrop::socket_dir("migrate-tunnel", &id, None).map_err(|e| {
                MigrateError::Io {
                    what: "cannot make the tunnel socket directory".into(),
                    source: e,
                }
            })?;
        let sock = dir.join("migrate-tunnel.sock");
        let listener = tokio::net::UnixListener::bind(&sock).map_err(|e| MigrateError::Io {
            what: format!("cannot listen on {}", sock.display()),
            source: e,
        })?;
        // QEMU may run as another user (it connects to this socket).
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666));
        }
        let mut child = self
            .helper_command(&["--relay", remote_sock])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| MigrateError::Channel(format!("cannot run ssh for the tunnel: {e}")))?;
        let mut to_remote = child.stdin.take().expect("piped");
        let mut from_remote = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let buf = self.stderr.clone();
        tokio::spawn(async move {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s).await;
            if let Ok(mut b) = buf.lock() {
                b.push_str(&s);
            }
        });
        let task = tokio::spawn(async move {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            let (mut r, mut w) = conn.into_split();
            let up = async {
                let _ = tokio::io::copy(&mut r, &mut to_remote).await;
                let _ = to_remote.shutdown().await;
            };
            let down = async {
                let _ = tokio::io::copy(&mut from_remote, &mut w).await;
                let _ = w.shutdown().await;
            };
            tokio::join!(up, down);
        });
        self.tunnel = Some(Tunnel {
            child,
            task,
            sock: sock.clone(),
        });
        Ok(format!("unix:{}", sock.display()))
    }
}

fn self_lost(t: &RemoteTarget) -> MigrateError {
    MigrateError::Channel(format!(
        "operation failed: the SSH control channel to {} closed",
        t.uri.host
    ))
}

fn with_detail(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

impl Drop for RemoteDestination {
    fn drop(&mut self) {
        // kill_on_drop ends the ssh processes; the tunnel socket file is ours.
        if let Some(t) = &self.tunnel {
            t.task.abort();
            let _ = std::fs::remove_dir_all(t.sock.parent().unwrap_or(&t.sock));
        }
    }
}

/// A message of the destination with every string in it escaped (see
/// [`peer_text`]): device names, VF addresses, event data and log lines
/// from the peer are printed by the source, and none of them legitimately
/// holds a control character.
fn parse_from_dest(line: &str) -> Result<FromDest, serde_json::Error> {
    fn clean(v: &mut Value) {
        match v {
            Value::String(s) => *s = peer_text(s),
            Value::Array(a) => a.iter_mut().for_each(clean),
            Value::Object(m) => {
                let old = std::mem::take(m);
                for (k, mut v) in old {
                    clean(&mut v);
                    m.insert(peer_text(&k), v);
                }
            }
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(line)?;
    clean(&mut v);
    serde_json::from_value(v)
}

/// Text a peer chose (its error messages, its stderr), safe to print: no
/// control characters or escape sequences reach the terminal.
fn peer_text(s: &str) -> String {
    teamvirt_host::escape::escape_controls(s)
}

/// Connect, step 1: the helper's stderr kept (bounded) for the errors
/// that name why the channel failed.
fn collect_stderr(mut stderr: tokio::process::ChildStderr, buf: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            if let Ok(mut b) = buf.lock() {
                // Bounded: a chatty remote must not grow this forever.
                if b.len() < 64 * 1024 {
                    b.push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }
        }
    });
}

/// Connect, step 3: the task reading the channel after the greeting:
/// replies to one receiver, the destination's events to the other, and a
/// [`DestEvent::Lost`] saying why when the channel ends or breaks.
fn spawn_reader(
    mut lines: BufReader<tokio::process::ChildStdout>,
    host: &str,
    buf: Arc<Mutex<String>>,
) -> (
    mpsc::UnboundedReceiver<FromDest>,
    mpsc::UnboundedReceiver<DestEvent>,
) {
    let (rep_tx, replies) = mpsc::unbounded_channel();
    let (ev_tx, events) = mpsc::unbounded_channel();
    let what = format!("the SSH control channel to {host} closed");
    tokio::spawn(async move {
        let mut messages = 0usize;
        let mut broken = None;
        loop {
            let l = match read_line_bounded(&mut lines, MAX_REPLY_LINE).await {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e @ LineError::TooLong(_)) => {
                    broken = Some(e.to_string());
                    break;
                }
                Err(_) => break,
            };
            messages += 1;
            if messages > MAX_MESSAGES {
                broken = Some(format!(
                    "protocol error: the destination sent more than {MAX_MESSAGES} messages"
                ));
                break;
            }
            match parse_from_dest(&l) {
                Ok(FromDest::Event {
                    name,
                    data,
                    seconds,
                    microseconds,
                }) => {
                    let _ = ev_tx.send(DestEvent::Qmp(Event {
                        name,
                        data,
                        timestamp: (seconds, microseconds),
                    }));
                }
                Ok(FromDest::Exited) => {
                    let _ = ev_tx.send(DestEvent::Exited);
                }
                Ok(m) => {
                    let _ = rep_tx.send(m);
                }
                // Not ours (a remote profile printing on stdout):
                // ignored, the replies are what counts.
                Err(_) => {}
            }
        }
        if let Some(why) = broken {
            // Nothing more is read from this peer; the source treats
            // the channel as lost (and rolls back), saying why.
            if let Ok(mut b) = buf.lock() {
                b.push('\n');
                b.push_str(&why);
            }
            drop(rep_tx);
            let _ = ev_tx.send(DestEvent::Lost(format!("{what}: {why}")));
            return;
        }
        // ssh prints why (keepalive timeout, reset) just before it exits.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let detail = buf.lock().map(|s| s.trim().to_owned()).unwrap_or_default();
        let detail: Vec<&str> = detail.lines().collect();
        let detail = peer_text(&detail[detail.len().saturating_sub(3)..].join("; "));
        let _ = ev_tx.send(DestEvent::Lost(format!("{what}{}", with_detail(&detail))));
    });
    (replies, events)
}

/// Whether `uri`, a destination's answer to prepare, is where this
/// migration sends: `tcp:HOST:PORT` for a direct stream, `unix:PATH` for a
/// tunnelled one (the remote end of the tunnel). The reason otherwise.
fn check_prepared_uri(uri: &str, tunnelled: bool) -> Result<(), String> {
    let bad = |what: &str| {
        Err(format!(
            "the migration URI '{}' ({what})",
            peer_text(&uri.chars().take(200).collect::<String>())
        ))
    };
    if uri.len() > 4096 || uri.chars().any(|c| c.is_control() || c == ',') {
        return bad("malformed");
    }
    if tunnelled {
        return match uri.strip_prefix("unix:") {
            Some(p) if p.starts_with('/') => Ok(()),
            _ => bad("a tunnelled migration takes unix:/PATH"),
        };
    }
    let Some(rest) = uri.strip_prefix("tcp:") else {
        return bad("only tcp:HOST:PORT is accepted from a destination");
    };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        match r.split_once("]:") {
            Some((h, p)) => (h, p),
            None => return bad("no port"),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p),
            _ => return bad("not tcp:HOST:PORT"),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_%".contains(&b));
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        return bad("not tcp:HOST:PORT");
    }
    Ok(())
}

/// Host part of a QEMU `tcp:HOST:PORT` URI.
fn uri_host(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("tcp:")?;
    if let Some(r) = rest.strip_prefix('[') {
        return r.split_once(']').map(|(h, _)| h.to_owned());
    }
    rest.rsplit_once(':').map(|(h, _)| h.to_owned())
}

impl Destination for RemoteDestination {
    fn describe(&self) -> String {
        self.target.uri.display()
    }

    async fn prepare(&mut self, req: &PrepareRequest) -> Result<Prepared, MigrateError> {
        self.connect().await?;
        let t = self.target.clone();
        let incoming = if t.tunnelled {
            Incoming::Tunnel
        } else {
            Incoming::Tcp {
                listen: t.listen_address.clone(),
                port: t.migrate_port,
                advertise: t.migrate_addr.clone(),
            }
        };
        let files = referenced_files(&req.source_run_dir, &req.argv)?;
        let source_was_running = teamvirt_host::state::StateDir::open(&req.source_root)
            .ok()
            .and_then(|sd| super::job::current(&sd, &req.name).ok().flatten())
            .and_then(|j| j.source_was_running)
            .unwrap_or(true);
        let mut req = req.clone();
        // Not a path on the destination: its recovery must not look for
        // the source's state directory there.
        req.source_root = PathBuf::from(format!("{}:{}", hostname(), req.source_root.display()));
        let msg = ToDest::Prepare {
            req: Box::new(req.clone()),
            incoming,
            tls_dir: t.tls_dir.clone(),
            files,
            // The driver published the job (with the source's run state)
            // before it prepares.
            source_was_running,
        };
        // Prepare probes QEMU (cached) and starts it: allow for a slow host.
        let reply = match self.request(&msg, Duration::from_secs(120)).await {
            Ok(r) => r,
            Err(e) => {
                self.close().await;
                return Err(e);
            }
        };
        let FromDest::Prepared {
            uri,
            pairs,
            vfs,
            substitutions,
            pid,
        } = reply
        else {
            self.close().await;
            return Err(MigrateError::remote(
                super::proto::ErrorCode::Protocol,
                format!(
                    "internal error: unexpected reply to prepare from {}",
                    t.uri.host
                ),
            ));
        };
        // The source QEMU is told to send there: only the transport this
        // migration asked for, never `exec:` (a command on this host) or
        // `file:`. Refused before the source QEMU sees it.
        if let Err(why) = check_prepared_uri(&uri, t.tunnelled) {
            let _ = self.abort().await;
            return Err(MigrateError::remote(
                super::proto::ErrorCode::Protocol,
                format!(
                    "operation failed: the destination {} answered prepare with {why}",
                    t.uri.host
                ),
            ));
        }
        let substitutions: Vec<String> = substitutions.iter().map(|s| peer_text(s)).collect();
        let uri = if t.tunnelled {
            let remote = uri.strip_prefix("unix:").unwrap_or(&uri).to_owned();
            match self.open_tunnel(&req.source_run_dir, &remote).await {
                Ok(u) => u,
                Err(e) => {
                    let _ = self.abort().await;
                    return Err(e);
                }
            }
        } else {
            uri
        };
        let events = self
            .conn
            .as_mut()
            .and_then(|c| c.events.take())
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        Ok(Prepared {
            uri,
            pairs,
            vfs,
            substitutions,
            // A remote pid: shown, never signalled from here.
            pid: pid.map(|p| ProcId {
                pid: p as i32,
                start_time: 0,
            }),
            events,
        })
    }

    async fn finish(&mut self, resume: bool, timeout: Duration) -> Result<Finished, MigrateError> {
        let r = self
            .request(
                &ToDest::Finish {
                    resume,
                    timeout_ms: timeout.as_millis() as u64,
                },
                timeout + Duration::from_secs(30),
            )
            .await?;
        match r {
            FromDest::Finished {
                pairs,
                running,
                defined,
                guest,
            } => {
                self.close().await;
                Ok(Finished {
                    pairs,
                    running,
                    defined,
                    guest: bounded_guest_lines(guest),
                })
            }
            _ => Err(MigrateError::remote(
                super::proto::ErrorCode::Protocol,
                "internal error: unexpected reply to finish".into(),
            )),
        }
    }

    async fn abort(&mut self) -> Result<Vec<String>, MigrateError> {
        if self.conn.is_none() {
            return Ok(Vec::new());
        }
        let r = self.request(&ToDest::Abort, Duration::from_secs(60)).await;
        self.close().await;
        match r {
            Ok(FromDest::Aborted { log }) => Ok(log),
            Ok(_) => Ok(Vec::new()),
            Err(e) => Ok(vec![format!(
                "{e}; the destination tears its half down by itself when its control channel ends"
            )]),
        }
    }
}

/// This host's name (for the destination's records).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "source".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The source's TLS set-up for a prepared destination URI.
pub async fn source_tls(
    qmp: &Qmp,
    dir: &Path,
    dest_uri: &str,
    qemu: &teamvirt_host::privdrop::Identity,
) -> Result<(), QmpError> {
    super::tls::tls_setup(qmp, dir, "client", uri_host(dest_uri).as_deref(), qemu).await
}

/// The identity of the QEMU a run directory's record names (the source
/// of a tunnelled migration connects to the tunnel's socket).
fn run_dir_qemu(run_dir: &Path) -> std::io::Result<teamvirt_host::privdrop::Identity> {
    let text = teamvirt_host::state::read_optional(&run_dir.join("state.json"))
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    let rec: crate::run::RunRecord = serde_json::from_str(&text).map_err(std::io::Error::other)?;
    teamvirt_host::privdrop::process_identity(rec.proc.pid)
}

/// The doctor's lines from a remote destination: a peer's text, so few,
/// short and escaped.
fn bounded_guest_lines(lines: Vec<crate::guestdoc::CheckLine>) -> Vec<crate::guestdoc::CheckLine> {
    lines
        .into_iter()
        .take(64)
        .map(|mut l| {
            l.text = peer_text(&l.text.chars().take(2048).collect::<String>());
            l
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_uris_parse_as_virsh_takes_them() {
        let u = SshUri::parse(
            "ssh://root@10.0.0.2:2222/var/tmp/tv%20x?keyfile=/k/id&known_hosts=/k/kh&no_verify=1",
        )
        .unwrap();
        assert_eq!(u.user.as_deref(), Some("root"));
        assert_eq!(u.host, "10.0.0.2");
        assert_eq!(u.port, Some(2222));
        assert_eq!(u.state_dir.as_deref(), Some("/var/tmp/tv x"));
        assert_eq!(u.keyfile.as_deref(), Some("/k/id"));
        assert_eq!(u.known_hosts.as_deref(), Some("/k/kh"));
        assert!(u.no_verify);
        assert_eq!(u.display(), "ssh://root@10.0.0.2:2222/var/tmp/tv x");
        let u = SshUri::parse("qemu+ssh://host/system").unwrap();
        assert_eq!((u.host.as_str(), u.state_dir, u.port), ("host", None, None));
        let u = SshUri::parse("ssh://[fd00::2]:22").unwrap();
        assert_eq!(u.host, "fd00::2");
        assert_eq!(u.display(), "ssh://[fd00::2]:22");
        assert!(SshUri::parse("qemu+ssh://h/var/lib/x").is_err());
        assert!(SshUri::parse("qemu://h/system").is_err());
        assert!(SshUri::parse("ssh:///x").is_err());
        assert!(SshUri::parse("ssh://h:99999").is_err());
        let e = SshUri::parse("ssh://h?bogus=1").unwrap_err();
        assert!(e.to_string().contains("unknown parameter 'bogus'"), "{e}");
    }

    #[test]
    fn ssh_command_carries_batchmode_keepalives_and_uri_params() {
        let u = SshUri::parse("ssh://me@h:2200/s?keyfile=/k&known_hosts=/kh&no_verify=1&keepalive_interval=1&keepalive_count=2").unwrap();
        let c = u.command("teamvirt __migrate-dest");
        let args: Vec<String> = c
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let s = args.join(" ");
        for want in [
            "-o BatchMode=yes",
            "-o ServerAliveInterval=1",
            "-o ServerAliveCountMax=2",
            "-i /k",
            "-o UserKnownHostsFile=/kh",
            "-o StrictHostKeyChecking=no",
            "-p 2200",
            "-l me",
            "-- h teamvirt __migrate-dest",
        ] {
            assert!(s.contains(want), "{want} missing in {s}");
        }
    }

    #[test]
    fn migrateuri_and_quoting() {
        assert_eq!(
            parse_migrateuri("tcp://10.1.1.2:4444").unwrap(),
            ("10.1.1.2".into(), 4444)
        );
        assert_eq!(parse_migrateuri("tcp:h").unwrap(), ("h".into(), 0));
        assert_eq!(
            parse_migrateuri("tcp://[fd00::1]:5").unwrap(),
            ("fd00::1".into(), 5)
        );
        assert!(parse_migrateuri("rdma://h").is_err());
        assert_eq!(shell_quote("/usr/bin/teamvirt"), "/usr/bin/teamvirt");
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
        assert_eq!(uri_host("tcp:10.0.0.2:4444").as_deref(), Some("10.0.0.2"));
        assert_eq!(uri_host("tcp:[::1]:4444").as_deref(), Some("::1"));
    }

    const HELLO: &str = r#"{"msg":"hello","magic":"teamvirt-migrate-dest","version":1,"teamvirt":"x","state_dir":"/x"}"#;

    /// A destination played by a shell script in place of `ssh` (the URI's
    /// `command=`): it ignores ssh's arguments and speaks the protocol on
    /// stdin/stdout as `body` says.
    fn scripted(dir: &Path, body: &str) -> RemoteDestination {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("fake-ssh");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        RemoteDestination::new(RemoteTarget {
            uri: SshUri::parse(&format!("ssh://peer?command={}", script.display())).unwrap(),
            remote_teamvirt: "teamvirt".into(),
            migrate_addr: None,
            migrate_port: 0,
            listen_address: None,
            tunnelled: false,
            tls_dir: None,
        })
    }

    fn request(dir: &Path) -> PrepareRequest {
        PrepareRequest {
            name: "vm".into(),
            uuid: None,
            emulator: "qemu-system-x86_64".into(),
            argv: vec!["qemu-system-x86_64".into()],
            accel: crate::accel::Accel::Tcg,
            source_run_dir: dir.join("run/vm"),
            source_serial_log: None,
            source_root: dir.join("src"),
            pairs: Vec::new(),
            live_xml: "<domain type='qemu'><name>vm</name></domain>".into(),
            persistent_xml: None,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn prepared_uris_are_checked() {
        for ok in [
            "tcp:10.0.0.2:4444",
            "tcp:[fd00::2]:4444",
            "tcp:host-b.lan:1",
        ] {
            assert!(check_prepared_uri(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "exec:touch /tmp/x",
            "file:/etc/shadow",
            "rdma:1.2.3.4:5",
            "unix:/run/x.sock",
            "tcp:h",
            "tcp:h:0",
            "tcp:h:4444,x=y",
            "tcp:a b:4",
            "tcp::::4",
        ] {
            assert!(check_prepared_uri(bad, false).is_err(), "{bad}");
        }
        assert!(check_prepared_uri("unix:/tmp/d/migrate-in.sock", true).is_ok());
        assert!(check_prepared_uri("exec:sh", true).is_err());
    }

    /// A destination answering prepare with an `exec:` URI: refused before
    /// the URI reaches the source QEMU, and the destination told to abort.
    #[test]
    fn hostile_destination_exec_uri_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let aborted = t.path().join("aborted");
        let body = format!(
            "echo '{HELLO}'\nread l\n\
             echo '{{\"msg\":\"prepared\",\"uri\":\"exec:touch /tmp/pwned\",\"pairs\":[],\"vfs\":[],\"substitutions\":[],\"pid\":null}}'\n\
             read l && touch {}\necho '{{\"msg\":\"aborted\",\"log\":[]}}'\nread l",
            aborted.display()
        );
        let mut d = scripted(t.path(), &body);
        let e = rt().block_on(d.prepare(&request(t.path()))).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("exec:") && e.contains("only tcp:"), "{e}");
        assert!(aborted.exists(), "the destination was not told to abort");
    }

    /// Peer error text reaches the terminal escaped.
    #[test]
    fn hostile_destination_error_text_is_escaped() {
        let t = tempfile::tempdir().unwrap();
        let body = format!(
            "echo '{HELLO}'\nread l\n\
             printf '%s\\n' '{{\"msg\":\"error\",\"message\":\"\\u001b]0;owned\\u0007\\u001b[2Jfake\\nteamvirt: ok\\u009b\"}}'\nread l"
        );
        let mut d = scripted(t.path(), &body);
        let e = rt()
            .block_on(d.prepare(&request(t.path())))
            .unwrap_err()
            .to_string();
        assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
        assert!(
            e.contains("\\x1b]0;owned\\x07\\x1b[2Jfake\\nteamvirt: ok\\x9b"),
            "{e}"
        );
    }

    /// The destination's error code reaches the source's error (which
    /// `migrate --json` shows); an error without one is internal.
    #[test]
    fn destination_error_codes_reach_the_source() {
        for (sent, want) in [
            (
                r#","code":"no-network""#,
                super::super::proto::ErrorCode::NoNetwork,
            ),
            (
                r#","code":"operation-invalid""#,
                super::super::proto::ErrorCode::OperationInvalid,
            ),
            ("", super::super::proto::ErrorCode::Internal),
        ] {
            let t = tempfile::tempdir().unwrap();
            let body = format!(
                "echo '{HELLO}'\nread l\n\
                 printf '%s\\n' '{{\"msg\":\"error\"{sent},\"message\":\"Network not found\"}}'\nread l"
            );
            let mut d = scripted(t.path(), &body);
            match rt().block_on(d.prepare(&request(t.path()))) {
                Err(MigrateError::Remote { code, message }) => {
                    assert_eq!(code, want, "{sent}");
                    assert_eq!(message, "Network not found");
                }
                other => panic!("{sent}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_string_from_the_destination_is_escaped() {
        let m = parse_from_dest(
            r#"{"msg":"event","name":"X\u001b[2J","data":{"k\u009b":["a\u202eb"]},"seconds":0,"microseconds":0}"#,
        )
        .unwrap();
        let FromDest::Event { name, data, .. } = m else {
            panic!("{m:?}")
        };
        assert_eq!(name, "X\\x1b[2J");
        assert_eq!(data, serde_json::json!({"k\\x9b": ["a\\u{202e}b"]}));
        let m = parse_from_dest(r#"{"msg":"aborted","log":["ok\rfake"]}"#).unwrap();
        assert!(matches!(m, FromDest::Aborted { log } if log == ["ok\\rfake"]));
    }

    /// An unterminated line from the destination is refused past
    /// MAX_REPLY_LINE, not buffered until the peer stops.
    #[test]
    fn hostile_destination_endless_line_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let body = "head -c 67108864 /dev/zero | tr '\\0' a\nexec sleep 60";
        let mut d = scripted(t.path(), body);
        let e = rt()
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), d.connect()).await })
            .expect("still reading the endless line")
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than"), "{e}");
    }

    /// A destination flooding events: the source stops reading after
    /// MAX_MESSAGES and treats the channel as lost.
    #[test]
    fn hostile_destination_event_flood_is_cut() {
        let t = tempfile::tempdir().unwrap();
        let body = format!(
            "echo '{HELLO}'\nread l\n\
             echo '{{\"msg\":\"prepared\",\"uri\":\"tcp:127.0.0.1:4444\",\"pairs\":[],\"vfs\":[],\"substitutions\":[],\"pid\":null}}'\n\
             yes '{{\"msg\":\"event\",\"name\":\"MIGRATION_PASS\",\"data\":{{}},\"seconds\":0,\"microseconds\":0}}' | head -n {}\n\
             exec sleep 60",
            MAX_MESSAGES + 50
        );
        let mut d = scripted(t.path(), &body);
        let rt = rt();
        let mut p = rt.block_on(d.prepare(&request(t.path()))).unwrap();
        let (n, lost) = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(60), async {
                    let mut n = 0usize;
                    while let Some(ev) = p.events.recv().await {
                        match ev {
                            DestEvent::Qmp(_) => n += 1,
                            DestEvent::Lost(why) => return (n, why),
                            DestEvent::Exited => {}
                        }
                    }
                    (n, String::new())
                })
                .await
            })
            .expect("events kept coming");
        assert!(n < MAX_MESSAGES, "{n}");
        assert!(lost.contains("more than"), "{lost}");
    }
}
