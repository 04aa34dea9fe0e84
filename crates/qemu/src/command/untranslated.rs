//! What the command line builder refuses because it cannot translate it:
//! XML that teamvirt keeps verbatim (see `teamvirt_conf`'s unknown-XML
//! rule) but that would change the QEMU command line libvirt builds. Parts
//! libvirt itself ignores (unknown names, host-side settings) pass: the
//! command line does not depend on them.

use teamvirt_conf::model::{DomainDef, RawElement, DEVICE_ORDER};

use super::ctx::CommandError;

/// Top-level `<domain>` children that change libvirt's QEMU command line.
const DOMAIN_ARGV: &[&str] = &[
    "maxMemory",
    "memoryBacking",
    "numatune",
    "iothreads",
    "iothreadids",
    "defaultiothread",
    "sysinfo",
    "vcpus",
    "pm",
    "keywrap",
    "launchSecurity",
    "genid",
    "throttlegroups",
];

/// Local names of libvirt's QEMU-namespace elements (`<qemu:commandline>`).
const QEMU_NAMESPACE: &[&str] = &["commandline", "capabilities", "override", "deprecation"];

/// `<os>` children that change the command line (firmware, SMBIOS, ...).
const OS_ARGV: &[&str] = &[
    "loader", "nvram", "bios", "smbios", "acpi", "dtb", "firmware",
];

/// `<features>` children that change the command line.
const FEATURES_ARGV: &[&str] = &[
    "hyperv",
    "kvm",
    "xen",
    "pmu",
    "vmport",
    "smm",
    "ioapic",
    "hpt",
    "vmcoreinfo",
    "htm",
    "nested-hv",
    "msrs",
    "ccf-assist",
    "cfpc",
    "sbbc",
    "ibs",
    "tcg",
    "async-teardown",
    "gic",
    "pvspinlock",
    "hap",
    "ras",
    "ps2",
];

fn refuse(what: String, el: &RawElement) -> CommandError {
    CommandError::Unsupported {
        what,
        at: el.pos.is_known().then_some((el.pos.line, el.pos.col)),
    }
}

/// The first element of `def` the builder cannot translate, if any, named
/// with its line.
pub fn check(def: &DomainDef) -> Result<(), CommandError> {
    for el in &def.devices.extra {
        if DEVICE_ORDER.contains(&el.name.as_str()) {
            return Err(refuse(format!("device <{}>", el.name), el));
        }
    }
    for el in &def.extra {
        let local = el.name.split_once(':').map(|(_, l)| l);
        let argv = match local {
            Some(l) => QEMU_NAMESPACE.contains(&l),
            None => DOMAIN_ARGV.contains(&el.name.as_str()),
        };
        if argv {
            return Err(refuse(format!("<{}>", el.name), el));
        }
    }
    if let Some(el) = def
        .os
        .extra
        .iter()
        .find(|e| OS_ARGV.contains(&e.name.as_str()))
    {
        return Err(refuse(format!("<os><{}>", el.name), el));
    }
    if let Some(f) = &def.features {
        if let Some(el) = f
            .extra
            .iter()
            .find(|e| FEATURES_ARGV.contains(&e.name.as_str()))
        {
            return Err(refuse(format!("<features><{}>", el.name), el));
        }
    }
    // Every <clock> child (<timer>) changes -rtc, -global or -machine.
    if let Some(el) = def.clock.as_ref().and_then(|c| c.extra.first()) {
        return Err(refuse(format!("<clock><{}>", el.name), el));
    }
    // <cpu> children (<feature>, <topology>, <numa>, ...) change -cpu/-smp/-numa.
    if let Some(el) = def.cpu.as_ref().and_then(|c| c.extra.first()) {
        return Err(refuse(format!("<cpu><{}>", el.name), el));
    }
    for net in &def.devices.interfaces {
        // <tune><sndbuf> is a -netdev property.
        if let Some(el) = net.extra.iter().find(|e| e.name == "tune") {
            return Err(refuse(format!("<interface><{}>", el.name), el));
        }
    }
    Ok(())
}
