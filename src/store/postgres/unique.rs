//! Unique jobs on PostgreSQL: a unique index on the key a job keeps while
//! it may hold it, and one transaction per create that frees the key from
//! a row whose hold has ended, looks for a live holder, and stores the
//! job. A transaction-scoped advisory lock on the key makes creators of
//! the same key, in any process, take turns; the index is the backstop.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::rows::map_err;
use super::{Db, NewJobs};
use crate::job::JobId;
use crate::store::{Inserted, StoreError, UniqueHold};

/// Whether the row `u` of the jobs table holds its key live at `$2`;
/// `logs` is the log table. A job claimed and not yet started is stored
/// as running but still waits (see `claim::started_sql`).
fn live(logs: &str) -> String {
    format!(
        "((u.unique_scope = 0 AND (u.status IN ('scheduled', 'ready', 'retrying')
                                   OR (u.status = 'running' AND NOT {started})))
          OR (u.unique_scope = 1 AND u.status IN ('scheduled', 'ready', 'running', 'retrying'))
          OR (u.unique_scope = 2 AND u.unique_until > $2))",
        started = super::claim::started_sql(logs, "u")
    )
}

impl Db {
    /// Stores the job of `batch` (one job) unless a live job holds
    /// `hold`'s key at `now`.
    pub(super) async fn jobs_insert_unique(
        &self,
        id: JobId,
        batch: &NewJobs,
        hold: &UniqueHold,
        now: DateTime<Utc>,
    ) -> Result<Inserted, StoreError> {
        let jobs = self.sql.table("jobs");
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7013))")
            .bind(&hold.key)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {jobs} AS u SET unique_key = NULL WHERE u.unique_key = $1 AND NOT {live}",
            live = live(&self.sql.table("job_logs"))
        )))
        .bind(&hold.key)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let held: Option<uuid::Uuid> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id FROM {jobs} WHERE unique_key = $1"
        )))
        .bind(&hold.key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(holder) = held {
            tx.commit().await.map_err(map_err)?;
            return Ok(Inserted::Duplicate(JobId(holder)));
        }
        self.jobs_insert_on(&mut tx, batch).await?;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {jobs} SET unique_key = $1, unique_scope = $2, unique_until = $3 WHERE id = $4"
        )))
        .bind(&hold.key)
        .bind(hold.scope.code() as i16)
        .bind(hold.until)
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Inserted::New)
    }

    /// The job holding `key` live at `now`.
    pub(super) async fn job_unique_holder(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<JobId>, StoreError> {
        let held: Option<uuid::Uuid> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT u.id FROM {} AS u WHERE u.unique_key = $1 AND {live}",
            self.sql.table("jobs"),
            live = live(&self.sql.table("job_logs"))
        )))
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(held.map(JobId))
    }
}
