//! Arguments more than one verb takes: where the state lives, a domain
//! name, the bound of every wait.

use std::path::PathBuf;

use teamvirt_runtime::{Runtime, RuntimeError};

/// Upper bound of every wait a user gives in seconds (a day): a bound
/// beyond it is a typo, and a huge one would overflow a deadline.
pub const MAX_WAIT_SECS: u64 = 86_400;

/// Where the state lives.
#[derive(clap::Args, Debug, Clone)]
pub struct StateOpt {
    /// State directory (default: $TEAMVIRT_STATE_DIR, /var/lib/teamvirt for
    /// root, else $XDG_STATE_HOME/teamvirt).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateOpt {
    /// The runtime, with what opening it settled (a migration whose
    /// `teamvirt migrate` died) reported on stderr.
    pub fn open(&self) -> Result<Runtime, RuntimeError> {
        let rt = teamvirt_runtime::open_default(self.state_dir.as_deref())?;
        for n in rt.notices() {
            eprintln!("warning: {n}");
        }
        Ok(rt)
    }

    /// For verbs that only read: `None` when the state directory does not
    /// exist yet (nothing is defined or running), which reading must not
    /// create; else [`StateOpt::open`].
    pub fn open_existing(&self) -> Result<Option<Runtime>, RuntimeError> {
        let root = teamvirt_runtime::state::resolve_root(self.state_dir.as_deref())?;
        if std::fs::symlink_metadata(&root).is_err() {
            return Ok(None);
        }
        self.open().map(Some)
    }

    /// `f` on the runtime for a verb about domain `name` that only reads:
    /// without a state directory there is no such domain.
    pub fn read_domain<T>(
        &self,
        name: &str,
        f: impl FnOnce(&Runtime) -> Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        match self.open_existing()? {
            Some(rt) => f(&rt),
            None => Err(RuntimeError::NoDomain(name.to_owned())),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// Domain name.
    pub domain: String,
    #[command(flatten)]
    pub state: StateOpt,
}
