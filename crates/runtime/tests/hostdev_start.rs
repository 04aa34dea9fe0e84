//! `start` prepares real VF primaries on the host (fake sysfs, fake `ip`)
//! before QEMU opens them and gives them back when QEMU is gone; lab-mode
//! primaries are never touched.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use teamvirt_host::hostdev::HostPrep;
use teamvirt_host::state::StateDir;
use teamvirt_runtime::{Runtime, StartOptions};

use teamvirt_host::asyncrt::block_on_in_test as block_on;

const VF: &str = "0000:03:10.2";
const PF: &str = "0000:03:00.0";

/// A PF `enp3s0f0` whose VF 1 is `VF` on ixgbevf; `ip` logs its argv.
fn fake_host(dir: &Path) -> HostPrep {
    let root = dir.join("sys");
    let devs = root.join("bus/pci/devices");
    for d in ["ixgbevf", "vfio-pci"] {
        let p = root.join("bus/pci/drivers").join(d);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("unbind"), "").unwrap();
    }
    std::fs::write(root.join("bus/pci/drivers_probe"), "").unwrap();
    std::fs::create_dir_all(devs.join(PF).join("net/enp3s0f0")).unwrap();
    for (n, a) in [(0, "0000:03:10.0"), (1, VF)] {
        let d = devs.join(a);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("driver_override"), "(null)\n").unwrap();
        symlink("../../drivers/ixgbevf", d.join("driver")).unwrap();
        symlink(format!("../{PF}"), d.join("physfn")).unwrap();
        symlink(format!("../{a}"), devs.join(PF).join(format!("virtfn{n}"))).unwrap();
    }
    std::fs::create_dir_all(devs.join(VF).join("net/eth5")).unwrap();
    std::fs::write(
        devs.join(VF).join("net/eth5/address"),
        "aa:bb:cc:00:00:01\n",
    )
    .unwrap();
    let ip = dir.join("ip");
    std::fs::write(
        &ip,
        format!(
            // `ip -j -d link show dev PF`: the PF's view of its VFs (VF 1
            // has no administrative MAC); any other call is logged.
            "#!/bin/sh\ncase \"$*\" in *' show '*) echo '{}'; exit 0;; esac\necho \"$*\" >> '{}'\n",
            r#"[{"ifname":"enp3s0f0","vfinfo_list":[{"vf":1,"link_type":"ether","address":"00:00:00:00:00:00"}]}]"#,
            dir.join("ip.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).unwrap();
    HostPrep { sysfs: root, ip }
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The pool `pool`: one VF, VLAN 42.
fn net() -> String {
    teamvirt_testinfra::xml::pool_xml_vlan("pool", &[VF], 42)
}

fn domain(qemu: &Path) -> String {
    teamvirt_testinfra::xml::PairDomain::new("vm")
        .domain_type("qemu")
        .mac("52:54:00:6d:90:02")
        .standby("ua-backup0")
        .pool("pool")
        .memballoon(None)
        .devices_first(&format!("    <emulator>{}</emulator>\n", qemu.display()))
        .xml()
}

fn setup(t: &Path, qemu: &Path, emulate: bool) -> (Runtime, HostPrep) {
    let sd = StateDir::open(&t.join("state")).unwrap();
    let mut rt = Runtime::open(&sd).unwrap();
    let host = fake_host(t);
    rt.set_host_prep(host.clone());
    rt.define_network(&net(), None, emulate).unwrap();
    block_on(rt.define_domain(&domain(qemu), None)).unwrap();
    (rt, host)
}

fn ip_log(t: &Path) -> Vec<String> {
    read(t.join("ip.log")).lines().map(str::to_owned).collect()
}

/// Destroys domain "vm" when dropped: a failed assertion between start
/// and destroy must not leave its QEMU running.
struct Stops<'a>(&'a Runtime);

impl Drop for Stops<'_> {
    fn drop(&mut self) {
        let _ = self.0.destroy("vm");
    }
}

const SET: &str = "link set dev enp3s0f0 vf 1 mac 52:54:00:6d:90:02 vlan 42";
/// What the PF showed before: no administrative MAC (zeros clear it).
const RESTORE: &str = "link set dev enp3s0f0 vf 1 mac 00:00:00:00:00:00 vlan 0";

#[test]
fn real_vf_is_prepared_before_start_and_given_back_on_destroy() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("real_vf_is_prepared") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (rt, host) = setup(t.path(), &qemu, false);
    // QEMU hides a failover primary until the guest negotiates, so the
    // missing VF does not stop it from running here.
    block_on(rt.start("vm", &StartOptions::default())).unwrap();
    let _stops = Stops(&rt);
    let dev = host.sysfs.join("bus/pci/devices").join(VF);
    assert_eq!(ip_log(t.path()), [SET]);
    assert_eq!(read(dev.join("driver_override")), "vfio-pci");
    assert_eq!(read(host.sysfs.join("bus/pci/drivers/ixgbevf/unbind")), VF);
    std::fs::write(host.sysfs.join("bus/pci/drivers_probe"), "").unwrap();
    rt.destroy("vm").unwrap();
    assert_eq!(ip_log(t.path()), [SET, RESTORE]);
    assert_eq!(read(dev.join("driver_override")), "\n");
    assert_eq!(read(host.sysfs.join("bus/pci/drivers_probe")), VF);
    assert_eq!(rt.list_networks().unwrap()[0].vfs_used, 0);
}

#[test]
fn real_vf_is_given_back_when_qemu_fails_to_launch() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("real_vf_launch_fails") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    // The QEMU user must reach the wrapper (the state dir inside stays 0700).
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    // Probes capabilities like QEMU, but the domain's QEMU exits at once.
    let wrapper = t.path().join("qemu-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in *guest=vm*) echo 'boom' >&2; exit 1;; esac\nexec '{}' \"$@\"\n",
            qemu.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (rt, host) = setup(t.path(), &wrapper, false);
    let e = block_on(rt.start("vm", &StartOptions::default())).unwrap_err();
    assert!(e.to_string().contains("exited while starting"), "{e}");
    assert_eq!(ip_log(t.path()), [SET, RESTORE]);
    let dev = host.sysfs.join("bus/pci/devices").join(VF);
    assert_eq!(read(dev.join("driver_override")), "\n");
    assert_eq!(rt.list_networks().unwrap()[0].vfs_used, 0);
}

#[test]
fn bind_failure_names_the_vf_and_frees_the_pool() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("bind_failure") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (rt, host) = setup(t.path(), &qemu, false);
    std::fs::remove_file(host.sysfs.join("bus/pci/drivers_probe")).unwrap();
    std::fs::create_dir(host.sysfs.join("bus/pci/drivers_probe")).unwrap();
    let e = block_on(rt.start("vm", &StartOptions::default()))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "Failed to bind PCI device 0000:03:10.2 to vfio-pci: cannot write '0000:03:10.2' to "
        ),
        "{e}"
    );
    assert!(e.contains("sys/bus/pci/drivers_probe"), "{e}");
    assert_eq!(rt.list_networks().unwrap()[0].vfs_used, 0);
}

#[test]
fn lab_mode_primary_is_never_touched() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("lab_mode_untouched") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (rt, host) = setup(t.path(), &qemu, true);
    let r = block_on(rt.start("vm", &StartOptions::default())).unwrap();
    let _stops = Stops(&rt);
    assert_eq!(r.substitutions.len(), 1);
    rt.destroy("vm").unwrap();
    assert_eq!(read(t.path().join("ip.log")), "");
    let dev = host.sysfs.join("bus/pci/devices").join(VF);
    assert_eq!(read(dev.join("driver_override")), "(null)\n");
    assert_eq!(read(host.sysfs.join("bus/pci/drivers_probe")), "");
}

/// `<forward mode='hostdev' managed='no'>`: a VF still on its host driver
/// is refused with libvirt's text before anything is changed.
#[test]
fn unmanaged_pool_vf_on_its_driver_is_refused_with_libvirts_text() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("unmanaged_refused") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (rt, host) = setup(t.path(), &qemu, false);
    rt.undefine_network("pool").unwrap();
    rt.define_network(&net().replace("managed='yes'", "managed='no'"), None, false)
        .unwrap();
    let e = block_on(rt.start("vm", &StartOptions::default()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Requested operation is not valid: Unmanaged PCI device 0000:03:10.2 must be manually detached from the host"),
        "{e}"
    );
    assert_eq!(rt.list_networks().unwrap()[0].vfs_used, 0);
    let dev = host.sysfs.join("bus/pci/devices").join(VF);
    assert_eq!(read(dev.join("driver_override")), "(null)\n");
    assert_eq!(read(host.sysfs.join("bus/pci/drivers/ixgbevf/unbind")), "");
    assert_eq!(read(t.path().join("ip.log")), "");
}
