//! `net-start` / `net-destroy` with virsh's texts: a stopped network
//! refuses new devices and keeps running domains; a network whose bridge
//! is missing is inactive and cannot be started; `net-define` +
//! `net-start` (a virsh script) works; autostart brings a network back.

mod common;

use common::Env;
use teamvirt_testinfra::qemu_or_skip;
use teamvirt_testinfra::xml::{pool_xml, PairDomain};

/// The VF pool `vfpool`.
fn pool() -> String {
    pool_xml("vfpool", &["0000:3b:02.1"])
}

/// A bridge that no test machine has.
const LAN: &str = "<network>
  <name>lan</name>
  <forward mode='bridge'/>
  <bridge name='tvnobr0'/>
</network>
";

/// A teaming pair whose primary comes from `vfpool`.
fn domain() -> String {
    PairDomain::new("n1")
        .standby("ua-backup0")
        .memballoon(None)
        .xml()
}

fn row<'a>(list: &'a str, net: &str) -> &'a str {
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(net))
        .unwrap_or_else(|| panic!("{net} not in {list}"))
}

/// `net-start` says one thing: started (the first after `net-define`, as
/// a virsh script expects, or after `net-destroy`), or libvirt's error on
/// a network already started (issue 19: it printed "started" and "already
/// active" both, and succeeded).
#[test]
fn net_start_says_started_or_already_active() {
    let e = Env::new();
    let pool = e.write("pool.xml", &pool());
    e.ok(&["net-define", &pool, "--emulate-vf"]);
    let already = "error: Failed to start network vfpool\nerror: Requested operation is not valid: network is already active\n";
    for _ in 0..2 {
        let (out, err) = e.ok2(&["net-start", "vfpool"]);
        assert_eq!(
            (out.as_str(), err.as_str()),
            ("Network vfpool started\n", "")
        );
        let out = e.run(&["net-start", "vfpool"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        assert_eq!(String::from_utf8_lossy(&out.stderr), already);
        assert!(row(&e.ok(&["net-list"]), "vfpool").contains(" active "));
        e.ok(&["net-destroy", "vfpool"]);
    }
    // A network defined anew starts as the first time.
    e.ok(&["net-undefine", "vfpool"]);
    e.ok(&["net-define", &pool, "--emulate-vf"]);
    assert_eq!(e.ok(&["net-start", "vfpool"]), "Network vfpool started\n");
    assert_eq!(e.fail(&["net-start", "vfpool"]), already);
}

#[test]
fn stopped_network_refuses_new_devices_until_started() {
    let Some(_) = qemu_or_skip("stopped_network_refuses_new_devices_until_started") else {
        return;
    };
    let e = Env::new();
    let pool = e.write("pool.xml", &pool());
    e.ok(&["net-define", &pool, "--emulate-vf"]);
    let dom = e.write("d.xml", &domain());
    e.ok(&["define", &dom]);
    assert!(row(&e.ok(&["net-list"]), "vfpool").contains(" active "));

    // A virsh script's net-start after net-define succeeds.
    let (out, err) = e.ok2(&["net-start", "vfpool"]);
    assert_eq!(out, "Network vfpool started\n");
    assert_eq!(err, "");

    assert_eq!(
        e.ok(&["net-destroy", "vfpool"]),
        "Network vfpool destroyed\n"
    );
    let list = e.ok(&["net-list", "--all"]);
    assert!(row(&list, "vfpool").contains(" inactive "), "{list}");
    // As virsh: plain net-list shows active networks only, --inactive
    // the others.
    assert!(!e.ok(&["net-list"]).contains("vfpool"));
    assert!(row(&e.ok(&["net-list", "--inactive"]), "vfpool").contains(" inactive "));
    assert!(e
        .json(&["net-list", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    let j = e.json(&["net-list", "--all", "--json"]);
    assert_eq!(j[0]["activity"]["state"], "inactive", "{j}");
    assert_eq!(j[0]["activity"]["reason"], "stopped by net-destroy", "{j}");
    let err = e.fail(&["net-destroy", "vfpool"]);
    assert_eq!(
        err,
        "error: Failed to destroy network vfpool\nerror: Requested operation is not valid: network 'vfpool' is not active\n"
    );

    // No new VF from a stopped network; nothing is left booked.
    let err = e.fail(&["start", "n1", "--accel", "tcg"]);
    assert!(
        err.contains("Requested operation is not valid: network 'vfpool' is not active"),
        "{err}"
    );
    assert_eq!(e.vfs_used("vfpool"), 0);
    assert_eq!(e.ok(&["domstate", "n1"]).trim(), "shut off");

    assert_eq!(e.ok(&["net-start", "vfpool"]), "Network vfpool started\n");
    e.ok(&["start", "n1", "--accel", "tcg"]);
    assert_eq!(e.vfs_used("vfpool"), 1);

    // Stopping the network leaves the running domain and its VF alone.
    let (out, err) = e.ok2(&["net-destroy", "vfpool"]);
    assert_eq!(out, "Network vfpool destroyed\n");
    assert!(err.contains("1 VF(s)"), "{err}");
    assert_eq!(e.ok(&["domstate", "n1"]).trim(), "running");
    e.ok(&["destroy", "n1"]);
    assert_eq!(e.vfs_used("vfpool"), 0);

    // Autostart brings a stopped network back.
    e.ok(&["net-autostart", "vfpool"]);
    assert!(row(&e.ok(&["net-list", "--all"]), "vfpool").contains(" yes "));
    let out = e.ok(&["start-autostart"]);
    // The lab-mode pool offers the one VF it lists (none exists here).
    assert!(out.contains("Network 'vfpool' is active (1 VFs)"), "{out}");
    assert!(row(&e.ok(&["net-list"]), "vfpool").contains(" active "));

    // Undefine forgets the stopped state with the network.
    e.ok(&["net-destroy", "vfpool"]);
    e.ok(&["undefine", "n1"]);
    e.ok(&["net-undefine", "vfpool"]);
    e.ok(&["net-define", &pool, "--emulate-vf"]);
    assert!(row(&e.ok(&["net-list"]), "vfpool").contains(" active "));
}

#[test]
fn network_without_its_bridge_is_inactive_and_cannot_start() {
    let e = Env::new();
    let lan = e.write("lan.xml", LAN);
    e.ok(&["net-define", &lan]);
    let list = e.ok(&["net-list", "--all"]);
    assert!(row(&list, "lan").contains(" inactive "), "{list}");
    let j = e.json(&["net-list", "--all", "--json"]);
    assert_eq!(
        j[0]["activity"]["reason"], "its bridge 'tvnobr0' does not exist",
        "{j}"
    );
    let err = e.fail(&["net-start", "lan"]);
    assert_eq!(
        err,
        "error: Failed to start network lan\nerror: Requested operation is not valid: network 'lan' cannot be started: its bridge 'tvnobr0' does not exist\n"
    );
    let err = e.fail(&["net-start", "nope"]);
    assert!(
        err.starts_with("error: failed to get network 'nope'"),
        "{err}"
    );
}
