//! Safe loading and parsing of domain, network and network-port XML.
//!
//! Loading refuses files over [`MAX_XML_SIZE`] before reading them, non-UTF-8
//! text, DTDs (so no entity is ever declared or expanded) and malformed XML.
//! Parsing follows libvirt's inactive parse (`virsh define`): the first
//! problem is an error with libvirt's text; elements and attributes outside
//! the model are kept and reported as warnings.

mod common;
mod device;
mod devices;
mod domain;
mod interface;
pub mod limits;
mod network;

use std::io::Read;
use std::path::{Path, PathBuf};

use roxmltree::{Document, Node, ParsingOptions};

use crate::diag::{prefix, Diagnostic, Pos};
use crate::error::{ConfError, MAX_XML_SIZE};
use crate::model::{RawAttr, RawElement, RawNode};

pub use common::is_valid_user_alias;
pub(crate) use common::*;
pub use device::DeviceDef;
pub use domain::{memory_kib, scale_integer};

/// Read a file as XML text: size-capped (checked before and while reading),
/// UTF-8 only.
pub fn read_xml_file(path: &Path) -> Result<String, ConfError> {
    let io = |e: std::io::Error| ConfError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(ConfError::Io {
            path: path.to_path_buf(),
            message: "Is a directory".into(),
        });
    }
    if meta.len() > MAX_XML_SIZE {
        return Err(ConfError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    // Pipes and special files report no size: never read past the cap.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_XML_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_XML_SIZE {
        return Err(ConfError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    bytes_to_text(bytes)
}

/// UTF-8 check with the offset of the first bad byte.
pub fn bytes_to_text(bytes: Vec<u8>) -> Result<String, ConfError> {
    String::from_utf8(bytes).map_err(|e| ConfError::NotUtf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Parse text into a roxmltree document with DTDs refused.
pub(crate) fn parse_document(text: &str) -> Result<Document<'_>, ConfError> {
    parse_document_nested(text, 0)
}

/// [`parse_document`] for a document that will sit `below` levels down in
/// a domain (see [`limits::check_nested`]).
pub(crate) fn parse_document_nested(text: &str, below: usize) -> Result<Document<'_>, ConfError> {
    if text.len() as u64 > MAX_XML_SIZE {
        return Err(ConfError::TooLarge {
            path: PathBuf::from("[inline data]"),
            size: text.len() as u64,
        });
    }
    // Depth and element count first: nothing below may then recurse or
    // allocate without bound.
    limits::check_nested(text, below)?;
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: 1_000_000,
    };
    Document::parse_with_options(text, opts).map_err(|e| {
        let (message, pos) = match e {
            roxmltree::Error::DtdDetected => {
                let at = text.find("<!DOCTYPE").unwrap_or(0);
                (
                    "DTD and entity declarations are not allowed (entities are never expanded)"
                        .to_string(),
                    LineIndex::new(text).pos(text, at),
                )
            }
            roxmltree::Error::UnexpectedEndOfStream => (
                "unexpected end of document".to_string(),
                LineIndex::new(text).pos(text, text.len()),
            ),
            other => {
                let p = other.pos();
                let msg = other.to_string();
                let suffix = format!(" at {p}");
                let msg = msg.strip_suffix(&suffix).map(str::to_string).unwrap_or(msg);
                (msg, Pos::new(p.row, p.col))
            }
        };
        ConfError::Xml {
            message: format!("{}{message}", prefix::XML_ERROR),
            pos: Some(pos),
        }
    })
}

/// Any of the document kinds, chosen by root element.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one value per document: size does not matter
pub enum AnyDef {
    Domain(crate::model::DomainDef),
    Network(crate::model::NetworkDef),
    NetworkPort(crate::model::NetworkPortDef),
    /// A device document, `virsh attach-device` input.
    Device(DeviceDef),
}

impl AnyDef {
    /// Parse domain, network, network-port or device (`attach-device`)
    /// XML, by root element (`<domain>`, `<network>`, `<networkport>`,
    /// `<interface>`, `<hostdev>`).
    pub fn parse_str(
        text: &str,
        file: Option<&Path>,
    ) -> Result<(AnyDef, Vec<Diagnostic>), ConfError> {
        let root = {
            let doc = parse_document(text)?;
            let r = doc.root_element();
            if r.tag_name().namespace().is_none() {
                r.tag_name().name().to_string()
            } else {
                String::new()
            }
        };
        match root.as_str() {
            "network" => crate::model::NetworkDef::parse_str(text, file)
                .map(|(d, w)| (AnyDef::Network(d), w)),
            "networkport" => crate::model::NetworkPortDef::parse_str(text, file)
                .map(|(d, w)| (AnyDef::NetworkPort(d), w)),
            "interface" | "hostdev" => {
                DeviceDef::parse_str(text, file).map(|(d, w)| (AnyDef::Device(d), w))
            }
            // Anything else gets the domain parser's "unexpected root" error.
            _ => {
                crate::model::DomainDef::parse_str(text, file).map(|(d, w)| (AnyDef::Domain(d), w))
            }
        }
    }

    /// Load and parse a file of any of the three kinds.
    pub fn load(path: &Path) -> Result<(AnyDef, Vec<Diagnostic>), ConfError> {
        let text = read_xml_file(path)?;
        Self::parse_str(&text, Some(path))
    }

    /// `domain`, `network`, `networkport`, or the device's element
    /// (`interface`, `hostdev`).
    pub fn kind(&self) -> &'static str {
        match self {
            AnyDef::Domain(_) => "domain",
            AnyDef::Network(_) => "network",
            AnyDef::NetworkPort(_) => "networkport",
            AnyDef::Device(d) => d.element(),
        }
    }

    /// Canonical XML.
    pub fn to_xml(&self) -> String {
        match self {
            AnyDef::Domain(d) => d.to_xml(),
            AnyDef::Network(d) => d.to_xml(),
            AnyDef::NetworkPort(d) => d.to_xml(),
            AnyDef::Device(d) => d.to_xml(),
        }
    }
}

/// Run a parse and label its diagnostics with `file`.
pub(crate) fn with_file<T>(
    file: Option<&Path>,
    f: impl FnOnce() -> Result<(T, Vec<Diagnostic>), ConfError>,
) -> Result<(T, Vec<Diagnostic>), ConfError> {
    let label = |d: &mut Diagnostic| {
        if d.file.is_none() {
            d.file = file.map(Path::to_path_buf);
        }
    };
    match f() {
        Ok((t, mut warnings)) => {
            warnings.iter_mut().for_each(label);
            Ok((t, warnings))
        }
        Err(ConfError::Invalid(mut d)) => {
            label(&mut d);
            Err(ConfError::Invalid(d))
        }
        Err(e) => Err(e),
    }
}

/// Byte offset -> line/column, in time independent of the line's length
/// (a whole document on one line must not make every position cost a scan
/// of it): columns count characters, i.e. bytes minus UTF-8 continuation
/// bytes, with a running count of those kept every [`LineIndex::BLOCK`]
/// bytes.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
    /// `cont[k]`: continuation bytes in `text[..k * BLOCK]`.
    cont: Vec<u32>,
}

impl LineIndex {
    const BLOCK: usize = 256;

    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        crate::work::pos_bytes(text.len());
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut cont = Vec::with_capacity(text.len() / Self::BLOCK + 1);
        let mut n = 0u32;
        cont.push(0);
        for chunk in text.as_bytes().chunks(Self::BLOCK) {
            n += continuations(chunk) as u32;
            cont.push(n);
        }
        LineIndex { starts, cont }
    }

    /// Continuation bytes in `text[..byte]`.
    fn cont_before(&self, text: &str, byte: usize) -> usize {
        let k = byte / Self::BLOCK;
        let base = self.cont.get(k).copied().unwrap_or(0) as usize;
        let from = (k * Self::BLOCK).min(text.len());
        base + continuations(&text.as_bytes()[from..byte])
    }

    pub(crate) fn pos(&self, text: &str, byte: usize) -> Pos {
        let byte = byte.min(text.len());
        let line = self.starts.partition_point(|&s| s <= byte).max(1);
        let start = self.starts[line - 1];
        let chars = (byte - start) - (self.cont_before(text, byte) - self.cont_before(text, start));
        Pos::new(line as u32, chars as u32 + 1)
    }
}

/// UTF-8 continuation bytes in `bytes`: every scan of the document for a
/// position goes through here, and is counted ([`crate::work`]).
fn continuations(bytes: &[u8]) -> usize {
    crate::work::pos_bytes(bytes.len());
    bytes.iter().filter(|&&c| c & 0xC0 == 0x80).count()
}

/// Most warnings kept per document; the rest are counted in one last
/// warning (each one is printed with its source line: thousands of the same
/// warning help nobody and cost output).
pub const MAX_WARNINGS: usize = 100;

/// Parse state: positions, collected warnings.
pub(crate) struct Ctx<'t> {
    text: &'t str,
    lines: LineIndex,
    warnings: Vec<Diagnostic>,
    dropped_warnings: usize,
    /// Elements copied verbatim so far (see [`limits::MAX_KEPT_ELEMENTS`]).
    kept: usize,
    /// The first kept element past the limit, reported when parsing ends
    /// (`raw` itself cannot fail).
    kept_over: Option<Pos>,
}

impl<'t> Ctx<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Ctx {
            text,
            lines: LineIndex::new(text),
            warnings: Vec::new(),
            dropped_warnings: 0,
            kept: 0,
            kept_over: None,
        }
    }

    /// The warnings, or the kept-verbatim limit error.
    pub(crate) fn finish(self) -> Result<Vec<Diagnostic>, ConfError> {
        if let Some(pos) = self.kept_over {
            return Err(self.xml_error(
                "too-much-kept-xml",
                format!(
                    "too much XML that teamvirt does not interpret and would keep verbatim (more than {} elements)",
                    limits::MAX_KEPT_ELEMENTS
                ),
                pos,
            ));
        }
        let mut w = self.warnings;
        if self.dropped_warnings > 0 {
            w.push(Diagnostic::warning(
                "more-warnings",
                format!("{} more warning(s) not shown", self.dropped_warnings),
                "fix the warnings above and check again",
            ));
        }
        Ok(w)
    }

    pub(crate) fn pos_at(&self, byte: usize) -> Pos {
        self.lines.pos(self.text, byte)
    }

    pub(crate) fn node_pos(&self, node: Node) -> Pos {
        self.pos_at(node.range().start)
    }

    pub(crate) fn warn(&mut self, d: Diagnostic) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(d);
        } else {
            self.dropped_warnings += 1;
        }
    }

    /// Copy a subtree verbatim (recursion bounded by [`limits::MAX_DEPTH`]).
    pub(crate) fn raw(&mut self, node: Node) -> RawElement {
        self.kept += 1;
        if self.kept > limits::MAX_KEPT_ELEMENTS && self.kept_over.is_none() {
            self.kept_over = Some(self.node_pos(node));
        }
        let parent_ns: Vec<(Option<&str>, &str)> = node
            .parent_element()
            .map(|p| p.namespaces().map(|n| (n.name(), n.uri())).collect())
            .unwrap_or_default();
        let namespaces = node
            .namespaces()
            .filter(|n| !parent_ns.contains(&(n.name(), n.uri())))
            .map(|n| (n.name().unwrap_or("").to_string(), n.uri().to_string()))
            .collect();
        let attrs: Vec<RawAttr> = node
            .attributes()
            .map(|a| RawAttr {
                name: qualified(node, a.namespace(), a.name()),
                value: a.value().to_string(),
                pos: self.pos_at(a.range().start),
            })
            .collect();
        let mut children = Vec::new();
        for c in node.children() {
            if c.is_element() {
                children.push(RawNode::Element(self.raw(c)));
            } else if c.is_text() {
                let t = c.text().unwrap_or("");
                if !t.trim().is_empty() {
                    children.push(RawNode::Text(t.to_string()));
                }
            }
        }
        RawElement {
            name: qualified(node, node.tag_name().namespace(), node.tag_name().name()),
            namespaces,
            attrs,
            children,
            pos: self.node_pos(node),
        }
    }

    pub(crate) fn error(&self, code: &'static str, message: String, pos: Pos) -> ConfError {
        ConfError::from(Diagnostic::error(code, message).at(pos))
    }

    pub(crate) fn xml_error(
        &self,
        code: &'static str,
        message: impl std::fmt::Display,
        pos: Pos,
    ) -> ConfError {
        self.error(code, format!("{}{message}", prefix::XML_ERROR), pos)
    }
}

fn qualified(node: Node, ns: Option<&str>, local: &str) -> String {
    match ns.and_then(|uri| node.lookup_prefix(uri)) {
        Some(p) if !p.is_empty() => format!("{p}:{local}"),
        _ => local.to_string(),
    }
}

/// An element being parsed: tracks which attributes and children the model
/// consumed so the rest can be kept verbatim (and reported).
pub(crate) struct El<'a, 'i> {
    pub(crate) node: Node<'a, 'i>,
    attrs_used: Vec<bool>,
    kids: Vec<Node<'a, 'i>>,
    kids_used: Vec<bool>,
    /// Names read with [`El::child`] (libvirt's `./name[1]`).
    firsts: Vec<&'a str>,
    pub(crate) pos: Pos,
}

impl<'a, 'i> El<'a, 'i> {
    pub(crate) fn new(node: Node<'a, 'i>, cx: &Ctx) -> Self {
        let kids: Vec<_> = node.children().filter(|c| c.is_element()).collect();
        El {
            node,
            attrs_used: vec![false; node.attributes().len()],
            kids_used: vec![false; kids.len()],
            firsts: Vec::new(),
            kids,
            pos: cx.node_pos(node),
        }
    }

    pub(crate) fn name(&self) -> &'a str {
        self.node.tag_name().name()
    }

    /// Attribute value (libvirt treats an absent attribute and one never
    /// looked at the same; an empty value is returned as-is).
    pub(crate) fn attr(&mut self, name: &str) -> Option<&'a str> {
        let idx = self
            .node
            .attributes()
            .position(|a| a.namespace().is_none() && a.name() == name)?;
        self.attrs_used[idx] = true;
        self.node.attributes().nth(idx).map(|a| a.value())
    }

    pub(crate) fn attr_pos(&self, name: &str, cx: &Ctx) -> Pos {
        self.node
            .attributes()
            .find(|a| a.namespace().is_none() && a.name() == name)
            .map_or(self.pos, |a| cx.pos_at(a.range().start))
    }

    /// First child element named `name` (libvirt's `./name[1]`).
    pub(crate) fn child(&mut self, name: &str, cx: &Ctx) -> Option<El<'a, 'i>> {
        let idx = self
            .kids
            .iter()
            .position(|k| k.tag_name().namespace().is_none() && k.tag_name().name() == name)?;
        self.kids_used[idx] = true;
        self.firsts.push(self.kids[idx].tag_name().name());
        Some(El::new(self.kids[idx], cx))
    }

    /// All child elements named `name`, in document order.
    pub(crate) fn children(&mut self, name: &str, cx: &Ctx) -> Vec<El<'a, 'i>> {
        let mut out = Vec::new();
        for (i, k) in self.kids.iter().enumerate() {
            if k.tag_name().namespace().is_none() && k.tag_name().name() == name {
                self.kids_used[i] = true;
                out.push(El::new(*k, cx));
            }
        }
        out
    }

    /// Children libvirt knows and teamvirt passes through untouched: kept
    /// verbatim, in document order per name, without an unknown-element
    /// warning.
    pub(crate) fn passthrough(&mut self, names: &[&str], cx: &mut Ctx) -> Vec<RawElement> {
        let mut out = Vec::new();
        for name in names {
            for c in self.children(name, cx) {
                out.push(cx.raw(c.node));
            }
        }
        out
    }

    /// Take every not-yet-consumed child element (in order) as raw nodes.
    pub(crate) fn rest_children(&mut self) -> Vec<Node<'a, 'i>> {
        let mut out = Vec::new();
        for (i, k) in self.kids.iter().enumerate() {
            if !self.kids_used[i] {
                self.kids_used[i] = true;
                out.push(*k);
            }
        }
        out
    }

    /// Concatenated text content (XPath `string()`).
    pub(crate) fn text(&self) -> String {
        self.node
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect()
    }

    /// Text of the first child `name`, `None` when absent or empty (like
    /// `virXPathString`).
    pub(crate) fn child_text(&mut self, name: &str, cx: &Ctx) -> Option<(String, Pos)> {
        let c = self.child(name, cx)?;
        let t = c.text();
        (!t.is_empty()).then_some((t, c.pos))
    }

    /// Everything not consumed: kept verbatim, each reported as a warning.
    pub(crate) fn finish(self, cx: &mut Ctx) -> (Vec<RawAttr>, Vec<RawElement>) {
        let ename = self.node.tag_name().name();
        let mut attrs = Vec::new();
        for (i, a) in self.node.attributes().enumerate() {
            if self.attrs_used[i] {
                continue;
            }
            let raw = RawAttr {
                name: qualified(self.node, a.namespace(), a.name()),
                value: a.value().to_string(),
                pos: cx.pos_at(a.range().start),
            };
            cx.warn(
                Diagnostic::warning(
                    "unknown-attribute",
                    format!("attribute '{}' of <{ename}> is not interpreted by teamvirt", raw.name),
                    "it is kept verbatim in the output; check its spelling if it should have an effect",
                )
                .at(raw.pos),
            );
            attrs.push(raw);
        }
        let mut elems = Vec::new();
        for (i, k) in self.kids.iter().enumerate() {
            if self.kids_used[i] {
                continue;
            }
            let name = k.tag_name().name();
            if k.tag_name().namespace().is_none() && self.firsts.contains(&name) {
                // A second <mac>, <driver>, ...: libvirt reads the first and
                // never sees the others, so they are not kept (kept, the
                // next read would take one of them for the first).
                cx.warn(
                    Diagnostic::warning(
                        "duplicate-element",
                        format!("element <{name}> appears more than once in <{ename}>: only the first is read"),
                        format!("remove the other <{name}> elements; libvirt ignores them too"),
                    )
                    .at(cx.node_pos(*k)),
                );
                continue;
            }
            let raw = cx.raw(*k);
            cx.warn(
                Diagnostic::warning(
                    "unknown-element",
                    format!("element <{}> in <{ename}> is not interpreted by teamvirt", raw.name),
                    "it is kept verbatim in the output; a stage that needs it will refuse the device",
                )
                .at(raw.pos),
            );
            elems.push(raw);
        }
        (attrs, elems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward count the index replaces.
    fn naive(text: &str, byte: usize) -> Pos {
        let before = &text[..byte];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |p| p + 1);
        Pos::new(line as u32, before[start..].chars().count() as u32 + 1)
    }

    #[test]
    fn line_index_matches_a_naive_count() {
        // Multibyte characters on both sides of block boundaries, long
        // lines and short ones.
        let mut text = String::new();
        for i in 0..2_000 {
            text.push_str(["a", "é", "€", "𝄞", "\n", "<x/>"][i % 6]);
            if i % 97 == 0 {
                text.push_str(&"ü".repeat(i % 300));
            }
        }
        let idx = LineIndex::new(&text);
        for (b, _) in text.char_indices().chain([(text.len(), ' ')]) {
            assert_eq!(idx.pos(&text, b), naive(&text, b), "byte {b}");
        }
    }
}
