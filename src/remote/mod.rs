//! Remote workers (feature `remote`): work a queue's jobs in a process
//! with no store of its own, through the HTTP API's `/remote/...`
//! endpoints (`docs/http.md`, "Remote workers").
//!
//! A [`Worker`] defines tasks with the same builder and handler signature
//! as [`Queue::define`](crate::Queue::define): a handler takes a
//! [`JobContext<T>`] and returns `Result<R, E>`. [`Worker::run`] fetches
//! jobs of its tasks (long-polling, up to [`Worker::concurrency`] at a
//! time), runs them, heartbeats their leases while they run, forwards
//! their log lines and progress, and reports the result or the failure.
//!
//! ```no_run
//! use kessel::{JobContext, JobError};
//! use kessel::remote::Worker;
//!
//! # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let worker = Worker::new("http://jobs.internal:8080/kessel", "ops-91c2").concurrency(4);
//! worker.define("resize").action(|job: JobContext<u32>| async move {
//!     job.log("resizing", serde_json::json!({ "width": job.payload }));
//!     Ok::<_, JobError>(job.payload / 2)
//! })?;
//! worker.run().await?;
//! # Ok(()) }
//! ```
//!
//! What differs from a local task:
//! - tag, retry policy, timeout, grace, limits and middleware are the
//!   API process's: it defines the task (tagged `remote/<task>`, see
//!   `kessel::web::Api::remote_retry`) when a remote worker first asks for
//!   it, so the remote builder has only [`RemoteTaskBuilder::action`];
//! - [`JobError::retry_after`](crate::JobError) and snoozes are reported
//!   as transient failures (the task's backoff applies);
//! - log lines and progress reach the job at the next heartbeat (a third
//!   of the lease) and when the run ends, not at once;
//! - a cancel or a timeout reaches the handler at its next heartbeat; it
//!   then has [`DEFAULT_GRACE`](crate::DEFAULT_GRACE) to return;
//! - [`JobContext::touch`] does nothing (heartbeats keep the lease).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::context::{CancelSignal, JobContext, RunInfo, RunShared};
use crate::error::{Error, JobError, JobErrorKind};
use crate::event::EventBus;
use crate::job::JobId;
use crate::queue::{AnyPayload, TaskPayload};
use crate::scheduler::clock::Clock;
use crate::task::{validate_task_name, Action, FnAction};
use crate::time::CompactTime;

mod client;

pub use client::RemoteError;

/// How long a lease lasts without a heartbeat, by default.
///
/// # Examples
///
/// ```
/// assert_eq!(kessel::remote::DEFAULT_LEASE, std::time::Duration::from_secs(30));
/// ```
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How long one fetch waits for a job, by default.
///
/// # Examples
///
/// ```
/// assert_eq!(kessel::remote::DEFAULT_WAIT, std::time::Duration::from_secs(20));
/// ```
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);

/// How long a report (other than a fetch) may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// A task's name and its handler.
type Handler = (String, Arc<dyn Action>);

/// A process that works jobs of a kessel HTTP API: see the [module
/// docs](self).
///
/// # Examples
///
/// ```
/// use kessel::remote::Worker;
/// let worker = Worker::new("http://127.0.0.1:8080/kessel", "ops-91c2")
///     .concurrency(8)
///     .lease(std::time::Duration::from_secs(60))
///     .wait(std::time::Duration::from_secs(10));
/// assert_eq!(worker.tasks(), Vec::<String>::new());
/// ```
#[derive(Clone)]
pub struct Worker {
    client: client::Client,
    tasks: Arc<Mutex<Vec<Handler>>>,
    concurrency: usize,
    lease: Duration,
    wait: Duration,
    bus: Arc<EventBus>,
    clock: Clock,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("client", &self.client)
            .field("tasks", &self.tasks())
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("wait", &self.wait)
            .finish()
    }
}

/// The builder [`Worker::define`] returns; nothing is defined until
/// [`RemoteTaskBuilder::action`].
///
/// # Examples
///
/// ```
/// use kessel::{JobContext, JobError};
/// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "");
/// worker.define("echo").action(|job: JobContext<String>| async move {
///     Ok::<_, JobError>(job.payload)
/// })?;
/// assert_eq!(worker.tasks(), ["echo"]);
/// # Ok::<(), kessel::Error>(())
/// ```
///
/// `P` is as in [`TaskBuilder`](crate::TaskBuilder): [`AnyPayload`] from
/// [`Worker::define`], or the [`TaskPayload`] type of
/// [`Worker::define_for`], whose handler must take [`JobContext<P>`].
#[must_use = "a task is only defined once `.action(..)` is called"]
pub struct RemoteTaskBuilder<'w, P = AnyPayload> {
    worker: &'w Worker,
    name: String,
    payload: std::marker::PhantomData<fn() -> P>,
}

impl<P> std::fmt::Debug for RemoteTaskBuilder<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTaskBuilder")
            .field("name", &self.name)
            .field("payload", &std::any::type_name::<P>())
            .finish()
    }
}

impl<P> RemoteTaskBuilder<'_, P> {
    /// Registers `action` under the builder's name.
    fn finish(self, action: Arc<dyn Action>) -> Result<(), Error> {
        validate_task_name(&self.name)?;
        let mut tasks = self.worker.tasks.lock();
        if tasks.iter().any(|(n, _)| *n == self.name) {
            return Err(Error::InvalidInput {
                field: "task",
                reason: format!("task `{}` is already defined on this worker", self.name),
            });
        }
        tasks.push((self.name, action));
        Ok(())
    }
}

impl<P: TaskPayload> RemoteTaskBuilder<'_, P> {
    /// Sets the handler of a task defined with [`Worker::define_for`]: it
    /// takes [`JobContext<P>`], as with
    /// [`Queue::define_for`](crate::Queue::define_for).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an invalid [`TaskPayload::TASK`], or a
    /// task already defined on this worker.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::{JobError, TaskPayload};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Resize { width: u32 }
    /// impl TaskPayload for Resize {
    ///     const TASK: &'static str = "resize";
    /// }
    ///
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "");
    /// worker.define_for::<Resize>().action(|job| async move {
    ///     Ok::<_, JobError>(job.payload.width / 2)
    /// })?;
    /// assert_eq!(worker.tasks(), ["resize"]);
    /// # Ok::<(), kessel::Error>(())
    /// ```
    pub fn action<F, Fut, R, E>(self, handler: F) -> Result<(), Error>
    where
        F: Fn(JobContext<P>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<R, E>> + 'static,
        R: Serialize + 'static,
        E: Into<JobError> + 'static,
    {
        self.finish(Arc::new(FnAction {
            f: handler,
            _payload: std::marker::PhantomData,
        }))
    }
}

impl RemoteTaskBuilder<'_> {
    /// Sets the handler: the same signature as
    /// [`TaskBuilder::action`](crate::TaskBuilder::action)'s.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty name, a name with `:`, or a
    /// task already defined on this worker.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::{JobContext, JobError};
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "");
    /// let ok = worker.define("a").action(|_: JobContext<()>| async { Ok::<_, JobError>(()) });
    /// assert!(ok.is_ok());
    /// let again = worker.define("a").action(|_: JobContext<()>| async { Ok::<_, JobError>(()) });
    /// assert!(matches!(again, Err(kessel::Error::InvalidInput { field: "task", .. })));
    /// ```
    pub fn action<F, T, Fut, R, E>(self, handler: F) -> Result<(), Error>
    where
        F: Fn(JobContext<T>) -> Fut + Send + Sync + 'static,
        T: DeserializeOwned + 'static,
        Fut: std::future::Future<Output = Result<R, E>> + 'static,
        R: Serialize + 'static,
        E: Into<JobError> + 'static,
    {
        self.finish(Arc::new(FnAction {
            f: handler,
            _payload: std::marker::PhantomData,
        }))
    }
}

/// A job as `POST /remote/fetch` hands it out.
#[derive(Debug, Deserialize)]
struct Fetched {
    id: JobId,
    task: String,
    attempt: u32,
    reference: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    run_at: chrono::DateTime<chrono::Utc>,
    payload: Value,
    lease_token: String,
}

#[derive(Debug, Deserialize)]
struct FetchAnswer {
    jobs: Vec<Fetched>,
}

/// How far a run's log and progress have been sent.
#[derive(Debug, Default)]
struct Sent {
    logs: usize,
    progress: Option<crate::job::Progress>,
}

impl Worker {
    /// A worker of the API at `api_url` (the URL it is mounted at, such
    /// as `http://host:8080/kessel`), with bearer `token` (an admin token;
    /// `""` for an API without auth).
    ///
    /// # Examples
    ///
    /// ```
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080/kessel", "ops-91c2");
    /// assert!(worker.tasks().is_empty());
    /// ```
    pub fn new(api_url: impl Into<String>, token: impl Into<String>) -> Self {
        let token: String = token.into();
        Worker {
            client: client::Client::new(api_url.into(), Some(token)),
            tasks: Arc::default(),
            concurrency: 1,
            lease: DEFAULT_LEASE,
            wait: DEFAULT_WAIT,
            bus: Arc::default(),
            clock: Clock::new(),
        }
    }

    /// How many jobs it fetches and runs at once (default 1; 0 is read as
    /// 1; the API hands out at most 100 per fetch).
    ///
    /// # Examples
    ///
    /// ```
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "").concurrency(0);
    /// assert!(format!("{worker:?}").contains("concurrency: 1"));
    /// ```
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.clamp(1, 100);
        // A connection kept for each request that may be in flight at
        // once (a report per running job, the fetch, a heartbeat), so
        // none is opened and closed per request.
        self.client = self.client.keeping(self.concurrency + 2);
        self
    }

    /// The lease it asks for (default [`DEFAULT_LEASE`]); it heartbeats
    /// every third of it while a job runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "").lease(Duration::from_secs(90));
    /// assert!(format!("{worker:?}").contains("lease: 90s"));
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// How long one fetch waits for a job (default [`DEFAULT_WAIT`]; the
    /// API allows at most 60 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "").wait(Duration::ZERO);
    /// assert!(format!("{worker:?}").contains("wait: 0ns"));
    /// ```
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Starts defining a task; see [`RemoteTaskBuilder::action`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::{JobContext, JobError};
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "");
    /// worker.define("add").action(|job: JobContext<(i64, i64)>| async move {
    ///     Ok::<_, JobError>(job.payload.0 + job.payload.1)
    /// })?;
    /// # Ok::<(), kessel::Error>(())
    /// ```
    pub fn define(&self, name: impl Into<String>) -> RemoteTaskBuilder<'_> {
        RemoteTaskBuilder {
            worker: self,
            name: name.into(),
            payload: std::marker::PhantomData,
        }
    }

    /// Starts defining the task of payload type `P`, named
    /// [`P::TASK`](TaskPayload::TASK), its handler taking
    /// [`JobContext<P>`] (as [`Queue::define_for`](crate::Queue::define_for)).
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::{JobError, TaskPayload};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Ping;
    /// impl TaskPayload for Ping {
    ///     const TASK: &'static str = "ping";
    /// }
    ///
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "");
    /// worker.define_for::<Ping>().action(|_job| async { Ok::<_, JobError>("pong") })?;
    /// # Ok::<(), kessel::Error>(())
    /// ```
    pub fn define_for<P: TaskPayload>(&self) -> RemoteTaskBuilder<'_, P> {
        RemoteTaskBuilder {
            worker: self,
            name: P::TASK.to_owned(),
            payload: std::marker::PhantomData,
        }
    }

    /// The tasks defined, in order of definition (the order it asks for
    /// them in).
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::{JobContext, JobError};
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "");
    /// for name in ["b", "a"] {
    ///     worker.define(name).action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
    /// }
    /// assert_eq!(worker.tasks(), ["b", "a"]);
    /// # Ok::<(), kessel::Error>(())
    /// ```
    pub fn tasks(&self) -> Vec<String> {
        self.tasks.lock().iter().map(|(n, _)| n.clone()).collect()
    }

    /// Works jobs until an error it cannot wait out: fetches, runs and
    /// reports, over and over. Up to [`Worker::concurrency`] jobs run at
    /// once, and while they run the next fetch asks for the slots that
    /// are free, so a slot is refilled as soon as its job is reported,
    /// not when the jobs fetched with it are all done. An unreachable API
    /// or a 5xx is retried after a second (the running jobs go on).
    ///
    /// # Errors
    ///
    /// A 4xx answer to a fetch (a wrong token: 401, a read-only one: 403,
    /// a task with a local handler in the API's process: 409), once the
    /// jobs running then are reported, or [`RemoteError::NoTasks`] when
    /// nothing is defined.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "");
    /// let err = worker.run().await.unwrap_err();
    /// assert!(matches!(err, kessel::remote::RemoteError::NoTasks));
    /// # }
    /// ```
    pub async fn run(&self) -> Result<(), RemoteError> {
        if self.tasks.lock().is_empty() {
            return Err(RemoteError::NoTasks);
        }
        // Jobs run while the next fetch waits: a slot that frees is asked
        // for by the next fetch, without waiting for the others' jobs.
        let mut running = FuturesUnordered::new();
        loop {
            let free = self.concurrency - running.len();
            if free == 0 {
                running.next().await;
                continue;
            }
            let fetch = self.fetch(free);
            futures::pin_mut!(fetch);
            let fetched = loop {
                tokio::select! {
                    fetched = &mut fetch => break fetched,
                    Some(()) = running.next(), if !running.is_empty() => {}
                }
            };
            match fetched {
                Ok(jobs) => running.extend(jobs.into_iter().map(|job| self.work(job, true))),
                Err(
                    e @ (RemoteError::NoTasks
                    | RemoteError::Api {
                        status: 400..=499, ..
                    }),
                ) => {
                    // Report what runs, then stop.
                    while running.next().await.is_some() {}
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kessel remote worker: fetch failed; retrying in 1s");
                    let pause = tokio::time::sleep(Duration::from_secs(1));
                    futures::pin_mut!(pause);
                    loop {
                        tokio::select! {
                            () = &mut pause => break,
                            Some(()) = running.next(), if !running.is_empty() => {}
                        }
                    }
                }
            }
        }
    }

    /// The body of a fetch of `n` jobs.
    fn fetch_body(&self, n: usize) -> Value {
        json!({
            "tasks": self.tasks(),
            "n": n,
            "lease": format!("{}ms", self.lease.as_millis()),
            "wait": format!("{}ms", self.wait.as_millis()),
        })
    }

    /// Asks for up to `n` jobs, waiting up to [`Worker::wait`] for one.
    async fn fetch(&self, n: usize) -> Result<Vec<Fetched>, RemoteError> {
        let body = self.fetch_body(n);
        let answer = self
            .client
            .post("/remote/fetch", body, self.wait + REPORT_TIMEOUT)
            .await?;
        let answer: FetchAnswer =
            serde_json::from_value(answer).map_err(|e| self.client.not_kessel(e))?;
        Ok(answer.jobs)
    }

    /// One round: fetches up to [`Worker::concurrency`] jobs (waiting up
    /// to [`Worker::wait`] for one), runs them at once and reports each.
    /// Returns how many jobs it ran.
    ///
    /// # Errors
    ///
    /// When the fetch fails; a report that fails is logged, and the job's
    /// lease then lapses on the API's side (it runs again).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::remote::RemoteError> {
    /// use kessel::{JobContext, JobError};
    /// let worker = kessel::remote::Worker::new("http://127.0.0.1:8080", "ops-91c2")
    ///     .wait(std::time::Duration::ZERO);
    /// worker.define("ping").action(|_: JobContext<()>| async { Ok::<_, JobError>("pong") }).unwrap();
    /// let ran = worker.run_once().await?;
    /// println!("ran {ran} jobs");
    /// # Ok(()) }
    /// ```
    pub async fn run_once(&self) -> Result<usize, RemoteError> {
        if self.tasks.lock().is_empty() {
            return Err(RemoteError::NoTasks);
        }
        let jobs = self.fetch(self.concurrency).await?;
        let ran = jobs.len();
        futures::future::join_all(jobs.into_iter().map(|job| self.work(job, false))).await;
        Ok(ran)
    }

    /// Runs one fetched job and reports how it went.
    /// Works `job` in one slot; with `refill`, each final report also
    /// asks for the slot's next job (long-polling as a fetch does), which
    /// the slot then works, until a report comes back without one. So a
    /// slot that frees is refilled by its own report, not by the next of
    /// the worker's fetches, which go one at a time.
    async fn work(&self, job: Fetched, refill: bool) {
        let mut next = Some(job);
        while let Some(job) = next.take() {
            next = self.work_one(job, refill).await.into_iter().next();
        }
    }

    /// Works `job`; the jobs its final report fetched, when `refill`.
    async fn work_one(&self, job: Fetched, refill: bool) -> Vec<Fetched> {
        let action = self
            .tasks
            .lock()
            .iter()
            .find(|(n, _)| *n == job.task)
            .map(|(_, a)| a.clone());
        let Some(action) = action else {
            let message = format!("this remote worker has no handler for task `{}`", job.task);
            return self
                .end(
                    &job,
                    "fail",
                    json!({"message": message, "fatal": false}),
                    refill,
                )
                .await;
        };
        let shared = Arc::new(RunShared {
            task: job.task.as_str().into(),
            tag: None,
            signal: CancelSignal::default(),
            journal: Mutex::default(),
            bus: self.bus.clone(),
            clock: self.clock,
            touch: None,
            node: None,
        });
        let info = RunInfo {
            id: job.id,
            attempt: job.attempt,
            reference: job.reference.clone(),
            created_at: CompactTime::Far(job.created_at),
            run_at: CompactTime::Far(job.run_at),
            shared: shared.clone(),
        };
        let payload = job.payload.to_string();
        let mut run = std::panic::AssertUnwindSafe(action.start(info, &payload)).catch_unwind();
        let every = self.lease / 3;
        let mut sent = Sent::default();
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break Some(outcome),
                _ = tokio::time::sleep(every) => {
                    self.flush(&job, &shared, &mut sent).await;
                    if !self.heartbeat(&job).await {
                        shared.cancel();
                        break None;
                    }
                }
            }
        };
        let Some(outcome) = outcome else {
            // Cancelled, timed out or the lease lost: no report is taken;
            // give the handler its grace to stop.
            let _ = tokio::time::timeout(crate::DEFAULT_GRACE, run).await;
            return Vec::new();
        };
        self.flush(&job, &shared, &mut sent).await;
        let (what, body) = match outcome {
            Ok(Ok(value)) => ("complete", json!({ "result": value })),
            Ok(Err(e)) => {
                let fatal = e.kind == JobErrorKind::Fatal;
                ("fail", json!({"message": e.message, "fatal": fatal}))
            }
            Err(_) => (
                "fail",
                json!({"message": "the handler panicked", "fatal": false}),
            ),
        };
        self.end(&job, what, body, refill).await
    }

    /// Sends the log lines and progress not sent yet.
    async fn flush(&self, job: &Fetched, shared: &RunShared, sent: &mut Sent) {
        let (lines, progress) = {
            let journal = shared.journal.lock();
            let lines = journal.logs.get(sent.logs..).unwrap_or_default().to_vec();
            (lines, journal.progress)
        };
        sent.logs += lines.len();
        for line in lines {
            self.report(
                job,
                "log",
                json!({"message": line.message, "data": line.data}),
            )
            .await;
        }
        if let Some(p) = progress.filter(|p| Some(*p) != sent.progress) {
            sent.progress = Some(p);
            self.report(
                job,
                "progress",
                json!({"current": p.current, "total": p.total}),
            )
            .await;
        }
    }

    /// Extends the lease; false when the job should stop (cancelled, timed
    /// out, or the lease is gone).
    async fn heartbeat(&self, job: &Fetched) -> bool {
        let body = json!({
            "lease_token": job.lease_token,
            "lease": format!("{}ms", self.lease.as_millis()),
        });
        let path = format!("/remote/jobs/{}/heartbeat", job.id);
        match self.client.post(&path, body, REPORT_TIMEOUT).await {
            Ok(answer) => answer["cancelled"] != Value::Bool(true),
            Err(RemoteError::Api { status: 409, .. }) => false,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "kessel remote worker: heartbeat failed");
                true
            }
        }
    }

    /// Sends `job`'s final report (`complete` or `fail`), logging a
    /// failure; with `refill`, asking for the slot's next job too: the
    /// jobs it took.
    async fn end(&self, job: &Fetched, what: &str, mut body: Value, refill: bool) -> Vec<Fetched> {
        let mut timeout = REPORT_TIMEOUT;
        if refill {
            body["fetch"] = self.fetch_body(1);
            timeout += self.wait;
        }
        body["lease_token"] = Value::String(job.lease_token.clone());
        let path = format!("/remote/jobs/{}/{what}", job.id);
        match self.client.post(&path, body, timeout).await {
            Ok(answer) if refill => match serde_json::from_value::<FetchAnswer>(answer) {
                Ok(answer) => answer.jobs,
                Err(e) => {
                    tracing::warn!(job = %job.id, report = what, error = %self.client.not_kessel(e), "kessel remote worker: the report's answer holds no jobs");
                    Vec::new()
                }
            },
            Ok(_) => Vec::new(),
            Err(e) => {
                tracing::warn!(job = %job.id, report = what, error = %e, "kessel remote worker: report failed");
                Vec::new()
            }
        }
    }

    /// Sends one report on `job`, logging a failure.
    async fn report(&self, job: &Fetched, what: &str, mut body: Value) {
        body["lease_token"] = Value::String(job.lease_token.clone());
        let path = format!("/remote/jobs/{}/{what}", job.id);
        if let Err(e) = self.client.post(&path, body, REPORT_TIMEOUT).await {
            tracing::warn!(job = %job.id, report = what, error = %e, "kessel remote worker: report failed");
        }
    }
}
