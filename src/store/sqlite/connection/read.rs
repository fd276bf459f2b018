//! The reads the connection thread answers between groups of writes:
//! pending jobs, one job, a page of jobs (each with its logs), counts,
//! a unique key's holder, schedules and suspensions.

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::Row;

use super::{Command, QueryParams};
use crate::job::{Job, JobId, JobStatus};
use crate::store::sqlite::errors::store_error;
use crate::store::sqlite::rows::{
    attach_logs, job_from_row, schedule_from_row, suspension_from_row,
};
use crate::store::{StatusCount, StoreError};

const JOB_GET: &str = concat!(
    include_str!("../sql/job_select.sql"),
    include_str!("../sql/job_get.sql")
);
const JOBS_PENDING: &str = concat!(
    include_str!("../sql/job_select.sql"),
    include_str!("../sql/jobs_pending.sql")
);
const JOBS_NEWEST_FIRST: &str = concat!(
    include_str!("../sql/job_select.sql"),
    include_str!("../sql/jobs_query.sql"),
    include_str!("../sql/order_newest_first.sql")
);
const JOBS_OLDEST_FIRST: &str = concat!(
    include_str!("../sql/job_select.sql"),
    include_str!("../sql/jobs_query.sql"),
    include_str!("../sql/order_oldest_first.sql")
);
/// As [`JOBS_NEWEST_FIRST`] for a query that names a reference: through
/// the index by reference (a condition `?3 IS NULL OR reference = ?3`
/// cannot use it, as the plan is made before `?3` is known).
pub(in crate::store::sqlite) const JOBS_BY_REFERENCE_NEWEST_FIRST: &str = concat!(
    include_str!("../sql/job_select.sql"),
    include_str!("../sql/jobs_by_reference.sql"),
    include_str!("../sql/order_newest_first.sql")
);
/// As [`JOBS_OLDEST_FIRST`] for a query that names a reference.
pub(in crate::store::sqlite) const JOBS_BY_REFERENCE_OLDEST_FIRST: &str = concat!(
    include_str!("../sql/job_select.sql"),
    include_str!("../sql/jobs_by_reference.sql"),
    include_str!("../sql/order_oldest_first.sql")
);
const JOBS_COUNT: &str = include_str!("../sql/jobs_count.sql");
const STATUS_COUNT: &str = include_str!("../sql/status_count.sql");
pub(super) const UNIQUE_HOLDER: &str = include_str!("../sql/unique_holder.sql");
const LOGS_OF_JOB: &str = include_str!("../sql/logs_of_job.sql");
const LOGS_OF_JOBS: &str = include_str!("../sql/logs_of_jobs.sql");
const LOGS_OF_PENDING: &str = include_str!("../sql/logs_of_pending.sql");
const SCHEDULES_LIST: &str = include_str!("../sql/schedules_list.sql");
const SUSPENSIONS_LIST: &str = include_str!("../sql/suspensions_list.sql");

pub(super) async fn answer(conn: &mut SqliteConnection, read: Command) {
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
