//! What a handler gets: the job's typed payload and its run-time context.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::event::{EventBus, JobEvent, JobEventKind};
use crate::job::{JobId, LogLine, Progress};
use crate::scheduler::clock::Clock;

/// A handler asked to extend its job's lease now (see
/// [`JobContext::touch`]).
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub(crate) struct ExtendLease(pub(crate) JobId);

/// Log lines and progress a run reported, handed back when it ends.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// The line that opened the run, held apart from `logs` so that a run
    /// whose lines nobody keeps (a completed job kept nowhere) allocates
    /// none; [`Journal::take_logs`] puts it first.
    pub(crate) started: Option<LogLine>,
    /// What the handler logged.
    pub(crate) logs: Vec<LogLine>,
    pub(crate) progress: Option<Progress>,
}

impl Journal {
    /// Takes the run's lines so far, the one that opened it first.
    pub(crate) fn take_logs(&mut self) -> Vec<LogLine> {
        let mut logs = std::mem::take(&mut self.logs);
        if let Some(started) = self.started.take() {
            if logs.is_empty() {
                // Room for the implied "created" line and the one that
                // ends the run: a final record's whole log, allocated once.
                logs.reserve_exact(3);
                logs.push(started);
            } else {
                logs.insert(0, started);
            }
        }
        logs
    }
}

/// A run's cancellation signal. Most runs finish without anyone asking
/// for a [`CancellationToken`], so the token is built only when a handler
/// (or the worker, for a run that waits) asks for one; until then a flag
/// carries the signal.
#[derive(Debug, Default)]
pub(crate) struct CancelSignal {
    fired: AtomicBool,
    token: OnceLock<CancellationToken>,
}

impl CancelSignal {
    /// Fires the signal.
    pub(crate) fn cancel(&self) {
        self.fired.store(true, Ordering::SeqCst);
        if let Some(token) = self.token.get() {
            token.cancel();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// The token that fires with the signal (built on first use).
    pub(crate) fn token(&self) -> &CancellationToken {
        let token = self.token.get_or_init(CancellationToken::new);
        // `cancel` stores the flag before it looks for a token, and a new
        // token is stored before the flag is read here: one of the two sees
        // the other, so a token built while the signal fires still fires.
        if self.fired.load(Ordering::SeqCst) {
            token.cancel();
        }
        token
    }
}

impl RunShared {
    /// Fires the run's cancellation signal.
    pub(crate) fn cancel(&self) {
        self.signal.cancel();
    }
}

/// State shared between a running job's context and its worker.
#[derive(Debug)]
pub(crate) struct RunShared {
    /// The job's task and its tag. A recycled `RunShared` keeps them when
    /// the next run is of the same task, so starting a run touches no
    /// reference count of theirs.
    pub(crate) task: Arc<str>,
    pub(crate) tag: Option<Arc<str>>,
    pub(crate) signal: CancelSignal,
    pub(crate) journal: Mutex<Journal>,
    pub(crate) bus: Arc<EventBus>,
    pub(crate) clock: Clock,
    /// Where a handler's [`JobContext::touch`] goes: set on a shared
    /// store, where jobs hold leases.
    pub(crate) touch: Option<actix::Recipient<ExtendLease>>,
    /// The node (this process's queue) running the job; `None` for a
    /// remote worker, which is no node of the queue.
    pub(crate) node: Option<uuid::Uuid>,
}

/// The facts about one run of a job, shared by [`JobContext`] and the worker.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    pub(crate) id: JobId,
    pub(crate) attempt: u32,
    pub(crate) reference: Option<String>,
    /// The job's `created_at`, as stored.
    pub(crate) created_at: crate::time::CompactTime,
    /// The job's `run_at` when this attempt was dispatched: when it became
    /// due (its delay, its retry's backoff, or its creation).
    pub(crate) run_at: crate::time::CompactTime,
    pub(crate) shared: Arc<RunShared>,
}

impl RunInfo {
    fn emit(&self, kind: JobEventKind) {
        self.shared.bus.job(JobEvent {
            id: self.id,
            task: self.shared.task.clone(),
            tag: self.shared.tag.clone(),
            attempt: self.attempt,
            at: self.shared.clock.now_utc(),
            node: None,
            kind,
        });
    }
}

/// A read-only view of a running job, for middleware.
///
/// # Examples
///
/// ```
/// use kessel::JobMeta;
/// fn describe(job: &JobMeta) -> String {
///     format!(
///         "{} #{} attempt {}, due {}, created {}",
///         job.task(), job.id(), job.attempt(), job.run_at(), job.created_at(),
///     )
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, Clone)]
pub struct JobMeta {
    pub(crate) info: RunInfo,
}

impl JobMeta {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.info.id
    }

    /// The task being run.
    pub fn task(&self) -> &str {
        &self.info.shared.task
    }

    /// The task's tag.
    pub fn tag(&self) -> Option<&str> {
        self.info.shared.tag.as_deref()
    }

    /// Which attempt this is, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.info.attempt
    }

    /// The producer's reference, if any.
    pub fn reference(&self) -> Option<&str> {
        self.info.reference.as_deref()
    }

    /// The node running the job: this process's
    /// [`Queue::node_id`](crate::Queue::node_id), as
    /// [`Queue::nodes`](crate::Queue::nodes) and
    /// [`Job::ran_by`](crate::Job::ran_by) name it; `None` in a remote
    /// worker, which is not a node of the queue.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let me = queue.node_id();
    /// queue.middleware(kessel::middleware::from_fn(move |job: kessel::JobMeta, next| async move {
    ///     assert_eq!(job.node(), Some(me));
    ///     next.run().await
    /// }));
    /// queue.define("t").action(|_: kessel::JobContext<u8>| async { Ok::<_, kessel::JobError>(()) })?;
    /// queue.process(["default"]).start()?;
    /// let done = queue.create("t", 1).await?.result().await?;
    /// assert_eq!(done.status, kessel::JobStatus::Completed);
    /// # Ok(()) }
    /// ```
    pub fn node(&self) -> Option<uuid::Uuid> {
        self.info.shared.node
    }

    /// When the job was created (see [`JobContext::created_at`]).
    pub fn created_at(&self) -> DateTime<Utc> {
        self.info.created_at.get()
    }

    /// When this attempt became due (see [`JobContext::run_at`]).
    pub fn run_at(&self) -> DateTime<Utc> {
        self.info.run_at.get()
    }

    /// Whether the run was cancelled or timed out.
    pub fn is_cancelled(&self) -> bool {
        self.info.shared.signal.is_cancelled()
    }

    /// Writes a line to the job's log (see [`JobContext::log`]).
    pub fn log(&self, message: impl Into<String>, data: impl Serialize) {
        log(&self.info, message.into(), data);
    }
}

fn log(info: &RunInfo, message: String, data: impl Serialize) {
    let data = match serde_json::to_value(data) {
        Ok(serde_json::Value::Null) => None,
        Ok(v) => Some(v),
        Err(e) => Some(serde_json::Value::String(format!(
            "unserializable log data: {e}"
        ))),
    };
    let line = LogLine {
        at: info.shared.clock.now_utc(),
        attempt: info.attempt,
        message: message.into(),
        data,
    };
    if info.shared.bus.is_active() {
        info.emit(JobEventKind::Log(line.clone()));
    }
    info.shared.journal.lock().logs.push(line);
}

/// What a handler receives: the job's payload, decoded into the handler's
/// type, and the context of this run.
///
/// # Examples
///
/// ```
/// use kessel::{JobContext, JobError};
///
/// #[derive(serde::Deserialize)]
/// struct Import { rows: Vec<String> }
///
/// async fn import(job: JobContext<Import>) -> Result<usize, JobError> {
///     let total = job.payload.rows.len() as u64;
///     for (n, row) in job.payload.rows.iter().enumerate() {
///         if job.is_cancelled() {
///             return Err(JobError::transient("cancelled mid-import"));
///         }
///         job.progress(n as u64 + 1, total);
///         let _ = row;
///     }
///     job.log("import done", serde_json::json!({ "rows": total }));
///     Ok(total as usize)
/// }
/// # let _ = import;
/// ```
#[derive(Debug)]
pub struct JobContext<T> {
    /// The job's payload.
    pub payload: T,
    pub(crate) info: RunInfo,
}

impl<T> JobContext<T> {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.info.id
    }

    /// The task being run.
    pub fn task(&self) -> &str {
        &self.info.shared.task
    }

    /// Which attempt this is, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.info.attempt
    }

    /// The producer's reference for the job, if it gave one
    /// ([`NewJob::reference`](crate::NewJob::reference)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// queue.define("invoice").action(|job: JobContext<()>| async move {
    ///     Ok::<_, JobError>(job.reference().map(str::to_owned))
    /// })?;
    /// queue.process(["default"]).start()?;
    /// let result = queue.create("invoice", ()).reference("order-42").await?.result().await?;
    /// assert_eq!(result.value, Some(serde_json::json!("order-42")));
    /// # Ok(()) }
    /// ```
    pub fn reference(&self) -> Option<&str> {
        self.info.reference.as_deref()
    }

    /// When the job was created: the stored
    /// [`Job::created_at`](crate::Job::created_at), the queue's clock at
    /// [`Queue::create`](crate::Queue::create), the same on every attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// queue.define("age").action(|job: JobContext<()>| async move {
    ///     Ok::<_, JobError>(job.created_at())
    /// })?;
    /// queue.process(["default"]).start()?;
    /// let handle = queue.create("age", ()).await?;
    /// let created_at = queue.job(handle.id()).await?.created_at;
    /// let result = handle.result().await?;
    /// assert_eq!(result.value, Some(serde_json::to_value(created_at).unwrap()));
    /// # Ok(()) }
    /// ```
    pub fn created_at(&self) -> DateTime<Utc> {
        self.info.created_at.get()
    }

    /// When this attempt became due: the job's
    /// [`run_at`](crate::Job::run_at) when it was handed to the worker.
    /// On a first attempt that is the creation time plus its delay (or the
    /// time given to [`NewJob::run_at`](crate::NewJob::run_at)); on a retry,
    /// the time its backoff ended. The attempt starts at or after it; the
    /// difference to the queue's clock is how late it started.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// # tokio::time::pause();
    /// use kessel::{JobContext, JobError};
    /// let queue = kessel::Queue::new();
    /// queue.define("remind").action(|job: JobContext<()>| async move {
    ///     Ok::<_, JobError>((job.run_at() - job.created_at()).num_minutes())
    /// })?;
    /// queue.process(["default"]).start()?;
    /// let result = queue.create("remind", ()).delay("10m").await?.result().await?;
    /// assert_eq!(result.value, Some(serde_json::json!(10)));
    /// # Ok(()) }
    /// ```
    pub fn run_at(&self) -> DateTime<Utc> {
        self.info.run_at.get()
    }

    /// Writes a timestamped line, with optional JSON data (pass `()` for
    /// none), to the job's log. It is sent at once as a
    /// [`JobEventKind::Log`] event and stored with the job when the attempt
    /// ends.
    pub fn log(&self, message: impl Into<String>, data: impl Serialize) {
        log(&self.info, message.into(), data);
    }

    /// Reports progress: `current` of `total` steps. Sent at once as a
    /// [`JobEventKind::Progress`] event; the last report is stored with the
    /// job when the attempt ends.
    pub fn progress(&self, current: u64, total: u64) {
        let progress = Progress { current, total };
        if self.info.shared.bus.is_active() {
            self.info.emit(JobEventKind::Progress(progress));
        }
        self.info.shared.journal.lock().progress = Some(progress);
    }

    /// Extends the job's lease now. On a shared store
    /// a running job's lease is renewed by heartbeat anyway; call this
    /// before a long step to be safe. Elsewhere it does nothing.
    pub fn touch(&self) {
        if let Some(touch) = &self.info.shared.touch {
            touch.do_send(ExtendLease(self.info.id));
        }
    }

    /// Whether the job was cancelled or timed out. Once it is, kessel stops
    /// polling the handler's future at its next await point; work the handler
    /// moved elsewhere (`spawn_blocking`, a spawned task) should watch this
    /// or [`JobContext::cancelled`] and stop.
    pub fn is_cancelled(&self) -> bool {
        self.info.shared.signal.is_cancelled()
    }

    /// Resolves when the job is cancelled or times out.
    pub async fn cancelled(&self) {
        self.info.shared.signal.token().cancelled().await
    }

    /// A token that fires on cancellation, to hand to spawned work.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.info.shared.signal.token().clone()
    }

    /// The run's metadata, as middleware sees it.
    pub fn meta(&self) -> JobMeta {
        JobMeta {
            info: self.info.clone(),
        }
    }

    /// Replaces the payload, keeping the context (used to chain steps).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> JobContext<U> {
        JobContext {
            payload: f(self.payload),
            info: self.info,
        }
    }
}
