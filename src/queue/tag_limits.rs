//! The queue's limits per tag (see [`crate::flow::TagLimits`]).

use super::QueueBuilder;
use crate::error::Error;
use crate::flow::{IntoRateLimit, TagLimits};

impl QueueBuilder {
    /// Lets at most `n` jobs of tag `tag` run at once, whatever their
    /// task: "the `email` tag runs at most 10 jobs at once across its
    /// tasks". A job over the limit waits, ready, and starts when a run of
    /// the tag ends; it is never failed for it, and the best waiting job
    /// of the tag (priority, due time, creation; groups by their turns)
    /// goes first. Workers serving other tags as well take those tags'
    /// jobs meanwhile. Combines with the tasks' own limits: a job starts
    /// when every limit it is under allows it.
    ///
    /// On memory and SQLite, for the queue; on PostgreSQL, **across every
    /// process** that sets the same limit, whichever of the tag's tasks
    /// each defines (a job counts against the tag of its task as the
    /// process running it defines it), held as places: each
    /// process runs at most the places its claims gave it (as many as its
    /// workers serving the tag can run, of those the others leave), and
    /// the tag's jobs it leased ahead wait in it for a place. A later call
    /// for the same tag wins.
    ///
    /// # Errors
    ///
    /// [`build`](QueueBuilder::build) fails with [`Error::InvalidInput`]
    /// naming `tag_max_running` for `0`, or `tag` for an empty or blank
    /// tag.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::builder().tag_max_running("email", 10).build().await?;
    /// for task in ["welcome email", "digest email"] {
    ///     queue.define(task).tag("email")
    ///         .action(|_: JobContext<u32>| async { Ok::<_, JobError>(()) })?;
    /// }
    /// queue.process(["email"]).concurrency(32).start()?;
    ///
    /// let err = kessel::Queue::builder().tag_max_running("email", 0).build().await.unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "tag_max_running", .. }));
    /// # Ok(()) }
    /// ```
    pub fn tag_max_running(mut self, tag: impl Into<String>, n: u32) -> Self {
        self.tag_max_running.push((tag.into(), n));
        self
    }

    /// Limits how often the jobs of tag `tag` may start, all its tasks
    /// together: `"100/m"`, `"10/s"`, or a [`RateLimit`](crate::RateLimit)
    /// with a burst, as [`TaskBuilder::rate_limit`](crate::TaskBuilder::rate_limit)
    /// takes. A job over the limit waits, ready, and starts when the limit
    /// allows, the tag's best waiting job first; it is never failed for
    /// it. Workers serving other tags as well take those tags' jobs
    /// meanwhile. Combines with [`tag_max_running`](Self::tag_max_running)
    /// and the tasks' own limits: a job starts when all allow.
    ///
    /// On PostgreSQL it holds **across every process** that sets the same
    /// limit, whichever of the tag's tasks each defines: the claim spends
    /// the tag's starts in the database, kept by the tag's name. A later call for the same tag wins.
    ///
    /// # Errors
    ///
    /// [`build`](QueueBuilder::build) fails with [`Error::InvalidInput`]
    /// naming `tag_rate_limit` for unreadable text or a zero count, period
    /// or burst, or `tag` for an empty or blank tag.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::RateLimit;
    /// let queue = kessel::Queue::builder()
    ///     .tag_max_running("email", 10)
    ///     .tag_rate_limit("email", "100/m")
    ///     .tag_rate_limit("sms", RateLimit::per_second(5).burst(10))
    ///     .build()
    ///     .await?;
    /// # let _ = queue;
    ///
    /// let err = kessel::Queue::builder().tag_rate_limit("email", "lots").build().await.unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "tag_rate_limit", .. }));
    /// # Ok(()) }
    /// ```
    pub fn tag_rate_limit(mut self, tag: impl Into<String>, limit: impl IntoRateLimit) -> Self {
        self.tag_rate_limits
            .push((tag.into(), limit.into_rate_limit()));
        self
    }

    /// The limits per tag, checked.
    pub(super) fn checked_tag_limits(&self) -> Result<TagLimits, Error> {
        TagLimits::checked(&self.tag_max_running, &self.tag_rate_limits)
    }
}
