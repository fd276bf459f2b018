//! The `/remote/...` endpoints a remote worker calls (fetch, heartbeat,
//! complete, fail, log, progress), and their request and response
//! bodies.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Path;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;
use utoipa::ToSchema;

use super::{lease_end, Pool, Report, DEFAULT_LEASE, MAX_FETCH, MAX_LEASE, MAX_WAIT};
use crate::duration::IntoDuration;
use crate::job::JobId;
use crate::queue::Queue;
use crate::task::validate_task_name;
use crate::web::body::JsonBody;
use crate::web::dto::{integral, Done};
use crate::web::error::{ErrorBody, WebError};
use crate::web::jobs::parse_id;
use crate::web::Admin;

/// Reads a duration field.
fn duration_field(
    field: &str,
    text: Option<&str>,
    default: Duration,
    max: Duration,
) -> Result<Duration, WebError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let d = text
        .into_duration()
        .map_err(|e| WebError::invalid_field(field, format!("`{field}`: {e}")))?;
    if d > max {
        return Err(WebError::invalid_field(
            field,
            format!("`{field}` is over the limit of {}s", max.as_secs()),
        ));
    }
    Ok(d)
}

fn positive_lease(field: &str, text: Option<&str>) -> Result<Duration, WebError> {
    let lease = duration_field(field, text, DEFAULT_LEASE, MAX_LEASE)?;
    if lease.is_zero() {
        return Err(WebError::invalid_field(
            field,
            format!("`{field}` must be longer than 0"),
        ));
    }
    Ok(lease)
}

/// A remote worker's request for jobs.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FetchRequest {
    /// The tasks whose jobs it works, in order of preference.
    #[schema(min_items = 1)]
    tasks: Vec<String>,
    /// At most this many jobs (1 to 100; default 1).
    #[serde(default, deserialize_with = "integral::optional")]
    #[schema(minimum = 1, maximum = 100)]
    n: Option<usize>,
    /// How long the lease lasts without a heartbeat (`"30s"`, the default;
    /// at most 1 h).
    #[serde(default)]
    #[schema(pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$")]
    lease: Option<String>,
    /// How long to wait for a job when none is parked (`"20s"`; default
    /// none: answer at once; at most 60 s).
    #[serde(default)]
    #[schema(pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$")]
    wait: Option<String>,
}

/// A job handed to a remote worker.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LeasedJob {
    /// The job's id.
    pub(super) id: String,
    /// Its task.
    pub(super) task: String,
    /// Which attempt this is, from 1.
    pub(super) attempt: u32,
    /// The producer's reference, if any.
    pub(super) reference: Option<String>,
    /// When the job was created.
    pub(super) created_at: DateTime<Utc>,
    /// When this attempt became due.
    pub(super) run_at: DateTime<Utc>,
    /// The job's payload.
    pub(super) payload: Value,
    /// Sent back with every report on the job.
    pub(super) lease_token: String,
    /// When the lease lapses without a heartbeat.
    pub(super) lease_expires_at: DateTime<Utc>,
}

/// The jobs a fetch took (none when the wait ran out).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct FetchResponse {
    jobs: Vec<LeasedJob>,
}

/// A heartbeat: extends the lease.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatRequest {
    /// The token the fetch gave.
    lease_token: String,
    /// The new lease from now (default `"30s"`).
    #[serde(default)]
    #[schema(pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$")]
    lease: Option<String>,
}

/// What a heartbeat learns.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct HeartbeatResponse {
    /// The job was cancelled or timed out: stop working it (no report is
    /// taken any more).
    cancelled: bool,
    /// When the lease now lapses; none when cancelled.
    lease_expires_at: Option<DateTime<Utc>>,
}

/// A success.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteRequest {
    /// The token the fetch gave.
    lease_token: String,
    /// The job's result (none: no result).
    #[serde(default)]
    result: Option<Value>,
    /// Also take the worker's next jobs, as `POST /remote/fetch` with
    /// this body does, once the report is in: the answer's `jobs`.
    #[serde(default)]
    fetch: Option<FetchRequest>,
}

/// A failure.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailRequest {
    /// The token the fetch gave.
    lease_token: String,
    /// What went wrong.
    message: String,
    /// True: bury the job now. False (default): a transient failure, retried
    /// by the task's policy.
    #[serde(default)]
    fatal: bool,
    /// Also take the worker's next jobs, as `POST /remote/fetch` with
    /// this body does, once the report is in: the answer's `jobs`.
    #[serde(default)]
    fetch: Option<FetchRequest>,
}

/// What a final report answers: the jobs it fetched, when it asked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Reported {
    /// Always true.
    ok: bool,
    /// The jobs taken for the report's `fetch`, each with a lease (none
    /// when its wait ran out); absent when it asked for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    jobs: Option<Vec<LeasedJob>>,
}

/// A line for the job's log.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogRequest {
    /// The token the fetch gave.
    lease_token: String,
    /// The line.
    message: String,
    /// Data to keep with it.
    #[serde(default)]
    data: Option<Value>,
}

/// Progress: `current` of `total` steps.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProgressRequest {
    /// The token the fetch gave.
    lease_token: String,
    /// Steps done.
    #[serde(deserialize_with = "integral::required")]
    current: u64,
    /// Steps in all.
    #[serde(deserialize_with = "integral::required")]
    total: u64,
}

/// Withdraws a fetch's demand however it ends.
struct Asking {
    pool: Arc<Pool>,
    tasks: Vec<String>,
    n: usize,
}

impl Drop for Asking {
    fn drop(&mut self) {
        self.pool.asked(&self.tasks, self.n);
    }
}

/// Takes up to `n` jobs of the named tasks, waiting up to `wait` for one.
#[utoipa::path(
    post,
    path = "/remote/fetch",
    tag = "remote",
    request_body = FetchRequest,
    responses(
        (status = 200, description = "The jobs taken, each with a lease (none when the wait ran out)", body = FetchResponse),
        (status = 400, description = "Bad body or field", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "A task has a local handler in the API's process", body = ErrorBody),
    )
)]
pub(crate) async fn fetch(
    admin: Admin,
    body: JsonBody<FetchRequest>,
) -> Result<HttpResponse, WebError> {
    let state = admin.0;
    let fetch = Fetch::check(body.0, "")?;
    let asking = fetch.ask(&state.queue, &state.remote)?;
    let jobs = fetch.take(&state.queue, &state.remote, asking).await;
    Ok(HttpResponse::Ok().json(FetchResponse { jobs }))
}

/// A fetch, checked.
struct Fetch {
    tasks: Vec<String>,
    n: usize,
    lease: Duration,
    wait: Duration,
}

impl Fetch {
    /// Checks `req`; a bad field is named with `prefix` (`"fetch."` in a
    /// report).
    fn check(req: FetchRequest, prefix: &str) -> Result<Fetch, WebError> {
        let field = |name: &str| format!("{prefix}{name}");
        if req.tasks.is_empty() {
            return Err(WebError::invalid_field(
                field("tasks"),
                format!("`{}` names no task", field("tasks")),
            ));
        }
        for (i, task) in req.tasks.iter().enumerate() {
            validate_task_name(task).map_err(|e| {
                WebError::invalid_field(field(&format!("tasks[{i}]")), e.to_string())
            })?;
        }
        let n = req.n.unwrap_or(1);
        if !(1..=MAX_FETCH).contains(&n) {
            return Err(WebError::invalid_field(
                field("n"),
                format!("`{}` must be 1 to {MAX_FETCH}", field("n")),
            ));
        }
        let lease = positive_lease(&field("lease"), req.lease.as_deref())?;
        let wait = duration_field(
            &field("wait"),
            req.wait.as_deref(),
            Duration::ZERO,
            MAX_WAIT,
        )?;
        Ok(Fetch {
            tasks: req.tasks,
            n,
            lease,
            wait,
        })
    }

    /// Bridges its tasks and counts its jobs as asked for (until the
    /// guard drops).
    fn ask(&self, queue: &Queue, pool: &Arc<Pool>) -> Result<Asking, WebError> {
        let mut asking = Asking {
            pool: pool.clone(),
            tasks: Vec::with_capacity(self.tasks.len()),
            n: self.n,
        };
        for task in &self.tasks {
            pool.bridge(queue, task, self.n)?;
            asking.tasks.push(task.clone());
        }
        Ok(asking)
    }

    /// Takes up to `n` parked jobs, waiting up to `wait` for one.
    async fn take(&self, queue: &Queue, pool: &Pool, asking: Asking) -> Vec<LeasedJob> {
        let deadline = Instant::now() + self.wait;
        loop {
            let arrived = pool.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let jobs = pool.take(&self.tasks, self.n, self.lease, queue.now());
            if !jobs.is_empty() || Instant::now() >= deadline {
                drop(asking);
                return jobs;
            }
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// Ends the lease of `id` with `report`, then takes the jobs `fetch`
/// asks for, if any.
async fn end_and_fetch(
    admin: Admin,
    id: JobId,
    token: &str,
    report: Report,
    fetch: Option<FetchRequest>,
) -> Result<HttpResponse, WebError> {
    let state = admin.0;
    let fetch = fetch.map(|f| Fetch::check(f, "fetch.")).transpose()?;
    // Everything that could refuse the fetch is checked before the report
    // goes in: a 4xx means the report was not taken.
    if let Some(f) = &fetch {
        for task in &f.tasks {
            state.remote.check_bridgeable(&state.queue, task)?;
        }
    }
    state.remote.end(id, token, report)?;
    // Asked for once the lease has ended, so the slot is counted once
    // (asked for, no longer held) and the bridge does not grow for it.
    let jobs = match fetch {
        Some(f) => {
            let asking = f.ask(&state.queue, &state.remote)?;
            Some(f.take(&state.queue, &state.remote, asking).await)
        }
        None => None,
    };
    Ok(HttpResponse::Ok().json(Reported { ok: true, jobs }))
}

/// Extends the lease of a fetched job; says whether it was cancelled.
#[utoipa::path(
    post,
    path = "/remote/jobs/{id}/heartbeat",
    tag = "remote",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "The lease is extended, or the job was cancelled", body = HeartbeatResponse),
        (status = 400, description = "Bad body, field or id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "No such lease: it lapsed, or the token is wrong", body = ErrorBody),
    )
)]
pub(crate) async fn heartbeat(
    admin: Admin,
    id: Path<String>,
    body: JsonBody<HeartbeatRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let req = body.0;
    let lease = positive_lease("lease", req.lease.as_deref())?;
    let pool = &admin.0.remote;
    {
        let mut inner = pool.inner.lock();
        let leased_cancelled = inner
            .leased
            .get(&id)
            .is_some_and(|l| l.token == req.lease_token && l.cancel.is_cancelled());
        let ended_cancelled = !inner.leased.contains_key(&id)
            && inner
                .cancelled
                .get(&id)
                .is_some_and(|(t, _)| *t == req.lease_token);
        if leased_cancelled || ended_cancelled {
            if ended_cancelled {
                inner.cancelled.remove(&id);
            }
            return Ok(HttpResponse::Ok().json(HeartbeatResponse {
                cancelled: true,
                lease_expires_at: None,
            }));
        }
    }
    pool.with_lease(id, &req.lease_token, |l| l.expires = Instant::now() + lease)?;
    Ok(HttpResponse::Ok().json(HeartbeatResponse {
        cancelled: false,
        lease_expires_at: Some(lease_end(admin.0.queue.now(), lease)),
    }))
}

/// Reports success: the job completes with the result.
#[utoipa::path(
    post,
    path = "/remote/jobs/{id}/complete",
    tag = "remote",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Reported (with the jobs its `fetch` took, if it asked)", body = Reported),
        (status = 400, description = "Bad body, field or id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "No such lease: it lapsed, the job was cancelled, or the token is wrong; or a task of its `fetch` has a local handler", body = ErrorBody),
    )
)]
pub(crate) async fn complete(
    admin: Admin,
    id: Path<String>,
    body: JsonBody<CompleteRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let req = body.0;
    let result = req.result.filter(|v| !v.is_null());
    end_and_fetch(
        admin,
        id,
        &req.lease_token,
        Report::Complete(result),
        req.fetch,
    )
    .await
}

/// Reports failure: transient (retried by the task's policy) or fatal
/// (buried).
#[utoipa::path(
    post,
    path = "/remote/jobs/{id}/fail",
    tag = "remote",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    request_body = FailRequest,
    responses(
        (status = 200, description = "Reported (with the jobs its `fetch` took, if it asked)", body = Reported),
        (status = 400, description = "Bad body, field or id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "No such lease: it lapsed, the job was cancelled, or the token is wrong; or a task of its `fetch` has a local handler", body = ErrorBody),
    )
)]
pub(crate) async fn fail(
    admin: Admin,
    id: Path<String>,
    body: JsonBody<FailRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let req = body.0;
    end_and_fetch(
        admin,
        id,
        &req.lease_token,
        Report::Fail {
            message: req.message,
            fatal: req.fatal,
        },
        req.fetch,
    )
    .await
}

/// Adds a line to the job's log.
#[utoipa::path(
    post,
    path = "/remote/jobs/{id}/log",
    tag = "remote",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    request_body = LogRequest,
    responses(
        (status = 200, description = "Logged", body = Done),
        (status = 400, description = "Bad body, field or id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "No such lease: it lapsed, or the token is wrong", body = ErrorBody),
    )
)]
pub(crate) async fn log(
    admin: Admin,
    id: Path<String>,
    body: JsonBody<LogRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let req = body.0;
    let data = req.data.filter(|v| !v.is_null());
    admin.0.remote.with_lease(id, &req.lease_token, |l| {
        let _ = l.tx.send(Report::Log(req.message, data));
    })?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}

/// Reports the job's progress.
#[utoipa::path(
    post,
    path = "/remote/jobs/{id}/progress",
    tag = "remote",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    request_body = ProgressRequest,
    responses(
        (status = 200, description = "Recorded", body = Done),
        (status = 400, description = "Bad body, field or id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "No such lease: it lapsed, or the token is wrong", body = ErrorBody),
    )
)]
pub(crate) async fn progress(
    admin: Admin,
    id: Path<String>,
    body: JsonBody<ProgressRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let req = body.0;
    admin.0.remote.with_lease(id, &req.lease_token, |l| {
        let _ = l.tx.send(Report::Progress(req.current, req.total));
    })?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}
