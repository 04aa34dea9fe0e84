//! Forged or damaged run records (issue 12, items 1 and 4): the kernel,
//! not the record, says which process is a domain's QEMU; a record that
//! cannot be read never makes a running domain "shut off".

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use teamvirt_host::process::ProcId;
use teamvirt_host::state::{write_atomic, StateDir};
use teamvirt_runtime::accel::Accel;
use teamvirt_runtime::pool::VfPool;
use teamvirt_runtime::run::{self, monitor_args, LaunchSpec, RunRecord, VfBinding};
use teamvirt_runtime::{DomainState, Runtime};

use teamvirt_host::asyncrt::block_on_in_test as block_on;

/// A process that is not QEMU, killed when dropped.
struct Victim(Child);

impl Victim {
    fn spawn() -> Victim {
        Victim(Command::new("sleep").arg("300").spawn().unwrap())
    }
    fn proc(&self) -> ProcId {
        ProcId::of(self.0.id() as i32).unwrap()
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn forged_record(sd: &StateDir, name: &str, proc: ProcId, emulator: &Path) -> RunRecord {
    let p = sd.run_paths(name).unwrap();
    RunRecord {
        name: name.into(),
        id: 1,
        uuid: None,
        proc,
        emulator: emulator.display().to_string(),
        argv: vec![emulator.display().to_string()],
        accel: Accel::Tcg,
        qmp_socket: p.qmp_sock,
        serial_log: None,
        qemu_log: p.qemu_log,
        pairs: vec![],
        vfs: vec![],
        substitutions: vec![],
        incoming: false,
        started_unix: 0,
        qemu_id: None,
    }
}

/// A run record naming an unrelated process (pid and start time right,
/// even its `emulator` set to that process's binary): `destroy` refuses
/// to signal it, and it lives on.
#[test]
fn destroy_refuses_to_kill_a_forged_pid() {
    let t = tempfile::tempdir().unwrap();
    let sd = StateDir::open(t.path()).unwrap();
    let mut v = Victim::spawn();
    let exe = std::fs::read_link(format!("/proc/{}/exe", v.proc().pid)).unwrap();
    forged_record(&sd, "vm", v.proc(), &exe).save(&sd).unwrap();
    let rt = Runtime::open(&sd).unwrap();
    let e = rt.destroy("vm").unwrap_err().to_string();
    assert!(
        e.contains(&format!("refusing to signal process {}", v.proc().pid))
            && e.contains("is not this domain's QEMU"),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(v.alive(), "destroy killed an unrelated process");
}

/// Real QEMUs (no guest, vCPUs never started) for the damaged-state tests;
/// continued and killed when dropped, also when an assertion failed.
struct Qemus(Vec<ProcId>);

impl Drop for Qemus {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = p.signal(libc::SIGCONT);
            let _ = p.kill_painfully(Duration::from_secs(5));
        }
    }
}

const POOL: &str = "pool";
const VF: &str = "0000:3b:02.0";

/// Start domain `name` as a bare QEMU holding `vf` of network `pool`.
fn launch(sd: &StateDir, qemu: &Path, name: &str, vf: Option<&str>, id: u32) -> ProcId {
    launch_with(sd, qemu, "<domain/>", name, vf, id)
}

fn launch_with(
    sd: &StateDir,
    qemu: &Path,
    live_xml: &str,
    name: &str,
    vf: Option<&str>,
    id: u32,
) -> ProcId {
    let p = sd.run_paths(name).unwrap();
    let mut args: Vec<String> = [
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-m",
        "32",
        "-nodefaults",
        "-display",
        "none",
        "-S",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(monitor_args(&p.qmp_sock));
    let vfs: Vec<VfBinding> = vf
        .map(|a| VfBinding {
            network: POOL.into(),
            device: "hostdev0".into(),
            address: a.into(),
            lab: None,
        })
        .into_iter()
        .collect();
    if let Some(a) = vf {
        VfPool::new(sd, POOL).reserve(a, name, "hostdev0").unwrap();
    }
    let spec = LaunchSpec {
        name: name.into(),
        id,
        uuid: None,
        emulator: qemu.to_owned(),
        env: None,
        args,
        accel: Accel::Tcg,
        serial_log: None,
        pairs: vec![],
        vfs,
        substitutions: vec![],
        live_xml: live_xml.into(),
        // No `cont`: the vCPUs stay stopped (no CPU burnt).
        incoming: true,
        monitor_timeout: Duration::from_secs(30),
        pass_fds: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let l = rt.block_on(run::launch(sd, spec)).unwrap();
    let proc = l.record.proc;
    drop(l);
    proc
}

fn state_dir(t: &Path) -> StateDir {
    let sd = StateDir::open(&t.join("s")).unwrap();
    write_atomic(&sd.network_xml(POOL).unwrap(), b"<network/>", 0o600).unwrap();
    sd
}

fn holders(sd: &StateDir) -> Vec<(String, String)> {
    VfPool::new(sd, POOL)
        .state()
        .unwrap()
        .allocations
        .into_iter()
        .map(|a| (a.address, a.domain))
        .collect()
}

/// An empty or garbage `state.json` while QEMU runs: the domain is
/// "damaged", not shut off: its live XML, socket and VF stay; `list`
/// shows it (and the others); `destroy` says what is wrong; `destroy
/// --force` finds the QEMU by its command line, stops it, frees the VF.
#[test]
fn damaged_run_record_keeps_the_domain_and_its_vf() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("damaged_run_record") else {
        return;
    };
    for garbage in ["", "{\"name\": \"vm\", \"pro"] {
        let t = teamvirt_testinfra::temp_dir();
        let sd = state_dir(t.path());
        let mut q = Qemus(vec![]);
        q.0.push(launch(&sd, &qemu, "vm", Some(VF), 1));
        q.0.push(launch(&sd, &qemu, "other", None, 2));
        let p = sd.run_paths("vm").unwrap();
        std::fs::write(&p.state_json, garbage).unwrap();

        let rt = Runtime::open(&sd).unwrap();
        assert!(q.0[0].is_alive());
        assert!(
            p.live_xml.exists() && p.qmp_sock.exists(),
            "live state deleted"
        );
        assert_eq!(holders(&sd), vec![(VF.to_string(), "vm".to_string())]);

        let list = block_on(rt.list_domains(true)).unwrap();
        let row = |n: &str| list.iter().find(|d| d.name == n).cloned().unwrap();
        assert_eq!(row("vm").state, DomainState::Damaged);
        let why = row("vm").problem.unwrap();
        assert!(why.contains("state of domain 'vm' is damaged"), "{why}");
        assert_eq!(row("other").state, DomainState::Paused);

        let e = rt.destroy("vm").unwrap_err().to_string();
        assert!(
            e.contains("state of domain 'vm' is damaged") && e.contains("destroy --force vm"),
            "{e}"
        );
        assert!(q.0[0].is_alive());
        let e = block_on(rt.domain_state("vm")).unwrap_err().to_string();
        assert!(e.contains("is damaged"), "{e}");

        let freed = rt.destroy_with("vm", true, &mut |_| {}).unwrap();
        assert_eq!(freed.len(), 1, "{freed:?}");
        assert!(!q.0[0].is_alive(), "destroy --force left QEMU running");
        assert!(holders(&sd).is_empty());
        assert!(RunRecord::load(&sd, "vm").unwrap().is_none());
        // The other domain was never touched.
        assert!(q.0[1].is_alive());
        assert!(rt.destroy("other").is_ok());
    }
}

/// The record deleted outright: the running QEMU still holds its VF.
#[test]
fn deleted_run_record_does_not_free_the_vf() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("deleted_run_record") else {
        return;
    };
    let t = teamvirt_testinfra::temp_dir();
    let sd = state_dir(t.path());
    let q = Qemus(vec![launch(&sd, &qemu, "vm", Some(VF), 1)]);
    std::fs::remove_file(sd.run_paths("vm").unwrap().state_json).unwrap();
    let rt = Runtime::open(&sd).unwrap();
    assert_eq!(holders(&sd), vec![(VF.to_string(), "vm".to_string())]);
    let e = block_on(rt.domain_state("vm")).unwrap_err().to_string();
    assert!(e.contains("run record") && e.contains("is missing"), "{e}");
    rt.destroy_with("vm", true, &mut |_| {}).unwrap();
    assert!(!q.0[0].is_alive());
    assert!(holders(&sd).is_empty());
}

/// The pool's state file deleted, or corrupt, while a VM holds a VF: it is
/// rebuilt from the run records (with a warning) instead of showing the
/// pool empty or making every verb fail.
#[test]
fn lost_or_corrupt_pool_state_is_rebuilt_from_the_run_records() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("lost_pool_state") else {
        return;
    };
    for damage in [None, Some("{garbage"), Some("")] {
        let t = teamvirt_testinfra::temp_dir();
        let sd = state_dir(t.path());
        let q = Qemus(vec![launch(&sd, &qemu, "vm", Some(VF), 1)]);
        let f = sd.network_state(POOL).unwrap();
        match damage {
            None => std::fs::remove_file(&f).unwrap(),
            Some(g) => std::fs::write(&f, g).unwrap(),
        }
        let rt = Runtime::open(&sd).unwrap();
        let w = rt.notices().join("\n");
        assert!(
            w.contains("network 'pool'") && w.contains("rebuilt"),
            "{damage:?}: {w}"
        );
        assert_eq!(holders(&sd), vec![(VF.to_string(), "vm".to_string())]);
        // The VF is not handed out again.
        let other = VfPool::new(&sd, POOL).allocate(&[VF.to_string()], "vm2", "hostdev0");
        assert!(
            other.is_err(),
            "{damage:?}: the held VF was handed out again"
        );
        // destroy works and gives the VF back.
        let freed = rt.destroy("vm").unwrap();
        assert_eq!(freed.len(), 1);
        assert!(!q.0[0].is_alive());
        assert!(holders(&sd).is_empty());
    }
}

/// One QEMU stopped with SIGSTOP: `list` still lists every domain (the
/// frozen one as not responding, after a bounded wait at most), and the
/// verbs on it say the process is stopped instead of blaming another
/// teamvirt command.
#[test]
fn stopped_qemu_costs_only_its_own_domain() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("stopped_qemu") else {
        return;
    };
    let t = teamvirt_testinfra::temp_dir();
    let sd = state_dir(t.path());
    let q = Qemus(vec![
        launch(&sd, &qemu, "frozen", None, 1),
        launch(&sd, &qemu, "fine", None, 2),
    ]);
    q.0[0].signal(libc::SIGSTOP).unwrap();
    let rt = Runtime::open(&sd).unwrap();
    let list = block_on(rt.list_domains(false)).unwrap();
    let row = |n: &str| list.iter().find(|d| d.name == n).cloned().unwrap();
    assert_eq!(row("frozen").state, DomainState::NotResponding);
    assert_eq!(row("frozen").id, Some(1));
    assert!(row("frozen").problem.unwrap().contains("is stopped"));
    assert_eq!(row("fine").state, DomainState::Paused);
    let e = block_on(rt.teaming("frozen")).unwrap_err().to_string();
    assert!(
        e.contains(&format!("(pid {}) is not responding", q.0[0].pid))
            && !e.contains("another teamvirt command"),
        "{e}"
    );
    // destroy still works on it.
    rt.destroy("frozen").unwrap();
    assert!(!q.0[0].is_alive());
}

/// An `<emulator>` that is a wrapper script exec'ing QEMU: the kernel shows
/// QEMU's binary, not the script; the domain is still recognized (by its
/// command line) and destroy works.
#[test]
fn wrapper_script_emulator_is_still_its_qemu() {
    let Some(qemu) = teamvirt_testinfra::qemu_or_skip("wrapper_script_emulator") else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let t = teamvirt_testinfra::temp_dir();
    let sd = state_dir(t.path());
    let wrapper = t.path().join("qemu-wrapper");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {} \"$@\"\n", qemu.display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let xml = format!(
        "<domain type='qemu'><name>vm</name><memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices><emulator>{}</emulator></devices></domain>",
        wrapper.display()
    );
    let q = Qemus(vec![launch_with(&sd, &wrapper, &xml, "vm", None, 1)]);
    let rt = Runtime::open(&sd).unwrap();
    rt.destroy("vm").unwrap();
    assert!(!q.0[0].is_alive());
}

/// A monitor that never greets: "not responding" when nobody else holds
/// it, "busy" only when another client really does (today both blame
/// another teamvirt command).
#[test]
fn silent_monitor_is_not_responding_unless_another_client_holds_it() {
    let t = teamvirt_testinfra::temp_dir();
    let sd = state_dir(t.path());
    let me = ProcId::of(std::process::id() as i32).unwrap();
    let p = sd.create_run_dir("vm").unwrap();
    forged_record(&sd, "vm", me, Path::new("/bin/true"))
        .save(&sd)
        .unwrap();
    // Listening, never accepting: a hung QEMU.
    let listener = std::os::unix::net::UnixListener::bind(&p.qmp_sock).unwrap();
    let rt = Runtime::open(&sd).unwrap();
    let e = block_on(rt.teaming("vm")).unwrap_err().to_string();
    assert!(
        e.contains("is not responding: no QMP greeting") && !e.contains("another teamvirt"),
        "{e}"
    );
    let list = block_on(rt.list_domains(false)).unwrap();
    assert_eq!(list[0].state, DomainState::NotResponding);
    // Now another client holds it (accepted), and ours waits in vain.
    let _other = std::os::unix::net::UnixStream::connect(&p.qmp_sock).unwrap();
    let _held = listener.accept().unwrap();
    let e = block_on(rt.teaming("vm")).unwrap_err().to_string();
    assert!(e.contains("another teamvirt command is connected"), "{e}");
}
