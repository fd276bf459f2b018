//! Job metrics recorded by the scheduler as it moves jobs: counters by
//! task, run time and lateness histograms. No event stream in between, so
//! nothing is lost under bursts. The scheduler counts and buckets in cells
//! only it writes (a plain add each, no locked instruction, no call into
//! the recorder); [`flush`] hands the counts to the `metrics` facade and
//! [`render_histograms`] writes the histograms as Prometheus text.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{counter, Counter};
use metrics_exporter_prometheus::formatting::sanitize_label_value;
use tokio::sync::Notify;

use super::histogram::{bump, Cells, Snapshot};
use super::names;
use crate::event::JobEventKind;
use crate::queue::Queue;

/// Records what happens to a queue's jobs (see [`names`](super::names) for
/// the metrics): a counter per kind of change and task,
/// `kessel_job_run_seconds` from each attempt's start to its end
/// (completed, failed or timed out), and `kessel_job_lateness_seconds`
/// from when a job was due to when it started.
///
/// The counters reach the installed recorder when they are
/// [flushed](super::flush) (every render of [`Prometheus`](super::Prometheus),
/// every [`Sampler`](super::Sampler) sample, and when this is dropped);
/// the histograms are bucketed by kessel and rendered by
/// [`Prometheus::render`](super::Prometheus::render) or
/// [`render_histograms`](super::render_histograms).
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
        // What was counted so far reaches a recorder of the user's own.
        flush();
    }
}

/// What the scheduler counts, one cell per kind, in this order.
const KINDS: [&str; 10] = [
    names::JOBS_CREATED,
    names::JOBS_STARTED,
    names::JOBS_COMPLETED,
    names::JOBS_FAILED,
    names::JOBS_TIMED_OUT,
    names::JOBS_RETRIED,
    names::JOBS_BURIED,
    names::JOBS_EXPIRED,
    names::JOBS_CANCELLED,
    names::JOBS_KICKED,
];
const CREATED: usize = 0;
const STARTED: usize = 1;
const COMPLETED: usize = 2;
const FAILED: usize = 3;
const TIMED_OUT: usize = 4;
const RETRIED: usize = 5;
const BURIED: usize = 6;
const EXPIRED: usize = 7;
const CANCELLED: usize = 8;
const KICKED: usize = 9;

/// One task's metrics as one queue's scheduler records them: counts and
/// histogram cells only that scheduler writes (plain stores, no locked
/// instruction), read by [`flush`] and the renderers on any thread.
#[derive(Debug)]
struct TaskCells {
    task: Arc<str>,
    /// Changes counted, by kind.
    counts: [AtomicU64; KINDS.len()],
    /// How much of `counts` the facade counters were given.
    flushed: [AtomicU64; KINDS.len()],
    /// The facade counters, registered once, bound to the recorder
    /// installed then.
    counters: [Counter; KINDS.len()],
    run: Cells,
    lateness: Cells,
}

/// Every task's cells of every recorder attached in this process: what
/// [`flush`] hands to the facade and the renderers read. Kept after a
/// recorder stops, as a recorder keeps its counters: totals never go back.
static TASKS: Mutex<Vec<Arc<TaskCells>>> = Mutex::new(Vec::new());

fn tasks() -> std::sync::MutexGuard<'static, Vec<Arc<TaskCells>>> {
    TASKS.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TaskCells {
    /// Registers the counters of `task` with the installed recorder and
    /// the cells with [`TASKS`].
    fn register(task: &Arc<str>) -> Arc<TaskCells> {
        let cells = Arc::new(TaskCells {
            task: task.clone(),
            counts: Default::default(),
            flushed: Default::default(),
            counters: KINDS.map(|name| counter!(name, "task" => task.to_string())),
            run: Cells::default(),
            lateness: Cells::default(),
        });
        tasks().push(cells.clone());
        cells
    }

    #[inline]
    fn count(&self, kind: usize, n: u64) {
        bump(&self.counts[kind], n);
    }

    /// Gives the facade counters what was counted since the last flush.
    fn flush(&self) {
        for ((count, flushed), counter) in self.counts.iter().zip(&self.flushed).zip(&self.counters)
        {
            let now = count.load(Ordering::Relaxed);
            // The highest value handed over wins: two flushes at once
            // never give the same changes twice.
            let before = flushed.fetch_max(now, Ordering::Relaxed);
            if now > before {
                counter.increment(now - before);
            }
        }
    }
}

/// Hands the job counters counted since the last flush to the installed
/// recorder (as `counter.increment(n)`).
///
/// The scheduler counts in cells of its own, for speed, and the facade
/// counters are brought up to date here: by [`Prometheus::render`](super::Prometheus::render)
/// before it renders (so a Prometheus scrape is exact), by every
/// [`Sampler`](super::Sampler) sample (so with a recorder of your own the
/// counters lag by at most the sampler's interval, 15 s by default), and
/// when a [`JobMetrics`] is dropped. Call it yourself before reading your
/// recorder if that lag matters.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::{JobContext, JobError};
/// let queue = kessel::Queue::new();
/// let metrics = kessel::metrics::JobMetrics::attach(&queue);
/// queue.define("flushed").action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
/// queue.process(["default"]).start()?;
/// queue.create("flushed", ()).await?;
/// metrics.wait_finished(1).await;
/// kessel::metrics::flush(); // the recorder has kessel_jobs_completed_total{task="flushed"} 1
/// # Ok(()) }
/// ```
pub fn flush() {
    for cells in tasks().iter() {
        cells.flush();
    }
}

/// The job histograms (`kessel_job_run_seconds`,
/// `kessel_job_lateness_seconds`) of every queue of this process with
/// [`JobMetrics`] attached, in the Prometheus text format: buckets
/// (cumulative, `+Inf` equal to `_count`), `_sum` in seconds, `_count`.
///
/// kessel buckets these itself rather than record each sample through
/// the `metrics` facade (two samples per job cost a third of the queue's
/// speed on short jobs). [`Prometheus::render`](super::Prometheus::render)
/// includes them; with a recorder of your own, append this text to what
/// your exporter serves.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::{JobContext, JobError};
/// let queue = kessel::Queue::new();
/// let metrics = kessel::metrics::JobMetrics::attach(&queue);
/// queue.define("timed").action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
/// queue.process(["default"]).start()?;
/// queue.create("timed", ()).await?;
/// metrics.wait_finished(1).await;
/// let text = kessel::metrics::render_histograms();
/// assert!(text.contains("# TYPE kessel_job_run_seconds histogram"));
/// assert!(text.contains(r#"kessel_job_run_seconds_count{task="timed"} 1"#));
/// # Ok(()) }
/// ```
pub fn render_histograms() -> String {
    let mut out = String::new();
    write_histograms(&mut out, "");
    out
}

/// Appends the job histograms to `out`; `global` (escaped labels, `k="v"`
/// joined by commas, or empty) starts every series' labels.
pub(crate) fn write_histograms(out: &mut String, global: &str) {
    // The same task in several queues (or attachments) is one series.
    let mut by_task: BTreeMap<Arc<str>, (Snapshot, Snapshot)> = BTreeMap::new();
    for cells in tasks().iter() {
        let (run, lateness) = by_task.entry(cells.task.clone()).or_default();
        cells.run.add_to(run);
        cells.lateness.add_to(lateness);
    }
    if by_task.is_empty() {
        return;
    }
    let labels: Vec<(String, &(Snapshot, Snapshot))> = by_task
        .iter()
        .map(|(task, snaps)| {
            let task = format!("task=\"{}\"", sanitize_label_value(task));
            let labels = if global.is_empty() {
                task
            } else {
                format!("{global},{task}")
            };
            (labels, snaps)
        })
        .collect();
    for (name, run) in [
        (names::JOB_RUN_SECONDS, true),
        (names::JOB_LATENESS_SECONDS, false),
    ] {
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push_str(" histogram\n");
        for (labels, (run_time, lateness)) in &labels {
            let snapshot = if run { run_time } else { lateness };
            snapshot.write(out, name, labels);
        }
        out.push('\n');
    }
}

/// Nanoseconds from `from` to `to` (both since the Unix epoch); a
/// negative span (a due time ahead of the clock) counts as none.
#[inline]
fn span(from: i64, to: i64) -> u64 {
    u64::try_from(to.saturating_sub(from)).unwrap_or(0)
}

/// No attempt runs in the slot.
const NOT_RUNNING: i64 = i64::MIN;

/// The scheduler's side: turns the changes it makes into metrics. Tasks
/// are known by the scheduler's task slot, running jobs by their job slot,
/// so recording is an index, never a lookup by name or id.
#[derive(Debug)]
pub(crate) struct JobRecorder {
    probe: Arc<Probe>,
    /// By task slot.
    tasks: Vec<Option<Arc<TaskCells>>>,
    /// When the attempt running in each job slot started (nanoseconds
    /// since the Unix epoch), or [`NOT_RUNNING`].
    started: Vec<i64>,
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

    /// The cells of task slot `task`, registered on first use (out of
    /// line: the common path is two bounds checks).
    #[inline]
    fn task(&mut self, task: u32, name: &Arc<str>) -> Option<&TaskCells> {
        let i = task as usize;
        if !matches!(self.tasks.get(i), Some(Some(_))) {
            self.register(i, name);
        }
        self.tasks.get(i)?.as_deref()
    }

    #[cold]
    #[inline(never)]
    fn register(&mut self, i: usize, name: &Arc<str>) {
        if self.tasks.len() <= i {
            self.tasks.resize_with(i + 1, || None);
        }
        self.tasks[i] = Some(TaskCells::register(name));
    }

    /// Records a change of a job of task slot `task` (named `name`).
    pub(crate) fn job(&mut self, task: u32, name: &Arc<str>, kind: &JobEventKind) {
        let counted = match kind {
            JobEventKind::Created => Some(CREATED),
            JobEventKind::Retrying { .. } => Some(RETRIED),
            JobEventKind::Kicked => Some(KICKED),
            JobEventKind::Started => Some(STARTED),
            JobEventKind::Completed { .. } => Some(COMPLETED),
            JobEventKind::Failed { .. } => Some(FAILED),
            JobEventKind::TimedOut => Some(TIMED_OUT),
            JobEventKind::Buried { .. } => Some(BURIED),
            JobEventKind::Expired => Some(EXPIRED),
            JobEventKind::Cancelled => Some(CANCELLED),
            JobEventKind::Scheduled { .. } | JobEventKind::Progress(_) | JobEventKind::Log(_) => {
                None
            }
        };
        if let (Some(kind), Some(m)) = (counted, self.task(task, name)) {
            m.count(kind, 1);
        }
        if kind.is_final() {
            self.probe.finished.fetch_add(1, Ordering::SeqCst);
            if self.probe.waiting.load(Ordering::SeqCst) > 0 {
                self.probe.notify.notify_waiters();
            }
        }
    }

    /// Counts `n` jobs of task slot `task` created here.
    pub(crate) fn created(&mut self, task: u32, name: &Arc<str>, n: u64) {
        if let Some(m) = self.task(task, name) {
            m.count(CREATED, n);
        }
    }

    /// The job in `slot` started at `now`; it was due at `due` (`None`:
    /// too far ahead for nanoseconds, so not late). Times are nanoseconds
    /// since the Unix epoch.
    pub(crate) fn run_started(
        &mut self,
        slot: u32,
        task: u32,
        name: &Arc<str>,
        due: Option<i64>,
        now: i64,
    ) {
        let late = due.map_or(0, |due| span(due, now));
        if let Some(m) = self.task(task, name) {
            m.lateness.record(late);
        }
        let i = slot as usize;
        if self.started.len() <= i {
            self.started.resize(i + 1, NOT_RUNNING);
        }
        self.started[i] = now;
    }

    /// The attempt running in `slot` ended (completed, failed, timed out)
    /// at `now` (nanoseconds since the Unix epoch).
    pub(crate) fn run_ended(&mut self, slot: u32, task: u32, name: &Arc<str>, now: i64) {
        let Some(started) = self.started.get_mut(slot as usize) else {
            return;
        };
        if *started == NOT_RUNNING {
            return;
        }
        let run = span(std::mem::replace(started, NOT_RUNNING), now);
        if let Some(m) = self.task(task, name) {
            m.run.record(run);
        }
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
        let at = |ms: i64| ms * 1_000_000;
        let t: Arc<str> = "t".into();
        r.run_started(3, 0, &t, Some(at(0)), at(5));
        r.run_ended(3, 0, &t, at(25));
        assert_eq!(r.started[3], NOT_RUNNING, "the run's start is taken");
        r.run_ended(3, 0, &t, at(30));
        r.job(0, &t, &JobEventKind::Completed { value: None });
        r.job(
            0,
            &t,
            &JobEventKind::Failed {
                message: "x".into(),
            },
        );
        assert_eq!(r.probe.finished.load(Ordering::SeqCst), 1);
        let cells = r.tasks[0].as_ref().unwrap();
        assert_eq!(cells.counts[COMPLETED].load(Ordering::Relaxed), 1);
        assert_eq!(cells.counts[FAILED].load(Ordering::Relaxed), 1);
        let mut run = Snapshot::default();
        cells.run.add_to(&mut run);
        let mut text = String::new();
        run.write(&mut text, "r", "task=\"t\"");
        assert!(text.contains("r_count{task=\"t\"} 1\n"), "{text}");
        assert!(text.contains("r_sum{task=\"t\"} 0.02\n"), "{text}");
    }

    #[test]
    fn a_flush_hands_over_each_change_once() {
        let mut r = recorder();
        let t: Arc<str> = "flush-once".into();
        r.created(0, &t, 3);
        let cells = r.tasks[0].clone().unwrap();
        cells.flush();
        cells.flush();
        assert_eq!(cells.flushed[CREATED].load(Ordering::Relaxed), 3);
        r.created(0, &t, 2);
        cells.flush();
        assert_eq!(cells.flushed[CREATED].load(Ordering::Relaxed), 5);
    }
}
