//! Small helpers for tests: scratch directories and free TCP ports.

use std::net::TcpListener;

/// A scratch directory removed when dropped. Kept short (under /tmp) because
/// unix socket paths are limited to 107 bytes.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("teamvirt-test-")
        .tempdir_in(std::env::temp_dir())
        .expect("cannot create a temporary directory")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it).
/// Another process can still take it before the caller binds it; tests
/// using it for QEMU migration accept that small race.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind an ephemeral port on 127.0.0.1")
}
