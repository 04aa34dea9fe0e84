//! Diagnostic rendering: compiler style for people, JSON for tools.

use std::path::Path;

use serde_json::{json, Value};
use teamvirt_conf::{Diagnostic, Severity};

/// Compiler-style text:
///
/// ```text
/// error: unsupported configuration: unknown teaming type 'none'
///   --> dom.xml:12:7
///    |
/// 12 |       <teaming type='none'/>
///    |       ^
///    = hint: ...
/// ```
///
/// `source` is the document text, for the quoted line.
///
/// Everything that came from the input (message, quoted line, hint) is
/// printed with control characters escaped (`\x1b`, `\r`, bidi overrides
/// as `\u{202e}`), so a document cannot drive the terminal; a long line is
/// cut to a window around the column. The `^` marker stays under the column.
pub fn render(d: &Diagnostic, source: Option<&str>) -> String {
    let mut out = format!("{}: {}\n", d.severity, escape_controls(&d.message));
    if let Some(loc) = d.location() {
        out.push_str(&format!("  --> {}\n", escape_controls(&loc)));
    }
    let line = d.pos.and_then(|p| {
        source
            .and_then(|s| s.split('\n').nth((p.line as usize).saturating_sub(1)))
            .map(|l| (p, l))
    });
    let gutter = d.pos.map_or(1, |p| p.line.to_string().len());
    let pad = " ".repeat(gutter);
    if let Some((p, text)) = line {
        let text = text.strip_suffix('\r').unwrap_or(text);
        let (shown, marker) = quote_line(text, (p.col as usize).saturating_sub(1));
        out.push_str(&format!(
            "{pad} |\n{} | {shown}\n{pad} | {marker}^\n",
            p.line
        ));
    }
    if let Some(h) = &d.hint {
        out.push_str(&format!("{pad} = hint: {}\n", escape_controls(h)));
    }
    out
}

/// Characters of a quoted line shown before / after the column at most.
const BEFORE: usize = 60;
const AFTER: usize = 100;

/// The quoted line (escaped, cut to a window around character `col`) and the
/// marker padding that puts `^` under that character.
fn quote_line(text: &str, col: usize) -> (String, String) {
    let n = text.chars().count();
    let col = col.min(n);
    let start = col.saturating_sub(BEFORE);
    let end = (col + AFTER).min(n);
    let mut shown = String::new();
    let mut marker = String::new();
    if start > 0 {
        shown.push_str("...");
        marker.push_str("   ");
    }
    for (i, c) in text.chars().enumerate().skip(start).take(end - start) {
        let e = escape_char(c);
        if i < col {
            // Tabs are kept so the marker lines up with them.
            match &e {
                None if c == '\t' => marker.push('\t'),
                None => marker.push(' '),
                Some(e) => marker.extend(std::iter::repeat_n(' ', e.len())),
            }
        }
        match e {
            Some(e) => shown.push_str(&e),
            None => shown.push(c),
        }
    }
    if end < n {
        shown.push_str("...");
    }
    (shown, marker)
}

// One escaping for terminals and logs alike (`teamvirt_host::escape`).
use teamvirt_host::escape::escape_char;
pub use teamvirt_host::escape::escape_controls;

/// One diagnostic as JSON.
pub fn diagnostic_json(d: &Diagnostic) -> Value {
    json!({
        "severity": d.severity,
        "code": d.code,
        "message": d.message,
        "file": d.file.as_ref().map(|f| f.display().to_string()),
        "line": d.pos.map(|p| p.line),
        "column": d.pos.map(|p| p.col),
        "hint": d.hint,
    })
}

/// The report of one file.
pub fn file_json(file: &Path, kind: Option<&str>, diags: &[Diagnostic]) -> Value {
    json!({
        "file": file.display().to_string(),
        "kind": kind,
        "valid": !diags.iter().any(|d| d.severity == Severity::Error),
        "errors": diags.iter().filter(|d| d.severity == Severity::Error).count(),
        "warnings": diags.iter().filter(|d| d.severity == Severity::Warning).count(),
        "diagnostics": diags.iter().map(diagnostic_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use teamvirt_conf::diag::unsupported;
    use teamvirt_conf::Pos;

    #[test]
    fn compiler_style() {
        let d = unsupported("x", "boom")
            .at(Pos::new(2, 5))
            .with_file(Some("a.xml".into()))
            .with_hint("fix it");
        let s = render(&d, Some("<a>\n    <b/>\n</a>\n"));
        assert_eq!(
            s,
            "error: unsupported configuration: boom\n  --> a.xml:2:5\n  |\n2 |     <b/>\n  |     ^\n  = hint: fix it\n"
        );
    }

    #[test]
    fn control_characters_are_escaped_and_marker_aligned() {
        let d = unsupported("x", "bad '\u{1b}[2J'").at(Pos::new(1, 12));
        let src = "<a\x1b[31m b='\r'\x07 c='1'/>\r\n";
        let s = render(&d, Some(src));
        assert!(!s.chars().any(|c| c.is_control() && c != '\n'), "{s:?}");
        assert_eq!(
            s,
            "error: unsupported configuration: bad '\\x1b[2J'\n  --> 1:12\n  |\n1 | <a\\x1b[31m b='\\r'\\x07 c='1'/>\n  |               ^\n"
        );
        // Column 12 is the CR (after `<a`, ESC, `[31m b='`): the marker is
        // under the start of its escape.
        let line = s.lines().nth(3).unwrap();
        let marker = s.lines().nth(4).unwrap();
        assert_eq!(&line[marker.len() - 1..marker.len() + 1], "\\r");
        // Bidi overrides too.
        let d = unsupported("x", "m").at(Pos::new(1, 3));
        let s = render(&d, Some("a\u{202e}b"));
        assert!(s.contains("a\\u{202e}b"), "{s}");
        assert!(s.contains("\n  |          ^\n"), "{s}");
    }

    #[test]
    fn long_lines_are_cut_around_the_column() {
        let src = format!("{}<bad/>{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        let d = unsupported("x", "m").at(Pos::new(1, 300_001));
        let s = render(&d, Some(&src));
        assert!(s.len() < 500, "{}", s.len());
        let line = s.lines().nth(3).unwrap();
        let marker = s.lines().nth(4).unwrap();
        assert!(line.starts_with("1 | ...<a>"), "{line}");
        assert!(line.ends_with("..."), "{line}");
        assert_eq!(&line[marker.len() - 1..marker.len() + 5], "<bad/>");
    }

    #[test]
    fn no_position() {
        let d = unsupported("x", "boom");
        assert_eq!(render(&d, None), "error: unsupported configuration: boom\n");
    }

    #[test]
    fn json_shape() {
        let d = unsupported("x", "boom").at(Pos::new(2, 5));
        let v = file_json(Path::new("a.xml"), Some("domain"), &[d]);
        assert_eq!(v["valid"], false);
        assert_eq!(v["diagnostics"][0]["line"], 2);
        assert_eq!(v["diagnostics"][0]["severity"], "error");
    }
}
