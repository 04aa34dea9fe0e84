//! Standby NICs on real host networking (issue 8 item 1), through the
//! `teamvirt` binary run inside a private network namespace: a tap on a
//! Linux bridge (`type='bridge'` and a `<forward mode='bridge'/>`
//! network), a managed and an unmanaged `type='ethernet'` tap, a macvtap
//! (`type='direct'`), the lab VF on a `--lab-bridge`; what is created is
//! configured as libvirt does it and is gone after destroy, a killed QEMU
//! and a failed start. No guest is booted (the firmware just waits).
//! Skips without root/iproute2 or QEMU.

mod common;

use std::process::{Command, Output};

use common::Env;
use teamvirt_testinfra::xml::{pool_xml, PairDomain};
use teamvirt_testinfra::{qemu_or_skip, Netns};

const MAC: &str = "52:54:00:aa:00:01";

fn domain(name: &str, nics: &str) -> String {
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <uuid>6d3a7b3c-2b8e-4a55-9f3c-0c7f8d9e0a11</uuid>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>{nics}
  </devices>
</domain>
"
    )
}

/// Domain `d`: a teaming pair, its standby on network `standby_net`, its
/// primary from `pool`.
fn pair_domain(standby_net: &str) -> String {
    PairDomain::new("d")
        .domain_type("qemu")
        .uuid("6d3a7b3c-2b8e-4a55-9f3c-0c7f8d9e0a11")
        .mac(MAC)
        .standby("ua-sb")
        .standby_network(standby_net)
        .pool("pool")
        .memballoon(None)
        .xml()
}

fn tv(ns: &Netns, e: &Env, args: &[&str]) -> Output {
    let out = ns.wrap(&e.command(args)).output().unwrap();
    eprintln!(
        "$ teamvirt {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(ns: &Netns, e: &Env, args: &[&str]) -> String {
    let o = tv(ns, e, args);
    assert!(o.status.success(), "teamvirt {args:?} failed");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fail(ns: &Netns, e: &Env, args: &[&str]) -> String {
    let o = tv(ns, e, args);
    assert!(!o.status.success(), "teamvirt {args:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn setup(tag: &str) -> Option<(Netns, Env)> {
    qemu_or_skip(tag)?;
    let ns = Netns::new(tag)?;
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "mtu", "1450", "up"]);
    Some((ns, Env::new()))
}

fn qemu_argv(e: &Env, dom: &str) -> String {
    std::fs::read_to_string(e.run_dir(dom).join("state.json")).unwrap()
}

fn start(ns: &Netns, e: &Env, dom: &str) {
    ok(ns, e, &["start", dom, "--accel", "tcg"]);
}

/// Every tap/macvtap the namespace holds besides the fixtures.
fn created_links(ns: &Netns) -> Vec<String> {
    ns.links()
        .into_iter()
        .filter(|l| l.starts_with("vnet") || l.starts_with("macvtap") || l.starts_with("tv"))
        .collect()
}

#[test]
fn bridge_tap_is_configured_like_libvirt_and_removed_at_destroy() {
    let Some((ns, e)) = setup("br") else { return };
    let nic = format!(
        "<interface type='bridge'><source bridge='br0'/><mac address='{MAC}'/>
           <model type='virtio'/><mtu size='1400'/></interface>"
    );
    let f = e.write("d.xml", &domain("d", &nic));
    ok(&ns, &e, &["define", &f]);
    start(&ns, &e, "d");
    let link = ns.link("vnet0").expect("vnet0 created");
    assert!(link.contains("master br0"), "{link}");
    assert!(link.contains("mtu 1400"), "{link}");
    assert!(
        link.contains("fe:54:00:aa:00:01"),
        "host MAC 0xFE..: {link}"
    );
    assert!(link.contains("state UP") || link.contains(",UP"), "{link}");
    assert!(link.contains("tun"), "a tap: {link}");
    let argv = qemu_argv(&e, "d");
    assert!(argv.contains(r#"\"type\":\"tap\",\"fd\":\""#), "{argv}");
    let rec = std::fs::read_to_string(e.run_dir("d").join("netdevs.json")).unwrap();
    assert!(rec.contains("vnet0") && rec.contains("br0"), "{rec}");
    // domifstat: the tap's counters, by device or MAC, in virsh's lines.
    for key in ["vnet0", MAC] {
        let st = ok(&ns, &e, &["domifstat", "d", key]);
        let keys: Vec<&str> = st
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "rx_bytes",
                "rx_packets",
                "rx_errs",
                "rx_drop",
                "tx_bytes",
                "tx_packets",
                "tx_errs",
                "tx_drop"
            ],
            "{st}"
        );
        assert!(st.starts_with("vnet0 rx_bytes "), "{st}");
    }
    // domifaddr --source arp: the namespace's neighbour entry for the MAC.
    ns.ip(&[
        "neigh",
        "add",
        "192.0.2.7",
        "lladdr",
        MAC,
        "dev",
        "br0",
        "nud",
        "permanent",
    ]);
    let a = ok(&ns, &e, &["domifaddr", "d", "--source", "arp"]);
    assert!(
        a.contains(&format!(" vnet0      {MAC}    ipv4         192.0.2.7/0\n")),
        "{a}"
    );
    ok(&ns, &e, &["destroy", "d"]);
    assert_eq!(created_links(&ns), Vec::<String>::new());
    assert!(!e.run_dir("d").join("netdevs.json").exists());
}

#[test]
fn network_bridge_takes_the_bridge_mtu_and_a_killed_qemu_leaves_nothing() {
    let Some((ns, e)) = setup("nb") else { return };
    let net = e.write(
        "n.xml",
        "<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/></network>",
    );
    ok(&ns, &e, &["net-define", &net]);
    let nic = format!(
        "<interface type='network'><source network='lan'/><mac address='{MAC}'/>
           <target dev='tvstandby'/><model type='virtio'/><driver queues='2'/></interface>"
    );
    let f = e.write("d.xml", &domain("d", &nic));
    ok(&ns, &e, &["define", &f]);
    start(&ns, &e, "d");
    let link = ns.link("tvstandby").expect("<target dev> honoured");
    assert!(
        link.contains("master br0") && link.contains("mtu 1450"),
        "{link}"
    );
    let argv = qemu_argv(&e, "d");
    assert!(argv.contains(r#"\"fds\":\""#), "multiqueue: {argv}");
    // SIGKILL: the next command notices and cleans up.
    let pid: i32 = std::fs::read_to_string(e.run_dir("d").join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) takes plain integers and touches none of our memory.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    for _ in 0..50 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let st = ok(&ns, &e, &["domstate", "d"]);
    assert!(st.contains("shut off"), "{st}");
    assert_eq!(created_links(&ns), Vec::<String>::new());
    assert!(!e.run_dir("d").join("netdevs.json").exists());
}

#[test]
fn network_whose_bridge_is_missing_is_not_active() {
    let Some((ns, e)) = setup("nm") else { return };
    let net = e.write(
        "n.xml",
        "<network><name>lan</name><forward mode='bridge'/><bridge name='brX'/></network>",
    );
    ok(&ns, &e, &["net-define", &net]);
    // A macvtap first: created, then the start fails on the second NIC.
    ns.ip(&[
        "link", "add", "pf0", "type", "veth", "peer", "name", "pf0peer",
    ]);
    let nics = format!(
        "<interface type='direct'><source dev='pf0' mode='bridge'/><mac address='52:54:00:aa:00:02'/>
           <model type='virtio'/></interface>
         <interface type='network'><source network='lan'/><mac address='{MAC}'/>
           <model type='virtio'/></interface>"
    );
    let f = e.write("d.xml", &domain("d", &nics));
    ok(&ns, &e, &["define", &f]);
    let err = fail(&ns, &e, &["start", "d", "--accel", "tcg"]);
    assert!(
        err.contains("network 'lan' is not active: its bridge 'brX' does not exist"),
        "{err}"
    );
    assert_eq!(created_links(&ns), Vec::<String>::new());
    assert!(!e.run_dir("d").join("netdevs.json").exists());
}

#[test]
fn ethernet_managed_and_unmanaged() {
    let Some((ns, e)) = setup("eth") else { return };
    ns.ip(&["tuntap", "add", "tvmine", "mode", "tap"]);
    let before = ns.link("tvmine").unwrap();
    let nics = format!(
        "<interface type='ethernet'><mac address='{MAC}'/><target dev='tvown'/>
           <model type='virtio'/></interface>
         <interface type='ethernet'><mac address='52:54:00:aa:00:03'/>
           <target dev='tvmine' managed='no'/><model type='e1000e'/></interface>"
    );
    let f = e.write("d.xml", &domain("d", &nics));
    ok(&ns, &e, &["define", &f]);
    start(&ns, &e, "d");
    let own = ns.link("tvown").expect("managed tap");
    assert!(
        own.contains("fe:54:00:aa:00:01") && !own.contains("master"),
        "{own}"
    );
    let mine = ns.link("tvmine").unwrap();
    assert!(
        !mine.contains("fe:54:00:aa:00:03"),
        "unmanaged tap untouched: {mine}"
    );
    ok(&ns, &e, &["destroy", "d"]);
    assert!(ns.link("tvown").is_none());
    // Persistent and not ours: still there, as it was.
    let after = ns.link("tvmine").expect("unmanaged tap kept");
    assert_eq!(
        before
            .split_whitespace()
            .find(|w| w.contains(':') && w.len() == 17),
        after
            .split_whitespace()
            .find(|w| w.contains(':') && w.len() == 17)
    );
}

#[test]
fn direct_macvtap_with_the_guest_mac_is_deleted_at_destroy() {
    let Some((ns, e)) = setup("mv") else { return };
    ns.ip(&[
        "link", "add", "pf0", "type", "veth", "peer", "name", "pf0peer",
    ]);
    ns.ip(&["link", "set", "pf0", "up"]);
    let nic = format!(
        "<interface type='direct'><source dev='pf0' mode='bridge'/><mac address='{MAC}'/>
           <model type='virtio'/></interface>"
    );
    let f = e.write("d.xml", &domain("d", &nic));
    ok(&ns, &e, &["define", &f]);
    start(&ns, &e, "d");
    let link = ns.link("macvtap0").expect("macvtap0");
    assert!(
        link.contains(MAC) && link.contains("macvtap mode bridge"),
        "{link}"
    );
    ok(&ns, &e, &["destroy", "d"]);
    assert_eq!(created_links(&ns), Vec::<String>::new());
}

#[test]
fn standby_on_a_nat_network_is_refused() {
    let Some((ns, e)) = setup("nat") else { return };
    let net = e.write(
        "n.xml",
        "<network><name>natnet</name><forward mode='nat'/><bridge name='br0'/></network>",
    );
    let pool = e.write("p.xml", &pool_xml("pool", &["0000:3b:02.1"]));
    ok(&ns, &e, &["net-define", &net]);
    ok(&ns, &e, &["net-define", &pool, "--emulate-vf"]);
    let f = e.write("d.xml", &pair_domain("natnet"));
    ok(&ns, &e, &["define", &f]);
    let err = fail(&ns, &e, &["start", "d", "--accel", "tcg"]);
    assert!(
        err.contains("network 'natnet'") && err.contains("nat"),
        "{err}"
    );
    assert_eq!(created_links(&ns), Vec::<String>::new());
}

#[test]
fn lab_vf_on_a_lab_bridge_and_without_one() {
    let Some((ns, e)) = setup("lab") else { return };
    let net = e.write(
        "n.xml",
        "<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/></network>",
    );
    let pool = e.write("p.xml", &pool_xml("pool", &["0000:3b:02.1"]));
    ok(&ns, &e, &["net-define", &net]);
    let o = tv(
        &ns,
        &e,
        &["net-define", &pool, "--emulate-vf", "--lab-bridge", "br0"],
    );
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("each a tap on bridge 'br0'"));
    let list = ok(&ns, &e, &["net-list", "--all"]);
    assert!(list.contains("(lab mode, bridge br0)"), "{list}");
    let f = e.write("d.xml", &pair_domain("lan"));
    ok(&ns, &e, &["define", &f]);
    start(&ns, &e, "d");
    let ports: Vec<String> = created_links(&ns);
    assert_eq!(ports.len(), 2, "standby and lab VF taps: {ports:?}");
    for p in &ports {
        assert!(ns.link(p).unwrap().contains("master br0"), "{p}");
    }
    let argv = qemu_argv(&e, "d");
    assert!(
        argv.contains(r#"{\"type\":\"tap\",\"fd\":\""#) && argv.contains("lab-hostdev0"),
        "{argv}"
    );
    ok(&ns, &e, &["destroy", "d"]);
    assert_eq!(created_links(&ns), Vec::<String>::new());
    // Without --lab-bridge: isolated, and said so.
    let o = tv(&ns, &e, &["net-define", &pool, "--emulate-vf"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("isolated backend"));
    start(&ns, &e, "d");
    assert_eq!(created_links(&ns).len(), 1, "only the standby's tap");
    ok(&ns, &e, &["destroy", "d"]);
}

#[test]
fn ovs_port_without_open_vswitch_is_a_clear_error() {
    if Command::new("ovs-vsctl").arg("--version").output().is_ok() {
        eprintln!("skipping: Open vSwitch is installed here");
        return;
    }
    let Some((ns, e)) = setup("ovs") else { return };
    let nic = format!(
        "<interface type='bridge'><source bridge='br0'/><mac address='{MAC}'/>
           <virtualport type='openvswitch'/><model type='virtio'/></interface>"
    );
    let f = e.write("d.xml", &domain("d", &nic));
    ok(&ns, &e, &["define", &f]);
    let err = fail(&ns, &e, &["start", "d", "--accel", "tcg"]);
    assert!(err.contains("Open vSwitch is not installed"), "{err}");
    assert_eq!(created_links(&ns), Vec::<String>::new());
}

#[test]
fn validate_warns_about_a_standby_off_the_vf_segment() {
    if qemu_or_skip("validate_warns_about_a_standby_off_the_vf_segment").is_none() {
        return;
    }
    let e = Env::new();
    let pool = e.write("p.xml", &pool_xml("pool", &["0000:3b:02.1"]));
    for (mode, fwd, warned) in [
        ("nat", "<forward mode='nat'/>", true),
        ("none (isolated)", "", true),
        ("bridge", "<forward mode='bridge'/>", false),
    ] {
        let net = e.write(
            "n.xml",
            &format!("<network><name>seg</name>{fwd}<bridge name='br0'/></network>"),
        );
        let f = e.write("d.xml", &pair_domain("seg"));
        let out = e.run(&["validate", "--network", &net, "--network", &pool, &f]);
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        let needle = format!("is on network 'seg' (forward mode '{mode}')");
        assert_eq!(text.contains(&needle), warned, "{mode}: {text}");
    }
}

/// The host-side ports of a pair from the run directory's record:
/// (standby tap, lab VF tap).
fn pair_taps(e: &Env, dom: &str) -> (String, String) {
    let t = std::fs::read_to_string(e.run_dir(dom).join("netdevs.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    let by_label = |prefix: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|c| c["device"].as_str().is_some_and(|d| d.starts_with(prefix)))
            .and_then(|c| c["ifname"].as_str())
            .unwrap_or_else(|| panic!("no {prefix}... port in {t}"))
            .to_string()
    };
    (by_label("net"), by_label("lab"))
}

/// Issue 17 item 8: frames for a failover guest's MAC reach the port of
/// the half its net_failover receives on (the lab primary's, from start),
/// not the standby's and not a bystander's port on the same bridge. The
/// bridge pins the MAC there (static, sticky) and the other half's port is
/// locked (it cannot send as the guest: issue 18's reflected DAD probe).
/// Fails on the old wiring (learning off, flooding: every port got them).
#[test]
fn failover_guest_frames_reach_only_its_active_port() {
    let Some((ns, e)) = setup("iso") else { return };
    if Command::new("ping").arg("-V").output().is_err() {
        eprintln!("skipping: ping (iputils-ping) is not installed");
        return;
    }
    ns.ip(&["addr", "add", "10.78.0.1/24", "dev", "br0"]);
    ns.ip(&[
        "link", "add", "bys0", "type", "veth", "peer", "name", "bys1",
    ]);
    ns.ip(&["link", "set", "bys0", "master", "br0", "up"]);
    ns.ip(&["link", "set", "bys1", "up"]);
    let net = e.write(
        "n.xml",
        "<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/></network>",
    );
    let pool = e.write("p.xml", &pool_xml("pool", &["0000:3b:02.1"]));
    ok(&ns, &e, &["net-define", &net]);
    ok(
        &ns,
        &e,
        &["net-define", &pool, "--emulate-vf", "--lab-bridge", "br0"],
    );
    let f = e.write("d.xml", &pair_domain("lan"));
    ok(&ns, &e, &["define", &f]);
    start(&ns, &e, "d");
    let (sb, lab) = pair_taps(&e, "d");

    let mac: Vec<u8> = MAC
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let mac: [u8; 6] = mac.try_into().unwrap();
    let by = ns.capture_to("bys1", mac);
    let on_sb = ns.capture_to(&sb, mac);
    let on_lab = ns.capture_to(&lab, mac);
    // The guest's address, known without asking (its firmware answers
    // nothing): every echo request is a unicast frame to its MAC.
    ns.ip(&[
        "neigh",
        "replace",
        "10.78.0.2",
        "lladdr",
        MAC,
        "dev",
        "br0",
        "nud",
        "permanent",
    ]);
    let _ = Command::new("ip")
        .args(["netns", "exec", &ns.name, "ping", "-n", "-q", "-c", "40"])
        .args(["-i", "0.01", "-w", "3", "10.78.0.2"])
        .output()
        .expect("ping runs");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (b, s, l) = (by.count(), on_sb.count(), on_lab.count());
    eprintln!("frames to {MAC}: bystander {b}, standby {s}, lab VF {l}");
    assert!(l >= 40, "the active (lab VF) port got them: {l}");
    assert_eq!(s, 0, "the inactive standby got none");
    assert_eq!(b, 0, "the bystander got none");
    drop((by, on_sb, on_lab));

    let fdb = ns.ip_out(&["-d", "link", "show", "dev", &sb]);
    let sb_link = String::from_utf8_lossy(&fdb.stdout).into_owned();
    assert!(sb_link.contains("locked on"), "standby locked: {sb_link}");
    let lab_link = ns.link(&lab).unwrap();
    assert!(
        lab_link.contains("locked off"),
        "lab VF port open: {lab_link}"
    );
    let show = |ns: &Netns| {
        let o = Command::new("bridge")
            .args(["-n", &ns.name, "fdb", "show", "br", "br0"])
            .output()
            .expect("bridge (iproute2) runs");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with(MAC))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let entries = show(&ns);
    assert_eq!(entries.len(), 1, "one entry for the guest: {entries:?}");
    assert!(
        entries[0].contains(&format!("dev {lab} "))
            && entries[0].contains("static")
            && entries[0].contains("sticky"),
        "{entries:?}"
    );

    ok(&ns, &e, &["destroy", "d"]);
    assert_eq!(show(&ns), Vec::<String>::new(), "no entry left");
}

/// A lab VF on another bridge than its standby is the guest's only port
/// on that bridge: the guest's MAC is pinned there and the port is open
/// (a port made locked and left so would cut the lab primary off); the
/// standby, without a primary on its bridge, has its own bridge's entry.
#[test]
fn lab_vf_on_another_bridge_than_its_standby_is_open() {
    let Some((ns, e)) = setup("lab2") else { return };
    ns.ip(&["link", "add", "br1", "type", "bridge"]);
    ns.ip(&["link", "set", "br1", "up"]);
    let net = e.write(
        "n.xml",
        "<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/></network>",
    );
    let pool = e.write("p.xml", &pool_xml("pool", &["0000:3b:02.1"]));
    ok(&ns, &e, &["net-define", &net]);
    ok(
        &ns,
        &e,
        &["net-define", &pool, "--emulate-vf", "--lab-bridge", "br1"],
    );
    let f = e.write("d.xml", &pair_domain("lan"));
    ok(&ns, &e, &["define", &f]);
    start(&ns, &e, "d");
    let (sb, lab) = pair_taps(&e, "d");
    for (port, br) in [(&sb, "br0"), (&lab, "br1")] {
        let l = ns.link(port).unwrap();
        assert!(l.contains(&format!("master {br}")), "{l}");
        assert!(l.contains("locked off"), "{port} open: {l}");
        let o = Command::new("bridge")
            .args(["-n", &ns.name, "fdb", "show", "br", br])
            .output()
            .unwrap();
        let fdb = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            fdb.lines().any(|x| x.starts_with(MAC)
                && x.contains(&format!("dev {port} "))
                && x.contains("static")),
            "{br}: {fdb}"
        );
    }
    ok(&ns, &e, &["destroy", "d"]);
}
