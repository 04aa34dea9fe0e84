//! QEMU's legacy option syntax (`driver,key=value,...`, QemuOpts) read
//! back from an argv: a single comma separates options, `,,` is a literal
//! comma. The one splitter for what reads a built command line again
//! (hotplug's `-device`/`-netdev` lookups, the migration destination's
//! argv rewrite).

use serde_json::Value;

/// The options of `s`, each with its `,,` turned back into `,`.
pub fn split(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let cur = out.last_mut().expect("never empty");
        if c != ',' {
            cur.push(c);
        } else if chars.peek() == Some(&',') {
            chars.next();
            cur.push(',');
        } else {
            out.push(String::new());
        }
    }
    out
}

/// `parts` as one option list again (the inverse of [`split`]).
pub fn join<S: AsRef<str>>(parts: &[S]) -> String {
    parts
        .iter()
        .map(|p| p.as_ref().replace(',', ",,"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The value of `key=` in the option list `s`.
pub fn value_of(s: &str, key: &str) -> Option<String> {
    split(s).into_iter().find_map(|o| {
        o.strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .map(str::to_owned)
    })
}

/// The value of `key` in one `-device`/`-netdev` value of either syntax
/// (a JSON object, or a legacy option list), when it is a string.
pub fn prop_of(value: &str, key: &str) -> Option<String> {
    if value.trim_start().starts_with('{') {
        let v: Value = serde_json::from_str(value).ok()?;
        return v.get(key).and_then(Value::as_str).map(str::to_owned);
    }
    value_of(value, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_round_trip_escaped_commas() {
        for s in [
            "vfio-pci,host=0000:01:00.1,id=hostdev0",
            "file=/a,,b,id=x",
            ",,,",
            "",
            "a,,",
        ] {
            assert_eq!(join(&split(s)), s, "{s}");
        }
        assert_eq!(split("file=/a,,b,id=x"), vec!["file=/a,b", "id=x"]);
    }

    #[test]
    fn values_in_both_syntaxes() {
        assert_eq!(
            value_of("tap,id=hostnet0,fd=3", "id").as_deref(),
            Some("hostnet0")
        );
        assert_eq!(value_of("x,idle=1", "id"), None);
        assert_eq!(value_of("x,path=/a,,b", "path").as_deref(), Some("/a,b"));
        assert_eq!(
            prop_of(
                r#"{"driver":"virtio-net-pci","id":"net0","netdev":"hostnet0"}"#,
                "netdev"
            )
            .as_deref(),
            Some("hostnet0")
        );
        assert_eq!(
            prop_of("virtio-net-pci,netdev=n1,id=net0", "netdev").as_deref(),
            Some("n1")
        );
    }
}
