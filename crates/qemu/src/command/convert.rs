//! The whole conversion: defaults, PCI addresses, network resolution,
//! checks, command line — what `domxml-to-native` prints and what
//! `teamvirt start` runs.

use teamvirt_conf::model::{DomainDef, InterfaceType};
use teamvirt_conf::Diagnostic;
use thiserror::Error;

use super::build::{build, BuildOptions, Built, CommandError};
use crate::caps::QemuCaps;
use crate::defaults::{define, DefaultsError};
use crate::resolve::{resolve_interfaces, ActualNet, NetworkSource, ResolveError};
use crate::topology;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ConvertError {
    #[error(transparent)]
    Defaults(#[from] DefaultsError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Command(#[from] CommandError),
    /// libvirt's text, e.g. the failover capability check.
    #[error("{0}")]
    Unsupported(String),
}

/// Result of [`convert`].
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The domain after define-time defaults (what `format --caps` prints).
    pub def: DomainDef,
    /// What each interface became.
    pub actual: Vec<ActualNet>,
    pub built: Built,
    /// Beyond-libvirt topology warnings (see [`crate::topology`]).
    pub warnings: Vec<Diagnostic>,
}

/// Run the pipeline on a parsed (and validated) domain. `in_use`: VFs
/// already given to other domains.
pub fn convert(
    mut def: DomainDef,
    caps: &QemuCaps,
    networks: &dyn NetworkSource,
    in_use: &[teamvirt_conf::model::PciAddress],
    opts: &BuildOptions,
) -> Result<Conversion, ConvertError> {
    let teaming = def.devices.interfaces.iter().any(|n| n.teaming.is_some())
        || def.devices.hostdevs.iter().any(|h| h.teaming.is_some());
    if teaming {
        caps.check_teaming_supported()
            .map_err(ConvertError::Unsupported)?;
    }
    define(&mut def, caps)?;
    let actual = resolve_interfaces(&def, networks, in_use)?;
    let warnings = topology::check(&def, &actual);
    let built = build(&def, caps, &actual, opts)?;
    let _ = InterfaceType::Hostdev;
    Ok(Conversion {
        def,
        actual,
        built,
        warnings,
    })
}
