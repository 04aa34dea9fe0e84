//! XML fixtures the tests and benchmarks share, instead of a copy per
//! file: the lab-mode teaming domain the migration tests and benchmark
//! boot on the test guest, a one-pair domain
//! ([`PairDomain`](crate::xml::PairDomain)), and VF-pool
//! (hostdev) networks.

use std::path::{Path, PathBuf};

/// A domain with one teaming pair: a virtio standby on user networking
/// (`<teaming type='persistent'/>`) and its primary, a `type='network'`
/// interface drawing a VF from a pool (lab mode makes it a vmxnet3). No
/// disk and no kernel unless [`boot`](Self::boot) gives one: QEMU runs,
/// nothing boots. Fields are public; the setters chain.
#[derive(Debug, Clone)]
pub struct PairDomain {
    pub name: String,
    /// `<uuid>`; `None` leaves it to the definition.
    pub uuid: Option<String>,
    /// `kvm` or `qemu` (teamvirt runs TCG either way where KVM is absent).
    pub domain_type: String,
    pub memory_mib: u32,
    /// Both halves carry it, as failover requires.
    pub mac: String,
    /// The standby's alias (the primary's `persistent=`).
    pub standby: String,
    /// The VF pool network of the primary.
    pub pool: String,
    /// Kernel, initrd and command line of a guest to boot.
    pub boot: Option<(PathBuf, PathBuf, String)>,
    /// Devices after the pair (serial, console...).
    pub extra_devices: String,
    /// `<memballoon model=.../>`; `None` leaves the element out.
    pub memballoon: Option<String>,
    /// The standby's `type='network'` source; `None`: user networking.
    pub standby_network: Option<String>,
    /// The standby's and the primary's PCI bus (`<address>` at slot 0).
    pub standby_bus: Option<u8>,
    pub primary_bus: Option<u8>,
    /// Devices before the pair (`<emulator>`, controllers, a disk...).
    pub first_devices: String,
    /// Elements after `</devices>` (`<on_poweroff>`...).
    pub after_devices: String,
}

impl PairDomain {
    /// `name` as a `kvm` domain of 64 MiB, MAC `52:54:00:12:34:56`,
    /// standby `ua-standby0`, primary from `vfpool`, no balloon.
    pub fn new(name: &str) -> Self {
        PairDomain {
            name: name.to_owned(),
            uuid: None,
            domain_type: "kvm".into(),
            memory_mib: 64,
            mac: "52:54:00:12:34:56".into(),
            standby: "ua-standby0".into(),
            pool: "vfpool".into(),
            boot: None,
            extra_devices: String::new(),
            memballoon: Some("none".into()),
            standby_network: None,
            standby_bus: None,
            primary_bus: None,
            first_devices: String::new(),
            after_devices: String::new(),
        }
    }

    pub fn uuid(mut self, uuid: &str) -> Self {
        self.uuid = Some(uuid.to_owned());
        self
    }

    pub fn domain_type(mut self, t: &str) -> Self {
        self.domain_type = t.to_owned();
        self
    }

    /// The standby on `type='network'` `network` instead of user networking.
    pub fn standby_network(mut self, network: &str) -> Self {
        self.standby_network = Some(network.to_owned());
        self
    }

    /// The standby on PCI bus `bus`, slot 0.
    pub fn standby_bus(mut self, bus: u8) -> Self {
        self.standby_bus = Some(bus);
        self
    }

    /// The primary on PCI bus `bus`, slot 0.
    pub fn primary_bus(mut self, bus: u8) -> Self {
        self.primary_bus = Some(bus);
        self
    }

    /// Put devices (XML, indented by the caller) before the pair.
    pub fn devices_first(mut self, xml: &str) -> Self {
        self.first_devices.push_str(xml);
        self
    }

    /// Put elements (XML, indented by the caller) after `</devices>`.
    pub fn after_devices(mut self, xml: &str) -> Self {
        self.after_devices.push_str(xml);
        self
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    pub fn mac(mut self, mac: &str) -> Self {
        self.mac = mac.to_owned();
        self
    }

    pub fn standby(mut self, alias: &str) -> Self {
        self.standby = alias.to_owned();
        self
    }

    pub fn pool(mut self, network: &str) -> Self {
        self.pool = network.to_owned();
        self
    }

    pub fn boot(mut self, kernel: &Path, initrd: &Path, cmdline: &str) -> Self {
        self.boot = Some((kernel.to_owned(), initrd.to_owned(), cmdline.to_owned()));
        self
    }

    /// Append devices (XML, indented by the caller) after the pair.
    pub fn devices(mut self, xml: &str) -> Self {
        self.extra_devices.push_str(xml);
        self
    }

    pub fn memballoon(mut self, model: Option<&str>) -> Self {
        self.memballoon = model.map(str::to_owned);
        self
    }

    /// The XML, two-space indented.
    pub fn xml(&self) -> String {
        let boot = match &self.boot {
            Some((k, i, c)) => format!(
                "\n    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    <cmdline>{c}</cmdline>",
                k.display(),
                i.display()
            ),
            None => String::new(),
        };
        let balloon = self
            .memballoon
            .as_deref()
            .map(|m| format!("    <memballoon model='{m}'/>\n"))
            .unwrap_or_default();
        let standby_source = match &self.standby_network {
            Some(n) => format!("<interface type='network'>\n      <source network='{n}'/>"),
            None => "<interface type='user'>".to_owned(),
        };
        let address = |bus: Option<u8>| {
            bus.map(|b| {
                format!(
                    "      <address type='pci' domain='0x0000' bus='{b:#04x}' slot='0x00' function='0x0'/>\n"
                )
            })
            .unwrap_or_default()
        };
        let uuid = self
            .uuid
            .as_deref()
            .map(|u| format!("\n  <uuid>{u}</uuid>"))
            .unwrap_or_default();
        let (standby_address, primary_address) =
            (address(self.standby_bus), address(self.primary_bus));
        let PairDomain {
            name,
            domain_type,
            memory_mib,
            mac,
            standby,
            pool,
            extra_devices,
            first_devices,
            after_devices,
            ..
        } = self;
        format!(
            "<domain type='{domain_type}'>
  <name>{name}</name>{uuid}
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>{boot}
  </os>
  <features><acpi/></features>
  <devices>
{first_devices}    {standby_source}
      <mac address='{mac}'/>
      <model type='virtio'/>
      <teaming type='persistent'/>
      <alias name='{standby}'/>
{standby_address}    </interface>
    <interface type='network'>
      <source network='{pool}'/>
      <mac address='{mac}'/>
      <model type='virtio'/>
      <teaming type='transient' persistent='{standby}'/>
{primary_address}    </interface>
{extra_devices}{balloon}  </devices>
{after_devices}</domain>
"
        )
    }
}

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

/// The hostdev network `vfpool` with `vfs` VFs (emulated addresses
/// `0000:03:SS.F` from slot 0x10 on).
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

/// A `<network>` called `name` forwarding in `hostdev` mode (a VF pool,
/// `managed='yes'`) over the VFs at `vfs` (`DDDD:BB:SS.F`, as given to
/// `--vf`), laid out with two-space indents like `net-dumpxml`.
pub fn pool_xml(name: &str, vfs: &[&str]) -> String {
    let mut addrs = String::new();
    for vf in vfs {
        addrs.push_str(&format!("    {}\n", pci_address(vf)));
    }
    format!(
        "<network>\n  <name>{name}</name>\n  <forward mode='hostdev' managed='yes'>\n{addrs}  </forward>\n</network>\n"
    )
}

/// [`pool_xml`] whose network tags its VFs' traffic with VLAN `tag`.
pub fn pool_xml_vlan(name: &str, vfs: &[&str], tag: u32) -> String {
    pool_xml(name, vfs).replace(
        "</network>",
        &format!("  <vlan>\n    <tag id='{tag}'/>\n  </vlan>\n</network>"),
    )
}

/// `<address type='pci' .../>` of `DDDD:BB:SS.F`, each field as written.
/// A malformed address is a bug in the calling test: it panics.
pub fn pci_address(vf: &str) -> String {
    let parse = || {
        let (domain, rest) = vf.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (slot, function) = rest.split_once('.')?;
        Some(format!(
            "<address type='pci' domain='0x{domain}' bus='0x{bus}' slot='0x{slot}' function='0x{function}'/>"
        ))
    };
    parse().unwrap_or_else(|| panic!("not a PCI address DDDD:BB:SS.F: {vf}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_layout() {
        assert_eq!(
            pool_xml("vfpool", &["0000:3b:02.1"]),
            "<network>\n  <name>vfpool</name>\n  <forward mode='hostdev' managed='yes'>\n    <address type='pci' domain='0x0000' bus='0x3b' slot='0x02' function='0x1'/>\n  </forward>\n</network>\n"
        );
    }

    #[test]
    fn pair_domain_defaults_and_boot() {
        let x = PairDomain::new("d").xml();
        assert!(x.contains("<name>d</name>") && x.contains("<memballoon model='none'/>"));
        assert_eq!(x.matches("52:54:00:12:34:56").count(), 2);
        assert!(x.contains("persistent='ua-standby0'") && !x.contains("<kernel>"));
        let x = PairDomain::new("d")
            .boot(Path::new("/k"), Path::new("/i"), "console=ttyS0")
            .memballoon(None)
            .devices("    <serial type='pty'/>\n")
            .xml();
        assert!(
            x.contains("<kernel>/k</kernel>") && x.contains("<cmdline>console=ttyS0</cmdline>")
        );
        assert!(x.contains("    <serial type='pty'/>\n  </devices>") && !x.contains("memballoon"));
    }

    #[test]
    fn pool_with_a_vlan() {
        assert!(pool_xml_vlan("p", &["0000:03:10.2"], 42)
            .ends_with("  </forward>\n  <vlan>\n    <tag id='42'/>\n  </vlan>\n</network>\n"));
    }

    #[test]
    fn pair_domain_variants() {
        let x = PairDomain::new("d")
            .domain_type("qemu")
            .uuid("6d3a7b3c-2b8e-4a55-9f3c-0c7f8d9e0a11")
            .standby_network("lan")
            .standby_bus(1)
            .primary_bus(2)
            .devices_first("    <emulator>/q</emulator>\n")
            .after_devices("  <on_poweroff>destroy</on_poweroff>\n")
            .xml();
        assert!(
            x.starts_with("<domain type='qemu'>\n  <name>d</name>\n  <uuid>6d3a7b3c-2b8e-4a55-9f3c-0c7f8d9e0a11</uuid>\n"),
            "{x}"
        );
        assert!(
            x.contains("<devices>\n    <emulator>/q</emulator>\n    <interface type='network'>\n      <source network='lan'/>"),
            "{x}"
        );
        assert!(
            x.contains("bus='0x01' slot='0x00' function='0x0'/>\n    </interface>"),
            "{x}"
        );
        assert!(x.contains("bus='0x02'") && !PairDomain::new("d").xml().contains("<address"));
        assert!(
            x.ends_with("</devices>\n  <on_poweroff>destroy</on_poweroff>\n</domain>\n"),
            "{x}"
        );
    }

    #[test]
    fn teaming_pairs_share_a_mac_and_name_their_standby() {
        let x = teaming_domain_xml("vm", Path::new("/k"), Path::new("/i"), "console=ttyS0", 2);
        assert_eq!(x.matches("<teaming type='persistent'/>").count(), 2);
        assert!(x.contains("persistent='ua-sb1'") && x.contains("52:54:00:12:34:57"));
        assert!(vfpool_network_xml(9).contains("slot='0x11' function='0x0'"));
    }
}
