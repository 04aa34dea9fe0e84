//! Choosing the accelerator: `kvm` only when it can really run a guest,
//! `tcg` otherwise. `/dev/kvm` existing is not enough: nested software
//! virtualizers (e.g. kvm_pvm) expose it without VT-x/AMD-V and cannot boot
//! a stock kernel, so the CPU must also advertise vmx or svm.

use std::fmt;
use std::str::FromStr;

/// A QEMU accelerator teamvirt can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The default: kvm if usable here, else tcg.
    pub fn detect() -> Accel {
        match kvm_unusable() {
            None => Accel::Kvm,
            Some(_) => Accel::Tcg,
        }
    }
}

/// Why KVM cannot run a guest on this host, or `None` when it can: the
/// one rule `start` (through [`Accel::detect`]) and `capabilities` apply.
pub fn kvm_unusable() -> Option<String> {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| e.to_string());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    kvm_verdict(dev, &cpuinfo)
}

/// [`kvm_unusable`] on given facts: whether `/dev/kvm` opened read-write,
/// and `/proc/cpuinfo`.
fn kvm_verdict(dev_kvm: Result<(), String>, cpuinfo: &str) -> Option<String> {
    if let Err(e) = dev_kvm {
        return Some(format!("/dev/kvm cannot be opened read-write: {e}"));
    }
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if !hw {
        return Some(
            "the CPU advertises neither vmx nor svm in /proc/cpuinfo (no hardware \
             virtualization: such a /dev/kvm cannot boot a stock kernel)"
                .to_string(),
        );
    }
    None
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unknown accelerator name.
#[derive(Debug, thiserror::Error)]
#[error("unknown accelerator '{0}' (expected kvm or tcg)")]
pub struct AccelParseError(String);

impl FromStr for Accel {
    type Err = AccelParseError;
    fn from_str(s: &str) -> Result<Accel, AccelParseError> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(AccelParseError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_needs_device_and_hw_flags() {
        let vmx = "processor : 0\nflags\t\t: fpu vme vmx sse\n";
        let none = "processor : 0\nflags\t\t: fpu vme sse\n";
        assert_eq!(kvm_verdict(Ok(()), vmx), None);
        let e = kvm_verdict(Ok(()), none).unwrap();
        assert!(e.contains("neither vmx nor svm"), "{e}");
        let e = kvm_verdict(Err("Permission denied (os error 13)".into()), vmx).unwrap();
        assert_eq!(
            e,
            "/dev/kvm cannot be opened read-write: Permission denied (os error 13)"
        );
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("hvf".parse::<Accel>().is_err());
    }
}
