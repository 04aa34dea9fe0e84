//! `teaming::query` / `wait_negotiated` against a real guest under TCG, with
//! a hand-written failover command line (the e2e recipe's), so the failover
//! observation is checked independently of the XML and argv layers.

use std::time::Duration;

use teamvirt_host::state::StateDir;
use teamvirt_runtime::accel::Accel;
use teamvirt_runtime::run::{self, monitor_args, LaunchSpec};
use teamvirt_runtime::teaming::{self, TeamingPair};

const MAC: &str = "52:54:00:12:34:56";

fn pair() -> TeamingPair {
    TeamingPair {
        standby: "net1".into(),
        primary: "hostdev0".into(),
        standby_mac: Some(MAC.into()),
        primary_mac: Some(MAC.into()),
        vf: None,
        network: None,
        emulated: true,
    }
}

async fn boot(extra_cmdline: &str, wait: Duration) -> Option<Vec<teaming::PairState>> {
    let qemu = teamvirt_testinfra::qemu_or_skip("teaming_qemu")?;
    let guest = teamvirt_testinfra::test_guest().expect("test guest builds");
    let t = tempfile::tempdir().unwrap();
    let sd = StateDir::open(t.path()).unwrap();
    let p = sd.run_paths("vm").unwrap();
    let mut args: Vec<String> = vec![
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-m",
        "256",
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-S",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.extend(monitor_args(&p.qmp_sock));
    let more = [
        "-kernel".to_string(),
        guest.kernel.display().to_string(),
        "-initrd".into(),
        guest.initrd.display().to_string(),
        "-append".into(),
        guest.cmdline(extra_cmdline),
        "-serial".into(),
        format!("file:{}", p.serial_log.display()),
        "-device".into(),
        "pcie-root-port,id=root0,bus=pcie.0,addr=0x1,chassis=1".into(),
        "-device".into(),
        "pcie-root-port,id=root1,bus=pcie.0,addr=0x2,chassis=2".into(),
        "-netdev".into(),
        "user,id=hs0,restrict=on".into(),
        "-device".into(),
        format!("virtio-net-pci,bus=root0,id=net1,netdev=hs0,mac={MAC},failover=on"),
        "-netdev".into(),
        "user,id=hs1,restrict=on".into(),
        "-device".into(),
        format!("e1000e,bus=root1,id=hostdev0,netdev=hs1,mac={MAC},failover_pair_id=net1,romfile="),
    ];
    args.extend(more);
    let spec = LaunchSpec {
        name: "vm".into(),
        id: 1,
        uuid: None,
        emulator: qemu,
        env: None,
        args,
        accel: Accel::Tcg,
        serial_log: Some(p.serial_log.clone()),
        pairs: vec![pair()],
        vfs: vec![],
        substitutions: vec![],
        live_xml: "<domain/>".into(),
        incoming: false,
        monitor_timeout: Duration::from_secs(20),
        pass_fds: Vec::new(),
    };
    let mut l = run::launch(&sd, spec).await.unwrap();
    let states = teaming::wait_negotiated(&l.qmp, &mut l.events, &[pair()], wait)
        .await
        .unwrap();
    // A fresh connection (a later invocation) infers the same.
    drop(l.events);
    drop(l.qmp);
    let rec = run::running(&sd, "vm").unwrap().unwrap();
    let q = run::connect(&rec, Duration::from_secs(5)).await.unwrap();
    let again = teaming::query(&q, &rec.pairs).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|s| (s.negotiated, s.plugged))
            .collect::<Vec<_>>(),
        states
            .iter()
            .map(|s| (s.negotiated, s.plugged))
            .collect::<Vec<_>>()
    );
    q.quit().await.ok();
    rec.proc.kill_painfully(Duration::from_secs(5)).unwrap();
    Some(states)
}

#[test]
fn negotiated_pair_is_seen_and_missing_support_is_not() {
    let Some(_) = teamvirt_testinfra::qemu_or_skip("negotiated_pair_is_seen") else {
        return;
    };
    let _lock = teamvirt_testinfra::guest_lock();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let ok = rt.block_on(boot("", Duration::from_secs(90))).unwrap();
    assert!(ok[0].negotiated && ok[0].plugged, "{ok:?}");
    assert_eq!(ok[0].standby_feature_acked, Some(true), "{ok:?}");
    assert!(ok[0].is_working());

    let bad = rt
        .block_on(boot("e2e.skip=virtio_net", Duration::from_secs(12)))
        .unwrap();
    assert!(!bad[0].negotiated && !bad[0].plugged, "{bad:?}");
    assert_ne!(bad[0].standby_feature_acked, Some(true));
    assert!(bad[0]
        .problem()
        .unwrap()
        .contains("did not negotiate failover on net1"));
}
