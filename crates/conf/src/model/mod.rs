//! The typed model of domain, network and network-port XML.
//!
//! Every element struct has `pos` (its source position, default for
//! programmatically created items). Attributes and children teamvirt does
//! not interpret are kept in `extra_attrs` / `extra` and survive formatting.

pub mod common;
pub mod devices;
pub mod domain;
pub mod interface;
pub mod network;
pub mod raw;

pub use common::*;
pub use devices::*;
pub use domain::*;
pub use interface::*;
pub use network::*;
pub use raw::*;
