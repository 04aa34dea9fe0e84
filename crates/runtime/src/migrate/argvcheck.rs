//! Which command line the destination runs. The run record's argv is what
//! the migration needs (paths rather than the descriptors QEMU got as the
//! QEMU user, and the devices hot-plugged since the start), but it is a
//! file: it is used only where it differs from what the kernel shows for
//! the source QEMU (`/proc/PID/cmdline`) in the ways those two explain.

use std::collections::BTreeMap;

/// Options whose value teamvirt replaces by a descriptor at exec
/// (`runtime::lend_argv`), or that name a device hot-plugged (`-device`,
/// `-netdev`): their values may differ between the record and the kernel.
const SUBSTITUTED: &[&str] = &[
    "-kernel",
    "-initrd",
    "-chardev",
    "-serial",
    "-object",
    "-drive",
    "-blockdev",
];
const HOTPLUG: &[&str] = &["-device", "-netdev"];

/// Does the kernel's token carry a descriptor teamvirt passed?
fn is_descriptor(tok: &str) -> bool {
    tok.contains("/proc/self/fd/")
        || tok.contains("/dev/fdset/")
        || tok.split(',').any(|kv| {
            kv.strip_prefix("fd=")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

fn count<'a>(it: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut m = BTreeMap::new();
    for t in it {
        *m.entry(t).or_insert(0) += 1;
    }
    m
}

/// (option, value) pairs of a QEMU command line (after argv[0]); a flag
/// has no value.
fn options(args: &[String]) -> Vec<(&str, Option<&str>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let opt = args[i].as_str();
        match args.get(i + 1) {
            Some(v) if !v.starts_with('-') => {
                out.push((opt, Some(v.as_str())));
                i += 2;
            }
            _ => {
                out.push((opt, None));
                i += 1;
            }
        }
    }
    out
}

/// Check the recorded command line against the kernel's one (both without
/// argv[0]); `Err` names what the record adds that nothing explains.
///
/// A record option the kernel does not show verbatim is explained by a
/// kernel option of the same name carrying a descriptor, one for one and
/// with the same `id`/`node-name`: "some `-chardev` of the kernel has a
/// descriptor" explained any number of extra `-chardev socket,path=...` or
/// `file,path=...` options, whose paths the destination then unlinked or
/// created as root.
pub fn check(record: &[String], kernel: &[String]) -> Result<(), String> {
    let rec = options(record);
    let ker = options(kernel);
    let ker_keys: Vec<String> = ker.iter().map(|(o, v)| pair_key(o, *v)).collect();
    let ker_pairs = count(ker_keys.iter().map(String::as_str));
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for (opt, val) in &rec {
        let key = pair_key(opt, *val);
        let n = seen.entry(key.clone()).or_insert(0);
        *n += 1;
        if ker_pairs.get(key.as_str()).copied().unwrap_or(0) >= *n {
            continue;
        }
        unexplained.push((*opt, *val));
    }
    // The kernel's descriptor-carrying options the record did not match
    // verbatim, each usable once.
    let mut spare: Vec<(&str, &str)> = Vec::new();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for (o, v) in &ker {
        let Some(v) = v else { continue };
        let key = pair_key(o, Some(v));
        let n = used.entry(key.clone()).or_insert(0);
        *n += 1;
        if seen.get(key.as_str()).copied().unwrap_or(0) >= *n {
            continue;
        }
        if SUBSTITUTED.contains(o) && is_descriptor(v) {
            spare.push((o, v));
        }
    }
    for (opt, val) in unexplained {
        if HOTPLUG.contains(&opt) {
            continue;
        }
        let found = SUBSTITUTED.contains(&opt)
            && spare
                .iter()
                .position(|(o, v)| *o == opt && ident(v) == val.and_then(ident))
                .map(|i| spare.swap_remove(i))
                .is_some();
        if !found {
            return Err(match val {
                Some(v) => format!("{opt} {v}"),
                None => opt.to_owned(),
            });
        }
    }
    Ok(())
}

/// The name an option's value gives its object (`id=`, `node-name=`, or
/// the same keys of a JSON value), if any.
fn ident(v: &str) -> Option<String> {
    if v.starts_with('{') {
        let j: serde_json::Value = serde_json::from_str(v).ok()?;
        return ["id", "node-name"]
            .iter()
            .find_map(|k| j.get(*k).and_then(|x| x.as_str()).map(str::to_owned));
    }
    teamvirt_qemu::options::split(v).into_iter().find_map(|kv| {
        kv.strip_prefix("id=")
            .or_else(|| kv.strip_prefix("node-name="))
            .map(str::to_owned)
    })
}

fn pair_key(opt: &str, val: Option<&str>) -> String {
    match val {
        Some(v) => format!("{opt}\0{v}"),
        None => opt.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn descriptors_and_hotplug_are_explained() {
        let rec = v(&[
            "-name",
            "guest=a",
            "-S",
            "-kernel",
            "/s/run/a/vmlinuz",
            "-chardev",
            "socket,id=charmonitor,path=/s/run/a/qmp.sock,server=on,wait=off",
            "-device",
            "{\"driver\":\"e1000e\",\"id\":\"hostdev1\"}",
        ]);
        let ker = v(&[
            "-add-fd",
            "fd=15,set=1",
            "-name",
            "guest=a",
            "-S",
            "-kernel",
            "/proc/self/fd/13",
            "-chardev",
            "socket,id=charmonitor,fd=14,server=on,wait=off",
        ]);
        assert_eq!(check(&rec, &ker), Ok(()));
    }

    #[test]
    fn a_forged_option_is_named() {
        let rec = v(&["-name", "guest=a", "-S", "-forged-option"]);
        let ker = v(&["-name", "guest=a", "-S"]);
        assert_eq!(check(&rec, &ker), Err("-forged-option".into()));
        // A path where the kernel shows a path (no descriptor) is not
        // explained either.
        let rec = v(&["-kernel", "/evil"]);
        let ker = v(&["-kernel", "/boot/vmlinuz"]);
        assert_eq!(check(&rec, &ker), Err("-kernel /evil".into()));
        let rec = v(&["-accel", "kvm"]);
        let ker = v(&["-accel", "tcg"]);
        assert!(check(&rec, &ker).is_err());
    }

    /// Issue 17: extra `-chardev socket/file` options in the record passed
    /// because *some* kernel `-chardev` carried a descriptor; the
    /// destination then unlinked or created root files at their paths.
    #[test]
    fn extra_chardevs_are_not_explained_by_another_descriptor() {
        let ker = v(&[
            "-chardev",
            "socket,id=charmonitor,fd=14,server=on,wait=off",
            "-add-fd",
            "fd=15,set=1",
            "-chardev",
            "file,id=charserial0,path=/dev/fdset/1,append=on",
        ]);
        let honest = v(&[
            "-chardev",
            "socket,id=charmonitor,path=/s/run/a/qmp.sock,server=on,wait=off",
            "-chardev",
            "file,id=charserial0,path=/var/log/a.log,append=on",
        ]);
        assert_eq!(check(&honest, &ker), Ok(()));
        for extra in [
            "socket,id=charevil,path=/etc/shadow,server=on,wait=off",
            "file,id=charevil,path=/root/.bashrc",
            // Its own id again: one descriptor explains one option.
            "file,id=charserial0,path=/root/.bashrc",
        ] {
            let mut rec = honest.clone();
            rec.extend(v(&["-chardev", extra]));
            assert_eq!(check(&rec, &ker), Err(format!("-chardev {extra}")));
        }
        // Another object's name is no explanation either.
        let rec = v(&[
            "-chardev",
            "socket,id=charmonitor,path=/s/run/a/qmp.sock,server=on,wait=off",
            "-chardev",
            "file,id=charother,path=/root/x",
        ]);
        assert_eq!(
            check(&rec, &ker),
            Err("-chardev file,id=charother,path=/root/x".into())
        );
    }
}
