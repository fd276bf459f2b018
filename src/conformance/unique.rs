//! Unique jobs through a queue on the store under test: at most one live
//! job per key, whichever store enforces it.

use std::time::Duration;

use tokio::sync::mpsc;

use super::fixtures::fresh;
use super::harness::conformance_test;
use super::queue::{outcome, queue_on};
use super::{StoreFactory, Verdict};
use crate::context::JobContext;
use crate::error::JobError;
use crate::job::JobStatus;
use crate::new_job::NewJob;
use crate::store::JobQuery;
use crate::unique::UniqueScope;

/// How many jobs of `task` the queue has, in any status.
async fn count(queue: &crate::queue::Queue, task: &str) -> usize {
    queue
        .fetch(JobQuery::default().task(task).limit(1000))
        .await
        .unwrap_or_else(|e| panic!("fetch: {e}"))
        .len()
}

conformance_test!(unique,
    /// A job created with the key of a live unfinished job creates nothing
    /// and returns the holder; once the holder is final, the key is free.
    unique_create_returns_the_live_holder_until_it_is_final => until_final
);

async fn until_final<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    queue
        .define("sync")
        .action(|_: JobContext<u32>| async { Ok::<_, JobError>(()) })
        .unwrap_or_else(|e| panic!("{e}"));
    let create = |n: u32| queue.create_job(NewJob::new("sync", n).unique("sync customer 7"));
    let first = create(1).await.unwrap_or_else(|e| panic!("create: {e}"));
    assert!(!first.is_duplicate());
    for n in 2..5 {
        let again = create(n).await.unwrap_or_else(|e| panic!("create: {e}"));
        assert!(again.is_duplicate(), "job {n} is a duplicate");
        assert_eq!(again.id(), first.id(), "and names the holder");
    }
    assert_eq!(count(&queue, "sync").await, 1, "one job stored");
    assert_eq!(
        queue
            .unique_holder("sync customer 7")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Some(first.id())
    );
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome(&first).await.status, JobStatus::Completed);
    let next = create(9).await.unwrap_or_else(|e| panic!("create: {e}"));
    assert!(!next.is_duplicate(), "a final job holds no key");
    assert_ne!(next.id(), first.id());
    assert_eq!(outcome(&next).await.status, JobStatus::Completed);
    assert_eq!(count(&queue, "sync").await, 2);
    Verdict::Passed
}

conformance_test!(unique,
    /// A job unique while waiting frees its key when its attempt starts:
    /// a job with the same key can be queued behind a running one.
    unique_while_waiting_frees_the_key_when_the_job_starts => while_waiting
);

async fn while_waiting<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let (started_tx, mut started) = mpsc::unbounded_channel::<u32>();
    let (release_tx, release) = mpsc::unbounded_channel::<()>();
    let release = std::sync::Arc::new(tokio::sync::Mutex::new(release));
    queue
        .define("refresh")
        .action(move |job: JobContext<u32>| {
            let (started_tx, release) = (started_tx.clone(), release.clone());
            async move {
                let _ = started_tx.send(job.payload);
                release.lock().await.recv().await;
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let create = |n: u32| {
        queue.create_job(
            NewJob::new("refresh", n)
                .unique("refresh cache")
                .unique_scope(UniqueScope::Waiting),
        )
    };
    let first = create(1).await.unwrap_or_else(|e| panic!("create: {e}"));
    assert!(create(2)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .is_duplicate());
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(started.recv().await, Some(1), "the first job runs");
    let second = create(3).await.unwrap_or_else(|e| panic!("create: {e}"));
    assert!(!second.is_duplicate(), "a running job holds no waiting key");
    assert!(
        create(4)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_duplicate(),
        "but the new waiting job does"
    );
    release_tx.send(()).unwrap_or_else(|e| panic!("{e}"));
    release_tx.send(()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome(&first).await.status, JobStatus::Completed);
    assert_eq!(outcome(&second).await.status, JobStatus::Completed);
    assert_eq!(count(&queue, "refresh").await, 2);
    Verdict::Passed
}

conformance_test!(unique,
    /// A job unique for a window holds its key for that long after it was
    /// created, even once it is final; by task and payload, equal
    /// payloads share a key and others do not.
    unique_for_a_window_holds_the_key_after_the_job_ends => window
);

async fn window<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    queue
        .define("digest")
        .action(|_: JobContext<String>| async { Ok::<_, JobError>(()) })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let create = |user: &str| {
        queue.create_job(
            NewJob::new("digest", user)
                .unique_by_payload()
                .unique_scope(UniqueScope::Window(Duration::from_secs(60))),
        )
    };
    let first = create("ford")
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(outcome(&first).await.status, JobStatus::Completed);
    tokio::time::advance(Duration::from_secs(30)).await;
    let again = create("ford")
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert!(
        again.is_duplicate(),
        "30 s into the window, after the job ended"
    );
    assert_eq!(again.id(), first.id());
    let other = create("arthur")
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert!(!other.is_duplicate(), "another payload is another key");
    tokio::time::advance(Duration::from_secs(31)).await;
    let later = create("ford")
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert!(!later.is_duplicate(), "61 s after, the window has ended");
    assert_eq!(outcome(&later).await.status, JobStatus::Completed);
    assert_eq!(count(&queue, "digest").await, 3);
    Verdict::Passed
}

conformance_test!(unique,
    /// A job can be cancelled by its unique key, and its producer
    /// reference, without its id; the cancelled job frees its key.
    unique_cancel_by_key_or_reference_needs_no_id => cancel
);

async fn cancel<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let held = queue
        .create_job(NewJob::new("invoice", 1).unique("invoice 1").delay("1h"))
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(
        queue
            .cancel_unique("invoice 1")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Some(held.id())
    );
    assert_eq!(outcome(&held).await.status, JobStatus::Cancelled);
    assert_eq!(
        queue
            .cancel_unique("invoice 1")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None,
        "the cancelled job holds no key"
    );
    for n in 0..3 {
        queue
            .create_job(NewJob::new("remind", n).reference("order-5").delay("1h"))
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
    }
    assert_eq!(
        queue
            .cancel_by_reference("order-5")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        3
    );
    assert_eq!(
        queue
            .cancel_by_reference("order-5")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        0,
        "nothing pending is left"
    );
    Verdict::Passed
}

conformance_test!(unique,
    /// A buried unique job kicked back to ready holds its key again.
    unique_kicked_job_takes_its_key_back => kicked
);

async fn kicked<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    // Declined at first; once kicked, it runs until the test ends.
    queue
        .define("charge")
        .retry(crate::task::RetryPolicy::none())
        .action(|job: JobContext<u32>| async move {
            if job.attempt() == 1 {
                return Err::<(), _>(JobError::fatal("declined"));
            }
            std::future::pending::<()>().await;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let held = queue
        .create_job(NewJob::new("charge", 1).unique("charge:1"))
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(outcome(&held).await.status, JobStatus::Buried);
    assert_eq!(
        queue
            .unique_holder("charge:1")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None,
        "a buried job holds no key"
    );
    queue
        .kick(held.id())
        .await
        .unwrap_or_else(|e| panic!("kick: {e}"));
    let again = queue
        .create_job(NewJob::new("charge", 2).unique("charge:1"))
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert!(again.is_duplicate(), "the kicked job holds its key again");
    assert_eq!(again.id(), held.id());
    Verdict::Passed
}
