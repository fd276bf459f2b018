//! Administrative messages: delete-matching, batch runs, middleware, and
//! the retention of completed jobs (suspensions are in `suspensions`).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use regex::Regex;
use tokio::sync::oneshot;

use super::{Batch, Scheduler};
use crate::config::Removed;
use crate::event::QueueEvent;
use crate::job::JobStatus;
use crate::middleware::Middleware;
use crate::store::StoreError;

impl Scheduler {
    /// Starts the pruner's loop, on its interval.
    pub(super) fn start_pruner(&mut self, ctx: &mut Context<Self>) {
        if let Some(every) = self.pruning.interval() {
            ctx.run_interval(every, |act, ctx| act.prune(ctx));
        }
    }

    /// Runs the pruner once, unless a run is under way: as a task of its
    /// own, which reports back with [`Pruned`], so the scheduler's turn
    /// never waits on it or runs longer for it.
    /// On a shared store only the leader prunes.
    pub(super) fn prune(&mut self, ctx: &mut Context<Self>) {
        if !self.leads() || self.pruning.interval().is_none() {
            return;
        }
        let Some((pruner, from)) = self.pruning.begin() else {
            return;
        };
        let now = self.clock.now_utc();
        let me = ctx.address();
        let (node, clock) = (self.node_self.clone(), self.clock);
        actix_rt::spawn(async move {
            let still_leads = move || node.leads(clock.now_utc());
            let result = pruner.run_from(now, from, still_leads).await;
            me.do_send(Pruned(result));
        });
    }

    pub(super) fn pruned(&self, result: Result<Removed, StoreError>) {
        match result {
            Ok(removed) => {
                if removed.completed > 0 {
                    tracing::debug!(removed = removed.completed, "pruned completed jobs");
                }
                if removed.buried > 0 {
                    // The dead set dropped jobs: never silently.
                    let retention = self.pruning.retention();
                    tracing::warn!(
                        removed = removed.buried,
                        max_count = ?retention.buried_max_count,
                        max_age = ?retention.buried_max_age,
                        "removed buried jobs past the dead set's cap or age"
                    );
                    self.bus.queue(QueueEvent::BuriedDropped {
                        count: removed.buried,
                        max_count: retention.buried_max_count,
                        max_age_ms: retention
                            .buried_max_age
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    });
                }
            }
            Err(err) => self.bus.queue(QueueEvent::Error {
                message: format!("pruning completed jobs failed: {err}"),
            }),
        }
    }

    /// Answers finished batch runs and stops their workers.
    pub(super) fn finish_batches(&mut self) {
        for w in &mut self.workers {
            let Some(b) = w.batch.as_mut() else { continue };
            if b.reply.is_none() {
                continue;
            }
            let out_of_work = b.time_up || b.budget == Some(0) || (!b.wait && b.nothing_ready);
            if out_of_work && w.in_flight == 0 {
                if let Some(reply) = b.reply.take() {
                    let _ = reply.send(b.ran);
                }
                w.stopped = true;
                w.place.stop();
            }
        }
    }
}

/// A pruner's run ended (see `Scheduler::prune`).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Pruned(Result<Removed, StoreError>);

impl Handler<Pruned> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Pruned, ctx: &mut Self::Context) {
        let again = self.pruning.finished(msg.0.as_ref().ok());
        self.pruned(msg.0);
        if again {
            // A run cut short for its time while jobs complete fast: the
            // next begins now, if this process still leads.
            self.prune(ctx);
        }
    }
}

/// Adds queue-wide middleware.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AddMiddleware(pub(crate) Arc<dyn Middleware>);

impl Handler<AddMiddleware> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: AddMiddleware, _: &mut Self::Context) {
        self.routes.middleware.push(msg.0);
        for task in 0..self.routes.tasks.len() as u32 {
            self.routes.rebuild_chain(task);
        }
    }
}

/// Cancels the queued (not running) jobs of a task whose payload matches.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct DeleteMatching {
    pub(crate) task: String,
    pub(crate) pattern: Regex,
}

impl Handler<DeleteMatching> for Scheduler {
    type Result = usize;
    fn handle(&mut self, msg: DeleteMatching, ctx: &mut Self::Context) -> usize {
        let doomed: Vec<u32> = self
            .jobs
            .slots()
            .filter(|&slot| {
                self.jobs.get(slot).is_some_and(|e| {
                    !e.state.is_running()
                        && *self.routes.tasks[e.task as usize].name == *msg.task
                        && msg.pattern.is_match(e.job.payload.as_str())
                })
            })
            .collect();
        for &slot in &doomed {
            self.finalize(
                slot,
                JobStatus::Cancelled,
                None,
                Some("deleted by delete_matching".into()),
                Vec::new(),
            );
        }
        self.finish_turn(ctx);
        doomed.len()
    }
}

/// Runs due jobs on a temporary worker until a count or time limit.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<usize>")]
pub(crate) struct RunJobs {
    pub(crate) tags: Vec<String>,
    pub(crate) count: Option<usize>,
    pub(crate) time: Option<Duration>,
}

impl Handler<RunJobs> for Scheduler {
    type Result = MessageResult<RunJobs>;
    fn handle(&mut self, msg: RunJobs, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let index = self.add_worker(msg.tags, 1, self.placement, ctx);
        self.workers[index].batch = Some(Batch {
            budget: msg.count,
            ran: 0,
            wait: msg.time.is_some_and(|t| !t.is_zero()),
            time_up: false,
            nothing_ready: false,
            reply: Some(tx),
        });
        if let Some(limit) = msg.time.filter(|t| !t.is_zero()) {
            ctx.run_later(limit, move |act, ctx| {
                if let Some(b) = act.workers[index].batch.as_mut() {
                    b.time_up = true;
                }
                act.finish_turn(ctx);
            });
        }
        self.finish_turn(ctx);
        MessageResult(rx)
    }
}
