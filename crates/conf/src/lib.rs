//! # teamvirt-conf: libvirt domain / network / network-port XML
//!
//! The libvirt `src/conf` counterpart of teamvirt: safe loading, a typed
//! model, parsing, canonical formatting (what `virsh define` + `virsh dumpxml
//! --inactive` prints) and generic validation with libvirt's texts.
//!
//! ## Model ([`model`])
//!
//! - [`DomainDef`](model::DomainDef): name, uuid, memory (KiB), vcpu, os,
//!   features, cpu, clock, lifecycle actions and [`Devices`](model::Devices):
//!   `disks`, `controllers`, `interfaces`, `serials`, `consoles`, `inputs`,
//!   `graphics`, `audios`, `videos`, `hostdevs`, `watchdogs`, `memballoon`,
//!   `panics`, plus `extra` (devices kept verbatim).
//! - [`Interface`](model::Interface) with [`InterfaceType`](model::InterfaceType),
//!   `mac`, `source`, `model`, `driver`, [`Teaming`](model::Teaming), ... and
//!   [`DeviceInfo`](model::DeviceInfo) (`alias`, `boot`, `rom`, `address`).
//!   [`Hostdev`](model::Hostdev) has `source.pci` and `teaming` too.
//! - [`Address`](model::Address) is an enum (`Pci(PciAddress)`, `Drive`, ...).
//! - [`NetworkDef`](model::NetworkDef) and [`NetworkPortDef`](model::NetworkPortDef).
//! - Every element struct has `pos: Pos` (0:0 when created in code).
//!   Unknown attributes/children are kept in `extra_attrs: Vec<RawAttr>` /
//!   `extra: Vec<RawElement>` and formatted back verbatim.
//! - All structs derive `Debug, Clone, PartialEq`; fields are public, so later
//!   stages add controllers, addresses, aliases and MACs by plain mutation.
//!
//! ## Diagnostics ([`diag`])
//!
//! [`Diagnostic`](diag::Diagnostic) `{ severity, code, message, file, pos, hint }`;
//! `message` is libvirt's full text including its prefix
//! (`unsupported configuration: ...`, `XML error: ...`). [`ConfError`] is a
//! document that could not be loaded/parsed; `to_diagnostic()` renders it.

pub mod diag;
pub mod error;
pub mod model;

pub use diag::{Diagnostic, Pos, Severity};
pub use error::{ConfError, MAX_XML_SIZE};
pub use model::{DomainDef, NetworkDef, NetworkPortDef};
pub mod format;
pub mod parse;
pub mod validate;

pub use parse::{bytes_to_text, read_xml_file, AnyDef};
