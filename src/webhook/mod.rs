//! Webhook callbacks (feature `webhooks`): a task can name a URL that
//! kessel POSTs to when one of its jobs reaches a final state (completed,
//! buried, expired or cancelled), signed with HMAC-SHA256.
//!
//! # How it works
//!
//! 1. [`Queue::webhooks`](crate::Queue::webhooks) registers the delivery
//!    task, [`TASK`] (`kessel.webhook`), with its secrets, its timeout and
//!    its retry policy ([`Webhooks`]).
//! 2. [`TaskBuilder::callback`](crate::TaskBuilder::callback) names the
//!    URL (and [`TaskBuilder::callback_secret`](crate::TaskBuilder::callback_secret)
//!    which secret signs it) for every job of a task;
//!    [`NewJob::callback`](crate::NewJob::callback) (and
//!    [`NewJob::callback_secret`](crate::NewJob::callback_secret)) for one
//!    job, stored with it: a secret is named, never stored.
//! 3. When such a job reaches a final state, kessel creates a delivery job
//!    of `kessel.webhook`, reference `webhook:{job id}`
//!    ([`WebhookDelivery::reference_for`]), whose payload is a
//!    [`WebhookDelivery`]: the URL, the [`CallbackBody`] and the secret's
//!    *name* (never the secret).
//! 4. The delivery job POSTs the body with a `kessel-signature` header
//!    ([`sign`]); a 2xx answer completes it. A non-2xx answer, a refused
//!    connection or no answer within the timeout fails the attempt, and
//!    the task's retry policy tries again with backoff, then buries it.
//!
//! Because a delivery is an ordinary job, it is as durable as the store
//! (on SQLite and PostgreSQL a pending delivery survives a restart), every
//! attempt is in its log (status code or error, and duration), and
//! [`Queue::callbacks`](crate::Queue::callbacks) finds the deliveries of
//! a job.
//!
//! Receivers check the header with [`verify_signature`]; `docs/http.md`
//! ("Webhook callbacks") has an example receiver.
//!
//! # Examples
//!
//! ```
//! # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
//! use kessel::webhook::Webhooks;
//! use kessel::{JobContext, JobError};
//!
//! let queue = kessel::Queue::new();
//! queue.webhooks(Webhooks::new().secret("main", "a long random secret").timeout("10s"))?;
//! queue
//!     .define("export")
//!     .callback("https://example.com/hooks/kessel")
//!     .action(|_: JobContext<()>| async { Ok::<_, JobError>("exported") })?;
//! # Ok(()) }
//! ```

mod deliver;
mod signature;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::job::{JobId, JobStatus};

pub use deliver::Webhooks;
pub use signature::{
    sign, verify_signature, verify_signature_at, SignatureError, SIGNATURE_HEADER,
};

/// The name of the task that delivers callbacks.
///
/// ```
/// assert_eq!(kessel::webhook::TASK, "kessel.webhook");
/// ```
pub const TASK: &str = "kessel.webhook";

/// The secret a callback is signed with when the task names none.
///
/// ```
/// assert_eq!(kessel::webhook::DEFAULT_SECRET, "default");
/// ```
pub const DEFAULT_SECRET: &str = "default";

/// Where a task's callbacks go, and which secret signs them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub(crate) url: Arc<str>,
    pub(crate) secret: Arc<str>,
}

/// The longest name of a webhook secret a job may give
/// ([`NewJob::callback_secret`](crate::NewJob::callback_secret)), in bytes.
///
/// ```
/// assert_eq!(kessel::webhook::MAX_SECRET_NAME_LEN, 200);
/// ```
pub const MAX_SECRET_NAME_LEN: usize = 200;

/// Checks the name of a secret a job gives: not empty, at most
/// [`MAX_SECRET_NAME_LEN`] bytes, no control characters.
pub(crate) fn check_secret_name(name: &str) -> Result<(), Error> {
    let bad = |reason: String| Error::InvalidInput {
        field: "callback_secret",
        reason,
    };
    if name.is_empty() {
        return Err(bad("the callback secret's name is empty".into()));
    }
    if name.len() > MAX_SECRET_NAME_LEN {
        return Err(bad(format!(
            "the callback secret's name is {} bytes, over the limit of {MAX_SECRET_NAME_LEN}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(bad(format!(
            "the callback secret's name {name:?} has a control character"
        )));
    }
    Ok(())
}

/// Checks a callback URL: `http` or `https`, with a host.
pub(crate) fn validate_url(url: &str) -> Result<(), Error> {
    let bad = |reason: String| Error::InvalidInput {
        field: "callback",
        reason,
    };
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| bad(format!("`{url}` is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(bad(format!(
                "`{url}` uses `{other}`: a callback URL must be http or https"
            )))
        }
        None => {
            return Err(bad(format!(
                "`{url}` has no scheme: a callback URL must start with http:// or https://"
            )))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad(format!("`{url}` has no host")));
    }
    Ok(())
}

/// The JSON body kessel POSTs to a callback URL: the job, as it ended.
///
/// # Examples
///
/// ```
/// use kessel::webhook::CallbackBody;
/// let body = CallbackBody {
///     job_id: kessel::JobId::new(),
///     task: "export".into(),
///     reference: Some("order-42".into()),
///     status: kessel::JobStatus::Completed,
///     result: Some(serde_json::json!("exported")),
///     error: None,
///     attempts: 1,
///     finished_at: chrono::Utc::now(),
/// };
/// let json = serde_json::to_value(&body).unwrap();
/// assert_eq!(json["status"], "completed");
/// assert_eq!(serde_json::from_value::<CallbackBody>(json).unwrap(), body);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackBody {
    /// The job's id.
    pub job_id: JobId,
    /// The job's task.
    pub task: String,
    /// The producer's reference, if it gave one.
    pub reference: Option<String>,
    /// Its final status: `completed`, `buried`, `expired` or `cancelled`.
    pub status: JobStatus,
    /// What the handler returned, when it completed.
    pub result: Option<serde_json::Value>,
    /// Why it did not complete, when it did not (its last error).
    pub error: Option<String>,
    /// The attempts it made.
    pub attempts: u32,
    /// When it reached its final state.
    pub finished_at: DateTime<Utc>,
}

/// The payload of a delivery job of [`TASK`]: where to POST, what, and
/// the name of the secret to sign with (the secret itself stays in the
/// process, given to [`Webhooks::secret`]).
///
/// # Examples
///
/// ```
/// use kessel::webhook::{CallbackBody, WebhookDelivery};
/// let id = kessel::JobId::new();
/// let delivery = WebhookDelivery {
///     url: "https://example.com/hooks".into(),
///     secret: "main".into(),
///     body: CallbackBody {
///         job_id: id,
///         task: "export".into(),
///         reference: None,
///         status: kessel::JobStatus::Buried,
///         result: None,
///         error: Some("disk full".into()),
///         attempts: 5,
///         finished_at: chrono::Utc::now(),
///     },
/// };
/// assert_eq!(serde_json::to_value(&delivery).unwrap()["secret"], "main");
/// assert_eq!(WebhookDelivery::reference_for(id), format!("webhook:{id}"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The callback URL.
    pub url: String,
    /// The name of the secret that signs the body.
    pub secret: String,
    /// The body to POST.
    pub body: CallbackBody,
}

impl WebhookDelivery {
    /// The reference kessel gives the delivery of the callback of job
    /// `id`: `webhook:{id}`, to find it from the job.
    ///
    /// ```
    /// let id = kessel::JobId::new();
    /// assert_eq!(kessel::webhook::WebhookDelivery::reference_for(id), format!("webhook:{id}"));
    /// ```
    pub fn reference_for(id: JobId) -> String {
        format!("webhook:{id}")
    }
}

impl crate::Queue {
    /// The delivery jobs of job `id`'s callback (at most one per final
    /// state the job reached: a job kicked after it was buried and then
    /// completed has two). Each one's log holds its attempts: the status
    /// code or the error, and how long it took. A completed delivery is
    /// kept as long as the queue's [`Retention`](crate::Retention) keeps
    /// completed jobs.
    ///
    /// # Errors
    ///
    /// [`Error::Store`](crate::Error::Store); [`Error::ShutDown`](crate::Error::ShutDown).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::webhook::Webhooks;
    /// use kessel::{JobContext, JobError, JobStatus};
    /// let queue = kessel::Queue::new();
    /// queue.webhooks(Webhooks::new().secret("default", "s3cret").tag("webhooks"))?;
    /// queue
    ///     .define("export")
    ///     .callback("http://127.0.0.1:9/hooks")
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
    /// queue.process(["default"]).start()?;
    /// let export = queue.create("export", ()).await?;
    /// export.result().await?;
    /// let deliveries = queue.callbacks(export.id()).await?;
    /// assert_eq!(deliveries.len(), 1);
    /// assert_eq!(deliveries[0].status, JobStatus::Ready); // nobody serves "webhooks" here
    /// # Ok(()) }
    /// ```
    pub async fn callbacks(&self, id: JobId) -> Result<Vec<crate::Job>, Error> {
        self.fetch(
            crate::store::JobQuery::default()
                .task(TASK)
                .reference(WebhookDelivery::reference_for(id)),
        )
        .await
    }

    /// The deliveries of `job`'s callback, as [`Queue::callbacks`], but
    /// without a search where there can be none: a job that never ran nor
    /// ended has none, and on a store of this process alone (memory,
    /// SQLite, where a search by reference reads every job) neither has a
    /// job that names no callback of a task that names none here.
    pub(crate) async fn callbacks_of(&self, job: &crate::Job) -> Result<Vec<crate::Job>, Error> {
        if !job.status.is_final() && job.attempts == 0 {
            return Ok(Vec::new());
        }
        let local = self.inner.store.shared().is_none();
        let task_has_one = || {
            self.inner
                .tasks
                .get(&*job.task)
                .is_some_and(|def| def.callback.is_some())
        };
        if local && job.callback.is_none() && !task_has_one() {
            return Ok(Vec::new());
        }
        self.callbacks(job.id).await
    }
}
