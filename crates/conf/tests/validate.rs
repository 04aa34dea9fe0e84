//! libvirt's generic teaming/alias checks (exact texts) and teamvirt's own
//! teaming warnings.

use teamvirt_conf::validate::{validate_domain, NoDriver};
use teamvirt_conf::{ConfError, Diagnostic, DomainDef};

fn doc(devices: &str) -> String {
    format!(
        "<domain type='qemu'>\n<name>t</name>\n<memory>1024</memory>\n<os><type arch='x86_64' machine='q35'>hvm</type></os>\n<devices>\n{devices}\n</devices>\n</domain>\n"
    )
}

fn parse(devices: &str) -> Result<(DomainDef, Vec<Diagnostic>), ConfError> {
    DomainDef::parse_str(&doc(devices), None)
}

fn diags(devices: &str) -> Vec<Diagnostic> {
    let (def, mut w) = parse(devices).unwrap();
    w.extend(validate_domain(&def, &NoDriver));
    w
}

fn first_error(devices: &str) -> Option<String> {
    diags(devices)
        .into_iter()
        .find(|d| d.is_error())
        .map(|d| d.message)
}

fn codes(devices: &str) -> Vec<&'static str> {
    diags(devices).into_iter().map(|d| d.code).collect()
}

fn parse_error(devices: &str) -> Diagnostic {
    parse(devices).unwrap_err().to_diagnostic(None)
}

const STANDBY: &str = "<interface type='user'><mac address='00:11:22:33:44:55'/><model type='virtio'/><teaming type='persistent'/><alias name='ua-backup0'/></interface>";

fn vf(fun: u8, mac: &str, persistent: &str) -> String {
    format!(
        "<interface type='hostdev' managed='yes'><mac address='{mac}'/><source><address type='pci' domain='0x0000' bus='0x03' slot='0x07' function='0x{fun}'/></source><teaming type='transient' persistent='{persistent}'/></interface>"
    )
}

#[test]
fn valid_pair_is_clean() {
    let d = diags(&format!(
        "{STANDBY}{}",
        vf(1, "00:11:22:33:44:55", "ua-backup0")
    ));
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn unknown_teaming_type_texts() {
    let e = parse_error("<interface type='user'><teaming type='none'/></interface>");
    assert_eq!(
        e.message,
        "unsupported configuration: unknown teaming type 'none'"
    );
    assert_eq!(e.code, "teaming-unknown-type");
    assert_eq!(e.pos.unwrap().line, 6);
    let e = parse_error("<interface type='user'><teaming persistent='ua-x'/></interface>");
    assert_eq!(
        e.message,
        "unsupported configuration: unknown teaming type '(null)'"
    );
    let e = parse_error("<interface type='user'><teaming type='bogus'/></interface>");
    assert_eq!(
        e.message,
        "unsupported configuration: unknown teaming type 'bogus'"
    );
    // Also on plain <hostdev>.
    let e = parse_error(
        "<hostdev mode='subsystem' type='pci'><source><address bus='3' slot='7'/></source><teaming type='none'/></hostdev>",
    );
    assert_eq!(
        e.message,
        "unsupported configuration: unknown teaming type 'none'"
    );
}

#[test]
fn empty_teaming_is_ignored_with_warning() {
    let (def, w) = parse("<interface type='user'><teaming/></interface><interface type='user'><teaming type=''/></interface>").unwrap();
    assert!(def.devices.interfaces.iter().all(|i| i.teaming.is_none()));
    assert_eq!(w.iter().filter(|d| d.code == "teaming-ignored").count(), 2);
    assert!(!def.to_xml().contains("teaming"));
}

#[test]
fn persistent_attribute_rules() {
    assert_eq!(
        first_error(&vf(1, "00:11:22:33:44:55", "").replace(" persistent=''", "")).unwrap(),
        "unsupported configuration: teaming persistent attribute must be set if teaming type is 'transient'"
    );
    assert_eq!(
        first_error("<interface type='user'><model type='virtio'/><teaming type='persistent' persistent='ua-x'/></interface>").unwrap(),
        "unsupported configuration: teaming persistent attribute not allowed if teaming type is 'persistent'"
    );
}

#[test]
fn hostdev_teaming_rules_in_order() {
    let src = "<source><address domain='0x0000' bus='0x03' slot='0x07' function='0x1'/></source>";
    // type != transient comes first, even without persistent and on non-pci.
    assert_eq!(
        first_error(&format!(
            "<hostdev mode='subsystem' type='pci'>{src}<teaming type='persistent'/></hostdev>"
        ))
        .unwrap(),
        "unsupported configuration: teaming hostdev devices must have type='transient'"
    );
    assert_eq!(
        first_error("<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0x5678'/></source><teaming type='persistent'/></hostdev>")
            .unwrap(),
        "unsupported configuration: teaming hostdev devices must have type='transient'"
    );
    assert_eq!(
        first_error(&format!("<hostdev mode='subsystem' type='pci'>{src}<teaming type='transient'/></hostdev>")).unwrap(),
        "unsupported configuration: missing required persistent attribute in hostdev teaming element"
    );
    assert_eq!(
        first_error("<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0x5678'/></source><teaming type='transient' persistent='ua-backup0'/></hostdev>")
            .unwrap(),
        "unsupported configuration: teaming is only supported for pci hostdev devices"
    );
    assert_eq!(
        first_error(&format!("{STANDBY}<hostdev mode='subsystem' type='pci'>{src}<teaming type='transient' persistent='ua-backup0'/></hostdev>")),
        None
    );
}

#[test]
fn user_alias_handling() {
    let (def, _) = parse("<interface type='user'><alias name='backup0'/></interface><interface type='user'><alias name='ua-a.b'/></interface><interface type='user'><alias name='ua-ok_1-x'/></interface>").unwrap();
    let i = &def.devices.interfaces;
    assert_eq!(i[0].info.alias, None);
    assert_eq!(i[0].info.dropped_alias.as_ref().unwrap().name, "backup0");
    assert_eq!(i[1].info.alias, None);
    assert_eq!(i[2].alias_name(), Some("ua-ok_1-x"));
    // Dropped aliases are not formatted, like libvirt.
    let xml = def.to_xml();
    assert!(!xml.contains("backup0") && !xml.contains("ua-a.b") && xml.contains("ua-ok_1-x"));
}

#[test]
fn non_unique_alias() {
    assert_eq!(
        first_error("<interface type='user'><alias name='ua-x'/></interface><hostdev mode='subsystem' type='pci'><source><address bus='3' slot='7'/></source><alias name='ua-x'/></hostdev>")
            .unwrap(),
        "unsupported configuration: non unique alias detected: ua-x"
    );
}

#[test]
fn first_libvirt_error_wins() {
    let d = diags("<interface type='user'><model type='virtio'/><teaming type='persistent' persistent='ua-x'/></interface><hostdev mode='subsystem' type='pci'><source><address bus='3' slot='7'/></source><teaming type='persistent'/></hostdev>");
    let errors: Vec<_> = d.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]
        .message
        .contains("not allowed if teaming type is 'persistent'"));
}

#[test]
fn beyond_dangling_persistent() {
    let c = codes(&vf(1, "00:11:22:33:44:55", "ua-nothere"));
    assert!(c.contains(&"teaming-dangling-persistent"), "{c:?}");
    let d = diags(&vf(1, "00:11:22:33:44:55", "ua-nothere"));
    let w = d
        .iter()
        .find(|d| d.code == "teaming-dangling-persistent")
        .unwrap();
    assert!(!w.is_error() && w.hint.is_some() && w.pos.is_some());
}

#[test]
fn beyond_persistent_not_standby() {
    // Target exists but has no <teaming type='persistent'/>.
    let c = codes(&format!(
        "<interface type='user'><mac address='00:11:22:33:44:55'/><model type='virtio'/><alias name='ua-backup0'/></interface>{}",
        vf(1, "00:11:22:33:44:55", "ua-backup0")
    ));
    assert!(c.contains(&"teaming-persistent-not-standby"), "{c:?}");
    // Target is a hostdev, not an interface.
    let c = codes(&format!(
        "<hostdev mode='subsystem' type='pci'><source><address bus='4' slot='1'/></source><alias name='ua-backup0'/></hostdev>{}",
        vf(1, "00:11:22:33:44:55", "ua-backup0")
    ));
    assert!(c.contains(&"teaming-dangling-persistent"), "{c:?}");
}

#[test]
fn beyond_two_transients_one_standby_is_error() {
    let d = diags(&format!(
        "{STANDBY}{}{}",
        vf(1, "00:11:22:33:44:55", "ua-backup0"),
        vf(2, "00:11:22:33:44:55", "ua-backup0")
    ));
    let e = d
        .iter()
        .find(|d| d.code == "teaming-duplicate-transient")
        .unwrap();
    assert!(e.is_error());
    assert!(e.message.contains("'ua-backup0'"));
}

#[test]
fn beyond_dropped_alias_referenced() {
    let standby = STANDBY.replace("ua-backup0", "backup0");
    let d = diags(&format!(
        "{standby}{}",
        vf(1, "00:11:22:33:44:55", "backup0")
    ));
    let w = d
        .iter()
        .find(|d| d.code == "teaming-alias-dropped")
        .unwrap();
    assert!(w.message.contains("'backup0'"), "{}", w.message);
    assert!(w.hint.as_ref().unwrap().contains("ua-backup0"));
    // Dotted alias: allowed by libvirt's schema, dropped by its parser.
    let standby = STANDBY.replace("ua-backup0", "ua-back.up");
    let c = codes(&format!(
        "{standby}{}",
        vf(1, "00:11:22:33:44:55", "ua-back.up")
    ));
    assert!(c.contains(&"teaming-alias-dropped"), "{c:?}");
}

#[test]
fn beyond_mac_mismatch() {
    let c = codes(&format!(
        "{STANDBY}{}",
        vf(1, "00:11:22:33:44:66", "ua-backup0")
    ));
    assert!(c.contains(&"teaming-mac-mismatch"), "{c:?}");
    let novf =
        vf(1, "00:11:22:33:44:55", "ua-backup0").replace("<mac address='00:11:22:33:44:55'/>", "");
    let c = codes(&format!("{STANDBY}{novf}"));
    assert!(c.contains(&"teaming-mac-unset"), "{c:?}");
}

#[test]
fn beyond_plain_hostdev_mac() {
    let c = codes(&format!(
        "{STANDBY}<hostdev mode='subsystem' type='pci'><source><address bus='3' slot='7' function='1'/></source><teaming type='transient' persistent='ua-backup0'/></hostdev>"
    ));
    assert_eq!(c, vec!["teaming-hostdev-mac"]);
}

#[test]
fn beyond_teaming_on_ignoring_type() {
    let c = codes(
        "<interface type='hostdev'><source><address type='pci' bus='3' slot='7'/></source><model type='virtio'/><teaming type='persistent'/></interface>",
    );
    assert!(c.contains(&"teaming-ignored-type"), "{c:?}");
}

#[test]
fn unknown_xml_is_kept_and_reported() {
    let (def, w) = parse("<interface type='user' frob='1'><model type='virtio'/><sparkle level='9'>x</sparkle></interface><gizmo/>").unwrap();
    let c: Vec<_> = w.iter().map(|d| d.code).collect();
    assert_eq!(c.iter().filter(|c| **c == "unknown-attribute").count(), 1);
    assert_eq!(c.iter().filter(|c| **c == "unknown-element").count(), 2);
    assert!(w.iter().all(|d| d.hint.is_some() && d.pos.is_some()));
    let xml = def.to_xml();
    assert!(xml.contains("<interface type='user' frob='1'>"), "{xml}");
    assert!(xml.contains("<sparkle level='9'>x</sparkle>"), "{xml}");
    assert!(xml.contains("<gizmo/>"), "{xml}");
}

#[test]
fn corpus_error_cases() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("corpus_error_cases") else {
        return;
    };
    let dir = corpus.join("qemuxmlconfdata");
    let f = dir.join("hostdev-pci-duplicate.xml");
    let want =
        std::fs::read_to_string(dir.join("hostdev-pci-duplicate.x86_64-latest.err")).unwrap();
    let e = DomainDef::load(&f).unwrap_err().to_diagnostic(Some(&f));
    assert_eq!(e.message, want.trim_end());
    assert_eq!(e.pos.unwrap().line, 33); // the second <hostdev>
    assert_eq!(e.file.as_deref(), Some(f.as_path()));
}

#[test]
fn corpus_teaming_inputs_validate_cleanly() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("corpus_teaming_inputs_validate_cleanly")
    else {
        return;
    };
    for name in ["net-virtio-teaming", "net-virtio-teaming-network"] {
        let (def, w) =
            DomainDef::load(&corpus.join(format!("qemuxmlconfdata/{name}.xml"))).unwrap();
        let d = validate_domain(&def, &NoDriver);
        assert!(w.is_empty() && d.is_empty(), "{name}: {w:?} {d:?}");
    }
    // The <hostdev> variant: clean apart from the reminder about the VF MAC.
    let (def, _) =
        DomainDef::load(&corpus.join("qemuxmlconfdata/net-virtio-teaming-hostdev.xml")).unwrap();
    let c: Vec<_> = validate_domain(&def, &NoDriver)
        .into_iter()
        .map(|d| d.code)
        .collect();
    assert_eq!(c, vec!["teaming-hostdev-mac", "teaming-hostdev-mac"]);
}

/// The host (source) address and the guest address of a PCI host device,
/// as libvirt treats them: the source address's `type` is ignored by
/// `<hostdev>` but names the subsystem of `<interface type='hostdev'>`;
/// the guest address of either must be 'pci' or 'unassigned'.
#[test]
fn hostdev_source_and_guest_address_types() {
    let src = "domain='0x0000' bus='0x03' slot='0x07' function='0x1'";
    let hostdev = |source_addr: &str, guest: &str| {
        format!("<hostdev mode='subsystem' type='pci' managed='yes'><source>{source_addr}</source>{guest}</hostdev>")
    };
    let iface = |source: &str, guest: &str| {
        format!("<interface type='hostdev'><mac address='00:11:22:33:44:55'/>{source}{guest}</interface>")
    };

    // <hostdev>: the source address needs no type, and any type is ignored.
    for t in ["", "type='pci'", "type='drive'"] {
        let (def, w) = parse(&hostdev(&format!("<address {t} {src}/>"), "")).unwrap();
        assert!(w.is_empty(), "{t}: {w:?}");
        let p = def.devices.hostdevs[0].source.pci.unwrap();
        assert_eq!((p.bus, p.slot, p.function), (3, 7, 1), "{t}");
    }
    // ... and a missing one is libvirt's 0000:00:00.0, with a warning.
    let (def, w) = parse(&hostdev("", "")).unwrap();
    assert_eq!(def.devices.hostdevs[0].source.pci, Some(Default::default()));
    assert_eq!(
        w.iter().map(|d| d.code).collect::<Vec<_>>(),
        ["hostdev-source-no-address"]
    );
    assert!(w[0].hint.is_some());

    // <interface type='hostdev'>: the type is the subsystem.
    let (def, _) = parse(&iface(
        &format!("<source><address type='pci' {src}/></source>"),
        "",
    ))
    .unwrap();
    assert_eq!(
        def.devices.interfaces[0].source_pci().map(|p| p.slot),
        Some(7)
    );
    let e = parse_error(&iface(&format!("<source><address {src}/></source>"), ""));
    assert_eq!(e.message, "XML error: missing source address type");
    assert_eq!(e.pos.map(|p| p.line), Some(6));
    let e = parse_error(&iface("", ""));
    assert_eq!(e.message, "XML error: missing source address type");
    let e = parse_error(&iface("<source/>", ""));
    assert_eq!(e.message, "XML error: missing source address type");
    let e = parse_error(&iface(
        &format!("<source><address type='bogus' {src}/></source>"),
        "",
    ));
    assert_eq!(
        e.message,
        "XML error: unknown host device source address type 'bogus'"
    );
    let e = parse_error(&iface(
        "<source><vendor id='0x1234'/><product id='0xbeef'/></source>",
        "",
    ));
    assert_eq!(
        e.message,
        "unsupported configuration: Interface type hostdev is currently supported on SR-IOV Virtual Functions only"
    );

    // Guest addresses: 'pci' and 'unassigned' only, for both forms.
    let pci_src = format!("<address {src}/>");
    let guest_ok = [
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>",
        "<address type='unassigned'/>",
        "",
    ];
    for g in guest_ok {
        assert_eq!(first_error(&hostdev(&pci_src, g)), None, "{g}");
        let i = iface(&format!("<source><address type='pci' {src}/></source>"), g);
        assert_eq!(first_error(&i), None, "{g}");
    }
    let want = "internal error: PCI host devices must use 'pci' or 'unassigned' address type";
    let drive = "<address type='drive' controller='0' bus='0' target='0' unit='0'/>";
    assert_eq!(
        first_error(&hostdev(&pci_src, drive)).as_deref(),
        Some(want)
    );
    let i = iface(
        &format!("<source><address type='pci' {src}/></source>"),
        drive,
    );
    assert_eq!(first_error(&i).as_deref(), Some(want));
    // libvirt checks the address before teaming.
    let teamed = format!(
        "<hostdev mode='subsystem' type='pci'><source>{pci_src}</source><teaming type='persistent'/>{drive}</hostdev>"
    );
    assert_eq!(first_error(&teamed).as_deref(), Some(want));
}
