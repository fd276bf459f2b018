//! Shared stores: the [`SharedStore`] capability, for a store many
//! processes use at once. Claims take due jobs of the tasks asked for,
//! best first, never one another owner holds, never more than asked; a
//! claim is a lease its owner renews by heartbeat; a lease that lapsed is
//! rescued back to the queue; a job given back is claimable again;
//! cancels, expiry and the next due time respect leases.
//!
//! These tests run only on a store whose
//! [`Store::shared`](crate::store::Store::shared) is `Some`; on any other
//! they return [`Verdict::Skipped`]. Every time is passed in (`due_by`,
//! `lease_until`, the `now` of a rescue): no test waits for a lease to
//! lapse, it asks the store to rescue as of a later time.
//!
//! Where the [`SharedStore`] docs leave a detail open, a test pins what
//! kessel's PostgreSQL store does and says so.
//!
//! One file per concern:
//!
//! - `claims.rs`: what a claim takes, and which node it names;
//! - `leases.rs`: leases, heartbeats, rescue and release;
//! - `cancel.rs`: cancels of held and unheld jobs;
//! - `due.rs`: expiry, the next due time, wake-ups;
//! - `limits.rs`: running limits per task, group and tag;
//! - `rates.rs`: rate limits per task, tag and group, over time;
//! - `caps.rs`: an owner's own caps on a claim (rate limits per process).
//!
//! This file holds the helpers they share.
//!
//! [`Verdict::Skipped`]: crate::conformance::Verdict::Skipped

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::conformance::fixtures::{assert_same_job, job_at, secs};
use crate::job::{Job, JobId, JobStatus};
use crate::store::{CancelOutcome, HeartbeatReply, JobClaim, JobHeartbeat, SharedStore};

/// Why the tests of this section skip a store.
const NOT_SHARED: &str = "the store is not shared (Store::shared is None)";

/// Opens a fresh store and binds its shared capability to `$shared`, or
/// returns [`Verdict::Skipped`] for a store without one.
///
/// [`Verdict::Skipped`]: crate::conformance::Verdict::Skipped
macro_rules! shared_store {
    ($factory:expr => $store:ident, $shared:ident) => {
        let ($store, _place) = $crate::conformance::fixtures::fresh(&$factory).await;
        let Some($shared) = $store.shared() else {
            return $crate::conformance::Verdict::Skipped(
                $crate::conformance::store::shared::NOT_SHARED,
            );
        };
    };
}

/// A job of `task` due at `at` (created then, so ready).
fn due(task: &str, n: u32, at: DateTime<Utc>) -> Job {
    job_at(task, json!(n), at)
}

/// A job of `task` created at `created`, scheduled for `run_at`.
fn delayed(task: &str, n: u32, created: DateTime<Utc>, run_at: DateTime<Utc>) -> Job {
    let mut job = job_at(task, json!(n), created);
    job.status = JobStatus::Scheduled;
    job.run_at = run_at;
    job
}

/// Claims for `owner`, or fails the test saying why.
async fn claim(
    shared: &dyn SharedStore,
    owner: Uuid,
    tasks: &[&str],
    due_by: DateTime<Utc>,
    limit: usize,
    lease_until: DateTime<Utc>,
) -> Vec<Job> {
    let params = JobClaim::new(owner, tasks.iter().copied(), due_by, limit, lease_until);
    shared
        .jobs_claim(&params)
        .await
        .unwrap_or_else(|e| panic!("jobs_claim({params:?}) failed: {e}"))
}

/// Renews `owner`'s leases of `ids`, or fails the test saying why.
async fn heartbeat(
    shared: &dyn SharedStore,
    owner: Uuid,
    ids: &[JobId],
    lease_until: DateTime<Utc>,
) -> HeartbeatReply {
    let params = JobHeartbeat {
        owner,
        ids: ids.to_vec(),
        lease_until,
    };
    shared
        .jobs_heartbeat(&params)
        .await
        .unwrap_or_else(|e| panic!("jobs_heartbeat({params:?}) failed: {e}"))
}

/// Rescues the leases lapsed before `now`, or fails the test saying why.
async fn rescue(shared: &dyn SharedStore, now: DateTime<Utc>) -> u64 {
    shared
        .jobs_rescue(now)
        .await
        .unwrap_or_else(|e| panic!("jobs_rescue({now}) failed: {e}"))
}

/// Gives `ids` back for `owner`, or fails the test saying why.
async fn release(shared: &dyn SharedStore, owner: Uuid, ids: &[JobId]) {
    shared
        .jobs_release(owner, ids)
        .await
        .unwrap_or_else(|e| panic!("jobs_release({owner}, {ids:?}) failed: {e}"))
}

/// Cancels `id` as of `now`, or fails the test saying why.
async fn cancel(shared: &dyn SharedStore, id: JobId, now: DateTime<Utc>) -> CancelOutcome {
    shared
        .job_cancel(id, now)
        .await
        .unwrap_or_else(|e| panic!("job_cancel({id}) failed: {e}"))
}

/// Whether `stored` is a status a store may keep for a job it leased
/// that was `before` the claim: the same, or running with the attempt
/// counted (a claim may count it, see `SharedStore::jobs_claim`).
fn held_as(stored: JobStatus, before: JobStatus) -> bool {
    stored == before || stored == JobStatus::Running
}

/// The ids of `jobs`, as a set.
fn id_set<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> BTreeSet<JobId> {
    jobs.into_iter().map(|j| j.id).collect()
}

/// Checks that `claimed` are exactly `want`, each handed over as stored.
/// A claim hands over a job's state; its log is not part of the contract
/// (the PostgreSQL store leaves it out), so logs are not compared.
#[track_caller]
fn assert_claimed(claimed: &[Job], want: &[&Job], context: &str) {
    assert_eq!(
        id_set(claimed),
        id_set(want.iter().copied()),
        "{context}: the jobs claimed"
    );
    for w in want {
        let mut got = claimed
            .iter()
            .find(|c| c.id == w.id)
            .expect("checked above")
            .clone();
        let mut w = (*w).clone();
        got.logs.clear();
        w.logs.clear();
        // Which node: pinned by its own test (`ran_by`).
        assert!(
            got.ran_by.is_some(),
            "{context}: a claimed job names its node"
        );
        got.ran_by = None;
        w.ran_by = None;
        assert_same_job(&got, &w, context);
    }
}

/// A claim of `tasks` by `owner` at `at` (due by then, at most 100),
/// with what `limits` sets.
async fn claim_limited_by(
    shared: &dyn SharedStore,
    owner: Uuid,
    tasks: &[&str],
    at: DateTime<Utc>,
    limits: impl FnOnce(&mut JobClaim),
) -> crate::store::ClaimReply {
    let mut params = JobClaim {
        owner,
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
        due_by: at,
        limit: 100,
        lease_until: secs(at, 600),
        running_limits: Vec::new(),
        group_running_limits: Vec::new(),
        places: Vec::new(),
        tag_places: Vec::new(),
        rate_limits: Vec::new(),
        group_rate_limits: Vec::new(),
        tag_limits: Vec::new(),
        now: at,
        ended: Vec::new(),
        task_caps: Vec::new(),
        tag_caps: Vec::new(),
        group_weights: Vec::new(),
    };
    limits(&mut params);
    shared
        .jobs_claim_reply(&params)
        .await
        .unwrap_or_else(|e| panic!("jobs_claim_reply({params:?}) failed: {e}"))
}

/// The limits of tag `mail`, whose tasks are `welcome` and `digest`.
fn mail(max_running: Option<u32>, rate: Option<crate::RateLimit>) -> crate::store::TagClaimLimit {
    crate::store::TagClaimLimit {
        tag: "mail".into(),
        tasks: vec!["digest".into(), "welcome".into()],
        max_running,
        rate,
    }
}

mod cancel;
mod caps;
mod claims;
mod due;
mod leases;
mod limits;
mod rates;

pub use cancel::*;
pub use caps::*;
pub use claims::*;
pub use due::*;
pub use leases::*;
pub use limits::*;
pub use rates::*;
