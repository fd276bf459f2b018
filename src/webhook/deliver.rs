//! The delivery task: POSTs a callback's body, signed, and reports the
//! attempt in the delivery job's log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::signature::{sign, SIGNATURE_HEADER};
use super::{WebhookDelivery, TASK};
use crate::context::JobContext;
use crate::duration::IntoDuration;
use crate::error::{Error, JobError};
use crate::task::{RetryPolicy, Task, DEFAULT_TAG};

/// How kessel delivers webhook callbacks: the secrets that sign them (by
/// name), how long a receiver may take to answer, how often to try, and
/// the tag of the delivery task. Register it once with
/// [`Queue::webhooks`](crate::Queue::webhooks), before defining tasks with
/// a [`callback`](crate::TaskBuilder::callback).
///
/// Defaults: a 10 s timeout, [`RetryPolicy::exponential`]`(8)` (1 s
/// doubling, about four minutes in all), tag [`DEFAULT_TAG`].
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::webhook::Webhooks;
/// use kessel::RetryPolicy;
/// let queue = kessel::Queue::new();
/// let hooks = Webhooks::new()
///     .secret("default", std::env::var("WEBHOOK_SECRET").unwrap_or("dev-only".into()))
///     .secret("partner-b", "another secret")
///     .timeout("5s")
///     .retry(RetryPolicy::exponential(10))
///     .tag("webhooks");
/// let task = queue.webhooks(hooks)?;
/// assert_eq!((task.name(), task.tag()), ("kessel.webhook", "webhooks"));
/// # Ok(()) }
/// ```
pub struct Webhooks {
    secrets: BTreeMap<String, Arc<[u8]>>,
    timeout: Duration,
    retry: RetryPolicy,
    tag: String,
    error: Option<Error>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets' names only, never their bytes.
        f.debug_struct("Webhooks")
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("tag", &self.tag)
            .field("error", &self.error)
            .finish()
    }
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            secrets: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::exponential(8),
            tag: DEFAULT_TAG.to_owned(),
            error: None,
        }
    }
}

impl Webhooks {
    /// The defaults, with no secret yet: add at least one with
    /// [`secret`](Webhooks::secret).
    ///
    /// ```
    /// let hooks = kessel::webhook::Webhooks::new().secret("default", "s3cret");
    /// # let _ = hooks;
    /// ```
    pub fn new() -> Self {
        Webhooks::default()
    }

    /// Adds the secret `name` (a task's
    /// [`callback_secret`](crate::TaskBuilder::callback_secret) or a
    /// job's [`callback_secret`](crate::NewJob::callback_secret), or
    /// [`DEFAULT_SECRET`](super::DEFAULT_SECRET) when neither names one). The
    /// receiver is given the same bytes to check the signature. Only the
    /// name is stored in delivery jobs.
    ///
    /// ```
    /// let hooks = kessel::webhook::Webhooks::new().secret("default", b"raw key bytes");
    /// assert!(format!("{hooks:?}").contains("default"));
    /// assert!(!format!("{hooks:?}").contains("raw key"));
    /// ```
    pub fn secret(mut self, name: impl Into<String>, key: impl AsRef<[u8]>) -> Self {
        self.secrets.insert(name.into(), Arc::from(key.as_ref()));
        self
    }

    /// How long one attempt may take, from connecting to the answer's
    /// status line (default 10 s). An attempt that takes longer fails with
    /// a message naming the timeout, and is retried.
    ///
    /// ```
    /// let hooks = kessel::webhook::Webhooks::new().timeout("2s");
    /// # let _ = hooks;
    /// ```
    pub fn timeout(mut self, timeout: impl IntoDuration) -> Self {
        match timeout.into_duration() {
            Ok(d) => self.timeout = d,
            Err(e) => self.error = self.error.take().or(Some(e.into())),
        }
        self
    }

    /// The delivery task's retry policy (default
    /// [`RetryPolicy::exponential`]`(8)`): after its last attempt a
    /// delivery is buried, with the last error.
    ///
    /// ```
    /// let hooks = kessel::webhook::Webhooks::new().retry(kessel::RetryPolicy::exponential(20));
    /// # let _ = hooks;
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The delivery task's tag (default [`DEFAULT_TAG`]): a worker must
    /// process it for callbacks to go out.
    ///
    /// ```
    /// let hooks = kessel::webhook::Webhooks::new().tag("webhooks");
    /// # let _ = hooks;
    /// ```
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }
}

impl crate::Queue {
    /// Registers the delivery task of webhook callbacks, [`TASK`]
    /// (`kessel.webhook`), configured by `hooks`. Call it before defining
    /// a task with a [`callback`](crate::TaskBuilder::callback), and in
    /// every process that works the delivery task's tag.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming `secret` when no secret was given or
    /// one is empty, `timeout` when the timeout is zero;
    /// [`Error::InvalidDuration`] for an unreadable timeout; the errors of
    /// [`TaskBuilder::action`](crate::TaskBuilder::action) (`kessel.webhook`
    /// already defined on this queue).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::webhook::Webhooks;
    /// let queue = kessel::Queue::new();
    /// queue.webhooks(Webhooks::new().secret("default", "s3cret"))?;
    /// let err = queue.webhooks(Webhooks::new()).unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "secret", .. }));
    /// # Ok(()) }
    /// ```
    pub fn webhooks(&self, hooks: Webhooks) -> Result<Task, Error> {
        if let Some(e) = hooks.error {
            return Err(e);
        }
        if hooks.secrets.is_empty() {
            return Err(Error::InvalidInput {
                field: "secret",
                reason: "no webhook secret: add one with Webhooks::secret(name, key)".into(),
            });
        }
        if let Some((name, _)) = hooks.secrets.iter().find(|(_, key)| key.is_empty()) {
            return Err(Error::InvalidInput {
                field: "secret",
                reason: format!("the webhook secret `{name}` is empty"),
            });
        }
        if hooks.timeout.is_zero() {
            return Err(Error::InvalidInput {
                field: "timeout",
                reason: "the webhook timeout is zero: no receiver could answer in time".into(),
            });
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(hooks.timeout))
            // Every answer is the receiver's verdict: a 4xx or 5xx is a
            // failed attempt, not a client error, and a redirect is not
            // followed (a POST must not silently change its target).
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent("kessel-webhooks")
            .build()
            .into();
        let sender = Arc::new(Sender {
            secrets: hooks.secrets,
            timeout: hooks.timeout,
            agent,
        });
        self.define(TASK)
            .tag(hooks.tag)
            .desc("delivers webhook callbacks")
            .retry(hooks.retry)
            .action(move |job: JobContext<WebhookDelivery>| {
                let sender = sender.clone();
                async move { sender.deliver(job).await }
            })
    }
}

/// What a delivery attempt needs, shared by every attempt.
struct Sender {
    secrets: BTreeMap<String, Arc<[u8]>>,
    timeout: Duration,
    agent: ureq::Agent,
}

/// How one POST ended.
enum Answer {
    Status(u16),
    TimedOut,
    Failed(String),
}

impl Sender {
    async fn deliver(
        &self,
        job: JobContext<WebhookDelivery>,
    ) -> Result<serde_json::Value, JobError> {
        let delivery = &job.payload;
        let Some(key) = self.secrets.get(&delivery.secret) else {
            return Err(JobError::fatal(format!(
                "no webhook secret named `{}` in this process: add it with Webhooks::secret",
                delivery.secret
            )));
        };
        let body = serde_json::to_vec(&delivery.body)
            .map_err(|e| JobError::fatal(format!("the callback body does not serialize: {e}")))?;
        let signature = sign(key, chrono::Utc::now().timestamp(), &body);
        let agent = self.agent.clone();
        let url = delivery.url.clone();
        let started = Instant::now();
        // ureq blocks: the POST runs on tokio's blocking pool, so the
        // worker thread keeps running its other jobs meanwhile.
        let answer = tokio::task::spawn_blocking(move || post(&agent, &url, &body, &signature))
            .await
            .unwrap_or_else(|e| Answer::Failed(format!("the delivery thread failed: {e}")));
        let millis = started.elapsed().as_millis() as u64;
        let attempt = job.attempt();
        let url = &delivery.url;
        match answer {
            Answer::Status(status) => {
                job.log(
                    format!("attempt {attempt}: {url} answered {status} in {millis} ms"),
                    serde_json::json!({"attempt": attempt, "status": status, "duration_ms": millis}),
                );
                if (200..300).contains(&status) {
                    Ok(serde_json::json!({"status": status, "attempts": attempt}))
                } else {
                    Err(JobError::transient(format!("{url} answered {status}")))
                }
            }
            Answer::TimedOut => {
                let message = format!("{url} did not answer within the {:?} timeout", self.timeout);
                job.log(
                    format!("attempt {attempt}: {message}"),
                    serde_json::json!({"attempt": attempt, "error": "timeout", "duration_ms": millis}),
                );
                Err(JobError::transient(message))
            }
            Answer::Failed(error) => {
                let message = format!("POST {url} failed: {error}");
                job.log(
                    format!("attempt {attempt}: {message}"),
                    serde_json::json!({"attempt": attempt, "error": error, "duration_ms": millis}),
                );
                Err(JobError::transient(message))
            }
        }
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &[u8], signature: &str) -> Answer {
    let sent = agent
        .post(url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature)
        .send(body);
    match sent {
        Ok(response) => Answer::Status(response.status().as_u16()),
        Err(ureq::Error::Timeout(_)) => Answer::TimedOut,
        Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => Answer::TimedOut,
        Err(e) => Answer::Failed(e.to_string()),
    }
}
