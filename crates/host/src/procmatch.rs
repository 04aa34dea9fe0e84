//! Is a process the QEMU one expects (checked in /proc)?
//!
//! A record naming a pid is a file; the kernel is the authority. Before
//! any signal goes to a recorded pid, [`Expected::mismatch`] checks what
//! `/proc` says: the start time (already part of [`ProcId`]), the
//! executable (`/proc/PID/exe`) against the expected emulator, and that
//! its command line opens (or its descriptors hold) the expected QMP
//! socket. [`find`] finds such processes without a record. Which emulator
//! and socket a domain's QEMU has is the caller's
//! (`teamvirt_runtime::identity`).

use std::path::{Path, PathBuf};

use crate::process::ProcId;

/// `program` as exec would find it (`PATH` for a bare name), canonical.
pub fn resolve_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return std::fs::canonicalize(program).ok();
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
}

fn is_script(p: &Path) -> bool {
    let mut b = [0u8; 2];
    std::fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok()
        && &b == b"#!"
}

/// The executable of a process (`/proc/PID/exe`), without the
/// " (deleted)" the kernel appends when the binary was replaced since.
pub fn exe_of(pid: i32) -> Option<PathBuf> {
    let p = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let s = p.to_string_lossy();
    Some(match s.strip_suffix(" (deleted)") {
        Some(t) => PathBuf::from(t),
        None => p,
    })
}

/// The command line of a process (`/proc/PID/cmdline`).
pub fn cmdline_of(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Does this command line open `sock` as its monitor (QEMU's option
/// syntax doubles commas in values)?
fn opens_socket(argv: &[String], sock: &Path) -> bool {
    let s = sock.display().to_string();
    let needle = format!("path={}", s.replace(',', ",,"));
    argv.iter().any(|a| {
        a.starts_with("socket,")
            && a.match_indices(&needle).any(|(i, _)| {
                let rest = &a[i + needle.len()..];
                rest.is_empty() || (rest.starts_with(',') && !rest.starts_with(",,"))
            })
    })
}

/// The unix sockets bound at `sock` in a `net/unix` table (`table`:
/// `/proc/net/unix`, or `/proc/PID/net/unix` for the network namespace of
/// process PID), as (state, inode): state `01` is a listener, `03` a
/// connected socket. `None` when the table cannot be read.
pub fn unix_sockets_at(table: &Path, sock: &Path) -> Option<Vec<(String, String)>> {
    let text = read_table(table)?;
    let want = sock.to_str()?;
    Some(
        text.lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 8 && f[7..].join(" ") == want)
                    .then(|| (f[5].to_owned(), f[6].to_owned()))
            })
            .collect(),
    )
}

/// A `/proc/net/*` table in as few reads as possible: the kernel resumes
/// each read by line number, so while other sockets come and go between
/// two small reads a line can be skipped (the likely cause of a QEMU not
/// found while parallel tests started and stopped others). One large
/// read, then the rest if there is more.
fn read_table(table: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(table).ok()?;
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

/// Inodes of the listening unix sockets bound at `sock`, as the network
/// namespace of process `pid` sees them (a QEMU started inside another
/// namespace has its socket listed there only).
fn listener_inodes(pid: i32, sock: &Path) -> Vec<String> {
    unix_sockets_at(Path::new(&format!("/proc/{pid}/net/unix")), sock)
        .unwrap_or_default()
        .into_iter()
        .filter(|(state, _)| state == "01")
        .map(|(_, inode)| inode)
        .collect()
}

/// Does process `pid` hold one of these sockets open? QEMU running as the
/// QEMU user gets its monitor as a descriptor teamvirt bound (`fd=N`), so
/// its command line names no path; what it holds is what the kernel says.
fn holds_socket(pid: i32, sock: &Path) -> bool {
    // Read again when not listed: one read can still miss a line that
    // moved while the table changed (see `read_table`).
    let inodes = (0..3)
        .map(|_| listener_inodes(pid, sock))
        .find(|i| !i.is_empty())
        .unwrap_or_default();
    if inodes.is_empty() {
        return false;
    }
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    rd.flatten().any(|e| {
        std::fs::read_link(e.path()).is_ok_and(|t| {
            let t = t.to_string_lossy();
            inodes
                .iter()
                .any(|i| t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) == Some(i))
        })
    })
}

/// What a QEMU looks like to the kernel.
#[derive(Debug, Clone)]
pub struct Expected {
    emulator: PathBuf,
    resolved: Option<PathBuf>,
    sock: PathBuf,
}

impl Expected {
    /// A QEMU of `emulator` (as its definition names it) with its monitor
    /// at `sock`.
    pub fn new(emulator: PathBuf, sock: PathBuf) -> Expected {
        Expected {
            resolved: resolve_program(&emulator),
            emulator,
            sock,
        }
    }

    /// Why `proc` is not this QEMU (None: it is).
    pub fn mismatch(&self, proc: &ProcId) -> Option<String> {
        if !proc.is_alive() {
            return Some(format!(
                "no process {} with the recorded start time is running",
                proc.pid
            ));
        }
        let Some(want) = &self.resolved else {
            return Some(format!(
                "the domain's emulator {} cannot be found",
                self.emulator.display()
            ));
        };
        let Some(exe) = exe_of(proc.pid) else {
            return Some(format!("/proc/{}/exe cannot be read", proc.pid));
        };
        // A wrapper script (`<emulator>` naming a `#!` file that execs
        // QEMU) is not what the kernel shows; the command line still must
        // open the domain's monitor.
        if &exe != want && !is_script(want) {
            return Some(format!(
                "/proc/{}/exe is {}, the domain's emulator is {}",
                proc.pid,
                exe.display(),
                want.display()
            ));
        }
        let argv = cmdline_of(proc.pid).unwrap_or_default();
        if !opens_socket(&argv, &self.sock) && !holds_socket(proc.pid, &self.sock) {
            return Some(format!(
                "it neither opens nor holds the domain's monitor {}",
                self.sock.display()
            ));
        }
        None
    }
}

/// The running processes that are `want` by what the kernel says
/// (executable = the expected emulator, command line opening or
/// descriptors holding the expected QMP socket).
pub fn find(want: &Expected) -> Vec<ProcId> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // Cheap filter first: the command line names the socket, or the
        // process holds it (QEMU given its monitor as a descriptor).
        if !cmdline_of(pid).is_some_and(|a| opens_socket(&a, &want.sock))
            && (exe_of(pid) != want.resolved || !holds_socket(pid, &want.sock))
        {
            continue;
        }
        if let Some(proc) = ProcId::of(pid) {
            if want.mismatch(&proc).is_none() {
                out.push(proc);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_socket_is_recognized() {
        let argv: Vec<String> = [
            "qemu",
            "-chardev",
            "socket,id=charmonitor,path=/s/a,,b/run/vm/qmp.sock,server=on,wait=off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(opens_socket(&argv, Path::new("/s/a,b/run/vm/qmp.sock")));
        assert!(!opens_socket(&argv, Path::new("/s/a,b/run/vm2/qmp.sock")));
        assert!(!opens_socket(
            &["sleep".into(), "path=/s/a,,b/run/vm/qmp.sock".into()],
            Path::new("/s/a,b/run/vm/qmp.sock")
        ));
    }
}
