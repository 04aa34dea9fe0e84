//! Arguments more than one verb takes: where the state lives, a domain
//! name, the bound of every wait.

use std::path::PathBuf;

use teamvirt_runtime::{Runtime, RuntimeError, StartOptions};

/// Upper bound of every wait a user gives in seconds (a day): a bound
/// beyond it is a typo, and a huge one would overflow a deadline.
pub const MAX_WAIT_SECS: u64 = 86_400;

/// How `start` and `create` launch a domain.
#[derive(clap::Args, Debug, Clone)]
pub struct LaunchArgs {
    /// Accelerator (default: kvm if usable on this host, else tcg).
    #[arg(long, value_parser = ["kvm", "tcg"])]
    pub accel: Option<String>,
    /// Lab mode: replace each VF primary by an emulated vmxnet3 (printed and
    /// recorded in the live XML).
    #[arg(long)]
    pub emulate_vf: bool,
    /// Wait until every teaming pair negotiated failover (default 60 s);
    /// fail naming the pairs that did not.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, require_equals = true, default_missing_value = "60",
          value_parser = clap::value_parser!(u64).range(1..=MAX_WAIT_SECS))]
    pub wait_failover: Option<u64>,
    /// Leave the domain paused (vCPUs stopped, as virsh start --paused);
    /// `resume` runs it.
    #[arg(long, conflicts_with = "wait_failover")]
    pub paused: bool,
}

impl LaunchArgs {
    pub fn options(&self) -> StartOptions {
        StartOptions {
            accel: self
                .accel
                .as_deref()
                .map(|s| s.parse().expect("clap checked")),
            emulate_vf: self.emulate_vf,
            wait_failover: self.wait_failover.map(std::time::Duration::from_secs),
            paused: self.paused,
            ..Default::default()
        }
    }
}

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
        let rt = crate::block_on(teamvirt_runtime::open_default(self.state_dir.as_deref()))?;
        for n in rt.notices() {
            eprintln!("warning: {n}");
        }
        Ok(rt)
    }

    /// For verbs that only read: `None` when the state directory does not
    /// exist yet (nothing is defined or running), which reading must not
    /// create; else [`StateOpt::open`].
    pub fn open_existing(&self) -> Result<Option<Runtime>, RuntimeError> {
        let root = teamvirt_runtime::state_root::resolve_root(self.state_dir.as_deref())?;
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
