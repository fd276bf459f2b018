//! The persistence boundary: one async [`Store`] trait that every store
//! implements, and the parameter types its methods take.
//!
//! The scheduler decides *when* jobs run and in which order; the store
//! records *what happened*. Every state change the scheduler makes is sent
//! to the store as a [`JobUpdate`], in batches, so a durable store pays one
//! commit per batch rather than per job.
//!
//! A store the scheduler runs on is either single-process (memory, SQLite:
//! the scheduler loads every pending job at start with
//! [`Store::jobs_pending`]) or, later, shared between processes.

mod error;
mod memory;
mod nodes;
#[cfg(feature = "postgres")]
pub mod postgres;
mod schedules;
mod shared;
#[cfg(feature = "sqlite")]
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use error::{BoxError, StoreError};
pub use memory::MemoryStore;
pub use nodes::{LeaderElect, NodeBeat};
#[cfg(feature = "postgres")]
pub use postgres::{PgOptions, PgStore};
pub use schedules::{ScheduleAdvance, SchedulePause, ScheduleRecord, ScheduleTable, Upserted};
pub use shared::{
    CancelOutcome, ClaimReply, HeartbeatReply, JobClaim, JobHeartbeat, SharedStore, TagCap,
    TagClaimLimit, TagPlaces, TaskPlaces, JOBS_PER_PLACE,
};
#[cfg(feature = "sqlite")]
pub use sqlite::{
    Durability, SqliteOptions, SqliteStats, SqliteStore, SCHEMA_VERSION as SQLITE_SCHEMA_VERSION,
};

use crate::job::{Job, JobId, JobStatus, LogLine, Progress};
use crate::suspension::{Suspended, Suspension};
pub use crate::unique::{Inserted, UniqueHold};

/// One state change of a job, as the scheduler records it. It names the
/// job and carries every field that can change after creation; `logs` are
/// the lines written since the last update, to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobUpdate {
    /// The job.
    pub id: JobId,
    /// Its new status.
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed (kick can raise it).
    pub max_attempts: Option<u32>,
    /// When it may next start.
    pub run_at: DateTime<Utc>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// The handler's value, once completed.
    pub result: Option<serde_json::Value>,
    /// The last progress report.
    pub progress: Option<Progress>,
    /// When it became final.
    pub finished_at: Option<DateTime<Utc>>,
    /// Log lines to append.
    pub logs: Vec<LogLine>,
}

impl JobUpdate {
    /// The update that sets a stored job to `job`'s current state, appending
    /// `logs`.
    pub fn of(job: &Job, logs: Vec<LogLine>) -> Self {
        JobUpdate {
            id: job.id,
            status: job.status,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            run_at: job.run_at,
            last_error: job.last_error.clone(),
            result: job.result.clone(),
            progress: job.progress,
            finished_at: job.finished_at,
            logs,
        }
    }

    /// Applies the update to a job record.
    pub fn apply_to(&self, job: &mut Job) {
        job.status = self.status;
        job.attempts = self.attempts;
        job.max_attempts = self.max_attempts;
        job.run_at = self.run_at;
        job.last_error.clone_from(&self.last_error);
        job.result.clone_from(&self.result);
        job.progress = self.progress;
        job.finished_at = self.finished_at;
        job.logs.extend(self.logs.iter().cloned());
    }
}

/// Which order [`Store::jobs_query`] returns jobs in: by id. Ids are
/// UUIDv7, made when a job is created, so this is creation order: to the
/// millisecond between processes, and exactly among the jobs one process
/// created. (Listing by id lets a store page through the index it already
/// keeps for ids, rather than keep one more per job for creation times.)
///
/// # Examples
///
/// ```
/// use kessel::store::{JobQuery, Order};
/// let oldest_first = JobQuery::default().order(Order::OldestFirst);
/// assert_eq!(JobQuery::default().order, Order::NewestFirst);
/// # let _ = oldest_first;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Newest first (the default).
    #[default]
    NewestFirst,
    /// Oldest first.
    OldestFirst,
}

/// What [`Store::jobs_query`] selects. Empty lists select everything.
///
/// # Examples
///
/// ```
/// use kessel::{JobStatus, store::JobQuery};
/// let query = JobQuery::default().status(JobStatus::Buried).task("send email").limit(20);
/// assert_eq!(query.statuses, vec![JobStatus::Buried]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobQuery {
    /// Only jobs in one of these statuses.
    pub statuses: Vec<JobStatus>,
    /// Only jobs of one of these tasks.
    pub tasks: Vec<String>,
    /// Only jobs of tasks with one of these tags.
    /// [`Queue::fetch`](crate::Queue::fetch) resolves tags into `tasks`
    /// from the task definitions it knows and clears this field, so a
    /// store never needs to read it.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only the job(s) with this producer reference.
    pub reference: Option<String>,
    /// Only jobs created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Order of the results.
    pub order: Order,
    /// Skip this many matches (paging).
    pub offset: usize,
    /// Return at most this many.
    pub limit: usize,
}

impl Default for JobQuery {
    fn default() -> Self {
        JobQuery {
            statuses: Vec::new(),
            tasks: Vec::new(),
            tags: Vec::new(),
            reference: None,
            created_after: None,
            created_before: None,
            order: Order::NewestFirst,
            offset: 0,
            limit: 100,
        }
    }
}

impl JobQuery {
    /// Adds a status to select.
    pub fn status(mut self, status: JobStatus) -> Self {
        self.statuses.push(status);
        self
    }

    /// Adds a task to select.
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.tasks.push(task.into());
        self
    }

    /// Adds a tag to select (resolved by the queue into its tasks).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Selects by producer reference.
    pub fn reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// Sets the order.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Sets the page size.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Sets how many matches to skip.
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Selects jobs created in `[after, before)`.
    pub fn created_between(mut self, after: DateTime<Utc>, before: DateTime<Utc>) -> Self {
        self.created_after = Some(after);
        self.created_before = Some(before);
        self
    }

    /// Orders `jobs` as the query asks (by id, so by creation) and cuts
    /// its page out of them.
    pub(crate) fn page(&self, mut jobs: Vec<Job>) -> Vec<Job> {
        jobs.sort_unstable_by_key(|j| j.id);
        if self.order == Order::NewestFirst {
            jobs.reverse();
        }
        jobs.into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect()
    }

    /// Whether `job` matches the filters (not the paging).
    pub fn matches(&self, job: &Job) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&job.status))
            && (self.tasks.is_empty() || self.tasks.iter().any(|t| **t == *job.task))
            && self
                .reference
                .as_ref()
                .is_none_or(|r| job.reference.as_ref() == Some(r))
            && self.created_after.is_none_or(|t| job.created_at >= t)
            && self.created_before.is_none_or(|t| job.created_at < t)
    }
}

/// How many jobs of one task are in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCount {
    /// The task.
    pub task: String,
    /// The status.
    pub status: JobStatus,
    /// How many jobs.
    pub count: u64,
}

/// What [`Store::jobs_delete`] removes: final jobs of the given statuses
/// (only final statuses are ever removed), of the given tasks (all when
/// empty), finished before `finished_before`, and at most `limit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDelete {
    /// Final statuses to remove.
    pub statuses: Vec<JobStatus>,
    /// Tasks to remove from; all when empty.
    pub tasks: Vec<String>,
    /// Only jobs that finished before this time.
    pub finished_before: Option<DateTime<Utc>>,
    /// Remove at most this many (oldest first); all when `None`.
    pub limit: Option<usize>,
}

/// What a store is, as far as a queue on it cares: the queue reads it once,
/// when it is built, and picks how it keeps its jobs from it. A store
/// shared between processes says so through [`Store::shared`].
///
/// # Examples
///
/// ```
/// use kessel::store::{Capabilities, MemoryStore, Store};
/// assert!(!MemoryStore::new().capabilities().outlives_process);
/// assert!(Capabilities::DURABLE.outlives_process);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The store keeps jobs beyond this process (a file, a database). A
    /// queue on a store that does not (the memory store) keeps each pending
    /// job once, in its scheduler, and hands the store a job when it
    /// becomes final (or is kicked back to ready); reads through the queue
    /// combine the two. A queue on a store that does sends it every
    /// state change, in batches.
    pub outlives_process: bool,
    /// [`Store::jobs_write`] stores its updates and new jobs together or
    /// not at all (one transaction), so a buried job's dead letter is
    /// never lost apart from the bury. Off in [`Capabilities::DURABLE`]
    /// and [`Capabilities::IN_PROCESS`] (the default `jobs_write` makes
    /// two calls); kessel's stores turn it on.
    pub atomic_writes: bool,
}

impl Capabilities {
    /// A store that keeps its jobs beyond the process: the default.
    pub const DURABLE: Capabilities = Capabilities {
        outlives_process: true,
        atomic_writes: false,
    };

    /// A store that lives and dies with the process, as the memory store.
    pub const IN_PROCESS: Capabilities = Capabilities {
        outlives_process: false,
        atomic_writes: false,
    };

    /// These capabilities, with [`Store::jobs_write`] atomic: for a store
    /// that overrides it with one transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::store::{Capabilities, MemoryStore, Store};
    /// assert!(Capabilities::DURABLE.with_atomic_writes().atomic_writes);
    /// assert!(MemoryStore::new().capabilities().atomic_writes);
    /// ```
    pub const fn with_atomic_writes(mut self) -> Capabilities {
        self.atomic_writes = true;
        self
    }
}

/// The persistence boundary every store implements.
///
/// Methods lead with the noun they act on and take one parameter value
/// each. Errors are [`StoreError`]s with normalised kinds.
///
/// # Contract
///
/// - [`Store::jobs_insert`] returns only once the jobs are as durable as the
///   store promises; a producer is told its job exists only after that.
/// - [`Store::jobs_update`] applies updates in order; unknown ids are
///   skipped (the job was cleaned), not an error.
/// - [`Store::jobs_pending`] returns every job not in a final state; a job
///   stored as `running` was cut off by a crash and comes back as-is (the
///   scheduler counts that attempt and runs it again).
///
/// The conformance suite in `kessel::conformance` (feature `test-utils`)
/// checks all of this; run it on your own store.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::store::StoreError> {
/// use kessel::store::{MemoryStore, Store, JobQuery};
/// let store = MemoryStore::new();
/// assert!(store.jobs_pending().await?.is_empty());
/// assert!(store.jobs_query(&JobQuery::default()).await?.is_empty());
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores new jobs.
    async fn jobs_insert(&self, jobs: &[Job]) -> Result<(), StoreError>;

    /// Stores jobs handed over whole: the jobs of a store that does not
    /// [outlive the process](Capabilities::outlives_process), as they
    /// become final. A store that keeps the values
    /// it is given can take them without copying; the default stores
    /// copies with [`jobs_insert`](Store::jobs_insert). On failure the jobs
    /// come back with the error, for a retry.
    async fn jobs_insert_owned(&self, jobs: Vec<Job>) -> Result<(), (StoreError, Vec<Job>)> {
        match self.jobs_insert(&jobs).await {
            Ok(()) => Ok(()),
            Err(err) => Err((err, jobs)),
        }
    }
    /// Stores a new unique job unless a live job holds its key
    /// ([`UniqueHold::is_live`]); says which. Checking and storing are one
    /// step: two callers with the same key, in any processes, never both
    /// get [`Inserted::New`] while the first is live. The job's
    /// `created_at` is now, by the queue's clock: a window hold has ended
    /// when its `until` is not after it.
    ///
    /// The default returns [`StoreError::Unsupported`]: the memory store's
    /// queue enforces uniqueness in its scheduler, which holds every
    /// pending job.
    ///
    /// ```
    /// use kessel::store::{Inserted, Store, StoreError, UniqueHold};
    /// /// The id of the job that now holds `hold`'s key.
    /// async fn create_once(store: &dyn Store, job: &kessel::Job, hold: &UniqueHold) -> Result<kessel::JobId, StoreError> {
    ///     Ok(match store.jobs_insert_unique(job, hold).await? {
    ///         Inserted::New => job.id,
    ///         Inserted::Duplicate(holder) => holder,
    ///     })
    /// }
    /// # let _ = create_once;
    /// ```
    async fn jobs_insert_unique(
        &self,
        job: &Job,
        hold: &UniqueHold,
    ) -> Result<Inserted, StoreError> {
        let _ = (job, hold);
        Err(StoreError::Unsupported("unique jobs"))
    }

    /// The job that holds `key` live at `now`, if any.
    ///
    /// The default returns [`StoreError::Unsupported`], as
    /// [`jobs_insert_unique`](Store::jobs_insert_unique)'s does.
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// use kessel::store::{MemoryStore, Store, StoreError};
    /// let held = MemoryStore::new().job_unique_holder("k", chrono::Utc::now()).await;
    /// assert!(matches!(held, Err(StoreError::Unsupported(_))));
    /// # }
    /// ```
    async fn job_unique_holder(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<JobId>, StoreError> {
        let _ = (key, now);
        Err(StoreError::Unsupported("unique jobs"))
    }

    /// Records state changes, in order.
    async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError>;

    /// Records state changes, in order, and stores new jobs with them:
    /// what the scheduler writes when a change makes jobs (a buried job's
    /// dead letter, a finished job's webhook delivery), so the new jobs
    /// are kept exactly when the change is.
    ///
    /// A store with [`Capabilities::atomic_writes`] stores both in one
    /// transaction: all of it or, on an error, none of it. The default
    /// calls [`jobs_update`](Store::jobs_update) then
    /// [`jobs_insert`](Store::jobs_insert): a failure in between keeps the
    /// updates without the new jobs.
    ///
    /// # Errors
    ///
    /// As `jobs_update` and `jobs_insert`, for instance a new job whose id
    /// is taken (a store that refuses the duplicate).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kessel::JobStatus;
    /// use kessel::store::{JobUpdate, MemoryStore, Store};
    /// // Two jobs as a queue makes them, to store elsewhere.
    /// let queue = kessel::Queue::new();
    /// let mut failed = queue.job(queue.create("send", 1).await?.id()).await?;
    /// let letter = queue.job(queue.create("send failures", 1).await?.id()).await?;
    /// let store = MemoryStore::new();
    /// store.jobs_insert(std::slice::from_ref(&failed)).await?;
    /// failed.status = JobStatus::Buried;
    /// let bury = JobUpdate::of(&failed, Vec::new());
    /// store.jobs_write(&[bury], std::slice::from_ref(&letter)).await?;
    /// assert_eq!(store.job_get(failed.id).await?.unwrap().status, JobStatus::Buried);
    /// assert!(store.job_get(letter.id).await?.is_some());
    /// # Ok(()) }
    /// ```
    async fn jobs_write(&self, updates: &[JobUpdate], inserts: &[Job]) -> Result<(), StoreError> {
        self.jobs_update(updates).await?;
        self.jobs_insert(inserts).await
    }
    /// Every job not in a final state.
    async fn jobs_pending(&self) -> Result<Vec<Job>, StoreError>;
    /// One job, with its logs.
    async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError>;
    /// Jobs matching a query, paged.
    async fn jobs_query(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError>;
    /// Counts of jobs by task and status (only non-zero counts).
    async fn jobs_count(&self) -> Result<Vec<StatusCount>, StoreError>;
    /// Removes final jobs and their logs; returns how many.
    async fn jobs_delete(&self, params: &JobDelete) -> Result<u64, StoreError>;

    /// Removes one final job and its log; whether it did (`false`: no job
    /// has this id, or it is not final). A pending job is never removed.
    ///
    /// The default returns [`StoreError::Unsupported`].
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::store::StoreError> {
    /// use kessel::{JobId, store::{MemoryStore, Store}};
    /// assert!(!MemoryStore::new().job_delete(JobId::new()).await?);
    /// # Ok(()) }
    /// ```
    async fn job_delete(&self, id: JobId) -> Result<bool, StoreError> {
        let _ = id;
        Err(StoreError::Unsupported("deleting one job"))
    }

    /// How many jobs are in `status`, of every task. Retention asks it for
    /// completed jobs each time it prunes, so a store that can count one
    /// status without reading every job (an index) should say so here; the
    /// default sums [`jobs_count`](Store::jobs_count).
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::store::StoreError> {
    /// use kessel::{JobStatus, store::{MemoryStore, Store}};
    /// assert_eq!(MemoryStore::new().jobs_count_status(JobStatus::Completed).await?, 0);
    /// # Ok(()) }
    /// ```
    async fn jobs_count_status(&self, status: JobStatus) -> Result<u64, StoreError> {
        Ok(self
            .jobs_count()
            .await?
            .iter()
            .filter(|c| c.status == status)
            .map(|c| c.count)
            .sum())
    }

    /// Every schedule (see [`ScheduleRecord`]), by name. The schedule
    /// methods are what recurring jobs (feature `cron`) keep their state
    /// with; a store that keeps no schedules keeps the defaults, which
    /// answer [`StoreError::Unsupported`].
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::store::StoreError> {
    /// use kessel::store::{MemoryStore, Store};
    /// assert!(MemoryStore::new().schedules_list().await?.is_empty());
    /// # Ok(()) }
    /// ```
    async fn schedules_list(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        Err(StoreError::Unsupported("schedules"))
    }

    /// Stores `record`, unless a schedule of its name has the same
    /// definition (task, payload and spec): then nothing changes, and its
    /// next run, paused flag and last job are kept. A schedule of its name
    /// with another definition takes the record's task, payload, spec and
    /// next run, and keeps its paused flag, last run and last job.
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::store::StoreError> {
    /// use kessel::store::{MemoryStore, ScheduleRecord, Store, Upserted};
    /// let store = MemoryStore::new();
    /// let record = ScheduleRecord::new("nightly", "report", "null", "{}", chrono::Utc::now());
    /// assert_eq!(store.schedule_upsert(&record).await?, Upserted::Created);
    /// assert_eq!(store.schedule_upsert(&record).await?, Upserted::Unchanged);
    /// # Ok(()) }
    /// ```
    async fn schedule_upsert(&self, record: &ScheduleRecord) -> Result<Upserted, StoreError> {
        let _ = record;
        Err(StoreError::Unsupported("schedules"))
    }

    /// Removes the schedule called `name`; whether there was one. Jobs it
    /// created stay.
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::store::StoreError> {
    /// use kessel::store::{MemoryStore, Store};
    /// assert!(!MemoryStore::new().schedule_remove("nightly").await?);
    /// # Ok(()) }
    /// ```
    async fn schedule_remove(&self, name: &str) -> Result<bool, StoreError> {
        let _ = name;
        Err(StoreError::Unsupported("schedules"))
    }

    /// Pauses or resumes a schedule (and sets its next run, when given);
    /// whether there was one of that name.
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::store::StoreError> {
    /// use kessel::store::{MemoryStore, SchedulePause, Store};
    /// let pause = SchedulePause { name: "nightly".into(), paused: true, next_run: None };
    /// assert!(!MemoryStore::new().schedule_pause(&pause).await?);
    /// # Ok(()) }
    /// ```
    async fn schedule_pause(&self, pause: &SchedulePause) -> Result<bool, StoreError> {
        let _ = pause;
        Err(StoreError::Unsupported("schedules"))
    }

    /// The one step that enqueues a tick: if the schedule's stored next
    /// run is still `advance.due` (and it is not paused, unless
    /// `even_if_paused`), moves it on to `advance.next`, records the last
    /// run and job, and stores `jobs` as [`jobs_insert`](Store::jobs_insert)
    /// would, **all in one transaction**; otherwise changes nothing and
    /// stores nothing. Returns whether it applied.
    ///
    /// However many processes advance the same tick at once, it applies
    /// for one of them: that one's job is the tick's only job. A crash
    /// leaves both the advance and the job, or neither.
    ///
    /// The queue passes no jobs on a store that does not
    /// [outlive the process](Capabilities::outlives_process) (the memory
    /// store), whose pending jobs live in the queue's scheduler.
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::store::StoreError> {
    /// use kessel::store::{MemoryStore, ScheduleAdvance, ScheduleRecord, Store};
    /// let store = MemoryStore::new();
    /// let due = chrono::Utc::now();
    /// store.schedule_upsert(&ScheduleRecord::new("nightly", "report", "null", "{}", due)).await?;
    /// let advance = ScheduleAdvance {
    ///     name: "nightly".into(),
    ///     due,
    ///     next: due + chrono::Duration::days(1),
    ///     last_run: Some(due),
    ///     last_job: None,
    ///     even_if_paused: false,
    /// };
    /// assert!(store.schedule_advance(&advance, &[]).await?);
    /// assert!(!store.schedule_advance(&advance, &[]).await?, "the tick moved on");
    /// # Ok(()) }
    /// ```
    async fn schedule_advance(
        &self,
        advance: &ScheduleAdvance,
        jobs: &[Job],
    ) -> Result<bool, StoreError> {
        let _ = (advance, jobs);
        Err(StoreError::Unsupported("schedules"))
    }

    /// Every suspension in force (see [`Suspension`]), in the order of
    /// what they hold back. The suspension methods are how
    /// [`Queue::suspend`](crate::Queue::suspend) outlives the process; a
    /// store that keeps none keeps the defaults, which answer
    /// [`StoreError::Unsupported`], and its queue keeps suspensions in
    /// memory, for its own process.
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// use kessel::store::{MemoryStore, Store, StoreError};
    /// // The memory store's queue keeps suspensions in its scheduler.
    /// assert!(matches!(MemoryStore::new().suspensions_list().await, Err(StoreError::Unsupported(_))));
    /// # }
    /// ```
    async fn suspensions_list(&self) -> Result<Vec<Suspension>, StoreError> {
        Err(StoreError::Unsupported("suspensions"))
    }

    /// Records `suspension`, unless its task or tag is suspended already
    /// (then the first suspension, its `by` and `since`, stays). Returns
    /// whether it was recorded. A store shared by many processes tells
    /// them (PostgreSQL: a notification, sent when the write commits).
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// use kessel::{store::{MemoryStore, Store}, Suspended, Suspension};
    /// let s = Suspension { what: Suspended::Task("email".into()), by: "ops".into(), since: chrono::Utc::now() };
    /// assert!(MemoryStore::new().suspension_insert(&s).await.is_err());
    /// # }
    /// ```
    async fn suspension_insert(&self, suspension: &Suspension) -> Result<bool, StoreError> {
        let _ = suspension;
        Err(StoreError::Unsupported("suspensions"))
    }

    /// Removes the suspension of `what`; returns whether there was one.
    /// A shared store tells every process, as
    /// [`suspension_insert`](Store::suspension_insert) does.
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// use kessel::{store::{MemoryStore, Store}, Suspended};
    /// assert!(MemoryStore::new().suspension_delete(&Suspended::Tag("reports".into())).await.is_err());
    /// # }
    /// ```
    async fn suspension_delete(&self, what: &Suspended) -> Result<bool, StoreError> {
        let _ = what;
        Err(StoreError::Unsupported("suspensions"))
    }

    /// The shared-store capability, when many processes share this store
    /// (see [`SharedStore`]). Single-process stores return `None`.
    fn shared(&self) -> Option<&dyn SharedStore> {
        None
    }

    /// What kind of store this is (see [`Capabilities`]); read once, when
    /// a queue is built on it. The default describes a store that keeps
    /// its jobs beyond this process.
    fn capabilities(&self) -> Capabilities {
        Capabilities::DURABLE
    }

    /// The PostgreSQL store this store is (feature `postgres`): what
    /// [`Queue::create_in`](crate::Queue::create_in) writes through, on
    /// the caller's connection. [`PgStore`] returns itself; a store that
    /// wraps one may return it; others keep the default, `None`.
    ///
    /// ```
    /// use kessel::store::{MemoryStore, Store};
    /// assert!(MemoryStore::new().postgres().is_none());
    /// ```
    #[cfg(feature = "postgres")]
    fn postgres(&self) -> Option<&PgStore> {
        None
    }

    /// Finishes the writes already handed to the store and releases what
    /// it holds (a file and its lock, connections), so the same store can
    /// be opened again, by this process or the next. Calls after it fail.
    /// Close a store after its queue's
    /// [`shutdown`](crate::Queue::shutdown). The default does nothing: a
    /// store that holds nothing needs no closing.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
