//! Reading `migrate --json` output and poking a test QEMU's own monitor,
//! shared by the migration tests (local and over SSH).

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Every JSON event line of a `migrate --json` run.
pub fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn phases(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .filter(|e| e["event"] == "phase")
        .map(|e| e["phase"].as_str().unwrap().to_owned())
        .collect()
}

pub fn has_qemu_event(ev: &[Value], side: &str, name: &str) -> bool {
    ev.iter()
        .any(|e| e["event"] == "qemu" && e["side"] == side && e["name"] == name)
}

/// One QMP command on a socket nobody else uses (the guest's pause button).
pub fn qmp(sock: &Path, cmd: &str) -> Value {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    for c in ["qmp_capabilities", cmd] {
        writeln!(w, "{{\"execute\":\"{c}\"}}").unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            if v.get("return").is_some() || v.get("error").is_some() {
                if c == cmd {
                    return v;
                }
                break;
            }
        }
    }
    unreachable!()
}
