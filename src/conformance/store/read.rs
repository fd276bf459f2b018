//! Reads: `job_get` of a known and an unknown id, `jobs_query` by its
//! filters, in id order (ids are UUIDv7, so by creation) and paged with
//! offset and limit, and `jobs_count` by task and status.

use std::collections::BTreeMap;

use serde_json::json;

use crate::conformance::fixtures::{
    assert_same_job, fresh, ids, in_status, insert, job, job_at, line, now, record, secs,
};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{Job, JobId, JobStatus};
use crate::store::{JobQuery, Order, StatusCount};

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
