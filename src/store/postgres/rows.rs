//! Reading rows back into kessel's types, and mapping sqlx errors onto
//! [`StoreError`] kinds. A row that cannot be read is a typed
//! [`StoreError::Corrupt`] naming the job, never a panic.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use crate::job::{Job, JobId, JobStatus, LogLine, Payload, Progress};
use crate::store::StoreError;

pub(super) const JOB_COLUMNS: &str =
    "id, reference, task, payload, priority, status, created_at, run_at, expires_at, \
     attempts, max_attempts, last_error, result, progress_current, progress_total, finished_at, \
     log_created, ran_by, callback, group_key, callback_secret";

/// Maps a sqlx error onto a normalised kind.
pub(super) fn map_err(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // disk_full, out_of_memory, too_many_connections, admin/crash shutdown
            Some("53100") | Some("53200") => StoreError::Full(Arc::new(err)),
            Some("53300") | Some("57P01") | Some("57P02") | Some("57P03") | Some("08006")
            | Some("08003") => StoreError::Unavailable(Arc::new(err)),
            _ => StoreError::Other(Arc::new(err)),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Arc::new(err)),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt {
            id: "(unknown)".into(),
            reason: err.to_string(),
        },
        _ => StoreError::Other(Arc::new(err)),
    }
}

fn corrupt(id: Uuid, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        id: id.to_string(),
        reason: reason.to_string(),
    }
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    id: Uuid,
    column: &str,
) -> Result<T, StoreError> {
    row.try_get(column)
        .map_err(|e| corrupt(id, format!("column {column}: {e}")))
}

fn count(id: Uuid, column: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value)
        .map_err(|_| corrupt(id, format!("column {column} is out of range: {value}")))
}

/// Decodes a job row (its columns as [`JOB_COLUMNS`]), with the first line
/// of its log when that is implied (`log_created`), without its stored
/// lines.
pub(super) fn job_from_row(row: &PgRow) -> Result<Job, StoreError> {
    let id: Uuid = row.try_get("id").map_err(map_err)?;
    let status: String = get(row, id, "status")?;
    let status: JobStatus = status.parse().map_err(|e| corrupt(id, e))?;
    let priority: i64 = get(row, id, "priority")?;
    let attempts: i64 = get(row, id, "attempts")?;
    let max_attempts: Option<i64> = get(row, id, "max_attempts")?;
    let payload: String = get(row, id, "payload")?;
    let result: Option<String> = get(row, id, "result")?;
    let result = result
        .map(|r| {
            serde_json::from_str(&r)
                .map_err(|e| corrupt(id, format!("column result is not JSON: {e}")))
        })
        .transpose()?;
    let progress_current: Option<i64> = get(row, id, "progress_current")?;
    let progress_total: Option<i64> = get(row, id, "progress_total")?;
    let progress = match (progress_current, progress_total) {
        (Some(c), Some(t)) => Some(Progress {
            current: u64::try_from(c).map_err(|_| corrupt(id, "negative progress"))?,
            total: u64::try_from(t).map_err(|_| corrupt(id, "negative progress"))?,
        }),
        _ => None,
    };
    let task: String = get(row, id, "task")?;
    let created_at: DateTime<Utc> = get(row, id, "created_at")?;
    let log_created: bool = get(row, id, "log_created")?;
    Ok(Job {
        id: JobId(id),
        reference: get(row, id, "reference")?,
        task: task.into(),
        payload: Payload::from_json_unchecked(payload),
        priority: count(id, "priority", priority)?,
        status,
        created_at,
        run_at: get(row, id, "run_at")?,
        expires_at: get(row, id, "expires_at")?,
        attempts: count(id, "attempts", attempts)?,
        max_attempts: max_attempts
            .map(|m| count(id, "max_attempts", m))
            .transpose()?,
        last_error: get(row, id, "last_error")?,
        result,
        progress,
        finished_at: get(row, id, "finished_at")?,
        ran_by: get(row, id, "ran_by")?,
        callback: get(row, id, "callback")?,
        callback_secret: get(row, id, "callback_secret")?,
        group: get(row, id, "group_key")?,
        // Stored lines follow (`Db::attach_logs`).
        logs: log_created
            .then(|| LogLine::created(created_at))
            .into_iter()
            .collect(),
    })
}

pub(super) fn log_from_row(row: &PgRow) -> Result<(Uuid, LogLine), StoreError> {
    let id: Uuid = row.try_get("job_id").map_err(map_err)?;
    let at: DateTime<Utc> = get(row, id, "at")?;
    let attempt: i64 = get(row, id, "attempt")?;
    let message: String = get(row, id, "message")?;
    let data: Option<String> = get(row, id, "data")?;
    let data = data
        .map(|d| {
            serde_json::from_str(&d).map_err(|e| corrupt(id, format!("log data is not JSON: {e}")))
        })
        .transpose()?;
    Ok((
        id,
        LogLine {
            at,
            attempt: count(id, "attempt", attempt)?,
            message: message.into(),
            data,
        },
    ))
}
