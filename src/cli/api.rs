//! A client of a running kessel HTTP API (`--api URL`, `docs/http.md`):
//! one blocking request at a time with ureq, errors read from the API's
//! `{"error": {"code", "message"}}` body, and the event stream read as
//! server-sent events.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use kessel::{Job, JobId};
use serde_json::Value;

use super::error::CliError;

/// How long to wait for a connection to the API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request (not the event stream) may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest response read (a page of 1000 jobs with their logs).
const RESPONSE_LIMIT: u64 = 256 << 20;

/// A running kessel HTTP API and the token to use on it.
#[derive(Debug)]
pub(crate) struct ApiClient {
    /// The API's base URL, without a trailing `/` (`http://host:8080/kessel`).
    pub(crate) base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Reads `text` as an API base URL: `http://HOST[:PORT][/MOUNT]`, or
/// `https://...` when built with the `cli-tls` feature.
pub(crate) fn base_url(text: &str) -> Result<String, CliError> {
    let text = text.trim();
    let bad = |reason: &str| CliError::BadApiUrl {
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = if let Some(rest) = text.strip_prefix("http://") {
        rest
    } else if let Some(rest) = text.strip_prefix("https://") {
        if !cfg!(feature = "cli-tls") {
            return Err(bad(
                "https needs kessel built with the `cli-tls` feature (this one speaks plain http)",
            ));
        }
        rest
    } else {
        return Err(bad("expected http://HOST[:PORT][/PATH]"));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad("no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(bad(
            "a query or fragment has no place in the API's base URL",
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// An error the API answered with, as its body says it.
#[derive(Debug, serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, serde::Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl ApiClient {
    /// A client of the API at `base` (checked by [`base_url`]).
    pub(crate) fn new(base: String, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("kessel-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        ApiClient {
            base,
            token: token.filter(|t| !t.is_empty()),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, err: ureq::Error) -> CliError {
        CliError::ApiUnreachable {
            url: self.base.clone(),
            reason: err.to_string(),
        }
    }

    fn authorized<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => req.header("authorization", format!("Bearer {token}")),
            None => req,
        }
    }

    /// `GET path` with `query`, its JSON answer.
    pub(crate) fn get(
        &self,
        action: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        let mut req = self
            .authorized(self.agent.get(self.url(path)))
            .config()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build();
        for (key, value) in query {
            req = req.query(*key, value);
        }
        let response = req.call().map_err(|e| self.unreachable(e))?;
        self.answer(action, response)
    }

    /// `POST path` with a JSON `body`, its JSON answer.
    pub(crate) fn post(&self, action: &str, path: &str, body: &Value) -> Result<Value, CliError> {
        let response = self
            .authorized(self.agent.post(self.url(path)))
            .config()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .header("content-type", "application/json")
            .send(body.to_string())
            .map_err(|e| self.unreachable(e))?;
        self.answer(action, response)
    }

    /// Sends a DELETE to `path`; the answer's JSON.
    pub(crate) fn delete(&self, action: &str, path: &str) -> Result<Value, CliError> {
        let response = self
            .authorized(self.agent.delete(self.url(path)))
            .config()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.answer(action, response)
    }

    /// Removes an ended job.
    pub(crate) fn delete_job(&self, id: JobId) -> Result<(), CliError> {
        self.delete(&format!("cannot delete {id}"), &format!("/jobs/{id}"))
            .map_err(|e| not_found(e, id))?;
        Ok(())
    }

    fn answer(
        &self,
        action: &str,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<Value, CliError> {
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(RESPONSE_LIMIT)
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| CliError::Api {
                action: action.to_owned(),
                status,
                code: "not_json".into(),
                message: format!(
                    "the answer is not JSON ({e}); is {} a kessel API?",
                    self.base
                ),
            });
        }
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (
                "not_kessel".into(),
                format!("not an answer of a kessel API; is {} one?", self.base),
            ),
        };
        Err(match code.as_str() {
            "wrong_state" => CliError::Refused(message),
            _ => CliError::Api {
                action: action.to_owned(),
                status,
                code,
                message,
            },
        })
    }

    /// One job, or [`CliError::NoJob`].
    pub(crate) fn job(&self, id: JobId) -> Result<Job, CliError> {
        let value = self
            .get(
                &format!("cannot read job {id}"),
                &format!("/jobs/{id}"),
                &[],
            )
            .map_err(|e| not_found(e, id))?;
        job_of(value)
    }

    /// `POST /jobs/{id}/{verb}` (cancel or kick).
    pub(crate) fn job_action(&self, id: JobId, verb: &str) -> Result<(), CliError> {
        self.post(
            &format!("cannot {verb} {id}"),
            &format!("/jobs/{id}/{verb}"),
            &Value::Null,
        )
        .map_err(|e| not_found(e, id))?;
        Ok(())
    }

    /// Opens the event stream with these query parameters, resuming
    /// after `last_id` when given.
    pub(crate) fn events(
        &self,
        query: &[(&str, String)],
        last_id: Option<&str>,
    ) -> Result<EventReader, CliError> {
        let mut req = self
            .authorized(self.agent.get(self.url("/events")))
            .header("accept", "text/event-stream");
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        for (key, value) in query {
            req = req.query(*key, value);
        }
        let response = req.call().map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(self
                .answer("cannot follow the events", response)
                .err()
                .unwrap_or_else(|| CliError::ApiUnreachable {
                    url: self.base.clone(),
                    reason: "the event stream did not open".into(),
                }));
        }
        Ok(EventReader {
            lines: BufReader::new(response.into_body().into_reader()),
        })
    }
}

/// A 404 about a job, as [`CliError::NoJob`].
fn not_found(err: CliError, id: JobId) -> CliError {
    match err {
        CliError::Api {
            status: 404, code, ..
        } if code == "job_not_found" => CliError::NoJob(id),
        other => other,
    }
}

/// A job as the API shows it, read as the library's `Job` (the same
/// fields).
pub(crate) fn job_of(value: Value) -> Result<Job, CliError> {
    serde_json::from_value(value).map_err(|e| CliError::Api {
        action: "cannot read a job".into(),
        status: 200,
        code: "unexpected_shape".into(),
        message: e.to_string(),
    })
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// Its `id:`.
    pub(crate) id: Option<String>,
    /// Its `event:` name (`job`, `queue`, `lagged`).
    pub(crate) name: String,
    /// Its `data:` lines, joined by newlines.
    pub(crate) data: String,
}

/// Reads server-sent events off a response body.
pub(crate) struct EventReader {
    lines: BufReader<ureq::BodyReader<'static>>,
}

impl std::fmt::Debug for EventReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventReader")
    }
}

impl EventReader {
    /// The next event, `Ok(None)` when the stream ends. Comments
    /// (`: keep-alive`) are skipped.
    pub(crate) fn next_event(&mut self) -> std::io::Result<Option<SseEvent>> {
        let mut event = SseEvent::default();
        let mut seen = false;
        let mut line = String::new();
        loop {
            line.clear();
            if self.lines.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if seen {
                    return Ok(Some(event));
                }
                continue;
            }
            if parse_field(&mut event, line) {
                seen = true;
            }
        }
    }
}

/// Adds one `field: value` line to `event`; false for a comment or an
/// unknown field.
pub(crate) fn parse_field(event: &mut SseEvent, line: &str) -> bool {
    if line.starts_with(':') {
        return false;
    }
    let (field, value) = line.split_once(':').unwrap_or((line, ""));
    let value = value.strip_prefix(' ').unwrap_or(value);
    match field {
        "id" => event.id = Some(value.to_owned()),
        "event" => event.name = value.to_owned(),
        "data" => {
            if !event.data.is_empty() {
                event.data.push('\n');
            }
            event.data.push_str(value);
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn api_urls_are_http_with_a_host() {
        assert_eq!(
            base_url("http://127.0.0.1:8080/kessel/").unwrap(),
            "http://127.0.0.1:8080/kessel"
        );
        assert!(matches!(
            base_url("ftp://h"),
            Err(CliError::BadApiUrl { .. })
        ));
        assert!(matches!(
            base_url("http:///x"),
            Err(CliError::BadApiUrl { .. })
        ));
        assert!(matches!(
            base_url("http://h/x?a=1"),
            Err(CliError::BadApiUrl { .. })
        ));
        if !cfg!(feature = "cli-tls") {
            let err = base_url("https://h").unwrap_err();
            assert!(err.line().contains("cli-tls"), "{}", err.line());
        }
    }

    #[test]
    fn sse_fields_build_an_event() {
        let mut event = SseEvent::default();
        assert!(!parse_field(&mut event, ": keep-alive"));
        assert!(parse_field(&mut event, "id: ab12-7"));
        assert!(parse_field(&mut event, "event: job"));
        assert!(parse_field(&mut event, "data: {\"a\":1}"));
        assert_eq!(
            event,
            SseEvent {
                id: Some("ab12-7".into()),
                name: "job".into(),
                data: "{\"a\":1}".into()
            }
        );
    }

    proptest! {
        #[test]
        fn any_api_url_is_accepted_or_a_one_line_error(text in ".*") {
            if let Err(err) = base_url(&text) {
                prop_assert_eq!(err.exit_code(), 1);
                prop_assert!(!err.line().contains('\n'));
            }
        }

        #[test]
        fn any_sse_line_parses_without_panicking(line in ".*") {
            let mut event = SseEvent::default();
            let _ = parse_field(&mut event, &line);
        }
    }
}
