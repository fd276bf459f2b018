//! The store's connection thread: the one connection to the file, the
//! group commit, and the reads.
//!
//! Every call on a [`SqliteStore`](super::SqliteStore) becomes a
//! [`Command`] sent to this thread. The thread takes every command that is
//! waiting, runs all the writes among them in **one** transaction (each in
//! its own savepoint, so one bad write fails alone), commits once, and only
//! then answers the writers. While that commit syncs to disk, new commands
//! queue up and form the next group: the more producers write at once, the
//! more jobs share one disk sync, and a lone producer waits for no timer.
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
use super::rows::{attach_logs, job_from_row, JobRow, LogRow, UpdateRow};
use super::{open, SqliteOptions};
use crate::job::{Job, JobId, JobStatus};
use crate::store::{StatusCount, StoreError};

const JOB_INSERT: &str = include_str!("sql/job_insert.sql");
const JOB_UPDATE: &str = include_str!("sql/job_update.sql");
const LOG_INSERT: &str = include_str!("sql/log_insert.sql");
const JOBS_DELETE: &str = include_str!("sql/jobs_delete.sql");
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
const JOBS_COUNT: &str = include_str!("sql/jobs_count.sql");
const LOGS_OF_JOB: &str = include_str!("sql/logs_of_job.sql");
const LOGS_OF_JOBS: &str = include_str!("sql/logs_of_jobs.sql");
const LOGS_OF_PENDING: &str = include_str!("sql/logs_of_pending.sql");

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
    /// Finish this round, close the connection (releasing the file), stop.
    Close(Reply<()>),
}

/// What a write does; its rows are encoded by the caller.
#[derive(Debug)]
pub(super) enum WriteOp {
    Insert(Vec<JobRow>),
    Update(Vec<UpdateRow>),
    Delete(DeleteParams),
}

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
    while let Some(first) = inbox.recv().await {
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
            commit_group(&mut conn, writes, &counters).await;
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
}

/// Runs every write of the round in one transaction and answers them after
/// the commit: `Ok` only for what the commit made durable.
async fn commit_group(
    conn: &mut SqliteConnection,
    writes: Vec<(WriteOp, Reply<u64>)>,
    counters: &Counters,
) {
    let started = std::time::Instant::now();
    let count = writes.len();
    let mut answers = Vec::with_capacity(count);
    let failure = run_group(conn, writes, &mut answers).await;
    match &failure {
        None => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(writes = count, elapsed = ?started.elapsed(), "committed a group of writes");
        }
        Some(err) => {
            tracing::error!(error = %err, writes = count, "a group of writes failed; none of it is stored");
        }
    }
    for (reply, result) in answers {
        let result = match (&failure, result) {
            (Some(err), Ok(_)) => Err(err.clone()),
            (_, result) => result,
        };
        let counter = if result.is_ok() {
            &counters.writes
        } else {
            &counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = reply.send(result);
    }
}

/// Runs the group's transaction, collecting each write's own result.
/// Returns the error that ended the transaction (it was rolled back), if
/// one did.
async fn run_group(
    conn: &mut SqliteConnection,
    writes: Vec<(WriteOp, Reply<u64>)>,
    answers: &mut Vec<(Reply<u64>, Result<u64, StoreError>)>,
) -> Option<StoreError> {
    let mut writes = writes.into_iter();
    let mut failure = exec(conn, "BEGIN IMMEDIATE").await.err();
    if failure.is_none() {
        for (op, reply) in writes.by_ref() {
            match write_in_savepoint(conn, &op).await {
                Ok(n) => answers.push((reply, Ok(n))),
                Err(WriteFailure::Alone(err)) => answers.push((reply, Err(err))),
                Err(WriteFailure::Group(err)) => {
                    answers.push((reply, Err(err.clone())));
                    failure = Some(err);
                    break;
                }
            }
        }
        if failure.is_none() {
            failure = exec(conn, "COMMIT").await.err();
        }
        if failure.is_some() {
            // SQLite may have rolled back already; then this fails, harmlessly.
            let _ = exec(conn, "ROLLBACK").await;
        }
    }
    if let Some(err) = &failure {
        for (_, reply) in writes {
            answers.push((reply, Err(err.clone())));
        }
    }
    failure
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
        WriteOp::Insert(rows) => {
            for row in rows {
                sqlx::query(JOB_INSERT)
                    .bind(&row.id)
                    .bind(&row.reference)
                    .bind(&*row.task)
                    .bind(&row.payload)
                    .bind(row.priority)
                    .bind(row.status)
                    .bind(row.created_at)
                    .bind(row.run_at)
                    .bind(row.expires_at)
                    .bind(row.attempts)
                    .bind(row.max_attempts)
                    .bind(&row.last_error)
                    .bind(&row.result)
                    .bind(row.progress_current)
                    .bind(row.progress_total)
                    .bind(row.finished_at)
                    .execute(&mut *conn)
                    .await
                    .map_err(store_error)?;
                insert_logs(conn, &row.id, &row.logs).await?;
            }
            Ok(rows.len() as u64)
        }
        WriteOp::Update(rows) => {
            let mut applied = 0;
            for row in rows {
                let changed = sqlx::query(JOB_UPDATE)
                    .bind(&row.id)
                    .bind(row.status)
                    .bind(row.attempts)
                    .bind(row.max_attempts)
                    .bind(row.run_at)
                    .bind(&row.last_error)
                    .bind(&row.result)
                    .bind(row.progress_current)
                    .bind(row.progress_total)
                    .bind(row.finished_at)
                    .execute(&mut *conn)
                    .await
                    .map_err(store_error)?
                    .rows_affected();
                // An unknown id is a job that was cleaned: skipped.
                if changed > 0 {
                    insert_logs(conn, &row.id, &row.logs).await?;
                    applied += 1;
                }
            }
            Ok(applied)
        }
        WriteOp::Delete(params) => sqlx::query(JOBS_DELETE)
            .bind(&params.statuses)
            .bind(&params.tasks)
            .bind(params.finished_before)
            .bind(params.limit)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected())
            .map_err(store_error),
    }
}

async fn insert_logs(
    conn: &mut SqliteConnection,
    id: &str,
    logs: &[LogRow],
) -> Result<(), StoreError> {
    for line in logs {
        sqlx::query(LOG_INSERT)
            .bind(id)
            .bind(line.at)
            .bind(line.attempt)
            .bind(&line.message)
            .bind(&line.data)
            .execute(&mut *conn)
            .await
            .map_err(store_error)?;
    }
    Ok(())
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
        Command::Write(..) | Command::Close(_) => {}
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
    let sql = if params.newest_first {
        JOBS_NEWEST_FIRST
    } else {
        JOBS_OLDEST_FIRST
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
