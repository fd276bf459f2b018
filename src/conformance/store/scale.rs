//! Scale: concurrent callers lose nothing, and large batches are stored
//! whole.

use std::sync::Arc;

use serde_json::json;

use crate::conformance::fixtures::{assert_same_job, fresh, get, ids, insert, job, line, now};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{Job, JobStatus};
use crate::store::{JobQuery, JobUpdate, StatusCount, Store};

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
