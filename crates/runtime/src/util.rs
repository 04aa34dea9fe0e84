//! Small helpers used across the runtime: a fresh UUID, and running one
//! async operation from synchronous code.

use teamvirt_conf::model::Uuid;

use crate::error::RuntimeError;

/// A random (version 4) UUID, for definitions that lack one.
pub fn random_uuid() -> Result<Uuid, RuntimeError> {
    Ok(Uuid(uuid::Uuid::new_v4().into_bytes()))
}

/// Run an async QMP conversation from the synchronous API.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, RuntimeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::Internal(format!("tokio runtime: {e}")))?;
    Ok(rt.block_on(f))
}

/// How a character that must not reach a terminal or a log line is
/// written, `None` for the others (tab included): C0, DEL and C1 controls
/// as `\xNN` (`\n`, `\r` as such), bidirectional overrides and isolates
/// as `\u{NNNN}`.
pub fn escape_char(c: char) -> Option<String> {
    match c {
        '\t' => None,
        '\r' => Some("\\r".into()),
        '\n' => Some("\\n".into()),
        c if c.is_control() && (c as u32) < 0x100 => Some(format!("\\x{:02x}", c as u32)),
        // Bidirectional overrides/isolates reorder what follows them.
        '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{061c}' => Some(format!("\\u{{{:x}}}", c as u32)),
        _ => None,
    }
}

/// `s` with every control character escaped (see `escape_char`): text
/// another party chose (a migration peer's error, a `<cmdline>`) written
/// to a terminal or a log cannot move the cursor, retitle the terminal or
/// start a forged line.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(|c| escape_char(c).is_some()) {
        return s.to_string();
    }
    s.chars()
        .map(|c| escape_char(c).unwrap_or_else(|| c.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(escape_controls("plain\ttext é"), "plain\ttext é");
        assert_eq!(
            escape_controls("a\nb\rc\x1b]0;t\x07\u{9b}\u{202e}"),
            "a\\nb\\rc\\x1b]0;t\\x07\\x9b\\u{202e}"
        );
    }
}
