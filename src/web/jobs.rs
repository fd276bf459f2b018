//! `/jobs`: create, list, read, cancel, kick.

use actix_web::http::header;
use actix_web::web::{Path, Query};
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::body::JsonBody;
use super::cursor::Cursor;
use super::dto::{
    BulkResponse, CreateBatchRequest, CreateJobRequest, CreatedJob, CreatedJobs, Done, JobPage,
    JobView, UniqueScopeParam,
};
use super::error::{ErrorBody, WebError};
use super::{Admin, Read};
use crate::job::{JobId, JobStatus};
use crate::new_job::NewJob;
use crate::store::{JobQuery, Order};
use crate::UniqueScope;

/// The most jobs one page holds.
const MAX_LIMIT: usize = 1000;

/// Reads a job id from the path.
pub(crate) fn parse_id(text: &str) -> Result<JobId, WebError> {
    text.parse()
        .map_err(|_| WebError::invalid_field("id", format!("`{text}` is not a job id (a UUID)")))
}

/// Builds the library's job from a request, naming fields under `prefix`
/// (`jobs[2].`) when a value is wrong.
fn new_job(req: CreateJobRequest, prefix: &str) -> Result<NewJob, WebError> {
    let field = |name: &str| format!("{prefix}{name}");
    let duration = |name: &str, text: &str| {
        crate::parse_duration(text).map_err(|e| WebError::invalid_field(field(name), e.to_string()))
    };
    let both = |a: &str, b: &str| {
        WebError::invalid_field(field(b), format!("give `{a}` or `{b}`, not both"))
    };
    let mut job = NewJob::new(req.task, req.payload);
    match (req.delay, req.run_at) {
        (Some(_), Some(_)) => return Err(both("delay", "run_at")),
        (Some(delay), None) => job = job.delay(duration("delay", &delay)?),
        (None, Some(at)) => job = job.run_at(at),
        (None, None) => {}
    }
    match (req.expires_in, req.expires_at) {
        (Some(_), Some(_)) => return Err(both("expires_in", "expires_at")),
        (Some(within), None) => job = job.expires_in(duration("expires_in", &within)?),
        (None, Some(at)) => job = job.expires_at(at),
        (None, None) => {}
    }
    if let Some(priority) = req.priority {
        job = job.priority(priority);
    }
    if let Some(reference) = req.reference {
        job = job.reference(reference);
    }
    if let Some(attempts) = req.max_attempts {
        job = job.max_attempts(attempts);
    }
    match (req.unique, req.unique_by_payload) {
        (Some(_), Some(true)) => return Err(both("unique", "unique_by_payload")),
        (Some(key), _) => job = job.unique(key),
        (None, Some(true)) => job = job.unique_by_payload(),
        (None, _) => {}
    }
    let scope = match (req.unique_scope, req.unique_window) {
        (Some(UniqueScopeParam::Window), Some(window)) => {
            Some(UniqueScope::Window(duration("unique_window", &window)?))
        }
        (Some(UniqueScopeParam::Window), None) => {
            return Err(WebError::invalid_field(
                field("unique_window"),
                "`unique_scope: window` needs `unique_window` (how long, e.g. `1h`)",
            ))
        }
        (_, Some(_)) => {
            return Err(WebError::invalid_field(
                field("unique_window"),
                "`unique_window` goes with `unique_scope: window` only",
            ))
        }
        (Some(UniqueScopeParam::Waiting), None) => Some(UniqueScope::Waiting),
        (Some(UniqueScopeParam::Unfinished), None) => Some(UniqueScope::Unfinished),
        (None, None) => None,
    };
    if let Some(scope) = scope {
        job = job.unique_scope(scope);
    }
    match (req.callback, req.callback_secret) {
        (url, Some(name)) => {
            if url.is_none() {
                return Err(WebError::invalid_field(
                    field("callback_secret"),
                    "`callback_secret` signs the job's own `callback`: give `callback` too",
                ));
            }
            if let Some(url) = url {
                job = with_callback(job, url, &field("callback"))?;
            }
            job = with_callback_secret(job, name, &field("callback_secret"))?;
        }
        (Some(url), None) => job = with_callback(job, url, &field("callback"))?,
        (None, None) => {}
    }
    if let Some(group) = req.group {
        match crate::group::check_key(&group) {
            Ok(()) => job = job.group(group),
            Err(crate::Error::InvalidInput { reason, .. }) => {
                return Err(WebError::invalid_field(field("group"), reason))
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(job)
}

/// Gives `job` its own callback to `url`, a bad URL naming `field`.
#[cfg(feature = "webhooks")]
fn with_callback(job: NewJob, url: String, field: &str) -> Result<NewJob, WebError> {
    match crate::webhook::validate_url(&url) {
        Ok(()) => Ok(job.callback(url)),
        Err(crate::Error::InvalidInput { reason, .. }) => {
            Err(WebError::invalid_field(field.to_owned(), reason))
        }
        Err(other) => Err(other.into()),
    }
}

/// Signs `job`'s own callback with the secret `name`, a bad name naming
/// `field`.
#[cfg(feature = "webhooks")]
fn with_callback_secret(job: NewJob, name: String, field: &str) -> Result<NewJob, WebError> {
    match crate::webhook::check_secret_name(&name) {
        Ok(()) => Ok(job.callback_secret(name)),
        Err(crate::Error::InvalidInput { reason, .. }) => {
            Err(WebError::invalid_field(field.to_owned(), reason))
        }
        Err(other) => Err(other.into()),
    }
}

/// Without feature `webhooks` nothing would ever send it: refused.
#[cfg(not(feature = "webhooks"))]
fn with_callback_secret(_: NewJob, _: String, field: &str) -> Result<NewJob, WebError> {
    Err(WebError::invalid_field(
        field.to_owned(),
        "this API sends no webhook callbacks (kessel built without feature `webhooks`)",
    ))
}

/// Without feature `webhooks` nothing would ever send it: refused.
#[cfg(not(feature = "webhooks"))]
fn with_callback(_: NewJob, _: String, field: &str) -> Result<NewJob, WebError> {
    Err(WebError::invalid_field(
        field.to_owned(),
        "this API sends no webhook callbacks (kessel built without feature `webhooks`)",
    ))
}

/// Prefixes the field of a library error with the job's place in a batch
/// when the library names one (it reports the first bad job's field, not
/// which job: with one job there is no doubt).
fn in_batch(err: crate::Error, single: bool) -> WebError {
    let err = WebError::from(err);
    match err {
        WebError::BadRequest {
            code,
            message,
            field: Some(field),
        } if !single => WebError::BadRequest {
            code,
            message,
            field: Some(format!("jobs[].{field}")),
        },
        other => other,
    }
}

/// Creates one job.
#[utoipa::path(
    post,
    path = "/jobs",
    tag = "jobs",
    request_body = CreateJobRequest,
    responses(
        (status = 201, description = "Created", body = CreatedJob,
            headers(("location" = String, description = "The job's URL, relative to the API"))),
        (status = 200, description = "Not created: a live job holds the unique key (`duplicate: true`, its id and status)", body = CreatedJob,
            headers(("location" = String, description = "The holder's URL, relative to the API"))),
        (status = 400, description = "Malformed JSON or a bad field (named in `field`)", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn create_job(
    admin: Admin,
    body: JsonBody<CreateJobRequest>,
) -> Result<HttpResponse, WebError> {
    let job = new_job(body.0, "")?;
    let queue = &admin.0.queue;
    let handle = queue
        .create_many([job])
        .await
        .map_err(|e| in_batch(e, true))?
        .pop()
        .ok_or_else(|| WebError::Internal("no job was created".into()))?;
    let created = created(queue, handle.id(), handle.is_duplicate()).await;
    let mut response = if created.duplicate {
        HttpResponse::Ok()
    } else {
        HttpResponse::Created()
    };
    Ok(response
        .insert_header((header::LOCATION, format!("jobs/{}", created.id)))
        .json(created))
}

/// The created job's id and status (or the holder's, for a duplicate).
/// The status is read back, not guessed: a job created ready may already
/// run by now.
pub(crate) async fn created(queue: &crate::Queue, id: JobId, duplicate: bool) -> CreatedJob {
    let status = queue.job(id).await.map_or(JobStatus::Ready, |j| j.status);
    CreatedJob {
        id: id.to_string(),
        status: status.into(),
        duplicate,
    }
}

/// Creates many jobs in one store write: all or none. A batch with unique
/// jobs in it is created job by job, in order (each decides on its own
/// key): should one fail, those before it stay created.
#[utoipa::path(
    post,
    path = "/jobs/batch",
    tag = "jobs",
    request_body = CreateBatchRequest,
    responses(
        (status = 201, description = "Created, in the order given", body = CreatedJobs),
        (status = 400, description = "Malformed JSON or a bad field (named in `field`, e.g. `jobs[2].delay`)", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn create_jobs(
    admin: Admin,
    body: JsonBody<CreateBatchRequest>,
) -> Result<HttpResponse, WebError> {
    let jobs = body
        .0
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, req)| new_job(req, &format!("jobs[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let single = jobs.len() == 1;
    let queue = &admin.0.queue;
    let handles = if jobs.iter().any(NewJob::is_unique) && !single {
        // The library takes unique jobs one per call (each decides on its
        // own key): such a batch is created job by job, in order.
        let mut handles = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.into_iter().enumerate() {
            let handle = queue.create_job(job).await.map_err(|e| {
                let after = if i == 0 {
                    String::new()
                } else {
                    format!(" (the {i} jobs before it were created)")
                };
                match WebError::from(e) {
                    WebError::BadRequest {
                        code,
                        message,
                        field: Some(field),
                    } => WebError::BadRequest {
                        code,
                        message: format!("{message}{after}"),
                        field: Some(format!("jobs[{i}].{field}")),
                    },
                    other => other,
                }
            })?;
            handles.push(handle);
        }
        handles
    } else {
        queue
            .create_many(jobs)
            .await
            .map_err(|e| in_batch(e, single))?
    };
    Ok(HttpResponse::Created().json(CreatedJobs {
        ids: handles.iter().map(|h| h.id().to_string()).collect(),
        duplicates: handles.iter().map(|h| h.is_duplicate()).collect(),
    }))
}

/// One job: status, attempts, payload, result, log, progress, and the
/// deliveries of its webhook callback.
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn get_job(read: Read, id: Path<String>) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let queue = &read.0.queue;
    let job = queue.job(id).await?;
    #[cfg(feature = "webhooks")]
    let deliveries = {
        let mut found = queue.callbacks_of(&job).await?;
        found.sort_by_key(|d| (d.created_at, d.id.0));
        found
            .into_iter()
            .map(super::dto::DeliveryView::from)
            .collect()
    };
    #[cfg(not(feature = "webhooks"))]
    let deliveries = Vec::new();
    let mut view = JobView::from(job);
    view.deliveries = Some(deliveries);
    Ok(HttpResponse::Ok().json(view))
}

/// Filters and paging of `GET /jobs`. Lists are comma separated.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only jobs in these statuses (`ready,buried`).
    status: Option<String>,
    /// Only jobs of these tasks.
    task: Option<String>,
    /// Only jobs of tasks with these tags (as defined in this process).
    tag: Option<String>,
    /// Only the job(s) with this producer reference.
    reference: Option<String>,
    /// Only jobs created at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    created_after: Option<String>,
    /// Only jobs created before this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    created_before: Option<String>,
    /// `newest` (the default) or `oldest` first.
    #[param(inline, value_type = Option<OrderParam>)]
    order: Option<String>,
    /// Jobs per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^([0-9a-f]{2})*$")]
    cursor: Option<String>,
}

/// The order of `GET /jobs`, for the OpenAPI document.
#[derive(Debug, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // read as text, to name the field when it is wrong
pub(crate) enum OrderParam {
    Newest,
    Oldest,
}

impl ListParams {
    /// Text parameters given empty (`task=`) are read as not given; an
    /// empty time, order or limit is an error like any other bad value.
    fn without_empty(mut self) -> Self {
        for value in [
            &mut self.status,
            &mut self.task,
            &mut self.tag,
            &mut self.reference,
            &mut self.cursor,
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        self
    }
}

fn list(text: &Option<String>) -> Vec<String> {
    text.iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn time(name: &str, text: &Option<String>) -> Result<Option<DateTime<Utc>>, WebError> {
    text.as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    WebError::invalid_field(name, format!("`{t}` is not an RFC 3339 time: {e}"))
                })
        })
        .transpose()
}

/// Jobs matching the filters, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/jobs",
    tag = "jobs",
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "A bad filter (named in `field`)", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn list_jobs(
    read: Read,
    params: Query<ListParams>,
) -> Result<HttpResponse, WebError> {
    let params = params.into_inner().without_empty();
    let queue = &read.0.queue;
    let statuses = list(&params.status)
        .iter()
        .map(|s| s.parse::<JobStatus>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WebError::invalid_field("status", e.to_string()))?;
    let order = match params.order.as_deref() {
        None | Some("newest") => Order::NewestFirst,
        Some("oldest") => Order::OldestFirst,
        Some(other) => {
            return Err(WebError::invalid_field(
                "order",
                format!("`{other}` is not `newest` or `oldest`"),
            ))
        }
    };
    let limit = match params.limit.as_deref() {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                WebError::invalid_field(
                    "limit",
                    format!("`{text}` is not a number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let cursor = match params.cursor.as_deref() {
        Some(text) => Cursor::decode(text)?,
        None => Cursor::first(queue.now()),
    };
    let created_before = match time("created_before", &params.created_before)? {
        Some(t) => t.min(cursor.before),
        None => cursor.before,
    };
    let query = JobQuery {
        statuses,
        tasks: list(&params.task),
        tags: list(&params.tag),
        reference: params.reference,
        created_after: time("created_after", &params.created_after)?,
        created_before: Some(created_before),
        order,
        offset: cursor.offset,
        // One more than the page, to know whether a next page exists.
        limit: limit + 1,
    };
    let mut jobs = queue.fetch(query).await?;
    let next_cursor = (jobs.len() > limit).then(|| {
        jobs.truncate(limit);
        Cursor {
            offset: cursor.offset + limit,
            before: cursor.before,
        }
        .encode()
    });
    Ok(HttpResponse::Ok().json(JobPage {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

/// Cancels a pending job; a running job's handler is signalled.
#[utoipa::path(
    post,
    path = "/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Cancelled (or, on a shared store, cancellation requested)", body = Done),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is already final", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_job(admin: Admin, id: Path<String>) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    admin.0.queue.cancel(id).await?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}

/// Returns a buried job to ready, with one more attempt.
#[utoipa::path(
    post,
    path = "/jobs/{id}/kick",
    tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Kicked", body = Done),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not buried", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn kick_job(admin: Admin, id: Path<String>) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    admin.0.queue.kick(id).await?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}

/// Removes an ended job (completed, buried, expired or cancelled) and its
/// log. A pending job is refused with 409: cancel it first.
#[utoipa::path(
    delete,
    path = "/jobs/{id}",
    tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Deleted", body = Done),
        (status = 400, description = "Not a job id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is still pending", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn delete_job(admin: Admin, id: Path<String>) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    admin.0.queue.delete(id).await?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}

/// The filter of a bulk action (as `GET /jobs` takes it) and its guards.
/// Lists are comma separated.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct BulkParams {
    /// Only jobs in these statuses (`ready,buried`).
    status: Option<String>,
    /// Only jobs of these tasks.
    task: Option<String>,
    /// Only jobs of tasks with these tags (as defined in this process).
    tag: Option<String>,
    /// Only the job(s) with this producer reference.
    reference: Option<String>,
    /// Only jobs created at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    created_after: Option<String>,
    /// Only jobs created before this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    created_before: Option<String>,
    /// `all`: act on every job of the queue. Required when no filter is
    /// given; without it such a request is refused with 400.
    #[param(inline, value_type = Option<ConfirmParam>)]
    confirm: Option<String>,
    /// `true`: only count the jobs the action would apply to.
    #[param(value_type = Option<bool>)]
    dry_run: Option<String>,
}

/// The value `confirm` takes, for the OpenAPI document.
#[derive(Debug, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // read as text, to name the field when it is wrong
pub(crate) enum ConfirmParam {
    All,
}

/// What a bulk request does to each matching job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bulk {
    Cancel,
    Kick,
    Delete,
}

impl Bulk {
    fn name(self) -> &'static str {
        match self {
            Bulk::Cancel => "cancel",
            Bulk::Kick => "kick",
            Bulk::Delete => "delete",
        }
    }
}

/// The ids of every job matching `params` that exists now, oldest first.
async fn matching(queue: &crate::Queue, params: &BulkParams) -> Result<Vec<JobId>, WebError> {
    let statuses = list(&params.status)
        .iter()
        .map(|s| s.parse::<JobStatus>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WebError::invalid_field("status", e.to_string()))?;
    let now = queue.now();
    let created_before =
        time("created_before", &params.created_before)?.map_or(now, |t| t.min(now));
    let created_after = time("created_after", &params.created_after)?;
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut offset = 0;
    loop {
        let page = queue
            .fetch(JobQuery {
                statuses: statuses.clone(),
                tasks: list(&params.task),
                tags: list(&params.tag),
                reference: params.reference.clone(),
                created_after,
                created_before: Some(created_before),
                order: Order::OldestFirst,
                offset,
                limit: MAX_LIMIT,
            })
            .await?;
        let n = page.len();
        ids.extend(page.into_iter().map(|j| j.id).filter(|id| seen.insert(*id)));
        if n < MAX_LIMIT {
            return Ok(ids);
        }
        offset += n;
    }
}

async fn bulk(admin: Admin, params: BulkParams, action: Bulk) -> Result<HttpResponse, WebError> {
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
    let filtered = !(blank(&params.status)
        && blank(&params.task)
        && blank(&params.tag)
        && blank(&params.reference)
        && params.created_after.is_none()
        && params.created_before.is_none());
    match params.confirm.as_deref() {
        Some("all") => {}
        Some(other) => {
            return Err(WebError::invalid_field(
                "confirm",
                format!("`{other}` is not `all`"),
            ))
        }
        None if !filtered => {
            return Err(WebError::invalid_field(
                "confirm",
                format!(
                    "no filter: this would {} every job; add `confirm=all` to mean it",
                    action.name()
                ),
            ))
        }
        None => {}
    }
    let dry_run = match params.dry_run.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(WebError::invalid_field(
                "dry_run",
                format!("`{other}` is not `true` or `false`"),
            ))
        }
    };
    let params = BulkParams {
        reference: params.reference.filter(|r| !r.trim().is_empty()),
        ..params
    };
    let queue = &admin.0.queue;
    let ids = matching(queue, &params).await?;
    let matched = ids.len() as u64;
    let mut done = 0;
    let mut skipped = 0;
    if !dry_run {
        for id in ids {
            let result = match action {
                Bulk::Cancel => queue.cancel(id).await,
                Bulk::Kick => queue.kick(id).await,
                Bulk::Delete => queue.delete(id).await,
            };
            match result {
                Ok(()) => done += 1,
                // In a state the action does not apply to, or gone.
                Err(crate::Error::WrongState { .. } | crate::Error::UnknownJob(_)) => skipped += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(HttpResponse::Ok().json(BulkResponse {
        action: action.name().to_owned(),
        matched,
        done,
        skipped,
        dry_run,
    }))
}

/// Cancels every pending job matching the filter (running ones are
/// signalled); final ones are counted as skipped.
#[utoipa::path(
    post,
    path = "/jobs/cancel",
    tag = "jobs",
    params(BulkParams),
    responses(
        (status = 200, description = "How many matched, were cancelled, were skipped", body = BulkResponse),
        (status = 400, description = "A bad filter, or no filter without `confirm=all`", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_jobs(
    admin: Admin,
    params: Query<BulkParams>,
) -> Result<HttpResponse, WebError> {
    bulk(admin, params.into_inner(), Bulk::Cancel).await
}

/// Kicks every buried job matching the filter back to ready; others are
/// counted as skipped.
#[utoipa::path(
    post,
    path = "/jobs/kick",
    tag = "jobs",
    params(BulkParams),
    responses(
        (status = 200, description = "How many matched, were kicked, were skipped", body = BulkResponse),
        (status = 400, description = "A bad filter, or no filter without `confirm=all`", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn kick_jobs(
    admin: Admin,
    params: Query<BulkParams>,
) -> Result<HttpResponse, WebError> {
    bulk(admin, params.into_inner(), Bulk::Kick).await
}

/// Removes every ended job matching the filter, with its log; pending
/// ones are counted as skipped.
#[utoipa::path(
    post,
    path = "/jobs/delete",
    tag = "jobs",
    params(BulkParams),
    responses(
        (status = 200, description = "How many matched, were deleted, were skipped", body = BulkResponse),
        (status = 400, description = "A bad filter, or no filter without `confirm=all`", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn delete_jobs(
    admin: Admin,
    params: Query<BulkParams>,
) -> Result<HttpResponse, WebError> {
    bulk(admin, params.into_inner(), Bulk::Delete).await
}
