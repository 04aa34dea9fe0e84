//! A virsh script run against teamvirt unchanged (issue 19, "virsh verbs
//! and flags that scripts use"): the lookup verbs (`domid`, `domuuid`,
//! `domname`), `list`'s filters and `--name`/`--uuid`, `domstate
//! --reason`, `dumpxml --inactive/--migratable/--security-info`,
//! `net-list --all/--inactive`, the host verbs (`version`, `uri`,
//! `hostname`, `nodeinfo`), `migrate`'s flags accepted or refused with a
//! reason, and `start --paused` / `destroy --graceful` on a QEMU with no
//! guest (firmware only). Output is compared with virsh's layout: one
//! value a line, then the empty line virsh prints after every command.

mod common;

use common::Env;
use teamvirt_testinfra::qemu_or_skip;
use teamvirt_testinfra::xml::pool_xml;

/// A domain with nothing to boot: QEMU sits in its firmware.
const DOMAIN: &str = "<domain type='qemu'>
  <name>s1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <interface type='user'>
      <mac address='52:54:00:12:34:56'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
";

/// A bridge that no test machine has: the network is inactive.
const LAN: &str = "<network>
  <name>lan</name>
  <forward mode='bridge'/>
  <bridge name='tvnobr9'/>
</network>
";

/// Not a usage error from clap: the flag was taken.
fn accepted(err: &str) {
    assert!(
        !err.contains("unexpected argument") && !err.contains("Usage:"),
        "{err}"
    );
}

#[test]
fn virsh_script_on_a_defined_domain() {
    if qemu_or_skip("virsh_script_on_a_defined_domain").is_none() {
        return;
    }
    let e = Env::new();
    let f = e.write("s1.xml", DOMAIN);
    e.ok(&["define", &f]);

    // for dom in $(virsh list --all --name); do ...
    assert_eq!(e.ok(&["list", "--all", "--name"]), "s1\n\n");
    assert_eq!(e.ok(&["list", "--name"]), "\n");
    assert_eq!(e.ok(&["list", "--inactive", "--name"]), "s1\n\n");
    assert_eq!(e.ok(&["list", "--state-shutoff", "--name"]), "s1\n\n");
    assert_eq!(e.ok(&["list", "--state-running", "--name"]), "\n");
    assert_eq!(e.ok(&["list", "--all", "--state-paused", "--name"]), "\n");
    let table = e.ok(&["list", "--all"]);
    let mut rows = table.lines();
    assert_eq!(rows.next(), Some(" Id   Name   State"), "{table}");
    assert!(rows.any(|r| r == " -    s1     shut off"), "{table}");

    let uuid = e.ok(&["domuuid", "s1"]);
    assert!(uuid.ends_with("\n\n"), "{uuid:?}");
    let uuid = uuid.trim().to_owned();
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(e.ok(&["list", "--all", "--uuid"]), format!("{uuid}\n\n"));
    assert_eq!(
        e.ok(&["list", "--all", "--uuid", "--name"]),
        format!("{uuid} {:<30}\n\n", "s1")
    );
    let j = e.json(&["list", "--all", "--json"]);
    assert_eq!(j[0]["name"], "s1", "{j}");
    assert_eq!(j[0]["uuid"], uuid.as_str(), "{j}");
    assert_eq!(j[0]["state"], "shut_off", "{j}");

    assert_eq!(e.ok(&["domname", &uuid]), "s1\n\n");
    assert_eq!(e.ok(&["domname", &uuid.to_uppercase()]), "s1\n\n");
    assert_eq!(e.ok(&["domid", "s1"]), "-\n\n");
    assert_eq!(e.ok(&["domid", &uuid]), "-\n\n");
    assert_eq!(e.ok(&["domuuid", &uuid]), format!("{uuid}\n\n"));
    assert_eq!(
        e.fail(&["domname", "7"]),
        "error: failed to get domain '7'\nerror: Domain not found: no domain with matching name '7'\n"
    );

    assert_eq!(e.ok(&["domstate", "s1"]), "shut off\n\n");
    assert_eq!(
        e.ok(&["domstate", "s1", "--reason"]),
        "shut off (unknown)\n\n"
    );
    let j = e.json(&["domstate", "s1", "--reason", "--json"]);
    assert_eq!(
        (&j["state"], &j["reason"]),
        (&"shut off".into(), &"unknown".into())
    );

    let inactive = e.ok(&["dumpxml", "--inactive", "s1"]);
    assert!(
        inactive.contains(&format!("<uuid>{uuid}</uuid>")),
        "{inactive}"
    );
    assert_eq!(e.ok(&["dumpxml", "--migratable", "s1"]), inactive);
    assert_eq!(e.ok(&["dumpxml", "--security-info", "s1"]), inactive);

    let lan = e.write("lan.xml", LAN);
    e.ok(&["net-define", &lan]);
    assert!(!e.ok(&["net-list"]).contains("lan"));
    for all in ["--all", "--inactive"] {
        let l = e.ok(&["net-list", all]);
        assert!(
            l.lines()
                .any(|r| r.starts_with(" lan ") && r.contains(" inactive ")),
            "{all}: {l}"
        );
    }

    let v = e.ok(&["version"]);
    let ours = env!("CARGO_PKG_VERSION");
    assert!(
        v.starts_with(&format!(
            "Compiled against library: teamvirt {ours}\nUsing library: teamvirt {ours}\nUsing API: QEMU {ours}\nRunning hypervisor: QEMU "
        )),
        "{v}"
    );
    assert!(v.ends_with("\n\n"), "{v:?}");
    assert_eq!(e.json(&["version", "--json"])["teamvirt"], ours);

    assert_eq!(
        e.ok(&["uri"]),
        format!("teamvirt://{}\n\n", e.state.display())
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(e.ok(&["hostname"]), format!("{}\n\n", host.trim()));

    let n = e.ok(&["nodeinfo"]);
    let labels: Vec<&str> = n
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| &l[..21])
        .collect();
    assert_eq!(
        labels,
        [
            "CPU model:           ",
            "CPU(s):              ",
            "CPU frequency:       ",
            "CPU socket(s):       ",
            "Core(s) per socket:  ",
            "Thread(s) per core:  ",
            "NUMA cell(s):        ",
            "Memory size:         ",
        ],
        "{n}"
    );
    let j = e.json(&["nodeinfo", "--json"]);
    assert!(j["cpus"].as_u64().unwrap() >= 1, "{j}");
    assert!(j["memory_kib"].as_u64().unwrap() > 0, "{j}");

    // migrate's virsh flags: taken (the migration itself fails: nothing
    // runs, no destination) or refused naming the flag and why.
    let dest = e.state.parent().unwrap().join("dest");
    let dest = dest.to_str().unwrap();
    let err = e.fail(&[
        "migrate",
        "s1",
        "--live",
        "--p2p",
        "--verbose",
        "--persistent",
        "--undefinesource",
        "--timeout",
        "30",
        "--bandwidth",
        "100",
        "--dest-state-dir",
        dest,
    ]);
    accepted(&err);
    assert!(
        err.starts_with("error: Failed to migrate domain 's1'\n"),
        "{err}"
    );
    for flag in [
        "--postcopy",
        "--auto-converge",
        "--compressed",
        "--parallel",
    ] {
        let err = e.fail(&["migrate", "s1", flag, "--dest-state-dir", dest]);
        assert!(
            err.starts_with(&format!("error: unsupported flag {flag}: ")),
            "{err}"
        );
    }

    // destroy --graceful on a shut-off domain: virsh's error, not clap's.
    let err = e.fail(&["destroy", "--graceful", "s1"]);
    accepted(&err);
    assert!(err.contains("domain is not running"), "{err}");
}

/// `start --paused` leaves the vCPUs stopped (virsh's `paused (user)`),
/// `resume` runs them, `destroy --graceful` stops QEMU with SIGTERM only;
/// `domstate --reason` and `domid` follow each step.
#[test]
fn start_paused_resume_destroy_graceful() {
    if qemu_or_skip("start_paused_resume_destroy_graceful").is_none() {
        return;
    }
    let e = Env::new();
    let f = e.write("s1.xml", DOMAIN);
    e.ok(&["define", &f]);
    let err = e.fail(&["start", "s1", "--paused", "--wait-failover"]);
    assert!(err.contains("cannot be used with"), "{err}");

    e.ok(&["start", "s1", "--paused", "--accel", "tcg"]);
    assert_eq!(e.ok(&["domstate", "s1", "--reason"]), "paused (user)\n\n");
    assert_eq!(e.ok(&["list", "--state-paused", "--name"]), "s1\n\n");
    assert_eq!(e.ok(&["list", "--state-running", "--name"]), "\n");
    let id = e.ok(&["domid", "s1"]);
    let id = id.trim();
    assert!(id.parse::<u32>().is_ok(), "{id}");
    assert_eq!(e.ok(&["domname", id]), "s1\n\n");
    // What a migration would carry: no domain id, no runtime metadata.
    let m = e.ok(&["dumpxml", "--migratable", "s1"]);
    let live = e.ok(&["dumpxml", "s1"]);
    assert!(live.contains(&format!(" id='{id}'")), "{live}");
    assert!(live.contains("teamvirt:runtime"), "{live}");
    assert!(m.starts_with("<domain type='qemu'>\n"), "{m}");
    assert!(!m.contains("teamvirt:runtime"), "{m}");

    e.ok(&["resume", "s1"]);
    assert_eq!(
        e.ok(&["domstate", "s1", "--reason"]),
        "running (unpaused)\n\n"
    );
    e.ok(&["destroy", "--graceful", "s1"]);
    assert_eq!(
        e.ok(&["domstate", "s1", "--reason"]),
        "shut off (destroyed)\n\n"
    );
    assert_eq!(e.ok(&["domid", "s1"]), "-\n\n");

    e.ok(&["start", "s1", "--accel", "tcg"]);
    assert_eq!(
        e.ok(&["domstate", "s1", "--reason"]),
        "running (booted)\n\n"
    );
    e.ok(&["destroy", "s1"]);
}

/// The new verbs are in `help`, the man pages and the completions (all
/// generated from the one clap definition).
#[test]
fn new_verbs_in_help_man_and_completions() {
    let e = Env::new();
    let help = e.ok(&["help"]);
    let dir = e.state.parent().unwrap().join("man");
    e.ok2(&["man", "--dir", dir.to_str().unwrap()]);
    let bash = e.ok(&["completions", "bash"]);
    for verb in [
        "domid", "domuuid", "domname", "version", "uri", "hostname", "nodeinfo",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{verb} "))),
            "{verb} not in help: {help}"
        );
        assert!(dir.join(format!("teamvirt-{verb}.1")).is_file(), "{verb}");
        assert!(bash.contains(verb), "{verb}");
    }
    let list = e.ok(&["list", "--help"]);
    for flag in [
        "--inactive",
        "--uuid",
        "--state-running",
        "--state-shutoff",
        "--state-paused",
    ] {
        assert!(list.contains(flag), "{flag}: {list}");
    }
}

/// The VF pool `pool`.
fn pool() -> String {
    pool_xml("pool", &["0000:3b:02.1"])
}

/// A teaming pair whose primary comes from the pool.
const PAIR: &str = "<domain type='qemu'>
  <name>p1</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <interface type='user'>
      <mac address='52:54:00:00:00:01'/>
      <model type='virtio'/>
      <teaming type='persistent'/>
      <alias name='ua-sb'/>
    </interface>
    <interface type='network'>
      <source network='pool'/>
      <mac address='52:54:00:00:00:01'/>
      <model type='virtio'/>
      <teaming type='transient' persistent='ua-sb'/>
    </interface>
  </devices>
</domain>
";

/// `dumpxml --migratable` of a running domain: the pool VF shows as the
/// network interface it was defined as (the destination takes its own),
/// the aliases and addresses stay, the runtime-only parts go.
#[test]
fn migratable_xml_of_a_running_domain_with_a_pool_vf() {
    if qemu_or_skip("migratable_xml_of_a_running_domain_with_a_pool_vf").is_none() {
        return;
    }
    let e = Env::new();
    e.ok(&["net-define", &e.write("pool.xml", &pool()), "--emulate-vf"]);
    e.ok(&["define", &e.write("p1.xml", PAIR)]);
    e.ok(&["start", "p1", "--accel", "tcg"]);
    let live = e.ok(&["dumpxml", "p1"]);
    assert!(
        live.contains("<interface type='hostdev' managed='yes'>"),
        "{live}"
    );
    let m = e.ok(&["dumpxml", "--migratable", "p1"]);
    assert!(m.starts_with("<domain type='qemu'>\n"), "{m}");
    assert!(!m.contains("teamvirt:runtime"), "{m}");
    assert!(!m.contains("type='hostdev'"), "{m}");
    assert!(
        m.contains(
            "<interface type='network'>
      <mac address='52:54:00:00:00:01'/>
      <source network='pool'/>"
        ),
        "{m}"
    );
    assert!(m.contains("<alias name='hostdev0'/>"), "{m}");
    e.ok(&["suspend", "p1"]);
    assert_eq!(e.ok(&["domstate", "p1", "--reason"]), "paused (user)\n\n");
    e.ok(&["destroy", "p1"]);
}
