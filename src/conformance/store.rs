//! Tests of the [`Store`] trait itself, call by call.
//!
//! The contract they pin, beyond each method's docs:
//!
//! - every field of a [`Job`] round-trips: times to the microsecond at
//!   least, from 1970 to the year 9000; payloads and results as the same
//!   JSON value (the text may be reformatted); priorities and attempts
//!   over the whole `u32` range; progress counts up to `i64::MAX`;
//! - updates apply in order, within a batch and across batches; an update
//!   of an unknown job is skipped; log lines append in the order written
//!   (not sorted by time), progress is replaced;
//! - queries order by id (ids are UUIDv7, so by creation), and page with
//!   offset and limit; deletes remove only final jobs, oldest first, with their logs;
//! - concurrent callers lose nothing, and large batches are stored whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::fixtures::{
    assert_same_job, fresh, get, ids, in_status, insert, job, job_at, line, now, record, secs,
};
use super::harness::conformance_test;
use super::{StoreFactory, Verdict};
use crate::job::{Job, JobId, JobStatus, Progress};
use crate::store::{JobDelete, JobQuery, JobUpdate, Order, StatusCount, Store};

conformance_test!(store,
    /// Every field of a job, at the edges of its range, is stored and read
    /// back unchanged.
    insert_then_get_round_trips_every_field => round_trip
);

async fn round_trip<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    let payload = json!({
        "to": "ford@example.com",
        "items": [1, 2.5, "x", null, {"nested": true}],
        "unicode": "žluťoučký kůň 🐎 \"quoted\" \\ back",
        "big": u64::MAX,
        "negative": i64::MIN,
    });
    let mut full = in_status(job_at("send email", payload, t), JobStatus::Retrying);
    full.reference = Some("order-42".into());
    full.priority = 7;
    full.run_at = "9000-01-01T00:00:00.123456Z".parse().expect("a valid time");
    full.expires_at = Some("1999-12-31T23:59:59.999999Z".parse().expect("a valid time"));
    full.attempts = 3;
    full.max_attempts = Some(5);
    full.last_error = Some("upstream said 503 — try later".into());
    full.result = Some(json!({"partial": [1, 2, 3]}));
    full.progress = Some(Progress {
        current: 3,
        total: u64::try_from(i64::MAX).unwrap_or(u64::MAX),
    });
    full.logs = vec![
        line("created", 0, t, None),
        line(
            "started",
            1,
            t,
            Some(json!({"worker": 3, "tags": ["a", "b"]})),
        ),
    ];

    let bare = job("t", serde_json::Value::Null);

    let mut extreme = in_status(job("t", json!("just a string")), JobStatus::Completed);
    extreme.priority = u32::MAX;
    extreme.attempts = u32::MAX;
    extreme.max_attempts = Some(u32::MAX);
    extreme.result = Some(json!(null));
    extreme.reference = Some(String::new());
    extreme.created_at = "1970-01-01T00:00:00Z".parse().expect("a valid time");
    extreme.finished_at = Some("2262-04-12T00:00:00.000001Z".parse().expect("a valid time"));

    let jobs = vec![full, bare, extreme];
    insert(&store, &jobs).await;
    for want in &jobs {
        assert_same_job(
            &get(&store, want.id).await,
            want,
            "job_get after jobs_insert",
        );
    }
    Verdict::Passed
}

conformance_test!(store,
    /// Reading a job that was never stored is `Ok(None)`, not an error.
    get_of_an_unknown_id_is_none => unknown_get
);

async fn unknown_get<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    insert(&store, &[job("t", json!(1))]).await;
    let found = store
        .job_get(JobId::new())
        .await
        .unwrap_or_else(|e| panic!("job_get failed: {e}"));
    assert!(found.is_none(), "job_get of an unknown id gave {found:?}");
    Verdict::Passed
}

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
    /// `jobs_insert_owned` (how a queue hands an ephemeral store its final
    /// jobs) stores exactly what `jobs_insert` would, every field.
    owned_insert_stores_what_insert_stores => owned_insert
);

async fn owned_insert<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let mut done = in_status(job("t", json!({"n": 1})), JobStatus::Completed);
    done.attempts = 1;
    done.finished_at = Some(now());
    done.result = Some(json!("ok"));
    done.logs.push(line("completed", 1, now(), None));
    let waiting = job("t", json!(2));
    let want = vec![done, waiting];
    if let Err((err, back)) = store.jobs_insert_owned(want.clone()).await {
        panic!(
            "jobs_insert_owned failed: {err} ({} jobs handed back)",
            back.len()
        );
    }
    for job in &want {
        assert_same_job(&get(&store, job.id).await, job, "a job inserted owned");
    }
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
    /// `jobs_pending` returns exactly the jobs not in a final state (a
    /// `running` one as running, cut off by a crash), each as stored, with
    /// its attempts and logs.
    pending_returns_every_job_not_final_as_stored => pending
);

async fn pending<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    let mut jobs = Vec::new();
    for (n, status) in JobStatus::ALL.into_iter().enumerate() {
        let mut j = in_status(job(&format!("task {status}"), json!({ "n": n })), status);
        j.attempts = n as u32;
        j.logs = vec![line(
            &format!("line of the {status} job"),
            j.attempts,
            t,
            None,
        )];
        jobs.push(j);
    }
    insert(&store, &jobs).await;
    let got = store
        .jobs_pending()
        .await
        .unwrap_or_else(|e| panic!("jobs_pending failed: {e}"));
    let want: Vec<Job> = jobs
        .iter()
        .filter(|j| !j.status.is_final())
        .cloned()
        .collect();
    assert_eq!(
        ids(&got),
        ids(&want),
        "jobs_pending must return the scheduled, ready, running and retrying jobs"
    );
    for w in &want {
        let g = got.iter().find(|g| g.id == w.id).expect("checked above");
        assert_same_job(g, w, "a job from jobs_pending");
    }
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

conformance_test!(store,
    /// `jobs_query` selects by status, task, reference and creation time
    /// (from inclusive, to exclusive), combined; empty filters select all.
    query_filters_by_status_task_reference_and_creation_time => query_filters
);

async fn query_filters<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    let specs = [
        ("mail", JobStatus::Ready, Some("r1"), 0),
        ("mail", JobStatus::Completed, Some("r2"), 1),
        ("mail", JobStatus::Buried, None, 2),
        ("sms", JobStatus::Ready, Some("r1"), 3),
        ("sms", JobStatus::Scheduled, None, 4),
        ("push", JobStatus::Cancelled, Some("r3"), 5),
    ];
    let jobs: Vec<Job> = specs
        .iter()
        .map(|(task, status, reference, offset)| {
            let mut j = in_status(job_at(task, json!(offset), secs(t, *offset)), *status);
            j.reference = reference.map(str::to_owned);
            j.logs = vec![line("created", 0, j.created_at, None)];
            j
        })
        .collect();
    insert(&store, &jobs).await;
    let pick = |indexes: &[usize]| -> Vec<JobId> {
        let picked: Vec<Job> = indexes.iter().map(|&i| jobs[i].clone()).collect();
        ids(&picked)
    };
    let cases: Vec<(&str, JobQuery, Vec<JobId>)> = vec![
        ("everything", JobQuery::default(), pick(&[0, 1, 2, 3, 4, 5])),
        (
            "one status",
            JobQuery::default().status(JobStatus::Ready),
            pick(&[0, 3]),
        ),
        (
            "two statuses",
            JobQuery::default()
                .status(JobStatus::Buried)
                .status(JobStatus::Cancelled),
            pick(&[2, 5]),
        ),
        (
            "one task",
            JobQuery::default().task("mail"),
            pick(&[0, 1, 2]),
        ),
        (
            "two tasks",
            JobQuery::default().task("sms").task("push"),
            pick(&[3, 4, 5]),
        ),
        (
            "task and status",
            JobQuery::default().task("mail").status(JobStatus::Ready),
            pick(&[0]),
        ),
        (
            "reference",
            JobQuery::default().reference("r1"),
            pick(&[0, 3]),
        ),
        (
            "creation time, from inclusive to exclusive",
            JobQuery::default().created_between(secs(t, 1), secs(t, 4)),
            pick(&[1, 2, 3]),
        ),
        (
            "everything at once",
            JobQuery::default()
                .task("sms")
                .status(JobStatus::Ready)
                .reference("r1")
                .created_between(t, secs(t, 10)),
            pick(&[3]),
        ),
        (
            "nothing matches",
            JobQuery::default().task("fax"),
            Vec::new(),
        ),
    ];
    for (what, query, want) in cases {
        let got = store
            .jobs_query(&query)
            .await
            .unwrap_or_else(|e| panic!("jobs_query ({what}) failed: {e}"));
        assert_eq!(ids(&got), want, "jobs_query: {what}");
        for g in &got {
            let w = jobs.iter().find(|j| j.id == g.id).expect("checked above");
            assert_same_job(
                g,
                w,
                &format!("a job from jobs_query ({what}), with its logs"),
            );
        }
    }
    Verdict::Passed
}

conformance_test!(store,
    /// `jobs_query` returns newest first by default, or oldest first, by
    /// id (not by the `created_at` field); offset and limit page through
    /// the results.
    query_orders_by_id_and_pages => query_pages
);

async fn query_pages<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    // Thirteen jobs made in order (ids are UUIDv7, so they sort in the
    // order made): ten a second apart, then three at the same instant.
    let mut jobs: Vec<Job> = (0..10)
        .map(|n| job_at("page", json!(n), secs(t, n)))
        .collect();
    jobs.extend((10..13).map(|n| job_at("page", json!(n), secs(t, 10))));
    // Creation times that disagree with the ids (as an imported job's
    // might): the order is still the ids'.
    jobs[4].created_at = secs(t, -60);
    // Insert out of order: order must come from the data, not insertion.
    let mut shuffled = jobs.clone();
    shuffled.reverse();
    shuffled.swap(2, 7);
    insert(&store, &shuffled).await;
    let oldest: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    let newest: Vec<JobId> = oldest.iter().rev().copied().collect();
    let run = |query: JobQuery| {
        let store = store.clone();
        async move {
            store
                .jobs_query(&query)
                .await
                .unwrap_or_else(|e| panic!("jobs_query failed: {e}"))
                .into_iter()
                .map(|j| j.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        run(JobQuery::default()).await,
        newest,
        "newest first is the default"
    );
    assert_eq!(
        run(JobQuery::default().order(Order::OldestFirst)).await,
        oldest,
        "oldest first"
    );
    assert_eq!(
        run(JobQuery::default()
            .order(Order::OldestFirst)
            .offset(2)
            .limit(3))
        .await,
        oldest[2..5].to_vec(),
        "a page, oldest first"
    );
    assert_eq!(
        run(JobQuery::default().offset(9).limit(10)).await,
        newest[9..].to_vec(),
        "the last page, newest first"
    );
    assert_eq!(
        run(JobQuery::default().limit(1)).await,
        newest[..1].to_vec(),
        "limit 1"
    );
    assert!(
        run(JobQuery::default().offset(13)).await.is_empty(),
        "an offset past the end"
    );
    assert!(
        run(JobQuery::default().limit(0)).await.is_empty(),
        "limit 0"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// `jobs_count` gives one count per task and status that has jobs, and
    /// follows updates.
    count_groups_by_task_and_status => counts
);

async fn counts<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(job("a", json!(null)));
    }
    for _ in 0..2 {
        jobs.push(in_status(job("a", json!(null)), JobStatus::Completed));
    }
    jobs.push(in_status(job("b", json!(null)), JobStatus::Buried));
    insert(&store, &jobs).await;
    let counted = |counts: Vec<StatusCount>| -> BTreeMap<(String, JobStatus), u64> {
        let mut map = BTreeMap::new();
        for c in counts {
            assert!(c.count > 0, "jobs_count must leave out zero counts: {c:?}");
            let previous = map.insert((c.task.clone(), c.status), c.count);
            assert!(previous.is_none(), "jobs_count repeats {c:?}");
        }
        map
    };
    let want = |entries: &[(&str, JobStatus, u64)]| -> BTreeMap<(String, JobStatus), u64> {
        entries
            .iter()
            .map(|(t, s, n)| ((t.to_string(), *s), *n))
            .collect()
    };
    let got = counted(
        store
            .jobs_count()
            .await
            .unwrap_or_else(|e| panic!("jobs_count failed: {e}")),
    );
    assert_eq!(
        got,
        want(&[
            ("a", JobStatus::Ready, 3),
            ("a", JobStatus::Completed, 2),
            ("b", JobStatus::Buried, 1)
        ])
    );

    let mut moved = jobs[0].clone();
    moved.status = JobStatus::Running;
    moved.attempts = 1;
    record(&store, &mut moved, Vec::new()).await;
    let got = counted(
        store
            .jobs_count()
            .await
            .unwrap_or_else(|e| panic!("jobs_count failed: {e}")),
    );
    assert_eq!(
        got,
        want(&[
            ("a", JobStatus::Ready, 2),
            ("a", JobStatus::Running, 1),
            ("a", JobStatus::Completed, 2),
            ("b", JobStatus::Buried, 1)
        ])
    );
    Verdict::Passed
}

conformance_test!(store,
    /// `jobs_delete` removes only final jobs of the given statuses and
    /// tasks that finished before the cut-off, oldest first up to the
    /// limit, with their logs, and returns how many.
    delete_removes_only_matching_final_jobs_oldest_first => deletes
);

async fn deletes<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    let finished = |task: &str, status: JobStatus, at: i64| {
        let mut j = in_status(job(task, json!(at)), status);
        j.finished_at = Some(secs(t, at));
        j.logs = vec![line("a line that must go with its job", 1, t, None)];
        j
    };
    let done_1 = finished("a", JobStatus::Completed, 1);
    let done_2 = finished("a", JobStatus::Completed, 2);
    let done_3 = finished("a", JobStatus::Completed, 3);
    let buried_b = finished("b", JobStatus::Buried, 1);
    let cancelled = finished("a", JobStatus::Cancelled, 4);
    let expired = finished("a", JobStatus::Expired, 0);
    let waiting = job("a", json!("still pending"));
    let jobs = [
        done_3.clone(),
        done_1.clone(),
        buried_b.clone(),
        done_2.clone(),
        cancelled.clone(),
        expired.clone(),
        waiting.clone(),
    ];
    insert(&store, &jobs).await;
    let delete = |statuses: &[JobStatus],
                  tasks: &[&str],
                  before: Option<i64>,
                  limit: Option<usize>| JobDelete {
        statuses: statuses.to_vec(),
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
        finished_before: before.map(|s| secs(t, s)),
        limit,
    };
    let removed = |params: JobDelete| {
        let store = store.clone();
        async move {
            store
                .jobs_delete(&params)
                .await
                .unwrap_or_else(|e| panic!("jobs_delete failed: {e}"))
        }
    };

    let n = removed(delete(
        &[JobStatus::Completed, JobStatus::Ready],
        &[],
        None,
        Some(2),
    ))
    .await;
    assert_eq!(
        n, 2,
        "two completed jobs, oldest first (ready jobs are never removed)"
    );
    for (j, present) in [
        (&done_1, false),
        (&done_2, false),
        (&done_3, true),
        (&waiting, true),
    ] {
        let found = store
            .job_get(j.id)
            .await
            .unwrap_or_else(|e| panic!("job_get failed: {e}"));
        assert_eq!(
            found.is_some(),
            present,
            "job {:?} after deleting the two oldest completed",
            j.payload
        );
    }
    assert_eq!(
        removed(delete(&[JobStatus::Buried], &["a"], None, None)).await,
        0,
        "no buried job of task a"
    );
    assert_eq!(
        removed(delete(&[JobStatus::Buried], &["b"], None, None)).await,
        1,
        "the buried job of task b"
    );
    assert_eq!(
        removed(delete(
            &[JobStatus::Cancelled, JobStatus::Expired],
            &[],
            Some(4),
            None
        ))
        .await,
        1,
        "only the expired job finished before the cut-off (the cancelled one finished at it)"
    );
    assert!(
        store.job_get(cancelled.id).await.ok().flatten().is_some(),
        "finished at the cut-off: kept"
    );
    assert_eq!(
        removed(delete(&[], &[], None, None)).await,
        0,
        "no statuses, nothing removed"
    );

    // The logs went with their jobs: a job stored again under a removed id
    // starts with none.
    let mut again = done_1.clone();
    again.logs.clear();
    insert(&store, &[again.clone()]).await;
    assert_same_job(
        &get(&store, again.id).await,
        &again,
        "a job stored again under a deleted id",
    );
    Verdict::Passed
}

conformance_test!(store,
    /// Pruning completed jobs the way retention does (only `Completed`, no
    /// task filter) removes the ones that finished first, whatever order
    /// they were stored or completed in, and keeps a completed job with no
    /// finish time from any cut-off.
    pruning_completed_jobs_removes_the_earliest_finished => prunes
);

async fn prunes<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    let completed = |at: i64| {
        let mut j = in_status(job("a", json!(at)), JobStatus::Completed);
        j.finished_at = Some(secs(t, at));
        j
    };
    // Stored out of finish order.
    let (j1, j2, j3, j5) = (completed(1), completed(2), completed(3), completed(5));
    insert(&store, &[j3.clone(), j1.clone(), j5.clone()]).await;
    // Completed by an update, after a job that finished later.
    let mut j2_running = in_status(j2.clone(), JobStatus::Running);
    j2_running.finished_at = None;
    insert(&store, &[j2_running.clone()]).await;
    store
        .jobs_update(&[JobUpdate::of(&j2, Vec::new())])
        .await
        .unwrap_or_else(|e| panic!("jobs_update failed: {e}"));
    let mut unfinished = in_status(job("a", json!("no finish time")), JobStatus::Completed);
    unfinished.finished_at = None;
    insert(&store, &[unfinished.clone()]).await;

    let prune = |before: Option<i64>, limit: Option<usize>| {
        let store = store.clone();
        async move {
            store
                .jobs_delete(&JobDelete {
                    statuses: vec![JobStatus::Completed],
                    tasks: Vec::new(),
                    finished_before: before.map(|s| secs(t, s)),
                    limit,
                })
                .await
                .unwrap_or_else(|e| panic!("jobs_delete failed: {e}"))
        }
    };
    let present = |id| {
        let store = store.clone();
        async move {
            store
                .job_get(id)
                .await
                .unwrap_or_else(|e| panic!("job_get failed: {e}"))
                .is_some()
        }
    };
    assert_eq!(prune(Some(4), Some(2)).await, 2, "two, by the limit");
    assert!(!present(j1.id).await, "finished first: removed");
    assert!(!present(j2.id).await, "finished second: removed");
    assert!(present(j3.id).await, "finished third: beyond the limit");
    assert_eq!(prune(Some(4), None).await, 1, "the one left before 4 s");
    assert!(
        !present(j3.id).await,
        "finished before the cut-off: removed"
    );
    assert!(present(j5.id).await, "finished after the cut-off: kept");
    assert!(
        present(unfinished.id).await,
        "no finish time: never before a cut-off"
    );
    let counted: u64 = store
        .jobs_count()
        .await
        .unwrap_or_else(|e| panic!("jobs_count failed: {e}"))
        .iter()
        .filter(|c| c.status == JobStatus::Completed)
        .map(|c| c.count)
        .sum();
    assert_eq!(counted, 2, "counts follow the removals");
    assert_eq!(
        prune(None, Some(10)).await,
        2,
        "without a cut-off: all of them"
    );
    Verdict::Passed
}

conformance_test!(store,
    /// Many callers at once, on several threads, each inserting and
    /// updating its own jobs: every job ends in the state its writer left.
    concurrent_writers_lose_nothing => concurrent
);

async fn concurrent<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    const WRITERS: usize = 8;
    const ROUNDS: usize = 25;
    const BATCH: usize = 4;

    async fn writer(store: Arc<dyn Store>, w: usize) -> Vec<Job> {
        let task = format!("writer {w}");
        let mut mine = Vec::new();
        for round in 0..ROUNDS {
            let mut jobs: Vec<Job> = (0..BATCH)
                .map(|i| job(&task, json!([w, round, i])))
                .collect();
            store
                .jobs_insert(&jobs)
                .await
                .unwrap_or_else(|e| panic!("{task}: insert failed: {e}"));
            let mut updates = Vec::new();
            for (i, j) in jobs.iter_mut().enumerate() {
                j.status = JobStatus::Running;
                j.attempts = 1;
                updates.push(JobUpdate::of(j, Vec::new()));
                if i % 2 == 0 {
                    j.status = JobStatus::Completed;
                    j.finished_at = Some(now());
                    j.result = Some(json!(i));
                    updates.push(JobUpdate::of(j, vec![line("done", 1, now(), None)]));
                    j.logs.push(
                        updates
                            .last()
                            .map(|u| u.logs[0].clone())
                            .expect("just pushed"),
                    );
                }
            }
            store
                .jobs_update(&updates)
                .await
                .unwrap_or_else(|e| panic!("{task}: update failed: {e}"));
            mine.extend(jobs);
        }
        mine
    }

    // Half the writers on threads of their own, half interleaved here.
    let mut threads = Vec::new();
    for w in 0..WRITERS / 2 {
        let store = store.clone();
        let (done, written) = futures::channel::oneshot::channel();
        std::thread::spawn(move || {
            let _ = done.send(futures::executor::block_on(writer(store, w)));
        });
        threads.push(written);
    }
    let here = futures::future::join_all((WRITERS / 2..WRITERS).map(|w| writer(store.clone(), w)));
    let (here, there) = futures::join!(here, futures::future::join_all(threads));
    let mut written: Vec<Job> = here.into_iter().flatten().collect();
    for jobs in there {
        written.extend(jobs.unwrap_or_else(|_| panic!("a writer thread panicked")));
    }
    assert_eq!(written.len(), WRITERS * ROUNDS * BATCH);
    let stored = store
        .jobs_query(&JobQuery::default().limit(usize::MAX))
        .await
        .unwrap_or_else(|e| panic!("jobs_query failed: {e}"));
    assert_eq!(
        ids(&stored),
        ids(&written),
        "every inserted job is stored, once"
    );
    for w in &written {
        let g = stored.iter().find(|g| g.id == w.id).expect("checked above");
        assert_same_job(g, w, "a job written by a concurrent writer");
    }
    Verdict::Passed
}

conformance_test!(store,
    /// Five thousand jobs inserted in one call, then updated in one call,
    /// are all stored.
    large_batches_are_stored_whole => large_batches
);

async fn large_batches<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    const N: usize = 5_000;
    let mut jobs: Vec<Job> = (0..N)
        .map(|n| job("bulk", json!({ "n": n, "pad": "x".repeat(n % 64) })))
        .collect();
    insert(&store, &jobs).await;
    let pending = store
        .jobs_pending()
        .await
        .unwrap_or_else(|e| panic!("jobs_pending failed: {e}"));
    assert_eq!(pending.len(), N, "every job of one large insert is pending");
    let t = now();
    let updates: Vec<JobUpdate> = jobs
        .iter_mut()
        .map(|j| {
            j.status = JobStatus::Completed;
            j.attempts = 1;
            j.finished_at = Some(t);
            JobUpdate::of(j, Vec::new())
        })
        .collect();
    store
        .jobs_update(&updates)
        .await
        .unwrap_or_else(|e| panic!("jobs_update of {N} jobs failed: {e}"));
    let counts = store
        .jobs_count()
        .await
        .unwrap_or_else(|e| panic!("jobs_count failed: {e}"));
    assert_eq!(
        counts,
        vec![StatusCount {
            task: "bulk".into(),
            status: JobStatus::Completed,
            count: N as u64
        }]
    );
    assert!(
        store
            .jobs_pending()
            .await
            .map(|p| p.is_empty())
            .unwrap_or(false),
        "nothing is left pending"
    );
    assert_same_job(
        &get(&store, jobs[N / 2].id).await,
        &jobs[N / 2],
        "a job from the middle of the batch",
    );
    Verdict::Passed
}
