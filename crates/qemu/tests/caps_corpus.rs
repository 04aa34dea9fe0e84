//! libvirt's caps cache XML from the conformance corpus.

use teamvirt_qemu::caps::{Accel, CapsSource, QemuCaps};

fn caps_910() -> Option<QemuCaps> {
    let corpus = teamvirt_testinfra::corpus_or_skip("caps_corpus")?;
    let path = corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    Some(QemuCaps::from_libvirt_xml(&path).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn caps_9_1_0_header() {
    let Some(caps) = caps_910() else { return };
    assert_eq!(caps.emulator.to_str(), Some("/usr/bin/qemu-system-x86_64"));
    assert_eq!(caps.version, 9_000_090);
    assert_eq!(caps.version_string, "9.0.90");
    assert_eq!(caps.package, "v9.1.0-rc0-121-g75c7f57403");
    assert_eq!(caps.arch, "x86_64");
    assert_eq!(caps.microcode_version, Some(43_100_246));
    assert!(matches!(caps.source, CapsSource::LibvirtXml { .. }));
    assert!(caps.device_props.is_empty());
}

#[test]
fn caps_9_1_0_flags() {
    let Some(caps) = caps_910() else { return };
    // Every <flag> of the file, counted independently of the parser.
    let corpus = teamvirt_testinfra::corpus_dir().unwrap();
    let text =
        std::fs::read_to_string(corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml")).unwrap();
    let expected = text.matches("<flag name='").count();
    assert_eq!(caps.flags.len(), expected);

    assert!(
        caps.device_json(),
        "device.json+hotplug decides JSON -device"
    );
    assert!(
        !caps.has("device.json"),
        "the retired flag is not in 10.7 caps"
    );
    assert!(caps.netdev_json());
    assert!(caps.object_json());
    assert!(caps.blockdev());
    assert!(caps.has("seccomp-sandbox"));
    assert!(caps.has("vfio-pci"));
    assert!(caps.has("pcie-root-port.hotplug"));
    assert!(!caps.has("virtio-net.failover"), "retired by libvirt >= 9");
    assert!(caps.supports_failover());
    assert_eq!(caps.check_teaming_supported(), Ok(()));
    assert_eq!(caps.accelerators(), vec![Accel::Kvm, Accel::Tcg]);
}

#[test]
fn caps_9_1_0_machines() {
    let Some(caps) = caps_910() else { return };
    for accel in [Accel::Kvm, Accel::Tcg] {
        assert_eq!(caps.machines(accel).len(), 60, "{accel}");
        assert_eq!(caps.canonical_machine("q35", accel), Some("pc-q35-9.1"));
        assert_eq!(caps.canonical_machine("pc", accel), Some("pc-i440fx-9.1"));
        assert_eq!(
            caps.canonical_machine("pc-q35-7.2", accel),
            Some("pc-q35-7.2")
        );
        assert_eq!(caps.canonical_machine("virt", accel), None);
        let def = caps.default_machine(accel).unwrap();
        assert_eq!(def.name, "pc-i440fx-9.1");
        assert_eq!(def.default_ram_id.as_deref(), Some("pc.ram"));
        assert_eq!(def.acpi, Some(true));
        let cpu = caps
            .cpu_model_by_typename(def.default_cpu.as_deref().unwrap(), accel)
            .unwrap();
        assert_eq!(cpu.name, "qemu64");
    }
    let q35 = caps.machine("q35").unwrap();
    assert_eq!(q35.max_cpus, 4096);
    assert!(!q35.deprecated);
    assert!(caps.machine("pc-q35-5.2").unwrap().deprecated);
    assert_eq!(caps.machine("x-remote").unwrap().acpi, Some(false));
    assert_eq!(
        caps.machine("microvm").unwrap().default_ram_id.as_deref(),
        Some("microvm.ram")
    );
    assert!(!caps.cpu_models(Accel::Tcg).is_empty());
}

#[test]
fn historical_v8_1_0_no_caps_refuses_teaming() {
    let Some(corpus) =
        teamvirt_testinfra::corpus_or_skip("historical_v8_1_0_no_caps_refuses_teaming")
    else {
        return;
    };
    let expected = std::fs::read_to_string(
        corpus.join("historical/v8.1.0/qemuxml2argvdata/net-virtio-teaming.err"),
    )
    .unwrap();
    // DO_TEST_PARSE_ERROR_NOCAPS: no flags at all.
    let none = QemuCaps::from_flags("/usr/bin/qemu-system-i386", "i686", Vec::<String>::new());
    assert_eq!(
        none.check_teaming_supported(),
        Err(expected.trim_end().to_string())
    );
    assert!(!none.device_json());
    assert!(!none.blockdev());
    // DO_TEST(..., QEMU_CAPS_VIRTIO_NET_FAILOVER, QEMU_CAPS_DEVICE_VFIO_PCI).
    let with = QemuCaps::from_flags(
        "/usr/bin/qemu-system-i386",
        "i686",
        ["virtio-net.failover", "vfio-pci"],
    );
    assert_eq!(with.check_teaming_supported(), Ok(()));
}

#[test]
fn caps_roundtrip_through_json() {
    let Some(caps) = caps_910() else { return };
    let json = serde_json::to_string(&caps).unwrap();
    let back: QemuCaps = serde_json::from_str(&json).unwrap();
    assert_eq!(back, caps);
}
