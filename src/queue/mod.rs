//! The public handle: define tasks, create jobs, start workers, administer.
//!
//! This file holds the handle itself and its life: [`Queue`], how it
//! starts and shuts down, and what stops it when the last handle goes.
//! The rest is one file per concern:
//!
//! - `builder.rs`: [`QueueBuilder`], a queue on a chosen store;
//! - `create.rs`: creating jobs ([`CreateJob`], [`JobHandle`]);
//! - `worker.rs`: starting workers ([`ProcessBuilder`], [`WorkerHandle`]);
//! - `read.rs`: reading one job, waiting for its result, finding a
//!   unique key's holder;
//! - `control.rs`: cancelling and kicking jobs;
//! - `events.rs`: subscribing to events;
//! - `define.rs`, `typed.rs`: defining tasks;
//! - `keeping.rs`: how jobs are kept, per persistence mode;
//! - `groups.rs`, `tag_limits.rs`: the builder's flow settings;
//! - `nodes.rs`, `stores.rs`, `transactional.rs`, `plugin.rs`: nodes,
//!   stores, creates inside a caller's transaction, plugins.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::config::{Retention, SharedConfig};
use crate::error::Error;
use crate::event::EventBus;
use crate::middleware::Middleware;
use crate::persistence::Persistence;
use crate::reports::ShutdownReport;
use crate::scheduler::actor::{
    AddMiddleware, Placement, Scheduler, SchedulerAddr, Setup, Shutdown,
};
use crate::scheduler::clock::Clock;
use crate::store::{MemoryStore, Store};
use crate::task::TaskDef;

mod builder;
mod control;
mod create;
mod define;
mod events;
mod groups;
mod keeping;
mod nodes;
pub mod plugin;
mod read;
mod stores;
mod tag_limits;
mod transactional;
mod typed;
mod worker;

pub use builder::QueueBuilder;
pub use create::{CreateJob, JobHandle};
pub use define::{AnyPayload, TaskBuilder};
use keeping::Keeping;
pub use typed::TaskPayload;
pub use worker::{ProcessBuilder, WorkerHandle};

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
        let new_jobs = Arc::new(crate::scheduler::actor::NewJobs::default());
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
            let (store, bus, sent, slot, node, new_jobs) = (
                store.clone(),
                bus.clone(),
                sent.clone(),
                slot.clone(),
                node.clone(),
                new_jobs.clone(),
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
                    new_jobs: new_jobs.clone(),
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
        let scheduler = SchedulerAddr::new(slot, sent, new_jobs);
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

    /// The names of the tasks defined on this queue, sorted.
    pub fn tasks(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.tasks.iter().map(|t| t.key().clone()).collect();
        names.sort();
        names
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
