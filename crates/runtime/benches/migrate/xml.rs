//! The lab-mode teaming domain and VF pool that the migration benchmark
//! and the CLI's migration tests (`crates/cli/tests/cli_migrate.rs`, which
//! includes this file by path: the two are in different crates and only
//! test code needs it) run on the test guest.

use std::path::Path;

/// Domain `name` with `pairs` standby/primary pairs (primaries from the
/// network `vfpool`), each device on its own root port. No `<emulator>`:
/// the default one (first on `PATH`) runs it, so that `scripts/test.sh`
/// can run the same tests with another QEMU.
pub fn teaming_domain_xml(
    name: &str,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    pairs: usize,
) -> String {
    let mut ctl = String::new();
    let mut nics = String::new();
    for i in 0..pairs {
        let mac = format!("52:54:00:12:34:{:02x}", 0x56 + i);
        let (sb, pr) = (2 * i + 1, 2 * i + 2);
        ctl.push_str(&format!(
            "<controller type='pci' index='{sb}' model='pcie-root-port'/><controller type='pci' index='{pr}' model='pcie-root-port'/>"
        ));
        nics.push_str(&format!(
            "<interface type='user'><mac address='{mac}'/><model type='virtio'/><teaming type='persistent'/><alias name='ua-sb{i}'/><address type='pci' domain='0x0000' bus='{sb:#04x}' slot='0x00' function='0x0'/></interface>\n\
             <interface type='network'><mac address='{mac}'/><source network='vfpool'/><teaming type='transient' persistent='ua-sb{i}'/><address type='pci' domain='0x0000' bus='{pr:#04x}' slot='0x00' function='0x0'/></interface>\n"
        ));
    }
    format!(
        "<domain type='qemu'>\n<name>{name}</name>\n<memory unit='MiB'>256</memory>\n<vcpu>1</vcpu>\n\
         <os><type arch='x86_64' machine='q35'>hvm</type><kernel>{}</kernel><initrd>{}</initrd><cmdline>{cmdline}</cmdline></os>\n\
         <features><acpi/></features>\n<devices>\n\
         <controller type='pci' index='0' model='pcie-root'/>{ctl}\n{nics}\
         <serial type='pty'><target port='0'/></serial>\n<memballoon model='none'/>\n</devices>\n</domain>\n",
        kernel.display(),
        initrd.display()
    )
}

/// The hostdev network `vfpool` with `vfs` VFs.
pub fn vfpool_network_xml(vfs: usize) -> String {
    let addrs: String = (0..vfs)
        .map(|i| {
            format!(
                "<address type='pci' domain='0x0000' bus='0x03' slot='{:#04x}' function='{:#x}'/>",
                0x10 + i / 8,
                i % 8
            )
        })
        .collect();
    format!("<network><name>vfpool</name><forward mode='hostdev' managed='yes'>{addrs}</forward></network>")
}
