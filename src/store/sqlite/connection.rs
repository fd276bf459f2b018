//! The store's connection thread: the one connection to the file, the
//! group commit, and the reads.
//!
//! Every call on a [`SqliteStore`](super::SqliteStore) becomes a
//! [`Command`] sent to this thread. The thread takes every command that is
//! waiting, runs all the writes among them in **one** transaction, commits
//! once, and only then answers the writers. While that commit syncs to
//! disk, new commands queue up and form the next group: the more producers
//! write at once, the more jobs share one disk sync, and a lone producer
//! waits for no timer. New jobs are inserted as multi-row `VALUES` lists
//! of up to 1,024 rows; state changes are one statement per table however
//! many jobs they hold (the rows travel as one JSON array). When one write fails
//! on its own (a duplicate id), the group is run again with a savepoint per
//! write, so that write fails alone and the rest commit.
//!
//! The thread runs its own single-threaded runtime, so the store works the
//! same from any runtime (or from none) and the callers' clocks (paused in
//! tests) never touch it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::errors::{closed, ends_transaction, store_error};
use super::rows::{
    attach_logs, job_from_row, micros, schedule_from_row, suspension_from_row, NewRows, Rows,
};
use super::{open, SqliteOptions};
use crate::job::{Job, JobId, JobStatus};
use crate::store::{ScheduleAdvance, ScheduleRecord, StatusCount, StoreError};

const JOB_UPDATE: &str = include_str!("sql/job_update.sql");
const LOG_INSERT: &str = include_str!("sql/log_insert.sql");
const JOBS_DELETE: &str = include_str!("sql/jobs_delete.sql");
const LOGS_DELETE: &str = include_str!("sql/logs_delete.sql");
const COMPLETED_DELETE: &str = include_str!("sql/completed_delete.sql");
const LOGS_DELETE_IDS: &str = include_str!("sql/logs_delete_ids.sql");
const JOB_GET: &str = concat!(
    include_str!("sql/job_select.sql"),
    include_str!("sql/job_get.sql")
);
const JOBS_PENDING: &str = concat!(
    include_str!("sql/job_select.sql"),
    include_str!("sql/jobs_pending.sql")
);
const JOBS_NEWEST_FIRST: &str = concat!(
    include_str!("sql/job_select.sql"),
    include_str!("sql/jobs_query.sql"),
    include_str!("sql/order_newest_first.sql")
);
const JOBS_OLDEST_FIRST: &str = concat!(
    include_str!("sql/job_select.sql"),
    include_str!("sql/jobs_query.sql"),
    include_str!("sql/order_oldest_first.sql")
);
/// As [`JOBS_NEWEST_FIRST`] for a query that names a reference: through
/// the index by reference (a condition `?3 IS NULL OR reference = ?3`
/// cannot use it, as the plan is made before `?3` is known).
pub(super) const JOBS_BY_REFERENCE_NEWEST_FIRST: &str = concat!(
    include_str!("sql/job_select.sql"),
    include_str!("sql/jobs_by_reference.sql"),
    include_str!("sql/order_newest_first.sql")
);
/// As [`JOBS_OLDEST_FIRST`] for a query that names a reference.
pub(super) const JOBS_BY_REFERENCE_OLDEST_FIRST: &str = concat!(
    include_str!("sql/job_select.sql"),
    include_str!("sql/jobs_by_reference.sql"),
    include_str!("sql/order_oldest_first.sql")
);
const JOBS_COUNT: &str = include_str!("sql/jobs_count.sql");
const STATUS_COUNT: &str = include_str!("sql/status_count.sql");
const UNIQUE_CLEAR_ENDED: &str = include_str!("sql/unique_clear_ended.sql");
const UNIQUE_HOLDER: &str = include_str!("sql/unique_holder.sql");
const UNIQUE_SET: &str =
    "UPDATE kessel_jobs SET unique_key = ?1, unique_scope = ?2, unique_until = ?3 WHERE id = ?4";
const LOGS_OF_JOB: &str = include_str!("sql/logs_of_job.sql");
const LOGS_OF_JOBS: &str = include_str!("sql/logs_of_jobs.sql");
const LOGS_OF_PENDING: &str = include_str!("sql/logs_of_pending.sql");
const SCHEDULES_LIST: &str = include_str!("sql/schedules_list.sql");
const SCHEDULE_DEFINITION: &str = include_str!("sql/schedule_definition.sql");
const SCHEDULE_INSERT: &str = include_str!("sql/schedule_insert.sql");
const SCHEDULE_REDEFINE: &str = include_str!("sql/schedule_redefine.sql");
const SCHEDULE_REMOVE: &str = include_str!("sql/schedule_remove.sql");
const SCHEDULE_PAUSE: &str = include_str!("sql/schedule_pause.sql");
const SCHEDULE_ADVANCE: &str = include_str!("sql/schedule_advance.sql");
const SUSPENSIONS_LIST: &str = include_str!("sql/suspensions_list.sql");
const SUSPENSION_INSERT: &str = include_str!("sql/suspension_insert.sql");
const SUSPENSION_DELETE: &str = include_str!("sql/suspension_delete.sql");

/// The most commands taken into one round (one transaction for the writes
/// among them); more wait for the next round.
const MAX_ROUND: usize = 1024;

/// Where a command's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A request to the connection thread.
#[derive(Debug)]
pub(super) enum Command {
    /// A write, answered once it is committed.
    Write(WriteOp, Reply<u64>),
    /// Every job not in a final state, with logs.
    Pending(Reply<Vec<Job>>),
    /// One job, with logs.
    Get(JobId, Reply<Option<Job>>),
    /// A page of jobs, with logs.
    Query(QueryParams, Reply<Vec<Job>>),
    /// Counts by task and status.
    Count(Reply<Vec<StatusCount>>),
    /// The count of one status.
    CountStatus(JobStatus, Reply<u64>),
    /// The job keeping a unique key: live at the time given, or any.
    UniqueHolder(String, Option<i64>, Reply<Option<JobId>>),
    /// Every schedule, by name.
    Schedules(Reply<Vec<ScheduleRecord>>),
    /// Every suspension.
    Suspensions(Reply<Vec<crate::Suspension>>),
    /// Finish this round, close the connection (releasing the file), stop.
    Close(Reply<()>),
}

/// What a write does; its rows are encoded by the caller.
#[derive(Debug)]
pub(super) enum WriteOp {
    Insert(NewRows),
    /// One new unique job: stored (1) unless a live job keeps its key (0).
    InsertUnique(UniqueInsert),
    /// One final job and its log lines (1 removed, 0 not).
    DeleteOne(String),
    Update(Rows),
    /// Updates and the new jobs they made (a dead letter), one write: kept
    /// together or not at all.
    UpdateInsert(Rows, NewRows),
    Delete(DeleteParams),
    /// Answers [`UPSERT_UNCHANGED`], [`UPSERT_CREATED`] or
    /// [`UPSERT_CHANGED`].
    ScheduleUpsert(ScheduleRecord),
    /// Answers 1 when a schedule was removed.
    ScheduleRemove(String),
    /// Answers 1 when the schedule exists.
    SchedulePause {
        name: String,
        paused: bool,
        next_run: Option<i64>,
    },
    /// The compare-and-set, and the tick's jobs when it applies (in the
    /// same transaction, and the same savepoint when the group is run
    /// again with savepoints). Answers 1 when it applied.
    ScheduleAdvance(ScheduleAdvance, Option<NewRows>),
    /// Answers 1 when the suspension was recorded (0: already suspended).
    SuspensionInsert(crate::Suspension),
    /// Answers 1 when a suspension was removed.
    SuspensionDelete(crate::Suspended),
}

/// A unique job to store, and its hold.
#[derive(Debug)]
pub(super) struct UniqueInsert {
    pub(super) rows: NewRows,
    pub(super) id: String,
    pub(super) key: String,
    pub(super) scope: i64,
    pub(super) until: Option<i64>,
    /// Now, in microseconds: holds ended by then are cleared.
    pub(super) now: i64,
}

/// [`WriteOp::ScheduleUpsert`]'s answers.
pub(super) const UPSERT_UNCHANGED: u64 = 0;
pub(super) const UPSERT_CREATED: u64 = 1;
pub(super) const UPSERT_CHANGED: u64 = 2;

/// `jobs_delete.sql`'s parameters.
#[derive(Debug)]
pub(super) struct DeleteParams {
    /// JSON array of statuses.
    pub(super) statuses: String,
    /// JSON array of tasks; all when `None`.
    pub(super) tasks: Option<String>,
    pub(super) finished_before: Option<i64>,
    /// -1: no limit.
    pub(super) limit: i64,
    /// Only completed jobs, of every task: what retention removes, along
    /// its own index (`completed_delete.sql`).
    pub(super) completed_only: bool,
}

/// `jobs_query.sql`'s parameters.
#[derive(Debug)]
pub(super) struct QueryParams {
    pub(super) statuses: Option<String>,
    pub(super) tasks: Option<String>,
    pub(super) reference: Option<String>,
    pub(super) created_after: Option<i64>,
    pub(super) created_before: Option<i64>,
    pub(super) newest_first: bool,
    pub(super) limit: i64,
    pub(super) offset: i64,
}

/// Starts the connection thread and opens the file on it. Returns the
/// command channel once the file is open, locked and migrated.
pub(super) async fn start(
    options: SqliteOptions,
    counters: Arc<Counters>,
) -> Result<mpsc::UnboundedSender<Command>, StoreError> {
    let (commands, inbox) = mpsc::unbounded_channel();
    let (opened_tx, opened_rx) = oneshot::channel();
    let path = options.path.clone();
    std::thread::Builder::new()
        .name("kessel-sqlite".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = opened_tx.send(Err(StoreError::unavailable(err)));
                    return;
                }
            };
            runtime.block_on(async move {
                match open::open(&options).await {
                    Ok(conn) => {
                        if opened_tx.send(Ok(())).is_ok() {
                            serve(conn, inbox, options.path, counters).await;
                        }
                    }
                    Err(err) => {
                        let _ = opened_tx.send(Err(err));
                    }
                }
            });
        })
        .map_err(StoreError::unavailable)?;
    opened_rx.await.map_err(|_| closed(&path))??;
    Ok(commands)
}

async fn serve(
    mut conn: SqliteConnection,
    mut inbox: mpsc::UnboundedReceiver<Command>,
    path: PathBuf,
    counters: Arc<Counters>,
) {
    let mut round = Vec::new();
    let mut reclaim = Reclaim::new(open::reclaims(&mut conn).await);
    loop {
        // Free pages are given back while nothing waits, a step at a time.
        let first = if reclaim.due {
            match inbox.try_recv() {
                Ok(command) => command,
                Err(mpsc::error::TryRecvError::Empty) => match reclaim.resting() {
                    // A step is due, but the last one is not yet paid for:
                    // serve what comes meanwhile.
                    Some(rest) => match tokio::time::timeout(rest, inbox.recv()).await {
                        Ok(Some(command)) => command,
                        Ok(None) => break,
                        Err(_) => continue,
                    },
                    None => {
                        let started = std::time::Instant::now();
                        reclaim.step(&mut conn).await;
                        reclaim.rest_after(started);
                        Counters::took(&counters.longest_reclaim_ns, started);
                        continue;
                    }
                },
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match inbox.recv().await {
                Some(command) => command,
                None => break,
            }
        };
        round.push(first);
        while round.len() < MAX_ROUND {
            match inbox.try_recv() {
                Ok(command) => round.push(command),
                Err(_) => break,
            }
        }
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        let mut close = None;
        for command in round.drain(..) {
            match command {
                Command::Write(op, reply) => writes.push((op, reply)),
                Command::Close(reply) => close = Some(reply),
                read => reads.push(read),
            }
        }
        if !writes.is_empty() {
            let deletes = writes
                .iter()
                .any(|(op, _)| matches!(op, WriteOp::Delete(_) | WriteOp::DeleteOne(_)));
            commit_group(&mut conn, writes, &counters).await;
            if deletes {
                // Steps run only while no command waits: a step after
                // every prune batch of a busy queue (16 MiB moved in a
                // large file) slowed pruning below the completion rate.
                reclaim.freed();
            }
        }
        for read in reads {
            answer(&mut conn, read).await;
        }
        if let Some(reply) = close {
            // Later commands are dropped unanswered: their callers see the
            // store closed.
            inbox.close();
            while inbox.try_recv().is_ok() {}
            let result = conn.close().await.map_err(store_error);
            tracing::debug!(path = %path.display(), "closed the SQLite store");
            let _ = reply.send(result);
            return;
        }
    }
    // Every handle was dropped.
    if let Err(err) = conn.close().await {
        tracing::warn!(path = %path.display(), error = %err, "closing the SQLite store failed");
    }
}

/// The most pages one reclaiming step moves: 2 MiB. In a 2 GB file a
/// step of 16 MiB held the store up for 355 ms; a command that comes
/// during a step waits for it.
const RECLAIM_STEP_BYTES: i64 = 2 << 20;

/// While a prune is under way (a delete came since the last step), the
/// store serves commands for this many times as long as a step took
/// before it takes another: reclaiming then takes at most a fifth of the
/// store's time. (Steps taken whenever no command waited, which under
/// load is between any two, slowed pruning below the completion rate:
/// 1.3M completed jobs were still kept a minute after 3M ran, where the
/// cap is 100,000.) Without deletes, steps follow each other as long as
/// no command waits: resting then only slowed the shrinking (a 2 GB file
/// was still at 9× what its jobs need a minute after the last prune).
const RECLAIM_REST_FACTOR: u32 = 4;

/// Giving the pages that deletes freed back to the file system
/// (`auto_vacuum = INCREMENTAL`), in bounded steps.
///
/// Pages a prune frees are taken again by the jobs that come next, so a
/// file under steady load keeps some free and that is fine: reclaiming
/// starts once more than a quarter of the file is free (a backlog drained,
/// a big clean) and stops at an eighth, leaving room for what comes next.
/// Steps run after a prune, while no command waits, and take at most a
/// fifth of the store's time while prune batches keep coming (see
/// [`RECLAIM_REST_FACTOR`]). When done, a
/// `TRUNCATE` checkpoint shrinks the file (the moved pages reach it) and
/// empties the WAL.
struct Reclaim {
    /// The file reclaims (incremental auto-vacuum is on).
    enabled: bool,
    /// A step may have something to do.
    due: bool,
    /// Steps are under way (between the quarter and the eighth).
    reclaiming: bool,
    /// Free pages before the last step, to stop if a step frees none.
    last_free: i64,
    /// No step before this (see [`RECLAIM_REST_FACTOR`]).
    rest_until: Option<std::time::Instant>,
    /// A delete came since the last step: pruning is under way.
    pruning: bool,
}

impl Reclaim {
    fn new(enabled: bool) -> Self {
        Reclaim {
            enabled,
            // Once at start: a file closed with free pages shrinks.
            due: enabled,
            reclaiming: false,
            last_free: i64::MAX,
            rest_until: None,
            pruning: false,
        }
    }

    /// How long until the next step may run, if it may not yet.
    fn resting(&self) -> Option<std::time::Duration> {
        let until = self.rest_until?;
        let now = std::time::Instant::now();
        (until > now).then(|| until - now)
    }

    /// A step that began at `started` ended: rest in proportion while a
    /// prune is under way, not otherwise.
    fn rest_after(&mut self, started: std::time::Instant) {
        let now = std::time::Instant::now();
        self.rest_until =
            std::mem::take(&mut self.pruning).then(|| now + (now - started) * RECLAIM_REST_FACTOR);
    }

    /// A delete freed pages: steps are due again, and their progress is
    /// counted from here. (Counted from before the delete, the pages it
    /// freed looked like a step that freed none, and reclaiming stopped
    /// half way whenever a prune batch came between two steps.)
    fn freed(&mut self) {
        self.due = self.enabled;
        self.last_free = i64::MAX;
        self.pruning = true;
    }

    async fn step(&mut self, conn: &mut SqliteConnection) {
        match self.try_step(conn).await {
            Ok(more) => self.due = more,
            Err(err) => {
                self.due = false;
                self.reclaiming = false;
                tracing::warn!(error = %err, "giving free pages back to the file system failed");
            }
        }
    }

    /// One step; whether another is due.
    async fn try_step(&mut self, conn: &mut SqliteConnection) -> Result<bool, StoreError> {
        let pragma = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
        let free = pragma("PRAGMA freelist_count")
            .fetch_one(&mut *conn)
            .await
            .map_err(store_error)?;
        let pages = pragma("PRAGMA page_count")
            .fetch_one(&mut *conn)
            .await
            .map_err(store_error)?;
        let page_size = pragma("PRAGMA page_size")
            .fetch_one(&mut *conn)
            .await
            .map_err(store_error)?
            .max(512);
        let keep = pages / 8;
        let start = free > 64 && free * 4 > pages;
        let progress = !self.reclaiming || free < self.last_free;
        self.last_free = free;
        if (self.reclaiming || start) && free > keep && progress {
            self.reclaiming = true;
            let n = (free - keep).min(RECLAIM_STEP_BYTES / page_size).max(1);
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "PRAGMA incremental_vacuum({n})"
            )))
            .execute(&mut *conn)
            .await
            .map_err(store_error)?;
            return Ok(true);
        }
        if std::mem::take(&mut self.reclaiming) {
            exec(conn, "PRAGMA wal_checkpoint(TRUNCATE)").await?;
            tracing::debug!(pages, free, "gave free pages back to the file system");
        }
        Ok(false)
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(store_error)
}

/// What the connection thread has done, for [`SqliteStats`](super::SqliteStats).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) commits: AtomicU64,
    pub(super) writes: AtomicU64,
    pub(super) failed: AtomicU64,
    /// The longest group of writes, in nanoseconds.
    pub(super) longest_commit_ns: AtomicU64,
    /// The longest reclaiming step, in nanoseconds.
    pub(super) longest_reclaim_ns: AtomicU64,
}

impl Counters {
    fn took(counter: &AtomicU64, started: std::time::Instant) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_max(nanos, Ordering::Relaxed);
    }
}

/// Runs every write of the round in one transaction and answers them after
/// the commit: `Ok` only for what the commit made durable.
async fn commit_group(
    conn: &mut SqliteConnection,
    writes: Vec<(WriteOp, Reply<u64>)>,
    counters: &Counters,
) {
    let started = std::time::Instant::now();
    let (ops, replies): (Vec<WriteOp>, Vec<Reply<u64>>) = writes.into_iter().unzip();
    let (results, failure) = match run_group(conn, &ops, false).await {
        // One write failed on its own: run the group again, each write in a
        // savepoint, so that write fails alone and the others commit.
        Group::Retry => run_group(conn, &ops, true).await.done(),
        group => group.done(),
    };
    Counters::took(&counters.longest_commit_ns, started);
    match &failure {
        None => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(writes = ops.len(), elapsed = ?started.elapsed(), "committed a group of writes");
        }
        Some(err) => {
            tracing::error!(error = %err, writes = ops.len(), "a group of writes failed; none of it is stored");
        }
    }
    for (reply, result) in replies.into_iter().zip(results) {
        let counter = if result.is_ok() {
            &counters.writes
        } else {
            &counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = reply.send(result);
    }
}

/// How a group's transaction went.
enum Group {
    /// Committed: each write's own result (a write that failed alone was
    /// rolled back to its savepoint).
    Committed(Vec<Result<u64, StoreError>>),
    /// Rolled back whole, for this reason: every write fails with it.
    Failed(StoreError, usize),
    /// Rolled back because one write failed on its own (without savepoints).
    Retry,
}

impl Group {
    /// Each write's answer, and the group's failure if it failed whole.
    fn done(self) -> (Vec<Result<u64, StoreError>>, Option<StoreError>) {
        match self {
            Group::Committed(results) => (results, None),
            Group::Failed(err, writes) => (vec![Err(err.clone()); writes], Some(err)),
            Group::Retry => (Vec::new(), None),
        }
    }
}

/// Runs the group's writes in one transaction. Without savepoints (the
/// common case, two statements fewer per write) a write failing on its own
/// rolls everything back and asks for a `Retry` with them.
async fn run_group(conn: &mut SqliteConnection, ops: &[WriteOp], savepoints: bool) -> Group {
    if let Err(err) = exec(conn, "BEGIN IMMEDIATE").await {
        return Group::Failed(err, ops.len());
    }
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let result = if savepoints {
            write_in_savepoint(conn, op).await
        } else {
            apply(conn, op).await.map_err(|err| {
                if ends_transaction(&err) {
                    WriteFailure::Group(err)
                } else {
                    WriteFailure::Alone(err)
                }
            })
        };
        match result {
            Ok(n) => results.push(Ok(n)),
            Err(WriteFailure::Alone(err)) if savepoints => results.push(Err(err)),
            Err(WriteFailure::Alone(_)) => {
                rollback(conn).await;
                return Group::Retry;
            }
            Err(WriteFailure::Group(err)) => {
                rollback(conn).await;
                return Group::Failed(err, ops.len());
            }
        }
    }
    match exec(conn, "COMMIT").await {
        Ok(()) => Group::Committed(results),
        Err(err) => {
            rollback(conn).await;
            Group::Failed(err, ops.len())
        }
    }
}

async fn rollback(conn: &mut SqliteConnection) {
    // SQLite may have rolled back already; then this fails, harmlessly.
    let _ = exec(conn, "ROLLBACK").await;
}

/// Why one write failed: alone (its savepoint was rolled back, the group
/// goes on) or with its whole group.
enum WriteFailure {
    Alone(StoreError),
    Group(StoreError),
}

async fn write_in_savepoint(
    conn: &mut SqliteConnection,
    op: &WriteOp,
) -> Result<u64, WriteFailure> {
    exec(conn, "SAVEPOINT kessel_write")
        .await
        .map_err(WriteFailure::Group)?;
    match apply(conn, op).await {
        Ok(n) => {
            exec(conn, "RELEASE kessel_write")
                .await
                .map_err(WriteFailure::Group)?;
            Ok(n)
        }
        Err(err) if ends_transaction(&err) => Err(WriteFailure::Group(err)),
        Err(err) => {
            exec(conn, "ROLLBACK TO kessel_write; RELEASE kessel_write")
                .await
                .map_err(WriteFailure::Group)?;
            Err(WriteFailure::Alone(err))
        }
    }
}

async fn apply(conn: &mut SqliteConnection, op: &WriteOp) -> Result<u64, StoreError> {
    match op {
        WriteOp::Insert(rows) => insert(conn, rows).await,
        WriteOp::InsertUnique(new) => {
            sqlx::query(UNIQUE_CLEAR_ENDED)
                .bind(&new.key)
                .bind(new.now)
                .execute(&mut *conn)
                .await
                .map_err(store_error)?;
            let held: Option<String> = sqlx::query_scalar(UNIQUE_HOLDER)
                .bind(&new.key)
                .bind(new.now)
                .bind(true)
                .fetch_optional(&mut *conn)
                .await
                .map_err(store_error)?;
            if held.is_some() {
                return Ok(0);
            }
            insert(conn, &new.rows).await?;
            sqlx::query(UNIQUE_SET)
                .bind(&new.key)
                .bind(new.scope)
                .bind(new.until)
                .bind(&new.id)
                .execute(&mut *conn)
                .await
                .map_err(store_error)?;
            Ok(1)
        }
        WriteOp::Update(rows) => update(conn, rows).await,
        WriteOp::UpdateInsert(rows, new) => {
            let updated = update(conn, rows).await?;
            insert(conn, new).await?;
            Ok(updated)
        }
        WriteOp::ScheduleUpsert(record) => schedule_upsert(conn, record).await,
        WriteOp::SuspensionInsert(s) => Ok(sqlx::query(SUSPENSION_INSERT)
            .bind(s.what.kind())
            .bind(s.what.name())
            .bind(&s.by)
            .bind(micros(s.since))
            .execute(&mut *conn)
            .await
            .map_err(store_error)?
            .rows_affected()),
        WriteOp::SuspensionDelete(what) => Ok(sqlx::query(SUSPENSION_DELETE)
            .bind(what.kind())
            .bind(what.name())
            .execute(&mut *conn)
            .await
            .map_err(store_error)?
            .rows_affected()),
        WriteOp::ScheduleRemove(name) => Ok(sqlx::query(SCHEDULE_REMOVE)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(store_error)?
            .rows_affected()),
        WriteOp::SchedulePause {
            name,
            paused,
            next_run,
        } => Ok(sqlx::query(SCHEDULE_PAUSE)
            .bind(name)
            .bind(i64::from(*paused))
            .bind(*next_run)
            .execute(&mut *conn)
            .await
            .map_err(store_error)?
            .rows_affected()),
        WriteOp::ScheduleAdvance(advance, jobs) => {
            let applied = sqlx::query(SCHEDULE_ADVANCE)
                .bind(&advance.name)
                .bind(micros(advance.due))
                .bind(micros(advance.next))
                .bind(advance.last_run.map(micros))
                .bind(advance.last_job.map(|id| id.to_string()))
                .bind(advance.even_if_paused)
                .execute(&mut *conn)
                .await
                .map_err(store_error)?
                .rows_affected();
            if applied == 1 {
                if let Some(rows) = jobs {
                    insert(conn, rows).await?;
                }
            }
            Ok(applied)
        }
        WriteOp::DeleteOne(id) => {
            let removed = sqlx::query(
                "DELETE FROM kessel_jobs WHERE id = ?1 \
                 AND status IN ('completed', 'buried', 'expired', 'cancelled')",
            )
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(store_error)?
            .rows_affected();
            if removed > 0 {
                sqlx::query("DELETE FROM kessel_job_logs WHERE job_id = ?1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await
                    .map_err(store_error)?;
            }
            Ok(removed)
        }
        WriteOp::Delete(params) if params.completed_only => {
            // The jobs first, returning their ids, then their lines.
            let ids: Vec<String> = sqlx::query_scalar(COMPLETED_DELETE)
                .bind(params.finished_before.unwrap_or(i64::MAX))
                .bind(params.limit)
                .bind(params.finished_before.is_none())
                .fetch_all(&mut *conn)
                .await
                .map_err(store_error)?;
            if !ids.is_empty() {
                let json = serde_json::to_string(&ids).map_err(StoreError::other)?;
                sqlx::query(LOGS_DELETE_IDS)
                    .bind(json)
                    .execute(&mut *conn)
                    .await
                    .map_err(store_error)?;
            }
            Ok(ids.len() as u64)
        }
        WriteOp::Delete(params) => {
            // The jobs' lines first, then the jobs: one selection, one
            // transaction, nothing in between.
            for sql in [LOGS_DELETE, JOBS_DELETE] {
                let done = sqlx::query(sql)
                    .bind(&params.statuses)
                    .bind(&params.tasks)
                    .bind(params.finished_before)
                    .bind(params.limit)
                    .execute(&mut *conn)
                    .await
                    .map_err(store_error)?;
                if sql == JOBS_DELETE {
                    return Ok(done.rows_affected());
                }
            }
            unreachable!("JOBS_DELETE runs last")
        }
    }
}

/// The most rows one `INSERT ... VALUES` binds (17 columns of a job:
/// 17,408 parameters, within SQLite's 32,766).
const MAX_VALUES_ROWS: usize = 1024;

/// `INSERT INTO {head} VALUES (?, ...), ...` for every power-of-two number
/// of rows up to [`MAX_VALUES_ROWS`], built once: a batch is bound as a few
/// of these, so the connection's statement cache holds them all.
struct ValuesSql {
    by_log2: Vec<String>,
}

impl ValuesSql {
    fn new(head: &str, columns: usize) -> Self {
        let row = format!("({})", vec!["?"; columns].join(", "));
        let by_log2 = (0..=MAX_VALUES_ROWS.trailing_zeros())
            .map(|k| format!("{head} VALUES {}", vec![row.as_str(); 1 << k].join(", ")))
            .collect();
        ValuesSql { by_log2 }
    }

    /// The statement for the next chunk of `left` rows, and its size.
    fn next(&self, left: usize) -> (&str, usize) {
        let k = left.min(MAX_VALUES_ROWS).ilog2();
        (&self.by_log2[k as usize], 1 << k)
    }
}

fn job_values() -> &'static ValuesSql {
    static SQL: std::sync::OnceLock<ValuesSql> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        ValuesSql::new(
            "INSERT INTO kessel_jobs (id, reference, task, payload, priority, status, created_at, \
             run_at, expires_at, attempts, max_attempts, last_error, result, progress_current, \
             progress_total, finished_at, log_created, callback, group_key, callback_secret)",
            20,
        )
    })
}

fn log_values() -> &'static ValuesSql {
    static SQL: std::sync::OnceLock<ValuesSql> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        ValuesSql::new(
            "INSERT INTO kessel_job_logs (job_id, at, attempt, message, data)",
            5,
        )
    })
}

/// Inserts new jobs, then their log lines (in order: their `seq` follows
/// it). The lines need no check that their job exists: it was inserted
/// just before, in the same write, or the write failed.
/// Applies updates and appends their log lines; returns how many jobs
/// were updated.
async fn update(conn: &mut SqliteConnection, rows: &Rows) -> Result<u64, StoreError> {
    let updated = execute_chunks(conn, JOB_UPDATE, &rows.jobs).await?;
    execute_chunks(conn, LOG_INSERT, &rows.logs).await?;
    Ok(updated)
}

async fn insert(conn: &mut SqliteConnection, rows: &NewRows) -> Result<u64, StoreError> {
    let mut inserted = 0;
    let mut jobs = rows.jobs.as_slice();
    while !jobs.is_empty() {
        let (sql, n) = job_values().next(jobs.len());
        let (chunk, rest) = jobs.split_at(n);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            query = query
                .bind(r.0.clone())
                .bind(r.1.clone())
                .bind(r.2.clone())
                .bind(r.3.clone())
                .bind(r.4)
                .bind(r.5)
                .bind(r.6)
                .bind(r.7)
                .bind(r.8)
                .bind(r.9)
                .bind(r.10)
                .bind(r.11.clone())
                .bind(r.12.clone())
                .bind(r.13)
                .bind(r.14)
                .bind(r.15)
                .bind(r.16)
                .bind(r.17.clone())
                .bind(r.18.clone())
                .bind(r.19.clone());
        }
        inserted += query
            .execute(&mut *conn)
            .await
            .map_err(store_error)?
            .rows_affected();
        jobs = rest;
    }
    let mut logs = rows.logs.as_slice();
    while !logs.is_empty() {
        let (sql, n) = log_values().next(logs.len());
        let (chunk, rest) = logs.split_at(n);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            query = query
                .bind(r.0.clone())
                .bind(r.1)
                .bind(r.2)
                .bind(r.3.clone())
                .bind(r.4.clone());
        }
        query.execute(&mut *conn).await.map_err(store_error)?;
        logs = rest;
    }
    Ok(inserted)
}

/// Runs `sql` once per chunk of rows; returns the rows it changed.
async fn execute_chunks(
    conn: &mut SqliteConnection,
    sql: &'static str,
    chunks: &[String],
) -> Result<u64, StoreError> {
    let mut changed = 0;
    for chunk in chunks {
        changed += sqlx::query(sql)
            .bind(chunk)
            .execute(&mut *conn)
            .await
            .map_err(store_error)?
            .rows_affected();
    }
    Ok(changed)
}

async fn answer(conn: &mut SqliteConnection, read: Command) {
    match read {
        Command::Pending(reply) => {
            let _ = reply.send(pending(conn).await);
        }
        Command::Get(id, reply) => {
            let _ = reply.send(get(conn, id).await);
        }
        Command::Query(params, reply) => {
            let _ = reply.send(query(conn, &params).await);
        }
        Command::Count(reply) => {
            let _ = reply.send(count(conn).await);
        }
        Command::CountStatus(status, reply) => {
            let counted = sqlx::query_scalar::<_, i64>(STATUS_COUNT)
                .bind(status.as_str())
                .fetch_one(&mut *conn)
                .await
                .map_err(store_error)
                .map(|n| n.max(0) as u64);
            let _ = reply.send(counted);
        }
        Command::UniqueHolder(key, now, reply) => {
            let held = sqlx::query_scalar::<_, String>(UNIQUE_HOLDER)
                .bind(&key)
                .bind(now.unwrap_or(0))
                .bind(now.is_none())
                .fetch_optional(&mut *conn)
                .await
                .map_err(store_error)
                .and_then(|id| {
                    id.map(|id| {
                        id.parse::<uuid::Uuid>()
                            .map(JobId)
                            .map_err(|e| StoreError::Corrupt {
                                id: id.clone(),
                                reason: format!("its id is not a UUID: {e}"),
                            })
                    })
                    .transpose()
                });
            let _ = reply.send(held);
        }
        Command::Schedules(reply) => {
            let listed = match sqlx::query(SCHEDULES_LIST).fetch_all(&mut *conn).await {
                Ok(rows) => rows.iter().map(schedule_from_row).collect(),
                Err(err) => Err(store_error(err)),
            };
            let _ = reply.send(listed);
        }
        Command::Suspensions(reply) => {
            let listed = match sqlx::query(SUSPENSIONS_LIST).fetch_all(&mut *conn).await {
                Ok(rows) => rows.iter().map(suspension_from_row).collect(),
                Err(err) => Err(store_error(err)),
            };
            let _ = reply.send(listed);
        }
        Command::Write(..) | Command::Close(_) => {}
    }
}

/// Stores a schedule unless one of its name has the same definition; see
/// [`Store::schedule_upsert`](crate::store::Store::schedule_upsert).
async fn schedule_upsert(
    conn: &mut SqliteConnection,
    record: &ScheduleRecord,
) -> Result<u64, StoreError> {
    let stored: Option<(String, String, String)> = sqlx::query_as(SCHEDULE_DEFINITION)
        .bind(&record.name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_error)?;
    match stored {
        None => {
            sqlx::query(SCHEDULE_INSERT)
                .bind(&record.name)
                .bind(&record.task)
                .bind(&record.payload)
                .bind(&record.spec)
                .bind(i64::from(record.paused))
                .bind(micros(record.next_run))
                .bind(record.last_run.map(micros))
                .bind(record.last_job.map(|id| id.to_string()))
                .execute(&mut *conn)
                .await
                .map_err(store_error)?;
            Ok(UPSERT_CREATED)
        }
        Some((task, payload, spec))
            if task == record.task && payload == record.payload && spec == record.spec =>
        {
            Ok(UPSERT_UNCHANGED)
        }
        Some(_) => {
            sqlx::query(SCHEDULE_REDEFINE)
                .bind(&record.name)
                .bind(&record.task)
                .bind(&record.payload)
                .bind(&record.spec)
                .bind(micros(record.next_run))
                .execute(&mut *conn)
                .await
                .map_err(store_error)?;
            Ok(UPSERT_CHANGED)
        }
    }
}

fn decode_jobs(rows: &[SqliteRow]) -> Result<Vec<Job>, StoreError> {
    rows.iter().map(job_from_row).collect()
}

async fn pending(conn: &mut SqliteConnection) -> Result<Vec<Job>, StoreError> {
    let rows = sqlx::query(JOBS_PENDING)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
    let mut jobs = decode_jobs(&rows)?;
    let logs = sqlx::query(LOGS_OF_PENDING)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
    attach_logs(&mut jobs, &logs)?;
    Ok(jobs)
}

async fn get(conn: &mut SqliteConnection, id: JobId) -> Result<Option<Job>, StoreError> {
    let id = id.to_string();
    let Some(row) = sqlx::query(JOB_GET)
        .bind(&id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(store_error)?
    else {
        return Ok(None);
    };
    let mut jobs = vec![job_from_row(&row)?];
    let logs = sqlx::query(LOGS_OF_JOB)
        .bind(&id)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
    attach_logs(&mut jobs, &logs)?;
    Ok(jobs.pop())
}

async fn query(conn: &mut SqliteConnection, params: &QueryParams) -> Result<Vec<Job>, StoreError> {
    let sql = match (params.reference.is_some(), params.newest_first) {
        (true, true) => JOBS_BY_REFERENCE_NEWEST_FIRST,
        (true, false) => JOBS_BY_REFERENCE_OLDEST_FIRST,
        (false, true) => JOBS_NEWEST_FIRST,
        (false, false) => JOBS_OLDEST_FIRST,
    };
    let rows = sqlx::query(sql)
        .bind(&params.statuses)
        .bind(&params.tasks)
        .bind(&params.reference)
        .bind(params.created_after)
        .bind(params.created_before)
        .bind(params.limit)
        .bind(params.offset)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
    let mut jobs = decode_jobs(&rows)?;
    if !jobs.is_empty() {
        let ids: Vec<String> = jobs.iter().map(|j| j.id.to_string()).collect();
        let ids = serde_json::to_string(&ids).map_err(StoreError::other)?;
        let logs = sqlx::query(LOGS_OF_JOBS)
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(store_error)?;
        attach_logs(&mut jobs, &logs)?;
    }
    Ok(jobs)
}

async fn count(conn: &mut SqliteConnection) -> Result<Vec<StatusCount>, StoreError> {
    let rows = sqlx::query(JOBS_COUNT)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
    let mut counts = rows
        .iter()
        .map(|row| {
            let corrupt = |reason: String| StoreError::Corrupt {
                id: "(counts)".into(),
                reason,
            };
            let task: String = row.try_get(0).map_err(|e| corrupt(format!("task: {e}")))?;
            let status: String = row
                .try_get(1)
                .map_err(|e| corrupt(format!("status: {e}")))?;
            let status: JobStatus = status
                .parse()
                .map_err(|e| corrupt(format!("status: {e}")))?;
            let count: i64 = row.try_get(2).map_err(|e| corrupt(format!("count: {e}")))?;
            let count =
                u64::try_from(count).map_err(|_| corrupt(format!("count {count} is negative")))?;
            Ok(StatusCount {
                task,
                status,
                count,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    counts.sort_by(|a, b| (&a.task, a.status).cmp(&(&b.task, b.status)));
    Ok(counts)
}
