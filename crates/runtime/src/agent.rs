//! A small QEMU guest agent client (libvirt's `qemu_agent.c` for the few
//! commands teamvirt needs): JSON lines over the unix socket of the
//! `org.qemu.guest_agent.0` channel.
//!
//! The agent is the guest's: everything it says is untrusted input. Replies
//! are bounded ([`MAX_REPLY`]), every wait has a deadline, interface lists
//! are capped, and text from it is escaped before anyone prints it (the
//! callers use [`teamvirt_host::escape::escape_controls`]).
//!
//! A session starts like libvirt's: a 0xFF byte resets the agent's parser,
//! then `guest-sync-delimited` with a random id; the agent answers with a
//! 0xFF before its reply, so whatever a previous client left unread is
//! skipped up to that byte, and replies with another id are stale ones.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Largest reply accepted (a guest with hundreds of addresses stays far below).
pub const MAX_REPLY: usize = 1 << 20;
/// Most interfaces (and addresses per interface) taken from a reply.
pub const MAX_ITEMS: usize = 256;
/// How long `guest-shutdown` waits for an error reply before it counts as
/// done (a working one is never answered).
pub const SHUTDOWN_REPLY_WAIT: Duration = Duration::from_secs(5);
/// Longest text field taken from a reply (names, addresses).
const MAX_FIELD: usize = 256;
/// Bytes asked for per `guest-file-read` (its reply is base64: a third
/// more, well below [`MAX_REPLY`]).
pub const FILE_CHUNK: usize = 64 * 1024;

/// Errors of the agent client, with libvirt's texts where it has them.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("argument unsupported: QEMU guest agent is not configured")]
    NotConfigured,
    #[error("Guest agent is not responding: QEMU guest agent is not connected")]
    NotConnected {
        path: PathBuf,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("Guest agent is not responding: {0}")]
    Timeout(String),
    #[error("internal error: unable to execute QEMU agent command '{cmd}': {desc}")]
    Command { cmd: String, desc: String },
    #[error("internal error: the guest agent's reply to '{cmd}' is {why}")]
    BadReply { cmd: String, why: String },
    #[error("internal error: guest agent socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One guest network interface (`guest-network-get-interfaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestInterface {
    pub name: String,
    /// Lower-case `aa:bb:cc:dd:ee:ff`; `None` for interfaces without one.
    pub mac: Option<String>,
    pub addresses: Vec<GuestAddress>,
}

/// An address of a guest interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestAddress {
    /// `ipv4` or `ipv6`.
    pub family: String,
    pub address: String,
    pub prefix: u8,
}

impl GuestAddress {
    /// Link-local (fe80::/10, 169.254/16): every interface the kernel
    /// brings up may have one; it carries no route of the guest's choosing.
    pub fn is_link_local(&self) -> bool {
        match self.address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) => a.is_link_local(),
            Ok(std::net::IpAddr::V6(a)) => (a.segments()[0] & 0xffc0) == 0xfe80,
            Err(_) => false,
        }
    }
    /// Loopback (127/8, ::1).
    pub fn is_loopback(&self) -> bool {
        self.address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
    }
}

/// A guest route (`guest-network-get-route`, QEMU-GA 9.1 and later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestRoute {
    pub iface: String,
    /// `4` or `6`.
    pub version: u8,
    pub destination: String,
    pub prefix: Option<u8>,
    pub gateway: Option<String>,
}

impl GuestRoute {
    /// A default route (0.0.0.0/0 or ::/0).
    pub fn is_default(&self) -> bool {
        let zero = match self.version {
            4 => self.destination == "0.0.0.0",
            _ => self
                .destination
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|a| a.is_unspecified()),
        };
        zero && self.prefix.unwrap_or(0) == 0
    }
}

/// `guest-info`: the agent's version and the commands it has enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentInfo {
    pub version: String,
    pub commands: Vec<String>,
}

impl AgentInfo {
    pub fn supports(&self, cmd: &str) -> bool {
        self.commands.iter().any(|c| c == cmd)
    }
}

/// A connected, synchronized agent session.
pub struct Agent {
    sock: UnixStream,
    path: PathBuf,
    timeout: Duration,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("path", &self.path).finish()
    }
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_FIELD).collect()
}

impl Agent {
    /// Connect to the agent's socket and synchronize. `timeout` bounds
    /// each command (the handshake included).
    pub fn connect(path: &Path, timeout: Duration) -> Result<Agent, AgentError> {
        let sock = UnixStream::connect(path).map_err(|e| AgentError::NotConnected {
            path: path.to_owned(),
            source: Some(e),
        })?;
        let mut a = Agent {
            sock,
            path: path.to_owned(),
            timeout,
            buf: Vec::new(),
        };
        a.sync()?;
        Ok(a)
    }

    fn io(&self, e: std::io::Error) -> AgentError {
        AgentError::Io {
            path: self.path.clone(),
            source: e,
        }
    }

    fn send(&mut self, v: &Value) -> Result<(), AgentError> {
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        self.sock
            .set_write_timeout(Some(self.timeout))
            .map_err(|e| self.io(e))?;
        self.sock.write_all(&line).map_err(|e| self.io(e))
    }

    /// Read bytes until `stop` says where a message ends; bounded by the
    /// deadline and [`MAX_REPLY`]. `Ok(None)`: the agent closed the socket.
    fn read_until(
        &mut self,
        deadline: Instant,
        what: &str,
        stop: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<Option<Vec<u8>>, AgentError> {
        loop {
            if let Some(end) = stop(&self.buf) {
                let msg: Vec<u8> = self.buf.drain(..end).collect();
                return Ok(Some(msg));
            }
            if self.buf.len() > MAX_REPLY {
                return Err(AgentError::BadReply {
                    cmd: what.to_owned(),
                    why: format!("larger than {MAX_REPLY} bytes"),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AgentError::Timeout(format!(
                    "no reply to '{what}' within {} s",
                    self.timeout.as_secs()
                )));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| self.io(e))?;
            let mut chunk = [0u8; 8192];
            match self.sock.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    fn read_line(&mut self, deadline: Instant, what: &str) -> Result<Option<Value>, AgentError> {
        let Some(line) = self.read_until(deadline, what, |b| {
            b.iter().position(|c| *c == b'\n').map(|i| i + 1)
        })?
        else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| AgentError::BadReply {
                cmd: what.to_owned(),
                why: format!("not JSON ({e})"),
            })
    }

    /// libvirt's handshake: 0xFF, `guest-sync-delimited`, skip to the
    /// agent's 0xFF, then the reply carrying our id.
    fn sync(&mut self) -> Result<(), AgentError> {
        let id = (u64::from(std::process::id()) << 20) ^ u64::from(rand_u32());
        self.sock
            .set_write_timeout(Some(self.timeout))
            .map_err(|e| self.io(e))?;
        self.sock.write_all(&[0xff]).map_err(|e| self.io(e))?;
        self.send(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}}))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let skipped = self.read_until(deadline, "guest-sync-delimited", |b| {
                b.iter().position(|c| *c == 0xff).map(|i| i + 1)
            });
            match skipped {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(AgentError::NotConnected {
                        path: self.path.clone(),
                        source: None,
                    })
                }
                // Nobody in the guest answers: QEMU accepted the connection
                // for a port no agent opened.
                Err(AgentError::Timeout(_)) => {
                    return Err(AgentError::NotConnected {
                        path: self.path.clone(),
                        source: None,
                    })
                }
                Err(e) => return Err(e),
            }
            match self.read_line(deadline, "guest-sync-delimited")? {
                Some(v) if v.get("return").and_then(Value::as_u64) == Some(id) => return Ok(()),
                // A stale reply of an earlier session: skip to the next 0xFF.
                Some(_) => continue,
                None => {
                    return Err(AgentError::NotConnected {
                        path: self.path.clone(),
                        source: None,
                    })
                }
            }
        }
    }

    /// Run `cmd` and return its `return` value.
    fn call(&mut self, cmd: &str, args: Option<Value>) -> Result<Value, AgentError> {
        let mut req = json!({ "execute": cmd });
        if let Some(a) = args {
            req["arguments"] = a;
        }
        self.send(&req)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let v = self
                .read_line(deadline, cmd)?
                .ok_or_else(|| AgentError::BadReply {
                    cmd: cmd.to_owned(),
                    why: "missing: the agent closed the connection".into(),
                })?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                let desc = e
                    .get("desc")
                    .and_then(Value::as_str)
                    .map(cut)
                    .unwrap_or_else(|| "unknown error".into());
                return Err(AgentError::Command {
                    cmd: cmd.to_owned(),
                    desc,
                });
            }
            // Blank lines and anything else (events) are not the reply.
        }
    }

    pub fn ping(&mut self) -> Result<(), AgentError> {
        self.call("guest-ping", None).map(|_| ())
    }

    pub fn info(&mut self) -> Result<AgentInfo, AgentError> {
        let v = self.call("guest-info", None)?;
        Ok(parse_info(&v))
    }

    pub fn interfaces(&mut self) -> Result<Vec<GuestInterface>, AgentError> {
        let v = self.call("guest-network-get-interfaces", None)?;
        parse_interfaces(&v).map_err(|why| AgentError::BadReply {
            cmd: "guest-network-get-interfaces".into(),
            why,
        })
    }

    pub fn routes(&mut self) -> Result<Vec<GuestRoute>, AgentError> {
        let v = self.call("guest-network-get-route", None)?;
        parse_routes(&v).map_err(|why| AgentError::BadReply {
            cmd: "guest-network-get-route".into(),
            why,
        })
    }

    /// `guest-file-open` (read-only): the agent's handle.
    pub fn file_open(&mut self, path: &str) -> Result<i64, AgentError> {
        let v = self.call("guest-file-open", Some(json!({"path": path, "mode": "r"})))?;
        v.as_i64().ok_or_else(|| AgentError::BadReply {
            cmd: "guest-file-open".into(),
            why: "not a handle".into(),
        })
    }

    /// `guest-file-read` of at most `count` bytes: the bytes and whether
    /// the file ended.
    pub fn file_read(&mut self, handle: i64, count: usize) -> Result<(Vec<u8>, bool), AgentError> {
        let v = self.call(
            "guest-file-read",
            Some(json!({"handle": handle, "count": count})),
        )?;
        let bad = |why: &str| AgentError::BadReply {
            cmd: "guest-file-read".into(),
            why: why.into(),
        };
        let b64 = v
            .get("buf-b64")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("without buf-b64"))?;
        let data = base64_decode(b64).ok_or_else(|| bad("not base64"))?;
        if data.len() > count {
            return Err(bad("longer than asked for"));
        }
        let eof = v.get("eof").and_then(Value::as_bool).unwrap_or(false);
        Ok((data, eof))
    }

    /// `guest-file-close`.
    pub fn file_close(&mut self, handle: i64) -> Result<(), AgentError> {
        self.call("guest-file-close", Some(json!({ "handle": handle })))
            .map(|_| ())
    }

    /// A whole guest file of at most `max` bytes (open, read to the end,
    /// close; closed also when a read fails). A longer file is an error:
    /// the agent is not made to stream what the caller cannot use.
    pub fn read_file(&mut self, path: &str, max: usize) -> Result<Vec<u8>, AgentError> {
        let h = self.file_open(path)?;
        let mut out = Vec::new();
        let res = loop {
            let (chunk, eof) = match self.file_read(h, FILE_CHUNK.min(max + 1)) {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            out.extend_from_slice(&chunk);
            if out.len() > max {
                break Err(AgentError::BadReply {
                    cmd: "guest-file-read".into(),
                    why: format!("{path} larger than {max} bytes"),
                });
            }
            // An agent that says neither "eof" nor gives bytes would loop.
            if eof || chunk.is_empty() {
                break Ok(());
            }
        };
        let closed = self.file_close(h);
        res?;
        closed?;
        Ok(out)
    }

    /// `guest-shutdown` (mode `powerdown`). The agent does not answer a
    /// shutdown that works (the guest goes down); an error reply is an
    /// error (QEMU-GA reports a failed `shutdown` command within a moment),
    /// silence for [`SHUTDOWN_REPLY_WAIT`] or a closed socket is success
    /// (libvirt's rule, without its wait for QEMU's SHUTDOWN event).
    pub fn shutdown(&mut self) -> Result<(), AgentError> {
        let keep = self.timeout;
        self.timeout = keep.min(SHUTDOWN_REPLY_WAIT);
        let r = self.call("guest-shutdown", Some(json!({"mode": "powerdown"})));
        self.timeout = keep;
        match r {
            Ok(_) => Ok(()),
            Err(AgentError::Timeout(_)) | Err(AgentError::BadReply { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Standard base64 (with or without padding; whitespace ignored) as the
/// agent sends file contents; `None` on anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let body: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let trimmed = body
        .strip_suffix(b"==")
        .or_else(|| body.strip_suffix(b"="))
        .unwrap_or(&body);
    if trimmed.len() % 4 == 1 || (trimmed.len() != body.len() && !body.len().is_multiple_of(4)) {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for group in trimmed.chunks(4) {
        let mut n = 0u32;
        for (i, c) in group.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    u32::from_ne_bytes(b)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
}

pub fn parse_info(v: &Value) -> AgentInfo {
    let version = v
        .get("version")
        .and_then(Value::as_str)
        .map(cut)
        .unwrap_or_default();
    // QAPI's GuestAgentInfo names the list `supported_commands`.
    let commands = v
        .get("supported_commands")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .take(4096)
                .filter(|c| c.get("enabled").and_then(Value::as_bool) != Some(false))
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(cut))
                .collect()
        })
        .unwrap_or_default();
    AgentInfo { version, commands }
}

/// `guest-network-get-interfaces`' reply, bounded and normalized.
pub fn parse_interfaces(v: &Value) -> Result<Vec<GuestInterface>, String> {
    let list = v.as_array().ok_or("not a list")?;
    if list.len() > MAX_ITEMS {
        return Err(format!(
            "a list of {} interfaces (at most {MAX_ITEMS})",
            list.len()
        ));
    }
    let mut out = Vec::new();
    for i in list {
        let Some(name) = i.get("name").and_then(Value::as_str) else {
            return Err("an interface without a name".into());
        };
        let mac = i
            .get("hardware-address")
            .and_then(Value::as_str)
            .map(|m| cut(m).to_ascii_lowercase());
        let mut addresses = Vec::new();
        let addrs = i.get("ip-addresses").and_then(Value::as_array);
        for a in addrs.into_iter().flatten().take(MAX_ITEMS) {
            let (Some(t), Some(ad), Some(p)) = (
                a.get("ip-address-type").and_then(Value::as_str),
                a.get("ip-address").and_then(Value::as_str),
                a.get("prefix").and_then(Value::as_u64),
            ) else {
                continue;
            };
            addresses.push(GuestAddress {
                family: cut(t),
                address: cut(ad),
                prefix: u8::try_from(p).unwrap_or(u8::MAX),
            });
        }
        out.push(GuestInterface {
            name: cut(name),
            mac,
            addresses,
        });
    }
    Ok(out)
}

/// A number the agent may give as a number or a string.
fn num(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// IPv4 dotted mask to prefix length (`255.255.255.0` -> 24).
fn mask_len(m: &str) -> Option<u8> {
    let a: std::net::Ipv4Addr = m.parse().ok()?;
    let bits = u32::from(a);
    (bits.leading_ones() + bits.trailing_zeros() == 32 || bits == 0)
        .then(|| u8::try_from(bits.count_ones()).unwrap_or(0))
}

/// `guest-network-get-route`'s reply (QEMU-GA 9.1+).
pub fn parse_routes(v: &Value) -> Result<Vec<GuestRoute>, String> {
    let list = v.as_array().ok_or("not a list")?;
    let mut out = Vec::new();
    for r in list.iter().take(MAX_ITEMS * 4) {
        let (Some(iface), Some(dest)) = (
            r.get("iface").and_then(Value::as_str),
            r.get("destination").and_then(Value::as_str),
        ) else {
            continue;
        };
        let version = num(r.get("version"))
            .and_then(|v| u8::try_from(v).ok())
            .unwrap_or(4);
        let prefix = match version {
            4 => r.get("mask").and_then(Value::as_str).and_then(mask_len),
            _ => num(r.get("desprefixlen")).and_then(|p| u8::try_from(p).ok()),
        };
        let gateway = r
            .get("gateway")
            .or_else(|| r.get("nexthop"))
            .and_then(Value::as_str)
            .map(cut);
        out.push(GuestRoute {
            iface: cut(iface),
            version,
            destination: cut(dest),
            prefix,
            gateway,
        });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake agent: answers the handshake (after some stale garbage) and
    /// then `replies` in order, one per request line.
    pub(crate) fn fake(
        dir: &Path,
        replies: Vec<String>,
    ) -> (PathBuf, std::thread::JoinHandle<Vec<String>>) {
        let p = dir.join("ga.sock");
        let l = UnixListener::bind(&p).unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = Vec::new();
            let mut replies = replies.into_iter();
            loop {
                let mut c = [0u8; 4096];
                let n = s.read(&mut c).unwrap_or(0);
                if n == 0 {
                    return seen;
                }
                buf.extend_from_slice(&c[..n]);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    let line: Vec<u8> = line.into_iter().filter(|b| *b != 0xff).collect();
                    let v: Value = serde_json::from_slice(&line).unwrap();
                    seen.push(v["execute"].as_str().unwrap().to_owned());
                    if v["execute"] == "guest-sync-delimited" {
                        let id = v["arguments"]["id"].as_u64().unwrap();
                        // A stale reply first, then the real one.
                        s.write_all(b"{\"return\": {}}\n\xff{\"return\": 1}\n")
                            .unwrap();
                        s.write_all(&[0xff]).unwrap();
                        s.write_all(format!("{{\"return\": {id}}}\n").as_bytes())
                            .unwrap();
                    } else if let Some(r) = replies.next() {
                        s.write_all(r.as_bytes()).unwrap();
                    }
                }
            }
        });
        (p, h)
    }

    #[test]
    fn handshake_skips_stale_replies_and_commands_answer() {
        let d = tempfile::tempdir().unwrap();
        let ifs = r#"{"return": [{"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}]}, {"name": "enp1s0", "hardware-address": "52:54:00:AA:BB:CC", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.78.0.2", "prefix": 24}, {"ip-address-type": "ipv6", "ip-address": "fe80::1", "prefix": 64}]}]}"#;
        let (p, h) = fake(
            d.path(),
            vec![
                "{\"return\": {}}\n".into(),
                format!("{ifs}\n"),
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\\u001b[2J\"}}\n".into(),
            ],
        );
        let mut a = Agent::connect(&p, Duration::from_secs(5)).unwrap();
        a.ping().unwrap();
        let i = a.interfaces().unwrap();
        assert_eq!(i.len(), 2);
        assert_eq!(i[1].mac.as_deref(), Some("52:54:00:aa:bb:cc"));
        assert!(i[1].addresses[1].is_link_local() && !i[1].addresses[0].is_link_local());
        assert!(i[0].addresses[0].is_loopback());
        let e = a.routes().unwrap_err();
        assert!(matches!(e, AgentError::Command { .. }), "{e}");
        drop(a);
        assert_eq!(
            h.join().unwrap(),
            [
                "guest-sync-delimited",
                "guest-ping",
                "guest-network-get-interfaces",
                "guest-network-get-route"
            ]
        );
    }

    #[test]
    fn a_silent_port_is_not_connected_and_a_flood_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        // Silent: accepted, never answered (QEMU's socket without an agent).
        let p = d.path().join("silent.sock");
        let l = UnixListener::bind(&p).unwrap();
        let h = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            drop(s);
        });
        let e = Agent::connect(&p, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, AgentError::NotConnected { .. }), "{e}");
        h.join().unwrap();
        // A flood without a newline after the sync: refused at MAX_REPLY.
        let p = d.path().join("flood.sock");
        let l = UnixListener::bind(&p).unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut c = [0u8; 4096];
            let _ = s.read(&mut c);
            let _ = s.write_all(b"\xff");
            let junk = vec![b'x'; 64 * 1024];
            for _ in 0..(MAX_REPLY / junk.len() + 4) {
                if s.write_all(&junk).is_err() {
                    break;
                }
            }
        });
        let e = Agent::connect(&p, Duration::from_secs(10)).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        h.join().unwrap();
    }

    #[test]
    fn shutdown_fails_on_an_error_reply_and_succeeds_on_silence() {
        let d = tempfile::tempdir().unwrap();
        let (p, h) = fake(
            d.path(),
            vec!["{\"error\": {\"class\": \"GenericError\", \"desc\": \"child process has failed to shutdown\"}}\n".into()],
        );
        let mut a = Agent::connect(&p, Duration::from_secs(5)).unwrap();
        let e = a.shutdown().unwrap_err();
        assert!(e.to_string().contains("failed to shutdown"), "{e}");
        drop(a);
        h.join().unwrap();
        // A shutdown that works is never answered.
        let d = tempfile::tempdir().unwrap();
        let (p, h) = fake(d.path(), Vec::new());
        let mut a = Agent::connect(&p, Duration::from_millis(500)).unwrap();
        a.shutdown().unwrap();
        drop(a);
        assert_eq!(
            h.join().unwrap(),
            ["guest-sync-delimited", "guest-shutdown"]
        );
    }

    #[test]
    fn files_are_read_in_bounded_chunks_and_always_closed() {
        let d = tempfile::tempdir().unwrap();
        let (p, h) = fake(
            d.path(),
            vec![
                "{\"return\": 7}\n".into(),
                "{\"return\": {\"count\": 6, \"buf-b64\": \"SWZhY2UK\", \"eof\": false}}\n".into(),
                "{\"return\": {\"count\": 3, \"buf-b64\": \"bG8K\", \"eof\": true}}\n".into(),
                "{\"return\": {}}\n".into(),
                // A second file, longer than the caller's bound.
                "{\"return\": 8}\n".into(),
                "{\"return\": {\"count\": 6, \"buf-b64\": \"SWZhY2UK\", \"eof\": false}}\n".into(),
                "{\"return\": {}}\n".into(),
                // A third whose read is not base64.
                "{\"return\": 9}\n".into(),
                "{\"return\": {\"count\": 1, \"buf-b64\": \"!!\", \"eof\": true}}\n".into(),
                "{\"return\": {}}\n".into(),
                // The agent refuses to open a fourth.
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"No such file\"}}\n".into(),
            ],
        );
        let mut a = Agent::connect(&p, Duration::from_secs(5)).unwrap();
        assert_eq!(a.read_file("/proc/net/route", 64).unwrap(), b"Iface\nlo\n");
        let e = a.read_file("/proc/net/route", 4).unwrap_err();
        assert!(e.to_string().contains("longer than asked"), "{e}");
        let e = a.read_file("/proc/net/route", 64).unwrap_err();
        assert!(e.to_string().contains("not base64"), "{e}");
        let e = a.read_file("/nope", 64).unwrap_err();
        assert!(matches!(e, AgentError::Command { .. }), "{e}");
        drop(a);
        let seen = h.join().unwrap();
        let n = |c: &str| seen.iter().filter(|s| *s == c).count();
        assert_eq!(n("guest-file-open"), 4);
        assert_eq!(n("guest-file-read"), 4);
        // Every file opened is closed, also after a bad read.
        assert_eq!(n("guest-file-close"), 3);
    }

    #[test]
    fn base64_is_decoded_strictly() {
        for (b, want) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg", "foob"),
            ("Zm9v\nYmFy", "foobar"),
        ] {
            assert_eq!(base64_decode(b).as_deref(), Some(want.as_bytes()), "{b}");
        }
        for bad in ["Z", "Zm9v!", "Zg=", "Z===", "Zg==Zg==", "é"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn replies_are_parsed_defensively() {
        assert!(parse_interfaces(&json!({"x": 1})).is_err());
        let many: Vec<Value> = (0..MAX_ITEMS + 1)
            .map(|i| json!({"name": format!("e{i}")}))
            .collect();
        assert!(parse_interfaces(&Value::Array(many)).is_err());
        let long = "x".repeat(10_000);
        let i = parse_interfaces(&json!([{"name": long, "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "1.2.3.4", "prefix": 99999}]}])).unwrap();
        assert_eq!(i[0].name.len(), MAX_FIELD);
        assert_eq!(i[0].addresses[0].prefix, u8::MAX);
        let r = parse_routes(&json!([
            {"iface": "enp1s0", "destination": "0.0.0.0", "mask": "0.0.0.0", "gateway": "10.0.0.1", "version": 4},
            {"iface": "enp1s0", "destination": "10.0.0.0", "mask": "255.255.255.0", "version": 4},
            {"iface": "enp1s0", "destination": "::", "desprefixlen": "0", "nexthop": "fe80::1", "version": 6},
        ]))
        .unwrap();
        assert!(r[0].is_default() && !r[1].is_default() && r[2].is_default());
        assert_eq!(r[1].prefix, Some(24));
        // As Debian 12's QEMU-GA 7.2.22 answers (trimmed).
        let info = parse_info(&json!({"version": "7.2.22", "supported_commands": [
            {"enabled": true, "name": "guest-file-read", "success-response": true},
            {"enabled": true, "name": "guest-ping", "success-response": true},
            {"enabled": false, "name": "guest-exec", "success-response": true}]}));
        assert_eq!(info.version, "7.2.22");
        assert!(info.supports("guest-ping") && info.supports("guest-file-read"));
        assert!(!info.supports("guest-exec"));
    }
}
