//! One module per verb.
pub mod capabilities;
pub mod console;
pub mod control;
pub mod docs;
pub mod domain;
pub mod domjobabort;
pub mod domjobinfo;
pub mod domxml_to_native;
pub mod edit;
pub mod format;
pub mod host;
pub mod hotplug;
pub mod migrate;
pub mod migrate_dest;
pub mod net;
pub mod qemu_opts;
pub mod validate;
