//! How a queue is configured: what it keeps ([`Retention`]) and how it
//! shares a store with other processes ([`SharedConfig`]).

use std::time::Duration;

use crate::job::JobStatus;
use crate::store::{JobDelete, Store, StoreError};

/// How long completed jobs are kept, and how many buried jobs (the dead
/// set) at most. Buried jobs are kept until cleaned
/// ([`Queue::clean`](crate::Queue::clean)) unless `buried_max_count` or
/// `buried_max_age` is set; expired and cancelled jobs are kept until
/// cleaned.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let keep_an_hour = kessel::Retention {
///     completed_max_age: Some(Duration::from_secs(3600)),
///     ..Default::default()
/// };
/// assert_eq!(keep_an_hour.completed_max_count, Some(100_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Completed jobs older than this are removed (default 24 h).
    pub completed_max_age: Option<Duration>,
    /// At most this many completed jobs are kept, newest first (default
    /// 100,000). Checked at every `interval`; a store only this process
    /// writes is also pruned as soon as another sixteenth of this many
    /// jobs completed (at most 64 on the in-memory store, 4,096 on SQLite),
    /// so the memory or disk it holds them in stays near the cap. A store
    /// that outlives the process is pruned 1,024 jobs per delete. On a
    /// store shared by many processes, the leader's pruning run goes on
    /// (pausing between passes) while jobs complete faster than the
    /// interval keeps near the cap, and each pass leaves room below the
    /// cap for twice what completes until the next: under a sustained
    /// high rate the table holds a little less than the cap rather than
    /// trailing past it.
    pub completed_max_count: Option<usize>,
    /// At most this many buried jobs are kept (the dead set), newest
    /// first; the oldest beyond it are removed at every `interval`. Each
    /// removal is reported, never silent: a
    /// [`QueueEvent::BuriedDropped`](crate::event::QueueEvent::BuriedDropped)
    /// event and a warning in the log. `None` (the default) keeps every
    /// buried job until it is kicked, redriven or cleaned.
    pub buried_max_count: Option<usize>,
    /// Buried jobs that were buried longer ago than this are removed (and
    /// reported as `buried_max_count`'s are). `None` (the default) keeps
    /// them.
    pub buried_max_age: Option<Duration>,
    /// How often pruning runs (default every minute).
    pub interval: Duration,
}

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Removed {
    /// Completed jobs.
    pub(crate) completed: u64,
    /// Buried jobs, past the dead set's cap or age.
    pub(crate) buried: u64,
    /// How many completed jobs the store held when the pass counted them
    /// (with a count cap only).
    pub(crate) completed_seen: Option<u64>,
    /// A run (of passes) ended for its time while jobs still completed
    /// fast: the next should begin at once, from where this one was (see
    /// `Pruner::run_once`).
    pub(crate) cut_short: Option<Carry>,
}

/// Where a pruning run cut short for its time was, for the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Carry {
    /// The headroom its passes left below the count cap.
    pub(crate) headroom: u64,
    /// How fast jobs completed, a second (0: not known).
    pub(crate) rate: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            completed_max_age: Some(Duration::from_secs(24 * 3600)),
            completed_max_count: Some(100_000),
            buried_max_count: None,
            buried_max_age: None,
            interval: Duration::from_secs(60),
        }
    }
}

/// The most completed jobs one delete removes from a store that outlives
/// the process: each delete is one write among the others (one
/// transaction on SQLite), so pruning a large excess never holds the
/// store up longer than a write of about this many jobs.
pub(crate) const PRUNE_BATCH: usize = 1024;

impl Retention {
    /// Removes from `store` the completed and buried jobs this retention
    /// does not keep at `now`; returns how many of each. On a store that outlives the
    /// process, in deletes of at most [`PRUNE_BATCH`] jobs. `headroom`
    /// lowers the completed jobs' count cap for this pass (never below
    /// 0): room for those that complete until the next pass, so that a
    /// store pruned while jobs complete fast stays within the cap.
    pub(crate) async fn apply(
        &self,
        store: &dyn Store,
        now: chrono::DateTime<chrono::Utc>,
        headroom: u64,
    ) -> Result<Removed, StoreError> {
        let completed_max = self
            .completed_max_count
            .map(|max| (max as u64).saturating_sub(headroom));
        let (completed, completed_seen) = self
            .prune(
                store,
                now,
                JobStatus::Completed,
                self.completed_max_age,
                completed_max,
            )
            .await?;
        let (buried, _) = self
            .prune(
                store,
                now,
                JobStatus::Buried,
                self.buried_max_age,
                self.buried_max_count.map(|m| m as u64),
            )
            .await?;
        Ok(Removed {
            completed,
            buried,
            completed_seen,
            cut_short: None,
        })
    }

    /// Removes the jobs in `status` older than `max_age` and the oldest
    /// beyond `max_count`; returns how many, and how many there were
    /// when counted for `max_count`.
    async fn prune(
        &self,
        store: &dyn Store,
        now: chrono::DateTime<chrono::Utc>,
        status: JobStatus,
        max_age: Option<Duration>,
        max_count: Option<u64>,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let batch = store.capabilities().outlives_process.then_some(PRUNE_BATCH);
        // Deletes up to `wanted` (all when `None`) jobs in `status`, oldest
        // first, finished before `cutoff`; `batch` at a time.
        let delete = |cutoff, wanted: Option<u64>| async move {
            let mut removed = 0u64;
            loop {
                let left = wanted.map(|w| w.saturating_sub(removed));
                if left == Some(0) {
                    return Ok::<u64, StoreError>(removed);
                }
                let limit = match (left, batch) {
                    (Some(l), Some(b)) => Some((l.min(b as u64)) as usize),
                    (Some(l), None) => Some(usize::try_from(l).unwrap_or(usize::MAX)),
                    (None, b) => b,
                };
                let n = store
                    .jobs_delete(&JobDelete {
                        statuses: vec![status],
                        tasks: Vec::new(),
                        finished_before: cutoff,
                        limit,
                    })
                    .await?;
                removed += n;
                if limit.is_none_or(|l| n < l as u64) {
                    return Ok(removed);
                }
            }
        };
        let mut removed = 0;
        if let Some(age) = max_age {
            // Older than the earliest time kessel accepts: nothing is.
            let cutoff = crate::time::before(now, age).unwrap_or(crate::time::EARLIEST);
            removed += delete(Some(cutoff), None).await?;
        }
        let mut seen = None;
        if let Some(max) = max_count {
            let kept = store.jobs_count_status(status).await?;
            seen = Some(kept);
            if kept > max {
                removed += delete(None, Some(kept - max)).await?;
            }
        }
        Ok((removed, seen))
    }

    /// Keeps no completed job: a job that completes is gone, as in Sidekiq
    /// or with BullMQ's `removeOnComplete`. Its events are still sent and
    /// whoever awaits its result still gets it; reading it later finds
    /// nothing. Failed (buried), expired and cancelled jobs are kept.
    ///
    /// On the in-memory store, a completed job then costs no record at
    /// all, not even for a moment.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::builder()
    ///     .retention(kessel::Retention::keep_none())
    ///     .build()
    ///     .await?;
    /// queue.define("ping").action(|_job: kessel::JobContext<()>| async { Ok::<_, kessel::JobError>(()) })?;
    /// let handle = queue.create("ping", ()).await?;
    /// assert_eq!(queue.run_jobs(None, None).await?, 1);
    /// assert!(
    ///     matches!(queue.job(handle.id()).await, Err(kessel::Error::UnknownJob(_))),
    ///     "ran, and kept nowhere"
    /// );
    /// # Ok(()) }
    /// ```
    pub fn keep_none() -> Self {
        Retention {
            completed_max_age: Some(Duration::ZERO),
            completed_max_count: Some(0),
            buried_max_count: None,
            buried_max_age: None,
            interval: Duration::from_secs(60),
        }
    }

    /// Whether completed jobs are kept at all.
    pub(crate) fn keeps_completed(&self) -> bool {
        self.completed_max_count != Some(0) && self.completed_max_age != Some(Duration::ZERO)
    }

    /// Keeps completed jobs until cleaned by hand.
    pub fn keep_all() -> Self {
        Retention {
            completed_max_age: None,
            completed_max_count: None,
            buried_max_count: None,
            buried_max_age: None,
            interval: Duration::from_secs(60),
        }
    }
}

/// How a process uses a shared store.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let config = kessel::SharedConfig { poll: Duration::from_secs(1), ..Default::default() };
/// assert_eq!(config.horizon, Duration::from_secs(2));
/// assert_eq!(config.node_retention, Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedConfig {
    /// Claim jobs due within this much of now, so the local wheel times
    /// them to the millisecond (default 2 s).
    pub horizon: Duration,
    /// Look for work at least this often, in case a notification was lost
    /// (default 5 s).
    pub poll: Duration,
    /// Claim at least this many jobs beyond the workers' free slots
    /// (default 64). While the workers empty what this process holds
    /// before the next claim comes back, the allowance doubles, up to
    /// [`SharedConfig::MAX_PREFETCH`] (or this value, if larger), and it
    /// shrinks back as soon as claimed jobs wait: a process claims about
    /// what it runs during one round trip to the store, no more.
    pub prefetch: usize,
    /// How long a node whose heartbeat lapsed (a process that was killed
    /// or lost the store) is still listed, as gone, before the leader
    /// removes it (default 1 h). See [`Queue::nodes`](crate::Queue::nodes).
    pub node_retention: Duration,
}

impl SharedConfig {
    /// The most the prefetch allowance grows to by itself.
    pub const MAX_PREFETCH: usize = 4096;
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig {
            horizon: Duration::from_secs(2),
            poll: Duration::from_secs(5),
            prefetch: 64,
            node_retention: Duration::from_secs(3600),
        }
    }
}
