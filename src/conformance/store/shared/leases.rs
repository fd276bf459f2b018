//! Shared stores, leases: a claimed job is leased to its owner; the
//! owner's heartbeat renews the lease (another owner's changes nothing,
//! a lost job is reported); a lapsed lease is rescued back to ready; a
//! job released by its owner is claimable again.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{assert_claimed, claim, due, heartbeat, id_set, release, rescue};
use crate::conformance::fixtures::{
    assert_same_job, get, in_status, insert, line, now, record, secs,
};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{JobId, JobStatus};
use crate::store::{HeartbeatReply, JobDelete};

conformance_test!(store,
    /// A claimed job is leased to its owner until the lease ends: before
    /// then a rescue leaves it and no other owner can claim it; after, a
    /// rescue returns it and another owner claims it, and the first owner's
    /// heartbeat reports it lost.
    a_claimed_job_is_leased_to_its_owner_until_the_lease_ends => lease_holds
);

async fn lease_holds<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let x = due("x", 0, secs(t, -10));
    insert(&store, std::slice::from_ref(&x)).await;
    let got = claim(shared, a, &["x"], t, 1, secs(t, 30)).await;
    assert_claimed(&got, &[&x], "owner a's claim");

    // The instant the lease ends is left open by the trait: the test asks
    // a second before and a second after.
    assert_eq!(
        rescue(shared, secs(t, 29)).await,
        0,
        "a rescue before the lease ends"
    );
    let got = claim(shared, b, &["x"], secs(t, 29), 1, secs(t, 60)).await;
    assert!(got.is_empty(), "owner b took a held lease: {got:?}");
    let mut leased = x.clone();
    leased.ran_by = Some(a);
    let stored = get(&store, x.id).await;
    if stored.status == JobStatus::Running {
        // A store may count the attempt at the claim (see
        // `SharedStore::jobs_claim`): the job reads as started.
        leased.status = JobStatus::Running;
        leased.attempts += 1;
    }
    assert_same_job(&stored, &leased, "a leased job, before the lease ends");

    assert_eq!(
        rescue(shared, secs(t, 31)).await,
        1,
        "a rescue after the lease ended"
    );
    let got = claim(shared, b, &["x"], secs(t, 31), 1, secs(t, 60)).await;
    assert_claimed(&got, &[&x], "owner b's claim once a's lease lapsed");
    let reply = heartbeat(shared, a, &[x.id], secs(t, 90)).await;
    assert_eq!(
        reply.lost,
        vec![x.id],
        "owner a's heartbeat after its lease lapsed"
    );
    let reply = heartbeat(shared, b, &[x.id], secs(t, 90)).await;
    assert_eq!(
        reply,
        HeartbeatReply::default(),
        "owner b's heartbeat of its lease"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// An owner's heartbeat moves its lease's end: a rescue before the new
    /// end leaves the job, one after returns it.
    a_heartbeat_extends_the_lease_of_its_owner => heartbeat_extends
);

async fn heartbeat_extends<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let a = Uuid::new_v4();
    let x = due("x", 0, secs(t, -10));
    insert(&store, std::slice::from_ref(&x)).await;
    claim(shared, a, &["x"], t, 1, secs(t, 30)).await;
    let reply = heartbeat(shared, a, &[x.id], secs(t, 300)).await;
    assert_eq!(
        reply,
        HeartbeatReply::default(),
        "a heartbeat of a held lease: nothing lost, no cancel"
    );
    assert_eq!(
        rescue(shared, secs(t, 31)).await,
        0,
        "past the first lease's end, within the renewed one"
    );
    assert_eq!(
        rescue(shared, secs(t, 299)).await,
        0,
        "just before the renewed lease ends"
    );
    let got = claim(
        shared,
        Uuid::new_v4(),
        &["x"],
        secs(t, 299),
        1,
        secs(t, 600),
    )
    .await;
    assert!(
        got.is_empty(),
        "another owner took a renewed lease: {got:?}"
    );
    assert_eq!(
        rescue(shared, secs(t, 301)).await,
        1,
        "after the renewed lease ended"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// A heartbeat from an owner that does not hold the job changes
    /// nothing: the lease keeps its owner and its end, and the heartbeat
    /// reports the job lost to the one who sent it.
    a_heartbeat_from_another_owner_changes_nothing => heartbeat_foreign
);

async fn heartbeat_foreign<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let x = due("x", 0, secs(t, -10));
    insert(&store, std::slice::from_ref(&x)).await;
    claim(shared, a, &["x"], t, 1, secs(t, 30)).await;
    let reply = heartbeat(shared, b, &[x.id], secs(t, 300)).await;
    assert_eq!(
        reply.lost,
        vec![x.id],
        "a heartbeat of a lease another owner holds"
    );
    assert!(
        reply.cancel_requested.is_empty(),
        "no cancel was asked: {reply:?}"
    );
    let reply = heartbeat(shared, a, &[x.id], secs(t, 30)).await;
    assert_eq!(
        reply,
        HeartbeatReply::default(),
        "owner a still holds its lease"
    );
    assert_eq!(
        rescue(shared, secs(t, 31)).await,
        1,
        "the lease ends when owner a set it, not when b asked"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// A heartbeat reports as lost the jobs its owner no longer holds:
    /// one whose lease lapsed and was rescued, one removed from the store,
    /// one unknown; it renews the others.
    a_heartbeat_reports_as_lost_the_jobs_its_owner_no_longer_holds => heartbeat_lost
);

async fn heartbeat_lost<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    // This process's own owner id: the store records its own updates.
    let me = shared.owner();
    let kept = due("kept", 0, secs(t, -10));
    let lapsed = due("lapsed", 1, secs(t, -10));
    let removed = due("removed", 2, secs(t, -10));
    insert(&store, &[kept.clone(), lapsed.clone(), removed.clone()]).await;
    claim(shared, me, &["kept", "removed"], t, 10, secs(t, 300)).await;
    claim(shared, me, &["lapsed"], t, 10, secs(t, 30)).await;
    let mut done = in_status(removed.clone(), JobStatus::Completed);
    done.finished_at = Some(t);
    record(&store, &mut done, Vec::new()).await;
    let deleted = store
        .jobs_delete(&JobDelete {
            statuses: vec![JobStatus::Completed],
            tasks: Vec::new(),
            finished_before: None,
            limit: None,
        })
        .await
        .unwrap_or_else(|e| panic!("jobs_delete failed: {e}"));
    assert_eq!(deleted, 1, "the completed job is removed");
    assert_eq!(rescue(shared, secs(t, 31)).await, 1, "the lapsed lease");

    let unknown = JobId::new();
    let reply = heartbeat(
        shared,
        me,
        &[kept.id, lapsed.id, removed.id, unknown],
        secs(t, 600),
    )
    .await;
    let lost: BTreeSet<JobId> = reply.lost.iter().copied().collect();
    assert_eq!(
        lost,
        BTreeSet::from([lapsed.id, removed.id, unknown]),
        "the jobs lost: rescued, removed, unknown"
    );
    assert_eq!(reply.lost.len(), 3, "each lost job once: {reply:?}");
    assert!(reply.cancel_requested.is_empty(), "{reply:?}");
    assert_eq!(
        rescue(shared, secs(t, 301)).await,
        0,
        "the held job's lease was renewed"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// A running job whose lease lapsed is rescued to ready with the
    /// attempt it was running counted (not undone, not counted twice), once,
    /// and any owner can claim it again.
    a_lapsed_lease_of_a_running_job_is_rescued_to_ready_with_its_attempt_counted => rescue_running
);

async fn rescue_running<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let me = shared.owner();
    let x = due("x", 0, secs(t, -10));
    // On its last attempt: the trait documents no burying at rescue, and
    // the PostgreSQL store returns such a job to ready like any other.
    let mut last = due("x", 1, secs(t, -10));
    last.max_attempts = Some(2);
    last.attempts = 1;
    insert(&store, &[x.clone(), last.clone()]).await;
    let got = claim(shared, me, &["x"], t, 10, secs(t, 30)).await;
    assert_claimed(&got, &[&x, &last], "this process's claim");
    // Each starts, as the scheduler records a start: running, its
    // attempt counted, and its `started` line.
    let mut running = x.clone();
    running.status = JobStatus::Running;
    running.attempts = 1;
    record(&store, &mut running, vec![line("started", 1, t, None)]).await;
    let mut running_last = last.clone();
    running_last.status = JobStatus::Running;
    running_last.attempts = 2;
    record(&store, &mut running_last, vec![line("started", 2, t, None)]).await;
    assert_eq!(
        get(&store, x.id).await.status,
        JobStatus::Running,
        "the owner records its own job's start"
    );

    assert_eq!(rescue(shared, secs(t, 31)).await, 2, "both lapsed leases");
    for (j, attempts) in [(&x, 1), (&last, 2)] {
        let stored = get(&store, j.id).await;
        assert_eq!(stored.status, JobStatus::Ready, "a rescued running job");
        assert_eq!(
            stored.attempts, attempts,
            "a rescued job keeps the attempt it was running"
        );
        assert_eq!(stored.finished_at, None, "a rescued job is not finished");
    }
    assert_eq!(
        rescue(shared, secs(t, 32)).await,
        0,
        "a rescued job is rescued once"
    );
    let got = claim(shared, Uuid::new_v4(), &["x"], secs(t, 32), 10, secs(t, 60)).await;
    assert_eq!(
        id_set(&got),
        BTreeSet::from([x.id, last.id]),
        "another owner claims the rescued jobs"
    );
    for j in &got {
        assert_eq!(j.status, JobStatus::Ready, "claimed as rescued");
        let attempts = if j.id == last.id { 2 } else { 1 };
        assert_eq!(j.attempts, attempts, "claimed with its attempts");
    }
    Verdict::Passed
}

conformance_test!(store,
    /// A job stored as running that no owner holds (its process was cut off
    /// outside any lease) is rescued to ready with its attempt counted.
    /// The trait's docs speak only of lapsed leases: this pins what the
    /// PostgreSQL store does.
    a_running_job_held_by_no_owner_is_rescued_to_ready => rescue_unheld
);

async fn rescue_unheld<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let mut cut_off = in_status(due("x", 0, secs(t, -10)), JobStatus::Running);
    cut_off.attempts = 3;
    insert(&store, std::slice::from_ref(&cut_off)).await;
    let got = claim(shared, Uuid::new_v4(), &["x"], t, 10, secs(t, 30)).await;
    assert!(got.is_empty(), "a claim took a running job: {got:?}");
    assert_eq!(rescue(shared, t).await, 1, "the running job nobody holds");
    let stored = get(&store, cut_off.id).await;
    assert_eq!(stored.status, JobStatus::Ready);
    assert_eq!(stored.attempts, 3, "the cut-off attempt counts");
    let got = claim(shared, Uuid::new_v4(), &["x"], t, 10, secs(t, 30)).await;
    assert_eq!(id_set(&got), BTreeSet::from([cut_off.id]), "claimed again");
    Verdict::Passed
}

conformance_test!(store,
    /// A claimed job whose owner died before starting it (no start
    /// recorded) is rescued as it was before the claim: its attempt not
    /// counted, whatever the claim counted in the store, and its log
    /// saying it never started.
    a_lapsed_lease_of_a_job_never_started_does_not_count_an_attempt => rescue_unstarted
);

async fn rescue_unstarted<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let mut x = due("x", 0, secs(t, -10));
    x.attempts = 1;
    x.max_attempts = Some(2);
    insert(&store, std::slice::from_ref(&x)).await;
    let got = claim(shared, Uuid::new_v4(), &["x"], t, 1, secs(t, 30)).await;
    assert_claimed(&got, &[&x], "the claim");
    assert_eq!(rescue(shared, secs(t, 31)).await, 1, "the lapsed lease");
    let stored = get(&store, x.id).await;
    assert_eq!(
        (stored.status, stored.attempts, stored.last_error.as_deref()),
        (JobStatus::Ready, 1, None),
        "rescued as it was before the claim"
    );
    assert!(
        stored
            .logs
            .iter()
            .any(|l| l.message.contains("before it started")),
        "the log says it never started: {:?}",
        stored.logs
    );
    let got = claim(shared, Uuid::new_v4(), &["x"], secs(t, 31), 1, secs(t, 60)).await;
    assert_claimed(&got, &[&x], "claimed again, its last attempt still to make");
    Verdict::Passed
}

conformance_test!(store,
    /// A job its owner gives back is claimable again at once, by any
    /// owner, in the state the owner stored (here a retry, its attempt
    /// counted).
    a_released_job_can_be_claimed_again_in_its_stored_state => release_returns
);

async fn release_returns<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let me = shared.owner();
    let x = due("x", 0, secs(t, -10));
    insert(&store, std::slice::from_ref(&x)).await;
    claim(shared, me, &["x"], t, 1, secs(t, 30)).await;
    let mut retrying = x.clone();
    retrying.status = JobStatus::Retrying;
    retrying.attempts = 1;
    retrying.last_error = Some("flaky".into());
    retrying.run_at = secs(t, -1);
    record(&store, &mut retrying, Vec::new()).await;
    release(shared, me, &[x.id]).await;
    let got = claim(shared, Uuid::new_v4(), &["x"], t, 1, secs(t, 30)).await;
    assert_claimed(&got, &[&retrying], "a claim after the release");
    assert_eq!(
        rescue(shared, secs(t, 29)).await,
        0,
        "the new lease holds; the released one left nothing behind"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// Giving back a job one does not hold changes nothing: it stays
    /// leased to its owner.
    a_release_by_another_owner_changes_nothing => release_foreign
);

async fn release_foreign<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let x = due("x", 0, secs(t, -10));
    insert(&store, std::slice::from_ref(&x)).await;
    claim(shared, a, &["x"], t, 1, secs(t, 30)).await;
    release(shared, b, &[x.id]).await;
    let got = claim(shared, b, &["x"], t, 1, secs(t, 30)).await;
    assert!(
        got.is_empty(),
        "a job released by a non-owner was claimed: {got:?}"
    );
    assert_eq!(
        heartbeat(shared, a, &[x.id], secs(t, 30)).await,
        HeartbeatReply::default(),
        "owner a still holds it"
    );
    Verdict::Passed
}
