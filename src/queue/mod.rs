//! The public handle: define tasks, create jobs, start workers, administer.

use futures::StreamExt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::Serialize;

use crate::config::{Retention, SharedConfig};
use crate::duration::IntoDuration;
use crate::error::Error;
use crate::event::{
    Event, EventBus, EventStream, Filter, JobEvent, JobEventKind, QueueEvent, Subscription,
};
use crate::job::{Job, JobId, JobResult, JobStatus};
use crate::middleware::Middleware;
use crate::new_job::NewJob;
use crate::persistence::Persistence;
use crate::reports::ShutdownReport;
use crate::scheduler::actor::{
    AddMiddleware, Admit, Barrier, Cancel, CancelReply, Origin, PendingJob, Placement, Scheduler,
    SchedulerAddr, Setup, Shutdown, StartWorker, WaitReply, WaitResult,
};
use crate::scheduler::clock::Clock;
use crate::store::{CancelOutcome, MemoryStore, Store};
use crate::task::TaskDef;

mod define;
mod groups;
mod keeping;
mod nodes;
pub mod plugin;
mod stores;
mod tag_limits;
mod transactional;
mod typed;

pub use define::{AnyPayload, TaskBuilder};
use keeping::Keeping;
pub use typed::TaskPayload;

pub(crate) struct Inner {
    pub(crate) scheduler: SchedulerAddr,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Clock,
    pub(crate) tasks: DashMap<String, Arc<TaskDef>>,
    pub(crate) bus: Arc<EventBus>,
    /// Create calls whose store write has not finished (for `drained`).
    creating: AtomicUsize,
    /// The task name the last single create used, shared by the next one
    /// of the same task rather than copied.
    last_task: parking_lot::Mutex<Option<Arc<str>>>,
    /// Where workers run their handlers unless told otherwise.
    placement: Placement,
    /// How jobs are kept, chosen once from the store.
    pub(crate) keeping: &'static dyn Keeping,
    /// This process as a node, and whether it leads.
    pub(crate) node: Arc<crate::node::NodeSelf>,
    /// The schedule service's timer (feature `cron`).
    #[cfg(feature = "cron")]
    pub(crate) schedules: crate::schedule::Runtime,
}

/// The queue: a cheap-to-clone handle to one scheduler actor and its store.
///
/// Build it inside a running actix system (an `#[actix_rt::main]` or
/// `#[actix_web::main]` function, an actix-web app, or a test marked
/// `#[actix_rt::test]`).
///
/// # Threads
///
/// The scheduler (its timers, the store writes, leases and heartbeats)
/// runs on an arbiter of its own, and each worker runs its handlers on
/// threads of its own (one by default, more with
/// [`ProcessBuilder::threads`]): a handler that blocks or spins stalls
/// only its own worker thread, never timers, the store or other workers.
/// [`ProcessBuilder::on_scheduler_thread`] opts a worker into running its
/// handlers on the scheduler's thread, for speed, at that risk, and
/// [`QueueBuilder::scheduler_on_current_thread`] keeps the scheduler on
/// the arbiter that builds the queue.
///
/// # Dropping the last handle
///
/// When the last handle of a queue is dropped (every `Queue` clone and
/// every [`JobHandle`]), the queue shuts down as with
/// [`Queue::shutdown`]`(`[`DROP_GRACE`]`)`: it stops starting jobs, lets
/// running ones finish for up to ten seconds (then aborts them, back to
/// ready with the attempt counted), stores what is pending, stops its
/// threads and lets go of the store, so the same SQLite file can be opened
/// again. A handler that holds a clone of the queue keeps it alive: call
/// [`Queue::shutdown`] to stop such a queue.
///
/// On a paused tokio clock (`tokio::time::pause`, a test), the clock
/// belongs to the runtime that paused it: the scheduler then runs on the
/// arbiter that builds the queue, and workers run their handlers on its
/// thread unless given threads explicitly, so the whole queue follows the
/// test's virtual time.
///
/// # Examples
///
/// ```
/// use kessel::{JobContext, JobError, Queue};
///
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = Queue::new();
/// queue.define("greet").tag("hello").action(|job: JobContext<String>| async move {
///     Ok::<_, JobError>(format!("hello, {}", job.payload))
/// })?;
/// queue.process(["hello"]).concurrency(4).start()?;
/// let result = queue.create("greet", "ford").await?.result().await?;
/// assert_eq!(result.value, Some(serde_json::json!("hello, ford")));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Queue {
    pub(crate) inner: Arc<Inner>,
}

/// How long running jobs may go on once the last handle of a queue is
/// dropped, before they are aborted (see [`Queue`]'s "Dropping the last
/// handle").
///
/// # Examples
///
/// ```
/// assert_eq!(kessel::DROP_GRACE, std::time::Duration::from_secs(10));
/// ```
pub const DROP_GRACE: Duration = Duration::from_secs(10);

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: nobody can create, read or wait any
        // more. The scheduler drains as at shutdown, then stops and lets
        // go of the store.
        #[cfg(feature = "cron")]
        self.schedules.stop();
        if self.scheduler.connected() {
            self.scheduler.do_send(Shutdown { grace: DROP_GRACE });
        }
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("store", &self.inner.store)
            .field("tasks", &self.inner.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Default for Queue {
    fn default() -> Self {
        Self::new()
    }
}

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
    group_weights: Vec<(String, f64)>,
    /// Running limits per tag (see `tag_limits.rs`), checked at build.
    tag_max_running: Vec<(String, u32)>,
    /// Rate limits per tag, or why their text cannot be read.
    tag_rate_limits: Vec<(String, Result<crate::RateLimit, crate::RateLimitError>)>,
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

/// What [`Queue::create`] returns: a [`NewJob`] bound to the queue. Set
/// options with the same methods as [`NewJob`], then `.await` it.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// let handle = queue.create("report", 7).delay("1h").priority(3).await?;
/// assert_eq!(queue.job(handle.id()).await?.status, kessel::JobStatus::Scheduled);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a job is only created when this is awaited"]
pub struct CreateJob<'q> {
    queue: &'q Queue,
    job: NewJob,
}

macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        $(#[$doc])*
        pub fn $name(self, $($arg: $ty),*) -> Self {
            CreateJob { queue: self.queue, job: self.job.$name($($arg),*) }
        }
    )*};
}

impl CreateJob<'_> {
    forward! {
        /// See [`NewJob::delay`].
        delay(delay: impl IntoDuration);
        /// See [`NewJob::run_at`].
        run_at(at: DateTime<Utc>);
        /// See [`NewJob::expires_at`].
        expires_at(at: DateTime<Utc>);
        /// See [`NewJob::expires_in`].
        expires_in(within: impl IntoDuration);
        /// See [`NewJob::priority`].
        priority(priority: i64);
        /// See [`NewJob::reference`].
        reference(reference: impl Into<String>);
        /// See [`NewJob::max_attempts`].
        max_attempts(attempts: u32);
        /// See [`NewJob::unique`].
        unique(key: impl Into<String>);
        /// See [`NewJob::unique_by_payload`].
        unique_by_payload();
        /// See [`NewJob::unique_scope`].
        unique_scope(scope: crate::UniqueScope);
        /// See [`NewJob::callback`].
        #[cfg(feature = "webhooks")]
        callback(url: impl Into<String>);
        /// See [`NewJob::callback_secret`].
        #[cfg(feature = "webhooks")]
        callback_secret(name: impl Into<String>);
        /// See [`NewJob::group`].
        group(key: impl Into<String>);
    }
}

impl CreateJob<'_> {
    /// Creates the job as `.await` does, subscribed to its events first:
    /// the stream sees every event of the job from
    /// [`Created`](JobEventKind::Created) (and
    /// [`Scheduled`](JobEventKind::Scheduled) for a delayed job) on, which
    /// [`Queue::events`]`(Filter::Job(id))` after `create` returns may miss.
    /// The stream buffers up to [`DEFAULT_BUFFER`](crate::event::DEFAULT_BUFFER)
    /// events (see [`Queue::events`]).
    ///
    /// # Errors
    ///
    /// As `.await`; the stream is dropped then.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use futures::StreamExt;
    /// use kessel::event::{Event, JobEventKind};
    ///
    /// let queue = kessel::Queue::new();
    /// let (handle, mut events) = queue.create("report", 7).delay("1h").events().await?;
    /// let Some(Event::Job(first)) = events.next().await else { panic!("no event") };
    /// assert_eq!((first.id, first.kind), (handle.id(), JobEventKind::Created));
    /// let Some(Event::Job(second)) = events.next().await else { panic!("no event") };
    /// assert_eq!(second.kind.name(), "scheduled");
    /// # Ok(()) }
    /// ```
    pub async fn events(self) -> Result<(JobHandle, EventStream), Error> {
        // The id is chosen here so the subscription exists before the job.
        let id = JobId::new();
        let stream = self.queue.events(Filter::Job(id));
        let mut handles = self.queue.create_many([self.job.with_id(id)]).await?;
        let handle = handles.pop().expect("one job in, one handle out");
        Ok((handle, stream))
    }
}

impl<'q> IntoFuture for CreateJob<'q> {
    type Output = Result<JobHandle, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + 'q>>;

    fn into_future(self) -> Self::IntoFuture {
        self.queue.create_one(self.job)
    }
}

/// A created job: its id, and a way to wait for its result.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// let handle = queue.create("never defined here", ()).await?;
/// queue.cancel(handle.id()).await?;
/// assert_eq!(handle.result().await?.status, kessel::JobStatus::Cancelled);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JobHandle {
    id: JobId,
    queue: Queue,
    duplicate: bool,
}

impl JobHandle {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Whether the create found a live job holding the new job's unique
    /// key and created nothing: this handle is then the holder's (see
    /// [`NewJob::unique`]). Always false for a job without a unique key.
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let handle = queue.create("report", 1).unique("daily report").await?;
    /// assert!(!handle.is_duplicate());
    /// assert!(queue.create("report", 2).unique("daily report").await?.is_duplicate());
    /// # Ok(()) }
    /// ```
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// Waits until the job is final and returns what became of it.
    ///
    /// # Errors
    ///
    /// See [`Queue::result`].
    pub async fn result(&self) -> Result<JobResult, Error> {
        self.queue.result(self.id).await
    }
}

/// The builder [`Queue::process`] returns.
#[derive(Debug)]
#[must_use = "the worker only starts with .start()"]
pub struct ProcessBuilder<'q> {
    queue: &'q Queue,
    tags: Vec<String>,
    concurrency: usize,
    placement: Option<Placement>,
}

impl ProcessBuilder<'_> {
    /// How many jobs the worker runs at once (default 1: one job after the
    /// other). 0 is read as 1.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Runs the worker's handlers on `threads` threads of its own (default
    /// 1), its concurrency spread over them: each job goes to the thread
    /// with the fewest jobs running. Handlers that use the CPU scale with
    /// threads up to the machine's cores; a handler that blocks one thread
    /// leaves the others running. A handler's future is created and polled
    /// on one thread, so it need not be `Send`. 0 is read as 1.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let worker = queue.process(["images"]).concurrency(8).threads(2).start()?;
    /// assert_eq!(worker.threads(), Some(2));
    /// # Ok(()) }
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.placement = Some(Placement::Threads(threads.max(1)));
        self
    }

    /// Runs the worker's handlers on the scheduler's own thread rather
    /// than on threads of the worker's own. A job's handler is then polled
    /// first by the scheduler itself, and one that finishes at once costs
    /// no hand-off between threads: the fastest way to run many tiny jobs.
    ///
    /// **The risk:** a handler that blocks its thread (a blocking call, a
    /// long CPU loop, a future that never yields) then stalls the whole
    /// queue: timers of other jobs, timeouts, store writes, lease
    /// heartbeats on PostgreSQL (other processes then rescue and rerun the
    /// jobs this one runs) and every other worker on that thread. Use it
    /// only for handlers that always yield quickly.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let worker = queue.process(["counters"]).concurrency(64).on_scheduler_thread().start()?;
    /// assert_eq!(worker.threads(), None);
    /// # Ok(()) }
    /// ```
    pub fn on_scheduler_thread(mut self) -> Self {
        self.placement = Some(Placement::SchedulerThread);
        self
    }

    /// Starts the worker.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty tag list or an empty tag.
    pub fn start(self) -> Result<WorkerHandle, Error> {
        if self.tags.is_empty() {
            return Err(Error::InvalidInput {
                field: "tags",
                reason: "a worker needs at least one tag".into(),
            });
        }
        if self.tags.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::InvalidInput {
                field: "tags",
                reason: "a tag is empty".into(),
            });
        }
        self.queue.inner.scheduler.do_send(StartWorker {
            tags: self.tags.clone(),
            concurrency: self.concurrency,
            placement: self.placement,
        });
        let placement = self.placement.unwrap_or(self.queue.inner.placement);
        Ok(WorkerHandle {
            tags: self.tags,
            concurrency: self.concurrency,
            threads: match placement {
                Placement::SchedulerThread => None,
                Placement::Threads(n) => Some(n),
            },
        })
    }
}

/// A started worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHandle {
    tags: Vec<String>,
    concurrency: usize,
    threads: Option<usize>,
}

impl WorkerHandle {
    /// The tags it serves, in order.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// How many jobs it runs at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// How many threads of its own run its handlers; `None` when they run
    /// on the scheduler's thread (see
    /// [`ProcessBuilder::on_scheduler_thread`]).
    pub fn threads(&self) -> Option<usize> {
        self.threads
    }
}

/// Reads a `QUEUE`-style list: tags separated by commas, blanks dropped.
pub(crate) fn parse_tag_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// How often [`Queue::result`] reads a job another process runs when
/// events are relayed between the processes (its final event wakes the
/// wait before that).
const RELAYED_RESULT_CHECK: Duration = Duration::from_secs(5);

impl Queue {
    /// A queue on the in-memory store.
    ///
    /// # Panics
    ///
    /// Outside a running actix system.
    pub fn new() -> Self {
        Queue::start(
            Arc::new(MemoryStore::new()),
            Retention::default(),
            SharedConfig::default(),
            false,
            crate::group::GroupWeights::default(),
            crate::flow::TagLimits::default(),
        )
    }

    /// A builder to choose the store.
    pub fn builder() -> QueueBuilder {
        QueueBuilder::default()
    }

    fn start(
        store: Arc<dyn Store>,
        retention: Retention,
        shared: SharedConfig,
        on_current_thread: bool,
        groups: crate::group::GroupWeights,
        tag_limits: crate::flow::TagLimits,
    ) -> Self {
        let clock = Clock::new();
        let persistence = Persistence::of(&*store);
        let bus = Arc::new(EventBus::default());
        #[cfg(feature = "postgres")]
        if let Some(pg) = store.postgres() {
            bus.attach_relay(pg.relay());
        }
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // A paused clock is the test runtime's: everything stays on it.
        let paused = crate::scheduler::clock::clock_paused();
        let placement = if paused {
            Placement::SchedulerThread
        } else {
            Placement::Threads(1)
        };
        // The mailbox first: the scheduler keeps the slot its address is
        // read from, to put a successor's there should it stop.
        let (addr, mailbox) = crate::scheduler::actor::mailbox();
        let slot = Arc::new(parking_lot::RwLock::new(addr));
        // On a shared store the node is the store's lease owner.
        let node = Arc::new(crate::node::NodeSelf::new(
            store
                .shared()
                .map_or_else(uuid::Uuid::new_v4, |s| s.owner()),
            clock.now_utc(),
            !persistence.shared(),
        ));
        let new_scheduler = {
            let (store, bus, sent, slot, node) = (
                store.clone(),
                bus.clone(),
                sent.clone(),
                slot.clone(),
                node.clone(),
            );
            move || {
                Scheduler::new(Setup {
                    clock,
                    store,
                    persistence,
                    bus,
                    retention,
                    shared,
                    sent,
                    placement,
                    slot,
                    node: node.clone(),
                    groups: groups.clone(),
                    tag_limits: tag_limits.clone(),
                })
            }
        };
        if paused || on_current_thread {
            actix::Context::with_receiver(mailbox).run(new_scheduler());
        } else {
            let arbiter = Arbiter::new();
            arbiter.spawn_fn(move || {
                actix::Context::with_receiver(mailbox).run(new_scheduler().on_own_thread());
            });
            // The arbiter's thread ends when the scheduler stops it.
            drop(arbiter);
        }
        let scheduler = SchedulerAddr::new(slot, sent);
        Queue {
            inner: Arc::new(Inner {
                scheduler,
                store,
                clock,
                tasks: DashMap::new(),
                bus,
                creating: AtomicUsize::new(0),
                last_task: parking_lot::Mutex::new(None),
                placement,
                keeping: keeping::of(persistence),
                node,
                #[cfg(feature = "cron")]
                schedules: Default::default(),
            }),
        }
    }

    /// The queue's recurring jobs (feature `cron`): upsert, list, pause,
    /// resume, remove and run schedules (see [`crate::schedule`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let nightly = kessel::schedule::Schedule::cron("nightly", "report", "0 3 * * *");
    /// queue.schedules().upsert(nightly).await?;
    /// assert_eq!(queue.schedules().list().await?.len(), 1);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cron")]
    pub fn schedules(&self) -> crate::schedule::Schedules<'_> {
        crate::schedule::Schedules::of(self)
    }

    /// Creates `job` for a schedule's tick, if and only if `advance` (the
    /// compare-and-set of the schedule's next run) applies: both in one
    /// store transaction, through the persistence mode's `keep_tick`.
    /// `None` when the advance did not apply (another pass took the tick).
    #[cfg(feature = "cron")]
    pub(crate) async fn create_tick(
        &self,
        advance: &crate::store::ScheduleAdvance,
        job: NewJob,
    ) -> Result<Option<JobHandle>, Error> {
        let now = self.inner.clock.now_utc();
        let mut name = None;
        let job = job.into_job(now, &mut name, self.inner.keeping.logs_created_line())?;
        if !self.inner.scheduler.connected() {
            return Err(Error::ShutDown);
        }
        let mut advance = advance.clone();
        advance.last_job = Some(job.id);
        self.inner.creating.fetch_add(1, Ordering::SeqCst);
        let kept = self
            .inner
            .keeping
            .keep_tick(&*self.inner.store, &advance, std::slice::from_ref(&job))
            .await;
        let drained = self.inner.creating.fetch_sub(1, Ordering::SeqCst) == 1;
        let applied = match kept {
            Ok(applied) => applied,
            Err(err) => {
                self.inner.bus.queue(QueueEvent::Error {
                    message: format!(
                        "enqueueing a tick of schedule `{}` failed: {err}",
                        advance.name
                    ),
                });
                return Err(err.into());
            }
        };
        if applied && self.inner.bus.is_active() {
            self.emit_created(&job);
        }
        if drained {
            self.inner.bus.queue(QueueEvent::Drained);
        }
        if !applied {
            return Ok(None);
        }
        let handle = JobHandle {
            id: job.id,
            queue: self.clone(),
            duplicate: false,
        };
        self.inner
            .keeping
            .hand_over_new(&self.inner.scheduler, vec![job]);
        Ok(Some(handle))
    }

    /// The store the queue records jobs in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The queue's current time. It follows tokio's clock, so a test on a
    /// paused clock sees it advance with `tokio::time::advance`.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now_utc()
    }

    /// Adds middleware around every job run, outside any task middleware.
    /// The first added is the outermost (see [`crate::middleware`]).
    pub fn middleware(&self, middleware: impl Middleware) {
        self.inner
            .scheduler
            .do_send(AddMiddleware(Arc::new(middleware)));
    }

    /// A stream of the events `filter` selects, buffering up to
    /// [`DEFAULT_BUFFER`](crate::event::DEFAULT_BUFFER) of them.
    ///
    /// On PostgreSQL the stream carries the job events of every process on
    /// the schema (each [`JobEvent::node`](crate::event::JobEvent::node)
    /// says where it happened), in the same order in every process, and
    /// the queue events of the others as [`Event::Remote`]. Events that
    /// can no longer be had (the shared event log was pruned while this
    /// process was away) arrive as [`Event::Lagged`]; see
    /// `docs/events.md`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use futures::StreamExt;
    /// use kessel::event::{Event, Filter};
    ///
    /// let queue = kessel::Queue::new();
    /// let mut events = queue.events(Filter::Task("resize".into()));
    /// let job = queue.create("resize", 640).await?;
    /// let Some(Event::Job(created)) = events.next().await else { panic!() };
    /// assert_eq!((created.id, created.kind.name()), (job.id(), "created"));
    /// # Ok(()) }
    /// ```
    pub fn events(&self, filter: Filter) -> EventStream {
        self.inner.bus.stream(filter, crate::event::DEFAULT_BUFFER)
    }

    /// Like [`Queue::events`] with a chosen buffer size.
    pub fn events_with_buffer(&self, filter: Filter, buffer: usize) -> EventStream {
        self.inner.bus.stream(filter, buffer)
    }

    /// Sends the events `filter` selects to an actix actor. The actor's
    /// mailbox is the buffer: when it is full, events are dropped for it and
    /// counted, and it gets [`Event::Lagged`] once it has room.
    pub fn subscribe(&self, filter: Filter, recipient: Recipient<Event>) -> Subscription {
        self.inner.bus.recipient(filter, recipient)
    }

    /// How many events were dropped because subscribers lagged.
    pub fn events_missed(&self) -> u64 {
        self.inner.bus.missed()
    }

    /// The names of the tasks defined on this queue, sorted.
    pub fn tasks(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.tasks.iter().map(|t| t.key().clone()).collect();
        names.sort();
        names
    }

    /// Creates a job of `task` with `payload`. The task need not be defined
    /// in this process: the job waits until a process that defines it runs
    /// it. Set options on the returned [`CreateJob`], then `.await` it.
    pub fn create(&self, task: impl Into<String>, payload: impl Serialize) -> CreateJob<'_> {
        CreateJob {
            queue: self,
            job: NewJob::new(task, payload),
        }
    }

    /// Creates many jobs in one call and one store write. Either every job
    /// is created or none is.
    ///
    /// # Errors
    ///
    /// The first invalid job's error (nothing is stored then), or
    /// [`Error::Store`] when the store fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::NewJob;
    /// let queue = kessel::Queue::new();
    /// let jobs = (0..100).map(|n| NewJob::new("square", n).priority(n % 3));
    /// let handles = queue.create_many(jobs).await?;
    /// assert_eq!(handles.len(), 100);
    /// # Ok(()) }
    /// ```
    pub async fn create_many(
        &self,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<Vec<JobHandle>, Error> {
        let now = self.inner.clock.now_utc();
        let mut name = None;
        let log_created = self.inner.keeping.logs_created_line();
        let mut jobs: Vec<NewJob> = jobs.into_iter().collect();
        if jobs.iter().any(NewJob::is_unique) {
            if jobs.len() > 1 {
                return Err(Error::InvalidInput {
                    field: "unique",
                    reason: format!(
                        "create_many got {} jobs, some unique: create unique jobs one per call",
                        jobs.len()
                    ),
                });
            }
            let one = jobs.pop().expect("one job");
            // Boxed, as in `create_one`: its state would otherwise make
            // every create's future several times larger.
            return Ok(vec![
                Box::pin(self.create_unique(one, now, log_created)).await?,
            ]);
        }
        let jobs: Vec<Job> = jobs
            .into_iter()
            .map(|j| j.into_job(now, &mut name, log_created))
            .collect::<Result<_, _>>()?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let handles = jobs.iter().map(|j| self.handle_of_new(j.id)).collect();
        self.keep_created(jobs).await?;
        Ok(handles)
    }

    /// Creates one job: what `create(..).await` runs. As `create_many` of
    /// one job, without the vectors around it: the job is built (and
    /// checked) here, and the future only keeps and hands it over, so it
    /// stays small; on a store that keeps pending jobs in the scheduler
    /// alone it finishes on its first poll.
    fn create_one(
        &self,
        job: NewJob,
    ) -> Pin<Box<dyn Future<Output = Result<JobHandle, Error>> + '_>> {
        let now = self.inner.clock.now_utc();
        let log_created = self.inner.keeping.logs_created_line();
        if job.is_unique() {
            return Box::pin(self.create_unique(job, now, log_created));
        }
        // The task's name as the last single create shared it: most
        // producers create jobs of one task in a row.
        let mut name = self.inner.last_task.lock().take();
        let job = job.into_job(now, &mut name, log_created);
        *self.inner.last_task.lock() = name;
        let job = match job {
            Ok(job) => job,
            Err(err) => return Box::pin(std::future::ready(Err(err))),
        };
        let handle = self.handle_of_new(job.id);
        Box::pin(async move {
            self.keep_created(vec![job]).await?;
            Ok(handle)
        })
    }

    /// The handle of a job just made (never a duplicate).
    fn handle_of_new(&self, id: JobId) -> JobHandle {
        JobHandle {
            id,
            queue: self.clone(),
            duplicate: false,
        }
    }

    /// Keeps jobs just made (in the store, where new jobs are stored
    /// before the create is acknowledged), announces them and hands them
    /// to the scheduler.
    async fn keep_created(&self, jobs: Vec<Job>) -> Result<(), Error> {
        if !self.inner.scheduler.connected() {
            return Err(Error::ShutDown);
        }
        self.inner.creating.fetch_add(1, Ordering::SeqCst);
        let stored = if self.inner.keeping.stores_new() {
            self.inner.keeping.keep_new(&*self.inner.store, &jobs).await
        } else {
            Ok(())
        };
        let drained = self.inner.creating.fetch_sub(1, Ordering::SeqCst) == 1;
        if let Err(err) = stored {
            self.inner.bus.queue(QueueEvent::Error {
                message: format!("storing {} new jobs failed: {err}", jobs.len()),
            });
            return Err(err.into());
        }
        if self.inner.bus.is_active() {
            for job in &jobs {
                self.emit_created(job);
            }
        }
        if drained {
            self.inner.bus.queue(QueueEvent::Drained);
        }
        self.inner
            .keeping
            .hand_over_new(&self.inner.scheduler, jobs);
        Ok(())
    }

    /// Creates `job`, a unique job, unless a live job holds its key.
    async fn create_unique(
        &self,
        mut job: NewJob,
        now: DateTime<Utc>,
        log_created: bool,
    ) -> Result<JobHandle, Error> {
        let spec = job.take_unique().expect("a unique job");
        let job = job.into_job(now, &mut None, log_created)?;
        let hold = spec.hold(&job)?;
        if !self.inner.scheduler.connected() {
            return Err(Error::ShutDown);
        }
        let id = job.id;
        if !self.inner.keeping.pending_live_in_scheduler() {
            // The store decides: first give it every change this process
            // has made (a holder that started or ended), so the decision
            // sees what this process has seen.
            self.barrier().await?;
        }
        self.inner.creating.fetch_add(1, Ordering::SeqCst);
        let kept = self
            .inner
            .keeping
            .keep_unique(&*self.inner.store, &self.inner.scheduler, job.clone(), hold)
            .await;
        let drained = self.inner.creating.fetch_sub(1, Ordering::SeqCst) == 1;
        let inserted = match kept {
            Ok(inserted) => inserted,
            Err(err) => {
                if let Error::Store(err) = &err {
                    self.inner.bus.queue(QueueEvent::Error {
                        message: format!("storing a new unique job failed: {err}"),
                    });
                }
                return Err(err);
            }
        };
        if inserted == crate::store::Inserted::New && self.inner.bus.is_active() {
            self.emit_created(&job);
        }
        if drained {
            self.inner.bus.queue(QueueEvent::Drained);
        }
        Ok(JobHandle {
            id: inserted.holder().unwrap_or(id),
            queue: self.clone(),
            duplicate: inserted.holder().is_some(),
        })
    }

    /// Creates `job`, a job built with [`NewJob`]; set more options on the
    /// returned [`CreateJob`], then `.await` it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::NewJob;
    /// let queue = kessel::Queue::new();
    /// let handle = queue.create_job(NewJob::new("report", 7).reference("nov")).priority(2).await?;
    /// assert_eq!(queue.job(handle.id()).await?.priority, 2);
    /// # Ok(()) }
    /// ```
    pub fn create_job(&self, job: NewJob) -> CreateJob<'_> {
        CreateJob { queue: self, job }
    }

    /// The job that holds the unique key `key` now, if any (see
    /// [`NewJob::unique`]). Sees every change this process made before
    /// the call.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; [`Error::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let handle = queue.create("sync", 42).unique("sync:42").await?;
    /// assert_eq!(queue.unique_holder("sync:42").await?, Some(handle.id()));
    /// assert_eq!(queue.unique_holder("sync:43").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn unique_holder(&self, key: &str) -> Result<Option<JobId>, Error> {
        if !self.inner.keeping.pending_live_in_scheduler() {
            self.barrier().await?;
        }
        self.inner
            .keeping
            .unique_holder(&*self.inner.store, &self.inner.scheduler, key, self.now())
            .await
    }

    /// Cancels the job that holds the unique key `key`, without knowing
    /// its id; returns it, or `None` when no job holds the key.
    ///
    /// # Errors
    ///
    /// As [`Queue::cancel`], and [`Queue::unique_holder`]'s.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let handle = queue.create("sync", 42).unique("sync:42").await?;
    /// assert_eq!(queue.cancel_unique("sync:42").await?, Some(handle.id()));
    /// assert_eq!(handle.result().await?.status, kessel::JobStatus::Cancelled);
    /// assert_eq!(queue.cancel_unique("sync:42").await?, None, "the key is free again");
    /// # Ok(()) }
    /// ```
    pub async fn cancel_unique(&self, key: &str) -> Result<Option<JobId>, Error> {
        let Some(id) = self.unique_holder(key).await? else {
            return Ok(None);
        };
        self.cancel(id).await?;
        Ok(Some(id))
    }

    /// Cancels every pending job with the producer reference `reference`;
    /// returns how many. Jobs that end meanwhile are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; [`Error::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.create("remind", 1).reference("order-9").delay("1h").await?;
    /// queue.create("remind", 2).reference("order-9").delay("2h").await?;
    /// assert_eq!(queue.cancel_by_reference("order-9").await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn cancel_by_reference(&self, reference: &str) -> Result<usize, Error> {
        let mut query = crate::store::JobQuery::default()
            .reference(reference)
            .limit(usize::MAX);
        query.statuses = JobStatus::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .collect();
        let mut cancelled = 0;
        for job in self.fetch(query).await? {
            match self.cancel(job.id).await {
                Ok(()) => cancelled += 1,
                Err(Error::WrongState { .. } | Error::UnknownJob(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(cancelled)
    }

    fn emit_created(&self, job: &Job) {
        if self.inner.bus.relay().is_some() {
            // A shared store wrote these events with the job, to the log
            // every process's subscribers read.
            return;
        }
        let tag = self
            .inner
            .tasks
            .get(&*job.task)
            .map(|t| Arc::from(t.tag.as_str()));
        let event = |kind| JobEvent {
            id: job.id,
            task: job.task.clone(),
            tag: tag.clone(),
            attempt: 0,
            at: job.created_at,
            node: None,
            kind,
        };
        self.inner.bus.job(event(JobEventKind::Created));
        if job.status == JobStatus::Scheduled {
            self.inner
                .bus
                .job(event(JobEventKind::Scheduled { run_at: job.run_at }));
        }
    }

    /// Starts a worker serving `tags`: after each job it takes the best
    /// ready job of the first tag in the list that has one. Several workers
    /// run side by side; give each tag to one worker.
    pub fn process<I, S>(&self, tags: I) -> ProcessBuilder<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ProcessBuilder {
            queue: self,
            tags: tags.into_iter().map(Into::into).collect(),
            concurrency: 1,
            placement: None,
        }
    }

    /// Starts a worker for the tags in the `QUEUE` environment variable
    /// (comma separated, e.g. `QUEUE=mail,reports`), with
    /// `concurrency`. Returns `None` when `QUEUE` is unset or empty.
    ///
    /// # Errors
    ///
    /// As [`ProcessBuilder::start`].
    pub fn process_from_env(&self, concurrency: usize) -> Result<Option<WorkerHandle>, Error> {
        let tags = std::env::var("QUEUE")
            .map(|v| parse_tag_list(&v))
            .unwrap_or_default();
        if tags.is_empty() {
            return Ok(None);
        }
        self.process(tags)
            .concurrency(concurrency)
            .start()
            .map(Some)
    }

    /// One job, as kessel has it now.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] when no job has this id; [`Error::Store`].
    pub async fn job(&self, id: JobId) -> Result<Job, Error> {
        if self.inner.keeping.pending_live_in_scheduler() {
            if let Ok(Some(job)) = self.inner.scheduler.send(PendingJob(id)).await {
                return Ok(job);
            }
        }
        // Let the scheduler's last changes reach the store first.
        self.barrier().await?;
        self.stored_job(id).await
    }

    /// The job as the store has it.
    async fn stored_job(&self, id: JobId) -> Result<Job, Error> {
        self.inner
            .store
            .job_get(id)
            .await?
            .ok_or(Error::UnknownJob(id))
    }

    /// Waits until every state change made so far is in the store, so a
    /// read of the store sees them. Fails promptly with the store's error
    /// while the scheduler cannot store them (a full disk, a lost
    /// database): a reader answers from the store or fails, never blocks
    /// until the store recovers. A stopped scheduler has nothing left to
    /// store: the read goes on.
    pub(crate) async fn barrier(&self) -> Result<(), Error> {
        if let Ok(rx) = self.inner.scheduler.send(Barrier).await {
            if let Ok(Err(err)) = rx.await {
                return Err(Error::Store(err));
            }
        }
        Ok(())
    }

    /// Waits until the job is final and returns what became of it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] when no job has this id (including a completed
    /// job already removed by [`Retention`](crate::Retention): await a
    /// result before that many more jobs complete);
    /// [`Error::ShutDown`] when the queue stops before the job is final.
    /// While the queue cannot store its latest changes (a full disk), a
    /// result waits for them to be stored, unlike reads such as
    /// [`Queue::job`], which fail at once with the store's error.
    pub async fn result(&self, id: JobId) -> Result<JobResult, Error> {
        let reply = self
            .inner
            .scheduler
            .send(WaitResult(id))
            .await
            .map_err(|_| Error::ShutDown)?;
        match reply {
            WaitReply::Pending(rx) => match rx.await {
                Ok(result) => return Ok(result),
                // Given back to a shared store: watch the store below.
                Err(_) if self.inner.keeping.others_may_finish() => {}
                Err(_) => return Err(Error::ShutDown),
            },
            WaitReply::Stored(rx) => {
                let _ = rx.await;
            }
        }
        // Another process may run it. With events relayed between the
        // processes, its final event wakes this wait (subscribed before the
        // store is read, so it cannot slip between); the store is read
        // again then, and now and then in case the relay is cut off.
        let mut ends = self
            .inner
            .bus
            .relay()
            .map(|_| self.inner.bus.stream(Filter::Job(id), 16));
        let listening_since = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(5);
        loop {
            let job = self.stored_job(id).await?;
            if let Some(result) = job.outcome() {
                return Ok(result);
            }
            if !self.inner.keeping.others_may_finish() {
                return Err(Error::WrongState {
                    id,
                    status: job.status,
                    operation: "wait for its result here (no process is responsible for it)",
                });
            }
            // Another process runs it: watch the shared store, from its
            // run_at or expiry on (nothing can happen before).
            let now = self.now();
            let wake = job.expires_at.map_or(job.run_at, |x| x.min(job.run_at));
            let until = (wake - now).to_std().unwrap_or_default();
            match ends.as_mut() {
                Some(events) => {
                    let ended = async {
                        while let Some(event) = events.next().await {
                            match event {
                                Event::Job(e) if e.kind.is_final() => return true,
                                Event::Lagged { .. } => return true,
                                _ => {}
                            }
                        }
                        false
                    };
                    // Other processes relay from when they hear of this
                    // listener, within milliseconds; until then, the store.
                    let check = if listening_since.elapsed() < RELAYED_RESULT_CHECK / 2 {
                        wait = (wait * 2).min(Duration::from_millis(500));
                        wait
                    } else {
                        RELAYED_RESULT_CHECK
                    };
                    let timer = tokio::time::sleep(check.max(until));
                    tokio::select! {
                        closed = ended => if !closed { ends = None },
                        () = timer => {}
                    }
                }
                None => {
                    tokio::time::sleep(wait.max(until)).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// Cancels a pending job. A running job's cancellation signal fires and
    /// its handler's future is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`]; [`Error::WrongState`] when it is already final.
    pub async fn cancel(&self, id: JobId) -> Result<(), Error> {
        match self
            .inner
            .scheduler
            .send(Cancel(id))
            .await
            .map_err(|_| Error::ShutDown)?
        {
            CancelReply::Cancelled => Ok(()),
            CancelReply::NotHere => {
                self.barrier().await?;
                if let Some(shared) = self.inner.store.shared() {
                    return match shared.job_cancel(id, self.now()).await? {
                        CancelOutcome::Cancelled | CancelOutcome::Requested => Ok(()),
                        CancelOutcome::Final(status) => Err(Error::WrongState {
                            id,
                            status,
                            operation: "cancel",
                        }),
                        CancelOutcome::Unknown => Err(Error::UnknownJob(id)),
                    };
                }
                let job = self.stored_job(id).await?;
                Err(Error::WrongState {
                    id,
                    status: job.status,
                    operation: "cancel",
                })
            }
        }
    }

    /// Returns a buried job to ready. It gets one more attempt than it has
    /// used (its `max_attempts` is raised if needed).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`]; [`Error::WrongState`] when it is not buried.
    pub async fn kick(&self, id: JobId) -> Result<(), Error> {
        let mut job = self.job(id).await?;
        if job.status != JobStatus::Buried {
            return Err(Error::WrongState {
                id,
                status: job.status,
                operation: "kick",
            });
        }
        let limit = job
            .max_attempts
            .or_else(|| {
                self.inner
                    .tasks
                    .get(&*job.task)
                    .map(|t| t.retry.max_attempts)
            })
            .unwrap_or(1);
        if limit <= job.attempts {
            job.max_attempts = Some(job.attempts + 1);
        }
        job.status = JobStatus::Ready;
        job.run_at = self.now();
        job.finished_at = None;
        job.result = None;
        if !self.inner.scheduler.connected() {
            return Err(Error::ShutDown);
        }
        let line = crate::job::LogLine::new(self.now(), job.attempts, "kicked");
        self.inner
            .keeping
            .kick(&*self.inner.store, &self.inner.scheduler, job, line)
            .await?;
        Ok(())
    }

    /// Stops taking work, lets running jobs finish for up to `grace`, drops
    /// the rest (returning them to ready), records everything, and stops
    /// the scheduler and workers.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] when the queue already stopped.
    pub async fn shutdown(&self, grace: Duration) -> Result<ShutdownReport, Error> {
        #[cfg(feature = "cron")]
        self.inner.schedules.stop();
        let rx = self
            .inner
            .scheduler
            .send(Shutdown { grace })
            .await
            .map_err(|_| Error::ShutDown)?;
        rx.await.map_err(|_| Error::ShutDown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `create(..).await` boxes its future: a large one was a slow
    /// allocation and copies per create (1.6 KB, when `create_many` held
    /// the unique path's state inline).
    #[actix_rt::test]
    async fn a_create_future_stays_small() {
        let queue = Queue::new();
        let one = queue.create_one(NewJob::new("t", 1u64));
        assert!(
            std::mem::size_of_val(&*one) <= 512,
            "{}",
            std::mem::size_of_val(&*one)
        );
        let many = queue.create_many([NewJob::new("t", 1u64)]);
        assert!(
            std::mem::size_of_val(&many) <= 512,
            "{}",
            std::mem::size_of_val(&many)
        );
    }

    #[test]
    fn tag_lists_drop_blanks() {
        assert_eq!(parse_tag_list("a, b,,c ,"), vec!["a", "b", "c"]);
        assert!(parse_tag_list(" , ").is_empty());
    }
}
