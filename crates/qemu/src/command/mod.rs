//! Command-line building and its output formats.
//!
//! The QEMU command line libvirt would build for a domain.
//!
//! Pipeline: [`crate::defaults::define`] (post-parse defaults and PCI
//! addresses), [`crate::resolve::resolve_interfaces`] (networks), then
//! [`build`](fn@build). [`convert`](fn@convert) runs all three.

pub mod aliases;
pub mod build;
pub mod convert;
pub mod ctx;
pub mod devices;
pub mod net;
pub mod output;
pub mod props;
pub mod untranslated;

pub use build::build;
pub use convert::{convert, Conversion, ConvertError};
pub use ctx::{BuildOptions, Built, CommandError, Monitor, NetFds, Substitution};
pub use net::LAB_PRIMARY_MODEL;
pub use output::{shell_quote, CommandLine, Format};
pub use props::{escape_comma, Props};
