//! libvirt's interface/hostdev hotplug cases (`qemuhotplugtest.c`), read
//! in place from `../shared/conformance/libvirt/qemuhotplugtest*`:
//! attaching the device to `qemuhotplug-base-live.xml` must give the
//! device element of libvirt's expected live XML byte for byte (alias
//! `hostdev0`, `<driver name='vfio'/>`, first free hot-pluggable slot),
//! in the same place among the devices, and one `device_add` (no netdev:
//! a VF has no backend); detaching it gives the base definition back.

use std::path::Path;

use teamvirt_conf::{DeviceDef, DomainDef};
use teamvirt_conf::{NetworkDef, NetworkPortDef};
use teamvirt_qemu::caps::QemuCaps;
use teamvirt_qemu::command::BuildOptions;
use teamvirt_qemu::hotplug::{
    find_alias, find_device, plan_attach, remove_device, restore_aliases, HotplugError,
};
use teamvirt_qemu::resolve::{NetworkMap, NetworkSource, TestNetworkDirs};

/// The interface-network-hostdev case was added upstream (commit
/// 70b30530) together with a newer `plug-hostdev-pci.xml` whose VF is
/// 0000:06:12.2 (see SOURCE.md, "Known divergence"); the corpus keeps the
/// v10.7.0 port (0001:02:03.4). This is that newer port, with the
/// corpus's `hostdev` network, under the name the device XML uses.
fn later_port(corpus: &Path) -> NetworkMap {
    let (mut net, _) = NetworkDef::load(&corpus.join("networkxml2xmlin/hostdev.xml")).unwrap();
    net.name = "hostdev;plug-hostdev-pci".into();
    let (port, _) = NetworkPortDef::parse_str(
        "<networkport>
  <uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid>
  <owner>
    <name>memtest</name>
    <uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid>
  </owner>
  <mac address='52:54:00:7b:35:93'/>
  <plug type='hostdev-pci' managed='yes'>
    <driver name='vfio'/>
    <address domain='0x0000' bus='0x06' slot='0x12' function='0x2'/>
  </plug>
</networkport>",
        None,
    )
    .unwrap();
    let mut m = NetworkMap::default();
    m.insert(net, Some(port));
    m
}

/// The lines of `xml` from the first line starting `<tag` (indented) to
/// its closing tag, and the element line just before it.
fn block(xml: &str, tag: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = xml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("<{tag} ")))?;
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l.trim() == format!("</{tag}>"))?;
    Some((
        lines[start..=end].join("\n"),
        lines[start - 1].trim().to_owned(),
    ))
}

fn setup(corpus: &Path) -> (DomainDef, QemuCaps, TestNetworkDirs) {
    let (mut live, _) =
        DomainDef::load(&corpus.join("qemuhotplugtestdomains/qemuhotplug-base-live.xml")).unwrap();
    restore_aliases(&mut live);
    let caps =
        QemuCaps::from_libvirt_xml(corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml"))
            .unwrap();
    let nets = TestNetworkDirs {
        net_dir: corpus.join("networkxml2xmlin"),
        port_dir: Some(corpus.join("virnetworkportxml2xmldata")),
    };
    (live, caps, nets)
}

#[test]
fn libvirt_hotplug_cases() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("libvirt_hotplug_cases") else {
        return;
    };
    let (live, caps, nets) = setup(&corpus);
    let base_formatted = live.to_xml();
    for (case, tag) in [
        ("interface-hostdev", "interface"),
        ("interface-network-hostdev", "interface"),
        ("hostdev-pci", "hostdev"),
    ] {
        let dev_path = corpus.join(format!("qemuhotplugtestdevices/qemuhotplug-{case}.xml"));
        let (dev, _) = DeviceDef::load(&dev_path).unwrap();
        let later = later_port(&corpus);
        let source: &dyn NetworkSource = if case == "interface-network-hostdev" {
            &later
        } else {
            &nets
        };
        let plan = plan_attach(
            &live,
            dev.clone(),
            &caps,
            source,
            &[],
            &BuildOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{case}: {e}"));
        let expected = std::fs::read_to_string(corpus.join(format!(
            "qemuhotplugtestdomains/qemuhotplug-base-live+{case}.xml"
        )))
        .unwrap();
        let got = plan.def.to_xml();
        let (want_block, want_before) = block(&expected, tag).unwrap();
        let (got_block, got_before) =
            block(&got, tag).unwrap_or_else(|| panic!("{case}: no <{tag}> in\n{got}"));
        assert_eq!(got_block, want_block, "{case}: device element differs");
        // Same neighbour: the device is formatted where libvirt puts it.
        let name = |l: &str| l.split([' ', '>', '/']).next().unwrap_or("").to_owned();
        assert_eq!(name(&got_before), name(&want_before), "{case}: placement");
        assert_eq!(plan.alias, "hostdev0");
        // A VF has no backend: one device_add, vfio-pci on the chosen slot.
        assert!(plan.netdev.is_none(), "{case}");
        assert_eq!(plan.device["driver"], "vfio-pci", "{case}");
        assert_eq!(plan.device["id"], "hostdev0");
        assert_eq!(plan.device["bus"], "pci.0");
        assert_eq!(plan.device["addr"], "0x2");
        assert_eq!(plan.device["host"], "0000:06:12.2");

        // Detach (by the same XML, and by alias): the base comes back.
        let mut after = plan.def.clone();
        let slot = find_device(&after, &dev).unwrap_or_else(|e| panic!("{case}: {e:?}"));
        assert_eq!(find_alias(&after, "hostdev0"), Some(slot));
        remove_device(&mut after, slot);
        // (The plan names every device, so compare without aliases.)
        let strip = |x: &str| {
            x.lines()
                .filter(|l| !l.trim_start().starts_with("<alias "))
                .collect::<Vec<_>>()
                .join("\n")
                .replace(
                    "<controller type='pci' index='0' model='pci-root'>\n    </controller>",
                    "<controller type='pci' index='0' model='pci-root'/>",
                )
        };
        assert_eq!(
            strip(&after.to_xml()),
            strip(&base_formatted),
            "{case}: detach"
        );
    }
}

/// A second device gets the next alias and the next free slot; with no
/// free hot-pluggable slot libvirt's error comes back.
#[test]
fn next_alias_and_slot_then_no_slots() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("next_alias_and_slot_then_no_slots")
    else {
        return;
    };
    let (mut live, caps, nets) = setup(&corpus);
    let text = |bus: u8| {
        format!(
            "<hostdev mode='subsystem' type='pci' managed='yes'><source>\
             <address domain='0x0000' bus='0x{bus:02x}' slot='0x00' function='0x0'/></source></hostdev>"
        )
    };
    let mut slots = Vec::new();
    for n in 0..40u8 {
        let (dev, _) = DeviceDef::parse_str(&text(n + 1), None).unwrap();
        match plan_attach(&live, dev, &caps, &nets, &[], &BuildOptions::default()) {
            Ok(p) => {
                assert_eq!(p.alias, format!("hostdev{n}"));
                slots.push(p.device["addr"].as_str().unwrap().to_owned());
                live = p.def;
            }
            Err(e) => {
                assert_eq!(e, HotplugError::NoSlots);
                assert_eq!(e.to_string(), "internal error: No more available PCI slots");
                break;
            }
        }
    }
    // Slots 1, 3 and 4 are taken; 2, 5..=31 are handed out in order.
    assert_eq!(slots.first().map(String::as_str), Some("0x2"));
    assert_eq!(slots.get(1).map(String::as_str), Some("0x5"));
    assert_eq!(slots.len(), 28, "{slots:?}");
}
