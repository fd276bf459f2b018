//! What every system's handler records, and how the harness reads it.
//!
//! Handlers call [`Stamps::hit`] with the job's index as the very first
//! thing they do. A hit stores the start time in a preallocated slot (so a
//! lost job shows as a slot never written and a duplicate as one written
//! twice), counts the run, and wakes the harness when the last expected job
//! has started. Nothing here allocates per job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Fixes the origin of [`now_ns`]; call once before any workload.
pub fn init_clock() {
    ORIGIN.get_or_init(Instant::now);
}

/// The instant [`now_ns`] counts from.
pub fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since the origin, plus one, so 0 can mean "never".
pub fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64 + 1
}

/// The instant of a [`now_ns`] value.
pub fn instant_of(ns: u64) -> Instant {
    origin() + Duration::from_nanos(ns.saturating_sub(1))
}

/// Per-job start times and a completion signal, shared with handlers.
#[derive(Debug)]
pub struct Stamps {
    started: Vec<AtomicU64>,
    runs: AtomicU64,
    duplicates: AtomicU64,
    expected: AtomicU64,
    all_started: Notify,
    /// When the producer finished creating (a `now_ns` value; 0 = unknown).
    created_by: AtomicU64,
}

impl Stamps {
    /// Counts `expected` runs without recording per-job times (burn-down).
    pub fn counter(expected: u64) -> Arc<Self> {
        Self::build(expected, false)
    }

    /// Records the start time of each of `expected` jobs, indexed 0..expected.
    pub fn timed(expected: u64) -> Arc<Self> {
        Self::build(expected, true)
    }

    fn build(expected: u64, timed: bool) -> Arc<Self> {
        let started = if timed {
            (0..expected).map(|_| AtomicU64::new(0)).collect()
        } else {
            Vec::new()
        };
        Arc::new(Stamps {
            started,
            runs: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            expected: AtomicU64::new(expected),
            all_started: Notify::new(),
            created_by: AtomicU64::new(0),
        })
    }

    /// A handler started job `index`.
    #[inline]
    pub fn hit(&self, index: u64) {
        if let Some(slot) = self.started.get(index as usize) {
            if slot.swap(now_ns(), Ordering::Relaxed) != 0 {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.runs.fetch_add(1, Ordering::Relaxed) + 1 == self.expected.load(Ordering::Relaxed) {
            self.all_started.notify_one();
        }
    }

    /// Only `k` jobs were created after all (the producer ran out of time).
    pub fn expect(&self, k: u64) {
        self.expected.store(k, Ordering::Relaxed);
        if self.runs() >= k {
            self.all_started.notify_one();
        }
    }

    /// The producer has created every job.
    pub fn mark_created(&self) {
        self.created_by.store(now_ns(), Ordering::Relaxed);
    }

    /// When the producer finished creating, if it said so.
    pub fn created_by(&self) -> Option<u64> {
        match self.created_by.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// How many runs were counted so far.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Runs of a job that had already run.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Waits until every expected job has started, or `cap` passes.
    ///
    /// # Errors
    ///
    /// [`Incomplete`] with how many started when the cap passed.
    pub async fn wait(&self, cap: Duration) -> Result<(), Incomplete> {
        let expected = self.expected.load(Ordering::Relaxed);
        if expected == 0 {
            return Ok(());
        }
        match tokio::time::timeout(cap, self.all_started.notified()).await {
            Ok(()) => Ok(()),
            Err(_) if self.runs() >= expected => Ok(()),
            Err(_) => Err(Incomplete {
                started: self.runs(),
                expected,
                after: cap,
            }),
        }
    }

    /// The start time of job `index` (a [`now_ns`] value), if it started.
    pub fn started_at(&self, index: usize) -> Option<u64> {
        match self.started[index].load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }
}

/// Not every job started before the cap.
#[derive(Debug, Clone)]
pub struct Incomplete {
    pub started: u64,
    pub expected: u64,
    pub after: Duration,
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "only {} of {} jobs started within {:.0?}",
            self.started, self.expected, self.after
        )
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// A histogram of nanosecond values with three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

/// The percentiles of a nanosecond histogram, in microseconds.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let us = |ns: u64| ns as f64 / 1_000.0;
    Percentiles {
        p50: us(h.value_at_quantile(0.50)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        max: us(h.max()),
    }
}

/// Emits jobs at a fixed rate: each call to [`Pacer::due`] says which job
/// indices are due by now.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    per_job: f64,
    total: u64,
    next: u64,
    /// Stop creating at this point even if not every job was created (a
    /// producer slower than the rate, e.g. one durable commit per create).
    deadline: Duration,
}

impl Pacer {
    /// `total` jobs at `rate` per second; creation stops after twice the
    /// time that should take.
    pub fn new(rate: f64, total: u64) -> Self {
        Pacer {
            start: Instant::now(),
            per_job: 1.0 / rate,
            total,
            next: 0,
            deadline: Duration::from_secs_f64((2.0 * total as f64 / rate).max(1.0)),
        }
    }

    /// How many jobs were handed out.
    pub fn sent(&self) -> u64 {
        self.next
    }

    /// The next job index if it is due. One job at a time: the producer
    /// yields between jobs, so a producer that falls behind never floods the
    /// system with a burst it then has to wait behind.
    pub fn next_due(&mut self) -> Option<u64> {
        if self.next >= self.total {
            return None;
        }
        let due = Duration::from_secs_f64(self.next as f64 * self.per_job);
        if self.start.elapsed() < due {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }

    pub fn finished(&self) -> bool {
        self.next >= self.total || self.start.elapsed() > self.deadline
    }

    /// Waits before the next job: yields when jobs are due more often than
    /// every millisecond (a timer could not pace them), sleeps otherwise.
    pub async fn pause(&self) {
        if self.per_job < 0.001 {
            tokio::task::yield_now().await;
        } else {
            let next = self.start + Duration::from_secs_f64(self.next as f64 * self.per_job);
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

/// Create→start latencies: `created[i]` against when job `i` started.
/// Returns the histogram and how many never started.
pub fn latencies(created: &[u64], stamps: &Stamps) -> (Histogram<u64>, u64) {
    let mut h = histogram();
    let mut missing = 0;
    for (i, &c) in created.iter().enumerate() {
        match stamps.started_at(i) {
            Some(s) => h.saturating_record(s.saturating_sub(c).max(1)),
            None => missing += 1,
        }
    }
    (h, missing)
}

/// The resident set size of this process, in bytes (VmRSS).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
