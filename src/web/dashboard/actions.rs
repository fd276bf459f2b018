//! What the dashboard changes: cancel, retry or (after a confirmation)
//! delete one job; cancel, retry or delete every job matching a filter,
//! after a confirmation that says how many; suspend or resume a task or
//! every task of a tag.
//!
//! Every action is a POST from the dashboard's own pages (see
//! [`super::same_origin`]) by an admin. The script posts with `Accept:
//! application/json` and gets `{"ok": true, "message"}` back; a form sent
//! without the script is answered with a redirect to the page it came
//! from.

use actix_web::http::StatusCode;
use actix_web::web::{Form, Path};
use actix_web::{HttpRequest, HttpResponse};
use maud::html;
use serde::{Deserialize, Serialize};

use super::jobs::{Filter, FilterParams};
use super::page::{self, Frame};
use super::{html as respond, html_with, see_other, wants_json, with_headers, PageError, Viewer};
use crate::job::{Job, JobStatus};
use crate::web::error::WebError;
use crate::web::jobs::parse_id;
use crate::Clean;

/// A form that could not be read, as a 400.
pub(crate) fn form_error(err: &actix_web::Error) -> WebError {
    WebError::BadRequest {
        code: "invalid_form",
        message: err.to_string(),
        field: None,
    }
}

/// The most jobs one bulk action touches.
pub(crate) const BULK_MAX: usize = 10_000;

#[derive(Debug, Serialize)]
struct Done {
    ok: bool,
    message: String,
}

/// `{"ok": true, "message"}` for the script, a redirect to `back` for a
/// plain form.
pub(crate) fn done(req: &HttpRequest, message: String, back: &str) -> HttpResponse {
    if wants_json(req) {
        with_headers(HttpResponse::Ok().json(Done { ok: true, message }))
    } else {
        see_other(back)
    }
}

fn failed(req: &HttpRequest) -> impl Fn(crate::Error) -> PageError + '_ {
    move |e| PageError::new(req, e.into())
}

/// `POST /dashboard/jobs/{id}/cancel`.
pub(crate) async fn cancel(req: HttpRequest, id: Path<String>) -> Result<HttpResponse, PageError> {
    let viewer = Viewer::admin_of(&req)?;
    let id = parse_id(&id).map_err(|e| PageError::new(&req, e))?;
    viewer.state.queue.cancel(id).await.map_err(failed(&req))?;
    let back = format!("{}/jobs/{id}", viewer.dash.base);
    Ok(done(&req, "Cancelled.".into(), &back))
}

/// `POST /dashboard/jobs/{id}/retry`: a buried job runs again.
pub(crate) async fn retry(req: HttpRequest, id: Path<String>) -> Result<HttpResponse, PageError> {
    let viewer = Viewer::admin_of(&req)?;
    let id = parse_id(&id).map_err(|e| PageError::new(&req, e))?;
    viewer.state.queue.kick(id).await.map_err(failed(&req))?;
    let back = format!("{}/jobs/{id}", viewer.dash.base);
    Ok(done(&req, "Queued to run again.".into(), &back))
}

/// A confirmation: `confirm=yes` once the question was shown and answered.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmForm {
    confirm: Option<String>,
}

/// `POST /dashboard/jobs/{id}/delete`: an ended job (completed, buried,
/// expired or cancelled) and its log, for good. Without `confirm=yes`, a
/// page asking; with it, the delete, then back to the jobs list. A
/// pending job is not deleted: a page (409) says why, as does the JSON
/// error for the script.
pub(crate) async fn delete(
    req: HttpRequest,
    id: Path<String>,
    // A body that cannot be read confirms nothing: the question is asked.
    form: Option<Form<ConfirmForm>>,
) -> Result<HttpResponse, PageError> {
    let viewer = Viewer::admin_of(&req)?;
    let id = parse_id(&id).map_err(|e| PageError::new(&req, e))?;
    let confirmed = form.and_then(|f| f.into_inner().confirm).as_deref() == Some("yes");
    let queue = &viewer.state.queue;
    let job = queue.job(id).await.map_err(failed(&req))?;
    if !job.status.is_final() {
        return refused_delete(&req, &viewer, &job, not_deletable(&job));
    }
    let base = &viewer.dash.base;
    let job_url = format!("{base}/jobs/{id}");
    if !confirmed {
        let main = html! {
            h1 { "Delete this job?" }
            p #delete-question {
                "Delete job " code { (id.to_string()) } " of task " strong { (job.task.as_ref()) }
                " (" (page::status(job.status)) "), with its payload, result and "
                (job.logs.len()) " log line(s), for good?"
            }
            form.inline method="post" action={ (job_url) "/delete" } {
                input type="hidden" name="confirm" value="yes";
                button.danger #confirm-delete type="submit" { "Yes, delete it" }
            }
            a href=(job_url) { "Back to the job" }
        };
        return Ok(respond(page::frame(
            &viewer,
            Frame {
                title: "Delete a job",
                events: None,
                above: None,
                refresh: None,
            },
            main,
        )));
    }
    match queue.delete(id).await {
        Ok(()) => Ok(done(
            &req,
            format!("Deleted job {id}."),
            &format!("{base}/jobs"),
        )),
        // Retried (or kicked by another hand) since the page was drawn.
        Err(e @ crate::Error::WrongState { .. }) => refused_delete(&req, &viewer, &job, e),
        Err(e) => Err(failed(&req)(e)),
    }
}

/// Why `job` (pending) cannot be deleted, as the library says it.
fn not_deletable(job: &Job) -> crate::Error {
    crate::Error::WrongState {
        id: job.id,
        status: job.status,
        operation: "delete",
    }
}

/// A delete the library refused: a page (409) with the reason and the
/// way out, or the API's JSON error for the script.
fn refused_delete(
    req: &HttpRequest,
    viewer: &Viewer,
    job: &Job,
    error: crate::Error,
) -> Result<HttpResponse, PageError> {
    if wants_json(req) {
        return Err(PageError::new(req, error.into()));
    }
    let job_url = format!("{}/jobs/{}", viewer.dash.base, job.id);
    let main = html! {
        h1 { "Not deleted" }
        p.error #delete-refused { (error.to_string()) "." }
        p { "Only ended jobs (completed, buried, expired or cancelled) can be deleted: cancel it first." }
        a href=(job_url) { "Back to the job" }
    };
    Ok(html_with(
        StatusCode::CONFLICT,
        page::frame(
            viewer,
            Frame {
                title: "Not deleted",
                events: None,
                above: None,
                refresh: None,
            },
            main,
        ),
    ))
}

/// Suspend or resume, from the path.
fn suspension(req: &HttpRequest, action: &str) -> Result<bool, PageError> {
    match action {
        "suspend" => Ok(true),
        "resume" => Ok(false),
        other => Err(PageError::new(
            req,
            WebError::NotFound {
                code: "route_not_found",
                message: format!("no action `{other}`: `suspend` or `resume`"),
            },
        )),
    }
}

/// `POST /dashboard/tasks/{task}/suspend` and `/resume`.
pub(crate) async fn task(
    req: HttpRequest,
    path: Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (task, action) = path.into_inner();
    let suspend = suspension(&req, &action)?;
    let viewer = Viewer::admin_of(&req)?;
    let queue = &viewer.state.queue;
    if suspend {
        queue.suspend(&task).await.map_err(failed(&req))?;
    } else {
        queue.resume(&task).await.map_err(failed(&req))?;
    }
    let verb = if suspend { "Suspended" } else { "Resumed" };
    Ok(done(
        &req,
        format!("{verb} task {task}."),
        &format!("{}/", viewer.dash.base),
    ))
}

/// `POST /dashboard/tags/{tag}/suspend` and `/resume`: the tag, so every
/// task of it (refused for a tag no task of this process has, which the
/// overview does not show).
pub(crate) async fn tag(
    req: HttpRequest,
    path: Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (tag, action) = path.into_inner();
    let suspend = suspension(&req, &action)?;
    let viewer = Viewer::admin_of(&req)?;
    let queue = &viewer.state.queue;
    let tasks = queue.tasks_tagged(std::slice::from_ref(&tag));
    if tasks.is_empty() {
        return Err(PageError::new(
            &req,
            WebError::invalid_field(
                "tag",
                format!("no task of this process has the tag `{tag}`"),
            ),
        ));
    }
    // The tag itself: its tasks in every process, defined now or later.
    if suspend {
        queue.suspend_tag(&tag).await.map_err(failed(&req))?;
    } else {
        queue.resume_tag(&tag).await.map_err(failed(&req))?;
    }
    let verb = if suspend { "Suspended" } else { "Resumed" };
    Ok(done(
        &req,
        format!("{verb} {} task(s) of tag {tag}.", tasks.len()),
        &format!("{}/", viewer.dash.base),
    ))
}

/// A bulk action's form: what to do, the filter, and the confirmation.
#[derive(Debug, Deserialize)]
pub(crate) struct BulkForm {
    action: String,
    #[serde(flatten)]
    filter: FilterParams,
    /// `yes` once the count was shown and confirmed.
    confirm: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bulk {
    Cancel,
    Retry,
    Delete,
}

impl Bulk {
    fn read(text: &str) -> Result<Bulk, WebError> {
        match text {
            "cancel" => Ok(Bulk::Cancel),
            "retry" => Ok(Bulk::Retry),
            "delete" => Ok(Bulk::Delete),
            other => Err(WebError::invalid_field(
                "action",
                format!("`{other}` is not `cancel`, `retry` or `delete`"),
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bulk::Cancel => "cancel",
            Bulk::Retry => "retry",
            Bulk::Delete => "delete",
        }
    }

    /// The statuses the action applies to, within the filter's.
    fn statuses(self, filter: &Filter) -> Vec<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .filter(|s| match self {
                Bulk::Cancel => !s.is_final(),
                Bulk::Retry => *s == JobStatus::Buried,
                Bulk::Delete => s.is_final(),
            })
            .filter(|s| filter.statuses.is_empty() || filter.statuses.contains(s))
            .collect()
    }
}

/// `POST /dashboard/bulk`: without `confirm=yes`, a page saying how many
/// jobs the action would touch, with the button that confirms; with it,
/// the action, then a page saying how many it touched.
pub(crate) async fn bulk(
    req: HttpRequest,
    form: Result<Form<BulkForm>, actix_web::Error>,
) -> Result<HttpResponse, PageError> {
    // Who asks is checked before what is asked.
    let viewer = Viewer::admin_of(&req)?;
    let form = form
        .map_err(|e| PageError::new(&req, form_error(&e)))?
        .into_inner();
    let bad = |e: WebError| PageError::new(&req, e);
    let action = Bulk::read(&form.action).map_err(bad)?;
    let mut filter = form.filter.read().map_err(bad)?;
    filter.page = 1;
    if action == Bulk::Delete {
        for (field, given) in [
            ("reference", filter.reference.is_some()),
            ("q", filter.text.is_some()),
        ] {
            if given {
                return Err(bad(WebError::invalid_field(
                    field,
                    format!("deleting by {field} is not offered: filter by status, task or tag"),
                )));
            }
        }
    }
    let statuses = action.statuses(&filter);
    let queue = &viewer.state.queue;
    let jobs = if statuses.is_empty() {
        Vec::new()
    } else {
        let mut query = filter.query(0, BULK_MAX);
        query.statuses = statuses.clone();
        filter.jobs(queue, query).await.map_err(failed(&req))?
    };
    let base = &viewer.dash.base;
    let list = {
        let qs = filter.query_string();
        if qs.is_empty() {
            format!("{base}/jobs")
        } else {
            format!("{base}/jobs?{qs}")
        }
    };
    let what = match action {
        Bulk::Cancel => "Cancel",
        Bulk::Retry => "Retry",
        Bulk::Delete => "Delete",
    };
    let main = if form.confirm.as_deref() != Some("yes") {
        let n = jobs.len();
        let capped = n == BULK_MAX;
        html! {
            h1 { (what) " jobs?" }
            p #bulk-count data-count=(n) {
                (what) " " strong { (n) @if capped { "+" } } " job(s) matching " (filter.describe())
                @match action {
                    Bulk::Cancel => " that are not finished",
                    Bulk::Retry => " that are buried",
                    Bulk::Delete => " that are finished (deleted with their logs, for good)",
                }
                "?"
            }
            @if capped { p.muted { "At most " (BULK_MAX) " are touched at a time." } }
            @if n > 0 {
                form.inline method="post" action={ (base) "/bulk" } {
                    input type="hidden" name="action" value=(action.name());
                    input type="hidden" name="confirm" value="yes";
                    (filter.hidden_inputs())
                    button.danger #confirm type="submit" { "Yes, " (what.to_lowercase()) " " (n) }
                }
            }
            a href=(list) { "Back to the jobs" }
        }
    } else {
        let mut touched = 0u64;
        match action {
            Bulk::Cancel | Bulk::Retry => {
                for job in &jobs {
                    let result = if action == Bulk::Cancel {
                        queue.cancel(job.id).await
                    } else {
                        queue.kick(job.id).await
                    };
                    match result {
                        Ok(()) => touched += 1,
                        // Finished, or kicked, in the meantime.
                        Err(crate::Error::WrongState { .. } | crate::Error::UnknownJob(_)) => {}
                        Err(e) => return Err(failed(&req)(e)),
                    }
                }
            }
            Bulk::Delete if !statuses.is_empty() => {
                touched = queue
                    .clean(
                        Clean::statuses(statuses)
                            .tasks(filter.tasks.clone())
                            .tags(filter.tags.clone()),
                    )
                    .await
                    .map_err(failed(&req))?;
            }
            Bulk::Delete => {}
        }
        let past = match action {
            Bulk::Cancel => "Cancelled",
            Bulk::Retry => "Queued to run again",
            Bulk::Delete => "Deleted",
        };
        html! {
            h1 { (past) }
            p #bulk-done data-count=(touched) { (past) " " (touched) " job(s) matching " (filter.describe()) "." }
            a href=(list) { "Back to the jobs" }
        }
    };
    Ok(respond(page::frame(
        &viewer,
        Frame {
            title: what,
            events: None,
            above: None,
            refresh: None,
        },
        main,
    )))
}
