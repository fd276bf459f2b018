//! Job metrics recorded by the scheduler as it moves jobs: counters by
//! task, run time and lateness histograms. No event stream in between, so
//! nothing is lost under bursts and the cost is a few atomic additions per
//! job.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use metrics::{counter, histogram, Counter, Histogram};
use tokio::sync::Notify;

use super::names;
use crate::event::JobEventKind;
use crate::queue::Queue;

/// Records what happens to a queue's jobs (see [`names`](super::names) for
/// the metrics): a counter per kind of change and task,
/// `kessel_job_run_seconds` from each attempt's start to its end
/// (completed, failed or timed out), and `kessel_job_lateness_seconds`
/// from when a job was due to when it started.
///
/// The scheduler records them itself as it moves the jobs it holds, so
/// every change is counted, whatever the rate. On a shared store, a job
/// is counted by the process that runs it (and `created` by the process
/// that created it). Dropping it stops the recording.
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
/// metrics.wait_finished(1).await; // the job's end is recorded
/// assert_eq!(metrics.finished(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct JobMetrics {
    probe: Arc<Probe>,
}

/// What the recorder has done, shared with the handle.
#[derive(Debug)]
struct Probe {
    /// The handle lives: the scheduler records.
    alive: AtomicBool,
    /// Jobs that reached a final state since attaching.
    finished: AtomicU64,
    /// Callers in `wait_finished`: only then is a finish notified.
    waiting: AtomicUsize,
    notify: Notify,
}

impl JobMetrics {
    /// Starts recording `queue`'s job metrics into the installed recorder.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// let queue = kessel::Queue::new();
    /// let metrics = kessel::metrics::JobMetrics::attach(&queue);
    /// assert_eq!(metrics.finished(), 0);
    /// # }
    /// ```
    pub fn attach(queue: &Queue) -> JobMetrics {
        let probe = Arc::new(Probe {
            alive: AtomicBool::new(true),
            finished: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            notify: Notify::new(),
        });
        queue
            .inner
            .scheduler
            .do_send(crate::scheduler::actor::ObserveJobs(JobRecorder::new(
                probe.clone(),
            )));
        JobMetrics { probe }
    }

    /// How many jobs reached a final state (completed, buried, expired,
    /// cancelled) since it was attached.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// let metrics = kessel::metrics::JobMetrics::attach(&kessel::Queue::new());
    /// assert_eq!(metrics.finished(), 0);
    /// # }
    /// ```
    pub fn finished(&self) -> u64 {
        self.probe.finished.load(Ordering::Acquire)
    }

    /// Waits until at least `jobs` jobs reached a final state since it was
    /// attached: a probe for tests, which then read the metrics knowing
    /// every change before those is in them.
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
        self.probe.waiting.fetch_add(1, Ordering::SeqCst);
        loop {
            let notified = self.probe.notify.notified();
            if self.probe.finished.load(Ordering::SeqCst) >= jobs {
                break;
            }
            notified.await;
        }
        self.probe.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for JobMetrics {
    fn drop(&mut self) {
        self.probe.alive.store(false, Ordering::Release);
    }
}

/// The handles of one task's metrics, registered once.
#[derive(Debug)]
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

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    // A negative span (a due time ahead of the clock) counts as none.
    (to - from).to_std().map_or(0.0, |d| d.as_secs_f64())
}

/// The scheduler's side: turns the changes it makes into metrics. Tasks
/// are known by the scheduler's task slot, running jobs by their job slot,
/// so recording is an index, never a lookup by name or id.
#[derive(Debug)]
pub(crate) struct JobRecorder {
    probe: Arc<Probe>,
    /// By task slot.
    tasks: Vec<Option<TaskMetrics>>,
    /// When the attempt running in each job slot started.
    started: Vec<Option<DateTime<Utc>>>,
}

impl JobRecorder {
    fn new(probe: Arc<Probe>) -> Self {
        JobRecorder {
            probe,
            tasks: Vec::new(),
            started: Vec::new(),
        }
    }

    /// Whether its handle still lives.
    pub(crate) fn alive(&self) -> bool {
        self.probe.alive.load(Ordering::Relaxed)
    }

    fn task(&mut self, task: u32, name: &str) -> &TaskMetrics {
        let i = task as usize;
        if self.tasks.len() <= i {
            self.tasks.resize_with(i + 1, || None);
        }
        self.tasks[i].get_or_insert_with(|| TaskMetrics::new(name))
    }

    /// Records a change of a job of task slot `task` (named `name`).
    pub(crate) fn job(&mut self, task: u32, name: &str, kind: &JobEventKind) {
        let m = self.task(task, name);
        match kind {
            JobEventKind::Created => m.created.increment(1),
            JobEventKind::Scheduled { .. } => {}
            JobEventKind::Retrying { .. } => m.retried.increment(1),
            JobEventKind::Kicked => m.kicked.increment(1),
            JobEventKind::Started => m.started.increment(1),
            JobEventKind::Completed { .. } => m.completed.increment(1),
            JobEventKind::Failed { .. } => m.failed.increment(1),
            JobEventKind::TimedOut => m.timed_out.increment(1),
            JobEventKind::Buried { .. } => m.buried.increment(1),
            JobEventKind::Expired => m.expired.increment(1),
            JobEventKind::Cancelled => m.cancelled.increment(1),
            JobEventKind::Progress(_) | JobEventKind::Log(_) => {}
        }
        if kind.is_final() {
            self.probe.finished.fetch_add(1, Ordering::SeqCst);
            if self.probe.waiting.load(Ordering::SeqCst) > 0 {
                self.probe.notify.notify_waiters();
            }
        }
    }

    /// Counts `n` jobs of task slot `task` created here.
    pub(crate) fn created(&mut self, task: u32, name: &str, n: u64) {
        self.task(task, name).created.increment(n);
    }

    /// The job in `slot` started at `now`; it was due at `due`.
    pub(crate) fn run_started(
        &mut self,
        slot: u32,
        task: u32,
        name: &str,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        self.task(task, name).lateness.record(seconds(due, now));
        let i = slot as usize;
        if self.started.len() <= i {
            self.started.resize(i + 1, None);
        }
        self.started[i] = Some(now);
    }

    /// The attempt running in `slot` ended (completed, failed, timed out)
    /// at `now`.
    pub(crate) fn run_ended(&mut self, slot: u32, task: u32, name: &str, now: DateTime<Utc>) {
        let Some(started) = self.started.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.task(task, name).run.record(seconds(started, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> JobRecorder {
        JobRecorder::new(Arc::new(Probe {
            alive: AtomicBool::new(true),
            finished: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            notify: Notify::new(),
        }))
    }

    #[test]
    fn final_changes_count_as_finished_and_a_run_is_timed_once() {
        let mut r = recorder();
        let at = |ms| DateTime::from_timestamp_millis(ms).unwrap();
        r.run_started(3, 0, "t", at(0), at(5));
        r.run_ended(3, 0, "t", at(25));
        assert!(r.started[3].is_none(), "the run's start is taken");
        r.run_ended(3, 0, "t", at(30));
        r.job(0, "t", &JobEventKind::Completed { value: None });
        r.job(
            0,
            "t",
            &JobEventKind::Failed {
                message: "x".into(),
            },
        );
        assert_eq!(r.probe.finished.load(Ordering::SeqCst), 1);
        assert!(r.tasks[0].is_some());
    }
}
