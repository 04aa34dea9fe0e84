//! Bounds on what a document may cost, checked on the raw text before any
//! tree is built: nesting depth and element count.
//!
//! Everything after this scan (roxmltree's tree, the recursive copy of
//! kept-verbatim XML, formatting, `Drop`) may then rely on both bounds, so
//! no input can overflow the stack or make the model explode.
//!
//! - [`MAX_DEPTH`] is libxml2's own limit (`xmlParserMaxDepth`, 256 without
//!   `XML_PARSE_HUGE`, which libvirt does not set): libvirt refuses deeper
//!   documents too. The deepest document of libvirt's test data nests 5
//!   levels.
//! - [`MAX_ELEMENTS`]: libvirt has no such limit (libxml2 has none); the
//!   largest document of libvirt's test data has under 4,000 elements.
//! - [`MAX_KEPT_ELEMENTS`]: elements teamvirt keeps verbatim (unknown or
//!   passed-through XML) are copied into the definition and formatted back;
//!   this caps that copy.
//! - [`MAX_ATTRIBUTES`]: the parser checks each attribute of an element
//!   against all before it (duplicates), which costs the square of their
//!   number: 100,000 attributes on one element took 55 s. Capped, that
//!   check costs at most `MAX_ATTRIBUTES / 2` comparisons per attribute.
//!   libvirt's test data has at most 9 attributes on an element.
//!
//! Other XML teamvirt reads (`--caps` files) goes through the same scan
//! ([`check_document`]): the parser's tokenizer recurses once per level.

use crate::diag::{prefix, Pos};
use crate::error::ConfError;

/// Deepest element nesting accepted (the root element is level 1).
pub const MAX_DEPTH: usize = 256;
/// Most elements accepted in one document.
pub const MAX_ELEMENTS: usize = 100_000;
/// Most elements kept verbatim (counted with everything below them).
pub const MAX_KEPT_ELEMENTS: usize = 20_000;
/// Most namespace declarations (`xmlns`, `xmlns:p`) in one document: the
/// parser copies the namespaces in scope into every element that declares
/// one, so many declarations times many elements would cost their product.
/// libvirt documents use a handful (`qemu:`, metadata namespaces).
pub const MAX_NAMESPACE_DECLS: usize = 64;
/// Most attributes (namespace declarations included) on one element.
pub const MAX_ATTRIBUTES: usize = 256;

/// One linear pass over the text, for any XML document teamvirt reads
/// (definitions through their loader, `--caps` files): the limits of this
/// module, with the line and column of the first element past a limit.
///
/// The scan only needs to be right for documents roxmltree accepts: for
/// those, every `<` outside comments, CDATA, processing instructions,
/// attribute values and the (refused) DOCTYPE starts a tag. On anything
/// malformed it gives up quietly and leaves the error to the parser, which
/// stops at the first problem.
pub fn check_document(text: &str) -> Result<(), ConfError> {
    check_nested(text, 0)
}

/// [`check_document`] for a document that will sit `below` levels down in another
/// (a device document lands inside `<domain><devices>`): its own depth
/// limit is that much smaller, so the whole stays readable.
pub(crate) fn check_nested(text: &str, below: usize) -> Result<(), ConfError> {
    let max_depth = MAX_DEPTH - below;
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut elements = 0usize;
    let mut namespaces = 0usize;
    let mut i = 0usize;
    let find = |from: usize, pat: &[u8]| -> Option<usize> {
        b.get(from..)?
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|p| from + p)
    };
    while let Some(off) = b.get(i..).and_then(|r| r.iter().position(|&c| c == b'<')) {
        let lt = i + off;
        let rest = &b[lt..];
        if rest.starts_with(b"<!--") {
            match find(lt + 4, b"-->") {
                Some(e) => i = e + 3,
                None => return Ok(()),
            }
        } else if rest.starts_with(b"<![CDATA[") {
            match find(lt + 9, b"]]>") {
                Some(e) => i = e + 3,
                None => return Ok(()),
            }
        } else if rest.starts_with(b"<?") {
            match find(lt + 2, b"?>") {
                Some(e) => i = e + 2,
                None => return Ok(()),
            }
        } else if rest.starts_with(b"<!") {
            // A DOCTYPE: the parser refuses it (no DTDs), before any
            // element after it is built.
            return Ok(());
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            match b[lt..].iter().position(|&c| c == b'>') {
                Some(e) => i = lt + e + 1,
                None => return Ok(()),
            }
        } else {
            // A start tag.
            let Some((j, self_closing)) = start_tag(text, lt, &mut namespaces)? else {
                return Ok(());
            };
            elements += 1;
            depth += 1;
            if depth > max_depth {
                return Err(limit_error(
                    text,
                    lt,
                    if below == 0 {
                        format!(
                            "document nesting too deep (more than {MAX_DEPTH} levels, libxml2's limit)"
                        )
                    } else {
                        format!(
                            "document nesting too deep (more than {max_depth} levels: it goes {below} levels down into the domain, where libxml2's limit is {MAX_DEPTH})"
                        )
                    },
                ));
            }
            if elements > MAX_ELEMENTS {
                return Err(limit_error(
                    text,
                    lt,
                    format!("document has too many elements (more than {MAX_ELEMENTS})"),
                ));
            }
            if self_closing {
                depth -= 1;
            }
            i = j + 1;
        }
    }
    Ok(())
}

/// The start tag at `lt`: where its `>` is and whether it closes itself
/// (`None`: it never ends, left to the parser). Quoted attribute values
/// are skipped (they may hold '>' and '/'); attributes and namespace
/// declarations are counted against their limits on the way.
fn start_tag(
    text: &str,
    lt: usize,
    namespaces: &mut usize,
) -> Result<Option<(usize, bool)>, ConfError> {
    let b = text.as_bytes();
    let mut j = lt + 1;
    let mut quote = None;
    let mut attrs = 0usize;
    let mut name_start = j;
    loop {
        let Some(&c) = b.get(j) else { return Ok(None) };
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'>' => return Ok(Some((j, b[j - 1] == b'/'))),
            None if c.is_ascii_whitespace() => {
                name_start = j + 1;
                if is_xmlns(&b[j + 1..]) {
                    *namespaces += 1;
                    if *namespaces > MAX_NAMESPACE_DECLS {
                        return Err(limit_error(
                            text,
                            j + 1,
                            format!(
                                "too many namespace declarations (more than {MAX_NAMESPACE_DECLS})"
                            ),
                        ));
                    }
                }
            }
            // Each attribute has one '=' outside quotes.
            None if c == b'=' => {
                attrs += 1;
                if attrs > MAX_ATTRIBUTES {
                    return Err(limit_error(
                        text,
                        name_start,
                        format!("element has too many attributes (more than {MAX_ATTRIBUTES})"),
                    ));
                }
            }
            None => {}
        }
        j += 1;
    }
}

/// An attribute name `xmlns` or `xmlns:...` starts here.
fn is_xmlns(b: &[u8]) -> bool {
    b.starts_with(b"xmlns")
        && matches!(
            b.get(5),
            Some(b':' | b'=') | Some(b' ' | b'\t' | b'\r' | b'\n')
        )
}

fn limit_error(text: &str, at: usize, msg: String) -> ConfError {
    ConfError::Xml {
        message: format!("{}{msg}", prefix::XML_ERROR),
        pos: Some(pos_of(text, at)),
    }
}

/// Line and column (in characters) of byte `at`.
fn pos_of(text: &str, at: usize) -> Pos {
    let before = &text[..at];
    let line = before.bytes().filter(|&c| c == b'\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |p| p + 1);
    let col = before[start..].chars().count() + 1;
    Pos::new(line as u32, col as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use check_document as check;

    fn nested(n: usize) -> String {
        format!("{}{}", "<a>".repeat(n), "</a>".repeat(n))
    }

    #[test]
    fn depth_limit_is_exact() {
        assert!(check(&nested(MAX_DEPTH)).is_ok());
        let e = check(&nested(MAX_DEPTH + 1)).unwrap_err();
        let ConfError::Xml { message, pos } = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            message,
            "XML error: document nesting too deep (more than 256 levels, libxml2's limit)"
        );
        assert_eq!(pos, Some(Pos::new(1, 3 * MAX_DEPTH as u32 + 1)));
    }

    #[test]
    fn a_nested_document_keeps_room_for_its_parents() {
        assert!(check_nested(&nested(MAX_DEPTH - 2), 2).is_ok());
        let e = check_nested(&nested(MAX_DEPTH - 1), 2).unwrap_err();
        assert!(
            e.to_string().contains(
                "more than 254 levels: it goes 2 levels down into the domain, where libxml2's limit is 256"
            ),
            "{e}"
        );
    }

    #[test]
    fn siblings_and_self_closing_do_not_nest() {
        let flat = format!("<r>{}</r>", "<a/><b x='/'></b>".repeat(1000));
        assert!(check(&flat).is_ok());
    }

    #[test]
    fn markup_inside_values_comments_cdata_is_not_a_tag() {
        let inner = "<x a='<y>' b=\"/>\"><!-- <z><z><z> --><![CDATA[<q><q>]]><?pi <p>?></x>";
        let doc = format!(
            "{}{inner}{}",
            "<a>".repeat(MAX_DEPTH - 1),
            "</a>".repeat(MAX_DEPTH - 1)
        );
        assert!(check(&doc).is_ok());
    }

    #[test]
    fn position_on_later_line() {
        let doc = format!("<r>\n  é{}", nested(MAX_DEPTH));
        let ConfError::Xml { pos, .. } = check(&doc).unwrap_err() else {
            panic!()
        };
        // Root is level 1: the 256th <a> is the 257th level, at column 4 +
        // 3 * 255 (one character for é).
        assert_eq!(pos, Some(Pos::new(2, 4 + 3 * 255)));
    }

    #[test]
    fn namespace_limit() {
        let decl = |i: usize| format!(" xmlns:p{i}='urn:{i}'");
        let ok: String = (0..MAX_NAMESPACE_DECLS).map(decl).collect();
        assert!(check(&format!("<r{ok}/>")).is_ok());
        // Counted over the whole document, default namespaces included;
        // an attribute value that looks like one is not.
        let doc = format!("<r{ok}><a a=' xmlns=1'/><b\n xmlns='urn:x'/></r>");
        let e = check(&doc).unwrap_err();
        assert!(
            e.to_string().contains("too many namespace declarations"),
            "{e}"
        );
        let ConfError::Xml { pos, .. } = e else {
            panic!()
        };
        assert_eq!(pos, Some(Pos::new(2, 2)));
    }

    #[test]
    fn element_limit() {
        let ok = format!("<r>{}</r>", "<a/>".repeat(MAX_ELEMENTS - 1));
        assert!(check(&ok).is_ok());
        let bad = format!("<r>{}</r>", "<a/>".repeat(MAX_ELEMENTS));
        let e = check(&bad).unwrap_err();
        assert!(e.to_string().contains("too many elements"), "{e}");
    }
}
