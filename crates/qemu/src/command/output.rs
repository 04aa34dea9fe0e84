//! The built command line and its three renderings: libvirt's `.args`
//! test-file layout, a single shell-quoted line like `virsh
//! domxml-to-native`, and JSON for programs.

use serde::Serialize;
use serde_json::{Map, Value};

/// Environment plus argv (`argv[0]` is the emulator).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CommandLine {
    /// Environment in the order libvirt sets it.
    pub env: Vec<(String, String)>,
    /// argv, starting with the emulator binary.
    pub argv: Vec<String>,
}

/// Output format of `domxml-to-native`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Shell,
    Args,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "shell" => Ok(Format::Shell),
            "args" => Ok(Format::Args),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown format '{other}' (expected shell, args or json)"
            )),
        }
    }
}

impl CommandLine {
    pub fn new(emulator: impl Into<String>) -> Self {
        CommandLine {
            env: Vec::new(),
            argv: vec![emulator.into()],
        }
    }

    pub fn env(&mut self, key: &str, value: impl Into<String>) {
        self.env.push((key.to_string(), value.into()));
    }

    /// Append one argument.
    pub fn arg(&mut self, a: impl Into<String>) {
        self.argv.push(a.into());
    }

    /// Append an option and its value.
    pub fn opt(&mut self, option: &str, value: impl Into<String>) {
        self.argv.push(option.to_string());
        self.argv.push(value.into());
    }

    /// Index of the first occurrence of `option` followed by a value
    /// satisfying `pred` (used by callers that patch a built line).
    pub fn find_opt(&self, option: &str, pred: impl Fn(&str) -> bool) -> Option<usize> {
        self.argv
            .windows(2)
            .position(|w| w[0] == option && pred(&w[1]))
            .map(|i| i + 1)
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Shell => self.to_shell(),
            Format::Args => self.to_args(),
            Format::Json => self.to_json(),
        }
    }

    /// libvirt's `.args` layout: each env var on its own line, the
    /// emulator, then every option starting a new line with its value on
    /// the same line, lines joined by ` \`.
    pub fn to_args(&self) -> String {
        let mut lines: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .collect();
        for (i, a) in self.argv.iter().enumerate() {
            let quoted = shell_quote(a);
            if i == 0 || a.starts_with('-') || lines.is_empty() {
                lines.push(quoted);
            } else {
                let last = lines.last_mut().expect("non-empty");
                last.push(' ');
                last.push_str(&quoted);
            }
        }
        let mut out = lines.join(" \\\n");
        out.push('\n');
        out
    }

    /// One line, every word shell-quoted as needed.
    pub fn to_shell(&self) -> String {
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .collect();
        words.extend(self.argv.iter().map(|a| shell_quote(a)));
        let mut out = words.join(" ");
        out.push('\n');
        out
    }

    /// `{"env":{...},"argv":[...]}`.
    pub fn to_json(&self) -> String {
        let mut env = Map::new();
        for (k, v) in &self.env {
            env.insert(k.clone(), Value::String(v.clone()));
        }
        let mut top = Map::new();
        top.insert("env".into(), Value::Object(env));
        top.insert(
            "argv".into(),
            Value::Array(self.argv.iter().cloned().map(Value::String).collect()),
        );
        let mut out = serde_json::to_string(&Value::Object(top)).unwrap_or_default();
        out.push('\n');
        out
    }
}

/// Quote a word the way libvirt's virBufferEscapeShell does: unchanged when
/// it holds no shell metacharacter, otherwise single-quoted with embedded
/// quotes written `'\''`; the empty word is `''`.
pub fn shell_quote(s: &str) -> String {
    const META: &[char] = &[
        '\r', '\t', '\n', ' ', '!', '"', '#', '$', '&', '\'', '(', ')', '*', ';', '<', '>', '?',
        '[', '\\', ']', '^', '`', '{', '|', '}', '~',
    ];
    if s.is_empty() {
        return "''".to_string();
    }
    if !s.contains(META) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CommandLine {
        let mut c = CommandLine::new("/usr/bin/qemu-system-x86_64");
        c.env("LC_ALL", "C");
        c.env("HOME", "/var/lib/x");
        c.opt("-name", "guest=g,debug-threads=on");
        c.arg("-S");
        c.opt("-device", r#"{"driver":"e1000e","romfile":""}"#);
        c
    }

    #[test]
    fn args_layout() {
        assert_eq!(
            sample().to_args(),
            "LC_ALL=C \\\nHOME=/var/lib/x \\\n/usr/bin/qemu-system-x86_64 \\\n-name guest=g,debug-threads=on \\\n-S \\\n-device '{\"driver\":\"e1000e\",\"romfile\":\"\"}'\n"
        );
    }

    #[test]
    fn shell_layout() {
        assert_eq!(
            sample().to_shell(),
            "LC_ALL=C HOME=/var/lib/x /usr/bin/qemu-system-x86_64 -name guest=g,debug-threads=on -S -device '{\"driver\":\"e1000e\",\"romfile\":\"\"}'\n"
        );
    }

    #[test]
    fn json_layout() {
        let j: Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(j["env"]["LC_ALL"], "C");
        assert_eq!(j["argv"][0], "/usr/bin/qemu-system-x86_64");
        assert_eq!(j["argv"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a,b=c:/d"), "a,b=c:/d");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("a b"), "'a b'");
    }
}
