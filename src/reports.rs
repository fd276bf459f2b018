//! What a queue reports: how a shutdown went ([`ShutdownReport`]), which
//! worker threads a handler blocks ([`StuckThread`]) and which tags have
//! jobs but no worker ([`UnservedTag`]).

use chrono::{DateTime, Utc};

use crate::job::JobId;

/// What [`Queue::shutdown`](crate::Queue::shutdown) reports.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// let report = queue.shutdown(std::time::Duration::from_secs(5)).await?;
/// assert!(report.aborted.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs that finished while the queue drained.
    pub finished_while_draining: usize,
    /// Jobs still running at the deadline: their futures were dropped and
    /// they were returned to ready with the attempt counted, so a durable
    /// store runs them again on the next start.
    pub aborted: Vec<JobId>,
    /// Jobs that never started (scheduled, ready, retrying), left in the store.
    pub left_pending: usize,
}

/// A worker thread a handler blocks (see
/// [`Stats::stuck_threads`](crate::Stats::stuck_threads)).
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// for stuck in queue.stats().await?.stuck_threads {
///     eprintln!("worker {:?}, thread {}: stuck since {}", stuck.tags, stuck.thread, stuck.since);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckThread {
    /// The tags of the worker the thread belongs to.
    pub tags: Vec<String>,
    /// Which of the worker's threads, from 0.
    pub thread: usize,
    /// When the scheduler last heard from it.
    pub since: DateTime<Utc>,
    /// The jobs it was running then.
    pub running: Vec<JobId>,
}

/// A tag with jobs ready and no worker to run them (see
/// [`Stats::unserved_tags`](crate::Stats::unserved_tags)).
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// for t in queue.stats().await?.unserved_tags {
///     eprintln!("{} jobs wait for tag {:?}, which no worker serves", t.waiting, t.tag);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnservedTag {
    /// The tag.
    pub tag: String,
    /// How many jobs are ready for it.
    pub waiting: u64,
}
