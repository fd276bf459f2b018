//! What a new user reaches for in the first hour: the job's own times and
//! reference in the handler, `run_jobs` with duration strings, and a job's
//! events from its very first one.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kessel::event::{Event, JobEventKind};
use kessel::{Error, JobContext, JobError, JobStatus, Queue, RetryPolicy};
use parking_lot::Mutex;

type Seen = Arc<Mutex<Vec<(u32, DateTime<Utc>, DateTime<Utc>, Option<String>)>>>;

/// Records, per attempt, what the handler's context says about the job.
fn recording_task(queue: &Queue, fail_first: bool) -> Seen {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    queue
        .define("record")
        .retry(
            RetryPolicy::exponential(3)
                .base_delay(Duration::from_secs(30))
                .jitter(0.0),
        )
        .action(move |job: JobContext<()>| {
            let record = record.clone();
            async move {
                record.lock().push((
                    job.attempt(),
                    job.created_at(),
                    job.run_at(),
                    job.reference().map(str::to_owned),
                ));
                if fail_first && job.attempt() == 1 {
                    return Err(JobError::transient("first attempt fails"));
                }
                Ok(())
            }
        })
        .unwrap();
    seen
}

/// `run_at` and `created_at` come from the job, not from the clock: a job
/// created to run at a time already past starts now, and its context
/// still says the time it was given.
#[actix_rt::test]
async fn job_context_times_are_the_jobs_not_the_clocks() {
    tokio::time::pause();
    let queue = Queue::new();
    let seen = recording_task(&queue, false);
    tokio::time::advance(Duration::from_secs(3600)).await;
    let past = queue.now() - chrono::Duration::minutes(30);
    let handle = queue
        .create("record", ())
        .run_at(past)
        .reference("order-42")
        .await
        .unwrap();
    let stored = queue.job(handle.id()).await.unwrap();
    queue.process(["default"]).start().unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(handle.result().await.unwrap().status, JobStatus::Completed);
    let seen = seen.lock().clone();
    assert_eq!(
        seen,
        [(1, stored.created_at, past, Some("order-42".to_owned()))]
    );
    assert!(stored.created_at < queue.now());
}

/// On a retry `run_at` is when the retry became due, and `created_at`
/// stays the creation time.
#[actix_rt::test]
async fn a_retry_sees_its_own_run_at_and_the_same_created_at() {
    tokio::time::pause();
    let queue = Queue::new();
    let seen = recording_task(&queue, true);
    queue.process(["default"]).start().unwrap();
    let handle = queue.create("record", ()).delay("10m").await.unwrap();
    let created = queue.job(handle.id()).await.unwrap();
    assert_eq!(handle.result().await.unwrap().status, JobStatus::Completed);
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (first, second) = (&seen[0], &seen[1]);
    assert_eq!((first.0, second.0), (1, 2));
    assert_eq!(first.1, created.created_at);
    assert_eq!(second.1, created.created_at);
    assert_eq!(first.2, created.created_at + chrono::Duration::minutes(10));
    // The retry waited its 30 s backoff after the first attempt.
    let backoff = second.2 - first.2;
    assert!(
        backoff >= chrono::Duration::seconds(30) && backoff < chrono::Duration::seconds(31),
        "{backoff}"
    );
    assert_eq!(first.3, None);
}

/// A job loaded from SQLite by a new queue keeps the times it was
/// created with.
#[cfg(feature = "sqlite")]
#[actix_rt::test]
async fn job_context_times_survive_a_reopen_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let queue = open_sqlite(&path).await;
    let at = queue.now() - chrono::Duration::days(1);
    let id = queue
        .create("record", ())
        .run_at(at)
        .reference("nightly")
        .await
        .unwrap()
        .id();
    let stored = queue.job(id).await.unwrap();
    queue.shutdown(Duration::from_secs(1)).await.unwrap();
    drop(queue);

    let queue = open_sqlite(&path).await;
    let seen = recording_task(&queue, false);
    queue.process(["default"]).start().unwrap();
    assert_eq!(queue.result(id).await.unwrap().status, JobStatus::Completed);
    let seen = seen.lock().clone();
    assert_eq!(
        seen,
        [(
            1,
            stored.created_at,
            stored.run_at,
            Some("nightly".to_owned())
        )]
    );
    // Stores keep times to the microsecond.
    assert_eq!(stored.run_at.timestamp_micros(), at.timestamp_micros());
}

#[actix_rt::test]
async fn run_jobs_takes_duration_strings_durations_and_none() {
    tokio::time::pause();
    let queue = Queue::new();
    queue
        .define("tick")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    for _ in 0..3 {
        queue.create("tick", ()).await.unwrap();
    }
    assert_eq!(queue.run_jobs(Some(1), None).await.unwrap(), 1);
    assert_eq!(queue.run_jobs(Some(1), "0s").await.unwrap(), 1);
    assert_eq!(queue.run_jobs(None, Some(Duration::ZERO)).await.unwrap(), 1);

    // A time limit waits for jobs that become due within it, given as a
    // string, a Duration or a chrono::Duration.
    queue.create("tick", ()).delay("10s").await.unwrap();
    assert_eq!(queue.run_jobs(None, "30s").await.unwrap(), 1);
    queue.create("tick", ()).delay("10s").await.unwrap();
    assert_eq!(
        queue.run_jobs(None, Duration::from_secs(30)).await.unwrap(),
        1
    );
    queue.create("tick", ()).delay("10s").await.unwrap();
    assert_eq!(
        queue
            .run_jobs(None, chrono::Duration::seconds(30))
            .await
            .unwrap(),
        1
    );
    // Past the limit, a later job is left for next time.
    let late = queue.create("tick", ()).delay("1h").await.unwrap();
    assert_eq!(queue.run_jobs(None, "1m").await.unwrap(), 0);
    assert_eq!(
        queue.job(late.id()).await.unwrap().status,
        JobStatus::Scheduled
    );
}

#[actix_rt::test]
async fn run_jobs_with_an_unreadable_time_limit_is_a_typed_error_and_runs_nothing() {
    let queue = Queue::new();
    queue
        .define("tick")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    let handle = queue.create("tick", ()).await.unwrap();
    for bad in ["", "soon", "5 fortnights", "-1s", "99999999999999999999d"] {
        match queue.run_jobs(None, bad).await {
            Err(Error::InvalidDuration(e)) => assert_eq!(e.text(), bad),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    match queue.run_jobs(None, chrono::Duration::seconds(-1)).await {
        Err(Error::InvalidDuration(_)) => {}
        other => panic!("a negative limit gave {other:?}"),
    }
    assert_eq!(
        queue.job(handle.id()).await.unwrap().status,
        JobStatus::Ready
    );
    assert_eq!(queue.run_jobs(None, None).await.unwrap(), 1);
}

async fn next_kind(events: &mut kessel::event::EventStream) -> JobEventKind {
    match events.next().await {
        Some(Event::Job(e)) => e.kind,
        other => panic!("expected a job event, got {other:?}"),
    }
}

/// Subscribing as part of creating sees the job's first event, which a
/// subscription made after `create` returns cannot.
#[actix_rt::test]
async fn events_from_create_start_with_created() {
    let queue = Queue::new();
    queue
        .define("hello")
        .action(|job: JobContext<()>| async move {
            job.log("hello", ());
            Ok::<_, JobError>(())
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let (handle, mut events) = queue.create("hello", ()).events().await.unwrap();
    let mut kinds = Vec::new();
    loop {
        match events.next().await {
            Some(Event::Job(e)) => {
                assert_eq!(e.id, handle.id());
                let last = e.kind.is_final();
                kinds.push(e.kind.name());
                if last {
                    break;
                }
            }
            other => panic!("expected a job event, got {other:?}"),
        }
    }
    assert_eq!(kinds, ["created", "started", "log", "completed"]);
}

#[actix_rt::test]
async fn events_from_create_of_a_delayed_job_see_it_scheduled() {
    tokio::time::pause();
    let queue = Queue::new();
    let (handle, mut events) = queue
        .create("later", 1)
        .delay("1h")
        .priority(2)
        .events()
        .await
        .unwrap();
    assert_eq!(next_kind(&mut events).await, JobEventKind::Created);
    let job = queue.job(handle.id()).await.unwrap();
    assert_eq!(
        next_kind(&mut events).await,
        JobEventKind::Scheduled { run_at: job.run_at }
    );
    queue.cancel(handle.id()).await.unwrap();
    assert_eq!(next_kind(&mut events).await, JobEventKind::Cancelled);
}

/// A stream from `events()` carries only its own job's events, even with
/// others created around it.
#[actix_rt::test]
async fn events_from_create_are_only_that_jobs() {
    let queue = Queue::new();
    queue.create("other", 0).await.unwrap();
    let (handle, mut events) = queue.create("mine", 1).events().await.unwrap();
    queue.create("other", 2).await.unwrap();
    queue.cancel(handle.id()).await.unwrap();
    assert_eq!(next_kind(&mut events).await, JobEventKind::Created);
    assert_eq!(next_kind(&mut events).await, JobEventKind::Cancelled);
}

#[actix_rt::test]
async fn events_from_a_create_that_fails_return_its_error() {
    let queue = Queue::new();
    assert!(matches!(
        queue.create("t", ()).delay("soon").events().await,
        Err(Error::InvalidDuration(_))
    ));
    assert!(matches!(
        queue.create("", ()).events().await,
        Err(Error::InvalidInput { field: "task", .. })
    ));
}

/// A queue on the SQLite file at `path`, waiting for the file's lock: a
/// queue shut down a moment ago lets go of the file shortly after
/// `shutdown` returns.
#[cfg(feature = "sqlite")]
async fn open_sqlite(path: &std::path::Path) -> Queue {
    let store = kessel::store::SqliteOptions::new(path)
        .lock_timeout(Duration::from_secs(30))
        .open()
        .await
        .expect("the file opens");
    Queue::builder()
        .store(Arc::new(store))
        .build()
        .await
        .expect("a queue")
}
