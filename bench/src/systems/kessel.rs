//! kessel on its in-memory store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kessel::event::Filter;
use kessel::store::{PgOptions, PgStore, SqliteOptions, Store};
use kessel::{JobContext, JobError, JobHandle, NewJob, Queue};
use serde::{Deserialize, Serialize};

use super::{Fail, CREATE_BATCH};
use crate::measure::{now_ns, Pacer, Stamps};

pub const TASK: &str = "noop";
pub const TAG: &str = "bench";

/// Where a kessel queue keeps its jobs.
#[derive(Debug, Clone, Copy)]
pub enum Backend<'a> {
    Memory,
    /// The in-memory store with `Retention::keep_none()`: completed jobs
    /// are kept nowhere, as apalis, Sidekiq or BullMQ's `removeOnComplete`.
    MemoryKeepNone,
    /// A fresh database file in a temporary directory, default durability
    /// (synced to disk).
    Sqlite,
    /// The schema `kessel_bench` in this database, dropped and recreated.
    Postgres(&'a str),
}

/// What must outlive the queue (the SQLite file's directory).
type Keep = Option<tempfile::TempDir>;

pub const PG_SCHEMA: &str = "kessel_bench";

/// Where a kessel worker runs its handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handlers {
    /// `ProcessBuilder::on_scheduler_thread`: polled first by the scheduler
    /// itself, no hand-off between threads. Every row measured before
    /// handlers had threads of their own ran this way.
    SchedulerThread,
    /// `ProcessBuilder::threads(n)`: on `n` worker threads of the worker's
    /// own (the default is 1).
    Threads(usize),
}

impl Handlers {
    /// Starts a worker on the bench's tag with `concurrency`, its handlers
    /// placed so.
    pub fn start(self, queue: &Queue, concurrency: usize) -> Result<(), Fail> {
        let worker = queue.process([TAG]).concurrency(concurrency);
        let worker = match self {
            Handlers::SchedulerThread => worker.on_scheduler_thread(),
            Handlers::Threads(n) => worker.threads(n),
        };
        worker.start().map(drop).map_err(|e| e.to_string())
    }
}

pub(crate) async fn store_for(
    backend: Backend<'_>,
) -> Result<(Option<Arc<dyn Store>>, Keep), Fail> {
    match backend {
        Backend::Memory | Backend::MemoryKeepNone => Ok((None, None)),
        Backend::Sqlite => {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let store = SqliteOptions::new(dir.path().join("jobs.db"))
                .open()
                .await
                .map_err(|e| e.to_string())?;
            Ok((Some(Arc::new(store)), Some(dir)))
        }
        Backend::Postgres(url) => {
            super::ensure_pg_database(url).await?;
            {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query("DROP SCHEMA IF EXISTS kessel_bench CASCADE")
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let store = PgStore::connect_with(PgOptions::new(url).schema(PG_SCHEMA))
                .await
                .map_err(|e| e.to_string())?;
            Ok((Some(Arc::new(store)), None))
        }
    }
}

/// A queue builder for workers placed as `handlers` say: with handlers
/// on the scheduler's thread, the scheduler also stays on the bench's
/// thread, the one-thread queue every row measured before handlers had
/// threads of their own.
fn builder_for(handlers: Handlers) -> kessel::QueueBuilder {
    match handlers {
        Handlers::SchedulerThread => Queue::builder().scheduler_on_current_thread(),
        Handlers::Threads(_) => Queue::builder(),
    }
}

/// A flow-control limit set on the bench's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No limit.
    None,
    /// `TaskBuilder::max_running(n)`.
    MaxRunning(u32),
    /// `TaskBuilder::rate_limit(n per second)`, burst `n`.
    PerSecond(u32),
    /// `QueueBuilder::tag_max_running(tag, n)` on the task's tag.
    TagMaxRunning(u32),
    /// No limit; the jobs are spread over `n` fair groups in turn
    /// (`NewJob::group`), all of weight 1.
    Groups(u32),
}

async fn queue_on(
    backend: Backend<'_>,
    stamps: &Arc<Stamps>,
    handlers: Handlers,
) -> Result<(Queue, Keep), Fail> {
    queue_on_with(backend, stamps, handlers, Limit::None).await
}

async fn queue_on_with(
    backend: Backend<'_>,
    stamps: &Arc<Stamps>,
    handlers: Handlers,
    limit: Limit,
) -> Result<(Queue, Keep), Fail> {
    let keep_none = matches!(backend, Backend::MemoryKeepNone);
    let (store, keep) = store_for(backend).await?;
    let builder = builder_for(handlers);
    let builder = match limit {
        Limit::TagMaxRunning(n) => builder.tag_max_running(TAG, n),
        _ => builder,
    };
    let builder = match store {
        None if keep_none => builder.retention(kessel::Retention::keep_none()),
        None => builder,
        Some(store) => builder.store(store),
    };
    let queue = builder.build().await.map_err(|e| e.to_string())?;
    define_noop_with(&queue, stamps, limit)?;
    Ok((queue, keep))
}

async fn queue_with(stamps: &Arc<Stamps>, handlers: Handlers) -> Result<Queue, Fail> {
    let queue = builder_for(handlers)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    define_noop(&queue, stamps)?;
    Ok(queue)
}

/// Defines the no-op task whose handler records its start in `stamps`.
fn define_noop(queue: &Queue, stamps: &Arc<Stamps>) -> Result<(), Fail> {
    define_noop_with(queue, stamps, Limit::None)
}

/// [`define_noop`], with `limit` on the task.
fn define_noop_with(queue: &Queue, stamps: &Arc<Stamps>, limit: Limit) -> Result<(), Fail> {
    let s = stamps.clone();
    let task = queue.define(TASK).tag(TAG);
    let task = match limit {
        Limit::None | Limit::Groups(_) | Limit::TagMaxRunning(_) => task,
        Limit::MaxRunning(n) => task.max_running(n),
        Limit::PerSecond(n) => task.rate_limit(kessel::RateLimit::per_second(n).burst(n)),
    };
    task.action(move |job: JobContext<u64>| {
        s.hit(job.payload);
        std::future::ready(Ok::<(), JobError>(()))
    })
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Creates `n` jobs in batches and waits until the supervisor has taken
/// them in, so the time covers the store write and the scheduling.
pub async fn create_all(queue: &Queue, n: u64, job: impl Fn(u64) -> NewJob) -> Result<(), Fail> {
    let mut last: Option<JobHandle> = None;
    let mut i = 0;
    while i < n {
        let end = (i + CREATE_BATCH).min(n);
        let mut handles = queue
            .create_many((i..end).map(&job))
            .await
            .map_err(|e| e.to_string())?;
        last = handles.pop();
        i = end;
    }
    if let Some(h) = last {
        // Reading a job goes through the supervisor's barrier: every
        // admission sent before it has been handled.
        queue.job(h.id()).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn stop(queue: &Queue) {
    let _ = queue.shutdown(Duration::from_secs(1)).await;
}

/// Creates `n` no-op jobs, then processes them all; returns jobs/s of the
/// processing phase. With `events`, one queue-wide subscriber drains an
/// event stream meanwhile; the note says how many events it saw and missed.
/// What watches a burn-down's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Nothing: with no subscriber kessel builds no events.
    Off,
    /// One `Filter::All` stream that counts what it receives.
    Events,
    /// `kessel::metrics::attach` (the scheduler's job metrics and the
    /// sampler) into the Prometheus recorder, rendered once at the end.
    Metrics,
    /// `kessel::metrics::JobMetrics::attach` alone (no sampler): the
    /// per-job part of [`Watch::Metrics`].
    JobMetrics,
}

/// The bench's Prometheus recorder: one per process, installed on first use.
fn prometheus() -> Result<&'static kessel::metrics::Prometheus, Fail> {
    static PROMETHEUS: std::sync::OnceLock<kessel::metrics::Prometheus> =
        std::sync::OnceLock::new();
    if let Some(p) = PROMETHEUS.get() {
        return Ok(p);
    }
    let installed = kessel::metrics::Prometheus::install().map_err(|e| e.to_string())?;
    Ok(PROMETHEUS.get_or_init(|| installed))
}

pub async fn burn_down(
    backend: Backend<'_>,
    n: u64,
    concurrency: usize,
    handlers: Handlers,
    watch: Watch,
    cap: Duration,
) -> Result<(f64, Option<String>), Fail> {
    burn_down_with(backend, n, concurrency, handlers, watch, Limit::None, cap).await
}

/// [`burn_down`] with `limit` on the task.
pub async fn burn_down_with(
    backend: Backend<'_>,
    n: u64,
    concurrency: usize,
    handlers: Handlers,
    watch: Watch,
    limit: Limit,
    cap: Duration,
) -> Result<(f64, Option<String>), Fail> {
    let stamps = Stamps::counter(n);
    let (queue, _keep) = queue_on_with(backend, &stamps, handlers, limit).await?;
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let subscriber = (watch == Watch::Events).then(|| {
        let mut stream = queue.events(Filter::All);
        let seen = seen.clone();
        actix_rt::spawn(async move {
            while stream.next().await.is_some() {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    });
    let metrics = match watch {
        Watch::Metrics => {
            let attached = kessel::metrics::attach(&queue).map_err(|e| e.to_string())?;
            Some((prometheus()?, attached.jobs, Some(attached.sampler)))
        }
        Watch::JobMetrics => Some((
            prometheus()?,
            kessel::metrics::JobMetrics::attach(&queue),
            None,
        )),
        _ => None,
    };
    match limit {
        Limit::Groups(k) => {
            let names: Vec<String> = (0..k.max(1)).map(|g| format!("tenant-{g}")).collect();
            create_all(&queue, n, |i| {
                NewJob::new(TASK, i).group(names[(i % names.len() as u64) as usize].clone())
            })
            .await?
        }
        _ => create_all(&queue, n, |i| NewJob::new(TASK, i)).await?,
    }
    let t = Instant::now();
    handlers.start(&queue, concurrency)?;
    let waited = stamps.wait(cap).await;
    let secs = t.elapsed().as_secs_f64();
    let mut note = subscriber.map(|task| {
        task.abort();
        format!(
            "one Filter::All stream subscriber: {} events received, {} missed (buffer full)",
            seen.load(std::sync::atomic::Ordering::Relaxed),
            queue.events_missed()
        )
    });
    if let Some((prometheus, jobs, sampler)) = metrics {
        let finished = jobs.finished();
        let what = if sampler.is_some() {
            "kessel::metrics::attach"
        } else {
            "kessel::metrics::JobMetrics::attach (no sampler)"
        };
        drop((jobs, sampler));
        let body = prometheus.render();
        note = Some(format!(
            "{what} + Prometheus recorder: {finished} jobs recorded finished, \
             {} bytes rendered",
            body.len()
        ));
    }
    stop(&queue).await;
    waited.map_err(|e| format!("{e} ({:.0} jobs/s)", stamps.runs() as f64 / secs))?;
    Ok((n as f64 / secs, note))
}

/// Creates `n` jobs (no worker); returns jobs/s including admission.
pub async fn bulk_create(backend: Backend<'_>, n: u64) -> Result<f64, Fail> {
    let stamps = Stamps::counter(n);
    let (queue, _keep) = queue_on(backend, &stamps, Handlers::SchedulerThread).await?;
    let t = Instant::now();
    create_all(&queue, n, |i| NewJob::new(TASK, i)).await?;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    stop(&queue).await;
    Ok(rate)
}

/// Creates `n` jobs one by one at `rate`, a worker running; fills `created`.
pub async fn latency(
    backend: Backend<'_>,
    rate: f64,
    n: u64,
    concurrency: usize,
    handlers: Handlers,
    cap: Duration,
) -> Result<(Vec<u64>, Arc<Stamps>), Fail> {
    let stamps = Stamps::timed(n);
    let (queue, _keep) = queue_on(backend, &stamps, handlers).await?;
    handlers.start(&queue, concurrency)?;
    // Let the worker start before the clock runs.
    settle(&queue).await;
    let mut created = vec![0u64; n as usize];
    let mut pacer = Pacer::new(rate, n);
    while !pacer.finished() {
        if let Some(i) = pacer.next_due() {
            created[i as usize] = now_ns();
            queue.create(TASK, i).await.map_err(|e| e.to_string())?;
        }
        pacer.pause().await;
    }
    created.truncate(pacer.sent() as usize);
    stamps.expect(pacer.sent());
    // An incomplete wait is reported by the caller as jobs that never started.
    let _ = stamps.wait(cap).await;
    stop(&queue).await;
    Ok((created, stamps))
}

/// Creates one job per target (a `now_ns` value) to run at that time, a
/// worker running; returns the stamps once all started.
pub async fn delay(
    targets: &[u64],
    concurrency: usize,
    cap: Duration,
) -> Result<Arc<Stamps>, Fail> {
    let n = targets.len() as u64;
    let stamps = Stamps::timed(n);
    let queue = queue_with(&stamps, Handlers::SchedulerThread).await?;
    Handlers::SchedulerThread.start(&queue, concurrency)?;
    let (base_ns, base_utc) = (now_ns(), Utc::now());
    let at = |t: u64| -> DateTime<Utc> {
        base_utc + chrono::Duration::nanoseconds(t as i64 - base_ns as i64)
    };
    create_all(&queue, n, |i| {
        NewJob::new(TASK, i).run_at(at(targets[i as usize]))
    })
    .await?;
    stamps.mark_created();
    let _ = stamps.wait(cap).await;
    stop(&queue).await;
    Ok(stamps)
}

/// Leaves `n` jobs delayed by an hour pending; returns the queue to keep
/// them alive while the caller measures.
pub async fn pending(n: u64) -> Result<Box<dyn std::any::Any>, Fail> {
    let stamps = Stamps::counter(0);
    let queue = queue_with(&stamps, Handlers::SchedulerThread).await?;
    Handlers::SchedulerThread.start(&queue, 16)?;
    create_all(&queue, n, |i| {
        NewJob::new(TASK, i).delay(Duration::from_secs(3600))
    })
    .await?;
    Ok(Box::new(queue))
}

/// Waits until the supervisor has handled every message sent so far.
async fn settle(queue: &Queue) {
    if let Ok(h) = queue
        .create(TASK, u64::MAX)
        .delay(Duration::from_secs(3600))
        .await
    {
        let _ = queue.cancel(h.id()).await;
    }
}

/// The CPU workload's task.
pub const CPU_TASK: &str = "spin";

/// The CPU workload's payload: which job it is and how long its handler
/// keeps the CPU busy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Spin {
    pub index: u64,
    pub micros: u32,
}

/// Keeps the CPU busy for `d`: a loop on the clock, no sleep, no yield.
fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Creates `n` jobs whose handler spins the CPU for `micros` µs, then
/// processes them all; returns jobs/s of the processing phase, timed until
/// the last handler has finished its loop.
pub async fn cpu_burn_down(
    n: u64,
    micros: u32,
    concurrency: usize,
    handlers: Handlers,
    cap: Duration,
) -> Result<f64, Fail> {
    let stamps = Stamps::counter(n);
    let queue = builder_for(handlers)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let s = stamps.clone();
    queue
        .define(CPU_TASK)
        .tag(TAG)
        .action(move |job: JobContext<Spin>| {
            let s = s.clone();
            async move {
                let Spin { index, micros } = job.payload;
                spin(Duration::from_micros(micros.into()));
                s.hit(index);
                Ok::<(), JobError>(())
            }
        })
        .map_err(|e| e.to_string())?;
    create_all(&queue, n, |index| {
        NewJob::new(CPU_TASK, Spin { index, micros })
    })
    .await?;
    let t = Instant::now();
    handlers.start(&queue, concurrency)?;
    let waited = stamps.wait(cap).await;
    let secs = t.elapsed().as_secs_f64();
    stop(&queue).await;
    waited.map_err(|e| format!("{e} ({:.0} jobs/s)", stamps.runs() as f64 / secs))?;
    Ok(n as f64 / secs)
}
