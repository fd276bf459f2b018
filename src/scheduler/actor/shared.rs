//! The scheduler's side of a shared store: claim due jobs of the tasks this
//! process serves, renew their leases by heartbeat, give back what it will
//! not run soon, rescue lapsed leases, and wake on notifications.
//!
//! Every timer here is a single actix timer (the claim timer, the heartbeat
//! and rescue intervals), never one per job; the jobs themselves are timed
//! by the wheel once claimed.

use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use super::Scheduler;
use crate::context::ExtendLease;
use crate::event::QueueEvent;
use crate::job::JobId;
use crate::scheduler::actor::messages::Origin;
use crate::scheduler::services::{Claimer, ExpiryWatch, Heartbeat};
use crate::store::ClaimReply;

#[derive(Debug)]
pub(super) struct SharedMode {
    pub(super) owner: Uuid,
    /// What to claim and when.
    claimer: Claimer,
    /// Renews the leases of held jobs.
    heartbeat: Heartbeat,
    /// Held jobs to give back with the next flush.
    pub(super) releases: Vec<JobId>,
    /// Jobs created here whose expiry this process times.
    expiry: ExpiryWatch,
}

impl SharedMode {
    pub(super) fn new(
        claimer: Claimer,
        heartbeat: Heartbeat,
        expiry: ExpiryWatch,
        owner: Uuid,
    ) -> Self {
        SharedMode {
            owner,
            claimer,
            heartbeat,
            releases: Vec::new(),
            expiry,
        }
    }

    /// How far ahead a claim takes jobs due.
    pub(super) fn claim_horizon(&self) -> Duration {
        self.claimer.config().horizon
    }
}

impl StreamHandler<()> for Scheduler {
    fn handle(&mut self, _: (), ctx: &mut Self::Context) {
        self.want_claim(ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {
        tracing::warn!("the store's notification stream ended; polling only");
    }
}

/// Jobs created by this process in a shared store, with their expiry:
/// whoever holds them then expires them, and if nobody does, this process
/// expires them in the store on time.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct WatchExpiry(pub(crate) Vec<(JobId, chrono::DateTime<chrono::Utc>)>);

impl Handler<WatchExpiry> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: WatchExpiry, ctx: &mut Self::Context) {
        let now = self.clock.now_ms();
        for (id, at) in msg.0 {
            let when = self.clock.tick_for(at);
            let Some(mode) = self.shared.as_mut() else {
                return;
            };
            if when <= now {
                mode.expiry.expire_now(id);
                continue;
            }
            let slot = mode.expiry.watch(id);
            let timer = super::Timer {
                slot,
                kind: super::TimerKind::Watch,
            };
            if self.timers.insert(when, timer).is_none() {
                if let Some(mode) = self.shared.as_mut() {
                    mode.expiry.unwatch(slot);
                }
            }
        }
        self.finish_turn(ctx);
    }
}

/// This process created jobs in the shared store: look for work now
/// instead of waiting for the notification to come round.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ClaimNow;

impl Handler<ClaimNow> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: ClaimNow, ctx: &mut Self::Context) {
        self.want_claim(ctx);
    }
}

impl Handler<ExtendLease> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: ExtendLease, ctx: &mut Self::Context) {
        if self.jobs.contains(&msg.0) {
            self.heartbeat(vec![msg.0], ctx);
        }
    }
}

impl Scheduler {
    pub(super) fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Starts the heartbeat, the rescuer and the notification stream.
    pub(super) fn start_shared(&mut self, ctx: &mut Context<Self>) {
        if self.store.shared().is_none() {
            return;
        }
        // Following suspension changes before the listener starts: its
        // first connection is one of them.
        let poll = self
            .shared
            .as_ref()
            .map_or(Duration::from_secs(5), |m| m.claimer.config().poll);
        self.start_suspension_watch(poll, ctx);
        let Some(shared) = self.store.shared() else {
            return;
        };
        ctx.add_stream(shared.wakeups());
        let beat = self
            .shared
            .as_ref()
            .map_or(Duration::from_secs(10), |m| m.heartbeat.interval());
        ctx.run_interval(beat, |act, ctx| {
            let held: Vec<JobId> = act.jobs.ids().collect();
            if !held.is_empty() {
                act.heartbeat(held, ctx);
            }
            // This node's row and leadership, at the same cadence.
            act.node_tick(ctx);
        });
        // A lapsed lease is rescued by the leader within a quarter lease of
        // lapsing.
        if let Some(rescuer) = &self.rescuer {
            ctx.run_interval(rescuer.interval(), |act, ctx| act.rescue(ctx));
        }
        // Registers this node and bids for leadership: a process that
        // becomes the leader rescues the jobs cut off while nobody led.
        self.node_tick(ctx);
        self.want_claim(ctx);
    }

    /// Asks for a claim now, or right after the one in flight.
    pub(super) fn want_claim(&mut self, ctx: &mut Context<Self>) {
        let Some(mode) = self.shared.as_mut() else {
            return;
        };
        if mode.claimer.want() {
            self.claim(ctx);
        }
    }

    /// After jobs finish: claim more if the last claim was full.
    pub(super) fn after_capacity_freed(&mut self, ctx: &mut Context<Self>) {
        if self.shared.as_ref().is_some_and(|m| m.claimer.last_full()) {
            self.want_claim(ctx);
        }
    }

    fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.draining.is_some() {
            return;
        }
        let tasks = self.served_tasks();
        let limits = self.running_limits(&tasks);
        let credits = if limits.counts_running() {
            self.flow_credits()
        } else {
            Vec::new()
        };
        let free: usize = self
            .workers
            .iter()
            .filter(|w| !w.stopped)
            .map(|w| w.capacity.saturating_sub(w.in_flight))
            .sum();
        let held_waiting = self.held_waiting();
        let now = self.clock.now_utc();
        let Some(mode) = self.shared.as_mut() else {
            return;
        };
        if let Some(timer) = mode.claimer.timer.take() {
            ctx.cancel_future(timer);
        }
        let Some(mut params) =
            mode.claimer
                .plan(tasks.clone(), limits, credits, free, held_waiting, now)
        else {
            let poll = mode.claimer.config().poll;
            mode.claimer.timer = Some(ctx.run_later(poll, |act, ctx| act.want_claim(ctx)));
            return;
        };
        params.group_weights = self.routes.groups.pairs();
        let limit = params.limit;
        let caps = (params.task_caps.clone(), params.tag_caps.clone());
        let fut = mode.claimer.run_once(params);
        ctx.spawn(
            self.store_call(fut)
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let Some(result) = result else { return };
                    match result {
                        Ok(reply) => act.claimed(reply, limit, tasks, caps, ctx),
                        Err(err) => {
                            tracing::warn!(error = %err, "claiming jobs failed; retrying");
                            act.bus.queue(QueueEvent::Error {
                                message: format!("claiming jobs failed, will retry: {err}"),
                            });
                            act.claim_done(Some(Duration::from_millis(500)), ctx);
                        }
                    }
                }),
        );
    }

    /// A claim of at most `limit` jobs of `tasks` returned `reply`: its
    /// jobs are taken in and dispatched at once. A claim that came back
    /// full, or during which a job was created or announced, is followed by
    /// another at once; otherwise the next job due among `tasks` says when
    /// to claim again (a second query, which neither the claimed jobs nor
    /// a new claim wait for), or sooner, when a rate limit that held jobs
    /// back allows the next start (`reply.retry_at`, or for a rate limit
    /// per process, when it lets more start than wait here: `caps` are
    /// what the claim was allowed of each).
    fn claimed(
        &mut self,
        reply: ClaimReply,
        limit: usize,
        tasks: Vec<String>,
        caps: (Vec<(String, u32)>, Vec<crate::store::TagCap>),
        ctx: &mut Context<Self>,
    ) {
        self.set_places(&reply.places);
        self.set_tag_places(&reply.tag_places);
        let claimed = reply.jobs;
        let mut rate_wait = reply
            .retry_at
            .map(|at| (at - self.clock.now_utc()).to_std().unwrap_or_default());
        let (task_caps, tag_caps) = caps;
        let mut took: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        if !task_caps.is_empty() || !tag_caps.is_empty() {
            for job in &claimed {
                *took.entry(job.task.to_string()).or_default() += 1;
            }
        }
        let waiting = self.held_waiting();
        let Some(mode) = self.shared.as_mut() else {
            return;
        };
        let again = mode.claimer.claimed(claimed.len(), limit, waiting);
        let poll = mode.claimer.config().poll;
        if !claimed.is_empty() {
            let now = self.clock.now_ms();
            for job in claimed {
                self.admit(job, Origin::Claimed, now);
            }
        }
        // Counted with the claimed jobs in: they wait here now.
        if let Some(local) = self.local_rate_wait(&task_caps, &tag_caps, &took) {
            rate_wait = Some(rate_wait.map_or(local, |w| w.min(local)));
        }
        // No later than a rate limit allows the next start.
        let poll = rate_wait.map_or(poll, |w| w.min(poll));
        if again {
            self.want_claim(ctx);
        } else {
            self.claim_after(poll, ctx);
            let store = self.store.clone();
            let fut = async move {
                match store.shared() {
                    Some(shared) => shared.jobs_next_due(&tasks).await,
                    None => Ok(None),
                }
            };
            ctx.spawn(
                self.store_call(fut)
                    .into_actor(self)
                    .map(move |result, act, ctx| {
                        let Some(result) = result else { return };
                        if act.shared.as_ref().is_none_or(|m| m.claimer.in_flight()) {
                            // A claim started meanwhile: it plans the next.
                            return;
                        }
                        match result {
                            Ok(Some(next)) => {
                                // Claim again when the next job comes within
                                // the horizon.
                                let horizon = act
                                    .shared
                                    .as_ref()
                                    .map_or(Duration::ZERO, |m| m.claimer.config().horizon);
                                let horizon =
                                    chrono::Duration::from_std(horizon).unwrap_or_default();
                                let until = (next - act.clock.now_utc() - horizon)
                                    .to_std()
                                    .unwrap_or_default();
                                // A job due now that the claim left is
                                // one a rate limit held back: claim when
                                // it allows, not at once (again and again).
                                let until = match rate_wait {
                                    Some(wait) if until.is_zero() => wait,
                                    _ => until,
                                };
                                act.claim_after(until.min(poll), ctx);
                            }
                            Ok(None) => {}
                            Err(err) => {
                                tracing::warn!(error = %err, "reading the next due job failed");
                                act.claim_after(poll.min(Duration::from_millis(500)), ctx);
                            }
                        }
                    }),
            );
        }
        self.finish_turn(ctx);
    }

    /// Ends a claim that failed: claims again at once if asked meanwhile,
    /// else after `wait` or the poll interval, whichever is sooner.
    fn claim_done(&mut self, wait: Option<Duration>, ctx: &mut Context<Self>) {
        let Some(mode) = self.shared.as_mut() else {
            return;
        };
        match mode.claimer.failed(wait) {
            None => self.want_claim(ctx),
            Some(wait) => self.claim_after(wait, ctx),
        }
        self.finish_turn(ctx);
    }

    /// Claims after `wait`, instead of when the claim timer was set for.
    fn claim_after(&mut self, wait: Duration, ctx: &mut Context<Self>) {
        let Some(mode) = self.shared.as_mut() else {
            return;
        };
        if let Some(timer) = mode.claimer.timer.take() {
            ctx.cancel_future(timer);
        }
        let timer = ctx.run_later(wait, |act, ctx| act.want_claim(ctx));
        if let Some(mode) = self.shared.as_mut() {
            mode.claimer.timer = Some(timer);
        }
    }

    /// Held jobs not running (waiting for their time or a free slot).
    fn held_waiting(&self) -> usize {
        self.jobs
            .slots()
            .filter(|&s| self.jobs.get(s).is_some_and(|e| !e.state.is_running()))
            .count()
    }

    fn heartbeat(&mut self, ids: Vec<JobId>, ctx: &mut Context<Self>) {
        let Some(mode) = self.shared.as_ref() else {
            return;
        };
        let params = mode.heartbeat.params(ids, self.clock.now_utc());
        let fut = mode.heartbeat.run_once(params);
        ctx.spawn(
            self.store_call(fut)
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    None => {}
                    Some(Ok(reply)) => {
                        let now = act.begin();
                        for id in reply.cancel_requested {
                            if let Some(slot) = act.jobs.slot_of(&id) {
                                act.cancel_slot(slot, now);
                            }
                        }
                        for id in reply.lost {
                            act.drop_held(id);
                        }
                        act.finish_turn(ctx);
                    }
                    Some(Err(err)) => {
                        tracing::warn!(error = %err, "renewing leases failed");
                        act.bus.queue(QueueEvent::Error {
                            message: format!("renewing job leases failed: {err}"),
                        });
                    }
                }),
        );
    }

    /// Forgets a job whose lease is no longer ours, without recording it.
    fn drop_held(&mut self, id: JobId) {
        let Some(slot) = self.jobs.slot_of(&id) else {
            return;
        };
        self.clear_timer(slot);
        if let Some(e) = self.jobs.remove(slot) {
            if let Some(run) = e.run {
                run.cancel();
            }
        }
        self.result_waiters.remove(&id);
        tracing::warn!(job = %id, "lease lost: another process may run this job");
    }

    pub(super) fn watch_fired(&mut self, slot: u32) {
        let Some(mode) = self.shared.as_mut() else {
            return;
        };
        mode.expiry.fired(slot);
    }

    /// Expires, in the store, watched jobs nobody holds.
    pub(super) fn expire_watched(&mut self, ctx: &mut Context<Self>) {
        let Some(mode) = self.shared.as_mut() else {
            return;
        };
        let ids = mode.expiry.take_due();
        if ids.is_empty() {
            return;
        }
        let fut = mode.expiry.run_once(ids, self.clock.now_utc());
        ctx.spawn(self.store_call(fut).into_actor(self).map(|result, act, _| {
            if let Some(Err(err)) = result {
                act.bus.queue(QueueEvent::Error {
                    message: format!("expiring jobs failed: {err}"),
                });
            }
        }));
    }

    /// Gives a held job back to the store (it stays pending there), in
    /// the state this process holds: the store's claim counted an attempt
    /// that a job given back unstarted never made, so its state is
    /// recorded first, in the same write as the release (a job whose
    /// state was just recorded, a retry, costs nothing more: the two
    /// merge, and a store skips a write that changes nothing).
    pub(super) fn release(&mut self, slot: u32) {
        self.clear_timer(slot);
        if self.is_shared() {
            self.record(slot, Vec::new());
        }
        let Some(e) = self.jobs.remove(slot) else {
            return;
        };
        // Local waiters fall back to watching the store.
        self.result_waiters.remove(&e.job.id);
        if let Some(mode) = self.shared.as_mut() {
            mode.releases.push(e.job.id);
        }
    }

    /// At shutdown: give back every held job that is not running.
    pub(super) fn release_waiting(&mut self) {
        let waiting: Vec<u32> = self
            .jobs
            .slots()
            .filter(|&s| self.jobs.get(s).is_some_and(|e| !e.state.is_running()))
            .collect();
        for slot in waiting {
            self.release(slot);
        }
    }

    /// Runs the rescuer once, if this process leads.
    pub(super) fn rescue(&mut self, ctx: &mut Context<Self>) {
        let Some(rescuer) = self.rescuer.clone() else {
            return;
        };
        if !self.leads() {
            return;
        }
        let now = self.clock.now_utc();
        let fut = async move { rescuer.run_once(now).await };
        ctx.spawn(
            self.store_call(fut)
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    None => {}
                    Some(Ok(report)) if report.rescued == 0 => {}
                    Some(Ok(report)) => {
                        tracing::info!(
                            rescued = report.rescued,
                            "returned jobs with lapsed leases to ready"
                        );
                        act.want_claim(ctx);
                    }
                    Some(Err(err)) => act.bus.queue(QueueEvent::Error {
                        message: format!("rescuing lapsed leases failed: {err}"),
                    }),
                }),
        );
    }
}
