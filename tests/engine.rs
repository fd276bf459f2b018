//! The core engine: ordering, delays, concurrency and every outcome, on a
//! paused tokio clock.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{pause, Trace};
use kessel::{Error, JobContext, JobError, JobStatus, NewJob, Queue, RetryPolicy};

type Ctx<T> = JobContext<T>;

fn recorder(queue: &Queue, task: &str, tag: &str, trace: &Trace<u32>) {
    let trace = trace.clone();
    queue
        .define(task)
        .tag(tag)
        .action(move |job: Ctx<u32>| {
            let trace = trace.clone();
            async move {
                trace.push(job.payload);
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
}

#[actix_rt::test]
async fn ready_jobs_run_by_priority_then_due_time_then_creation_order() {
    pause();
    let queue = Queue::new();
    let trace = Trace::default();
    recorder(&queue, "t", "tag", &trace);
    let mut handles = Vec::new();
    // payload = expected position
    handles.push(queue.create("t", 4).priority(5).await.unwrap());
    handles.push(queue.create("t", 2).priority(1).await.unwrap());
    handles.push(queue.create("t", 0).priority(-3).await.unwrap()); // clamps to 0
    handles.push(queue.create("t", 3).priority(1).await.unwrap());
    handles.push(queue.create("t", 1).priority(0).await.unwrap());
    // due earlier than the priority-1 jobs created above? Due time is run_at:
    // a delayed job created first but due later runs after them.
    handles.push(queue.create("t", 6).priority(5).delay("1ms").await.unwrap());
    handles.push(queue.create("t", 5).priority(5).await.unwrap());
    tokio::time::advance(Duration::from_millis(5)).await;
    queue.process(["tag"]).start().unwrap();
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    assert_eq!(trace.items(), vec![0, 1, 2, 3, 4, 5, 6]);
}

#[actix_rt::test]
async fn worker_returns_to_its_first_tag_after_every_job() {
    pause();
    let queue = Queue::new();
    let trace = Trace::default();
    recorder(&queue, "low", "b", &trace);
    let hi_trace = trace.clone();
    let q2 = queue.clone();
    // The first "b" job creates an "a" job while it runs: it must run next,
    // before the remaining "b" jobs.
    queue
        .define("spawner")
        .tag("b")
        .action(move |job: Ctx<u32>| {
            let (t, q) = (hi_trace.clone(), q2.clone());
            async move {
                t.push(job.payload);
                q.create("high", 100).await.map_err(JobError::fatal)?;
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    recorder(&queue, "high", "a", &trace);
    let mut handles = vec![queue.create("spawner", 10).await.unwrap()];
    for n in 11..14 {
        handles.push(queue.create("low", n).await.unwrap());
    }
    for n in 1..3 {
        handles.push(queue.create("high", n).await.unwrap());
    }
    queue.process(["a", "b"]).start().unwrap();
    for h in &handles {
        h.result().await.unwrap();
    }
    // wait for the job spawned inside the handler too
    let spawned = queue
        .store()
        .jobs_query(
            &kessel::store::JobQuery::default()
                .task("high")
                .status(JobStatus::Completed),
        )
        .await
        .unwrap();
    let _ = spawned;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(trace.items(), vec![1, 2, 10, 100, 11, 12, 13]);
}

#[actix_rt::test]
async fn concurrency_limit_is_never_exceeded() {
    pause();
    let queue = Queue::new();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    queue
        .define("slow")
        .action(move |job: Ctx<u64>| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(job.payload % 7 + 1)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).concurrency(3).start().unwrap();
    let handles = queue
        .create_many((0..50).map(|n| NewJob::new("slow", n)))
        .await
        .unwrap();
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "uses all three slots and never more"
    );
}

#[actix_rt::test]
async fn delayed_job_never_starts_before_its_time_and_starts_at_it() {
    pause();
    let queue = Queue::new();
    let starts: Trace<chrono::DateTime<chrono::Utc>> = Trace::default();
    let (s, q) = (starts.clone(), queue.clone());
    queue
        .define("later")
        .action(move |_: Ctx<()>| {
            let (s, q) = (s.clone(), q.clone());
            async move {
                s.push(q.now());
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).concurrency(10).start().unwrap();
    let mut expected = Vec::new();
    for delay in ["10ms", "1s", "45m", "2h", "6d"] {
        let h = queue.create("later", ()).delay(delay).await.unwrap();
        expected.push(queue.job(h.id()).await.unwrap().run_at);
        h.result().await.unwrap();
    }
    let h = queue
        .create("later", ())
        .delay(chrono::Duration::milliseconds(1500))
        .await
        .unwrap();
    expected.push(queue.job(h.id()).await.unwrap().run_at);
    h.result().await.unwrap();
    for (start, run_at) in starts.items().into_iter().zip(expected) {
        assert!(start >= run_at, "started {start} before {run_at}");
        assert!(
            start - run_at <= chrono::Duration::milliseconds(1),
            "started {start}, due {run_at}"
        );
    }
    assert_eq!(starts.items().len(), 6);
}

/// Delays that end inside a millisecond, on a queue whose clock starts
/// half a millisecond off tokio's timer grid: each job waits for the exact
/// time, then starts on the timer's next tick, never a second tick later.
#[actix_rt::test]
async fn a_delay_ending_mid_millisecond_starts_within_one_timer_tick() {
    pause();
    tokio::time::advance(Duration::from_micros(500)).await;
    let queue = Queue::new();
    let starts: Trace<tokio::time::Instant> = Trace::default();
    let s = starts.clone();
    queue
        .define("later")
        .action(move |_: Ctx<()>| {
            s.push(tokio::time::Instant::now());
            std::future::ready(Ok::<_, JobError>(()))
        })
        .unwrap();
    queue.process(["default"]).concurrency(10).start().unwrap();
    for micros in [200u64, 1_200, 7_700, 2_000_900] {
        let created = tokio::time::Instant::now();
        let due = created + Duration::from_micros(micros);
        let h = queue
            .create("later", ())
            .delay(Duration::from_micros(micros))
            .await
            .unwrap();
        h.result().await.unwrap();
        let start = *starts.items().last().unwrap();
        assert!(start >= due, "{micros} µs: started before its time");
        assert!(
            start - due < Duration::from_millis(1),
            "{micros} µs: started {:?} late",
            start - due
        );
    }
}

#[actix_rt::test]
async fn transient_failures_retry_with_backoff_then_bury() {
    pause();
    let queue = Queue::new();
    let starts: Trace<(u32, chrono::DateTime<chrono::Utc>)> = Trace::default();
    let (s, q) = (starts.clone(), queue.clone());
    queue
        .define("flaky")
        .retry(
            RetryPolicy::exponential(4)
                .base_delay(Duration::from_secs(1))
                .jitter(0.0),
        )
        .action(move |job: Ctx<()>| {
            let (s, q) = (s.clone(), q.clone());
            async move {
                s.push((job.attempt(), q.now()));
                Err::<(), _>(JobError::transient("upstream unavailable"))
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let h = queue.create("flaky", ()).await.unwrap();
    let result = h.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Buried);
    assert!(result.message.unwrap().contains("upstream unavailable"));
    let starts = starts.items();
    assert_eq!(
        starts.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let gaps: Vec<i64> = starts
        .windows(2)
        .map(|w| (w[1].1 - w[0].1).num_milliseconds())
        .collect();
    // 1 s doubling; tokio's timers round up to their 1 ms resolution.
    for (gap, want) in gaps.iter().zip([1000, 2000, 4000]) {
        assert!((want..=want + 2).contains(gap), "gaps {gaps:?}");
    }
    assert_eq!(queue.job(h.id()).await.unwrap().attempts, 4);
}

#[actix_rt::test]
async fn transient_failure_then_success_completes() {
    pause();
    let queue = Queue::new();
    queue
        .define("second time lucky")
        .retry(RetryPolicy::exponential(3).jitter(0.0))
        .action(|job: Ctx<()>| async move {
            if job.attempt() < 2 {
                return Err(JobError::transient("not yet"));
            }
            Ok(job.attempt())
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let result = queue
        .create("second time lucky", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    assert_eq!(result.value, Some(serde_json::json!(2)));
}

#[actix_rt::test]
async fn fatal_failure_buries_at_once() {
    pause();
    let queue = Queue::new();
    queue
        .define("doomed")
        .action(|_: Ctx<()>| async move { Err::<(), _>(JobError::fatal("card declined")) })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let h = queue.create("doomed", ()).await.unwrap();
    let result = h.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Buried);
    assert_eq!(result.message.as_deref(), Some("card declined"));
    assert_eq!(queue.job(h.id()).await.unwrap().attempts, 1);
}

#[actix_rt::test]
async fn retry_after_overrides_the_backoff() {
    pause();
    let queue = Queue::new();
    let starts: Trace<chrono::DateTime<chrono::Utc>> = Trace::default();
    let (s, q) = (starts.clone(), queue.clone());
    queue
        .define("rate limited")
        .action(move |job: Ctx<()>| {
            let (s, q) = (s.clone(), q.clone());
            async move {
                s.push(q.now());
                if job.attempt() == 1 {
                    return Err(JobError::retry_after(Duration::from_secs(30), "429"));
                }
                Ok(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    queue
        .create("rate limited", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let s = starts.items();
    assert_eq!((s[1] - s[0]).num_seconds(), 30);
}

#[actix_rt::test]
async fn a_panic_fails_the_job_and_the_worker_lives_on() {
    pause();
    let queue = Queue::new();
    queue
        .define("explode")
        .retry(RetryPolicy::none())
        .action(|_: Ctx<()>| async move {
            if true {
                panic!("boom");
            }
            Ok::<(), JobError>(())
        })
        .unwrap();
    queue
        .define("fine")
        .action(|_: Ctx<()>| async move { Ok::<_, JobError>("still here") })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let boom = queue
        .create("explode", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(boom.status, JobStatus::Buried);
    assert!(boom.message.unwrap().contains("panicked: boom"));
    let fine = queue
        .create("fine", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(fine.value, Some(serde_json::json!("still here")));
}

/// What a run logged before it was cut off comes before the line that
/// ends it, on the in-memory store (nothing written while it ran) and on
/// one that records every change.
#[actix_rt::test]
async fn a_timed_out_or_cancelled_run_keeps_its_lines_in_order() {
    pause();
    for store in [
        None,
        Some(Arc::new(kessel::store::MemoryStore::new()) as Arc<dyn kessel::Store>),
    ] {
        // The second queue runs a store that is not ephemeral: a wrapper.
        let queue = match store {
            None => Queue::new(),
            Some(inner) => Queue::builder()
                .store(Arc::new(Recording(inner)))
                .build()
                .await
                .unwrap(),
        };
        queue
            .define("hangs")
            .timeout("5s")
            .retry(RetryPolicy::none())
            .action(|job: Ctx<()>| async move {
                job.log("working", ());
                std::future::pending::<()>().await;
                Ok::<(), JobError>(())
            })
            .unwrap();
        queue.process(["default"]).start().unwrap();
        let timed_out = queue.create("hangs", ()).await.unwrap();
        assert_eq!(timed_out.result().await.unwrap().status, JobStatus::Buried);
        let cancelled = queue.create("hangs", ()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        queue.cancel(cancelled.id()).await.unwrap();
        assert_eq!(
            cancelled.result().await.unwrap().status,
            JobStatus::Cancelled
        );
        for (h, last) in [(timed_out, "buried: timed out"), (cancelled, "cancelled")] {
            let job = queue.job(h.id()).await.unwrap();
            let lines: Vec<&str> = job.logs.iter().map(|l| &*l.message).collect();
            assert_eq!(&lines[..3], ["created", "started", "working"], "{lines:?}");
            assert!(lines[3].starts_with(last), "{lines:?}");
            assert_eq!(lines.len(), 4, "{lines:?}");
        }
    }
}

/// A store that forwards to another but says it keeps everything, so the
/// queue records every change.
#[derive(Debug)]
struct Recording(Arc<dyn kessel::Store>);

#[async_trait::async_trait]
impl kessel::Store for Recording {
    async fn jobs_insert(&self, jobs: &[kessel::Job]) -> Result<(), kessel::store::StoreError> {
        self.0.jobs_insert(jobs).await
    }
    async fn jobs_update(
        &self,
        updates: &[kessel::store::JobUpdate],
    ) -> Result<(), kessel::store::StoreError> {
        self.0.jobs_update(updates).await
    }
    async fn jobs_pending(&self) -> Result<Vec<kessel::Job>, kessel::store::StoreError> {
        self.0.jobs_pending().await
    }
    async fn job_get(
        &self,
        id: kessel::JobId,
    ) -> Result<Option<kessel::Job>, kessel::store::StoreError> {
        self.0.job_get(id).await
    }
    async fn jobs_query(
        &self,
        query: &kessel::store::JobQuery,
    ) -> Result<Vec<kessel::Job>, kessel::store::StoreError> {
        self.0.jobs_query(query).await
    }
    async fn jobs_count(
        &self,
    ) -> Result<Vec<kessel::store::StatusCount>, kessel::store::StoreError> {
        self.0.jobs_count().await
    }
    async fn jobs_delete(
        &self,
        params: &kessel::store::JobDelete,
    ) -> Result<u64, kessel::store::StoreError> {
        self.0.jobs_delete(params).await
    }
}

#[actix_rt::test]
async fn timeout_fires_the_signal_and_retries_as_transient() {
    pause();
    let queue = Queue::new();
    let signalled = Arc::new(AtomicUsize::new(0));
    let sig = signalled.clone();
    let starts: Trace<chrono::DateTime<chrono::Utc>> = Trace::default();
    let (s, q) = (starts.clone(), queue.clone());
    queue
        .define("hangs")
        .timeout("5s")
        .retry(
            RetryPolicy::exponential(2)
                .base_delay(Duration::from_secs(1))
                .jitter(0.0),
        )
        .action(move |job: Ctx<()>| {
            let (sig, s, q) = (sig.clone(), s.clone(), q.clone());
            async move {
                s.push(q.now());
                let token = job.cancellation_token();
                // Work moved off the handler's future sees the signal.
                actix_rt::spawn(async move {
                    token.cancelled().await;
                    sig.fetch_add(1, Ordering::SeqCst);
                });
                std::future::pending::<()>().await;
                Ok::<(), JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let result = queue
        .create("hangs", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(result.status, JobStatus::Buried);
    assert!(result.message.unwrap().contains("timed out after 5s"));
    let s = starts.items();
    assert_eq!(s.len(), 2);
    let gap = (s[1] - s[0]).num_milliseconds();
    assert!(
        (6000..=6002).contains(&gap),
        "5 s timeout + 1 s backoff, got {gap} ms"
    );
    tokio::task::yield_now().await;
    assert_eq!(signalled.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn job_not_started_by_its_expiration_expires_without_running() {
    pause();
    let queue = Queue::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    queue
        .define("fresh only")
        .tag("nobody serves this yet")
        .action(move |_: Ctx<()>| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    let h = queue
        .create("fresh only", ())
        .expires_in("10s")
        .await
        .unwrap();
    let delayed_past_expiry = queue
        .create("fresh only", ())
        .delay("1m")
        .expires_in("30s")
        .await
        .unwrap();
    assert_eq!(h.result().await.unwrap().status, JobStatus::Expired);
    assert_eq!(
        delayed_past_expiry.result().await.unwrap().status,
        JobStatus::Expired
    );
    let job = queue.job(h.id()).await.unwrap();
    let lived = job.finished_at.unwrap() - job.created_at;
    // tokio's timers have 1 ms resolution: expiry lands within it.
    assert!(
        lived >= chrono::Duration::seconds(10) && lived <= chrono::Duration::milliseconds(10_001),
        "{lived}"
    );
    queue.process(["nobody serves this yet"]).start().unwrap();
    let ok = queue
        .create("fresh only", ())
        .expires_in("10s")
        .await
        .unwrap();
    assert_eq!(ok.result().await.unwrap().status, JobStatus::Completed);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn kick_returns_a_buried_job_to_ready() {
    pause();
    let queue = Queue::new();
    let fixed = Arc::new(AtomicUsize::new(0));
    let f = fixed.clone();
    queue
        .define("needs fix")
        .retry(RetryPolicy::none())
        .action(move |_: Ctx<()>| {
            let f = f.clone();
            async move {
                if f.load(Ordering::SeqCst) == 0 {
                    return Err(JobError::transient("bug"));
                }
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let h = queue.create("needs fix", ()).await.unwrap();
    assert_eq!(h.result().await.unwrap().status, JobStatus::Buried);
    fixed.store(1, Ordering::SeqCst);
    queue.kick(h.id()).await.unwrap();
    assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    let job = queue.job(h.id()).await.unwrap();
    assert_eq!(job.attempts, 2);
    // kicking a job that is not buried is a typed error
    match queue.kick(h.id()).await {
        Err(Error::WrongState { status, .. }) => assert_eq!(status, JobStatus::Completed),
        other => panic!("unexpected {other:?}"),
    }
}

#[actix_rt::test]
async fn cancel_removes_a_pending_job_and_signals_a_running_one() {
    pause();
    let queue = Queue::new();
    let signalled = Arc::new(AtomicUsize::new(0));
    let sig = signalled.clone();
    queue
        .define("long")
        .action(move |job: Ctx<()>| {
            let sig = sig.clone();
            async move {
                let token = job.cancellation_token();
                actix_rt::spawn(async move {
                    token.cancelled().await;
                    sig.fetch_add(1, Ordering::SeqCst);
                });
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    let pending = queue.create("long", ()).delay("1h").await.unwrap();
    queue.cancel(pending.id()).await.unwrap();
    assert_eq!(pending.result().await.unwrap().status, JobStatus::Cancelled);

    queue.process(["default"]).start().unwrap();
    let running = queue.create("long", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        queue.job(running.id()).await.unwrap().status,
        JobStatus::Running
    );
    queue.cancel(running.id()).await.unwrap();
    assert_eq!(running.result().await.unwrap().status, JobStatus::Cancelled);
    tokio::task::yield_now().await;
    assert_eq!(signalled.load(Ordering::SeqCst), 1);
    // the worker's slot is free again
    let next = queue.create("long", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        queue.job(next.id()).await.unwrap().status,
        JobStatus::Running
    );
    // a final job cannot be cancelled
    assert!(matches!(
        queue.cancel(pending.id()).await,
        Err(Error::WrongState {
            status: JobStatus::Cancelled,
            ..
        })
    ));
}

#[actix_rt::test]
async fn unknown_job_ids_are_typed_errors() {
    pause();
    let queue = Queue::new();
    let id = kessel::JobId::new();
    assert!(matches!(queue.cancel(id).await, Err(Error::UnknownJob(x)) if x == id));
    assert!(matches!(queue.kick(id).await, Err(Error::UnknownJob(x)) if x == id));
    assert!(matches!(queue.job(id).await, Err(Error::UnknownJob(x)) if x == id));
    assert!(matches!(queue.result(id).await, Err(Error::UnknownJob(x)) if x == id));
}

#[actix_rt::test]
async fn jobs_wait_unrouted_until_their_task_is_defined() {
    pause();
    let queue = Queue::new();
    queue.process(["mail"]).start().unwrap();
    let h = queue.create("send", "hi").await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(queue.job(h.id()).await.unwrap().status, JobStatus::Ready);
    queue
        .define("send")
        .tag("mail")
        .action(|job: Ctx<String>| async move { Ok::<_, JobError>(job.payload.len()) })
        .unwrap();
    assert_eq!(h.result().await.unwrap().value, Some(serde_json::json!(2)));
}

#[actix_rt::test]
async fn malformed_input_gets_typed_errors_naming_what_is_wrong() {
    pause();
    let queue = Queue::new();
    for bad in ["", "10x", "1.5h", "-3s", "soon"] {
        match queue.create("t", ()).delay(bad).await {
            Err(Error::InvalidDuration(e)) => assert_eq!(e.text(), bad),
            other => panic!("{bad:?} gave {other:?}"),
        }
        match queue.create("t", ()).expires_in(bad).await {
            Err(Error::InvalidDuration(e)) => assert_eq!(e.text(), bad),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    assert!(matches!(
        queue
            .define("x")
            .timeout("forever")
            .action(|_: Ctx<()>| async { Ok::<_, JobError>(()) }),
        Err(Error::InvalidDuration(_))
    ));
    assert!(matches!(
        queue.create("", ()).await,
        Err(Error::InvalidInput { field: "task", .. })
    ));
    assert!(matches!(
        queue.create("a:b", ()).await,
        Err(Error::InvalidInput { field: "task", .. })
    ));
    assert!(matches!(
        queue.process(Vec::<String>::new()).start(),
        Err(Error::InvalidInput { field: "tags", .. })
    ));
    // nothing was stored by the rejected calls
    assert!(queue
        .store()
        .jobs_query(&Default::default())
        .await
        .unwrap()
        .is_empty());

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Email {
        to: String,
        subject: String,
    }
    queue
        .define("email")
        .action(|_: Ctx<Email>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let wrong_type = queue
        .create("email", serde_json::json!({"to": 42, "subject": "x"}))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(wrong_type.status, JobStatus::Buried);
    let message = wrong_type.message.unwrap();
    assert!(message.contains("at `to`"), "{message}");
    let missing = queue
        .create("email", serde_json::json!({"to": "ford"}))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert!(missing.message.unwrap().contains("missing field `subject`"));
}

#[actix_rt::test]
async fn redefining_a_task_is_an_error() {
    let queue = Queue::new();
    queue
        .define("t")
        .action(|_: Ctx<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    let err = queue
        .define("t")
        .action(|_: Ctx<()>| async { Ok::<_, JobError>(()) })
        .unwrap_err();
    assert!(err.to_string().contains("already defined"), "{err}");
}

#[actix_rt::test]
async fn hundred_thousand_mixed_jobs_each_reach_exactly_one_final_state() {
    pause();
    let queue = Queue::new();
    queue
        .define("mixed")
        .retry(RetryPolicy::exponential(2).base_delay(Duration::from_millis(10)))
        .action(|job: Ctx<u32>| async move {
            match job.payload % 5 {
                0 => Ok(job.payload),
                1 => Err(JobError::fatal("fatal")),
                2 if job.attempt() == 1 => Err(JobError::transient("once")),
                2 => Ok(job.payload),
                3 => Err(JobError::transient("always")),
                _ => {
                    tokio::time::sleep(Duration::from_millis(u64::from(job.payload % 13))).await;
                    Ok(job.payload)
                }
            }
        })
        .unwrap();
    queue.process(["default"]).concurrency(64).start().unwrap();
    let jobs = (0..100_000u32).map(|n| {
        let job = NewJob::new("mixed", n);
        match n % 7 {
            0 => job.delay(Duration::from_millis(u64::from(n % 1000))),
            1 => job.expires_in(Duration::from_millis(u64::from(n % 50))),
            _ => job,
        }
    });
    let handles = queue.create_many(jobs).await.unwrap();
    let mut counts = std::collections::HashMap::new();
    for h in &handles {
        let r = h.result().await.unwrap();
        assert!(r.status.is_final());
        *counts.entry(r.status).or_insert(0usize) += 1;
    }
    assert_eq!(counts.values().sum::<usize>(), 100_000);
    assert!(counts[&JobStatus::Completed] > 0 && counts[&JobStatus::Buried] > 0);
    let stats = queue.store().jobs_count().await.unwrap();
    let stored_final: u64 = stats
        .iter()
        .filter(|c| c.status.is_final())
        .map(|c| c.count)
        .sum();
    assert_eq!(stored_final, 100_000, "the store agrees: {stats:?}");
    for c in &stats {
        assert_eq!(
            counts.get(&c.status).copied().unwrap_or(0) as u64,
            c.count,
            "{:?}",
            c.status
        );
    }
}

#[actix_rt::test]
async fn shutdown_lets_running_jobs_finish_then_aborts_the_rest() {
    pause();
    let queue = Queue::new();
    queue
        .define("sleepy")
        .action(|job: Ctx<u64>| async move {
            tokio::time::sleep(Duration::from_secs(job.payload)).await;
            Ok::<_, JobError>(())
        })
        .unwrap();
    queue.process(["default"]).concurrency(2).start().unwrap();
    let quick = queue.create("sleepy", 1).await.unwrap();
    let slow = queue.create("sleepy", 100).await.unwrap();
    let never = queue.create("sleepy", 1).delay("1h").await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let report = queue.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(report.finished_while_draining, 1);
    assert_eq!(report.aborted, vec![slow.id()]);
    assert_eq!(report.left_pending, 2);
    let store = queue.store();
    assert_eq!(
        store.job_get(quick.id()).await.unwrap().unwrap().status,
        JobStatus::Completed
    );
    assert_eq!(
        store.job_get(slow.id()).await.unwrap().unwrap().status,
        JobStatus::Ready
    );
    assert_eq!(
        store.job_get(never.id()).await.unwrap().unwrap().status,
        JobStatus::Scheduled
    );
    assert!(matches!(
        queue.create("sleepy", 1).await,
        Err(Error::ShutDown)
    ));
}

#[actix_rt::test]
async fn queue_env_selects_the_tags_to_serve() {
    pause();
    let queue = Queue::new();
    let trace = Trace::default();
    recorder(&queue, "t", "from-env", &trace);
    // SAFETY of the environment: only this test reads or writes QUEUE.
    std::env::set_var("QUEUE", "from-env, other");
    let worker = queue.process_from_env(1).unwrap().expect("QUEUE is set");
    std::env::remove_var("QUEUE");
    assert_eq!(worker.tags(), ["from-env", "other"]);
    queue.create("t", 7).await.unwrap().result().await.unwrap();
    assert_eq!(trace.items(), vec![7]);
    assert!(queue.process_from_env(1).unwrap().is_none());
}

/// Jobs that finish on their first poll are settled by the scheduler
/// itself, one after another; a long run of them still leaves the other
/// tasks on the thread a turn every few hundred jobs.
#[actix_rt::test]
async fn a_long_run_of_instant_jobs_leaves_other_tasks_a_turn() {
    pause();
    let queue = Queue::new();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    queue
        .define("instant")
        .action(move |_: Ctx<()>| {
            d.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, JobError>(()))
        })
        .unwrap();
    let handles = queue
        .create_many((0..10_000).map(|_| NewJob::new("instant", ())))
        .await
        .unwrap();
    queue.process(["default"]).start().unwrap();
    // The scheduler takes the jobs in, starts the worker and runs jobs.
    let mut turns = 0;
    while done.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
        turns += 1;
        assert!(turns < 1000, "no job ran");
    }
    let seen = done.load(Ordering::SeqCst);
    assert!(
        seen < 10_000,
        "this task got a turn only after all {seen} jobs ran"
    );
    handles.last().unwrap().result().await.unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 10_000);
}

/// A run's shared state is reused once nothing else holds it: each run
/// starts with no lines and no progress of an earlier one, and a context a
/// handler keeps past its run is never handed to another.
#[actix_rt::test]
async fn a_reused_run_starts_clean_and_a_kept_context_stays_its_own() {
    pause();
    let queue = Queue::new();
    let kept: Arc<parking_lot::Mutex<Vec<Ctx<u32>>>> = Default::default();
    let token: Arc<parking_lot::Mutex<Option<tokio_util::sync::CancellationToken>>> =
        Default::default();
    let (k, t) = (kept.clone(), token.clone());
    queue
        .define("work")
        .action(move |job: Ctx<u32>| {
            job.log(format!("line of {}", job.payload), ());
            if job.payload % 2 == 0 {
                job.progress(u64::from(job.payload), 100);
            }
            if job.payload == 19 {
                *t.lock() = Some(job.cancellation_token());
            }
            if job.payload == 0 {
                k.lock().push(job);
            }
            std::future::ready(Ok::<_, JobError>(()))
        })
        .unwrap();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    queue
        .define("wait")
        .action(move |job: Ctx<()>| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(());
                job.cancellation_token().cancelled().await;
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let mut handles = Vec::new();
    for n in 0..20u32 {
        handles.push(queue.create("work", n).await.unwrap());
    }
    for h in &handles {
        h.result().await.unwrap();
    }
    // Logged through the kept context after its run: into no other job.
    kept.lock()[0].log("late line", ());
    for (n, h) in handles.iter().enumerate() {
        let job = queue.job(h.id()).await.unwrap();
        let lines: Vec<&str> = job.logs.iter().map(|l| &*l.message).collect();
        let own = format!("line of {n}");
        assert_eq!(lines, ["created", "started", own.as_str(), "completed"]);
        let progress = (n % 2 == 0).then_some(kessel::Progress {
            current: n as u64,
            total: 100,
        });
        assert_eq!(job.progress, progress, "job {n}");
    }
    // The next run reuses job 19's state; cancelling it leaves the token
    // job 19's handler took alone.
    let waiting = queue.create("wait", ()).await.unwrap();
    started_rx.recv().await.unwrap();
    queue.cancel(waiting.id()).await.unwrap();
    assert_eq!(waiting.result().await.unwrap().status, JobStatus::Cancelled);
    assert!(
        !token.lock().as_ref().unwrap().is_cancelled(),
        "an earlier run's token fired with a later run's cancellation"
    );
}

/// Runs of different tasks, one after the other, each see their own task
/// in their context, and middleware sees its tag too (a run's state is
/// reused from one run to the next).
#[actix_rt::test]
async fn each_run_sees_its_own_task_and_tag() {
    pause();
    let queue = Queue::new();
    let handled: Trace<(u32, String)> = Trace::default();
    for (task, tag) in [("resize", "images"), ("send", "mail")] {
        let handled = handled.clone();
        queue
            .define(task)
            .tag(tag)
            .action(move |job: Ctx<u32>| {
                handled.push((job.payload, job.task().to_owned()));
                async { Ok::<_, JobError>(()) }
            })
            .unwrap();
    }
    let tasks = ["resize", "send", "send", "resize", "send", "resize"];
    let tag_of = |task: &str| if task == "resize" { "images" } else { "mail" };
    let create = |offset: usize| {
        queue.create_many(
            tasks
                .iter()
                .enumerate()
                .map(move |(i, task)| NewJob::new(*task, (offset + i) as u32)),
        )
    };
    create(0).await.unwrap();
    assert_eq!(queue.run_jobs(None, None).await.unwrap(), tasks.len());
    // The same again through middleware, which also sees the tag.
    let wrapped: Trace<(String, Option<String>)> = Trace::default();
    let w = wrapped.clone();
    queue.middleware(kessel::middleware::from_fn(
        move |job: kessel::JobMeta, next: kessel::middleware::Next| {
            w.push((job.task().to_owned(), job.tag().map(str::to_owned)));
            next.run()
        },
    ));
    create(tasks.len()).await.unwrap();
    assert_eq!(queue.run_jobs(None, None).await.unwrap(), tasks.len());
    let mut handled = handled.items();
    handled.sort();
    let expected: Vec<_> = tasks
        .iter()
        .chain(tasks.iter())
        .enumerate()
        .map(|(i, task)| (i as u32, task.to_string()))
        .collect();
    assert_eq!(handled, expected);
    let mut wrapped = wrapped.items();
    wrapped.sort();
    let mut expected: Vec<_> = tasks
        .iter()
        .map(|task| (task.to_string(), Some(tag_of(task).to_owned())))
        .collect();
    expected.sort();
    assert_eq!(wrapped, expected);
}
