//! Deletes: only final jobs of the given statuses and tasks are removed,
//! oldest first up to the limit, with their logs, as retention prunes.

use serde_json::json;

use crate::conformance::fixtures::{
    assert_same_job, fresh, get, in_status, insert, job, line, now, secs,
};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::JobStatus;
use crate::store::{JobDelete, JobUpdate};

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
    /// `job_delete` removes one final job with its log, and never a
    /// pending one or one that does not exist.
    delete_one_removes_a_final_job_and_only_a_final_one => delete_one
);

async fn delete_one<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let t = now();
    let mut done = in_status(job("a", json!(1)), JobStatus::Buried);
    done.finished_at = Some(t);
    done.logs = vec![line("a line that must go with its job", 1, t, None)];
    let other = in_status(job("a", json!(2)), JobStatus::Completed);
    let waiting = job("a", json!("still pending"));
    insert(&store, &[done.clone(), other.clone(), waiting.clone()]).await;
    let removed = |id| {
        let store = store.clone();
        async move {
            store
                .job_delete(id)
                .await
                .unwrap_or_else(|e| panic!("job_delete({id}) failed: {e}"))
        }
    };
    assert!(removed(done.id).await, "a buried job is removed");
    assert!(
        store.job_get(done.id).await.ok().flatten().is_none(),
        "and is gone"
    );
    assert!(!removed(done.id).await, "a second delete finds nothing");
    assert!(!removed(waiting.id).await, "a pending job is never removed");
    assert_same_job(&get(&store, waiting.id).await, &waiting, "the pending job");
    assert_same_job(&get(&store, other.id).await, &other, "another final job");
    assert!(!removed(crate::job::JobId::new()).await, "an unknown id");
    Verdict::Passed
}
