//! Schema check against libvirt's RELAX NG grammars, as `virt-xml-validate`
//! and `virsh define --validate` do (issue 19 item 3).
//!
//! libvirt's own `.rng` files (v10.7.0, LGPL-2.1-or-later, see
//! `crates/conf/schemas/SOURCE.md`) are embedded and compiled once per
//! process by the `relax-ng` crate (a pure-Rust derivative validator that
//! handles `interleave`, the XSD datatypes and the `pattern` facets libvirt
//! uses). The document checked is the tree the project's own safe loader
//! built (size and depth bounded, DTDs refused): no second parser ever sees
//! the user's text.
//!
//! Problems are [`Diagnostic`]s with `file:line:col`, worded like libxml2's
//! Relax-NG messages (what libvirt prints), with a "did you mean" hint
//! when a name is a typo of one the schema allows there (`vocab`).

mod vocab;

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;

use relax_ng::{
    Content, DatatypeRegistry, ExpandedName, ResolveError, Schema, SchemaResolver, SchemaSource,
    SchemaSyntax, ValidationErrorKind,
};
use roxmltree::{Node, NodeId};

use crate::diag::{Diagnostic, Pos};
use crate::error::ConfError;
use crate::parse::{parse_document, LineIndex};

/// libvirt's error-class text for a schema failure
/// (`VIR_ERR_XML_INVALID_SCHEMA`).
pub const PREFIX: &str = "XML document failed to validate against schema: ";

/// At most this many schema errors per document; the rest are counted.
pub const MAX_ERRORS: usize = 100;

/// The embedded schema files, by the name `include href` uses.
const FILES: &[(&str, &str)] = &[
    ("domain.rng", include_str!("../../schemas/domain.rng")),
    (
        "domainoverrides.rng",
        include_str!("../../schemas/domainoverrides.rng"),
    ),
    (
        "domaincommon.rng",
        include_str!("../../schemas/domaincommon.rng"),
    ),
    (
        "basictypes.rng",
        include_str!("../../schemas/basictypes.rng"),
    ),
    (
        "storagecommon.rng",
        include_str!("../../schemas/storagecommon.rng"),
    ),
    (
        "networkcommon.rng",
        include_str!("../../schemas/networkcommon.rng"),
    ),
    ("cputypes.rng", include_str!("../../schemas/cputypes.rng")),
    (
        "nwfilter_params.rng",
        include_str!("../../schemas/nwfilter_params.rng"),
    ),
    (
        "privatedata.rng",
        include_str!("../../schemas/privatedata.rng"),
    ),
    ("network.rng", include_str!("../../schemas/network.rng")),
    (
        "networkport.rng",
        include_str!("../../schemas/networkport.rng"),
    ),
];

/// The libvirt version the embedded schemas come from.
pub const LIBVIRT_VERSION: &str = "10.7.0";

/// Which grammar a document is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    Domain,
    Network,
    NetworkPort,
    /// An `attach-device` `<interface>`: domaincommon's `interface`.
    Interface,
    /// An `attach-device` `<hostdev>`: domaincommon's `hostdev`.
    Hostdev,
}

impl SchemaKind {
    pub const ALL: [SchemaKind; 5] = [
        SchemaKind::Domain,
        SchemaKind::Network,
        SchemaKind::NetworkPort,
        SchemaKind::Interface,
        SchemaKind::Hostdev,
    ];

    /// The grammar for a root element, as `virt-xml-validate` picks it.
    pub fn for_root(name: &str) -> Option<SchemaKind> {
        Self::ALL.into_iter().find(|k| k.root() == name)
    }

    /// The root element this grammar starts with.
    pub fn root(self) -> &'static str {
        match self {
            SchemaKind::Domain => "domain",
            SchemaKind::Network => "network",
            SchemaKind::NetworkPort => "networkport",
            SchemaKind::Interface => "interface",
            SchemaKind::Hostdev => "hostdev",
        }
    }

    /// The schema file named in messages.
    pub fn file(self) -> &'static str {
        match self {
            SchemaKind::Domain | SchemaKind::Interface | SchemaKind::Hostdev => "domain.rng",
            SchemaKind::Network => "network.rng",
            SchemaKind::NetworkPort => "networkport.rng",
        }
    }

    fn source(self) -> SchemaSource {
        let text = match self {
            SchemaKind::Domain | SchemaKind::Network | SchemaKind::NetworkPort => {
                embedded(self.file()).unwrap_or_default().to_string()
            }
            // A device document starts at domaincommon's definition of
            // that device (all of domain.rng's grammar, another start).
            SchemaKind::Interface | SchemaKind::Hostdev => format!(
                "<grammar xmlns=\"http://relaxng.org/ns/structure/1.0\" \
                 datatypeLibrary=\"http://www.w3.org/2001/XMLSchema-datatypes\">\
                 <start><ref name=\"{}\"/></start>\
                 <include href=\"domainoverrides.rng\"/></grammar>",
                self.root()
            ),
        };
        SchemaSource::new(text, base_uri(self.file()), SchemaSyntax::Xml)
    }
}

fn base_uri(file: &str) -> String {
    format!("embedded:/libvirt/schemas/{file}")
}

fn embedded(file: &str) -> Option<&'static str> {
    FILES.iter().find(|(n, _)| *n == file).map(|(_, t)| *t)
}

/// `include`s resolve to the embedded files only: nothing is read from
/// disk or network.
struct Embedded;

impl SchemaResolver for Embedded {
    fn resolve(&self, href: &str, _base_uri: &str) -> Result<SchemaSource, ResolveError> {
        let text = embedded(href)
            .ok_or_else(|| ResolveError::new(format!("no embedded schema {href}")))?;
        Ok(SchemaSource::new(text, base_uri(href), SchemaSyntax::Xml))
    }
}

/// The compiled grammar, once per process and kind.
fn compiled(kind: SchemaKind) -> Result<&'static Schema, String> {
    static CELLS: [OnceLock<Result<Schema, String>>; 5] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let i = SchemaKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    CELLS[i]
        .get_or_init(|| Schema::compile(&kind.source(), &Embedded).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// Check `text` against the grammar its root element selects (domain,
/// network, networkport, interface, hostdev). A document that does not
/// load (not XML, too large, DTD) is the loader's error.
pub fn check_str(text: &str, file: Option<&Path>) -> Result<Vec<Diagnostic>, ConfError> {
    let doc = parse_document(text)?;
    let root = doc.root_element();
    let name = root.tag_name().name();
    let kind = match (root.tag_name().namespace(), SchemaKind::for_root(name)) {
        (None, Some(k)) => k,
        _ => {
            let lines = LineIndex::new(text);
            let d = Diagnostic::error(
                "schema-root",
                format!(
                    "{PREFIX}no schema for root element <{name}> (libvirt's schemas start with \
                     <domain>, <network> or <networkport>; devices are <interface> or <hostdev>)"
                ),
            )
            .at(lines.pos(text, root.range().start))
            .with_file(file.map(Path::to_path_buf));
            return Ok(vec![d]);
        }
    };
    Ok(check_node(root, text, kind, file))
}

/// Check `text` against one grammar, whatever its root (`define
/// --validate`: a `<network>` given to `define` fails on its root).
pub fn check_str_as(
    text: &str,
    kind: SchemaKind,
    file: Option<&Path>,
) -> Result<Vec<Diagnostic>, ConfError> {
    let doc = parse_document(text)?;
    Ok(check_node(doc.root_element(), text, kind, file))
}

/// The schema check of an already loaded tree (`text` is the text it was
/// parsed from, for positions).
pub fn check_node(
    root: Node,
    text: &str,
    kind: SchemaKind,
    file: Option<&Path>,
) -> Vec<Diagnostic> {
    let label = |d: Diagnostic| d.with_file(file.map(Path::to_path_buf));
    let internal = |e: String| {
        label(Diagnostic::error(
            "schema-internal",
            format!(
                "internal error: libvirt's {} (v{LIBVIRT_VERSION}) cannot be used: {e}",
                kind.file()
            ),
        ))
    };
    let schema = match compiled(kind) {
        Ok(s) => s,
        Err(e) => return vec![internal(e)],
    };
    let errors = match schema.validate(&DatatypeRegistry::new(), &Elem(root)) {
        Ok(e) => e,
        Err(e) => return vec![internal(e.to_string())],
    };
    if errors.is_empty() {
        return Vec::new();
    }
    let lines = LineIndex::new(text);
    let doc = root.document();
    let mut out = Vec::new();
    // Elements whose attributes or text were already reported: their
    // "missing content" follows from that and is not said twice.
    let mut reported: HashSet<NodeId> = HashSet::new();
    let mut more = 0usize;
    for e in &errors {
        let node = e.location().and_then(|id| doc.get_node(*id));
        match e.kind() {
            ValidationErrorKind::UnexpectedAttribute(_)
            | ValidationErrorKind::InvalidAttributeValue(..)
            | ValidationErrorKind::UnexpectedText => {
                if let Some(n) = node {
                    reported.insert(n.id());
                }
            }
            ValidationErrorKind::MissingContent
                if node.is_some_and(|n| reported.contains(&n.id())) =>
            {
                continue
            }
            _ => {}
        }
        // Past the cap only counted: describing one looks at its element's
        // attributes, which must not make many errors quadratic.
        if out.len() >= MAX_ERRORS {
            more += 1;
            continue;
        }
        let (d, pos) = describe(kind, e, node, &lines, text);
        out.push(label(d.at(pos.unwrap_or_default())));
    }
    if more > 0 {
        out.push(label(Diagnostic::error(
            "schema-more",
            format!("{PREFIX}{more} more error(s) not shown"),
        )));
    }
    out
}

/// One validation error as a diagnostic, with where it is: the element's
/// start, or the attribute's for an attribute error.
fn describe(
    kind: SchemaKind,
    e: &relax_ng::ValidationError<NodeId>,
    node: Option<Node>,
    lines: &LineIndex,
    text: &str,
) -> (Diagnostic, Option<Pos>) {
    let element = e.path().last().map(|n| n.local.as_str()).unwrap_or("");
    let node_pos = node.map(|n| lines.pos(text, n.range().start));
    let attr_pos = |name: &ExpandedName| {
        node.and_then(|n| attribute_pos(n, name, lines, text))
            .or(node_pos)
    };
    let hint = |d: Diagnostic, h: Option<String>| match h {
        Some(h) => d.with_hint(h),
        None => d,
    };
    match e.kind() {
        ValidationErrorKind::UnexpectedElement(name) => {
            let d = Diagnostic::error(
                "schema-element",
                format!("{PREFIX}Did not expect element {} there", shown(name)),
            );
            (
                hint(d, vocab::child_hint(kind, element, &name.local)),
                node_pos,
            )
        }
        ValidationErrorKind::UnexpectedAttribute(name) => {
            let d = Diagnostic::error(
                "schema-attribute",
                format!(
                    "{PREFIX}Invalid attribute {} for element {element}",
                    shown(name)
                ),
            );
            let h = vocab::attribute_hint(kind, element, &name.local);
            (hint(d, h), attr_pos(name))
        }
        ValidationErrorKind::InvalidAttributeValue(name, value) => {
            let d = Diagnostic::error(
                "schema-value",
                format!(
                    "{PREFIX}Element {element} failed to validate attributes: \
                     {}='{value}' is not allowed",
                    shown(name)
                ),
            );
            let h = vocab::value_hint(kind, element, &name.local, value);
            (hint(d, h), attr_pos(name))
        }
        ValidationErrorKind::MissingContent => {
            let missing = node
                .map(|n| vocab::missing(kind, element, n))
                .unwrap_or_default();
            let list = |names: &std::collections::BTreeSet<String>, open: &str, close: &str| {
                let v: Vec<String> = names.iter().map(|n| format!("{open}{n}{close}")).collect();
                v.join(", ")
            };
            if let Some(first) = missing.children.iter().next() {
                // libxml2's words for a required child that is not there.
                let d = Diagnostic::error(
                    "schema-content",
                    format!("{PREFIX}Expecting an element {first}, got nothing"),
                )
                .with_hint(format!(
                    "<{element}> needs {}",
                    list(&missing.children, "<", ">")
                ));
                return (d, node_pos);
            }
            if !missing.attributes.is_empty() {
                let d = Diagnostic::error(
                    "schema-attribute",
                    format!("{PREFIX}Element {element} failed to validate attributes"),
                )
                .with_hint(format!(
                    "<{element}> needs the attribute(s) {}",
                    list(&missing.attributes, "", "")
                ));
                return (d, node_pos);
            }
            let d = Diagnostic::error(
                "schema-content",
                format!("{PREFIX}Element {element} failed to validate content"),
            )
            .with_hint(format!(
                "<{element}> lacks an element or attribute the schema requires here (or has a \
                 value or combination it does not allow)"
            ));
            (d, node_pos)
        }
        ValidationErrorKind::UnexpectedText => {
            // The text (a value the datatype refuses, or text where only
            // elements may be), cut short: it is quoted, not reproduced.
            let text = node
                .and_then(|n| {
                    n.children()
                        .filter_map(|c| c.text().filter(|_| c.is_text()))
                        .map(str::trim)
                        .find(|t| !t.is_empty())
                })
                .unwrap_or_default();
            let mut shown: String = text.chars().take(40).collect();
            if shown.len() < text.len() {
                shown.push_str("...");
            }
            let d = Diagnostic::error(
                "schema-text",
                format!("{PREFIX}Element {element} failed to validate content: text '{shown}' is not allowed there"),
            );
            (d, node_pos)
        }
    }
}

/// A name as libxml2 prints it: the local name (a namespaced one with its
/// namespace in braces, so a wrong namespace is visible).
fn shown(name: &ExpandedName) -> String {
    match &name.namespace {
        Some(ns) => format!("{{{ns}}}{}", name.local),
        None => name.local.clone(),
    }
}

/// Where attribute `name` of `node` starts.
fn attribute_pos(node: Node, name: &ExpandedName, lines: &LineIndex, text: &str) -> Option<Pos> {
    node.attributes()
        .inspect(|_| crate::work::attr_read())
        .find(|a| a.name() == name.local && a.namespace() == name.namespace.as_deref())
        .map(|a| lines.pos(text, a.range().start))
}

/// The validator's view of a loaded element.
#[derive(Clone, Copy)]
struct Elem<'a, 'i>(Node<'a, 'i>);

impl relax_ng::Element for Elem<'_, '_> {
    type Location = NodeId;

    fn name(&self) -> ExpandedName {
        let t = self.0.tag_name();
        ExpandedName::new(t.namespace(), t.name())
    }

    fn attributes(&self) -> impl Iterator<Item = (ExpandedName, String)> {
        // roxmltree keeps xmlns declarations apart from attributes.
        self.0.attributes().map(|a| {
            (
                ExpandedName::new(a.namespace(), a.name()),
                a.value().to_string(),
            )
        })
    }

    fn children(&self) -> impl Iterator<Item = Content<Self>> {
        let mut out: Vec<Content<Self>> = Vec::new();
        for c in self.0.children() {
            if c.is_element() {
                out.push(Content::Element(Elem(c)));
            } else if c.is_text() {
                let t = c.text().unwrap_or_default();
                if t.is_empty() {
                    continue;
                }
                // Text split by a comment is one text for RELAX NG.
                match out.last_mut() {
                    Some(Content::Text(prev)) => prev.push_str(t),
                    _ => out.push(Content::Text(t.to_string())),
                }
            }
        }
        out.into_iter()
    }

    fn location(&self) -> Option<NodeId> {
        Some(self.0.id())
    }

    fn namespace_bindings(&self) -> impl Iterator<Item = (String, String)> {
        self.0.namespaces().map(|n| {
            (
                n.name().unwrap_or_default().to_string(),
                n.uri().to_string(),
            )
        })
    }
}

#[cfg(test)]
mod tests;
