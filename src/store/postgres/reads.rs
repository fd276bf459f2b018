//! Reading and deleting jobs: the pending jobs at start, one job, lists,
//! counts by status, and deletion by id or filter.

use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};

use super::rows::{job_from_row, map_err, JOB_COLUMNS};
use super::{Db, PENDING};
use crate::job::{Job, JobId};
use crate::store::{JobDelete, JobQuery, Order, StatusCount, StoreError};

impl Db {
    pub(super) async fn jobs_pending(&self) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM {} WHERE status IN {PENDING} ORDER BY id",
            self.sql.table("jobs")
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_logs(&mut jobs).await?;
        Ok(jobs)
    }

    pub(super) async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM {} WHERE id = $1",
            self.sql.table("jobs")
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        let Some(row) = row else { return Ok(None) };
        let mut jobs = vec![job_from_row(&row)?];
        self.attach_logs(&mut jobs).await?;
        Ok(jobs.pop())
    }

    pub(super) async fn jobs_query(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        // In id order, so along the primary key; the filters are checked
        // on the way.
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {JOB_COLUMNS} FROM {} WHERE true",
            self.sql.table("jobs")
        ));
        if !query.statuses.is_empty() {
            let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
            qb.push(" AND status = ANY(").push_bind(statuses).push(")");
        }
        if !query.tasks.is_empty() {
            qb.push(" AND task = ANY(")
                .push_bind(query.tasks.clone())
                .push(")");
        }
        if let Some(r) = &query.reference {
            qb.push(" AND reference = ").push_bind(r.clone());
        }
        if let Some(t) = query.created_after {
            qb.push(" AND created_at >= ").push_bind(t);
        }
        if let Some(t) = query.created_before {
            qb.push(" AND created_at < ").push_bind(t);
        }
        qb.push(match query.order {
            Order::NewestFirst => " ORDER BY id DESC",
            Order::OldestFirst => " ORDER BY id ASC",
        })
        .push(" LIMIT ")
        .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .push(" OFFSET ")
        .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let rows = qb.build().fetch_all(&self.pool).await.map_err(map_err)?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_logs(&mut jobs).await?;
        Ok(jobs)
    }

    pub(super) async fn jobs_count(&self) -> Result<Vec<StatusCount>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT task, status, count(*) AS n FROM {} GROUP BY task, status ORDER BY task, status",
            self.sql.table("jobs")
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let task: String = row.try_get("task").map_err(map_err)?;
            let status: String = row.try_get("status").map_err(map_err)?;
            let count: i64 = row.try_get("n").map_err(map_err)?;
            let status =
                status
                    .parse()
                    .map_err(|e: crate::job::UnknownStatus| StoreError::Corrupt {
                        id: format!("(count of {task})"),
                        reason: e.to_string(),
                    })?;
            out.push(StatusCount {
                task,
                status,
                count: count as u64,
            });
        }
        out.sort_by(|a, b| (&a.task, a.status).cmp(&(&b.task, b.status)));
        Ok(out)
    }

    /// Removes one final job and its log lines.
    pub(super) async fn job_delete(&self, id: JobId) -> Result<bool, StoreError> {
        let jobs = self.sql.table("jobs");
        let deleted: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH gone AS (
                 DELETE FROM {jobs} WHERE id = $1
                   AND status IN ('completed', 'buried', 'expired', 'cancelled')
                 RETURNING id),
             gone_logs AS (DELETE FROM {logs} WHERE job_id IN (SELECT id FROM gone))
             SELECT count(*) FROM gone",
            logs = self.sql.table("job_logs"),
        )))
        .bind(id.0)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(deleted > 0)
    }

    pub(super) async fn jobs_delete(&self, params: &JobDelete) -> Result<u64, StoreError> {
        let statuses: Vec<&str> = params
            .statuses
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect();
        if statuses.is_empty() {
            return Ok(0);
        }
        let limit = params.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let jobs = self.sql.table("jobs");
        // The oldest first, along `jobs_finished`: only a branch naming
        // `finished_at IS NOT NULL` may use that partial index (without it
        // the plan sorted the whole table for each batch: 0.86 s a batch
        // of 1,024 at 2M completed jobs, 7.6 ms with it). Jobs without a
        // finish time come after them (as `NULLS LAST` would put them),
        // and only when a cut-off is not given; their branch runs only if
        // the first one did not fill the limit. The rows are then taken
        // through their keys (`= ANY (ARRAY(..))`, not `IN (..)`): the
        // generic plan of a prepared statement does not know the limit,
        // and joined the batch with a scan of the whole jobs table (1.2 s
        // a batch, 5 ms through the keys).
        let filter = "status = ANY($1) AND (cardinality($2::text[]) = 0 OR task = ANY($2))";
        // Log lines go with their jobs (there is no foreign key to cascade).
        let deleted: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH gone AS (
                 DELETE FROM {jobs} WHERE id = ANY (ARRAY(
                     SELECT id FROM (
                         (SELECT id FROM {jobs}
                          WHERE finished_at IS NOT NULL AND {filter}
                            AND ($3::timestamptz IS NULL OR finished_at < $3)
                          ORDER BY finished_at, id
                          LIMIT $4)
                         UNION ALL
                         (SELECT id FROM {jobs}
                          WHERE finished_at IS NULL AND {filter} AND $3::timestamptz IS NULL)
                     ) AS oldest_first
                     LIMIT $4))
                 RETURNING id),
             gone_logs AS (DELETE FROM {logs} WHERE job_id = ANY (ARRAY(SELECT id FROM gone)))
             SELECT count(*) FROM gone",
            logs = self.sql.table("job_logs"),
        )))
        .bind(statuses)
        .bind(&params.tasks)
        .bind(params.finished_before)
        .bind(limit)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(deleted as u64)
    }
}
