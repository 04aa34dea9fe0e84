//! What each element may contain by name, read off the embedded grammars,
//! for "did you mean" hints: the child elements and attributes any
//! `<element name="E">` of libvirt's schemas allows (following `ref`s, not
//! entering nested elements) and the `<value>`s each attribute allows.
//! Built only when a hint is needed; a superset of what one position
//! allows is fine for suggesting a name.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use roxmltree::{Document, Node};

use super::SchemaKind;

/// Names allowed inside elements of one name.
#[derive(Debug, Default)]
pub(crate) struct Allowed {
    pub children: BTreeSet<String>,
    pub attributes: BTreeSet<String>,
    pub values: BTreeMap<String, BTreeSet<String>>,
    /// Children and attributes every variant of the element requires.
    pub required: Option<Required>,
}

/// What a pattern cannot match without.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Required {
    pub children: BTreeSet<String>,
    pub attributes: BTreeSet<String>,
}

impl Required {
    fn union(mut self, o: Required) -> Required {
        self.children.extend(o.children);
        self.attributes.extend(o.attributes);
        self
    }

    fn intersect(self, o: &Required) -> Required {
        Required {
            children: self.children.intersection(&o.children).cloned().collect(),
            attributes: self
                .attributes
                .intersection(&o.attributes)
                .cloned()
                .collect(),
        }
    }
}

pub(crate) struct Vocab {
    by_element: HashMap<String, Allowed>,
}

const RNG_NS: &str = "http://relaxng.org/ns/structure/1.0";

/// The vocabulary of one grammar (a domain's `<domain>` and a network's
/// DNS `<domain>` are different elements).
fn vocab(kind: SchemaKind) -> &'static Vocab {
    static V: [OnceLock<Vocab>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let (i, top) = match kind {
        SchemaKind::Domain | SchemaKind::Interface | SchemaKind::Hostdev => (0, "domain.rng"),
        SchemaKind::Network => (1, "network.rng"),
        SchemaKind::NetworkPort => (2, "networkport.rng"),
    };
    V[i].get_or_init(|| build(top))
}

/// Read `top` and what it includes (the embedded files are libvirt's, not
/// user input: parsed with roxmltree's defaults).
fn build(top: &str) -> Vocab {
    let mut names = vec![top];
    let mut docs: Vec<Document> = Vec::new();
    let mut i = 0;
    while let Some(name) = names.get(i).copied() {
        i += 1;
        let Some(doc) = super::embedded(name).and_then(|t| Document::parse(t).ok()) else {
            continue;
        };
        for inc in doc.descendants().filter(|n| is(n, "include")) {
            if let Some((file, _)) = inc
                .attribute("href")
                .and_then(|h| super::FILES.iter().find(|(f, _)| *f == h))
            {
                if !names.contains(file) {
                    names.push(file);
                }
            }
        }
        docs.push(doc);
    }
    let mut defines: HashMap<&str, Vec<Node>> = HashMap::new();
    for d in &docs {
        for n in d.descendants().filter(|n| is(n, "define")) {
            if let Some(name) = n.attribute("name") {
                defines.entry(name).or_default().push(n);
            }
        }
    }
    let mut by_element: HashMap<String, Allowed> = HashMap::new();
    for d in &docs {
        for e in d.descendants().filter(|n| is(n, "element")) {
            let Some(name) = pattern_name(e) else {
                continue;
            };
            let acc = by_element.entry(name).or_default();
            let mut seen = HashSet::new();
            walk(e, &defines, acc, &mut seen);
            let req = required_seq(e, &defines, &mut Vec::new());
            acc.required = Some(match acc.required.take() {
                None => req,
                Some(r) => r.intersect(&req),
            });
        }
    }
    Vocab { by_element }
}

fn is(n: &Node, local: &str) -> bool {
    n.is_element() && n.tag_name().name() == local && n.tag_name().namespace() == Some(RNG_NS)
}

/// The single name of an `element`/`attribute` pattern (`name=` or a
/// `<name>` child); `None` for name classes (`anyName`, `nsName`, choices).
fn pattern_name(n: Node) -> Option<String> {
    if let Some(name) = n.attribute("name") {
        return Some(name.trim().to_string());
    }
    let first = n.children().find(|c| c.is_element())?;
    is(&first, "name").then(|| first.text().unwrap_or_default().trim().to_string())
}

/// Collect what the content of `n` allows, through `ref`s (each define once
/// per element pattern), stopping at nested elements.
fn walk<'a>(
    n: Node<'a, 'a>,
    defines: &HashMap<&'a str, Vec<Node<'a, 'a>>>,
    acc: &mut Allowed,
    seen: &mut HashSet<&'a str>,
) {
    for c in n.children().filter(Node::is_element) {
        if c.tag_name().namespace() != Some(RNG_NS) {
            continue;
        }
        match c.tag_name().name() {
            "element" => {
                if let Some(name) = pattern_name(c) {
                    acc.children.insert(name);
                }
            }
            "attribute" => {
                if let Some(name) = pattern_name(c) {
                    let values: Vec<String> = values_of(c, defines);
                    acc.values.entry(name.clone()).or_default().extend(values);
                    acc.attributes.insert(name);
                }
            }
            "ref" => {
                let Some(r) = c.attribute("name") else {
                    continue;
                };
                if let Some((name, nodes)) = defines.get_key_value(r) {
                    if seen.insert(name) {
                        for d in nodes {
                            walk(*d, defines, acc, seen);
                        }
                    }
                }
            }
            "name" | "anyName" | "nsName" | "except" | "data" | "value" | "text" | "empty"
            | "notAllowed" | "param" | "parentRef" => {}
            _ => walk(c, defines, acc, seen),
        }
    }
}

/// What the patterns under `n` (a group) require.
fn required_seq<'a>(
    n: Node<'a, 'a>,
    defines: &HashMap<&'a str, Vec<Node<'a, 'a>>>,
    refs: &mut Vec<&'a str>,
) -> Required {
    n.children()
        .filter(|c| c.is_element() && c.tag_name().namespace() == Some(RNG_NS))
        .map(|c| required(c, defines, refs))
        .fold(Required::default(), Required::union)
}

/// What pattern `p` requires: a choice what all its branches require,
/// optional parts nothing, a nested element its name.
fn required<'a>(
    p: Node<'a, 'a>,
    defines: &HashMap<&'a str, Vec<Node<'a, 'a>>>,
    refs: &mut Vec<&'a str>,
) -> Required {
    let mut r = Required::default();
    match p.tag_name().name() {
        "element" => {
            if let Some(name) = pattern_name(p) {
                r.children.insert(name);
            }
        }
        "attribute" => {
            if let Some(name) = pattern_name(p) {
                r.attributes.insert(name);
            }
        }
        "group" | "interleave" | "oneOrMore" | "mixed" | "list" | "div" => {
            r = required_seq(p, defines, refs);
        }
        "choice" => {
            let mut branches = p
                .children()
                .filter(|c| c.is_element() && c.tag_name().namespace() == Some(RNG_NS))
                .map(|c| required(c, defines, refs));
            if let Some(first) = branches.next() {
                r = branches.fold(first, |acc, b| acc.intersect(&b));
            }
        }
        "ref" => {
            let Some((name, nodes)) = p.attribute("name").and_then(|n| defines.get_key_value(n))
            else {
                return r;
            };
            if refs.contains(name) {
                return r;
            }
            refs.push(name);
            // Definitions combined by choice require what all of them do.
            let choice = nodes
                .iter()
                .any(|d| d.attribute("combine") == Some("choice"));
            let mut parts = nodes.iter().map(|d| required_seq(*d, defines, refs));
            if let Some(first) = parts.next() {
                r = if choice {
                    parts.fold(first, |acc, b| acc.intersect(&b))
                } else {
                    parts.fold(first, Required::union)
                };
            }
            refs.pop();
        }
        _ => {}
    }
    r
}

/// The literal `<value>`s an attribute pattern allows (through `ref`s to
/// value-only definitions, e.g. `virYesNo`).
fn values_of<'a>(attr: Node<'a, 'a>, defines: &HashMap<&'a str, Vec<Node<'a, 'a>>>) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![attr];
    let mut seen: HashSet<&str> = HashSet::new();
    while let Some(n) = stack.pop() {
        for c in n.descendants().filter(|c| c.is_element()) {
            if is(&c, "value") {
                out.push(c.text().unwrap_or_default().trim().to_string());
            } else if is(&c, "ref") {
                if let Some((name, nodes)) =
                    c.attribute("name").and_then(|r| defines.get_key_value(r))
                {
                    if seen.insert(name) {
                        stack.extend(nodes.iter().copied());
                    }
                }
            }
        }
    }
    out
}

/// Optimal string alignment distance (Levenshtein plus adjacent swaps:
/// `mdoel` is one edit from `model`).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The known name closest to `got`, if close enough to be a typo: one edit
/// for short names, two from five characters on. Ties go to the first in
/// name order.
pub(crate) fn closest<'a>(
    got: &str,
    known: impl IntoIterator<Item = &'a String>,
) -> Option<&'a str> {
    // Names far longer than any libvirt name are no typo of one (and the
    // distance table stays small).
    if got.chars().count() > 64 {
        return None;
    }
    let limit = if got.chars().count() >= 5 { 2 } else { 1 };
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        if k == got {
            return None;
        }
        let d =
            distance(&got.to_ascii_lowercase(), &k.to_ascii_lowercase()).max(usize::from(k != got));
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

fn did_you_mean(name: &str) -> String {
    format!("did you mean '{name}'?")
}

/// Hint for an unexpected child `got` of `parent`.
pub(crate) fn child_hint(kind: SchemaKind, parent: &str, got: &str) -> Option<String> {
    let allowed = vocab(kind).by_element.get(parent)?;
    closest(got, &allowed.children).map(did_you_mean)
}

/// Hint for an attribute `got` not allowed on `element`.
pub(crate) fn attribute_hint(kind: SchemaKind, element: &str, got: &str) -> Option<String> {
    let allowed = vocab(kind).by_element.get(element)?;
    closest(got, &allowed.attributes).map(did_you_mean)
}

/// Hint for a value of `attribute` on `element` the schema refuses: a close
/// allowed value, else the list when it is short.
pub(crate) fn value_hint(
    kind: SchemaKind,
    element: &str,
    attribute: &str,
    got: &str,
) -> Option<String> {
    let values = vocab(kind).by_element.get(element)?.values.get(attribute)?;
    if let Some(v) = closest(got, values) {
        return Some(did_you_mean(v));
    }
    if !values.is_empty() && values.len() <= 12 {
        let list: Vec<&str> = values.iter().map(String::as_str).collect();
        return Some(format!("{attribute} is one of: {}", list.join(", ")));
    }
    None
}

/// What `element` requires that `node` lacks (both empty when unknown).
pub(crate) fn missing(kind: SchemaKind, element: &str, node: Node) -> Required {
    let Some(req) = vocab(kind)
        .by_element
        .get(element)
        .and_then(|a| a.required.as_ref())
    else {
        return Required::default();
    };
    let has_child = |n: &String| {
        node.children()
            .any(|c| c.is_element() && c.tag_name().name() == n)
    };
    let has_attr = |n: &String| node.attributes().any(|a| a.name() == n);
    Required {
        children: req
            .children
            .iter()
            .filter(|n| !has_child(n))
            .cloned()
            .collect(),
        attributes: req
            .attributes
            .iter()
            .filter(|n| !has_attr(n))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
pub(crate) fn allowed(kind: SchemaKind, element: &str) -> Option<&'static Allowed> {
    vocab(kind).by_element.get(element)
}
