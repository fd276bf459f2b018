//! Shared stores, claims: a claim takes the due jobs of the tasks it
//! names, best first, never more than asked, never a job another owner
//! leases, never a final one, and names the node that took each.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::{assert_claimed, claim, delayed, due, id_set, release};
use crate::conformance::fixtures::{get, in_status, insert, now, secs};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{Job, JobId, JobStatus};

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
