//! What a destination checks of its own QEMU before it reserves anything or
//! the source is touched (libvirt's Prepare parses the incoming XML with
//! the destination's capabilities): the machine type the guest runs, that
//! `virtio-net-pci` has `failover` when the domain has teaming pairs, and
//! every `-device` model of the source's command line. A newer QEMU keeps
//! the old versioned machine types, so a domain defined with the versioned
//! type (see [`teamvirt_qemu::defaults::define`]) moves to it; an older one
//! is refused here with libvirt's text.

use teamvirt_conf::DomainDef;
use teamvirt_qemu::caps::probe::PROBED_DEVICES;
use teamvirt_qemu::caps::QemuCaps;

use super::proto::PrepareRequest;
use super::MigrateError;

/// The machine type the domain runs: the live XML's, else `-machine`'s.
pub fn machine_of(req: &PrepareRequest) -> Option<String> {
    if let Ok((def, _)) = DomainDef::parse_str(&req.live_xml, None) {
        if let Some(m) = def.machine() {
            return Some(m.to_owned());
        }
    }
    let mut it = req.argv.iter();
    while let Some(a) = it.next() {
        if a == "-machine" || a == "-M" {
            let v = it.next()?;
            let first = v.split(',').next().unwrap_or_default();
            let name = first.strip_prefix("type=").unwrap_or(first);
            return Some(name.to_owned());
        }
    }
    None
}

/// The `-device` models of `argv` with their ids.
fn device_models(argv: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a != "-device" {
            continue;
        }
        let Some(dev) = it.next() else { break };
        if dev.trim_start().starts_with('{') {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(dev) {
                let get = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
                out.push((get("driver"), get("id")));
            }
            continue;
        }
        let driver = dev.split(',').next().unwrap_or_default().to_owned();
        let id = dev
            .split(',')
            .find_map(|p| p.strip_prefix("id="))
            .unwrap_or("")
            .to_owned();
        out.push((driver, id));
    }
    out
}

/// Refuse a domain this destination's QEMU (`caps`) cannot run.
pub fn check_qemu(req: &PrepareRequest, caps: &QemuCaps) -> Result<(), MigrateError> {
    if let Some(m) = machine_of(req) {
        // `none` (the empty machine) is in every binary; probes leave it out.
        if m != "none" && caps.machine(&m).is_none() {
            return Err(MigrateError::DestMachine {
                emulator: req.emulator.clone(),
                machine: m,
            });
        }
    }
    if !req.pairs.is_empty() {
        caps.check_teaming_supported()
            .map_err(|m| MigrateError::DestQemu(format!("{m} (on the destination)")))?;
    }
    // Only the probed models are known to be present or absent; a binary
    // probed without device data (caps XML) tells nothing.
    if caps.device_props.is_empty() {
        return Ok(());
    }
    for (driver, id) in device_models(&req.argv) {
        if PROBED_DEVICES.contains(&driver.as_str()) && !caps.device_props.contains_key(&driver) {
            return Err(MigrateError::DestQemu(format!(
                "unsupported configuration: the destination's QEMU '{}' has no device model '{driver}' (needed by {})",
                req.emulator,
                if id.is_empty() { "a device".to_owned() } else { format!("'{id}'") }
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::Accel;

    const CAPS: &str = "<qemuCaps>\n  <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  <flag name='tcg'/>\n  <version>7002000</version>\n  <package>pkg</package>\n  <arch>x86_64</arch>\n  <machine type='tcg' name='pc-q35-7.2' alias='q35' maxCpus='288'/>\n  <machine type='tcg' name='pc-i440fx-7.2' alias='pc' maxCpus='255' default='yes'/>\n</qemuCaps>\n";

    fn req(machine: &str, argv: &[&str]) -> PrepareRequest {
        PrepareRequest {
            name: "vm".into(),
            uuid: None,
            emulator: "/usr/bin/qemu-system-x86_64".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            accel: Accel::Tcg,
            source_run_dir: "/src/run/vm".into(),
            source_serial_log: None,
            source_root: "/src".into(),
            pairs: vec![],
            live_xml: format!("<domain type='qemu'><name>vm</name><memory unit='MiB'>64</memory><os><type arch='x86_64' machine='{machine}'>hvm</type></os></domain>"),
            persistent_xml: None,
        }
    }

    #[test]
    fn machine_type_the_destination_lacks_is_refused_with_libvirts_text() {
        let caps = QemuCaps::from_libvirt_xml_str(CAPS, std::path::Path::new("x.xml")).unwrap();
        assert!(check_qemu(&req("pc-q35-7.2", &[]), &caps).is_ok());
        assert!(check_qemu(&req("q35", &[]), &caps).is_ok());
        let e = check_qemu(&req("pc-q35-8.1", &[]), &caps).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support machine type 'pc-q35-8.1'"
        );
        // No live XML: the command line says it.
        let mut r = req("x", &["-machine", "pc-q35-9.0,usb=off"]);
        r.live_xml.clear();
        assert_eq!(machine_of(&r).as_deref(), Some("pc-q35-9.0"));
        assert!(check_qemu(&r, &caps).is_err());
    }

    #[test]
    fn device_models_are_checked_when_the_probe_listed_them() {
        let mut caps = QemuCaps::from_libvirt_xml_str(CAPS, std::path::Path::new("x.xml")).unwrap();
        let r = req(
            "q35",
            &[
                "-device",
                r#"{"driver":"e1000e","id":"hostdev0"}"#,
                "-device",
                "virtio-net-pci,id=net0,failover=on",
                "-device",
                "somethingelse,id=x",
            ],
        );
        // Caps without device data: nothing can be said.
        assert!(check_qemu(&r, &caps).is_ok());
        caps.device_props
            .insert("virtio-net-pci".into(), vec!["failover".into()]);
        let e = check_qemu(&r, &caps).unwrap_err();
        assert_eq!(e.to_string(), "unsupported configuration: the destination's QEMU '/usr/bin/qemu-system-x86_64' has no device model 'e1000e' (needed by 'hostdev0')");
        caps.device_props.insert("e1000e".into(), vec![]);
        assert!(check_qemu(&r, &caps).is_ok());
    }
}
