//! Diagnostic tracing on stderr: off unless `--debug` or `TEAMVIRT_LOG`
//! asks for it, so the normal output (and what scripts parse) is unchanged.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Environment variable with an EnvFilter directive (`debug`,
/// `teamvirt_qmp=debug,teamvirt_runtime=info`, ...).
pub const LOG_ENV: &str = "TEAMVIRT_LOG";

/// What `--debug` turns on: everything teamvirt's own crates say.
const DEBUG_DIRECTIVE: &str =
    "teamvirt=debug,teamvirt_runtime=debug,teamvirt_qmp=debug,teamvirt_qemu=debug,teamvirt_conf=debug";

pub fn init(debug: bool) {
    let from_env = std::env::var(LOG_ENV).ok().filter(|v| !v.trim().is_empty());
    let directive = match (from_env, debug) {
        (Some(d), _) => d,
        (None, true) => DEBUG_DIRECTIVE.to_owned(),
        (None, false) => return,
    };
    let filter = match EnvFilter::try_new(&directive) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("warning: ignoring {LOG_ENV}='{directive}': {e}");
            EnvFilter::new(DEBUG_DIRECTIVE)
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
