//! A real distro guest through live migrations (issue 18): Debian 12 built
//! with mmdebstrap (`scripts/build-debian-guest.sh`, cached), direct kernel
//! boot from a virtio disk, q35, 512 MiB, TCG, a failover pair in lab mode
//! (`--emulate-vf --lab-bridge`) on a bridge in a private network namespace.
//! The guest's own ifupdown puts its address on the failover master; a
//! reporter unit prints the network state on the serial console.
//!
//! Booted once, then migrated between two state directories
//! `TEAMVIRT_REAL_GUEST_MIGRATIONS` times (default 4; the first migration
//! follows the boot), the bridge pinging it at 100 packets per second.
//! Asserted per migration: the guest is alive (a heartbeat after the
//! switchover, none of the kernel's corruption reports on either side's
//! console), the primary is re-enslaved, replies resume. Printed: packets
//! lost and the longest gap. `TEAMVIRT_REAL_GUEST_LOAD=K` runs K CPU-bound
//! loops beside it (the loaded host); `TEAMVIRT_REAL_GUEST_EMULATOR`
//! sets the domain's `<emulator>` (a wrapper, to bisect the command line)
//! and `TEAMVIRT_REAL_GUEST_DEVICES` adds XML to its `<devices>` (e.g.
//! `<memballoon model='none'/>`);
//! `TEAMVIRT_REAL_GUEST_LOGS=DIR` keeps both sides' serial consoles and
//! domain logs there.
//!
//! `debian_guest_doctor`: the same guest with a QEMU guest agent channel,
//! booted once per network configuration (picked by `tvnet=` on the kernel
//! command line, see `scripts/build-debian-guest.sh`): `teaming`'s guest
//! doctor passes systemd-networkd matching the master by name and ifupdown
//! on the master (also after a migration, where `domifaddr
//! --source agent` and `shutdown --mode agent` are used too) and flags
//! systemd-networkd's `[Match] Name=en*` and ifupdown configuring the
//! standby slave with the default route (the route read from the guest's
//! `/proc/net/route`: its agent, 7.2, has no route command). The doctor
//! also runs by itself: after `start --wait-failover` (domain log), after
//! a migration (the slave trap flagged on `migrate`'s stderr and in the
//! destination's domain log).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use serde_json::Value;
use teamvirt_testinfra::traffic::{epoch, Pinger};
use teamvirt_testinfra::xml::{pool_xml, PairDomain};
use teamvirt_testinfra::{
    debian_guest_or_skip, guest_lock, qemu_or_skip, temp_dir, DebianGuest, Netns, SerialLog,
    DEBIAN_GUEST_IP,
};

const MAC: &str = "52:54:00:78:00:02";
const NAME: &str = "deb";
/// What the kernel prints when the guest's memory went bad (the issue's
/// crashes after the switchover).
const CRASH_MARKS: [&str; 6] = [
    "kernel BUG",
    "general protection fault",
    "list_del corruption",
    "is not a head",
    "soft lockup",
    "Kernel panic",
];

fn domain(g: &DebianGuest, disk: &Path, emulator: Option<&str>, extra: &str) -> String {
    domain_with(g, disk, emulator, extra, &g.cmdline())
}

fn domain_with(
    g: &DebianGuest,
    disk: &Path,
    emulator: Option<&str>,
    extra: &str,
    cmdline: &str,
) -> String {
    let emulator = emulator.map_or_else(String::new, |e| format!("    <emulator>{e}</emulator>\n"));
    PairDomain::new(NAME)
        .memory_mib(512)
        .mac(MAC)
        .standby_network("lan")
        .standby_bus(1)
        .boot(&g.kernel, &g.initrd, cmdline)
        .memballoon(None)
        .devices_first(&emulator)
        .devices(&format!(
            "    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    {extra}
",
            disk.display()
        ))
        .after_devices("  <on_poweroff>destroy</on_poweroff>\n")
        .xml()
}

const LAN: &str = "<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/></network>";

/// The VF pool `vfpool` with one VF.
fn pool() -> String {
    pool_xml("vfpool", &["0000:3b:02.1"])
}

struct Host<'a> {
    ns: &'a Netns,
    env: Env,
}

impl Host<'_> {
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ns.wrap(&self.env.command(args)).output().unwrap();
        eprintln!(
            "$ teamvirt {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "teamvirt {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn serial(&self) -> SerialLog {
        SerialLog::new(self.env.run_dir(NAME).join("serial.log"))
    }
}

/// CPU-bound loops beside the guest (`sh -c 'while :; do :; done'`),
/// killed when dropped.
struct Load(Vec<Child>);

impl Load {
    fn start(n: usize) -> Load {
        Load(
            (0..n)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("sh runs")
                })
                .collect(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Copies of the consoles and domain logs (`TEAMVIRT_REAL_GUEST_LOGS`),
/// taken before a side's console is started afresh and when dropped (also
/// after a failed assertion).
struct KeepLogs<'a> {
    dir: Option<std::path::PathBuf>,
    hosts: &'a [Host<'a>; 2],
}

impl KeepLogs<'_> {
    fn save(&self, tag: &str) {
        let Some(dir) = &self.dir else { return };
        let _ = std::fs::create_dir_all(dir);
        for (i, h) in self.hosts.iter().enumerate() {
            let serial = h.env.run_dir(NAME).join("serial.log");
            let _ = std::fs::copy(serial, dir.join(format!("serial-{tag}-host{i}.log")));
            let log = h.env.state.join("log").join(format!("{NAME}.log"));
            let _ = std::fs::copy(log, dir.join(format!("domain-host{i}.log")));
        }
    }
}

impl Drop for KeepLogs<'_> {
    fn drop(&mut self) {
        self.save("end");
    }
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The kernel's corruption reports in `lines`.
fn crashes(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| CRASH_MARKS.iter().any(|m| l.contains(m)))
        .cloned()
        .collect()
}

/// `migrate --json`; returns (success, the phases with their times).
fn migrate(from: &Host, to: &Host) -> (bool, Vec<(f64, String)>) {
    let dst = to.env.state.display().to_string();
    let args = ["migrate", "--json", "--dest-state-dir", &dst, NAME];
    let mut child = from
        .ns
        .wrap(&from.env.command(&args))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut phases = Vec::new();
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        let l = l.unwrap();
        let Ok(v) = serde_json::from_str::<Value>(&l) else {
            continue;
        };
        if let (true, Some(p)) = (v["event"] == "phase", v["phase"].as_str()) {
            phases.push((epoch(), p.to_owned()));
        }
    }
    (child.wait().unwrap().success(), phases)
}

/// Which requests of a window went unanswered, between which replies
/// (times from the migration's start), and the peer's ping socket drop
/// counters (a socket that overflowed drops replies that did arrive).
fn lost_detail(ns: &Netns, replies: &[(f64, u64)], from: f64, to: f64, t0: f64) {
    let inside: Vec<(f64, u64)> = replies
        .iter()
        .copied()
        .filter(|r| r.0 >= from && r.0 <= to)
        .collect();
    let seqs: std::collections::BTreeMap<u64, f64> = inside.iter().map(|r| (r.1, r.0)).collect();
    let (Some(&lo), Some(&hi)) = (seqs.keys().next(), seqs.keys().last()) else {
        return;
    };
    for s in lo..=hi {
        if seqs.contains_key(&s) {
            continue;
        }
        let before = seqs.range(..s).next_back();
        let after = seqs.range(s..).next();
        eprintln!(
            "  lost seq {s}: previous reply seq {:?} at {:+.3}s, next seq {:?} at {:+.3}s",
            before.map(|b| b.0),
            before.map_or(0.0, |b| b.1 - t0),
            after.map(|a| a.0),
            after.map_or(0.0, |a| a.1 - t0)
        );
    }
    peer_sockets(ns);
}

/// The peer's ICMP sockets (`/proc/net/raw` and `/proc/net/icmp` of its
/// namespace: ping's socket, its receive queue and drop counter).
fn peer_sockets(ns: &Netns) {
    let out = ns
        .wrap(Command::new("cat").args(["/proc/net/raw", "/proc/net/icmp"]))
        .output();
    if let Ok(o) = out {
        eprintln!("  peer sockets:\n{}", String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn debian_guest_through_migrations() {
    let test = "debian_guest_through_migrations";
    let Some(_) = qemu_or_skip(test) else {
        return;
    };
    let Some(guest) = debian_guest_or_skip(test) else {
        return;
    };
    if Command::new("ping").arg("-V").output().is_err() {
        eprintln!("skipping {test}: ping (iputils-ping) is not installed");
        return;
    }
    let guest = guest.expect("Debian guest image");
    let n = env_num("TEAMVIRT_REAL_GUEST_MIGRATIONS", 4);
    let emulator = std::env::var("TEAMVIRT_REAL_GUEST_EMULATOR").ok();
    let extra = std::env::var("TEAMVIRT_REAL_GUEST_DEVICES").unwrap_or_default();
    let _lock = guest_lock();
    let Some(ns) = Netns::new("realguest") else {
        return;
    };
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.78.0.1/24", "dev", "br0"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let hosts = [
        Host {
            ns: &ns,
            env: Env::new(),
        },
        Host {
            ns: &ns,
            env: Env::new(),
        },
    ];
    for h in &hosts {
        let lan = h.env.write("lan.xml", LAN);
        let pool = h.env.write("pool.xml", &pool());
        h.ok(&["net-define", &lan]);
        h.ok(&["net-define", &pool, "--emulate-vf", "--lab-bridge", "br0"]);
    }
    let keep = KeepLogs {
        dir: std::env::var_os("TEAMVIRT_REAL_GUEST_LOGS").map(Into::into),
        hosts: &hosts,
    };
    let disk_dir = temp_dir();
    let disk = guest
        .disk_copy(disk_dir.path())
        .expect("copy of the root image");
    let xml = hosts[0]
        .env
        .write("d.xml", &domain(&guest, &disk, emulator.as_deref(), &extra));
    let _load = Load::start(env_num("TEAMVIRT_REAL_GUEST_LOAD", 0));
    hosts[0].ok(&["define", &xml]);
    hosts[0].ok(&["start", NAME, "--accel", "tcg", "--wait-failover=300"]);
    let boot = hosts[0]
        .serial()
        .wait_for_failover_master(2, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("boot: {e}"));
    eprintln!("booted: {}", boot.raw);

    let ping = Pinger::start(&ns, DEBIAN_GUEST_IP);
    let t = Instant::now();
    while ping.replies_after(ping.started) < 50 {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "no replies from the guest's ifupdown address {DEBIAN_GUEST_IP}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut report = Vec::new();
    for i in 0..n {
        let (from, to) = (&hosts[i % 2], &hosts[(i + 1) % 2]);
        keep.save(&format!("before{}", i + 1));
        let up_before = from.serial().heartbeats().last().copied().unwrap_or(0.0);
        let t0 = epoch();
        let (ok, phases) = migrate(from, to);
        let t1 = epoch();
        assert!(ok, "migration {}: migrate failed", i + 1);
        // Re-enslaved on the destination: a state printed there after
        // the migration began, with both slaves.
        let s = to.serial();
        let st = s
            .wait_for_state(
                "the primary re-enslaved",
                |st| st.uptime > up_before && st.failover_master(2).is_some(),
                Duration::from_secs(120),
            )
            .unwrap_or_else(|e| panic!("migration {}: {e}", i + 1));
        let t = Instant::now();
        while ping.replies_after(t1) < 100 {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "migration {}: replies did not resume",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Alive a few seconds after the switchover (the corruption showed
        // within ~1.5 s of the destination resuming).
        s.wait_for_heartbeat_after(st.uptime + 3.0, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("migration {}: guest not alive: {e}", i + 1));
        let mut lines = from.serial().lines();
        lines.extend(s.lines());
        let bad = crashes(&lines);
        assert!(
            bad.is_empty(),
            "migration {}: the guest's kernel reports corruption:\n{}",
            i + 1,
            bad.join("\n")
        );
        let w = ping.window(t0 - 0.5, epoch());
        let marks: Vec<String> = phases
            .iter()
            .map(|(t, p)| format!("{:+.2}s {p}", t - t0))
            .collect();
        report.push(format!(
            "migration {:>3}: {w} ({:.1} s; {})",
            i + 1,
            t1 - t0,
            marks.join(", ")
        ));
        eprintln!("{}", report.last().unwrap());
        if w.lost > 0 {
            lost_detail(&ns, &ping.replies(), w.from, w.to, t0);
        }
    }
    eprintln!("Debian guest, {n} migrations at 100 pps:");
    for r in &report {
        eprintln!("  {r}");
    }
    // Replies that reached the peer but overflowed its ping socket count
    // as lost above: the socket's drop counter (last column) tells.
    peer_sockets(&ns);

    // `reboot` (a reset, as `virsh reset`): the guest boots again, its
    // net_failover enslaves the primary anew and the peer reaches it.
    let last = &hosts[n % 2];
    let up = last.serial().latest_state().map_or(0.0, |s| s.uptime);
    last.ok(&["reboot", NAME]);
    let st = last
        .serial()
        .wait_for_state(
            "a new boot with the primary enslaved",
            |s| s.uptime < up && s.failover_master(2).is_some(),
            Duration::from_secs(300),
        )
        .unwrap_or_else(|e| panic!("reboot: {e}"));
    eprintln!("rebooted: {}", st.raw);
    let t = Instant::now();
    let after = epoch();
    while ping.replies_after(after) < 50 {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "no replies from the guest after its reboot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(ping);
    last.ok(&["destroy", NAME]);
}

/// libvirt's guest agent channel, the socket path left to teamvirt.
const AGENT_CHANNEL: &str = "<channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>";

/// The warning codes of the first pair in a `teaming --json`.
fn doctor_codes(t: &Value) -> Vec<String> {
    t["guest"]["pairs"][0]["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|f| f["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn holds(t: &Value, role: &str, addr: &str) -> bool {
    t["guest"]["pairs"][0][role]["addresses"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == addr))
}

/// Poll `teaming --json` until the agent answers and `done` holds (the
/// guest's configuration settled), at most `timeout`; the last answer and
/// the stderr of every poll.
fn doctor_until(h: &Host, timeout: Duration, done: impl Fn(&Value) -> bool) -> (Value, String) {
    let t = Instant::now();
    let mut stderr = String::new();
    loop {
        let out =
            h.ns.wrap(&h.env.command(&["teaming", "--json", NAME]))
                .output()
                .unwrap();
        stderr.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "teaming: {stderr}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["guest"]["status"] == "connected" && done(&v) {
            return (v, stderr);
        }
        if t.elapsed() > timeout {
            eprintln!("doctor did not settle: {v:#}");
            return (v, stderr);
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The domain log of `h`.
fn domain_log(h: &Host) -> String {
    std::fs::read_to_string(h.env.state.join("log").join(format!("{NAME}.log"))).unwrap_or_default()
}

#[test]
fn debian_guest_doctor() {
    let test = "debian_guest_doctor";
    let Some(_) = qemu_or_skip(test) else {
        return;
    };
    let Some(guest) = debian_guest_or_skip(test) else {
        return;
    };
    let guest = guest.expect("Debian guest image");
    let _lock = guest_lock();
    let Some(ns) = Netns::new("guestdoc") else {
        return;
    };
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.78.0.1/24", "dev", "br0"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let hosts = [
        Host {
            ns: &ns,
            env: Env::new(),
        },
        Host {
            ns: &ns,
            env: Env::new(),
        },
    ];
    for h in &hosts {
        let lan = h.env.write("lan.xml", LAN);
        let pool = h.env.write("pool.xml", &pool());
        h.ok(&["net-define", &lan]);
        h.ok(&["net-define", &pool, "--emulate-vf", "--lab-bridge", "br0"]);
    }
    let _keep = KeepLogs {
        dir: std::env::var_os("TEAMVIRT_REAL_GUEST_LOGS").map(Into::into),
        hosts: &hosts,
    };
    let disk_dir = temp_dir();
    let disk = guest
        .disk_copy(disk_dir.path())
        .expect("copy of the root image");
    const ADDR: &str = "10.78.0.2/24";
    let settle = Duration::from_secs(180);
    // One boot per configuration: (tvnet=, warnings the doctor must give).
    // The routes come from the guest's /proc/net/route, so the default
    // route via the standby is seen; networkd's `Name=en*` may put a
    // default route on the slaves too (which one wins is networkd's).
    let configs: [(&str, &[&str]); 4] = [
        ("networkd-en", &["slave-address", "slave-address"]),
        (
            "ifupdown-slave",
            &["slave-address", "slave-default-route", "master-no-address"],
        ),
        ("networkd-master", &[]),
        ("ifupdown", &[]),
    ];
    let h = &hosts[0];
    for (mode, want) in configs {
        let cmdline = format!("{} tvnet={mode}", guest.cmdline());
        let xml = h.env.write(
            "d.xml",
            &domain_with(&guest, &disk, None, AGENT_CHANNEL, &cmdline),
        );
        h.ok(&["define", &xml]);
        h.ok(&["start", NAME, "--accel", "tcg", "--wait-failover=300"]);
        // The doctor ran after the failover wait (the agent may not be up
        // yet: then a note, never a failure).
        assert!(
            domain_log(h).contains("guest doctor after start:"),
            "{mode}: {}",
            domain_log(h)
        );
        h.serial()
            .wait_for_failover_master(2, Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("{mode}: boot: {e}"));
        let (t, _) = match mode {
            "networkd-en" => doctor_until(h, settle, |t| {
                holds(t, "master", ADDR) && holds(t, "standby", ADDR) && holds(t, "primary", ADDR)
            }),
            // ifupdown adds the gateway after the address.
            "ifupdown-slave" => doctor_until(h, settle, |t| {
                holds(t, "standby", ADDR)
                    && t["guest"]["pairs"][0]["standby"]["default_route"] == true
                    && t["guest"]["pairs"][0]["primary"].is_object()
            }),
            _ => doctor_until(h, settle, |t| {
                holds(t, "master", ADDR) && t["guest"]["pairs"][0]["primary"].is_object()
            }),
        };
        eprintln!("{mode}: {:#}", t["guest"]);
        h.ok(&["teaming", NAME]);
        assert_eq!(t["guest"]["status"], "connected", "{mode}: {t:#}");
        let p = &t["guest"]["pairs"][0];
        assert_eq!(p["master"]["name"], "enp1s0", "{mode}: {t:#}");
        assert_eq!(p["standby"]["name"], "enp1s0nsby", "{mode}: {t:#}");
        assert!(p["primary"]["name"].is_string(), "{mode}: {t:#}");
        assert_eq!(
            t["guest"]["routes_source"], "/proc/net/route",
            "{mode}: {t:#}"
        );
        let got = doctor_codes(&t);
        if mode == "networkd-en" {
            // Two slaves with the address; default routes via them may
            // come on top.
            let rest: Vec<&String> = got.iter().filter(|c| *c != "slave-default-route").collect();
            assert_eq!(rest, want, "{mode}: {t:#}");
        } else {
            assert_eq!(got, want, "{mode}: {t:#}");
        }
        if mode == "ifupdown-slave" {
            // The trap once more after a migration: the doctor runs on
            // the destination before `migrate` returns, its warnings on
            // migrate's stderr and in the destination's domain log.
            let dst = hosts[1].env.state.display().to_string();
            let out =
                h.ns.wrap(&h.env.command(&["migrate", "--dest-state-dir", &dst, NAME]))
                    .output()
                    .unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            eprintln!(
                "{mode}: migrate:\n{}{err}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(out.status.success(), "{mode}: migration failed");
            for code in ["[slave-address]", "[slave-default-route]"] {
                assert!(
                    err.lines()
                        .any(|l| l.starts_with("warning: guest doctor after migration:")
                            && l.contains(code)),
                    "{mode}: {code} not on migrate's stderr:\n{err}"
                );
                assert!(
                    domain_log(&hosts[1])
                        .lines()
                        .any(|l| l.contains("warning: guest doctor after migration:")
                            && l.contains(code)),
                    "{mode}: {code} not in the destination's domain log"
                );
            }
            hosts[1].ok(&["destroy", NAME]);
            continue;
        }
        if mode != "ifupdown" {
            h.ok(&["destroy", NAME]);
            continue;
        }
        // The documented-good configuration, once more after a migration:
        // the agent's socket followed the domain to the destination.
        let (ok, _) = migrate(&hosts[0], &hosts[1]);
        assert!(ok, "migration failed");
        let d = &hosts[1];
        d.serial()
            .wait_for_failover_master(2, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("after migration: {e}"));
        let (t, _) = doctor_until(d, settle, |t| {
            holds(t, "master", ADDR) && t["guest"]["pairs"][0]["primary"].is_object()
        });
        assert_eq!(
            doctor_codes(&t),
            Vec::<String>::new(),
            "after migration: {t:#}"
        );
        // The doctor ran on the destination and found nothing to say
        // beyond the domain log.
        assert!(
            domain_log(d).contains("guest doctor after migration:"),
            "{}",
            domain_log(d)
        );
        let out = d.ok(&["domifaddr", NAME, "--source", "agent"]);
        assert!(
            out.lines()
                .any(|l| l.contains("enp1s0 ") && l.contains("ipv4") && l.contains(ADDR)),
            "{out}"
        );
        let j: Value =
            serde_json::from_str(&d.ok(&["domifaddr", NAME, "--source", "agent", "--json"]))
                .unwrap();
        assert!(
            j.as_array().unwrap().iter().any(|i| i["name"] == "enp1s0"
                && i["hwaddr"] == MAC
                && i["addrs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["addr"] == "10.78.0.2")),
            "{j:#}"
        );
        // The guest has no logind: the agent powers it off.
        d.ok(&["shutdown", NAME, "--mode", "agent"]);
        let t = Instant::now();
        loop {
            // Shut off, or gone (a migrated-in domain may be transient here).
            let out =
                d.ns.wrap(&d.env.command(&["domstate", NAME]))
                    .output()
                    .unwrap();
            let st = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if st == "shut off" || !out.status.success() {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(180),
                "still {st} after shutdown --mode agent"
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}
