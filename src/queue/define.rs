//! The chained builder that defines a task on a queue.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::JobContext;
use crate::duration::IntoDuration;
use crate::error::{Error, JobError};
use crate::middleware::Middleware;
use crate::queue::typed::TaskPayload;
use crate::queue::Queue;
use crate::scheduler::actor::DefineTask;
use crate::task::{
    validate_task_name, Action, Composed, FnAction, RetryPolicy, Step, StepKind, Task, TaskDef,
    DEFAULT_GRACE, DEFAULT_TAG,
};

/// The chained builder [`Queue::define`](Queue::define) and
/// [`Queue::define_for`](Queue::define_for) return.
/// Nothing is registered until [`TaskBuilder::action`].
///
/// `P` is the payload type the handler must take: [`AnyPayload`] from
/// [`Queue::define`] (a task named by a string, whose handler chooses its
/// payload type), or a [`TaskPayload`] type from [`Queue::define_for`],
/// whose handler must take [`JobContext<P>`].
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::{JobContext, JobError, RetryPolicy};
///
/// let queue = kessel::Queue::new();
/// queue
///     .define("send email")
///     .tag("notifications")
///     .desc("sends one transactional email")
///     .timeout("30s")
///     .retry(RetryPolicy::exponential(3))
///     .action(|job: JobContext<String>| async move {
///         Ok::<_, JobError>(format!("sent to {}", job.payload))
///     })?;
/// let err = queue.define("bad").timeout("thirty").action(|_: JobContext<()>| async {
///     Ok::<_, JobError>(())
/// }).unwrap_err();
/// assert!(matches!(err, kessel::Error::InvalidDuration(_)));
/// # Ok(()) }
/// ```
#[must_use = "a task is only defined once `.action(..)` is called"]
pub struct TaskBuilder<'q, P = AnyPayload> {
    queue: &'q Queue,
    name: String,
    tag: String,
    description: Option<String>,
    timeout: Option<Duration>,
    grace: Duration,
    retry: RetryPolicy,
    middleware: Vec<Arc<dyn Middleware>>,
    dead_letter: Option<Arc<str>>,
    #[cfg(feature = "webhooks")]
    callback: Option<crate::webhook::Target>,
    max_running: Option<u32>,
    rate_limit: Option<crate::flow::RateLimit>,
    max_running_per_group: Option<u32>,
    rate_limit_per_group: Option<crate::flow::RateLimit>,
    error: Option<Error>,
    payload: PhantomData<fn() -> P>,
}

/// The payload parameter of a [`TaskBuilder`] from [`Queue::define`]: the
/// task is named by a string, and its handler may take any payload type
/// serde can decode. There are no values of this type.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::{AnyPayload, JobContext, JobError, TaskBuilder};
/// let queue = kessel::Queue::new();
/// let builder: TaskBuilder<'_, AnyPayload> = queue.define("echo");
/// builder.action(|job: JobContext<String>| async move { Ok::<_, JobError>(job.payload) })?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyPayload {}

impl<P> std::fmt::Debug for TaskBuilder<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskBuilder")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .field("payload", &std::any::type_name::<P>())
            .field("description", &self.description)
            .field("timeout", &self.timeout)
            .field("grace", &self.grace)
            .field("retry", &self.retry)
            .field("middleware", &self.middleware.len())
            .field("error", &self.error)
            .finish()
    }
}

impl<'q> TaskBuilder<'q> {
    pub(crate) fn new(queue: &'q Queue, name: String) -> Self {
        TaskBuilder {
            queue,
            name,
            tag: DEFAULT_TAG.to_owned(),
            description: None,
            timeout: None,
            grace: DEFAULT_GRACE,
            retry: RetryPolicy::default(),
            middleware: Vec::new(),
            dead_letter: None,
            #[cfg(feature = "webhooks")]
            callback: None,
            max_running: None,
            rate_limit: None,
            max_running_per_group: None,
            rate_limit_per_group: None,
            error: None,
            payload: PhantomData,
        }
    }

    /// Sets the handler and registers the task. The handler takes a
    /// [`JobContext<T>`] whose payload is decoded from the job's JSON (a
    /// payload that does not fit buries the job with a
    /// [`PayloadError`](crate::PayloadError) naming the field), and returns `Result<R, E>` where
    /// `R` is serialized as the job's result and `E` converts into
    /// [`JobError`]. To have the compiler check that producers and the
    /// handler agree on `T`, define the task with
    /// [`Queue::define_for`] instead.
    ///
    /// Handlers run on their worker's threads (see
    /// [`ProcessBuilder::threads`](crate::ProcessBuilder::threads)), never
    /// on the scheduler's: a handler that blocks its thread delays only the
    /// jobs of that thread. The handler's future is created and polled on
    /// one worker thread, so it need not be `Send`. Long CPU-heavy work is
    /// still best moved to `tokio::task::spawn_blocking`, so the thread's
    /// other jobs keep their turn.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDuration`] from an earlier builder call,
    /// [`Error::InvalidInput`] for an empty name, a name with `:`, or a name
    /// already defined on this queue, [`Error::ShutDown`] after shutdown.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// queue.define("add").action(|job: JobContext<(i64, i64)>| async move {
    ///     Ok::<_, JobError>(job.payload.0 + job.payload.1)
    /// })?;
    /// queue.process(["default"]).start()?;
    /// let result = queue.create("add", (2, 3)).await?.result().await?;
    /// assert_eq!(result.value, Some(serde_json::json!(5)));
    /// # Ok(()) }
    /// ```
    pub fn action<F, T, Fut, R, E>(self, handler: F) -> Result<Task, Error>
    where
        F: Fn(JobContext<T>) -> Fut + Send + Sync + 'static,
        T: DeserializeOwned + 'static,
        Fut: Future<Output = Result<R, E>> + 'static,
        R: Serialize + 'static,
        E: Into<JobError> + 'static,
    {
        self.finish(Arc::new(FnAction {
            f: handler,
            _payload: PhantomData,
        }))
    }
}

impl<'q, P: TaskPayload> TaskBuilder<'q, P> {
    /// Sets the handler of a task defined with [`Queue::define_for`] and
    /// registers it. The handler takes [`JobContext<P>`]: a handler for
    /// another payload type does not compile. Otherwise as the
    /// [`action`](TaskBuilder::action) of [`Queue::define`]'s builder
    /// (a job whose stored payload does not fit `P`, say one created by
    /// name from another program, is buried naming the field).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDuration`] from an earlier builder call,
    /// [`Error::InvalidInput`] for an invalid [`TaskPayload::TASK`] or tag,
    /// or a task already defined on this queue, [`Error::ShutDown`] after
    /// shutdown.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError, TaskPayload};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Resize { width: u32 }
    /// impl TaskPayload for Resize {
    ///     const TASK: &'static str = "resize";
    /// }
    ///
    /// let queue = kessel::Queue::new();
    /// // The closure's argument type is inferred: JobContext<Resize>.
    /// queue.define_for::<Resize>().action(|job| async move {
    ///     Ok::<_, JobError>(job.payload.width / 2)
    /// })?;
    /// queue.process(["default"]).start()?;
    /// let result = queue.enqueue(Resize { width: 640 }).await?.result().await?;
    /// assert_eq!(result.value, Some(serde_json::json!(320)));
    /// # let _: Option<JobContext<Resize>> = None;
    /// # Ok(()) }
    /// ```
    pub fn action<F, Fut, R, E>(self, handler: F) -> Result<Task, Error>
    where
        F: Fn(JobContext<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + 'static,
        R: Serialize + 'static,
        E: Into<JobError> + 'static,
    {
        self.finish(Arc::new(FnAction {
            f: handler,
            _payload: PhantomData,
        }))
    }
}

impl<'q, P> TaskBuilder<'q, P> {
    /// The tag that groups this task's jobs for workers (default `"default"`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// A short description, for people and middleware.
    pub fn desc(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// How long one attempt may run. Past it the job's cancellation signal
    /// fires, the attempt counts as timed out, and the job is retried as a
    /// transient failure. An unreadable duration makes
    /// [`TaskBuilder::action`] return the error.
    pub fn timeout(mut self, timeout: impl IntoDuration) -> Self {
        match timeout.into_duration() {
            Ok(d) => self.timeout = Some(d),
            Err(e) => self.error = self.error.take().or(Some(e.into())),
        }
        self
    }

    /// How long a run that was cancelled or timed out may go on before its
    /// future is dropped (default [`DEFAULT_GRACE`], one second).
    ///
    /// A cancel or a timeout first fires the run's signal:
    /// [`JobContext::cancelled`](crate::JobContext::cancelled) resolves and
    /// [`JobContext::is_cancelled`](crate::JobContext::is_cancelled) turns
    /// true. The handler's future is still polled for this long, so it can
    /// stop cleanly, write a last log line and return; what it returns is
    /// recorded with the cancellation or the timeout (its error's message
    /// after the reason, its log lines in order). A handler still running
    /// at the end of the grace period is dropped at its next await point.
    /// Its worker's slot stays taken until the run has ended either way.
    /// `0` drops the future at once. An unreadable duration makes
    /// [`TaskBuilder::action`] return the error.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// let task = queue
    ///     .define("export")
    ///     .timeout("30s")
    ///     .grace("5s")
    ///     .action(|job: JobContext<()>| async move {
    ///         tokio::select! {
    ///             _ = job.cancelled() => {
    ///                 job.log("stopped at a safe point", ());
    ///                 Err(JobError::transient("stopped early"))
    ///             }
    ///             _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => Ok(()),
    ///         }
    ///     })?;
    /// assert_eq!(task.grace(), std::time::Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn grace(mut self, grace: impl IntoDuration) -> Self {
        match grace.into_duration() {
            Ok(d) => self.grace = d,
            Err(e) => self.error = self.error.take().or(Some(e.into())),
        }
        self
    }

    /// How the task retries transient failures (an error, a panic, a
    /// timeout). The default ([`RetryPolicy::default`]) makes five
    /// attempts, waiting 1 s after the first failure and doubling (up to an
    /// hour) with 10% jitter: a handler that always fails or panics is
    /// buried about 15 s after its first attempt.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Names the task that receives this task's dead letters: when one of
    /// its jobs is buried (attempts exhausted, a fatal error, a timeout on
    /// the last attempt), kessel creates a job of `task` whose payload is a
    /// [`DeadLetter`](crate::DeadLetter): the buried job's id, task,
    /// payload, attempts and last error. The dead-letter job's reference is
    /// `dead-letter:{id}`, so it can be found from the buried job's id.
    ///
    /// The buried job itself stays buried (it can still be kicked or
    /// redriven). The dead letter is created after the bury is decided, at
    /// least once: a crash between the two can leave a buried job without
    /// its letter (redrive or kick it), never a letter lost once created.
    /// `task` need not be defined in this process; on a shared store any
    /// process that defines it runs the letters. A task cannot be its own
    /// dead-letter destination.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{DeadLetter, JobContext, JobError, RetryPolicy};
    /// let queue = kessel::Queue::new();
    /// queue
    ///     .define("charge card")
    ///     .retry(RetryPolicy::none())
    ///     .dead_letter("failed charges")
    ///     .action(|_: JobContext<u64>| async { Err::<(), _>(JobError::fatal("card declined")) })?;
    /// queue.define("failed charges").action(|job: JobContext<DeadLetter>| async move {
    ///     Ok::<_, JobError>(format!("{} failed: {}", job.payload.task, job.payload.last_error))
    /// })?;
    /// queue.process(["default"]).start()?;
    /// let charge = queue.create("charge card", 42).await?;
    /// assert_eq!(charge.result().await?.status, kessel::JobStatus::Buried);
    /// let reference = format!("dead-letter:{}", charge.id());
    /// let letters = queue.fetch(kessel::store::JobQuery::default().reference(reference)).await?;
    /// assert_eq!(letters.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn dead_letter(mut self, task: impl Into<String>) -> Self {
        self.dead_letter = Some(task.into().into());
        self
    }

    /// Calls `url` when a job of this task reaches a final state
    /// (completed, buried, expired or cancelled; feature `webhooks`): kessel
    /// creates a delivery job of [`kessel.webhook`](crate::webhook::TASK)
    /// that POSTs a [`CallbackBody`](crate::webhook::CallbackBody) signed
    /// with the secret [`DEFAULT_SECRET`](crate::webhook::DEFAULT_SECRET)
    /// (another with [`callback_secret`](TaskBuilder::callback_secret)),
    /// retried with backoff until the receiver answers 2xx. Register the
    /// delivery task first with [`Queue::webhooks`]; see
    /// [`kessel::webhook`](crate::webhook).
    ///
    /// # Errors
    ///
    /// `.action(..)` returns [`Error::InvalidInput`] naming `callback`
    /// when `url` is not an `http` or `https` URL with a host, or when
    /// [`Queue::webhooks`] was not called before.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::webhook::Webhooks;
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// queue.webhooks(Webhooks::new().secret("default", "s3cret"))?;
    /// queue
    ///     .define("export")
    ///     .callback("https://example.com/hooks/kessel")
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
    /// let err = queue
    ///     .define("import")
    ///     .callback("ftp://example.com/hooks")
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
    ///     .unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "callback", .. }));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "webhooks")]
    pub fn callback(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        if let Err(e) = crate::webhook::validate_url(&url) {
            self.error = self.error.take().or(Some(e));
        }
        let secret = self.callback.take().map_or_else(
            || Arc::from(crate::webhook::DEFAULT_SECRET),
            |target| target.secret,
        );
        self.callback = Some(crate::webhook::Target {
            url: url.into(),
            secret,
        });
        self
    }

    /// Signs this task's callbacks with the secret `name` of
    /// [`Webhooks::secret`](crate::webhook::Webhooks::secret) rather than
    /// [`DEFAULT_SECRET`](crate::webhook::DEFAULT_SECRET) (feature
    /// `webhooks`), so receivers can be given different secrets. Only the
    /// name travels in delivery jobs. Without a
    /// [`callback`](TaskBuilder::callback), `.action(..)` returns
    /// [`Error::InvalidInput`] naming `callback_secret`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::webhook::Webhooks;
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// queue.webhooks(Webhooks::new().secret("partner-b", "their secret"))?;
    /// queue
    ///     .define("invoice")
    ///     .callback("https://partner-b.example/kessel")
    ///     .callback_secret("partner-b")
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "webhooks")]
    pub fn callback_secret(mut self, name: impl Into<String>) -> Self {
        let secret: Arc<str> = name.into().into();
        match &mut self.callback {
            Some(target) => target.secret = secret,
            // The URL may follow; `finish` refuses a secret without one.
            None => {
                self.callback = Some(crate::webhook::Target {
                    url: Arc::from(""),
                    secret,
                })
            }
        }
        self
    }

    /// Lets at most `n` of this task's jobs run at once: on a store only
    /// this process uses, in this process; on PostgreSQL, across every
    /// process that defines the task with the same limit, held as places:
    /// each process runs at most the places its claims gave it (as many
    /// as its workers can run of the task, of those the others leave),
    /// and jobs it leased ahead wait in it for a place. Jobs over the limit
    /// wait, ready, and start as running ones end, best first. `0` makes
    /// [`TaskBuilder::action`] return [`Error::InvalidInput`] naming
    /// `max_running` (suspend the task to hold it instead).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// // The reporting database takes two exports at a time, whatever the
    /// // worker concurrency.
    /// queue.define("export").max_running(2).action(|_: JobContext<u32>| async {
    ///     Ok::<_, JobError>(())
    /// })?;
    /// queue.process(["default"]).concurrency(16).start()?;
    /// # Ok(()) }
    /// ```
    pub fn max_running(mut self, n: u32) -> Self {
        self.max_running = Some(n);
        self
    }

    /// Limits how often this task's jobs may start (see
    /// [`RateLimit`](crate::RateLimit)): `"10/s"`, `"100/m"`, or
    /// `RateLimit::per_second(10).burst(20)`. A job over the limit waits,
    /// ready, and starts when the limit allows; it is never failed for it.
    /// On PostgreSQL the limit holds across every process that defines
    /// the task with it: the claim counts it (`docs/flow-control.md`);
    /// a limit made [`per_process`](crate::RateLimit::per_process)
    /// (`"10/s per process"`) holds in each process alone.
    /// Unreadable text, or a zero count, period or burst, makes
    /// [`TaskBuilder::action`] return the error (`Error::InvalidInput`
    /// naming `rate_limit`).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError, RateLimit};
    /// let queue = kessel::Queue::new();
    /// queue.define("call partner api").rate_limit(RateLimit::per_second(10).burst(20))
    ///     .action(|_: JobContext<u32>| async { Ok::<_, JobError>(()) })?;
    /// let err = queue.define("bad").rate_limit("ten per second")
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
    ///     .unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "rate_limit", .. }));
    /// # Ok(()) }
    /// ```
    pub fn rate_limit(mut self, limit: impl crate::flow::IntoRateLimit) -> Self {
        match limit.into_rate_limit() {
            Ok(limit) => self.rate_limit = Some(limit),
            Err(e) => {
                self.error = self.error.take().or(Some(Error::InvalidInput {
                    field: "rate_limit",
                    reason: e.to_string(),
                }))
            }
        }
        self
    }

    /// Lets at most `n` jobs of each [group](crate::NewJob::group) of this
    /// task run at once: "one running sync per customer". Jobs without a
    /// group share one limit, as they share one turn among the groups.
    /// A job over its group's limit waits, ready, and starts when a run of
    /// its group ends; it never holds up another group's jobs, however
    /// many of its own group wait. Combines with
    /// [`max_running`](Self::max_running): a job starts when both allow.
    ///
    /// On PostgreSQL it holds across every process that defines the task
    /// with the same limit, as [`max_running`](Self::max_running) does
    /// (a job counts from its claim to its end; see
    /// `docs/flow-control.md`). `0` makes [`TaskBuilder::action`] return [`Error::InvalidInput`]
    /// naming `max_running_per_group`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError, NewJob};
    /// let queue = kessel::Queue::new();
    /// // One sync per customer at a time; customers sync side by side.
    /// queue.define("sync").max_running_per_group(1).action(|_: JobContext<u32>| async {
    ///     Ok::<_, JobError>(())
    /// })?;
    /// queue.create_many([
    ///     NewJob::new("sync", 1).group("customer-42"),
    ///     NewJob::new("sync", 2).group("customer-42"),
    ///     NewJob::new("sync", 3).group("customer-7"),
    /// ]).await?;
    /// queue.process(["default"]).concurrency(8).start()?;
    /// let err = queue.define("none").max_running_per_group(0)
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
    ///     .unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "max_running_per_group", .. }));
    /// # Ok(()) }
    /// ```
    pub fn max_running_per_group(mut self, n: u32) -> Self {
        self.max_running_per_group = Some(n);
        self
    }

    /// Limits how often the jobs of each [group](crate::NewJob::group) of
    /// this task may start: "each customer at most 5 calls a second". Each
    /// group has its own [`RateLimit`](crate::RateLimit) of these numbers
    /// (jobs without a group share one). A job over its group's rate waits,
    /// ready, and starts when its group's limit allows; other groups' jobs
    /// start meanwhile. Combines with [`rate_limit`](Self::rate_limit) and
    /// the running limits: a job starts when all allow.
    ///
    /// On PostgreSQL it holds across every process that defines the task
    /// with the same limit, as [`rate_limit`](Self::rate_limit) does: the
    /// claim spends each group's starts in the database. Unreadable
    /// text, a zero count, period or burst, or a limit made
    /// [`per_process`](crate::RateLimit::per_process), makes
    /// [`TaskBuilder::action`] return [`Error::InvalidInput`] naming
    /// `rate_limit_per_group`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError, RateLimit};
    /// let queue = kessel::Queue::new();
    /// // The partner allows each customer's account 5 calls a second.
    /// queue.define("call partner").rate_limit_per_group(RateLimit::per_second(5))
    ///     .action(|_: JobContext<u32>| async { Ok::<_, JobError>(()) })?;
    /// let err = queue.define("bad").rate_limit_per_group("0/s")
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
    ///     .unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "rate_limit_per_group", .. }));
    /// let err = queue.define("per process").rate_limit_per_group("5/s per process")
    ///     .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
    ///     .unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "rate_limit_per_group", .. }));
    /// # Ok(()) }
    /// ```
    pub fn rate_limit_per_group(mut self, limit: impl crate::flow::IntoRateLimit) -> Self {
        match limit.into_rate_limit() {
            Ok(limit) => self.rate_limit_per_group = Some(limit),
            Err(e) => {
                self.error = self.error.take().or(Some(Error::InvalidInput {
                    field: "rate_limit_per_group",
                    reason: e.to_string(),
                }))
            }
        }
        self
    }

    /// Adds middleware around this task's runs, inside any queue middleware.
    /// The first added is the outermost (see [`crate::middleware`]).
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Registers a task that runs `steps` in series on one worker: each
    /// step's output is the next step's input, the last step's output is the
    /// job's result, and the first failure fails the job with a message
    /// naming the step (the failure keeps its kind: a transient one retries
    /// the whole composition).
    ///
    /// # Errors
    ///
    /// As [`TaskBuilder::action`], and [`Error::InvalidInput`] when there
    /// are no steps or a [`Step::task`] names a task not defined on this
    /// queue.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError, Step};
    /// let queue = kessel::Queue::new();
    /// queue.define("double").action(|j: JobContext<i64>| async move { Ok::<_, JobError>(j.payload * 2) })?;
    /// queue.define("double then add one").compose([
    ///     Step::task("double"),
    ///     Step::action("add one", |j: JobContext<i64>| async move { Ok::<_, JobError>(j.payload + 1) }),
    /// ])?;
    /// queue.process(["default"]).start()?;
    /// let result = queue.create("double then add one", 20).await?.result().await?;
    /// assert_eq!(result.value, Some(serde_json::json!(41)));
    /// # Ok(()) }
    /// ```
    pub fn compose(self, steps: impl IntoIterator<Item = Step>) -> Result<Task, Error> {
        let mut resolved: Vec<(String, Arc<dyn Action>)> = Vec::new();
        for step in steps {
            match step.kind {
                StepKind::Task => {
                    let action =
                        self.queue
                            .task_action(&step.name)
                            .ok_or_else(|| Error::InvalidInput {
                                field: "step",
                                reason: format!(
                                    "step `{}` names a task not defined on this queue",
                                    step.name
                                ),
                            })?;
                    resolved.push((step.name, action));
                }
                StepKind::Inline(action) => resolved.push((step.name, action)),
            }
        }
        if resolved.is_empty() {
            return Err(Error::InvalidInput {
                field: "steps",
                reason: format!("composed task `{}` has no steps", self.name),
            });
        }
        self.finish(Arc::new(Composed {
            steps: resolved.into(),
        }))
    }

    pub(crate) fn finish(self, action: Arc<dyn Action>) -> Result<Task, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        validate_task_name(&self.name)?;
        if self.tag.trim().is_empty() {
            return Err(Error::InvalidInput {
                field: "tag",
                reason: format!("task `{}` has an empty tag", self.name),
            });
        }
        if let Some(dest) = &self.dead_letter {
            validate_task_name(dest).map_err(|e| Error::InvalidInput {
                field: "dead_letter",
                reason: e.to_string(),
            })?;
            if **dest == *self.name {
                return Err(Error::InvalidInput {
                    field: "dead_letter",
                    reason: format!("task `{}` cannot be its own dead-letter task", self.name),
                });
            }
        }
        #[cfg(feature = "webhooks")]
        if self.callback.as_ref().is_some_and(|t| t.url.is_empty()) {
            return Err(Error::InvalidInput {
                field: "callback_secret",
                reason: format!(
                    "task `{}` names a callback secret but no callback URL (TaskBuilder::callback)",
                    self.name
                ),
            });
        }
        #[cfg(feature = "webhooks")]
        if self.callback.is_some() && !self.queue.inner.tasks.contains_key(crate::webhook::TASK) {
            return Err(Error::InvalidInput {
                field: "callback",
                reason: format!(
                    "task `{}` has a callback but nothing delivers it: call queue.webhooks(..) first",
                    self.name
                ),
            });
        }
        if let Some(n) = self.max_running {
            crate::flow::validate_max_running(n)?;
        }
        if let Some(limit) = &self.rate_limit {
            limit.validate()?;
        }
        if let Some(n) = self.max_running_per_group {
            crate::flow::validate_running_limit("max_running_per_group", n)?;
        }
        if let Some(limit) = &self.rate_limit_per_group {
            limit.validate_per_group()?;
        }
        let def = Arc::new(TaskDef {
            name: self.name.into(),
            tag: self.tag,
            description: self.description,
            timeout: self.timeout,
            grace: self.grace,
            retry: self.retry,
            middleware: self.middleware,
            dead_letter: self.dead_letter,
            #[cfg(feature = "webhooks")]
            callback: self.callback.map(Arc::new),
            max_running: self.max_running,
            rate_limit: self.rate_limit,
            max_running_per_group: self.max_running_per_group,
            rate_limit_per_group: self.rate_limit_per_group,
            action,
        });
        self.queue.register_task(def.clone())?;
        Ok(Task { def })
    }
}

impl Queue {
    /// Starts defining a task named `name`; see [`TaskBuilder`]. Its
    /// handler may take any payload type; [`Queue::define_for`] ties the
    /// task to one type instead.
    pub fn define(&self, name: impl Into<String>) -> TaskBuilder<'_> {
        TaskBuilder::new(self, name.into())
    }

    /// Starts defining the task of payload type `P`: named
    /// [`P::TASK`](TaskPayload::TASK), tagged [`P::TAG`](TaskPayload::TAG)
    /// (`.tag(..)` still overrides it), its handler taking
    /// [`JobContext<P>`]. Producers create its jobs with
    /// [`Queue::enqueue`]; see [`TaskPayload`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobError, TaskPayload};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Ping;
    /// impl TaskPayload for Ping {
    ///     const TASK: &'static str = "ping";
    ///     const TAG: &'static str = "health";
    /// }
    ///
    /// let queue = kessel::Queue::new();
    /// let task = queue.define_for::<Ping>().timeout("1s").action(|_job| async {
    ///     Ok::<_, JobError>("pong")
    /// })?;
    /// assert_eq!((task.name(), task.tag()), ("ping", "health"));
    /// # Ok(()) }
    /// ```
    pub fn define_for<P: TaskPayload>(&self) -> TaskBuilder<'_, P> {
        let TaskBuilder {
            queue,
            name,
            description,
            timeout,
            grace,
            retry,
            middleware,
            dead_letter,
            #[cfg(feature = "webhooks")]
            callback,
            max_running,
            rate_limit,
            max_running_per_group,
            rate_limit_per_group,
            error,
            ..
        } = TaskBuilder::new(self, P::TASK.to_owned());
        TaskBuilder {
            queue,
            name,
            tag: P::TAG.to_owned(),
            description,
            timeout,
            grace,
            retry,
            middleware,
            dead_letter,
            #[cfg(feature = "webhooks")]
            callback,
            max_running,
            rate_limit,
            max_running_per_group,
            rate_limit_per_group,
            error,
            payload: PhantomData,
        }
    }

    pub(crate) fn register_task(&self, def: Arc<TaskDef>) -> Result<(), Error> {
        use dashmap::mapref::entry::Entry;
        match self.inner.tasks.entry(def.name.to_string()) {
            Entry::Occupied(_) => {
                return Err(Error::InvalidInput {
                    field: "task",
                    reason: format!("task `{}` is already defined on this queue", def.name),
                })
            }
            Entry::Vacant(v) => {
                v.insert(def.clone());
            }
        }
        if let Some(relay) = self.inner.bus.relay() {
            relay.define(&def.name, &def.tag);
        }
        self.inner.scheduler.do_send(DefineTask(def));
        Ok(())
    }

    pub(crate) fn task_action(&self, name: &str) -> Option<Arc<dyn crate::task::Action>> {
        self.inner.tasks.get(name).map(|t| t.action.clone())
    }
}
