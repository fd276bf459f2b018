//! Flow control a task definition carries: how many of its jobs may run
//! at once ([`TaskBuilder::max_running`](crate::TaskBuilder::max_running))
//! and how often they may start ([`RateLimit`]), for the task as a whole
//! or for each of its jobs' groups
//! ([`TaskBuilder::max_running_per_group`](crate::TaskBuilder::max_running_per_group),
//! [`TaskBuilder::rate_limit_per_group`](crate::TaskBuilder::rate_limit_per_group)).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

/// How often a task's jobs may start: `count` per `per`, with bursts of up
/// to `burst` (default 1: evenly spaced). A job over the limit waits, ready,
/// and starts when the limit allows; it is never failed for it.
///
/// Written as `"COUNT/PERIOD"`, PERIOD a kessel duration or a bare unit:
/// `"10/s"`, `"100/m"`, `"5/2s"`, `"1000/h"`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kessel::RateLimit;
/// let api = RateLimit::per_second(10).burst(20);
/// assert_eq!(api.count(), 10);
/// assert_eq!("100/m".parse::<RateLimit>().unwrap(), RateLimit::new(100, Duration::from_secs(60)));
/// assert!("0/s".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    count: u32,
    per: Duration,
    burst: u32,
}

impl RateLimit {
    /// `count` starts per `per`. Checked when the task is defined: a zero
    /// count or period is [`Error::InvalidInput`] naming `rate_limit`.
    ///
    /// ```
    /// let limit = kessel::RateLimit::new(3, std::time::Duration::from_secs(1));
    /// assert_eq!(limit.per(), std::time::Duration::from_secs(1));
    /// ```
    pub fn new(count: u32, per: Duration) -> Self {
        RateLimit {
            count,
            per,
            burst: 1,
        }
    }

    /// `count` starts per second.
    ///
    /// ```
    /// assert_eq!(kessel::RateLimit::per_second(5).count(), 5);
    /// ```
    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` starts per minute.
    ///
    /// ```
    /// assert_eq!(kessel::RateLimit::per_minute(100).per().as_secs(), 60);
    /// ```
    pub fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// Lets up to `burst` jobs start at once after a quiet spell (default
    /// 1); the average stays `count` per `per`.
    ///
    /// ```
    /// assert_eq!(kessel::RateLimit::per_second(10).burst(50).burst_size(), 50);
    /// ```
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Starts allowed per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// How many may start at once.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// Checks the numbers.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.validate_as("rate_limit")
    }

    /// Checks the numbers; an error names `field`.
    pub(crate) fn validate_as(&self, field: &'static str) -> Result<(), Error> {
        let invalid = |reason: &str| Error::InvalidInput {
            field,
            reason: format!("{self}: {reason}"),
        };
        if self.count == 0 {
            return Err(invalid("the count must be at least 1"));
        }
        if self.per.is_zero() {
            return Err(invalid("the period must be longer than zero"));
        }
        if self.burst == 0 {
            return Err(invalid("the burst must be at least 1"));
        }
        Ok(())
    }

    /// The time between two starts at the steady rate, in microseconds
    /// (at least 1).
    pub(crate) fn interval_micros(&self) -> u64 {
        let per = u64::try_from(self.per.as_micros()).unwrap_or(u64::MAX);
        (per / u64::from(self.count.max(1))).max(1)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {:?}", self.count, self.per)?;
        if self.burst != 1 {
            write!(f, " (bursts of {})", self.burst)?;
        }
        Ok(())
    }
}

/// Why a rate limit's text cannot be read.
///
/// ```
/// let err = "ten/s".parse::<kessel::RateLimit>().unwrap_err();
/// assert!(err.to_string().contains("ten/s"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a rate limit (expected COUNT/PERIOD, e.g. 10/s or 100/m): {reason}")]
pub struct RateLimitError {
    text: String,
    reason: String,
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| RateLimitError {
            text: text.to_owned(),
            reason,
        };
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| fail("there is no `/`".into()))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|e| fail(format!("the count: {e}")))?;
        let per = per.trim();
        if per.is_empty() {
            return Err(fail("there is no period after the `/`".into()));
        }
        // A bare unit means one of it.
        let per = if per.chars().all(|c| c.is_ascii_alphabetic()) {
            format!("1{per}")
        } else {
            per.to_owned()
        };
        let per = crate::duration::parse_duration(&per).map_err(|e| fail(e.to_string()))?;
        let limit = RateLimit::new(count, per);
        limit.validate().map_err(|e| fail(e.to_string()))?;
        Ok(limit)
    }
}

/// A rate limit's state in the scheduler: the generic cell rate algorithm
/// over the scheduler's clock (microseconds), so a paused test clock drives
/// it exactly. `tat` is the theoretical arrival time of the next start.
#[derive(Debug, Clone)]
pub(crate) struct Gcra {
    interval: u64,
    tolerance: u64,
    tat: u64,
}

impl Gcra {
    pub(crate) fn new(limit: &RateLimit) -> Self {
        let interval = limit.interval_micros();
        Gcra {
            interval,
            tolerance: interval.saturating_mul(u64::from(limit.burst.max(1)) - 1),
            tat: 0,
        }
    }

    /// Takes a start at `now` (µs), or says when one will be allowed.
    #[cfg(test)]
    pub(crate) fn try_take(&mut self, now: u64) -> Result<(), u64> {
        self.check(now)?;
        self.take(now);
        Ok(())
    }

    /// Whether a start at `now` (µs) is allowed, without taking it; when
    /// not, when it will be.
    pub(crate) fn check(&self, now: u64) -> Result<(), u64> {
        let tat = self.tat.max(now);
        if tat - now > self.tolerance {
            return Err(tat - self.tolerance);
        }
        Ok(())
    }

    /// Takes a start at `now` (µs) that [`Gcra::check`] allowed.
    pub(crate) fn take(&mut self, now: u64) {
        self.tat = self.tat.max(now).saturating_add(self.interval);
    }

    /// Whether the bucket is full at `now`: a limiter in this state is the
    /// same as a new one, so it need not be kept.
    pub(crate) fn is_rested(&self, now: u64) -> bool {
        self.tat <= now
    }
}

/// Checks a task's `max_running`.
pub(crate) fn validate_max_running(n: u32) -> Result<(), Error> {
    validate_running_limit("max_running", n)
}

/// Checks a running limit named `field`.
pub(crate) fn validate_running_limit(field: &'static str, n: u32) -> Result<(), Error> {
    if n == 0 {
        return Err(Error::InvalidInput {
            field,
            reason: "at most 0 running jobs would run nothing; use suspend to hold a task".into(),
        });
    }
    Ok(())
}

/// Why a job of a limited task may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// Its task or group runs its most jobs: one may start when a run
    /// ends.
    Running,
    /// A rate limit allows the next start at this time (µs).
    Until(u64),
}

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

/// The limits of one tag, on all its jobs together whatever their task
/// ([`QueueBuilder::tag_max_running`](crate::QueueBuilder::tag_max_running),
/// [`QueueBuilder::tag_rate_limit`](crate::QueueBuilder::tag_rate_limit)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TagLimit {
    pub(crate) max_running: Option<u32>,
    pub(crate) rate: Option<RateLimit>,
}

/// The queue's limits per tag, by tag name, checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct TagLimits {
    limits: HashMap<String, TagLimit>,
}

impl TagLimits {
    /// Checks what the builder was given: a later call for the same tag
    /// and limit wins. An error names `tag`, `tag_max_running` or
    /// `tag_rate_limit`.
    pub(crate) fn checked(
        running: &[(String, u32)],
        rates: &[(String, Result<RateLimit, RateLimitError>)],
    ) -> Result<Self, Error> {
        let mut limits: HashMap<String, TagLimit> = HashMap::new();
        for (tag, n) in running {
            validate_tag(tag)?;
            validate_running_limit("tag_max_running", *n)?;
            limits.entry(tag.clone()).or_default().max_running = Some(*n);
        }
        for (tag, rate) in rates {
            validate_tag(tag)?;
            let rate = rate.clone().map_err(|e| Error::InvalidInput {
                field: "tag_rate_limit",
                reason: e.to_string(),
            })?;
            rate.validate_as("tag_rate_limit")?;
            limits.entry(tag.clone()).or_default().rate = Some(rate);
        }
        Ok(TagLimits { limits })
    }

    /// The limits of tag `tag`, or `None` when it has none.
    pub(crate) fn get(&self, tag: &str) -> Option<TagLimit> {
        self.limits.get(tag).copied()
    }

    /// The gate of tag `tag`, or `None` when it has no limit.
    pub(crate) fn gate(&self, tag: &str) -> Option<TagGate> {
        self.limits.get(tag).map(|l| TagGate {
            max_running: l.max_running,
            places: None,
            running: 0,
            rate: l.rate.as_ref().map(Gcra::new),
        })
    }
}

/// Checks a tag named in a tag limit: the rule a task's tag follows.
fn validate_tag(tag: &str) -> Result<(), Error> {
    if tag.trim().is_empty() {
        return Err(Error::InvalidInput {
            field: "tag",
            reason: "a tag limit names an empty tag".into(),
        });
    }
    Ok(())
}

/// A tag's limits in the scheduler: its runs under way and its rate
/// limiter. While it says no, the tag's ready jobs stay in the tag's own
/// ready set, in their order, and workers take other tags' jobs.
#[derive(Debug)]
pub(crate) struct TagGate {
    max_running: Option<u32>,
    /// On a shared store, the places of `max_running` this process holds
    /// (see `JobClaim::tag_places`); `None`: the whole limit.
    places: Option<u32>,
    running: u32,
    rate: Option<Gcra>,
}

impl TagGate {
    /// Whether a job of the tag may start at `now` (µs), without taking
    /// it. With `rate_claimed`, the tag's rate limit was counted when its
    /// jobs were claimed (a shared store holds it for every process), so
    /// it is not counted again here.
    pub(crate) fn check(&self, now: u64, rate_claimed: bool) -> Result<(), Blocked> {
        if self.running_cap().is_some_and(|cap| self.running >= cap) {
            return Err(Blocked::Running);
        }
        if let Some(rate) = self.rate.as_ref().filter(|_| !rate_claimed) {
            rate.check(now).map_err(Blocked::Until)?;
        }
        Ok(())
    }

    /// Takes a start at `now` that [`TagGate::check`] allowed.
    pub(crate) fn take(&mut self, now: u64, rate_claimed: bool) {
        self.running += 1;
        if let Some(rate) = self.rate.as_mut().filter(|_| !rate_claimed) {
            rate.take(now);
        }
    }

    /// The tag's running limit, if any.
    pub(crate) fn max_running(&self) -> Option<u32> {
        self.max_running
    }

    /// How many of the tag's jobs may run here at once: the places this
    /// process holds, at most the limit.
    pub(crate) fn running_cap(&self) -> Option<u32> {
        self.max_running
            .map(|max| self.places.unwrap_or(max).min(max))
    }

    /// The places of the tag's running limit this process holds, once a
    /// claim gave it some.
    pub(crate) fn places(&self) -> Option<u32> {
        self.places
    }

    /// A claim gave this process `n` places of the tag's running limit.
    pub(crate) fn set_places(&mut self, n: u32) {
        if self.max_running.is_some() {
            self.places = Some(n);
        }
    }

    /// How many of the tag's jobs run here.
    pub(crate) fn running(&self) -> u32 {
        self.running
    }

    /// A run of the tag ended.
    pub(crate) fn ended(&mut self) {
        self.running = self.running.saturating_sub(1);
    }
}

/// What [`TaskBuilder::rate_limit`](crate::TaskBuilder::rate_limit) takes:
/// a [`RateLimit`], or its text (`"10/s"`).
///
/// ```
/// use kessel::IntoRateLimit;
/// assert_eq!("10/s".into_rate_limit().unwrap(), kessel::RateLimit::per_second(10));
/// ```
pub trait IntoRateLimit {
    /// Converts into a [`RateLimit`].
    ///
    /// # Errors
    ///
    /// [`RateLimitError`] naming the text when it cannot be read.
    fn into_rate_limit(self) -> Result<RateLimit, RateLimitError>;
}

impl IntoRateLimit for RateLimit {
    fn into_rate_limit(self) -> Result<RateLimit, RateLimitError> {
        Ok(self)
    }
}

impl IntoRateLimit for &str {
    fn into_rate_limit(self) -> Result<RateLimit, RateLimitError> {
        self.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_are_read_from_text() {
        let r: RateLimit = "10/s".parse().unwrap();
        assert_eq!(r, RateLimit::per_second(10));
        assert_eq!(
            "5/2s".parse::<RateLimit>().unwrap().per(),
            Duration::from_secs(2)
        );
        for bad in [
            "",
            "10",
            "/s",
            "10/",
            "-1/s",
            "0/s",
            "10/0s",
            "10/parsec",
            "1e3/s",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_steady_rate_spaces_starts_evenly_and_a_burst_lets_some_through_at_once() {
        let mut g = Gcra::new(&RateLimit::per_second(10));
        assert_eq!(g.try_take(0), Ok(()));
        assert_eq!(g.try_take(0), Err(100_000), "the next start 100 ms later");
        assert_eq!(g.try_take(100_000), Ok(()));
        let mut g = Gcra::new(&RateLimit::per_second(10).burst(3));
        for _ in 0..3 {
            assert_eq!(g.try_take(0), Ok(()));
        }
        assert_eq!(g.try_take(0), Err(100_000));
    }

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

    #[test]
    fn a_tag_gate_holds_at_its_running_limit_and_spaces_starts_at_its_rate() {
        let limits = TagLimits::checked(
            &[("mail".into(), 2)],
            &[("mail".into(), Ok(RateLimit::per_second(10)))],
        )
        .unwrap();
        assert!(
            limits.gate("other").is_none(),
            "a tag without limits has no gate"
        );
        let mut gate = limits.gate("mail").unwrap();
        assert_eq!(gate.check(0, false), Ok(()));
        gate.take(0, false);
        assert_eq!(gate.check(0, false), Err(Blocked::Until(100_000)));
        gate.take(100_000, false);
        assert_eq!(gate.check(500_000, false), Err(Blocked::Running));
        gate.ended();
        assert_eq!(gate.check(500_000, false), Ok(()));
    }

    #[test]
    fn a_tag_gate_holding_places_admits_no_more_than_its_places_nor_its_limit() {
        let limits = TagLimits::checked(&[("mail".into(), 3)], &[]).unwrap();
        let mut gate = limits.gate("mail").unwrap();
        assert_eq!(
            gate.running_cap(),
            Some(3),
            "the whole limit before any claim"
        );
        gate.set_places(1);
        assert_eq!(gate.places(), Some(1));
        gate.take(0, true);
        assert_eq!(
            gate.check(0, true),
            Err(Blocked::Running),
            "one place, one run"
        );
        gate.set_places(2);
        assert_eq!(gate.check(0, true), Ok(()), "a second place frees a start");
        gate.set_places(10);
        assert_eq!(gate.running_cap(), Some(3), "never more than the limit");
        gate.ended();
        gate.set_places(0);
        assert_eq!(
            gate.check(0, true),
            Err(Blocked::Running),
            "no place, no start"
        );
        let rate_only = TagLimits::checked(&[], &[("sms".into(), Ok(RateLimit::per_second(1)))])
            .unwrap()
            .gate("sms")
            .unwrap();
        let mut rate_only = rate_only;
        rate_only.set_places(0);
        assert_eq!(
            rate_only.places(),
            None,
            "a tag without a running limit holds no places"
        );
    }

    proptest! {
        /// Over any window of time, no more than burst + window/interval
        /// starts are allowed, whatever the pattern of requests.
        #[test]
        fn never_more_starts_than_the_limit_allows(
            count in 1u32..100,
            per_ms in 1u64..10_000,
            burst in 1u32..10,
            gaps in proptest::collection::vec(0u64..50_000, 1..300),
        ) {
            let limit = RateLimit::new(count, Duration::from_millis(per_ms)).burst(burst);
            let mut g = Gcra::new(&limit);
            let mut now = 0u64;
            let mut starts = Vec::new();
            for gap in gaps {
                now += gap;
                if g.try_take(now).is_ok() {
                    starts.push(now);
                }
            }
            let interval = limit.interval_micros();
            for (i, &from) in starts.iter().enumerate() {
                for (j, &to) in starts.iter().enumerate().skip(i) {
                    let allowed = u64::from(burst) + (to - from) / interval;
                    prop_assert!((j - i + 1) as u64 <= allowed, "{} starts in {} µs", j - i + 1, to - from);
                }
            }
        }

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

        /// A zero running limit is refused naming its field; any other is
        /// taken.
        #[test]
        fn a_running_limit_is_refused_only_at_zero(n in 0u32..1_000) {
            let got = validate_running_limit("max_running_per_group", n);
            if n == 0 {
                prop_assert!(
                    matches!(got, Err(Error::InvalidInput { field: "max_running_per_group", .. })),
                    "{got:?}"
                );
            } else {
                prop_assert!(got.is_ok());
            }
        }

        /// A tag limit is refused naming its field: a blank tag names
        /// `tag`, a zero running limit `tag_max_running`, an unreadable or
        /// zero rate `tag_rate_limit`; anything else is taken.
        #[test]
        fn a_bad_tag_limit_is_refused_naming_its_field(
            tag in "[ a-z]{0,4}",
            n in 0u32..3,
            rate in "[0-3]{0,1}/[0-2]?[sm]?",
        ) {
            let got = TagLimits::checked(&[(tag.clone(), n)], &[]);
            if tag.trim().is_empty() {
                prop_assert!(matches!(got, Err(Error::InvalidInput { field: "tag", .. })), "{got:?}");
            } else if n == 0 {
                prop_assert!(
                    matches!(got, Err(Error::InvalidInput { field: "tag_max_running", .. })),
                    "{got:?}"
                );
            } else {
                prop_assert!(got.is_ok());
            }
            let parsed = rate.parse::<RateLimit>();
            let got = TagLimits::checked(&[], &[("t".into(), parsed.clone())]);
            match parsed {
                Ok(_) => prop_assert!(got.is_ok(), "{rate}: {got:?}"),
                Err(_) => prop_assert!(
                    matches!(got, Err(Error::InvalidInput { field: "tag_rate_limit", .. })),
                    "{rate}: {got:?}"
                ),
            }
            let zero = RateLimit::per_second(n).burst(1);
            let got = TagLimits::checked(&[], &[("t".into(), Ok(zero))]);
            prop_assert_eq!(
                n == 0,
                matches!(got, Err(Error::InvalidInput { field: "tag_rate_limit", .. }))
            );
        }

        /// A per-group rate with a zero count, period or burst is refused
        /// naming `rate_limit_per_group`.
        #[test]
        fn a_group_rate_with_a_zero_is_refused_naming_its_field(
            count in 0u32..3, per_ms in 0u64..3, burst in 0u32..3,
        ) {
            let got = RateLimit::new(count, Duration::from_millis(per_ms))
                .burst(burst)
                .validate_as("rate_limit_per_group");
            if count == 0 || per_ms == 0 || burst == 0 {
                prop_assert!(
                    matches!(got, Err(Error::InvalidInput { field: "rate_limit_per_group", .. })),
                    "{got:?}"
                );
            } else {
                prop_assert!(got.is_ok());
            }
        }
    }
}
