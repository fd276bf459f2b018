//! [`QueueBuilder`]: a queue on a chosen store, with its retention,
//! shared-store settings, schedules and where the scheduler runs (the
//! flow settings are in `groups.rs` and `tag_limits.rs`).

use std::sync::Arc;
#[cfg(feature = "cron")]
use std::time::Duration;

use super::{keeping, Queue};
use crate::config::{Retention, SharedConfig};
use crate::error::Error;
use crate::persistence::Persistence;
use crate::scheduler::actor::{Admit, Origin};
use crate::store::{MemoryStore, Store};

/// Builds a [`Queue`] on a chosen store.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use std::sync::Arc;
/// let queue = kessel::Queue::builder()
///     .store(Arc::new(kessel::store::MemoryStore::new()))
///     .build()
///     .await?;
/// # let _ = queue;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
#[must_use = "call .build().await to get the queue"]
pub struct QueueBuilder {
    store: Option<Arc<dyn Store>>,
    retention: Option<Retention>,
    shared: Option<SharedConfig>,
    scheduler_on_current_thread: bool,
    #[cfg(feature = "cron")]
    schedules: Vec<crate::schedule::Schedule>,
    #[cfg(feature = "cron")]
    manual_schedules: bool,
    /// Fair groups' weights (see `groups.rs`), checked at build.
    pub(super) group_weights: Vec<(String, f64)>,
    /// Running limits per tag (see `tag_limits.rs`), checked at build.
    pub(super) tag_max_running: Vec<(String, u32)>,
    /// Rate limits per tag, or why their text cannot be read.
    pub(super) tag_rate_limits: Vec<(String, Result<crate::RateLimit, crate::RateLimitError>)>,
}

impl QueueBuilder {
    /// Upserts `schedule` when the queue is built (feature `cron`), and
    /// starts the queue's schedule service: see
    /// [`Schedules::upsert`](crate::schedule::Schedules::upsert). Call it
    /// once per schedule.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::schedule::Schedule;
    /// let queue = kessel::Queue::builder()
    ///     .schedule(Schedule::cron("nightly-report", "report", "0 3 * * *").time_zone("Europe/Berlin"))
    ///     .schedule(Schedule::every("rollup", "roll up metrics", "5m"))
    ///     .build()
    ///     .await?;
    /// assert_eq!(queue.schedules().list().await?.len(), 2);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cron")]
    pub fn schedule(mut self, schedule: crate::schedule::Schedule) -> Self {
        self.schedules.push(schedule);
        self
    }

    /// Runs the queue's schedule passes only when called (feature
    /// `cron`): no timer starts with an upsert, nor at build on a shared
    /// store (where the leader's timer runs the passes, so a process built
    /// this way runs none of its own even when it leads), and ticks are
    /// enqueued by
    /// [`ScheduleService::run_once`](crate::schedule::ScheduleService::run_once)
    /// at the times the caller passes (tests of a day or a daylight-saving
    /// change, tools), or once
    /// [`Schedules::start`](crate::schedule::Schedules::start) is called.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use chrono::TimeZone;
    /// use kessel::schedule::Schedule;
    /// let queue = kessel::Queue::builder().manual_schedules().build().await?;
    /// let from = chrono::Utc.with_ymd_and_hms(2026, 3, 28, 0, 0, 0).unwrap();
    /// queue.schedules().upsert(Schedule::cron("hourly", "report", "@hourly").start_at(from)).await?;
    /// let pass = queue.schedules().service().run_once(from).await?;
    /// assert_eq!(pass.enqueued.len(), 1);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cron")]
    pub fn manual_schedules(mut self) -> Self {
        self.manual_schedules = true;
        self
    }

    /// Uses `store` instead of a fresh [`MemoryStore`].
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// How long completed jobs are kept (see [`Retention`]).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = Some(retention);
        self
    }

    /// How this process claims work from a shared store (see
    /// [`SharedConfig`]); ignored on single-process stores.
    pub fn shared(mut self, config: SharedConfig) -> Self {
        self.shared = Some(config);
        self
    }

    /// Runs the scheduler on the arbiter that builds the queue rather than
    /// on an arbiter of its own. Creating jobs, reading results and
    /// receiving events from that same thread then cost no hop between
    /// threads, and with [`ProcessBuilder::on_scheduler_thread`] workers
    /// too, the whole queue runs on one thread, as fast as kessel goes for
    /// tiny jobs.
    ///
    /// [`ProcessBuilder::on_scheduler_thread`]: super::ProcessBuilder::on_scheduler_thread
    ///
    /// **The risk:** anything else on that thread that blocks (your own
    /// code, or handlers placed there) holds up the scheduler: timers,
    /// timeouts, store writes and lease heartbeats. Handlers on worker
    /// threads of their own (the default) still cannot.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::builder().scheduler_on_current_thread().build().await?;
    /// queue.process(["counters"]).on_scheduler_thread().start()?;
    /// # Ok(()) }
    /// ```
    pub fn scheduler_on_current_thread(mut self) -> Self {
        self.scheduler_on_current_thread = true;
        self
    }

    /// Starts the scheduler and hands it every pending job in the store
    /// (on a shared store, the scheduler claims jobs instead).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the pending jobs cannot be read; with
    /// schedules (feature `cron`), a schedule's error as
    /// [`Schedules::upsert`](crate::schedule::Schedules::upsert) returns
    /// it (the queue is shut down then).
    ///
    /// # Panics
    ///
    /// Outside a running actix system.
    pub async fn build(self) -> Result<Queue, Error> {
        let groups = self.checked_group_weights()?;
        let tag_limits = self.checked_tag_limits()?;
        #[cfg(feature = "cron")]
        for schedule in &self.schedules {
            schedule.validate()?;
        }
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        // Before any job: a queue on a store that keeps suspensions starts
        // suspended as the store says.
        let suspensions = match store.suspensions_list().await {
            Ok(list) => list,
            Err(crate::store::StoreError::Unsupported(_)) => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        let pending = keeping::of(Persistence::of(&*store))
            .pending_at_start(&*store)
            .await?;
        let queue = Queue::start(
            store,
            self.retention.unwrap_or_default(),
            self.shared.unwrap_or_default(),
            self.scheduler_on_current_thread,
            groups,
            tag_limits,
        );
        #[cfg(feature = "cron")]
        if self.manual_schedules {
            queue.inner.schedules.set_manual();
        } else {
            queue.inner.schedules.start_if_shared(&queue);
        }
        if !suspensions.is_empty() {
            queue
                .inner
                .scheduler
                .do_send(crate::scheduler::actor::SetSuspensions(suspensions));
        }
        if !pending.is_empty() {
            queue.inner.scheduler.do_send(Admit {
                jobs: pending,
                origin: Origin::Loaded,
            });
        }
        #[cfg(feature = "cron")]
        for schedule in self.schedules {
            if let Err(err) = queue.schedules().upsert(schedule).await {
                let _ = queue.shutdown(Duration::ZERO).await;
                return Err(err);
            }
        }
        Ok(queue)
    }
}
