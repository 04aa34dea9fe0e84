use super::*;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use teamvirt_host::dac::*;
use teamvirt_host::privdrop::resolve;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn nobody() -> Identity {
    resolve("+65534:+65534").unwrap()
}

/// QEMU keeps teamvirt's identity (non-root teamvirt).
fn myself() -> Identity {
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Identity {
        name: format!("+{uid}"),
        uid,
        gid,
        groups: vec![],
        switch: false,
    }
}

struct Fixture {
    t: tempfile::TempDir,
    sd: StateDir,
}

impl Fixture {
    fn new() -> Fixture {
        let t = tempfile::tempdir().unwrap();
        let sd = StateDir::open(&t.path().join("state")).unwrap();
        Fixture { t, sd }
    }
    /// A file only root may read, in a directory only root may enter.
    fn private_file(&self, name: &str) -> PathBuf {
        let d = self.t.path().join("private");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let p = d.join(name);
        std::fs::write(&p, b"data").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
    fn run_dir(&self, name: &str) -> PathBuf {
        self.sd.create_run_dir(name).unwrap().dir
    }
    /// A host tree where PCI device 0000:3b:02.1 is in IOMMU group
    /// `group`, whose node `/dev/vfio/GROUP` (root's, 0600) it returns.
    fn vfio_host(&self, group: u32) -> (HostRoots, PathBuf) {
        let roots = HostRoots {
            sysfs: self.t.path().join("sys"),
            dev: self.t.path().join("dev"),
        };
        let devdir = roots.sysfs.join("bus/pci/devices/0000:3b:02.1");
        std::fs::create_dir_all(&devdir).unwrap();
        std::os::unix::fs::symlink(
            format!("../../../kernel/iommu_groups/{group}"),
            devdir.join("iommu_group"),
        )
        .unwrap();
        std::fs::create_dir_all(roots.dev.join("vfio")).unwrap();
        let node = roots.dev.join(format!("vfio/{group}"));
        std::fs::write(&node, b"").unwrap();
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o600)).unwrap();
        (roots, node)
    }
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn fd_target(arg: &str) -> PathBuf {
    let n = arg.rsplit('/').next().unwrap();
    std::fs::read_link(format!("/proc/self/fd/{n}")).unwrap()
}

#[test]
fn options_split_and_join() {
    let o = teamvirt_qemu::options::split("socket,id=m,path=/a,,b/s,server=on");
    assert_eq!(o, ["socket", "id=m", "path=/a,b/s", "server=on"]);
    assert_eq!(
        teamvirt_qemu::options::join(&o),
        "socket,id=m,path=/a,,b/s,server=on"
    );
}

#[test]
fn memory_sizes() {
    assert_eq!(parse_mem("256"), Some(256 << 20));
    assert_eq!(parse_mem("size=219136k"), Some(219136 << 10));
    assert_eq!(parse_mem("size=2G,slots=4,maxmem=8G"), Some(2 << 30));
    assert_eq!(parse_mem("x"), None);
    let args: Vec<String> = ["-m", "256"].iter().map(|s| s.to_string()).collect();
    assert_eq!(memlock_bytes(&args), (256 << 20) + (1 << 30));
    assert_eq!(memlock_bytes(&[]), libc::RLIM_INFINITY);
}

/// The run-dir files become descriptors: the monitor socket is bound here
/// (root-only file) and passed as fd=, logs go through fdsets, the kernel
/// and the master key through /proc/self/fd; the recorded paths are kept
/// nowhere in the exec'd argv.
#[test]
fn run_dir_files_become_descriptors() {
    let f = Fixture::new();
    let dir = f.run_dir("vm");
    std::fs::write(dir.join(MASTER_KEY), [1u8; 32]).unwrap();
    let kernel = f.t.path().join("vmlinuz");
    std::fs::write(&kernel, b"kernel").unwrap();
    let sock = dir.join("qmp.sock");
    let serial = dir.join("serial.log");
    let console = dir.join("console.log");
    let mut args = crate::run::monitor_args(&sock);
    args.extend(
        [
            "-object",
            &format!(
                r#"{{"qom-type":"secret","id":"masterKey0","format":"raw","file":"{}"}}"#,
                dir.join(MASTER_KEY).display()
            ),
            "-chardev",
            &format!(
                "pty,id=charserial0,logfile={},logappend=on",
                console.display()
            ),
            "-kernel",
            &kernel.display().to_string(),
            "-serial",
            &format!("file:{}", serial.display()),
            "-name",
            "guest=vm",
        ]
        .map(String::from),
    );
    let lent = lend_as(&f.sd, "vm", &args, &myself(), &HostRoots::default()).unwrap();
    let a = &lent.args;
    let dir_s = dir.display().to_string();
    assert!(!a.iter().any(|x| x.contains(&dir_s)), "{a:?}");
    // Two logs: two fdsets, first on the command line.
    assert_eq!(a[0], "-add-fd");
    assert_eq!(a[2], "-add-fd");
    let mon = a.iter().find(|x| x.contains("id=charmonitor")).unwrap();
    assert!(mon.starts_with("socket,id=charmonitor,fd="), "{mon}");
    let m = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
    let k = &a[a.iter().position(|x| x == "-kernel").unwrap() + 1];
    assert!(k.starts_with("/proc/self/fd/"), "{k}");
    assert_eq!(fd_target(k), kernel);
    let obj = &a[a.iter().position(|x| x == "-object").unwrap() + 1];
    let j: Value = serde_json::from_str(obj).unwrap();
    assert_eq!(fd_target(j["file"].as_str().unwrap()), dir.join(MASTER_KEY));
    assert!(a.contains(&"file:/dev/fdset/2".to_string()), "{a:?}");
    assert!(
        a.iter()
            .any(|x| x.ends_with("logfile=/dev/fdset/1,logappend=on")),
        "{a:?}"
    );
    assert!(a.ends_with(&["-name".to_string(), "guest=vm".to_string()]));
    // Every descriptor named is one the child keeps.
    assert_eq!(lent.setup.keep_fds.len(), 5, "{:?}", lent.setup);
    for fd in &lent.setup.keep_fds {
        assert!(lent.fds.iter().any(|f| f.as_raw_fd() == *fd));
    }
    assert!(lent.setup.memlock.is_none());
    // Non-root teamvirt: nothing chowned, nothing to record.
    assert!(!dir.join(RECORD).exists());
    // Stop: the master key goes.
    assert!(release(&f.sd, "vm").unwrap().is_empty());
    assert!(!dir.join(MASTER_KEY).exists());
}

/// A kernel the QEMU user cannot read reaches it as a sealed in-memory
/// copy, not by a chown (nothing recorded); one it can read is passed as
/// the opened file itself; the master key too is a sealed copy, the file
/// stays root's (it was chowned to the QEMU user).
#[test]
fn unreadable_boot_file_is_lent_without_a_chown() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let f = Fixture::new();
    let dir = f.run_dir("vm");
    let key = dir.join(MASTER_KEY);
    std::fs::write(&key, [1u8; 32]).unwrap();
    let kernel = f.private_file("vmlinuz");
    let public = f.t.path().join("initrd");
    std::fs::write(&public, b"initrd").unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    let args: Vec<String> = [
        "-object",
        &format!("secret,id=masterKey0,format=raw,file={}", key.display()),
        "-kernel",
        &kernel.display().to_string(),
        "-initrd",
        &public.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let lent = lend_as(&f.sd, "vm", &args, &nobody(), &HostRoots::default()).unwrap();
    assert!(lent.args[1].starts_with("secret,id=masterKey0,format=raw,file=/proc/self/fd/"));
    for a in [&lent.args[1], &lent.args[3], &lent.args[5]] {
        let fd: RawFd = a.rsplit('/').next().unwrap().parse().unwrap();
        assert!(lent.setup.keep_fds.contains(&fd), "{a} {:?}", lent.setup);
    }
    let copy = fd_target(&lent.args[3]);
    assert!(copy.to_string_lossy().starts_with("/memfd:"), "{copy:?}");
    assert_eq!(std::fs::read(&lent.args[3]).unwrap(), b"data");
    // Sealed: not even root writes to it.
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(&lent.args[3])
        .unwrap();
    assert!(std::io::Write::write_all(&mut w, b"evil").is_err());
    assert_eq!(owner(&kernel), (0, 0), "the kernel was chowned");
    assert_eq!(std::fs::metadata(&kernel).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(fd_target(&lent.args[5]), public);
    assert_eq!(owner(&key), (0, 0), "the master key was chowned");
    let kp = lent.args[1].rsplit("file=").next().unwrap();
    let k = fd_target(kp);
    assert!(k.to_string_lossy().starts_with("/memfd:"), "{k:?}");
    assert_eq!(std::fs::read(kp).unwrap(), [1u8; 32]);
    assert!(!dir.join(RECORD).exists(), "nothing to give back");
    drop(lent);
    assert!(release(&f.sd, "vm").unwrap().is_empty());
    assert!(!key.exists());
}

/// A disk QEMU's user could not open by its mode is lent as an fdset: a
/// read-only and a read-write descriptor of the file itself, nothing
/// chowned; a read-only disk gets the read-only one only.
#[test]
fn disk_is_lent_by_descriptor_not_chowned() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let f = Fixture::new();
    f.run_dir("vm");
    let disk = f.private_file("disk.img");
    std::os::unix::fs::chown(&disk, Some(1234), Some(4321)).unwrap();
    let blockdev = |ro: bool| {
        format!(
            r#"{{"driver":"file","filename":"{}","node-name":"libvirt-1-storage","read-only":{ro}}}"#,
            disk.display()
        )
    };
    let args: Vec<String> = vec![
        "-blockdev".into(),
        blockdev(false),
        "-blockdev".into(),
        blockdev(true),
        "-drive".into(),
        format!("file={},format=raw,if=none,id=drive-ide0", disk.display()),
    ];
    let lent = lend_as(&f.sd, "vm", &args, &nobody(), &HostRoots::default()).unwrap();
    let a = &lent.args;
    // Three sets: two descriptors, one, two.
    let sets: Vec<(RawFd, u32)> = a
        .windows(2)
        .filter(|w| w[0] == "-add-fd")
        .map(|w| {
            let o = teamvirt_qemu::options::split(&w[1]);
            (
                o[0].strip_prefix("fd=").unwrap().parse().unwrap(),
                o[1].strip_prefix("set=").unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sets.iter().map(|s| s.1).collect::<Vec<_>>(),
        [1, 1, 2, 3, 3],
        "{a:?}"
    );
    for (fd, _) in &sets {
        assert!(lent.setup.keep_fds.contains(fd));
        assert_eq!(
            std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap(),
            disk
        );
    }
    let mode = |fd: RawFd| {
        // SAFETY: fcntl on a descriptor the Lent keeps open.
        unsafe { libc::fcntl(fd, libc::F_GETFL) & libc::O_ACCMODE }
    };
    assert_eq!(mode(sets[0].0), libc::O_RDWR);
    assert_eq!(mode(sets[1].0), libc::O_RDONLY);
    assert_eq!(mode(sets[2].0), libc::O_RDONLY);
    let j: Value =
        serde_json::from_str(&a[a.iter().position(|x| x == "-blockdev").unwrap() + 1]).unwrap();
    assert_eq!(j["filename"], "/dev/fdset/1");
    assert!(a.contains(&"file=/dev/fdset/3,format=raw,if=none,id=drive-ide0".to_string()));
    assert_eq!(owner(&disk), (1234, 4321), "the disk was chowned");
    assert!(!f.sd.run_paths("vm").unwrap().dir.join(RECORD).exists());
}

/// A disk path in a directory another user controls, swapped for a link
/// to a root-only file before the start: refused naming the link; the
/// link's target keeps its owner (today: chowned to the QEMU user and
/// never given back).
#[test]
fn symlinked_disk_is_refused_and_its_target_untouched() {
    let f = Fixture::new();
    f.run_dir("vm");
    let secret = f.private_file("shadow");
    // The link in a directory another user owns (hers to swap).
    let hers = f.t.path().join("hers");
    std::fs::create_dir(&hers).unwrap();
    std::os::unix::fs::chown(&hers, Some(65534), Some(65534)).unwrap();
    let link = hers.join("disk.img");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let before = owner(&secret);
    let args: Vec<String> = vec![
        "-blockdev".into(),
        format!(
            r#"{{"driver":"file","filename":"{}","node-name":"libvirt-1-storage","read-only":false}}"#,
            link.display()
        ),
    ];
    for id in [nobody(), myself()] {
        let e = lend_as(&f.sd, "vm", &args, &id, &HostRoots::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "refusing to lend disk image {} to QEMU: it is a symbolic link (to {})",
                link.display(),
                secret.display()
            )),
            "{e}"
        );
        assert_eq!(owner(&secret), before);
        assert!(!f.sd.run_paths("vm").unwrap().dir.join(RECORD).exists());
    }
}

/// A disk named through a link only root can have made (as
/// `/dev/disk/by-id/...`): followed, the file it names lent by descriptor.
#[test]
fn disk_through_a_root_only_link_is_followed() {
    let f = Fixture::new();
    f.run_dir("vm");
    let img = f.private_file("disk.img");
    let by_id = f.t.path().join("by-id");
    std::fs::create_dir(&by_id).unwrap();
    std::fs::set_permissions(&by_id, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = by_id.join("disk-1");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    let before = owner(&img);
    let args: Vec<String> = vec![
        "-blockdev".into(),
        format!(
            r#"{{"driver":"file","filename":"{}","node-name":"libvirt-1-storage","read-only":true}}"#,
            link.display()
        ),
    ];
    let lent = lend_as(&f.sd, "vm", &args, &nobody(), &HostRoots::default());
    assert!(lent.is_ok(), "{:?}", lent.err().map(|e| e.to_string()));
    assert_eq!(owner(&img), before, "lent by descriptor, not chowned");
}

/// `<serial type='file'>` through a link: refused, the link's target is
/// neither created nor truncated; a FIFO is refused without blocking; a
/// new output file is created 0600.
#[test]
fn serial_file_refuses_links_and_non_regular_files() {
    let f = Fixture::new();
    f.run_dir("vm");
    let victim = f.t.path().join("victim");
    std::fs::write(&victim, b"root:secret\n").unwrap();
    let link = f.t.path().join("serial.out");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let dangling = f.t.path().join("dangling.out");
    let absent = f.t.path().join("created-by-root");
    std::os::unix::fs::symlink(&absent, &dangling).unwrap();
    let fifo = f.t.path().join("fifo.out");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let serial = |p: &Path| -> Vec<String> {
        vec![
            "-chardev".into(),
            format!("file,id=charserial0,path={}", p.display()),
        ]
    };
    for (p, want) in [
        (&link, "is a symbolic link"),
        (&dangling, "is a symbolic link"),
        (&fifo, "is not a regular file"),
    ] {
        let e = lend_as(&f.sd, "vm", &serial(p), &nobody(), &HostRoots::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("refusing to lend log file {}", p.display())) && e.contains(want),
            "{e}"
        );
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"root:secret\n");
    assert!(!absent.exists());
    let out = f.t.path().join("new.out");
    let lent = lend_as(&f.sd, "vm", &serial(&out), &nobody(), &HostRoots::default()).unwrap();
    assert!(lent
        .args
        .contains(&"file,id=charserial0,path=/dev/fdset/1".to_string()));
    let m = std::fs::symlink_metadata(&out).unwrap();
    assert!(m.is_file());
    assert_eq!(m.mode() & 0o777, 0o600);
}

/// A give-back that cannot complete (the path now names another file) is
/// kept, not forgotten with the domain's record, and done by a later
/// stop once the lent file is there again; the other file is never
/// touched. (Here a label as an older teamvirt recorded a chowned disk.)
#[test]
fn failed_give_back_is_kept_and_retried() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let f = Fixture::new();
    let dir = f.run_dir("vm");
    let disk = f.private_file("disk.img");
    let m = std::fs::metadata(&disk).unwrap();
    std::os::unix::fs::chown(&disk, Some(65534), Some(65534)).unwrap();
    let rec = Record {
        labels: vec![Label {
            path: disk.clone(),
            dev: m.dev(),
            ino: m.ino(),
            uid: 0,
            gid: 0,
            mode: None,
            lent_to: None,
        }],
    };
    save(&dir, &rec).unwrap();
    let moved = f.t.path().join("private/disk.moved");
    std::fs::rename(&disk, &moved).unwrap();
    let other = f.private_file("other");
    std::os::unix::fs::chown(&other, Some(4242), Some(4242)).unwrap();
    std::fs::rename(&other, &disk).unwrap();
    let problems = release(&f.sd, "vm").unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("replaced") && problems[0].contains(PENDING),
        "{problems:?}"
    );
    assert_eq!(owner(&disk), (4242, 4242), "another file was chowned");
    assert!(!dir.join(RECORD).exists());
    // Still lent; back in place, the next stop (of any domain) gives it back.
    std::fs::rename(&moved, &disk).unwrap();
    f.run_dir("other");
    assert!(release(&f.sd, "other").unwrap().is_empty());
    assert_eq!(owner(&disk), (0, 0));
    assert!(!f.sd.run_root().join(PENDING).exists());
}

/// A device lent to two running domains goes back when the last one
/// stops, to its true original owner.
#[test]
fn shared_device_is_given_back_by_the_last_domain() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let f = Fixture::new();
    let (roots, group) = f.vfio_host(5);
    std::os::unix::fs::chown(&group, Some(1234), Some(4321)).unwrap();
    let args: Vec<String> = ["-device", "vfio-pci,host=0000:3b:02.1,id=hostdev0"]
        .map(String::from)
        .to_vec();
    for vm in ["a", "b"] {
        f.run_dir(vm);
        drop(lend_as(&f.sd, vm, &args, &nobody(), &roots).unwrap());
    }
    assert_eq!(owner(&group), (65534, 65534));
    assert!(release(&f.sd, "a").unwrap().is_empty());
    assert_eq!(owner(&group), (65534, 65534), "b still runs");
    assert!(release(&f.sd, "b").unwrap().is_empty());
    assert_eq!(owner(&group), (1234, 4321));
}

/// A lent device `root:shadow 0640` chmod'ed 0666 by its QEMU user while
/// lent gets owner, group and mode back.
#[test]
fn give_back_restores_the_mode() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let f = Fixture::new();
    f.run_dir("vm");
    let (roots, group) = f.vfio_host(11);
    std::os::unix::fs::chown(&group, Some(0), Some(42)).unwrap();
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o640)).unwrap();
    let args: Vec<String> = ["-device", "vfio-pci,host=0000:3b:02.1,id=hostdev0"]
        .map(String::from)
        .to_vec();
    drop(lend_as(&f.sd, "vm", &args, &nobody(), &roots).unwrap());
    assert_eq!(owner(&group), (65534, 65534));
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(release(&f.sd, "vm").unwrap().is_empty());
    assert_eq!(owner(&group), (0, 42));
    assert_eq!(std::fs::metadata(&group).unwrap().mode() & 0o7777, 0o640);
}

/// The VFIO group of a vfio-pci host address is lent; memlock is raised.
#[test]
fn vfio_group_is_lent() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let f = Fixture::new();
    f.run_dir("vm");
    let (roots, group) = f.vfio_host(42);
    let args: Vec<String> = [
        "-m",
        "size=262144k",
        "-device",
        "vfio-pci,host=0000:3b:02.1,id=hostdev0",
    ]
    .map(String::from)
    .to_vec();
    let lent = lend_as(&f.sd, "vm", &args, &nobody(), &roots).unwrap();
    assert_eq!(lent.args, args, "nothing to rewrite");
    assert_eq!(lent.setup.memlock, Some((256 << 20) + (1 << 30)));
    assert_eq!(owner(&group), (65534, 65534));
    drop(lent);
    assert!(release(&f.sd, "vm").unwrap().is_empty());
    assert_eq!(owner(&group), (0, 0));
}

/// A VF that went back to its host driver takes its VFIO group node with
/// it: nothing to give back, no error (every migration and destroy of a
/// real VF reported one), nothing kept to retry.
#[test]
fn vanished_vfio_group_is_not_a_give_back_failure() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let f = Fixture::new();
    f.run_dir("vm");
    let (roots, group) = f.vfio_host(7);
    let args: Vec<String> = ["-device", "vfio-pci,host=0000:3b:02.1,id=hostdev0"]
        .map(String::from)
        .to_vec();
    let lent = lend_as(&f.sd, "vm", &args, &nobody(), &roots).unwrap();
    drop(lent);
    std::fs::remove_file(&group).unwrap();
    assert_eq!(release(&f.sd, "vm").unwrap(), Vec::<String>::new());
    assert!(!f.sd.run_root().join(PENDING).exists());
}

/// A launch that cannot be prepared gives back what it lent so far and
/// names the file.
#[test]
fn failed_lend_gives_back() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let f = Fixture::new();
    let dir = f.run_dir("vm");
    let (roots, group) = f.vfio_host(3);
    let args: Vec<String> = [
        "-device",
        "vfio-pci,host=0000:3b:02.1,id=hostdev0",
        "-initrd",
        "/nonexistent/initrd",
    ]
    .map(String::from)
    .to_vec();
    let e = lend_as(&f.sd, "vm", &args, &nobody(), &roots).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot give QEMU (user +65534:+65534) access to initrd /nonexistent/initrd"),
        "{e}"
    );
    assert_eq!(owner(&group), (0, 0));
    assert!(!dir.join(RECORD).exists());
}

/// KVM: the device's group joins QEMU's groups; a root-only device is an
/// error naming the ways out; tcg needs nothing.
#[test]
fn kvm_device_group_is_added() {
    let t = tempfile::tempdir().unwrap();
    let kvm = t.path().join("kvm");
    std::fs::write(&kvm, b"").unwrap();
    let id = nobody();
    let mut setup = ChildSetup::for_identity(&id);
    setup.switch = Some((65534, 65534, vec![65534]));
    if is_root() {
        std::os::unix::fs::chown(&kvm, Some(0), Some(4242)).unwrap();
        std::fs::set_permissions(&kvm, std::fs::Permissions::from_mode(0o660)).unwrap();
        kvm_access(&mut setup, &id, &kvm).unwrap();
        assert_eq!(setup.switch.as_ref().unwrap().2, vec![65534, 4242]);
        std::os::unix::fs::chown(&kvm, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&kvm, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = kvm_access(&mut setup, &id, &kvm).unwrap_err().to_string();
        assert!(
            e.contains("owner 0:0 mode 0600") && e.contains("--accel tcg"),
            "{e}"
        );
    }
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(uses_kvm(&a(&["-accel", "kvm"])));
    assert!(uses_kvm(&a(&["-machine", "q35,accel=kvm"])));
    assert!(!uses_kvm(&a(&["-accel", "tcg"])));
}

/// A KVM device QEMU's user cannot use fails the lend, and gives back,
/// without waiting for ever on the lock the lend holds (issue 19: `start
/// --accel kvm` hung).
#[test]
fn kvm_refused_gives_back_without_hanging() {
    let f = Fixture::new();
    f.run_dir("vm");
    // No kvm under this /dev at all.
    let roots = HostRoots {
        sysfs: f.t.path().join("sys"),
        dev: f.t.path().join("dev"),
    };
    std::fs::create_dir_all(&roots.dev).unwrap();
    let id = Identity {
        switch: true,
        ..nobody()
    };
    let args: Vec<String> = ["-accel", "kvm"].map(String::from).to_vec();
    let (tx, rx) = std::sync::mpsc::channel();
    let sd = f.sd.clone();
    std::thread::spawn(move || {
        let r = lend_as(&sd, "vm", &args, &id, &roots).map(|_| ());
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("lend_as hung on a refused /dev/kvm (locks/dac.lock taken twice)");
    let e = r.unwrap_err();
    assert!(e.contains("KVM device") && e.contains("dev/kvm"), "{e}");
    // And the lock is free again.
    assert!(release(&f.sd, "vm").unwrap().is_empty());
}

/// An emulator the QEMU user cannot reach is refused naming the directory.
#[test]
fn unreachable_emulator_is_named() {
    let f = Fixture::new();
    let qemu = f.private_file("qemu");
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = check_exec(&qemu, &nobody()).unwrap_err().to_string();
    let dir = qemu.parent().unwrap();
    assert!(
        e.contains(&format!(
            "QEMU user +65534:+65534 cannot execute the emulator {}: {} (owner",
            qemu.display(),
            dir.display()
        )) && e.contains("mode 0700"),
        "{e}"
    );
    assert!(check_exec(Path::new("/bin/sh"), &nobody()).is_ok());
    assert!(check_exec(Path::new("qemu-system-x86_64"), &nobody()).is_ok());
    assert!(check_exec(&qemu, &myself()).is_ok(), "no switch, no check");
}

/// Hotplug of a real VF into a running, unprivileged QEMU: its VFIO group
/// is lent (recorded), the process's memlock limit raised; detach gives
/// the node back and forgets it, so the same VF plugged again is no
/// "replaced by another file" at stop.
#[test]
fn hotplugged_vfio_group_is_lent_and_given_back_at_detach() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let f = Fixture::new();
    f.run_dir("vm");
    let (roots, group) = f.vfio_host(9);
    // A child whose limit is raised (not this test process).
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let argv: Vec<String> = ["-m", "size=131072k"].map(String::from).to_vec();
    let new: Vec<String> = ["-device", "vfio-pci,host=0000:3b:02.1,id=hostdev0"]
        .map(String::from)
        .to_vec();
    lend_hotplug_as(&f.sd, "vm", pid, &argv, &new, &nobody(), &roots).unwrap();
    assert_eq!(owner(&group), (65534, 65534));
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let want = ((128u64 << 20) + (1 << 30)).to_string();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .unwrap();
    // CAP_SYS_RESOURCE (capability 24) is needed to raise another
    // process's hard limit.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    if cap_eff & (1 << 24) != 0 {
        assert!(line.contains(&want) || line.contains("unlimited"), "{line}");
    }
    let _ = child.kill();
    let _ = child.wait();

    assert!(give_back_vfio_in(&f.sd, "vm", "0000:3b:02.1", &roots)
        .unwrap()
        .is_empty());
    assert_eq!(owner(&group), (0, 0));
    // Plugged again: a new node of the same group.
    std::fs::remove_file(&group).unwrap();
    std::fs::write(&group, b"").unwrap();
    assert!(
        release(&f.sd, "vm").unwrap().is_empty(),
        "the old label was forgotten"
    );
}
