//! A real VF's half of a failover pair (issue 17 item 8 for real VFs),
//! without SR-IOV hardware: in a private network namespace, a veth on the
//! bridge stands for the PF and a run directory records a VF of it with
//! the guest's MAC. `netdev::pair::wire` pins the guest's MAC on the PF
//! while the primary is the guest's (the NIC hands what the PF sends to
//! the VF) and locks the standby's port; parked, the standby's port has
//! it; the PF's entry (not a port teamvirt made) is recorded and removed
//! at release; a PF that is not a port of the bridge gets no entry.

use std::path::Path;
use std::process::Command;

use teamvirt_host::netdev::pair::{self, Active};
use teamvirt_testinfra::Netns;

const MAC: &str = "52:54:00:6d:90:02";

/// Run `f` on a thread inside the namespace (netlink calls made from it,
/// and the threads they start, act there).
fn in_ns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    in_ns_named(&ns.name, f)
}

fn in_ns_named<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns(2) on a descriptor we own; it moves only this
        // thread, which ends with `f`.
        let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

fn index_of(ns: &Netns, link: &str) -> u32 {
    let out = ns.ip(&["-j", "link", "show", "dev", link]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["ifindex"].as_u64().unwrap() as u32
}

/// The bridge's entries for the guest's MAC.
fn entries(ns: &Netns) -> Vec<String> {
    let o = Command::new("bridge")
        .args(["-n", &ns.name, "fdb", "show", "br", "br0"])
        .output()
        .expect("bridge (iproute2) runs");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with(MAC))
        .map(str::to_owned)
        .collect()
}

fn locked(ns: &Netns, link: &str) -> bool {
    let l = ns.link(link).unwrap();
    assert!(l.contains("locked "), "no lock state shown: {l}");
    l.contains("locked on")
}

fn write_records(run: &Path, sb_index: u32) {
    write_records_with_ip(run, sb_index, Path::new("/bin/false"));
}

/// [`write_records`] with `ip` as the host's `ip` program (the VF's
/// statistics come from `ip -s -j link show PF`).
fn write_records_with_ip(run: &Path, sb_index: u32, ip: &Path) {
    let netdevs = serde_json::json!([{
        "device": format!("net0 ({MAC})"),
        "ifname": "sb0",
        "ifindex": sb_index,
        "kind": "tap",
        "bridge": "br0",
        "ovs": false,
        "pair": {"mac": MAC, "role": "standby"},
    }]);
    std::fs::write(run.join("netdevs.json"), netdevs.to_string()).unwrap();
    // A VF of `pf0` (index 1) with the guest's MAC; `ip` that fails, so
    // no per-VF statistics.
    let hostdev = serde_json::json!({
        "host": {"sysfs": "/nonexistent", "ip": ip},
        "vfs": [{
            "address": "0000:03:10.2",
            "detached_from": null,
            "pf": ["pf0", 1],
            "original_mac": "00:00:00:00:00:00",
            "vlan_set": false,
            "want": [MAC, null],
            "parked": false,
        }],
    });
    std::fs::write(run.join("hostdev.json"), hostdev.to_string()).unwrap();
}

#[test]
fn a_real_vf_pair_pins_the_pf_and_gives_it_back() {
    let Some(ns) = Netns::new("pairw") else {
        return;
    };
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    for (port, peer) in [("pf0", "pf0p"), ("sb0", "sb0p")] {
        ns.ip(&["link", "add", port, "type", "veth", "peer", "name", peer]);
        ns.ip(&["link", "set", port, "master", "br0", "up"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().to_path_buf();
    write_records(&run, index_of(&ns, "sb0"));

    let r = run.clone();
    let problems = in_ns(&ns, move || pair::wire(&r, Active::Primary));
    assert!(problems.is_empty(), "{problems:?}");
    let e = entries(&ns);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("dev pf0 ") && e[0].contains("static") && e[0].contains("sticky"),
        "pinned on the PF: {e:?}"
    );
    assert!(locked(&ns, "sb0"), "the standby cannot send");
    assert!(!locked(&ns, "pf0"), "the PF is never locked");
    assert!(run.join("fdb.json").exists(), "the PF's entry is recorded");

    // Parked (the guest unplugged its VF): the standby's.
    let r = run.clone();
    let problems = in_ns(&ns, move || pair::wire(&r, Active::Standby));
    assert!(problems.is_empty(), "{problems:?}");
    let e = entries(&ns);
    assert!(e.len() == 1 && e[0].contains("dev sb0 "), "{e:?}");
    assert!(!locked(&ns, "sb0"));
    assert!(
        !run.join("fdb.json").exists(),
        "nothing on the PF to remember"
    );

    // Back on the PF, then the domain's host networking released: the
    // PF's entry goes too (the standby's port is deleted with its own).
    let r = run.clone();
    assert!(in_ns(&ns, move || pair::wire(&r, Active::Primary)).is_empty());
    let r = run.clone();
    let problems = in_ns(&ns, move || teamvirt_host::netdev::release_recorded(&r));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(entries(&ns), Vec::<String>::new());
    assert!(!ns.links().contains(&"sb0".to_string()));

    // A PF that is not a port of the standby's bridge: no entry (the
    // bridge learns the MAC where it comes in), the standby open (the
    // guest sends through it until its VF has a link).
    ns.ip(&["link", "add", "sb0", "type", "veth", "peer", "name", "sb0p"]);
    ns.ip(&["link", "set", "sb0", "master", "br0", "up"]);
    ns.ip(&["link", "set", "pf0", "nomaster"]);
    write_records(&run, index_of(&ns, "sb0"));
    let r = run.clone();
    let problems = in_ns(&ns, move || pair::wire(&r, Active::Primary));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(entries(&ns), Vec::<String>::new());
    assert!(!locked(&ns, "sb0"));
}

/// A migration destination whose guest takes longer than a few seconds to
/// bring its new VF up (igbvf in the nested-TCG lab: 16 s) keeps the
/// standby's port open until the VF has sent something: before, the
/// standby was locked after 3 s while the guest still answered through
/// it, and no reply came back until the VF was up. A pair whose primary
/// QEMU did not plug is not waited for.
#[test]
fn a_slow_vf_leaves_the_standby_open_until_it_sends() {
    let Some(ns) = Netns::new("pairh") else {
        return;
    };
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    for (port, peer) in [("pf0", "pf0p"), ("sb0", "sb0p")] {
        ns.ip(&["link", "add", port, "type", "veth", "peer", "name", peer]);
        ns.ip(&["link", "set", port, "master", "br0", "up"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    // The PF's `ip`: VF 1 has sent as many packets as the file says.
    let tx = dir.path().join("tx");
    std::fs::write(&tx, "5").unwrap();
    let ip = dir.path().join("ip");
    std::fs::write(
        &ip,
        format!(
            "#!/bin/sh\nprintf '[{{\"ifname\":\"pf0\",\"vfinfo_list\":[{{\"vf\":1,\"stats\":{{\"tx\":{{\"packets\":%s}}}}}}]}}]' \"$(cat {})\"\n",
            tx.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_records_with_ip(&run, index_of(&ns, "sb0"), &ip);

    // Resumed on the standby.
    let r = run.clone();
    assert!(in_ns(&ns, move || pair::wire(&r, Active::Standby)).is_empty());
    let r = run.clone();
    let name = ns.name.clone();
    let waiter = std::thread::spawn(move || {
        in_ns_named(&name, move || {
            pair::primary_when_heard(&r, pair::HEARD_BOUND, Some(&[MAC.to_string()]))
        })
    });
    // Longer than the old 3 s bound: the guest still answers through its
    // standby, whose port must stay open and have the guest's MAC.
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(!locked(&ns, "sb0"), "standby locked before the VF sent");
    let e = entries(&ns);
    assert!(e.len() == 1 && e[0].contains("dev sb0 "), "{e:?}");
    // The VF sends: its half becomes the guest's.
    std::fs::write(&tx, "6").unwrap();
    let heard = waiter.join().unwrap();
    assert!(heard.heard, "{heard:?}");
    assert!(heard.problems.is_empty(), "{heard:?}");
    assert!(locked(&ns, "sb0"));
    let e = entries(&ns);
    assert!(e.len() == 1 && e[0].contains("dev pf0 "), "{e:?}");

    // No plugged primary (a guest without failover): nothing to wait for.
    let r = run.clone();
    assert!(in_ns(&ns, move || pair::wire(&r, Active::Standby)).is_empty());
    let r = run.clone();
    let heard = in_ns(&ns, move || {
        pair::primary_when_heard(&r, pair::HEARD_BOUND, Some(&[]))
    });
    assert!(
        !heard.heard && heard.waited < pair::HEARD_BOUND,
        "{heard:?}"
    );
}
