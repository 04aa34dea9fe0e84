//! The lifecycle API's guest agent verbs: `domifaddr --source agent`,
//! `shutdown --mode agent`, and the guest doctor of `teaming`.

use std::path::PathBuf;
use std::time::Duration;

use teamvirt_conf::model::GUEST_AGENT_CHANNEL;

use crate::agent::{Agent, AgentError, GuestInterface};
use crate::guestdoc::{self, GuestView};
use crate::teaming::TeamingPair;
use crate::{Runtime, RuntimeError};

/// How long one agent command may take (a TCG guest on a loaded host is slow).
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(10);

impl Runtime {
    /// The socket of a running domain's guest agent channel; `None` when
    /// its definition has none. A channel without `<source path>` has its
    /// socket in the run directory (the command line builder's rule), so
    /// it follows the domain to a migration's destination.
    pub fn agent_socket(&self, name: &str) -> Result<Option<PathBuf>, RuntimeError> {
        self.running(name)?;
        let live = self.live_def(name)?;
        let Some(ch) = live.devices.channels.iter().find(|c| c.is_guest_agent()) else {
            return Ok(None);
        };
        Ok(Some(match ch.source_path() {
            Some(p) => PathBuf::from(p),
            None => self.sd.run_paths(name)?.dir.join(GUEST_AGENT_CHANNEL),
        }))
    }

    fn agent(&self, name: &str) -> Result<Agent, RuntimeError> {
        let sock = self
            .agent_socket(name)?
            .ok_or(RuntimeError::Agent(AgentError::NotConfigured))?;
        Ok(Agent::connect(&sock, AGENT_TIMEOUT)?)
    }

    /// `domifaddr --source agent`: the guest's interfaces and addresses.
    pub fn guest_interfaces(&self, name: &str) -> Result<Vec<GuestInterface>, RuntimeError> {
        Ok(self.agent(name)?.interfaces()?)
    }

    /// `shutdown --mode agent`: the guest agent powers the guest off.
    pub fn shutdown_agent(&self, name: &str) -> Result<(), RuntimeError> {
        let mut a = self.agent(name)?;
        crate::domlog::event(&self.sd, name, "shutdown requested (guest agent)");
        Ok(a.shutdown()?)
    }

    /// The guest doctor for `pairs`: no agent channel and an agent that
    /// does not answer are reports, not errors.
    pub fn guest_view(&self, name: &str, pairs: &[TeamingPair]) -> Result<GuestView, RuntimeError> {
        let Some(sock) = self.agent_socket(name)? else {
            return Ok(GuestView::NoAgent);
        };
        let res = (|| {
            let mut a = Agent::connect(&sock, AGENT_TIMEOUT)?;
            let info = a.info()?;
            let ifaces = a.interfaces()?;
            let routes = if info.supports("guest-network-get-route") {
                Some(a.routes()?)
            } else {
                None
            };
            Ok::<_, AgentError>(guestdoc::diagnose(&info, pairs, &ifaces, routes.as_deref()))
        })();
        match res {
            Ok(r) => Ok(GuestView::Connected(r)),
            Err(e @ (AgentError::NotConnected { .. } | AgentError::Timeout(_))) => {
                Ok(GuestView::NotResponding {
                    reason: e.to_string(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}
