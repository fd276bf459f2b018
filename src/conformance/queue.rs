//! A [`Queue`] on the store under test: what users see must not depend on
//! which store keeps the jobs.
//!
//! Every test here pauses tokio's clock: delays and backoffs pass as soon
//! as the queue has nothing else to do, and times read with
//! [`Queue::now`] are exact.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::json;

use super::fixtures::{fresh, get};
use super::harness::conformance_test;
use super::{StoreFactory, Verdict};
use crate::admin::Clean;
use crate::config::Retention;
use crate::context::JobContext;
use crate::error::JobError;
use crate::job::{JobStatus, Progress};
use crate::new_job::NewJob;
use crate::queue::{JobHandle, Queue};
use crate::store::Store;
use crate::task::RetryPolicy;

/// A queue on `store`, set up by `factory`, or the test fails saying why.
/// It keeps completed jobs (no retention timer), so the tests see every
/// job they made.
pub(super) async fn queue_on<F: StoreFactory>(factory: &F, store: &Arc<dyn Store>) -> Queue {
    factory
        .configure(
            Queue::builder()
                .store(store.clone())
                .retention(Retention::keep_all()),
        )
        .build()
        .await
        .unwrap_or_else(|e| panic!("building a queue on the store failed: {e}"))
}

/// Waits for a job's result, or fails the test saying why.
pub(super) async fn outcome(handle: &JobHandle) -> crate::job::JobResult {
    handle
        .result()
        .await
        .unwrap_or_else(|e| panic!("waiting for job {}: {e}", handle.id()))
}

/// A queue a handler may use without keeping it alive: a handler that
/// held the queue itself would keep it, its scheduler and its store's
/// connections, for the rest of the test binary (a PostgreSQL suite of
/// a hundred tests then nears the server's connection limit).
#[derive(Clone)]
pub(super) struct WeakQueue(std::sync::Weak<crate::queue::Inner>);

impl WeakQueue {
    pub(super) fn of(queue: &Queue) -> Self {
        WeakQueue(Arc::downgrade(&queue.inner))
    }

    /// The queue: alive while a test runs its jobs.
    pub(super) fn get(&self) -> Queue {
        Queue {
            inner: self
                .0
                .upgrade()
                .expect("the queue lives while its test runs its jobs"),
        }
    }

    /// The queue's time.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.get().now()
    }
}

/// A list handlers append to.
#[derive(Clone)]
pub(super) struct Trace<T>(Arc<Mutex<Vec<T>>>);

impl<T> Default for Trace<T> {
    fn default() -> Self {
        Trace(Arc::default())
    }
}

impl<T: Clone> Trace<T> {
    pub(super) fn push(&self, item: T) {
        self.0.lock().push(item);
    }

    pub(super) fn items(&self) -> Vec<T> {
        self.0.lock().clone()
    }
}

conformance_test!(queue,
    /// Ready jobs of a tag run by priority, then due time, then creation
    /// order, whatever order the store keeps them in.
    queue_runs_jobs_by_priority_then_due_time_then_creation => ordering
);

async fn ordering<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let trace = Trace::default();
    let t = trace.clone();
    queue
        .define("ordered")
        .tag("conformance")
        .action(move |job: JobContext<u32>| {
            let t = t.clone();
            async move {
                t.push(job.payload);
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // Let the queue's clock run a while, so "due earlier" means something.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let now = queue.now();
    // payload = the position the job must run in
    let jobs = vec![
        NewJob::new("ordered", 4).priority(5).run_at(now),
        NewJob::new("ordered", 1).priority(1),
        NewJob::new("ordered", 0).priority(-3), // clamps to 0
        NewJob::new("ordered", 2).priority(1),
        NewJob::new("ordered", 3)
            .priority(5)
            .run_at(now - chrono::Duration::seconds(2)),
        NewJob::new("ordered", 5).priority(5).delay("10ms"),
    ];
    let handles = queue
        .create_many(jobs)
        .await
        .unwrap_or_else(|e| panic!("create_many: {e}"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    queue
        .process(["conformance"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for h in &handles {
        assert_eq!(outcome(h).await.status, JobStatus::Completed);
    }
    assert_eq!(trace.items(), vec![0, 1, 2, 3, 4, 5], "run order");
    Verdict::Passed
}

conformance_test!(queue,
    /// A delayed job never starts before the `run_at` the store recorded,
    /// and starts within a couple of milliseconds of it, for delays from
    /// milliseconds to days.
    queue_delayed_jobs_never_start_early => delays
);

async fn delays<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let starts: Trace<(usize, DateTime<Utc>)> = Trace::default();
    let (s, q) = (starts.clone(), WeakQueue::of(&queue));
    queue
        .define("later")
        .action(move |job: JobContext<usize>| {
            let (s, q) = (s.clone(), q.clone());
            async move {
                s.push((job.payload, q.now()));
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .concurrency(8)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let delays = ["10ms", "1s", "45m", "2h", "6d"];
    let mut jobs: Vec<NewJob> = delays
        .iter()
        .enumerate()
        .map(|(i, d)| NewJob::new("later", i).delay(*d))
        .collect();
    jobs.push(NewJob::new("later", delays.len()).run_at(queue.now() - chrono::Duration::hours(1)));
    let handles = queue
        .create_many(jobs)
        .await
        .unwrap_or_else(|e| panic!("create_many: {e}"));
    for h in &handles {
        assert_eq!(outcome(h).await.status, JobStatus::Completed);
    }
    let starts = starts.items();
    assert_eq!(starts.len(), handles.len(), "each job ran once");
    for (i, h) in handles.iter().enumerate() {
        let run_at = get(&store, h.id()).await.run_at;
        let started = starts
            .iter()
            .find(|(n, _)| *n == i)
            .map(|(_, at)| *at)
            .expect("ran");
        assert!(
            started >= run_at,
            "job {i} started at {started}, before its run_at {run_at}"
        );
        if i < delays.len() {
            let late = started - run_at;
            assert!(
                late <= chrono::Duration::milliseconds(2),
                "job {i} (delay {}) started {late} after its run_at",
                delays[i]
            );
        }
    }
    Verdict::Passed
}

conformance_test!(queue,
    /// A job failing transiently is retried with backoff until its attempts
    /// run out, then buried; the store has each attempt as it starts (status
    /// running, attempts counted) and the final state.
    queue_stores_every_attempt_of_a_retried_job => retries
);

async fn retries<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let seen: Trace<(u32, JobStatus, u32, DateTime<Utc>)> = Trace::default();
    let (s, q) = (seen.clone(), WeakQueue::of(&queue));
    queue
        .define("flaky")
        .retry(
            RetryPolicy::exponential(3)
                .base_delay(Duration::from_secs(1))
                .jitter(0.0),
        )
        .action(move |job: JobContext<()>| {
            let (s, q) = (s.clone(), q.clone());
            async move {
                let now = q.now();
                let stored = q.get().job(job.id()).await.map_err(JobError::fatal)?;
                s.push((job.attempt(), stored.status, stored.attempts, now));
                Err::<(), _>(JobError::transient(format!("failure {}", job.attempt())))
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let h = queue
        .create("flaky", ())
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let result = outcome(&h).await;
    assert_eq!(result.status, JobStatus::Buried);
    let seen = seen.items();
    let as_stored: Vec<(u32, JobStatus, u32)> =
        seen.iter().map(|(a, s, n, _)| (*a, *s, *n)).collect();
    assert_eq!(
        as_stored,
        vec![
            (1, JobStatus::Running, 1),
            (2, JobStatus::Running, 2),
            (3, JobStatus::Running, 3)
        ],
        "each attempt, as the store had it while it ran"
    );
    let gaps: Vec<i64> = seen
        .windows(2)
        .map(|w| (w[1].3 - w[0].3).num_milliseconds())
        .collect();
    for (gap, want) in gaps.iter().zip([1000, 2000]) {
        assert!((want..=want + 2).contains(gap), "backoff gaps {gaps:?}");
    }
    let stored = get(&store, h.id()).await;
    assert_eq!(stored.status, JobStatus::Buried);
    assert_eq!(stored.attempts, 3);
    assert!(stored.finished_at.is_some(), "a buried job has finished_at");
    let message = stored.last_error.unwrap_or_default();
    assert!(message.contains("failure 3"), "last_error: {message}");
    Verdict::Passed
}

conformance_test!(queue,
    /// A buried job stays buried until kicked; kicked, it runs again and
    /// its attempts keep counting.
    queue_kicks_a_buried_job_back_to_life => kick
);

async fn kick<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let fixed = Arc::new(AtomicBool::new(false));
    let f = fixed.clone();
    queue
        .define("needs a fix")
        .action(move |_: JobContext<()>| {
            let f = f.clone();
            async move {
                if !f.load(Ordering::SeqCst) {
                    return Err(JobError::fatal("broken"));
                }
                Ok("fixed")
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let h = queue
        .create("needs a fix", ())
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(outcome(&h).await.status, JobStatus::Buried);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let buried = queue.job(h.id()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (buried.status, buried.attempts),
        (JobStatus::Buried, 1),
        "stays buried"
    );
    fixed.store(true, Ordering::SeqCst);
    queue
        .kick(h.id())
        .await
        .unwrap_or_else(|e| panic!("kick: {e}"));
    let result = outcome(&h).await;
    assert_eq!(result.status, JobStatus::Completed);
    assert_eq!(result.value, Some(json!("fixed")));
    queue.job(h.id()).await.unwrap_or_else(|e| panic!("{e}"));
    let stored = get(&store, h.id()).await;
    assert_eq!((stored.status, stored.attempts), (JobStatus::Completed, 2));
    assert_eq!(stored.result, Some(json!("fixed")));
    Verdict::Passed
}

conformance_test!(queue,
    /// Cancelling a delayed job or a running one makes it cancelled, in the
    /// store too; a cancelled job never runs (again).
    queue_cancels_pending_and_running_jobs => cancel
);

async fn cancel<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    queue
        .define("long")
        .action(move |job: JobContext<()>| {
            let (tx, r) = (started_tx.clone(), r.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(job.id());
                std::future::pending::<()>().await;
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));

    let delayed = queue
        .create("long", ())
        .delay("1h")
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    queue
        .cancel(delayed.id())
        .await
        .unwrap_or_else(|e| panic!("cancel: {e}"));
    assert_eq!(outcome(&delayed).await.status, JobStatus::Cancelled);

    let running = queue
        .create("long", ())
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(
        started.recv().await,
        Some(running.id()),
        "the running job started"
    );
    queue
        .cancel(running.id())
        .await
        .unwrap_or_else(|e| panic!("cancel: {e}"));
    assert_eq!(outcome(&running).await.status, JobStatus::Cancelled);

    tokio::time::sleep(Duration::from_secs(7200)).await;
    queue
        .job(running.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (h, attempts) in [(&delayed, 0), (&running, 1)] {
        let stored = get(&store, h.id()).await;
        assert_eq!(
            (stored.status, stored.attempts),
            (JobStatus::Cancelled, attempts)
        );
        assert!(
            stored.finished_at.is_some(),
            "a cancelled job has finished_at"
        );
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "only the running job ever started"
    );
    Verdict::Passed
}

conformance_test!(queue,
    /// A job not started by its expiration expires without running, and is
    /// stored as expired.
    queue_expires_a_job_not_started_in_time => expiry
);

async fn expiry<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    queue
        .define("fresh only")
        .tag("nobody serves this")
        .action(move |_: JobContext<()>| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let h = queue
        .create("fresh only", ())
        .expires_in("10s")
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(outcome(&h).await.status, JobStatus::Expired);
    queue.job(h.id()).await.unwrap_or_else(|e| panic!("{e}"));
    let stored = get(&store, h.id()).await;
    assert_eq!((stored.status, stored.attempts), (JobStatus::Expired, 0));
    let lived = stored.finished_at.map(|f| f - stored.created_at);
    assert!(
        lived
            .is_some_and(|l| l >= chrono::Duration::seconds(10)
                && l <= chrono::Duration::milliseconds(10_002)),
        "expired {lived:?} after creation"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0, "an expired job never runs");
    Verdict::Passed
}

conformance_test!(queue,
    /// `stats` counts what the store holds by task and status, and `clean`
    /// removes the final jobs asked for.
    queue_stats_and_clean_read_the_store => stats_and_clean
);

async fn stats_and_clean<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    queue
        .define("mixed")
        .action(|job: JobContext<u32>| async move {
            if job.payload < 6 {
                Ok(job.payload)
            } else {
                Err(JobError::fatal("no"))
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .concurrency(4)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let handles = queue
        .create_many((0..8).map(|n| NewJob::new("mixed", n)))
        .await
        .unwrap_or_else(|e| panic!("create_many: {e}"));
    let later = queue
        .create_many((0..2).map(|n| NewJob::new("mixed", n).delay("1h")))
        .await
        .unwrap_or_else(|e| panic!("create_many: {e}"));
    for h in &later {
        queue
            .cancel(h.id())
            .await
            .unwrap_or_else(|e| panic!("cancel: {e}"));
    }
    for h in handles.iter().chain(&later) {
        outcome(h).await;
    }
    let stats = queue.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
    assert_eq!(stats.count("mixed", JobStatus::Completed), 6, "{stats:?}");
    assert_eq!(stats.count("mixed", JobStatus::Buried), 2, "{stats:?}");
    assert_eq!(stats.count("mixed", JobStatus::Cancelled), 2, "{stats:?}");
    assert_eq!(stats.counts.len(), 3, "nothing else: {stats:?}");

    assert_eq!(
        queue
            .clean(Clean::completed())
            .await
            .unwrap_or_else(|e| panic!("clean: {e}")),
        6
    );
    let stats = queue.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
    assert_eq!(stats.total(JobStatus::Completed), 0, "{stats:?}");
    assert_eq!(stats.count("mixed", JobStatus::Buried), 2, "{stats:?}");
    let removed = queue
        .clean(Clean::statuses([JobStatus::Buried, JobStatus::Cancelled]))
        .await
        .unwrap_or_else(|e| panic!("clean: {e}"));
    assert_eq!(removed, 4);
    let left = store
        .jobs_count()
        .await
        .unwrap_or_else(|e| panic!("jobs_count: {e}"));
    assert!(left.is_empty(), "everything was cleaned: {left:?}");
    Verdict::Passed
}

conformance_test!(queue,
    /// The lines a handler logs, in every attempt, and its last progress
    /// report are stored with the job.
    queue_stores_logs_and_progress_with_the_job => logs_and_progress
);

async fn logs_and_progress<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    queue
        .define("import")
        .retry(
            RetryPolicy::exponential(2)
                .base_delay(Duration::from_secs(1))
                .jitter(0.0),
        )
        .action(|job: JobContext<u64>| async move {
            job.log(
                format!("attempt {}", job.attempt()),
                json!({ "rows": job.payload }),
            );
            if job.attempt() == 1 {
                job.progress(1, job.payload);
                return Err(JobError::transient("disk hiccup"));
            }
            for n in 1..=job.payload {
                job.progress(n, job.payload);
            }
            job.log("imported", ());
            Ok(job.payload)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let h = queue
        .create("import", 3u64)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(outcome(&h).await.status, JobStatus::Completed);
    queue.job(h.id()).await.unwrap_or_else(|e| panic!("{e}"));
    let stored = get(&store, h.id()).await;
    assert_eq!(
        stored.progress,
        Some(Progress {
            current: 3,
            total: 3
        })
    );
    let mine: Vec<(String, u32, Option<serde_json::Value>)> = stored
        .logs
        .iter()
        .filter(|l| l.message.starts_with("attempt") || l.message == "imported")
        .map(|l| (l.message.to_string(), l.attempt, l.data.clone()))
        .collect();
    assert_eq!(
        mine,
        vec![
            ("attempt 1".to_string(), 1, Some(json!({"rows": 3}))),
            ("attempt 2".to_string(), 2, Some(json!({"rows": 3}))),
            ("imported".to_string(), 2, None),
        ],
        "the handler's lines, in order, among {:?}",
        stored.logs
    );
    Verdict::Passed
}
