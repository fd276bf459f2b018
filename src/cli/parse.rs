//! Reading the operator's values: job ids, durations, times, statuses,
//! payloads and the database URL. Each returns a [`CliError`] naming the
//! flag and the text, never panics (see the property tests below).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kessel::{JobId, JobStatus};
use serde_json::value::RawValue;

use super::error::CliError;

/// A job id (a UUID).
pub(crate) fn job_id(text: &str) -> Result<JobId, CliError> {
    text.trim().parse().map_err(|source| CliError::BadId {
        text: text.to_owned(),
        source,
    })
}

/// A duration for `flag`, read by [`kessel::parse_duration`].
pub(crate) fn duration(flag: &'static str, text: &str) -> Result<Duration, CliError> {
    kessel::parse_duration(text).map_err(|source| CliError::BadDuration {
        flag,
        text: text.to_owned(),
        source,
    })
}

/// An RFC 3339 time for `flag`, in UTC.
pub(crate) fn time(flag: &'static str, text: &str) -> Result<DateTime<Utc>, CliError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|source| CliError::BadTime {
            flag,
            text: text.to_owned(),
            source,
        })
}

/// Statuses for `flag`; each value may hold several, comma separated.
pub(crate) fn statuses(flag: &'static str, values: &[String]) -> Result<Vec<JobStatus>, CliError> {
    let mut out = Vec::new();
    for value in values {
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let status = part
                .parse()
                .map_err(|source| CliError::BadStatus { flag, source })?;
            if !out.contains(&status) {
                out.push(status);
            }
        }
    }
    Ok(out)
}

/// A JSON payload, kept as the text given (key order and numbers as
/// written). `origin` says where it came from, for the error.
pub(crate) fn payload(
    text: &str,
    origin: impl FnOnce() -> String,
) -> Result<Box<RawValue>, CliError> {
    serde_json::from_str::<Box<RawValue>>(text.trim()).map_err(|source| CliError::BadPayload {
        origin: origin(),
        source,
    })
}

/// Which store a database URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

/// Reads a database URL: `sqlite:PATH` (also `sqlite://PATH`), a bare
/// path ending in `.db`, `.sqlite` or `.sqlite3`, or
/// `postgres://...`/`postgresql://...`.
pub(crate) fn database_url(text: &str) -> Result<Target, CliError> {
    let text = text.trim();
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Ok(Target::Postgres(text.to_owned()));
    }
    if let Some(rest) = text.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() {
            return Err(CliError::BadDatabaseUrl(text.to_owned()));
        }
        return Ok(Target::Sqlite(PathBuf::from(path)));
    }
    let lower = text.to_ascii_lowercase();
    if !text.contains("://")
        && [".db", ".sqlite", ".sqlite3"]
            .iter()
            .any(|ext| lower.ends_with(ext) && lower.len() > ext.len())
    {
        return Ok(Target::Sqlite(PathBuf::from(text)));
    }
    Err(CliError::BadDatabaseUrl(text.to_owned()))
}

/// The URL with its password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn database_urls_name_their_store() {
        assert_eq!(
            database_url("sqlite:jobs.db").unwrap(),
            Target::Sqlite("jobs.db".into())
        );
        assert_eq!(
            database_url("sqlite:///tmp/j").unwrap(),
            Target::Sqlite("/tmp/j".into())
        );
        assert_eq!(
            database_url("./x/jobs.sqlite").unwrap(),
            Target::Sqlite("./x/jobs.sqlite".into())
        );
        assert_eq!(
            database_url("postgres://u@h/db").unwrap(),
            Target::Postgres("postgres://u@h/db".into())
        );
        assert!(matches!(
            database_url("mysql://h/db"),
            Err(CliError::BadDatabaseUrl(_))
        ));
        assert!(matches!(
            database_url("jobs"),
            Err(CliError::BadDatabaseUrl(_))
        ));
        assert!(matches!(
            database_url("sqlite:"),
            Err(CliError::BadDatabaseUrl(_))
        ));
    }

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn a_bad_duration_names_its_flag_and_text() {
        let err = duration("--delay", "5 parsecs").unwrap_err();
        assert_eq!(
            err.line(),
            "error: invalid duration \"5 parsecs\" for --delay: invalid duration `5 parsecs`: the unit is not one of ms, s, m, h, d"
        );
        assert_eq!(duration("--delay", "90s").unwrap(), Duration::from_secs(90));
    }

    #[test]
    fn statuses_may_be_comma_separated_and_repeated() {
        let got = statuses("--status", &["buried, expired".into(), "buried".into()]).unwrap();
        assert_eq!(got, vec![JobStatus::Buried, JobStatus::Expired]);
        assert!(matches!(
            statuses("--status", &["done".into()]),
            Err(CliError::BadStatus {
                flag: "--status",
                ..
            })
        ));
    }

    #[test]
    fn payloads_keep_their_text_and_errors_say_where() {
        assert_eq!(
            payload(r#" {"b":1,"a":2} "#, String::new).unwrap().get(),
            r#"{"b":1,"a":2}"#
        );
        let err = payload("{oops", || "on line 3 of jobs.jsonl".into()).unwrap_err();
        assert!(err
            .line()
            .starts_with("error: malformed JSON payload on line 3 of jobs.jsonl: "));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_delay_text_parses_or_names_the_flag(text in ".*") {
            match duration("--delay", &text) {
                Ok(_) => {}
                Err(err) => {
                    prop_assert_eq!(err.exit_code(), 1);
                    let line = err.line();
                    prop_assert!(line.contains("--delay"));
                    prop_assert!(!line.contains('\n'));
                }
            }
        }

        #[test]
        fn any_id_text_parses_or_is_a_bad_id(text in ".*") {
            match job_id(&text) {
                Ok(id) => prop_assert_eq!(job_id(&id.to_string()).unwrap(), id),
                Err(err) => {
                    let is_bad_id = matches!(err, CliError::BadId { .. });
                    prop_assert!(is_bad_id);
                    prop_assert_eq!(err.exit_code(), 1);
                    prop_assert!(!err.line().contains('\n'));
                }
            }
        }

        #[test]
        fn any_database_url_is_a_store_or_a_one_line_error(text in ".*") {
            if let Err(err) = database_url(&text) {
                prop_assert_eq!(err.exit_code(), 1);
                prop_assert!(!err.line().contains('\n'));
            }
        }

        #[test]
        fn any_run_at_text_parses_or_names_the_flag(text in ".*") {
            if let Err(err) = time("--run-at", &text) {
                prop_assert!(err.line().contains("--run-at"));
            }
        }
    }
}
