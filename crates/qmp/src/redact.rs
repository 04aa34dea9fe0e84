//! Secrets never reach a log: QMP messages are traced with the values of
//! secret-bearing members replaced.

use serde_json::{Map, Value};

/// Members whose value is a secret wherever they appear (`set_password`,
/// `change-vnc-password`, `block_passwd`, key material).
const SECRET_KEYS: &[&str] = &["password", "passphrase", "key-secret", "secret", "iv"];

/// Printed instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A copy of `v` with every secret replaced by [`REDACTED`]: the members
/// named in `SECRET_KEYS`, and `data` of a `secret` object
/// (`object-add qom-type=secret`, how libvirt hands QEMU its keys).
pub fn redacted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let is_secret_object = m.get("qom-type").and_then(Value::as_str) == Some("secret");
            let out: Map<String, Value> = m
                .iter()
                .map(|(k, v)| {
                    let hide =
                        SECRET_KEYS.contains(&k.as_str()) || (is_secret_object && k == "data");
                    let v = if hide {
                        Value::String(REDACTED.into())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect();
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_hidden_and_the_rest_kept() {
        let cmd = json!({"execute": "object-add", "arguments": {
            "qom-type": "secret", "id": "masterKey0", "data": "c2VjcmV0", "format": "base64"}});
        let r = redacted(&cmd);
        assert_eq!(r["arguments"]["data"], REDACTED);
        assert_eq!(r["arguments"]["id"], "masterKey0");
        let cmd = json!({"execute": "set_password", "arguments": {"protocol": "vnc", "password": "hunter2"}});
        assert_eq!(redacted(&cmd)["arguments"]["password"], REDACTED);
        assert!(!redacted(&cmd).to_string().contains("hunter2"));
        // `data` of anything but a secret object is not a secret.
        let ev = json!({"event": "FAILOVER_NEGOTIATED", "data": {"device-id": "ua-net0"}});
        assert_eq!(redacted(&ev), ev);
        // Nested in arrays too.
        let v = json!([{"password": "x"}]);
        assert_eq!(redacted(&v)[0]["password"], REDACTED);
    }
}
