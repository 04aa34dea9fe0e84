//! Autostart flags (`autostart`, `net-autostart`): which domains and
//! networks `start-autostart` brings back after a host reboot. A module of
//! its own so `network` and `control` both read them without depending on
//! each other.

use std::path::PathBuf;

use crate::error::RuntimeError;
use teamvirt_host::state::StateDir;

/// Which kind of object an autostart flag is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutostartKind {
    Domain,
    Network,
}

impl AutostartKind {
    fn suffix(self) -> &'static str {
        match self {
            AutostartKind::Domain => "domain",
            AutostartKind::Network => "network",
        }
    }
}

/// `autostart/NAME.domain` / `autostart/NAME.network`: the flag files
/// (libvirt keeps symlinks in an `autostart/` directory likewise).
pub(crate) fn autostart_path(
    sd: &StateDir,
    kind: AutostartKind,
    name: &str,
) -> Result<PathBuf, RuntimeError> {
    teamvirt_host::state::check_name(name)?;
    Ok(sd
        .root()
        .join("autostart")
        .join(format!("{name}.{}", kind.suffix())))
}

/// Whether `name` is marked for autostart.
pub fn autostart_enabled(sd: &StateDir, kind: AutostartKind, name: &str) -> bool {
    autostart_path(sd, kind, name)
        .map(|p| p.symlink_metadata().map(|m| m.is_file()).unwrap_or(false))
        .unwrap_or(false)
}
