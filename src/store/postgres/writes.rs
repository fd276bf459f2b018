//! Writing jobs: new jobs (bound as arrays, or `COPY` for large batches)
//! and batches of state changes, one statement per batch.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Executor, PgConnection, Postgres};
use uuid::Uuid;

use super::copy::{self, CopyRows};
use super::rows::map_err;
use super::wake::Wake;
use super::{relay, Db};
use crate::event::relay::CreatedJob;
use crate::job::{Job, JobId, JobStatus};
use crate::store::{JobUpdate, StoreError};

/// The columns of a batch of state changes, one array each, for `UNNEST`.
#[derive(Default)]
struct UpdateColumns {
    ids: Vec<Uuid>,
    statuses: Vec<&'static str>,
    attempts: Vec<i64>,
    max_attempts: Vec<Option<i64>>,
    run_at: Vec<DateTime<Utc>>,
    last_error: Vec<Option<String>>,
    result: Vec<Option<String>>,
    progress_current: Vec<Option<i64>>,
    progress_total: Vec<Option<i64>>,
    finished_at: Vec<Option<DateTime<Utc>>>,
}

/// Batches of at least this many new jobs are written with `COPY` (see
/// `copy.rs`): a few more round trips, less work on the server per row.
pub(super) const COPY_FROM: usize = 64;

/// New jobs, made ready on the caller's side to be written.
pub(super) enum NewJobs {
    /// A small batch, bound as arrays of one `INSERT`.
    Rows(Vec<Job>),
    /// A large batch in `COPY`'s format, the log lines beyond each job's
    /// implied "created" line, and what the jobs' `created` events say.
    Copy(CopyRows, LogColumns, Vec<CreatedJob>),
}

impl NewJobs {
    pub(super) fn new(jobs: &[Job]) -> Result<Self, StoreError> {
        if jobs.len() < COPY_FROM {
            return Ok(NewJobs::Rows(jobs.to_vec()));
        }
        let mut logs = LogColumns::default();
        for job in jobs {
            let implied = job
                .logs
                .first()
                .is_some_and(|l| l.is_created_at(job.created_at));
            for line in &job.logs[usize::from(implied)..] {
                logs.push(job.id, line);
            }
        }
        let created = jobs.iter().map(CreatedJob::of).collect();
        Ok(NewJobs::Copy(CopyRows::new(jobs)?, logs, created))
    }
}

#[derive(Default)]
pub(super) struct LogColumns {
    job_ids: Vec<Uuid>,
    at: Vec<DateTime<Utc>>,
    attempts: Vec<i64>,
    messages: Vec<String>,
    data: Vec<Option<String>>,
}

impl LogColumns {
    pub(super) fn push(&mut self, id: JobId, line: &crate::job::LogLine) {
        self.job_ids.push(id.0);
        self.at.push(line.at);
        self.attempts.push(i64::from(line.attempt));
        self.messages.push(line.message.to_string());
        self.data.push(line.data.as_ref().map(|d| d.to_string()));
    }
}

impl Db {
    /// Inserts new jobs and their log lines in one transaction, and wakes
    /// the processes serving them: in that transaction when no other
    /// insert is in flight, after it commits otherwise (see `wake.rs`).
    pub(super) async fn jobs_insert(&self, batch: &NewJobs) -> Result<(), StoreError> {
        let inserting = self.wakes.inserting();
        let wake = inserting.wake;
        match batch {
            NewJobs::Rows(jobs) => self.jobs_insert_rows(&self.pool, jobs, wake).await?,
            NewJobs::Copy(rows, logs, created) => self.jobs_copy(rows, logs, created, wake).await?,
        }
        drop(inserting);
        if wake == Wake::AfterCommit {
            self.wake_after_commit().await;
        }
        Ok(())
    }

    /// A few jobs: one statement, so one round trip; the jobs and their
    /// log lines commit together (on the pool a statement is its own
    /// transaction; on a caller's connection, with its transaction), and
    /// the wake-up with them or after them as `wake` says.
    pub(super) async fn jobs_insert_rows<'c>(
        &self,
        on: impl Executor<'c, Database = Postgres>,
        jobs: &[Job],
        wake: Wake,
    ) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        if let [job] = jobs {
            if job.logs.len() == 1 && job.logs[0].is_created_at(job.created_at) {
                return self.job_insert_one(on, job, wake).await;
            }
        }
        self.relay.ready_to_write().await;
        let events = self.relay.created(jobs);
        let mut logs = LogColumns::default();
        let mut log_created = Vec::with_capacity(jobs.len());
        for job in jobs {
            let implied = job
                .logs
                .first()
                .is_some_and(|l| l.is_created_at(job.created_at));
            log_created.push(implied);
            for line in &job.logs[usize::from(implied)..] {
                logs.push(job.id, line);
            }
        }
        sqlx::query(AssertSqlSafe(format!(
            "WITH new_jobs AS (
                 INSERT INTO {jobs} ({columns})
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                                      $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::bigint[], $11::bigint[],
                                      $12::text[], $13::text[], $14::bigint[], $15::bigint[], $16::timestamptz[],
                                      $17::boolean[], $18::text[], $19::text[], $20::text[])),
             new_logs AS ({insert_logs}),
             new_events AS (INSERT INTO {event_log} (node, events, entries) SELECT $27, $28, $30 WHERE $28 IS NOT NULL)
             SELECT {wake_up} CASE WHEN $28 IS NOT NULL THEN pg_notify($26, $29) END",
            jobs = self.sql.table("jobs"),
            columns = copy::COLUMNS,
            insert_logs = self.insert_logs_sql(21),
            event_log = self.sql.table("event_log"),
            wake_up = wake_up_sql(wake, 26),
        )))
        .bind(jobs.iter().map(|j| j.id.0).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.reference.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.task.to_string()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.payload.as_str().to_owned()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| i64::from(j.priority)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.status.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.created_at).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.expires_at).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| i64::from(j.attempts)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.max_attempts.map(i64::from)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.last_error.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.result.as_ref().map(|r| r.to_string())).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.progress.map(|p| p.current as i64)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.progress.map(|p| p.total as i64)).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.finished_at).collect::<Vec<_>>())
        .bind(&log_created)
        .bind(jobs.iter().map(|j| j.callback.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.group.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.callback_secret.clone()).collect::<Vec<_>>())
        .bind(&logs.job_ids)
        .bind(&logs.at)
        .bind(&logs.attempts)
        .bind(&logs.messages)
        .bind(&logs.data)
        .bind(&self.sql.channel)
        .bind(self.owner)
        .bind(events.as_ref().map(|e| e.json.as_str()))
        .bind(relay::LOG_GREW)
        .bind(events.as_ref().map(|e| e.entries))
        .execute(on)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    /// One job whose log is its "created" line alone (the usual single
    /// create): its values bound as they are, with no arrays for the
    /// server to take apart, and the wake-up in the same statement.
    pub(super) async fn job_insert_one<'c>(
        &self,
        on: impl Executor<'c, Database = Postgres>,
        job: &Job,
        wake: Wake,
    ) -> Result<(), StoreError> {
        self.relay.ready_to_write().await;
        let events = self.relay.created(std::slice::from_ref(job));
        sqlx::query(AssertSqlSafe(format!(
            "WITH new_job AS (
                 INSERT INTO {jobs} ({columns})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, true, $17, $18, $19)),
             new_events AS (INSERT INTO {event_log} (node, events, entries) SELECT $21, $22, $24 WHERE $22 IS NOT NULL)
             SELECT {wake_up} CASE WHEN $22 IS NOT NULL THEN pg_notify($20, $23) END",
            jobs = self.sql.table("jobs"),
            columns = copy::COLUMNS,
            event_log = self.sql.table("event_log"),
            wake_up = wake_up_sql(wake, 20),
        )))
        .bind(job.id.0)
        .bind(job.reference.as_deref())
        .bind(&*job.task)
        .bind(job.payload.as_str())
        .bind(i64::from(job.priority))
        .bind(job.status.as_str())
        .bind(job.created_at)
        .bind(job.run_at)
        .bind(job.expires_at)
        .bind(i64::from(job.attempts))
        .bind(job.max_attempts.map(i64::from))
        .bind(job.last_error.as_deref())
        .bind(job.result.as_ref().map(|r| r.to_string()))
        .bind(job.progress.map(|p| p.current as i64))
        .bind(job.progress.map(|p| p.total as i64))
        .bind(job.finished_at)
        .bind(job.callback.as_deref())
        .bind(job.group.as_deref())
        .bind(job.callback_secret.as_deref())
        .bind(&self.sql.channel)
        .bind(self.owner)
        .bind(events.as_ref().map(|e| e.json.as_str()))
        .bind(relay::LOG_GREW)
        .bind(events.as_ref().map(|e| e.entries))
        .execute(on)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    /// `INSERT`s the log lines bound as five arrays from `$first` on, in
    /// array order (their `seq` follows it).
    pub(super) fn insert_logs_sql(&self, first: usize) -> String {
        let n = |k: usize| first + k;
        format!(
            "INSERT INTO {logs} (job_id, at, attempt, message, data)
             SELECT u.job_id, u.at, u.attempt, u.message, u.data
             FROM UNNEST(${}::uuid[], ${}::timestamptz[], ${}::bigint[], ${}::text[], ${}::text[])
                  WITH ORDINALITY AS u(job_id, at, attempt, message, data, ord)
             ORDER BY u.ord",
            n(0),
            n(1),
            n(2),
            n(3),
            n(4),
            logs = self.sql.table("job_logs"),
        )
    }

    /// Many jobs: `COPY`, then their log lines, in one transaction, with
    /// the wake-up if `wake` says (else the caller sends it once this
    /// committed).
    pub(super) async fn jobs_copy(
        &self,
        rows: &CopyRows,
        logs: &LogColumns,
        created: &[CreatedJob],
        wake: Wake,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.jobs_copy_on(&mut tx, rows, logs, created, wake)
            .await?;
        tx.commit().await.map_err(map_err)
    }

    /// `COPY` and the log lines on `conn`, inside the transaction the
    /// caller has open there, and the wake-up with them if `wake` says.
    pub(super) async fn jobs_copy_on(
        &self,
        conn: &mut PgConnection,
        rows: &CopyRows,
        logs: &LogColumns,
        created: &[CreatedJob],
        wake: Wake,
    ) -> Result<(), StoreError> {
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                self.sql.table("jobs"),
                copy::COLUMNS
            ))
            .await
            .map_err(map_err)?;
        if let Err(err) = copy.send(rows.bytes()).await {
            let _ = copy.abort("kessel could not send the rows").await;
            return Err(map_err(err));
        }
        copy.finish().await.map_err(map_err)?;
        if !logs.job_ids.is_empty() {
            sqlx::query(AssertSqlSafe(self.insert_logs_sql(1)))
                .bind(&logs.job_ids)
                .bind(&logs.at)
                .bind(&logs.attempts)
                .bind(&logs.messages)
                .bind(&logs.data)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
        }
        self.relay.ready_to_write().await;
        if let Some(events) = self.relay.created_of(created.iter().cloned()) {
            self.log_write_on(&mut *conn, &events).await?;
        }
        if wake == Wake::WithInsert {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(&self.sql.channel)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    pub(super) async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError> {
        self.jobs_update_on(&self.pool, updates).await
    }

    /// The updates and the new jobs they made (a dead letter) in one
    /// transaction: both are kept, or neither.
    pub(super) async fn jobs_write(
        &self,
        updates: &[JobUpdate],
        inserts: &NewJobs,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        self.jobs_update_on(&mut *tx, updates).await?;
        self.jobs_insert_on(&mut tx, inserts).await?;
        tx.commit().await.map_err(map_err)
    }

    /// [`Db::jobs_update`] on `on`: the pool (the statement is its own
    /// transaction) or a caller's transaction.
    pub(super) async fn jobs_update_on<'c>(
        &self,
        on: impl Executor<'c, Database = Postgres>,
        updates: &[JobUpdate],
    ) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        // One row per job: the last state wins, every log line is kept in order.
        let mut last: HashMap<JobId, usize> = HashMap::with_capacity(updates.len());
        let mut logs = LogColumns::default();
        for (i, u) in updates.iter().enumerate() {
            last.insert(u.id, i);
            for line in &u.logs {
                logs.push(u.id, line);
            }
        }
        let mut cols = UpdateColumns::default();
        let mut releases_work = false;
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_unstable();
        for i in order {
            let u = &updates[i];
            releases_work |= matches!(
                u.status,
                JobStatus::Ready | JobStatus::Retrying | JobStatus::Scheduled
            );
            cols.ids.push(u.id.0);
            cols.statuses.push(u.status.as_str());
            cols.attempts.push(i64::from(u.attempts));
            cols.max_attempts.push(u.max_attempts.map(i64::from));
            cols.run_at.push(u.run_at);
            cols.last_error.push(u.last_error.clone());
            cols.result.push(u.result.as_ref().map(|r| r.to_string()));
            cols.progress_current
                .push(u.progress.map(|p| p.current as i64));
            cols.progress_total.push(u.progress.map(|p| p.total as i64));
            cols.finished_at.push(u.finished_at);
        }
        // One statement, one round trip: the state changes, the log lines
        // (of jobs that exist) and, when jobs went back to waiting, the
        // wake-up, committed together.
        sqlx::query(AssertSqlSafe(format!(
            "WITH changed AS (
                 UPDATE {jobs} AS j SET
                     status = u.status, attempts = u.attempts, max_attempts = u.max_attempts, run_at = u.run_at,
                     last_error = u.last_error, result = u.result, progress_current = u.progress_current,
                     progress_total = u.progress_total, finished_at = u.finished_at,
                     leased_by = CASE WHEN u.status IN ('completed', 'buried', 'expired', 'cancelled') THEN NULL ELSE j.leased_by END,
                     lease_until = CASE WHEN u.status IN ('completed', 'buried', 'expired', 'cancelled') THEN NULL ELSE j.lease_until END,
                     cancel_requested = CASE WHEN u.status IN ('completed', 'buried', 'expired', 'cancelled') THEN false ELSE j.cancel_requested END
                 FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[], $6::text[], $7::text[],
                             $8::bigint[], $9::bigint[], $10::timestamptz[])
                      AS u(id, status, attempts, max_attempts, run_at, last_error, result, progress_current, progress_total, finished_at)
                 WHERE j.id = u.id AND (j.leased_by IS NULL OR j.leased_by = $11)
                   -- a write that changes nothing is skipped: a start the
                   -- claim already counted writes only its log line
                   AND (j.status, j.attempts, j.max_attempts, j.run_at, j.last_error, j.result,
                        j.progress_current, j.progress_total, j.finished_at)
                       IS DISTINCT FROM
                       (u.status, u.attempts, u.max_attempts, u.run_at, u.last_error, u.result,
                        u.progress_current, u.progress_total, u.finished_at)
                 RETURNING j.id),
             new_logs AS (
                 INSERT INTO {logs} (job_id, at, attempt, message, data)
                 SELECT u.job_id, u.at, u.attempt, u.message, u.data
                 FROM UNNEST($12::uuid[], $13::timestamptz[], $14::bigint[], $15::text[], $16::text[])
                      WITH ORDINALITY AS u(job_id, at, attempt, message, data, ord)
                 -- the updated jobs from the hash of what changed; others
                 -- (held by another process now) by a lookup
                 WHERE u.job_id IN (SELECT id FROM changed)
                    OR EXISTS (SELECT 1 FROM {jobs} WHERE id = u.job_id)
                 ORDER BY u.ord)
             SELECT pg_notify($17, '') WHERE $18",
            jobs = self.sql.table("jobs"),
            logs = self.sql.table("job_logs"),
        )))
        .bind(&cols.ids)
        .bind(&cols.statuses)
        .bind(&cols.attempts)
        .bind(&cols.max_attempts)
        .bind(&cols.run_at)
        .bind(&cols.last_error)
        .bind(&cols.result)
        .bind(&cols.progress_current)
        .bind(&cols.progress_total)
        .bind(&cols.finished_at)
        .bind(self.owner)
        .bind(&logs.job_ids)
        .bind(&logs.at)
        .bind(&logs.attempts)
        .bind(&logs.messages)
        .bind(&logs.data)
        .bind(&self.sql.channel)
        .bind(releases_work)
        .execute(on)
        .await
        .map_err(map_err)?;
        Ok(())
    }
}

/// The wake-up in an insert's statement, channel `$channel`, when `wake`
/// sends it there; nothing when it is sent after the commit.
fn wake_up_sql(wake: Wake, channel: usize) -> String {
    match wake {
        Wake::WithInsert => format!("pg_notify(${channel}, ''),"),
        Wake::AfterCommit => String::new(),
    }
}
