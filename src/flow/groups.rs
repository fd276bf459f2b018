//! Limits per group of one task: each group's running count and rate.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use super::{Blocked, Gcra, RateLimit};

/// The key of a job for per-group limits: its group, or `None` for the
/// jobs without one (which share one limit, as they share one turn among
/// the fair groups).
pub(crate) type GroupKey = Option<Arc<str>>;

/// One group's limit state, kept only while it matters: while jobs of the
/// group run or wait on it, or its rate limiter is not yet rested.
#[derive(Debug)]
struct GroupState<T> {
    running: u32,
    rate: Option<Gcra>,
    /// Ready jobs the group's limits hold back, best first.
    held: BinaryHeap<Reverse<T>>,
    /// A rate wake is planned for the group (it sits in `Keyed::waits`).
    waiting: bool,
}

/// Per-group limits of one task: at most `max_running` of each group's
/// jobs running, and each group's starts under its own copy of `rate`.
/// Each group holds back its own jobs, so a busy group never delays
/// another's.
///
/// Memory stays bounded by the groups that matter: a group's state goes
/// when it has nothing running or held and its rate limiter is rested
/// (checked when one of its runs ends, and in a sweep whenever the map has
/// doubled since the last one), so a million one-off customers leave
/// nothing behind.
#[derive(Debug)]
pub(crate) struct Keyed<T> {
    max_running: Option<u32>,
    rate: Option<RateLimit>,
    groups: HashMap<GroupKey, GroupState<T>>,
    /// Groups whose held jobs wait on their rate limit, soonest first.
    waits: BinaryHeap<Reverse<(u64, GroupKey)>>,
    /// Sweep idle groups when the map grows past this.
    sweep_at: usize,
}

/// The least map size that triggers a sweep of idle groups.
const MIN_SWEEP: usize = 64;

impl<T: Ord> Keyed<T> {
    /// Limits per group, or `None` when neither is set.
    pub(crate) fn new(max_running: Option<u32>, rate: Option<RateLimit>) -> Option<Self> {
        (max_running.is_some() || rate.is_some()).then(|| Keyed {
            max_running,
            rate,
            groups: HashMap::new(),
            waits: BinaryHeap::new(),
            sweep_at: MIN_SWEEP,
        })
    }

    /// The same limits with this state, for a task defined again.
    pub(crate) fn redefined(mut self, max_running: Option<u32>, rate: Option<RateLimit>) -> Self {
        if self.rate != rate {
            for state in self.groups.values_mut() {
                state.rate = rate.as_ref().map(Gcra::new);
            }
        }
        self.max_running = max_running;
        self.rate = rate;
        self
    }

    /// The running limit of each group, if any.
    pub(crate) fn max_running(&self) -> Option<u32> {
        self.max_running
    }

    /// Whether a job of `group` may start at `now` (µs), without taking
    /// it. With `rate_claimed`, the group's rate limit was counted when
    /// its jobs were claimed (a shared store holds it for every process),
    /// so it is not counted again here.
    pub(crate) fn check(
        &self,
        group: &GroupKey,
        now: u64,
        rate_claimed: bool,
    ) -> Result<(), Blocked> {
        let Some(state) = self.groups.get(group) else {
            return Ok(());
        };
        if self.max_running.is_some_and(|max| state.running >= max) {
            return Err(Blocked::Running);
        }
        if let Some(rate) = state.rate.as_ref().filter(|_| !rate_claimed) {
            rate.check(now).map_err(Blocked::Until)?;
        }
        Ok(())
    }

    /// Takes a start of `group` at `now` that [`Keyed::check`] allowed
    /// (with the same `rate_claimed`).
    pub(crate) fn take(&mut self, group: &GroupKey, now: u64, rate_claimed: bool) {
        if self.groups.len() >= self.sweep_at {
            self.sweep(now);
        }
        let rate = self.rate;
        let state = self
            .groups
            .entry(group.clone())
            .or_insert_with(|| GroupState {
                running: 0,
                rate: rate.as_ref().map(Gcra::new),
                held: BinaryHeap::new(),
                waiting: false,
            });
        state.running += 1;
        if let Some(rate) = state.rate.as_mut().filter(|_| !rate_claimed) {
            rate.take(now);
        }
    }

    /// Holds back a ready job of `group`, blocked as `why`; a rate wait
    /// is remembered for [`Keyed::release_due`].
    pub(crate) fn hold(&mut self, group: &GroupKey, item: T, why: Blocked) {
        let Some(state) = self.groups.get_mut(group) else {
            // Nothing blocks a group without state; keep the job anyway.
            return self.hold_new(group, item);
        };
        state.held.push(Reverse(item));
        if let Blocked::Until(at) = why {
            if !state.waiting {
                state.waiting = true;
                self.waits.push(Reverse((at, group.clone())));
            }
        }
    }

    fn hold_new(&mut self, group: &GroupKey, item: T) {
        let rate = self.rate;
        let mut held = BinaryHeap::new();
        held.push(Reverse(item));
        self.groups.insert(
            group.clone(),
            GroupState {
                running: 0,
                rate: rate.as_ref().map(Gcra::new),
                held,
                waiting: false,
            },
        );
    }

    /// A run of `group` ended at `now`: its best held job, if any, to put
    /// back.
    pub(crate) fn ended(&mut self, group: &GroupKey, now: u64) -> Option<T> {
        let state = self.groups.get_mut(group)?;
        state.running = state.running.saturating_sub(1);
        let released = state.held.pop().map(|Reverse(item)| item);
        if released.is_none() && Self::idle(state, now) {
            self.groups.remove(group);
        }
        released
    }

    /// When the next held job may start on its group's rate limit (µs).
    pub(crate) fn next_wake(&self) -> Option<u64> {
        self.waits.peek().map(|Reverse((at, _))| *at)
    }

    /// Puts back the held jobs of the groups whose rate limit allows a
    /// start at `now`: up to a burst from each (those the limit still
    /// holds come back to [`Keyed::hold`]).
    pub(crate) fn release_due(&mut self, now: u64, out: &mut Vec<T>) {
        let burst = self.rate.map_or(1, |r| r.burst_size()).max(1);
        while let Some(Reverse((at, _))) = self.waits.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, group))) = self.waits.pop() else {
                break;
            };
            let Some(state) = self.groups.get_mut(&group) else {
                continue;
            };
            state.waiting = false;
            for _ in 0..burst {
                match state.held.pop() {
                    Some(Reverse(item)) => out.push(item),
                    None => break,
                }
            }
        }
    }

    /// How many groups have state now.
    #[cfg(test)]
    pub(crate) fn groups(&self) -> usize {
        self.groups.len()
    }

    fn idle(state: &GroupState<T>, now: u64) -> bool {
        state.running == 0
            && state.held.is_empty()
            && !state.waiting
            && state.rate.as_ref().is_none_or(|r| r.is_rested(now))
    }

    /// Drops every idle group's state.
    fn sweep(&mut self, now: u64) {
        self.groups.retain(|_, state| !Self::idle(state, now));
        self.sweep_at = (self.groups.len() * 2).max(MIN_SWEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(k: &str) -> GroupKey {
        Some(Arc::from(k))
    }

    #[test]
    fn a_group_at_its_running_limit_holds_its_jobs_and_not_another_groups() {
        let mut k: Keyed<u32> = Keyed::new(Some(1), None).unwrap();
        let (hot, cold) = (key("hot"), key("cold"));
        assert_eq!(k.check(&hot, 0, false), Ok(()));
        k.take(&hot, 0, false);
        assert_eq!(k.check(&hot, 0, false), Err(Blocked::Running));
        k.hold(&hot, 7, Blocked::Running);
        k.hold(&hot, 3, Blocked::Running);
        assert_eq!(
            k.check(&cold, 0, false),
            Ok(()),
            "another group is not held up"
        );
        assert_eq!(
            k.check(&None, 0, false),
            Ok(()),
            "nor the jobs without a group"
        );
        assert_eq!(
            k.ended(&hot, 0),
            Some(3),
            "the best held job goes back first"
        );
        k.take(&hot, 0, false);
        assert_eq!(k.ended(&hot, 0), Some(7));
    }

    #[test]
    fn a_group_rate_wait_releases_its_held_jobs_when_due() {
        let mut k: Keyed<u32> = Keyed::new(None, Some(RateLimit::per_second(10))).unwrap();
        let g = key("g");
        k.take(&g, 0, false);
        assert_eq!(k.check(&g, 0, false), Err(Blocked::Until(100_000)));
        k.hold(&g, 1, Blocked::Until(100_000));
        k.hold(&g, 2, Blocked::Until(100_000));
        assert_eq!(k.next_wake(), Some(100_000));
        let mut out = Vec::new();
        k.release_due(99_999, &mut out);
        assert!(out.is_empty());
        k.release_due(100_000, &mut out);
        assert_eq!(out, vec![1], "a burst of one");
        assert_eq!(k.next_wake(), None, "the rest wait for the next block");
    }

    #[test]
    fn idle_groups_leave_no_state_behind() {
        let mut k: Keyed<u32> = Keyed::new(Some(1), Some(RateLimit::per_second(10))).unwrap();
        let mut now = 0u64;
        for i in 0..100_000u32 {
            let g = key(&format!("customer-{i}"));
            assert_eq!(k.check(&g, now, false), Ok(()));
            k.take(&g, now, false);
            now += 1_000;
            let _ = k.ended(&g, now);
            assert!(k.groups() <= 512, "{} groups kept after {i}", k.groups());
        }
        // Once every limiter has rested, a run's end drops its group.
        let g = key("last");
        k.take(&g, now, false);
        assert_eq!(k.ended(&g, now + 1_000_000), None);
        assert!(k.groups() <= 512);
    }

    proptest! {
        /// Whatever the order of starts, ends and clock, no group ever runs
        /// more than its limit, nor starts more often than its rate allows.
        #[test]
        fn no_group_runs_or_starts_more_than_its_limits(
            max in 1u32..4,
            ops in proptest::collection::vec((0usize..4, any::<bool>(), 0u64..60_000), 1..400),
        ) {
            let limit = RateLimit::per_second(20).burst(2);
            let mut k: Keyed<u32> = Keyed::new(Some(max), Some(limit)).unwrap();
            let groups: Vec<GroupKey> = vec![key("a"), key("b"), key("c"), None];
            let mut running = [0u32; 4];
            let mut starts: Vec<Vec<u64>> = vec![Vec::new(); 4];
            let mut now = 0u64;
            for (g, start, gap) in ops {
                now += gap;
                if start {
                    if k.check(&groups[g], now, false).is_ok() {
                        k.take(&groups[g], now, false);
                        running[g] += 1;
                        starts[g].push(now);
                        prop_assert!(running[g] <= max);
                    }
                } else if running[g] > 0 {
                    running[g] -= 1;
                    let _ = k.ended(&groups[g], now);
                }
            }
            let interval = limit.interval_micros();
            for s in &starts {
                for (i, &from) in s.iter().enumerate() {
                    for (j, &to) in s.iter().enumerate().skip(i) {
                        prop_assert!((j - i + 1) as u64 <= 2 + (to - from) / interval);
                    }
                }
            }
        }
    }
}
