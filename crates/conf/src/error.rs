//! Why a document could not be loaded or parsed at all.

use std::path::PathBuf;

use thiserror::Error;

use crate::diag::{Diagnostic, Pos};

/// Maximum size of an XML document, like libvirt/virsh (10 MiB).
pub const MAX_XML_SIZE: u64 = 10 * 1024 * 1024;

/// A document that cannot become a model. Each variant renders as a
/// [`Diagnostic`] with [`ConfError::to_diagnostic`].
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ConfError {
    #[error("failed to read file '{}': {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("file '{}' is too large ({size} bytes; the limit is {MAX_XML_SIZE} bytes)", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("XML error: document is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    /// Malformed XML, DTD/entity declarations, or a document-level problem.
    #[error("{message}")]
    Xml { message: String, pos: Option<Pos> },
    /// A libvirt parse error (wrong attribute value, missing element, ...).
    #[error("{}", .0.message)]
    Invalid(Box<Diagnostic>),
}

impl ConfError {
    /// Stable short code, as in [`Diagnostic::code`].
    pub fn code(&self) -> &'static str {
        match self {
            ConfError::Io { .. } => "io",
            ConfError::TooLarge { .. } => "file-too-large",
            ConfError::NotUtf8 { .. } => "not-utf8",
            ConfError::Xml { .. } => "xml-malformed",
            ConfError::Invalid(d) => d.code,
        }
    }

    /// The error as a diagnostic, located in `file` when given.
    pub fn to_diagnostic(&self, file: Option<&std::path::Path>) -> Diagnostic {
        let file = file.map(|f| f.to_path_buf());
        match self {
            ConfError::Invalid(d) => {
                let mut d = (**d).clone();
                if d.file.is_none() {
                    d.file = file;
                }
                d
            }
            ConfError::Xml { message, pos } => {
                let mut d = Diagnostic::error(self.code(), message.clone()).with_file(file);
                d.pos = *pos;
                d
            }
            other => Diagnostic::error(other.code(), other.to_string()).with_file(file),
        }
    }
}

impl From<Diagnostic> for ConfError {
    fn from(d: Diagnostic) -> Self {
        ConfError::Invalid(Box::new(d))
    }
}
