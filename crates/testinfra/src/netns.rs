//! A private network namespace for tests that touch links: made with
//! `ip netns add`, commands run inside with `ip netns exec`, deleted (with
//! every link in it) when dropped, also after a failed assertion. The
//! machine's own links are never touched.

use std::process::{Command, Output};

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
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        match Command::new("ip").args(["netns", "add", &name]).output() {
            Ok(o) if o.status.success() => {}
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
    }
}
