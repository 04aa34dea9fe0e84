//! The process's one tokio runtime. The binary's `main` builds it, drives
//! the libraries' async API (lifecycle verbs, migration, the caps probe)
//! on it, and [`install`](crate::asyncrt::install)s its handle before
//! anything else for what still runs from synchronous code (netlink); no
//! library builds a runtime of its own.
//!
//! Tests and benchmarks, which have no such `main`, get one built on first
//! use with the `test-runtime` feature (enabled by this crate's
//! dev-dependencies); a production binary that forgot to install one gets
//! an error, not a second runtime.

use std::sync::OnceLock;

use tokio::runtime::Handle;

static HANDLE: OnceLock<Handle> = OnceLock::new();

/// No runtime was installed (see the module docs).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("internal error: no tokio runtime installed (the program's main must call teamvirt_host::asyncrt::install)")]
pub struct NoRuntime;

/// Install the runtime `main` built. One per process: false (and nothing
/// changes) when one was installed already.
pub fn install(handle: Handle) -> bool {
    HANDLE.set(handle).is_ok()
}

/// The installed runtime's handle.
pub fn handle() -> Result<Handle, NoRuntime> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    fallback()
}

#[cfg(feature = "test-runtime")]
fn fallback() -> Result<Handle, NoRuntime> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("test runtime: {e}"))
    });
    Ok(HANDLE.get_or_init(|| rt.handle().clone()).clone())
}

/// Drive an async API from a test or benchmark, which has no `main` of
/// its own: on the runtime built on first use. Only with `test-runtime`:
/// no library blocks on the runtime.
#[cfg(feature = "test-runtime")]
pub fn block_on_in_test<F: std::future::Future>(f: F) -> F::Output {
    fallback().unwrap_or_else(|e| panic!("{e}")).block_on(f)
}

#[cfg(not(feature = "test-runtime"))]
fn fallback() -> Result<Handle, NoRuntime> {
    Err(NoRuntime)
}

#[cfg(test)]
mod tests {
    /// Work blocked on from two threads runs on the one runtime: both see
    /// the same runtime id.
    #[test]
    fn one_runtime_for_every_caller() {
        let id = || {
            super::handle()
                .unwrap()
                .block_on(async { tokio::runtime::Handle::current().id() })
        };
        let here = id();
        let there = std::thread::spawn(id).join().unwrap();
        assert_eq!(here, there);
    }
}
