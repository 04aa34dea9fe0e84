//! End-to-end smoke test of the test guest under TCG with the hand-written
//! QEMU command line of the failover recipe (section 2): proves that the
//! guest, the QMP client and the serial-log helpers work, independently of
//! teamvirt's own command-line builder. Skips only without QEMU.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use teamvirt_qmp::{Qmp, QmpError, QmpOptions, TypedEvent};
use teamvirt_testinfra::{GuestImage, SerialLog};
use tokio::process::{Child, Command};

const MAC: &str = "52:54:00:12:34:56";
/// Boot + insmod takes ~3-6 s under TCG on an idle 2-core machine; leave
/// room for a busy one.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn spawn_qemu(qemu: &Path, guest: &GuestImage, dir: &Path, extra_append: &str) -> Child {
    let serial = dir.join("serial.log");
    let sock = dir.join("qmp.sock");
    let stderr = std::fs::File::create(dir.join("qemu.stderr")).unwrap();
    let mut cmd = Command::new(qemu);
    cmd.args(["-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "1"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&guest.kernel)
        .arg("-initrd")
        .arg(&guest.initrd)
        .arg("-append")
        .arg(guest.cmdline(extra_append))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .args([
            "-device",
            "pcie-root-port,id=root0,bus=pcie.0,addr=0x1,chassis=1",
        ])
        .args([
            "-device",
            "pcie-root-port,id=root1,bus=pcie.0,addr=0x2,chassis=2",
        ])
        .args(["-netdev", "user,id=hs0,restrict=on"])
        .args([
            "-device",
            &format!("virtio-net-pci,bus=root0,id=net1,netdev=hs0,mac={MAC},failover=on"),
        ])
        .args(["-netdev", "user,id=hs1,restrict=on"])
        .args([
            "-device",
            &format!(
                "e1000e,bus=root1,id=hostdev0,netdev=hs1,mac={MAC},failover_pair_id=net1,romfile="
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    cmd.spawn().expect("spawn qemu")
}

async fn connect(dir: &Path) -> Qmp {
    let opts = QmpOptions {
        wait_for_socket: Duration::from_secs(30),
        ..Default::default()
    };
    Qmp::connect_with(dir.join("qmp.sock"), opts)
        .await
        .expect("QMP handshake")
}

/// Run blocking serial-log waits off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn shut_down(qmp: &Qmp, mut child: Child) {
    qmp.quit().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("QEMU did not exit after quit")
        .unwrap();
    assert!(status.success(), "QEMU exit status {status}");
}

/// Everything a test needs, or `None` when QEMU is not installed.
fn setup(test: &str) -> Option<(std::path::PathBuf, GuestImage)> {
    let qemu = teamvirt_testinfra::qemu_or_skip(test)?;
    // QEMU is here, so CI expects the guest to build: a failure is an error.
    let guest = teamvirt_testinfra::test_guest().unwrap_or_else(|e| panic!("{e}"));
    Some((qemu, guest))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn guest_negotiates_failover() {
    let Some((qemu, guest)) = setup("guest_negotiates_failover") else {
        return;
    };
    let _lock = teamvirt_testinfra::guest_lock();
    let dir = teamvirt_testinfra::temp_dir();
    runtime().block_on(async {
        let child = spawn_qemu(&qemu, &guest, dir.path(), "");
        let qmp = connect(dir.path()).await;
        // With history: nothing is lost between the handshake and here.
        let mut events = qmp.subscribe_with_history();

        // Before negotiation the primary is hidden.
        let early = qmp.peripherals().await.unwrap();
        assert!(early.contains(&"net1".to_string()), "{early:?}");

        let ev = events
            .wait_for("FAILOVER_NEGOTIATED", |_| true, BOOT_TIMEOUT)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\nserial:\n{}",
                    std::fs::read_to_string(dir.path().join("serial.log")).unwrap_or_default()
                )
            });
        assert_eq!(
            ev.typed(),
            TypedEvent::FailoverNegotiated {
                device_id: "net1".into()
            }
        );

        let periph = qmp.peripherals().await.unwrap();
        assert!(periph.contains(&"hostdev0".to_string()), "{periph:?}");
        assert!(periph.contains(&"net1".to_string()), "{periph:?}");

        let log = SerialLog::new(dir.path().join("serial.log"));
        let state = blocking(move || log.wait_for_failover_master(2, BOOT_TIMEOUT))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let group = state.failover_master(2).unwrap();
        assert_eq!(group.master.mac, MAC);
        let standby = group.standby.expect("no virtio_net slave");
        assert_eq!(standby.mac, MAC);
        assert_eq!(group.primaries.len(), 1, "{}", state.raw);
        let primary = &group.primaries[0];
        assert_eq!(primary.driver.as_deref(), Some("e1000e"), "{}", state.raw);
        assert_eq!(primary.mac, MAC);
        // The primary sits behind root1 (a different bus than the standby).
        assert_ne!(primary.pci, standby.pci, "{}", state.raw);

        assert_eq!(qmp.query_status().await.unwrap(), "running");
        shut_down(&qmp, child).await;
    });
}

#[test]
fn guest_without_virtio_net_does_not_negotiate() {
    let Some((qemu, guest)) = setup("guest_without_virtio_net_does_not_negotiate") else {
        return;
    };
    let _lock = teamvirt_testinfra::guest_lock();
    let dir = teamvirt_testinfra::temp_dir();
    runtime().block_on(async {
        let child = spawn_qemu(&qemu, &guest, dir.path(), "e2e.skip=virtio_net");
        let qmp = connect(dir.path()).await;
        let mut events = qmp.subscribe_with_history();

        // The guest really ran its init (so silence below is not slowness).
        let log = SerialLog::new(dir.path().join("serial.log"));
        let modules = blocking(move || {
            log.wait_for_line("E2E SKIP virtio_net", BOOT_TIMEOUT)?;
            log.wait_for_line("E2E MODULES", BOOT_TIMEOUT)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!modules.contains("virtio_net"), "{modules}");
        assert!(modules.contains("e1000e"), "{modules}");

        match events
            .wait_for("FAILOVER_NEGOTIATED", |_| true, Duration::from_secs(15))
            .await
        {
            Err(QmpError::Timeout { .. }) => {}
            other => panic!("expected no FAILOVER_NEGOTIATED, got {other:?}"),
        }
        let periph = qmp.peripherals().await.unwrap();
        assert!(periph.contains(&"net1".to_string()), "{periph:?}");
        assert!(!periph.contains(&"hostdev0".to_string()), "{periph:?}");
        let e = qmp
            .qom_list("/machine/peripheral/hostdev0")
            .await
            .unwrap_err();
        assert_eq!(e.class(), Some("DeviceNotFound"), "{e}");

        // And the guest has no failover master.
        let log = SerialLog::new(dir.path().join("serial.log"));
        let state = log.latest_state().expect("no E2E STATE line");
        assert!(state.failover_groups().is_empty(), "{}", state.raw);
        shut_down(&qmp, child).await;
    });
}
