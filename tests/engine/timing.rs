//! When delayed and expiring jobs act, on the paused tokio clock: a
//! delayed job starts at its time, never before and at most a timer tick
//! after; a job not started by its expiration expires without running.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kessel::{JobError, JobStatus, Queue};

use crate::common::Trace;
use crate::Ctx;

#[actix_rt::test(system = "crate::Paused")]
async fn delayed_job_never_starts_before_its_time_and_starts_at_it() {
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
/// The clock is paused from the start, on the grid (see [`crate::Paused`]).
/// Paused by `tokio::time::pause()` in the body instead, it stood a further
/// fraction of a millisecond off, however long the runtime took to reach
/// the test; more than 0.78 ms off in all, the 200 µs job's timer fired on
/// the second tick and the job started 1.8 ms late.
#[actix_rt::test(system = "crate::Paused")]
async fn a_delay_ending_mid_millisecond_starts_within_one_timer_tick() {
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

#[actix_rt::test(system = "crate::Paused")]
async fn job_not_started_by_its_expiration_expires_without_running() {
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
