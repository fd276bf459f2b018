//! The messages the queue handle and the workers send the scheduler.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{Scheduler, WorkerSlot};
use crate::event::QueueEvent;
use crate::job::{Job, JobId, JobResult, JobStatus};
use crate::reports::ShutdownReport;
use crate::scheduler::worker::Finished;
use crate::store::{JobQuery, Order, StatusCount};
use crate::task::TaskDef;

/// Where admitted jobs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Just created by a producer.
    New,
    /// Loaded from the store at start.
    Loaded,
    /// A buried job kicked back to ready.
    Kicked,
    /// Claimed from a shared store.
    Claimed,
    /// Held by a scheduler that stopped, taken over by its successor.
    Restarted,
}

/// Jobs to take in.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Admit {
    pub(crate) jobs: Vec<Job>,
    pub(crate) origin: Origin,
}

impl Handler<Admit> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Admit, ctx: &mut Self::Context) {
        let now = self.begin();
        for job in msg.jobs {
            self.admit(job, msg.origin, now);
        }
        self.finish_turn(ctx);
    }
}

/// A task was defined in this process: route its jobs.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DefineTask(pub(crate) Arc<TaskDef>);

impl Handler<DefineTask> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: DefineTask, ctx: &mut Self::Context) {
        let def = msg.0;
        self.install_task(def.clone());
        self.bus.queue(QueueEvent::TaskDefined {
            task: def.name.to_string(),
            tag: def.tag.clone(),
        });
        self.want_claim(ctx);
        self.finish_turn(ctx);
    }
}

/// Starts a worker serving `tags`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StartWorker {
    pub(crate) tags: Vec<String>,
    pub(crate) concurrency: usize,
    /// Where its handlers run; `None` for the queue's default.
    pub(crate) placement: Option<super::Placement>,
}

impl Scheduler {
    /// Routes the jobs of task `def` to its tag from now on.
    pub(super) fn install_task(&mut self, def: Arc<TaskDef>) {
        let parked = self.routes.install(def);
        self.requeue(parked);
    }

    pub(super) fn add_worker(
        &mut self,
        tags: Vec<String>,
        concurrency: usize,
        placement: super::Placement,
        ctx: &mut Context<Self>,
    ) -> usize {
        let index = self.workers.len();
        let tag_slots = tags.iter().map(|t| self.routes.tag_slot(t)).collect();
        let place =
            super::threads::Place::start(index, placement, ctx.address(), self.clock.now_utc());
        if place.has_threads() {
            self.start_thread_watch(ctx);
        }
        self.workers.push(WorkerSlot {
            place,
            placement,
            tags: tag_slots,
            tag_names: tags,
            capacity: concurrency.max(1),
            in_flight: 0,
            outbox: Vec::new(),
            stopped: false,
            idle: false,
            batch: None,
        });
        index
    }
}

impl Handler<StartWorker> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: StartWorker, ctx: &mut Self::Context) {
        let placement = msg.placement.unwrap_or(self.placement);
        self.add_worker(msg.tags, msg.concurrency, placement, ctx);
        self.want_claim(ctx);
        // The node's row shows the new tags at once, not at the next beat.
        self.node_tick(ctx);
        self.finish_turn(ctx);
    }
}

impl Handler<Finished> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        self.answer_spin.spin.answered();
        let now = self.begin();
        if let Some(w) = self.workers.get_mut(msg.worker) {
            w.place
                .finished(msg.thread, msg.busy, msg.reports.iter().map(|r| r.slot));
        }
        for report in msg.reports {
            self.on_report(msg.worker, report, now);
        }
        self.after_capacity_freed(ctx);
        self.finish_turn(ctx);
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

impl Handler<Cancel> for Scheduler {
    type Result = MessageResult<Cancel>;
    fn handle(&mut self, msg: Cancel, ctx: &mut Self::Context) -> Self::Result {
        let Some(slot) = self.jobs.slot_of(&msg.0) else {
            return MessageResult(CancelReply::NotHere);
        };
        let now = self.begin();
        self.cancel_slot(slot, now);
        self.finish_turn(ctx);
        MessageResult(CancelReply::Cancelled)
    }
}

/// What [`WaitResult`] found.
#[derive(Debug)]
pub(crate) enum WaitReply {
    /// Pending here: the result arrives on this channel.
    Pending(oneshot::Receiver<JobResult>),
    /// Not pending here; the store has its state once this resolves
    /// (waiting through failed writes: a result is worth the wait).
    Stored(oneshot::Receiver<()>),
}

/// Asks for a job's result.
#[derive(Message)]
#[rtype(result = "WaitReply")]
pub(crate) struct WaitResult(pub(crate) JobId);

impl Handler<WaitResult> for Scheduler {
    type Result = MessageResult<WaitResult>;
    fn handle(&mut self, msg: WaitResult, ctx: &mut Self::Context) -> Self::Result {
        if self.jobs.contains(&msg.0) {
            let (tx, rx) = oneshot::channel();
            self.result_waiters.entry(msg.0).or_default().push(tx);
            return MessageResult(WaitReply::Pending(rx));
        }
        let (tx, rx) = oneshot::channel();
        self.journal.wait(super::Waiter::Barrier(tx));
        self.flush(ctx);
        MessageResult(WaitReply::Stored(rx))
    }
}

/// Waits until every state change made so far is in the store, or until
/// storing them fails (the store's error: a reader fails promptly rather
/// than wait for the store to recover).
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Result<(), crate::store::StoreError>>")]
pub(crate) struct Barrier;

impl Handler<Barrier> for Scheduler {
    type Result = MessageResult<Barrier>;
    fn handle(&mut self, _: Barrier, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.journal.wait(super::Waiter::Reader(tx));
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

impl Handler<Shutdown> for Scheduler {
    type Result = MessageResult<Shutdown>;
    fn handle(&mut self, msg: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.draining.is_some() {
            // Already draining: the first caller gets the report.
            drop(tx);
            return MessageResult(rx);
        }
        self.draining = Some(super::Drain {
            reply: Some(tx),
            finished: 0,
            aborted: Vec::new(),
            handed_over: false,
        });
        if self.is_shared() {
            self.release_waiting();
        }
        ctx.run_later(msg.grace, |act, ctx| {
            act.abort_running();
            for w in &mut act.workers {
                // Their aborted runs were decided above; do not wait for them.
                w.in_flight = 0;
                w.stopped = true;
            }
            act.finish_turn(ctx);
        });
        self.finish_turn(ctx);
        MessageResult(rx)
    }
}

/// A pending job held here (on an in-process store, the only copy).
#[derive(Message)]
#[rtype(result = "Option<Job>")]
pub(crate) struct PendingJob(pub(crate) JobId);

impl Handler<PendingJob> for Scheduler {
    type Result = MessageResult<PendingJob>;
    fn handle(&mut self, msg: PendingJob, _: &mut Self::Context) -> Self::Result {
        let job = self
            .jobs
            .slot_of(&msg.0)
            .and_then(|slot| self.jobs.get(slot))
            .map(|e| e.job.to_job(&self.routes.tasks[e.task as usize].name));
        MessageResult(job)
    }
}

/// The pending jobs held here that match a query, in its order, the first
/// `offset + limit` of them (the caller merges them with the store's).
#[derive(Message)]
#[rtype(result = "Vec<Job>")]
pub(crate) struct PendingJobs(pub(crate) JobQuery);

impl Handler<PendingJobs> for Scheduler {
    type Result = MessageResult<PendingJobs>;
    fn handle(&mut self, msg: PendingJobs, _: &mut Self::Context) -> Self::Result {
        let query = msg.0;
        let keep = query.offset.saturating_add(query.limit);
        // The id index reads in id order: the order listings use.
        let matching = self
            .jobs
            .slots()
            .filter_map(|slot| self.jobs.get(slot))
            .filter(|e| {
                e.job
                    .matches(&self.routes.tasks[e.task as usize].name, &query)
            });
        let found: Vec<&super::Entry> = match query.order {
            // The first `keep` matches are the page's: stop there, so the
            // oldest ready job of a million held (what the metrics sampler
            // asks for) costs a few steps, not a pass over every job.
            Order::OldestFirst => matching.take(keep).collect(),
            Order::NewestFirst => {
                let mut all: Vec<&super::Entry> = matching.collect();
                let skip = all.len().saturating_sub(keep);
                all.drain(..skip);
                all.reverse();
                all
            }
        };
        MessageResult(
            found
                .into_iter()
                .map(|e| e.job.to_job(&self.routes.tasks[e.task as usize].name))
                .collect(),
        )
    }
}

/// Counts, by task and status, of the jobs held here and not in the store
/// yet: pending ones, and final ones on their way to an in-process store.
/// With them comes the number of store writes completed so far (see
/// [`StoredWrites`]).
#[derive(Message)]
#[rtype(result = "(Vec<StatusCount>, u64)")]
pub(crate) struct PendingCounts;

impl Handler<PendingCounts> for Scheduler {
    type Result = MessageResult<PendingCounts>;
    fn handle(&mut self, _: PendingCounts, _: &mut Self::Context) -> Self::Result {
        // Kept as jobs change (see `counts.rs`): a few numbers per task,
        // however many jobs are held.
        #[cfg(debug_assertions)]
        if let Some(mismatch) = self.counts_mismatch() {
            panic!("{mismatch}");
        }
        let mut counts: std::collections::HashMap<(&str, JobStatus), u64> =
            std::collections::HashMap::new();
        for (task, status, n) in self.jobs.counts().iter() {
            *counts
                .entry((&self.routes.tasks[task as usize].name, status))
                .or_default() += n;
        }
        for finals in self.journal.final_counts() {
            for (task, status, n) in finals.iter() {
                *counts.entry((task, status)).or_default() += n;
            }
        }
        MessageResult((
            counts
                .into_iter()
                .map(|((task, status), count)| StatusCount {
                    task: task.to_owned(),
                    status,
                    count,
                })
                .collect(),
            self.journal.stored(),
        ))
    }
}

impl Scheduler {
    /// How the counts kept as jobs change differ from a count of the jobs
    /// one by one, if they do (checked in tests and debug builds).
    #[cfg(any(test, debug_assertions))]
    pub(super) fn counts_mismatch(&self) -> Option<String> {
        // Ready jobs are counted by status (see `unserved.rs`): a held job
        // is in state ready exactly when its status is.
        for slot in self.jobs.slots() {
            if let Some(e) = self.jobs.get(slot) {
                if (e.state == super::State::Ready) != (e.job.status == JobStatus::Ready) {
                    return Some(format!(
                        "job {} is in state {:?} with status {:?}",
                        e.job.id, e.state, e.job.status
                    ));
                }
            }
        }
        let walked = self.jobs.walk_counts();
        if !self.jobs.counts().same_as(&walked) {
            return Some(format!(
                "held counts {:?} differ from a walk {walked:?}",
                self.jobs.counts()
            ));
        }
        let walked = self.journal.walk_final_counts();
        let [queued, _] = self.journal.final_counts();
        (!queued.same_as(&walked))
            .then(|| format!("final record counts {queued:?} differ from a walk {walked:?}"))
    }
}

/// How many batches of writes the store has completed: a reader that
/// combines [`PendingCounts`] with the store's own counts knows they agree
/// when this did not change in between.
#[derive(Message)]
#[rtype(result = "u64")]
pub(crate) struct StoredWrites;

impl Handler<StoredWrites> for Scheduler {
    type Result = u64;
    fn handle(&mut self, _: StoredWrites, _: &mut Self::Context) -> u64 {
        self.journal.stored()
    }
}
