//! The PostgreSQL store's own runtime: its connections' I/O is driven there,
//! whatever executor the caller runs on.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};

use crate::store::StoreError;

/// A small multi-threaded runtime owned by one store.
#[derive(Debug)]
pub(super) struct Exec {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl Exec {
    pub(super) fn new() -> Result<Self, StoreError> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kessel-postgres")
            .enable_all()
            .build()
            .map_err(StoreError::unavailable)?;
        let handle = runtime.handle().clone();
        Ok(Exec {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Runs `fut` on the store's runtime and waits for it. From inside a
    /// tokio runtime the wait is a `spawn_blocking` task, which keeps the
    /// caller's executor free and stops a paused test clock from jumping
    /// ahead while the query is on the wire; from a plain thread it blocks.
    ///
    /// A panic in `fut` is resumed in the caller.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> T {
        let handle = self.handle.clone();
        if Handle::try_current().is_err() {
            return handle.block_on(fut);
        }
        match tokio::task::spawn_blocking(move || handle.block_on(fut)).await {
            Ok(value) => value,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }

    /// Starts a task on the store's runtime.
    pub(super) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(fut);
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        // Dropping a runtime may block; from async code it must not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
