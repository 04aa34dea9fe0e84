//! QEMU processes: started detached (new session, reparented to init, so
//! they outlive `teamvirt`), identified later by pid + start time (so a
//! recycled pid is never mistaken for our QEMU), and stopped with
//! libvirt's "kill painfully" pattern (SIGTERM, wait, SIGKILL).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot execute {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("cannot open log file {path}: {source}")]
    Log { path: PathBuf, source: io::Error },
    #[error("failed to kill process {pid}: {source}")]
    Kill { pid: i32, source: io::Error },
    #[error("process {pid} did not exit within {secs} s of SIGKILL")]
    Stuck { pid: i32, secs: u64 },
    /// It ran (exec succeeded) but was gone, and reaped by its reaper,
    /// before its identity could be read.
    #[error("process {pid} exited as soon as it started")]
    ExitedAtStart { pid: i32 },
    /// `destroy --graceful`: SIGTERM only, and it is still there
    /// (libvirt's "Failed to terminate process N with SIGTERM").
    #[error("Failed to terminate process {pid} with SIGTERM (waited {secs} s; destroy without --graceful kills it)")]
    StillThere { pid: i32, secs: u64 },
}

/// A process identity that survives pid reuse: the pid plus the kernel's
/// start time of that process (`/proc/PID/stat` field 22, in clock ticks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcId {
    /// Identify a running pid (`None` if it does not exist).
    pub fn of(pid: i32) -> Option<ProcId> {
        let st = read_stat(pid)?;
        Some(ProcId {
            pid,
            start_time: st.start_time,
        })
    }

    /// True while this very process exists and is not a zombie. (A QEMU
    /// reparented to an init that does not reap stays a zombie; it is dead.)
    pub fn is_alive(&self) -> bool {
        match read_stat(self.pid) {
            Some(st) => st.start_time == self.start_time && st.state != 'Z' && st.state != 'X',
            None => false,
        }
    }

    /// Stopped by a signal (SIGSTOP) or a tracer: alive but answering nothing.
    pub fn is_stopped(&self) -> bool {
        matches!(read_stat(self.pid), Some(st) if st.start_time == self.start_time && (st.state == 'T' || st.state == 't'))
    }

    /// Send a signal (only if the process is still this one).
    pub fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        if !self.is_alive() {
            return Ok(());
        }
        // SAFETY: kill has no memory preconditions.
        if unsafe { libc::kill(self.pid, sig) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(ProcessError::Kill {
                    pid: self.pid,
                    source: e,
                });
            }
        }
        Ok(())
    }

    /// Wait until the process is gone or `timeout` passes; true if gone.
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, up to `grace` for a clean exit, then SIGKILL and 5 s more
    /// (libvirt's virProcessKillPainfully uses 10 s + 5 s).
    pub fn kill_painfully(&self, grace: Duration) -> Result<(), ProcessError> {
        self.signal(libc::SIGTERM)?;
        if self.wait_gone(grace) {
            return Ok(());
        }
        self.signal(libc::SIGKILL)?;
        if self.wait_gone(Duration::from_secs(5)) {
            return Ok(());
        }
        Err(ProcessError::Stuck {
            pid: self.pid,
            secs: 5,
        })
    }
}

impl ProcId {
    /// SIGTERM and up to `grace` for a clean exit, never SIGKILL
    /// (virsh `destroy --graceful`, libvirt's virProcessKillPainfully
    /// without force).
    pub fn kill_gracefully(&self, grace: Duration) -> Result<(), ProcessError> {
        self.signal(libc::SIGTERM)?;
        if self.wait_gone(grace) {
            return Ok(());
        }
        Err(ProcessError::StillThere {
            pid: self.pid,
            secs: grace.as_secs(),
        })
    }
}

/// `now + d`, or a year from now when that overflows (a bound taken from
/// user input must never panic).
pub fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86400))
}

struct Stat {
    state: char,
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s)
}

/// `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so
/// split after the last `)`. Field 3 is the state, field 22 the start time.
fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// Start `program args` detached: its own session, stdin from /dev/null,
/// stdout and stderr appended to `log`, and (by forking twice) a child of
/// init rather than of this process, so it outlives us and never lingers as
/// our zombie. `env`, when given, replaces the whole environment (libvirt
/// starts QEMU with a clean one). Returns the identity of the exec'd
/// process. A failure to exec is reported here; anything later shows up in
/// `log`.
pub fn spawn_detached(
    program: &Path,
    args: &[String],
    env: Option<&[(String, String)]>,
    log: &Path,
) -> Result<ProcId, ProcessError> {
    spawn_detached_as(program, args, env, log, None, &[])
}

/// [`spawn_detached`], with `setup` (identity switch, capabilities,
/// inherited descriptors; see [`crate::privdrop`]) applied in the process
/// right before exec, and `pass` (open descriptors such as taps) inherited
/// by the program under the same numbers.
pub fn spawn_detached_as(
    program: &Path,
    args: &[String],
    env: Option<&[(String, String)]>,
    log: &Path,
    setup: Option<crate::privdrop::ChildSetup>,
    pass: &[i32],
) -> Result<ProcId, ProcessError> {
    let pass = pass.to_vec();
    let logf = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(log)
        .map_err(|source| ProcessError::Log {
            path: log.to_owned(),
            source,
        })?;
    let logf2 = logf.try_clone().map_err(|source| ProcessError::Log {
        path: log.to_owned(),
        source,
    })?;
    let spawn_err = |source| ProcessError::Spawn {
        program: program.display().to_string(),
        source,
    };

    // The grandchild reports its pid through this pipe (closed at exec).
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(spawn_err(io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    let (mut rd, wr) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let wfd = wr.as_raw_fd();
    // QEMU's stdout and stderr: read by its reaper, which writes them to
    // the log with control characters escaped (an OSC title or a screen
    // clear in QEMU's output must not reach a terminal showing the log).
    let mut out = [0i32; 2];
    // SAFETY: out is a valid two-element array.
    if unsafe { libc::pipe2(out.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(spawn_err(io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    let (out_rd, out_wr) = unsafe { (File::from_raw_fd(out[0]), File::from_raw_fd(out[1])) };
    let (ord, owr) = (out_rd.as_raw_fd(), out_wr.as_raw_fd());

    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(logf))
        .stderr(Stdio::from(logf2));
    if let Some(env) = env {
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    // SAFETY: only async-signal-safe calls (syscall, fcntl, getrlimit,
    // setsid, fork, _exit, getpid, write, and ChildSetup::apply's raw
    // syscalls) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            close_inherited_at_exec();
            for &fd in &pass {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                }
            }
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => return Err(io::Error::last_os_error()),
                0 => {}
                _ => libc::_exit(0),
            }
            // The process that stays QEMU's parent, to log how it ended.
            match libc::fork() {
                -1 => return Err(io::Error::last_os_error()),
                0 => {}
                qemu => {
                    // Its stdin is QEMU's output (std set 0 to /dev/null).
                    libc::dup2(ord, 0);
                    reap_and_log(qemu)
                }
            }
            if libc::dup2(owr, 1) < 0 || libc::dup2(owr, 2) < 0 {
                return Err(io::Error::last_os_error());
            }
            let me = libc::getpid().to_ne_bytes();
            libc::write(wfd, me.as_ptr().cast(), me.len());
            if let Some(s) = &setup {
                s.apply()?;
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    // Reap the intermediate process; QEMU is the reaper's child now.
    let _ = child.wait();
    drop(wr);
    // Only QEMU and its reaper hold the output pipe now (EOF when QEMU goes).
    drop((out_rd, out_wr));
    let mut buf = [0u8; 4];
    rd.read_exact(&mut buf).map_err(spawn_err)?;
    let pid = i32::from_ne_bytes(buf);
    // The exec succeeded (spawn returns once it has), but a process that
    // fails at once may be reaped by its reaper before this reads it.
    ProcId::of(pid).ok_or(ProcessError::ExitedAtStart { pid })
}

/// QEMU's parent for its whole life: copies QEMU's output (its stdin, a
/// pipe) to the log (stderr) with control characters escaped, waits for
/// QEMU and appends one line saying how it ended (exit status or signal),
/// which is what an operator wants to know about a VM that died while no
/// teamvirt ran (`domlog::exit_cause` reads it back). A daemon-less conmon.
///
/// Runs in a forked child of teamvirt that never execs: async-signal-safe
/// calls only, no allocation. Never returns.
unsafe fn reap_and_log(qemu: libc::pid_t) -> ! {
    // Nothing but QEMU's output and the log stay open: the pid pipe and
    // std's exec-error pipe must see EOF when QEMU execs.
    libc::syscall(
        libc::SYS_close_range,
        3 as libc::c_uint,
        libc::c_uint::MAX,
        0 as libc::c_uint,
    );
    libc::prctl(
        libc::PR_SET_NAME,
        c"teamvirt-reaper".as_ptr() as libc::c_ulong,
        0,
        0,
        0,
    );
    let mut esc = crate::escape::EscapeStream::default();
    let mut buf = [0u8; 4096];
    let mut open = true;
    let mut status = 0;
    loop {
        if open {
            let mut pfd = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&mut pfd, 1, 500) > 0 {
                open = copy_escaped(&mut esc, &mut buf);
            }
        }
        // Blocking once the output ended; else polled, as a child of QEMU
        // may hold its output open after QEMU is gone.
        let r = libc::waitpid(qemu, &mut status, if open { libc::WNOHANG } else { 0 });
        if r == qemu {
            break;
        }
        if r < 0 && *libc::__errno_location() != libc::EINTR {
            libc::_exit(0);
        }
    }
    // What QEMU wrote last, without waiting for anyone else holding it.
    if open {
        let fl = libc::fcntl(0, libc::F_GETFL);
        libc::fcntl(0, libc::F_SETFL, fl | libc::O_NONBLOCK);
        while copy_escaped(&mut esc, &mut buf) {}
    }
    esc.flush(&mut |b| write_all(2, b));
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
    let mut buf = [0u8; 192];
    let n = reap_line(&mut buf, ts.tv_sec, ts.tv_nsec, qemu, status);
    libc::write(2, buf.as_ptr().cast(), n);
    libc::_exit(0)
}

/// One read of QEMU's output (fd 0) copied escaped to the log (fd 2);
/// false at its end (or when nothing is there, non-blocking).
/// Async-signal-safe, no allocation (see `reap_and_log`).
unsafe fn copy_escaped(esc: &mut crate::escape::EscapeStream, buf: &mut [u8; 4096]) -> bool {
    let n = libc::read(0, buf.as_mut_ptr().cast(), buf.len());
    if n < 0 {
        return *libc::__errno_location() == libc::EINTR;
    }
    if n == 0 {
        return false;
    }
    // Escaped output is gathered and written in large pieces.
    let mut out = [0u8; 4096];
    let mut len = 0;
    esc.feed(&buf[..n as usize], &mut |b| {
        if len + b.len() > out.len() {
            write_all(2, &out[..len]);
            len = 0;
        }
        out[len..len + b.len()].copy_from_slice(b);
        len += b.len();
    });
    write_all(2, &out[..len]);
    true
}

/// `write` until all of `b` is written or the descriptor fails.
fn write_all(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: b is a valid buffer of its length.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n < 0 {
            // SAFETY: reading errno.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return;
        }
        b = &b[n as usize..];
    }
}

/// Formats `TIMESTAMP: teamvirt: qemu process PID exited with status N` or
/// `... killed by signal N (SIGNAME)` into `buf` without allocating.
fn reap_line(buf: &mut [u8; 192], secs: i64, nanos: i64, pid: i32, status: i32) -> usize {
    struct W<'a> {
        buf: &'a mut [u8; 192],
        n: usize,
    }
    impl W<'_> {
        fn s(&mut self, s: &str) {
            for &b in s.as_bytes() {
                if self.n < self.buf.len() {
                    self.buf[self.n] = b;
                    self.n += 1;
                }
            }
        }
        fn num(&mut self, v: i64, width: usize) {
            let mut digits = [0u8; 20];
            let (mut v, mut i) = (v.unsigned_abs(), 0);
            loop {
                digits[i] = b'0' + (v % 10) as u8;
                v /= 10;
                i += 1;
                if v == 0 && i >= width {
                    break;
                }
            }
            while i > 0 {
                i -= 1;
                let d = [digits[i]];
                self.s(std::str::from_utf8(&d).unwrap_or("?"));
            }
        }
    }
    let mut w = W { buf, n: 0 };
    // Civil date from days since the epoch (H. Hinnant's algorithm).
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    w.num(y, 4);
    w.s("-");
    w.num(m, 2);
    w.s("-");
    w.num(d, 2);
    w.s(" ");
    w.num(sod / 3600, 2);
    w.s(":");
    w.num(sod / 60 % 60, 2);
    w.s(":");
    w.num(sod % 60, 2);
    w.s(".");
    w.num(nanos / 1_000_000, 3);
    w.s("+0000: teamvirt: qemu process ");
    w.num(i64::from(pid), 1);
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        w.s(" killed by signal ");
        w.num(i64::from(sig), 1);
        let name = match sig {
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGILL => "SIGILL",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGTERM => "SIGTERM",
            _ => "",
        };
        if !name.is_empty() {
            w.s(" (");
            w.s(name);
            w.s(")");
        }
    } else {
        w.s(" exited with status ");
        w.num(i64::from(libc::WEXITSTATUS(status)), 1);
    }
    w.s("\n");
    w.n
}

/// Descriptors teamvirt inherited from its caller (a CI harness's pipe, a
/// shell's `3>file`) must not live on in QEMU: a caller waiting for such a
/// pipe to close would hang until the VM stops (libvirt closes them too).
/// Marks every descriptor above stderr close-on-exec; those teamvirt itself
/// needs until exec (std's error pipe, ours) are close-on-exec already.
/// Runs between fork and exec: async-signal-safe calls only.
unsafe fn close_inherited_at_exec() {
    // close_range(2) with CLOSE_RANGE_CLOEXEC: Linux 5.11+.
    if libc::syscall(
        libc::SYS_close_range,
        3 as libc::c_uint,
        libc::c_uint::MAX,
        libc::CLOSE_RANGE_CLOEXEC,
    ) == 0
    {
        return;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
        lim.rlim_cur.min(1 << 16) as i32
    } else {
        1024
    };
    for fd in 3..max {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reap_line_formats() {
        let mut b = [0u8; 192];
        // 2025-11-30 23:50:01.123, SIGKILL.
        let n = reap_line(&mut b, 1_764_546_601, 123_000_000, 4242, libc::SIGKILL);
        assert_eq!(
            std::str::from_utf8(&b[..n]).unwrap(),
            "2025-11-30 23:50:01.123+0000: teamvirt: qemu process 4242 killed by signal 9 (SIGKILL)\n"
        );
        // Exit status 1 (wait status 0x100), at the epoch.
        let n = reap_line(&mut b, 0, 5_000_000, 7, 0x100);
        assert_eq!(
            std::str::from_utf8(&b[..n]).unwrap(),
            "1970-01-01 00:00:00.005+0000: teamvirt: qemu process 7 exited with status 1\n"
        );
        // A leap day.
        let n = reap_line(&mut b, 951_782_400, 0, 1, 0);
        assert!(std::str::from_utf8(&b[..n])
            .unwrap()
            .starts_with("2000-02-29 00:00:00.000"));
    }

    #[test]
    fn parse_stat_with_odd_comm() {
        let s = "123 (a) b (c)) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.start_time, 987654);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn self_is_alive_and_bogus_pid_is_not() {
        let me = ProcId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let other = ProcId {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert!(!other.is_alive(), "a recycled pid is a different process");
        assert!(ProcId::of(-1).is_none());
    }

    #[test]
    fn detached_process_outlives_and_is_killed() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("log");
        let p = spawn_detached(
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "echo started $FOO; echo err >&2; exec sleep 30".into(),
            ],
            Some(&[("FOO".into(), "bar".into())]),
            &log,
        )
        .unwrap();
        assert!(p.is_alive());
        // A session of its own (the intermediate's), not ours.
        // SAFETY: getsid has no memory preconditions.
        let (sid, mine) = unsafe { (libc::getsid(p.pid), libc::getsid(0)) };
        assert_ne!(sid, mine);
        // Not our child: reparented away from this process.
        let ppid = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).unwrap();
        let ppid: i32 = ppid[ppid.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(ppid, std::process::id() as i32);
        std::thread::sleep(Duration::from_millis(200));
        p.kill_painfully(Duration::from_secs(5)).unwrap();
        assert!(!p.is_alive());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("started bar") && text.contains("err"),
            "{text}"
        );
    }

    /// Only stdin (/dev/null), stdout and stderr (a pipe to its reaper,
    /// which writes the log) reach the detached process; a descriptor
    /// leaked to us by our caller does not.
    #[test]
    fn only_std_descriptors_are_inherited() {
        let t = tempfile::tempdir().unwrap();
        // A descriptor without close-on-exec, as a careless caller leaves it.
        let leaked = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: F_SETFD on a descriptor we own.
        unsafe { libc::fcntl(leaked.as_raw_fd(), libc::F_SETFD, 0) };
        let log = t.path().join("log");
        let p = spawn_detached(Path::new("/bin/sleep"), &["30".into()], None, &log).unwrap();
        // The pid is known before the exec; look once it happened.
        let comm = format!("/proc/{}/comm", p.pid);
        while std::fs::read_to_string(&comm).unwrap().trim() != "sleep" {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", p.pid))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        let target = |pid: i32, fd: &str| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok();
        let targets: Vec<_> = ["0", "1", "2"].iter().map(|f| target(p.pid, f)).collect();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).unwrap();
        let reaper: i32 = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut reaper_fds: Vec<String> = std::fs::read_dir(format!("/proc/{reaper}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        reaper_fds.sort();
        let reaper_targets: Vec<_> = ["0", "1", "2"].iter().map(|f| target(reaper, f)).collect();
        p.kill_painfully(Duration::from_secs(5)).unwrap();
        assert_eq!(fds, ["0", "1", "2"], "leaked fd {}", leaked.as_raw_fd());
        assert_eq!(reaper_fds, ["0", "1", "2"]);
        let null = Some(PathBuf::from("/dev/null"));
        let pipe = targets[1].clone();
        assert!(
            pipe.as_ref()
                .is_some_and(|t| t.to_string_lossy().starts_with("pipe:")),
            "{targets:?}"
        );
        assert_eq!(targets, [null, pipe.clone(), pipe.clone()]);
        assert_eq!(reaper_targets, [pipe, Some(log.clone()), Some(log)]);
    }

    /// A program that exits at once may be reaped by its reaper before
    /// its identity is read: that is an exit at start, not a failure to
    /// execute it.
    #[test]
    fn instant_exit_is_an_exit_not_an_exec_failure() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("log");
        let mut exited = 0;
        for _ in 0..100 {
            match spawn_detached(Path::new("/bin/true"), &[], None, &log) {
                Ok(_) => {}
                Err(ProcessError::ExitedAtStart { .. }) => exited += 1,
                Err(e) => panic!("{e}"),
            }
        }
        eprintln!("{exited} of 100 were gone before they could be read");
    }

    #[test]
    fn exec_failure_is_reported() {
        let t = tempfile::tempdir().unwrap();
        let e = spawn_detached(
            Path::new("/nonexistent/qemu"),
            &[],
            None,
            &t.path().join("log"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("cannot execute /nonexistent/qemu"),
            "{e}"
        );
    }
}
