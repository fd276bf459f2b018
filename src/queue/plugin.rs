//! Plugins: set up a queue in one call.
//!
//! A plugin is given the queue to set up: define tasks, add middleware,
//! start workers. [`Environment`] and [`Tracing`] come with kessel; any
//! `Fn(&Queue) -> Result<(), Error>` is a plugin too.

use crate::error::Error;
use crate::middleware::TracingSpans;
use crate::queue::Queue;

/// Sets up a queue when installed with [`Queue::plugin`](crate::Queue::plugin).
///
/// Any `Fn(&Queue) -> Result<(), Error>` is a plugin.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// queue.plugin(|q: &kessel::Queue| {
///     q.define("ping").action(|_: kessel::JobContext<()>| async { Ok::<_, kessel::JobError>("pong") })?;
///     Ok(())
/// })?;
/// assert_eq!(queue.tasks(), ["ping"]);
/// # Ok(()) }
/// ```
pub trait Plugin {
    /// Installs the plugin on `queue`.
    ///
    /// # Errors
    ///
    /// Whatever setting up the queue returned.
    fn install(&self, queue: &Queue) -> Result<(), Error>;
}

impl<F: Fn(&Queue) -> Result<(), Error>> Plugin for F {
    fn install(&self, queue: &Queue) -> Result<(), Error> {
        self(queue)
    }
}

/// Starts a worker for the tags in the `QUEUE` environment variable
/// (`QUEUE=messaging,reports`), or none when it is unset. Install it after
/// defining tasks; the same binary without `QUEUE` can serve as a producer
/// or an operator tool.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// queue.plugin(kessel::plugin::Environment { concurrency: 4 })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Environment {
    /// The worker's concurrency.
    pub concurrency: usize,
}

impl Plugin for Environment {
    fn install(&self, queue: &Queue) -> Result<(), Error> {
        queue.process_from_env(self.concurrency).map(|_| ())
    }
}

/// Opens a `tracing` span per job run ([`TracingSpans`](crate::middleware::TracingSpans)) on every task.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// queue.plugin(kessel::plugin::Tracing)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Tracing;

impl Plugin for Tracing {
    fn install(&self, queue: &Queue) -> Result<(), Error> {
        queue.middleware(TracingSpans);
        Ok(())
    }
}

impl Queue {
    /// Installs a plugin: it is given this queue to set up.
    ///
    /// # Errors
    ///
    /// Whatever the plugin returns.
    pub fn plugin(&self, plugin: impl Plugin) -> Result<(), Error> {
        plugin.install(self)
    }
}
