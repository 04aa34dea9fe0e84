//! The whole conversion: defaults, PCI addresses, network resolution,
//! checks, command line — what `domxml-to-native` prints and what
//! `teamvirt start` runs.

use teamvirt_conf::model::DomainDef;
use teamvirt_conf::validate::{libvirt_checks, teaming};
use teamvirt_conf::Diagnostic;
use thiserror::Error;

use super::build::build;
use super::ctx::{BuildOptions, Built, CommandError};
use crate::caps::QemuCaps;
use crate::defaults::{define, DefaultsError};
use crate::resolve::{resolve_interfaces, ActualNet, NetworkSource, ResolveError};
use crate::topology;
use crate::validate::QemuValidator;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ConvertError {
    #[error(transparent)]
    Defaults(#[from] DefaultsError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A libvirt validation error (first one, libvirt's text and position).
    #[error("{}", .0.message)]
    Invalid(Box<Diagnostic>),
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

/// Run the pipeline on a parsed domain. `in_use`: VFs
/// already given to other domains.
pub fn convert(
    mut def: DomainDef,
    caps: &QemuCaps,
    networks: &dyn NetworkSource,
    in_use: &[teamvirt_conf::model::PciAddress],
    opts: &BuildOptions,
) -> Result<Conversion, ConvertError> {
    // libvirt's define-time validation (generic + QEMU driver): its first
    // error refuses the domain; teamvirt's own teaming findings are passed
    // on, since XML libvirt accepts must keep working.
    let validator = QemuValidator {
        has_failover: Some(caps.supports_failover()),
    };
    libvirt_checks(&def, &validator).map_err(|d| ConvertError::Invalid(Box::new(d)))?;
    let mut warnings = teaming::checks(&def);
    define(&mut def, caps)?;
    let actual = resolve_interfaces(&def, networks, in_use)?;
    warnings.extend(topology::check(&def, &actual));
    let built = build(&def, caps, &actual, opts)?;
    Ok(Conversion {
        def,
        actual,
        built,
        warnings,
    })
}
