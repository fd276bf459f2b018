//! Dispatch: which ready job each worker takes next, and how a job
//! starts. The scheduler hands ready jobs to workers with free slots, best
//! job first, each worker's tags in its order; a job is started (its
//! attempt counted, its deadline set, its `started` line recorded) and
//! handed to the worker in batches.

use std::sync::Arc;
use std::task::Poll;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::threads;
use super::Placement;
use super::{Continue, Scheduler, State, TimerKind, EXPIRED};
use crate::context::{RunInfo, RunShared};
use crate::event::{JobEventKind, QueueEvent};
use crate::job::{JobStatus, LogLine};
use crate::scheduler::worker::{Dispatch, Report, RunningJob};

/// How many finished runs' shared state is kept for reuse.
const SPARE_RUNS: usize = 1024;

/// How many jobs that finish on their first poll one turn settles before
/// it yields (see `Scheduler::dispatch`).
const INLINE_BUDGET: usize = 256;

/// A worker that stops by itself: [`Queue::run_jobs`](crate::Queue::run_jobs).
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) budget: Option<usize>,
    pub(super) ran: usize,
    /// Wait for jobs that are not ready yet (until the time limit).
    pub(super) wait: bool,
    pub(super) time_up: bool,
    pub(super) nothing_ready: bool,
    pub(super) reply: Option<oneshot::Sender<usize>>,
}

#[derive(Debug)]
pub(super) struct WorkerSlot {
    /// Where its handlers run.
    pub(super) place: threads::Place,
    /// Where it was asked to run its handlers.
    pub(super) placement: Placement,
    pub(super) tags: Vec<u32>,
    pub(super) tag_names: Vec<String>,
    pub(super) capacity: usize,
    pub(super) in_flight: usize,
    pub(super) outbox: Vec<Dispatch>,
    pub(super) stopped: bool,
    /// The `empty` event was sent and no job arrived since.
    pub(super) idle: bool,
    pub(super) batch: Option<Batch>,
}

impl Scheduler {
    pub(super) fn recycle(&mut self, mut run: Arc<RunShared>) {
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
    pub(super) fn dispatch(&mut self, ctx: &mut Context<Self>) {
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
    pub(super) fn continue_after(&mut self, ctx: &mut Context<Self>, yield_first: bool) {
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

    pub(super) fn resume(&mut self, ctx: &mut Context<Self>) {
        self.continuing = false;
        self.begin();
        self.finish_turn(ctx);
    }

    /// Starts the jobs in worker `w`'s outbox, polling each once: returns
    /// the reports of those that finished, and sends the rest to the worker.
    pub(super) fn first_polls(&mut self, w: usize) -> Vec<Report> {
        let worker = &mut self.workers[w];
        if worker.outbox.is_empty() {
            return Vec::new();
        }
        worker.idle = false;
        if let threads::Place::Threads(threads) = &mut worker.place {
            // Its handlers run on its own threads: send, nothing to poll.
            if threads::send_out(threads, &mut worker.outbox) {
                self.answer_spin.handed_over();
            }
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

    pub(super) fn next_for(&mut self, w: usize, now: u64) -> Option<u32> {
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

    pub(super) fn start(&mut self, w: usize, slot: u32, now: u64) {
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
        if let Some(e) = self.jobs.get_mut(slot) {
            self.keeper.run_started(e, &mut self.journal, started);
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
}

impl WorkerSlot {
    pub(super) fn has_room(&self) -> bool {
        if self.stopped || self.in_flight >= self.capacity {
            return false;
        }
        match &self.batch {
            Some(b) => !b.time_up && b.budget != Some(0),
            None => true,
        }
    }
}
