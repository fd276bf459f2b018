//! Jobs to and from SQLite rows.
//!
//! Encoding happens on the caller's thread, before a write reaches the
//! store's connection thread. New jobs become owned column values, bound as
//! multi-row `VALUES` lists (see `connection.rs`); state changes are
//! encoded as one JSON array per statement, which the SQL unpacks with
//! `json_each`: a batch of any size costs one statement, not one per job.
//! Decoding checks every column: a value kessel could not have written
//! (an unknown status, a negative attempt count, text that is not JSON)
//! is a [`StoreError::Corrupt`] naming the job and the column, never a
//! panic and never a silently wrong job.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::job::{Job, JobId, JobStatus, LogLine, Payload, Progress};
use crate::store::{JobUpdate, StoreError};

/// Microseconds since the Unix epoch: the unit of every stored time.
pub(super) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// How many rows one statement binds, at most: big batches are split so no
/// single JSON text grows without bound.
const ROWS_PER_STATEMENT: usize = 2000;

/// A write's rows, encoded for the `sql/*_insert.sql` and `job_update.sql`
/// statements: each chunk is one JSON array of rows, bound as one value.
#[derive(Debug, Default)]
pub(super) struct Rows {
    /// Chunks of job rows.
    pub(super) jobs: Vec<String>,
    /// Chunks of log rows, in the order the lines were written.
    pub(super) logs: Vec<String>,
}

/// A state change, in `job_update.sql`'s column order.
type UpdateColumns<'a> = (
    String,
    &'static str,
    i64,
    Option<i64>,
    i64,
    Option<&'a str>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A `kessel_job_logs` row, in `log_insert.sql`'s column order.
type LogColumns<'a> = (String, i64, i64, &'a str, Option<String>);

fn json_text(value: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(StoreError::other)
}

fn optional_json(value: Option<&serde_json::Value>) -> Result<Option<String>, StoreError> {
    value.map(json_text).transpose()
}

fn chunks<T: serde::Serialize>(rows: &[T]) -> Result<Vec<String>, StoreError> {
    rows.chunks(ROWS_PER_STATEMENT)
        .map(|chunk| serde_json::to_string(chunk).map_err(StoreError::other))
        .collect()
}

/// A `u64` progress count as SQLite's `INTEGER` (a signed 64-bit number).
fn count(value: u64, id: JobId, field: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Other(Arc::new(OutOfRange {
            id,
            field: field.into(),
            value,
        }))
    })
}

/// A value SQLite cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("job {id}: {field} = {value} does not fit SQLite's 64-bit integers")]
struct OutOfRange {
    id: JobId,
    field: String,
    value: u64,
}

fn progress_columns(
    progress: Option<Progress>,
    id: JobId,
) -> Result<(Option<i64>, Option<i64>), StoreError> {
    match progress {
        Some(p) => Ok((
            Some(count(p.current, id, "progress.current")?),
            Some(count(p.total, id, "progress.total")?),
        )),
        None => Ok((None, None)),
    }
}

fn log_columns<'a>(
    id: JobId,
    lines: &'a [LogLine],
    out: &mut Vec<LogColumns<'a>>,
) -> Result<(), StoreError> {
    for line in lines {
        out.push((
            id.to_string(),
            micros(line.at),
            i64::from(line.attempt),
            line.message.as_ref(),
            optional_json(line.data.as_ref())?,
        ));
    }
    Ok(())
}

/// A new `kessel_jobs` row, owned, in the column order of
/// `connection.rs`'s `INSERT`.
/// Texts are shared (`Arc<str>`), so binding them again (a group retried
/// with savepoints) copies nothing.
pub(super) type NewJobRow = (
    Arc<str>,
    Option<Arc<str>>,
    Arc<str>,
    Arc<str>,
    i64,
    &'static str,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    Option<Arc<str>>,
    Option<Arc<str>>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    bool,
    Option<Arc<str>>,
    Option<Arc<str>>,
    Option<Arc<str>>,
);

/// A new `kessel_job_logs` row, owned.
pub(super) type NewLogRow = (Arc<str>, i64, i64, Arc<str>, Option<Arc<str>>);

/// New jobs and their log lines, as values to bind: inserts bind every
/// column as a parameter of a multi-row `VALUES` list, which SQLite reads
/// without parsing any JSON (the JSON form cost more than the inserting).
#[derive(Default)]
pub(super) struct NewRows {
    pub(super) jobs: Vec<NewJobRow>,
    pub(super) logs: Vec<NewLogRow>,
}

impl std::fmt::Debug for NewRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRows")
            .field("jobs", &self.jobs.len())
            .field("logs", &self.logs.len())
            .finish()
    }
}

/// New jobs, with the log lines they already have.
pub(super) fn insert_rows(jobs: &[Job]) -> Result<NewRows, StoreError> {
    let mut rows: Vec<NewJobRow> = Vec::with_capacity(jobs.len());
    let mut logs = Vec::with_capacity(jobs.len());
    for job in jobs {
        let (progress_current, progress_total) = progress_columns(job.progress, job.id)?;
        let id: Arc<str> = Arc::from(job.id.to_string());
        let log_created = job
            .logs
            .first()
            .is_some_and(|l| l.is_created_at(job.created_at));
        for line in &job.logs[usize::from(log_created)..] {
            logs.push((
                id.clone(),
                micros(line.at),
                i64::from(line.attempt),
                Arc::from(line.message.as_ref()),
                optional_json(line.data.as_ref())?.map(Arc::from),
            ));
        }
        rows.push((
            id,
            job.reference.as_deref().map(Arc::from),
            job.task.clone(),
            Arc::from(job.payload.as_str()),
            i64::from(job.priority),
            job.status.as_str(),
            micros(job.created_at),
            micros(job.run_at),
            job.expires_at.map(micros),
            i64::from(job.attempts),
            job.max_attempts.map(i64::from),
            job.last_error.as_deref().map(Arc::from),
            optional_json(job.result.as_ref())?.map(Arc::from),
            progress_current,
            progress_total,
            job.finished_at.map(micros),
            log_created,
            job.callback.as_deref().map(Arc::from),
            job.group.as_deref().map(Arc::from),
            job.callback_secret.as_deref().map(Arc::from),
        ));
    }
    Ok(NewRows { jobs: rows, logs })
}

/// State changes: each job's last one (every update carries the job's
/// whole changeable state, so the last wins), and every update's log lines
/// in order.
pub(super) fn update_rows(updates: &[JobUpdate]) -> Result<Rows, StoreError> {
    let mut last: HashMap<JobId, usize> = HashMap::with_capacity(updates.len());
    for (i, update) in updates.iter().enumerate() {
        last.insert(update.id, i);
    }
    let mut rows: Vec<UpdateColumns<'_>> = Vec::with_capacity(last.len());
    let mut logs = Vec::new();
    for (i, update) in updates.iter().enumerate() {
        if last.get(&update.id) == Some(&i) {
            let (progress_current, progress_total) = progress_columns(update.progress, update.id)?;
            rows.push((
                update.id.to_string(),
                update.status.as_str(),
                i64::from(update.attempts),
                update.max_attempts.map(i64::from),
                micros(update.run_at),
                update.last_error.as_deref(),
                optional_json(update.result.as_ref())?,
                progress_current,
                progress_total,
                update.finished_at.map(micros),
            ));
        }
        log_columns(update.id, &update.logs, &mut logs)?;
    }
    Ok(Rows {
        jobs: chunks(&rows)?,
        logs: chunks(&logs)?,
    })
}

/// Reads the columns of one row, turning every failure into
/// [`StoreError::Corrupt`] for the job the row belongs to.
struct Columns<'r> {
    row: &'r SqliteRow,
    id: String,
}

impl<'r> Columns<'r> {
    fn new(row: &'r SqliteRow, id_column: &str) -> Result<Self, StoreError> {
        let id = row
            .try_get::<String, _>(id_column)
            .map_err(|e| StoreError::Corrupt {
                id: "(unreadable id)".into(),
                reason: format!("column {id_column}: {e}"),
            })?;
        Ok(Columns { row, id })
    }

    fn corrupt(&self, column: &str, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            id: self.id.clone(),
            reason: format!("column {column}: {reason}"),
        }
    }

    fn get<T>(&self, column: &str) -> Result<T, StoreError>
    where
        T: for<'a> sqlx::Decode<'a, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        self.row
            .try_get::<T, _>(column)
            .map_err(|e| self.corrupt(column, e))
    }

    fn job_id(&self) -> Result<JobId, StoreError> {
        self.id.parse().map_err(|e| self.corrupt("id", e))
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        let value: i64 = self.get(column)?;
        self.to_time(column, value)
    }

    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let value: Option<i64> = self.get(column)?;
        value.map(|v| self.to_time(column, v)).transpose()
    }

    fn to_time(&self, column: &str, value: i64) -> Result<DateTime<Utc>, StoreError> {
        DateTime::from_timestamp_micros(value)
            .ok_or_else(|| self.corrupt(column, format!("{value} µs is not a representable time")))
    }

    fn u32(&self, column: &str) -> Result<u32, StoreError> {
        let value: i64 = self.get(column)?;
        u32::try_from(value)
            .map_err(|_| self.corrupt(column, format!("{value} is not in 0..=4294967295")))
    }

    fn optional_u32(&self, column: &str) -> Result<Option<u32>, StoreError> {
        let value: Option<i64> = self.get(column)?;
        value
            .map(|v| {
                u32::try_from(v)
                    .map_err(|_| self.corrupt(column, format!("{v} is not in 0..=4294967295")))
            })
            .transpose()
    }

    fn optional_u64(&self, column: &str) -> Result<Option<u64>, StoreError> {
        let value: Option<i64> = self.get(column)?;
        value
            .map(|v| u64::try_from(v).map_err(|_| self.corrupt(column, format!("{v} is negative"))))
            .transpose()
    }

    fn optional_json(&self, column: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = self.get(column)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| self.corrupt(column, format!("not JSON: {e}")))
        })
        .transpose()
    }
}

/// Decodes a row of `job_select.sql`, with the first line of its log when
/// that is implied (`log_created`), without its stored lines.
pub(super) fn job_from_row(row: &SqliteRow) -> Result<Job, StoreError> {
    let c = Columns::new(row, "id")?;
    let status: String = c.get("status")?;
    let status: JobStatus = status.parse().map_err(|e| c.corrupt("status", e))?;
    let payload: String = c.get("payload")?;
    serde_json::from_str::<serde::de::IgnoredAny>(&payload)
        .map_err(|e| c.corrupt("payload", format!("not JSON: {e}")))?;
    let progress = match (
        c.optional_u64("progress_current")?,
        c.optional_u64("progress_total")?,
    ) {
        (Some(current), Some(total)) => Some(Progress { current, total }),
        (None, None) => None,
        _ => {
            return Err(c.corrupt(
                "progress_current",
                "progress_current and progress_total must be set together",
            ))
        }
    };
    let task: String = c.get("task")?;
    let created_at = c.time("created_at")?;
    let log_created: bool = c.get("log_created")?;
    Ok(Job {
        id: c.job_id()?,
        reference: c.get("reference")?,
        task: Arc::from(task),
        payload: Payload::from_json_unchecked(payload),
        priority: c.u32("priority")?,
        status,
        created_at,
        run_at: c.time("run_at")?,
        expires_at: c.optional_time("expires_at")?,
        attempts: c.u32("attempts")?,
        max_attempts: c.optional_u32("max_attempts")?,
        last_error: c.get("last_error")?,
        result: c.optional_json("result")?,
        progress,
        finished_at: c.optional_time("finished_at")?,
        ran_by: None,
        callback: c.get("callback")?,
        callback_secret: c.get("callback_secret")?,
        group: c.get("group_key")?,
        // Stored lines follow (`attach_logs`).
        logs: log_created
            .then(|| LogLine::created(created_at))
            .into_iter()
            .collect(),
    })
}

/// Decodes a row of the `logs_of_*.sql` queries: the job's id and the line.
pub(super) fn log_from_row(row: &SqliteRow) -> Result<(JobId, LogLine), StoreError> {
    let c = Columns::new(row, "job_id")?;
    let line = LogLine {
        at: c.time("at")?,
        attempt: c.u32("attempt")?,
        message: c.get::<String>("message")?.into(),
        data: c.optional_json("data")?,
    };
    Ok((c.job_id()?, line))
}

/// Appends log rows to their jobs, keeping their order.
pub(super) fn attach_logs(jobs: &mut [Job], rows: &[SqliteRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let index: HashMap<JobId, usize> = jobs.iter().enumerate().map(|(i, j)| (j.id, i)).collect();
    for row in rows {
        let (id, line) = log_from_row(row)?;
        if let Some(&i) = index.get(&id) {
            jobs[i].logs.push(line);
        }
    }
    Ok(())
}

/// A `kessel_schedules` row (`schedules_list.sql`), every column checked.
pub(super) fn schedule_from_row(
    row: &SqliteRow,
) -> Result<crate::store::ScheduleRecord, StoreError> {
    let c = Columns::new(row, "name")?;
    let paused: i64 = c.get("paused")?;
    let last_job: Option<String> = c.get("last_job")?;
    let last_job = last_job
        .map(|id| id.parse::<JobId>().map_err(|e| c.corrupt("last_job", e)))
        .transpose()?;
    let mut record = crate::store::ScheduleRecord::new(
        c.id.clone(),
        c.get::<String>("task")?,
        c.get::<String>("payload")?,
        c.get::<String>("spec")?,
        c.time("next_run")?,
    );
    record.paused = match paused {
        0 => false,
        1 => true,
        other => return Err(c.corrupt("paused", format!("{other} is neither 0 nor 1"))),
    };
    record.last_run = c.optional_time("last_run")?;
    record.last_job = last_job;
    Ok(record)
}

pub(super) fn suspension_from_row(row: &SqliteRow) -> Result<crate::Suspension, StoreError> {
    let c = Columns::new(row, "name")?;
    let kind: String = c.get("kind")?;
    let what = crate::Suspended::from_parts(&kind, c.id.clone())
        .ok_or_else(|| c.corrupt("kind", format!("unknown kind `{kind}`")))?;
    Ok(crate::Suspension {
        what,
        by: c.get("suspended_by")?,
        since: c.time("since")?,
    })
}
