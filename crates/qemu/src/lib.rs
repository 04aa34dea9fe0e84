//! QEMU side of teamvirt: what a QEMU binary can do (capabilities), what the
//! QEMU driver refuses (validation), what libvirt fills in when a domain is
//! defined (defaults, PCI addresses), and the command line it builds.

/// Capabilities: libvirt's caps cache XML and live probing over QMP.
pub mod caps;
/// Command-line building and its output formats.
pub mod command;
/// Define-time defaults (libvirt's QEMU post-parse).
pub mod defaults;
/// PCI address assignment (libvirt's `qemu_domain_address.c`).
pub mod pci;
/// `<interface type='network'>` resolution.
pub mod resolve;
/// Beyond-libvirt topology warnings for teaming pairs.
pub mod topology;
/// QEMU-driver validation (libvirt's `qemu_validate.c` teaming checks).
pub mod validate;
