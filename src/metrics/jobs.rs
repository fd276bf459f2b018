//! Job metrics from the queue's event stream: counters by task, run time
//! and lateness histograms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use metrics::{counter, histogram, Counter, Histogram};
use tokio::sync::Notify;

use super::names;
use crate::event::{Event, EventStream, Filter, JobEvent, JobEventKind};
use crate::job::JobId;
use crate::queue::Queue;

/// How [`JobMetrics`] subscribes.
///
/// # Examples
///
/// ```
/// use kessel::metrics::JobMetricsConfig;
/// let mut config = JobMetricsConfig::default();
/// config.buffer = 65_536;
/// assert_eq!(config.max_tracked_jobs, 100_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobMetricsConfig {
    /// Events buffered for the subscriber (default 16384). Events beyond it
    /// are lost to the metrics and counted in `kessel_events_lost_total`.
    pub buffer: usize,
    /// At most this many jobs are followed at once for the run-time and
    /// lateness histograms (default 100 000): a job between its creation
    /// and its end takes an entry of a few dozen bytes. Jobs beyond it are
    /// counted but not timed.
    pub max_tracked_jobs: usize,
}

impl Default for JobMetricsConfig {
    fn default() -> Self {
        JobMetricsConfig {
            buffer: 16_384,
            max_tracked_jobs: 100_000,
        }
    }
}

/// Records what happens to a queue's jobs, from its event stream (see
/// [`names`](super::names) for the metrics): a counter per event kind and
/// task, `kessel_job_run_seconds` from each attempt's `started` to its
/// `completed`, `failed` or `timed-out`, and `kessel_job_lateness_seconds`
/// from when a job was due (its creation, its `scheduled` or `retrying`
/// time, its kick) to its `started`.
///
/// It sees the events of this process: jobs another process created (a
/// shared store) or that were pending when this process started are
/// counted from their `started` on, with no lateness sample. Dropping it
/// unsubscribes.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::{JobContext, JobError};
/// let queue = kessel::Queue::new();
/// let metrics = kessel::metrics::JobMetrics::attach(&queue);
/// queue.define("hello").action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
/// queue.process(["default"]).start()?;
/// queue.create("hello", ()).await?;
/// metrics.wait_finished(1).await; // the job's final event is recorded
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JobMetrics {
    task: tokio::task::JoinHandle<()>,
    probe: Arc<Probe>,
}

/// What the recording task has done, for [`JobMetrics::wait_finished`].
#[derive(Debug, Default)]
struct Probe {
    events: AtomicU64,
    finished: AtomicU64,
    notify: Notify,
}

impl JobMetrics {
    /// Subscribes to `queue`'s events with [`JobMetricsConfig::default`].
    ///
    /// # Panics
    ///
    /// Outside a running actix system (or tokio runtime).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// let queue = kessel::Queue::new();
    /// let metrics = kessel::metrics::JobMetrics::attach(&queue);
    /// assert_eq!(metrics.events_recorded(), 0);
    /// # }
    /// ```
    pub fn attach(queue: &Queue) -> JobMetrics {
        JobMetrics::attach_with(queue, JobMetricsConfig::default())
    }

    /// Subscribes to `queue`'s events with `config`.
    ///
    /// # Panics
    ///
    /// Outside a running actix system (or tokio runtime).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// use kessel::metrics::{JobMetrics, JobMetricsConfig};
    /// let queue = kessel::Queue::new();
    /// let mut config = JobMetricsConfig::default();
    /// config.buffer = 65_536;
    /// let _metrics = JobMetrics::attach_with(&queue, config);
    /// # }
    /// ```
    pub fn attach_with(queue: &Queue, config: JobMetricsConfig) -> JobMetrics {
        let stream = queue.events_with_buffer(Filter::All, config.buffer);
        let probe = Arc::new(Probe::default());
        let task = actix_rt::spawn(record(
            stream,
            Recorder::new(config.max_tracked_jobs),
            probe.clone(),
        ));
        JobMetrics { task, probe }
    }

    /// How many events it has recorded so far.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// let metrics = kessel::metrics::JobMetrics::attach(&kessel::Queue::new());
    /// assert_eq!(metrics.events_recorded(), 0);
    /// # }
    /// ```
    pub fn events_recorded(&self) -> u64 {
        self.probe.events.load(Ordering::Acquire)
    }

    /// Waits until it has recorded at least `jobs` final job events
    /// (`completed`, `buried`, `expired`, `cancelled`) since it was
    /// attached: a probe for tests, which then read the metrics knowing
    /// every event before those is in them.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// let metrics = kessel::metrics::JobMetrics::attach(&kessel::Queue::new());
    /// metrics.wait_finished(0).await; // nothing to wait for
    /// # }
    /// ```
    pub async fn wait_finished(&self, jobs: u64) {
        loop {
            let notified = self.probe.notify.notified();
            if self.probe.finished.load(Ordering::Acquire) >= jobs {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for JobMetrics {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(mut stream: EventStream, mut recorder: Recorder, probe: Arc<Probe>) {
    while let Some(event) = stream.next().await {
        let finished = recorder.record(&event);
        probe.events.fetch_add(1, Ordering::Release);
        if finished {
            probe.finished.fetch_add(1, Ordering::Release);
            probe.notify.notify_waiters();
        }
    }
}

/// The handles of one task's metrics, registered once.
struct TaskMetrics {
    created: Counter,
    started: Counter,
    completed: Counter,
    failed: Counter,
    timed_out: Counter,
    retried: Counter,
    buried: Counter,
    expired: Counter,
    cancelled: Counter,
    kicked: Counter,
    run: Histogram,
    lateness: Histogram,
}

impl TaskMetrics {
    fn new(task: &str) -> Self {
        let label = || [("task", task.to_owned())];
        TaskMetrics {
            created: counter!(names::JOBS_CREATED, &label()),
            started: counter!(names::JOBS_STARTED, &label()),
            completed: counter!(names::JOBS_COMPLETED, &label()),
            failed: counter!(names::JOBS_FAILED, &label()),
            timed_out: counter!(names::JOBS_TIMED_OUT, &label()),
            retried: counter!(names::JOBS_RETRIED, &label()),
            buried: counter!(names::JOBS_BURIED, &label()),
            expired: counter!(names::JOBS_EXPIRED, &label()),
            cancelled: counter!(names::JOBS_CANCELLED, &label()),
            kicked: counter!(names::JOBS_KICKED, &label()),
            run: histogram!(names::JOB_RUN_SECONDS, &label()),
            lateness: histogram!(names::JOB_LATENESS_SECONDS, &label()),
        }
    }
}

/// What is known of one job between its events.
#[derive(Default)]
struct Track {
    /// When it became (or becomes) due, if this process saw it.
    due: Option<DateTime<Utc>>,
    /// When its running attempt started.
    started: Option<DateTime<Utc>>,
}

/// Turns events into metrics. Clock-free: every time comes from the
/// events, so what it records does not depend on when it reads them.
struct Recorder {
    tasks: HashMap<Arc<str>, TaskMetrics>,
    jobs: HashMap<JobId, Track>,
    max_tracked: usize,
    lost: Counter,
}

/// The job's track, made if there is room.
fn track(jobs: &mut HashMap<JobId, Track>, max: usize, id: JobId) -> Option<&mut Track> {
    if jobs.len() >= max && !jobs.contains_key(&id) {
        return None;
    }
    Some(jobs.entry(id).or_default())
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    // A negative span (clocks of two processes) counts as none.
    (to - from).to_std().map_or(0.0, |d| d.as_secs_f64())
}

impl Recorder {
    fn new(max_tracked: usize) -> Self {
        Recorder {
            tasks: HashMap::new(),
            jobs: HashMap::new(),
            max_tracked,
            lost: counter!(names::EVENTS_LOST),
        }
    }

    /// Records one event; returns whether it ended a job.
    fn record(&mut self, event: &Event) -> bool {
        match event {
            Event::Job(e) => self.job(e),
            Event::Lagged { missed } => {
                self.lost.increment(*missed);
                false
            }
            Event::Queue(_) => false,
        }
    }

    fn job(&mut self, e: &JobEvent) -> bool {
        let Recorder {
            tasks,
            jobs,
            max_tracked,
            ..
        } = self;
        if !tasks.contains_key(&e.task) {
            tasks.insert(e.task.clone(), TaskMetrics::new(&e.task));
        }
        // Registered just above; a missing entry records nothing rather
        // than panic.
        let Some(m) = tasks.get(&e.task) else {
            return false;
        };
        let mut run_ended = false;
        match &e.kind {
            JobEventKind::Created => {
                m.created.increment(1);
                if let Some(t) = track(jobs, *max_tracked, e.id) {
                    t.due = Some(e.at);
                }
            }
            JobEventKind::Scheduled { run_at } | JobEventKind::Retrying { run_at } => {
                if matches!(e.kind, JobEventKind::Retrying { .. }) {
                    m.retried.increment(1);
                }
                let run_at = *run_at;
                if let Some(t) = track(jobs, *max_tracked, e.id) {
                    t.due = Some(run_at);
                }
            }
            JobEventKind::Kicked => {
                m.kicked.increment(1);
                if let Some(t) = track(jobs, *max_tracked, e.id) {
                    t.due = Some(e.at);
                }
            }
            JobEventKind::Started => {
                m.started.increment(1);
                if let Some(t) = track(jobs, *max_tracked, e.id) {
                    if let Some(due) = t.due.take() {
                        m.lateness.record(seconds(due, e.at));
                    }
                    t.started = Some(e.at);
                }
            }
            JobEventKind::Completed { .. } => {
                m.completed.increment(1);
                run_ended = true;
            }
            JobEventKind::Failed { .. } => {
                m.failed.increment(1);
                run_ended = true;
            }
            JobEventKind::TimedOut => {
                m.timed_out.increment(1);
                run_ended = true;
            }
            JobEventKind::Buried { .. } => m.buried.increment(1),
            JobEventKind::Expired => m.expired.increment(1),
            JobEventKind::Cancelled => m.cancelled.increment(1),
            JobEventKind::Progress(_) | JobEventKind::Log(_) => {}
        }
        if run_ended {
            if let Some(started) = jobs.get_mut(&e.id).and_then(|t| t.started.take()) {
                m.run.record(seconds(started, e.at));
            }
        }
        let last = e.kind.is_final();
        if last {
            jobs.remove(&e.id);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: JobId, at_ms: i64, kind: JobEventKind) -> Event {
        Event::Job(JobEvent {
            id,
            task: "t".into(),
            tag: None,
            attempt: 1,
            at: DateTime::from_timestamp_millis(at_ms).unwrap(),
            kind,
        })
    }

    #[test]
    fn a_finished_job_is_no_longer_tracked_and_a_full_table_takes_no_more() {
        let mut r = Recorder::new(1);
        let (a, b) = (JobId::new(), JobId::new());
        assert!(!r.record(&event(a, 0, JobEventKind::Created)));
        assert!(!r.record(&event(b, 0, JobEventKind::Created)));
        assert_eq!(r.jobs.len(), 1, "the second job did not fit");
        assert!(r.record(&event(a, 5, JobEventKind::Cancelled)));
        assert!(r.jobs.is_empty());
    }
}
