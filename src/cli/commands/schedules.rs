//! `kessel schedules`: list them, pause, resume or run one now.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::when;
use crate::cli::args::{ScheduleAction, SchedulesArgs};
use crate::cli::backend::Backend;
use crate::cli::error::CliError;
use crate::cli::output::{Cell, Out, Table};

/// `kessel schedules [list]`, `kessel schedules pause|resume|run-now NAME`.
pub(crate) async fn schedules(
    backend: &Backend,
    out: &Out,
    args: SchedulesArgs,
) -> Result<(), CliError> {
    let (verb, done, name) = match args.action.unwrap_or(ScheduleAction::List) {
        ScheduleAction::List => return list_schedules(backend, out).await,
        ScheduleAction::Pause { name } => ("pause", "paused", name),
        ScheduleAction::Resume { name } => ("resume", "resumed", name),
        ScheduleAction::RunNow { name } => ("run-now", "ran", name),
    };
    let job = backend.schedule_action(verb, &name).await?;
    match (job, out.json) {
        (Some(id), true) => out.json(&json!({ "schedule": name, "job": id })),
        (Some(id), false) => out.text(&id.to_string()),
        (None, true) => out.json(&json!({ "schedule": name, done: true })),
        (None, false) => out.text(&format!("{done} schedule `{name}`")),
    }
}

async fn list_schedules(backend: &Backend, out: &Out) -> Result<(), CliError> {
    let schedules = backend.schedules().await?;
    if out.json {
        return out.json(&schedules);
    }
    if schedules.is_empty() {
        return out.text("no schedules");
    }
    let text = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
    let time = |v: &Value| {
        v.as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(|| "-".to_owned(), |t| when(t.with_timezone(&Utc)))
    };
    let mut table = Table::new(
        out,
        &[
            "NAME", "TASK", "WHEN", "MISSED", "STATE", "NEXT RUN", "LAST RUN", "LAST JOB",
        ],
        &[false; 8],
    );
    for s in &schedules {
        let timing = match (s["cron"].as_str(), s["every"].as_str()) {
            (Some(cron), _) => match s["time_zone"].as_str() {
                Some(tz) if tz != "UTC" => format!("{cron} ({tz})"),
                _ => cron.to_owned(),
            },
            (None, Some(every)) => format!("every {every}"),
            (None, None) => "-".to_owned(),
        };
        let state = if s["paused"].as_bool().unwrap_or(false) {
            "paused"
        } else {
            "active"
        };
        table.row(vec![
            Cell::left(text(&s["name"])),
            Cell::left(text(&s["task"])),
            Cell::left(timing),
            Cell::left(text(&s["missed"]).replace('_', "-")),
            Cell::left(state),
            Cell::left(time(&s["next_run"])),
            Cell::left(time(&s["last_run"])),
            Cell::left(text(&s["last_job"])),
        ]);
    }
    out.text(&table.render())
}
