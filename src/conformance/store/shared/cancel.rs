//! Shared stores, cancels: an unheld job is cancelled at once; a held
//! one's cancel is requested, reported at its owner's heartbeat, and
//! ends the job when the lease lapses.

use uuid::Uuid;

use super::{cancel, claim, due, heartbeat, held_as, rescue};
use crate::conformance::fixtures::{get, in_status, insert, now, record, secs};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{JobId, JobStatus};
use crate::store::{CancelOutcome, HeartbeatReply};

conformance_test!(store,
    /// Cancelling a pending job no owner holds cancels it at once, as of
    /// the `now` given; cancelling a final job says which state it is in;
    /// cancelling an unknown id says so.
    a_cancel_of_an_unheld_job_cancels_it_at_once => cancel_unheld
);

async fn cancel_unheld<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let x = due("x", 0, secs(t, -10));
    let done = in_status(due("x", 1, secs(t, -10)), JobStatus::Completed);
    insert(&store, &[x.clone(), done.clone()]).await;
    assert_eq!(
        cancel(shared, x.id, secs(t, 1)).await,
        CancelOutcome::Cancelled
    );
    let stored = get(&store, x.id).await;
    assert_eq!(stored.status, JobStatus::Cancelled, "a cancelled job");
    // The time it finished is the `now` passed in (what the PostgreSQL
    // store records; the trait takes `now` for it).
    assert_eq!(
        stored.finished_at,
        Some(secs(t, 1)),
        "finished when cancelled"
    );
    let got = claim(shared, Uuid::new_v4(), &["x"], t, 10, secs(t, 30)).await;
    assert!(got.is_empty(), "a cancelled job was claimed: {got:?}");
    assert_eq!(
        cancel(shared, x.id, secs(t, 2)).await,
        CancelOutcome::Final(JobStatus::Cancelled),
        "cancelled twice"
    );
    assert_eq!(
        cancel(shared, done.id, secs(t, 2)).await,
        CancelOutcome::Final(JobStatus::Completed),
        "a completed job"
    );
    assert_eq!(
        get(&store, done.id).await.status,
        JobStatus::Completed,
        "a final job stays as it was"
    );
    assert_eq!(
        cancel(shared, JobId::new(), secs(t, 2)).await,
        CancelOutcome::Unknown,
        "an unknown id"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// Cancelling a job another process holds only asks: the job stays as
    /// it is, leased, and its owner's next heartbeat reports the request.
    a_cancel_of_a_held_job_is_requested_and_reported_at_the_owners_heartbeat => cancel_held
);

async fn cancel_held<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let a = Uuid::new_v4();
    let x = due("x", 0, secs(t, -10));
    let y = due("x", 1, secs(t, -10));
    insert(&store, &[x.clone(), y.clone()]).await;
    claim(shared, a, &["x"], t, 10, secs(t, 30)).await;
    assert_eq!(
        cancel(shared, x.id, secs(t, 1)).await,
        CancelOutcome::Requested
    );
    let stored = get(&store, x.id).await;
    assert!(
        held_as(stored.status, JobStatus::Ready),
        "not cancelled yet: {:?}",
        stored.status
    );
    assert_eq!(stored.finished_at, None, "not finished yet");
    let reply = heartbeat(shared, a, &[x.id, y.id], secs(t, 60)).await;
    assert_eq!(
        reply,
        HeartbeatReply {
            cancel_requested: vec![x.id],
            lost: Vec::new(),
        },
        "the owner's heartbeat"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// A job whose cancel was requested, and whose owner then stopped
    /// renewing its lease, ends cancelled at the rescue instead of going
    /// back to the queue. The trait's docs leave this open (the owner is
    /// to cancel it at its next heartbeat): this pins what the PostgreSQL
    /// store does, so that a cancel is not lost with its owner.
    a_requested_cancel_ends_the_job_when_its_lease_lapses => cancel_lapsed
);

async fn cancel_lapsed<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let me = shared.owner();
    let x = due("x", 0, secs(t, -10));
    insert(&store, std::slice::from_ref(&x)).await;
    claim(shared, me, &["x"], t, 1, secs(t, 30)).await;
    let mut running = x.clone();
    running.status = JobStatus::Running;
    running.attempts = 1;
    record(&store, &mut running, Vec::new()).await;
    assert_eq!(
        cancel(shared, x.id, secs(t, 1)).await,
        CancelOutcome::Requested
    );
    assert_eq!(rescue(shared, secs(t, 31)).await, 1, "the lapsed lease");
    let stored = get(&store, x.id).await;
    assert_eq!(stored.status, JobStatus::Cancelled, "cancelled at rescue");
    assert!(stored.finished_at.is_some(), "a cancelled job is finished");
    let got = claim(shared, Uuid::new_v4(), &["x"], secs(t, 31), 1, secs(t, 60)).await;
    assert!(got.is_empty(), "a cancelled job was claimed: {got:?}");
    Verdict::Passed
}
