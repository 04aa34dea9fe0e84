//! PCI addressing never wraps past bus 255 and is never sized by an
//! unchecked controller index (issue 12).

use teamvirt_conf::DomainDef;
use teamvirt_qemu::caps::QemuCaps;
use teamvirt_qemu::defaults::define;

fn caps() -> Option<QemuCaps> {
    let c = teamvirt_testinfra::corpus_or_skip("pci limits")?;
    Some(QemuCaps::from_libvirt_xml(c.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml")).unwrap())
}

/// `n` NICs on a pc machine whose PCI buses 1..=255 exist already.
fn nics(n: usize) -> DomainDef {
    let nets = "<interface type='user'><model type='virtio'/></interface>".repeat(n);
    let xml = format!(
        "<domain type='kvm'><name>t</name><memory>1048576</memory><os><type arch='x86_64' machine='pc'>hvm</type></os><devices><controller type='pci' index='255' model='pci-bridge'/>{nets}</devices></domain>"
    );
    DomainDef::parse_str(&xml, None).unwrap().0
}

#[test]
fn pci_buses_stop_at_255() {
    let Some(caps) = caps() else { return };
    // Up to bus 255 is fine (the PCI bus numbers), one more bus is not
    // (31 slots per pci-bridge: 8,000 NICs need more than 256 buses).
    let mut d = nics(100);
    define(&mut d, &caps).unwrap();
    let mut d = nics(8_000);
    let e = define(&mut d, &caps).unwrap_err();
    assert_eq!(
        e.to_string(),
        "internal error: Invalid PCI address bus='0x100', must be <= 0xff"
    );
    let xml = "<domain type='kvm'><name>t</name><memory>1048576</memory><os><type arch='x86_64' machine='pc'>hvm</type></os><devices><controller type='pci' index='100000' model='pci-bridge'/></devices></domain>";
    let mut d = DomainDef::parse_str(xml, None).unwrap().0;
    assert_eq!(
        define(&mut d, &caps).unwrap_err().to_string(),
        "unsupported configuration: PCI controller index 100000 is out of range (PCI bus numbers go up to 255)"
    );
}
