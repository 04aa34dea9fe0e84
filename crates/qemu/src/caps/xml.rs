//! Reader of libvirt's QEMU capabilities cache format (`<qemuCaps>`).
//!
//! Only what teamvirt uses is read: emulator, version, package, arch,
//! microcode/kernel version, `<flag>`, `<machine>` and `<cpu>` per
//! accelerator. Other elements (`<hostCPU>`, `<hypervCapabilities>`, `<gic>`,
//! `<sev>`, ...) are skipped. Malformed values are errors with
//! `file:line:column`, never panics.

use std::collections::BTreeMap;
use std::path::Path;

use roxmltree::{Document, Node, ParsingOptions};

use super::{
    version_string, Accel, AccelCaps, CapsError, CapsSource, CpuModel, MachineType, QemuCaps,
};

/// Real caps files are ~0.2-1 MB; refuse anything absurd before parsing.
const MAX_SIZE: u64 = 32 * 1024 * 1024;

pub(super) fn read_file(path: &Path) -> Result<QemuCaps, CapsError> {
    let io = |source| CapsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_SIZE {
        return Err(CapsError::Xml {
            location: path.display().to_string(),
            message: format!(
                "file is {} bytes, more than the {MAX_SIZE} allowed for a caps file",
                meta.len()
            ),
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let text = String::from_utf8(bytes).map_err(|e| CapsError::Xml {
        location: path.display().to_string(),
        message: format!(
            "not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })?;
    parse(&text, path)
}

struct Ctx<'a, 'input> {
    doc: &'a Document<'input>,
    origin: &'a Path,
}

impl Ctx<'_, '_> {
    fn err(&self, node: Node, message: impl Into<String>) -> CapsError {
        let pos = self.doc.text_pos_at(node.range().start);
        CapsError::Xml {
            location: format!("{}:{}:{}", self.origin.display(), pos.row, pos.col),
            message: message.into(),
        }
    }

    fn text<'n>(&self, node: Node<'n, '_>) -> &'n str {
        node.text().unwrap_or("").trim()
    }

    fn number<T: std::str::FromStr>(
        &self,
        node: Node,
        what: &str,
        value: &str,
    ) -> Result<T, CapsError> {
        value.parse().map_err(|_| {
            self.err(
                node,
                format!("invalid {what} '{value}': expected a non-negative integer in range"),
            )
        })
    }

    fn yes_no(&self, node: Node, attr: &str) -> Result<Option<bool>, CapsError> {
        match node.attribute(attr) {
            None => Ok(None),
            Some("yes") => Ok(Some(true)),
            Some("no") => Ok(Some(false)),
            Some(other) => Err(self.err(
                node,
                format!(
                    "invalid {attr}='{other}' on <{}>: expected 'yes' or 'no'",
                    node.tag_name().name()
                ),
            )),
        }
    }

    fn accel(&self, node: Node) -> Result<Accel, CapsError> {
        let name = node.tag_name().name();
        match node.attribute("type") {
            None => Err(self.err(
                node,
                format!("<{name}> without type attribute (expected kvm, tcg or hvf)"),
            )),
            Some(t) => Accel::parse(t).ok_or_else(|| {
                self.err(
                    node,
                    format!(
                        "<{name}> has unknown accelerator type '{t}' (expected kvm, tcg or hvf)"
                    ),
                )
            }),
        }
    }
}

pub(super) fn parse(text: &str, origin: &Path) -> Result<QemuCaps, CapsError> {
    // The limits of domain XML (the parser recurses once per level: a
    // deeply nested file overflowed the stack).
    if let Err(e) = teamvirt_conf::parse::limits::check_document(text) {
        let (location, message) = match e {
            teamvirt_conf::ConfError::Xml {
                message,
                pos: Some(p),
            } => (
                format!("{}:{}:{}", origin.display(), p.line, p.col),
                message,
            ),
            e => (origin.display().to_string(), e.to_string()),
        };
        return Err(CapsError::Xml { location, message });
    }
    let opts = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, opts).map_err(|e| {
        let pos = e.pos();
        CapsError::Xml {
            location: format!("{}:{}:{}", origin.display(), pos.row, pos.col),
            message: e.to_string(),
        }
    })?;
    let cx = Ctx { doc: &doc, origin };
    let root = doc.root_element();
    if root.tag_name().name() != "qemuCaps" {
        return Err(cx.err(
            root,
            format!(
                "root element is <{}>, expected <qemuCaps>",
                root.tag_name().name()
            ),
        ));
    }

    let mut emulator = None;
    let mut version = None;
    let mut package = String::new();
    let mut arch = None;
    let mut microcode_version = None;
    let mut kernel_version = None;
    let mut host_cpu_signature = None;
    let mut flags = std::collections::BTreeSet::new();
    let mut accel: BTreeMap<Accel, AccelCaps> = BTreeMap::new();

    for node in root.children().filter(Node::is_element) {
        match node.tag_name().name() {
            "emulator" => emulator = Some(cx.text(node).to_string()),
            "version" => version = Some(cx.number::<u32>(node, "<version>", cx.text(node))?),
            "package" => package = cx.text(node).to_string(),
            "arch" => arch = Some(cx.text(node).to_string()),
            "microcodeVersion" => {
                microcode_version =
                    Some(cx.number::<u64>(node, "<microcodeVersion>", cx.text(node))?)
            }
            "kernelVersion" => kernel_version = Some(cx.text(node).to_string()),
            "hostCpuSignature" => host_cpu_signature = Some(cx.text(node).to_string()),
            "flag" => match node.attribute("name") {
                Some(name) if !name.is_empty() => {
                    flags.insert(name.to_string());
                }
                _ => return Err(cx.err(node, "<flag> without name attribute")),
            },
            "machine" => {
                let a = cx.accel(node)?;
                let m = machine(&cx, node)?;
                accel.entry(a).or_default().machines.push(m);
            }
            "cpu" => {
                let a = cx.accel(node)?;
                let c = cpu(&cx, node)?;
                accel.entry(a).or_default().cpu_models.push(c);
            }
            _ => {}
        }
    }

    let version = version.ok_or_else(|| cx.err(root, "missing <version> in QEMU capabilities"))?;
    let arch = arch
        .filter(|a| !a.is_empty())
        .ok_or_else(|| cx.err(root, "missing <arch> in QEMU capabilities"))?;
    let emulator = emulator
        .filter(|e| !e.is_empty())
        .ok_or_else(|| cx.err(root, "missing <emulator> in QEMU capabilities"))?;

    Ok(QemuCaps {
        emulator: emulator.into(),
        version,
        version_string: version_string(version),
        package,
        arch,
        microcode_version,
        kernel_version,
        host_cpu_signature,
        flags,
        accel,
        device_props: BTreeMap::new(),
        source: CapsSource::LibvirtXml {
            path: origin.to_path_buf(),
        },
    })
}

fn machine(cx: &Ctx, node: Node) -> Result<MachineType, CapsError> {
    let name = match node.attribute("name") {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => return Err(cx.err(node, "<machine> without name attribute")),
    };
    let max_cpus = match node.attribute("maxCpus") {
        Some(v) => cx.number::<u32>(node, "maxCpus", v)?,
        None => 0,
    };
    let attr = |a: &str| {
        node.attribute(a)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    Ok(MachineType {
        alias: attr("alias"),
        max_cpus,
        hotplug_cpus: cx.yes_no(node, "hotplugCpus")?.unwrap_or(false),
        default: cx.yes_no(node, "default")?.unwrap_or(false),
        default_cpu: attr("defaultCPU"),
        default_ram_id: attr("defaultRAMid"),
        numa_mem_supported: cx.yes_no(node, "numaMemSupported")?.unwrap_or(false),
        deprecated: cx.yes_no(node, "deprecated")?.unwrap_or(false),
        acpi: cx.yes_no(node, "acpi")?,
        name,
    })
}

fn cpu(cx: &Ctx, node: Node) -> Result<CpuModel, CapsError> {
    let name = match node.attribute("name") {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => return Err(cx.err(node, "<cpu> without name attribute")),
    };
    Ok(CpuModel {
        name,
        typename: node.attribute("typename").map(str::to_string),
        usable: cx.yes_no(node, "usable")?,
        deprecated: cx.yes_no(node, "deprecated")?.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<QemuCaps, CapsError> {
        parse(text, Path::new("t.xml"))
    }

    const MINIMAL: &str = "<qemuCaps>\n  <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  <flag name='kvm'/>\n  <flag name='tcg'/>\n  <version>7002000</version>\n  <package>pkg</package>\n  <arch>x86_64</arch>\n  <machine type='tcg' name='pc-q35-7.2' alias='q35' maxCpus='288' defaultCPU='qemu64-x86_64-cpu' defaultRAMid='pc.ram' acpi='yes'/>\n  <machine type='tcg' name='pc-i440fx-7.2' alias='pc' maxCpus='255' default='yes'/>\n  <cpu type='tcg' name='qemu64' typename='qemu64-x86_64-cpu' usable='yes'/>\n  <cpu type='tcg' name='phenom' usable='no'><blocker name='3dnow'/></cpu>\n</qemuCaps>\n";

    #[test]
    fn minimal() {
        let caps = p(MINIMAL).unwrap();
        assert_eq!(caps.version, 7_002_000);
        assert_eq!(caps.version_string, "7.2.0");
        assert_eq!(caps.package, "pkg");
        assert_eq!(caps.accelerators(), vec![Accel::Kvm, Accel::Tcg]);
        assert_eq!(
            caps.canonical_machine("q35", Accel::Tcg),
            Some("pc-q35-7.2")
        );
        let q35 = caps.machine("q35").unwrap();
        assert_eq!(q35.acpi, Some(true));
        assert_eq!(q35.default_ram_id.as_deref(), Some("pc.ram"));
        assert_eq!(
            caps.default_machine(Accel::Tcg).unwrap().name,
            "pc-i440fx-7.2"
        );
        assert_eq!(caps.cpu_models(Accel::Tcg)[1].usable, Some(false));
        assert!(caps.machines(Accel::Kvm).is_empty());
    }

    fn err(text: &str) -> String {
        p(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_have_locations() {
        assert_eq!(
            err("<caps/>"),
            "t.xml:1:1: root element is <caps>, expected <qemuCaps>"
        );
        let bad_version = MINIMAL.replace("7002000", "7.2");
        assert_eq!(
            err(&bad_version),
            "t.xml:5:3: invalid <version> '7.2': expected a non-negative integer in range"
        );
        let huge = MINIMAL.replace("7002000", "99999999999");
        assert!(err(&huge).contains("invalid <version> '99999999999'"));
        let no_type = MINIMAL.replace("type='tcg' name='pc-q35-7.2'", "name='pc-q35-7.2'");
        assert_eq!(
            err(&no_type),
            "t.xml:8:3: <machine> without type attribute (expected kvm, tcg or hvf)"
        );
        let bad_accel = MINIMAL.replace(
            "type='tcg' name='pc-q35-7.2'",
            "type='xen' name='pc-q35-7.2'",
        );
        assert!(err(&bad_accel).contains("unknown accelerator type 'xen'"));
        let bad_bool = MINIMAL.replace("default='yes'", "default='true'");
        assert_eq!(
            err(&bad_bool),
            "t.xml:9:3: invalid default='true' on <machine>: expected 'yes' or 'no'"
        );
        let bad_cpus = MINIMAL.replace("maxCpus='288'", "maxCpus='-1'");
        assert!(err(&bad_cpus).contains("invalid maxCpus '-1'"));
        let no_flag_name = MINIMAL.replace("<flag name='kvm'/>", "<flag/>");
        assert_eq!(
            err(&no_flag_name),
            "t.xml:3:3: <flag> without name attribute"
        );
        let no_version = MINIMAL.replace("<version>7002000</version>", "");
        assert_eq!(
            err(&no_version),
            "t.xml:1:1: missing <version> in QEMU capabilities"
        );
        let no_arch = MINIMAL.replace("<arch>x86_64</arch>", "");
        assert!(err(&no_arch).contains("missing <arch>"));
        assert!(err("<qemuCaps><version>1</version>").starts_with("t.xml:1:"));
        assert!(err("").starts_with("t.xml:1:1:"));
    }

    #[test]
    fn rejects_dtd() {
        let text = "<!DOCTYPE qemuCaps [<!ENTITY x 'y'>]><qemuCaps>&x;</qemuCaps>";
        assert!(p(text).is_err());
    }

    #[test]
    fn unknown_elements_are_skipped() {
        let text = MINIMAL.replace(
            "<arch>",
            "<hypervCapabilities supported='yes'><cap name='relaxed'/></hypervCapabilities><arch>",
        );
        assert!(p(&text).is_ok());
    }

    #[test]
    fn never_panics_on_mutations() {
        // Truncations and byte flips of a valid document must error or
        // parse, never panic.
        for cut in 0..MINIMAL.len() {
            if MINIMAL.is_char_boundary(cut) {
                let _ = p(&MINIMAL[..cut]);
            }
        }
        let bytes = MINIMAL.as_bytes();
        for i in 0..bytes.len() {
            for b in [b'<', b'>', b'\'', b'0', b'x', b' '] {
                let mut v = bytes.to_vec();
                v[i] = b;
                if let Ok(s) = String::from_utf8(v) {
                    let _ = p(&s);
                }
            }
        }
    }
}
