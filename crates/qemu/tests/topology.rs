//! Each beyond-libvirt topology warning (issue 3 item 8), and its absence
//! for a correct q35 layout.

use teamvirt_conf::DomainDef;
use teamvirt_qemu::caps::QemuCaps;
use teamvirt_qemu::defaults::define;
use teamvirt_qemu::topology::{check, codes, fatal_at_start};

fn caps() -> QemuCaps {
    QemuCaps::from_flags(
        "/usr/bin/qemu-system-x86_64",
        "x86_64",
        [
            "virtio-pci-non-transitional",
            "pcie-root-port",
            "pcie-pci-bridge",
            "qemu-xhci",
            "piix3-usb-uhci",
            "device.json+hotplug",
        ],
    )
}

fn domain(machine: &str, features: &str, devices: &str) -> String {
    format!(
        "<domain type='qemu'><name>t</name><memory>262144</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='{machine}'>hvm</type></os>{features}<devices>\
         <interface type='user'><mac address='52:54:00:00:00:01'/><model type='virtio'/>\
         <teaming type='persistent'/><alias name='ua-sb'/></interface>{devices}</devices></domain>"
    )
}

const ACPI: &str = "<features><acpi/></features>";

fn codes_for(xml: &str) -> (Vec<&'static str>, DomainDef) {
    let (mut def, _) = DomainDef::parse_str(xml, None).unwrap();
    define(&mut def, &caps()).unwrap();
    let diags = check(&def, &[]);
    assert!(
        diags.iter().all(|d| d.hint.is_some()),
        "every warning has a hint: {diags:?}"
    );
    (diags.iter().map(|d| d.code).collect(), def)
}

fn hostdev(extra_attrs: &str, address: &str) -> String {
    format!(
        "<hostdev mode='subsystem' type='pci' managed='yes' {extra_attrs}><source>\
         <address domain='0x0000' bus='0x3b' slot='0x02' function='0x1'/></source>\
         <teaming type='transient' persistent='ua-sb'/>{address}</hostdev>"
    )
}

#[test]
fn correct_q35_layout_has_no_warning() {
    let (c, def) = codes_for(&domain("q35", ACPI, &hostdev("", "")));
    assert!(c.is_empty(), "{c:?}");
    // libvirt put the primary on a pcie-root-port.
    let bus = def.devices.hostdevs[0].info.pci_address().unwrap().bus;
    let port = def
        .devices
        .controllers
        .iter()
        .find(|x| x.type_ == "pci" && x.index == Some(u32::from(bus)))
        .unwrap();
    assert_eq!(port.model.as_deref(), Some("pcie-root-port"));
}

#[test]
fn primary_on_pc_pci_root() {
    let (c, _) = codes_for(&domain("pc", ACPI, &hostdev("", "")));
    assert_eq!(c, vec![codes::CONVENTIONAL_PCI]);
    assert!(fatal_at_start(codes::CONVENTIONAL_PCI));
}

#[test]
fn primary_on_pcie_root_bus() {
    let addr = "<address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>";
    let (c, _) = codes_for(&domain("q35", ACPI, &hostdev("", addr)));
    assert_eq!(c, vec![codes::ROOT_BUS]);
}

#[test]
fn primary_on_root_port_without_hotplug() {
    let devs = format!(
        "<controller type='pci' index='0' model='pcie-root'/>\
         <controller type='pci' index='1' model='pcie-root-port'><target hotplug='off'/></controller>{}",
        hostdev("", "<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>")
    );
    let (c, _) = codes_for(&domain("q35", ACPI, &devs));
    assert_eq!(c, vec![codes::HOTPLUG_OFF]);
}

#[test]
fn primary_not_alone_in_its_slot() {
    let addr = "<address type='pci' domain='0x0000' bus='0x00' slot='0x1c' function='0x0' multifunction='on'/>";
    let (c, _) = codes_for(&domain("pc", ACPI, &hostdev("", addr)));
    assert!(c.contains(&codes::MULTIFUNCTION), "{c:?}");
    let addr = "<address type='pci' domain='0x0000' bus='0x00' slot='0x1c' function='0x3'/>";
    let (c, _) = codes_for(&domain("pc", ACPI, &hostdev("", addr)));
    assert!(c.contains(&codes::MULTIFUNCTION), "{c:?}");
}

#[test]
fn primary_with_ramfb() {
    let (c, _) = codes_for(&domain(
        "q35",
        ACPI,
        &hostdev("display='on' ramfb='on'", ""),
    ));
    assert_eq!(c, vec![codes::RAMFB]);
}

#[test]
fn q35_without_acpi_slows_migration() {
    let (c, _) = codes_for(&domain("q35", "", &hostdev("", "")));
    assert_eq!(c, vec![codes::Q35_NO_ACPI]);
    assert!(!fatal_at_start(codes::Q35_NO_ACPI));
    // Without any failover primary there is nothing to warn about.
    let (c, _) = codes_for(&domain("q35", "", ""));
    assert!(c.is_empty(), "{c:?}");
}

fn transient_network(model: &str) -> String {
    format!(
        "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='pool'/>{model}\
         <teaming type='transient' persistent='ua-sb'/></interface>"
    )
}

#[test]
fn transient_network_without_model_lands_behind_a_bridge() {
    let (c, def) = codes_for(&domain("q35", ACPI, &transient_network("")));
    assert_eq!(c, vec![codes::DEFAULT_MODEL]);
    // libvirt's address is kept: behind the pcie-to-pci-bridge it added.
    let net = &def.devices.interfaces[1];
    assert_eq!(net.model_str(), Some("rtl8139"));
    let bus = net.info.pci_address().unwrap().bus;
    let ctrl = def
        .devices
        .controllers
        .iter()
        .find(|x| x.type_ == "pci" && x.index == Some(u32::from(bus)))
        .unwrap();
    assert_eq!(ctrl.model.as_deref(), Some("pcie-to-pci-bridge"));

    let (c, _) = codes_for(&domain(
        "q35",
        ACPI,
        &transient_network("<model type='virtio'/>"),
    ));
    assert!(c.is_empty(), "{c:?}");
}

fn pool_network(mode: &str) -> teamvirt_conf::NetworkDef {
    let xml = format!(
        "<network><name>pool</name><forward mode='{mode}'>\
         <address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x0'/></forward></network>"
    );
    teamvirt_conf::NetworkDef::parse_str(&xml, None).unwrap().0
}

#[test]
fn checks_resolution_keeps_going_and_assumes_a_vf_for_unknown_networks() {
    use teamvirt_conf::model::InterfaceType;
    use teamvirt_qemu::resolve::{resolve_for_checks, NetworkMap, ResolveError};
    let xml = domain("q35", ACPI, &transient_network(""));
    let (mut def, _) = DomainDef::parse_str(&xml, None).unwrap();
    define(&mut def, &caps()).unwrap();

    // Nobody described 'pool': the primary must be a VF to start at all.
    let (actual, problems) = resolve_for_checks(&def, &NetworkMap::default());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(actual.len(), 2);
    assert_eq!(actual[1].type_, InterfaceType::Hostdev);
    let c: Vec<_> = check(&def, &actual).iter().map(|d| d.code).collect();
    assert_eq!(c, vec![codes::DEFAULT_MODEL]);

    // A hostdev pool: the VF is the pool's first.
    let mut map = NetworkMap::default();
    map.insert(pool_network("hostdev"), None);
    let (actual, problems) = resolve_for_checks(&def, &map);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(actual[1].hostdev.map(|a| a.slot), Some(0x10));

    // A network that is not a pool: libvirt's start-time error, reported
    // with the interface's index instead of stopping.
    let mut map = NetworkMap::default();
    let (net, _) = teamvirt_conf::NetworkDef::parse_str(
        "<network><name>pool</name><bridge name='virbr9'/></network>",
        None,
    )
    .unwrap();
    map.insert(net, None);
    let (actual, problems) = resolve_for_checks(&def, &map);
    assert_eq!(actual.len(), 2);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, 1);
    assert!(
        matches!(&problems[0].1, ResolveError::TeamingNotHostdev { actual, .. } if actual == "bridge"),
        "{problems:?}"
    );
}
