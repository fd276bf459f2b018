//! How a run ends and what follows: completion, transient failures
//! retried with backoff (or at the time the handler asks) then buried,
//! fatal failures buried at once, panics, timeouts, the log lines of a run
//! that was cut off, and every job of a large mixed load reaching exactly
//! one final state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kessel::{JobError, JobStatus, NewJob, Queue, RetryPolicy};

use crate::common::Trace;
use crate::Ctx;

#[actix_rt::test(system = "crate::Paused")]
async fn transient_failures_retry_with_backoff_then_bury() {
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

#[actix_rt::test(system = "crate::Paused")]
async fn transient_failure_then_success_completes() {
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

/// Each attempt's lines open with its "started" line, whether the
/// retention keeps completed jobs or none (where a completed run makes no
/// lines at all, and a failed one still keeps them).
#[actix_rt::test(system = "crate::Paused")]
async fn every_attempt_keeps_its_started_line_whatever_the_retention() {
    for (retention, keeps_completed) in [
        (kessel::Retention::default(), true),
        (kessel::Retention::keep_none(), false),
    ] {
        let queue = Queue::builder().retention(retention).build().await.unwrap();
        queue
            .define("twice")
            .retry(RetryPolicy::exponential(2).jitter(0.0))
            .action(|job: Ctx<()>| async move {
                job.log("trying", ());
                Err::<(), _>(JobError::transient("not today"))
            })
            .unwrap();
        queue
            .define("quiet")
            .retry(RetryPolicy::exponential(2).jitter(0.0))
            .action(|job: Ctx<()>| async move {
                if job.attempt() < 2 {
                    return Err(JobError::transient("once"));
                }
                Ok(())
            })
            .unwrap();
        queue.process(["default"]).start().unwrap();
        let buried = queue.create("twice", ()).await.unwrap();
        assert_eq!(buried.result().await.unwrap().status, JobStatus::Buried);
        let job = queue.job(buried.id()).await.unwrap();
        let lines: Vec<(u32, &str)> = job.logs.iter().map(|l| (l.attempt, &*l.message)).collect();
        assert_eq!(lines.len(), 7, "{lines:?}");
        assert_eq!(
            &lines[..3],
            [(0, "created"), (1, "started"), (1, "trying")],
            "{lines:?}"
        );
        assert_eq!(&lines[4..6], [(2, "started"), (2, "trying")], "{lines:?}");
        assert!(lines[6].1.starts_with("buried"), "{lines:?}");
        let done = queue.create("quiet", ()).await.unwrap();
        assert_eq!(done.result().await.unwrap().status, JobStatus::Completed);
        match queue.job(done.id()).await {
            Ok(job) if keeps_completed => {
                let lines: Vec<(u32, &str)> =
                    job.logs.iter().map(|l| (l.attempt, &*l.message)).collect();
                assert_eq!(
                    [lines[0], lines[1], lines[3], lines[4]],
                    [
                        (0, "created"),
                        (1, "started"),
                        (2, "started"),
                        (2, "completed")
                    ],
                    "{lines:?}"
                );
            }
            // Kept nowhere once completed.
            Err(kessel::Error::UnknownJob(id)) if !keeps_completed => assert_eq!(id, done.id()),
            other => panic!("kept completed jobs: {keeps_completed}, read {other:?}"),
        }
    }
}

#[actix_rt::test(system = "crate::Paused")]
async fn fatal_failure_buries_at_once() {
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

#[actix_rt::test(system = "crate::Paused")]
async fn retry_after_overrides_the_backoff() {
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

#[actix_rt::test(system = "crate::Paused")]
async fn a_panic_fails_the_job_and_the_worker_lives_on() {
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

#[actix_rt::test(system = "crate::Paused")]
async fn timeout_fires_the_signal_and_retries_as_transient() {
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

/// What a run logged before it was cut off comes before the line that
/// ends it, on the in-memory store (nothing written while it ran) and on
/// one that records every change.
#[actix_rt::test(system = "crate::Paused")]
async fn a_timed_out_or_cancelled_run_keeps_its_lines_in_order() {
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

#[actix_rt::test(system = "crate::Paused")]
async fn hundred_thousand_mixed_jobs_each_reach_exactly_one_final_state() {
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
