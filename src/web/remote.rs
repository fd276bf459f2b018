//! `/remote/...`: remote workers, processes without store access that
//! work jobs through the API.
//!
//! The API process bridges: when a remote worker first asks for jobs of a
//! task, the API defines that task on its queue with a bridge handler,
//! tagged `remote/<task>`, and starts local workers on that tag with as
//! many slots as remote workers ask for jobs and hold leases (a high-water
//! mark, at most [`Api::remote_slots`]). The bridge handler does not work the job:
//! it parks it in a pool, where `POST /remote/fetch` hands it to a remote
//! worker with a lease, and awaits that worker's report. Log lines and
//! progress the remote worker sends go through the handler's
//! [`JobContext`], so the job's log and progress are those of a local run;
//! its result or failure is the handler's. Retries, timeouts, cancellation
//! and the store are the engine's, unchanged.
//!
//! A report that ends a job (`complete`, `fail`) may ask for the
//! worker's next jobs in the same request (`"fetch"`, as `POST
//! /remote/fetch` takes it): the slot the job held is refilled without a
//! fetch of its own, so a worker's slots do not queue behind its one
//! long-poll, and a job costs one request instead of a report plus a
//! share of a fetch.
//!
//! A lease that lapses (no heartbeat in time) fails the attempt as
//! transient, so the task's retry policy runs the job again (at least
//! once); a report after that is a 409. A job cancelled or timed out while
//! leased is announced at the remote worker's next heartbeat
//! (`"cancelled": true`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Path;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::body::JsonBody;
use super::dto::{integral, Done};
use super::error::{ErrorBody, WebError};
use super::jobs::parse_id;
use super::{Admin, Api};
use crate::context::JobContext;
use crate::duration::IntoDuration;
use crate::error::JobError;
use crate::job::JobId;
use crate::queue::Queue;
use crate::task::{validate_task_name, RetryPolicy};

/// How many jobs of one task the API parks for remote workers at most, by
/// default (see [`Api::remote_slots`]).
///
/// # Examples
///
/// ```
/// assert_eq!(kessel::web::DEFAULT_REMOTE_SLOTS, 16);
/// ```
pub const DEFAULT_REMOTE_SLOTS: usize = 16;

/// The lease a fetch grants when it names none.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The longest lease a fetch or heartbeat may ask for.
const MAX_LEASE: Duration = Duration::from_secs(3600);
/// The longest a fetch may wait for jobs.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The most jobs one fetch may take.
const MAX_FETCH: usize = 100;

/// The tag of the bridge of task `task`.
fn bridge_tag(task: &str) -> String {
    format!("remote/{task}")
}

/// What a remote worker's report does to the parked handler.
#[derive(Debug)]
enum Report {
    /// The job was handed out; its lease runs until then.
    Leased,
    Log(String, Option<Value>),
    Progress(u64, u64),
    Complete(Option<Value>),
    Fail {
        message: String,
        fatal: bool,
    },
}

/// A job parked by its bridge handler, waiting for a remote worker.
#[derive(Debug)]
struct Parked {
    id: JobId,
    attempt: u32,
    reference: Option<String>,
    created_at: DateTime<Utc>,
    run_at: DateTime<Utc>,
    payload: Value,
    tx: mpsc::UnboundedSender<Report>,
    /// Fires when the run is cancelled or times out.
    cancel: CancellationToken,
}

/// A job handed to a remote worker.
#[derive(Debug)]
struct Leased {
    task: String,
    token: String,
    expires: Instant,
    tx: mpsc::UnboundedSender<Report>,
    cancel: CancellationToken,
}

/// The local worker capacity of one bridged task.
#[derive(Debug, Default)]
struct Bridge {
    /// Slots of the local workers started for it: the most jobs it parks.
    slots: usize,
    /// Jobs asked for by the fetches in progress.
    asking: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Tasks this API bridges.
    bridged: HashMap<String, Bridge>,
    /// Parked jobs not yet handed out, by task.
    waiting: HashMap<String, VecDeque<Parked>>,
    /// Jobs handed out, by id.
    leased: HashMap<JobId, Leased>,
    /// Leased jobs cancelled or timed out since: their lease token, kept
    /// until the lease would have lapsed so a heartbeat can be told.
    cancelled: HashMap<JobId, (String, Instant)>,
}

/// The jobs parked for remote workers, shared by the API's workers.
#[derive(Debug)]
pub(crate) struct Pool {
    inner: Mutex<Inner>,
    arrived: Notify,
    pub(crate) slots: usize,
    pub(crate) retry: RetryPolicy,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            inner: Mutex::default(),
            arrived: Notify::new(),
            slots: DEFAULT_REMOTE_SLOTS,
            retry: RetryPolicy::default(),
        }
    }
}

impl Api {
    /// How many jobs of each remote task the API parks for remote workers
    /// at most (default [`DEFAULT_REMOTE_SLOTS`]). Below it, the local
    /// workers that bridge a task get as many slots as remote workers have
    /// asked for at once (fetches waiting plus leases held), and keep them.
    /// A parked job counts as running.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// use kessel::web::{Api, Auth};
    /// let api = Api::new(kessel::Queue::new(), Auth::none()).remote_slots(64);
    /// # let _ = api;
    /// # }
    /// ```
    pub fn remote_slots(mut self, slots: usize) -> Self {
        self.remote = Arc::new(Pool {
            slots: slots.max(1),
            retry: self.remote.retry.clone(),
            ..Pool::default()
        });
        self
    }

    /// The retry policy of tasks the API bridges for remote workers
    /// (default [`RetryPolicy::default`]): a transient failure reported by
    /// a remote worker, or a lapsed lease, is retried by it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// use kessel::web::{Api, Auth};
    /// let api = Api::new(kessel::Queue::new(), Auth::none())
    ///     .remote_retry(kessel::RetryPolicy::exponential(3));
    /// # let _ = api;
    /// # }
    /// ```
    pub fn remote_retry(mut self, retry: RetryPolicy) -> Self {
        self.remote = Arc::new(Pool {
            slots: self.remote.slots,
            retry,
            ..Pool::default()
        });
        self
    }
}

impl Pool {
    /// Makes sure `task` is bridged on `queue`, with local slots for
    /// the jobs remote workers ask for (`n` more, for the fetch now
    /// starting) and those they hold, up to [`Pool::slots`]. Slots are
    /// added as demand grows and never taken back (a high-water mark).
    fn bridge(self: &Arc<Self>, queue: &Queue, task: &str, n: usize) -> Result<(), WebError> {
        let mut inner = self.inner.lock();
        if !inner.bridged.contains_key(task) {
            local_task_conflict(queue, task)?;
            let pool = self.clone();
            queue
                .define(task)
                .tag(bridge_tag(task))
                .retry(self.retry.clone())
                .action(move |job: JobContext<Value>| bridge(pool.clone(), job))?;
            inner.bridged.insert(task.to_owned(), Bridge::default());
        }
        let held = inner.leased.values().filter(|l| l.task == task).count();
        let Some(bridge) = inner.bridged.get_mut(task) else {
            return Ok(());
        };
        bridge.asking += n;
        let needed = (bridge.asking + held).min(self.slots);
        if needed > bridge.slots {
            queue
                .process([bridge_tag(task)])
                .concurrency(needed - bridge.slots)
                .start()?;
            bridge.slots = needed;
        }
        Ok(())
    }

    /// Refuses `task` when the API's process works it itself (and does
    /// not bridge it already).
    fn check_bridgeable(&self, queue: &Queue, task: &str) -> Result<(), WebError> {
        if self.inner.lock().bridged.contains_key(task) {
            return Ok(());
        }
        local_task_conflict(queue, task)
    }

    /// A fetch of `n` jobs of `tasks` ended: they are no longer asked for.
    fn asked(&self, tasks: &[String], n: usize) {
        let mut inner = self.inner.lock();
        for task in tasks {
            if let Some(bridge) = inner.bridged.get_mut(task) {
                bridge.asking = bridge.asking.saturating_sub(n);
            }
        }
    }

    fn park(&self, task: &str, parked: Parked) {
        self.inner
            .lock()
            .waiting
            .entry(task.to_owned())
            .or_default()
            .push_back(parked);
        self.arrived.notify_waiters();
    }

    /// Hands out up to `n` waiting jobs of `tasks`, leased for `lease`.
    fn take(
        &self,
        tasks: &[String],
        n: usize,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Vec<LeasedJob> {
        let mut inner = self.inner.lock();
        let mut out = Vec::new();
        let expires = Instant::now() + lease;
        for task in tasks {
            while out.len() < n {
                let Some(parked) = inner.waiting.get_mut(task).and_then(VecDeque::pop_front) else {
                    break;
                };
                if parked.tx.send(Report::Leased).is_err() {
                    continue;
                }
                let token = uuid::Uuid::new_v4().simple().to_string();
                inner.leased.insert(
                    parked.id,
                    Leased {
                        task: task.clone(),
                        token: token.clone(),
                        expires,
                        tx: parked.tx,
                        cancel: parked.cancel,
                    },
                );
                out.push(LeasedJob {
                    id: parked.id.to_string(),
                    task: task.clone(),
                    attempt: parked.attempt,
                    reference: parked.reference,
                    created_at: parked.created_at,
                    run_at: parked.run_at,
                    payload: parked.payload,
                    lease_token: token,
                    lease_expires_at: lease_end(now, lease),
                });
            }
        }
        out
    }

    /// Runs `f` on the lease of job `id` held with `token`.
    fn with_lease<R>(
        &self,
        id: JobId,
        token: &str,
        f: impl FnOnce(&mut Leased) -> R,
    ) -> Result<R, WebError> {
        let mut inner = self.inner.lock();
        match inner.leased.get_mut(&id) {
            Some(lease) if lease.token == token => Ok(f(lease)),
            Some(_) => Err(WebError::Conflict(format!(
                "the lease token does not match the lease on job {id}"
            ))),
            None => Err(WebError::Conflict(format!(
                "no lease on job {id}: it lapsed, the job ended, or it was never fetched"
            ))),
        }
    }

    /// Sends a final report, ending the lease.
    fn end(&self, id: JobId, token: &str, report: Report) -> Result<(), WebError> {
        let mut inner = self.inner.lock();
        match inner.leased.get(&id) {
            Some(lease) if lease.token == token && lease.cancel.is_cancelled() => Err(
                WebError::Conflict(format!("job {id} was cancelled or timed out while leased")),
            ),
            Some(lease) if lease.token == token => {
                if let Some(lease) = inner.leased.remove(&id) {
                    let _ = lease.tx.send(report);
                }
                Ok(())
            }
            Some(_) => Err(WebError::Conflict(format!(
                "the lease token does not match the lease on job {id}"
            ))),
            None if inner.cancelled.get(&id).is_some_and(|(t, _)| t == token) => Err(
                WebError::Conflict(format!("job {id} was cancelled or timed out while leased")),
            ),
            None => Err(WebError::Conflict(format!(
                "no lease on job {id}: it lapsed, the job ended, or it was never fetched"
            ))),
        }
    }

    /// Whether the lease of `id` has lapsed (then it is removed), runs on,
    /// or ended with a final report (which is on its way to the handler).
    fn lapse(&self, id: JobId) -> Lease {
        let mut inner = self.inner.lock();
        let Some(expires) = inner.leased.get(&id).map(|l| l.expires) else {
            return Lease::Ended;
        };
        if expires <= Instant::now() {
            inner.leased.remove(&id);
            Lease::Lapsed
        } else {
            Lease::Until(expires)
        }
    }

    /// Forgets job `id`: its run ended. A lease it held is remembered as
    /// cancelled when `cancelled`.
    fn forget(&self, task: &str, id: JobId, cancelled: bool) {
        let mut inner = self.inner.lock();
        if let Some(queue) = inner.waiting.get_mut(task) {
            queue.retain(|p| p.id != id);
        }
        if let Some(lease) = inner.leased.remove(&id) {
            if cancelled {
                inner.cancelled.insert(id, (lease.token, lease.expires));
            }
        }
        let now = Instant::now();
        inner.cancelled.retain(|_, (_, until)| *until > now);
    }
}

/// The conflict of bridging `task`, which has a local handler.
fn local_task_conflict(queue: &Queue, task: &str) -> Result<(), WebError> {
    if queue.tasks().iter().any(|t| t == task) {
        return Err(WebError::Conflict(format!(
            "task `{task}` has a local handler in the API's process; remote workers cannot take its jobs"
        )));
    }
    Ok(())
}

/// Where a job's lease stands, as its bridge handler learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    /// It runs until then.
    Until(Instant),
    /// It lapsed just now, and is removed.
    Lapsed,
    /// A final report ended it: the report follows on the channel.
    Ended,
}

/// When a lease of `lease` granted at `now` ends.
fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::zero())
}

/// Removes a run from the pool however its handler ends (even dropped).
struct Forget {
    pool: Arc<Pool>,
    task: String,
    id: JobId,
    cancelled: bool,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.pool.forget(&self.task, self.id, self.cancelled);
    }
}

/// The bridge handler: parks the job and awaits the remote worker.
async fn bridge(pool: Arc<Pool>, job: JobContext<Value>) -> Result<Option<Value>, JobError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = job.id();
    let mut forget = Forget {
        pool: pool.clone(),
        task: job.task().to_owned(),
        id,
        cancelled: false,
    };
    pool.park(
        job.task(),
        Parked {
            id,
            attempt: job.attempt(),
            reference: job.reference().map(str::to_owned),
            created_at: job.created_at(),
            run_at: job.run_at(),
            payload: job.payload.clone(),
            tx,
            cancel: job.cancellation_token(),
        },
    );
    let mut expires: Option<Instant> = None;
    loop {
        let lapse = async {
            match expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = job.cancelled() => {
                forget.cancelled = true;
                return Err(JobError::transient("cancelled or timed out while waiting for a remote worker"));
            }
            _ = lapse => match pool.lapse(id) {
                Lease::Until(later) => expires = Some(later),
                Lease::Lapsed => return Err(JobError::transient("the remote worker's lease lapsed")),
                Lease::Ended => expires = None,
            },
            report = rx.recv() => match report {
                Some(Report::Leased) => match pool.lapse(id) {
                    Lease::Until(at) => expires = Some(at),
                    Lease::Lapsed => return Err(JobError::transient("the remote worker's lease lapsed")),
                    Lease::Ended => expires = None,
                },
                Some(Report::Log(message, data)) => job.log(message, data),
                Some(Report::Progress(current, total)) => job.progress(current, total),
                Some(Report::Complete(value)) => return Ok(value),
                Some(Report::Fail { message, fatal: true }) => return Err(JobError::fatal(message)),
                Some(Report::Fail { message, .. }) => return Err(JobError::transient(message)),
                None => return Err(JobError::transient("the remote worker pool was dropped")),
            },
        }
    }
}

/// Reads a duration field.
fn duration_field(
    field: &str,
    text: Option<&str>,
    default: Duration,
    max: Duration,
) -> Result<Duration, WebError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let d = text
        .into_duration()
        .map_err(|e| WebError::invalid_field(field, format!("`{field}`: {e}")))?;
    if d > max {
        return Err(WebError::invalid_field(
            field,
            format!("`{field}` is over the limit of {}s", max.as_secs()),
        ));
    }
    Ok(d)
}

fn positive_lease(field: &str, text: Option<&str>) -> Result<Duration, WebError> {
    let lease = duration_field(field, text, DEFAULT_LEASE, MAX_LEASE)?;
    if lease.is_zero() {
        return Err(WebError::invalid_field(
            field,
            format!("`{field}` must be longer than 0"),
        ));
    }
    Ok(lease)
}

/// A remote worker's request for jobs.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FetchRequest {
    /// The tasks whose jobs it works, in order of preference.
    #[schema(min_items = 1)]
    tasks: Vec<String>,
    /// At most this many jobs (1 to 100; default 1).
    #[serde(default, deserialize_with = "integral::optional")]
    #[schema(minimum = 1, maximum = 100)]
    n: Option<usize>,
    /// How long the lease lasts without a heartbeat (`"30s"`, the default;
    /// at most 1 h).
    #[serde(default)]
    #[schema(pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$")]
    lease: Option<String>,
    /// How long to wait for a job when none is parked (`"20s"`; default
    /// none: answer at once; at most 60 s).
    #[serde(default)]
    #[schema(pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$")]
    wait: Option<String>,
}

/// A job handed to a remote worker.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LeasedJob {
    /// The job's id.
    id: String,
    /// Its task.
    task: String,
    /// Which attempt this is, from 1.
    attempt: u32,
    /// The producer's reference, if any.
    reference: Option<String>,
    /// When the job was created.
    created_at: DateTime<Utc>,
    /// When this attempt became due.
    run_at: DateTime<Utc>,
    /// The job's payload.
    payload: Value,
    /// Sent back with every report on the job.
    lease_token: String,
    /// When the lease lapses without a heartbeat.
    lease_expires_at: DateTime<Utc>,
}

/// The jobs a fetch took (none when the wait ran out).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct FetchResponse {
    jobs: Vec<LeasedJob>,
}

/// A heartbeat: extends the lease.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatRequest {
    /// The token the fetch gave.
    lease_token: String,
    /// The new lease from now (default `"30s"`).
    #[serde(default)]
    #[schema(pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$")]
    lease: Option<String>,
}

/// What a heartbeat learns.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct HeartbeatResponse {
    /// The job was cancelled or timed out: stop working it (no report is
    /// taken any more).
    cancelled: bool,
    /// When the lease now lapses; none when cancelled.
    lease_expires_at: Option<DateTime<Utc>>,
}

/// A success.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteRequest {
    /// The token the fetch gave.
    lease_token: String,
    /// The job's result (none: no result).
    #[serde(default)]
    result: Option<Value>,
    /// Also take the worker's next jobs, as `POST /remote/fetch` with
    /// this body does, once the report is in: the answer's `jobs`.
    #[serde(default)]
    fetch: Option<FetchRequest>,
}

/// A failure.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailRequest {
    /// The token the fetch gave.
    lease_token: String,
    /// What went wrong.
    message: String,
    /// True: bury the job now. False (default): a transient failure, retried
    /// by the task's policy.
    #[serde(default)]
    fatal: bool,
    /// Also take the worker's next jobs, as `POST /remote/fetch` with
    /// this body does, once the report is in: the answer's `jobs`.
    #[serde(default)]
    fetch: Option<FetchRequest>,
}

/// What a final report answers: the jobs it fetched, when it asked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Reported {
    /// Always true.
    ok: bool,
    /// The jobs taken for the report's `fetch`, each with a lease (none
    /// when its wait ran out); absent when it asked for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    jobs: Option<Vec<LeasedJob>>,
}

/// A line for the job's log.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogRequest {
    /// The token the fetch gave.
    lease_token: String,
    /// The line.
    message: String,
    /// Data to keep with it.
    #[serde(default)]
    data: Option<Value>,
}

/// Progress: `current` of `total` steps.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProgressRequest {
    /// The token the fetch gave.
    lease_token: String,
    /// Steps done.
    #[serde(deserialize_with = "integral::required")]
    current: u64,
    /// Steps in all.
    #[serde(deserialize_with = "integral::required")]
    total: u64,
}

/// Withdraws a fetch's demand however it ends.
struct Asking {
    pool: Arc<Pool>,
    tasks: Vec<String>,
    n: usize,
}

impl Drop for Asking {
    fn drop(&mut self) {
        self.pool.asked(&self.tasks, self.n);
    }
}

/// Takes up to `n` jobs of the named tasks, waiting up to `wait` for one.
#[utoipa::path(
    post,
    path = "/remote/fetch",
    tag = "remote",
    request_body = FetchRequest,
    responses(
        (status = 200, description = "The jobs taken, each with a lease (none when the wait ran out)", body = FetchResponse),
        (status = 400, description = "Bad body or field", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "A task has a local handler in the API's process", body = ErrorBody),
    )
)]
pub(crate) async fn fetch(
    admin: Admin,
    body: JsonBody<FetchRequest>,
) -> Result<HttpResponse, WebError> {
    let state = admin.0;
    let fetch = Fetch::check(body.0, "")?;
    let asking = fetch.ask(&state.queue, &state.remote)?;
    let jobs = fetch.take(&state.queue, &state.remote, asking).await;
    Ok(HttpResponse::Ok().json(FetchResponse { jobs }))
}

/// A fetch, checked.
struct Fetch {
    tasks: Vec<String>,
    n: usize,
    lease: Duration,
    wait: Duration,
}

impl Fetch {
    /// Checks `req`; a bad field is named with `prefix` (`"fetch."` in a
    /// report).
    fn check(req: FetchRequest, prefix: &str) -> Result<Fetch, WebError> {
        let field = |name: &str| format!("{prefix}{name}");
        if req.tasks.is_empty() {
            return Err(WebError::invalid_field(
                field("tasks"),
                format!("`{}` names no task", field("tasks")),
            ));
        }
        for (i, task) in req.tasks.iter().enumerate() {
            validate_task_name(task).map_err(|e| {
                WebError::invalid_field(field(&format!("tasks[{i}]")), e.to_string())
            })?;
        }
        let n = req.n.unwrap_or(1);
        if !(1..=MAX_FETCH).contains(&n) {
            return Err(WebError::invalid_field(
                field("n"),
                format!("`{}` must be 1 to {MAX_FETCH}", field("n")),
            ));
        }
        let lease = positive_lease(&field("lease"), req.lease.as_deref())?;
        let wait = duration_field(
            &field("wait"),
            req.wait.as_deref(),
            Duration::ZERO,
            MAX_WAIT,
        )?;
        Ok(Fetch {
            tasks: req.tasks,
            n,
            lease,
            wait,
        })
    }

    /// Bridges its tasks and counts its jobs as asked for (until the
    /// guard drops).
    fn ask(&self, queue: &Queue, pool: &Arc<Pool>) -> Result<Asking, WebError> {
        let mut asking = Asking {
            pool: pool.clone(),
            tasks: Vec::with_capacity(self.tasks.len()),
            n: self.n,
        };
        for task in &self.tasks {
            pool.bridge(queue, task, self.n)?;
            asking.tasks.push(task.clone());
        }
        Ok(asking)
    }

    /// Takes up to `n` parked jobs, waiting up to `wait` for one.
    async fn take(&self, queue: &Queue, pool: &Pool, asking: Asking) -> Vec<LeasedJob> {
        let deadline = Instant::now() + self.wait;
        loop {
            let arrived = pool.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let jobs = pool.take(&self.tasks, self.n, self.lease, queue.now());
            if !jobs.is_empty() || Instant::now() >= deadline {
                drop(asking);
                return jobs;
            }
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// Ends the lease of `id` with `report`, then takes the jobs `fetch`
/// asks for, if any.
async fn end_and_fetch(
    admin: Admin,
    id: JobId,
    token: &str,
    report: Report,
    fetch: Option<FetchRequest>,
) -> Result<HttpResponse, WebError> {
    let state = admin.0;
    let fetch = fetch.map(|f| Fetch::check(f, "fetch.")).transpose()?;
    // Everything that could refuse the fetch is checked before the report
    // goes in: a 4xx means the report was not taken.
    if let Some(f) = &fetch {
        for task in &f.tasks {
            state.remote.check_bridgeable(&state.queue, task)?;
        }
    }
    state.remote.end(id, token, report)?;
    // Asked for once the lease has ended, so the slot is counted once
    // (asked for, no longer held) and the bridge does not grow for it.
    let jobs = match fetch {
        Some(f) => {
            let asking = f.ask(&state.queue, &state.remote)?;
            Some(f.take(&state.queue, &state.remote, asking).await)
        }
        None => None,
    };
    Ok(HttpResponse::Ok().json(Reported { ok: true, jobs }))
}

/// Extends the lease of a fetched job; says whether it was cancelled.
#[utoipa::path(
    post,
    path = "/remote/jobs/{id}/heartbeat",
    tag = "remote",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "The lease is extended, or the job was cancelled", body = HeartbeatResponse),
        (status = 400, description = "Bad body, field or id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "No such lease: it lapsed, or the token is wrong", body = ErrorBody),
    )
)]
pub(crate) async fn heartbeat(
    admin: Admin,
    id: Path<String>,
    body: JsonBody<HeartbeatRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let req = body.0;
    let lease = positive_lease("lease", req.lease.as_deref())?;
    let pool = &admin.0.remote;
    {
        let mut inner = pool.inner.lock();
        let leased_cancelled = inner
            .leased
            .get(&id)
            .is_some_and(|l| l.token == req.lease_token && l.cancel.is_cancelled());
        let ended_cancelled = !inner.leased.contains_key(&id)
            && inner
                .cancelled
                .get(&id)
                .is_some_and(|(t, _)| *t == req.lease_token);
        if leased_cancelled || ended_cancelled {
            if ended_cancelled {
                inner.cancelled.remove(&id);
            }
            return Ok(HttpResponse::Ok().json(HeartbeatResponse {
                cancelled: true,
                lease_expires_at: None,
            }));
        }
    }
    pool.with_lease(id, &req.lease_token, |l| l.expires = Instant::now() + lease)?;
    Ok(HttpResponse::Ok().json(HeartbeatResponse {
        cancelled: false,
        lease_expires_at: Some(lease_end(admin.0.queue.now(), lease)),
    }))
}

/// Reports success: the job completes with the result.
#[utoipa::path(
    post,
    path = "/remote/jobs/{id}/complete",
    tag = "remote",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Reported (with the jobs its `fetch` took, if it asked)", body = Reported),
        (status = 400, description = "Bad body, field or id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "No such lease: it lapsed, the job was cancelled, or the token is wrong; or a task of its `fetch` has a local handler", body = ErrorBody),
    )
)]
pub(crate) async fn complete(
    admin: Admin,
    id: Path<String>,
    body: JsonBody<CompleteRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let req = body.0;
    let result = req.result.filter(|v| !v.is_null());
    end_and_fetch(
        admin,
        id,
        &req.lease_token,
        Report::Complete(result),
        req.fetch,
    )
    .await
}

/// Reports failure: transient (retried by the task's policy) or fatal
/// (buried).
#[utoipa::path(
    post,
    path = "/remote/jobs/{id}/fail",
    tag = "remote",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    request_body = FailRequest,
    responses(
        (status = 200, description = "Reported (with the jobs its `fetch` took, if it asked)", body = Reported),
        (status = 400, description = "Bad body, field or id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "No such lease: it lapsed, the job was cancelled, or the token is wrong; or a task of its `fetch` has a local handler", body = ErrorBody),
    )
)]
pub(crate) async fn fail(
    admin: Admin,
    id: Path<String>,
    body: JsonBody<FailRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let req = body.0;
    end_and_fetch(
        admin,
        id,
        &req.lease_token,
        Report::Fail {
            message: req.message,
            fatal: req.fatal,
        },
        req.fetch,
    )
    .await
}

/// Adds a line to the job's log.
#[utoipa::path(
    post,
    path = "/remote/jobs/{id}/log",
    tag = "remote",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    request_body = LogRequest,
    responses(
        (status = 200, description = "Logged", body = Done),
        (status = 400, description = "Bad body, field or id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "No such lease: it lapsed, or the token is wrong", body = ErrorBody),
    )
)]
pub(crate) async fn log(
    admin: Admin,
    id: Path<String>,
    body: JsonBody<LogRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let req = body.0;
    let data = req.data.filter(|v| !v.is_null());
    admin.0.remote.with_lease(id, &req.lease_token, |l| {
        let _ = l.tx.send(Report::Log(req.message, data));
    })?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}

/// Reports the job's progress.
#[utoipa::path(
    post,
    path = "/remote/jobs/{id}/progress",
    tag = "remote",
    params(("id" = uuid::Uuid, Path, description = "The job's id")),
    request_body = ProgressRequest,
    responses(
        (status = 200, description = "Recorded", body = Done),
        (status = 400, description = "Bad body, field or id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "No such lease: it lapsed, or the token is wrong", body = ErrorBody),
    )
)]
pub(crate) async fn progress(
    admin: Admin,
    id: Path<String>,
    body: JsonBody<ProgressRequest>,
) -> Result<HttpResponse, WebError> {
    let id = parse_id(&id)?;
    let req = body.0;
    admin.0.remote.with_lease(id, &req.lease_token, |l| {
        let _ = l.tx.send(Report::Progress(req.current, req.total));
    })?;
    Ok(HttpResponse::Ok().json(Done { ok: true }))
}
