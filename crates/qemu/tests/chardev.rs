//! Serial chardevs on the command line as libvirt builds them
//! (qemuBuildChardevStr): `<source path append/>` and `<log file append/>`.

use teamvirt_conf::DomainDef;
use teamvirt_qemu::caps::QemuCaps;
use teamvirt_qemu::command::{convert, BuildOptions};
use teamvirt_qemu::resolve::TestNetworkDirs;

fn caps() -> QemuCaps {
    let from_corpus = teamvirt_testinfra::corpus_dir()
        .map(|c| c.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml"))
        .filter(|p| p.exists())
        .and_then(|p| QemuCaps::from_libvirt_xml(p).ok());
    from_corpus.unwrap_or_else(|| {
        QemuCaps::from_flags("/usr/bin/qemu-system-x86_64", "x86_64", ["virtio-net-pci"])
    })
}

/// libvirt's `serial-file-log.xml` with the serial's `<source>` and `<log>`
/// given as `source` and `log`.
fn domain(source: &str, log: &str) -> String {
    format!(
        "<domain type='qemu'>
  <name>QEMUGuest1</name>
  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
  <memory unit='KiB'>219136</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' index='0' model='none'/>
    <serial type='file'>
      {source}
      {log}
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
"
    )
}

fn args(xml: &str) -> Result<Vec<String>, String> {
    let (def, _) = DomainDef::parse_str(xml, None).map_err(|e| e.to_string())?;
    let nets = TestNetworkDirs {
        net_dir: std::env::temp_dir(),
        port_dir: None,
    };
    let conv =
        convert(def, &caps(), &nets, &[], &BuildOptions::test_env()).map_err(|e| e.to_string())?;
    Ok(conv.built.cmd.argv)
}

fn serial_chardev(xml: &str) -> String {
    let a = args(xml).unwrap();
    let i = a
        .iter()
        .position(|x| x.starts_with("file,id=charserial0"))
        .unwrap_or_else(|| panic!("no serial chardev in {a:?}"));
    assert_eq!(a[i - 1], "-chardev");
    a[i].clone()
}

#[test]
fn serial_file_append_on_is_passed() {
    // A same-host migration starts the destination QEMU on the same file:
    // without append=on QEMU opens it O_TRUNC (issue 18).
    let c = serial_chardev(&domain("<source path='/tmp/serial.log' append='on'/>", ""));
    assert_eq!(c, "file,id=charserial0,path=/tmp/serial.log,append=on");
}

#[test]
fn serial_file_append_off_and_absent_as_libvirt() {
    let c = serial_chardev(&domain("<source path='/tmp/serial.log' append='off'/>", ""));
    assert_eq!(c, "file,id=charserial0,path=/tmp/serial.log,append=off");
    let c = serial_chardev(&domain("<source path='/tmp/a,b.log'/>", ""));
    assert_eq!(c, "file,id=charserial0,path=/tmp/a,,b.log");
}

#[test]
fn chardev_log_file_and_append_are_passed() {
    let c = serial_chardev(&domain(
        "<source path='/tmp/serial.log' append='on'/>",
        "<log file='/var/log/demo,serial.log' append='on'/>",
    ));
    assert_eq!(
        c,
        "file,id=charserial0,path=/tmp/serial.log,append=on,\
         logfile=/var/log/demo,,serial.log,logappend=on"
    );
    let c = serial_chardev(&domain(
        "<source path='/tmp/serial.log'/>",
        "<log file='/var/log/demo-serial.log' append='off'/>",
    ));
    assert_eq!(
        c,
        "file,id=charserial0,path=/tmp/serial.log,\
         logfile=/var/log/demo-serial.log,logappend=off"
    );
    let c = serial_chardev(&domain(
        "<source path='/tmp/serial.log'/>",
        "<log file='/var/log/demo-serial.log'/>",
    ));
    assert_eq!(
        c,
        "file,id=charserial0,path=/tmp/serial.log,logfile=/var/log/demo-serial.log"
    );
}

#[test]
fn pty_serial_log_is_passed() {
    let xml = domain("", "<log file='/var/log/pty.log' append='on'/>")
        .replace("<serial type='file'>", "<serial type='pty'>");
    let a = args(&xml).unwrap();
    assert!(
        a.iter()
            .any(|x| x == "pty,id=charserial0,logfile=/var/log/pty.log,logappend=on"),
        "{a:?}"
    );
}

#[test]
fn append_other_than_on_or_off_is_refused_with_its_line() {
    let e = args(&domain("<source path='/tmp/s.log' append='yes'/>", "")).unwrap_err();
    assert!(e.contains("append='yes'") && e.contains("line 13"), "{e}");
}

/// libvirt's guest agent channel (`channel-virtio-auto.xml`'s shape) with
/// `source` inside `<channel type='unix'>`, on a q35 machine.
fn agent_domain(source: &str) -> String {
    format!(
        "<domain type='qemu'>
  <name>QEMUGuest1</name>
  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
  <memory unit='KiB'>219136</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' index='0' model='none'/>
    <channel type='unix'>
      {source}
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='none'/>
  </devices>
</domain>
"
    )
}

fn opt_after<'a>(a: &'a [String], opt: &str, prefix: &str) -> &'a str {
    let i = a
        .iter()
        .enumerate()
        .position(|(i, x)| i > 0 && a[i - 1] == opt && x.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {opt} {prefix}... in {a:?}"));
    &a[i]
}

#[test]
fn guest_agent_channel_argv_as_libvirt() {
    let a = args(&agent_domain("<source mode='bind'/>")).unwrap();
    // The implicit virtio-serial controller, on a root port of its own.
    let ctrl = opt_after(&a, "-device", "{\"driver\":\"virtio-serial-pci\"");
    assert!(
        ctrl.starts_with(
            "{\"driver\":\"virtio-serial-pci\",\"id\":\"virtio-serial0\",\"bus\":\"pci."
        ),
        "{ctrl}"
    );
    // The socket in libvirt's per-domain channel directory.
    assert_eq!(
        opt_after(&a, "-chardev", "socket,id=charchannel0"),
        "socket,id=charchannel0,path=/var/lib/libvirt/qemu/channel/target/domain--1-QEMUGuest1/org.qemu.guest_agent.0,server=on,wait=off"
    );
    assert_eq!(
        opt_after(&a, "-device", "{\"driver\":\"virtserialport\""),
        "{\"driver\":\"virtserialport\",\"bus\":\"virtio-serial0.0\",\"nr\":1,\"chardev\":\"charchannel0\",\"id\":\"channel0\",\"name\":\"org.qemu.guest_agent.0\"}"
    );
    // libvirt's order: controllers, ..., the channel after the serials.
    let pos = |p: &str| a.iter().position(|x| x.starts_with(p)).unwrap();
    assert!(pos("{\"driver\":\"virtio-serial-pci\"") < pos("socket,id=charchannel0"));
}

#[test]
fn guest_agent_channel_with_a_path_and_no_source() {
    let a = args(&agent_domain(
        "<source mode='bind' path='/run/x,y/ga.sock'/>",
    ))
    .unwrap();
    assert_eq!(
        opt_after(&a, "-chardev", "socket,id=charchannel0"),
        "socket,id=charchannel0,path=/run/x,,y/ga.sock,server=on,wait=off"
    );
    let a = args(&agent_domain("")).unwrap();
    assert!(opt_after(&a, "-chardev", "socket,id=charchannel0")
        .ends_with("/domain--1-QEMUGuest1/org.qemu.guest_agent.0,server=on,wait=off"));
}

#[test]
fn channel_defaults_and_canonical_xml() {
    let xml = agent_domain("<source mode='bind'/>").replace(
        "<target type='virtio' name='org.qemu.guest_agent.0'/>\n    </channel>",
        "<target type='virtio' name='org.qemu.guest_agent.0'/>\n    </channel>\n    \
         <channel type='unix'><source mode='bind' path='/tmp/other'/><target type='virtio' name='org.example.1'/></channel>",
    );
    let (mut def, _) = DomainDef::parse_str(&xml, None).unwrap();
    teamvirt_qemu::defaults::define(&mut def, &caps()).unwrap();
    let out = def.to_xml();
    // One implicit controller with a PCI address; ports 1 and 2.
    assert_eq!(
        out.matches("<controller type='virtio-serial' index='0'>")
            .count(),
        1,
        "{out}"
    );
    assert!(out.contains(
        "    <channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n      <address type='virtio-serial' controller='0' bus='0' port='1'/>\n    </channel>\n"
    ), "{out}");
    assert!(out.contains(
        "      <source mode='bind' path='/tmp/other'/>\n      <target type='virtio' name='org.example.1'/>\n      <address type='virtio-serial' controller='0' bus='0' port='2'/>"
    ), "{out}");
    // Formatting is stable: the canonical XML parses back to itself.
    let (again, _) = DomainDef::parse_str(&out, None).unwrap();
    assert_eq!(again.to_xml(), out);
}

#[test]
fn channel_parse_errors_carry_their_position() {
    let bad_target = agent_domain("").replace("type='virtio' name", "type='virtio-x' name");
    let e = DomainDef::parse_str(&bad_target, None).unwrap_err();
    let d = e.to_diagnostic(None);
    assert_eq!(
        d.message,
        "XML error: unknown target type 'virtio-x' specified for character device"
    );
    assert_eq!(d.pos.map(|p| p.line), Some(14));
    let no_target =
        agent_domain("").replace("<target type='virtio' name='org.qemu.guest_agent.0'/>", "");
    let d = DomainDef::parse_str(&no_target, None)
        .unwrap_err()
        .to_diagnostic(None);
    assert_eq!(
        d.message,
        "XML error: target type must be specified for channel device"
    );
    assert_eq!(d.pos.map(|p| p.line), Some(12));
    let bad_mode = agent_domain("<source mode='listen'/>");
    let d = DomainDef::parse_str(&bad_mode, None)
        .unwrap_err()
        .to_diagnostic(None);
    assert_eq!(
        d.message,
        "unsupported configuration: Unknown source mode 'listen'"
    );
    assert_eq!(d.pos.map(|p| p.line), Some(13));
}

#[test]
fn channels_teamvirt_cannot_build_are_refused_with_their_line() {
    let pty = agent_domain("").replace("<channel type='unix'>", "<channel type='pty'>");
    let e = args(&pty).unwrap_err();
    assert!(
        e.contains("<channel type='pty'>") && e.contains("line 12"),
        "{e}"
    );
    let nameless = agent_domain("").replace(" name='org.qemu.guest_agent.0'", "");
    let e = args(&nameless).unwrap_err();
    assert!(
        e.contains("without <source path>") && e.contains("line 12"),
        "{e}"
    );
}
