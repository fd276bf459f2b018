//! The schedules page (feature `cron`): every schedule in the store with
//! when it ticks, its next and last run and its last job; an admin may
//! pause, resume or run one now.

use actix_web::web::{Form, Path};
use actix_web::{HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::actions::{done, form_error};
use super::page::{self, Frame};
use super::{html as respond, PageError, Viewer};
use crate::job::JobStatus;
use crate::schedule::{ScheduleInfo, When};
use crate::store::StoreError;
use crate::web::error::WebError;

/// `GET /dashboard/schedules`: every schedule, by name. Follows the
/// queue's events, so a job a schedule creates shows up without a reload.
pub(crate) async fn page(req: HttpRequest) -> Result<HttpResponse, PageError> {
    let viewer = Viewer::of(&req)?;
    let queue = &viewer.state.queue;
    let failed = |e: crate::Error| PageError::new(&req, e.into());
    let listed = match queue.schedules().list().await {
        Ok(list) => Some(list),
        // A store of the user's own that keeps no schedules: say so.
        Err(crate::Error::Store(StoreError::Unsupported(_))) => None,
        Err(e) => return Err(failed(e)),
    };
    // Each schedule's last job, with its status (none once it is deleted).
    let mut rows = Vec::new();
    for info in listed.iter().flatten() {
        let last = match info.last_job {
            None => None,
            Some(id) => match queue.job(id).await {
                Ok(job) => Some(job.status),
                Err(crate::Error::UnknownJob(_)) => None,
                Err(e) => return Err(failed(e)),
            },
        };
        rows.push((info, last));
    }
    let base = &viewer.dash.base;
    let admin = viewer.admin();
    let main = html! {
        h1 { "Schedules" }
        @match &listed {
            None => p.muted #no-schedules { "This queue's store keeps no schedules." },
            Some(list) if list.is_empty() => p.muted #no-schedules {
                "No schedules are stored. Define them in code with "
                code { "Schedule::cron" } " or " code { "Schedule::every" } " (see docs/recurring.md)."
            },
            Some(_) => div.scroll {
                table.schedules #schedules {
                    thead { tr {
                        th { "Name" } th { "Task" } th { "When" } th { "Time zone" }
                        th { "Next run (UTC)" } th { "Last run (UTC)" } th { "Last job" } th { "Paused" }
                        @if admin { th { "Actions" } }
                    } }
                    tbody {
                        @for (info, last) in &rows {
                            (row(base, info, *last, admin))
                        }
                    }
                }
            },
        }
        p.muted {
            "Pause and resume are kept in the store (on PostgreSQL, for every process). "
            "A resumed schedule waits for its next tick; "
            em { "Run now" } " creates a job at once and leaves the next tick as it was."
        }
    };
    Ok(respond(page::frame(
        &viewer,
        Frame {
            title: "Schedules",
            events: Some(format!("{base}/events")),
            above: None,
            refresh: None,
        },
        main,
    )))
}

/// One schedule's row.
fn row(base: &str, info: &ScheduleInfo, last: Option<JobStatus>, admin: bool) -> Markup {
    let (spec, zone) = match &info.when {
        When::Cron {
            expression,
            time_zone,
        } => (html! { "cron " code { (expression) } }, time_zone.as_str()),
        When::Every(every) => (
            html! { "every " (chrono::Duration::from_std(*every).map_or_else(|_| format!("{every:?}"), page::span)) },
            "—",
        ),
    };
    html! {
        tr class=[info.paused.then_some("paused")] data-schedule=(info.name) data-paused=(info.paused) {
            td { strong { (info.name) } }
            td { a href={ (base) "/jobs?task=" (page::encode(&info.task)) } { (info.task) } }
            td.when { (spec) }
            td { (zone) }
            td { (page::time(info.next_run)) }
            td { @if let Some(at) = info.last_run { (page::time(at)) } @else { "—" } }
            td.last-job {
                @match (info.last_job, last) {
                    (Some(id), Some(status)) => {
                        a href={ (base) "/jobs/" (id.to_string()) } { code { (short(&id.to_string())) } }
                        " " (page::status(status))
                    },
                    (Some(_), None) => span.muted { "deleted" },
                    (None, _) => "—",
                }
            }
            td { @if info.paused { span.warn { "paused" } } @else { "no" } }
            @if admin {
                td.actions {
                    @if info.paused {
                        (button(base, &info.name, "resume", "Resume"))
                    } @else {
                        (button(base, &info.name, "pause", "Pause"))
                    }
                    (button(base, &info.name, "run-now", "Run now"))
                }
            }
        }
    }
}

fn short(id: &str) -> &str {
    &id[id.len().saturating_sub(12)..]
}

/// A schedule's action: posted in the background by the script.
fn button(base: &str, name: &str, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action={ (base) "/schedules/" (action) } data-live {
            input type="hidden" name="name" value=(name);
            button.small type="submit" data-action=(action) { (label) }
        }
    }
}

/// What a schedule's action names: the schedule (in the body, so any
/// name fits, slashes included).
#[derive(Debug, Deserialize)]
pub(crate) struct NameForm {
    name: String,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Pause,
    Resume,
    RunNow,
}

/// `POST /dashboard/schedules/pause`, `/resume` and `/run-now`, with the
/// schedule's `name` in the form.
pub(crate) async fn act(
    req: HttpRequest,
    action: Path<String>,
    form: Result<Form<NameForm>, actix_web::Error>,
) -> Result<HttpResponse, PageError> {
    let action = match action.as_str() {
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "run-now" => Action::RunNow,
        other => {
            return Err(PageError::new(
                &req,
                WebError::NotFound {
                    code: "route_not_found",
                    message: format!(
                        "no schedule action `{other}`: `pause`, `resume` or `run-now`"
                    ),
                },
            ))
        }
    };
    // Who asks is checked before what is asked.
    let viewer = Viewer::admin_of(&req)?;
    let name = form
        .map_err(|e| PageError::new(&req, form_error(&e)))?
        .into_inner()
        .name;
    let failed = |e: crate::Error| PageError::new(&req, e.into());
    let schedules = viewer.state.queue.schedules();
    let message = match action {
        Action::Pause => {
            schedules.pause(&name).await.map_err(failed)?;
            format!("Paused schedule {name}.")
        }
        Action::Resume => {
            schedules.resume(&name).await.map_err(failed)?;
            format!("Resumed schedule {name}: it waits for its next tick.")
        }
        Action::RunNow => {
            let job = schedules.run_now(&name).await.map_err(failed)?;
            format!("Created job {} of schedule {name}.", job.id())
        }
    };
    Ok(done(
        &req,
        message,
        &format!("{}/schedules", viewer.dash.base),
    ))
}
