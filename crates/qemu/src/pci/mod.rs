//! PCI addressing as libvirt's QEMU driver does it for `pc` and `q35`.

pub mod alloc;

pub use alloc::{AddressSet, Bus, BusModel, Connect, PciAddr, PciError};
pub mod assign;

pub use assign::{assign_pci_addresses, AssignError};
