//! Tasks: how to run a kind of job. Defined with a chained builder.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::{JobContext, RunInfo};
use crate::error::{Error, JobError, PayloadError};
use crate::middleware::Middleware;

/// The tag a task gets when its definition names none.
pub const DEFAULT_TAG: &str = "default";

/// How a task retries transient failures: how many attempts in all, and an
/// exponential backoff with jitter and a cap between them.
///
/// The delay before attempt `n + 1` (after `n` failed attempts) is
/// `min(max_delay, base * factor^(n-1))`, then moved at random by up to
/// `jitter` of itself either way, so a burst of failures does not retry in
/// lockstep.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kessel::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(4)
///     .base_delay(Duration::from_secs(2))
///     .max_delay(Duration::from_secs(60))
///     .jitter(0.0);
/// assert_eq!(policy.backoff(1), Duration::from_secs(2));
/// assert_eq!(policy.backoff(2), Duration::from_secs(4));
/// assert_eq!(policy.backoff(10), Duration::from_secs(60));
/// assert_eq!(RetryPolicy::none().max_attempts, 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included. At least 1.
    pub max_attempts: u32,
    /// The delay after the first failure.
    pub base: Duration,
    /// How much each further failure multiplies the delay.
    pub factor: f64,
    /// The longest delay.
    pub max_delay: Duration,
    /// The random spread, as a fraction of the delay (0.0 to 1.0).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// Five attempts, 1 s doubling to at most 1 h, 10% jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(3600),
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// `max_attempts` attempts with the default backoff.
    pub fn exponential(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            ..RetryPolicy::default()
        }
    }

    /// One attempt: a failure buries the job.
    pub fn none() -> Self {
        RetryPolicy::exponential(1)
    }

    /// Sets the delay after the first failure.
    pub fn base_delay(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets the growth factor (at least 1.0).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Sets the longest delay.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// Sets the jitter fraction, clamped to 0.0..=1.0.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The backoff before the next attempt after `failed` failed attempts,
    /// without jitter.
    pub fn backoff(&self, failed: u32) -> Duration {
        let exp = failed.saturating_sub(1).min(64) as i32;
        let secs = self.base.as_secs_f64() * self.factor.powi(exp);
        let capped = secs.min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(capped.max(0.0))
    }

    /// The backoff with jitter applied, `unit` being a random number in 0..1.
    pub(crate) fn backoff_jittered(&self, failed: u32, unit: f64) -> Duration {
        let base = self.backoff(failed).as_secs_f64();
        let spread = base * self.jitter * (unit * 2.0 - 1.0);
        Duration::from_secs_f64((base + spread).max(0.0))
    }
}

pub(crate) type RunFuture = crate::middleware::HandlerFuture;

/// A handler with its payload type erased: what the worker calls.
pub(crate) trait Action: Send + Sync + 'static {
    fn start(&self, info: RunInfo, payload: &str) -> RunFuture;
}

pub(crate) struct FnAction<F, T> {
    pub(crate) f: F,
    pub(crate) _payload: PhantomData<fn(T)>,
}

/// Decodes a payload, naming the failing field.
pub(crate) fn decode_payload<T: DeserializeOwned>(
    task: &str,
    json: &str,
) -> Result<T, PayloadError> {
    // Most payloads decode: read them plainly, and only read a bad one
    // again, tracking the path, to say where it went wrong.
    if let Ok(value) = serde_json::from_str(json) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let value: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| PayloadError::from_path_error(task, e))?;
    de.end()
        .map_err(|e| PayloadError::new(task, ".", e.to_string()))?;
    Ok(value)
}

/// Encodes a handler's value; `()` and `null` become no value.
pub(crate) fn encode_output<R: Serialize>(value: R) -> Result<Option<serde_json::Value>, JobError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) => Err(JobError::fatal(format!(
            "the handler's result cannot be serialized: {e}"
        ))),
    }
}

impl<F, T, Fut, R, E> Action for FnAction<F, T>
where
    F: Fn(JobContext<T>) -> Fut + Send + Sync + 'static,
    T: DeserializeOwned + 'static,
    Fut: Future<Output = Result<R, E>> + 'static,
    R: Serialize + 'static,
    E: Into<JobError> + 'static,
{
    fn start(&self, info: RunInfo, payload: &str) -> RunFuture {
        let payload: T = match decode_payload(&info.shared.task, payload) {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Err(JobError::fatal(e)))),
        };
        let fut = (self.f)(JobContext { payload, info });
        Box::pin(async move {
            match fut.await {
                Ok(value) => encode_output(value),
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// One step of a composed task: another task's handler, or an inline one.
///
/// # Examples
///
/// ```
/// use kessel::{JobContext, JobError, Step};
/// let steps = [
///     Step::task("fetch"),
///     Step::action("rename fields", |j: JobContext<serde_json::Value>| async move {
///         Ok::<_, JobError>(serde_json::json!({ "origin": j.payload["destination"] }))
///     }),
///     Step::task("archive"),
/// ];
/// assert_eq!(steps[1].name(), "rename fields");
/// ```
pub struct Step {
    pub(crate) name: String,
    pub(crate) kind: StepKind,
}

pub(crate) enum StepKind {
    Task,
    Inline(Arc<dyn Action>),
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Step {
    /// The handler of the task `name`, defined on the same queue.
    pub fn task(name: impl Into<String>) -> Self {
        Step {
            name: name.into(),
            kind: StepKind::Task,
        }
    }

    /// An inline handler, named for error messages; same shape as
    /// [`TaskBuilder::action`](crate::TaskBuilder::action)'s.
    pub fn action<F, T, Fut, R, E>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(JobContext<T>) -> Fut + Send + Sync + 'static,
        T: DeserializeOwned + 'static,
        Fut: Future<Output = Result<R, E>> + 'static,
        R: Serialize + 'static,
        E: Into<JobError> + 'static,
    {
        Step {
            name: name.into(),
            kind: StepKind::Inline(Arc::new(FnAction {
                f: handler,
                _payload: PhantomData,
            })),
        }
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

pub(crate) struct Composed {
    pub(crate) steps: Arc<[(String, Arc<dyn Action>)]>,
}

impl Action for Composed {
    fn start(&self, info: RunInfo, payload: &str) -> RunFuture {
        let steps = self.steps.clone();
        let mut input = payload.to_owned();
        Box::pin(async move {
            let mut output = None;
            for (n, (name, action)) in steps.iter().enumerate() {
                match action.start(info.clone(), &input).await {
                    Ok(value) => {
                        input = match &value {
                            Some(v) => v.to_string(),
                            None => "null".to_owned(),
                        };
                        output = value;
                    }
                    Err(e) => {
                        return Err(JobError {
                            kind: e.kind,
                            message: format!("step {} (`{name}`) failed: {}", n + 1, e.message),
                        })
                    }
                }
            }
            Ok(output)
        })
    }
}

/// A task as the queue keeps it.
pub(crate) struct TaskDef {
    pub(crate) name: Arc<str>,
    pub(crate) tag: String,
    pub(crate) description: Option<String>,
    pub(crate) timeout: Option<Duration>,
    /// How long a signalled run may go on before its future is dropped.
    pub(crate) grace: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) middleware: Vec<Arc<dyn Middleware>>,
    /// The task that receives this task's buried jobs as dead letters.
    pub(crate) dead_letter: Option<Arc<str>>,
    /// Where its jobs' webhook callbacks go (feature `webhooks`).
    #[cfg(feature = "webhooks")]
    pub(crate) callback: Option<Arc<crate::webhook::Target>>,
    /// At most this many of its jobs run at once.
    pub(crate) max_running: Option<u32>,
    /// How often its jobs may start.
    pub(crate) rate_limit: Option<crate::flow::RateLimit>,
    /// At most this many of each group's jobs run at once.
    pub(crate) max_running_per_group: Option<u32>,
    /// How often each group's jobs may start.
    pub(crate) rate_limit_per_group: Option<crate::flow::RateLimit>,
    pub(crate) action: Arc<dyn Action>,
}

/// How long a run that was cancelled or timed out may go on, by default,
/// before kessel drops its future (see [`TaskBuilder::grace`](crate::TaskBuilder::grace)).
///
/// # Examples
///
/// ```
/// assert_eq!(kessel::DEFAULT_GRACE, std::time::Duration::from_secs(1));
/// ```
pub const DEFAULT_GRACE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for TaskDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskDef")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .field("timeout", &self.timeout)
            .field("grace", &self.grace)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Checks a task name: not empty, no `:` (kessel reserves it).
pub(crate) fn validate_task_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::InvalidInput {
            field: "task",
            reason: "the task name is empty".into(),
        });
    }
    if name.contains(':') {
        return Err(Error::InvalidInput {
            field: "task",
            reason: format!("task name `{name}` contains `:`, which kessel reserves"),
        });
    }
    Ok(())
}

/// A task defined on a queue.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// let task = queue.define("resize").tag("media").action(|_job: kessel::JobContext<()>| async {
///     Ok::<_, kessel::JobError>(())
/// })?;
/// assert_eq!(task.name(), "resize");
/// assert_eq!(task.tag(), "media");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Task {
    pub(crate) def: Arc<TaskDef>,
}

impl Task {
    /// The task's name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The tag workers use to find the task's jobs.
    pub fn tag(&self) -> &str {
        &self.def.tag
    }

    /// The task's description, if it has one.
    pub fn description(&self) -> Option<&str> {
        self.def.description.as_deref()
    }

    /// How long one attempt may run.
    pub fn timeout(&self) -> Option<Duration> {
        self.def.timeout
    }

    /// How long a cancelled or timed-out run may go on before its future
    /// is dropped (see [`TaskBuilder::grace`](crate::TaskBuilder::grace)).
    pub fn grace(&self) -> Duration {
        self.def.grace
    }

    /// How the task retries.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.def.retry
    }

    /// The task that receives this task's buried jobs, if any (see
    /// [`TaskBuilder::dead_letter`](crate::TaskBuilder::dead_letter)).
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// let task = queue.define("sync").dead_letter("sync failures")
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
    /// assert_eq!(task.dead_letter(), Some("sync failures"));
    /// # Ok(()) }
    /// ```
    pub fn dead_letter(&self) -> Option<&str> {
        self.def.dead_letter.as_deref()
    }

    /// The URL its jobs' webhook callbacks go to (feature `webhooks`; see
    /// [`TaskBuilder::callback`](crate::TaskBuilder::callback)).
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.webhooks(kessel::webhook::Webhooks::new().secret("default", "s3cret"))?;
    /// let task = queue.define("sync").callback("http://127.0.0.1:8080/hooks")
    ///     .action(|_: kessel::JobContext<()>| async { Ok::<_, kessel::JobError>(()) })?;
    /// assert_eq!(task.callback(), Some("http://127.0.0.1:8080/hooks"));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "webhooks")]
    pub fn callback(&self) -> Option<&str> {
        self.def.callback.as_ref().map(|t| &*t.url)
    }

    /// How many of its jobs may run at once, if limited (see
    /// [`TaskBuilder::max_running`](crate::TaskBuilder::max_running)).
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// let task = queue.define("export").max_running(2)
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
    /// assert_eq!(task.max_running(), Some(2));
    /// # Ok(()) }
    /// ```
    pub fn max_running(&self) -> Option<u32> {
        self.def.max_running
    }

    /// How often its jobs may start, if limited (see
    /// [`TaskBuilder::rate_limit`](crate::TaskBuilder::rate_limit)).
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError, RateLimit};
    /// let queue = kessel::Queue::new();
    /// let task = queue.define("call api").rate_limit("10/s")
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
    /// assert_eq!(task.rate_limit(), Some(RateLimit::per_second(10)));
    /// # Ok(()) }
    /// ```
    pub fn rate_limit(&self) -> Option<crate::flow::RateLimit> {
        self.def.rate_limit
    }

    /// How many of each group's jobs may run at once, if limited (see
    /// [`TaskBuilder::max_running_per_group`](crate::TaskBuilder::max_running_per_group)).
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// let task = queue.define("sync customer").max_running_per_group(1)
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
    /// assert_eq!(task.max_running_per_group(), Some(1));
    /// # Ok(()) }
    /// ```
    pub fn max_running_per_group(&self) -> Option<u32> {
        self.def.max_running_per_group
    }

    /// How often each group's jobs may start, if limited (see
    /// [`TaskBuilder::rate_limit_per_group`](crate::TaskBuilder::rate_limit_per_group)).
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError, RateLimit};
    /// let queue = kessel::Queue::new();
    /// let task = queue.define("call customer api").rate_limit_per_group("5/s")
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
    /// assert_eq!(task.rate_limit_per_group(), Some(RateLimit::per_second(5)));
    /// # Ok(()) }
    /// ```
    pub fn rate_limit_per_group(&self) -> Option<crate::flow::RateLimit> {
        self.def.rate_limit_per_group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy::exponential(10)
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .jitter(0.0);
        let delays: Vec<u128> = (1..=6).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = RetryPolicy::exponential(3)
            .base_delay(Duration::from_secs(10))
            .jitter(0.2);
        assert_eq!(p.backoff_jittered(1, 0.0), Duration::from_secs(8));
        assert_eq!(p.backoff_jittered(1, 1.0), Duration::from_secs(12));
        assert_eq!(p.backoff_jittered(1, 0.5), Duration::from_secs(10));
    }

    #[test]
    fn payload_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Order {
            customer: Customer,
            qty: u32,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Customer {
            email: String,
        }
        let err =
            decode_payload::<Order>("ship", r#"{"customer":{"email":5},"qty":1}"#).unwrap_err();
        assert_eq!(err.path, "customer.email");
        assert_eq!(err.task, "ship");
        let err = decode_payload::<Order>("ship", r#"{"customer":{"email":"a"}}"#).unwrap_err();
        assert!(err.message.contains("missing field `qty`"), "{err}");
        let err =
            decode_payload::<Order>("ship", r#"{"customer":{"email":"a"},"qty":-1}"#).unwrap_err();
        assert_eq!(err.path, "qty");
        let err = decode_payload::<u32>("ship", "not json").unwrap_err();
        assert_eq!(err.path, ".");
    }
}
