//! Path queries over QEMU's introspected QAPI schema (`query-qmp-schema`),
//! in the query language libvirt uses for its schema-derived flags:
//!
//! - first component: a command or event name (`device_add`);
//! - `arg-type` / `ret-type`: descend into the command's argument/return type;
//! - `NAME`: descend into the object member `NAME`'s type;
//! - `+CASE`: descend into the union variant for `CASE`;
//! - `^VALUE`: the current enum has the value `VALUE`;
//! - `$FEATURE`: the current entity has the feature `FEATURE`.
//!
//! Arrays are looked through (their element type), alternates match if any
//! branch matches.

use std::collections::HashMap;

use serde_json::Value;

/// `query-qmp-schema` indexed by entity name.
pub(crate) struct Schema<'a> {
    by_name: HashMap<&'a str, &'a Value>,
}

/// Guards against cyclic type references in a hostile or broken schema.
const MAX_DEPTH: usize = 64;

impl<'a> Schema<'a> {
    pub(crate) fn new(reply: &'a Value) -> Schema<'a> {
        let by_name = reply
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| Some((e.get("name")?.as_str()?, e)))
                    .collect()
            })
            .unwrap_or_default();
        Schema { by_name }
    }

    /// Whether `query` (see the module docs) matches.
    pub(crate) fn query(&self, query: &str) -> bool {
        let mut parts = query.split('/');
        let Some(first) = parts.next() else {
            return false;
        };
        let Some(entry) = self.by_name.get(first) else {
            return false;
        };
        let rest: Vec<&str> = parts.collect();
        self.walk(entry, &rest, 0)
    }

    fn lookup(&self, name: Option<&Value>) -> Option<&'a Value> {
        self.by_name.get(name?.as_str()?).copied()
    }

    fn walk(&self, entry: &'a Value, rest: &[&str], depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        let Some((&part, tail)) = rest.split_first() else {
            return true;
        };
        let meta = entry.get("meta-type").and_then(Value::as_str).unwrap_or("");

        // Features belong to the entity itself, whatever its kind.
        if let Some(feature) = part.strip_prefix('$') {
            return has_str(entry.get("features"), feature) && self.walk(entry, tail, depth + 1);
        }
        match meta {
            "array" => {
                return self
                    .lookup(entry.get("element-type"))
                    .is_some_and(|e| self.walk(e, rest, depth + 1))
            }
            "alternate" => {
                let members = entry.get("members").and_then(Value::as_array);
                return members.into_iter().flatten().any(|m| {
                    self.lookup(m.get("type"))
                        .is_some_and(|e| self.walk(e, rest, depth + 1))
                });
            }
            _ => {}
        }
        if let Some(value) = part.strip_prefix('^') {
            if meta != "enum" {
                return false;
            }
            let in_values = has_str(entry.get("values"), value);
            let in_members = entry
                .get("members")
                .and_then(Value::as_array)
                .is_some_and(|m| {
                    m.iter()
                        .any(|m| m.get("name").and_then(Value::as_str) == Some(value))
                });
            return (in_values || in_members) && self.walk(entry, tail, depth + 1);
        }
        if let Some(case) = part.strip_prefix('+') {
            let variants = entry.get("variants").and_then(Value::as_array);
            let Some(v) = variants
                .into_iter()
                .flatten()
                .find(|v| v.get("case").and_then(Value::as_str) == Some(case))
            else {
                return false;
            };
            return self
                .lookup(v.get("type"))
                .is_some_and(|e| self.walk(e, tail, depth + 1));
        }
        let next = match (meta, part) {
            ("command", "arg-type" | "ret-type") | ("event", "arg-type") => {
                self.lookup(entry.get(part))
            }
            ("object", _) => entry
                .get("members")
                .and_then(Value::as_array)
                .and_then(|m| {
                    m.iter()
                        .find(|m| m.get("name").and_then(Value::as_str) == Some(part))
                })
                .and_then(|m| self.lookup(m.get("type"))),
            _ => None,
        };
        next.is_some_and(|e| self.walk(e, tail, depth + 1))
    }
}

fn has_str(list: Option<&Value>, want: &str) -> bool {
    list.and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(want)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!([
            {"name": "device_add", "meta-type": "command", "arg-type": "1", "ret-type": "0",
             "features": ["json-cli", "json-cli-hotplug"]},
            {"name": "netdev_add", "meta-type": "command", "arg-type": "2", "ret-type": "0"},
            {"name": "query-migrate", "meta-type": "command", "arg-type": "0", "ret-type": "5"},
            {"name": "0", "meta-type": "object", "members": []},
            {"name": "1", "meta-type": "object", "members": [{"name": "driver", "type": "str"}]},
            {"name": "2", "meta-type": "object", "tag": "type",
             "members": [{"name": "id", "type": "str"}, {"name": "type", "type": "3"}],
             "variants": [{"case": "stream", "type": "4"}, {"case": "user", "type": "0"}]},
            {"name": "3", "meta-type": "enum", "values": ["user", "tap", "dgram"],
             "members": [{"name": "user"}, {"name": "tap"}, {"name": "dgram"}]},
            {"name": "4", "meta-type": "object", "members": [{"name": "reconnect", "type": "int"}]},
            {"name": "5", "meta-type": "object", "members": [{"name": "blocked-reasons", "type": "[str]"}]},
            {"name": "[str]", "meta-type": "array", "element-type": "str"},
            {"name": "str", "meta-type": "builtin", "json-type": "string"},
            {"name": "int", "meta-type": "builtin", "json-type": "int"},
            {"name": "loop", "meta-type": "array", "element-type": "loop"},
            {"name": "cmd-loop", "meta-type": "command", "arg-type": "loop"}
        ])
    }

    #[test]
    fn queries() {
        let v = schema();
        let s = Schema::new(&v);
        assert!(s.query("device_add/$json-cli-hotplug"));
        assert!(s.query("device_add/$json-cli"));
        assert!(!s.query("device_add/$nope"));
        assert!(s.query("netdev_add/arg-type/type/^dgram"));
        assert!(!s.query("netdev_add/arg-type/type/^vde"));
        assert!(s.query("netdev_add/arg-type/+stream"));
        assert!(s.query("netdev_add/arg-type/+stream/reconnect"));
        assert!(!s.query("netdev_add/arg-type/+stream/server"));
        assert!(!s.query("netdev_add/arg-type/+vhost-vdpa"));
        assert!(s.query("query-migrate/ret-type/blocked-reasons"));
        assert!(!s.query("object-add/arg-type/qom-type/^secret"));
        assert!(!s.query("netdev_add/arg-type/id/^x"));
        assert!(!s.query("cmd-loop/arg-type/x"));
    }

    #[test]
    fn garbage_schema_is_harmless() {
        for v in [
            json!(null),
            json!({}),
            json!([1, "x", {"name": 3}]),
            json!([{"name": "a"}]),
        ] {
            let s = Schema::new(&v);
            assert!(!s.query("a/arg-type"));
            assert!(!s.query(""));
        }
    }
}
