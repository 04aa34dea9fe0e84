//! Where teamvirt keeps things by default: one rule for the state
//! directory and everything under it (the capability cache included), so
//! no two parts can disagree about a relative `XDG_STATE_HOME` or a
//! missing `HOME`.

use std::path::PathBuf;

/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "TEAMVIRT_STATE_DIR";

/// Why there is no default directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot determine the state directory: neither XDG_STATE_HOME nor HOME is set to an absolute path; use --state-dir or {STATE_DIR_ENV}")]
pub struct NoDefaultDir;

/// The default state directory: `/var/lib/teamvirt` for root, else
/// `$XDG_STATE_HOME/teamvirt`, else `$HOME/.local/state/teamvirt`.
/// Relative or empty values are ignored, as the XDG spec asks.
pub fn default_state_root() -> Result<PathBuf, NoDefaultDir> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    default_state_root_for(
        root,
        std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// [`default_state_root`] on given facts (for tests).
pub fn default_state_root_for(
    is_root: bool,
    xdg_state: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Result<PathBuf, NoDefaultDir> {
    if is_root {
        return Ok(PathBuf::from("/var/lib/teamvirt"));
    }
    if let Some(x) = xdg_state.filter(|p| p.is_absolute()) {
        return Ok(x.join("teamvirt"));
    }
    match home.filter(|p| p.is_absolute()) {
        Some(h) => Ok(h.join(".local/state/teamvirt")),
        None => Err(NoDefaultDir),
    }
}

/// `$TEAMVIRT_STATE_DIR` when set and not empty, else [`default_state_root`].
pub fn state_root() -> Result<PathBuf, NoDefaultDir> {
    match std::env::var_os(STATE_DIR_ENV) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => default_state_root(),
    }
}

/// The capability probe cache: `cache/` in [`state_root`].
pub fn default_cache_dir() -> Result<PathBuf, NoDefaultDir> {
    state_root().map(|r| r.join("cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            default_state_root_for(true, p("/x"), p("/h")).unwrap(),
            PathBuf::from("/var/lib/teamvirt")
        );
        assert_eq!(
            default_state_root_for(false, p("/x"), p("/h")).unwrap(),
            PathBuf::from("/x/teamvirt")
        );
        assert_eq!(
            default_state_root_for(false, p("rel"), p("/h")).unwrap(),
            PathBuf::from("/h/.local/state/teamvirt")
        );
        assert_eq!(
            default_state_root_for(false, p(""), p("")),
            Err(NoDefaultDir)
        );
        assert_eq!(
            default_state_root_for(false, None, p("rel")),
            Err(NoDefaultDir)
        );
    }
}
