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
pub fn render(d: &Diagnostic, source: Option<&str>) -> String {
    let mut out = format!("{}: {}\n", d.severity, d.message);
    if let Some(loc) = d.location() {
        out.push_str(&format!("  --> {loc}\n"));
    }
    let line = d.pos.and_then(|p| {
        source
            .and_then(|s| s.lines().nth((p.line as usize).saturating_sub(1)))
            .map(|l| (p, l))
    });
    let gutter = d.pos.map_or(1, |p| p.line.to_string().len());
    let pad = " ".repeat(gutter);
    if let Some((p, text)) = line {
        let text = text.trim_end_matches('\r');
        // The marker counts characters; tabs are kept so it lines up.
        let marker: String = text
            .chars()
            .take((p.col as usize).saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!(
            "{pad} |\n{} | {text}\n{pad} | {marker}^\n",
            p.line
        ));
    }
    if let Some(h) = &d.hint {
        out.push_str(&format!("{pad} = hint: {h}\n"));
    }
    out
}

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
