//! Which state directory a command uses: `--state-dir`, else
//! `TEAMVIRT_STATE_DIR`, else the default of `teamvirt_qemu::dirs` (one
//! rule for every default directory). The directory itself:
//! [`teamvirt_host::state`].

use std::path::{Path, PathBuf};

use teamvirt_host::state::{StateDir, StateError, STATE_DIR_ENV};

/// The default state directory: `/var/lib/teamvirt` for root,
/// `$XDG_STATE_HOME/teamvirt` (or `~/.local/state/teamvirt`) otherwise
/// (one rule for every default directory: [`teamvirt_qemu::dirs`]).
pub fn default_root() -> Result<PathBuf, StateError> {
    teamvirt_qemu::dirs::default_state_root().map_err(|_| StateError::NoDefault)
}

/// `--state-dir` if given, else `TEAMVIRT_STATE_DIR`, else [`default_root`].
pub fn resolve_root(explicit: Option<&Path>) -> Result<PathBuf, StateError> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    match std::env::var_os(STATE_DIR_ENV) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => default_root(),
    }
}

/// [`resolve_root`] + [`StateDir::open`].
pub fn open_default(explicit: Option<&Path>) -> Result<StateDir, StateError> {
    StateDir::open(&resolve_root(explicit)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_root_wins() {
        let r = resolve_root(Some(Path::new("/some/where"))).unwrap();
        assert_eq!(r, PathBuf::from("/some/where"));
    }

    /// The directory's error names the variable the default rule reads.
    #[test]
    fn one_variable_name() {
        assert_eq!(STATE_DIR_ENV, teamvirt_qemu::dirs::STATE_DIR_ENV);
    }
}
