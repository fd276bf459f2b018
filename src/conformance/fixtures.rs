//! Jobs, log lines and checks the tests share.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::StoreFactory;
use crate::job::{Job, JobId, JobStatus, LogLine};
use crate::new_job::NewJob;
use crate::store::{JobUpdate, Store};

/// A time cut to whole microseconds: the precision every store keeps.
pub(super) fn micro(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Now, to the microsecond.
pub(super) fn now() -> DateTime<Utc> {
    micro(Utc::now())
}

/// `n` seconds after `at`.
pub(super) fn secs(at: DateTime<Utc>, n: i64) -> DateTime<Utc> {
    at + chrono::Duration::seconds(n)
}

/// Opens a fresh store, or fails the test saying why.
pub(super) async fn fresh<F: StoreFactory>(factory: &F) -> (Arc<dyn Store>, F::Place) {
    match factory.fresh().await {
        Ok(opened) => opened,
        Err(err) => panic!("the factory could not open a fresh store: {err}"),
    }
}

/// A ready job of `task` created at `at`.
pub(super) fn job_at(task: &str, payload: serde_json::Value, at: DateTime<Utc>) -> Job {
    let at = micro(at);
    match NewJob::new(task, payload)
        .run_at(at)
        .into_job(at, &mut None, true)
    {
        Ok(job) => job,
        Err(err) => panic!("building a test job of {task:?}: {err}"),
    }
}

/// A ready job of `task` created now.
pub(super) fn job(task: &str, payload: serde_json::Value) -> Job {
    job_at(task, payload, now())
}

/// `job`, moved to `status` as the scheduler would leave it.
pub(super) fn in_status(mut job: Job, status: JobStatus) -> Job {
    job.status = status;
    match status {
        JobStatus::Running | JobStatus::Retrying => job.attempts = job.attempts.max(1),
        JobStatus::Completed | JobStatus::Buried => {
            job.attempts = job.attempts.max(1);
            job.finished_at = Some(job.created_at);
        }
        JobStatus::Expired | JobStatus::Cancelled => job.finished_at = Some(job.created_at),
        JobStatus::Scheduled | JobStatus::Ready => {}
    }
    job
}

/// A log line.
pub(super) fn line(
    message: &str,
    attempt: u32,
    at: DateTime<Utc>,
    data: Option<serde_json::Value>,
) -> LogLine {
    LogLine {
        at: micro(at),
        attempt,
        message: message.to_owned().into(),
        data,
    }
}

/// Records `job`'s current state, appending `logs`, and keeps them on the
/// local copy too.
pub(super) async fn record(store: &Arc<dyn Store>, job: &mut Job, logs: Vec<LogLine>) {
    let update = JobUpdate::of(job, logs.clone());
    job.logs.extend(logs);
    if let Err(err) = store.jobs_update(&[update]).await {
        panic!("jobs_update of job {} failed: {err}", job.id);
    }
}

/// Inserts jobs, or fails the test saying why.
pub(super) async fn insert(store: &Arc<dyn Store>, jobs: &[Job]) {
    if let Err(err) = store.jobs_insert(jobs).await {
        panic!("jobs_insert of {} jobs failed: {err}", jobs.len());
    }
}

/// Reads a job that must exist.
pub(super) async fn get(store: &Arc<dyn Store>, id: JobId) -> Job {
    match store.job_get(id).await {
        Ok(Some(job)) => job,
        Ok(None) => panic!("job {id} is missing from the store"),
        Err(err) => panic!("job_get({id}) failed: {err}"),
    }
}

/// Checks that a stored job is `want`: every field equal, the payload as
/// the same JSON value (a store may reformat its text).
#[track_caller]
pub(super) fn assert_same_job(got: &Job, want: &Job, context: &str) {
    let got_payload = got.payload.to_value().ok();
    let want_payload = want.payload.to_value().ok();
    assert_eq!(
        got_payload, want_payload,
        "{context}: payload of job {}",
        want.id
    );
    let mut got = got.clone();
    got.payload = want.payload.clone();
    assert_eq!(&got, want, "{context}: job {} as stored", want.id);
}

/// Ids, sorted, to compare sets of jobs.
pub(super) fn ids(jobs: &[Job]) -> Vec<JobId> {
    let mut ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    ids.sort();
    ids
}
