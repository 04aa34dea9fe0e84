//! User-facing diagnostics: what `validate` prints and what every stage
//! returns when a document is wrong. `message` always carries libvirt's full
//! text including its error-class prefix (`unsupported configuration: `,
//! `XML error: `, ...) so output can be compared with libvirt verbatim.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A position in the source document, 1-based. `Pos::default()` (0:0) means
/// "not from a file" (items created programmatically).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const fn new(line: u32, col: u32) -> Self {
        Pos { line, col }
    }

    /// True when this position came from a parsed document.
    pub fn is_known(&self) -> bool {
        self.line != 0
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable short identifier (e.g. `teaming-unknown-type`), for JSON and tests.
    pub code: &'static str,
    /// Full text, libvirt's where libvirt has one, with libvirt's prefix.
    pub message: String,
    pub file: Option<PathBuf>,
    pub pos: Option<Pos>,
    /// One-line suggestion (always set for warnings).
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: None,
            pos: None,
            hint: None,
        }
    }

    pub fn warning(
        code: &'static str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            code,
            message: message.into(),
            file: None,
            pos: None,
            hint: Some(hint.into()),
        }
    }

    /// Attach a position; an unknown position (0:0) is stored as `None`.
    pub fn at(mut self, pos: Pos) -> Self {
        self.pos = pos.is_known().then_some(pos);
        self
    }

    pub fn with_file(mut self, file: Option<PathBuf>) -> Self {
        self.file = file;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col`, or whatever part of it is known.
    pub fn location(&self) -> Option<String> {
        match (&self.file, self.pos) {
            (Some(f), Some(p)) => Some(format!("{}:{}", f.display(), p)),
            (Some(f), None) => Some(f.display().to_string()),
            (None, Some(p)) => Some(p.to_string()),
            (None, None) => None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location() {
            Some(loc) => write!(f, "{loc}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// libvirt's error-class prefixes (`virErrorMsg` formats).
pub mod prefix {
    pub const CONFIG_UNSUPPORTED: &str = "unsupported configuration: ";
    pub const XML_ERROR: &str = "XML error: ";
    pub const INTERNAL_ERROR: &str = "internal error: ";
    pub const OPERATION_INVALID: &str = "Requested operation is not valid: ";
    pub const OPERATION_UNSUPPORTED: &str = "Operation not supported: ";
    pub const INVALID_ARG: &str = "invalid argument: ";
    pub const XML_DETAIL: &str = "XML description is invalid or not well formed";
}

/// `unsupported configuration: <msg>` as an error diagnostic.
pub fn unsupported(code: &'static str, msg: impl fmt::Display) -> Diagnostic {
    Diagnostic::error(code, format!("{}{msg}", prefix::CONFIG_UNSUPPORTED))
}

/// `XML error: <msg>` as an error diagnostic.
pub fn xml_error(code: &'static str, msg: impl fmt::Display) -> Diagnostic {
    Diagnostic::error(code, format!("{}{msg}", prefix::XML_ERROR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_and_display() {
        let d = unsupported("x", "boom")
            .at(Pos::new(3, 5))
            .with_file(Some("a.xml".into()));
        assert_eq!(d.location().unwrap(), "a.xml:3:5");
        assert_eq!(d.to_string(), "a.xml:3:5: unsupported configuration: boom");
        let d = xml_error("y", "bad").at(Pos::default());
        assert_eq!(d.pos, None);
        assert_eq!(d.to_string(), "XML error: bad");
    }
}
