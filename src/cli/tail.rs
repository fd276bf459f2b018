//! `kessel tail`: job and queue events as they happen, read from a
//! running kessel HTTP API's event stream (`GET /events`, server-sent
//! events). A lost connection is resumed with `Last-Event-ID`, so nothing
//! is missed silently: what the API could not replay is printed as a
//! `lagged` line.
//!
//! On a database there is nothing to follow: events are delivered inside
//! the process that makes them, and no store carries them to another
//! process yet.

use std::time::Duration;

use serde_json::Value;

use super::api::{self, ApiClient, SseEvent};
use super::args::TailArgs;
use super::connect::Connection;
use super::error::CliError;
use super::output::Out;
use super::parse;

/// The kinds `--kind` may name: the job event kinds, and `queue`.
pub(crate) const KINDS: [&str; 14] = [
    "created",
    "scheduled",
    "started",
    "progress",
    "log",
    "completed",
    "failed",
    "timed-out",
    "retrying",
    "buried",
    "expired",
    "cancelled",
    "kicked",
    "queue",
];

/// Reconnections tried in a row before giving up.
const RETRIES: u32 = 5;
/// The wait before each reconnection.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The kinds asked for, checked; each value may hold several, comma
/// separated.
pub(crate) fn kinds(values: &[String]) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = Vec::new();
    for part in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if !KINDS.contains(&part) {
            return Err(CliError::BadValue {
                flag: "--kind",
                reason: format!("`{part}` is not one of {}", KINDS.join(", ")),
            });
        }
        if !out.iter().any(|k| k == part) {
            out.push(part.to_owned());
        }
    }
    Ok(out)
}

/// `kessel tail [--task T] [--tag G] [--job ID] [--kind K] [--count N]`.
pub(crate) fn run(target: &Connection<'_>, out: &Out, args: TailArgs) -> Result<(), CliError> {
    let kinds = kinds(&args.kind)?;
    let job = args.job.as_deref().map(parse::job_id).transpose()?;
    let Some(url) = target.api_url()? else {
        return Err(CliError::NeedsApi {
            command: "tail",
            why: "events are delivered inside the process that makes them, and a database does not carry them to another process yet",
        });
    };
    let api = ApiClient::new(api::base_url(url)?, target.token.map(str::to_owned));
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(task) = &args.task {
        query.push(("task", task.clone()));
    }
    if let Some(job) = job {
        query.push(("job", job.to_string()));
    }
    if !kinds.is_empty() {
        query.push(("kinds", kinds.join(",")));
    }
    if let Some(tag) = &args.tag {
        query.push(("tag", tag.clone()));
    }
    // The id of the last event received; once connected, an empty one
    // until the first event, so a reconnection is told that events may
    // have been missed.
    let mut last_id: Option<String> = None;
    let mut shown = 0u64;
    let mut failures = 0;
    loop {
        match api.events(&query, last_id.as_deref()) {
            Ok(mut reader) => {
                last_id.get_or_insert_with(String::new);
                while let Ok(Some(event)) = reader.next_event() {
                    failures = 0;
                    if let Some(id) = &event.id {
                        last_id = Some(id.clone());
                    }
                    let line = render(out, &event);
                    if !out.line(&line)? {
                        // The reader of our output is gone (`kessel tail | head`).
                        return Ok(());
                    }
                    if event.name != "lagged" {
                        shown += 1;
                        if args.count.is_some_and(|n| shown >= n) {
                            return Ok(());
                        }
                    }
                }
            }
            // A stream that was open and broke: the API may be
            // restarting, so try again a few times. An API never reached
            // or refusing is reported at once.
            Err(e @ CliError::ApiUnreachable { .. }) if last_id.is_some() => {
                if failures >= RETRIES {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        failures += 1;
        if failures > RETRIES {
            return Err(CliError::ApiUnreachable {
                url: api.base.clone(),
                reason: "the event stream keeps ending".into(),
            });
        }
        std::thread::sleep(RETRY_AFTER);
    }
}

/// The line printed for `event`.
pub(crate) fn render(out: &Out, event: &SseEvent) -> String {
    let data: Value =
        serde_json::from_str(&event.data).unwrap_or(Value::String(event.data.clone()));
    let kind = match event.name.as_str() {
        "job" => "job",
        "lagged" => "lagged",
        _ => "queue",
    };
    if out.json {
        return data.to_string();
    }
    match kind {
        "job" => {
            let name = data["kind"].as_str().unwrap_or("?");
            let at = data["at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or_else(
                    || "-".to_owned(),
                    |t| t.to_utc().format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                );
            let detail = detail(&data);
            let line = format!(
                "{at}  {}  {}  {}  #{}",
                out.kind(name, &format!("{name:<9}")),
                data["task"].as_str().unwrap_or("?"),
                data["id"].as_str().unwrap_or("?"),
                data["attempt"].as_u64().unwrap_or_default(),
            );
            if detail.is_empty() {
                line
            } else {
                format!("{line}  {detail}")
            }
        }
        "lagged" => match data["missed"].as_u64() {
            Some(n) => format!("lagged: {n} events missed (the API no longer holds them)"),
            None => "lagged: events may have been missed (the API restarted); re-read the jobs you follow".to_owned(),
        },
        _ => {
            let name = data["kind"].as_str().unwrap_or("?").to_owned();
            let mut rest = data.clone();
            if let Some(map) = rest.as_object_mut() {
                map.remove("type");
                map.remove("kind");
            }
            format!("queue  {}  {rest}", out.bold(&name))
        }
    }
}

/// What a job event says beyond its kind.
fn detail(data: &Value) -> String {
    match data["kind"].as_str().unwrap_or_default() {
        "scheduled" | "retrying" => data["run_at"]
            .as_str()
            .map(|t| format!("run at {t}"))
            .unwrap_or_default(),
        "progress" => format!("{}/{}", data["current"], data["total"]),
        "log" => {
            let message = data["message"].as_str().unwrap_or_default();
            match &data["data"] {
                Value::Null => message.to_owned(),
                extra => format!("{message}  {extra}"),
            }
        }
        "completed" => match &data["value"] {
            Value::Null => String::new(),
            value => value.to_string(),
        },
        "failed" | "buried" => data["message"].as_str().unwrap_or_default().to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain() -> Out {
        Out::plain(false)
    }

    #[test]
    fn a_job_event_is_one_line_with_its_detail() {
        let event = SseEvent {
            id: Some("ab-1".into()),
            name: "job".into(),
            data: r#"{"type":"job","id":"0190aaaa-0000-7000-8000-000000000000","task":"greet","tag":"default","attempt":1,"at":"2026-12-05T00:11:30.123Z","kind":"completed","value":"hi"}"#.into(),
        };
        assert_eq!(
            render(&plain(), &event),
            "2026-12-05 00:11:30.123  completed  greet  0190aaaa-0000-7000-8000-000000000000  #1  \"hi\""
        );
        assert_eq!(
            render(&Out::plain(true), &event),
            serde_json::from_str::<Value>(&event.data)
                .unwrap()
                .to_string()
        );
    }

    #[test]
    fn lagged_events_say_how_many_were_missed() {
        let event = SseEvent {
            id: None,
            name: "lagged".into(),
            data: r#"{"type":"lagged","missed":3}"#.into(),
        };
        assert_eq!(
            render(&plain(), &event),
            "lagged: 3 events missed (the API no longer holds them)"
        );
    }

    #[test]
    fn kinds_are_checked_and_may_be_comma_separated() {
        assert_eq!(
            kinds(&["started, completed".into(), "started".into()]).unwrap(),
            ["started", "completed"]
        );
        let err = kinds(&["done".into()]).unwrap_err();
        assert!(err
            .line()
            .starts_with("error: invalid value for --kind: `done` is not one of"));
    }

    proptest! {
        #[test]
        fn any_event_renders_without_panicking(name in "job|queue|lagged|x", data in ".*") {
            let event = SseEvent { id: None, name, data };
            let _ = render(&plain(), &event);
        }

        #[test]
        fn any_kind_text_is_a_kind_or_a_one_line_error(text in ".*") {
            if let Err(err) = kinds(&[text]) {
                prop_assert_eq!(err.exit_code(), 1);
                prop_assert!(!err.line().contains('\n'));
            }
        }
    }
}
