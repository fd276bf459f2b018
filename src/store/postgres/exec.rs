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

    /// Runs `fut` on the store's runtime and waits for it.
    ///
    /// From inside a tokio runtime whose clock runs, `fut` is a task of
    /// the store's runtime, awaited: its I/O is polled where it is driven.
    /// Under a paused test clock the wait is a `spawn_blocking` task
    /// instead, which keeps that clock from jumping ahead while the query
    /// is on the wire (it does not advance while blocking work is
    /// outstanding). From a plain thread it blocks.
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
        let done = if clock_paused() {
            tokio::task::spawn_blocking(move || handle.block_on(fut)).await
        } else {
            handle.spawn(fut).await
        };
        match done {
            Ok(value) => value,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }

    /// Starts a task on the store's runtime.
    pub(super) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(fut);
    }
}

use crate::scheduler::clock::clock_paused;

impl Drop for Exec {
    fn drop(&mut self) {
        // Dropping a runtime may block; from async code it must not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_running_clock_is_not_paused() {
        assert!(!clock_paused());
    }

    #[tokio::test]
    async fn a_paused_clock_is_seen_paused_until_resumed() {
        tokio::time::pause();
        assert!(clock_paused());
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(clock_paused());
        tokio::time::resume();
        assert!(!clock_paused());
    }

    #[tokio::test]
    async fn a_call_returns_its_value_and_resumes_its_panic() {
        let exec = Exec::new().expect("runtime");
        assert_eq!(exec.run(async { 7 }).await, 7);
        let caught = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            exec.run(async { panic!("in the store") }),
        ))
        .await;
        assert!(caught.is_err(), "the panic comes back to the caller");
    }
}
