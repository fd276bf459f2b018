//! A rate limit's state in the scheduler.

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
