//! Harness shared by the CLI integration tests: a private state directory,
//! a place for input files, and `teamvirt` runs that pass the state
//! directory the way a user would (env var, or `--state-dir` before or
//! after the verb). Dropping an [`Env`] destroys the domains still running
//! in it, so a failed assertion never leaks a QEMU.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// How the state directory reaches `teamvirt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateVia {
    /// `TEAMVIRT_STATE_DIR`.
    Env,
    /// `teamvirt --state-dir DIR VERB ...` (global option, virsh style).
    FlagBefore,
    /// `teamvirt VERB ... --state-dir DIR`.
    FlagAfter,
}

pub struct Env {
    pub state: PathBuf,
    pub files: PathBuf,
    pub via: StateVia,
    // Last: dropped after `Drop::drop` has destroyed the domains.
    _dir: tempfile::TempDir,
}

impl Env {
    /// State directory passed through `TEAMVIRT_STATE_DIR`.
    pub fn new() -> Env {
        Env::via(StateVia::Env)
    }

    pub fn via(via: StateVia) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let files = dir.path().join("files");
        std::fs::create_dir_all(&files).unwrap();
        Env {
            state,
            files,
            via,
            _dir: dir,
        }
    }

    /// The command for `teamvirt ARGS` against this state directory;
    /// `TEAMVIRT_STATE_DIR` is always removed from the inherited
    /// environment so the developer's own never leaks in.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_teamvirt"));
        c.env_remove("TEAMVIRT_STATE_DIR");
        // A dynamic uid handed out again is swept of its leftovers
        // (teamvirt_host::dynuid): never in the host's real /tmp from a test.
        c.env("TEAMVIRT_DYNUID_SWEEP", "");
        match self.via {
            StateVia::Env => {
                c.env("TEAMVIRT_STATE_DIR", &self.state).args(args);
            }
            StateVia::FlagBefore => {
                c.arg("--state-dir").arg(&self.state).args(args);
            }
            StateVia::FlagAfter => {
                c.args(args).arg("--state-dir").arg(&self.state);
            }
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        eprintln!(
            "$ teamvirt {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Run, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok2(args).0
    }

    /// Run, expect success, return (stdout, stderr).
    pub fn ok2(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "teamvirt {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run, expect failure, return stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "teamvirt {} should fail",
            args.join(" ")
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Write an input file; returns its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.files.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// `vfs_used` of network `net` in `net-list --json`.
    pub fn vfs_used(&self, net: &str) -> u64 {
        let nets = self.json(&["net-list", "--all", "--json"]);
        let n = nets
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == net)
            .unwrap_or_else(|| panic!("network {net} listed: {nets}"));
        n["vfs_used"].as_u64().unwrap()
    }

    /// A running domain's run directory.
    pub fn run_dir(&self, dom: &str) -> PathBuf {
        self.state.join("run").join(dom)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !self.state.exists() {
            return;
        }
        let Ok(out) = self.command(&["list", "--name"]).output() else {
            return;
        };
        for name in String::from_utf8_lossy(&out.stdout).lines() {
            let name = name.trim();
            if !name.is_empty() {
                let _ = self.command(&["destroy", name]).output();
            }
        }
    }
}
