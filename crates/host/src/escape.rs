//! Control characters escaped before they reach a terminal or a log line.

/// How a character that must not reach a terminal or a log line is
/// written, `None` for the others (tab included): C0, DEL and C1 controls
/// as `\xNN` (`\n`, `\r` as such), bidirectional overrides and isolates
/// as `\u{NNNN}`.
pub fn escape_char(c: char) -> Option<String> {
    if !needs_escape(c) {
        return None;
    }
    Some(match c {
        '\r' => "\\r".into(),
        '\n' => "\\n".into(),
        c if (c as u32) < 0x100 => format!("\\x{:02x}", c as u32),
        c => format!("\\u{{{:x}}}", c as u32),
    })
}

/// The rule of [`escape_char`]: C0, DEL and C1 controls but tab, and the
/// bidirectional overrides and isolates (they reorder what follows them).
fn needs_escape(c: char) -> bool {
    match c {
        '\t' => false,
        c if c.is_control() && (c as u32) < 0x100 => true,
        '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{061c}' => true,
        _ => false,
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

/// [`escape_controls`] over a byte stream that arrives in pieces (QEMU's
/// stderr, see `process::reap_and_log`), keeping `\n` as the line break
/// it is there; bytes that are not UTF-8 come out as `\xNN`. Allocates
/// nothing: it runs between fork and exec.
#[derive(Debug, Default)]
pub struct EscapeStream {
    /// The bytes of a UTF-8 sequence begun but not finished.
    pending: [u8; 4],
    have: usize,
    need: usize,
}

impl EscapeStream {
    /// Escape `input`, handing the result to `out` in pieces.
    pub fn feed(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8])) {
        for &b in input {
            if self.need > 0 {
                if b & 0xc0 == 0x80 {
                    self.pending[self.have] = b;
                    self.have += 1;
                    if self.have == self.need {
                        self.finish_char(out);
                    }
                    continue;
                }
                // Broken sequence: what was begun is not UTF-8.
                self.flush(out);
            }
            let need = match b {
                0x00..=0x7f => 1,
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => 0,
            };
            if need == 0 {
                hex(b, out);
                continue;
            }
            self.pending[0] = b;
            self.have = 1;
            self.need = need;
            if need == 1 {
                self.finish_char(out);
            }
        }
    }

    /// End of the stream: an unfinished sequence is not UTF-8.
    pub fn flush(&mut self, out: &mut dyn FnMut(&[u8])) {
        for i in 0..self.have {
            hex(self.pending[i], out);
        }
        self.have = 0;
        self.need = 0;
    }

    fn finish_char(&mut self, out: &mut dyn FnMut(&[u8])) {
        let bytes = &self.pending[..self.have];
        self.have = 0;
        self.need = 0;
        let Some(c) = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.chars().next())
        else {
            // Overlong or surrogate: not UTF-8.
            let copy = self.pending;
            for &b in &copy[..bytes.len()] {
                hex(b, out);
            }
            return;
        };
        if c == '\n' || !needs_escape(c) {
            out(&self.pending[..c.len_utf8()]);
            return;
        }
        // The escapes of `escape_char`, formatted without allocating.
        let mut buf = [0u8; 12];
        let n = match c {
            '\r' => put(&mut buf, b"\\r"),
            c if (c as u32) < 0x100 => {
                hex(c as u8, out);
                return;
            }
            c => {
                let mut n = put(&mut buf, b"\\u{");
                let v = c as u32;
                let mut shift = 24;
                let mut started = false;
                while shift > 0 {
                    shift -= 4;
                    let d = (v >> shift) & 0xf;
                    if d != 0 || started || shift == 0 {
                        started = true;
                        buf[n] = HEX[d as usize];
                        n += 1;
                    }
                }
                buf[n] = b'}';
                n + 1
            }
        };
        out(&buf[..n]);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put(buf: &mut [u8; 12], s: &[u8]) -> usize {
    buf[..s.len()].copy_from_slice(s);
    s.len()
}

/// `\xNN`.
fn hex(b: u8, out: &mut dyn FnMut(&[u8])) {
    out(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 0xf)],
    ]);
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

    fn stream(input: &[u8], chunk: usize) -> String {
        let mut out = Vec::new();
        let mut e = EscapeStream::default();
        for piece in input.chunks(chunk) {
            e.feed(piece, &mut |b| out.extend_from_slice(b));
        }
        e.flush(&mut |b| out.extend_from_slice(b));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn stream_escapes_as_escape_controls_in_any_pieces() {
        // QEMU's stderr as a hostile one writes it: OSC title, screen
        // clear, cursor home, C1 CSI, bidi override, CR overwrite.
        let text = "qemu: \x1b]0;pwned\x07\x1b[2J\x1b[H\u{9b}31m\u{202e}evil\u{2066}\rfake é ✓ 😀\tok\nnext line\u{61c}\n";
        let want: Vec<String> = text.split('\n').map(escape_controls).collect();
        let want = want.join("\n");
        for chunk in [1, 2, 3, 5, 7, 4096] {
            assert_eq!(stream(text.as_bytes(), chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn stream_shows_bytes_that_are_not_utf8() {
        assert_eq!(stream(b"a\x9bb\xc3", 1), "a\\x9bb\\xc3");
        assert_eq!(stream(b"\xe2\x80x\xc0\xaf", 2), "\\xe2\\x80x\\xc0\\xaf");
        // Surrogates (ED A0 80) are not UTF-8 either.
        assert_eq!(stream(b"\xed\xa0\x80.", 3), "\\xed\\xa0\\x80.");
    }
}
