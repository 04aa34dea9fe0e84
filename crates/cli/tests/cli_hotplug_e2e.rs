//! Hotplug end to end through the `teamvirt` binary under TCG with the test
//! guest, in lab mode: a q35 guest started without any NIC gets a standby,
//! then its primary (a primary first is refused: no standby); the pair
//! negotiates and the guest bonds both under a net_failover master. The
//! primary is then ejected behind teamvirt's back (QMP `device_del` on
//! the monitor, which is what a guest-side eject or a cancelled
//! migration's late unplug leaves: the device gone from QEMU); `teaming`
//! reports it removed with its VF still held, `teaming --replug` brings it
//! back. The hot-added pair migrates (unplug, replug on the destination).
//! On the destination, a detach while the guest is paused (QMP `stop`)
//! runs into the deadline and changes nothing; after `cont` it completes
//! and the VF goes back; the standby goes last.
//!
//! Without a guest: `--config` attach/detach on a shut-off domain, and a
//! running domain without a free hot-pluggable slot.
//! Skips only when QEMU is not installed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Env;
use serde_json::Value;
use teamvirt_testinfra::xml::pool_xml;
use teamvirt_testinfra::{guest_lock, qemu_or_skip, test_guest, SerialLog};

/// A pool with exactly one VF.
fn net() -> String {
    pool_xml("vfpool", &["0000:3b:02.1"])
}

const STANDBY: &str = "<interface type='user'>
  <mac address='52:54:00:12:34:56'/>
  <model type='virtio'/>
  <teaming type='persistent'/>
  <alias name='ua-backup0'/>
</interface>
";

const PRIMARY: &str = "<interface type='network'>
  <source network='vfpool'/>
  <mac address='52:54:00:12:34:56'/>
  <teaming type='transient' persistent='ua-backup0'/>
</interface>
";

/// A q35 guest with no NIC; `ports` pcie-root-ports (the define-time
/// defaults give two of them to the USB controller and the balloon).
fn domain(name: &str, kernel: &Path, initrd: &Path, cmdline: &str, ports: u32) -> String {
    let ports: String = (1..=ports)
        .map(|i| format!("    <controller type='pci' index='{i}' model='pcie-root-port'/>\n"))
        .collect();
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{}</kernel>
    <initrd>{}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
{ports}  </devices>
</domain>
",
        kernel.display(),
        initrd.display()
    )
}

/// One QMP command on a domain's monitor, behind teamvirt's back (no
/// teamvirt command runs meanwhile: QEMU serves one client).
fn qmp(run_dir: &Path, cmd: &str, args: Value) -> Value {
    let s = UnixStream::connect(run_dir.join("qmp.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap(); // greeting
    let mut send = |c: Value| {
        writeln!(w, "{c}").unwrap();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            let v: Value = serde_json::from_str(&l).unwrap();
            if v.get("event").is_none() {
                return v;
            }
        }
    };
    send(serde_json::json!({"execute": "qmp_capabilities"}));
    let mut c = serde_json::json!({ "execute": cmd });
    if !args.is_null() {
        c["arguments"] = args;
    }
    let v = send(c);
    assert!(v.get("return").is_some(), "{cmd}: {v}");
    v
}

fn the_pair(e: &Env, dom: &str) -> Value {
    let t = e.json(&["teaming", dom, "--json"]);
    let pairs = t["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{t}");
    pairs[0].clone()
}

/// The guest's latest state shows a net_failover master with two slaves
/// (waits: the guest needs a moment to enslave a replugged primary).
fn guest_bonds_both(log: &SerialLog) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = log.latest_state() {
            if let Some(g) = st.failover_master(2) {
                assert!(g.standby.is_some() && g.primaries.len() == 1, "{g:?}");
                return;
            }
        }
        assert!(Instant::now() < deadline, "guest never bonded both NICs");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn hot_added_pair_negotiates_migrates_and_unplugs() {
    if qemu_or_skip("hot_added_pair_negotiates_migrates_and_unplugs").is_none() {
        return;
    }
    let guest = test_guest().expect("test guest builds");
    let _lock = guest_lock();
    let src = Env::new();
    let dst = Env::new();
    let net = src.write("net.xml", &net());
    let dom = src.write(
        "hp.xml",
        &domain("hp", &guest.kernel, &guest.initrd, &guest.cmdline(""), 4),
    );
    let standby = src.write("standby.xml", STANDBY);
    let primary = src.write("primary.xml", PRIMARY);
    src.ok(&["net-define", &net]);
    dst.ok(&["net-define", &net]);
    src.ok(&["define", &dom]);
    src.ok(&["start", "hp", "--accel", "tcg"]);

    // A primary without its standby is refused, and takes no VF.
    let err = src.fail(&["attach-device", "hp", &primary, "--emulate-vf"]);
    assert!(
        err.contains("its standby 'ua-backup0' is not present in the running domain"),
        "{err}"
    );
    assert_eq!(src.vfs_used("vfpool"), 0);

    let out = src.ok(&["attach-device", "hp", &standby, "--wait-failover=120"]);
    assert!(out.contains("Device attached successfully"), "{out}");
    let (out, err) = src.ok2(&[
        "attach-device",
        "hp",
        &primary,
        "--emulate-vf",
        "--wait-failover=120",
    ]);
    assert!(out.contains("Device attached successfully"), "{out}");
    assert!(
        err.contains("lab mode: failover primary hostdev0 (stands in for VF 0000:3b:02.1) emulated by vmxnet3"),
        "{err}"
    );
    let p = the_pair(&src, "hp");
    assert_eq!(
        (p["standby"].as_str(), p["primary"].as_str()),
        (Some("ua-backup0"), Some("hostdev0"))
    );
    assert_eq!(
        (p["negotiated"].as_bool(), p["plugged"].as_bool()),
        (Some(true), Some(true)),
        "{p}"
    );
    assert_eq!(src.vfs_used("vfpool"), 1);
    let log = SerialLog::new(src.run_dir("hp").join("serial.log"));
    guest_bonds_both(&log);
    let live = src.ok(&["dumpxml", "hp"]);
    assert!(
        live.contains("<alias name='hostdev0'/>") && live.contains("<alias name='ua-backup0'/>"),
        "{live}"
    );
    assert!(
        live.contains("<teamvirt:vf network='vfpool' device='hostdev0' address='0000:3b:02.1'/>"),
        "{live}"
    );
    // The definition is untouched (live only, the default when running).
    assert!(!src
        .ok(&["dumpxml", "hp", "--inactive"])
        .contains("<interface"));

    // The primary disappears behind teamvirt's back.
    qmp(
        &src.run_dir("hp"),
        "device_del",
        serde_json::json!({"id": "hostdev0"}),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let p = loop {
        let p = the_pair(&src, "hp");
        if p.get("removed").is_some() || Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        p["removed"]
            .as_str()
            .unwrap_or("")
            .contains("VF 0000:3b:02.1 stays held for it"),
        "{p}"
    );
    assert_eq!(p["plugged"], false);
    assert_eq!(
        src.vfs_used("vfpool"),
        1,
        "the VF stays held, as teaming says"
    );
    let (out, _) = src.ok2(&["teaming", "hp", "--replug=120"]);
    assert!(
        out.contains("ua-backup0  hostdev0  yes         yes"),
        "{out}"
    );
    guest_bonds_both(&log);

    // The hot-added pair migrates: unplugged on the source, plugged on
    // the destination.
    let (out, err) = src.ok2(&[
        "migrate",
        "--dest-state-dir",
        dst.state.to_str().unwrap(),
        "hp",
    ]);
    assert!(err.contains("source: UNPLUG_PRIMARY hostdev0"), "{err}");
    assert!(
        out.contains("pair ua-backup0 / hostdev0: negotiated yes, plugged yes"),
        "{out}"
    );
    assert_eq!(src.vfs_used("vfpool"), 0);
    assert_eq!(dst.vfs_used("vfpool"), 1);
    let p = the_pair(&dst, "hp");
    assert_eq!(
        (p["negotiated"].as_bool(), p["plugged"].as_bool()),
        (Some(true), Some(true)),
        "{p}"
    );
    guest_bonds_both(&SerialLog::new(dst.run_dir("hp").join("serial.log")));

    // A paused guest cannot release the primary: the deadline fires and
    // nothing changes.
    qmp(&dst.run_dir("hp"), "stop", Value::Null);
    let (out, err) = dst.ok2(&["detach-device-alias", "hp", "hostdev0", "--timeout", "3"]);
    assert!(
        out.contains("Device detach request sent successfully"),
        "{out}"
    );
    assert!(
        err.contains("the guest did not release device hostdev0 within 3 s"),
        "{err}"
    );
    assert_eq!(dst.vfs_used("vfpool"), 1);
    assert!(dst
        .ok(&["dumpxml", "hp"])
        .contains("<alias name='hostdev0'/>"));
    assert_eq!(the_pair(&dst, "hp")["primary"], "hostdev0");

    // Running again, the guest lets it go: VF back, pair gone.
    qmp(&dst.run_dir("hp"), "cont", Value::Null);
    let (_, err) = dst.ok2(&["detach-device-alias", "hp", "hostdev0", "--timeout", "60"]);
    assert!(
        err.contains("VF 0000:3b:02.1 returned to network 'vfpool'"),
        "{err}"
    );
    assert_eq!(dst.vfs_used("vfpool"), 0);
    let t = dst.json(&["teaming", "hp", "--json"]);
    assert!(t["pairs"].as_array().unwrap().is_empty(), "{t}");
    let standby_dst = dst.write("standby.xml", STANDBY);
    let out = dst.ok(&["detach-device", "hp", &standby_dst, "--timeout", "60"]);
    assert!(out.contains("Device detached successfully"), "{out}");
    let live = dst.ok(&["dumpxml", "hp"]);
    assert!(!live.contains("<interface"), "{live}");
    dst.ok(&["destroy", "hp"]);
}

#[test]
fn standby_goes_last_and_config_edits() {
    if qemu_or_skip("standby_goes_last_and_config_edits").is_none() {
        return;
    }
    let e = Env::new();
    let net = e.write("net.xml", &net());
    e.ok(&["net-define", &net]);
    let dom = e.write(
        "c.xml",
        &domain(
            "c",
            Path::new("/nonexistent/vmlinuz"),
            Path::new("/nonexistent/initrd"),
            "",
            4,
        ),
    );
    e.ok(&["define", &dom]);
    let standby = e.write("standby.xml", STANDBY);
    let primary = e.write("primary.xml", PRIMARY);
    // Shut off: --current means the definition.
    e.ok(&["attach-device", "c", &standby]);
    e.ok(&["attach-device", "c", &primary, "--config"]);
    let x = e.ok(&["dumpxml", "c", "--inactive"]);
    assert!(x.contains("<teaming type='persistent'/>"), "{x}");
    assert!(x.contains("<source network='vfpool'/>"), "{x}");
    assert_eq!(e.vfs_used("vfpool"), 0, "a config edit takes no VF");
    // --live on a shut-off domain: libvirt's text.
    let err = e.fail(&["attach-device", "c", &standby, "--live"]);
    assert!(
        err.contains("Requested operation is not valid: domain is not running"),
        "{err}"
    );
    // The standby cannot go while its primary is there.
    let err = e.fail(&["detach-device", "c", &standby, "--config"]);
    assert!(err.contains("detach the primary first"), "{err}");
    // Device XML is checked as at define: libvirt's text, file and line.
    let bad = e.write(
        "bad.xml",
        "<interface type='network'>\n  <source network='vfpool'/>\n  <teaming type='transient'/>\n</interface>\n",
    );
    let err = e.fail(&["attach-device", "c", &bad, "--config"]);
    assert!(err.contains("bad.xml:"), "{err}");
    e.ok(&["detach-device", "c", &primary, "--config"]);
    e.ok(&["detach-device", "c", &standby]);
    let x = e.ok(&["dumpxml", "c", "--inactive"]);
    assert!(!x.contains("<interface"), "{x}");
    let err = e.fail(&["detach-device-alias", "c", "ua-nothing", "--config"]);
    assert!(
        err.contains("no device found with alias ua-nothing"),
        "{err}"
    );
}

/// Every failure undoes what was done: a VF primary QEMU cannot take
/// (no VF to bind here, no lab mode) gives its VF back, a device QEMU
/// refuses leaves no backend behind (the same standby attaches cleanly
/// afterwards), and the live XML and pairs are unchanged.
#[test]
fn failed_attach_is_undone() {
    if qemu_or_skip("failed_attach_is_undone").is_none() {
        return;
    }
    let _lock = guest_lock();
    let e = Env::new();
    let net = e.write("net.xml", &net());
    e.ok(&["net-define", &net]);
    // No kernel: QEMU runs the firmware only, which is all this needs.
    let dom = domain("u", Path::new("/x"), Path::new("/y"), "", 4).replace(
        "    <kernel>/x</kernel>\n    <initrd>/y</initrd>\n    <cmdline></cmdline>\n",
        "",
    );
    let dom = e.write("u.xml", &dom);
    e.ok(&["define", &dom]);
    e.ok(&["start", "u", "--accel", "tcg"]);
    let before = e.ok(&["dumpxml", "u"]);

    // QEMU refuses the device (its ROM file does not exist).
    let bad = e.write(
        "bad-standby.xml",
        &STANDBY.replace(
            "</interface>",
            "  <rom file='/nonexistent/teamvirt.rom'/>\n</interface>",
        ),
    );
    let err = e.fail(&["attach-device", "u", &bad]);
    assert!(
        err.contains("unable to execute QEMU command 'device_add'"),
        "{err}"
    );
    assert_eq!(e.ok(&["dumpxml", "u"]), before);

    // Its backend went with it: the same standby now attaches.
    let standby = e.write("standby.xml", STANDBY);
    e.ok(&["attach-device", "u", &standby]);
    let with_standby = e.ok(&["dumpxml", "u"]);

    // A real VF (no lab mode) cannot be prepared on this host: the VF
    // taken from the pool goes back, nothing is recorded.
    let primary = e.write("primary.xml", PRIMARY);
    e.fail(&["attach-device", "u", &primary]);
    assert_eq!(e.vfs_used("vfpool"), 0);
    assert_eq!(e.ok(&["dumpxml", "u"]), with_standby);
    let t = e.json(&["teaming", "u", "--json"]);
    assert!(t["pairs"].as_array().unwrap().is_empty(), "{t}");
    e.ok(&["destroy", "u"]);
}
