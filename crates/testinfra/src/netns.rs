//! A private network namespace for tests that touch links: made with
//! `ip netns add`, commands run inside with `ip netns exec`, deleted (with
//! every link in it) when dropped, also after a failed assertion. The
//! machine's own links are never touched.
//!
//! A test binary killed by a signal runs no `Drop`: its namespaces (and an
//! sshd or QEMU inside) would stay. So every namespace a test makes is
//! claimed in [`CLAIMS`] with its maker's pid and start time, and the next
//! test that makes one first removes those whose maker is gone.

use std::path::Path;
use std::process::{Command, Output};

/// One file per test namespace: `<pid> <start time>` of the process that
/// made it.
pub const CLAIMS: &str = "/run/teamvirt-test-netns";

/// The start time (clock ticks since boot, field 22 of /proc/PID/stat) of
/// a live process; `None` when it is gone.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Record that this process made namespace `name`.
fn claim(name: &str) {
    let me = std::process::id();
    let Some(started) = start_time(me) else {
        return;
    };
    let _ = std::fs::create_dir_all(CLAIMS);
    let _ = std::fs::write(Path::new(CLAIMS).join(name), format!("{me} {started}\n"));
}

/// Delete namespace `name` with whatever still runs inside it, and its
/// claim.
fn remove(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).output();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).output();
    let _ = std::fs::remove_file(Path::new(CLAIMS).join(name));
}

/// Whether the claim `text` (`<pid> <start time>`) names a process that is
/// gone (or a different process that got its pid).
fn claim_is_stale(text: &str) -> bool {
    let mut f = text.split_whitespace().map(str::parse::<u64>);
    match (f.next(), f.next()) {
        (Some(Ok(pid)), Some(Ok(started))) => u32::try_from(pid)
            .ok()
            .and_then(start_time)
            .is_none_or(|now| now != started),
        // Unreadable: written by nothing of ours, or torn; leave it.
        _ => false,
    }
}

/// Remove every claimed namespace whose maker is gone (a test binary
/// killed before its `Drop` ran). Returns the names removed.
pub fn sweep_stale_netns() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(CLAIMS) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if claim_is_stale(&text) {
            remove(&name);
            removed.push(name);
        }
    }
    removed
}

/// [`sweep_stale_netns`], saying what it removed.
fn sweep_and_say() {
    for n in sweep_stale_netns() {
        eprintln!("removed namespace {n} left by a test process that is gone");
    }
}

/// `ip netns add NAME`, claimed for this process (see the module docs)
/// after stale namespaces are swept. For tests that name their namespaces
/// themselves; release with [`del_claimed_netns`].
pub fn add_claimed_netns(name: &str) -> bool {
    sweep_and_say();
    let ok = Command::new("ip")
        .args(["netns", "add", name])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        claim(name);
    }
    ok
}

/// Delete a namespace made by [`add_claimed_netns`], killing what still
/// runs in it.
pub fn del_claimed_netns(name: &str) {
    remove(name);
}

/// A network namespace owned by a test.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace `tv-<tag>-<pid>` with `lo` up, or `None` (and a
    /// printed skip notice) when namespaces cannot be made here (not root,
    /// no iproute2).
    pub fn new(tag: &str) -> Option<Netns> {
        let name = format!("tv-{tag}-{}", std::process::id());
        sweep_and_say();
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        match Command::new("ip").args(["netns", "add", &name]).output() {
            Ok(o) if o.status.success() => claim(&name),
            Ok(o) => {
                eprintln!(
                    "skipping: cannot create a network namespace: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                eprintln!("skipping: cannot run ip (iproute2): {e}");
                return None;
            }
        }
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    /// `cmd` run inside the namespace (same program, arguments and
    /// environment changes).
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        c.arg(cmd.get_program());
        c.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        c
    }

    /// `ip ARGS` inside the namespace; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let o = self.ip_out(args);
        assert!(
            o.status.success(),
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ip ARGS` inside the namespace, whatever the outcome.
    pub fn ip_out(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("ip runs")
    }

    /// Names of the links in the namespace.
    pub fn links(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// One link's `ip -d link show` line, if it exists.
    pub fn link(&self, name: &str) -> Option<String> {
        let o = self.ip_out(&["-d", "-o", "link", "show", "dev", name]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// A link's counter from /sys/class/net/NAME/statistics (inside).
    pub fn stat(&self, link: &str, counter: &str) -> u64 {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.name, "cat"])
            .arg(format!("/sys/class/net/{link}/statistics/{counter}"))
            .output()
            .expect("cat runs");
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_file(Path::new(CLAIMS).join(&self.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace whose maker exited (no `Drop` ran) is removed by the
    /// next sweep, with the process still running inside it; one whose
    /// maker lives is kept.
    #[test]
    fn namespaces_of_a_gone_test_process_are_swept() {
        let Some(live) = Netns::new("sweep-live") else {
            return;
        };
        // A maker that is gone: a child that exited, claimed with its pid.
        let mut child = Command::new("true").spawn().expect("true runs");
        let dead = child.id();
        child.wait().expect("true exits");
        let name = format!("tv-sweep-dead-{}", std::process::id());
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip runs")
            .success());
        std::fs::write(Path::new(CLAIMS).join(&name), format!("{dead} 1\n")).unwrap();
        // Something left running inside, as an sshd would be.
        let mut sleeper = Command::new("ip");
        sleeper.args(["netns", "exec", &name, "sleep", "600"]);
        let mut sleeper = sleeper.spawn().expect("sleep runs");

        let removed = sweep_stale_netns();
        assert!(removed.contains(&name), "{removed:?}");
        assert!(!removed.contains(&live.name), "{removed:?}");
        assert!(!Path::new("/var/run/netns").join(&name).exists());
        assert!(Path::new("/var/run/netns").join(&live.name).exists());
        assert!(!Path::new(CLAIMS).join(&name).exists());
        // Killed by the sweep (reaped here).
        let status = sleeper.wait().expect("sleep reaped");
        assert!(!status.success());
    }

    #[test]
    fn unreadable_claims_are_left_alone() {
        assert!(!claim_is_stale(""));
        assert!(!claim_is_stale("abc def"));
        assert!(claim_is_stale(&format!("{} 1", std::process::id())));
        let me = std::process::id();
        let now = start_time(me).unwrap();
        assert!(!claim_is_stale(&format!("{me} {now}")));
    }
}
