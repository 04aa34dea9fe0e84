//! QEMU side of teamvirt: what a QEMU binary can do (capabilities), what the
//! QEMU driver refuses (validation), what libvirt fills in when a domain is
//! defined (defaults, PCI addresses), and the command line it builds.
//!
//! # Benchmark
//!
//! `cargo bench -p teamvirt-qemu --bench convert` (add `-- --quick` for a
//! short run) times [`command::convert`](fn@command::convert) from domain XML text to argv for
//! the teaming cases of libvirt's corpus (`net-virtio-teaming`, `-hostdev`,
//! `-network`, and the `historical/v8.1.0` legacy-syntax ones), with the
//! capabilities loaded once outside the timed loop, next to parsing alone
//! in the same run. Criterion's `thrpt` lines are conversions (or parses)
//! per second; the closing table gives each case's convert/parse ratio.
//! Without the corpus (`teamvirt_testinfra::corpus_dir()`), it prints a
//! skip message and times nothing.
// Issue 20's guard rails, here until every crate of the workspace meets
// them (then `[workspace.lints]`); the threshold is in clippy.toml.
#![warn(clippy::too_many_lines, clippy::unwrap_used)]

pub mod caps;
pub mod command;
pub mod defaults;
/// Default directories (state root, capability cache).
pub mod dirs;
/// Device hotplug planning (alias, hotplug PCI address, QMP arguments).
pub mod hotplug;
pub mod machine;
pub mod options;
/// PCI address assignment (libvirt's `qemu_domain_address.c`).
pub mod pci;
/// `<interface type='network'>` resolution.
pub mod resolve;
/// Beyond-libvirt topology warnings for teaming pairs.
pub mod topology;
pub mod validate;
/// VNC passwords: `password=on`, then `set_password` over QMP.
pub mod vncauth;
