//! Canonical XML output, like libvirt's formatter (`virsh dumpxml
//! --inactive`): libvirt's element and attribute order, `'` quoting,
//! two-space indentation, libvirt's escaping, units normalised to KiB.
//! Elements kept verbatim are emitted at libvirt's position for their name.

mod devices;
mod domain;
mod interface;
mod network;

use crate::model::{
    Address, DeviceInfo, PciAddress, RawAttr, RawElement, RawNode, Teaming, VirtualPort, Vlan,
};

/// Escape like libvirt's `virBufferEscapeString`, except for the
/// whitespace a parser would not give back: a CR anywhere (parsers turn
/// it into a newline), and tab/newline in attribute values (normalised to
/// spaces). libvirt writes those raw, so its output changes when read
/// again; teamvirt's output reads back to itself.
pub(crate) fn escape(s: &str) -> String {
    escape_in(s, false)
}

fn escape_in(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

/// Attribute list in output order.
#[derive(Default)]
pub(crate) struct Attrs(String);

impl Attrs {
    pub(crate) fn new() -> Self {
        Attrs(String::new())
    }
    pub(crate) fn add(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.0
            .push_str(&format!(" {name}='{}'", escape_in(value.as_ref(), true)));
        self
    }
    pub(crate) fn opt(self, name: &str, value: Option<impl AsRef<str>>) -> Self {
        match value {
            Some(v) => self.add(name, v),
            None => self,
        }
    }
    pub(crate) fn num(self, name: &str, value: Option<impl std::fmt::Display>) -> Self {
        self.opt(name, value.map(|v| v.to_string()))
    }
    pub(crate) fn yes_no(self, name: &str, value: Option<bool>) -> Self {
        self.opt(name, value.map(|v| if v { "yes" } else { "no" }))
    }
    pub(crate) fn on_off(self, name: &str, value: Option<bool>) -> Self {
        self.opt(name, value.map(|v| if v { "on" } else { "off" }))
    }
    pub(crate) fn raw(mut self, attrs: &[RawAttr]) -> Self {
        for a in attrs {
            self = self.add(&a.name, &a.value);
        }
        self
    }
}

/// Indenting writer.
#[derive(Default)]
pub(crate) struct XmlWriter {
    pub(crate) out: String,
    indent: usize,
}

/// Deepest indentation written, in levels: libxml2 (which formats the XML
/// libvirt keeps verbatim) stops indenting at 60 columns (`MAX_INDENT`), and
/// so output stays linear in the input however deep kept XML nests.
const MAX_INDENT_LEVELS: usize = 30;

impl XmlWriter {
    fn line(&mut self, s: &str) {
        for _ in 0..self.indent.min(MAX_INDENT_LEVELS) {
            self.out.push_str("  ");
        }
        self.out.push_str(s);
        self.out.push('\n');
    }

    pub(crate) fn empty(&mut self, name: &str, attrs: Attrs) {
        self.line(&format!("<{name}{}/>", attrs.0));
    }

    pub(crate) fn text(&mut self, name: &str, attrs: Attrs, text: &str) {
        self.line(&format!("<{name}{}>{}</{name}>", attrs.0, escape(text)));
    }

    /// An element with children; self-closing when `body` writes nothing
    /// (libvirt's child-buffer pattern).
    pub(crate) fn elem(&mut self, name: &str, attrs: Attrs, body: impl FnOnce(&mut XmlWriter)) {
        let mut child = XmlWriter {
            out: String::new(),
            indent: self.indent + 1,
        };
        body(&mut child);
        if child.out.is_empty() {
            self.empty(name, attrs);
        } else {
            self.line(&format!("<{name}{}>", attrs.0));
            self.out.push_str(&child.out);
            self.line(&format!("</{name}>"));
        }
    }

    /// An element always written with an open and a close tag.
    pub(crate) fn block(&mut self, name: &str, attrs: Attrs, body: impl FnOnce(&mut XmlWriter)) {
        self.line(&format!("<{name}{}>", attrs.0));
        self.indent += 1;
        body(self);
        self.indent -= 1;
        self.line(&format!("</{name}>"));
    }

    /// A kept-verbatim element.
    pub(crate) fn raw(&mut self, e: &RawElement) {
        let mut attrs = Attrs::new();
        for (p, uri) in &e.namespaces {
            let n = if p.is_empty() {
                "xmlns".to_string()
            } else {
                format!("xmlns:{p}")
            };
            attrs = attrs.add(&n, uri);
        }
        let attrs = attrs.raw(&e.attrs);
        let has_elems = e.children.iter().any(|c| matches!(c, RawNode::Element(_)));
        if !has_elems {
            let t = e.text();
            if t.is_empty() {
                self.empty(&e.name, attrs);
            } else {
                self.text(&e.name, attrs, &t);
            }
            return;
        }
        self.block(&e.name, attrs, |w| {
            for c in &e.children {
                match c {
                    RawNode::Element(ce) => w.raw(ce),
                    RawNode::Text(t) => w.line(&escape(t.trim())),
                }
            }
        });
    }

    pub(crate) fn raws<'a>(&mut self, items: impl IntoIterator<Item = &'a RawElement>) {
        for e in items {
            self.raw(e);
        }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// Emit `extra` elements named `name`.
pub(crate) fn raws_named(w: &mut XmlWriter, extra: &[RawElement], name: &str) {
    w.raws(extra.iter().filter(|e| e.name == name));
}

/// Emit `extra` elements whose name is not in `order`.
pub(crate) fn raws_unordered(w: &mut XmlWriter, extra: &[RawElement], order: &[&str]) {
    w.raws(extra.iter().filter(|e| !order.contains(&e.name.as_str())));
}

/// `domain='0x0000' bus='0x00' slot='0x00' function='0x0'`.
pub(crate) fn pci_attrs(a: Attrs, p: &PciAddress) -> Attrs {
    a.add("domain", format!("0x{:04x}", p.domain))
        .add("bus", format!("0x{:02x}", p.bus))
        .add("slot", format!("0x{:02x}", p.slot))
        .add("function", format!("0x{:x}", p.function))
}

/// A guest address (`virDomainDeviceInfoFormat` address part).
/// `<source><address .../></source>` of a PCI hostdev, shared by
/// `<hostdev>` and `<interface type='hostdev'>` (which adds `type='pci'`).
pub(crate) fn hostdev_pci_source(
    w: &mut XmlWriter,
    addr: &PciAddress,
    with_type: bool,
    extra_attrs: &[RawAttr],
) {
    w.block("source", Attrs::new().raw(extra_attrs), |w| {
        let at = if with_type {
            Attrs::new().add("type", "pci")
        } else {
            Attrs::new()
        };
        w.empty("address", pci_attrs(at, addr));
    });
}

pub(crate) fn address(w: &mut XmlWriter, a: &Address) {
    match a {
        Address::Pci(p) => {
            let mut at = Attrs::new().add("type", "pci");
            if !p.is_empty() {
                at = pci_attrs(at, p);
            }
            w.empty("address", at.on_off("multifunction", p.multifunction));
        }
        Address::Drive(d) => w.empty(
            "address",
            Attrs::new()
                .add("type", "drive")
                .num("controller", Some(d.controller))
                .num("bus", Some(d.bus))
                .num("target", Some(d.target))
                .num("unit", Some(d.unit)),
        ),
        Address::Ccw(c) => w.empty(
            "address",
            Attrs::new()
                .add("type", "ccw")
                .add("cssid", format!("0x{:x}", c.cssid))
                .add("ssid", format!("0x{:x}", c.ssid))
                .add("devno", format!("0x{:04x}", c.devno)),
        ),
        Address::Usb(u) => w.empty(
            "address",
            Attrs::new()
                .add("type", "usb")
                .num("bus", Some(u.bus))
                .opt("port", u.port.as_deref()),
        ),
        Address::VirtioSerial(v) => w.empty(
            "address",
            Attrs::new()
                .add("type", "virtio-serial")
                .num("controller", Some(v.controller))
                .num("bus", Some(v.bus))
                .num("port", Some(v.port)),
        ),
        Address::Unassigned { .. } => w.empty("address", Attrs::new().add("type", "unassigned")),
        Address::Other(o) => {
            let at = Attrs::new().add("type", &o.type_).raw(&o.attrs);
            w.elem("address", at, |w| w.raws(&o.extra));
        }
    }
}

/// `<boot/>`, `<alias/>`, `<rom/>`, `<acpi/>`, `<address/>`.
pub(crate) fn device_info(w: &mut XmlWriter, info: &DeviceInfo) {
    if let Some(b) = &info.boot {
        w.empty(
            "boot",
            Attrs::new()
                .num("order", Some(b.order))
                .opt("loadparm", b.loadparm.as_deref()),
        );
    }
    if let Some(a) = &info.alias {
        w.empty("alias", Attrs::new().add("name", &a.name));
    }
    if let Some(r) = &info.rom {
        if r.enabled.is_some() || r.bar.is_some() || r.file.is_some() {
            w.empty(
                "rom",
                Attrs::new()
                    .yes_no("enabled", r.enabled)
                    .on_off("bar", r.bar)
                    .opt("file", r.file.as_deref()),
            );
        }
    }
    if let Some(i) = info.acpi_index.filter(|&i| i != 0) {
        w.empty("acpi", Attrs::new().num("index", Some(i)));
    }
    if let Some(a) = &info.address {
        address(w, a);
    }
}

pub(crate) fn teaming(w: &mut XmlWriter, t: &Teaming) {
    w.empty(
        "teaming",
        Attrs::new()
            .add("type", t.type_.as_str())
            .opt("persistent", t.persistent.as_deref()),
    );
}

pub(crate) fn vlan(w: &mut XmlWriter, v: &Vlan) {
    w.block(
        "vlan",
        Attrs::new().yes_no("trunk", v.trunk.filter(|&t| t)),
        |w| {
            for t in &v.tags {
                w.empty(
                    "tag",
                    Attrs::new()
                        .num("id", Some(t.id))
                        .opt("nativeMode", t.native_mode.as_deref()),
                );
            }
        },
    );
}

pub(crate) fn virtualport(w: &mut XmlWriter, v: &VirtualPort) {
    w.elem(
        "virtualport",
        Attrs::new().opt("type", v.type_.as_deref()),
        |w| {
            if let Some(p) = &v.parameters {
                let at = Attrs::new()
                    .opt("managerid", p.managerid.as_deref())
                    .opt("typeid", p.typeid.as_deref())
                    .opt("typeidversion", p.typeidversion.as_deref())
                    .opt("instanceid", p.instanceid.as_deref())
                    .opt("interfaceid", p.interfaceid.as_deref())
                    .opt("profileid", p.profileid.as_deref())
                    .raw(&p.extra_attrs);
                if !at.0.is_empty() {
                    w.empty("parameters", at);
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&apos;&quot;");
        assert_eq!(escape("a\r\n\tb"), "a&#13;\n\tb");
        assert_eq!(Attrs::new().add("x", "a\r\n\tb").0, " x='a&#13;&#10;&#9;b'");
        let mut w = XmlWriter::default();
        w.empty("x", Attrs::new().add("a", "it's"));
        assert_eq!(w.finish(), "<x a='it&apos;s'/>\n");
    }

    #[test]
    fn elem_collapses_when_empty() {
        let mut w = XmlWriter::default();
        w.elem("a", Attrs::new(), |_| {});
        w.elem("b", Attrs::new(), |w| w.empty("c", Attrs::new()));
        assert_eq!(w.finish(), "<a/>\n<b>\n  <c/>\n</b>\n");
    }
}
