//! Migration between two "hosts" over SSH, end to end: two network
//! namespaces joined by a veth pair (the wire), each running its own
//! OpenSSH `sshd` (key authentication, a private config, host key and
//! authorized_keys in a tempdir, on a private port: the machine's own SSH
//! set-up is never read or changed) and its own teamvirt state directory
//! with a lab-mode VF pool. Every `teamvirt` of a host runs inside its
//! namespace (`ip netns exec`), so its QEMU does too; the remote teamvirt is
//! this same binary (the namespaces share the filesystem).
//!
//! The fault matrix of issue 9: (a) there and back (direct TCP, tunnelled,
//! TLS), (b) the SSH connection killed during wait-unplug and during the
//! copy, (c) the wire cut during the copy, (d) destinations without the
//! network, a free VF or the machine type, refused before the source is
//! touched, (e) a remote teamvirt that is missing, is not teamvirt, speaks
//! another protocol version, or a key that is not accepted, (f) the source
//! `teamvirt migrate` SIGKILLed mid-copy. Each ends with exactly one
//! running VM and nothing left over (QEMU, helper, ssh, job, VF).
//! `ssh_guest_agent_follows_the_domain`: the real Debian guest with a QEMU
//! guest agent channel (issue 18): after an SSH migration the agent answers
//! on the destination (`domifaddr --source agent`, `teaming`'s doctor), and
//! the doctor the destination ran before `migrate` returned came back to
//! the source.
//!
//! Skips when QEMU, sshd, ssh-keygen or network namespaces are missing.

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use teamvirt_testinfra::{
    add_claimed_netns, debian_guest_or_skip, del_claimed_netns, guest_lock, procs, qemu_or_skip,
    temp_dir, test_guest, GuestLock, SerialLog,
};

mod migjson;

use migjson::{events, has_qemu_event, phases, qmp};
use teamvirt_testinfra::xml::{teaming_domain_xml, vfpool_network_xml, PairDomain};

const NAME: &str = "sshmig";
const BOOT: Duration = Duration::from_secs(120);
const PORT: u16 = 2222;
const TV: &str = env!("CARGO_BIN_EXE_teamvirt");

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn sh(args: &[&str]) -> bool {
    run(Command::new(args[0]).args(&args[1..])).status.success()
}

/// Whether this machine can play two hosts.
fn can_run(test: &str) -> bool {
    if qemu_or_skip(test).is_none() {
        return false;
    }
    for tool in ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
        if !Path::new(tool).exists() {
            eprintln!(
                "SKIP {test}: {tool} missing (apt-get install openssh-server openssh-client)"
            );
            return false;
        }
    }
    let probe = format!("tvprobe{}", std::process::id());
    if !sh(&["ip", "netns", "add", &probe]) {
        eprintln!("SKIP {test}: cannot create network namespaces (needs root)");
        return false;
    }
    sh(&["ip", "netns", "del", &probe]);
    true
}

/// One host: a namespace, an address, an sshd, a state directory.
struct Host {
    ns: String,
    ip: String,
    state: PathBuf,
    sshd: Option<Child>,
}

impl Host {
    fn tv(&self, args: &[&str]) -> Output {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &self.ns, TV])
            .args(args)
            .env("TEAMVIRT_STATE_DIR", &self.state));
        eprintln!(
            "$ [{}] teamvirt {}\n{}{}",
            self.ns,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.tv(args);
        assert!(out.status.success(), "teamvirt {} failed", args.join(" "));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn vfs_used(&self) -> u64 {
        let v: Value = serde_json::from_str(&self.ok(&["net-list", "--all", "--json"])).unwrap();
        v.as_array()
            .and_then(|a| a.first())
            .map_or(0, |n| n["vfs_used"].as_u64().unwrap())
    }

    fn pairs(&self) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.ok(&["teaming", "--json", NAME])).unwrap();
        v["pairs"].as_array().unwrap().clone()
    }

    fn running(&self) -> bool {
        self.tv(&["domstate", NAME]).stdout.starts_with(b"running")
    }

    fn run_dir(&self) -> PathBuf {
        self.state.join("run").join(NAME)
    }

    fn serial(&self) -> SerialLog {
        SerialLog::new(self.run_dir().join("serial.log"))
    }

    fn qmp_sock(&self) -> PathBuf {
        self.run_dir().join("qmp.sock")
    }
}

/// Two hosts joined by a wire, with a domain defined on `a`.
struct Lab {
    a: Host,
    b: Host,
    dir: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
    tls: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let id = format!("{}{}", std::process::id() % 100000, tag);
        let a = Host {
            ns: format!("tva{id}"),
            ip: "10.231.0.1".into(),
            state: dir.join("a"),
            sshd: None,
        };
        let b = Host {
            ns: format!("tvb{id}"),
            ip: "10.231.0.2".into(),
            state: dir.join("b"),
            sshd: None,
        };
        let mut lab = Lab {
            key: dir.join("id_ed25519"),
            known_hosts: dir.join("known_hosts"),
            tls: dir.join("pki"),
            a,
            b,
            dir,
            _tmp: tmp,
        };
        lab.wire(&id);
        lab.keys();
        let net = lab.dir.join("net.xml");
        std::fs::write(&net, vfpool_network_xml(2)).unwrap();
        for h in [&lab.a, &lab.b] {
            std::fs::create_dir_all(&h.state).unwrap();
        }
        lab.a
            .ok(&["net-define", "--emulate-vf", net.to_str().unwrap()]);
        lab.b
            .ok(&["net-define", "--emulate-vf", net.to_str().unwrap()]);
        let guest = test_guest().unwrap_or_else(|e| panic!("{e}"));
        let dom = lab.dir.join("dom.xml");
        std::fs::write(
            &dom,
            teaming_domain_xml(NAME, &guest.kernel, &guest.initrd, &guest.cmdline(""), 1),
        )
        .unwrap();
        lab.a.ok(&["define", dom.to_str().unwrap()]);
        lab.start_sshd(true);
        lab.start_sshd(false);
        lab
    }

    fn wire(&self, id: &str) {
        let (va, vb) = (format!("tv{id}a"), format!("tv{id}b"));
        for h in [&self.a, &self.b] {
            assert!(add_claimed_netns(&h.ns), "netns add {}", h.ns);
        }
        assert!(sh(&[
            "ip", "link", "add", &va, "netns", &self.a.ns, "type", "veth", "peer", "name", &vb,
            "netns", &self.b.ns
        ]));
        for (h, v) in [(&self.a, &va), (&self.b, &vb)] {
            let ex = |args: &[&str]| {
                let mut v = vec!["ip", "netns", "exec", &h.ns];
                v.extend_from_slice(args);
                assert!(sh(&v), "{v:?}");
            };
            ex(&["ip", "addr", "add", &format!("{}/24", h.ip), "dev", v]);
            ex(&["ip", "link", "set", v, "up"]);
            ex(&["ip", "link", "set", "lo", "up"]);
        }
    }

    /// Take the wire down or up again (on `a`'s side).
    fn link(&self, up: bool) {
        let dev = format!("{}a", self.a.ns.replacen("tva", "tv", 1));
        assert!(sh(&[
            "ip",
            "netns",
            "exec",
            &self.a.ns,
            "ip",
            "link",
            "set",
            &dev,
            if up { "up" } else { "down" }
        ]));
    }

    fn keys(&self) {
        let d = &self.dir;
        for k in ["id_ed25519", "host_key", "other_key"] {
            assert!(sh(&[
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                d.join(k).to_str().unwrap()
            ]));
        }
        std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys")).unwrap();
        let host = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let host = host
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        std::fs::write(
            &self.known_hosts,
            format!(
                "[{}]:{PORT} {host}\n[{}]:{PORT} {host}\n",
                self.a.ip, self.b.ip
            ),
        )
        .unwrap();
    }

    fn start_sshd(&mut self, on_a: bool) {
        let d = self.dir.clone();
        let h = if on_a { &mut self.a } else { &mut self.b };
        let conf = d.join(format!("sshd_config_{}", h.ns));
        std::fs::write(
            &conf,
            format!(
                "Port {PORT}\nListenAddress {ip}\nHostKey {d}/host_key\nPidFile {d}/sshd_{ns}.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPermitRootLogin prohibit-password\n\
                 ClientAliveInterval 1\nClientAliveCountMax 3\nLogLevel ERROR\n",
                ip = h.ip,
                d = d.display(),
                ns = h.ns
            ),
        )
        .unwrap();
        // sshd's privilege separation directory (the package's tmpfiles
        // entry creates it at boot; a container may lack it).
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::File::create(d.join(format!("sshd_{}.log", h.ns))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        h.sshd = Some(child);
        // Ready when a login from the other host works.
        let (from, to) = if on_a {
            (&self.b, &self.a)
        } else {
            (&self.a, &self.b)
        };
        let t = Instant::now();
        loop {
            let out = run(Command::new("ip")
                .args(["netns", "exec", &from.ns, "ssh", "-o", "BatchMode=yes"])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
                .arg("-i")
                .arg(&self.key)
                .args(["-p", &PORT.to_string(), &format!("root@{}", to.ip), "true"]));
            if out.status.success() {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "sshd in {} never accepted a login: {}",
                to.ns,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The URI of `to` (its state directory as path) with the test's key
    /// and known_hosts, plus `extra` parameters.
    fn uri(&self, to: &Host, extra: &str) -> String {
        format!(
            "ssh://root@{}:{PORT}{}?keyfile={}&known_hosts={}{extra}",
            to.ip,
            to.state.display(),
            self.key.display(),
            self.known_hosts.display()
        )
    }

    /// `teamvirt migrate --json [flags] NAME URI` from `from` to `to`.
    fn migrate_cmd(&self, from: &Host, to: &Host, flags: &[&str], extra: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &from.ns, TV, "migrate", "--json"]);
        if !flags.contains(&"--remote-teamvirt") {
            c.args(["--remote-teamvirt", TV]);
        }
        c.args(flags)
            .arg(NAME)
            .arg(self.uri(to, extra))
            .env("TEAMVIRT_STATE_DIR", &from.state);
        c
    }

    fn migrate(&self, from: &Host, to: &Host, flags: &[&str]) -> (Output, Vec<Value>) {
        let out = run(&mut self.migrate_cmd(from, to, flags, ""));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!(
            "$ migrate {flags:?} {} -> {}\n{stdout}{}",
            from.ns,
            to.ns,
            String::from_utf8_lossy(&out.stderr)
        );
        (out, events(&stdout))
    }

    /// Start the migration and read its events until `phase`.
    fn migrate_until(
        &self,
        from: &Host,
        to: &Host,
        flags: &[&str],
        extra: &str,
        phase: &str,
    ) -> (Child, Lines<BufReader<ChildStdout>>, Vec<String>) {
        let mut child = self
            .migrate_cmd(from, to, flags, extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        let want = format!("\"phase\":\"{phase}\"");
        for l in lines.by_ref() {
            let l = l.unwrap();
            let hit = l.contains(&want);
            seen.push(l);
            if hit {
                return (child, lines, seen);
            }
        }
        let status = child.wait();
        panic!("migration ended ({status:?}) before phase {phase}: {seen:#?}");
    }

    /// QEMUs, teamvirt helpers and ssh clients of this lab still alive.
    fn leftovers(&self) -> Vec<String> {
        let me = self.dir.display().to_string();
        let mut out = Vec::new();
        for pid in procs::pids() {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if procs::mentions(pid, &me)
                && !procs::is_reaper(pid)
                && !cmd.contains("sshd -D")
                && !cmd.contains("/usr/sbin/sshd")
            {
                out.push(cmd);
            }
        }
        out
    }

    /// The domain runs on `owner` only, with its primary plugged, only
    /// `owner`'s pool holds a VF, and nothing else of the lab is alive
    /// (waits a bounded time for the far side to finish tearing down).
    fn runs_only_on(&self, owner: &Host) {
        let other = if owner.ns == self.a.ns {
            &self.b
        } else {
            &self.a
        };
        assert!(owner.running(), "not running on {}", owner.ns);
        let t = Instant::now();
        loop {
            let rest: Vec<String> = self.leftovers();
            let clean = rest.len() == 1 && rest[0].contains("qemu-system");
            if clean && other.vfs_used() == 0 && !other.running() {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "leftovers: {rest:#?}, {} VFs used on {}",
                other.vfs_used(),
                other.ns
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        assert_eq!(owner.vfs_used(), 1);
        let t = Instant::now();
        let p = loop {
            let p = owner.pairs();
            if p[0]["plugged"] == true || t.elapsed() > Duration::from_secs(20) {
                break p;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        assert_eq!(p[0]["plugged"], true, "{p:?}");
        for h in [&self.a, &self.b] {
            assert!(
                !h.run_dir().join("job.json").exists(),
                "job file on {}",
                h.ns
            );
            assert!(!h.run_dir().join("migrate-tunnel.sock").exists());
        }
    }

    /// Test certificates for --tls (libvirt's file names), valid for both
    /// addresses.
    fn make_certs(&self) {
        let d = &self.tls;
        std::fs::create_dir_all(d).unwrap();
        let p = |n: &str| d.join(n).display().to_string();
        let ossl = |args: &[&str]| {
            let out = run(Command::new("openssl").args(args));
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        ossl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=teamvirt test CA",
            "-keyout",
            &p("ca-key.pem"),
            "-out",
            &p("ca-cert.pem"),
        ]);
        let ext = d.join("ext.cnf");
        std::fs::write(
            &ext,
            format!(
                "subjectAltName=IP:{},IP:{}\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
                self.a.ip, self.b.ip
            ),
        )
        .unwrap();
        for who in ["server", "client"] {
            ossl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &p(&format!("{who}-key.pem")),
                "-out",
                &p(&format!("{who}.csr")),
            ]);
            ossl(&[
                "x509",
                "-req",
                "-in",
                &p(&format!("{who}.csr")),
                "-CA",
                &p("ca-cert.pem"),
                "-CAkey",
                &p("ca-key.pem"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext.to_str().unwrap(),
                "-out",
                &p(&format!("{who}-cert.pem")),
            ]);
        }
    }
}

impl Drop for Lab {
    /// Also on a failed assertion: no guest, helper, sshd or namespace
    /// outlives the test.
    fn drop(&mut self) {
        for h in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "exec", &h.ns, TV, "destroy", NAME])
                .env("TEAMVIRT_STATE_DIR", &h.state)
                .output();
        }
        for h in [&mut self.a, &mut self.b] {
            if let Some(mut c) = h.sshd.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for h in [&self.a, &self.b] {
            // With whatever still runs inside (a session, a helper, a QEMU).
            del_claimed_netns(&h.ns);
        }
    }
}

/// A lab with the guest booted on `a`, its pair enslaved. Drop order:
/// the lab (guests) before the guest lock.
struct Booted {
    lab: Lab,
    _lock: GuestLock,
}

fn booted(test: &str, tag: &str) -> Option<Booted> {
    if !can_run(test) {
        return None;
    }
    let lock = guest_lock();
    let lab = Lab::new(tag);
    lab.a
        .ok(&["start", "--emulate-vf", "--wait-failover=120", NAME]);
    lab.a
        .serial()
        .wait_for_failover_master(2, BOOT)
        .unwrap_or_else(|e| panic!("{e}"));
    Some(Booted { lab, _lock: lock })
}

/// The guest on `h` shows its failover master with both slaves again
/// after `after` (its uptime before the migration).
fn enslaved_after(h: &Host, after: f64) {
    let log = h.serial();
    let st = log
        .wait_for_state(
            "master with 2 slaves after the migration",
            |s| s.uptime > after && s.failover_master(2).is_some(),
            BOOT,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", qemu_files(h)));
    log.wait_for_heartbeat_after(st.uptime, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", qemu_files(h)));
}

/// For a failure report: what the run directory holds (inodes) and what
/// the QEMUs logging there have open, to tell a hung guest from output
/// going to another file.
fn qemu_files(h: &Host) -> String {
    let dir = h.run_dir();
    let mut out = format!("run dir {}:\n", dir.display());
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let ino = std::os::unix::fs::MetadataExt::ino(&e.metadata().unwrap());
            out.push_str(&format!(
                "  {} inode {ino}\n",
                e.file_name().to_string_lossy()
            ));
        }
    }
    let lab = dir
        .parent()
        .and_then(|p| p.parent())
        .unwrap_or(&dir)
        .to_owned();
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let domlog =
        std::fs::read_to_string(lab.join("log").join(format!("{name}.log"))).unwrap_or_default();
    let lines: Vec<&str> = domlog.lines().collect();
    out.push_str("domain log (last lines):\n");
    for l in &lines[lines.len().saturating_sub(15)..] {
        out.push_str(&format!("  {}\n", l.chars().take(300).collect::<String>()));
    }
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let log = e
            .file_name()
            .to_str()
            .and_then(|p| p.parse().ok())
            .is_some_and(|pid| procs::mentions(pid, &lab.display().to_string()));
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if !log || !comm.starts_with("qemu") {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        out.push_str(&format!(
            "qemu {}: {}\n",
            e.file_name().to_string_lossy(),
            stat.trim()
        ));
        if let Ok(fds) = std::fs::read_dir(e.path().join("fd")) {
            for f in fds.flatten() {
                if let Ok(t) = std::fs::read_link(f.path()) {
                    let ino = std::fs::metadata(f.path())
                        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                        .unwrap_or(0);
                    out.push_str(&format!(
                        "  fd {} -> {} (inode {ino})\n",
                        f.file_name().to_string_lossy(),
                        t.display()
                    ));
                }
            }
        }
    }
    out
}

fn ssh_pid_of(child: &Child) -> Option<String> {
    let out = run(Command::new("pgrep").args(["-P", &child.id().to_string(), "-x", "ssh"]));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

fn finish(
    mut child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    mut seen: Vec<String>,
) -> (bool, String, Value) {
    seen.extend(lines.map(|l| l.unwrap()));
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    eprintln!("{}\n{stderr}", seen.join("\n"));
    let res = seen
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (status.success(), stderr, res)
}

/// (a) There over direct TCP (--persistent --undefinesource), back
/// through the SSH tunnel, there again with TLS: each arrival negotiates
/// and plugs the pair, the guest re-enslaves its primary, the source is
/// gone with its VF back in its pool, nothing is left behind.
#[test]
fn ssh_there_and_back_direct_tunnelled_tls() {
    let Some(Booted { lab, .. }) = booted("ssh_there_and_back_direct_tunnelled_tls", "r") else {
        return;
    };
    lab.make_certs();
    let tls = lab.tls.display().to_string();
    let legs: [(&Host, &Host, Vec<&str>); 3] = [
        (&lab.a, &lab.b, vec!["--persistent", "--undefinesource"]),
        (&lab.b, &lab.a, vec!["--tunnelled"]),
        (&lab.a, &lab.b, vec!["--tls", "--tls-dir", &tls]),
    ];
    for (i, (from, to, flags)) in legs.iter().enumerate() {
        let before = from.serial().latest_state().map_or(0.0, |s| s.uptime);
        let (out, ev) = lab.migrate(from, to, flags);
        assert!(out.status.success(), "leg {i} {flags:?} failed");
        let ph = phases(&ev);
        let order = [
            "prepare",
            "setup",
            "wait-unplug",
            "active",
            "completed",
            "finish",
        ];
        let idx: Vec<usize> = order
            .iter()
            .map(|p| {
                ph.iter()
                    .position(|x| x == p)
                    .unwrap_or_else(|| panic!("no phase {p} in {ph:?}"))
            })
            .collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "{ph:?}");
        assert!(has_qemu_event(&ev, "source", "UNPLUG_PRIMARY"), "{ev:?}");
        assert!(
            has_qemu_event(&ev, "destination", "FAILOVER_NEGOTIATED"),
            "{ev:?}"
        );
        // The SSH set-up is reported apart from the migration.
        assert!(
            ev.iter().any(|e| e["event"] == "info"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("control channel to ")),
            "{ev:?}"
        );
        let listen = ev
            .iter()
            .filter_map(|e| e["message"].as_str())
            .find(|m| m.contains("listening on"))
            .unwrap()
            .to_owned();
        if flags.contains(&"--tunnelled") {
            assert!(listen.contains("unix:"), "{listen}");
        } else {
            // The destination's choice: the address SSH reached.
            assert!(listen.contains(&format!("tcp:{}:", to.ip)), "{listen}");
        }
        let res = ev.last().unwrap();
        assert_eq!(res["ok"], true);
        assert_eq!(res["outcome"]["job"]["unplugged"][0], "hostdev0");
        let p = to.pairs();
        assert_eq!(
            (p[0]["negotiated"].clone(), p[0]["emulated"].clone()),
            (Value::Bool(true), Value::Bool(true)),
            "{p:?}"
        );
        enslaved_after(to, before);
        lab.runs_only_on(to);
        if i == 0 {
            assert!(to.tv(&["dumpxml", "--inactive", NAME]).status.success());
            assert!(!from.tv(&["dumpxml", "--inactive", NAME]).status.success());
            // The guest ABI travels pinned: the versioned machine type.
            let xml = to.ok(&["dumpxml", NAME]);
            assert!(xml.contains("machine='pc-q35-"), "{xml}");
        }
    }
}

/// (d) and (e): every refusal comes before the source is touched: the
/// guest keeps running with its primary plugged and the destination holds
/// nothing.
#[test]
fn ssh_refusals_leave_the_source_untouched() {
    let Some(Booted { lab, .. }) = booted("ssh_refusals_leave_the_source_untouched", "d") else {
        return;
    };
    let (a, b) = (&lab.a, &lab.b);
    let refused = |flags: &[&str], extra: &str, expect: &str| {
        let out = run(&mut lab.migrate_cmd(a, b, flags, extra));
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "{flags:?} {extra}:\n{}{err}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!out.status.success());
        assert!(err.contains(expect), "expected '{expect}' in:\n{err}");
        let ev = events(&String::from_utf8_lossy(&out.stdout));
        assert!(
            !phases(&ev).iter().any(|p| p == "setup"),
            "the source was touched: {ev:?}"
        );
        lab.runs_only_on(a);
    };

    // (e) the remote side is not a usable teamvirt, or not reachable.
    refused(
        &["--remote-teamvirt", "/nonexistent/teamvirt"],
        "",
        "the remote teamvirt '/nonexistent/teamvirt' cannot be run on 10.231.0.2",
    );
    let fake = lab.dir.join("fake-teamvirt");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho '{\"msg\":\"hello\",\"magic\":\"teamvirt-migrate-dest\",\"version\":999,\"teamvirt\":\"9.9.9\",\"state_dir\":\"/x\"}'\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    refused(
        &["--remote-teamvirt", fake.to_str().unwrap()],
        "",
        "(version 9.9.9) speaks migration protocol 999, this teamvirt",
    );
    refused(
        &["--remote-teamvirt", "/bin/echo"],
        "",
        "does not speak teamvirt's migration protocol",
    );
    refused(
        &["--remote-teamvirt", "/bin/false"],
        "",
        "exited (1) without starting the migration helper",
    );
    let other = lab.dir.join("other_key").display().to_string();
    let out = run(Command::new("ip")
        .args([
            "netns",
            "exec",
            &a.ns,
            TV,
            "migrate",
            "--remote-teamvirt",
            TV,
            NAME,
        ])
        .arg(format!(
            "ssh://root@{}:{PORT}{}?keyfile={other}&known_hosts={}",
            b.ip,
            b.state.display(),
            lab.known_hosts.display()
        ))
        .env("TEAMVIRT_STATE_DIR", &a.state));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to 10.231.0.2 over SSH (BatchMode: key authentication only)")
            && err.contains("Permission denied"),
        "{err}"
    );
    lab.runs_only_on(a);
    let out = run(Command::new("ip")
        .args([
            "netns",
            "exec",
            &a.ns,
            TV,
            "migrate",
            "--remote-teamvirt",
            TV,
            NAME,
        ])
        .arg(format!(
            "ssh://root@{}:{PORT}{}/typo?keyfile={}&known_hosts={}",
            b.ip,
            b.state.display(),
            lab.key.display(),
            lab.known_hosts.display()
        ))
        .env("TEAMVIRT_STATE_DIR", &a.state));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/typo does not exist on the destination host"),
        "{err}"
    );
    assert!(!b.state.join("typo").exists());

    // (d) the destination's QEMU lacks the machine type the guest runs
    // (the source's live XML names one this QEMU does not have).
    let live = a.run_dir().join("live.xml");
    let xml = std::fs::read_to_string(&live).unwrap();
    let m = xml
        .split("machine='")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap()
        .to_owned();
    std::fs::write(
        &live,
        xml.replace(&format!("machine='{m}'"), "machine='pc-q35-99.0'"),
    )
    .unwrap();
    refused(
        &[],
        "",
        "unsupported configuration: Emulator '/usr/bin/qemu-system-x86_64' does not support machine type 'pc-q35-99.0'",
    );
    std::fs::write(&live, &xml).unwrap();

    // (d) no free VF on the destination: its pool has one, and another
    // domain runs on it.
    b.ok(&["net-undefine", "vfpool"]);
    let net1 = lab.dir.join("net1.xml");
    std::fs::write(&net1, vfpool_network_xml(1)).unwrap();
    b.ok(&["net-define", "--emulate-vf", net1.to_str().unwrap()]);
    let guest = test_guest().unwrap();
    let other = lab.dir.join("other.xml");
    std::fs::write(
        &other,
        teaming_domain_xml("other", &guest.kernel, &guest.initrd, &guest.cmdline(""), 1),
    )
    .unwrap();
    b.ok(&["define", other.to_str().unwrap()]);
    b.ok(&["start", "--emulate-vf", "other"]);
    let out = run(&mut lab.migrate_cmd(a, b, &[], ""));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("internal error: network 'vfpool' requires exclusive access to interfaces, but none are available"),
        "{err}"
    );
    b.ok(&["destroy", "other"]);
    b.ok(&["undefine", "other"]);
    lab.runs_only_on(a);

    // (d) no such network on the destination.
    b.ok(&["net-undefine", "vfpool"]);
    refused(
        &[],
        "",
        "Network not found: no network with matching name 'vfpool' on the destination",
    );
}

/// (b) The SSH connection killed while the guest is in wait-unplug (it is
/// paused, so it stays there) and again during the copy: the source
/// cancels and keeps the domain with its primary plugged; the destination
/// tears its half down by itself.
#[test]
fn ssh_connection_killed_rolls_back() {
    let Some(Booted { lab, .. }) = booted("ssh_connection_killed_rolls_back", "b") else {
        return;
    };
    let (a, b) = (&lab.a, &lab.b);
    assert!(qmp(&a.qmp_sock(), "stop").get("return").is_some());
    let (child, lines, seen) =
        lab.migrate_until(a, b, &["--unplug-timeout", "60"], "", "wait-unplug");
    let pid = ssh_pid_of(&child).expect("ssh client");
    assert!(sh(&["kill", "-9", &pid]));
    let (ok, stderr, res) = finish(child, lines, seen);
    assert!(!ok);
    assert!(
        stderr.contains("the SSH control channel to 10.231.0.2 closed"),
        "{stderr}"
    );
    assert_eq!(res["primaries_back"], true, "{res}");
    let st = qmp(&a.qmp_sock(), "query-status");
    assert_eq!(st["return"]["status"], "paused", "{st}");
    qmp(&a.qmp_sock(), "cont");
    lab.runs_only_on(a);

    let (child, lines, seen) = lab.migrate_until(a, b, &["--bandwidth", "5"], "", "active");
    let pid = ssh_pid_of(&child).expect("ssh client");
    assert!(sh(&["kill", "-9", &pid]));
    let (ok, stderr, res) = finish(child, lines, seen);
    assert!(!ok);
    assert!(
        stderr.contains("the SSH control channel to 10.231.0.2 closed"),
        "{stderr}"
    );
    assert_eq!(res["primaries_back"], true, "{res}");
    lab.runs_only_on(a);
    let up = a.serial().latest_state().map_or(0.0, |s| s.uptime);
    a.serial()
        .wait_for_state(
            "master with 2 slaves again",
            |s| s.uptime >= up && s.failover_master(2).is_some(),
            BOOT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

/// (c) The wire cut during the copy: SSH's keepalive notices, the source
/// cancels and runs with its primary back; the destination's sshd drops
/// the session and the helper tears the incoming QEMU down.
#[test]
fn wire_cut_during_copy_rolls_back() {
    let Some(Booted { lab, .. }) = booted("wire_cut_during_copy_rolls_back", "c") else {
        return;
    };
    let (a, b) = (&lab.a, &lab.b);
    let (child, lines, seen) = lab.migrate_until(
        a,
        b,
        &["--bandwidth", "5"],
        "&keepalive_interval=1&keepalive_count=3",
        "active",
    );
    lab.link(false);
    let t = Instant::now();
    let (ok, stderr, res) = finish(child, lines, seen);
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert!(!ok);
    assert!(
        stderr.contains("the SSH control channel to 10.231.0.2 closed"),
        "{stderr}"
    );
    assert_eq!(res["primaries_back"], true, "{res}");
    lab.link(true);
    lab.runs_only_on(a);
}

/// (f) The source `teamvirt migrate` SIGKILLed mid-copy: its ssh sees
/// EOF, the destination decides alone (the copy did not complete: it
/// tears down) and the next command on the source settles its side.
/// Then killed with the copy about to complete: whichever side the
/// completed copy gives it to, the domain runs in exactly one place.
#[test]
fn killed_source_is_settled_by_the_next_command() {
    let Some(Booted { lab, .. }) = booted("killed_source_is_settled_by_the_next_command", "f")
    else {
        return;
    };
    let (a, b) = (&lab.a, &lab.b);
    let (mut child, _, _) = lab.migrate_until(a, b, &["--bandwidth", "2"], "", "active");
    child.kill().unwrap();
    child.wait().unwrap();
    // The destination gives up on its own ...
    let t = Instant::now();
    while b.run_dir().join("state.json").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "destination kept its QEMU"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // ... and a plain command on the source settles the job.
    let out = a.tv(&["domstate", NAME]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: stale migration job"), "{err}");
    assert!(err.contains("the source keeps the domain"), "{err}");
    assert!(out.stdout.starts_with(b"running"), "{out:?}");
    lab.runs_only_on(a);
    assert!(b.ok(&["list", "--all"]).lines().all(|l| !l.contains(NAME)));

    // Unlimited bandwidth, killed in the copy: the copy may complete
    // within the destination's grace (it takes the domain) or not (the
    // source keeps it). Both hosts' next commands agree.
    let (mut child, _, _) = lab.migrate_until(a, b, &[], "", "active");
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let sa = a.tv(&["domstate", NAME]);
    let sb = b.tv(&["list"]);
    eprintln!("{sa:?}\n{sb:?}");
    let owner = if a.running() { a } else { b };
    lab.runs_only_on(owner);
}

/// The Debian guest (ifupdown on its failover master) with libvirt's
/// guest agent channel, its standby on user networking as the lab's.
fn debian_agent_xml(g: &teamvirt_testinfra::DebianGuest, disk: &Path) -> String {
    PairDomain::new(NAME)
        .domain_type("qemu")
        .memory_mib(512)
        .standby("ua-sb0")
        .standby_bus(1)
        .primary_bus(2)
        .boot(&g.kernel, &g.initrd, &g.cmdline())
        .devices_first(
            "    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'/>
    <controller type='pci' index='2' model='pcie-root-port'/>
",
        )
        .devices(&format!(
            "    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>
    <channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
",
            disk.display()
        ))
        .xml()
}

/// The agent channel over SSH: the destination rebuilds the channel's
/// socket in its own run directory, the agent answers there, and the
/// doctor it ran on the destination came back in `migrate`'s result.
#[test]
fn ssh_guest_agent_follows_the_domain() {
    let test = "ssh_guest_agent_follows_the_domain";
    if !can_run(test) {
        return;
    }
    let Some(guest) = debian_guest_or_skip(test) else {
        return;
    };
    let guest = guest.expect("Debian guest image");
    let _lock = guest_lock();
    let lab = Lab::new("g");
    let disk_dir = temp_dir();
    let disk = guest.disk_copy(disk_dir.path()).expect("disk copy");
    let dom = lab.dir.join("deb.xml");
    std::fs::write(&dom, debian_agent_xml(&guest, &disk)).unwrap();
    lab.a.ok(&["define", dom.to_str().unwrap()]);
    lab.a.ok(&[
        "start",
        "--emulate-vf",
        "--accel",
        "tcg",
        "--wait-failover=300",
        NAME,
    ]);
    lab.a
        .serial()
        .wait_for_failover_master(2, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("boot: {e}"));
    // The agent answers on the source once the guest is up.
    let answers = |h: &Host| {
        let out = h.tv(&["domifaddr", NAME, "--source", "agent"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("enp1s0 ")
    };
    let t = Instant::now();
    while !answers(&lab.a) {
        assert!(
            t.elapsed() < Duration::from_secs(240),
            "no agent on the source"
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    let before = lab.a.serial().latest_state().map_or(0.0, |s| s.uptime);
    let (out, ev) = lab.migrate(&lab.a, &lab.b, &[]);
    assert!(out.status.success(), "migration failed");
    let res = ev.last().unwrap();
    assert_eq!(res["ok"], true, "{res:#}");
    // The destination's doctor ran before migrate returned, and answered.
    let lines = res["outcome"]["guest"].as_array().expect("guest lines");
    assert!(
        lines.iter().any(|l| l["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("guest doctor after migration:")
                && !t.contains("does not answer")
                && !t.contains("not run"))),
        "{lines:#?}"
    );
    enslaved_after(&lab.b, before);
    // Its socket is the destination's, in the destination's run directory;
    // the source's went with its run.
    assert!(lab.b.run_dir().join("org.qemu.guest_agent.0").exists());
    assert!(!lab.a.run_dir().join("org.qemu.guest_agent.0").exists());
    assert!(
        answers(&lab.b),
        "the agent does not answer on the destination"
    );
    let t: Value = serde_json::from_str(&lab.b.ok(&["teaming", "--json", NAME])).unwrap();
    assert_eq!(t["guest"]["status"], "connected", "{t:#}");
    assert_eq!(t["guest"]["pairs"][0]["master"]["name"], "enp1s0", "{t:#}");
    lab.runs_only_on(&lab.b);
}
