//! The supervisor actor: owns the schedule of every pending job this process
//! is responsible for, hands ready jobs to workers, applies outcomes, and
//! records every state change in the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::ready::{ReadyKey, ReadySet};
use super::wheel::{TimerKey, Wheel};
use super::worker::{Dispatch, Finished, Outcome, Report, Run, Stop, Worker};
use crate::context::RunInfo;
use crate::job::{Job, JobId, JobResult, JobStatus};
use crate::store::{JobUpdate, Store};
use crate::task::TaskDef;

/// What a wheel entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    /// A scheduled or retrying job's `run_at`.
    Due,
    /// A ready job's `expires_at`.
    Expire,
    /// A running job's timeout.
    Deadline,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    slot: u32,
    generation: u32,
    kind: TimerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the wheel, waiting for run_at (status scheduled or retrying).
    Waiting,
    /// In its tag's ready set, or parked on its task.
    Ready,
    /// Handed to a worker.
    Running { worker: usize },
}

#[derive(Debug)]
struct Entry {
    job: Job,
    generation: u32,
    task: u32,
    state: State,
    /// The ready-set sequence number of its latest push.
    seq: u64,
    timer: Option<TimerKey>,
    cancel: Option<CancellationToken>,
}

#[derive(Debug, Default)]
struct Slab {
    entries: Vec<Option<Entry>>,
    generations: Vec<u32>,
    free: Vec<u32>,
}

impl Slab {
    fn insert(&mut self, job: Job, task: u32) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(None);
                self.generations.push(0);
                (self.entries.len() - 1) as u32
            }
        };
        let generation = self.generations[slot as usize];
        self.entries[slot as usize] = Some(Entry {
            job,
            generation,
            task,
            state: State::Ready,
            seq: 0,
            timer: None,
            cancel: None,
        });
        slot
    }

    fn get(&self, slot: u32) -> Option<&Entry> {
        self.entries.get(slot as usize).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, slot: u32) -> Option<&mut Entry> {
        self.entries.get_mut(slot as usize).and_then(Option::as_mut)
    }

    fn remove(&mut self, slot: u32) -> Option<Entry> {
        let entry = self.entries.get_mut(slot as usize)?.take()?;
        let generation = &mut self.generations[slot as usize];
        *generation = generation.wrapping_add(1);
        self.free.push(slot);
        Some(entry)
    }
}

#[derive(Debug)]
struct TaskSlot {
    def: Option<Arc<TaskDef>>,
    tag: Option<u32>,
    suspended: bool,
    /// Ready jobs held back: the task is not defined here, or suspended.
    parked: Vec<(u32, u32)>,
}

#[derive(Debug)]
struct WorkerSlot {
    addr: Addr<Worker>,
    tags: Vec<u32>,
    capacity: usize,
    in_flight: usize,
    outbox: Vec<Dispatch>,
    stopped: bool,
}

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

pub(crate) struct Supervisor {
    clock: Clock,
    store: Arc<dyn Store>,
    wheel: Wheel<Timer>,
    jobs: Slab,
    by_id: HashMap<JobId, u32>,
    task_index: HashMap<Arc<str>, u32>,
    tasks: Vec<TaskSlot>,
    tag_index: HashMap<String, u32>,
    tags: Vec<ReadySet>,
    workers: Vec<WorkerSlot>,
    seq: u64,
    fired: Vec<Timer>,
    timer: Option<(SpawnHandle, u64)>,
    writes: Vec<JobUpdate>,
    flushing: bool,
    flush_retry: Duration,
    barrier_next: Vec<oneshot::Sender<()>>,
    barrier_in_flight: Vec<oneshot::Sender<()>>,
    result_waiters: HashMap<JobId, Vec<oneshot::Sender<JobResult>>>,
    draining: Option<Drain>,
}

struct Drain {
    reply: Option<oneshot::Sender<ShutdownReport>>,
    finished: usize,
    aborted: Vec<JobId>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("pending", &self.by_id.len())
            .field("timers", &self.wheel.len())
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    pub(crate) fn new(clock: Clock, store: Arc<dyn Store>) -> Self {
        Supervisor {
            clock,
            store,
            wheel: Wheel::new(),
            jobs: Slab::default(),
            by_id: HashMap::new(),
            task_index: HashMap::new(),
            tasks: Vec::new(),
            tag_index: HashMap::new(),
            tags: Vec::new(),
            workers: Vec::new(),
            seq: 0,
            fired: Vec::new(),
            timer: None,
            writes: Vec::new(),
            flushing: false,
            flush_retry: Duration::from_millis(50),
            barrier_next: Vec::new(),
            barrier_in_flight: Vec::new(),
            result_waiters: HashMap::new(),
            draining: None,
        }
    }

    fn task_slot(&mut self, name: &Arc<str>) -> u32 {
        if let Some(&i) = self.task_index.get(name) {
            return i;
        }
        let i = self.tasks.len() as u32;
        self.tasks.push(TaskSlot {
            def: None,
            tag: None,
            suspended: false,
            parked: Vec::new(),
        });
        self.task_index.insert(name.clone(), i);
        i
    }

    fn tag_slot(&mut self, tag: &str) -> u32 {
        if let Some(&i) = self.tag_index.get(tag) {
            return i;
        }
        let i = self.tags.len() as u32;
        self.tags.push(ReadySet::default());
        self.tag_index.insert(tag.to_owned(), i);
        i
    }

    fn record(&mut self, slot: u32) {
        if let Some(e) = self.jobs.get(slot) {
            self.writes.push(JobUpdate::of(&e.job, Vec::new()));
        }
    }

    fn set_timer(&mut self, slot: u32, when: u64, kind: TimerKind, now: u64) -> bool {
        let Some(e) = self.jobs.get_mut(slot) else {
            return false;
        };
        if let Some(old) = e.timer.take() {
            self.wheel.cancel(old);
        }
        if when <= now {
            return false;
        }
        let timer = Timer {
            slot,
            generation: e.generation,
            kind,
        };
        match self.wheel.insert(when, timer) {
            Ok(key) => {
                e.timer = Some(key);
                true
            }
            Err(_) => false,
        }
    }

    fn clear_timer(&mut self, slot: u32) {
        if let Some(e) = self.jobs.get_mut(slot) {
            if let Some(key) = e.timer.take() {
                self.wheel.cancel(key);
            }
        }
    }

    /// Takes in a job this process is responsible for.
    fn admit(&mut self, mut job: Job, now: u64) {
        if self.by_id.contains_key(&job.id) || job.status.is_final() {
            return;
        }
        let recovered = job.status == JobStatus::Running;
        if recovered {
            // Cut off by a crash: that attempt counts, the job runs again.
            job.status = JobStatus::Ready;
            job.last_error = Some("the process running this job stopped before it finished".into());
        }
        let task = self.task_slot(&job.task);
        let id = job.id;
        let slot = self.jobs.insert(job, task);
        self.by_id.insert(id, slot);
        if recovered {
            self.record(slot);
        }
        self.schedule(slot, now);
    }

    /// Puts a job in the wheel until its run_at, or makes it ready.
    fn schedule(&mut self, slot: u32, now: u64) {
        let Some(e) = self.jobs.get(slot) else { return };
        let when = self.clock.tick_for(e.job.run_at);
        if self.set_timer(slot, when, TimerKind::Due, now) {
            let e = self.jobs.get_mut(slot).expect("present");
            e.state = State::Waiting;
            if e.job.status == JobStatus::Ready {
                e.job.status = JobStatus::Scheduled;
            }
        } else {
            self.make_ready(slot, now);
        }
    }

    fn make_ready(&mut self, slot: u32, now: u64) {
        let Some(e) = self.jobs.get_mut(slot) else { return };
        if let Some(expires) = e.job.expires_at {
            let tick = self.clock.tick_for(expires);
            if tick <= now {
                self.finalize(slot, JobStatus::Expired, None, Some("not started before it expired".into()));
                return;
            }
        }
        let e = self.jobs.get_mut(slot).expect("present");
        let changed = e.job.status != JobStatus::Ready;
        e.job.status = JobStatus::Ready;
        e.state = State::Ready;
        let expires = e.job.expires_at;
        if changed {
            self.record(slot);
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
        let Some(e) = self.jobs.get_mut(slot) else { return };
        e.seq = seq;
        let task = &mut self.tasks[e.task as usize];
        match task.tag {
            Some(tag) if !task.suspended => self.tags[tag as usize].push(ReadyKey {
                priority: e.job.priority,
                due: self.clock.tick_for(e.job.run_at),
                seq,
                slot,
            }),
            _ => task.parked.push((slot, e.generation)),
        }
    }

    /// Removes a job for good: records its final state and answers waiters.
    fn finalize(&mut self, slot: u32, status: JobStatus, value: Option<serde_json::Value>, message: Option<String>) {
        self.clear_timer(slot);
        let Some(mut e) = self.jobs.remove(slot) else { return };
        debug_assert!(status.is_final());
        self.by_id.remove(&e.job.id);
        e.job.status = status;
        e.job.result = value;
        e.job.last_error = message;
        e.job.finished_at = Some(self.clock.now_utc());
        self.writes.push(JobUpdate::of(&e.job, Vec::new()));
        if !self.result_waiters.is_empty() {
            if let Some(waiters) = self.result_waiters.remove(&e.job.id) {
                let result = e.job.outcome().expect("final");
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        }
    }

    /// A transient failure: retry after backoff, or bury when out of attempts.
    fn fail_transient(&mut self, slot: u32, message: String, retry_after: Option<Duration>, now: u64) {
        let Some(e) = self.jobs.get_mut(slot) else { return };
        let def = self.tasks[e.task as usize].def.clone();
        let max = e
            .job
            .max_attempts
            .or_else(|| def.as_ref().map(|d| d.retry.max_attempts))
            .unwrap_or(1);
        if e.job.attempts >= max {
            let message = format!("{message} (attempt {} of {max}, no attempts left)", e.job.attempts);
            self.finalize(slot, JobStatus::Buried, None, Some(message));
            return;
        }
        let delay = retry_after.unwrap_or_else(|| {
            def.map(|d| d.retry.backoff_jittered(e.job.attempts, fastrand::f64()))
                .unwrap_or_default()
        });
        let run_at = self.clock.now_utc() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        e.job.status = JobStatus::Retrying;
        e.job.run_at = run_at;
        e.job.last_error = Some(message);
        e.state = State::Waiting;
        e.cancel = None;
        self.record(slot);
        let when = self.clock.tick_for(run_at);
        if !self.set_timer(slot, when, TimerKind::Due, now) {
            self.make_ready(slot, now);
        }
    }

    /// Hands ready jobs to workers with free slots, best job first, each
    /// worker's tags in its order.
    fn dispatch(&mut self) {
        if self.draining.is_some() {
            return;
        }
        let now = self.clock.now_ms();
        for w in 0..self.workers.len() {
            while self.workers[w].in_flight < self.workers[w].capacity && !self.workers[w].stopped {
                let Some(slot) = self.next_for(w, now) else { break };
                self.start(w, slot, now);
            }
            if !self.workers[w].outbox.is_empty() {
                let batch = std::mem::take(&mut self.workers[w].outbox);
                self.workers[w].addr.do_send(Run(batch));
            }
        }
    }

    fn next_for(&mut self, w: usize, now: u64) -> Option<u32> {
        for i in 0..self.workers[w].tags.len() {
            let tag = self.workers[w].tags[i] as usize;
            while let Some(key) = self.tags[tag].pop() {
                let Some(e) = self.jobs.get(key.slot) else { continue };
                if e.seq != key.seq || e.state != State::Ready {
                    continue;
                }
                let task = &self.tasks[e.task as usize];
                if task.suspended || task.tag != Some(tag as u32) {
                    self.enqueue(key.slot);
                    continue;
                }
                if e.job.expires_at.is_some_and(|x| self.clock.tick_for(x) <= now) {
                    self.finalize(key.slot, JobStatus::Expired, None, Some("not started before it expired".into()));
                    continue;
                }
                return Some(key.slot);
            }
        }
        None
    }

    fn start(&mut self, w: usize, slot: u32, now: u64) {
        let token = CancellationToken::new();
        let e = self.jobs.get_mut(slot).expect("next_for returned a live slot");
        let def = self.tasks[e.task as usize]
            .def
            .clone()
            .expect("only routed jobs are ready in a tag");
        e.job.attempts += 1;
        e.job.status = JobStatus::Running;
        e.state = State::Running { worker: w };
        e.cancel = Some(token.clone());
        let dispatch = Dispatch {
            slot,
            action: def.action.clone(),
            info: RunInfo {
                id: e.job.id,
                task: e.job.task.clone(),
                attempt: e.job.attempts,
                reference: e.job.reference.clone(),
                cancel: token,
            },
            payload: e.job.payload.clone(),
        };
        if let Some(timeout) = def.timeout {
            let when = now + (timeout.as_millis() as u64).max(1);
            self.set_timer(slot, when, TimerKind::Deadline, now);
        } else {
            self.clear_timer(slot);
        }
        self.record(slot);
        let worker = &mut self.workers[w];
        worker.in_flight += 1;
        worker.outbox.push(dispatch);
    }

    fn on_report(&mut self, worker: usize, report: Report, now: u64) {
        if let Some(w) = self.workers.get_mut(worker) {
            w.in_flight -= 1;
        }
        let Some(e) = self.jobs.get(report.slot) else { return };
        if e.state != (State::Running { worker }) || e.job.attempts != report.attempt {
            return; // cancelled or timed out earlier: already decided
        }
        if let Some(d) = self.draining.as_mut() {
            d.finished += 1;
        }
        match report.outcome {
            Outcome::Completed(value) => self.finalize(report.slot, JobStatus::Completed, value, None),
            Outcome::Failed(err) => match err.kind {
                crate::error::JobErrorKind::Fatal => {
                    self.finalize(report.slot, JobStatus::Buried, None, Some(err.message))
                }
                crate::error::JobErrorKind::Transient => self.fail_transient(report.slot, err.message, None, now),
                crate::error::JobErrorKind::RetryAfter(d) => {
                    self.fail_transient(report.slot, err.message, Some(d), now)
                }
            },
            Outcome::Panicked(msg) => self.fail_transient(report.slot, format!("the handler panicked: {msg}"), None, now),
            Outcome::Aborted => {
                // Only the supervisor fires the signal, and it decides first.
                tracing::debug!(slot = report.slot, "aborted run reported without a decision");
            }
        }
    }

    fn on_timers(&mut self, now: u64) {
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.poll(now, &mut fired);
        for timer in fired.drain(..) {
            let Some(e) = self.jobs.get_mut(timer.slot) else { continue };
            if e.generation != timer.generation {
                continue;
            }
            e.timer = None;
            match (timer.kind, e.state) {
                (TimerKind::Due, State::Waiting) => self.make_ready(timer.slot, now),
                (TimerKind::Expire, State::Ready) => {
                    self.finalize(timer.slot, JobStatus::Expired, None, Some("not started before it expired".into()))
                }
                (TimerKind::Deadline, State::Running { .. }) => {
                    if let Some(token) = e.cancel.take() {
                        token.cancel();
                    }
                    let timeout = self.tasks[e.task as usize].def.as_ref().and_then(|d| d.timeout);
                    let message = format!("timed out after {:?}", timeout.unwrap_or_default());
                    self.fail_transient(timer.slot, message, None, now);
                }
                _ => {}
            }
        }
        self.fired = fired;
    }

    /// Runs after every message: dispatch, flush writes, arm the timer.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        self.dispatch();
        self.flush(ctx);
        self.arm(ctx);
        self.check_drained(ctx);
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        let Some(next) = self.wheel.next_expiration() else { return };
        if let Some((handle, at)) = self.timer {
            if at <= next {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = self
            .clock
            .instant_for(next)
            .saturating_duration_since(tokio::time::Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            let now = act.clock.now_ms();
            act.on_timers(now);
            act.settle(ctx);
        });
        self.timer = Some((handle, next));
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing {
            return;
        }
        if self.writes.is_empty() {
            for b in self.barrier_next.drain(..) {
                let _ = b.send(());
            }
            return;
        }
        self.flushing = true;
        let batch = std::mem::take(&mut self.writes);
        self.barrier_in_flight = std::mem::take(&mut self.barrier_next);
        let store = self.store.clone();
        let fut = async move {
            let result = store.jobs_update(&batch).await;
            (result, batch)
        };
        ctx.spawn(fut.into_actor(self).map(|(result, batch), act, ctx| {
            act.flushing = false;
            match result {
                Ok(()) => {
                    act.flush_retry = Duration::from_millis(50);
                    for b in act.barrier_in_flight.drain(..) {
                        let _ = b.send(());
                    }
                    act.flush(ctx);
                    act.check_drained(ctx);
                }
                Err(err) => {
                    tracing::error!(error = %err, updates = batch.len(), "recording job state failed; retrying");
                    let mut retry = batch;
                    retry.append(&mut act.writes);
                    act.writes = retry;
                    let mut barrier = std::mem::take(&mut act.barrier_in_flight);
                    barrier.append(&mut act.barrier_next);
                    act.barrier_next = barrier;
                    act.flushing = true;
                    let wait = act.flush_retry;
                    act.flush_retry = (act.flush_retry * 2).min(Duration::from_secs(5));
                    ctx.run_later(wait, |act, ctx| {
                        act.flushing = false;
                        act.flush(ctx);
                    });
                }
            }
        }));
    }

    fn in_flight(&self) -> usize {
        self.workers.iter().map(|w| w.in_flight).sum()
    }

    fn check_drained(&mut self, ctx: &mut Context<Self>) {
        let done = match &self.draining {
            Some(d) => d.reply.is_some() && self.in_flight() == 0 && self.writes.is_empty() && !self.flushing,
            None => false,
        };
        if done {
            let mut drain = self.draining.take().expect("checked");
            let report = ShutdownReport {
                finished_while_draining: drain.finished,
                aborted: std::mem::take(&mut drain.aborted),
                left_pending: self.by_id.len(),
            };
            for w in &self.workers {
                w.addr.do_send(Stop);
            }
            if let Some(reply) = drain.reply.take() {
                let _ = reply.send(report);
            }
            ctx.stop();
        }
    }

    /// At the shutdown deadline: abort what still runs.
    fn abort_running(&mut self) {
        let running: Vec<u32> = self
            .by_id
            .values()
            .copied()
            .filter(|&s| matches!(self.jobs.get(s).map(|e| e.state), Some(State::Running { .. })))
            .collect();
        for slot in running {
            self.clear_timer(slot);
            let Some(e) = self.jobs.get_mut(slot) else { continue };
            if let Some(token) = e.cancel.take() {
                token.cancel();
            }
            e.job.status = JobStatus::Ready;
            e.job.last_error = Some("aborted at shutdown".into());
            e.state = State::Ready;
            let id = e.job.id;
            self.record(slot);
            if let Some(d) = self.draining.as_mut() {
                d.aborted.push(id);
            }
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

/// Jobs to take in (new, loaded at start, or kicked).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Admit {
    pub(crate) jobs: Vec<Job>,
    /// Record their current state (kicked jobs): the store has an older one.
    pub(crate) record: bool,
}

impl Handler<Admit> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: Admit, ctx: &mut Self::Context) {
        let now = self.clock.now_ms();
        for job in msg.jobs {
            let id = job.id;
            self.admit(job, now);
            if msg.record {
                if let Some(&slot) = self.by_id.get(&id) {
                    self.record(slot);
                }
            }
        }
        self.settle(ctx);
    }
}

/// A task was defined in this process: route its jobs.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DefineTask(pub(crate) Arc<TaskDef>);

impl Handler<DefineTask> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: DefineTask, ctx: &mut Self::Context) {
        let def = msg.0;
        let tag = self.tag_slot(&def.tag);
        let task = self.task_slot(&def.name);
        let slot = &mut self.tasks[task as usize];
        slot.def = Some(def);
        slot.tag = Some(tag);
        if !slot.suspended {
            let parked = std::mem::take(&mut slot.parked);
            self.requeue(parked);
        }
        self.settle(ctx);
    }
}

impl Supervisor {
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
}

/// Starts a worker serving `tags`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StartWorker {
    pub(crate) index: usize,
    pub(crate) tags: Vec<String>,
    pub(crate) concurrency: usize,
}

impl Handler<StartWorker> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: StartWorker, ctx: &mut Self::Context) {
        let tags = msg.tags.iter().map(|t| self.tag_slot(t)).collect();
        let addr = Worker::new(msg.index, ctx.address()).start();
        debug_assert_eq!(msg.index, self.workers.len());
        self.workers.push(WorkerSlot {
            addr,
            tags,
            capacity: msg.concurrency.max(1),
            in_flight: 0,
            outbox: Vec::new(),
            stopped: false,
        });
        self.settle(ctx);
    }
}

impl Handler<Finished> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        let now = self.clock.now_ms();
        for report in msg.reports {
            self.on_report(msg.worker, report, now);
        }
        self.settle(ctx);
    }
}

/// What [`Cancel`] found.
#[derive(Debug)]
pub(crate) enum CancelReply {
    Cancelled,
    /// Not pending in this process: look in the store.
    NotHere,
}

/// Cancels a pending job, signalling it if it runs.
#[derive(Message)]
#[rtype(result = "CancelReply")]
pub(crate) struct Cancel(pub(crate) JobId);

impl Handler<Cancel> for Supervisor {
    type Result = MessageResult<Cancel>;
    fn handle(&mut self, msg: Cancel, ctx: &mut Self::Context) -> Self::Result {
        let Some(&slot) = self.by_id.get(&msg.0) else {
            return MessageResult(CancelReply::NotHere);
        };
        if let Some(token) = self.jobs.get_mut(slot).and_then(|e| e.cancel.take()) {
            token.cancel();
        }
        self.finalize(slot, JobStatus::Cancelled, None, Some("cancelled".into()));
        self.settle(ctx);
        MessageResult(CancelReply::Cancelled)
    }
}

/// What [`WaitResult`] found.
#[derive(Debug)]
pub(crate) enum WaitReply {
    /// Pending here: the result arrives on this channel.
    Pending(oneshot::Receiver<JobResult>),
    /// Not pending here; the store has its state once this resolves.
    Stored(oneshot::Receiver<()>),
}

/// Asks for a job's result.
#[derive(Message)]
#[rtype(result = "WaitReply")]
pub(crate) struct WaitResult(pub(crate) JobId);

impl Handler<WaitResult> for Supervisor {
    type Result = MessageResult<WaitResult>;
    fn handle(&mut self, msg: WaitResult, ctx: &mut Self::Context) -> Self::Result {
        if self.by_id.contains_key(&msg.0) {
            let (tx, rx) = oneshot::channel();
            self.result_waiters.entry(msg.0).or_default().push(tx);
            return MessageResult(WaitReply::Pending(rx));
        }
        let (tx, rx) = oneshot::channel();
        self.barrier_next.push(tx);
        self.flush(ctx);
        MessageResult(WaitReply::Stored(rx))
    }
}

/// Waits until every state change made so far is in the store.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub(crate) struct Barrier;

impl Handler<Barrier> for Supervisor {
    type Result = MessageResult<Barrier>;
    fn handle(&mut self, _: Barrier, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.barrier_next.push(tx);
        self.flush(ctx);
        MessageResult(rx)
    }
}

/// Stops dispatching, waits for running jobs up to a deadline, then stops.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<ShutdownReport>")]
pub(crate) struct Shutdown {
    pub(crate) grace: Duration,
}

impl Handler<Shutdown> for Supervisor {
    type Result = MessageResult<Shutdown>;
    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.draining.is_some() {
            // Already draining: the first caller gets the report.
            drop(tx);
            return MessageResult(rx);
        }
        self.draining = Some(Drain {
            reply: Some(tx),
            finished: 0,
            aborted: Vec::new(),
        });
        ctx.run_later(msg.grace, |act, ctx| {
            act.abort_running();
            for w in &mut act.workers {
                // Their aborted runs will not be reported back in time to matter.
                w.in_flight = 0;
                w.stopped = true;
            }
            act.settle(ctx);
        });
        self.settle(ctx);
        MessageResult(rx)
    }
}
