//! With the installed QEMU probed live, a q35 domain with two teaming pairs
//! converts, and QEMU starts with that command line (VF primaries replaced
//! by lab-mode vmxnet3, monitor on a unix socket, `-S`) and quits cleanly
//! over QMP.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use teamvirt_conf::DomainDef;
use teamvirt_qemu::caps::QemuCaps;
use teamvirt_qemu::command::{convert, BuildOptions, Monitor};
use teamvirt_qemu::resolve::NetworkMap;

/// The async probe from a plain test thread (the binary runs it on its
/// one runtime; a test has none).
fn probe_blocking(
    binary: impl AsRef<std::path::Path>,
    cache_dir: impl AsRef<std::path::Path>,
) -> Result<QemuCaps, teamvirt_qemu::caps::CapsError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(QemuCaps::probe(binary, cache_dir))
}

const DOMAIN: &str = r#"<domain type='qemu'>
  <name>lab-pairs</name>
  <uuid>6f1c3a52-3f0e-4a57-9d11-2b7f0c2a9e01</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
  </os>
  <features><acpi/></features>
  <devices>
    <emulator>EMULATOR</emulator>
    <interface type='user'>
      <mac address='52:54:00:aa:00:01'/>
      <model type='virtio'/>
      <teaming type='persistent'/>
      <alias name='ua-standby0'/>
    </interface>
    <interface type='hostdev' managed='yes'>
      <mac address='52:54:00:aa:00:01'/>
      <source>
        <address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x1'/>
      </source>
      <teaming type='transient' persistent='ua-standby0'/>
    </interface>
    <interface type='user'>
      <mac address='52:54:00:aa:00:02'/>
      <model type='virtio'/>
      <teaming type='persistent'/>
      <alias name='ua-standby1'/>
    </interface>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x3b' slot='0x02' function='0x2'/>
      </source>
      <teaming type='transient' persistent='ua-standby1'/>
    </hostdev>
    <memballoon model='none'/>
  </devices>
</domain>
"#;

fn qmp_line(r: &mut impl BufRead) -> serde_json::Value {
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "QMP connection closed");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v.get("event").is_none() {
            return v;
        }
    }
}

#[test]
fn q35_two_pairs_start_and_quit_with_lab_primaries() {
    let Some(qemu) =
        teamvirt_testinfra::qemu_or_skip("q35_two_pairs_start_and_quit_with_lab_primaries")
    else {
        return;
    };
    let dir = teamvirt_testinfra::temp_dir();
    let caps = probe_blocking(&qemu, dir.path().join("cache")).expect("probe");
    assert!(
        caps.supports_failover(),
        "installed QEMU lacks virtio-net failover"
    );

    let xml = DOMAIN.replace("EMULATOR", &qemu.display().to_string());
    let (def, _) = DomainDef::parse_str(&xml, None).unwrap();

    // Without lab mode the primaries are real vfio-pci devices.
    let plain = convert(
        def.clone(),
        &caps,
        &NetworkMap::default(),
        &[],
        &BuildOptions::default(),
    )
    .unwrap();
    let argv = plain.built.cmd.argv.join(" ");
    assert_eq!(argv.matches("vfio-pci").count(), 2, "{argv}");
    assert_eq!(argv.matches("\"failover\":true").count(), 2, "{argv}");
    assert!(plain.built.substitutions.is_empty());
    // The plain <hostdev> gets conf's MAC reminder; the topology is clean.
    let topo: Vec<_> = plain
        .warnings
        .iter()
        .filter(|d| d.code.starts_with("teaming-primary") || d.code == "teaming-q35-no-acpi")
        .collect();
    assert!(topo.is_empty(), "{topo:?}");

    let sock = dir.path().join("monitor.sock");
    let opts = BuildOptions {
        domain_dir: Some(dir.path().to_path_buf()),
        monitor: Monitor::Path(sock.clone()),
        emulate_vf: true,
        ..Default::default()
    };
    let conv = convert(def, &caps, &NetworkMap::default(), &[], &opts).unwrap();
    let subs = &conv.built.substitutions;
    assert_eq!(subs.len(), 2, "{subs:?}");
    assert_eq!(
        (
            subs[0].id.as_str(),
            subs[0].pair.as_str(),
            subs[0].mac.as_str()
        ),
        ("hostdev0", "ua-standby0", "52:54:00:aa:00:01")
    );
    assert_eq!(subs[0].host.as_deref(), Some("0000:3b:02.1"));
    assert_eq!(
        (subs[1].id.as_str(), subs[1].pair.as_str()),
        ("hostdev1", "ua-standby1")
    );
    let argv = &conv.built.cmd.argv;
    let joined = argv.join(" ");
    assert!(!joined.contains("vfio-pci"), "{joined}");
    assert_eq!(
        joined.matches("\"driver\":\"vmxnet3\"").count(),
        2,
        "{joined}"
    );
    assert!(
        joined.contains("\"failover_pair_id\":\"ua-standby1\""),
        "{joined}"
    );
    assert!(joined.contains("\"restrict\":true"), "{joined}");
    assert!(argv.iter().any(|a| a == "-S"));

    std::fs::write(dir.path().join("master-key.aes"), [7u8; 32]).unwrap();
    let _lock = teamvirt_testinfra::guest_lock();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(
            conv.built
                .cmd
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            break s;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "QEMU exited early ({status}): {}\nargv: {joined}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "monitor socket never appeared");
        std::thread::sleep(Duration::from_millis(50));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    assert!(qmp_line(&mut r).get("QMP").is_some());
    writeln!(w, r#"{{"execute":"qmp_capabilities"}}"#).unwrap();
    assert!(qmp_line(&mut r).get("return").is_some());
    // The standbys exist; the primaries are hidden until the guest negotiates.
    writeln!(
        w,
        r#"{{"execute":"qom-list","arguments":{{"path":"/machine/peripheral"}}}}"#
    )
    .unwrap();
    let list = qmp_line(&mut r);
    let names: Vec<&str> = list["return"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"ua-standby0") && names.contains(&"ua-standby1"),
        "{names:?}"
    );
    writeln!(w, r#"{{"execute":"quit"}}"#).unwrap();
    assert!(qmp_line(&mut r).get("return").is_some());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "QEMU exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
