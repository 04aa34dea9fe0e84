//! Opening a state directory for one command: migrations whose driving
//! `teamvirt migrate` process died are settled first (they know both sides
//! of a migration; the sweep of [`Runtime::open`] after them would free one
//! side's VFs without cancelling anything), then the [`Runtime`] is opened.
//! It sits above both `migrate` and the lifecycle, so neither needs the
//! other for this.

use std::path::Path;

use crate::error::RuntimeError;
use crate::migrate::recover::recover_stale;
use crate::Runtime;
use teamvirt_host::state::StateDir;

/// Settle stale migrations of `state_dir` (either side), then
/// [`Runtime::open`]; what was done is in [`Runtime::notices`]. Every
/// lifecycle and network verb passes here once, before it takes any lock
/// (recovery only try-locks the domain in both state directories).
pub async fn open(state_dir: &StateDir) -> Result<Runtime, RuntimeError> {
    let notices = recover_stale(state_dir).await;
    Runtime::open_after(state_dir, notices)
}

/// `--state-dir` / `TEAMVIRT_STATE_DIR` / default, then [`open`].
pub async fn open_default(explicit: Option<&Path>) -> Result<Runtime, RuntimeError> {
    open(&crate::state_root::open_default(explicit)?).await
}
