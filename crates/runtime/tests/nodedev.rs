//! `nodedev-list` / `nodedev-dumpxml` against a fake sysfs (a PF with two
//! VFs, their net devices): libvirt's names, the SR-IOV capabilities, and
//! every document valid against libvirt's own nodedev.rng (read in place
//! from the conformance data; skipped when it is absent).

use std::os::unix::fs::symlink;
use std::path::Path;

use relax_ng::{
    Content, DatatypeRegistry, ExpandedName, ResolveError, Schema, SchemaResolver, SchemaSource,
    SchemaSyntax,
};
use teamvirt_host::nodedev::{self, Cap};

const PF: &str = "0000:03:00.0";
const VFS: [&str; 2] = ["0000:03:10.0", "0000:03:10.2"];

/// `sys/devices/pci0000:00/0000:00:03.0/{PF,VFs}` linked from
/// `bus/pci/devices` and their interfaces from `class/net`, as on a host.
fn fake_sysfs(root: &Path) {
    let bridge = root.join("devices/pci0000:00/0000:00:03.0");
    let devs = root.join("bus/pci/devices");
    let net = root.join("class/net");
    for d in [
        &devs,
        &net,
        &root.join("bus/pci/drivers/ixgbe"),
        &root.join("bus/pci/drivers/ixgbevf"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    let dev = |addr: &str, driver: &str, ifname: &str, mac: &str| {
        let d = bridge.join(addr);
        std::fs::create_dir_all(d.join("net").join(ifname)).unwrap();
        std::fs::write(d.join("class"), "0x020000\n").unwrap();
        std::fs::write(d.join("vendor"), "0x8086\n").unwrap();
        std::fs::write(d.join("numa_node"), "-1\n").unwrap();
        symlink(root.join("bus/pci/drivers").join(driver), d.join("driver")).unwrap();
        symlink(&d, devs.join(addr)).unwrap();
        let n = d.join("net").join(ifname);
        std::fs::write(n.join("address"), format!("{mac}\n")).unwrap();
        std::fs::write(n.join("operstate"), "up\n").unwrap();
        std::fs::write(n.join("type"), "1\n").unwrap();
        symlink(&d, n.join("device")).unwrap();
        symlink(&n, net.join(ifname)).unwrap();
        d
    };
    let pf = dev(PF, "ixgbe", "enp3s0f0", "90:e2:ba:00:00:00");
    std::fs::write(pf.join("device"), "0x10fb\n").unwrap();
    std::fs::write(pf.join("sriov_totalvfs"), "63\n").unwrap();
    std::fs::write(pf.join("enp3s0f0-speed"), "").unwrap();
    std::fs::write(pf.join("net/enp3s0f0/speed"), "10000\n").unwrap();
    for (i, vf) in VFS.iter().enumerate() {
        let d = dev(
            vf,
            "ixgbevf",
            &format!("enp3s16f{i}"),
            &format!("aa:bb:cc:00:00:0{i}"),
        );
        std::fs::write(d.join("device"), "0x10ed\n").unwrap();
        symlink(&pf, d.join("physfn")).unwrap();
        symlink(&d, pf.join(format!("virtfn{}", i * 2))).unwrap();
        let g = root.join(format!("kernel/iommu_groups/{}/devices", 40 + i));
        std::fs::create_dir_all(&g).unwrap();
        symlink(&d, g.join(vf)).unwrap();
        symlink(g.parent().unwrap(), d.join("iommu_group")).unwrap();
    }
    // A virtual interface: no PCI device behind it.
    let lo = root.join("devices/virtual/net/lo");
    std::fs::create_dir_all(&lo).unwrap();
    std::fs::write(lo.join("address"), "00:00:00:00:00:00\n").unwrap();
    std::fs::write(lo.join("operstate"), "unknown\n").unwrap();
    std::fs::write(lo.join("type"), "772\n").unwrap();
    symlink(&lo, net.join("lo")).unwrap();
}

#[test]
fn list_by_capability_with_libvirt_names() {
    let d = tempfile::tempdir().unwrap();
    fake_sysfs(d.path());
    let names = |cap| {
        nodedev::list(d.path(), cap)
            .into_iter()
            .map(|n| n.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(Some(Cap::Pci)),
        ["pci_0000_03_00_0", "pci_0000_03_10_0", "pci_0000_03_10_2"]
    );
    assert_eq!(
        names(Some(Cap::Net)),
        [
            "net_enp3s0f0_90_e2_ba_00_00_00",
            "net_enp3s16f0_aa_bb_cc_00_00_00",
            "net_enp3s16f1_aa_bb_cc_00_00_01",
            "net_lo_00_00_00_00_00_00",
        ]
    );
    assert_eq!(names(None).len(), 7);
}

#[test]
fn pf_vf_and_net_xml_as_libvirt() {
    let d = tempfile::tempdir().unwrap();
    fake_sysfs(d.path());
    let root = d.path().canonicalize().unwrap();
    let bridge = root.join("devices/pci0000:00/0000:00:03.0");
    let pf = nodedev::dumpxml(d.path(), "pci_0000_03_00_0").unwrap();
    assert_eq!(
        pf,
        format!(
            "<device>
  <name>pci_0000_03_00_0</name>
  <path>{}/0000:03:00.0</path>
  <parent>pci_0000_00_03_0</parent>
  <driver>
    <name>ixgbe</name>
  </driver>
  <capability type='pci'>
    <class>0x020000</class>
    <domain>0</domain>
    <bus>3</bus>
    <slot>0</slot>
    <function>0</function>
    <product id='0x10fb'/>
    <vendor id='0x8086'/>
    <capability type='virt_functions' maxCount='63'>
      <address domain='0x0000' bus='0x03' slot='0x10' function='0x0'/>
      <address domain='0x0000' bus='0x03' slot='0x10' function='0x2'/>
    </capability>
  </capability>
</device>
",
            bridge.display()
        )
    );
    let vf = nodedev::dumpxml(d.path(), "pci_0000_03_10_2").unwrap();
    assert!(
        vf.contains(
            "    <capability type='phys_function'>
      <address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
    </capability>
"
        ),
        "{vf}"
    );
    assert!(
        vf.contains(
            "    <iommuGroup number='41'>
      <address domain='0x0000' bus='0x03' slot='0x10' function='0x2'/>
    </iommuGroup>
"
        ),
        "{vf}"
    );
    assert!(!vf.contains("virt_functions"), "{vf}");
    let net = nodedev::dumpxml(d.path(), "net_enp3s0f0_90_e2_ba_00_00_00").unwrap();
    assert_eq!(
        net,
        format!(
            "<device>
  <name>net_enp3s0f0_90_e2_ba_00_00_00</name>
  <path>{}/0000:03:00.0/net/enp3s0f0</path>
  <parent>pci_0000_03_00_0</parent>
  <capability type='net'>
    <interface>enp3s0f0</interface>
    <address>90:e2:ba:00:00:00</address>
    <link speed='10000' state='up'/>
    <capability type='80203'/>
  </capability>
</device>
",
            bridge.display()
        )
    );
    let lo = nodedev::dumpxml(d.path(), "net_lo_00_00_00_00_00_00").unwrap();
    assert!(lo.contains("<parent>computer</parent>"), "{lo}");
    let e = nodedev::dumpxml(d.path(), "pci_0000_09_00_0").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Node device not found: no node device with matching name 'pci_0000_09_00_0'"
    );
    assert_eq!(
        nodedev::pci_device(d.path(), "pci_0000_03_10_2").unwrap(),
        "0000:03:10.2"
    );
    assert!(nodedev::pci_device(d.path(), "net_lo_00_00_00_00_00_00").is_err());

    // Every document is valid against libvirt's nodedev.rng.
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("pf_vf_and_net_xml_as_libvirt") else {
        return;
    };
    let schema = compile(&corpus.join("schemas/nodedev.rng"));
    for n in nodedev::list(d.path(), None) {
        let x = nodedev::dumpxml(d.path(), &n.name).unwrap();
        let doc = roxmltree::Document::parse(&x).unwrap();
        let errors = schema
            .validate(&DatatypeRegistry::new(), &Elem(doc.root_element()))
            .unwrap();
        assert!(errors.is_empty(), "{}: {errors:?}\n{x}", n.name);
    }
}

/// nodedev.rng from the corpus, its `basictypes.rng` include from the
/// copy the conf crate ships.
fn compile(rng: &Path) -> Schema {
    struct Files;
    impl SchemaResolver for Files {
        fn resolve(&self, href: &str, _base: &str) -> Result<SchemaSource, ResolveError> {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../conf/schemas")
                .join(href);
            let t = std::fs::read_to_string(&p).map_err(|e| ResolveError::new(e.to_string()))?;
            Ok(SchemaSource::new(
                t,
                format!("file:{}", p.display()),
                SchemaSyntax::Xml,
            ))
        }
    }
    let text = std::fs::read_to_string(rng).unwrap();
    Schema::compile(
        &SchemaSource::new(text, format!("file:{}", rng.display()), SchemaSyntax::Xml),
        &Files,
    )
    .unwrap()
}

#[derive(Clone, Copy)]
struct Elem<'a, 'i>(roxmltree::Node<'a, 'i>);

impl relax_ng::Element for Elem<'_, '_> {
    type Location = roxmltree::NodeId;
    fn name(&self) -> ExpandedName {
        let t = self.0.tag_name();
        ExpandedName::new(t.namespace(), t.name())
    }
    fn attributes(&self) -> impl Iterator<Item = (ExpandedName, String)> {
        self.0.attributes().map(|a| {
            (
                ExpandedName::new(a.namespace(), a.name()),
                a.value().to_string(),
            )
        })
    }
    fn children(&self) -> impl Iterator<Item = Content<Self>> {
        let mut out = Vec::new();
        for c in self.0.children() {
            if c.is_element() {
                out.push(Content::Element(Elem(c)));
            } else if let Some(t) = c.text().filter(|t| c.is_text() && !t.is_empty()) {
                out.push(Content::Text(t.to_string()));
            }
        }
        out.into_iter()
    }
    fn location(&self) -> Option<roxmltree::NodeId> {
        Some(self.0.id())
    }
    fn namespace_bindings(&self) -> impl Iterator<Item = (String, String)> {
        self.0.namespaces().map(|n| {
            (
                n.name().unwrap_or_default().to_string(),
                n.uri().to_string(),
            )
        })
    }
}

/// A VF booked from a pool, or recorded as prepared for a running QEMU,
/// has users; `nodedev-detach`/`nodedev-reattach` refuse it.
#[test]
fn pci_device_users_from_pools_and_run_records() {
    use teamvirt_host::state::StateDir;
    use teamvirt_runtime::pool::VfPool;
    let d = tempfile::tempdir().unwrap();
    let sd = StateDir::open(&d.path().join("state")).unwrap();
    let rt = teamvirt_runtime::Runtime::open(&sd).unwrap();
    rt.define_network(
        &teamvirt_testinfra::xml::pool_xml("pool", &["0000:03:10.2"]),
        None,
        true,
    )
    .unwrap();
    assert!(rt.pci_device_users(VFS[1]).unwrap().is_empty());
    VfPool::new(&sd, "pool")
        .reserve(VFS[1], "vm", "hostdev0")
        .unwrap();
    assert_eq!(rt.pci_device_users(VFS[1]).unwrap(), ["vm"]);
    assert!(rt.pci_device_users(VFS[0]).unwrap().is_empty());
    let run = sd.run_root().join("other");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("hostdev.json"),
        format!(
            r#"{{"host":{{"sysfs":"/sys","ip":"ip"}},"vfs":[{{"address":"{}","detached_from":null,"pf":null,"original_mac":null,"vlan_set":false}}]}}"#,
            VFS[0]
        ),
    )
    .unwrap();
    assert_eq!(rt.pci_device_users(VFS[0]).unwrap(), ["other"]);
}
