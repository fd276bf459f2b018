//! Admin operations: fetch, stats, clean, kick by task, suspend/resume,
//! delete_matching, run_jobs and retention.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{pause, Trace};
use kessel::store::{JobQuery, Order};
use kessel::{
    Clean, Error, JobContext, JobError, JobStatus, NewJob, Queue, Retention, RetryPolicy,
};

fn define_ok(queue: &Queue, task: &str, tag: &str) {
    queue
        .define(task)
        .tag(tag)
        .action(|_: JobContext<serde_json::Value>| async { Ok::<_, JobError>(()) })
        .unwrap();
}

fn define_fatal(queue: &Queue, task: &str, tag: &str) {
    queue
        .define(task)
        .tag(tag)
        .retry(RetryPolicy::none())
        .action(|_: JobContext<serde_json::Value>| async { Err::<(), _>(JobError::fatal("no")) })
        .unwrap();
}

#[actix_rt::test]
async fn fetch_filters_by_status_task_tag_ref_and_time_and_pages_both_ways() {
    pause();
    let queue = Queue::new();
    define_ok(&queue, "mail", "notifications");
    define_ok(&queue, "sms", "notifications");
    define_ok(&queue, "sum", "reports");
    let t0 = queue.now();
    for n in 0..6 {
        queue
            .create("mail", n)
            .reference(format!("m{n}"))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    let t_mid = queue.now();
    queue.create("sms", 0).reference("s0").await.unwrap();
    queue
        .create("sum", 0)
        .reference("r0")
        .delay("1h")
        .await
        .unwrap();

    let refs = |jobs: Vec<kessel::Job>| {
        jobs.into_iter()
            .map(|j| j.reference.unwrap())
            .collect::<Vec<_>>()
    };
    let newest = queue
        .fetch(JobQuery::default().task("mail").limit(2))
        .await
        .unwrap();
    assert_eq!(refs(newest), ["m5", "m4"]);
    let newest_page2 = queue
        .fetch(JobQuery::default().task("mail").offset(2).limit(2))
        .await
        .unwrap();
    assert_eq!(refs(newest_page2), ["m3", "m2"]);
    let oldest_page2 = queue
        .fetch(
            JobQuery::default()
                .task("mail")
                .order(Order::OldestFirst)
                .offset(2)
                .limit(2),
        )
        .await
        .unwrap();
    assert_eq!(refs(oldest_page2), ["m2", "m3"]);
    let by_tag = queue
        .fetch(JobQuery::default().tag("notifications").limit(100))
        .await
        .unwrap();
    assert_eq!(by_tag.len(), 7);
    let by_ref = queue
        .fetch(JobQuery::default().reference("s0"))
        .await
        .unwrap();
    assert_eq!(refs(by_ref), ["s0"]);
    let scheduled = queue
        .fetch(JobQuery::default().status(JobStatus::Scheduled))
        .await
        .unwrap();
    assert_eq!(refs(scheduled), ["r0"]);
    let early = queue
        .fetch(JobQuery::default().created_between(t0, t0 + chrono::Duration::seconds(2)))
        .await
        .unwrap();
    assert_eq!(refs(early), ["m1", "m0"]);
    let late = queue
        .fetch(
            JobQuery::default()
                .created_between(t_mid, t_mid + chrono::Duration::hours(1))
                .order(Order::OldestFirst),
        )
        .await
        .unwrap();
    assert_eq!(refs(late), ["s0", "r0"]);
    let none = queue
        .fetch(JobQuery::default().tag("no such tag"))
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[actix_rt::test]
async fn stats_count_jobs_by_task_and_status() {
    pause();
    let queue = Queue::new();
    define_ok(&queue, "ok", "default");
    define_fatal(&queue, "bad", "default");
    queue.process(["default"]).start().unwrap();
    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(queue.create("ok", ()).await.unwrap());
    }
    handles.push(queue.create("bad", ()).await.unwrap());
    for h in &handles {
        h.result().await.unwrap();
    }
    queue.create("ok", ()).delay("1h").await.unwrap();
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("ok", JobStatus::Completed), 3);
    assert_eq!(stats.count("ok", JobStatus::Scheduled), 1);
    assert_eq!(stats.count("bad", JobStatus::Buried), 1);
    assert_eq!(stats.total(JobStatus::Completed), 3);
}

#[actix_rt::test]
async fn clean_removes_completed_jobs_and_leaves_failed_ones() {
    pause();
    let queue = Queue::new();
    define_ok(&queue, "ok", "a");
    define_fatal(&queue, "bad", "a");
    define_ok(&queue, "other", "b");
    queue.process(["a", "b"]).start().unwrap();
    let old_ok = queue.create("ok", ()).await.unwrap();
    old_ok.result().await.unwrap();
    tokio::time::advance(Duration::from_secs(7200)).await;
    let jobs = vec![
        queue.create("ok", ()).await.unwrap(),
        queue.create("bad", ()).await.unwrap(),
        queue.create("other", ()).await.unwrap(),
    ];
    for h in &jobs {
        h.result().await.unwrap();
    }
    // older_than keeps the recent ones
    assert_eq!(
        queue
            .clean(Clean::completed().older_than("1h"))
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        queue.job(old_ok.id()).await,
        Err(Error::UnknownJob(_))
    ));
    // by tag: only tag "a"'s completed jobs
    assert_eq!(
        queue.clean(Clean::completed().tags(["a"])).await.unwrap(),
        1
    );
    assert_eq!(
        queue.job(jobs[2].id()).await.unwrap().status,
        JobStatus::Completed
    );
    // the buried job stays until asked for by status
    assert_eq!(
        queue.job(jobs[1].id()).await.unwrap().status,
        JobStatus::Buried
    );
    assert_eq!(
        queue
            .clean(Clean::statuses([JobStatus::Buried]))
            .await
            .unwrap(),
        1
    );
    // pending jobs cannot be cleaned
    assert!(matches!(
        queue.clean(Clean::statuses([JobStatus::Ready])).await,
        Err(Error::InvalidInput {
            field: "status",
            ..
        })
    ));
    assert!(matches!(
        queue.clean(Clean::completed().older_than("a while")).await,
        Err(Error::InvalidDuration(_))
    ));
}

#[actix_rt::test]
async fn kick_task_returns_up_to_n_buried_jobs_to_ready() {
    pause();
    let queue = Queue::new();
    let healthy = Arc::new(AtomicUsize::new(0));
    let h2 = healthy.clone();
    queue
        .define("fragile")
        .retry(RetryPolicy::none())
        .action(move |_: JobContext<()>| {
            let h = h2.clone();
            async move {
                if h.load(Ordering::SeqCst) == 0 {
                    return Err(JobError::transient("down"));
                }
                Ok(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let handles = queue
        .create_many((0..5).map(|_| NewJob::new("fragile", ())))
        .await
        .unwrap();
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Buried);
    }
    healthy.store(1, Ordering::SeqCst);
    assert_eq!(queue.kick_task("fragile", 3).await.unwrap(), 3);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("fragile", JobStatus::Completed), 3);
    assert_eq!(stats.count("fragile", JobStatus::Buried), 2);
}

#[actix_rt::test]
async fn suspended_jobs_stay_queued_while_delays_run_and_resume_dispatches_what_is_due() {
    pause();
    let queue = Queue::new();
    let ran: Trace<(u32, chrono::DateTime<chrono::Utc>)> = Trace::default();
    let (r, q) = (ran.clone(), queue.clone());
    queue
        .define("sync")
        .action(move |job: JobContext<u32>| {
            let (r, q) = (r.clone(), q.clone());
            async move {
                r.push((job.payload, q.now()));
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    define_ok(&queue, "unaffected", "default");
    queue.process(["default"]).start().unwrap();
    queue.suspend("sync").await.unwrap();
    let now_job = queue.create("sync", 1).await.unwrap();
    let delayed = queue.create("sync", 2).delay("10s").await.unwrap();
    let late = queue.create("sync", 3).delay("1h").await.unwrap();
    let other = queue.create("unaffected", ()).await.unwrap();
    assert_eq!(other.result().await.unwrap().status, JobStatus::Completed);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(ran.items().is_empty(), "nothing of a suspended task starts");
    assert_eq!(
        queue.job(now_job.id()).await.unwrap().status,
        JobStatus::Ready
    );
    assert_eq!(
        queue.job(delayed.id()).await.unwrap().status,
        JobStatus::Ready,
        "its delay ran out"
    );
    assert_eq!(
        queue.job(late.id()).await.unwrap().status,
        JobStatus::Scheduled
    );
    let resumed_at = queue.now();
    queue.resume("sync").await.unwrap();
    now_job.result().await.unwrap();
    delayed.result().await.unwrap();
    let items = ran.items();
    assert_eq!(items.iter().map(|i| i.0).collect::<Vec<_>>(), [1, 2]);
    assert!(items.iter().all(|i| i.1 == resumed_at));
    late.result().await.unwrap();
    assert_eq!(ran.items().len(), 3);
}

#[actix_rt::test]
async fn delete_matching_cancels_matching_queued_jobs_and_counts_them() {
    pause();
    let queue = Queue::new();
    for to in ["spam@a.com", "ford@b.com", "spam@c.com"] {
        queue
            .create("email", serde_json::json!({ "to": to }))
            .await
            .unwrap();
    }
    queue
        .create("email", serde_json::json!({ "to": "spam@later.com" }))
        .delay("1h")
        .await
        .unwrap();
    queue
        .create("sms", serde_json::json!({ "to": "spam@a.com" }))
        .await
        .unwrap();
    assert_eq!(queue.delete_matching("email", "spam@").await.unwrap(), 3);
    assert_eq!(queue.delete_matching("email", "spam@").await.unwrap(), 0);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("email", JobStatus::Cancelled), 3);
    assert_eq!(stats.count("email", JobStatus::Ready), 1);
    assert_eq!(stats.count("sms", JobStatus::Ready), 1);
    match queue.delete_matching("email", "([unclosed").await {
        Err(Error::InvalidInput {
            field: "pattern",
            reason,
        }) => assert!(reason.contains("([unclosed")),
        other => panic!("unexpected {other:?}"),
    }
}

#[actix_rt::test]
async fn run_jobs_stops_at_its_count_or_time_limit() {
    pause();
    let queue = Queue::new();
    define_ok(&queue, "tick", "default");
    for _ in 0..5 {
        queue.create("tick", ()).await.unwrap();
    }
    queue.create("tick", ()).delay("5s").await.unwrap();
    queue.create("tick", ()).delay("1h").await.unwrap();
    assert_eq!(queue.run_jobs(Some(2), None).await.unwrap(), 2);
    assert_eq!(
        queue.run_jobs(None, None).await.unwrap(),
        3,
        "only what is ready now"
    );
    let started = queue.now();
    assert_eq!(
        queue
            .run_jobs(None, Some(Duration::from_secs(10)))
            .await
            .unwrap(),
        1,
        "waits for the 5 s job"
    );
    let waited = queue.now() - started;
    // the time limit, to tokio's 1 ms timer resolution
    assert!(
        waited >= chrono::Duration::seconds(10) && waited <= chrono::Duration::milliseconds(10_001),
        "{waited}"
    );
    assert_eq!(queue.run_jobs(Some(0), None).await.unwrap(), 0);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("tick", JobStatus::Completed), 6);
    assert_eq!(stats.count("tick", JobStatus::Scheduled), 1);
}

#[actix_rt::test]
async fn retention_prunes_completed_jobs_by_age_and_count() {
    pause();
    let queue = Queue::builder()
        .retention(Retention {
            completed_max_age: Some(Duration::from_secs(3600)),
            completed_max_count: Some(3),
            interval: Duration::from_secs(60),
            ..Retention::default()
        })
        .build()
        .await
        .unwrap();
    define_ok(&queue, "ok", "default");
    define_fatal(&queue, "bad", "default");
    queue.process(["default"]).start().unwrap();
    for _ in 0..5 {
        let done = queue
            .create("ok", ())
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
        assert_eq!(done.status, JobStatus::Completed);
    }
    queue
        .create("bad", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(61)).await;
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("ok", JobStatus::Completed), 3, "count cap");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("ok", JobStatus::Completed), 0, "age cap");
    assert_eq!(
        stats.count("bad", JobStatus::Buried),
        1,
        "buried jobs are kept"
    );
}

/// `Retention::keep_none` keeps no completed job: the in-memory store never
/// gets one, while whoever awaits a result still gets it and failed jobs
/// are kept.
#[actix_rt::test]
async fn keep_none_stores_no_completed_job_but_answers_its_waiter() {
    pause();
    let store = Arc::new(kessel::store::MemoryStore::new());
    let queue = Queue::builder()
        .store(store.clone())
        .retention(Retention::keep_none())
        .build()
        .await
        .unwrap();
    define_ok(&queue, "ok", "default");
    define_fatal(&queue, "bad", "default");
    let oks = queue
        .create_many((0..5).map(|i| NewJob::new("ok", i)))
        .await
        .unwrap();
    let bad = queue.create("bad", ()).await.unwrap();
    // The wait is asked for before the jobs run (join polls it first).
    let (result, ran) = futures::join!(queue.result(oks[0].id()), queue.run_jobs(None, None));
    assert_eq!(ran.unwrap(), 6);
    let result = result.unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    assert_eq!(result.id, oks[0].id());
    assert_eq!(store.len(), 1, "only the buried job is stored");
    assert!(matches!(
        queue.job(oks[1].id()).await,
        Err(Error::UnknownJob(id)) if id == oks[1].id()
    ));
    assert_eq!(queue.job(bad.id()).await.unwrap().status, JobStatus::Buried);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("ok", JobStatus::Completed), 0);
    assert_eq!(stats.count("bad", JobStatus::Buried), 1);
}

/// The in-memory store holds completed jobs in memory: it is pruned to the
/// count cap as jobs complete (a sixteenth of the cap at a time), not only
/// at the interval, and the newest are kept.
#[actix_rt::test]
async fn the_memory_store_is_pruned_to_the_count_cap_as_jobs_complete() {
    pause();
    let queue = Queue::builder()
        .retention(Retention {
            completed_max_age: None,
            completed_max_count: Some(32),
            interval: Duration::from_secs(3600),
            ..Retention::default()
        })
        .build()
        .await
        .unwrap();
    define_ok(&queue, "ok", "default");
    let handles = queue
        .create_many((0..1000).map(|i| NewJob::new("ok", i)))
        .await
        .unwrap();
    assert_eq!(queue.run_jobs(None, None).await.unwrap(), 1000);
    let stats = queue.stats().await.unwrap();
    let completed = stats.count("ok", JobStatus::Completed);
    assert!(
        (32..=33).contains(&completed),
        "{completed} completed jobs kept, cap 32 pruned every 2"
    );
    let kept = queue
        .fetch(JobQuery::default().status(JobStatus::Completed))
        .await
        .unwrap();
    let newest: Vec<_> = handles[1000 - 64..].iter().map(|h| h.id()).collect();
    assert!(
        kept.iter().all(|j| newest.contains(&j.id)),
        "only jobs among the last ones to complete are kept"
    );
}

/// On the in-memory store the scheduler holds pending jobs; the store gets
/// each job once, when it is final. Reads through the queue see both.
#[actix_rt::test]
async fn the_memory_store_gets_a_job_once_it_is_final_and_reads_see_both() {
    pause();
    let store = Arc::new(kessel::store::MemoryStore::new());
    let queue = Queue::builder().store(store.clone()).build().await.unwrap();
    define_ok(&queue, "mail", "default");
    queue.process(["default"]).start().unwrap();
    let later = queue.create("mail", 1).delay("1h").await.unwrap();
    let now = queue.create("mail", 2).await.unwrap();
    assert_eq!(now.result().await.unwrap().status, JobStatus::Completed);
    assert_eq!(store.len(), 1, "only the final job is in the store");
    let pending = queue.job(later.id()).await.unwrap();
    assert_eq!(pending.status, JobStatus::Scheduled);
    let done = queue.job(now.id()).await.unwrap();
    let lines: Vec<&str> = done.logs.iter().map(|l| &*l.message).collect();
    assert_eq!(lines, ["created", "started", "completed"]);

    let all = queue
        .fetch(JobQuery::default().order(Order::OldestFirst))
        .await
        .unwrap();
    let ids: Vec<_> = all.iter().map(|j| j.id).collect();
    assert_eq!(ids, [later.id(), now.id()], "both, in creation order");
    let second = queue
        .fetch(
            JobQuery::default()
                .order(Order::OldestFirst)
                .offset(1)
                .limit(1),
        )
        .await
        .unwrap();
    assert_eq!(second[0].id, now.id());
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("mail", JobStatus::Scheduled), 1);
    assert_eq!(stats.count("mail", JobStatus::Completed), 1);

    queue.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        kessel::store::Store::job_get(&*store, later.id())
            .await
            .unwrap()
            .map(|j| j.status),
        Some(JobStatus::Scheduled),
        "jobs left pending are handed to the store at shutdown"
    );
}

/// A kicked job is pending again: listed and counted once, as ready.
#[actix_rt::test]
async fn a_kicked_job_on_the_memory_store_is_listed_and_counted_once() {
    pause();
    let queue = Queue::new();
    define_fatal(&queue, "flaky", "default");
    queue.process(["default"]).start().unwrap();
    let h = queue.create("flaky", ()).await.unwrap();
    assert_eq!(h.result().await.unwrap().status, JobStatus::Buried);
    queue.suspend("flaky").await.unwrap();
    queue.kick(h.id()).await.unwrap();
    let listed = queue.fetch(JobQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].status, JobStatus::Ready);
    let buried = queue
        .fetch(JobQuery::default().status(JobStatus::Buried))
        .await
        .unwrap();
    assert!(buried.is_empty(), "the stored copy is no longer buried");
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("flaky", JobStatus::Ready), 1);
    assert_eq!(stats.count("flaky", JobStatus::Buried), 0);
    assert!(matches!(
        queue.kick(h.id()).await,
        Err(Error::WrongState { .. })
    ));
}

/// On the in-memory queue, counts come from two places (the scheduler
/// holds pending jobs, the store final ones); taken while jobs finish,
/// they still count every job exactly once.
#[actix_rt::test]
async fn stats_taken_while_jobs_finish_count_every_job_once() {
    pause();
    let queue = Queue::new();
    queue
        .define("step")
        .action(|job: JobContext<u64>| async move {
            tokio::time::sleep(Duration::from_millis(job.payload % 7)).await;
            Ok::<_, JobError>(())
        })
        .unwrap();
    let n = 400u64;
    let handles = queue
        .create_many((0..n).map(|i| NewJob::new("step", i)))
        .await
        .unwrap();
    queue.process(["default"]).concurrency(8).start().unwrap();
    let mut completed = 0;
    while completed < n {
        let stats = queue.stats().await.unwrap();
        let total: u64 = [JobStatus::Ready, JobStatus::Running, JobStatus::Completed]
            .iter()
            .map(|s| stats.count("step", *s))
            .sum();
        assert_eq!(total, n, "every job counted once: {stats:?}");
        completed = stats.count("step", JobStatus::Completed);
        // Samples on the paused clock, which advances while all wait.
        tokio::time::sleep(Duration::from_micros(300)).await;
    }
    handles.last().unwrap().result().await.unwrap();
}
