//! Updates: every state transition is recorded; updates apply in order,
//! within a batch and across batches; an update of an unknown job is
//! skipped; log lines append in the order written (not sorted by time),
//! progress is replaced.

use std::sync::Arc;

use serde_json::json;

use crate::conformance::fixtures::{
    assert_same_job, fresh, get, in_status, insert, job, line, now, record, secs,
};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{Job, JobStatus, Progress};
use crate::store::{JobUpdate, Store};

conformance_test!(store,
    /// Each transition of the lifecycle (scheduled, ready, running,
    /// retrying, completed; buried and kicked; expired; cancelled) is
    /// stored, and reads back as recorded after every step.
    every_state_transition_is_recorded => transitions
);

async fn transitions<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    let mut happy = job("happy", json!({"n": 1}));
    happy.status = JobStatus::Scheduled;
    happy.run_at = secs(t, 60);
    let mut doomed = job("doomed", json!({"n": 2}));
    let mut stale = job("stale", json!({"n": 3}));
    stale.expires_at = Some(secs(t, 5));
    let mut dropped = job("dropped", json!({"n": 4}));
    insert(
        &store,
        &[
            happy.clone(),
            doomed.clone(),
            stale.clone(),
            dropped.clone(),
        ],
    )
    .await;

    async fn step(
        store: &Arc<dyn Store>,
        job: &mut Job,
        what: &str,
        change: impl FnOnce(&mut Job),
    ) {
        change(job);
        record(store, job, Vec::new()).await;
        assert_same_job(&get(store, job.id).await, job, what);
    }

    // scheduled → ready → running → retrying → ready → running → completed
    step(&store, &mut happy, "scheduled → ready", |j| {
        j.status = JobStatus::Ready
    })
    .await;
    step(&store, &mut happy, "ready → running", |j| {
        j.status = JobStatus::Running;
        j.attempts = 1;
    })
    .await;
    step(&store, &mut happy, "running → retrying", |j| {
        j.status = JobStatus::Retrying;
        j.run_at = secs(t, 120);
        j.last_error = Some("connection reset".into());
    })
    .await;
    step(&store, &mut happy, "retrying → ready", |j| {
        j.status = JobStatus::Ready
    })
    .await;
    step(&store, &mut happy, "ready → running (2nd attempt)", |j| {
        j.status = JobStatus::Running;
        j.attempts = 2;
    })
    .await;
    step(&store, &mut happy, "running → completed", |j| {
        j.status = JobStatus::Completed;
        j.last_error = None;
        j.result = Some(json!({"sent": true}));
        j.finished_at = Some(secs(t, 121));
    })
    .await;

    // ready → running → buried → (kicked) ready → running → completed
    step(&store, &mut doomed, "ready → running", |j| {
        j.status = JobStatus::Running;
        j.attempts = 1;
    })
    .await;
    step(&store, &mut doomed, "running → buried", |j| {
        j.status = JobStatus::Buried;
        j.last_error = Some("card declined".into());
        j.finished_at = Some(secs(t, 1));
    })
    .await;
    step(&store, &mut doomed, "buried → ready (kicked)", |j| {
        j.status = JobStatus::Ready;
        j.max_attempts = Some(2);
        j.run_at = secs(t, 2);
        j.finished_at = None;
    })
    .await;
    step(&store, &mut doomed, "ready → running (after kick)", |j| {
        j.status = JobStatus::Running;
        j.attempts = 2;
    })
    .await;
    step(
        &store,
        &mut doomed,
        "running → completed (after kick)",
        |j| {
            j.status = JobStatus::Completed;
            j.last_error = None;
            j.result = Some(json!("fixed"));
            j.finished_at = Some(secs(t, 3));
        },
    )
    .await;

    step(&store, &mut stale, "ready → expired", |j| {
        j.status = JobStatus::Expired;
        j.last_error = Some("not started before it expired".into());
        j.finished_at = Some(secs(t, 5));
    })
    .await;
    step(&store, &mut dropped, "ready → cancelled", |j| {
        j.status = JobStatus::Cancelled;
        j.last_error = Some("cancelled".into());
        j.finished_at = Some(secs(t, 6));
    })
    .await;
    Verdict::Passed
}

conformance_test!(store,
    /// Several updates of one job in one batch apply in order: the last
    /// wins, and every one's log lines are appended in turn.
    updates_in_one_batch_apply_in_order => batch_order
);

async fn batch_order<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    let mut a = job("a", json!(1));
    let mut b = job("b", json!(2));
    insert(&store, &[a.clone(), b.clone()]).await;

    let mut batch = Vec::new();
    a.status = JobStatus::Running;
    a.attempts = 1;
    batch.push(JobUpdate::of(&a, vec![line("a started", 1, t, None)]));
    b.status = JobStatus::Running;
    b.attempts = 1;
    batch.push(JobUpdate::of(&b, vec![line("b started", 1, t, None)]));
    a.status = JobStatus::Retrying;
    a.last_error = Some("first failure".into());
    a.run_at = secs(t, 10);
    batch.push(JobUpdate::of(
        &a,
        vec![line("a failed", 1, t, Some(json!({"code": 1})))],
    ));
    a.status = JobStatus::Running;
    a.attempts = 2;
    batch.push(JobUpdate::of(&a, vec![line("a started again", 2, t, None)]));
    b.status = JobStatus::Completed;
    b.finished_at = Some(t);
    b.result = Some(json!("done"));
    batch.push(JobUpdate::of(&b, vec![line("b completed", 1, t, None)]));
    for update in &batch {
        let job = if update.id == a.id { &mut a } else { &mut b };
        job.logs.extend(update.logs.iter().cloned());
    }
    store
        .jobs_update(&batch)
        .await
        .unwrap_or_else(|e| panic!("jobs_update of a batch failed: {e}"));

    assert_same_job(&get(&store, a.id).await, &a, "job a after one batch");
    assert_same_job(&get(&store, b.id).await, &b, "job b after one batch");
    Verdict::Passed
}

conformance_test!(store,
    /// An update of a job the store does not have (it was cleaned) is
    /// skipped: the batch succeeds, the rest of it applies, and no job
    /// appears.
    update_of_an_unknown_job_is_skipped => unknown_update
);

async fn unknown_update<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let mut known = job("t", json!(1));
    insert(&store, &[known.clone()]).await;
    let ghost = in_status(job("t", json!(2)), JobStatus::Running);
    known.status = JobStatus::Running;
    known.attempts = 1;
    let batch = [
        JobUpdate::of(&ghost, vec![line("ghost", 1, now(), None)]),
        JobUpdate::of(&known, Vec::new()),
    ];
    if let Err(err) = store.jobs_update(&batch).await {
        panic!("a batch with an unknown job must succeed, got {err}");
    }
    assert_same_job(&get(&store, known.id).await, &known, "the known job");
    let found = store
        .job_get(ghost.id)
        .await
        .unwrap_or_else(|e| panic!("job_get failed: {e}"));
    assert!(
        found.is_none(),
        "an update must not create a job: {found:?}"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// Log lines append across updates in the order they were written,
    /// even when their times are equal or go backwards; progress is
    /// replaced by each update, and cleared by one without it.
    logs_append_in_order_and_progress_is_replaced => logs_and_progress
);

async fn logs_and_progress<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    let mut j = job("import", json!({"rows": 4}));
    j.logs = vec![line("created", 0, t, None)];
    insert(&store, &[j.clone()]).await;

    j.status = JobStatus::Running;
    j.attempts = 1;
    j.progress = Some(Progress {
        current: 1,
        total: 4,
    });
    record(
        &store,
        &mut j,
        vec![
            line("started", 1, t, None),
            line("row 1", 1, t, Some(json!({"id": 1}))),
        ],
    )
    .await;
    assert_same_job(
        &get(&store, j.id).await,
        &j,
        "after the first progress report",
    );

    j.progress = Some(Progress {
        current: 3,
        total: 4,
    });
    record(&store, &mut j, Vec::new()).await;
    assert_same_job(
        &get(&store, j.id).await,
        &j,
        "after an update without log lines",
    );

    j.progress = None;
    record(
        &store,
        &mut j,
        vec![line(
            "clock went back",
            1,
            secs(t, -3600),
            Some(json!([1, "two", 3.0])),
        )],
    )
    .await;
    let stored = get(&store, j.id).await;
    assert_same_job(&stored, &j, "after an update clearing progress");
    let messages: Vec<&str> = stored.logs.iter().map(|l| &*l.message).collect();
    assert_eq!(messages, ["created", "started", "row 1", "clock went back"]);
    Verdict::Passed
}
