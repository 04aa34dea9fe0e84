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

use super::dest::PrepareRequest;
use crate::run::VfBinding;
use crate::teaming::{PairState, TeamingPair};

/// Names the protocol in the greeting.
pub const MAGIC: &str = "teamvirt-migrate-dest";
/// Bumped whenever a message changes incompatibly.
pub const VERSION: u32 = 1;

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
    },
    Aborted {
        log: Vec<String>,
    },
    Error {
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
