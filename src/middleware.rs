//! Middleware wraps every run of a job (plugins, which set up a queue at
//! start, are in [`crate::plugin`]).
//!
//! # Order
//!
//! Queue middleware ([`Queue::middleware`](crate::Queue::middleware)) wraps
//! task middleware ([`TaskBuilder::middleware`](crate::TaskBuilder::middleware)),
//! which wraps the handler. Within each list, the first added is the
//! outermost: its code before `next.run().await` runs first and its code
//! after runs last. A middleware that returns without calling `next.run()`
//! short-circuits: the handler never runs and the middleware's result is the
//! attempt's outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tracing::Instrument;

use crate::context::JobMeta;
use crate::error::JobError;

/// What a handler (or a middleware) produces: the job's value, or why it failed.
pub type Output = Result<Option<serde_json::Value>, JobError>;

/// A boxed, possibly non-`Send`, handler future.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Output>>>;

/// The rest of the chain: the inner middleware and then the handler.
pub struct Next {
    pub(crate) fut: HandlerFuture,
}

impl std::fmt::Debug for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Next")
    }
}

impl Next {
    /// Runs the rest of the chain.
    pub async fn run(self) -> Output {
        self.fut.await
    }
}

/// Wraps every run of a job. See the [module documentation](self) for the
/// order middleware runs in.
///
/// # Examples
///
/// ```
/// use kessel::middleware::{HandlerFuture, Middleware, Next};
/// use kessel::{JobError, JobMeta};
///
/// /// Refuses jobs while maintenance is on.
/// struct Maintenance(std::sync::Arc<std::sync::atomic::AtomicBool>);
///
/// impl Middleware for Maintenance {
///     fn handle(&self, job: JobMeta, next: Next) -> HandlerFuture {
///         let on = self.0.load(std::sync::atomic::Ordering::SeqCst);
///         Box::pin(async move {
///             if on {
///                 return Err(JobError::transient(format!("{} deferred: maintenance", job.task())));
///             }
///             next.run().await
///         })
///     }
/// }
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// Runs around `next`; call `next.run().await` to run the handler.
    fn handle(&self, job: JobMeta, next: Next) -> HandlerFuture;
}

impl std::fmt::Debug for dyn Middleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Middleware")
    }
}

/// A middleware from a closure.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() {
/// let queue = kessel::Queue::new();
/// queue.middleware(kessel::middleware::from_fn(|job, next| async move {
///     job.log("before", ());
///     let out = next.run().await;
///     job.log("after", ());
///     out
/// }));
/// # }
/// ```
pub fn from_fn<F, Fut>(f: F) -> FnMiddleware<F>
where
    F: Fn(JobMeta, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Output> + 'static,
{
    FnMiddleware(f)
}

/// The middleware [`from_fn`] builds.
pub struct FnMiddleware<F>(F);

impl<F> std::fmt::Debug for FnMiddleware<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnMiddleware")
    }
}

impl<F, Fut> Middleware for FnMiddleware<F>
where
    F: Fn(JobMeta, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Output> + 'static,
{
    fn handle(&self, job: JobMeta, next: Next) -> HandlerFuture {
        Box::pin((self.0)(job, next))
    }
}

/// Wraps a handler future in a middleware chain, outermost first.
pub(crate) fn wrap(
    chain: &[Arc<dyn Middleware>],
    meta: &JobMeta,
    fut: HandlerFuture,
) -> HandlerFuture {
    chain.iter().rev().fold(fut, |inner, mw| {
        mw.handle(meta.clone(), Next { fut: inner })
    })
}

/// Opens a `tracing` span, `kessel.job`, around every run, with the job's
/// id, task, tag, attempt and node (the process's queue, as
/// [`Queue::nodes`](crate::Queue::nodes) lists it). Installed by the
/// [`Tracing`](crate::plugin::Tracing) plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSpans;

impl Middleware for TracingSpans {
    fn handle(&self, job: JobMeta, next: Next) -> HandlerFuture {
        let span = tracing::info_span!(
            "kessel.job",
            job.id = %job.id(),
            job.task = job.task(),
            job.tag = job.tag(),
            job.attempt = job.attempt(),
            job.node = job.node().map(tracing::field::display)
        );
        Box::pin(next.run().instrument(span))
    }
}
