//! The scheduler actor: owns the schedule of every pending job this process
//! is responsible for, hands ready jobs to workers, applies outcomes, emits
//! events, and records every state change in the store.
//!
//! - [`mod@self`]: the state and the job state machine;
//! - `messages`: the messages the queue handle and workers send, one
//!   handler each;
//! - `suspensions`: suspend/resume, and reading a store's suspensions;
//! - `admin`: delete-matching, batch runs, middleware and
//!   the pruner's loop;
//! - `shared`: a shared store's claims, leases, heartbeats, expiry watches
//!   and the rescuer's loop;
//! - `threads`: where workers run their handlers, and the watch over
//!   worker threads;
//! - `held`, `index`: how a pending job is held, and found by id;
//! - `addr`: the scheduler's address as the queue holds it.
//!
//! Its timers are [`crate::scheduler::timers`]; its background services
//! are [`crate::scheduler::services`].

mod addr;
mod admin;
#[cfg(feature = "webhooks")]
mod callbacks;
mod counts;
mod dead_letters;
mod flow;
mod groups;
mod held;
mod index;
mod journal;
mod lifecycle;
mod messages;
mod nodes;
mod observe;
mod restart;
mod routes;
mod shared;
mod suspensions;
mod table;
mod threads;
mod unique;
mod unserved;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

pub(crate) use addr::SchedulerAddr;
pub(crate) use admin::{AddMiddleware, DeleteMatching, RunJobs};
pub(crate) use messages::{
    Admit, Barrier, Cancel, CancelReply, DefineTask, Origin, PendingCounts, PendingJob,
    PendingJobs, Shutdown, StartWorker, StoredWrites, WaitReply, WaitResult,
};
pub(crate) use nodes::NodeSnapshot;
pub(crate) use observe::CountCreated;
#[cfg(feature = "metrics")]
pub(crate) use observe::ObserveJobs;
pub(crate) use restart::{mailbox, AddrSlot};
pub(crate) use shared::{ClaimNow, WatchExpiry};
pub(crate) use suspensions::{SetSuspensions, Suspend, SuspensionChange, SuspensionsNow};
pub(crate) use threads::{Placement, StuckThreads};
pub(crate) use unique::{AdmitUnique, UniqueHolder};
pub(crate) use unserved::UnservedTags;

use super::alarm::Alarm;
use super::clock::Clock;
use super::ready::{ReadyKey, ReadySet};
use super::timers::{Arm, Rang, Timers};
use std::task::Poll;

use super::worker::{Dispatch, Outcome, Report, RunningJob};
use crate::config::{Retention, SharedConfig};
use crate::context::{RunInfo, RunShared};
use crate::error::{JobError, JobErrorKind};
use crate::event::{EventBus, JobEvent, JobEventKind, QueueEvent};
use crate::job::{IdHash, Job, JobId, JobResult, JobStatus, LogLine};
use crate::node::NodeSelf;
use crate::persistence::Persistence;
use crate::reports::ShutdownReport;
use crate::scheduler::services::{
    Claimer, Elector, ExpiryWatch, Heartbeat, NodeBeacon, PruneSchedule, Pruner, Rescuer,
};
use crate::store::Store;
use held::{Ending, HeldJob};
use journal::{Journal, Waiter};
use lifecycle::{AfterFailure, AfterStop};
use routes::Routes;
use table::{Entry, JobTable, State, StopReason, Stopping};

/// What a wheel entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    /// A scheduled or retrying job's `run_at`.
    Due,
    /// A ready job's `expires_at`.
    Expire,
    /// A running job's timeout.
    Deadline,
    /// The expiry of a job created here but held in a shared store
    /// (`slot` indexes the watch list).
    Watch,
    /// The end of a signalled run's grace period.
    Grace,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    slot: u32,
    kind: TimerKind,
}

/// A worker that stops by itself: [`Queue::run_jobs`](crate::Queue::run_jobs).
#[derive(Debug)]
struct Batch {
    budget: Option<usize>,
    ran: usize,
    /// Wait for jobs that are not ready yet (until the time limit).
    wait: bool,
    time_up: bool,
    nothing_ready: bool,
    reply: Option<oneshot::Sender<usize>>,
}

#[derive(Debug)]
struct WorkerSlot {
    /// Where its handlers run.
    place: threads::Place,
    /// Where it was asked to run its handlers.
    placement: Placement,
    tags: Vec<u32>,
    tag_names: Vec<String>,
    capacity: usize,
    in_flight: usize,
    outbox: Vec<Dispatch>,
    stopped: bool,
    /// The `empty` event was sent and no job arrived since.
    idle: bool,
    batch: Option<Batch>,
}

/// A shutdown under way: who waits for its report, and what it counts.
struct Drain {
    reply: Option<oneshot::Sender<ShutdownReport>>,
    /// Runs that ended while it drained.
    finished: usize,
    /// Runs aborted at its deadline.
    aborted: Vec<JobId>,
    /// The pending jobs were handed to the in-process store.
    handed_over: bool,
}

pub(crate) struct Scheduler {
    clock: Clock,
    store: Arc<dyn Store>,
    bus: Arc<EventBus>,
    /// The wheel, the exact waits and how the scheduler wakes for them.
    timers: Timers<Timer>,
    /// The jobs it holds, by slot and by id.
    jobs: JobTable,
    /// The tasks and tags it knows, and each tag's ready jobs.
    routes: Routes,
    workers: Vec<WorkerSlot>,
    seq: u64,
    /// The state changes on their way to the store, and who waits for them.
    journal: Journal,
    /// The store lives in this process only: pending jobs live here only.
    in_process: bool,
    result_waiters: HashMap<JobId, Vec<oneshot::Sender<JobResult>>, IdHash>,
    draining: Option<Drain>,
    /// Whether completed jobs are kept at all (see [`Retention::keep_none`]).
    keeps_completed: bool,
    /// When the pruner removes the completed jobs the retention does not
    /// keep.
    pruning: PruneSchedule,
    /// Returns the jobs of dead processes (on a shared store).
    rescuer: Option<Rescuer>,
    /// Set when the store is shared between processes.
    shared: Option<shared::SharedMode>,
    /// This process as a node, and whether it leads.
    node_self: Arc<NodeSelf>,
    /// This node's row and leadership bids, on a shared store.
    node: Option<nodes::NodeMode>,
    /// The scheduler's own address, for handlers' lease touches.
    me: Option<Addr<Scheduler>>,
    /// Counts the messages sent to this scheduler through the queue's
    /// [`SchedulerAddr`].
    sent: Arc<std::sync::atomic::AtomicU64>,
    /// A [`Continue`] is queued: dispatching goes on in the next turn.
    continuing: bool,
    /// Reports of jobs that finished on their first poll, kept between
    /// rounds for its room.
    reports: Vec<Report>,
    /// Finished runs' shared state, reset, for the next runs: one
    /// allocation fewer per job.
    spare_runs: Vec<Arc<RunShared>>,
    /// Dead letters of jobs buried this turn on the memory store (see
    /// `dead_letters.rs`).
    letters: dead_letters::Outbox,
    /// Unique keys held by pending jobs, on a store kept in this process.
    uniques: unique::Uniques,
    /// The earliest tick a rate-limited held job may start, and whether a
    /// wake is planned for it.
    flow_wake: Option<u64>,
    flow_wake_armed: bool,
    /// A run of a task limited in running jobs ended on a shared store:
    /// claim again once its end is stored.
    claim_after_flush: bool,
    /// ... and claim again at once, with the ended jobs as credit.
    claim_now: bool,
    /// Limited jobs this process finished lately (see `flow.rs`).
    flow_credits: flow::Credits,
    /// The time read once at the start of a busy handler (see `begin`),
    /// until its `finish_turn`.
    now: std::cell::Cell<Option<(u64, chrono::DateTime<chrono::Utc>, i64)>>,
    /// Running jobs whose signal fired, by slot (see [`Stopping`]).
    stopping: HashMap<u32, Stopping>,
    /// Where workers run their handlers unless told otherwise.
    placement: Placement,
    /// Pings worker threads and reports those that do not answer.
    thread_watch: threads::ThreadWatch,
    /// Reports tags with ready jobs and no worker.
    unserved: unserved::UnservedWatch,
    /// It runs on an arbiter of its own, which ends when it stops.
    own_thread: bool,
    /// What it was built from, to build a successor from (see `restart`).
    setup: Setup,
    /// It was shut down: it stops for good.
    shut_down: bool,
    /// How many schedulers of this queue stopped before this one.
    restarts: u32,
    /// What its predecessor held, taken over when it starts.
    handover: Option<restart::Handover>,
    /// Records job metrics, once attached (see `observe`).
    #[cfg(feature = "metrics")]
    recorder: std::cell::RefCell<Option<crate::metrics::JobRecorder>>,
    /// A recorder is attached: the one flag the hooks read first.
    #[cfg(feature = "metrics")]
    observing: std::cell::Cell<bool>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("pending", &self.jobs.len())
            .field("timers", &self.timers.len())
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

const EXPIRED: &str = "not started before it expired";

/// How long after its `run_at` a delayed job may start at the earliest.
/// The scheduler maps wall-clock times onto the monotonic clock once, at
/// start; code elsewhere in the process that maps them at another moment
/// can disagree by a few microseconds (the two clocks drift apart, and
/// each mapping reads them one after the other). The guard keeps a job
/// from ever looking early to such a reader.
const START_GUARD: chrono::Duration = chrono::Duration::microseconds(20);

/// How long a small batch of state changes waits for more before it goes
/// to the store.
const FLUSH_DELAY: Duration = Duration::from_millis(1);

/// A batch this large goes to the store at once.
const FLUSH_BATCH: usize = 4096;

/// On an in-process store, while jobs wait on timers, a batch goes at once
/// from this size: storing it holds the scheduler up, and short pauses
/// keep delayed jobs on time.
const FLUSH_BATCH_TIMELY: usize = 64;

/// How long after a signalled run's grace period the scheduler decides
/// the job without its worker's report: the worker reports first unless
/// its thread is blocked.
const GRACE_MARGIN: Duration = Duration::from_millis(100);

/// How many finished runs' shared state is kept for reuse.
const SPARE_RUNS: usize = 1024;

/// How many jobs that finish on their first poll one turn settles before
/// it yields (see `Scheduler::dispatch`).
const INLINE_BUDGET: usize = 256;

/// What a queue gives its scheduler when it builds it.
#[derive(Clone)]
pub(crate) struct Setup {
    pub(crate) clock: Clock,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) persistence: Persistence,
    pub(crate) bus: Arc<EventBus>,
    pub(crate) retention: Retention,
    pub(crate) shared: SharedConfig,
    /// Counts the messages sent to the scheduler (see [`SchedulerAddr`]).
    pub(crate) sent: Arc<std::sync::atomic::AtomicU64>,
    /// Where workers run their handlers unless told otherwise.
    pub(crate) placement: Placement,
    /// Where the queue finds the scheduler (a successor replaces it).
    pub(crate) slot: AddrSlot,
    /// This process as a node (kept by successors).
    pub(crate) node: Arc<NodeSelf>,
    /// The fair groups' weights.
    pub(crate) groups: crate::group::GroupWeights,
    /// The limits per tag.
    pub(crate) tag_limits: crate::flow::TagLimits,
}

impl Scheduler {
    pub(crate) fn new(setup: Setup) -> Self {
        let kept = setup.clone();
        let Setup {
            clock,
            store,
            persistence,
            bus,
            retention,
            shared,
            sent,
            placement,
            slot: _,
            node: node_self,
            groups,
            tag_limits,
        } = setup;
        let shared_node_retention = shared.node_retention;
        let shared = match (persistence, store.shared().map(|s| s.owner())) {
            (Persistence::Shared, Some(owner)) => Claimer::new(store.clone(), shared, owner)
                .zip(Heartbeat::new(store.clone(), owner))
                .zip(ExpiryWatch::new(store.clone()))
                .map(|((claimer, heartbeat), expiry)| {
                    shared::SharedMode::new(claimer, heartbeat, expiry, owner)
                }),
            _ => None,
        };
        let in_process = persistence.in_process();
        let pruner = Pruner::new(store.clone(), retention.clone());
        let rescuer = Rescuer::new(store.clone()).filter(|_| persistence.shared());
        let node = NodeBeacon::new(store.clone(), node_self.clone(), shared_node_retention)
            .zip(Elector::new(store.clone(), node_self.clone()))
            .filter(|_| persistence.shared())
            .map(|(beacon, elector)| nodes::NodeMode::new(beacon, elector));
        Scheduler {
            clock,
            store,
            bus,
            timers: Timers::new(),
            jobs: JobTable::default(),
            routes: Routes::new(groups, tag_limits),
            workers: Vec::new(),
            seq: 0,
            journal: Journal::default(),
            in_process,
            result_waiters: HashMap::default(),
            draining: None,
            keeps_completed: retention.keeps_completed(),
            pruning: PruneSchedule::new(pruner, in_process),
            rescuer,
            shared,
            node_self,
            node,
            me: None,
            sent,
            continuing: false,
            reports: Vec::new(),
            spare_runs: Vec::new(),
            letters: dead_letters::Outbox::default(),
            uniques: unique::Uniques::default(),
            flow_wake: None,
            flow_wake_armed: false,
            claim_after_flush: false,
            claim_now: false,
            flow_credits: flow::Credits::default(),
            now: Default::default(),
            stopping: HashMap::new(),
            placement,
            thread_watch: threads::ThreadWatch::default(),
            unserved: unserved::UnservedWatch::default(),
            own_thread: false,
            setup: kept,
            shut_down: false,
            restarts: 0,
            handover: None,
            #[cfg(feature = "metrics")]
            recorder: Default::default(),
            #[cfg(feature = "metrics")]
            observing: Default::default(),
        }
    }

    /// Marks it as the only actor of its arbiter: when it stops, so does
    /// the arbiter's thread.
    pub(crate) fn on_own_thread(mut self) -> Self {
        self.own_thread = true;
        self
    }

    /// Reads the clock once for a handler that changes many jobs: until
    /// its `finish_turn`, every timestamp it writes is this one. Returns the
    /// wheel tick.
    fn begin(&self) -> u64 {
        let ms = self.clock.now_ms();
        let nanos = self.clock.now_nanos();
        let utc = crate::scheduler::utc::from_nanos(nanos);
        self.now.set(Some((ms, utc, nanos)));
        ms
    }

    fn now_ms(&self) -> u64 {
        match self.now.get() {
            Some((ms, _, _)) => ms,
            None => self.clock.now_ms(),
        }
    }

    fn now_utc(&self) -> chrono::DateTime<chrono::Utc> {
        match self.now.get() {
            Some((_, utc, _)) => utc,
            None => self.clock.now_utc(),
        }
    }

    /// [`now_utc`](Self::now_utc) in nanoseconds since the Unix epoch.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn now_nanos(&self) -> i64 {
        match self.now.get() {
            Some((_, _, nanos)) => nanos,
            None => self.clock.now_nanos(),
        }
    }

    /// Queues the job's current state for the store, appending `logs`.
    fn record(&mut self, slot: u32, logs: Vec<LogLine>) {
        if self.in_process {
            // The entry is the record until the job is final.
            if let Some(e) = self.jobs.get_mut(slot) {
                e.job.append_logs(logs, None);
            }
            return;
        }
        if let Some(e) = self.jobs.get_mut(slot) {
            e.write = self.journal.write(e.write, &e.job, logs, None);
        }
    }

    fn line(&self, attempt: u32, message: impl Into<std::borrow::Cow<'static, str>>) -> LogLine {
        LogLine::new(self.now_utc(), attempt, message)
    }

    /// Sends an event of a job of task slot `task`, if anyone listens.
    fn emit(&self, id: JobId, task: u32, attempt: u32, kind: JobEventKind) {
        self.observe(task, &kind);
        if self.bus.is_active() {
            let task = &self.routes.tasks[task as usize];
            self.bus.job(JobEvent {
                id,
                task: task.name.clone(),
                tag: task.tag_name.clone(),
                attempt,
                at: self.now_utc(),
                node: None,
                kind,
            });
        }
    }

    fn emit_slot(&self, slot: u32, kind: JobEventKind) {
        if self.bus.is_active() || self.observed() {
            if let Some(e) = self.jobs.get(slot) {
                self.emit(e.job.id, e.task, e.job.attempts, kind);
            }
        }
    }

    fn set_timer(&mut self, slot: u32, when: u64, kind: TimerKind, now: u64) -> bool {
        let Some(e) = self.jobs.get_mut(slot) else {
            return false;
        };
        if let Some(old) = e.timer.take() {
            self.timers.cancel(old);
        }
        if when <= now {
            return false;
        }
        e.timer = self.timers.insert(when, Timer { slot, kind });
        e.timer.is_some()
    }

    fn clear_timer(&mut self, slot: u32) {
        if let Some(e) = self.jobs.get_mut(slot) {
            if let Some(key) = e.timer.take() {
                self.timers.cancel(key);
            }
        }
    }

    /// Takes in a job this process is responsible for.
    fn admit(&mut self, mut job: Job, origin: Origin, now: u64) {
        if self.jobs.contains(&job.id) || job.status.is_final() {
            return;
        }
        let mut logs = Vec::new();
        if job.status == JobStatus::Running {
            // Cut off by a crash: that attempt counts, the job runs again.
            job.status = JobStatus::Ready;
            let message = match origin {
                Origin::Restarted => "the scheduler restarted while this attempt ran",
                _ => "the process running this attempt stopped before it finished",
            };
            job.last_error = Some(message.into());
            logs.push(self.line(job.attempts, message));
        }
        if origin == Origin::Kicked {
            logs.push(self.line(job.attempts, "kicked"));
        }
        // A row stored before kessel checked times (or by other means) may
        // hold one it cannot schedule: the job is buried, never the queue.
        let out_of_range = [Some(job.run_at), job.expires_at]
            .into_iter()
            .flatten()
            .find(|at| !crate::time::in_range(*at));
        let task = self.routes.task_slot(&job.task);
        if origin == Origin::New {
            self.observe_created(task);
        }
        let id = job.id;
        // Created for an in-process store without its "created" line: the
        // line is rebuilt from created_at when the job is read or stored,
        // so a pending job holds no log allocation.
        let created_implied = self.in_process && origin == Origin::New && job.logs.is_empty();
        let slot = self.jobs.insert(HeldJob::new(job), task);
        if created_implied {
            if let Some(e) = self.jobs.get_mut(slot) {
                e.job.created_implied = true;
            }
        }
        if !logs.is_empty() || origin == Origin::Kicked {
            self.record(slot, logs);
        }
        if origin == Origin::Kicked && self.in_process {
            // The store holds it as buried: it is pending again.
            if let Some(e) = self.jobs.get(slot) {
                self.journal.push_update(e.job.update(Vec::new()));
            }
        }
        if origin == Origin::Kicked {
            self.emit_slot(slot, JobEventKind::Kicked);
        }
        if let Some(at) = out_of_range {
            let message = format!(
                "its time {} is outside the times kessel accepts ({} to {})",
                at.to_rfc3339(),
                crate::time::EARLIEST.to_rfc3339(),
                crate::time::latest().to_rfc3339()
            );
            tracing::error!(job = %id, "{message}");
            self.bus.queue(QueueEvent::Error {
                message: format!("job {id} cannot be scheduled: {message}"),
            });
            self.finalize(slot, JobStatus::Buried, None, Some(message), Vec::new());
            return;
        }
        self.schedule(slot, now);
    }

    /// Holds a job until its run_at, or makes it ready.
    fn schedule(&mut self, slot: u32, now: u64) {
        let Some(e) = self.jobs.get(slot) else { return };
        let run_at = e.job.run_at();
        if !self.has_come(run_at) && self.wait_until(slot, run_at, now) {
            let Some(e) = self.jobs.get_mut(slot) else {
                return;
            };
            e.state = State::Waiting;
            if e.job.status == JobStatus::Ready {
                self.jobs.set_status(slot, JobStatus::Scheduled);
            }
        } else {
            self.make_ready(slot, now);
        }
    }

    /// Whether `run_at` has come: a job due now (or before) starts at once.
    fn has_come(&self, run_at: chrono::DateTime<chrono::Utc>) -> bool {
        run_at <= self.now_utc()
    }

    /// Whether a job that waited for `run_at` may start: [`START_GUARD`]
    /// after it.
    fn waited_enough(&self, run_at: chrono::DateTime<chrono::Utc>) -> bool {
        run_at
            .checked_add_signed(START_GUARD)
            .is_none_or(|at| at <= self.now_utc())
    }

    /// Holds a job whose `run_at` is still ahead: in the wheel under its
    /// millisecond, or, once that millisecond has come, in `soon` under the
    /// exact microsecond, so it starts neither early nor a tick late.
    fn wait_until(&mut self, slot: u32, run_at: chrono::DateTime<chrono::Utc>, now: u64) -> bool {
        let run_at = run_at.checked_add_signed(START_GUARD).unwrap_or(run_at);
        let tick = self.clock.tick_of(run_at);
        if tick > now {
            return self.set_timer(slot, tick, TimerKind::Due, now);
        }
        self.clear_timer(slot);
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.jobs.get_mut(slot) else {
            return false;
        };
        e.seq = seq;
        let micros = self.clock.micros_until(run_at);
        self.timers.insert_exact(micros, seq, slot);
        true
    }

    fn expired(&self, job: &HeldJob, now: u64) -> bool {
        job.expires_at()
            .is_some_and(|x| self.clock.tick_for(x) <= now)
    }

    fn make_ready(&mut self, slot: u32, now: u64) {
        let Some(e) = self.jobs.get(slot) else { return };
        if self.expired(&e.job, now) {
            self.finalize(
                slot,
                JobStatus::Expired,
                None,
                Some(EXPIRED.into()),
                Vec::new(),
            );
            return;
        }
        let Some(before) = self.jobs.set_status(slot, JobStatus::Ready) else {
            return;
        };
        let changed = before != JobStatus::Ready;
        let Some(e) = self.jobs.get_mut(slot) else {
            return;
        };
        e.state = State::Ready;
        let expires = e.job.expires_at();
        if changed {
            self.record(slot, Vec::new());
        }
        self.enqueue(slot);
        if let Some(expires) = expires {
            let tick = self.clock.tick_for(expires);
            self.set_timer(slot, tick, TimerKind::Expire, now);
        }
    }

    /// Pushes a ready job into its tag's set, or parks it on its task.
    fn enqueue(&mut self, slot: u32) {
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.jobs.get_mut(slot) else {
            return;
        };
        e.seq = seq;
        let task = &mut self.routes.tasks[e.task as usize];
        match task.tag {
            Some(tag) if !task.suspended => {
                let key = ReadyKey {
                    priority: e.job.priority,
                    due: self.clock.tick_for(e.job.run_at()),
                    seq,
                    slot,
                };
                self.routes.push_ready(tag, key, e.job.group());
            }
            _ => task.parked.push((slot, e.generation)),
        }
    }

    fn requeue(&mut self, parked: Vec<(u32, u32)>) {
        for (slot, generation) in parked {
            if self
                .jobs
                .get(slot)
                .is_some_and(|e| e.generation == generation && e.state == State::Ready)
            {
                self.enqueue(slot);
            }
        }
    }

    /// Removes a job for good: records its final state, emits its final
    /// event and answers waiters.
    fn finalize(
        &mut self,
        slot: u32,
        status: JobStatus,
        value: Option<serde_json::Value>,
        message: Option<String>,
        logs: Vec<LogLine>,
    ) {
        debug_assert!(status.is_final());
        self.clear_timer(slot);
        let Some(mut e) = self.jobs.remove(slot) else {
            return;
        };
        if let Some(run) = e.run.take() {
            self.recycle(run);
        }
        let attempt = e.job.attempts;
        if status == JobStatus::Buried {
            let finished_at = self.now_utc();
            self.post_dead_letter(&e, message.as_deref(), finished_at);
        }
        // Two `Option` checks per finished job when neither it nor its
        // task has a callback.
        #[cfg(feature = "webhooks")]
        if let Some(target) = self.callback_target(&e) {
            let finished_at = self.now_utc();
            self.post_callback(
                &e,
                &target,
                status,
                value.as_ref(),
                message.as_deref(),
                finished_at,
            );
        }
        let kind = match status {
            JobStatus::Completed => JobEventKind::Completed {
                value: value.clone(),
            },
            JobStatus::Buried => JobEventKind::Buried {
                message: message.clone().unwrap_or_default(),
            },
            JobStatus::Expired => JobEventKind::Expired,
            _ => JobEventKind::Cancelled,
        };
        let finished_at = self.now_utc();
        if self.in_process && status == JobStatus::Completed && !self.keeps_completed {
            // Kept nowhere: no record to build, store and prune.
            self.emit(e.job.id, e.task, attempt, kind);
            if !self.result_waiters.is_empty() {
                if let Some(waiters) = self.result_waiters.remove(&e.job.id) {
                    let result = JobResult {
                        id: e.job.id,
                        status,
                        value,
                        message,
                    };
                    self.journal.wait(Waiter::Result(waiters, result));
                }
            }
            return;
        }
        let line = Some(match (status, &message) {
            (JobStatus::Completed, _) => self.line(attempt, "completed"),
            (JobStatus::Cancelled, _) => self.line(attempt, "cancelled"),
            (status, Some(m)) => self.line(attempt, format!("{status}: {m}")),
            (status, None) => self.line(attempt, status.as_str()),
        });
        if self.in_process {
            // The entry becomes the stored record at once: no update to
            // merge, and the log in one allocation.
            let end = Ending {
                status,
                value,
                message,
                at: finished_at,
            };
            let name = self.routes.tasks[e.task as usize].name.clone();
            let job = e.job.into_final(name, end, logs, line);
            self.emit(job.id, e.task, job.attempts, kind);
            if !self.result_waiters.is_empty() {
                if let (Some(waiters), Some(result)) =
                    (self.result_waiters.remove(&job.id), job.outcome())
                {
                    self.journal.wait(Waiter::Result(waiters, result));
                }
            }
            if status == JobStatus::Completed {
                self.pruning.completed();
            }
            self.journal.push_final(job);
            return;
        }
        e.job.status = status;
        e.job.set_result(value);
        e.job.set_last_error(message);
        e.job.set_finished_at(finished_at);
        self.journal.write(e.write, &e.job, logs, line);
        self.pruning.ended(status);
        self.emit(e.job.id, e.task, e.job.attempts, kind);
        if !self.result_waiters.is_empty() {
            // Answered once the outcome is stored, so whoever awaited it
            // reads the same from the store.
            if let (Some(waiters), Some(result)) =
                (self.result_waiters.remove(&e.job.id), e.job.outcome())
            {
                self.journal.wait(Waiter::Result(waiters, result));
            }
        }
    }

    /// A transient failure: retry after backoff, or bury when out of attempts.
    fn fail_transient(
        &mut self,
        slot: u32,
        message: String,
        retry_after: Option<Duration>,
        now: u64,
        logs: Vec<LogLine>,
    ) {
        self.fail_transient_since(slot, message, retry_after, now, logs, None);
    }

    /// [`Self::fail_transient`], the backoff counted from `since` (when
    /// the attempt was stopped) rather than from now.
    fn fail_transient_since(
        &mut self,
        slot: u32,
        message: String,
        retry_after: Option<Duration>,
        now: u64,
        mut logs: Vec<LogLine>,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let Some(e) = self.jobs.get(slot) else { return };
        let def = self.routes.tasks[e.task as usize].def.clone();
        let attempts = e.job.attempts;
        let decision = lifecycle::after_failure(
            &message,
            attempts,
            e.job.max_attempts(),
            def.as_ref().map(|d| &d.retry),
            retry_after,
            fastrand::f64(),
            since.unwrap_or_else(|| self.now_utc()),
        );
        let (delay, run_at) = match decision {
            AfterFailure::Bury { message } => {
                self.finalize(slot, JobStatus::Buried, None, Some(message), logs);
                return;
            }
            AfterFailure::Retry { delay, run_at } => (delay, run_at),
        };
        logs.push(self.line(
            attempts,
            format!("failed: {message}; retrying in {delay:?}"),
        ));
        self.jobs.set_status(slot, JobStatus::Retrying);
        let Some(e) = self.jobs.get_mut(slot) else {
            return;
        };
        e.job.set_run_at(run_at);
        e.job.set_last_error(Some(message));
        e.state = State::Waiting;
        let run = e.run.take();
        self.record(slot, logs);
        if let Some(run) = run {
            self.recycle(run);
        }
        self.emit_slot(slot, JobEventKind::Retrying { run_at });
        if self.is_shared() {
            // Back to the store: whichever process is free when it is due runs it.
            self.release(slot);
            return;
        }
        if self.has_come(run_at) || !self.wait_until(slot, run_at, now) {
            self.make_ready(slot, now);
        }
    }

    /// A snoozed run: the job waits `delay` as scheduled, and the attempt
    /// it just made does not count.
    fn snooze(
        &mut self,
        slot: u32,
        delay: Duration,
        reason: String,
        now: u64,
        mut logs: Vec<LogLine>,
    ) {
        let run_at = crate::time::saturating_after(self.now_utc(), delay);
        let Some(e) = self.jobs.get(slot) else { return };
        let attempt = e.job.attempts;
        logs.push(self.line(
            attempt,
            if reason.is_empty() {
                format!("snoozed for {delay:?}")
            } else {
                format!("snoozed for {delay:?}: {reason}")
            },
        ));
        self.jobs.set_status(slot, JobStatus::Scheduled);
        let Some(e) = self.jobs.get_mut(slot) else {
            return;
        };
        e.job.attempts = e.job.attempts.saturating_sub(1);
        e.job.set_run_at(run_at);
        e.state = State::Waiting;
        let run = e.run.take();
        self.record(slot, logs);
        if let Some(run) = run {
            self.recycle(run);
        }
        self.emit_slot(slot, JobEventKind::Scheduled { run_at });
        if self.is_shared() {
            // Back to the store: whichever process is free when it is due runs it.
            self.release(slot);
            return;
        }
        if self.has_come(run_at) || !self.wait_until(slot, run_at, now) {
            self.make_ready(slot, now);
        }
    }

    /// Keeps a finished run's shared state for the next run, when nothing
    /// else holds it (a handler may keep its context past the run).
    fn recycle(&mut self, mut run: Arc<RunShared>) {
        if self.spare_runs.len() >= SPARE_RUNS {
            return;
        }
        if let Some(state) = Arc::get_mut(&mut run) {
            state.signal = Default::default();
            *state.journal.get_mut() = Default::default();
            self.spare_runs.push(run);
        }
    }

    /// Hands ready jobs to workers with free slots, best job first, each
    /// worker's tags in its order.
    ///
    /// Each job's handler is first polled here, on the scheduler's turn
    /// (workers live on the scheduler's thread, so it runs where it would
    /// anyway): a job that finishes on that poll, doing no I/O, is settled
    /// at once and its slot refilled, without a message to the worker and
    /// back. Only jobs left pending go to the worker, which polls them from
    /// then on. After [`INLINE_BUDGET`] such jobs the turn ends and a
    /// [`Continue`] picks up, so the mailbox and other tasks get their turn.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        if self.draining.is_some() {
            return;
        }
        let mut budget = INLINE_BUDGET;
        for w in 0..self.workers.len() {
            let mut found_none = false;
            loop {
                let now = self.now_ms();
                while self.workers[w].has_room() {
                    let Some(slot) = self.next_for(w, now) else {
                        found_none = true;
                        break;
                    };
                    self.start(w, slot, now);
                }
                let sent = self.sent.load(std::sync::atomic::Ordering::Relaxed);
                let mut reports = self.first_polls(w);
                if reports.is_empty() {
                    break;
                }
                let now = self.begin();
                budget = budget.saturating_sub(reports.len());
                for report in reports.drain(..) {
                    self.on_report(w, report, now);
                }
                // Its room serves the next round.
                self.reports = reports;
                self.after_capacity_freed(ctx);
                found_none = false;
                if self.sent.load(std::sync::atomic::Ordering::Relaxed) != sent {
                    // A handler (or anyone) sent something: handle it
                    // before choosing the next job.
                    self.continue_after(ctx, false);
                    break;
                }
                if budget == 0 {
                    self.continue_after(ctx, true);
                    break;
                }
            }
            let worker = &mut self.workers[w];
            if let Some(batch) = worker.batch.as_mut() {
                batch.nothing_ready = found_none;
            }
            if found_none && worker.in_flight == 0 && !worker.idle && !worker.stopped {
                worker.idle = true;
                if self.bus.is_active() {
                    self.bus.queue(QueueEvent::Empty {
                        tags: worker.tag_names.clone(),
                    });
                }
            }
        }
    }

    /// Dispatches again after the messages already sent are handled and,
    /// with `yield_first`, after the other tasks on this thread had a turn.
    fn continue_after(&mut self, ctx: &mut Context<Self>, yield_first: bool) {
        if self.continuing {
            return;
        }
        self.continuing = true;
        if yield_first {
            ctx.spawn(
                tokio::task::yield_now()
                    .into_actor(self)
                    .map(|(), act, ctx| act.resume(ctx)),
            );
        } else {
            ctx.notify(Continue);
        }
    }

    fn resume(&mut self, ctx: &mut Context<Self>) {
        self.continuing = false;
        self.begin();
        self.finish_turn(ctx);
    }

    /// Starts the jobs in worker `w`'s outbox, polling each once: returns
    /// the reports of those that finished, and sends the rest to the worker.
    fn first_polls(&mut self, w: usize) -> Vec<Report> {
        let worker = &mut self.workers[w];
        if worker.outbox.is_empty() {
            return Vec::new();
        }
        worker.idle = false;
        if let threads::Place::Threads(threads) = &mut worker.place {
            // Its handlers run on its own threads: send, nothing to poll.
            threads::send_out(threads, &mut worker.outbox);
            return Vec::new();
        }
        let mut finished = std::mem::take(&mut self.reports);
        let mut pending = Vec::new();
        for dispatch in worker.outbox.drain(..) {
            let task = &self.routes.tasks[dispatch.task as usize];
            let mut job = match task.def.as_ref() {
                Some(def) => {
                    RunningJob::start(dispatch, &*def.action, task.chain.as_deref(), def.grace)
                }
                None => RunningJob::start_failed(dispatch, "a job started with no task defined"),
            };
            match job.poll_first() {
                Poll::Ready(report) => finished.push(report),
                Poll::Pending => pending.push(job),
            }
        }
        if !pending.is_empty() {
            if let threads::Place::SchedulerThread { handoff, .. } = &worker.place {
                handoff.push(pending);
            }
        }
        finished
    }

    fn next_for(&mut self, w: usize, now: u64) -> Option<u32> {
        for i in 0..self.workers[w].tags.len() {
            let tag = self.workers[w].tags[i] as usize;
            if !self.tag_admits(tag, now) {
                // Its jobs wait, ready, in their order; other tags go on.
                continue;
            }
            while let Some(key) = self.routes.tags[tag].pop() {
                let Some(e) = self.jobs.get(key.slot) else {
                    continue;
                };
                if e.seq != key.seq || e.state != State::Ready {
                    continue;
                }
                let task = &self.routes.tasks[e.task as usize];
                if task.suspended || task.tag != Some(tag as u32) {
                    self.enqueue(key.slot);
                    continue;
                }
                if self.expired(&e.job, now) {
                    self.finalize(
                        key.slot,
                        JobStatus::Expired,
                        None,
                        Some(EXPIRED.into()),
                        Vec::new(),
                    );
                    continue;
                }
                let task = e.task;
                if !self.flow_admits(task, key, now) {
                    continue;
                }
                self.tag_started(tag, now);
                return Some(key.slot);
            }
        }
        None
    }

    fn start(&mut self, w: usize, slot: u32, now: u64) {
        let line_at = self.now_utc();
        self.jobs.set_status(slot, JobStatus::Running);
        let Some(e) = self.jobs.get_mut(slot) else {
            return;
        };
        let task = &self.routes.tasks[e.task as usize];
        let timeout = task.def.as_ref().and_then(|def| def.timeout);
        e.job.attempts += 1;
        e.state = State::Running { worker: w as u32 };
        // A spare run of the same task is taken as it is; one of another
        // task gets this task's name and tag (nothing else holds a spare).
        let spare = self.spare_runs.pop().and_then(|mut run| {
            let same_tag = match (&run.tag, &task.tag_name) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (a, b) => a.is_none() && b.is_none(),
            };
            if !same_tag || !Arc::ptr_eq(&run.task, &task.name) {
                let state = Arc::get_mut(&mut run)?;
                state.task = task.name.clone();
                state.tag = task.tag_name.clone();
            }
            Some(run)
        });
        let shared = spare.unwrap_or_else(|| {
            Arc::new(RunShared {
                task: task.name.clone(),
                tag: task.tag_name.clone(),
                signal: Default::default(),
                journal: Default::default(),
                bus: self.bus.clone(),
                clock: self.clock,
                touch: self
                    .shared
                    .as_ref()
                    .and(self.me.clone())
                    .map(Addr::recipient),
                node: Some(self.node_self.id),
            })
        });
        e.run = Some(shared.clone());
        let runnable = match self.workers[w].place {
            threads::Place::Threads(_) => task.runnable.clone(),
            threads::Place::SchedulerThread { .. } => None,
        };
        let dispatch = Dispatch {
            slot,
            task: e.task,
            info: RunInfo {
                id: e.job.id,
                attempt: e.job.attempts,
                reference: e.job.reference().map(str::to_owned),
                created_at: e.job.created_at_compact(),
                run_at: e.job.run_at_compact(),
                shared,
            },
            payload: e.job.payload.clone(),
            runnable,
        };
        let attempt = e.job.attempts;
        if let Some(timeout) = timeout {
            let when = now + (timeout.as_millis() as u64).max(1);
            self.set_timer(slot, when, TimerKind::Deadline, now);
        } else {
            self.clear_timer(slot);
        }
        let started = LogLine::new(line_at, attempt, "started");
        if self.in_process {
            // Nothing is written while it runs: the line opens the run's
            // journal, which comes back with the report (or `end_run`).
            if let Some(run) = self.jobs.get(slot).and_then(|e| e.run.as_ref()) {
                // These lines become the final record's log: room for the
                // implied "created" line and the one that ends the run.
                let logs = &mut run.journal.lock().logs;
                logs.reserve_exact(3);
                logs.push(started);
            }
        } else {
            // Room for the line that ends the attempt, merged in when the
            // job finishes before the next flush.
            let mut logs = Vec::with_capacity(2);
            logs.push(started);
            self.record(slot, logs);
        }
        self.emit_slot(slot, JobEventKind::Started);
        if self.observed() {
            if let Some(e) = self.jobs.get(slot) {
                self.observe_started(slot, e.task, e.job.run_at_nanos());
            }
        }
        let worker = &mut self.workers[w];
        worker.in_flight += 1;
        if let Some(budget) = worker.batch.as_mut().and_then(|b| b.budget.as_mut()) {
            *budget -= 1;
        }
        worker.outbox.push(dispatch);
    }

    fn on_report(&mut self, worker: usize, report: Report, now: u64) {
        self.flow_run_ended(report.task, report.slot);
        if let Some(w) = self.workers.get_mut(worker) {
            w.in_flight = w.in_flight.saturating_sub(1);
            if let Some(b) = w.batch.as_mut() {
                b.ran += 1;
            }
        }
        let Some(e) = self.jobs.get_mut(report.slot) else {
            return;
        };
        if e.job.attempts != report.attempt {
            return;
        }
        let mut journal = report.journal;
        if e.state
            == (State::Stopping {
                worker: worker as u32,
            })
        {
            // Signalled, and the run ended within its grace period: what
            // it returned and logged is recorded with the decision.
            if journal.progress.is_some() {
                e.job.set_progress(journal.progress);
            }
            if let Some(d) = self.draining.as_mut() {
                d.finished += 1;
            }
            self.resolve_stop(report.slot, Some(report.outcome), journal.logs, now);
            return;
        }
        if e.state
            != (State::Running {
                worker: worker as u32,
            })
        {
            // Cancelled or timed out earlier and already decided: keep what
            // the run wrote, if the job is still here.
            if !journal.logs.is_empty() || journal.progress.is_some() {
                if journal.progress.is_some() {
                    e.job.set_progress(journal.progress);
                }
                self.record(report.slot, journal.logs);
            }
            return;
        }
        if journal.progress.is_some() {
            e.job.set_progress(journal.progress);
        }
        if let Some(d) = self.draining.as_mut() {
            d.finished += 1;
        }
        let logs = std::mem::take(&mut journal.logs);
        if self.observed() {
            if let Some(e) = self.jobs.get(report.slot) {
                self.observe_run_ended(report.slot, e.task);
            }
        }
        match report.outcome {
            Outcome::Completed(value) => {
                self.finalize(report.slot, JobStatus::Completed, value, None, logs)
            }
            Outcome::Failed(JobError {
                kind: JobErrorKind::Snooze(delay),
                message,
            }) => self.snooze(report.slot, delay, message, now, logs),
            Outcome::Failed(err) => {
                self.emit_slot(
                    report.slot,
                    JobEventKind::Failed {
                        message: err.message.clone(),
                    },
                );
                match err.kind {
                    JobErrorKind::Fatal => self.finalize(
                        report.slot,
                        JobStatus::Buried,
                        None,
                        Some(err.message),
                        logs,
                    ),
                    JobErrorKind::Transient => {
                        self.fail_transient(report.slot, err.message, None, now, logs)
                    }
                    JobErrorKind::RetryAfter(d) => {
                        self.fail_transient(report.slot, err.message, Some(d), now, logs)
                    }
                    JobErrorKind::Snooze(_) => unreachable!("matched above"),
                }
            }
            Outcome::Panicked(msg) => {
                let message = format!("the handler panicked: {msg}");
                self.emit_slot(
                    report.slot,
                    JobEventKind::Failed {
                        message: message.clone(),
                    },
                );
                self.fail_transient(report.slot, message, None, now, logs)
            }
            Outcome::Aborted => {
                // Only the scheduler fires the signal, and it decides first.
                tracing::debug!(
                    slot = report.slot,
                    "aborted run reported without a decision"
                );
            }
        }
    }

    fn on_timers(&mut self, now: u64) {
        let mut fired = self.timers.poll(now);
        for (key, timer) in fired.drain(..) {
            if timer.kind == TimerKind::Watch {
                self.watch_fired(timer.slot);
                continue;
            }
            let Some(e) = self.jobs.get_mut(timer.slot) else {
                continue;
            };
            // The slot's job now may be another, or wait on another timer.
            if e.timer != Some(key) {
                continue;
            }
            e.timer = None;
            match (timer.kind, e.state) {
                (TimerKind::Due, State::Waiting) => {
                    // The tick is the millisecond run_at falls in: it may
                    // be a fraction of one away still.
                    let run_at = e.job.run_at();
                    if self.waited_enough(run_at) || !self.wait_until(timer.slot, run_at, now) {
                        self.make_ready(timer.slot, now);
                    }
                }
                (TimerKind::Expire, State::Ready) => self.finalize(
                    timer.slot,
                    JobStatus::Expired,
                    None,
                    Some(EXPIRED.into()),
                    Vec::new(),
                ),
                (TimerKind::Deadline, State::Running { .. }) => {
                    let task = e.task;
                    let after = self.routes.tasks[task as usize]
                        .def
                        .as_ref()
                        .and_then(|d| d.timeout)
                        .unwrap_or_default();
                    self.observe_run_ended(timer.slot, task);
                    self.emit_slot(timer.slot, JobEventKind::TimedOut);
                    self.signal_stop(timer.slot, StopReason::Timeout { after }, now);
                }
                (TimerKind::Grace, State::Stopping { .. }) => {
                    // The run did not end within its grace period (its
                    // worker drops it, or its thread is blocked): decide.
                    self.resolve_stop(timer.slot, None, Vec::new(), now);
                }
                _ => {}
            }
        }
        self.timers.recycle(fired);
        let now_micros = self.clock.micros_for(self.now_utc());
        while let Some((seq, slot)) = self.timers.pop_exact(now_micros) {
            if self
                .jobs
                .get(slot)
                .is_some_and(|e| e.seq == seq && e.state == State::Waiting)
            {
                self.make_ready(slot, now);
            }
        }
    }

    /// Runs after every message: dispatch, flush writes, arm the timer.
    fn finish_turn(&mut self, ctx: &mut Context<Self>) {
        self.send_dead_letters();
        self.expire_watched(ctx);
        self.dispatch(ctx);
        // Jobs settled while dispatching may have buried some with a
        // dead-letter task: their letters go out this turn too.
        while self.letters.has_made() {
            self.send_dead_letters();
            self.dispatch(ctx);
        }
        self.finish_batches();
        self.flush(ctx);
        self.arm(ctx);
        self.arm_flow_wake(ctx);
        self.claim_after_stored(ctx);
        self.after_turn_unserved(ctx);
        self.check_drained(ctx);
        self.now.set(None);
    }

    /// Wakes for the earliest timer: the one actix timer, or right after
    /// this turn when it has come already.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        match self.timers.plan_wake(&self.clock) {
            Arm::Keep => {}
            Arm::Now { cancel, notify } => {
                if let Some(handle) = cancel {
                    ctx.cancel_future(handle);
                }
                if notify {
                    ctx.notify(AlarmRang);
                }
            }
            Arm::Timer {
                cancel,
                delay,
                at,
                backup,
            } => {
                if let Some(handle) = cancel {
                    ctx.cancel_future(handle);
                }
                let handle = ctx.run_later(delay, |act, ctx| {
                    act.timers.timer_fired();
                    let now = act.begin();
                    act.on_timers(now);
                    act.finish_turn(ctx);
                });
                self.timers.armed(handle, at);
                if backup {
                    let me = ctx.address().downgrade();
                    let deadline = tokio::time::Instant::now() + delay;
                    self.timers.backup(actix_rt::spawn(async move {
                        tokio::time::sleep_until(deadline).await;
                        if let Some(me) = me.upgrade() {
                            me.do_send(AlarmRang);
                        }
                    }));
                }
            }
        }
    }

    /// Sends the queued state changes to the store. On a single-process
    /// store a small batch waits up to [`FLUSH_DELAY`] for more, so a job
    /// that starts and finishes within it costs the store one update, not
    /// two; a reader waiting on a barrier, a full batch or a drain send at
    /// once, and a shared store is always written at once.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.journal.is_busy() {
            return;
        }
        // On a shared store other processes read what is written (a
        // rescuer counts an attempt only if its start was recorded): no
        // waiting there.
        let urgent = self.shared.is_some()
            || self.journal.has_waiters()
            || self.journal.len() >= self.flush_batch()
            || self.draining.is_some();
        if !urgent && !self.journal.is_empty() {
            if self.journal.soon.is_none() {
                self.journal.soon = Some(ctx.run_later(FLUSH_DELAY, |act, ctx| {
                    act.journal.soon = None;
                    act.flush_now(ctx);
                }));
            }
            return;
        }
        self.flush_now(ctx);
    }

    /// A batch this large goes to the store without waiting.
    fn flush_batch(&self) -> usize {
        if self.in_process && self.timers.is_waiting() {
            FLUSH_BATCH_TIMELY
        } else {
            FLUSH_BATCH
        }
    }

    /// Sends the journal's next batch to the store now.
    fn flush_now(&mut self, ctx: &mut Context<Self>) {
        if self.journal.is_busy() {
            return;
        }
        if let Some(handle) = self.journal.soon.take() {
            ctx.cancel_future(handle);
        }
        let releases = self
            .shared
            .as_mut()
            .map(|m| std::mem::take(&mut m.releases))
            .unwrap_or_default();
        if releases.is_empty() && self.journal.answer_if_empty() {
            return;
        }
        let batch = self.journal.take_batch(FLUSH_BATCH);
        let store = self.store.clone();
        let owner = self.shared.as_ref().map(|m| m.owner);
        let fut = async move {
            let mut batch = batch;
            // The jobs the changes made (dead letters) in the same write
            // as the changes: one transaction on kessel's durable stores.
            let mut result = match (batch.updates.is_empty(), batch.inserts.is_empty()) {
                (true, true) => Ok(()),
                (false, true) => store.jobs_update(&batch.updates).await,
                _ => store.jobs_write(&batch.updates, &batch.inserts).await,
            };
            // After the updates: a kicked job's update must not overwrite
            // how it ended.
            if result.is_ok() && !batch.final_records.is_empty() {
                result = match store
                    .jobs_insert_owned(std::mem::take(&mut batch.final_records))
                    .await
                {
                    Ok(()) => Ok(()),
                    Err((err, back)) => {
                        batch.final_records = back;
                        Err(err)
                    }
                };
            }
            if let (Ok(()), Some(owner), Some(shared)) = (&result, owner, store.shared()) {
                if !releases.is_empty() {
                    result = shared.jobs_release(owner, &releases).await;
                }
            }
            (result, batch, releases)
        };
        ctx.spawn(self.store_call(fut).into_actor(self).map(move |done, act, ctx| {
            let Some((result, batch, releases)) = done else {
                act.journal.batch_lost();
                return;
            };
            match result {
                Ok(()) => {
                    act.journal.batch_stored();
                    let admitted = act.admit_stored(batch.inserts);
                    if !releases.is_empty() {
                        // What was given back may be due soon: look now
                        // rather than wait for the notification to come round.
                        act.want_claim(ctx);
                    }
                    // Once the jobs that completed are stored, they
                    // count: prune now if enough of them came.
                    if act.pruning.due() {
                        act.prune(ctx);
                    }
                    if admitted {
                        // Dead letters held now may be ready to run.
                        act.finish_turn(ctx);
                    } else {
                        act.flush(ctx);
                        act.check_drained(ctx);
                    }
                }
                Err(err) => {
                    let count = batch.len();
                    tracing::error!(error = %err, changes = count, "recording job state failed; retrying");
                    act.bus.queue(QueueEvent::Error {
                        message: format!("recording {count} job state changes failed, will retry: {err}"),
                    });
                    if let Some(mode) = act.shared.as_mut() {
                        let mut again = releases;
                        again.append(&mut mode.releases);
                        mode.releases = again;
                    }
                    let wait = act.journal.batch_failed(batch, &err);
                    ctx.run_later(wait, |act, ctx| {
                        act.journal.retry_now();
                        act.flush_now(ctx);
                    });
                }
            }
        }));
    }

    /// The one seam every store call of the scheduler goes through, as a
    /// future of its actor. (`None` is kept for a call whose task a runtime
    /// dropped; a store that runs its calls elsewhere, as PostgreSQL does
    /// on its own runtime, handles that itself.)
    fn store_call<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<T>>>> {
        Box::pin(async move { Some(fut.await) })
    }

    fn in_flight(&self) -> usize {
        self.workers.iter().map(|w| w.in_flight).sum()
    }

    fn check_drained(&mut self, ctx: &mut Context<Self>) {
        let done = match &self.draining {
            Some(d) => {
                d.reply.is_some()
                    && self.in_flight() == 0
                    && self.letters.is_settled()
                    && self.journal.is_settled()
                    && self.shared.as_ref().is_none_or(|m| m.releases.is_empty())
            }
            None => false,
        };
        if done && self.in_process && self.draining.as_ref().is_some_and(|d| !d.handed_over) {
            // The jobs left pending live only here: hand them to the store
            // before stopping, so they can still be read.
            if let Some(d) = self.draining.as_mut() {
                d.handed_over = true;
            }
            let left: Vec<Job> = self
                .jobs
                .slots()
                .filter_map(|slot| self.jobs.get(slot))
                .map(|e| e.job.to_job(&self.routes.tasks[e.task as usize].name))
                .collect();
            if !left.is_empty() {
                self.journal.extend_final(left);
                self.flush_now(ctx);
                return;
            }
        }
        if done && !self.node_left(ctx) {
            // Leaving the nodes first; its answer comes back here.
            return;
        }
        if done {
            let Some(mut drain) = self.draining.take() else {
                return;
            };
            let report = ShutdownReport {
                finished_while_draining: drain.finished,
                aborted: std::mem::take(&mut drain.aborted),
                left_pending: self.jobs.len(),
            };
            for w in &mut self.workers {
                w.place.stop();
                if let Some(reply) = w.batch.as_mut().and_then(|b| b.reply.take()) {
                    let _ = reply.send(w.batch.as_ref().map_or(0, |b| b.ran));
                }
            }
            if let Some(reply) = drain.reply.take() {
                let _ = reply.send(report);
            }
            self.shut_down = true;
            ctx.stop();
        }
    }

    /// Ends a running attempt here rather than by the worker's report (a
    /// cancel, a timeout, an abort): fires its cancellation signal and
    /// returns what it logged so far, to record before the line that ends
    /// it. What it logs afterwards arrives with its report.
    fn end_run(&mut self, slot: u32) -> Vec<LogLine> {
        let Some(run) = self.jobs.get_mut(slot).and_then(|e| e.run.take()) else {
            return Vec::new();
        };
        run.cancel();
        let logs = std::mem::take(&mut run.journal.lock().logs);
        logs
    }

    /// Cancels a pending job: a running one is signalled and decided when
    /// its run ends (see [`Stopping`]), any other is cancelled at once.
    fn cancel_slot(&mut self, slot: u32, now: u64) {
        let Some(e) = self.jobs.get(slot) else { return };
        match e.state {
            State::Running { .. } => self.signal_stop(slot, StopReason::Cancel, now),
            State::Stopping { .. } => {
                // Timed out and stopping: the cancel decides instead.
                if let Some(stop) = self.stopping.get_mut(&slot) {
                    stop.reason = StopReason::Cancel;
                }
            }
            State::Waiting | State::Ready => {
                let logs = self.end_run(slot);
                self.finalize(
                    slot,
                    JobStatus::Cancelled,
                    None,
                    Some("cancelled".into()),
                    logs,
                );
            }
        }
    }

    /// Fires a running job's signal (a cancel or a timeout) and gives its
    /// handler its task's grace period to stop: the job is decided when
    /// the run ends, or when the grace period does, whichever comes first.
    fn signal_stop(&mut self, slot: u32, reason: StopReason, now: u64) {
        let Some(e) = self.jobs.get_mut(slot) else {
            return;
        };
        let State::Running { worker } = e.state else {
            return;
        };
        e.state = State::Stopping { worker };
        let grace = self.routes.tasks[e.task as usize]
            .def
            .as_ref()
            .map_or(Duration::ZERO, |d| d.grace);
        let logs = self.end_run(slot);
        self.stopping.insert(
            slot,
            Stopping {
                reason,
                signalled_at: self.now_utc(),
                logs,
            },
        );
        // The worker drops the run at the end of its grace period and
        // reports it with what it logged; this timer, a little later,
        // decides without the report when the worker's thread is blocked.
        let grace_ms = u64::try_from((grace + GRACE_MARGIN).as_millis()).unwrap_or(u64::MAX);
        if grace.is_zero()
            || !self.set_timer(slot, now.saturating_add(grace_ms), TimerKind::Grace, now)
        {
            self.resolve_stop(slot, None, Vec::new(), now);
        }
    }

    /// Decides a signalled job: its run ended with `ended` (and logged
    /// `logs` since the signal), or `None` when its grace period ended
    /// first. A timed-out job is retried (backoff from the signal) or
    /// buried; a cancelled one is cancelled. What the handler returned
    /// goes into the message.
    fn resolve_stop(
        &mut self,
        slot: u32,
        ended: Option<Outcome>,
        mut logs: Vec<LogLine>,
        now: u64,
    ) {
        let Some(stop) = self.stopping.remove(&slot) else {
            return;
        };
        self.clear_timer(slot);
        let mut all = stop.logs;
        all.append(&mut logs);
        match lifecycle::after_stop(stop.reason, ended) {
            AfterStop::Fail { message } => {
                self.fail_transient_since(slot, message, None, now, all, Some(stop.signalled_at));
            }
            AfterStop::Cancel { message, value } => {
                self.finalize(slot, JobStatus::Cancelled, value, Some(message), all);
            }
        }
    }

    /// At the shutdown deadline: abort what still runs.
    fn abort_running(&mut self) {
        let running: Vec<u32> = self
            .jobs
            .slots()
            .filter(|&s| self.jobs.get(s).is_some_and(|e| e.state.is_running()))
            .collect();
        for slot in running {
            self.clear_timer(slot);
            let line = self.line(0, "aborted at shutdown");
            let mut logs = self.end_run(slot);
            if let Some(stop) = self.stopping.remove(&slot) {
                let mut before = stop.logs;
                before.append(&mut logs);
                logs = before;
            }
            self.jobs.set_status(slot, JobStatus::Ready);
            let Some(e) = self.jobs.get_mut(slot) else {
                continue;
            };
            e.job.set_last_error(Some("aborted at shutdown".into()));
            e.state = State::Ready;
            let id = e.job.id;
            logs.push(LogLine {
                attempt: e.job.attempts,
                ..line
            });
            self.record(slot, logs);
            if let Some(d) = self.draining.as_mut() {
                d.aborted.push(id);
            }
            if self.is_shared() {
                self.release(slot);
            }
        }
    }
}

impl WorkerSlot {
    fn has_room(&self) -> bool {
        if self.stopped || self.in_flight >= self.capacity {
            return false;
        }
        match &self.batch {
            Some(b) => !b.time_up && b.budget != Some(0),
            None => true,
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.me = Some(ctx.address());
        let me = ctx.address().downgrade();
        let alarm = Alarm::start(move || {
            if let Some(me) = me.upgrade() {
                me.do_send(AlarmRang);
            }
        })
        .map_err(
            |e| tracing::warn!(error = %e, "no precise timer thread; using actix timers alone"),
        )
        .ok();
        self.timers.set_alarm(alarm);
        self.start_pruner(ctx);
        self.start_shared(ctx);
        if let Some(handover) = self.handover.take() {
            self.take_over(handover, ctx);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for w in &self.workers {
            w.place.stop();
        }
        if self.restart_unless_shut_down() {
            // Its successor lives on this thread.
            return;
        }
        if self.own_thread {
            actix::Arbiter::current().stop();
        }
    }
}

/// The alarm rang, or something came due while the last turn ran: fire
/// what is due and re-arm.
#[derive(Message)]
#[rtype(result = "()")]
struct AlarmRang;

/// Dispatching goes on after a turn used its [`INLINE_BUDGET`].
#[derive(Message)]
#[rtype(result = "()")]
struct Continue;

impl Handler<Continue> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Continue, ctx: &mut Self::Context) {
        self.resume(ctx);
    }
}

impl Handler<AlarmRang> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: AlarmRang, ctx: &mut Self::Context) {
        let now_micros = self.clock.micros_for(self.clock.now_utc());
        match self.timers.alarm_rang(now_micros) {
            Rang::Early => return,
            Rang::Fire { cancel } => {
                if let Some(handle) = cancel {
                    ctx.cancel_future(handle);
                }
            }
        }
        let now = self.begin();
        self.on_timers(now);
        self.finish_turn(ctx);
    }
}
#[cfg(test)]
mod tests {
    /// Millions of pending jobs are held in these: their size is most of
    /// the memory a pending job costs (see docs/benchmarks.md).
    #[test]
    fn a_held_entry_stays_within_120_bytes() {
        assert!(std::mem::size_of::<Option<super::Entry>>() <= 120);
        assert!(std::mem::size_of::<super::HeldJob>() <= 72);
        assert!(crate::scheduler::wheel::entry_size::<super::Timer>() <= 28);
    }
}
