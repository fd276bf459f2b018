//! The job histograms, bucketed by kessel itself: the scheduler adds each
//! sample to a fixed bucket count and a sum, plain integers it alone
//! writes, and the Prometheus text is written from them when a scraper
//! asks. A sample costs a few instructions, where one through the
//! `metrics` facade into the Prometheus exporter was stored (with a time
//! stamp) until the next render.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket bounds (seconds, the Prometheus `le`) of the job histograms:
/// from a millisecond to an hour.
pub(crate) const JOB_BUCKETS: [f64; 17] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
];

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// [`JOB_BUCKETS`] in nanoseconds, what a sample is compared with.
const BOUNDS_NS: [u64; 17] = [
    MS,
    5 * MS,
    10 * MS,
    25 * MS,
    50 * MS,
    100 * MS,
    250 * MS,
    500 * MS,
    S,
    2500 * MS,
    5 * S,
    10 * S,
    30 * S,
    60 * S,
    300 * S,
    900 * S,
    3600 * S,
];

/// Buckets: one per bound, and one past the last (`+Inf` only).
const SLOTS: usize = BOUNDS_NS.len() + 1;

/// Adds `n` to a cell only one thread writes: a plain load and store,
/// no locked instruction. Readers on other threads see each cell whole.
#[inline]
pub(crate) fn bump(cell: &AtomicU64, n: u64) {
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// One histogram's cells: samples per bucket (not cumulative) and their
/// sum. One thread (a queue's scheduler) records; any thread reads.
#[derive(Debug, Default)]
pub(crate) struct Cells {
    buckets: [AtomicU64; SLOTS],
    sum_ns: AtomicU64,
}

impl Cells {
    /// Adds a sample of `ns` nanoseconds. Only the owning thread calls it.
    #[inline]
    pub(crate) fn record(&self, ns: u64) {
        // Short runs are the common case: the search starts at the
        // smallest bound.
        let i = BOUNDS_NS
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(BOUNDS_NS.len());
        bump(&self.buckets[i], 1);
        bump(&self.sum_ns, ns);
    }

    /// Adds what the cells hold now to `into`.
    pub(crate) fn add_to(&self, into: &mut Snapshot) {
        for (total, cell) in into.buckets.iter_mut().zip(&self.buckets) {
            *total += cell.load(Ordering::Relaxed);
        }
        into.sum_ns += self.sum_ns.load(Ordering::Relaxed);
    }
}

/// A histogram read at one time: counts per bucket (not cumulative) and
/// the sum of the samples.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    buckets: [u64; SLOTS],
    sum_ns: u64,
}

impl Snapshot {
    /// Appends the series of this histogram, `name{labels}`, in the
    /// Prometheus text format: a cumulative `_bucket` per bound and
    /// `+Inf`, then `_sum` (seconds) and `_count` (equal to `+Inf`).
    /// `labels` is written as is: `task="a"`, already escaped.
    pub(crate) fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            cumulative += count;
            match JOB_BUCKETS.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_ns as f64 / S as f64;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_nanoseconds_match_the_bounds_in_seconds() {
        for (ns, s) in BOUNDS_NS.iter().zip(JOB_BUCKETS) {
            assert_eq!(*ns as f64 / S as f64, s);
        }
    }

    #[test]
    fn a_sample_on_a_bound_counts_in_that_bucket_and_past_the_last_only_in_inf() {
        let cells = Cells::default();
        cells.record(0);
        cells.record(MS);
        cells.record(MS + 1);
        cells.record(3601 * S);
        let mut snap = Snapshot::default();
        cells.add_to(&mut snap);
        assert_eq!(snap.buckets[0], 2, "0 and exactly 1 ms are <= 0.001");
        assert_eq!(snap.buckets[1], 1);
        assert_eq!(snap.buckets[SLOTS - 1], 1, "over an hour: +Inf only");
        assert_eq!(snap.sum_ns, 2 * MS + 1 + 3601 * S);
        let mut text = String::new();
        snap.write(&mut text, "h", "task=\"t\"");
        assert!(text.contains("h_bucket{task=\"t\",le=\"0.001\"} 2\n"));
        assert!(text.contains("h_bucket{task=\"t\",le=\"0.005\"} 3\n"));
        assert!(text.contains("h_bucket{task=\"t\",le=\"3600\"} 3\n"));
        assert!(text.contains("h_bucket{task=\"t\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("h_count{task=\"t\"} 4\n"));
        assert!(text.contains("h_sum{task=\"t\"} 3601.002000001\n"));
    }
}
