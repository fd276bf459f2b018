//! Flow control through a queue on the store under test: a task's limit
//! on running jobs and its rate limit delay jobs, never fail them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::fixtures::fresh;
use super::harness::conformance_test;
use super::queue::{outcome, queue_on, Trace, WeakQueue};
use super::{StoreFactory, Verdict};
use crate::context::JobContext;
use crate::error::JobError;
use crate::flow::RateLimit;
use crate::job::JobStatus;
use crate::new_job::NewJob;

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
    /// with a burst of 5, the first five start at once. The same limits
    /// kept per process do the same in the one process here.
    flow_rate_limit_spaces_starts_and_allows_its_burst => rate_limit
);

async fn rate_limit<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    for (task, limit) in [
        ("steady", RateLimit::per_second(10)),
        ("bursty", RateLimit::per_second(10).burst(5)),
        ("steady here", RateLimit::per_second(10).per_process()),
        (
            "bursty here",
            RateLimit::per_second(10).burst(5).per_process(),
        ),
    ] {
        let offsets = rate_limited_starts(&queue, task, limit, 20, 4).await;
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

/// Defines `task` (tag `task`) with `limit`, creates `jobs` of it, serves
/// it with `concurrency` workers and waits for them all; when each
/// started, in ms from the first start, in order.
async fn rate_limited_starts(
    queue: &crate::Queue,
    task: &str,
    limit: RateLimit,
    jobs: u32,
    concurrency: usize,
) -> Vec<i64> {
    let starts: Trace<DateTime<Utc>> = Trace::default();
    let (s, q) = (starts.clone(), WeakQueue::of(queue));
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
    for i in 0..jobs {
        handles.push(
            queue
                .create(task, i)
                .await
                .unwrap_or_else(|e| panic!("create: {e}")),
        );
    }
    queue
        .process([task])
        .concurrency(concurrency)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for h in &handles {
        assert_eq!(outcome(h).await.status, JobStatus::Completed, "{task}");
    }
    let mut starts = starts.items();
    starts.sort();
    let first = starts[0];
    starts
        .iter()
        .map(|t| (*t - first).num_milliseconds())
        .collect()
}

conformance_test!(flow,
    /// A limit of 10 a minute with bursts of 3, for the queue and per
    /// process, over two simulated minutes: 3 start at once, then one
    /// every 6 s to the last, and no minute ever sees more than 13.
    flow_a_rate_limit_per_minute_holds_over_simulated_minutes => rate_per_minute
);

async fn rate_per_minute<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    for (task, limit) in [("reports", "10/m"), ("reports here", "10/m per process")] {
        let limit = limit
            .parse::<RateLimit>()
            .unwrap_or_else(|e| panic!("{e}"))
            .burst(3);
        let offsets = rate_limited_starts(&queue, task, limit, 23, 8).await;
        for (i, offset) in offsets.iter().enumerate() {
            let earliest = (i + 1).saturating_sub(3) as i64 * 6_000;
            assert!(
                (earliest - 1..=earliest + 200).contains(offset),
                "{task}: start {i} at {offset} ms, not at about {earliest} ms: {offsets:?}"
            );
        }
        for (i, from) in offsets.iter().enumerate() {
            let in_a_minute = offsets[i..]
                .iter()
                .take_while(|t| **t < from + 60_000)
                .count();
            assert!(
                in_a_minute <= 13,
                "{task}: {in_a_minute} starts in the minute from {from} ms: {offsets:?}"
            );
        }
    }
    Verdict::Passed
}

conformance_test!(flow,
    /// A task limited to 10 starts a second per process, with 50 jobs
    /// waiting (more than it may start within a claim's horizon on a
    /// shared store), starts them 100 ms apart to the last: the jobs
    /// left in the store are taken when the limit lets them start, not
    /// at the next poll.
    flow_rate_limit_per_process_keeps_its_pace_past_a_claims_horizon => rate_per_process
);

async fn rate_per_process<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let starts: Trace<DateTime<Utc>> = Trace::default();
    let (s, q) = (starts.clone(), WeakQueue::of(&queue));
    queue
        .define("sms")
        .rate_limit("10/s per process")
        .action(move |_: JobContext<u32>| {
            let (s, q) = (s.clone(), q.clone());
            async move {
                s.push(q.now());
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let handles = queue
        .create_many(
            (0..50u32)
                .map(|i| NewJob::new("sms", i))
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    queue
        .process(["default"])
        .concurrency(4)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for h in &handles {
        assert_eq!(outcome(h).await.status, JobStatus::Completed);
    }
    assert_paced("sms", &starts.items(), 4_899..=5_100);
    Verdict::Passed
}

/// Checks that `starts` (in any order) came at least 100 ms apart (less a
/// millisecond of rounding), the last at `last` ms after the first.
#[track_caller]
fn assert_paced(what: &str, starts: &[DateTime<Utc>], last: std::ops::RangeInclusive<i64>) {
    let mut starts = starts.to_vec();
    starts.sort();
    let offsets: Vec<i64> = starts
        .iter()
        .map(|t| (*t - starts[0]).num_milliseconds())
        .collect();
    for pair in offsets.windows(2) {
        assert!(
            pair[1] - pair[0] >= 99,
            "{what}: two starts less than 100 ms apart: {offsets:?}"
        );
    }
    let at = *offsets.last().unwrap_or(&0);
    assert!(
        last.contains(&at),
        "{what}: the last start at {at} ms, expected in {last:?}: {offsets:?}"
    );
}

conformance_test!(flow,
    /// With one running job per group, each group runs its jobs one at a
    /// time, and a group with a backlog never holds up the others: their
    /// jobs start at once, beside the busy group's one.
    flow_max_running_per_group_runs_one_per_group_and_never_stalls_the_others => per_group_running
);

async fn per_group_running<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    // (group, start ms, end ms) of every run.
    let runs: Trace<(String, i64, i64)> = Trace::default();
    let (r, q) = (runs.clone(), WeakQueue::of(&queue));
    let t0 = queue.now();
    queue
        .define("sync")
        .max_running_per_group(1)
        .action(move |job: JobContext<String>| {
            let (r, q) = (r.clone(), q.clone());
            async move {
                let group = job.payload.split('-').next().unwrap_or_default().to_owned();
                let start = (q.now() - t0).num_milliseconds();
                tokio::time::sleep(Duration::from_secs(1)).await;
                r.push((group, start, (q.now() - t0).num_milliseconds()));
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // A backlog of the hot group first, then one job of each other group
    // and two without a group (which share one limit).
    let mut jobs: Vec<NewJob> = (0..5)
        .map(|i| NewJob::new("sync", format!("hot-{i}")).group("hot"))
        .collect();
    for g in ["a", "b", "c"] {
        jobs.push(NewJob::new("sync", format!("{g}-0")).group(g));
    }
    jobs.push(NewJob::new("sync", "none-0"));
    jobs.push(NewJob::new("sync", "none-1"));
    let handles = queue
        .create_many(jobs)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    queue
        .process(["default"])
        .concurrency(8)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for h in &handles {
        assert_eq!(outcome(h).await.status, JobStatus::Completed);
    }
    let runs = runs.items();
    assert_eq!(runs.len(), 10);
    for group in ["hot", "a", "b", "c", "none"] {
        let mut mine: Vec<(i64, i64)> = runs
            .iter()
            .filter(|(g, _, _)| g == group)
            .map(|(_, s, e)| (*s, *e))
            .collect();
        mine.sort();
        for pair in mine.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "{group}: a run started at {} ms before the one before it ended at {} ms: {mine:?}",
                pair[1].0,
                pair[0].1
            );
        }
    }
    let first = runs.iter().map(|(_, s, _)| *s).min().unwrap_or(0);
    for (group, start, _) in &runs {
        if ["a", "b", "c"].contains(&group.as_str()) {
            assert!(
                *start - first < 100,
                "{group} waited behind the hot group's backlog: started {} ms after the first run",
                start - first
            );
        }
    }
    let took = runs.iter().map(|(_, _, e)| *e).max().unwrap_or(0) - first;
    assert!(
        (5_000..5_500).contains(&took),
        "the hot group's 5 one-second jobs run one after another: all done {took} ms after the first start"
    );
    Verdict::Passed
}

conformance_test!(flow,
    /// With a rate limit per group, each group's starts are spaced by its
    /// own limit, and the groups start side by side: two groups at 10 a
    /// second start 20 jobs in about one second, not two.
    flow_rate_limit_per_group_spaces_each_groups_starts_on_its_own => per_group_rate
);

async fn per_group_rate<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let starts: Trace<(String, i64)> = Trace::default();
    let (s, q) = (starts.clone(), WeakQueue::of(&queue));
    let t0 = queue.now();
    queue
        .define("call")
        .rate_limit_per_group("10/s")
        .action(move |job: JobContext<String>| {
            let (s, q) = (s.clone(), q.clone());
            async move {
                let group = job.payload.split('-').next().unwrap_or_default().to_owned();
                s.push((group, (q.now() - t0).num_milliseconds()));
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let mut jobs = Vec::new();
    for i in 0..10 {
        for g in ["x", "y"] {
            jobs.push(NewJob::new("call", format!("{g}-{i}")).group(g));
        }
    }
    let handles = queue
        .create_many(jobs)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    queue
        .process(["default"])
        .concurrency(4)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for h in &handles {
        assert_eq!(outcome(h).await.status, JobStatus::Completed);
    }
    let starts = starts.items();
    for group in ["x", "y"] {
        let mut mine: Vec<i64> = starts
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(_, t)| *t)
            .collect();
        mine.sort();
        assert_eq!(mine.len(), 10, "{group}");
        let first = mine[0];
        for (i, t) in mine.iter().enumerate() {
            let earliest = first + i as i64 * 100;
            assert!(
                *t >= earliest - 1,
                "{group}: start {i} at {t} ms, before {earliest} ms: {mine:?}"
            );
        }
        let last = mine[9] - first;
        assert!(
            (899..=1_050).contains(&last),
            "{group}: the tenth start at {last} ms after the first, about 900 ms: {mine:?}"
        );
    }
    Verdict::Passed
}

conformance_test!(flow,
    /// A job held back by its group's running limit and cancelled while
    /// it waits gives its turn to the next held job: when the running one
    /// ends, the next one starts, rather than waiting for an end that
    /// never comes.
    flow_a_cancelled_held_job_gives_its_turn_to_the_next => cancelled_held
);

async fn cancelled_held<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let first_started = Arc::new(tokio::sync::Notify::new());
    let started = first_started.clone();
    queue
        .define("sync")
        .max_running_per_group(1)
        .action(move |job: JobContext<u32>| {
            let started = started.clone();
            async move {
                if job.payload == 0 {
                    started.notify_one();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let mut handles = Vec::new();
    for i in 0..3u32 {
        handles.push(
            queue
                .create_many([NewJob::new("sync", i).group("g")])
                .await
                .unwrap_or_else(|e| panic!("create: {e}"))
                .remove(0),
        );
    }
    queue
        .process(["default"])
        .concurrency(4)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    first_started.notified().await;
    queue
        .cancel(handles[1].id())
        .await
        .unwrap_or_else(|e| panic!("cancel: {e}"));
    assert_eq!(outcome(&handles[1]).await.status, JobStatus::Cancelled);
    // Polled on the paused clock (a bounded wait that fails, where
    // awaiting the outcome would hang): it runs about a second after the
    // first job ends.
    let mut polls = 0;
    loop {
        let status = queue
            .job(handles[2].id())
            .await
            .unwrap_or_else(|e| panic!("job: {e}"))
            .status;
        if status == JobStatus::Completed {
            break;
        }
        polls += 1;
        assert!(
            polls < 600,
            "the third job never ran after the second was cancelled: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcome(&handles[0]).await.status, JobStatus::Completed);
    Verdict::Passed
}

/// A queue on `store` with the limits per tag `limits` sets.
async fn queue_with_tag_limits<F: StoreFactory>(
    factory: &F,
    store: &Arc<dyn crate::store::Store>,
    limits: impl FnOnce(crate::QueueBuilder) -> crate::QueueBuilder,
) -> crate::queue::Queue {
    factory
        .configure(limits(
            crate::queue::Queue::builder()
                .store(store.clone())
                .retention(crate::config::Retention::keep_all()),
        ))
        .build()
        .await
        .unwrap_or_else(|e| panic!("building a queue on the store failed: {e}"))
}

conformance_test!(flow,
    /// With `tag_max_running("mail", 1)`, the jobs of two tasks of the tag
    /// run one at a time, all of them, and a job of another tag served by
    /// the same worker starts at once beside them.
    flow_tag_max_running_holds_all_the_tags_tasks_and_never_stalls_another_tag => tag_running
);

async fn tag_running<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_with_tag_limits(&factory, &store, |b| b.tag_max_running("mail", 1)).await;
    // (task, start ms, end ms) of every run.
    let runs: Trace<(String, i64, i64)> = Trace::default();
    let t0 = queue.now();
    for (task, tag) in [("welcome", "mail"), ("digest", "mail"), ("report", "other")] {
        let (r, q) = (runs.clone(), WeakQueue::of(&queue));
        queue
            .define(task)
            .tag(tag)
            .action(move |_: JobContext<u32>| {
                let (r, q) = (r.clone(), q.clone());
                async move {
                    let start = (q.now() - t0).num_milliseconds();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    r.push((task.to_owned(), start, (q.now() - t0).num_milliseconds()));
                    Ok::<_, JobError>(())
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut jobs = Vec::new();
    for i in 0..3u32 {
        jobs.push(NewJob::new("welcome", i));
        jobs.push(NewJob::new("digest", i));
    }
    jobs.push(NewJob::new("report", 0));
    jobs.push(NewJob::new("report", 1));
    let handles = queue
        .create_many(jobs)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    // One worker for both tags, the limited one first.
    queue
        .process(["mail", "other"])
        .concurrency(8)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for h in &handles {
        assert_eq!(outcome(h).await.status, JobStatus::Completed);
    }
    let runs = runs.items();
    assert_eq!(runs.len(), 8);
    let mut mail: Vec<(i64, i64)> = runs
        .iter()
        .filter(|(t, _, _)| t != "report")
        .map(|(_, s, e)| (*s, *e))
        .collect();
    mail.sort();
    assert_eq!(mail.len(), 6);
    for pair in mail.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two jobs of the tag ran at once: {mail:?}"
        );
    }
    let last_end = mail.last().map_or(0, |m| m.1);
    assert!(
        (6_000..6_500).contains(&last_end),
        "six one-second jobs one at a time end after about 6 s: {mail:?}"
    );
    for (task, start, _) in runs.iter().filter(|(t, _, _)| t == "report") {
        assert!(
            *start < 100,
            "{task} of another tag waited for the limited tag: starts at {start} ms"
        );
    }
    Verdict::Passed
}

conformance_test!(flow,
    /// With `tag_rate_limit("x", "10/s")`, the jobs of two tasks of the tag
    /// start 100 ms apart between them, not each task on its own; and so
    /// with `"10/s per process"` in the one process here.
    flow_tag_rate_limit_spaces_the_starts_of_all_the_tags_tasks => tag_rate
);

async fn tag_rate<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    for limit in ["10/s", "10/s per process"] {
        tag_rate_of(&factory, limit).await;
    }
    Verdict::Passed
}

async fn tag_rate_of<F: StoreFactory>(factory: &F, limit: &'static str) {
    let (store, _place) = fresh(factory).await;
    let queue = queue_with_tag_limits(factory, &store, |b| b.tag_rate_limit("x", limit)).await;
    let starts: Trace<(String, DateTime<Utc>)> = Trace::default();
    for task in ["a", "b"] {
        let (s, q) = (starts.clone(), WeakQueue::of(&queue));
        queue
            .define(task)
            .tag("x")
            .action(move |_: JobContext<u32>| {
                let (s, q) = (s.clone(), q.clone());
                async move {
                    s.push((task.to_owned(), q.now()));
                    Ok::<_, JobError>(())
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut jobs = Vec::new();
    for i in 0..10u32 {
        jobs.push(NewJob::new("a", i));
        jobs.push(NewJob::new("b", i));
    }
    let handles = queue
        .create_many(jobs)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    queue
        .process(["x"])
        .concurrency(4)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for h in &handles {
        assert_eq!(outcome(h).await.status, JobStatus::Completed);
    }
    let starts = starts.items();
    assert!(starts.iter().any(|(t, _)| t == "a") && starts.iter().any(|(t, _)| t == "b"));
    let times: Vec<DateTime<Utc>> = starts.iter().map(|(_, at)| *at).collect();
    assert_paced(&format!("tag x at {limit}"), &times, 1_899..=2_050);
}
