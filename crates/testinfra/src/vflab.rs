//! The VF lab (`scripts/vf-lab.sh`): real SR-IOV VFs of an emulated igb NIC
//! in a first-level guest (L1) that runs teamvirt and a second-level guest.
//! Finding QEMU with igb, running a scenario, and reading what it brought
//! back: its checks, its migration marks and its ping logs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::traffic::{self, Window};
use crate::workspace_root;

fn script() -> PathBuf {
    workspace_root().join("scripts/vf-lab.sh")
}

/// Is a QEMU with igb there (`vf-lab.sh check`)? Prints a skip notice
/// naming the fix when not. `TEAMVIRT_VF_LAB=require` turns the skip
/// into a failure (CI, where `.ci/run` prepared the lab).
pub fn vf_lab_or_skip(test: &str) -> bool {
    let out = Command::new("bash")
        .arg(script())
        .arg("check")
        .output()
        .expect("bash runs");
    if out.status.success() {
        return true;
    }
    let why = String::from_utf8_lossy(&out.stderr);
    if std::env::var("TEAMVIRT_VF_LAB").as_deref() == Ok("require") {
        panic!("{test}: TEAMVIRT_VF_LAB=require but the VF lab is not ready: {why}");
    }
    eprintln!(
        "skipping {test}: no QEMU with an emulated SR-IOV NIC (igb, QEMU >= 8.0): {}",
        why.trim()
    );
    false
}

/// One check of the scenario (`CHECK ok NAME` / `CHECK fail NAME: WHY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// What a scenario run brought back.
#[derive(Debug)]
pub struct LabRun {
    pub out: PathBuf,
    /// The scenario's exit code (failed checks; 100+: aborted).
    pub rc: Option<i32>,
    pub checks: Vec<Check>,
    /// `NAME START END` of each timed migration.
    pub marks: Vec<(String, f64, f64)>,
}

impl LabRun {
    /// Run the VF scenario with `teamvirt` into `out`.
    pub fn scenario(teamvirt: &Path, out: &Path) -> LabRun {
        let status = Command::new("bash")
            .arg(script())
            .arg("scenario")
            .arg(out)
            .env("TEAMVIRT_BIN", teamvirt)
            .status()
            .expect("bash runs");
        LabRun::read(out, status.code())
    }

    /// Read the results in `out`.
    pub fn read(out: &Path, rc: Option<i32>) -> LabRun {
        let text = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
        let checks = text("checks").lines().filter_map(parse_check).collect();
        let marks = text("marks")
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((
                    w.next()?.to_owned(),
                    w.next()?.parse().ok()?,
                    w.next()?.parse().ok()?,
                ))
            })
            .collect();
        LabRun {
            out: out.to_owned(),
            rc,
            checks,
            marks,
        }
    }

    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    pub fn passed(&self, name: &str) -> bool {
        self.checks.iter().any(|c| c.name == name && c.ok)
    }

    /// Traffic through migration `name` (its `ping-NAME.log`), from its
    /// start to `after` seconds past its end.
    pub fn window(&self, name: &str, after: f64) -> Option<Window> {
        let (_, from, to) = self.marks.iter().find(|m| m.0 == name)?;
        let log = std::fs::read_to_string(self.out.join(format!("ping-{name}.log"))).ok()?;
        let replies: Vec<(f64, u64)> = log.lines().filter_map(traffic::parse_reply).collect();
        Some(traffic::window(&replies, *from, to + after))
    }

    /// A file the scenario wrote, for failure messages.
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join(name)).unwrap_or_default()
    }
}

fn parse_check(line: &str) -> Option<Check> {
    let rest = line.strip_prefix("CHECK ")?;
    let (verdict, rest) = rest.split_once(' ')?;
    let (name, detail) = match rest.split_once(": ") {
        Some((n, d)) => (n, d),
        None => (rest, ""),
    };
    Some(Check {
        name: name.trim().to_owned(),
        ok: verdict == "ok",
        detail: detail.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_read_back() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("checks"),
            "CHECK ok vf0-on-vfio\nCHECK fail vf0-mac-restored: [ \"a\" = \"b\" ]\n",
        )
        .unwrap();
        std::fs::write(d.path().join("marks"), "failover 100.0 101.0\n").unwrap();
        let mut ping = String::new();
        for i in 0..300u64 {
            // One second of silence from 100.5.
            let t = 99.0 + i as f64 * 0.01;
            if !(100.5..101.5).contains(&t) {
                ping.push_str(&format!(
                    "[{t:.6}] 64 bytes from 10.77.0.2: icmp_seq={i} ttl=64 time=1 ms\n"
                ));
            }
        }
        std::fs::write(d.path().join("ping-failover.log"), ping).unwrap();
        let r = LabRun::read(d.path(), Some(1));
        assert!(r.passed("vf0-on-vfio"));
        assert_eq!(r.failed().len(), 1);
        assert_eq!(r.failed()[0].name, "vf0-mac-restored");
        let w = r.window("failover", 0.9).unwrap();
        assert!((w.longest_gap - 1.0).abs() < 0.02, "{w:?}");
        assert_eq!(w.lost, 100);
        assert!(r.window("plain", 1.0).is_none());
    }
}
