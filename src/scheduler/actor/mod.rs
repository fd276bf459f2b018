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
mod claim_limits;
mod counts;
mod dead_letters;
mod dispatch;
mod endings;
mod flow;
mod flush;
mod groups;
mod held;
mod index;
mod journal;
mod keeping;
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

pub(crate) use addr::{NewJobs, SchedulerAddr, TakeNewJobs};
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

use super::worker::{Outcome, Report};
use crate::config::{Retention, SharedConfig};
use crate::context::RunShared;
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
use dispatch::{Batch, WorkerSlot};
use held::{Ending, HeldJob};
use journal::{Journal, Waiter};
use keeping::{Keeper, FLUSH_BATCH};
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
    /// How it keeps its jobs: the one place that knows whether the store
    /// lives in this process or is written through the journal.
    keeper: Keeper,
    result_waiters: HashMap<JobId, Vec<oneshot::Sender<JobResult>>, IdHash>,
    draining: Option<Drain>,
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
    /// Jobs producers created, waiting to be taken in (see
    /// [`SchedulerAddr::admit_new`]).
    new_jobs: Arc<NewJobs>,
    /// The vector the last take swapped out, kept for its room.
    taken_in: Vec<Job>,
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
    /// The mark of the credits a flush was last asked to store.
    flow_credits_marked: u64,
    /// The time read once at the start of a busy handler (see `begin`),
    /// until its `finish_turn`.
    now: std::cell::Cell<Option<(u64, chrono::DateTime<chrono::Utc>, i64)>>,
    /// Running jobs whose signal fired, by slot (see [`Stopping`]).
    stopping: HashMap<u32, Stopping>,
    /// Where workers run their handlers unless told otherwise.
    placement: Placement,
    /// Pings worker threads and reports those that do not answer.
    thread_watch: threads::ThreadWatch,
    /// Stays awake a moment for worker threads' reports.
    answer_spin: threads::AnswerSpin,
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

/// How long after a signalled run's grace period the scheduler decides
/// the job without its worker's report: the worker reports first unless
/// its thread is blocked.
const GRACE_MARGIN: Duration = Duration::from_millis(100);

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
    /// Jobs producers created, waiting to be taken in.
    pub(crate) new_jobs: Arc<NewJobs>,
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
            new_jobs,
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
            keeper: Keeper::new(persistence, retention.keeps_completed()),
            result_waiters: HashMap::default(),
            draining: None,
            pruning: PruneSchedule::new(pruner, persistence.in_process()),
            rescuer,
            shared,
            node_self,
            node,
            me: None,
            sent,
            new_jobs,
            taken_in: Vec::new(),
            continuing: false,
            reports: Vec::new(),
            spare_runs: Vec::new(),
            letters: dead_letters::Outbox::default(),
            uniques: unique::Uniques::default(),
            flow_wake: None,
            flow_wake_armed: false,
            claim_after_flush: false,
            claim_now: false,
            flow_credits_marked: 0,
            flow_credits: flow::Credits::default(),
            now: Default::default(),
            stopping: HashMap::new(),
            placement,
            thread_watch: threads::ThreadWatch::default(),
            answer_spin: threads::AnswerSpin::default(),
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
        if let Some(e) = self.jobs.get_mut(slot) {
            self.keeper.record(e, &mut self.journal, logs);
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
        let created_implied = origin == Origin::New && self.keeper.implies_created_line(&job.logs);
        let slot = self.jobs.insert(HeldJob::new(job), task);
        if created_implied {
            if let Some(e) = self.jobs.get_mut(slot) {
                e.job.created_implied = true;
            }
        }
        if origin == Origin::Kicked {
            if let Some(e) = self.jobs.get_mut(slot) {
                self.keeper.kicked(e, &mut self.journal, logs);
            }
            self.emit_slot(slot, JobEventKind::Kicked);
        } else if !logs.is_empty() {
            self.record(slot, logs);
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
        self.spin_for_reports(ctx);
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
        if done
            && self.keeper.holds_only_copy()
            && self.draining.as_ref().is_some_and(|d| !d.handed_over)
        {
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
        // Jobs a stopped predecessor had not taken in yet (its message
        // was lost with its mailbox).
        ctx.notify(TakeNewJobs);
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
