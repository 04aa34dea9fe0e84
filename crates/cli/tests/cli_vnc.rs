//! `<graphics type='vnc' passwd='...'/>` is honoured as libvirt does it:
//! `password=on` on `-vnc` and the password set over QMP after start, so a
//! VNC client is offered VNC authentication, never security type None;
//! `dumpxml` hides the password unless `--security-info`. Starts a QEMU
//! without a guest (TCG, SeaBIOS, nothing to boot); skips only without QEMU.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::Env;
use teamvirt_testinfra::qemu_or_skip;

fn domain(port: u16, passwd: &str) -> String {
    format!(
        "<domain type='qemu'>
  <name>vnct</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <graphics type='vnc' port='{port}' autoport='no'{passwd}>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video><model type='none'/></video>
  </devices>
</domain>
"
    )
}

/// A port from 5900 up that nothing listens on now.
fn free_vnc_port() -> u16 {
    let base = 5900 + (std::process::id() % 2000) as u16;
    (base..base + 500)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

/// The security types a VNC server offers (RFB 3.8 handshake).
fn security_types(port: u16) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("VNC server on {port}: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut version = [0u8; 12];
    s.read_exact(&mut version).unwrap();
    assert!(version.starts_with(b"RFB "), "{version:?}");
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut n = [0u8; 1];
    s.read_exact(&mut n).unwrap();
    let mut types = vec![0u8; n[0] as usize];
    s.read_exact(&mut types).unwrap();
    types
}

#[test]
fn vnc_password_is_set_and_hidden() {
    if qemu_or_skip("vnc_password_is_set_and_hidden").is_none() {
        return;
    }
    let e = Env::new();
    let port = free_vnc_port();
    let xml = e.write(
        "vnc.xml",
        &domain(port, " passwd='s3cret' passwdValidTo='2099-01-01T00:00:00'"),
    );
    e.ok(&["define", &xml]);
    // Hidden from dumpxml without --security-info, as virsh does.
    let shown = e.ok(&["dumpxml", "vnct", "--inactive"]);
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("passwdValidTo='2099-01-01T00:00:00'"),
        "{shown}"
    );
    let secure = e.ok(&["dumpxml", "vnct", "--inactive", "--security-info"]);
    assert!(secure.contains("passwd='s3cret'"), "{secure}");

    e.ok(&["start", "vnct", "--accel", "tcg"]);
    let types = security_types(port);
    e.ok(&["destroy", "vnct"]);
    // 2: VNC authentication; 1 (None) would let anyone on the host in.
    assert_eq!(types, vec![2], "offered security types {types:?}");
    // The password is not on QEMU's command line (the run record's argv).
    let shown = e.ok(&["dumpxml", "vnct"]);
    assert!(!shown.contains("s3cret"), "{shown}");
}
