//! The group commit: every write of a round in one transaction,
//! committed once; when one write fails on its own, the group is run
//! again with a savepoint per write, so that write fails alone. New jobs
//! go in as multi-row `VALUES` lists, state changes as one statement per
//! table.

use std::sync::atomic::Ordering;

use sqlx::sqlite::SqliteConnection;

use super::read::UNIQUE_HOLDER;
use super::{exec, Counters, Reply, WriteOp, UPSERT_CHANGED, UPSERT_CREATED, UPSERT_UNCHANGED};
use crate::store::sqlite::errors::{ends_transaction, store_error};
use crate::store::sqlite::rows::{micros, NewRows, Rows};
use crate::store::{ScheduleRecord, StoreError};

const JOB_UPDATE: &str = include_str!("../sql/job_update.sql");
const LOG_INSERT: &str = include_str!("../sql/log_insert.sql");
const JOBS_DELETE: &str = include_str!("../sql/jobs_delete.sql");
const LOGS_DELETE: &str = include_str!("../sql/logs_delete.sql");
const COMPLETED_DELETE: &str = include_str!("../sql/completed_delete.sql");
const LOGS_DELETE_IDS: &str = include_str!("../sql/logs_delete_ids.sql");
const UNIQUE_CLEAR_ENDED: &str = include_str!("../sql/unique_clear_ended.sql");
const UNIQUE_SET: &str =
    "UPDATE kessel_jobs SET unique_key = ?1, unique_scope = ?2, unique_until = ?3 WHERE id = ?4";
const SCHEDULE_DEFINITION: &str = include_str!("../sql/schedule_definition.sql");
const SCHEDULE_INSERT: &str = include_str!("../sql/schedule_insert.sql");
const SCHEDULE_REDEFINE: &str = include_str!("../sql/schedule_redefine.sql");
const SCHEDULE_REMOVE: &str = include_str!("../sql/schedule_remove.sql");
const SCHEDULE_PAUSE: &str = include_str!("../sql/schedule_pause.sql");
const SCHEDULE_ADVANCE: &str = include_str!("../sql/schedule_advance.sql");
const SUSPENSION_INSERT: &str = include_str!("../sql/suspension_insert.sql");
const SUSPENSION_DELETE: &str = include_str!("../sql/suspension_delete.sql");

/// Runs every write of the round in one transaction and answers them after
/// the commit: `Ok` only for what the commit made durable.
pub(super) async fn commit_group(
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
