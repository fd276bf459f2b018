//! The store closed and opened again, as the next process would: nothing
//! pending is lost, attempts are kept, final jobs stay final.
//!
//! These need [`StoreFactory::reopens`]; for a factory without it they
//! return [`Verdict::Skipped`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::fixtures::{
    assert_same_job, fresh, get, ids, in_status, insert, job, line, now, record,
};
use super::harness::conformance_test;
use super::queue::{outcome, queue_on, Trace};
use super::{StoreFactory, Verdict};
use crate::context::JobContext;
use crate::error::JobError;
use crate::job::{Job, JobStatus};
use crate::store::Store;

const CANNOT_REOPEN: &str = "the factory cannot reopen a store (StoreFactory::reopens is false)";

async fn close(store: Arc<dyn Store>) {
    if let Err(err) = store.close().await {
        panic!("closing the store failed: {err}");
    }
}

async fn reopen<F: StoreFactory>(factory: &F, place: &F::Place) -> Arc<dyn Store> {
    factory
        .reopen(place)
        .await
        .unwrap_or_else(|e| panic!("reopening the store failed: {e}"))
}

conformance_test!(restart,
    /// Closed and reopened, the store gives back every pending job as it
    /// was (a running one as running, attempts and logs kept), and every
    /// final job.
    restart_keeps_every_pending_job_with_its_attempts => store_restart
);

async fn store_restart<F: StoreFactory>(factory: F) -> Verdict {
    if !factory.reopens() {
        return Verdict::Skipped(CANNOT_REOPEN);
    }
    let (store, place) = fresh(&factory).await;
    let t = now();
    let mut jobs: Vec<Job> = JobStatus::ALL
        .into_iter()
        .enumerate()
        .map(|(n, status)| {
            let mut j = in_status(job("restart", json!({ "n": n })), status);
            j.attempts = n as u32;
            j.logs = vec![line("created", 0, t, None)];
            j
        })
        .collect();
    insert(&store, &jobs).await;
    // A ready job starts its third attempt, then the process "dies".
    let running = &mut jobs[1];
    running.status = JobStatus::Running;
    running.attempts = 3;
    record(
        &store,
        running,
        vec![line("started", 3, t, Some(json!({"worker": 1})))],
    )
    .await;
    let counts = store
        .jobs_count()
        .await
        .unwrap_or_else(|e| panic!("jobs_count: {e}"));
    close(store).await;

    let store = reopen(&factory, &place).await;
    let pending = store
        .jobs_pending()
        .await
        .unwrap_or_else(|e| panic!("jobs_pending: {e}"));
    let want: Vec<Job> = jobs
        .iter()
        .filter(|j| !j.status.is_final())
        .cloned()
        .collect();
    assert_eq!(ids(&pending), ids(&want), "every pending job is back");
    for w in &want {
        let g = pending
            .iter()
            .find(|g| g.id == w.id)
            .expect("checked above");
        assert_same_job(g, w, "a pending job after reopening");
    }
    for w in jobs.iter().filter(|j| j.status.is_final()) {
        assert_same_job(&get(&store, w.id).await, w, "a final job after reopening");
    }
    let counts_after = store
        .jobs_count()
        .await
        .unwrap_or_else(|e| panic!("jobs_count: {e}"));
    assert_eq!(counts_after, counts, "counts after reopening");
    close(store).await;
    Verdict::Passed
}

conformance_test!(restart,
    /// A queue shut down mid-run, and a job cut off as if by a crash: a
    /// queue on the reopened store runs every pending job, counts the
    /// interrupted attempts, and never reruns a finished job.
    restart_queue_resumes_where_the_last_one_stopped => queue_restart
);

async fn queue_restart<F: StoreFactory>(factory: F) -> Verdict {
    if !factory.reopens() {
        return Verdict::Skipped(CANNOT_REOPEN);
    }
    tokio::time::pause();
    let (store, place) = fresh(&factory).await;

    // First life: two jobs finish, one is still running at shutdown, one
    // waits for an hour, one waits for a task this process does not have.
    let queue = queue_on(&factory, &store).await;
    let first: Trace<(String, u32)> = Trace::default();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let t = first.clone();
    queue
        .define("work")
        .action(move |job: JobContext<String>| {
            let (t, tx) = (t.clone(), started_tx.clone());
            async move {
                t.push((job.payload.clone(), job.attempt()));
                if job.payload == "hang" {
                    let _ = tx.send(());
                    std::future::pending::<()>().await;
                }
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let create = |payload: &str| queue.create("work", payload.to_owned());
    let a = create("a").await.unwrap_or_else(|e| panic!("create: {e}"));
    let b = create("b").await.unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(outcome(&a).await.status, JobStatus::Completed);
    assert_eq!(outcome(&b).await.status, JobStatus::Completed);
    let hang = create("hang")
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let orphan = queue
        .create("other", ())
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(started.recv().await, Some(()), "the hanging job started");
    // Created last, right before the shutdown: on a paused clock, time
    // jumps to the next timer whenever the runtime waits on a store's own
    // I/O thread, so a delayed job made earlier could come due already.
    let later = create("later")
        .delay("1h")
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let report = queue
        .shutdown(Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("shutdown: {e}"));
    assert_eq!(
        report.aborted,
        vec![hang.id()],
        "the hanging job was cut off at shutdown"
    );
    // The orphan's process "dies" while running it: recorded as running.
    let mut cut_off = get(&store, orphan.id()).await;
    cut_off.status = JobStatus::Running;
    cut_off.attempts = 1;
    record(&store, &mut cut_off, Vec::new()).await;
    drop(queue);
    close(store).await;

    // Second life, on the reopened store.
    let store = reopen(&factory, &place).await;
    let pending = store
        .jobs_pending()
        .await
        .unwrap_or_else(|e| panic!("jobs_pending: {e}"));
    let mut pending_ids: Vec<_> = pending.iter().map(|j| j.id).collect();
    pending_ids.sort();
    let mut want = vec![hang.id(), later.id(), orphan.id()];
    want.sort();
    assert_eq!(pending_ids, want, "the pending jobs after reopening");
    let queue = queue_on(&factory, &store).await;
    let second: Trace<(String, u32)> = Trace::default();
    let t = second.clone();
    queue
        .define("work")
        .action(move |job: JobContext<String>| {
            let t = t.clone();
            async move {
                t.push((job.payload.clone(), job.attempt()));
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let t = second.clone();
    queue
        .define("other")
        .action(move |job: JobContext<()>| {
            let t = t.clone();
            async move {
                t.push(("other".into(), job.attempt()));
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .concurrency(2)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for id in [hang.id(), later.id(), orphan.id()] {
        let result = queue
            .result(id)
            .await
            .unwrap_or_else(|e| panic!("result of {id}: {e}"));
        assert_eq!(
            result.status,
            JobStatus::Completed,
            "job {id} after the restart"
        );
    }
    queue.job(hang.id()).await.unwrap_or_else(|e| panic!("{e}"));
    for (id, attempts) in [
        (a.id(), 1),
        (b.id(), 1),
        (hang.id(), 2),
        (later.id(), 1),
        (orphan.id(), 2),
    ] {
        let stored = get(&store, id).await;
        assert_eq!(
            (stored.status, stored.attempts),
            (JobStatus::Completed, attempts),
            "job {id}"
        );
    }
    let mut rerun = second.items();
    rerun.sort();
    assert_eq!(
        rerun,
        vec![("hang".into(), 2), ("later".into(), 1), ("other".into(), 2)],
        "the second life ran the pending jobs, and nothing that had finished"
    );
    queue
        .shutdown(Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("shutdown: {e}"));
    close(store).await;
    Verdict::Passed
}
