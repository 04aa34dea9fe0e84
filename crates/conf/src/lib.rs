//! # teamvirt-conf: libvirt domain / network / network-port XML
//!
//! The libvirt `src/conf` counterpart of teamvirt: safe loading, a typed
//! model, parsing, canonical formatting (what `virsh define` + `virsh dumpxml
//! --inactive` prints) and generic validation with libvirt's texts.
//!
//! ## Model ([`model`])
//!
//! - [`DomainDef`]: name, uuid, memory (KiB), vcpu, os,
//!   features, cpu, clock, lifecycle actions and [`Devices`](model::Devices):
//!   `disks`, `controllers`, `interfaces`, `serials`, `consoles`, `inputs`,
//!   `graphics`, `audios`, `videos`, `hostdevs`, `watchdogs`, `memballoon`,
//!   `panics`, plus `extra` (devices kept verbatim).
//! - [`Interface`](model::Interface) with [`InterfaceType`](model::InterfaceType),
//!   `mac`, `source`, `model`, `driver`, [`Teaming`](model::Teaming), ... and
//!   [`DeviceInfo`](model::DeviceInfo) (`alias`, `boot`, `rom`, `address`).
//!   [`Hostdev`](model::Hostdev) has `source.pci` and `teaming` too.
//! - [`Address`](model::Address) is an enum (`Pci(PciAddress)`, `Drive`, ...).
//! - [`NetworkDef`] and [`NetworkPortDef`].
//! - Every element struct has `pos: Pos` (0:0 when created in code).
//!   Unknown attributes/children are kept in `extra_attrs: Vec<RawAttr>` /
//!   `extra: Vec<RawElement>` and formatted back verbatim.
//! - All structs derive `Debug, Clone, PartialEq`; fields are public, so later
//!   stages add controllers, addresses, aliases and MACs by plain mutation.
//!
//! ## Loading and parsing ([`parse`])
//!
//! - `DomainDef::parse_str(text, Option<&Path>)` / `DomainDef::load(path)`
//!   -> `Result<(DomainDef, Vec<Diagnostic>), ConfError>`; the same for
//!   `NetworkDef` and `NetworkPortDef`; [`AnyDef`] picks by root element.
//!   The `Vec` holds parse warnings (unknown elements/attributes kept,
//!   ignored `<teaming/>`); the first libvirt parse error is the `Err`.
//! - Loading refuses files over [`MAX_XML_SIZE`] (10 MiB, before reading),
//!   non-UTF-8 and DTDs (no entity is ever expanded).
//! - The parse is libvirt's *inactive* parse: `id=` and non-user aliases are
//!   dropped (a dropped alias is kept in `DeviceInfo::dropped_alias` for
//!   warnings), `portid` is not formatted, memory is normalised to KiB
//!   ([`parse::memory_kib`]), MACs to lowercase.
//!
//! ## Formatting ([`mod@format`])
//!
//! `DomainDef::to_xml()`, `NetworkDef::to_xml()`, `NetworkPortDef::to_xml()`:
//! canonical XML as `virsh dumpxml --inactive` prints it (byte-identical to
//! libvirt's `*.x86_64-latest.xml` test outputs). Generic libvirt defaults
//! are applied when formatting (`currentMemory`, `placement='static'`,
//! `<clock offset='utc'/>`, lifecycle actions, `managed='no'` on subsystem
//! hostdevs); driver defaults (controllers, models, addresses) are not.
//!
//! ## Validation ([`validate`])
//!
//! `validate::validate_domain(&def, &driver)` runs libvirt's checks in
//! libvirt's order (driver domain check; per device the driver check then
//! the generic one; alias uniqueness) keeping the first error, then
//! teamvirt's own teaming checks ([`validate::teaming`]). The QEMU driver's
//! checks implement [`validate::DriverValidator`] in
//! `teamvirt_qemu::validate`; [`validate::NoDriver`] gives generic checks only.
//!
//! ## Schema check ([`schema`])
//!
//! `schema::check_str(text, file)` checks a document against libvirt's
//! RELAX NG grammar for its root (`domain.rng`, `network.rng`,
//! `networkport.rng`, domaincommon's `interface`/`hostdev`), as
//! `virt-xml-validate` does: libvirt v10.7.0's `.rng` files are embedded
//! (`crates/conf/schemas/`, LGPL-2.1-or-later) and run by the `relax-ng`
//! crate over the tree the safe loader built. Errors carry libxml2's wording
//! and a "did you mean" hint for near names.
//!
//! ## Diagnostics ([`diag`])
//!
//! [`Diagnostic`] `{ severity, code, message, file, pos, hint }`;
//! `message` is libvirt's full text including its prefix
//! (`unsupported configuration: ...`, `XML error: ...`). [`ConfError`] is a
//! document that could not be loaded/parsed; `to_diagnostic()` renders it.
// Issue 20's guard rails, here until every crate of the workspace meets
// them (then `[workspace.lints]`); the threshold is in clippy.toml.
#![warn(clippy::too_many_lines, clippy::unwrap_used)]

pub mod diag;
pub mod error;
pub mod model;

pub use diag::{Diagnostic, Pos, Severity};
pub use error::{ConfError, MAX_XML_SIZE};
pub use model::{DomainDef, NetworkDef, NetworkPortDef};
pub mod format;
pub mod parse;
pub mod schema;
pub mod validate;
#[doc(hidden)]
pub mod work;

pub use parse::{bytes_to_text, read_xml_file, AnyDef, DeviceDef};
