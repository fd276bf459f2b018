//! A task's flow control in the scheduler: how many of its jobs run now,
//! its rate limit's state, and the ready jobs the limits hold back.
//!
//! A ready job popped from its tag while its task is at a limit is moved
//! to the task's own held set, keeping its ordering key. When a run of the
//! task ends, the best held job goes back to the tag; when a rate limit
//! allows the next start, the scheduler wakes then and puts back as many
//! held jobs as the burst allows. Jobs are never failed or reordered by
//! a limit, only delayed; a task without limits pays one branch.

use actix::prelude::*;

use super::Scheduler;
use crate::flow::{Blocked, Gcra, GroupKey, Keyed};
use crate::scheduler::ready::{ReadyKey, ReadySet};
use crate::task::TaskDef;

/// One task's limits and their state.
#[derive(Debug)]
pub(super) struct Flow {
    max_running: Option<u32>,
    /// On a shared store, the places of `max_running` this process holds
    /// (see `JobClaim::running_limits`): it runs at most this many at
    /// once. `None` until a claim says.
    places: Option<u32>,
    /// Runs of the task under way (started, no report yet).
    running: u32,
    rate: Option<Gcra>,
    /// The rate limit is this process's own
    /// ([`RateLimit::per_process`](crate::RateLimit::per_process)): it is
    /// counted here even on a shared store, whose claims then take no
    /// more of the task's jobs than it lets start soon.
    rate_local: bool,
    burst: u32,
    /// Ready jobs the task's own limits hold back, best first.
    held: ReadySet,
    held_count: usize,
    /// The limits per group, with the jobs they hold back.
    per_group: Option<Keyed<ReadyKey>>,
}

impl Flow {
    /// The flow of `def`, or `None` when it sets no limit; `before`
    /// carries the counts of a previous definition of the same task.
    pub(super) fn of(def: &TaskDef, before: Option<Box<Flow>>) -> Option<Box<Flow>> {
        let per_group = |before: Option<Keyed<ReadyKey>>| match before {
            Some(k) => Some(k.redefined(def.max_running_per_group, def.rate_limit_per_group)),
            None => Keyed::new(def.max_running_per_group, def.rate_limit_per_group),
        };
        if def.max_running.is_none()
            && def.rate_limit.is_none()
            && def.max_running_per_group.is_none()
            && def.rate_limit_per_group.is_none()
        {
            return before
                .filter(|f| f.running > 0 || f.held_count > 0 || f.per_group.is_some())
                .map(|mut f| {
                    f.max_running = None;
                    f.rate = None;
                    f.per_group = per_group(f.per_group.take());
                    f
                });
        }
        let (running, held, held_count, keyed, places) = match before {
            Some(mut f) => (
                f.running,
                f.held,
                f.held_count,
                f.per_group.take(),
                f.places,
            ),
            None => (0, ReadySet::default(), 0, None, None),
        };
        Some(Box::new(Flow {
            max_running: def.max_running,
            places: places.filter(|_| def.max_running.is_some()),
            running,
            rate: def.rate_limit.as_ref().map(Gcra::new),
            rate_local: def.rate_limit.is_some_and(|r| r.is_per_process()),
            burst: def.rate_limit.map_or(1, |r| r.burst_size()),
            held,
            held_count,
            per_group: per_group(keyed),
        }))
    }

    /// Takes a start of a job of `group` at `now_us`, or says why not and
    /// whether the group's limit (rather than the task's) is why. On a
    /// `shared` store, the task's rate limit and its rate limit per group
    /// were counted when its jobs were claimed (the store holds them for
    /// every process), so they are not counted again here; a rate limit
    /// per process is counted here all the same.
    fn try_start(
        &mut self,
        group: &GroupKey,
        now_us: u64,
        shared: bool,
    ) -> Result<(), (Blocked, bool)> {
        if self.running_cap().is_some_and(|max| self.running >= max) {
            return Err((Blocked::Running, false));
        }
        let rate_claimed = shared && !self.rate_local;
        if rate_claimed {
            // Checked at the claim.
        } else if let Some(rate) = self.rate.as_ref() {
            rate.check(now_us)
                .map_err(|at| (Blocked::Until(at), false))?;
        }
        if let Some(keyed) = self.per_group.as_mut() {
            keyed.check(group, now_us, shared).map_err(|b| (b, true))?;
            keyed.take(group, now_us, shared);
        }
        if let Some(rate) = self.rate.as_mut().filter(|_| !rate_claimed) {
            rate.take(now_us);
        }
        self.running += 1;
        Ok(())
    }

    /// How many of the task's jobs may run here at once: the places this
    /// process holds on a shared store, else the running limit.
    pub(super) fn running_cap(&self) -> Option<u32> {
        self.max_running
            .map(|max| self.places.unwrap_or(max).min(max))
    }

    /// How many jobs of the task run here now.
    pub(super) fn running(&self) -> u32 {
        self.running
    }

    /// The task's rate limit when it is this process's own (see
    /// [`Flow::rate_local`]).
    pub(super) fn local_rate(&self) -> Option<&Gcra> {
        self.rate.as_ref().filter(|_| self.rate_local)
    }

    /// Holds back a ready job.
    fn hold(&mut self, key: ReadyKey) {
        self.held.push(key);
        self.held_count += 1;
    }

    /// The best held job, if any.
    fn release(&mut self) -> Option<ReadyKey> {
        let key = self.held.pop()?;
        self.held_count = self.held_count.saturating_sub(1);
        Some(key)
    }
}

/// How many finished limited jobs a process remembers as credit for its
/// claims: enough for the ends a flush or two may hold back. One
/// forgotten early only makes a claim take less.
const MAX_CREDITS: usize = 4096;

/// The limited jobs this process finished whose ends may not be stored
/// yet (see `JobClaim::ended`), oldest first. Once a flush that followed
/// an end is stored, the end is in the store and its credit is dropped:
/// a claim sends, and the store compares each leased job with, only the
/// ends still on their way (a few dozen), not the last
/// [`MAX_CREDITS`]. A credit dropped too early only makes a claim take
/// less.
#[derive(Debug, Default)]
pub(super) struct Credits {
    ids: std::collections::VecDeque<crate::job::JobId>,
    /// How many were dropped from the front so far.
    dropped: u64,
}

impl Credits {
    /// A limited job ended.
    fn push(&mut self, id: crate::job::JobId) {
        if self.ids.len() >= MAX_CREDITS {
            self.ids.pop_front();
            self.dropped += 1;
        }
        self.ids.push_back(id);
    }

    /// A mark of the credits so far, for [`Credits::stored`].
    fn mark(&self) -> u64 {
        self.dropped + self.ids.len() as u64
    }

    /// The ends of the credits before `mark` are stored: drops them.
    fn stored(&mut self, mark: u64) {
        while self.dropped < mark && self.ids.pop_front().is_some() {
            self.dropped += 1;
        }
    }

    /// The credits, oldest first.
    fn list(&self) -> Vec<crate::job::JobId> {
        self.ids.iter().copied().collect()
    }
}

impl Scheduler {
    /// Whether the job `key` of task `task` may start now; when not, it is
    /// held back (and a wake is planned for a rate limit).
    pub(super) fn flow_admits(&mut self, task: u32, key: ReadyKey, now_ms: u64) -> bool {
        let Some(flow) = self.routes.tasks[task as usize].flow.as_deref_mut() else {
            return true;
        };
        let group: GroupKey = match flow.per_group {
            Some(_) => self.jobs.get(key.slot).and_then(|e| e.job.group().cloned()),
            None => None,
        };
        // On a shared store the claim holds the task's rate limit, for
        // every process together (unless it is per process).
        match flow.try_start(&group, now_ms.saturating_mul(1000), self.shared.is_some()) {
            Ok(()) => true,
            Err((blocked, by_group)) => {
                match flow.per_group.as_mut() {
                    Some(keyed) if by_group => keyed.hold(&group, key, blocked),
                    _ => flow.hold(key),
                }
                if let Blocked::Until(at_us) = blocked {
                    let tick = at_us.div_ceil(1000);
                    if self.flow_wake.is_none_or(|t| tick < t) {
                        self.flow_wake = Some(tick);
                        self.flow_wake_armed = false;
                    }
                }
                false
            }
        }
    }

    /// Whether tag slot `tag`'s limits let one of its jobs start now;
    /// when its rate limit says no, a wake is planned for when it allows.
    /// A tag without limits pays one branch.
    pub(super) fn tag_admits(&mut self, tag: usize, now_ms: u64) -> bool {
        let Some(gate) = self.routes.tag_gates.get(tag).and_then(Option::as_ref) else {
            return true;
        };
        // On a shared store the claim holds the tag's rate limit, for
        // every process together (unless it is per process).
        match gate.check(now_ms.saturating_mul(1000), self.shared.is_some()) {
            Ok(()) => true,
            Err(Blocked::Running) => false,
            Err(Blocked::Until(at_us)) => {
                if !self.routes.tags[tag].is_empty() {
                    self.plan_flow_wake(at_us);
                }
                false
            }
        }
    }

    /// A job of tag slot `tag` starts now: it counts against the tag's
    /// limits.
    pub(super) fn tag_started(&mut self, tag: usize, now_ms: u64) {
        let shared = self.shared.is_some();
        if let Some(gate) = self.routes.tag_gates.get_mut(tag).and_then(Option::as_mut) {
            gate.take(now_ms.saturating_mul(1000), shared);
        }
    }

    /// Wakes the scheduler at `at_us` (or before) to start rate-held jobs.
    fn plan_flow_wake(&mut self, at_us: u64) {
        let tick = at_us.div_ceil(1000);
        if self.flow_wake.is_none_or(|t| tick < t) {
            self.flow_wake = Some(tick);
            self.flow_wake_armed = false;
        }
    }

    /// A run of task `task`, of the job in `job_slot`, ended: a held job
    /// takes its place.
    pub(super) fn flow_run_ended(&mut self, task: u32, job_slot: u32) {
        let Some(slot) = self.routes.tasks.get_mut(task as usize) else {
            return;
        };
        // Whether a running limit covers the job (its tag's, its task's,
        // its group's), and whether one counts every leased job rather
        // than places held here.
        let (mut limits_running, mut counted) = (false, false);
        if let Some(gate) = slot
            .tag
            .and_then(|t| self.routes.tag_gates.get_mut(t as usize))
            .and_then(Option::as_mut)
        {
            // Its tag's room is free again: the next dispatch takes it.
            gate.ended();
            limits_running = gate.max_running().is_some();
            counted = limits_running && gate.places().is_none();
        }
        let flow = slot.flow.as_deref_mut();
        if let Some(flow) = flow.as_ref() {
            let per_group = flow
                .per_group
                .as_ref()
                .is_some_and(|k| k.max_running().is_some());
            limits_running |= flow.max_running.is_some() || per_group;
            counted |= per_group || (flow.max_running.is_some() && flow.places.is_none());
        }
        if limits_running && self.shared.is_some() {
            match counted {
                // Only running limits held as places here (the task's,
                // its tag's): a job waiting here takes the place at once.
                // Claim again at once all the same: the claim asks for as
                // many as the workers got through since the last (its
                // prefetch), so jobs keep coming ahead of the places; or
                // gives the places back when nothing of the task or tag
                // is left here.
                false => self.claim_now = true,
                // A limit counted on every leased job (a group's, or one
                // whose places no claim gave yet). Its lease ends only
                // when its end is stored. The next claim is told it ended
                // (it no longer counts against the limit), so this
                // process refills its room at once; and claims again once
                // the end is stored, for room other processes may also
                // see.
                true => {
                    if let Some(e) = self.jobs.get(job_slot) {
                        self.flow_credits.push(e.job.id);
                    }
                    self.claim_after_flush = true;
                    self.claim_now = true;
                }
            }
        }
        let Some(flow) = flow else {
            return;
        };
        let Some(tag) = slot.tag else { return };
        let jobs = &self.jobs;
        // A held job cancelled or expired meanwhile is passed over, so the
        // next one takes the room.
        let live = |key: &ReadyKey| {
            jobs.get(key.slot)
                .is_some_and(|e| e.seq == key.seq && e.state == super::State::Ready)
        };
        let mut back = Vec::new();
        flow.running = flow.running.saturating_sub(1);
        while let Some(key) = flow.release() {
            if live(&key) {
                back.push(key);
                break;
            }
        }
        if let Some(keyed) = flow.per_group.as_mut() {
            let group: GroupKey = jobs.get(job_slot).and_then(|e| e.job.group().cloned());
            let now_us = self.clock.now_ms().saturating_mul(1000);
            while let Some(key) = keyed.ended(&group, now_us) {
                if live(&key) {
                    back.push(key);
                    break;
                }
            }
        }
        for key in back {
            let group = self.jobs.get(key.slot).and_then(|e| e.job.group().cloned());
            self.routes.push_ready(tag, key, group.as_ref());
        }
    }

    /// A claim says how many places of each task with a running limit
    /// this process holds now (see `JobClaim::running_limits`): each runs
    /// at most that many at once, and held jobs take the places that are
    /// free.
    pub(super) fn set_places(&mut self, places: &[(String, u32)]) {
        let mut back = Vec::new();
        for (name, n) in places {
            let Some(i) = self.routes.task_index(name) else {
                continue;
            };
            let slot = &mut self.routes.tasks[i as usize];
            let (Some(flow), Some(tag)) = (slot.flow.as_deref_mut(), slot.tag) else {
                continue;
            };
            if flow.max_running.is_none() {
                continue;
            }
            flow.places = Some(*n);
            let cap = flow.running_cap().unwrap_or(u32::MAX);
            let jobs = &self.jobs;
            let mut free = cap.saturating_sub(flow.running);
            while free > 0 {
                let Some(key) = flow.release() else { break };
                let live = jobs
                    .get(key.slot)
                    .is_some_and(|e| e.seq == key.seq && e.state == super::State::Ready);
                if live {
                    back.push((tag, key));
                    free -= 1;
                }
            }
        }
        for (tag, key) in back {
            let group = self.jobs.get(key.slot).and_then(|e| e.job.group().cloned());
            self.routes.push_ready(tag, key, group.as_ref());
        }
    }

    /// A claim says how many places of each tag with a running limit
    /// this process holds now (see `JobClaim::tag_places`): each runs at
    /// most that many of its jobs at once. The tag's ready jobs wait in
    /// its ready set, and the turn's dispatch starts those the places let.
    pub(super) fn set_tag_places(&mut self, places: &[(String, u32)]) {
        for (name, n) in places {
            let Some(t) = self.routes.tag_index(name) else {
                continue;
            };
            if let Some(gate) = self
                .routes
                .tag_gates
                .get_mut(t as usize)
                .and_then(Option::as_mut)
            {
                gate.set_places(*n);
            }
        }
    }

    /// The limited jobs this process finished lately (see
    /// `JobClaim::ended`); those already stored are harmless in it.
    pub(super) fn flow_credits(&self) -> Vec<crate::job::JobId> {
        self.flow_credits.list()
    }

    /// Claims again at once, and once what is written now is stored, when
    /// a limited run ended this turn on a shared store.
    pub(super) fn claim_after_stored(&mut self, ctx: &mut Context<Self>) {
        if std::mem::take(&mut self.claim_now) {
            self.want_claim(ctx);
        }
        let claim = std::mem::take(&mut self.claim_after_flush);
        // The ends recorded so far are in the next flush; once it is
        // stored, their credits go (a claim then sends only the ends
        // still on their way).
        let mark = self.flow_credits.mark();
        if !claim && mark == self.flow_credits_marked {
            return;
        }
        self.flow_credits_marked = mark;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.journal.wait(super::Waiter::Barrier(tx));
        self.flush(ctx);
        ctx.spawn(rx.into_actor(self).map(move |stored, act, ctx| {
            if stored.is_ok() {
                act.flow_credits.stored(mark);
            }
            if claim {
                act.begin();
                act.want_claim(ctx);
                act.finish_turn(ctx);
            }
        }));
    }

    /// Plans the wake for the earliest rate-limited start, once.
    pub(super) fn arm_flow_wake(&mut self, ctx: &mut Context<Self>) {
        let Some(tick) = self.flow_wake else { return };
        if self.flow_wake_armed {
            return;
        }
        self.flow_wake_armed = true;
        let delay = std::time::Duration::from_millis(tick.saturating_sub(self.clock.now_ms()));
        ctx.run_later(delay, move |act, ctx| {
            if act.flow_wake != Some(tick) {
                return;
            }
            act.flow_wake = None;
            act.flow_wake_armed = false;
            act.begin();
            act.release_rate_held();
            act.finish_turn(ctx);
        });
    }

    /// Puts back, for every rate-limited task, as many held jobs as its
    /// burst: those the limit may allow now (the rest are held again);
    /// and for every group whose own rate limit allows a start now, as
    /// many as its burst.
    fn release_rate_held(&mut self) {
        let mut released = Vec::new();
        let now_us = self.clock.now_ms().saturating_mul(1000);
        let mut next_wake: Option<u64> = None;
        let mut keys = Vec::new();
        for slot in &mut self.routes.tasks {
            let (Some(flow), Some(tag)) = (slot.flow.as_deref_mut(), slot.tag) else {
                continue;
            };
            if let Some(keyed) = flow.per_group.as_mut() {
                keyed.release_due(now_us, &mut keys);
                released.extend(keys.drain(..).map(|key| (tag, key)));
                if let Some(at) = keyed.next_wake() {
                    next_wake = Some(next_wake.map_or(at, |n| n.min(at)));
                }
            }
            if flow.rate.is_none() {
                continue;
            }
            for _ in 0..flow.burst.max(1) {
                match flow.release() {
                    Some(key) => released.push((tag, key)),
                    None => break,
                }
            }
        }
        if let Some(at_us) = next_wake {
            // Groups still waiting on their rate limit wake the scheduler
            // again then.
            let tick = at_us.div_ceil(1000);
            if self.flow_wake.is_none_or(|t| tick < t) {
                self.flow_wake = Some(tick);
                self.flow_wake_armed = false;
            }
        }
        for (tag, key) in released {
            let group = self.jobs.get(key.slot).and_then(|e| e.job.group().cloned());
            self.routes.push_ready(tag, key, group.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobId;

    fn id(n: u128) -> JobId {
        JobId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn credits_are_dropped_once_a_flush_after_their_ends_is_stored() {
        let mut credits = Credits::default();
        credits.push(id(1));
        credits.push(id(2));
        let mark = credits.mark();
        credits.push(id(3));
        credits.stored(mark);
        assert_eq!(credits.list(), vec![id(3)], "the end after the mark stays");
        credits.stored(mark);
        assert_eq!(
            credits.list(),
            vec![id(3)],
            "a stale mark drops nothing more"
        );
    }

    #[test]
    fn credits_keep_at_most_the_latest_and_marks_survive_the_cap() {
        let mut credits = Credits::default();
        for n in 0..MAX_CREDITS as u128 + 10 {
            credits.push(id(n));
        }
        assert_eq!(credits.list().len(), MAX_CREDITS);
        assert_eq!(credits.list()[0], id(10), "the oldest went first");
        let mark = credits.mark();
        credits.push(id(99_999));
        credits.stored(mark);
        assert_eq!(credits.list(), vec![id(99_999)]);
    }
}
