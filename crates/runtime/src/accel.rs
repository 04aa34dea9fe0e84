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
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self::choose(teamvirt_qemu::caps::probe::dev_kvm_opens(), &cpuinfo)
    }

    fn choose(dev_kvm_usable: bool, cpuinfo: &str) -> Accel {
        let hw = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        if dev_kvm_usable && hw {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }
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
        assert_eq!(Accel::choose(true, vmx), Accel::Kvm);
        assert_eq!(Accel::choose(true, none), Accel::Tcg);
        assert_eq!(Accel::choose(false, vmx), Accel::Tcg);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("hvf".parse::<Accel>().is_err());
    }
}
