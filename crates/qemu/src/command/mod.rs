//! The QEMU command line libvirt would build for a domain.

pub mod output;
pub mod props;

pub use output::{shell_quote, CommandLine, Format};
pub use props::{escape_comma, Props};
