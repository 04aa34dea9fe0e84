//! Device/backend property lists, rendered the two ways libvirt renders
//! them: the JSON object syntax QEMU accepts since `-device` gained JSON
//! support, and the legacy `driver,key=value` syntax with libvirt's comma
//! escaping (`,` inside a value is doubled).

use serde_json::{Map, Value};

/// An ordered property list. Insertion order is the order libvirt emits,
/// which is what byte-for-byte comparison needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Props {
    map: Map<String, Value>,
}

impl Props {
    pub fn new() -> Self {
        Props::default()
    }

    /// `S:` in libvirt's virJSONValueObjectAdd: a string.
    pub fn str(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.map
            .insert(key.to_string(), Value::String(value.into()));
        self
    }

    /// A string only when present (libvirt's `S:` skips NULL).
    pub fn opt_str(&mut self, key: &str, value: Option<impl Into<String>>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.map.insert(key.to_string(), Value::Bool(value));
        self
    }

    /// A tristate (`T:` in libvirt): absent when `None`.
    pub fn tristate(&mut self, key: &str, value: Option<bool>) -> &mut Self {
        if let Some(v) = value {
            self.bool(key, v);
        }
        self
    }

    pub fn uint(&mut self, key: &str, value: u64) -> &mut Self {
        self.map.insert(key.to_string(), Value::from(value));
        self
    }

    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        self.map.insert(key.to_string(), Value::from(value));
        self
    }

    /// A nested object (blockdev `file`, ...).
    pub fn object(&mut self, key: &str, value: Props) -> &mut Self {
        self.map.insert(key.to_string(), Value::Object(value.map));
        self
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.map.get(key).and_then(Value::as_str)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Replace the value of an existing key in place (keeps its position),
    /// or append it.
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        if let Some(slot) = self.map.get_mut(key) {
            *slot = value;
        } else {
            self.map.insert(key.to_string(), value);
        }
        self
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.map.shift_remove(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.map.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Compact JSON exactly as libvirt prints it (no spaces).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.map).unwrap_or_default()
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.map)
    }

    /// Legacy syntax. `lead` names the key whose value is written first and
    /// bare (`driver` for -device, `type` for -netdev, `qom-type` for
    /// -object); every other key becomes `key=value`.
    pub fn to_legacy(&self, lead: Option<&str>) -> String {
        let mut out = String::new();
        if let Some(lead) = lead {
            if let Some(v) = self.map.get(lead) {
                push_legacy_value(&mut out, v);
            }
        }
        for (k, v) in &self.map {
            if Some(k.as_str()) == lead {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            push_legacy_pair(&mut out, k, v);
        }
        out
    }
}

fn push_legacy_pair(out: &mut String, key: &str, v: &Value) {
    match v {
        // Nested objects flatten to dotted keys, as QEMU's keyval parser
        // reads them.
        Value::Object(m) => {
            let mut first = true;
            for (k, inner) in m {
                if !first {
                    out.push(',');
                }
                first = false;
                push_legacy_pair(out, &format!("{key}.{k}"), inner);
            }
        }
        _ => {
            out.push_str(key);
            out.push('=');
            push_legacy_value(out, v);
        }
    }
}

fn push_legacy_value(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(&escape_comma(s)),
        Value::Bool(b) => out.push_str(if *b { "on" } else { "off" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Null => {}
        Value::Array(a) => {
            let parts: Vec<String> = a
                .iter()
                .map(|x| {
                    let mut s = String::new();
                    push_legacy_value(&mut s, x);
                    s
                })
                .collect();
            out.push_str(&parts.join(":"));
        }
        Value::Object(_) => out.push_str(&escape_comma(&v.to_string())),
    }
}

/// libvirt's virQEMUBuildBufferEscapeComma: a literal comma in an option
/// value is written as `,,` so QEMU's option parser does not split there.
pub fn escape_comma(s: &str) -> String {
    s.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_insertion_order() {
        let mut p = Props::new();
        p.str("driver", "virtio-net-pci")
            .bool("failover", true)
            .str("netdev", "hostua-backup0");
        p.uint("vectors", 12);
        assert_eq!(
            p.to_json(),
            r#"{"driver":"virtio-net-pci","failover":true,"netdev":"hostua-backup0","vectors":12}"#
        );
    }

    #[test]
    fn legacy_device_syntax() {
        let mut p = Props::new();
        p.str("driver", "virtio-net-pci")
            .bool("failover", true)
            .str("netdev", "hostua-backup0");
        p.str("addr", "0x2");
        assert_eq!(
            p.to_legacy(Some("driver")),
            "virtio-net-pci,failover=on,netdev=hostua-backup0,addr=0x2"
        );
    }

    #[test]
    fn legacy_escapes_commas() {
        let mut p = Props::new();
        p.str("type", "user").str("id", "a,b");
        assert_eq!(p.to_legacy(Some("type")), "user,id=a,,b");
        assert_eq!(escape_comma(",,"), ",,,,");
    }

    #[test]
    fn set_keeps_position() {
        let mut p = Props::new();
        p.str("a", "1").str("b", "2");
        p.set("a", Value::from("3"));
        assert_eq!(p.to_json(), r#"{"a":"3","b":"2"}"#);
        p.remove("a");
        assert_eq!(p.to_json(), r#"{"b":"2"}"#);
    }

    #[test]
    fn tristate_absent_is_skipped() {
        let mut p = Props::new();
        p.tristate("x", None).tristate("y", Some(false));
        assert_eq!(p.to_json(), r#"{"y":false}"#);
    }
}
