//! Forged or damaged run records (issue 12, items 1 and 4): the kernel,
//! not the record, says which process is a domain's QEMU; a record that
//! cannot be read never makes a running domain "shut off".

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use teamvirt_runtime::accel::Accel;
use teamvirt_runtime::process::ProcId;
use teamvirt_runtime::run::RunRecord;
use teamvirt_runtime::state::{write_atomic, StateDir};
use teamvirt_runtime::Runtime;

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
