//! Flow control through a queue on the store under test: a task's limit
//! on running jobs and its rate limit delay jobs, never fail them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::fixtures::fresh;
use super::harness::conformance_test;
use super::queue::{outcome, queue_on, Trace};
use super::{StoreFactory, Verdict};
use crate::context::JobContext;
use crate::error::JobError;
use crate::flow::RateLimit;
use crate::job::JobStatus;

conformance_test!(flow,
    /// A task limited to 2 running jobs never runs more at once, even with
    /// a worker of concurrency 8, and runs every job.
    flow_max_running_caps_the_jobs_running_at_once => max_running
);

async fn max_running<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let now_running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (n, m) = (now_running.clone(), most.clone());
    queue
        .define("export")
        .max_running(2)
        .action(move |_: JobContext<u32>| {
            let (n, m) = (n.clone(), m.clone());
            async move {
                let running = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let mut handles = Vec::new();
    for i in 0..10u32 {
        handles.push(
            queue
                .create("export", i)
                .await
                .unwrap_or_else(|e| panic!("create: {e}")),
        );
    }
    let started = queue.now();
    queue
        .process(["default"])
        .concurrency(8)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for h in &handles {
        assert_eq!(outcome(h).await.status, JobStatus::Completed);
    }
    assert_eq!(most.load(Ordering::SeqCst), 2, "never more than 2 at once");
    let took = (queue.now() - started).num_milliseconds();
    assert!(
        (5_000..6_000).contains(&took),
        "10 one-second jobs, 2 at a time, take about 5 s: {took} ms"
    );
    Verdict::Passed
}

conformance_test!(flow,
    /// A task limited to 10 starts a second starts its jobs 100 ms apart;
    /// with a burst of 5, the first five start at once.
    flow_rate_limit_spaces_starts_and_allows_its_burst => rate_limit
);

async fn rate_limit<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    for (task, limit) in [
        ("steady", RateLimit::per_second(10)),
        ("bursty", RateLimit::per_second(10).burst(5)),
    ] {
        let starts: Trace<DateTime<Utc>> = Trace::default();
        let (s, q) = (starts.clone(), queue.clone());
        queue
            .define(task)
            .tag(task)
            .rate_limit(limit)
            .action(move |_: JobContext<u32>| {
                let (s, q) = (s.clone(), q.clone());
                async move {
                    s.push(q.now());
                    Ok::<_, JobError>(())
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let mut handles = Vec::new();
        for i in 0..20u32 {
            handles.push(
                queue
                    .create(task, i)
                    .await
                    .unwrap_or_else(|e| panic!("create: {e}")),
            );
        }
        queue
            .process([task])
            .concurrency(4)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        for h in &handles {
            assert_eq!(outcome(h).await.status, JobStatus::Completed, "{task}");
        }
        let mut starts = starts.items();
        starts.sort();
        let first = starts[0];
        let offsets: Vec<i64> = starts
            .iter()
            .map(|t| (*t - first).num_milliseconds())
            .collect();
        let burst = limit.burst_size() as usize;
        for (i, offset) in offsets.iter().enumerate() {
            // Start i may come no earlier than the limit allows.
            let earliest = (i + 1).saturating_sub(burst) as i64 * 100;
            assert!(
                *offset >= earliest - 1,
                "{task}: start {i} at {offset} ms, before {earliest} ms: {offsets:?}"
            );
        }
        let last = *offsets.last().unwrap_or(&0);
        let expected = (20 - burst) as i64 * 100;
        assert!(
            (expected - 1..=expected + 150).contains(&last),
            "{task}: the last start at {last} ms, about {expected} ms: {offsets:?}"
        );
    }
    Verdict::Passed
}
