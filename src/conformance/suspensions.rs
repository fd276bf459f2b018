//! Suspensions: a store that keeps them ([`Store::suspensions_list`] and
//! its siblings) keeps who suspended what and since when, across a reopen;
//! a queue on any store holds back a suspended task's jobs until resumed.
//!
//! The store-level tests return [`Verdict::Skipped`] for a store that
//! keeps no suspensions (its queue keeps them in memory).

use std::sync::Arc;

use super::fixtures::{fresh, now};
use super::harness::conformance_test;
use super::queue::{outcome, queue_on};
use super::{StoreFactory, Verdict};
use crate::context::JobContext;
use crate::error::JobError;
use crate::job::JobStatus;
use crate::store::{Store, StoreError};
use crate::suspension::{Suspended, Suspension};

const UNSUPPORTED: &str = "the store keeps no suspensions (suspensions_list is Unsupported)";

fn suspension(what: Suspended, by: &str) -> Suspension {
    Suspension {
        what,
        by: by.into(),
        since: now(),
    }
}

async fn list(store: &Arc<dyn Store>) -> Vec<Suspension> {
    store
        .suspensions_list()
        .await
        .unwrap_or_else(|e| panic!("suspensions_list: {e}"))
}

conformance_test!(suspensions,
    /// A suspension of a task or a tag is kept with who asked and since
    /// when; suspending again keeps the first; a delete removes it once.
    suspensions_keep_who_and_since_and_the_first_wins => keeps
);

async fn keeps<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    match store.suspensions_list().await {
        Err(StoreError::Unsupported(_)) => return Verdict::Skipped(UNSUPPORTED),
        Err(e) => panic!("suspensions_list: {e}"),
        Ok(list) => assert!(list.is_empty(), "a fresh store has no suspensions"),
    }
    let task = suspension(Suspended::Task("email".into()), "ford");
    let tag = suspension(Suspended::Tag("reports".into()), "arthur");
    for s in [&task, &tag] {
        assert!(
            store.suspension_insert(s).await.unwrap(),
            "{} is new",
            s.what
        );
    }
    let again = suspension(Suspended::Task("email".into()), "zaphod");
    assert!(
        !store.suspension_insert(&again).await.unwrap(),
        "already suspended"
    );
    let mut listed = list(&store).await;
    listed.sort_by(|a, b| a.what.cmp(&b.what));
    assert_eq!(
        listed,
        [task.clone(), tag.clone()],
        "the first suspension wins"
    );
    assert!(store.suspension_delete(&task.what).await.unwrap());
    assert!(
        !store.suspension_delete(&task.what).await.unwrap(),
        "deleted once"
    );
    assert_eq!(list(&store).await, [tag]);
    Verdict::Passed
}

conformance_test!(suspensions,
    /// Closed and reopened, the store still has its suspensions.
    suspensions_survive_a_reopen => reopens
);

async fn reopens<F: StoreFactory>(factory: F) -> Verdict {
    if !factory.reopens() {
        return Verdict::Skipped(
            "the factory cannot reopen a store (StoreFactory::reopens is false)",
        );
    }
    let (store, place) = fresh(&factory).await;
    let s = suspension(Suspended::Tag("reports".into()), "ford");
    match store.suspension_insert(&s).await {
        Err(StoreError::Unsupported(_)) => return Verdict::Skipped(UNSUPPORTED),
        other => assert!(other.unwrap_or_else(|e| panic!("suspension_insert: {e}"))),
    }
    store.close().await.unwrap_or_else(|e| panic!("close: {e}"));
    let store = factory
        .reopen(&place)
        .await
        .unwrap_or_else(|e| panic!("reopening the store failed: {e}"));
    assert_eq!(list(&store).await, [s]);
    store.close().await.unwrap_or_else(|e| panic!("close: {e}"));
    Verdict::Passed
}

conformance_test!(suspensions,
    /// A queue holds back the jobs of a suspended task while it runs the
    /// others of the same tag, and runs them once resumed.
    queue_holds_back_a_suspended_task_until_resumed => holds
);

async fn holds<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    for task in ["held", "probe"] {
        queue
            .define(task)
            .tag("conformance")
            .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
            .unwrap_or_else(|e| panic!("define: {e}"));
    }
    queue
        .process(["conformance"])
        .start()
        .unwrap_or_else(|e| panic!("process: {e}"));
    queue
        .suspend("held")
        .await
        .unwrap_or_else(|e| panic!("suspend: {e}"));
    let held = queue
        .create("held", ())
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    // Created after it, on the same tag: it runs, the held job stays.
    let probe = queue
        .create("probe", ())
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(outcome(&probe).await.status, JobStatus::Completed);
    let stored = queue
        .job(held.id())
        .await
        .unwrap_or_else(|e| panic!("job: {e}"));
    assert_eq!(
        stored.status,
        JobStatus::Ready,
        "a suspended task's job waits"
    );
    let stats = queue.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
    assert!(stats.suspension_of("held", Some("conformance")).is_some());
    queue
        .resume("held")
        .await
        .unwrap_or_else(|e| panic!("resume: {e}"));
    assert_eq!(outcome(&held).await.status, JobStatus::Completed);
    assert!(queue
        .stats()
        .await
        .unwrap_or_else(|e| panic!("stats: {e}"))
        .suspended
        .is_empty());
    let _ = queue.shutdown(std::time::Duration::from_secs(5)).await;
    Verdict::Passed
}
