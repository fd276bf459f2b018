//! Cancellation with grace: a cancel or a timeout first signals the
//! handler, which may stop cleanly within its task's grace period and have
//! what it returned and logged recorded; one that does not stop is
//! dropped when the grace period ends.

use std::time::Duration;

use kessel::{JobContext, JobError, JobStatus, Queue, RetryPolicy};

/// A handler that waits for its signal in `select!`, writes a line and
/// returns an error: the timeout is recorded with its message and line.
async fn stops_cleanly(job: JobContext<()>) -> Result<(), JobError> {
    tokio::select! {
        _ = job.cancelled() => {
            job.log("caught the signal", ());
            Err(JobError::fatal("stopped cleanly"))
        }
        _ = tokio::time::sleep(Duration::from_secs(3600)) => Ok(()),
    }
}

fn lines(job: &kessel::Job) -> Vec<&str> {
    job.logs.iter().map(|l| &*l.message).collect()
}

#[actix_rt::test(system = "crate::Paused")]
async fn a_timed_out_handler_that_stops_within_its_grace_has_its_result_recorded() {
    let queue = Queue::new();
    queue
        .define("export")
        .timeout("5s")
        .grace("2s")
        .retry(RetryPolicy::none())
        .action(stops_cleanly)
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let handle = queue.create("export", ()).await.unwrap();
    let result = handle.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Buried);
    assert_eq!(
        result.message.as_deref(),
        Some("timed out after 5s: stopped cleanly (attempt 1 of 1, no attempts left)")
    );
    let job = queue.job(handle.id()).await.unwrap();
    let lines = lines(&job);
    assert_eq!(
        &lines[..3],
        ["created", "started", "caught the signal"],
        "{lines:?}"
    );
    assert!(
        lines[3].starts_with("buried: timed out after 5s: stopped cleanly"),
        "{lines:?}"
    );
    // Decided when the handler returned, not at the end of the grace.
    let took = (job.finished_at.unwrap() - job.created_at).num_milliseconds();
    assert!((5_000..=5_002).contains(&took), "{took} ms");
}

#[actix_rt::test(system = "crate::Paused")]
async fn a_cancelled_handler_that_stops_within_its_grace_has_its_result_recorded() {
    let queue = Queue::new();
    queue.define("export").action(stops_cleanly).unwrap();
    queue.process(["default"]).start().unwrap();
    let handle = queue.create("export", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    queue.cancel(handle.id()).await.unwrap();
    let result = handle.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Cancelled);
    assert_eq!(
        result.message.as_deref(),
        Some("cancelled: stopped cleanly")
    );
    let job = queue.job(handle.id()).await.unwrap();
    assert_eq!(
        lines(&job),
        ["created", "started", "caught the signal", "cancelled"]
    );
}

/// A handler that sees its signal but goes on past its grace period is
/// dropped at the grace period's end; what it logged before is kept, and
/// a retry's backoff counts from the timeout, not from the drop.
#[actix_rt::test(system = "crate::Paused")]
async fn a_handler_that_overruns_its_grace_is_dropped_when_it_ends() {
    let queue = Queue::new();
    let q = queue.clone();
    queue
        .define("stubborn")
        .timeout("5s")
        .grace("1s")
        .retry(
            RetryPolicy::exponential(2)
                .base_delay(Duration::from_secs(3))
                .jitter(0.0),
        )
        .action(move |job: JobContext<()>| {
            let q = q.clone();
            async move {
                job.log(format!("started at {}", q.now().timestamp_millis()), ());
                job.cancelled().await;
                job.log("signalled, finishing anyway", ());
                tokio::time::sleep(Duration::from_secs(60)).await;
                job.log("never written", ());
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).concurrency(2).start().unwrap();
    let handle = queue.create("stubborn", ()).await.unwrap();
    let result = handle.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Buried);
    let job = queue.job(handle.id()).await.unwrap();
    let lines = lines(&job);
    assert!(!lines.contains(&"never written"), "{lines:?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| **l == "signalled, finishing anyway")
            .count(),
        2,
        "{lines:?}"
    );
    let starts: Vec<i64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("started at "))
        .map(|ms| ms.parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 2, "{lines:?}");
    // 5 s timeout, then 3 s backoff counted from the timeout.
    let gap = starts[1] - starts[0];
    assert!((8_000..=8_002).contains(&gap), "{gap} ms: {lines:?}");
    // The second attempt is decided at the end of its grace period.
    let took = (job.finished_at.unwrap() - job.created_at).num_milliseconds();
    assert!((14_000..=14_004).contains(&took), "{took} ms");
    // Each attempt's line from its grace period sits before the line that
    // ends the attempt.
    let signalled: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| **l == "signalled, finishing anyway")
        .map(|(i, _)| i)
        .collect();
    assert!(
        lines[signalled[0] + 1].starts_with("failed: timed out after 5s"),
        "{lines:?}"
    );
    assert!(
        lines[signalled[1] + 1].starts_with("buried: timed out after 5s"),
        "{lines:?}"
    );
}

/// `grace("0s")` drops the future as soon as the signal fires, and a bad
/// grace duration is a typed error when the task is defined.
#[actix_rt::test(system = "crate::Paused")]
async fn zero_grace_drops_at_once_and_a_bad_grace_is_a_typed_error() {
    let queue = Queue::new();
    queue
        .define("export")
        .timeout("5s")
        .grace("0s")
        .retry(RetryPolicy::none())
        .action(stops_cleanly)
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let handle = queue.create("export", ()).await.unwrap();
    let result = handle.result().await.unwrap();
    assert_eq!(
        result.message.as_deref(),
        Some("timed out after 5s (attempt 1 of 1, no attempts left)")
    );
    let job = queue.job(handle.id()).await.unwrap();
    assert!(!lines(&job).contains(&"caught the signal"));

    let err = queue
        .define("bad")
        .grace("a while")
        .action(stops_cleanly)
        .unwrap_err();
    assert!(matches!(err, kessel::Error::InvalidDuration(_)), "{err:?}");
}
