//! The engine's clock: tokio's `Instant` (so a paused test clock drives it)
//! mapped onto UTC, with the wheel's millisecond ticks counted from an origin.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Whether the current runtime's clock is paused (a test on tokio's
/// `test-util` clock): a running clock is the system's monotonic clock, so
/// it moves while this spins for a microsecond; a paused one only moves
/// when the runtime is idle.
pub(crate) fn clock_paused() -> bool {
    let before = Instant::now();
    let spin = std::time::Instant::now();
    while spin.elapsed() < std::time::Duration::from_micros(1) {
        std::hint::spin_loop();
    }
    Instant::now() == before
}

/// Maps between tokio time, UTC and wheel milliseconds. Every time the
/// engine reads comes from here, so tests on a paused tokio clock see UTC
/// advance with it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
    origin_utc: DateTime<Utc>,
    /// `origin_utc` in nanoseconds since the Unix epoch.
    origin_nanos: i64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        // Read UTC between two monotonic reads and pair it with their
        // midpoint; retry a pair the thread was interrupted in, so the
        // mapping is off by nanoseconds rather than by a page fault.
        let mut best: Option<(std::time::Duration, Instant, DateTime<Utc>)> = None;
        for _ in 0..5 {
            let before = Instant::now();
            let utc = Utc::now();
            let after = Instant::now();
            let gap = after - before;
            if best.as_ref().is_none_or(|(g, _, _)| gap < *g) {
                best = Some((gap, before + gap / 2, utc));
            }
            if gap < std::time::Duration::from_micros(1) {
                break;
            }
        }
        let (_, origin, origin_utc) = best.expect("at least one reading");
        Clock {
            origin,
            origin_utc,
            // Now is within chrono's nanosecond range (1677 to 2262).
            origin_nanos: origin_utc.timestamp_nanos_opt().unwrap_or_default(),
        }
    }

    /// Milliseconds since the origin, rounded down.
    pub(crate) fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// The current time in UTC.
    pub(crate) fn now_utc(&self) -> DateTime<Utc> {
        super::utc::from_nanos(self.now_nanos())
    }

    /// The current time in nanoseconds since the Unix epoch (saturating
    /// past 2262).
    pub(crate) fn now_nanos(&self) -> i64 {
        let elapsed = i64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(i64::MAX);
        self.origin_nanos.saturating_add(elapsed)
    }

    /// The first wheel tick at or after `at` (0 for anything before the origin).
    pub(crate) fn tick_for(&self, at: DateTime<Utc>) -> u64 {
        let micros = (at - self.origin_utc)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        if micros <= 0 {
            0
        } else {
            (micros as u64).div_ceil(1000)
        }
    }

    /// Microseconds from the origin to `at`, rounded down (0 for anything
    /// before it): how much of the time to `at` has passed, for the present.
    pub(crate) fn micros_for(&self, at: DateTime<Utc>) -> u64 {
        (at - self.origin_utc)
            .num_microseconds()
            .unwrap_or(i64::MAX)
            .max(0) as u64
    }

    /// Microseconds from the origin to `at`, rounded up: the first
    /// microsecond at which `at` has come, for a deadline.
    pub(crate) fn micros_until(&self, at: DateTime<Utc>) -> u64 {
        let nanos = (at - self.origin_utc)
            .num_nanoseconds()
            .map_or(u64::MAX, |n| n.max(0) as u64);
        nanos.div_ceil(1000)
    }

    /// The wheel tick `at` falls in: its millisecond, rounded down.
    pub(crate) fn tick_of(&self, at: DateTime<Utc>) -> u64 {
        self.micros_for(at) / 1000
    }

    /// The tokio instant `micros` after the origin.
    pub(crate) fn instant_for_micros(&self, micros: u64) -> Instant {
        self.origin + std::time::Duration::from_micros(micros)
    }
}
