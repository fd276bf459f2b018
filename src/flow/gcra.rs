//! A rate limit's state in the scheduler.
//!
//! kessel's own GCRA rather than `governor`'s: the same arithmetic moves
//! PostgreSQL's `rate_limits` rows in the claim's SQL, it runs on the
//! scheduler's (pausable) clock, and dispatch needs a check that takes
//! nothing and the count of starts allowed until a horizon
//! (`docs/flow-control.md`, "The limiter is kessel's own").

use super::RateLimit;

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

    /// How many starts it allows from `now` to `until` (µs), taken as
    /// early as allowed: the k-th (from 0) may come at
    /// [`Gcra::start_at`]`(now, k)`. At most `most`.
    pub(crate) fn allowed_by(&self, now: u64, until: u64, most: u64) -> u64 {
        let first = self.first_start(now);
        let until = i128::from(until);
        if until < first {
            return 0;
        }
        let n = (until - first) / i128::from(self.interval.max(1)) + 1;
        u64::try_from(n).unwrap_or(u64::MAX).min(most)
    }

    /// When the k-th next start (from 0) is allowed, the ones before it
    /// taken as early as allowed: never before `now`.
    pub(crate) fn start_at(&self, now: u64, k: u64) -> u64 {
        let at = self.first_start(now) + i128::from(k) * i128::from(self.interval);
        u64::try_from(at.max(i128::from(now))).unwrap_or(u64::MAX)
    }

    /// The time the burst's first start was allowed from, if it were
    /// taken then: before `now` while the bucket has room (as far before
    /// as the room is large).
    fn first_start(&self, now: u64) -> i128 {
        i128::from(self.tat.max(now)) - i128::from(self.tolerance)
    }

    /// Whether the bucket is full at `now`: a limiter in this state is the
    /// same as a new one, so it need not be kept.
    pub(crate) fn is_rested(&self, now: u64) -> bool {
        self.tat <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

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

    #[test]
    fn the_starts_allowed_by_a_time_count_the_burst_then_the_steady_rate() {
        let mut g = Gcra::new(&RateLimit::per_second(10).burst(3));
        assert_eq!(g.allowed_by(0, 0, 100), 3, "the burst at once");
        assert_eq!(
            g.allowed_by(0, 1_000_000, 100),
            13,
            "and 10 more in a second"
        );
        assert_eq!(g.allowed_by(0, 1_000_000, 5), 5, "at most `most`");
        for _ in 0..3 {
            g.take(0);
        }
        assert_eq!(g.allowed_by(0, 99_999, 100), 0, "the burst is spent");
        assert_eq!(g.allowed_by(0, 100_000, 100), 1);
        assert_eq!(g.start_at(0, 0), 100_000);
        assert_eq!(g.start_at(0, 2), 300_000);
        assert_eq!(g.start_at(500_000, 0), 500_000, "never before now");
    }

    proptest! {
        /// `allowed_by` and `start_at` agree with taking starts one by one
        /// as early as `check` lets them.
        #[test]
        fn allowed_by_and_start_at_agree_with_check_and_take(
            count in 1u32..50,
            per_ms in 1u64..5_000,
            burst in 1u32..8,
            taken in 0u32..20,
            now in 0u64..10_000_000,
            span in 0u64..10_000_000,
        ) {
            let limit = RateLimit::new(count, Duration::from_millis(per_ms)).burst(burst);
            let mut g = Gcra::new(&limit);
            for _ in 0..taken {
                g.take(now / 2);
            }
            let until = now + span;
            let allowed = g.allowed_by(now, until, u64::MAX);
            // Take starts as early as allowed, counting those by `until`.
            let mut sim = g.clone();
            let mut t = now;
            let mut by_until = 0u64;
            for k in 0..200u64 {
                if let Err(at) = sim.check(t) {
                    t = at;
                }
                prop_assert_eq!(g.start_at(now, k), t, "start {}", k);
                if t > until {
                    break;
                }
                by_until += 1;
                sim.take(t);
            }
            if by_until < 200 {
                prop_assert_eq!(allowed, by_until);
            }
        }
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
    }
}
