//! The control protocol between a migrating source and the remote
//! `teamvirt __migrate-dest` it starts over SSH: one JSON object per line
//! each way. The destination greets first ([`FromDest::Hello`] with
//! [`MAGIC`] and [`VERSION`]); the source checks it before it sends
//! anything, so a wrong binary or another protocol version is a clear error
//! and never a half-understood request. Then the source sends
//! [`ToDest::Prepare`], later [`ToDest::Finish`] or [`ToDest::Abort`]; the
//! destination answers each with one reply and streams its QEMU's events
//! ([`FromDest::Event`]) in between.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::accel::Accel;
use crate::guestdoc::CheckLine;
use crate::run::VfBinding;
use crate::teaming::{PairState, TeamingPair};

/// Names the protocol in the greeting.
pub const MAGIC: &str = "teamvirt-migrate-dest";
/// Bumped whenever a message changes incompatibly.
pub const VERSION: u32 = 1;

/// The longest line the source reads from a destination: its replies and
/// events are small (a few KiB at most), so anything longer is a broken or
/// hostile peer, refused before it is buffered.
pub const MAX_REPLY_LINE: usize = 1 << 20;
/// The longest line a destination reads from its source: a `prepare`
/// carries the domain's XML (live and persistent) and its argv, and the
/// run directory's files, bounded by [`MAX_FILES`] and [`MAX_FILE_BYTES`].
pub const MAX_REQUEST_LINE: usize = 8 << 20;
/// At most this many run-directory files in a `prepare`.
pub const MAX_FILES: usize = 16;
/// Their total size (they are keys and small blobs).
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// The most messages (events and replies) the source takes from one
/// destination in one migration. A migration has a few dozen events (one
/// `MIGRATION_PASS` per pass over memory, status changes, unplug and
/// replug): a peer that sends more is flooding the source's memory.
pub const MAX_MESSAGES: usize = 100_000;
/// The most lines a destination reads from its source in one migration
/// (it needs three: prepare, finish or abort).
pub const MAX_REQUESTS: usize = 1_000;

/// A line of the protocol that breaks its bounds or is not text.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("protocol error: the peer sent a line longer than {0} bytes")]
    TooLong(usize),
    #[error("protocol error: the peer sent a line that is not UTF-8")]
    NotUtf8,
    #[error("protocol error: {0}")]
    Io(#[from] std::io::Error),
}

/// The next line of `r` without its `\n` (`None` at EOF), or an error as
/// soon as more than `max` bytes came without one: a peer cannot make this
/// side buffer an endless line. A last line without `\n` before EOF
/// counts as a line.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<String>, LineError> {
    let mut line: Vec<u8> = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            if line.is_empty() {
                return Ok(None);
            }
            break;
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if line.len() + i > max {
                    return Err(LineError::TooLong(max));
                }
                line.extend_from_slice(&buf[..i]);
                r.consume(i + 1);
                break;
            }
            None => {
                let n = buf.len();
                if line.len() + n > max {
                    return Err(LineError::TooLong(max));
                }
                line.extend_from_slice(buf);
                r.consume(n);
            }
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| LineError::NotUtf8)
}

/// Whether the files of a `prepare` stay within [`MAX_FILES`] and
/// [`MAX_FILE_BYTES`] and are named as files of a run directory: plain
/// names, no `/`, not `.` or `..`, nothing hidden, no control characters.
/// The reason otherwise.
pub fn check_files(files: &[(String, Vec<u8>)]) -> Result<(), String> {
    if files.len() > MAX_FILES {
        return Err(format!(
            "{} run-directory files (at most {MAX_FILES})",
            files.len()
        ));
    }
    let total: usize = files.iter().map(|(_, d)| d.len()).sum();
    if total > MAX_FILE_BYTES {
        return Err(format!(
            "{total} bytes of run-directory files (at most {MAX_FILE_BYTES})"
        ));
    }
    for (name, _) in files {
        plain_name(name)?;
    }
    Ok(())
}

/// `name` is a plain file name (see [`check_files`]), else why not.
pub fn plain_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.chars().any(|c| c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the file name '{}' is not a plain file name",
            teamvirt_host::escape::escape_controls(name)
        ))
    }
}

/// What the source tells the destination about the domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareRequest {
    pub name: String,
    pub uuid: Option<String>,
    pub emulator: String,
    /// The source's argv (emulator first); the destination derives its own.
    pub argv: Vec<String>,
    pub accel: Accel,
    /// The source's run directory (paths in `argv` under it are the
    /// source's own files).
    pub source_run_dir: PathBuf,
    pub source_serial_log: Option<PathBuf>,
    /// The source's state directory (a local destination refuses itself).
    pub source_root: PathBuf,
    pub pairs: Vec<TeamingPair>,
    pub live_xml: String,
    /// `--persistent`: define the domain on the destination with this XML.
    pub persistent_xml: Option<String>,
}

/// How the destination QEMU receives the memory stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Incoming {
    /// Listen on TCP `listen`:`port` (0: any); the source sends to
    /// `advertise` (else the destination's choice).
    Tcp {
        listen: Option<String>,
        port: u16,
        advertise: Option<String>,
    },
    /// Listen on a unix socket; the stream comes through SSH (`--tunnelled`).
    Tunnel,
}

/// Source -> destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "kebab-case")]
pub enum ToDest {
    Prepare {
        req: Box<PrepareRequest>,
        incoming: Incoming,
        /// `--tls`: the destination's certificate directory.
        tls_dir: Option<PathBuf>,
        /// Files of the source's run directory QEMU reads (name, bytes).
        files: Vec<(String, Vec<u8>)>,
        /// Whether to resume the guest if the destination must decide
        /// alone (the control channel lost after the copy completed).
        source_was_running: bool,
    },
    Finish {
        resume: bool,
        timeout_ms: u64,
    },
    Abort,
}

/// Destination -> source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "kebab-case")]
pub enum FromDest {
    Hello {
        magic: String,
        version: u32,
        teamvirt: String,
        /// The destination state directory.
        state_dir: String,
    },
    Prepared {
        uri: String,
        pairs: Vec<TeamingPair>,
        vfs: Vec<VfBinding>,
        substitutions: Vec<String>,
        pid: Option<u32>,
    },
    /// A QMP event of the destination QEMU.
    Event {
        name: String,
        data: Value,
        seconds: i64,
        microseconds: i64,
    },
    /// The destination QEMU's monitor closed.
    Exited,
    Finished {
        pairs: Vec<PairState>,
        running: bool,
        defined: bool,
        /// The guest doctor's lines (absent from older destinations).
        #[serde(default)]
        guest: Vec<CheckLine>,
    },
    Aborted {
        log: Vec<String>,
    },
    Error {
        /// What kind of failure (absent from older destinations: internal).
        #[serde(default)]
        code: ErrorCode,
        message: String,
    },
}

/// What kind of failure a destination reports, beside its text: the
/// classes of libvirt's error numbers that a migration meets
/// (`VIR_ERR_OPERATION_INVALID`, `VIR_ERR_CONFIG_UNSUPPORTED`, ...), so
/// the source acts on a code, not on the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The peer broke the protocol: a line too long, a request not
    /// understood, file names outside the run directory, an answer that
    /// does not fit the question.
    Protocol,
    /// No such domain (`VIR_ERR_NO_DOMAIN`).
    NoDomain,
    /// No such network (`VIR_ERR_NO_NETWORK`).
    NoNetwork,
    /// Not valid in the present state: running already, locked, migrating
    /// (`VIR_ERR_OPERATION_INVALID`).
    OperationInvalid,
    /// The domain's configuration cannot run there
    /// (`VIR_ERR_CONFIG_UNSUPPORTED`).
    ConfigUnsupported,
    /// An operation failed on the way: QEMU, the host's devices
    /// (`VIR_ERR_OPERATION_FAILED`).
    OperationFailed,
    /// Anything else (`VIR_ERR_INTERNAL_ERROR`).
    #[default]
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut r = tokio::io::BufReader::with_capacity(16, &b"ab\r\ncd\nlast"[..]);
        assert_eq!(read_line_bounded(&mut r, 8).await.unwrap().unwrap(), "ab");
        assert_eq!(read_line_bounded(&mut r, 8).await.unwrap().unwrap(), "cd");
        assert_eq!(read_line_bounded(&mut r, 8).await.unwrap().unwrap(), "last");
        assert!(read_line_bounded(&mut r, 8).await.unwrap().is_none());
        // An endless line: refused once past the bound, not buffered.
        let endless = tokio::io::repeat(b'a');
        let mut r = tokio::io::BufReader::new(endless);
        let e = read_line_bounded(&mut r, 1 << 20).await.unwrap_err();
        assert!(matches!(e, LineError::TooLong(_)), "{e}");
        let mut r = tokio::io::BufReader::new(&b"12345678\n"[..]);
        assert!(read_line_bounded(&mut r, 8).await.is_ok());
        let mut r = tokio::io::BufReader::new(&b"123456789\n"[..]);
        assert!(read_line_bounded(&mut r, 8).await.is_err());
    }

    #[test]
    fn file_names_are_plain() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/shadow",
            "a/b",
            ".hidden",
            "a\nb",
        ] {
            assert!(plain_name(bad).is_err(), "{bad:?}");
        }
        assert!(plain_name("master-key.aes").is_ok());
        assert!(check_files(&vec![("k".into(), vec![0; 10]); MAX_FILES + 1]).is_err());
        assert!(check_files(&[("k".into(), vec![0; MAX_FILE_BYTES + 1])]).is_err());
    }

    #[test]
    fn messages_are_single_json_lines_tagged_by_msg() {
        let m = ToDest::Finish {
            resume: true,
            timeout_ms: 30000,
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"msg":"finish","resume":true,"timeout_ms":30000}"#);
        let h: FromDest = serde_json::from_str(
            r#"{"msg":"hello","magic":"teamvirt-migrate-dest","version":1,"teamvirt":"0.1.0","state_dir":"/x"}"#,
        )
        .unwrap();
        assert!(matches!(h, FromDest::Hello { version: 1, .. }));
        let i = serde_json::to_string(&Incoming::Tunnel).unwrap();
        assert_eq!(i, r#"{"kind":"tunnel"}"#);
    }

    #[test]
    fn a_finished_without_the_doctor_is_read() {
        // From a destination that predates the guest doctor's lines.
        let f: FromDest =
            serde_json::from_str(r#"{"msg":"finished","pairs":[],"running":true,"defined":false}"#)
                .unwrap();
        assert!(matches!(f, FromDest::Finished { guest, .. } if guest.is_empty()));
    }

    /// A destination's error carries its code; one from a destination that
    /// sends none (older teamvirt) is internal.
    #[test]
    fn error_codes_cross_the_wire() {
        let e = FromDest::Error {
            code: ErrorCode::NoNetwork,
            message: "Network not found".into(),
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains("\"code\":\"no-network\""), "{line}");
        match serde_json::from_str::<FromDest>(&line).unwrap() {
            FromDest::Error { code, message } => {
                assert_eq!(code, ErrorCode::NoNetwork);
                assert_eq!(message, "Network not found");
            }
            m => panic!("{m:?}"),
        }
        let mut v = serde_json::to_value(&e).unwrap();
        remove_code(&mut v);
        let old: FromDest = serde_json::from_value(v).unwrap();
        match old {
            FromDest::Error { code, .. } => assert_eq!(code, ErrorCode::Internal),
            m => panic!("{m:?}"),
        }
    }

    fn remove_code(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("code");
                m.values_mut().for_each(remove_code);
            }
            Value::Array(a) => a.iter_mut().for_each(remove_code),
            _ => {}
        }
    }
}
