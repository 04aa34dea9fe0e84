//! Writing results to stdout without dying on a closed pipe.
//!
//! `teamvirt ... | head` closes stdout early. Rust ignores SIGPIPE, so
//! `println!` would panic on the next write. Restoring SIGPIPE instead would
//! let a QMP peer that goes away kill teamvirt mid-command (a migration, a
//! start) rather than give it an EPIPE error to handle. So output goes
//! through [`outln!`]/[`out!`]: a closed stdout silently drops the rest of
//! the output and the command carries on to its normal end and exit code;
//! any other write error makes the command exit non-zero.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout has failed: later writes are skipped.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// Set when it failed for another reason than a closed pipe (a full disk):
/// the command then exits non-zero, its output being incomplete.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Write `args` to stdout; on failure remember it and say so once on
/// stderr (a closed pipe is expected and not reported).
pub fn write(args: fmt::Arguments) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        STDOUT_GONE.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            STDOUT_FAILED.store(true, Ordering::Relaxed);
            eprintln!("error: cannot write to stdout: {e}");
        }
    }
}

/// Whether some output was lost for another reason than a closed pipe.
pub fn failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// `print!` that survives a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}

/// `println!` that survives a closed stdout.
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};
