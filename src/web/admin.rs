//! `/tasks`, `/stats`, `/clean`, `/delete-matching`.

use std::collections::BTreeMap;

use actix_web::web::Path;
use actix_web::HttpResponse;

use super::body::JsonBody;
use super::dto::{
    CleanRequest, CleanResponse, DeleteMatchingRequest, DeleteMatchingResponse, Done, StatsView,
    SuspensionView, TaskList, TaskView,
};
use super::error::{ErrorBody, WebError};
use super::{Admin, Read};
use crate::job::JobStatus;
use crate::Clean;

/// The tasks defined in this process or with jobs in the store, with
/// their jobs counted by status.
#[utoipa::path(
    get,
    path = "/tasks",
    tag = "admin",
    responses(
        (status = 200, description = "The tasks, sorted by name", body = TaskList),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn list_tasks(read: Read) -> Result<HttpResponse, WebError> {
    let queue = &read.0.queue;
    let stats = queue.stats().await?;
    let defined = queue.tasks();
    let mut tasks: BTreeMap<String, TaskView> = BTreeMap::new();
    for name in defined.iter().chain(stats.counts.iter().map(|c| &c.task)) {
        tasks.entry(name.clone()).or_insert_with(|| TaskView {
            task: name.clone(),
            defined: defined.contains(name),
            suspended: stats
                .suspension_of(name, queue.task_tag(name).as_deref())
                .map(SuspensionView::from),
            counts: JobStatus::ALL
                .into_iter()
                .map(|s| (s.to_string(), 0))
                .collect(),
            total: 0,
        });
    }
    for count in &stats.counts {
        if let Some(view) = tasks.get_mut(&count.task) {
            *view.counts.entry(count.status.to_string()).or_default() += count.count;
            view.total += count.count;
        }
    }
    Ok(HttpResponse::Ok().json(TaskList {
        tasks: tasks.into_values().collect(),
    }))
}

/// Stops dispatching a task's jobs until it is resumed; running jobs go on.
#[utoipa::path(
    post,
    path = "/tasks/{task}/suspend",
    tag = "admin",
    params(("task" = String, Path, description = "The task's name")),
    responses(
        (status = 200, description = "Suspended", body = Done),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 503, description = "The queue has shut down", body = ErrorBody),
    )
)]
pub(crate) async fn suspend_task(
    admin: Admin,
    task: Path<String>,
) -> Result<HttpResponse, WebError> {
    admin.0.queue.suspend(&task).await?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}

/// Resumes dispatching a task's jobs; what is due runs.
#[utoipa::path(
    post,
    path = "/tasks/{task}/resume",
    tag = "admin",
    params(("task" = String, Path, description = "The task's name")),
    responses(
        (status = 200, description = "Resumed", body = Done),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 503, description = "The queue has shut down", body = ErrorBody),
    )
)]
pub(crate) async fn resume_task(
    admin: Admin,
    task: Path<String>,
) -> Result<HttpResponse, WebError> {
    admin.0.queue.resume(&task).await?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}

/// Counts of jobs by task and status, and the queue's health.
#[utoipa::path(
    get,
    path = "/stats",
    tag = "admin",
    responses(
        (status = 200, description = "The stats", body = StatsView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn stats(read: Read) -> Result<HttpResponse, WebError> {
    let stats = read.0.queue.stats().await?;
    Ok(HttpResponse::Ok().json(StatsView::from(stats)))
}

/// Removes final jobs and their logs.
#[utoipa::path(
    post,
    path = "/clean",
    tag = "admin",
    request_body = CleanRequest,
    responses(
        (status = 200, description = "How many were removed", body = CleanResponse),
        (status = 400, description = "A bad field (a status that is not final, a bad age)", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn clean(
    admin: Admin,
    body: JsonBody<CleanRequest>,
) -> Result<HttpResponse, WebError> {
    let req = body.0;
    let mut clean = if req.statuses.is_empty() {
        Clean::completed()
    } else {
        Clean::statuses(req.statuses.into_iter().map(JobStatus::from))
    };
    clean = clean.tags(req.tags);
    if let Some(age) = req.older_than {
        let age = crate::parse_duration(&age)
            .map_err(|e| WebError::invalid_field("older_than", e.to_string()))?;
        clean = clean.older_than(age);
    }
    let removed = admin.0.queue.clean(clean).await.map_err(|e| match e {
        crate::Error::InvalidInput {
            field: "status",
            reason,
        } => WebError::invalid_field("statuses", reason),
        other => other.into(),
    })?;
    Ok(HttpResponse::Ok().json(CleanResponse { removed }))
}

/// Deletes the queued (not running) jobs of a task whose payload matches
/// a regular expression; they end as cancelled.
#[utoipa::path(
    post,
    path = "/delete-matching",
    tag = "admin",
    request_body = DeleteMatchingRequest,
    responses(
        (status = 200, description = "How many were deleted", body = DeleteMatchingResponse),
        (status = 400, description = "A bad field (an invalid pattern)", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 503, description = "The queue has shut down", body = ErrorBody),
    )
)]
pub(crate) async fn delete_matching(
    admin: Admin,
    body: JsonBody<DeleteMatchingRequest>,
) -> Result<HttpResponse, WebError> {
    let req = body.0;
    let deleted = admin
        .0
        .queue
        .delete_matching(&req.task, &req.pattern)
        .await?;
    Ok(HttpResponse::Ok().json(DeleteMatchingResponse {
        deleted: deleted as u64,
    }))
}

/// Stops dispatching the jobs of every task with this tag (defined now or
/// later) until it is resumed; running jobs go on.
#[utoipa::path(
    post,
    path = "/tags/{tag}/suspend",
    tag = "admin",
    params(("tag" = String, Path, description = "The tag")),
    responses(
        (status = 200, description = "Suspended", body = Done),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 503, description = "The queue has shut down", body = ErrorBody),
    )
)]
pub(crate) async fn suspend_tag(admin: Admin, tag: Path<String>) -> Result<HttpResponse, WebError> {
    admin.0.queue.suspend_tag(&tag).await?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}

/// Resumes dispatching the jobs of a tag's tasks; what is due runs.
#[utoipa::path(
    post,
    path = "/tags/{tag}/resume",
    tag = "admin",
    params(("tag" = String, Path, description = "The tag")),
    responses(
        (status = 200, description = "Resumed", body = Done),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 503, description = "The queue has shut down", body = ErrorBody),
    )
)]
pub(crate) async fn resume_tag(admin: Admin, tag: Path<String>) -> Result<HttpResponse, WebError> {
    admin.0.queue.resume_tag(&tag).await?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}
