//! Small helpers used across the runtime: a fresh UUID, and running one
//! async operation from synchronous code.

use teamvirt_conf::model::Uuid;

use crate::error::RuntimeError;

/// A random (version 4) UUID, for definitions that lack one.
pub fn random_uuid() -> Result<Uuid, RuntimeError> {
    Ok(Uuid(uuid::Uuid::new_v4().into_bytes()))
}

/// Run an async QMP conversation from the synchronous API.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, RuntimeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::Internal(format!("tokio runtime: {e}")))?;
    Ok(rt.block_on(f))
}
