//! The SQLite store (feature `sqlite`): embedded, durable, one process.
//!
//! The guarantees are documented on [`SqliteStore`], the public face.
//!
//! # Layout
//!
//! The SQL lives in `.sql` files next to this module; the schema's
//! migrations are embedded and recorded in a `kessel_schema` table. Times
//! are integer microseconds since the Unix epoch, ids are UUID text, JSON
//! is text. One connection, on a thread of its own, does all the work:
//! see `connection.rs` for the group commit.
//!
//! Why sqlx rather than rusqlite: kessel's PostgreSQL store is built on
//! sqlx too, so both durable stores share one driver stack, one
//! error model and one async API; and since only one `libsqlite3-sys` can
//! link into a build, staying on sqlx 0.9's bundled SQLite lets kessel sit
//! in the same service as other crates that use it.

mod connection;
mod errors;
mod open;
mod rows;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use self::connection::{Command, Counters, DeleteParams, QueryParams, UniqueInsert, WriteOp};
use self::errors::closed;
use self::rows::{insert_rows, micros, update_rows};
use super::{
    Capabilities, Inserted, JobDelete, JobQuery, JobUpdate, Order, ScheduleAdvance, SchedulePause,
    ScheduleRecord, StatusCount, Store, StoreError, UniqueHold, Upserted,
};
use crate::job::{Job, JobId, JobStatus};

pub use self::open::SCHEMA_VERSION;

/// How far a commit must reach before it is acknowledged.
///
/// # Examples
///
/// ```
/// use kessel::store::{Durability, SqliteOptions};
/// let options = SqliteOptions::new("jobs.db").durability(Durability::ProcessCrash);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Synced to disk (`synchronous = FULL`): survives a killed process,
    /// an OS crash and power loss. The default.
    #[default]
    Full,
    /// Written to the operating system (`synchronous = NORMAL`): survives
    /// a killed process; an OS crash or power loss may lose the last
    /// commits (the file stays consistent). Faster on slow disks.
    ProcessCrash,
}

/// How to open a [`SqliteStore`].
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::store::StoreError> {
/// use std::time::Duration;
/// use kessel::store::{Durability, SqliteOptions, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteOptions::new(dir.path().join("jobs.db"))
///     .durability(Durability::Full)
///     .lock_timeout(Duration::from_secs(2))
///     .max_size(64 << 20)
///     .open()
///     .await?;
/// assert!(store.jobs_pending().await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "call .open().await to open the store"]
pub struct SqliteOptions {
    path: PathBuf,
    durability: Durability,
    lock_timeout: Duration,
    max_size: Option<u64>,
}

impl SqliteOptions {
    /// Options for the file at `path` (created if missing, with its
    /// parent directory expected to exist).
    pub fn new(path: impl AsRef<Path>) -> Self {
        SqliteOptions {
            path: path.as_ref().to_owned(),
            durability: Durability::default(),
            lock_timeout: Duration::ZERO,
            max_size: None,
        }
    }

    /// How far a commit must reach before it is acknowledged (default
    /// [`Durability::Full`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long opening waits for another holder of the file to let go
    /// before failing with [`StoreError::Locked`] (default: not at all).
    /// Useful when a restarting process may still be closing.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Caps the database at about `bytes` (SQLite's `max_page_count`).
    /// Past it, writes fail with [`StoreError::Full`], as on a full disk,
    /// until room is made: final jobs deleted ([`Store::jobs_delete`], or
    /// [`Queue::clean`](crate::Queue::clean) when the queue's own writes
    /// are not failing too), or the store reopened with a larger cap.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Opens the store: creates the file if missing, takes its lock,
    /// checks that it is a kessel store this version can read, switches it
    /// to WAL mode and applies the schema migrations it lacks.
    ///
    /// # Errors
    ///
    /// - [`StoreError::Locked`]: another store (process) has the file;
    /// - [`StoreError::NotKessel`]: the file is not a SQLite database, or
    ///   is another program's; it was not written to;
    /// - [`StoreError::NewerSchema`]: a newer kessel wrote it; it was not
    ///   written to;
    /// - [`StoreError::Unavailable`]: the file cannot be opened or
    ///   created (a missing directory, permissions).
    pub async fn open(self) -> Result<SqliteStore, StoreError> {
        let path = self.path.clone();
        let counters = Arc::new(Counters::default());
        let commands = connection::start(self, counters.clone()).await?;
        Ok(SqliteStore {
            path,
            commands,
            counters,
        })
    }
}

/// The SQLite store (feature `sqlite`): jobs in one local file that
/// survives restarts and `kill -9`, for one process. `docs/stores.md`
/// explains it at length.
///
/// # Guarantees
///
/// - **A job is acknowledged only once it is durable.** `create` returns
///   (and [`Store::jobs_insert`] returns `Ok`) only after the transaction
///   holding the job has committed. With [`Durability::Full`] (the
///   default) that commit has been synced to disk (WAL mode,
///   `synchronous = FULL`): the job survives the process being killed, the
///   operating system crashing and power loss. With
///   [`Durability::ProcessCrash`] (`synchronous = NORMAL`) it survives the
///   process being killed; an OS crash or power loss may lose the last
///   commits, never corrupt the file.
/// - **Group commit.** Writes from every producer and from the scheduler
///   that arrive while a commit is syncing share the next transaction, so
///   a busy queue pays one disk sync per group, not per job. A write that
///   fails on its own (a duplicate id) fails alone; the rest of its group
///   commits.
/// - **Failures are not acknowledged.** When a commit fails (I/O error,
///   disk full: [`StoreError::Full`]), every writer of that group gets the
///   error and nothing of the group is stored. The queue keeps running: it
///   retries its own state changes with backoff, and new jobs are accepted
///   again once the disk has room.
/// - **At-least-once across crashes.** The scheduler's state changes are
///   recorded in groups shortly after they happen. After a crash, the next
///   [`Queue`](crate::Queue) on the file gets every job not recorded as
///   final: a job recorded as running (or whose final state was not yet
///   committed) runs again, with the interrupted attempt counted when it
///   was recorded. Nothing recorded as final ever runs again.
/// - **One process per file.** The store holds SQLite's exclusive lock for
///   as long as it is open, so a second store on the same file, in this
///   process or another, gets [`StoreError::Locked`] at open (after
///   waiting [`SqliteOptions::lock_timeout`], zero by default). Other
///   programs (the `sqlite3` shell) cannot read the file meanwhile either.
/// - **Files that are not kessel's are left alone.** A file that is not a
///   SQLite database, or is one of another program, gives
///   [`StoreError::NotKessel`]; a store written by a newer kessel gives
///   [`StoreError::NewerSchema`]. Neither is written to.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use std::sync::Arc;
/// use kessel::store::SqliteStore;
/// let dir = tempfile::tempdir().unwrap();
/// let store = Arc::new(SqliteStore::open(dir.path().join("jobs.db")).await?);
/// let queue = kessel::Queue::builder().store(store).build().await?;
/// let job = queue.create("report", 7).delay("1h").await?;
/// // stored and synced before `create` returned
/// assert_eq!(queue.job(job.id()).await?.status, kessel::JobStatus::Scheduled);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    commands: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
}

/// What a [`SqliteStore`] has written since it was opened: how well group
/// commit groups (`writes / commits` is the number of write calls per disk
/// sync), and how many writes failed.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use std::sync::Arc;
/// use kessel::store::SqliteStore;
/// let dir = tempfile::tempdir().unwrap();
/// let store = Arc::new(SqliteStore::open(dir.path().join("jobs.db")).await?);
/// let queue = kessel::Queue::builder().store(store.clone()).build().await?;
/// queue.create("report", 1).await?;
/// let stats = store.stats();
/// assert!(stats.commits >= 1 && stats.writes >= stats.commits);
/// assert_eq!(stats.failed, 0);
/// assert!(stats.longest_commit > std::time::Duration::ZERO);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteStats {
    /// Transactions committed.
    pub commits: u64,
    /// Write calls (inserts, updates, deletes) acknowledged as durable.
    pub writes: u64,
    /// Write calls answered with an error.
    pub failed: u64,
    /// The longest a group of writes held the store: its transaction, its
    /// commit, and the checkpoint a commit may run when the WAL is full.
    /// Every command waits behind it.
    pub longest_commit: std::time::Duration,
    /// The longest step of giving free pages back to the file system
    /// (taken only while no command waits, but a command that comes
    /// during a step waits for it).
    pub longest_reclaim_step: std::time::Duration,
}

impl SqliteStore {
    /// Opens the store at `path` with default [`SqliteOptions`].
    ///
    /// # Errors
    ///
    /// See [`SqliteOptions::open`].
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteOptions::new(path).open().await
    }

    /// The SQL that opening brings a file at schema version `from_version`
    /// to [`SCHEMA_VERSION`] with (0: a new file), for review or to apply
    /// by hand: the pragmas, then each migration in its own transaction
    /// with its row in `kessel_schema`. Empty of migrations when
    /// `from_version` is current.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::store::SqliteStore;
    /// let all = SqliteStore::migration_sql(0);
    /// assert!(all.contains("CREATE TABLE kessel_jobs"));
    /// let none = SqliteStore::migration_sql(kessel::store::SQLITE_SCHEMA_VERSION);
    /// assert!(!none.contains("BEGIN"));
    /// ```
    pub fn migration_sql(from_version: i64) -> String {
        open::script(from_version)
    }

    /// Options to open the store at `path` with.
    pub fn options(path: impl AsRef<Path>) -> SqliteOptions {
        SqliteOptions::new(path)
    }

    /// The file the store is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the store has written since it was opened.
    pub fn stats(&self) -> SqliteStats {
        use std::sync::atomic::Ordering::Relaxed;
        SqliteStats {
            commits: self.counters.commits.load(Relaxed),
            writes: self.counters.writes.load(Relaxed),
            failed: self.counters.failed.load(Relaxed),
            longest_commit: std::time::Duration::from_nanos(
                self.counters.longest_commit_ns.load(Relaxed),
            ),
            longest_reclaim_step: std::time::Duration::from_nanos(
                self.counters.longest_reclaim_ns.load(Relaxed),
            ),
        }
    }

    async fn request<T>(
        &self,
        command: impl FnOnce(connection::Reply<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| closed(&self.path))?;
        answer.await.map_err(|_| closed(&self.path))?
    }
}

fn json_list<T: AsRef<str>>(items: &[T]) -> Result<Option<String>, StoreError> {
    if items.is_empty() {
        return Ok(None);
    }
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&items)
        .map(Some)
        .map_err(StoreError::other)
}

fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        // `jobs_write` is one write of the group's transaction, in a
        // savepoint of its own when the group is retried write by write.
        Capabilities::DURABLE.with_atomic_writes()
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.jobs_insert", skip_all, fields(jobs = jobs.len()))]
    async fn jobs_insert(&self, jobs: &[Job]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let rows = insert_rows(jobs)?;
        self.request(|reply| Command::Write(WriteOp::Insert(rows), reply))
            .await
            .map(drop)
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.jobs_update", skip_all, fields(updates = updates.len()))]
    async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let rows = update_rows(updates)?;
        self.request(|reply| Command::Write(WriteOp::Update(rows), reply))
            .await
            .map(drop)
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.jobs_write", skip_all, fields(updates = updates.len(), inserts = inserts.len()))]
    async fn jobs_write(&self, updates: &[JobUpdate], inserts: &[Job]) -> Result<(), StoreError> {
        if inserts.is_empty() {
            return self.jobs_update(updates).await;
        }
        if updates.is_empty() {
            return self.jobs_insert(inserts).await;
        }
        let (updates, inserts) = (update_rows(updates)?, insert_rows(inserts)?);
        self.request(|reply| Command::Write(WriteOp::UpdateInsert(updates, inserts), reply))
            .await
            .map(drop)
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.jobs_pending", skip_all)]
    async fn jobs_pending(&self) -> Result<Vec<Job>, StoreError> {
        self.request(Command::Pending).await
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.job_get", skip(self))]
    async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.request(|reply| Command::Get(id, reply)).await
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.jobs_query", skip_all)]
    async fn jobs_query(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
        let params = QueryParams {
            statuses: json_list(&statuses)?,
            tasks: json_list(&query.tasks)?,
            reference: query.reference.clone(),
            created_after: query.created_after.map(micros),
            created_before: query.created_before.map(micros),
            newest_first: query.order == Order::NewestFirst,
            limit: clamp(query.limit),
            offset: clamp(query.offset),
        };
        self.request(|reply| Command::Query(params, reply)).await
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.jobs_count", skip_all)]
    async fn jobs_count(&self) -> Result<Vec<StatusCount>, StoreError> {
        self.request(Command::Count).await
    }

    /// Clears the key from a row whose hold has ended, checks for a live
    /// holder and stores the job, in one transaction of the one writer.
    #[tracing::instrument(level = "debug", name = "kessel.sqlite.jobs_insert_unique", skip_all)]
    async fn jobs_insert_unique(
        &self,
        job: &Job,
        hold: &UniqueHold,
    ) -> Result<Inserted, StoreError> {
        // The job is created now, by the queue's clock.
        let now = micros(job.created_at);
        let new = UniqueInsert {
            rows: insert_rows(std::slice::from_ref(job))?,
            id: job.id.to_string(),
            key: hold.key.clone(),
            scope: hold.scope.code(),
            until: hold.until.map(micros),
            now,
        };
        let stored = self
            .request(|reply| Command::Write(WriteOp::InsertUnique(new), reply))
            .await?;
        if stored == 1 {
            return Ok(Inserted::New);
        }
        // Only this process writes the file: the holder found by the
        // write still keeps the key, unless a later unique job of the same
        // key replaced it, which then holds it.
        let holder = self
            .request(|reply| Command::UniqueHolder(hold.key.clone(), None, reply))
            .await?;
        holder
            .map(Inserted::Duplicate)
            .ok_or_else(|| StoreError::Corrupt {
                id: job.id.to_string(),
                reason: format!("unique key {:?} was held, then by nobody", hold.key),
            })
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.job_unique_holder", skip(self))]
    async fn job_unique_holder(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<JobId>, StoreError> {
        self.request(|reply| Command::UniqueHolder(key.to_owned(), Some(micros(now)), reply))
            .await
    }

    /// Counts along the index on (status, task): only the jobs in
    /// `status` are read, not the whole table.
    #[tracing::instrument(level = "debug", name = "kessel.sqlite.jobs_count_status", skip(self))]
    async fn jobs_count_status(&self, status: JobStatus) -> Result<u64, StoreError> {
        self.request(|reply| Command::CountStatus(status, reply))
            .await
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.job_delete", skip(self))]
    async fn job_delete(&self, id: JobId) -> Result<bool, StoreError> {
        self.request(|reply| Command::Write(WriteOp::DeleteOne(id.to_string()), reply))
            .await
            .map(|n| n > 0)
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.jobs_delete", skip_all)]
    async fn jobs_delete(&self, params: &JobDelete) -> Result<u64, StoreError> {
        let statuses: Vec<&str> = params
            .statuses
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect();
        if statuses.is_empty() || params.limit == Some(0) {
            return Ok(0);
        }
        let completed_only = statuses == ["completed"] && params.tasks.is_empty();
        let params = DeleteParams {
            completed_only,
            statuses: json_list(&statuses)?.unwrap_or_else(|| "[]".into()),
            tasks: json_list(&params.tasks)?,
            finished_before: params.finished_before.map(micros),
            limit: params.limit.map_or(-1, clamp),
        };
        self.request(|reply| Command::Write(WriteOp::Delete(params), reply))
            .await
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.schedules_list", skip_all)]
    async fn schedules_list(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.request(Command::Schedules).await
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.schedule_upsert", skip_all)]
    async fn schedule_upsert(&self, record: &ScheduleRecord) -> Result<Upserted, StoreError> {
        let op = WriteOp::ScheduleUpsert(record.clone());
        match self.request(|reply| Command::Write(op, reply)).await? {
            connection::UPSERT_CREATED => Ok(Upserted::Created),
            connection::UPSERT_CHANGED => Ok(Upserted::Changed),
            _ => Ok(Upserted::Unchanged),
        }
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.schedule_remove", skip(self))]
    async fn schedule_remove(&self, name: &str) -> Result<bool, StoreError> {
        let op = WriteOp::ScheduleRemove(name.to_owned());
        Ok(self.request(|reply| Command::Write(op, reply)).await? > 0)
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.schedule_pause", skip_all)]
    async fn schedule_pause(&self, pause: &SchedulePause) -> Result<bool, StoreError> {
        let op = WriteOp::SchedulePause {
            name: pause.name.clone(),
            paused: pause.paused,
            next_run: pause.next_run.map(micros),
        };
        Ok(self.request(|reply| Command::Write(op, reply)).await? > 0)
    }

    /// The compare-and-set and the jobs' insert are one write: they share
    /// a transaction (and a savepoint, should the group be run again).
    #[tracing::instrument(level = "debug", name = "kessel.sqlite.schedule_advance", skip_all, fields(jobs = jobs.len()))]
    async fn schedule_advance(
        &self,
        advance: &ScheduleAdvance,
        jobs: &[Job],
    ) -> Result<bool, StoreError> {
        let rows = if jobs.is_empty() {
            None
        } else {
            Some(insert_rows(jobs)?)
        };
        let op = WriteOp::ScheduleAdvance(advance.clone(), rows);
        Ok(self.request(|reply| Command::Write(op, reply)).await? == 1)
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.suspensions_list", skip_all)]
    async fn suspensions_list(&self) -> Result<Vec<crate::Suspension>, StoreError> {
        self.request(Command::Suspensions).await
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.suspension_insert", skip_all)]
    async fn suspension_insert(&self, suspension: &crate::Suspension) -> Result<bool, StoreError> {
        let op = WriteOp::SuspensionInsert(suspension.clone());
        Ok(self.request(|reply| Command::Write(op, reply)).await? == 1)
    }

    #[tracing::instrument(level = "debug", name = "kessel.sqlite.suspension_delete", skip_all)]
    async fn suspension_delete(&self, what: &crate::Suspended) -> Result<bool, StoreError> {
        let op = WriteOp::SuspensionDelete(what.clone());
        Ok(self.request(|reply| Command::Write(op, reply)).await? > 0)
    }

    /// Finishes the writes already sent, closes the connection and
    /// releases the file's lock; later calls fail with
    /// [`StoreError::Unavailable`]. Closing twice is fine.
    async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Close(reply)).is_err() {
            return Ok(());
        }
        answer.await.unwrap_or(Ok(()))
    }
}
