//! `<domain>` top level (libvirt `virDomainDefParseXML`, inactive).

use std::path::Path;

use super::{
    devices, finish, opt_on_off, opt_str, opt_u32, opt_yes_no, parse_document, parse_uint, uuid,
    Ctx, El,
};
use crate::diag::{prefix, Diagnostic};
use crate::error::ConfError;
use crate::model::*;

type R<T> = Result<T, ConfError>;

const VIRT_TYPES: &[&str] = &[
    "none",
    "qemu",
    "kqemu",
    "kvm",
    "xen",
    "lxc",
    "uml",
    "openvz",
    "test",
    "vmware",
    "hyperv",
    "vbox",
    "phyp",
    "parallels",
    "bhyve",
    "vz",
    "hvf",
];

impl DomainDef {
    /// Parse domain XML text like `virsh define` does (inactive parse).
    /// `file` only labels diagnostics. Returns the model and the warnings
    /// found while parsing (unknown elements/attributes, ignored `<teaming/>`).
    pub fn parse_str(
        text: &str,
        file: Option<&Path>,
    ) -> Result<(DomainDef, Vec<Diagnostic>), ConfError> {
        super::with_file(file, || {
            let doc = parse_document(text)?;
            let mut cx = Ctx::new(text);
            let def = parse_domain(doc.root_element(), &mut cx)?;
            Ok((def, cx.finish()?))
        })
    }

    /// Load and parse a domain XML file (size cap, UTF-8, no DTD).
    pub fn load(path: &Path) -> Result<(DomainDef, Vec<Diagnostic>), ConfError> {
        let text = super::read_xml_file(path)?;
        Self::parse_str(&text, Some(path))
    }
}

pub(crate) fn expect_root(el: &El, cx: &Ctx, name: &str) -> R<()> {
    if el.node.tag_name().namespace().is_some() || el.name() != name {
        return Err(cx.xml_error(
            "unexpected-root",
            format!(
                "unexpected root element <{}>, expecting <{name}>",
                el.name()
            ),
            el.pos,
        ));
    }
    Ok(())
}

fn parse_domain(node: roxmltree::Node, cx: &mut Ctx) -> R<DomainDef> {
    let mut el = El::new(node, cx);
    expect_root(&el, cx, "domain")?;
    let mut def = DomainDef {
        pos: el.pos,
        ..Default::default()
    };
    def.type_ = match el.attr("type") {
        None => return Err(super::missing_attr(&el, cx, "type")),
        Some(t) if VIRT_TYPES.contains(&t) => t.to_string(),
        Some(t) => return Err(super::invalid_enum(&el, cx, "type", t)),
    };
    // Live-only: an inactive parse ignores it.
    el.attr("id");
    def.namespaces = node
        .namespaces()
        .filter(|n| n.name().is_some())
        .map(|n| (n.name().unwrap_or("").to_string(), n.uri().to_string()))
        .collect();

    match el.child_text("name", cx) {
        Some((name, pos)) => {
            def.name = name;
            def.name_pos = pos;
        }
        None => return Err(cx.error("missing-name", "missing name information".into(), el.pos)),
    }
    if let Some((text, pos)) = el.child_text("uuid", cx) {
        def.uuid = Some(uuid(&text, pos, cx)?);
    }
    def.title = el.child_text("title", cx).map(|t| t.0);
    def.description = el.child_text("description", cx).map(|t| t.0);

    let total = match el.child("memory", cx) {
        Some(m) => memory(m, cx, "./memory[1]", true)?,
        None => None,
    };
    def.memory = match total {
        Some(m) if m.kib > 0 => m,
        _ => {
            return Err(cx.xml_error(
                "missing-memory",
                "Memory size must be specified via <memory> or in the <numa> configuration",
                el.pos,
            ))
        }
    };
    if let Some(m) = el.child("currentMemory", cx) {
        def.current_memory = memory(m, cx, "./currentMemory[1]", false)?;
    }
    def.vcpu = match el.child("vcpu", cx) {
        Some(v) => vcpu(v, cx)?,
        None => Vcpu {
            count: 1,
            ..Default::default()
        },
    };
    if let Some(os) = el.child("os", cx) {
        def.os = os_parse(os, cx)?;
    } else {
        return Err(cx.error(
            "missing-os-type",
            "unknown OS type: no OS type".into(),
            el.pos,
        ));
    }
    if let Some(f) = el.child("features", cx) {
        def.features = Some(features(f, cx));
    }
    if let Some(c) = el.child("cpu", cx) {
        def.cpu = Some(cpu(c, cx)?);
    }
    if let Some(mut c) = el.child("clock", cx) {
        let offset = opt_str(&mut c, "offset").unwrap_or_else(|| "utc".into());
        let pos = c.pos;
        let (extra_attrs, extra) = finish(c, cx);
        def.clock = Some(Clock {
            offset,
            extra_attrs,
            extra,
            pos,
        });
    }
    def.on_poweroff = lifecycle(&mut el, cx, "on_poweroff");
    def.on_reboot = lifecycle(&mut el, cx, "on_reboot");
    def.on_crash = lifecycle(&mut el, cx, "on_crash");
    if let Some(d) = el.child("devices", cx) {
        def.devices = devices::parse_devices(d, cx)?;
    }
    let (extra_attrs, extra) = finish(el, cx);
    def.extra_attrs = extra_attrs;
    def.extra = extra;
    Ok(def)
}

fn lifecycle(el: &mut El, cx: &Ctx, name: &str) -> Option<Lifecycle> {
    el.child_text(name, cx)
        .map(|(action, pos)| Lifecycle { action, pos })
}

/// `virScaleInteger`: multiply by the unit's scale, refusing overflow past
/// `limit`. Unit names are case-insensitive like libvirt's.
pub fn scale_integer(
    value: u64,
    unit: Option<&str>,
    default_scale: u64,
    limit: u64,
) -> Result<u64, String> {
    let suffix = unit.unwrap_or("");
    let scale = if suffix.is_empty() {
        default_scale
    } else if ["b", "byte", "bytes"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(suffix))
    {
        1
    } else {
        let rest = &suffix[suffix.chars().next().map_or(0, char::len_utf8)..];
        let base: u64 = if rest.is_empty() || rest.eq_ignore_ascii_case("iB") {
            1024
        } else if rest.eq_ignore_ascii_case("b") {
            1000
        } else {
            return Err(format!("{}unknown suffix '{suffix}'", prefix::INVALID_ARG));
        };
        let power = match suffix.chars().next().map(|c| c.to_ascii_lowercase()) {
            Some('k') => 1,
            Some('m') => 2,
            Some('g') => 3,
            Some('t') => 4,
            Some('p') => 5,
            Some('e') => 6,
            _ => return Err(format!("{}unknown suffix '{suffix}'", prefix::INVALID_ARG)),
        };
        base.pow(power)
    };
    if value != 0 && value > limit / scale {
        return Err(format!(
            "numerical overflow: value too large: {value}{suffix}"
        ));
    }
    Ok(value * scale)
}

/// Memory size in KiB from an element's text and `unit` attribute
/// (`virDomainParseMemory`: bytes rounded up to whole KiB).
pub fn memory_kib(text: &str, unit: Option<&str>) -> Result<Option<u64>, String> {
    memory_kib_at(text, unit, "./memory[1]")
}

fn memory_kib_at(text: &str, unit: Option<&str>, xpath: &str) -> Result<Option<u64>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let Some(value) = parse_uint(text, 10) else {
        return Err(format!(
            "{}could not parse element {xpath}",
            prefix::XML_ERROR
        ));
    };
    let max = i64::MAX as u64;
    let bytes = scale_integer(value, unit, 1024, max)?;
    let kib = bytes.div_ceil(1024);
    if kib >= max.div_ceil(1024) {
        return Err("numerical overflow: size value too large".into());
    }
    Ok(Some(kib))
}

fn memory(mut el: El, cx: &mut Ctx, xpath: &str, dump_core_ok: bool) -> R<Option<Memory>> {
    let pos = el.pos;
    let unit = el.attr("unit");
    let dump_core = if dump_core_ok {
        opt_on_off(&mut el, cx, "dumpCore")?
    } else {
        None
    };
    let kib =
        memory_kib_at(&el.text(), unit, xpath).map_err(|m| cx.error("invalid-memory", m, pos))?;
    finish(el, cx);
    Ok(kib.map(|kib| Memory {
        kib,
        dump_core,
        pos,
    }))
}

fn vcpu(mut el: El, cx: &mut Ctx) -> R<Vcpu> {
    let pos = el.pos;
    let text = el.text();
    let count = if text.is_empty() {
        1
    } else {
        parse_uint(&text, 10)
            .filter(|&n| n <= u32::MAX as u64)
            .ok_or_else(|| {
                cx.xml_error(
                    "invalid-vcpu",
                    "maximum vcpus count must be an integer",
                    pos,
                )
            })? as u32
    };
    let placement = match el.attr("placement") {
        None => None,
        Some(p @ ("static" | "auto")) => Some(p.to_string()),
        Some(p) => {
            return Err(cx.error(
                "invalid-vcpu-placement",
                format!(
                    "{}Unsupported CPU placement mode '{p}'",
                    prefix::CONFIG_UNSUPPORTED
                ),
                pos,
            ))
        }
    };
    let cpuset = opt_str(&mut el, "cpuset");
    let current = match el.attr("current") {
        None => None,
        Some(c) => Some(
            parse_uint(c, 10)
                .filter(|&n| n <= u32::MAX as u64)
                .ok_or_else(|| {
                    cx.xml_error(
                        "invalid-vcpu",
                        "current vcpus count must be an integer",
                        pos,
                    )
                })? as u32,
        ),
    };
    if count == 0 {
        return Err(cx.error(
            "invalid-vcpu",
            format!(
                "{}Domain requires at least 1 vCPU",
                prefix::CONFIG_UNSUPPORTED
            ),
            pos,
        ));
    }
    finish(el, cx);
    Ok(Vcpu {
        count,
        placement,
        cpuset,
        current,
        pos,
    })
}

const BOOT_DEVS: &[&str] = &["fd", "cdrom", "hd", "network"];

fn os_parse(mut el: El, cx: &mut Ctx) -> R<Os> {
    let mut os = Os {
        pos: el.pos,
        ..Default::default()
    };
    match el.child("type", cx) {
        Some(mut t) => {
            os.type_ = OsType {
                value: t.text().trim().to_string(),
                arch: opt_str(&mut t, "arch"),
                machine: opt_str(&mut t, "machine"),
                pos: t.pos,
            };
            if os.type_.value.is_empty() {
                return Err(cx.error(
                    "missing-os-type",
                    "unknown OS type: no OS type".into(),
                    t.pos,
                ));
            }
            finish(t, cx);
        }
        None => {
            return Err(cx.error(
                "missing-os-type",
                "unknown OS type: no OS type".into(),
                el.pos,
            ))
        }
    }
    if let Some(l) = el.child("loader", cx) {
        os.loader = Some(cx.raw(l.node));
    }
    if let Some(n) = el.child("nvram", cx) {
        os.nvram = Some(cx.raw(n.node));
    }
    os.kernel = el.child_text("kernel", cx).map(|t| t.0);
    os.initrd = el.child_text("initrd", cx).map(|t| t.0);
    os.cmdline = el.child_text("cmdline", cx).map(|t| t.0);
    os.dtb = el.child_text("dtb", cx).map(|t| t.0);
    for mut b in el.children("boot", cx) {
        let dev = super::req_str(&mut b, cx, "dev")?;
        if !BOOT_DEVS.contains(&dev.as_str()) {
            return Err(cx.error(
                "invalid-boot-dev",
                format!("{}unknown boot device '{dev}'", prefix::INTERNAL_ERROR),
                b.pos,
            ));
        }
        os.boot.push(BootDev { dev, pos: b.pos });
        finish(b, cx);
    }
    if let Some(mut m) = el.child("bootmenu", cx) {
        let enable = opt_yes_no(&mut m, cx, "enable")?.unwrap_or(false);
        let timeout = opt_u32(&mut m, cx, "timeout", 10)?;
        os.bootmenu = Some(BootMenu {
            enable,
            timeout,
            pos: m.pos,
        });
        finish(m, cx);
    }
    let (extra_attrs, extra) = finish(el, cx);
    os.extra_attrs = extra_attrs;
    os.extra = extra;
    Ok(os)
}

fn features(mut el: El, cx: &mut Ctx) -> Features {
    let mut f = Features {
        pos: el.pos,
        ..Default::default()
    };
    // Typed only when written as a plain flag; any attribute or child keeps
    // the whole feature verbatim.
    for node in el.rest_children() {
        let plain = node.tag_name().namespace().is_none()
            && node.attributes().len() == 0
            && !node.children().any(|c| c.is_element());
        match (node.tag_name().name(), plain) {
            ("acpi", true) => f.acpi = true,
            ("apic", true) => f.apic = true,
            ("pae", true) => f.pae = true,
            _ => {
                let raw = cx.raw(node);
                if !crate::model::FEATURE_ORDER.contains(&raw.name.as_str()) {
                    cx.warn(
                        Diagnostic::warning(
                            "unknown-element",
                            format!(
                                "element <{}> in <features> is not interpreted by teamvirt",
                                raw.name
                            ),
                            "it is kept verbatim in the output; check its spelling",
                        )
                        .at(raw.pos),
                    );
                }
                f.extra.push(raw);
            }
        }
    }
    finish(el, cx);
    f
}

fn cpu(mut el: El, cx: &mut Ctx) -> R<Cpu> {
    let mut c = Cpu {
        pos: el.pos,
        mode: opt_str(&mut el, "mode"),
        match_: opt_str(&mut el, "match"),
        check: opt_str(&mut el, "check"),
        migratable: opt_on_off(&mut el, cx, "migratable")?,
        ..Default::default()
    };
    if let Some(mut m) = el.child("model", cx) {
        c.model = Some(CpuModel {
            name: m.text().trim().to_string(),
            fallback: opt_str(&mut m, "fallback"),
            vendor_id: opt_str(&mut m, "vendor_id"),
            pos: m.pos,
        });
        finish(m, cx);
    }
    // topology, feature, numa, cache: kept verbatim without complaint (the
    // QEMU stage owns CPU modelling).
    c.extra = el.rest_children().into_iter().map(|n| cx.raw(n)).collect();
    let (extra_attrs, _) = finish(el, cx);
    c.extra_attrs = extra_attrs;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        let kib = |v, u| memory_kib(&format!("{v}"), u).unwrap().unwrap();
        assert_eq!(kib(1, Some("KiB")), 1);
        assert_eq!(kib(1, None), 1);
        assert_eq!(kib(1, Some("k")), 1);
        assert_eq!(kib(1, Some("K")), 1);
        assert_eq!(kib(1000, Some("b")), 1);
        assert_eq!(kib(1025, Some("bytes")), 2);
        assert_eq!(kib(1, Some("KB")), 1); // 1000 bytes rounds up
        assert_eq!(kib(2, Some("KB")), 2); // 2000 bytes -> 1.95 KiB -> 2
        assert_eq!(kib(256, Some("MiB")), 262144);
        assert_eq!(kib(256, Some("M")), 262144);
        assert_eq!(kib(1, Some("MB")), 977); // 10^6 / 1024 = 976.56
        assert_eq!(kib(2, Some("GiB")), 2097152);
        assert_eq!(kib(2, Some("G")), 2097152);
        assert_eq!(kib(1, Some("GB")), 976563);
        assert_eq!(kib(1, Some("TiB")), 1 << 30);
        assert_eq!(kib(1, Some("T")), 1 << 30);
        assert_eq!(kib(1, Some("TB")), 976562500);
        assert_eq!(
            memory_kib("1", Some("xb")).unwrap_err(),
            "invalid argument: unknown suffix 'xb'"
        );
        assert_eq!(
            memory_kib("1", Some("KiBB")).unwrap_err(),
            "invalid argument: unknown suffix 'KiBB'"
        );
        assert_eq!(
            memory_kib("99999999", Some("TiB")).unwrap_err(),
            "numerical overflow: value too large: 99999999TiB"
        );
        assert_eq!(
            memory_kib("abc", None).unwrap_err(),
            "XML error: could not parse element ./memory[1]"
        );
        assert_eq!(
            memory_kib("-1", None).unwrap_err(),
            "XML error: could not parse element ./memory[1]"
        );
        assert_eq!(memory_kib("", None).unwrap(), None);
    }
}
