//! Error types, one per boundary.
//!
//! - [`Error`]: what the [`Queue`](crate::Queue) API returns to callers.
//! - [`DurationError`]: a duration that could not be read.
//! - [`PayloadError`]: a job payload that does not fit its handler's type.
//! - [`StoreError`](crate::store::StoreError): what a store returns.
//! - [`JobError`](crate::JobError): what a handler returns.

use std::fmt;

use crate::job::{JobId, JobStatus};
use crate::store::StoreError;

/// A duration that could not be read; names the text and what is wrong.
///
/// # Examples
///
/// ```
/// let err = kessel::parse_duration("10 parsecs").unwrap_err();
/// assert_eq!(err.text(), "10 parsecs");
/// assert_eq!(
///     err.to_string(),
///     "invalid duration `10 parsecs`: the unit is not one of ms, s, m, h, d"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason}")]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl DurationError {
    pub(crate) fn new(text: impl Into<String>, reason: &'static str) -> Self {
        DurationError {
            text: text.into(),
            reason,
        }
    }

    /// The text that could not be read.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A payload that does not deserialize into the type its handler takes.
///
/// `path` names the field (`user.email`, `items[2].qty`, or `.` for the
/// payload as a whole).
///
/// # Examples
///
/// ```
/// let err = kessel::PayloadError::new("send email", "to", "missing field `to`");
/// assert_eq!(
///     err.to_string(),
///     "payload of task `send email` does not fit at `to`: missing field `to`"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload of task `{task}` does not fit at `{path}`: {message}")]
pub struct PayloadError {
    /// The task whose handler rejected the payload.
    pub task: String,
    /// The path of the field that failed, `.` for the whole payload.
    pub path: String,
    /// What serde said.
    pub message: String,
}

impl PayloadError {
    /// A payload error for `task` at `path`.
    pub fn new(
        task: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PayloadError {
            task: task.into(),
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn from_path_error(
        task: &str,
        err: serde_path_to_error::Error<serde_json::Error>,
    ) -> Self {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        // A missing field is reported at the object that lacks it: name
        // the field itself.
        let path = match missing_field(&message) {
            Some(field) if path == "." => field.to_owned(),
            Some(field) => format!("{path}.{field}"),
            None => path,
        };
        PayloadError::new(task, path, message)
    }
}

/// The field serde's "missing field `x`" message names.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next().filter(|f| !f.is_empty())
}

/// What the [`Queue`](crate::Queue) API returns when it cannot do what was asked.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() {
/// let queue = kessel::Queue::new();
/// let err = queue.create("report", ()).delay("soon").await.unwrap_err();
/// assert!(matches!(err, kessel::Error::InvalidDuration(_)));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A duration could not be read.
    #[error(transparent)]
    InvalidDuration(#[from] DurationError),
    /// A payload could not be serialized to JSON when creating a job.
    #[error("payload for task `{task}` cannot be serialized: {source}")]
    InvalidPayload {
        /// The task the job was for.
        task: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// A job definition was rejected (empty task name, a name with `:`).
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which input was wrong.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No job has this id.
    #[error("no job with id {0}")]
    UnknownJob(JobId),
    /// The job is in a state that does not allow the operation.
    #[error("job {id} is {status}, cannot {operation}")]
    WrongState {
        /// The job.
        id: JobId,
        /// Its current status.
        status: JobStatus,
        /// What was attempted.
        operation: &'static str,
    },
    /// The store failed.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The queue has shut down (or its actix system stopped).
    #[error("the queue has shut down")]
    ShutDown,
    /// The operation needs a queue on the PostgreSQL store and this
    /// queue is on another (`Queue::create_in` and `Queue::create_many_in`
    /// write in the caller's PostgreSQL transaction). Nothing was written.
    ///
    /// ```
    /// fn explain(err: &kessel::Error) -> String {
    ///     match err {
    ///         kessel::Error::NeedsPostgres { operation, .. } => {
    ///             format!("{operation}: open the queue with Queue::postgres")
    ///         }
    ///         other => other.to_string(),
    ///     }
    /// }
    /// # let _ = explain;
    /// ```
    #[error("{operation} needs a queue on the PostgreSQL store")]
    #[non_exhaustive]
    NeedsPostgres {
        /// What was attempted.
        operation: &'static str,
    },
}

/// What a job handler returns when it fails.
///
/// A [`JobError::transient`] failure is retried with backoff until the job's
/// attempts run out; a [`JobError::fatal`] one buries the job at once. Any
/// `std::error::Error` converts into a transient failure with `?`.
///
/// # Examples
///
/// ```
/// use kessel::JobError;
///
/// fn check(n: i32) -> Result<(), JobError> {
///     if n < 0 {
///         return Err(JobError::fatal("negative input can never succeed"));
///     }
///     let _parsed: i32 = "12".parse()?; // a ParseIntError would be transient
///     Ok(())
/// }
/// assert!(check(-1).unwrap_err().is_fatal());
/// assert!(check(1).is_ok());
/// ```
pub struct JobError {
    pub(crate) kind: JobErrorKind,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobErrorKind {
    Transient,
    RetryAfter(std::time::Duration),
    Fatal,
    Snooze(std::time::Duration),
}

impl JobError {
    /// A failure worth retrying (a timeout, a connection reset).
    pub fn transient(message: impl fmt::Display) -> Self {
        JobError {
            kind: JobErrorKind::Transient,
            message: message.to_string(),
        }
    }

    /// A failure that retrying cannot fix; the job is buried at once.
    pub fn fatal(message: impl fmt::Display) -> Self {
        JobError {
            kind: JobErrorKind::Fatal,
            message: message.to_string(),
        }
    }

    /// A transient failure that asks to be retried after `delay` instead of
    /// the task's backoff (a rate limit's `Retry-After`).
    pub fn retry_after(delay: std::time::Duration, message: impl fmt::Display) -> Self {
        JobError {
            kind: JobErrorKind::RetryAfter(delay),
            message: message.to_string(),
        }
    }

    /// Not a failure: the handler asks to run the job again after `delay`
    /// without counting this attempt (Oban's `{:snooze, n}`, River's
    /// `JobSnooze`). The job waits as `scheduled`, logs
    /// `snoozed for {delay}`, emits a `scheduled` event, and keeps its
    /// attempts: a job allowed 3 attempts still has 3 after any number of
    /// snoozes. Use it when the work is not ready yet (an upstream report
    /// not published, a resource held), not for errors: those want
    /// [`JobError::retry_after`].
    ///
    /// A delay that would reach past the latest time kessel accepts is cut
    /// to it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use std::time::Duration;
    /// use kessel::{JobContext, JobError, JobStatus};
    /// let queue = kessel::Queue::builder().build().await?;
    /// queue.define("poll export").action(|job: JobContext<()>| async move {
    ///     if job.attempt() == 1 {
    ///         return Err(JobError::snooze(Duration::from_secs(60), "export not ready yet"));
    ///     }
    ///     Ok(())
    /// })?;
    /// let handle = queue.create("poll export", ()).await?;
    /// queue.run_jobs(Some(1), None).await?;
    /// let job = queue.job(handle.id()).await?;
    /// assert_eq!(job.status, JobStatus::Scheduled);
    /// assert_eq!(job.attempts, 0, "a snooze is not an attempt");
    /// # Ok(()) }
    /// ```
    pub fn snooze(delay: std::time::Duration, reason: impl fmt::Display) -> Self {
        JobError {
            kind: JobErrorKind::Snooze(delay),
            message: reason.to_string(),
        }
    }

    /// Whether this is a [snooze](JobError::snooze) rather than a failure.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(kessel::JobError::snooze(Duration::from_secs(1), "later").is_snooze());
    /// assert!(!kessel::JobError::transient("boom").is_snooze());
    /// ```
    pub fn is_snooze(&self) -> bool {
        matches!(self.kind, JobErrorKind::Snooze(_))
    }

    /// Whether this failure buries the job at once.
    pub fn is_fatal(&self) -> bool {
        self.kind == JobErrorKind::Fatal
    }

    /// The failure's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(err: E) -> Self {
        JobError::transient(err)
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct User {
        email: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Email {
        to: String,
        user: User,
    }

    #[test]
    fn a_missing_field_is_named_by_its_own_path() {
        let err = crate::task::decode_payload::<Email>("send email", r#"{"user":{"email":"a"}}"#)
            .unwrap_err();
        assert_eq!(err.path, "to");
        let err = crate::task::decode_payload::<Email>("send email", r#"{"to":"a","user":{}}"#)
            .unwrap_err();
        assert_eq!(err.path, "user.email");
        let err =
            crate::task::decode_payload::<Email>("send email", r#"{"to":1,"user":{"email":"a"}}"#)
                .unwrap_err();
        assert_eq!(err.path, "to", "a wrong type keeps its path");
    }
}
