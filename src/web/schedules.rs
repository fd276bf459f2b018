//! `/schedules` (feature `cron`): list, read, upsert, remove, pause,
//! resume and run now the queue's recurring jobs (`docs/recurring.md`).

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Path;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::JsonBody;
use super::dto::{CreatedJob, Done};
use super::error::{ErrorBody, WebError};
use super::{Admin, Read};
use crate::error::Error;
use crate::schedule::{Missed, Schedule, ScheduleInfo, Upserted, When};

/// What a schedule does about ticks missed while no process served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MissedView {
    /// One job for all the missed ticks (the default).
    RunOnce,
    /// No job for a tick found more than `grace` late.
    Skip,
}

impl From<Missed> for MissedView {
    fn from(missed: Missed) -> Self {
        match missed {
            Missed::Skip => MissedView::Skip,
            Missed::RunOnce => MissedView::RunOnce,
        }
    }
}

impl From<MissedView> for Missed {
    fn from(missed: MissedView) -> Self {
        match missed {
            MissedView::RunOnce => Missed::RunOnce,
            MissedView::Skip => Missed::Skip,
        }
    }
}

/// A schedule as stored: its definition, and where it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ScheduleView {
    /// Its name.
    pub(crate) name: String,
    /// The task of the jobs it creates.
    pub(crate) task: String,
    /// Their payload.
    pub(crate) payload: serde_json::Value,
    /// Its cron expression, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cron: Option<String>,
    /// The IANA time zone its cron expression is read in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) time_zone: Option<String>,
    /// Its interval (`30s`, `15m`), when it has one instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) every: Option<String>,
    /// What it does about missed ticks.
    pub(crate) missed: MissedView,
    /// Whether it is paused.
    pub(crate) paused: bool,
    /// Its next tick (while paused: the one it was waiting for).
    pub(crate) next_run: DateTime<Utc>,
    /// The tick its last job was created for.
    pub(crate) last_run: Option<DateTime<Utc>>,
    /// The last job it created.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub(crate) last_job: Option<String>,
}

impl From<ScheduleInfo> for ScheduleView {
    fn from(info: ScheduleInfo) -> Self {
        let (cron, time_zone, every) = match info.when {
            When::Cron {
                expression,
                time_zone,
            } => (Some(expression), Some(time_zone), None),
            When::Every(every) => (None, None, Some(interval(every))),
        };
        ScheduleView {
            name: info.name,
            task: info.task,
            payload: info.payload,
            cron,
            time_zone,
            every,
            missed: info.missed.into(),
            paused: info.paused,
            next_run: info.next_run,
            last_run: info.last_run,
            last_job: info.last_job.map(|id| id.to_string()),
        }
    }
}

/// An interval in the largest unit that divides it (`90s`, `15m`, `2d`),
/// as the duration fields read it back.
pub(crate) fn interval(every: Duration) -> String {
    let ms = every.as_millis();
    if every.as_micros() % 1000 != 0 || ms == 0 {
        return format!("{}us", every.as_micros());
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The schedules, by name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ScheduleList {
    /// Every schedule in the store.
    pub(crate) schedules: Vec<ScheduleView>,
}

/// A schedule's definition: its task, and `cron` or `every`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpsertScheduleRequest {
    /// The task of the jobs it creates (need not be defined here).
    #[schema(example = "report", min_length = 1)]
    pub(crate) task: String,
    /// A cron expression: 5 fields (minute first), 6 (seconds first), or
    /// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. Not with
    /// `every`.
    #[schema(example = "0 3 * * *")]
    pub(crate) cron: Option<String>,
    /// A fixed interval of real time (`30s`, `15m`; at least 1ms). Not
    /// with `cron`.
    #[schema(pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$")]
    pub(crate) every: Option<String>,
    /// The IANA time zone `cron` is read in (default `UTC`; an interval
    /// ignores it).
    #[schema(example = "Europe/Berlin")]
    pub(crate) time_zone: Option<String>,
    /// The payload of every job it creates (null when left out).
    #[serde(default)]
    pub(crate) payload: serde_json::Value,
    /// What to do about missed ticks (default `run_once`).
    pub(crate) missed: Option<MissedView>,
    /// With `missed: skip`: how late a tick may still run (default `1m`).
    #[schema(pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$")]
    pub(crate) grace: Option<String>,
    /// Its first tick is its first at or after this time.
    pub(crate) start_at: Option<DateTime<Utc>>,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// No schedule had the name: it was stored.
    Created,
    /// Its definition changed: it waits for its first tick after now.
    Changed,
    /// The same definition was stored already: nothing changed.
    Unchanged,
}

/// The answer to an upsert.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct UpsertedSchedule {
    /// What the upsert did.
    pub(crate) outcome: Outcome,
    /// The schedule as stored now.
    pub(crate) schedule: ScheduleView,
}

/// The library's error for a schedule, with its field named as the
/// request names it (`cron`, not `schedule.cron`).
fn schedule_error(err: Error) -> WebError {
    match WebError::from(err) {
        WebError::BadRequest {
            code,
            message,
            field: Some(field),
        } => WebError::BadRequest {
            code,
            message,
            field: Some(field.trim_start_matches("schedule.").to_owned()),
        },
        other => other,
    }
}

/// Every schedule in the store, by name.
#[utoipa::path(
    get,
    path = "/schedules",
    tag = "schedules",
    responses(
        (status = 200, description = "The schedules, by name", body = ScheduleList),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn list_schedules(read: Read) -> Result<HttpResponse, WebError> {
    let schedules = read.0.queue.schedules().list().await?;
    Ok(HttpResponse::Ok().json(ScheduleList {
        schedules: schedules.into_iter().map(ScheduleView::from).collect(),
    }))
}

/// One schedule.
#[utoipa::path(
    get,
    path = "/schedules/{name}",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn get_schedule(read: Read, name: Path<String>) -> Result<HttpResponse, WebError> {
    let info = read.0.queue.schedules().get(&name).await?;
    Ok(HttpResponse::Ok().json(ScheduleView::from(info)))
}

/// Builds the library's schedule from a request.
fn schedule(name: &str, req: UpsertScheduleRequest) -> Result<Schedule, WebError> {
    let mut schedule = match (req.cron, req.every) {
        (Some(_), Some(_)) => {
            return Err(WebError::invalid_field(
                "every",
                "give `cron` or `every`, not both",
            ))
        }
        (None, None) => {
            return Err(WebError::invalid_field(
                "cron",
                "give `cron` (an expression) or `every` (an interval)",
            ))
        }
        (Some(cron), None) => Schedule::cron(name, req.task, cron),
        (None, Some(every)) => Schedule::every(name, req.task, every),
    };
    if let Some(tz) = req.time_zone {
        schedule = schedule.time_zone(tz);
    }
    schedule = schedule.payload(req.payload);
    if let Some(missed) = req.missed {
        schedule = schedule.missed(missed.into());
    }
    if let Some(grace) = req.grace {
        schedule = schedule.grace(grace);
    }
    if let Some(at) = req.start_at {
        schedule = schedule.start_at(at);
    }
    schedule.validate().map_err(schedule_error)?;
    Ok(schedule)
}

/// Stores a schedule under `name`, or leaves it as it is when the stored
/// one has the same definition (its next run and last job are kept). A
/// changed definition waits for its first tick after now; a paused
/// schedule stays paused.
#[utoipa::path(
    put,
    path = "/schedules/{name}",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    request_body = UpsertScheduleRequest,
    responses(
        (status = 201, description = "Created", body = UpsertedSchedule),
        (status = 200, description = "Changed or unchanged (see `outcome`)", body = UpsertedSchedule),
        (status = 400, description = "Malformed JSON or a bad field (named in `field`: `cron`, `every`, `time_zone`, `grace`...)", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn upsert_schedule(
    admin: Admin,
    name: Path<String>,
    body: JsonBody<UpsertScheduleRequest>,
) -> Result<HttpResponse, WebError> {
    let schedule = schedule(&name, body.0)?;
    let schedules = admin.0.queue.schedules();
    let outcome = match schedules.upsert(schedule).await.map_err(schedule_error)? {
        Upserted::Created => Outcome::Created,
        Upserted::Changed => Outcome::Changed,
        Upserted::Unchanged => Outcome::Unchanged,
    };
    let schedule = ScheduleView::from(schedules.get(&name).await?);
    let mut response = if outcome == Outcome::Created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(UpsertedSchedule { outcome, schedule }))
}

/// Removes a schedule: it creates no more jobs; those it created stay.
#[utoipa::path(
    delete,
    path = "/schedules/{name}",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "Removed", body = Done),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn remove_schedule(
    admin: Admin,
    name: Path<String>,
) -> Result<HttpResponse, WebError> {
    if admin.0.queue.schedules().remove(&name).await? {
        Ok(HttpResponse::Ok().json(Done { ok: true }))
    } else {
        Err(Error::UnknownSchedule(name.into_inner()).into())
    }
}

/// Pauses a schedule, in the store: no process enqueues its ticks until
/// it is resumed.
#[utoipa::path(
    post,
    path = "/schedules/{name}/pause",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "Paused (or paused already)", body = Done),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn pause_schedule(
    admin: Admin,
    name: Path<String>,
) -> Result<HttpResponse, WebError> {
    admin.0.queue.schedules().pause(&name).await?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}

/// Resumes a schedule: it waits for its first tick after now (ticks that
/// passed while it was paused are not run).
#[utoipa::path(
    post,
    path = "/schedules/{name}/resume",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 200, description = "Resumed (or not paused)", body = Done),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn resume_schedule(
    admin: Admin,
    name: Path<String>,
) -> Result<HttpResponse, WebError> {
    admin
        .0
        .queue
        .schedules()
        .resume(&name)
        .await
        .map_err(schedule_error)?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}

/// Creates a job of the schedule now, outside its ticks (paused or not),
/// and records it as its last job; its next tick is unchanged.
#[utoipa::path(
    post,
    path = "/schedules/{name}/run-now",
    tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")),
    responses(
        (status = 201, description = "The job created", body = CreatedJob,
            headers(("location" = String, description = "The job's URL, relative to the API"))),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "A read-only token", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn run_schedule_now(
    admin: Admin,
    name: Path<String>,
) -> Result<HttpResponse, WebError> {
    let queue = &admin.0.queue;
    let handle = queue.schedules().run_now(&name).await?;
    let created = super::jobs::created(queue, handle.id(), false).await;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("jobs/{}", created.id)))
        .json(created))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_written_in_the_largest_unit_that_divides_them() {
        assert_eq!(interval(Duration::from_secs(90)), "90s");
        assert_eq!(interval(Duration::from_secs(900)), "15m");
        assert_eq!(interval(Duration::from_secs(2 * 86_400)), "2d");
        assert_eq!(interval(Duration::from_millis(1500)), "1500ms");
        assert_eq!(interval(Duration::from_micros(1500)), "1500us");
    }
}
