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
