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
//!
//! This file holds the API's remote options and the pool of parked jobs
//! and leases with the bridge handler; `handlers.rs` holds the endpoints
//! and their request and response bodies.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::WebError;
use super::Api;
use crate::context::JobContext;
use crate::error::JobError;
use crate::job::JobId;
use crate::queue::Queue;
use crate::task::RetryPolicy;

mod handlers;

pub(crate) use handlers::*;

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
