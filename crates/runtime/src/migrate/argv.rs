//! The destination's QEMU command line, derived from the source's: the
//! same machine and devices (migration needs an identical device model),
//! with the destination's run directory in place of the source's (QMP
//! socket, serial log, any per-domain file), each transient's `host=` set
//! to the VF reserved on the destination, and `-incoming defer` so the
//! incoming side can be configured (events, listen address) over QMP
//! before it listens.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use teamvirt_qemu::options;

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgvError {
    #[error("internal error: the source command line has no -device with id '{0}' (the transient to give a destination VF)")]
    NoDevice(String),
    #[error("internal error: -device '{0}' is not valid JSON: {1}")]
    BadJson(String, String),
}

/// Rewrite `args` (without the emulator) for the destination. `vfs` maps a
/// primary's QEMU id to the host address it gets there; devices without
/// `host=` (lab mode's emulated primaries) are left as they are.
pub fn destination_args(
    args: &[String],
    src_run_dir: &Path,
    dst_run_dir: &Path,
    vfs: &BTreeMap<String, String>,
) -> Result<Vec<String>, ArgvError> {
    let src = src_run_dir.display().to_string();
    let dst = dst_run_dir.display().to_string();
    // QEMU's legacy option syntax doubles commas inside values.
    let (src_esc, dst_esc) = (src.replace(',', ",,"), dst.replace(',', ",,"));
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut found: Vec<&String> = Vec::new();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        if a == "-incoming" {
            it.next();
            continue;
        }
        let mut a = a.replace(&src_esc, &dst_esc);
        if src_esc != src {
            a = a.replace(&src, &dst);
        }
        if a == "-device" {
            if let Some(dev) = it.next() {
                let dev = dev.replace(&src_esc, &dst_esc);
                let (id, rewritten) = set_host(&dev, vfs)?;
                if let Some(id) = id {
                    found.extend(vfs.keys().filter(|k| **k == id));
                }
                out.push(a);
                out.push(rewritten);
            } else {
                out.push(a);
            }
            continue;
        }
        out.push(a);
    }
    if let Some(missing) = vfs.keys().find(|k| !found.contains(k)) {
        return Err(ArgvError::NoDevice(missing.clone()));
    }
    if !out.iter().any(|a| a == "-S") {
        out.push("-S".into());
    }
    out.push("-incoming".into());
    out.push("defer".into());
    Ok(out)
}

/// Replace `host=` of the device if its id is in `vfs`; returns the id.
fn set_host(
    dev: &str,
    vfs: &BTreeMap<String, String>,
) -> Result<(Option<String>, String), ArgvError> {
    if dev.trim_start().starts_with('{') {
        let mut v: Value = serde_json::from_str(dev)
            .map_err(|e| ArgvError::BadJson(dev.to_owned(), e.to_string()))?;
        let id = v.get("id").and_then(Value::as_str).map(str::to_owned);
        if let Some(host) = id.as_ref().and_then(|i| vfs.get(i)) {
            if v.get("host").is_some() {
                v["host"] = Value::String(host.clone());
                return Ok((id, v.to_string()));
            }
        }
        return Ok((id, dev.to_owned()));
    }
    let parts = options::split(dev);
    let id = parts
        .iter()
        .find_map(|p| p.strip_prefix("id="))
        .map(str::to_owned);
    let Some(host) = id.as_ref().and_then(|i| vfs.get(i)) else {
        return Ok((id, dev.to_owned()));
    };
    let rewritten: Vec<String> = parts
        .iter()
        .map(|p| {
            if p.starts_with("host=") {
                format!("host={host}")
            } else {
                p.clone()
            }
        })
        .collect();
    Ok((id, options::join(&rewritten)))
}

/// The `-device` option of `id` as a property object (JSON form as is,
/// legacy `driver,key=value` parsed, values as strings). The destination
/// reads the emulated model of a lab-mode primary from it.
pub fn device_props(args: &[String], id: &str) -> Option<serde_json::Map<String, Value>> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a != "-device" {
            continue;
        }
        let dev = it.next()?;
        if dev.trim_start().starts_with('{') {
            let v: Value = serde_json::from_str(dev).ok()?;
            if v.get("id").and_then(Value::as_str) == Some(id) {
                return v.as_object().cloned();
            }
            continue;
        }
        let parts = options::split(dev);
        let mut map = serde_json::Map::new();
        for (i, p) in parts.into_iter().enumerate() {
            match p.split_once('=') {
                Some((k, v)) => {
                    map.insert(k.to_owned(), Value::String(v.to_owned()));
                }
                None if i == 0 => {
                    map.insert("driver".into(), Value::String(p));
                }
                None => {
                    map.insert(p, Value::String("on".into()));
                }
            }
        }
        if map.get("id").and_then(Value::as_str) == Some(id) {
            return Some(map);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn paths_vf_and_incoming() {
        let args = s(&[
            "-S",
            "-chardev",
            "socket,id=charmonitor,path=/st/a,,b/run/vm/qmp.sock,server=on,wait=off",
            "-serial",
            "file:/st/a,,b/run/vm/serial.log",
            "-device",
            r#"{"driver":"vfio-pci","host":"0000:03:07.1","id":"hostdev0","failover_pair_id":"ua-sb","bus":"pci.2","addr":"0x0"}"#,
            "-device",
            "vfio-pci,host=0000:03:07.2,id=hostdev1,failover_pair_id=ua-sb1",
            "-device",
            "e1000e,id=hostdev2,netdev=hs1,mac=52:54:00:12:34:56,failover_pair_id=net1,romfile=",
            "-incoming",
            "tcp:0:4444",
        ]);
        let mut vfs = BTreeMap::new();
        vfs.insert("hostdev0".to_string(), "0000:81:00.1".to_string());
        vfs.insert("hostdev1".to_string(), "0000:81:00.2".to_string());
        let out = destination_args(
            &args,
            Path::new("/st/a,b/run/vm"),
            Path::new("/d/run/vm"),
            &vfs,
        )
        .unwrap();
        assert_eq!(
            out[2],
            "socket,id=charmonitor,path=/d/run/vm/qmp.sock,server=on,wait=off"
        );
        assert_eq!(out[4], "file:/d/run/vm/serial.log");
        let v: Value = serde_json::from_str(&out[6]).unwrap();
        assert_eq!(v["host"], "0000:81:00.1");
        assert_eq!(v["id"], "hostdev0");
        assert_eq!(
            out[8],
            "vfio-pci,host=0000:81:00.2,id=hostdev1,failover_pair_id=ua-sb1"
        );
        assert_eq!(out[10], args[10]);
        assert_eq!(&out[out.len() - 2..], &s(&["-incoming", "defer"])[..]);
        assert_eq!(out.iter().filter(|a| *a == "-incoming").count(), 1);
        assert_eq!(out.iter().filter(|a| *a == "-S").count(), 1);
    }

    #[test]
    fn missing_transient_is_an_error() {
        let mut vfs = BTreeMap::new();
        vfs.insert("hostdev9".to_string(), "0000:81:00.1".to_string());
        let e = destination_args(&s(&["-S"]), Path::new("/a"), Path::new("/b"), &vfs).unwrap_err();
        assert_eq!(e, ArgvError::NoDevice("hostdev9".into()));
    }

    #[test]
    fn device_props_both_syntaxes() {
        let args = s(&[
            "-device",
            r#"{"driver":"e1000e","id":"hostdev0","romfile":"","bus":"root1"}"#,
            "-device",
            "e1000e,bus=root2,id=hostdev1,netdev=hs1,romfile=,x=a,,b",
        ]);
        let p = device_props(&args, "hostdev0").unwrap();
        assert_eq!(p["bus"], "root1");
        let p = device_props(&args, "hostdev1").unwrap();
        assert_eq!(p["driver"], "e1000e");
        assert_eq!(p["romfile"], "");
        assert_eq!(p["x"], "a,b");
        assert!(device_props(&args, "nope").is_none());
    }
}
