//! Counts of recent events for the overview: attempts that completed or
//! failed per minute over the last [`MINUTES`] and per hour over the last
//! [`HOURS`], and events per second.
//!
//! One subscription to the queue, taken at the first dashboard request,
//! feeds it. It keeps counts only, never the events, in two small rings
//! keyed by the event's own time, so it needs no timer of its own.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use parking_lot::Mutex;

use crate::event::{Event, EventStream, Filter, JobEventKind};
use crate::queue::Queue;

/// How many minutes the minutes chart shows.
pub(crate) const MINUTES: usize = 30;

/// How many hours the hours chart shows.
pub(crate) const HOURS: usize = 24;

/// Over how many seconds the events-per-second rate is taken.
const RATE_SECONDS: i64 = 10;

/// One minute (or hour) of attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Bucket {
    /// Minutes (or hours) since the epoch.
    pub(crate) index: i64,
    /// Attempts that completed.
    pub(crate) completed: u64,
    /// Attempts that failed or timed out.
    pub(crate) failed: u64,
}

#[derive(Debug, Default)]
struct Counts {
    /// The last minutes with anything in them, oldest first.
    minutes: VecDeque<Bucket>,
    /// The last hours with anything in them, oldest first.
    hours: VecDeque<Bucket>,
    /// (second since the epoch, events in it), oldest first.
    seconds: VecDeque<(i64, u64)>,
    /// When the meter started counting.
    since: Option<DateTime<Utc>>,
}

/// Recent event counts, shared by every worker thread of a server.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    counts: Mutex<Counts>,
}

impl Meter {
    /// Subscribes to `queue` once; later calls do nothing. The pump ends
    /// with the meter or the queue.
    pub(crate) fn start(self: &Arc<Self>, queue: &Queue) {
        let mut counts = self.counts.lock();
        if counts.since.is_some() {
            return;
        }
        counts.since = Some(queue.now());
        let events = queue.events_with_buffer(Filter::All, 4096);
        actix_rt::spawn(pump(Arc::downgrade(self), events));
    }

    /// Counts one event.
    pub(crate) fn record(&self, event: &Event) {
        let Event::Job(job) = event else { return };
        let second = job.at.timestamp();
        let mut counts = self.counts.lock();
        match counts.seconds.back_mut() {
            Some((s, n)) if *s == second => *n += 1,
            _ => {
                counts.seconds.push_back((second, 1));
                while counts.seconds.len() > (RATE_SECONDS as usize) * 2 {
                    counts.seconds.pop_front();
                }
            }
        }
        let (completed, failed) = match job.kind {
            JobEventKind::Completed { .. } => (1, 0),
            JobEventKind::Failed { .. } | JobEventKind::TimedOut => (0, 1),
            _ => return,
        };
        add(
            &mut counts.minutes,
            second.div_euclid(60),
            MINUTES,
            completed,
            failed,
        );
        add(
            &mut counts.hours,
            second.div_euclid(3600),
            HOURS,
            completed,
            failed,
        );
    }

    /// The last [`MINUTES`] minutes up to `now`, oldest first, every
    /// minute present (zero when nothing happened in it).
    pub(crate) fn minutes(&self, now: DateTime<Utc>) -> Vec<Bucket> {
        series(
            &self.counts.lock().minutes,
            now.timestamp().div_euclid(60),
            MINUTES,
        )
    }

    /// The last [`HOURS`] hours up to `now`, like [`Meter::minutes`].
    pub(crate) fn hours(&self, now: DateTime<Utc>) -> Vec<Bucket> {
        series(
            &self.counts.lock().hours,
            now.timestamp().div_euclid(3600),
            HOURS,
        )
    }

    /// Job events per second over the last few seconds before `now`.
    pub(crate) fn events_per_second(&self, now: DateTime<Utc>) -> f64 {
        let to = now.timestamp();
        let counts = self.counts.lock();
        let events: u64 = counts
            .seconds
            .iter()
            .filter(|(s, _)| *s > to - RATE_SECONDS && *s <= to)
            .map(|(_, n)| n)
            .sum();
        events as f64 / RATE_SECONDS as f64
    }

    /// When the meter started counting (the first dashboard request).
    pub(crate) fn since(&self) -> Option<DateTime<Utc>> {
        self.counts.lock().since
    }
}

/// Adds to the bucket `index` (events come about in time order: a late
/// one lands in the newest bucket rather than reorder the ring).
fn add(ring: &mut VecDeque<Bucket>, index: i64, keep: usize, completed: u64, failed: u64) {
    match ring.back_mut() {
        Some(b) if b.index >= index => {
            b.completed += completed;
            b.failed += failed;
        }
        _ => {
            ring.push_back(Bucket {
                index,
                completed,
                failed,
            });
            while ring.len() > keep {
                ring.pop_front();
            }
        }
    }
}

/// `len` buckets ending at `last`, every one present.
fn series(ring: &VecDeque<Bucket>, last: i64, len: usize) -> Vec<Bucket> {
    (0..len as i64)
        .rev()
        .map(|ago| {
            let index = last - ago;
            ring.iter()
                .find(|b| b.index == index)
                .copied()
                .unwrap_or(Bucket {
                    index,
                    ..Bucket::default()
                })
        })
        .collect()
}

async fn pump(meter: Weak<Meter>, mut events: EventStream) {
    while let Some(event) = events.next().await {
        let Some(meter) = meter.upgrade() else { return };
        meter.record(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::JobEvent;
    use crate::job::JobId;

    fn at(second: i64, kind: JobEventKind) -> Event {
        Event::Job(JobEvent {
            id: JobId::new(),
            task: "t".into(),
            tag: None,
            attempt: 1,
            at: DateTime::from_timestamp(second, 0).unwrap(),
            node: None,
            kind,
        })
    }

    #[test]
    fn minutes_count_completed_and_failed_attempts_and_fill_quiet_minutes() {
        let meter = Meter::default();
        let start = 1_800_000_000; // a whole minute
        meter.record(&at(start, JobEventKind::Completed { value: None }));
        meter.record(&at(
            start + 1,
            JobEventKind::Failed {
                message: "x".into(),
            },
        ));
        meter.record(&at(start + 1, JobEventKind::Started));
        meter.record(&at(start + 120, JobEventKind::TimedOut));
        let minutes = meter.minutes(DateTime::from_timestamp(start + 150, 0).unwrap());
        assert_eq!(minutes.len(), MINUTES);
        let last3: Vec<(u64, u64)> = minutes[MINUTES - 3..]
            .iter()
            .map(|m| (m.completed, m.failed))
            .collect();
        assert_eq!(last3, [(1, 1), (0, 0), (0, 1)]);
        let hours = meter.hours(DateTime::from_timestamp(start + 150, 0).unwrap());
        assert_eq!(hours.len(), HOURS);
        let last = hours[HOURS - 1];
        assert_eq!((last.completed, last.failed), (1, 2));
    }

    #[test]
    fn events_per_second_counts_only_the_last_seconds() {
        let meter = Meter::default();
        for s in 0..30 {
            meter.record(&at(1_000 + s, JobEventKind::Started));
        }
        let rate = meter.events_per_second(DateTime::from_timestamp(1_029, 0).unwrap());
        assert!((rate - 1.0).abs() < f64::EPSILON, "{rate}");
        assert_eq!(
            meter.events_per_second(DateTime::from_timestamp(5_000, 0).unwrap()),
            0.0
        );
    }
}
