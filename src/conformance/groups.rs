//! Fair groups (see `flow-control.md`, "Fair groups") on the store under test: a job's
//! group is stored with it; within a priority the groups of a tag take
//! weighted turns, on a store of one process (the scheduler orders what
//! it holds) and on a shared one (each claim shares its batch between
//! groups by weight); priority still comes first.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::fixtures::{fresh, get, in_status, insert, job, line, now, record};
use super::harness::conformance_test;
use super::queue::{outcome, Trace};
use super::{StoreFactory, Verdict};
use crate::config::Retention;
use crate::context::JobContext;
use crate::error::JobError;
use crate::job::{Job, JobStatus};
use crate::new_job::NewJob;
use crate::queue::Queue;
use crate::store::{JobClaim, JobQuery, Store};

/// A queue on `store` with group `weights`, set up by `factory`.
async fn queue_with<F: StoreFactory>(
    factory: &F,
    store: &Arc<dyn Store>,
    weights: &[(&str, f64)],
) -> Queue {
    let mut builder = Queue::builder()
        .store(store.clone())
        .retention(Retention::keep_all());
    for (group, weight) in weights {
        builder = builder.group_weight(*group, *weight);
    }
    factory
        .configure(builder)
        .build()
        .await
        .unwrap_or_else(|e| panic!("building a queue on the store failed: {e}"))
}

/// Defines task `fair` on tag `fair`, whose handler appends its payload
/// to the returned trace.
fn traced(queue: &Queue) -> Trace<String> {
    let trace = Trace::default();
    let t = trace.clone();
    queue
        .define("fair")
        .tag("fair")
        .action(move |job: JobContext<String>| {
            let t = t.clone();
            async move {
                t.push(job.payload);
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    trace
}

/// Creates `jobs`, runs them with one worker slot on tag `fair` and
/// returns the payloads in the order they started.
async fn run_in_order(queue: &Queue, trace: &Trace<String>, jobs: Vec<NewJob>) -> Vec<String> {
    let mut handles = Vec::new();
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        let chunk: Vec<NewJob> = jobs.by_ref().take(500).collect();
        handles.extend(
            queue
                .create_many(chunk)
                .await
                .unwrap_or_else(|e| panic!("create_many: {e}")),
        );
    }
    queue
        .process(["fair"])
        .concurrency(1)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for h in &handles {
        assert_eq!(outcome(h).await.status, JobStatus::Completed);
    }
    trace.items()
}

conformance_test!(groups,
    /// A job's fair group is stored with it, however it was inserted
    /// (alone, in a batch, in a large batch, owned), read back by id, by
    /// query and among pending jobs, and kept through state changes; a
    /// job without one reads back without one.
    groups_a_job_keeps_its_group => group_round_trip
);

async fn group_round_trip<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let with = |n: usize| {
        let mut j = job("export", json!(n));
        if n % 3 != 0 {
            j.group = Some(format!("tenant-{}", n % 7));
        }
        j
    };
    let alone = vec![with(1)];
    let small: Vec<Job> = (2..=5).map(with).collect();
    let large: Vec<Job> = (6..206).map(with).collect();
    for batch in [&alone, &small, &large] {
        insert(&store, batch).await;
    }
    let owned = in_status(with(206), JobStatus::Completed);
    if let Err((err, _)) = store.jobs_insert_owned(vec![owned.clone()]).await {
        panic!("jobs_insert_owned failed: {err}");
    }
    let all: Vec<Job> = alone
        .iter()
        .chain(&small)
        .chain(&large)
        .chain(std::iter::once(&owned))
        .cloned()
        .collect();
    for want in &all {
        assert_eq!(
            get(&store, want.id).await.group,
            want.group,
            "job_get of {}",
            want.id
        );
    }
    let pending = store
        .jobs_pending()
        .await
        .unwrap_or_else(|e| panic!("jobs_pending failed: {e}"));
    let queried = store
        .jobs_query(&JobQuery::default().task("export").limit(1000))
        .await
        .unwrap_or_else(|e| panic!("jobs_query failed: {e}"));
    for want in &all {
        let found = queried
            .iter()
            .find(|j| j.id == want.id)
            .map(|j| j.group.clone());
        assert_eq!(found, Some(want.group.clone()), "jobs_query of {}", want.id);
        if !want.status.is_final() {
            let found = pending
                .iter()
                .find(|j| j.id == want.id)
                .map(|j| j.group.clone());
            assert_eq!(
                found,
                Some(want.group.clone()),
                "jobs_pending of {}",
                want.id
            );
        }
    }
    let mut done = in_status(alone[0].clone(), JobStatus::Running);
    record(&store, &mut done, vec![line("started", 1, now(), None)]).await;
    done = in_status(done, JobStatus::Completed);
    record(&store, &mut done, vec![line("completed", 1, now(), None)]).await;
    assert_eq!(
        get(&store, done.id).await.group,
        alone[0].group,
        "after two updates"
    );
    Verdict::Passed
}

conformance_test!(groups,
    /// One group's backlog of 1,000 jobs does not starve another group's
    /// 10 created after it: with one worker slot, all 10 start within the
    /// first 20 starts, taking turns with the large group.
    groups_a_small_group_is_not_starved_by_a_large_backlog => small_group
);

async fn small_group<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_with(&factory, &store, &[]).await;
    let trace = traced(&queue);
    let mut jobs: Vec<NewJob> = (0..1000)
        .map(|i| NewJob::new("fair", format!("big-{i}")).group("big"))
        .collect();
    jobs.extend((0..10).map(|i| NewJob::new("fair", format!("small-{i}")).group("small")));
    let order = run_in_order(&queue, &trace, jobs).await;
    assert_eq!(order.len(), 1010);
    let small_at: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, p)| p.starts_with("small"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(small_at.len(), 10);
    assert!(
        small_at.iter().all(|&i| i < 20),
        "the small group's jobs start within the first 20: at {small_at:?}"
    );
    // Each group's own jobs keep their creation order.
    for prefix in ["big-", "small-"] {
        let own: Vec<usize> = order
            .iter()
            .filter_map(|p| p.strip_prefix(prefix))
            .map(|n| n.parse().unwrap_or(usize::MAX))
            .collect();
        assert!(own.windows(2).all(|w| w[0] < w[1]), "{prefix} in order");
    }
    Verdict::Passed
}

conformance_test!(groups,
    /// A group of weight 3 gets three starts for each start of a group of
    /// weight 1 while both have jobs waiting.
    groups_weights_share_the_starts => weights
);

async fn weights<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_with(&factory, &store, &[("heavy", 3.0)]).await;
    let trace = traced(&queue);
    let mut jobs = Vec::new();
    for i in 0..200 {
        jobs.push(NewJob::new("fair", format!("light-{i}")).group("light"));
        jobs.push(NewJob::new("fair", format!("heavy-{i}")).group("heavy"));
    }
    let order = run_in_order(&queue, &trace, jobs).await;
    let heavy = order[..100]
        .iter()
        .filter(|p| p.starts_with("heavy"))
        .count();
    assert!(
        (70..=80).contains(&heavy),
        "about 75 of the first 100 starts go to the group of weight 3: {heavy}"
    );
    Verdict::Passed
}

conformance_test!(groups,
    /// Priority comes before groups: every job of the best priority
    /// present starts first, whatever its group; within one priority the
    /// groups, and the jobs without a group, take turns.
    groups_priority_comes_before_turns => priority_first
);

async fn priority_first<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_with(&factory, &store, &[]).await;
    let trace = traced(&queue);
    let mut jobs = Vec::new();
    for i in 0..10 {
        jobs.push(NewJob::new("fair", format!("b-{i}")).group("b").priority(5));
    }
    for i in 0..10 {
        jobs.push(NewJob::new("fair", format!("none-{i}")).priority(5));
    }
    for i in 0..10 {
        jobs.push(NewJob::new("fair", format!("a-{i}")).group("a").priority(0));
    }
    let order = run_in_order(&queue, &trace, jobs).await;
    assert!(
        order[..10].iter().all(|p| p.starts_with("a-")),
        "priority 0 first: {order:?}"
    );
    // Then `b` and the jobs without a group take turns.
    let rest = &order[10..];
    for pair in rest.chunks(2) {
        let b = pair.iter().filter(|p| p.starts_with("b-")).count();
        assert_eq!(b, 1, "b and the jobs without a group alternate: {rest:?}");
    }
    Verdict::Passed
}

conformance_test!(groups,
    /// A claim on a shared store shares its batch between the groups
    /// present: a claim of 20 from one group's 100 jobs and another's 5
    /// takes all 5; beside 30 groups with only delayed jobs it is still
    /// full; with no group at all, it takes the best jobs by priority, due
    /// time and creation, as before.
    groups_a_claim_shares_its_batch_between_groups => claim_shares
);

async fn claim_shares<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let Some(shared) = store.shared() else {
        return Verdict::Skipped("the store is not shared (Store::shared is None)");
    };
    let at = now() - chrono::Duration::seconds(10);
    let mut jobs = Vec::new();
    for i in 0..100 {
        let mut j = super::fixtures::job_at("fair", json!(i), at);
        j.group = Some("big".into());
        jobs.push(j);
    }
    for i in 0..5 {
        let mut j = super::fixtures::job_at("fair", json!(100 + i), at);
        j.group = Some("small".into());
        jobs.push(j);
    }
    let plain: Vec<Job> = (0..30)
        .map(|i| {
            let mut j = super::fixtures::job_at("plain", json!(i), at);
            j.priority = (i % 3) as u32;
            j
        })
        .collect();
    insert(&store, &jobs).await;
    insert(&store, &plain).await;
    let claim = |task: &str, limit: usize| {
        let now = Utc::now();
        JobClaim::new(
            Uuid::new_v4(),
            [task],
            now,
            limit,
            now + chrono::Duration::minutes(5),
        )
    };
    let got = shared
        .jobs_claim(&claim("fair", 20))
        .await
        .unwrap_or_else(|e| panic!("jobs_claim failed: {e}"));
    assert_eq!(got.len(), 20, "a full batch");
    let small = got
        .iter()
        .filter(|j| j.group.as_deref() == Some("small"))
        .count();
    assert_eq!(small, 5, "every job of the small group is in the batch");
    // Groups whose jobs are all delayed take no room from one with due
    // jobs: the batch still comes back full.
    let mut busy = Vec::new();
    for i in 0..100 {
        let mut j = super::fixtures::job_at("busy", json!(i), at);
        j.group = Some("due".into());
        busy.push(j);
    }
    for g in 0..30 {
        let mut j = super::fixtures::job_at("busy", json!(1000 + g), at);
        j.run_at = at + chrono::Duration::hours(1);
        j.status = JobStatus::Scheduled;
        j.group = Some(format!("later-{g}"));
        busy.push(j);
    }
    insert(&store, &busy).await;
    let got = shared
        .jobs_claim(&claim("busy", 20))
        .await
        .unwrap_or_else(|e| panic!("jobs_claim failed: {e}"));
    assert_eq!(
        got.len(),
        20,
        "a full batch beside 30 groups of delayed jobs"
    );
    assert!(got.iter().all(|j| j.group.as_deref() == Some("due")));
    // No group: the best by priority, then due time, then creation.
    let got = shared
        .jobs_claim(&claim("plain", 12))
        .await
        .unwrap_or_else(|e| panic!("jobs_claim failed: {e}"));
    let mut want = plain.clone();
    want.sort_by_key(|j| (j.priority, j.run_at, j.created_at, j.id.0));
    let want: Vec<_> = want[..12].iter().map(|j| j.id).collect();
    let mut got: Vec<_> = got.iter().map(|j| j.id).collect();
    got.sort_by_key(|id| want.iter().position(|w| w == id));
    assert_eq!(got, want, "the 12 best jobs without a group");
    Verdict::Passed
}
