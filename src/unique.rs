//! Unique jobs: at most one live job per unique key, enforced where the
//! jobs are kept (the scheduler of an in-process queue, a unique index on
//! SQLite and PostgreSQL), so it holds across processes.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::job::{Job, JobId};

/// How long a unique job holds its key: while it holds it, creating
/// another job with the same key returns the holder instead (see
/// [`NewJob::unique`](crate::NewJob::unique)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kessel::{NewJob, UniqueScope};
/// let job = NewJob::new("sync", 42)
///     .unique("sync:42")
///     .unique_scope(UniqueScope::Window(Duration::from_secs(300)));
/// # let _ = job;
/// assert_eq!(UniqueScope::default(), UniqueScope::Unfinished);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UniqueScope {
    /// While the job waits to run (scheduled, ready, or retrying): once an
    /// attempt starts, a new job with the key may be created.
    Waiting,
    /// Until the job is final (completed, buried, expired or cancelled):
    /// while it waits and while it runs. The default.
    #[default]
    Unfinished,
    /// For this long after the job was created, whatever becomes of it.
    Window(Duration),
}

impl UniqueScope {
    /// The scope as stored: 0 waiting, 1 unfinished, 2 window.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn code(self) -> i64 {
        match self {
            UniqueScope::Waiting => 0,
            UniqueScope::Unfinished => 1,
            UniqueScope::Window(_) => 2,
        }
    }
}

/// The key a unique job asks for: given, or derived from its task and
/// payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UniqueKey {
    Given(String),
    FromPayload,
}

/// What a new job asks of uniqueness, before it is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UniqueSpec {
    pub(crate) key: UniqueKey,
    pub(crate) scope: UniqueScope,
}

/// The longest unique key kessel accepts, in bytes (a database index entry
/// must fit in a page).
pub const MAX_UNIQUE_KEY_LEN: usize = 512;

/// A job's hold on its key, as the stores keep it.
///
/// # Examples
///
/// Made by kessel when a unique job is created; a store implementing
/// [`Store::jobs_insert_unique`](crate::store::Store::jobs_insert_unique)
/// reads it:
///
/// ```
/// use kessel::store::UniqueHold;
/// fn describe(hold: &UniqueHold) -> String {
///     format!("{} ({:?}, until {:?})", hold.key, hold.scope, hold.until)
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueHold {
    /// The key.
    pub key: String,
    /// How long it is held.
    pub scope: UniqueScope,
    /// For [`UniqueScope::Window`]: when the hold ends.
    pub until: Option<DateTime<Utc>>,
}

impl UniqueHold {
    /// Whether this hold, of a job now in `status` (or gone from the
    /// queue's view: `None`), still holds its key at `now`.
    ///
    /// ```
    /// use kessel::{JobStatus, UniqueScope, store::UniqueHold};
    /// let hold = UniqueHold { key: "k".into(), scope: UniqueScope::Waiting, until: None };
    /// assert!(hold.is_live(Some(JobStatus::Ready), chrono::Utc::now()));
    /// assert!(!hold.is_live(Some(JobStatus::Running), chrono::Utc::now()));
    /// ```
    pub fn is_live(&self, status: Option<crate::JobStatus>, now: DateTime<Utc>) -> bool {
        use crate::JobStatus::*;
        match self.scope {
            UniqueScope::Waiting => matches!(status, Some(Scheduled | Ready | Retrying)),
            UniqueScope::Unfinished => status.is_some_and(|s| !s.is_final()),
            UniqueScope::Window(_) => self.until.is_some_and(|until| now < until),
        }
    }
}

impl UniqueSpec {
    /// The hold of `job`, built from this spec.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming `unique` for an empty or too long
    /// key, a zero window, or a window past the latest time kessel accepts.
    pub(crate) fn hold(&self, job: &Job) -> Result<UniqueHold, Error> {
        let invalid = |reason: String| Error::InvalidInput {
            field: "unique",
            reason,
        };
        let key = match &self.key {
            UniqueKey::Given(key) => {
                if key.trim().is_empty() {
                    return Err(invalid("the unique key is empty".into()));
                }
                if key.len() > MAX_UNIQUE_KEY_LEN {
                    return Err(invalid(format!(
                        "the unique key is {} bytes long; at most {MAX_UNIQUE_KEY_LEN} are allowed",
                        key.len()
                    )));
                }
                key.clone()
            }
            UniqueKey::FromPayload => payload_key(&job.task, job.payload.as_str()),
        };
        let until = match self.scope {
            UniqueScope::Window(d) if d.is_zero() => {
                return Err(invalid("a unique window of zero holds nothing".into()))
            }
            UniqueScope::Window(d) => Some(
                crate::time::after(job.created_at, d, "unique").map_err(|_| {
                    invalid(format!(
                        "a unique window of {d:?} reaches past the latest time kessel accepts"
                    ))
                })?,
            ),
            _ => None,
        };
        Ok(UniqueHold {
            key,
            scope: self.scope,
            until,
        })
    }
}

/// The key of a task and payload: the same in every process and version.
fn payload_key(task: &str, payload: &str) -> String {
    let mut name = Vec::with_capacity(task.len() + 1 + payload.len());
    name.extend_from_slice(task.as_bytes());
    name.push(0);
    name.extend_from_slice(payload.as_bytes());
    format!(
        "payload:{}",
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &name).simple()
    )
}

/// What creating a unique job did.
///
/// # Examples
///
/// ```
/// use kessel::{JobId, store::Inserted};
/// let id = JobId::new();
/// assert_eq!(Inserted::Duplicate(id).holder(), Some(id));
/// assert_eq!(Inserted::New.holder(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The job was stored: nothing held its key.
    New,
    /// Nothing was stored: this job holds the key.
    Duplicate(JobId),
}

impl Inserted {
    /// The job that holds the key, for a duplicate.
    pub fn holder(self) -> Option<JobId> {
        match self {
            Inserted::New => None,
            Inserted::Duplicate(id) => Some(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_key_depends_on_task_and_payload_only() {
        assert_eq!(payload_key("a", "1"), payload_key("a", "1"));
        assert_ne!(payload_key("a", "1"), payload_key("a", "2"));
        assert_ne!(payload_key("a", "1"), payload_key("b", "1"));
        // The separator keeps "ab"+"c" apart from "a"+"bc".
        assert_ne!(payload_key("ab", "c"), payload_key("a", "bc"));
        assert!(payload_key("a", "1").len() < MAX_UNIQUE_KEY_LEN);
    }
}
