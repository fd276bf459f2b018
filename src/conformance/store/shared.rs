//! Shared stores: the [`SharedStore`] capability, for a store many
//! processes use at once. Claims take due jobs of the tasks asked for,
//! best first, never one another owner holds, never more than asked; a
//! claim is a lease its owner renews by heartbeat; a lease that lapsed is
//! rescued back to the queue; a job given back is claimable again;
//! cancels, expiry and the next due time respect leases.
//!
//! These tests run only on a store whose
//! [`Store::shared`](crate::store::Store::shared) is `Some`; on any other
//! they return [`Verdict::Skipped`]. Every time is passed in (`due_by`,
//! `lease_until`, the `now` of a rescue): no test waits for a lease to
//! lapse, it asks the store to rescue as of a later time.
//!
//! Where the [`SharedStore`] docs leave a detail open, a test pins what
//! kessel's PostgreSQL store does and says so.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::conformance::fixtures::{
    assert_same_job, fresh, get, in_status, insert, job_at, now, record, secs,
};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{Job, JobId, JobStatus};
use crate::store::{CancelOutcome, HeartbeatReply, JobClaim, JobDelete, JobHeartbeat, SharedStore};

/// Why the tests of this section skip a store.
const NOT_SHARED: &str = "the store is not shared (Store::shared is None)";

/// Opens a fresh store and binds its shared capability to `$shared`, or
/// returns [`Verdict::Skipped`] for a store without one.
macro_rules! shared_store {
    ($factory:expr => $store:ident, $shared:ident) => {
        let ($store, _place) = fresh(&$factory).await;
        let Some($shared) = $store.shared() else {
            return Verdict::Skipped(NOT_SHARED);
        };
    };
}

/// A job of `task` due at `at` (created then, so ready).
fn due(task: &str, n: u32, at: DateTime<Utc>) -> Job {
    job_at(task, json!(n), at)
}

/// A job of `task` created at `created`, scheduled for `run_at`.
fn delayed(task: &str, n: u32, created: DateTime<Utc>, run_at: DateTime<Utc>) -> Job {
    let mut job = job_at(task, json!(n), created);
    job.status = JobStatus::Scheduled;
    job.run_at = run_at;
    job
}

/// Claims for `owner`, or fails the test saying why.
async fn claim(
    shared: &dyn SharedStore,
    owner: Uuid,
    tasks: &[&str],
    due_by: DateTime<Utc>,
    limit: usize,
    lease_until: DateTime<Utc>,
) -> Vec<Job> {
    let params = JobClaim {
        owner,
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
        due_by,
        limit,
        lease_until,
        running_limits: Vec::new(),
        group_running_limits: Vec::new(),
        ended: Vec::new(),
        group_weights: Vec::new(),
        rate_limits: Vec::new(),
        group_rate_limits: Vec::new(),
        tag_limits: Vec::new(),
        now: due_by,
    };
    shared
        .jobs_claim(&params)
        .await
        .unwrap_or_else(|e| panic!("jobs_claim({params:?}) failed: {e}"))
}

/// Renews `owner`'s leases of `ids`, or fails the test saying why.
async fn heartbeat(
    shared: &dyn SharedStore,
    owner: Uuid,
    ids: &[JobId],
    lease_until: DateTime<Utc>,
) -> HeartbeatReply {
    let params = JobHeartbeat {
        owner,
        ids: ids.to_vec(),
        lease_until,
    };
    shared
        .jobs_heartbeat(&params)
        .await
        .unwrap_or_else(|e| panic!("jobs_heartbeat({params:?}) failed: {e}"))
}

/// Rescues the leases lapsed before `now`, or fails the test saying why.
async fn rescue(shared: &dyn SharedStore, now: DateTime<Utc>) -> u64 {
    shared
        .jobs_rescue(now)
        .await
        .unwrap_or_else(|e| panic!("jobs_rescue({now}) failed: {e}"))
}

/// Gives `ids` back for `owner`, or fails the test saying why.
async fn release(shared: &dyn SharedStore, owner: Uuid, ids: &[JobId]) {
    shared
        .jobs_release(owner, ids)
        .await
        .unwrap_or_else(|e| panic!("jobs_release({owner}, {ids:?}) failed: {e}"))
}

/// Cancels `id` as of `now`, or fails the test saying why.
async fn cancel(shared: &dyn SharedStore, id: JobId, now: DateTime<Utc>) -> CancelOutcome {
    shared
        .job_cancel(id, now)
        .await
        .unwrap_or_else(|e| panic!("job_cancel({id}) failed: {e}"))
}

/// The ids of `jobs`, as a set.
fn id_set<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> BTreeSet<JobId> {
    jobs.into_iter().map(|j| j.id).collect()
}

/// Checks that `claimed` are exactly `want`, each handed over as stored.
/// A claim hands over a job's state; its log is not part of the contract
/// (the PostgreSQL store leaves it out), so logs are not compared.
#[track_caller]
fn assert_claimed(claimed: &[Job], want: &[&Job], context: &str) {
    assert_eq!(
        id_set(claimed),
        id_set(want.iter().copied()),
        "{context}: the jobs claimed"
    );
    for w in want {
        let mut got = claimed
            .iter()
            .find(|c| c.id == w.id)
            .expect("checked above")
            .clone();
        let mut w = (*w).clone();
        got.logs.clear();
        w.logs.clear();
        // Which node: pinned by its own test (`ran_by`).
        assert!(
            got.ran_by.is_some(),
            "{context}: a claimed job names its node"
        );
        got.ran_by = None;
        w.ran_by = None;
        assert_same_job(&got, &w, context);
    }
}

conformance_test!(store,
    /// A claim records which node took the job ([`Job::ran_by`]); the job
    /// keeps naming it once the lease ends, and a later claim by another
    /// node names that one.
    a_job_names_the_node_that_took_its_latest_attempt => ran_by
);

async fn ran_by<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let job = due("a", 1, secs(t, -10));
    insert(&store, std::slice::from_ref(&job)).await;
    let stored = |store: std::sync::Arc<dyn crate::store::Store>| async move {
        store
            .job_get(job.id)
            .await
            .unwrap_or_else(|e| panic!("job_get failed: {e}"))
            .unwrap_or_else(|| panic!("job {} is not stored", job.id))
    };
    assert_eq!(
        stored(store.clone()).await.ran_by,
        None,
        "nobody took it yet"
    );
    let got = claim(shared, first, &["a"], t, 1, secs(t, 30)).await;
    assert_eq!(got.len(), 1, "the job is claimed");
    assert_eq!(
        got[0].ran_by,
        Some(first),
        "the claim's copy names its node"
    );
    assert_eq!(stored(store.clone()).await.ran_by, Some(first));
    release(shared, first, &[job.id]).await;
    assert_eq!(
        stored(store.clone()).await.ran_by,
        Some(first),
        "kept when the lease ends"
    );
    let got = claim(shared, second, &["a"], t, 1, secs(t, 30)).await;
    assert_eq!(got.len(), 1, "claimed again");
    assert_eq!(
        stored(store.clone()).await.ran_by,
        Some(second),
        "the node of the latest attempt"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// A claim takes the due jobs (`run_at` at or before `due_by`) of the
    /// tasks it names and of no other task; a claim naming no task takes
    /// nothing.
    a_claim_takes_due_jobs_of_the_given_tasks_only => claim_tasks
);

async fn claim_tasks<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let owner = Uuid::new_v4();
    let a_due = due("a", 1, secs(t, -10));
    let a_at_cut = delayed("a", 2, secs(t, -10), t);
    let a_later = delayed("a", 3, secs(t, -10), secs(t, 1));
    let b_due = due("b", 4, secs(t, -10));
    let c_due = due("c", 5, secs(t, -10));
    let jobs = [
        a_due.clone(),
        a_at_cut.clone(),
        a_later.clone(),
        b_due.clone(),
        c_due.clone(),
    ];
    insert(&store, &jobs).await;

    let none = claim(shared, owner, &[], secs(t, 3600), 10, secs(t, 30)).await;
    assert!(none.is_empty(), "a claim of no task took {none:?}");
    let unknown = claim(shared, owner, &["d"], secs(t, 3600), 10, secs(t, 30)).await;
    assert!(
        unknown.is_empty(),
        "a claim of a task without jobs took {unknown:?}"
    );
    let got = claim(shared, owner, &["a", "c"], t, 10, secs(t, 30)).await;
    assert_claimed(
        &got,
        &[&a_due, &a_at_cut, &c_due],
        "a claim of tasks a and c, due by now (one due exactly now)",
    );
    let got = claim(shared, owner, &["a", "c"], t, 10, secs(t, 30)).await;
    assert!(
        got.is_empty(),
        "the job due a second later is not due yet: {got:?}"
    );
    let got = claim(shared, owner, &["a"], secs(t, 1), 10, secs(t, 30)).await;
    assert_claimed(&got, &[&a_later], "task a, due by a second later");
    let got = claim(shared, owner, &["b"], t, 10, secs(t, 30)).await;
    assert_claimed(&got, &[&b_due], "task b");
    Verdict::Passed
}

conformance_test!(store,
    /// A claim takes the best jobs first: the lowest priority number, then
    /// the earliest due, then the earliest created.
    a_claim_takes_the_best_jobs_first_by_priority_then_due_time_then_creation => claim_order
);

async fn claim_order<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    // Built in order of creation, so their ids follow it too.
    let with = |n: u32, created: i64, run_at: i64, priority: u32| {
        let mut j = due("t", n, secs(t, created));
        j.run_at = secs(t, run_at);
        j.priority = priority;
        j
    };
    let low_earliest = with(1, -200, -200, 5);
    let first_late = with(2, -100, -10, 1);
    let second_late = with(3, -90, -10, 1);
    let early = with(4, -20, -20, 1);
    let high = with(5, -5, -5, 0);
    // Best first: priority 0; then priority 1 by due time (early, then the
    // two due at -10 s by creation); then priority 5, though due first.
    let want = [&high, &early, &first_late, &second_late, &low_earliest];
    let mut stored: Vec<Job> = want.iter().map(|j| (*j).clone()).collect();
    stored.reverse();
    insert(&store, &stored).await;

    let mut order = Vec::new();
    for n in 0..want.len() {
        let got = claim(shared, Uuid::new_v4(), &["t"], t, 1, secs(t, 30)).await;
        assert_eq!(got.len(), 1, "claim {n} of one job took {got:?}");
        order.push(got[0].id);
    }
    let want_ids: Vec<JobId> = want.iter().map(|j| j.id).collect();
    assert_eq!(
        order, want_ids,
        "one job per claim: priority, then due time, then creation"
    );
    let got = claim(shared, Uuid::new_v4(), &["t"], t, 1, secs(t, 30)).await;
    assert!(got.is_empty(), "every job is claimed: {got:?}");
    Verdict::Passed
}

conformance_test!(store,
    /// A claim takes at most its limit (none for a limit of 0), the best
    /// of the due jobs, and successive claims take the rest without
    /// taking a job twice.
    a_claim_never_takes_more_jobs_than_asked => claim_limit
);

async fn claim_limit<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let jobs: Vec<Job> = (0..5).map(|n| due("t", n, secs(t, -10))).collect();
    insert(&store, &jobs).await;
    let owner = Uuid::new_v4();
    let got = claim(shared, owner, &["t"], t, 0, secs(t, 30)).await;
    assert!(got.is_empty(), "a claim of 0 jobs took {got:?}");
    let first = claim(shared, owner, &["t"], t, 2, secs(t, 30)).await;
    assert_claimed(
        &first,
        &[&jobs[0], &jobs[1]],
        "a claim of 2: the two created first",
    );
    let second = claim(shared, owner, &["t"], t, 2, secs(t, 30)).await;
    assert_claimed(&second, &[&jobs[2], &jobs[3]], "the next claim of 2");
    let third = claim(shared, owner, &["t"], t, 10, secs(t, 30)).await;
    assert_claimed(&third, &[&jobs[4]], "a claim of 10 with one job left");
    let fourth = claim(shared, owner, &["t"], t, 10, secs(t, 30)).await;
    assert!(fourth.is_empty(), "nothing left to claim: {fourth:?}");
    Verdict::Passed
}

conformance_test!(store,
    /// A job leased to one owner is never claimed again while its lease
    /// holds, by another owner or by the same one; and two owners claiming
    /// at once never take the same job.
    a_claim_never_takes_a_job_another_owner_leases => claim_exclusive
);

async fn claim_exclusive<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let x = due("x", 0, secs(t, -10));
    insert(&store, std::slice::from_ref(&x)).await;
    let got = claim(shared, a, &["x"], t, 10, secs(t, 30)).await;
    assert_claimed(&got, &[&x], "owner a's claim");
    let got = claim(shared, b, &["x"], secs(t, 3600), 10, secs(t, 3630)).await;
    assert!(got.is_empty(), "owner b took a job a leases: {got:?}");
    let got = claim(shared, a, &["x"], secs(t, 3600), 10, secs(t, 3630)).await;
    assert!(got.is_empty(), "owner a took its leased job again: {got:?}");

    const N: u32 = 40;
    let many: Vec<Job> = (0..N).map(|n| due("many", n, secs(t, -10))).collect();
    insert(&store, &many).await;
    let (mine, theirs) = futures::join!(
        claim(shared, a, &["many"], t, N as usize, secs(t, 30)),
        claim(shared, b, &["many"], t, N as usize, secs(t, 30)),
    );
    let (mine, theirs) = (id_set(&mine), id_set(&theirs));
    assert!(
        mine.is_disjoint(&theirs),
        "two claims at once took the same jobs: {:?}",
        mine.intersection(&theirs).collect::<Vec<_>>()
    );
    let rest = claim(shared, b, &["many"], t, N as usize, secs(t, 30)).await;
    let all: BTreeSet<JobId> = mine
        .iter()
        .chain(&theirs)
        .copied()
        .chain(rest.iter().map(|j| j.id))
        .collect();
    assert_eq!(
        all,
        id_set(&many),
        "every job is claimed once, by one owner or the other"
    );
    assert_eq!(
        mine.len() + theirs.len() + rest.len(),
        N as usize,
        "no job is claimed twice"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// A claim takes waiting jobs (scheduled, ready, retrying) and never a
    /// final one (completed, buried, expired, cancelled), however due.
    a_claim_takes_waiting_jobs_never_final_ones => claim_statuses
);

async fn claim_statuses<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let mut waiting = Vec::new();
    let mut final_records = Vec::new();
    for (n, status) in JobStatus::ALL.into_iter().enumerate() {
        if status == JobStatus::Running {
            // An unleased running job is the rescuer's (see
            // a_running_job_held_by_no_owner_is_rescued_to_ready).
            continue;
        }
        let j = in_status(due("t", n as u32, secs(t, -10)), status);
        if status.is_final() {
            final_records.push(j);
        } else {
            waiting.push(j);
        }
    }
    assert_eq!(waiting.len(), 3, "scheduled, ready and retrying");
    insert(&store, &waiting).await;
    insert(&store, &final_records).await;
    let got = claim(shared, Uuid::new_v4(), &["t"], t, 100, secs(t, 30)).await;
    assert_claimed(
        &got,
        &waiting.iter().collect::<Vec<_>>(),
        "a claim among jobs of every state",
    );
    for f in &final_records {
        assert_eq!(
            get(&store, f.id).await.status,
            f.status,
            "a final job is left as it was"
        );
    }
    Verdict::Passed
}

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
    assert_same_job(
        &get(&store, x.id).await,
        &leased,
        "a leased job, before the lease ends",
    );

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
    let mut running = x.clone();
    running.status = JobStatus::Running;
    running.attempts = 1;
    record(&store, &mut running, Vec::new()).await;
    let mut running_last = last.clone();
    running_last.status = JobStatus::Running;
    running_last.attempts = 2;
    record(&store, &mut running_last, Vec::new()).await;
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
    assert_eq!(stored.status, JobStatus::Ready, "not cancelled yet");
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
        (&held, JobStatus::Ready),
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

conformance_test!(store,
    /// A claim takes no more jobs of each group of a task limited per
    /// group than the limit minus the group's jobs already leased (by any
    /// owner) and not final, the jobs without a group being one more
    /// group; other tasks are not held back, and an ended job makes room
    /// in its own group only.
    a_claim_takes_no_more_of_a_group_than_its_limit_per_group_leaves => claim_limited_per_group
);

async fn claim_limited_per_group<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let mut jobs = Vec::new();
    for (i, group) in [Some("a"), Some("b"), None].into_iter().enumerate() {
        for n in 0..3 {
            let mut job = due("limited", (i * 10) as u32 + n, secs(t, -10));
            job.group = group.map(str::to_owned);
            jobs.push(job);
        }
    }
    jobs.extend((100..102).map(|n| due("free", n, secs(t, -10))));
    insert(&store, &jobs).await;
    let lease = secs(t, 60);
    let claim = |owner, ended: Vec<JobId>| {
        let params = JobClaim {
            owner,
            tasks: vec!["limited".into(), "free".into()],
            due_by: t,
            limit: 100,
            lease_until: lease,
            running_limits: Vec::new(),
            group_running_limits: vec![("limited".into(), 2)],
            ended,
            group_weights: Vec::new(),
            rate_limits: Vec::new(),
            group_rate_limits: Vec::new(),
            tag_limits: Vec::new(),
            now: t,
        };
        async move {
            shared
                .jobs_claim(&params)
                .await
                .unwrap_or_else(|e| panic!("jobs_claim({params:?}) failed: {e}"))
        }
    };
    let of = |jobs: &[Job], task: &str, group: Option<&str>| {
        jobs.iter()
            .filter(|j| &*j.task == task && j.group.as_deref() == group)
            .count()
    };
    let (a, b) = (shared.owner(), Uuid::new_v4());
    let first = claim(a, Vec::new()).await;
    for group in [Some("a"), Some("b"), None] {
        assert_eq!(
            of(&first, "limited", group),
            2,
            "2 of the 3 of group {group:?}"
        );
    }
    assert_eq!(
        of(&first, "free", None),
        2,
        "the other task is not held back"
    );
    let second = claim(b, Vec::new()).await;
    assert!(
        second.is_empty(),
        "another owner gets none while each group has 2 leased: {second:?}"
    );
    let ended = first
        .iter()
        .find(|j| j.group.as_deref() == Some("a"))
        .expect("a job of group a")
        .id;
    let credited = claim(a, vec![ended]).await;
    assert_eq!(credited.len(), 1, "one room, in group a: {credited:?}");
    assert_eq!(credited[0].group.as_deref(), Some("a"));
    Verdict::Passed
}

conformance_test!(store,
    /// A claim takes no more jobs of a task limited in running jobs than
    /// its limit minus the task's jobs already leased (by any owner) and
    /// not final; other tasks in the same claim are not held back, and a
    /// job that ends makes room.
    a_claim_takes_no_more_of_a_limited_task_than_its_limit_leaves => claim_limited
);

async fn claim_limited<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let limited: Vec<Job> = (0..6).map(|n| due("limited", n, secs(t, -10))).collect();
    let free: Vec<Job> = (10..14).map(|n| due("free", n, secs(t, -10))).collect();
    insert(&store, &limited).await;
    insert(&store, &free).await;
    let lease = secs(t, 60);
    let claim_with_limit = |owner| {
        let params = JobClaim {
            owner,
            tasks: vec!["limited".into(), "free".into()],
            due_by: t,
            limit: 100,
            lease_until: lease,
            running_limits: vec![("limited".into(), 3)],
            group_running_limits: Vec::new(),
            ended: Vec::new(),
            group_weights: Vec::new(),
            rate_limits: Vec::new(),
            group_rate_limits: Vec::new(),
            tag_limits: Vec::new(),
            now: t,
        };
        async move {
            shared
                .jobs_claim(&params)
                .await
                .unwrap_or_else(|e| panic!("jobs_claim({params:?}) failed: {e}"))
        }
    };
    // The store's own owner first: its writes (the completion below) are
    // those of the process holding the lease.
    let (a, b) = (shared.owner(), Uuid::new_v4());
    let first = claim_with_limit(a).await;
    let of = |jobs: &[Job], task: &str| jobs.iter().filter(|j| &*j.task == task).count();
    assert_eq!(of(&first, "limited"), 3, "the limit: 3 of the 6");
    assert_eq!(of(&first, "free"), 4, "the other task is not held back");
    let second = claim_with_limit(b).await;
    assert_eq!(
        of(&second, "limited"),
        0,
        "another owner gets none while 3 are leased"
    );
    // The owner says one of its leased jobs ended (not stored yet): that
    // one no longer counts, so one more may be leased, by it alone.
    let ended = first
        .iter()
        .find(|j| &*j.task == "limited")
        .expect("a limited job")
        .id;
    let credited = shared
        .jobs_claim(&JobClaim {
            owner: a,
            tasks: vec!["limited".into()],
            due_by: t,
            limit: 100,
            lease_until: lease,
            running_limits: vec![("limited".into(), 3)],
            group_running_limits: Vec::new(),
            ended: vec![ended],
            group_weights: Vec::new(),
            rate_limits: Vec::new(),
            group_rate_limits: Vec::new(),
            tag_limits: Vec::new(),
            now: t,
        })
        .await
        .unwrap_or_else(|e| panic!("jobs_claim with an ended job failed: {e}"));
    assert_eq!(
        of(&credited, "limited"),
        1,
        "the ended job's room is refilled"
    );
    // The ended job's end is stored: its room was refilled already, so
    // another owner still gets none; one more completing makes room.
    for id in [
        ended,
        first
            .iter()
            .find(|j| &*j.task == "limited" && j.id != ended)
            .expect("another")
            .id,
    ] {
        let job = first.iter().find(|j| j.id == id).expect("claimed").clone();
        let mut done = in_status(job, JobStatus::Completed);
        record(&store, &mut done, Vec::new()).await;
        let third = claim_with_limit(b).await;
        let want = usize::from(id != ended);
        assert_eq!(
            of(&third, "limited"),
            want,
            "after {} stored completion(s), room for {want}",
            1 + want
        );
    }
    Verdict::Passed
}

/// A claim of `tasks` by `owner` at `at`, with `rate` on task `rated`.
async fn claim_rated(
    shared: &dyn SharedStore,
    owner: Uuid,
    tasks: &[&str],
    rate: crate::RateLimit,
    at: DateTime<Utc>,
) -> crate::store::ClaimReply {
    let params = JobClaim {
        owner,
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
        due_by: at,
        limit: 100,
        lease_until: secs(at, 600),
        running_limits: Vec::new(),
        group_running_limits: Vec::new(),
        rate_limits: vec![("rated".into(), rate)],
        group_rate_limits: Vec::new(),
        tag_limits: Vec::new(),
        now: at,
        ended: Vec::new(),
        group_weights: Vec::new(),
    };
    shared
        .jobs_claim_reply(&params)
        .await
        .unwrap_or_else(|e| panic!("jobs_claim_reply({params:?}) failed: {e}"))
}

conformance_test!(store,
    /// A claim takes no more jobs of a rate-limited task than the limit
    /// allows at the claim's time, whichever owner asks: its burst after a
    /// quiet spell, then one per interval. The rest stay in the store,
    /// and the reply says when the next may be claimed; other tasks in the
    /// same claim are not held back. (Time is passed in: the claim's
    /// `now`.)
    a_claim_takes_no_more_of_a_rate_limited_task_than_its_rate_allows => claim_rated_limit
);

async fn claim_rated_limit<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let rated: Vec<Job> = (0..20).map(|n| due("rated", n, secs(t, -10))).collect();
    let free: Vec<Job> = (100..103).map(|n| due("free", n, secs(t, -10))).collect();
    insert(&store, &rated).await;
    insert(&store, &free).await;
    // 10 a second, bursts of 4: starts 100 ms apart, 4 at once at most.
    let rate = crate::RateLimit::per_second(10).burst(4);
    let ms = |n: i64| t + chrono::Duration::milliseconds(n);
    let of = |jobs: &[Job], task: &str| jobs.iter().filter(|j| &*j.task == task).count();
    let (a, b) = (shared.owner(), Uuid::new_v4());

    let first = claim_rated(shared, a, &["rated", "free"], rate, t).await;
    assert_eq!(of(&first.jobs, "rated"), 4, "the burst: 4 of the 20");
    assert_eq!(
        of(&first.jobs, "free"),
        3,
        "the other task is not held back"
    );
    assert_eq!(
        first.retry_at,
        Some(ms(100)),
        "the burst is spent: the next start is allowed one interval on"
    );
    let second = claim_rated(shared, b, &["rated"], rate, ms(50)).await;
    assert!(
        second.jobs.is_empty(),
        "another owner gets none before the interval: {:?}",
        second.jobs
    );
    assert_eq!(second.retry_at, Some(ms(100)), "and is told when");
    let third = claim_rated(shared, b, &["rated"], rate, ms(100)).await;
    assert_eq!(third.jobs.len(), 1, "one interval later, one more");
    assert_eq!(third.retry_at, Some(ms(200)));
    // A quiet second refills the burst, never more.
    let fourth = claim_rated(shared, a, &["rated"], rate, ms(1_500)).await;
    assert_eq!(fourth.jobs.len(), 4, "after a quiet spell, the burst again");
    // The jobs are all claimed: nothing to wait for.
    let rest = claim_rated(shared, a, &["rated"], rate, ms(60_000)).await;
    assert_eq!(rest.jobs.len(), 4, "the burst");
    let last = claim_rated(shared, b, &["rated"], rate, ms(120_000)).await;
    assert_eq!(last.jobs.len(), 4, "the burst");
    let none = claim_rated(shared, b, &["rated"], rate, ms(180_000)).await;
    assert_eq!(none.jobs.len(), 3, "the last 3 of the 20");
    assert_eq!(
        none.retry_at, None,
        "no job was held back: no time to claim again"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// Claims by three owners at many times over a simulated 20 seconds
    /// never take more of a rate-limited task than `burst + span /
    /// interval` over any span between claims, and each takes all the
    /// limit allows at its time while jobs wait: the limit holds for
    /// every owner together.
    claims_of_many_owners_never_start_more_than_the_rate_allows_over_time => claim_rated_over_time
);

async fn claim_rated_over_time<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let rated: Vec<Job> = (0..300).map(|n| due("rated", n, secs(t, -10))).collect();
    insert(&store, &rated).await;
    // 5 a second, bursts of 3: an interval of 200 ms.
    let rate = crate::RateLimit::per_second(5).burst(3);
    let owners = [shared.owner(), Uuid::new_v4(), Uuid::new_v4()];
    // (time in ms, jobs taken), every claim.
    let mut taken: Vec<(i64, usize)> = Vec::new();
    let mut at = 0i64;
    let mut i = 0usize;
    while at <= 20_000 {
        let reply = claim_rated(
            shared,
            owners[i % owners.len()],
            &["rated"],
            rate,
            t + chrono::Duration::milliseconds(at),
        )
        .await;
        taken.push((at, reply.jobs.len()));
        // Uneven steps, some within an interval, some across several.
        at += [37, 90, 210, 13, 450, 160][i % 6];
        i += 1;
    }
    // Over every span [a, b] between claims: at most burst + (b - a) / 200.
    for (x, &(from, _)) in taken.iter().enumerate() {
        let mut sum = 0;
        for &(to, n) in &taken[x..] {
            sum += n;
            let most = 3 + usize::try_from((to - from) / 200).unwrap_or(0);
            assert!(
                sum <= most,
                "{sum} claimed from {from} ms to {to} ms, the limit allows {most}: {taken:?}"
            );
        }
    }
    // And each claim takes all the limit allows while jobs wait: exactly
    // what the generic cell rate algorithm gives (one start per 200 ms,
    // up to 400 ms ahead).
    let mut tat = i64::MIN;
    for &(at, n) in &taken {
        let from = tat.max(at);
        let allowed = if from - at > 400 {
            0
        } else {
            (at + 400 - from) / 200 + 1
        };
        assert_eq!(
            n as i64, allowed,
            "at {at} ms the limit allows {allowed}: {taken:?}"
        );
        if n > 0 {
            tat = from + n as i64 * 200;
        }
    }
    Verdict::Passed
}

/// A claim of `tasks` by `owner` at `at` (due by then, at most 100),
/// with what `limits` sets.
async fn claim_limited_by(
    shared: &dyn SharedStore,
    owner: Uuid,
    tasks: &[&str],
    at: DateTime<Utc>,
    limits: impl FnOnce(&mut JobClaim),
) -> crate::store::ClaimReply {
    let mut params = JobClaim {
        owner,
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
        due_by: at,
        limit: 100,
        lease_until: secs(at, 600),
        running_limits: Vec::new(),
        group_running_limits: Vec::new(),
        rate_limits: Vec::new(),
        group_rate_limits: Vec::new(),
        tag_limits: Vec::new(),
        now: at,
        ended: Vec::new(),
        group_weights: Vec::new(),
    };
    limits(&mut params);
    shared
        .jobs_claim_reply(&params)
        .await
        .unwrap_or_else(|e| panic!("jobs_claim_reply({params:?}) failed: {e}"))
}

/// The limits of tag `mail`, whose tasks are `welcome` and `digest`.
fn mail(max_running: Option<u32>, rate: Option<crate::RateLimit>) -> crate::store::TagClaimLimit {
    crate::store::TagClaimLimit {
        tag: "mail".into(),
        tasks: vec!["digest".into(), "welcome".into()],
        max_running,
        rate,
    }
}

conformance_test!(store,
    /// A claim takes no more jobs of a tag limited in running jobs than
    /// its limit minus the jobs of all the tag's tasks already leased (by
    /// any owner, of any of its tasks, served by the claim or not) and
    /// not final: the best of the tag's served tasks together, other
    /// tasks not held back; an ended job makes room.
    a_claim_takes_no_more_of_a_tag_than_its_running_limit_leaves => claim_tag_limited
);

async fn claim_tag_limited<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    // Digest and welcome jobs in turns, oldest first: d0 w0 d1 w1 ...
    let mut jobs = Vec::new();
    for n in 0..4u32 {
        jobs.push(due("digest", n, secs(t, -40 + 2 * i64::from(n))));
        jobs.push(due("welcome", 10 + n, secs(t, -39 + 2 * i64::from(n))));
    }
    let free: Vec<Job> = (20..22).map(|n| due("free", n, secs(t, -50))).collect();
    insert(&store, &jobs).await;
    insert(&store, &free).await;
    let limit = |c: &mut JobClaim| c.tag_limits = vec![mail(Some(3), None)];
    let mail_of = |jobs: &[Job]| {
        jobs.iter()
            .filter(|j| &*j.task == "digest" || &*j.task == "welcome")
            .count()
    };
    let (a, b) = (shared.owner(), Uuid::new_v4());
    let first = claim_limited_by(shared, a, &["welcome", "digest", "free"], t, limit).await;
    assert_claimed(
        &first.jobs,
        &[&jobs[0], &jobs[1], &jobs[2], &free[0], &free[1]],
        "the 3 best of the tag's tasks together, and the other task's",
    );
    let second = claim_limited_by(shared, b, &["welcome"], t, limit).await;
    assert!(
        second.jobs.is_empty(),
        "another owner serving one of the tag's tasks gets none while 3 of the tag are leased: {:?}",
        second.jobs
    );
    // The owner says one of its leased jobs ended (not stored yet): that
    // one no longer counts, so one more may be leased, by it alone.
    let ended = jobs[0].id;
    let credited = claim_limited_by(shared, a, &["welcome", "digest"], t, |c| {
        limit(c);
        c.ended = vec![ended];
    })
    .await;
    assert_claimed(
        &credited.jobs,
        &[&jobs[3]],
        "the ended job's room is refilled, with the tag's best",
    );
    // Its end stored, another owner still gets none (the room was
    // refilled); one more completing makes room for one.
    for (id, want) in [(ended, 0), (jobs[1].id, 1)] {
        let job = first
            .jobs
            .iter()
            .find(|j| j.id == id)
            .expect("claimed")
            .clone();
        let mut done = in_status(job, JobStatus::Completed);
        record(&store, &mut done, Vec::new()).await;
        let next = claim_limited_by(shared, b, &["welcome", "digest"], t, limit).await;
        assert_eq!(
            mail_of(&next.jobs),
            want,
            "after the completion of {id}, room for {want}: {:?}",
            next.jobs
        );
    }
    Verdict::Passed
}

/// What the generic cell rate algorithm allows at `at` (ms) with the
/// theoretical arrival time `tat`: how many starts, and from when.
fn gcra_allows(tat: i64, at: i64, interval: i64, tolerance: i64) -> (i64, i64) {
    let from = tat.max(at);
    let allowed = if from - at > tolerance {
        0
    } else {
        (at + tolerance - from) / interval + 1
    };
    (allowed, from)
}

/// Uneven steps between claims (ms), some within an interval, some
/// across several.
const STEPS: [i64; 6] = [37, 90, 210, 13, 450, 160];

conformance_test!(store,
    /// Claims by three owners, each serving some of a rate-limited tag's
    /// tasks, at many times over a simulated 20 seconds take of the
    /// tag's tasks together exactly what the tag's rate allows at each
    /// claim's time (the generic cell rate algorithm), and the reply says
    /// when the next start is allowed: the limit holds for every owner
    /// and every task of the tag together.
    claims_of_a_rate_limited_tags_tasks_by_many_owners_follow_the_tags_rate => claim_tag_rated_over_time
);

async fn claim_tag_rated_over_time<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let mut jobs: Vec<Job> = (0..150).map(|n| due("welcome", n, secs(t, -10))).collect();
    jobs.extend((150..300).map(|n| due("digest", n, secs(t, -10))));
    jobs.extend((300..303).map(|n| due("free", n, secs(t, -10))));
    insert(&store, &jobs).await;
    // 5 a second, bursts of 3: an interval of 200 ms, 400 ms ahead.
    let rate = crate::RateLimit::per_second(5).burst(3);
    let limit = |c: &mut JobClaim| c.tag_limits = vec![mail(None, Some(rate))];
    let served: [&[&str]; 3] = [&["welcome", "free"], &["digest"], &["digest", "welcome"]];
    let owners = [shared.owner(), Uuid::new_v4(), Uuid::new_v4()];
    let ms = |n: i64| t + chrono::Duration::milliseconds(n);
    let (mut tat, mut at) = (i64::MIN, 0i64);
    let mut i = 0usize;
    while at <= 20_000 {
        let reply = claim_limited_by(shared, owners[i % 3], served[i % 3], ms(at), limit).await;
        let of_tag = reply.jobs.iter().filter(|j| &*j.task != "free").count() as i64;
        let (allowed, from) = gcra_allows(tat, at, 200, 400);
        assert_eq!(
            of_tag,
            allowed,
            "at {at} ms, owner {} serving {:?}: the tag's rate allows {allowed}",
            i % 3,
            served[i % 3]
        );
        if i == 0 {
            assert_eq!(
                reply.jobs.iter().filter(|j| &*j.task == "free").count(),
                3,
                "a task of another tag is not held back"
            );
        }
        tat = from + of_tag * 200;
        assert_eq!(
            reply.retry_at,
            Some(ms(tat - 400)),
            "at {at} ms the reply says when the tag allows its next start"
        );
        at += STEPS[i % STEPS.len()];
        i += 1;
    }
    Verdict::Passed
}

conformance_test!(store,
    /// Claims by three owners at many times over a simulated 20 seconds
    /// take of each group of a task limited in rate per group (the jobs
    /// without a group being one more group) exactly what the group's
    /// own copy of the limit allows at each claim's time, whatever the
    /// other groups took, and the reply says when the next start of any
    /// group is allowed: each group's limit holds for every owner
    /// together.
    claims_of_many_owners_follow_each_groups_own_rate => claim_group_rated_over_time
);

async fn claim_group_rated_over_time<F: StoreFactory>(factory: F) -> Verdict {
    shared_store!(factory => store, shared);
    let t = now();
    let groups = [Some("a"), Some("b"), None];
    let mut jobs = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for n in 0..150u32 {
            let mut job = due("rated", (g as u32) * 1000 + n, secs(t, -10));
            job.group = group.map(str::to_owned);
            jobs.push(job);
        }
    }
    insert(&store, &jobs).await;
    // Per group: 5 a second, bursts of 2: an interval of 200 ms, 200 ms
    // ahead.
    let rate = crate::RateLimit::per_second(5).burst(2);
    let limit = |c: &mut JobClaim| c.group_rate_limits = vec![("rated".into(), rate)];
    let owners = [shared.owner(), Uuid::new_v4(), Uuid::new_v4()];
    let ms = |n: i64| t + chrono::Duration::milliseconds(n);
    let mut tats = [i64::MIN; 3];
    let mut at = 0i64;
    let mut i = 0usize;
    while at <= 20_000 {
        let reply = claim_limited_by(shared, owners[i % 3], &["rated"], ms(at), limit).await;
        for (g, group) in groups.iter().enumerate() {
            let n = reply
                .jobs
                .iter()
                .filter(|j| j.group.as_deref() == *group)
                .count() as i64;
            let (allowed, from) = gcra_allows(tats[g], at, 200, 200);
            assert_eq!(
                n, allowed,
                "at {at} ms group {group:?} is allowed {allowed}: {:?}",
                reply.jobs
            );
            tats[g] = from + n * 200;
        }
        let next = tats.iter().min().copied().unwrap_or_default() - 200;
        assert_eq!(
            reply.retry_at,
            Some(ms(next)),
            "at {at} ms the reply says when the first group allows its next start"
        );
        at += STEPS[i % STEPS.len()];
        i += 1;
    }
    Verdict::Passed
}
