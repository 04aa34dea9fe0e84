//! XML teamvirt does not interpret, kept verbatim so it survives a round trip.

use crate::diag::Pos;

/// An attribute outside the model: qualified name (`prefix:local` when
/// namespaced) and unescaped value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttr {
    pub name: String,
    pub value: String,
    pub pos: Pos,
}

impl RawAttr {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        RawAttr {
            name: name.into(),
            value: value.into(),
            pos: Pos::default(),
        }
    }
}

/// A child node of a raw element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawNode {
    Element(RawElement),
    /// Text content, unescaped. Whitespace-only text between elements is not
    /// kept (the formatter re-indents).
    Text(String),
}

/// An element outside the model, with everything below it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawElement {
    /// Qualified name as written (`qemu:commandline`).
    pub name: String,
    /// Namespace declarations made on this element: (prefix, uri); prefix
    /// `""` is the default namespace.
    pub namespaces: Vec<(String, String)>,
    pub attrs: Vec<RawAttr>,
    pub children: Vec<RawNode>,
    pub pos: Pos,
}

impl RawElement {
    pub fn new(name: impl Into<String>) -> Self {
        RawElement {
            name: name.into(),
            ..Default::default()
        }
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn child_elements(&self) -> impl Iterator<Item = &RawElement> {
        self.children.iter().filter_map(|c| match c {
            RawNode::Element(e) => Some(e),
            RawNode::Text(_) => None,
        })
    }

    /// Concatenated text children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|c| match c {
                RawNode::Text(t) => Some(t.as_str()),
                RawNode::Element(_) => None,
            })
            .collect()
    }
}
