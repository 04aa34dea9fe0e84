//! Live probe of a QEMU binary over QMP.
//!
//! The binary is started with `-machine none -nodefaults -nographic
//! -no-user-config -accel kvm -accel tcg` (kvm only when `/dev/kvm` can be
//! opened read-write, as libvirt does) and its QMP monitor on a socket
//! bound by teamvirt in a private temporary directory and passed as a
//! descriptor (`-chardev socket,fd=N,server=on`), asked the questions
//! below, and told to `quit`. Like libvirt's, the probe runs as the QEMU
//! user without capabilities and with `no_new_privs` when the runtime has
//! installed its privilege drop ([`set_jail`]): the `<emulator>` is the
//! definition's, not necessarily a trusted binary. On any error or after [`ProbeOptions::timeout`] it is killed and
//! reaped; no process outlives the probe.
//!
//! Questions: `query-version`, `query-target`, `query-kvm`,
//! `query-machines`, `query-cpu-definitions`, `qom-list-types`,
//! `device-list-properties` for [`PROBED_DEVICES`], `query-qmp-schema`,
//! `query-commands` and `query-command-line-options`.
//!
//! # Derived libvirt flags
//!
//! Only this subset of libvirt's flags is derived, each exactly from the
//! source libvirt 10.7 uses for it; every other libvirt flag is never set by
//! a probe (use a libvirt caps file when those matter):
//!
//! - `kvm`: `query-kvm` reports `enabled`;
//! - [`OBJECT_TYPES`]: a QOM type of that name exists (`qom-list-types`),
//!   e.g. `tcg-accel` -> `tcg`, `vfio-pci`, `pcie-root-port`, ...;
//! - [`DEVICE_PROPS`]: a device has a property (`device-list-properties`),
//!   e.g. `pcie-root-port.hotplug`, `virtio-net.rss`, and
//!   `virtio-net.failover` for `virtio-net-pci`'s `failover` (libvirt 6.1-8.x
//!   flag, kept so the teaming capability is visible by name);
//! - [`SCHEMA_QUERIES`]: QAPI schema facts, e.g. `device.json+hotplug`
//!   (`device_add` feature `json-cli-hotplug`), `netdev.json` (`netdev_add`
//!   type enum has `dgram`), `object.qapified` (`object-add` `qom-type` enum
//!   has `secret`), `migration.blocked-reasons`;
//! - [`COMMANDS`]: a QMP command exists (`query-commands`);
//! - [`CMDLINE_OPTIONS`]: a command-line option (and parameter) exists,
//!   e.g. `-sandbox` -> `seccomp-sandbox`.
//!
//! Machine types are the same for every accelerator found (libvirt probes
//! each accelerator separately; QEMU's list does not depend on it). CPU
//! model usability is only known for the accelerator active in the probe.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use teamvirt_qmp::{Qmp, QmpError, QmpOptions};

use super::cache::{self, CacheKey};
use super::schema::Schema;
use super::{
    encode_version, version_string, Accel, AccelCaps, CapsError, CapsSource, CpuModel, MachineType,
    QemuCaps,
};

/// QOM type -> libvirt flag (libvirt's `virQEMUCapsObjectTypes`, subset).
pub const OBJECT_TYPES: &[(&str, &str)] = &[
    ("tcg-accel", "tcg"),
    ("piix3-usb-uhci", "piix3-usb-uhci"),
    ("piix4-usb-uhci", "piix4-usb-uhci"),
    ("usb-ehci", "usb-ehci"),
    ("ich9-usb-ehci1", "ich9-usb-ehci1"),
    ("pci-ohci", "pci-ohci"),
    ("nec-usb-xhci", "nec-usb-xhci"),
    ("qemu-xhci", "qemu-xhci"),
    ("usb-redir", "usb-redir"),
    ("usb-hub", "usb-hub"),
    ("usb-kbd", "usb-kbd"),
    ("usb-storage", "usb-storage"),
    ("ich9-ahci", "ich9-ahci"),
    ("lsi53c895a", "lsi"),
    ("virtio-scsi-pci", "virtio-scsi-pci"),
    ("megasas", "megasas"),
    ("mptsas1068", "mptsas1068"),
    ("pvscsi", "pvscsi"),
    ("pci-bridge", "pci-bridge"),
    ("i82801b11-bridge", "dmi-to-pci-bridge"),
    ("pcie-root-port", "pcie-root-port"),
    ("pcie-pci-bridge", "pcie-pci-bridge"),
    ("ioh3420", "ioh3420"),
    ("x3130-upstream", "x3130-upstream"),
    ("xio3130-downstream", "xio3130-downstream"),
    ("pxb", "pxb"),
    ("pxb-pcie", "pxb-pcie"),
    ("vfio-pci", "vfio-pci"),
    (
        "virtio-net-pci-non-transitional",
        "virtio-pci-non-transitional",
    ),
    ("virtio-rng-pci", "virtio-rng"),
    ("rng-random", "rng-random"),
    ("rng-egd", "rng-egd"),
    ("rng-builtin", "rng-builtin"),
    ("VGA", "VGA"),
    ("cirrus-vga", "cirrus-vga"),
    ("vmware-svga", "vmware-svga"),
    ("qxl", "qxl"),
    ("virtio-vga", "virtio-vga"),
    ("bochs-display", "bochs-display"),
    ("ramfb", "ramfb"),
    ("virtio-keyboard-pci", "virtio-keyboard"),
    ("virtio-mouse-pci", "virtio-mouse"),
    ("virtio-tablet-pci", "virtio-tablet"),
    ("isa-serial", "isa-serial"),
    ("pci-serial", "pci-serial"),
    ("pvpanic", "pvpanic"),
    ("pvpanic-pci", "pvpanic-pci"),
    ("ich9-intel-hda", "ich9-intel-hda"),
    ("hda-duplex", "hda-duplex"),
    ("hda-micro", "hda-micro"),
    ("hda-output", "hda-output"),
    ("intel-iommu", "intel-iommu"),
    ("virtio-iommu-pci", "virtio-iommu-pci"),
    ("virtio-mem-pci", "virtio-mem-pci"),
    ("virtio-pmem-pci", "virtio-pmem-pci"),
    ("pc-dimm", "pc-dimm"),
    ("nvdimm", "nvdimm"),
    ("memory-backend-memfd", "memory-backend-memfd"),
    ("vmcoreinfo", "vmcoreinfo"),
    ("vmgenid", "vmgenid"),
    ("vhost-vsock-device", "vhost-vsock"),
    ("mch", "mch"),
    ("i8042", "i8042"),
    ("max-x86_64-cpu", "x86-max-cpu"),
    ("vmport", "machine-vmport-opt"),
    ("thread-context", "thread-context"),
];

/// (device, property, libvirt flag) (libvirt's `virQEMUCapsDeviceProps`,
/// subset, plus the retired `virtio-net.failover`).
pub const DEVICE_PROPS: &[(&str, &str, &str)] = &[
    ("virtio-net-pci", "failover", "virtio-net.failover"),
    ("virtio-net-pci", "rss", "virtio-net.rss"),
    ("virtio-net-pci", "acpi-index", "acpi-index"),
    ("virtio-blk-pci", "queue-size", "virtio-blk.queue-size"),
    (
        "virtio-balloon-pci",
        "deflate-on-oom",
        "virtio-balloon-pci.deflate-on-oom",
    ),
    (
        "virtio-balloon-pci",
        "free-page-reporting",
        "virtio-balloon.free-page-reporting",
    ),
    ("pcie-root-port", "hotplug", "pcie-root-port.hotplug"),
    (
        "PIIX4_PM",
        "acpi-root-pci-hotplug",
        "piix4.acpi-root-pci-hotplug",
    ),
    ("usb-redir", "filter", "usb-redir.filter"),
    ("kvm-pit", "lost_tick_policy", "kvm-pit-lost-tick-policy"),
    ("VGA", "vgamem_mb", "VGA.vgamem_mb"),
    ("mch", "extended-tseg-mbytes", "mch.extended-tseg-mbytes"),
    ("usb-host", "hostdevice", "usb-host.hostdevice"),
    ("usb-host", "guest-resets-all", "usb-host.guest-resets-all"),
    ("intel-iommu", "intremap", "intel-iommu.intremap"),
    ("intel-iommu", "caching-mode", "intel-iommu.caching-mode"),
    ("intel-iommu", "eim", "intel-iommu.eim"),
    ("intel-iommu", "device-iotlb", "intel-iommu.device-iotlb"),
    ("intel-iommu", "aw-bits", "intel-iommu.aw-bits"),
];

/// Device types whose properties are recorded in
/// [`QemuCaps::device_props`]: what teamvirt's command line emits, plus the
/// devices of [`DEVICE_PROPS`]. Types the binary lacks are left out.
pub const PROBED_DEVICES: &[&str] = &[
    "virtio-net-pci",
    "vfio-pci",
    "e1000e",
    "vmxnet3",
    "e1000",
    "rtl8139",
    "virtio-balloon-pci",
    "virtio-blk-pci",
    "pcie-root-port",
    "pcie-pci-bridge",
    "pci-bridge",
    "i82801b11-bridge",
    "piix3-usb-uhci",
    "qemu-xhci",
    "ide-hd",
    "ide-cd",
    "PIIX4_PM",
    "ICH9-LPC",
    "usb-redir",
    "kvm-pit",
    "VGA",
    "mch",
    "usb-host",
    "intel-iommu",
];

/// QAPI schema query -> libvirt flag (libvirt's `virQEMUCapsQMPSchemaQueries`, subset).
pub const SCHEMA_QUERIES: &[(&str, &str)] = &[
    ("device_add/$json-cli-hotplug", "device.json+hotplug"),
    ("netdev_add/arg-type/type/^dgram", "netdev.json"),
    ("object-add/arg-type/qom-type/^secret", "object.qapified"),
    ("netdev_add/arg-type/+stream", "netdev.stream"),
    (
        "netdev_add/arg-type/+stream/reconnect",
        "netdev.stream.reconnect",
    ),
    ("netdev_add/arg-type/+vhost-vdpa", "netdev.vhost-vdpa"),
    (
        "query-migrate/ret-type/blocked-reasons",
        "migration.blocked-reasons",
    ),
    ("blockdev-add/arg-type/+file/aio/^io_uring", "aio.io_uring"),
    (
        "blockdev-snapshot/$allow-write-only-overlay",
        "blockdev-snapshot.allow-write-only-overlay",
    ),
    (
        "chardev-add/arg-type/backend/+socket/data/reconnect",
        "chardev-reconnect",
    ),
    ("nbd-server-start/arg-type/tls-creds", "nbd-tls"),
    (
        "query-named-block-nodes/arg-type/flat",
        "query-named-block-nodes.flat",
    ),
    ("query-hotpluggable-cpus/ret-type/props/die-id", "smp-dies"),
    ("screendump/arg-type/device", "screendump_device"),
    (
        "object-add/arg-type/+iothread/thread-pool-max",
        "iothread.thread-pool-max",
    ),
];

/// QMP command -> libvirt flag (libvirt's `virQEMUCapsCommands`, subset).
pub const COMMANDS: &[(&str, &str)] = &[
    ("query-vnc", "vnc"),
    ("rtc-reset-reinjection", "rtc-reset-reinjection"),
    ("query-cpu-model-expansion", "query-cpu-model-expansion"),
    ("query-cpu-definitions", "query-cpu-definitions"),
    ("block-export-add", "block-export-add"),
    ("blockdev-reopen", "blockdev-reopen"),
    ("set-action", "set-action"),
    ("query-dirty-rate", "query-dirty-rate"),
    ("calc-dirty-rate", "calc-dirty-rate"),
    ("query-stats", "query-stats"),
    ("query-stats-schemas", "query-stats-schemas"),
];

/// (option, parameter or "" for the option itself, libvirt flag)
/// (libvirt's `virQEMUCapsCommandLine`, subset).
pub const CMDLINE_OPTIONS: &[(&str, &str, &str)] = &[
    ("sandbox", "", "seccomp-sandbox"),
    ("machine", "hpet", "machine-hpet"),
    ("fsdev", "multidevs", "fsdev.multidevs"),
    ("vnc", "power-control", "vnc-power-control"),
];

/// Probe tuning.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The whole probe (start, questions, quit) must finish within this.
    pub timeout: Duration,
    /// Offer KVM (`-accel kvm -accel tcg`) when `/dev/kvm` is usable.
    pub try_kvm: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_secs(60),
            try_kvm: true,
        }
    }
}

/// What a probe's QEMU runs with instead of teamvirt's own privileges.
pub struct Jail {
    /// Runs in the child between fork and exec (async-signal-safe calls
    /// only): the privilege drop.
    pub pre_exec: Box<dyn Fn() -> std::io::Result<()> + Send + Sync>,
}

/// Makes the [`Jail`] for probing an emulator (`Err`: a message why it
/// cannot be probed; `Ok(None)`: as teamvirt itself).
pub type JailFactory = dyn Fn(&Path) -> Result<Option<Jail>, String> + Send + Sync;

static JAIL: OnceLock<Box<JailFactory>> = OnceLock::new();

/// Install how probes drop privileges (the runtime's QEMU identity and
/// privilege drop, so a probe runs as QEMU itself would). The first call
/// counts.
pub fn set_jail(factory: Box<JailFactory>) {
    let _ = JAIL.set(factory);
}

/// Cached probe: the cache entry when the binary is unchanged, else a
/// fresh probe that replaces it.
pub async fn probe_cached(binary: &Path, cache_dir: &Path) -> Result<QemuCaps, CapsError> {
    let resolved = resolve_binary(binary)?;
    let key = CacheKey::of(&resolved)?;
    if let Some(mut caps) = cache::load(cache_dir, &key) {
        // The cache is per canonical binary; report the path asked for.
        caps.emulator = resolved.clone();
        caps.source = CapsSource::Probe {
            binary: resolved,
            cache: Some(key.file_in(cache_dir)),
        };
        return Ok(caps);
    }
    let caps = probe_uncached(&resolved, &ProbeOptions::default()).await?;
    cache::store(cache_dir, &key, &caps)?;
    Ok(caps)
}

/// `binary` itself when it contains a `/`, else its first match on `PATH`.
pub fn resolve_binary(binary: &Path) -> Result<PathBuf, CapsError> {
    if binary.as_os_str().is_empty() {
        return Err(not_found(binary));
    }
    if binary.components().count() > 1 || binary.is_absolute() {
        return Ok(binary.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(binary);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(not_found(binary))
}

fn not_found(binary: &Path) -> CapsError {
    CapsError::Spawn {
        binary: binary.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found on PATH"),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `/dev/kvm` opens read-write here. This is all the probe needs
/// (it passes `-accel kvm -accel tcg`, so QEMU falls back by itself); the
/// runtime's choice of accelerator for a guest
/// (`teamvirt_runtime::accel::Accel::detect`) adds a vmx/svm check on top.
pub fn dev_kvm_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Probes `binary` without the cache.
pub async fn probe_uncached(binary: &Path, opts: &ProbeOptions) -> Result<QemuCaps, CapsError> {
    let dir = tempfile::Builder::new()
        .prefix("teamvirt-probe-")
        .tempdir()
        .map_err(|source| CapsError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let sock = dir.path().join("qmp.sock");
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(|source| CapsError::Io {
        path: stderr_path.clone(),
        source,
    })?;

    let jail = match JAIL.get() {
        Some(make) => make(binary).map_err(|m| probe_error(binary, m))?,
        None => None,
    };
    // Bound here, in teamvirt's private directory, and passed down: QEMU
    // (as another user) needs no access to the directory.
    let listener =
        std::os::unix::net::UnixListener::bind(&sock).map_err(|source| CapsError::Io {
            path: sock.clone(),
            source,
        })?;
    let mut cmd = probe_command(binary, opts, listener.as_raw_fd(), stderr, jail);
    let spawned = cmd.spawn();
    // Only QEMU holds it now: a QEMU that dies refuses the connection.
    drop(listener);
    let mut child = spawned.map_err(|source| CapsError::Spawn {
        binary: binary.to_path_buf(),
        source,
    })?;

    let talk = converse(&sock, &mut child, binary, opts);
    let result = match tokio::time::timeout(opts.timeout, talk).await {
        Ok(r) => r,
        Err(_) => Err(CapsError::Timeout {
            binary: binary.to_path_buf(),
            seconds: opts.timeout.as_secs(),
        }),
    };
    match result {
        Ok(caps) => Ok(caps),
        Err(e) => {
            // Kill and reap whatever is left, then add what QEMU said.
            let _ = child.start_kill();
            let _ = child.wait().await;
            let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let said = said.trim();
            Err(match e {
                CapsError::Probe { binary, message } if !said.is_empty() => CapsError::Probe {
                    binary,
                    message: format!("{message}; QEMU said: {said}"),
                },
                other => other,
            })
        }
    }
}

fn probe_error(binary: &Path, message: String) -> CapsError {
    CapsError::Probe {
        binary: binary.to_path_buf(),
        message,
    }
}

/// QEMU with no guest (`-machine none`), its QMP monitor on the inherited
/// listening socket `lfd`, in `jail`, dying with teamvirt.
fn probe_command(
    binary: &Path,
    opts: &ProbeOptions,
    lfd: std::os::fd::RawFd,
    stderr: std::fs::File,
    jail: Option<Jail>,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args([
        "-machine",
        "none",
        "-nodefaults",
        "-nographic",
        "-no-user-config",
    ]);
    if opts.try_kvm && dev_kvm_opens() {
        cmd.args(["-accel", "kvm"]);
    }
    cmd.args(["-accel", "tcg"]);
    cmd.arg("-chardev")
        .arg(format!("socket,id=qmp,fd={lfd},server=on,wait=off"))
        .args(["-mon", "chardev=qmp,mode=control"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    // SAFETY: fcntl and prctl are async-signal-safe, and so is the jail's
    // hook by its contract; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The listening socket is inherited.
            let fl = libc::fcntl(lfd, libc::F_GETFD);
            if fl < 0 || libc::fcntl(lfd, libc::F_SETFD, fl & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(j) = &jail {
                (j.pre_exec)()?;
            }
            // After the identity switch, which clears it: if teamvirt itself
            // dies, QEMU (which would otherwise idle forever with
            // `-machine none`) goes with it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// Connect to the probe's QMP socket, ask, and have QEMU quit cleanly.
async fn converse(
    sock: &Path,
    child: &mut tokio::process::Child,
    binary: &Path,
    opts: &ProbeOptions,
) -> Result<QemuCaps, CapsError> {
    let perr = |message: String| probe_error(binary, message);
    // The overall deadline in the caller is what bounds the probe; the QMP
    // client's own limits only need to be longer so they never win.
    let longer = opts.timeout + Duration::from_secs(5);
    let qmp_opts = QmpOptions {
        wait_for_socket: longer,
        handshake_timeout: longer,
        command_timeout: longer,
        ..QmpOptions::default()
    };
    // QEMU may die before creating the socket (bad binary, bad option):
    // report its exit instead of waiting for the socket.
    let connected = tokio::select! {
        r = Qmp::connect_with(sock, qmp_opts) => r,
        status = child.wait() => {
            let status = status.map_err(|e| perr(format!("waiting for QEMU: {e}")))?;
            return Err(perr(format!("QEMU exited ({status}) before its QMP socket was ready")));
        }
    };
    // The socket is teamvirt's (passed to QEMU): a QEMU that died
    // resets the connection rather than never making the socket.
    let qmp = match connected {
        Ok(q) => q,
        Err(e) => {
            if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(2), child.wait()).await
            {
                return Err(perr(format!(
                    "QEMU exited ({status}) before its QMP socket was ready"
                )));
            }
            return Err(perr(format!("QMP connect: {e}")));
        }
    };
    let caps = ask(&qmp, binary).await.map_err(|e| match e {
        AskError::Qmp(what, e) => perr(format!("{what}: {e}")),
        AskError::Reply(m) => perr(m),
    })?;
    qmp.quit().await.map_err(|e| perr(format!("quit: {e}")))?;
    let status = child
        .wait()
        .await
        .map_err(|e| perr(format!("waiting for QEMU: {e}")))?;
    if !status.success() {
        return Err(perr(format!("QEMU exited with {status} after quit")));
    }
    Ok(caps)
}

enum AskError {
    Qmp(&'static str, QmpError),
    Reply(String),
}

/// Tag a failed command with its name.
fn named<T>(cmd: &'static str, r: Result<T, QmpError>) -> Result<T, AskError> {
    r.map_err(|e| AskError::Qmp(cmd, e))
}

/// Like `named`, but a command QEMU does not have yields `None`.
fn optional<T>(cmd: &'static str, r: Result<T, QmpError>) -> Result<Option<T>, AskError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.class() == Some("CommandNotFound") => Ok(None),
        Err(e) => Err(AskError::Qmp(cmd, e)),
    }
}

/// Every question, in the order libvirt asks them, mapped to libvirt's
/// capabilities.
async fn ask(qmp: &Qmp, binary: &Path) -> Result<QemuCaps, AskError> {
    let mut flags = BTreeSet::new();
    let (version, package) = version(qmp).await?;
    let target = named("query-target", qmp.query_target().await)?;
    let arch = libvirt_arch(&target.arch).to_string();

    let kvm = optional("query-kvm", qmp.query_kvm().await)?;
    let kvm_enabled = kvm.is_some_and(|k| k.enabled);
    if kvm_enabled {
        flags.insert("kvm".to_string());
    }

    let types = named("qom-list-types", qmp.qom_list_types().await)?;
    let types: HashSet<&str> = types.iter().map(|t| t.name.as_str()).collect();
    for (ty, flag) in OBJECT_TYPES {
        if types.contains(ty) {
            flags.insert(flag.to_string());
        }
    }
    let device_props = device_props(qmp, &types).await?;
    for (dev, prop, flag) in DEVICE_PROPS {
        if device_props
            .get(*dev)
            .is_some_and(|p: &Vec<String>| p.iter().any(|n| n == prop))
        {
            flags.insert(flag.to_string());
        }
    }
    schema_flags(qmp, &mut flags).await?;
    command_flags(qmp, &mut flags).await?;
    command_line_flags(qmp, &mut flags).await?;

    let machines = machines(qmp).await?;
    let cpu_models = cpu_models(qmp).await?;
    let active = if kvm_enabled { Accel::Kvm } else { Accel::Tcg };
    let accel = per_accel(&flags, active, &machines, &cpu_models);

    Ok(QemuCaps {
        emulator: binary.to_path_buf(),
        version,
        version_string: version_string(version),
        package,
        arch,
        microcode_version: None,
        kernel_version: None,
        host_cpu_signature: None,
        flags,
        accel,
        device_props,
        source: CapsSource::Probe {
            binary: binary.to_path_buf(),
            cache: None,
        },
    })
}

/// `query-version`: libvirt's version number and the package string.
async fn version(qmp: &Qmp) -> Result<(u32, String), AskError> {
    let v = named("query-version", qmp.query_version().await)?;
    let version = encode_version(v.qemu.major, v.qemu.minor, v.qemu.micro).ok_or_else(|| {
        AskError::Reply(format!(
            "unexpected reply to query-version: {}.{}.{}",
            v.qemu.major, v.qemu.minor, v.qemu.micro
        ))
    })?;
    Ok((version, v.package.trim().to_string()))
}

/// libvirt's names for QEMU's target names.
fn libvirt_arch(target: &str) -> &str {
    match target {
        "i386" => "i686",
        "arm" => "armv7l",
        other => other,
    }
}

/// `device-list-properties` of each [`PROBED_DEVICES`] QEMU has as a type:
/// its property names, sorted.
async fn device_props(
    qmp: &Qmp,
    types: &HashSet<&str>,
) -> Result<BTreeMap<String, Vec<String>>, AskError> {
    let mut device_props = BTreeMap::new();
    for dev in PROBED_DEVICES.iter().filter(|d| types.contains(*d)) {
        let props = match qmp.device_list_properties(dev).await {
            Ok(p) => p,
            // Present as a type but not a user-creatable device.
            Err(e) if e.class().is_some() => continue,
            Err(e) => return Err(AskError::Qmp("device-list-properties", e)),
        };
        let mut names: Vec<String> = props.into_iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        device_props.insert(dev.to_string(), names);
    }
    Ok(device_props)
}

/// [`SCHEMA_QUERIES`] from `query-qmp-schema` (none without it).
async fn schema_flags(qmp: &Qmp, flags: &mut BTreeSet<String>) -> Result<(), AskError> {
    if let Some(schema) = optional("query-qmp-schema", qmp.query_qmp_schema().await)? {
        let schema = Value::Array(schema);
        let schema = Schema::new(&schema);
        for (query, flag) in SCHEMA_QUERIES {
            if schema.query(query) {
                flags.insert(flag.to_string());
            }
        }
    }
    Ok(())
}

/// [`COMMANDS`] from `query-commands`.
async fn command_flags(qmp: &Qmp, flags: &mut BTreeSet<String>) -> Result<(), AskError> {
    let commands = named("query-commands", qmp.query_commands().await)?;
    let commands: HashSet<&str> = commands.iter().map(|c| c.name.as_str()).collect();
    for (cmd, flag) in COMMANDS {
        if commands.contains(cmd) {
            flags.insert(flag.to_string());
        }
    }
    Ok(())
}

/// [`CMDLINE_OPTIONS`] from `query-command-line-options` (none without it).
async fn command_line_flags(qmp: &Qmp, flags: &mut BTreeSet<String>) -> Result<(), AskError> {
    let options = optional(
        "query-command-line-options",
        qmp.query_command_line_options().await,
    )?;
    if let Some(opts) = options {
        for (option, param, flag) in CMDLINE_OPTIONS {
            let found = opts
                .iter()
                .filter(|o| o.option == *option)
                .any(|o| param.is_empty() || o.parameters.iter().any(|p| p.name == *param));
            if found {
                flags.insert(flag.to_string());
            }
        }
    }
    Ok(())
}

/// `query-machines`, default first, without `none`.
async fn machines(qmp: &Qmp) -> Result<Vec<MachineType>, AskError> {
    let mut machines = Vec::new();
    for m in named("query-machines", qmp.query_machines().await)? {
        // libvirt leaves out `none`, the machine the probe itself runs.
        if m.name == "none" {
            continue;
        }
        machines.push(MachineType {
            name: m.name,
            alias: m.alias,
            max_cpus: m.cpu_max.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            hotplug_cpus: m.hotpluggable_cpus,
            default: m.is_default,
            default_cpu: m.default_cpu_type,
            default_ram_id: m.default_ram_id,
            numa_mem_supported: m.numa_mem_supported,
            deprecated: m.deprecated,
            acpi: m.acpi,
        });
    }
    // libvirt lists the default machine first.
    if let Some(i) = machines.iter().position(|m| m.default) {
        let m = machines.remove(i);
        machines.insert(0, m);
    }
    Ok(machines)
}

/// `query-cpu-definitions` (none without it).
async fn cpu_models(qmp: &Qmp) -> Result<Vec<CpuModel>, AskError> {
    let cpus = optional("query-cpu-definitions", qmp.query_cpu_definitions().await)?;
    Ok(cpus
        .unwrap_or_default()
        .into_iter()
        .map(|c| CpuModel {
            name: c.name,
            typename: c.typename,
            usable: c.unavailable_features.as_ref().map(Vec::is_empty),
            deprecated: c.deprecated,
        })
        .collect())
}

/// The same machines and CPU models for each accelerator found; CPU
/// usability only for the `active` one (the probe ran with it).
fn per_accel(
    flags: &BTreeSet<String>,
    active: Accel,
    machines: &[MachineType],
    cpu_models: &[CpuModel],
) -> BTreeMap<Accel, AccelCaps> {
    let mut accel = BTreeMap::new();
    for a in [Accel::Kvm, Accel::Tcg] {
        if !flags.contains(a.as_str()) {
            continue;
        }
        let cpu_models = if a == active {
            cpu_models.to_vec()
        } else {
            cpu_models
                .iter()
                .map(|c| CpuModel {
                    usable: None,
                    ..c.clone()
                })
                .collect()
        };
        accel.insert(
            a,
            AccelCaps {
                machines: machines.to_vec(),
                cpu_models,
            },
        );
    }
    accel
}
