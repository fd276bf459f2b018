//! The CLI's own error: one variant per thing an operator can get wrong,
//! each printed as one line and mapped to a documented exit code.

use kessel::{DurationError, Error, JobId};

/// Everything an invocation can fail with. [`CliError::exit_code`] says
/// which exit code it gives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CliError {
    /// Neither `--database-url` nor `KESSEL_DATABASE_URL` (nor an API) was
    /// given.
    #[error("no database given: pass --database-url or set KESSEL_DATABASE_URL (or --api URL for a running kessel HTTP API)")]
    NoDatabase,
    /// A database URL that is neither SQLite nor PostgreSQL.
    #[error("cannot read database URL \"{0}\": expected sqlite:PATH, a path ending in .db, .sqlite or .sqlite3, or postgres://...")]
    BadDatabaseUrl(String),
    /// `--schema` with a SQLite store or an API.
    #[error("--schema applies to PostgreSQL only, not to {0}")]
    SchemaOnSqlite(String),
    /// The SQLite file does not exist (only `migrate` creates one).
    #[error("no SQLite store at {0} (run `kessel migrate` to create one)")]
    NoSqliteFile(String),
    /// The store could not be opened.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The store, its password hidden.
        target: String,
        /// What the library said.
        source: Error,
    },
    /// A job id that is not a UUID.
    #[error("invalid job id \"{text}\": {source}")]
    BadId {
        /// The text given.
        text: String,
        /// Why it is not an id.
        source: uuid::Error,
    },
    /// A duration flag kessel cannot read.
    #[error("invalid duration \"{text}\" for {flag}: {source}")]
    BadDuration {
        /// The flag, such as `--delay`.
        flag: &'static str,
        /// The text given.
        text: String,
        /// What `kessel::parse_duration` said.
        source: DurationError,
    },
    /// A time flag that is not RFC 3339.
    #[error("invalid time \"{text}\" for {flag}: {source} (expected RFC 3339, such as 2030-01-31T09:00:00Z)")]
    BadTime {
        /// The flag, such as `--run-at`.
        flag: &'static str,
        /// The text given.
        text: String,
        /// What chrono said.
        source: chrono::ParseError,
    },
    /// A status name kessel does not have.
    #[error("invalid status for {flag}: {source}")]
    BadStatus {
        /// The flag.
        flag: &'static str,
        /// What the library said.
        source: kessel::UnknownStatus,
    },
    /// A value that parses but cannot be used (a non-final status to clean).
    #[error("invalid value for {flag}: {reason}")]
    BadValue {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// A payload that is not JSON.
    #[error("malformed JSON payload {origin}: {source}")]
    BadPayload {
        /// Where it came from: `(argument)`, `(stdin)`, `on line 3 of jobs.jsonl`.
        origin: String,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// A file or stdin that could not be read.
    #[error("cannot read {what}: {source}")]
    Read {
        /// What was read.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No job with this id.
    #[error("no job {0}")]
    NoJob(JobId),
    /// No schedule with this name.
    #[error("no schedule called `{0}`")]
    NoSchedule(String),
    /// A queue operation the library refused or failed.
    #[error("{action}: {source}")]
    Queue {
        /// What was being done, such as `cancel 0190...`.
        action: String,
        /// What the library said.
        source: Error,
    },
    /// The library or the API refused: the job is in the wrong state for
    /// it. The message is the library's (`job ... is cancelled, cannot
    /// cancel`), from either.
    #[error("{0}")]
    Refused(String),
    /// Both a database and an API were given.
    #[error("give either a database (--database-url) or an API (--api), not both")]
    BothTargets,
    /// A command that needs the HTTP API, run on a database.
    #[error("`{command}` needs a running kessel HTTP API (--api URL): {why}")]
    NeedsApi {
        /// The command.
        command: &'static str,
        /// Why a database will not do.
        why: &'static str,
    },
    /// A command that needs a database, run on an API.
    #[error("`{0}` works on a database (--database-url), not on an API")]
    NeedsDatabase(&'static str),
    /// An API URL kessel cannot use.
    #[error("cannot use API URL \"{url}\": {reason}")]
    BadApiUrl {
        /// The URL given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The API could not be reached (refused, no such host, timed out).
    #[error("cannot reach the kessel API at {url}: {reason}")]
    ApiUnreachable {
        /// The API's URL.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// The API answered with an error.
    #[error("{action}: the API answered {status} {code}: {message}")]
    Api {
        /// What was being done.
        action: String,
        /// The HTTP status.
        status: u16,
        /// The API's error code (`unauthorized`, `invalid_field`, ...).
        code: String,
        /// The API's message.
        message: String,
    },
    /// `serve` with no token and without `--no-auth`.
    #[error("`serve` needs a token (--token or KESSEL_API_TOKEN, --read-only-token) or --no-auth to let anyone who reaches it change jobs")]
    NoAuth,
    /// `serve` could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Output could not be written or encoded.
    #[error("cannot write output: {0}")]
    Output(String),
}

/// Exit code: success.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code: an error (bad input, a failing store, a refused operation).
pub(crate) const EXIT_ERROR: u8 = 1;
/// Exit code: bad usage (clap's own, and a missing database).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: the job named does not exist.
pub(crate) const EXIT_NOT_FOUND: u8 = 3;

impl CliError {
    /// The process exit code this error gives (see `docs/cli.md`).
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::NoDatabase
            | CliError::SchemaOnSqlite(_)
            | CliError::BothTargets
            | CliError::NeedsApi { .. }
            | CliError::NeedsDatabase(_)
            | CliError::NoAuth => EXIT_USAGE,
            CliError::NoJob(_)
            | CliError::NoSchedule(_)
            | CliError::Queue {
                source: Error::UnknownJob(_),
                ..
            } => EXIT_NOT_FOUND,
            _ => EXIT_ERROR,
        }
    }

    /// Wraps a library error from `action`; an unknown job becomes
    /// [`CliError::NoJob`].
    pub(crate) fn queue(action: impl Into<String>, source: Error) -> Self {
        match source {
            Error::UnknownJob(id) => CliError::NoJob(id),
            Error::UnknownSchedule(name) => CliError::NoSchedule(name),
            source @ Error::WrongState { .. } => CliError::Refused(source.to_string()),
            source => CliError::Queue {
                action: action.into(),
                source,
            },
        }
    }

    /// The error as the one line printed on stderr (`error: ...`), with
    /// any line breaks of wrapped errors folded into spaces.
    pub(crate) fn line(&self) -> String {
        let text = self.to_string();
        let folded: Vec<&str> = text.split_whitespace().collect();
        format!("error: {}", folded.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_job_exits_3_and_other_failures_1() {
        let id: JobId = "0190aaaa-0000-7000-8000-000000000000".parse().unwrap();
        assert_eq!(CliError::NoJob(id).exit_code(), EXIT_NOT_FOUND);
        assert_eq!(
            CliError::queue("cancel", Error::UnknownJob(id)).exit_code(),
            EXIT_NOT_FOUND
        );
        assert_eq!(
            CliError::queue("cancel", Error::ShutDown).exit_code(),
            EXIT_ERROR
        );
        assert_eq!(CliError::NoDatabase.exit_code(), EXIT_USAGE);
    }

    #[test]
    fn errors_print_as_one_line() {
        let err = CliError::Output("two\nlines".into());
        assert_eq!(err.line(), "error: cannot write output: two lines");
    }
}
