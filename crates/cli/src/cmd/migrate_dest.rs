//! `teamvirt __migrate-dest` (hidden): the destination half of `teamvirt
//! migrate DOMAIN ssh://...`, started by the source over SSH for the
//! length of one migration (see `teamvirt_runtime::migrate::serve`). With
//! `--relay SOCKET` it is the far end of a `--tunnelled` memory stream
//! instead: stdin to the destination QEMU's incoming socket, and back.
//! stdout belongs to the protocol; everything for humans goes to stderr,
//! which SSH shows on the source.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use teamvirt_host::state::StateDir;

use super::args::StateOpt;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Relay stdin/stdout to this unix socket (a tunnelled memory stream).
    #[arg(long, value_name = "SOCKET")]
    pub relay: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateOpt,
}

pub fn run(a: Args) -> ExitCode {
    if let Some(sock) = &a.relay {
        return relay(sock);
    }
    // A named state directory must exist: a typo in the URI's path would
    // otherwise be a new, empty host ("Network not found" later).
    if let Some(dir) = &a.state.state_dir {
        if !dir.is_dir() {
            eprintln!(
                "teamvirt: failed to connect to the hypervisor: the destination state directory {} does not exist (teamvirt does not create it: create it and define the domain's networks there first)",
                dir.display()
            );
            // The source reads the reason from the greeting's absence and
            // this text; an explicit error line makes it plain.
            let msg = serde_json::json!({"msg": "error", "message": format!("failed to connect to the hypervisor: the destination state directory {} does not exist on the destination host (teamvirt does not create it: create it and define the domain's networks there first)", dir.display())});
            println!("{msg}");
            return ExitCode::FAILURE;
        }
    }
    let sd = match a.state.state_dir.as_deref().map_or_else(
        || teamvirt_runtime::state_root::open_default(None),
        StateDir::open,
    ) {
        Ok(sd) => sd,
        Err(e) => {
            eprintln!("teamvirt: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Settle what an earlier run left (a helper that was killed).
    match crate::block_on(teamvirt_runtime::open(&sd)) {
        Ok(rt) => {
            for n in rt.notices() {
                eprintln!("teamvirt: warning: {n}");
            }
        }
        Err(e) => {
            eprintln!("teamvirt: {e}");
            return ExitCode::FAILURE;
        }
    }
    let res = crate::block_on(teamvirt_runtime::migrate::serve::serve_stdio(sd));
    match res {
        Ok(log) => {
            for l in log {
                eprintln!("teamvirt: {l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("teamvirt: {e}");
            ExitCode::FAILURE
        }
    }
}

fn relay(sock: &Path) -> ExitCode {
    let s = match UnixStream::connect(sock) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("teamvirt: cannot connect to {}: {e}", sock.display());
            return ExitCode::FAILURE;
        }
    };
    let Ok(mut to_qemu) = s.try_clone() else {
        return ExitCode::FAILURE;
    };
    let up = std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let _ = std::io::copy(&mut stdin, &mut to_qemu);
        let _ = to_qemu.shutdown(std::net::Shutdown::Write);
    });
    let mut from_qemu = s;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match from_qemu.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
        }
    }
    // The stream is over when the source side closes (QEMU's incoming
    // side hardly talks back); do not wait on a half-open stdin.
    if up.is_finished() {
        let _ = up.join();
    }
    ExitCode::SUCCESS
}
