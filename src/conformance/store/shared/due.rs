//! Shared stores, time: expiry ends only unheld pending jobs past their
//! time; the next due time is the earliest unheld job's; a new job
//! brings a wake-up.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use uuid::Uuid;

use super::{assert_claimed, claim, delayed, due, held_as};
use crate::conformance::fixtures::{get, in_status, insert, now, secs};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{JobId, JobStatus};

conformance_test!(store,
    /// Expiry ends the pending jobs no owner holds whose `expires_at` is at
    /// or before `now`: those named, or all of them when none is named;
    /// never a held job, a final one, or one not yet expired.
    expiry_ends_only_unheld_pending_jobs_past_their_time => expire
);

async fn expire<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let expiring = |n: u32, at: i64| {
        let mut j = due("x", n, secs(t, -10));
        j.expires_at = Some(secs(t, at));
        j
    };
    let named = expiring(0, 10);
    let swept = expiring(1, 10);
    let later = expiring(2, 100);
    let mut held = expiring(3, 10);
    held.task = "held".into();
    let mut done = in_status(expiring(4, 10), JobStatus::Completed);
    done.finished_at = Some(t);
    let forever = due("x", 5, secs(t, -10));
    let jobs = [
        named.clone(),
        swept.clone(),
        later.clone(),
        held.clone(),
        done.clone(),
        forever.clone(),
    ];
    insert(&store, &jobs).await;
    claim(shared, Uuid::new_v4(), &["held"], t, 1, secs(t, 3600)).await;
    let expire = |now: DateTime<Utc>, ids: Vec<JobId>| async move {
        shared
            .jobs_expire(now, &ids)
            .await
            .unwrap_or_else(|e| panic!("jobs_expire({now}, {ids:?}) failed: {e}"))
    };

    assert_eq!(
        expire(secs(t, 9), Vec::new()).await,
        0,
        "nothing expired yet"
    );
    assert_eq!(
        expire(secs(t, 10), vec![named.id, later.id]).await,
        1,
        "of the named, only the one expiring at `now`"
    );
    let stored = get(&store, named.id).await;
    assert_eq!(stored.status, JobStatus::Expired, "the named job");
    // The time it finished is the `now` passed in, as the PostgreSQL store
    // records it.
    assert_eq!(
        stored.finished_at,
        Some(secs(t, 10)),
        "finished when expired"
    );
    assert_eq!(
        get(&store, swept.id).await.status,
        JobStatus::Ready,
        "a job not named is left"
    );
    assert_eq!(
        expire(secs(t, 10), Vec::new()).await,
        1,
        "the sweep: the one job left past its time, not the held one"
    );
    assert_eq!(get(&store, swept.id).await.status, JobStatus::Expired);
    for (j, status) in [
        (&later, JobStatus::Ready),
        (&done, JobStatus::Completed),
        (&forever, JobStatus::Ready),
    ] {
        assert_eq!(
            get(&store, j.id).await.status,
            status,
            "job {:?}",
            j.payload
        );
    }
    let held_now = get(&store, held.id).await.status;
    assert!(
        held_as(held_now, JobStatus::Ready),
        "the held job: {held_now:?}"
    );
    assert_eq!(
        expire(secs(t, 10), Vec::new()).await,
        0,
        "an expired job is expired once"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// The next due time is that of the earliest pending job no owner
    /// holds among the tasks asked for; `None` when there is none. (The
    /// PostgreSQL store leaves out jobs due as soon as created, whose
    /// insert's wake-up brings the claim: the test uses delayed jobs.)
    the_next_due_time_is_the_earliest_of_the_unheld_jobs_of_the_tasks => next_due
);

async fn next_due<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let a_late = delayed("a", 0, t, secs(t, 30));
    let a_held = delayed("a", 1, t, secs(t, 20));
    let mut a_done = in_status(delayed("a", 2, t, secs(t, 5)), JobStatus::Completed);
    a_done.finished_at = Some(t);
    let b_soon = delayed("b", 3, t, secs(t, 10));
    insert(
        &store,
        &[
            a_late.clone(),
            a_held.clone(),
            a_done.clone(),
            b_soon.clone(),
        ],
    )
    .await;
    let next = |tasks: &'static [&'static str]| async move {
        let tasks: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
        shared
            .jobs_next_due(&tasks)
            .await
            .unwrap_or_else(|e| panic!("jobs_next_due({tasks:?}) failed: {e}"))
    };
    assert_eq!(next(&["a"]).await, Some(secs(t, 20)), "task a, none held");
    let got = claim(shared, Uuid::new_v4(), &["a"], secs(t, 20), 1, secs(t, 60)).await;
    assert_claimed(&got, &[&a_held], "the claim of a's first job");
    assert_eq!(
        next(&["a"]).await,
        Some(secs(t, 30)),
        "task a: the held job and the completed one are left out"
    );
    assert_eq!(next(&["a", "b"]).await, Some(secs(t, 10)), "tasks a and b");
    assert_eq!(next(&["c"]).await, None, "a task without jobs");
    assert_eq!(next(&[]).await, None, "no task");
    Verdict::Passed
}

conformance_test!(store,
    /// A new job brings a wake-up to whoever listens. Lost wake-ups are
    /// allowed (polling covers them), and a listener may take a moment to
    /// start: the test stores a job until a wake-up comes, and fails when
    /// none has come after a hundred jobs and ten seconds.
    a_new_job_brings_a_wakeup => wakeup
);

async fn wakeup<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let mut wakeups = shared.wakeups();
    for n in 0..100 {
        insert(&store, &[due("x", n, t)]).await;
        if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), wakeups.next()).await {
            assert!(item.is_some(), "the wake-up stream ended");
            return Verdict::Passed;
        }
    }
    panic!("a hundred new jobs brought no wake-up");
}
