//! The description of a job to create, with its builder methods.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::duration::IntoDuration;
use crate::error::Error;
use crate::job::{Job, JobId, JobStatus, LogLine, Payload};
use crate::queue::TaskPayload;
use crate::task::validate_task_name;
use crate::time;

#[derive(Debug, Clone)]
enum Start {
    Now,
    After(Duration),
    At(DateTime<Utc>),
}

#[derive(Debug, Clone)]
enum Expiry {
    Never,
    After(Duration),
    At(DateTime<Utc>),
}

/// A job to create: its task, payload and options. Build one with
/// [`NewJob::new`] for [`Queue::create_many`](crate::Queue::create_many), or
/// use the same methods on [`Queue::create`](crate::Queue::create).
///
/// Invalid input (an unreadable duration, a payload serde cannot
/// serialize) is kept and returned as a typed error when the job is created.
///
/// # Examples
///
/// ```
/// use kessel::NewJob;
/// let job = NewJob::new("send email", serde_json::json!({"to": "ford"}))
///     .delay("10m")
///     .priority(-5) // clamps to 0, the highest
///     .expires_in("1h")
///     .reference("order-42")
///     .max_attempts(3);
/// # let _ = job;
/// ```
#[derive(Debug)]
#[must_use = "a NewJob does nothing until it is created on a queue"]
pub struct NewJob {
    task: String,
    payload: Result<Payload, serde_json::Error>,
    start: Start,
    expiry: Expiry,
    priority: u32,
    reference: Option<String>,
    max_attempts: Option<u32>,
    error: Option<Error>,
    /// The id to give the job, when chosen before it is created.
    id: Option<JobId>,
    /// What the job asks of uniqueness, if anything.
    unique: Option<crate::unique::UniqueSpec>,
    /// Its own webhook callback URL, checked.
    callback: Option<String>,
    /// The name of the secret that signs its own callback, checked.
    callback_secret: Option<String>,
    /// Its fair group, checked.
    group: Option<String>,
}

/// Clamps a priority: negatives are 0 (the highest), and values past
/// `u32::MAX` are `u32::MAX`.
pub(crate) fn clamp_priority(priority: i64) -> u32 {
    priority.clamp(0, u32::MAX as i64) as u32
}

impl NewJob {
    /// A job of `task` with `payload` (anything serde can serialize).
    pub fn new(task: impl Into<String>, payload: impl Serialize) -> Self {
        NewJob {
            task: task.into(),
            payload: Payload::from_value(&payload),
            start: Start::Now,
            expiry: Expiry::Never,
            priority: 0,
            reference: None,
            max_attempts: None,
            error: None,
            id: None,
            unique: None,
            callback: None,
            callback_secret: None,
            group: None,
        }
    }

    /// A job of `P`'s task ([`TaskPayload::TASK`]) with `payload`, for
    /// [`Queue::create_many`](crate::Queue::create_many); the typed
    /// counterpart of [`NewJob::new`] (see [`TaskPayload`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::{NewJob, TaskPayload};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Email { to: String }
    /// impl TaskPayload for Email { const TASK: &'static str = "send email"; }
    ///
    /// let job = NewJob::of(Email { to: "ford@example.com".into() }).delay("10m");
    /// assert_eq!(job.task(), "send email");
    /// ```
    pub fn of<P: TaskPayload>(payload: P) -> Self {
        NewJob::new(P::TASK, payload)
    }

    /// Gives the job `id` instead of a fresh one (to subscribe to its
    /// events before it exists).
    pub(crate) fn with_id(mut self, id: JobId) -> Self {
        self.id = Some(id);
        self
    }

    /// Makes the job unique by `key`: while a job holding `key` is live
    /// (see [`UniqueScope`](crate::UniqueScope); by default until it is
    /// final), creating this one creates nothing and returns a handle to
    /// the holder, whose [`is_duplicate`](crate::JobHandle::is_duplicate)
    /// is true. The key is one namespace across the queue's tasks: include
    /// the task in it when two tasks may use the same key. At most
    /// [`MAX_UNIQUE_KEY_LEN`](crate::MAX_UNIQUE_KEY_LEN) bytes; an empty or
    /// longer key is [`Error::InvalidInput`] naming `unique` at create.
    ///
    /// Unique jobs are created one per call: `create_many` takes a unique
    /// job only alone.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::NewJob;
    /// let queue = kessel::Queue::new();
    /// let first = queue.create_job(NewJob::new("sync", 42).unique("sync customer 42")).await?;
    /// let again = queue.create_job(NewJob::new("sync", 42).unique("sync customer 42")).await?;
    /// assert!(!first.is_duplicate());
    /// assert!(again.is_duplicate());
    /// assert_eq!(again.id(), first.id());
    /// # Ok(()) }
    /// ```
    pub fn unique(mut self, key: impl Into<String>) -> Self {
        let scope = self.unique.take().map(|u| u.scope).unwrap_or_default();
        self.unique = Some(crate::unique::UniqueSpec {
            key: crate::unique::UniqueKey::Given(key.into()),
            scope,
        });
        self
    }

    /// Makes the job unique by its task and payload: the key is derived
    /// from both (the same in every process), so a second job of the same
    /// task with an equal payload is a duplicate while the first is live.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::NewJob;
    /// let queue = kessel::Queue::new();
    /// let a = queue.create_job(NewJob::new("reindex", "users").unique_by_payload()).await?;
    /// let b = queue.create_job(NewJob::new("reindex", "users").unique_by_payload()).await?;
    /// let c = queue.create_job(NewJob::new("reindex", "orders").unique_by_payload()).await?;
    /// assert_eq!(b.id(), a.id());
    /// assert_ne!(c.id(), a.id());
    /// # Ok(()) }
    /// ```
    pub fn unique_by_payload(mut self) -> Self {
        let scope = self.unique.take().map(|u| u.scope).unwrap_or_default();
        self.unique = Some(crate::unique::UniqueSpec {
            key: crate::unique::UniqueKey::FromPayload,
            scope,
        });
        self
    }

    /// How long the job holds its unique key (default
    /// [`UniqueScope::Unfinished`](crate::UniqueScope::Unfinished)). On a
    /// job without a key yet, also makes it unique by payload. A window of
    /// zero is [`Error::InvalidInput`] naming `unique` at create.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use kessel::{NewJob, UniqueScope};
    /// // At most one digest per user per hour, whatever became of the last.
    /// let job = NewJob::new("digest", "user-7")
    ///     .unique("digest:user-7")
    ///     .unique_scope(UniqueScope::Window(Duration::from_secs(3600)));
    /// # let _ = job;
    /// ```
    pub fn unique_scope(mut self, scope: crate::unique::UniqueScope) -> Self {
        let key = self
            .unique
            .take()
            .map(|u| u.key)
            .unwrap_or(crate::unique::UniqueKey::FromPayload);
        self.unique = Some(crate::unique::UniqueSpec { key, scope });
        self
    }

    /// Whether the job asks to be unique.
    pub(crate) fn is_unique(&self) -> bool {
        self.unique.is_some()
    }

    /// Takes what the job asks of uniqueness.
    pub(crate) fn take_unique(&mut self) -> Option<crate::unique::UniqueSpec> {
        self.unique.take()
    }

    fn keep_error(&mut self, err: Error) {
        if self.error.is_none() {
            self.error = Some(err);
        }
    }

    /// Starts the job no earlier than `delay` from now: a `Duration`, a
    /// `chrono::Duration`, or a string such as `"30s"`.
    pub fn delay(mut self, delay: impl IntoDuration) -> Self {
        match delay.into_duration() {
            Ok(d) => self.start = Start::After(d),
            Err(e) => self.keep_error(e.into()),
        }
        self
    }

    /// Starts the job no earlier than `at`. Times kessel accepts run from
    /// 1970-01-01T00:00:00Z to the end of 9999-12-31 (UTC); one outside
    /// makes creating the job fail with [`Error::InvalidInput`] naming
    /// `run_at` (and so for [`NewJob::expires_at`], and for a
    /// [`NewJob::delay`] or [`NewJob::expires_in`] that reaches past the
    /// end).
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.start = Start::At(at);
        self
    }

    /// The job expires, without running, if it has not started by `at`.
    pub fn expires_at(mut self, at: DateTime<Utc>) -> Self {
        self.expiry = Expiry::At(at);
        self
    }

    /// The job expires if it has not started within `within` from now.
    pub fn expires_in(mut self, within: impl IntoDuration) -> Self {
        match within.into_duration() {
            Ok(d) => self.expiry = Expiry::After(d),
            Err(e) => self.keep_error(e.into()),
        }
        self
    }

    /// 0 runs first (the default); larger numbers wait. Negative numbers
    /// are treated as 0.
    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = clamp_priority(priority);
        self
    }

    /// The producer's own reference for the job.
    pub fn reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// Attempts allowed for this job, overriding its task's retry policy.
    /// 0 is read as 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Names the URL kessel POSTs to when this job reaches a final state
    /// (feature `webhooks`; see [`kessel::webhook`](crate::webhook)): the
    /// job's own callback, which wins over its task's
    /// [`callback`](crate::TaskBuilder::callback). It is stored with the
    /// job, so the process that finishes the job sends it even when
    /// another created it. It is signed with the task's
    /// [`callback_secret`](crate::TaskBuilder::callback_secret) when the
    /// task names one, else with [`DEFAULT_SECRET`](crate::webhook::DEFAULT_SECRET);
    /// [`callback_secret`](NewJob::callback_secret) names another.
    ///
    /// The process that works the delivery task's tag must have
    /// registered [`Queue::webhooks`](crate::Queue::webhooks); until one
    /// does, the delivery waits, visible in
    /// [`Queue::callbacks`](crate::Queue::callbacks).
    ///
    /// A URL that is not `http` or `https` with a host makes creating the
    /// job fail with [`Error::InvalidInput`] naming `callback`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::NewJob;
    /// let queue = kessel::Queue::new();
    /// let job = queue
    ///     .create_job(NewJob::new("export", 7).callback("https://example.com/hooks/export-7"))
    ///     .await?;
    /// let stored = queue.job(job.id()).await?;
    /// assert_eq!(stored.callback.as_deref(), Some("https://example.com/hooks/export-7"));
    ///
    /// let err = queue
    ///     .create_job(NewJob::new("export", 8).callback("ftp://example.com/hooks"))
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "callback", .. }));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "webhooks")]
    pub fn callback(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        match crate::webhook::validate_url(&url) {
            Ok(()) => self.callback = Some(url),
            Err(e) => self.keep_error(e),
        }
        self
    }

    /// Signs this job's own [`callback`](NewJob::callback) with the secret
    /// `name` (feature `webhooks`): the key registered under that name
    /// with [`Webhooks::secret`](crate::webhook::Webhooks::secret) in the
    /// process that delivers callbacks, in place of its task's secret. So
    /// a job whose callback goes to a third party is signed with the
    /// secret that party was given.
    ///
    /// Only the name is stored with the job and in its delivery, never
    /// the secret: a store's backups and readers of the jobs table learn
    /// nothing to forge signatures with, and a secret is rotated by
    /// changing it where it is registered. A delivery whose name is not
    /// registered there fails (and is retried, then buried) naming it.
    ///
    /// An empty name, one over [`MAX_SECRET_NAME_LEN`](crate::webhook::MAX_SECRET_NAME_LEN)
    /// bytes or with control characters, or a secret without a callback
    /// URL on the job, makes creating it fail with [`Error::InvalidInput`]
    /// naming `callback_secret`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::webhook::Webhooks;
    /// use kessel::NewJob;
    /// let queue = kessel::Queue::new();
    /// queue.webhooks(
    ///     Webhooks::new()
    ///         .secret("default", "our own secret")
    ///         .secret("partner-a", "the secret partner A was given"),
    /// )?;
    /// let job = queue
    ///     .create_job(
    ///         NewJob::new("export", 7)
    ///             .callback("https://partner-a.example/hooks")
    ///             .callback_secret("partner-a"),
    ///     )
    ///     .await?;
    /// let stored = queue.job(job.id()).await?;
    /// assert_eq!(stored.callback_secret.as_deref(), Some("partner-a"));
    ///
    /// let err = queue
    ///     .create_job(NewJob::new("export", 8).callback_secret("partner-a"))
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "callback_secret", .. }));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "webhooks")]
    pub fn callback_secret(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        match crate::webhook::check_secret_name(&name) {
            Ok(()) => self.callback_secret = Some(name),
            Err(e) => self.keep_error(e),
        }
        self
    }

    /// Puts the job in fair group `key` (a tenant, a customer): within
    /// one priority, the groups of a tag take turns, so one group's
    /// backlog cannot starve another's few jobs. A group of weight `w`
    /// ([`QueueBuilder::group_weight`](crate::QueueBuilder::group_weight);
    /// 1 by default) gets `w` turns per round, and jobs without a group
    /// form one more group of weight 1. Priority still comes first: a
    /// better priority is served before any group's worse one. See
    /// `docs/flow-control.md`, "Fair groups".
    ///
    /// A key that is empty, blank, longer than
    /// [`MAX_GROUP_KEY_LEN`](crate::MAX_GROUP_KEY_LEN) bytes or holds a
    /// control character makes creating the job fail with
    /// [`Error::InvalidInput`] naming `group`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::NewJob;
    /// let queue = kessel::Queue::new();
    /// let job = queue.create_job(NewJob::new("export", 7).group("tenant-42")).await?;
    /// assert_eq!(queue.job(job.id()).await?.group.as_deref(), Some("tenant-42"));
    ///
    /// let err = queue.create_job(NewJob::new("export", 8).group("")).await.unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "group", .. }));
    /// # Ok(()) }
    /// ```
    pub fn group(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        match crate::group::check_key(&key) {
            Ok(()) => self.group = Some(key),
            Err(e) => self.keep_error(e),
        }
        self
    }

    /// The task this job is for.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// Builds the stored job as of `now`. `name` holds the task name
    /// allocated for the previous job, reused when this one names the same
    /// task (so jobs created together share it).
    /// The job record; its log starts with a "created" line when
    /// `log_created`.
    pub(crate) fn into_job(
        self,
        now: DateTime<Utc>,
        name: &mut Option<Arc<str>>,
        log_created: bool,
    ) -> Result<Job, Error> {
        if let Some(err) = self.error {
            return Err(err);
        }
        validate_task_name(&self.task)?;
        if self.callback_secret.is_some() && self.callback.is_none() {
            return Err(Error::InvalidInput {
                field: "callback_secret",
                reason: format!(
                    "a job of `{}` names a callback secret but no callback URL (NewJob::callback)",
                    self.task
                ),
            });
        }
        let payload = self.payload.map_err(|source| Error::InvalidPayload {
            task: self.task.clone(),
            source,
        })?;
        let run_at = match self.start {
            Start::Now => now,
            Start::After(d) => time::after(now, d, "delay")?,
            Start::At(at) => time::check(at, "run_at")?,
        };
        let expires_at = match self.expiry {
            Expiry::Never => None,
            Expiry::After(d) => Some(time::after(now, d, "expires_in")?),
            Expiry::At(at) => Some(time::check(at, "expires_at")?),
        };
        Ok(Job {
            // The default id is a fresh one (`JobId::new`).
            id: self.id.unwrap_or_default(),
            reference: self.reference,
            task: match name {
                Some(n) if **n == *self.task => n.clone(),
                _ => name.insert(Arc::from(self.task)).clone(),
            },
            payload,
            priority: self.priority,
            status: if run_at > now {
                JobStatus::Scheduled
            } else {
                JobStatus::Ready
            },
            created_at: now,
            run_at,
            expires_at,
            attempts: 0,
            max_attempts: self.max_attempts,
            last_error: None,
            result: None,
            progress: None,
            finished_at: None,
            ran_by: None,
            callback: self.callback,
            callback_secret: self.callback_secret,
            group: self.group,
            logs: if log_created {
                vec![LogLine::created(now)]
            } else {
                Vec::new()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_clamps() {
        assert_eq!(clamp_priority(-10), 0);
        assert_eq!(clamp_priority(7), 7);
        assert_eq!(clamp_priority(i64::MAX), u32::MAX);
    }

    #[test]
    fn first_bad_input_is_reported() {
        let now = Utc::now();
        let err = NewJob::new("t", 1)
            .delay("5 fortnights")
            .expires_in("x")
            .into_job(now, &mut None, true)
            .unwrap_err();
        match err {
            Error::InvalidDuration(e) => assert_eq!(e.text(), "5 fortnights"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unserializable_payload_is_a_typed_error() {
        use std::collections::HashMap;
        let mut bad: HashMap<Vec<u8>, u8> = HashMap::new();
        bad.insert(vec![1], 1);
        let err = NewJob::new("t", bad)
            .into_job(Utc::now(), &mut None, true)
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidPayload { ref task, .. } if task == "t"),
            "{err:?}"
        );
    }

    #[test]
    fn delayed_job_is_scheduled() {
        let now = Utc::now();
        let job = NewJob::new("t", ())
            .delay("2h")
            .into_job(now, &mut None, true)
            .unwrap();
        assert_eq!(job.status, JobStatus::Scheduled);
        assert_eq!(job.run_at, now + chrono::Duration::hours(2));
        let job = NewJob::new("t", ()).into_job(now, &mut None, true).unwrap();
        assert_eq!(job.status, JobStatus::Ready);
    }
}
