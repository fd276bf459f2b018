//! Loads: what a process reads at start, `jobs_pending`: every job not in
//! a final state, as stored, with its attempts and logs. (The store
//! closed and reopened first is the [`restart`](crate::conformance::restart)
//! section.)

use serde_json::json;

use crate::conformance::fixtures::{
    assert_same_job, fresh, ids, in_status, insert, job, line, now,
};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::job::{Job, JobStatus};

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
