//! `console DOMAIN`: attach the terminal to the domain's serial console
//! (the pty QEMU made for `<serial type='pty'>`), like `virsh console`.
//! Ctrl-] leaves. The guest's output is also kept in the domain's serial
//! log, whoever is attached.

use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use teamvirt_runtime::Runtime;

use crate::cmd::args::NameArgs;
use crate::cmd::report::report_domain;

/// Ctrl-]: virsh's escape character.
const ESCAPE: u8 = 0x1d;

pub fn run(a: NameArgs) -> ExitCode {
    match a.state.open() {
        Ok(rt) => attach(&rt, &a.domain),
        Err(e) => report_domain(&a.domain, "", &e),
    }
}

/// Attach to the console of running domain `domain` (also `start
/// --console`, `create --console`) until Ctrl-] or the domain goes away.
pub fn attach(rt: &Runtime, domain: &str) -> ExitCode {
    // Opened by the runtime, which checks it is QEMU's pty.
    let mut dev = match crate::block_on(rt.open_console(domain)) {
        Ok((_, f)) => f,
        Err(e) => return report_domain(domain, "", &e),
    };
    eprintln!("Connected to domain '{domain}'");
    eprintln!("Escape character is ^] (Ctrl + ])");
    let raw = RawTerminal::enter();
    let res = relay(&mut dev);
    drop(raw);
    // virsh ends the line the guest left open.
    eprintln!();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: console of domain '{domain}': {e}");
            ExitCode::FAILURE
        }
    }
}

/// Copy the console to stdout and stdin to the console until Ctrl-] or
/// the domain going away. The end of stdin (a script's input, /dev/null)
/// only stops the copy towards the guest: its output is still relayed
/// (`console DOM < /dev/null > log` records the console until the
/// domain stops).
fn relay(dev: &mut std::fs::File) -> io::Result<()> {
    let stdin = io::stdin();
    let mut stdout = io::stdout();
    let mut buf = [0u8; 4096];
    let mut stdin_open = true;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: dev.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                // A negative fd is ignored by poll.
                fd: if stdin_open { stdin.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match dev.read(&mut buf) {
                // The pty's other side closed: QEMU is gone.
                Ok(0) => return Ok(()),
                Ok(k) => {
                    stdout.write_all(&buf[..k])?;
                    stdout.flush()?;
                }
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if stdin_open && fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            let k = stdin.lock().read(&mut buf)?;
            if k == 0 {
                stdin_open = false;
                continue;
            }
            let data = &buf[..k];
            if let Some(at) = data.iter().position(|&b| b == ESCAPE) {
                dev.write_all(&data[..at])?;
                return Ok(());
            }
            dev.write_all(data)?;
        }
    }
}

/// The terminal in raw mode (keys go to the guest as typed) while alive.
struct RawTerminal {
    saved: Option<libc::termios>,
}

impl RawTerminal {
    fn enter() -> RawTerminal {
        let fd = io::stdin().as_raw_fd();
        if !io::stdin().is_terminal() {
            return RawTerminal { saved: None };
        }
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is our stdin, a terminal.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return RawTerminal { saved: None };
        }
        let saved = t;
        // SAFETY: t is a valid termios.
        unsafe {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSAFLUSH, &t);
        }
        RawTerminal { saved: Some(saved) }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restoring the attributes read in `enter`.
            unsafe { libc::tcsetattr(io::stdin().as_raw_fd(), libc::TCSAFLUSH, &t) };
        }
    }
}
