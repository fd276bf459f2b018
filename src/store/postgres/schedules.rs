//! Schedules of recurring jobs in the shared schema: the
//! [`Store`](crate::store::Store) schedule methods of [`PgStore`].
//!
//! The one that matters across processes is the advance: a compare-and-set
//! on the schedule's `next_run` and the insert of the tick's job, in one
//! transaction. Two processes advancing the same tick at once both run
//! the `UPDATE`; the second waits on the first's row lock and, once the
//! first commits, finds `next_run` moved on (PostgreSQL re-checks the
//! `WHERE` on the row's new version under READ COMMITTED) and changes
//! nothing, so it inserts nothing.

use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::rows::map_err;
use super::{Db, PgStore};
use crate::job::{Job, JobId};
use crate::store::{ScheduleAdvance, SchedulePause, ScheduleRecord, StoreError, Upserted};

/// The notification payload that says the schedules changed: an upsert
/// that changed a row, a removal or a pause sends it on the schema's
/// channel in its own statement, delivered when it commits, and every
/// process's listener (`shared.rs`) tells its schedule timer.
pub(super) const SCHEDULES_PAYLOAD: &str = "schedules";

impl Db {
    fn schedules(&self) -> String {
        self.sql.table("schedules")
    }

    pub(super) async fn schedules_list(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT name, task, payload, spec, paused, next_run, last_run, last_job
             FROM {} ORDER BY name",
            self.schedules()
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name").map_err(map_err)?;
                let corrupt = |e: sqlx::Error| StoreError::Corrupt {
                    id: format!("(schedule {name})"),
                    reason: e.to_string(),
                };
                let mut record = ScheduleRecord::new(
                    name.clone(),
                    row.try_get::<String, _>("task").map_err(corrupt)?,
                    row.try_get::<String, _>("payload").map_err(corrupt)?,
                    row.try_get::<String, _>("spec").map_err(corrupt)?,
                    row.try_get("next_run").map_err(corrupt)?,
                );
                record.paused = row.try_get("paused").map_err(corrupt)?;
                record.last_run = row.try_get("last_run").map_err(corrupt)?;
                record.last_job = row
                    .try_get::<Option<Uuid>, _>("last_job")
                    .map_err(corrupt)?
                    .map(JobId);
                Ok(record)
            })
            .collect()
    }

    pub(super) async fn schedule_upsert(
        &self,
        record: &ScheduleRecord,
    ) -> Result<Upserted, StoreError> {
        // No row back: the same definition was there (the update's WHERE
        // failed). `xmax = 0` tells a fresh row from an updated one.
        // A changed row also notifies the processes (none for an
        // unchanged one: every process upserts its schedules at start).
        let inserted: Option<bool> = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH up AS (
                 INSERT INTO {s} AS s (name, task, payload, spec, paused, next_run, last_run, last_job)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (name) DO UPDATE
                     SET task = EXCLUDED.task, payload = EXCLUDED.payload, spec = EXCLUDED.spec,
                         next_run = EXCLUDED.next_run
                     WHERE (s.task, s.payload, s.spec)
                           IS DISTINCT FROM (EXCLUDED.task, EXCLUDED.payload, EXCLUDED.spec)
                 RETURNING (xmax = 0) AS created)
             SELECT u.created, pg_notify($9, $10) FROM up AS u",
            s = self.schedules()
        )))
        .bind(&record.name)
        .bind(&record.task)
        .bind(&record.payload)
        .bind(&record.spec)
        .bind(record.paused)
        .bind(record.next_run)
        .bind(record.last_run)
        .bind(record.last_job.map(|id| id.0))
        .bind(&self.sql.channel)
        .bind(SCHEDULES_PAYLOAD)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(match inserted {
            None => Upserted::Unchanged,
            Some(true) => Upserted::Created,
            Some(false) => Upserted::Changed,
        })
    }

    pub(super) async fn schedule_remove(&self, name: &str) -> Result<bool, StoreError> {
        let removed: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH gone AS (DELETE FROM {} WHERE name = $1 RETURNING 1)
             SELECT (SELECT count(*) FROM gone), pg_notify($2, $3)",
            self.schedules()
        )))
        .bind(name)
        .bind(&self.sql.channel)
        .bind(SCHEDULES_PAYLOAD)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(removed > 0)
    }

    pub(super) async fn schedule_pause(&self, pause: &SchedulePause) -> Result<bool, StoreError> {
        let changed: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH paused AS (
                 UPDATE {} SET paused = $2, next_run = COALESCE($3, next_run) WHERE name = $1
                 RETURNING 1)
             SELECT (SELECT count(*) FROM paused), pg_notify($4, $5)",
            self.schedules()
        )))
        .bind(&pause.name)
        .bind(pause.paused)
        .bind(pause.next_run)
        .bind(&self.sql.channel)
        .bind(SCHEDULES_PAYLOAD)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(changed > 0)
    }

    /// The compare-and-set, then (only if it changed the row) the jobs,
    /// with the store's own insert, in one transaction.
    pub(super) async fn schedule_advance(
        &self,
        advance: &ScheduleAdvance,
        jobs: &[Job],
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET next_run = $3, last_run = COALESCE($4, last_run),
                 last_job = COALESCE($5, last_job)
             WHERE name = $1 AND next_run = $2 AND ($6 OR NOT paused)",
            self.schedules()
        )))
        .bind(&advance.name)
        .bind(advance.due)
        .bind(advance.next)
        .bind(advance.last_run)
        .bind(advance.last_job.map(|id| id.0))
        .bind(advance.even_if_paused)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            // Another process took the tick (or it was paused, removed).
            tx.rollback().await.map_err(map_err)?;
            return Ok(false);
        }
        self.jobs_insert_rows(&mut *tx, jobs, super::wake::Wake::AfterCommit)
            .await?;
        tx.commit().await.map_err(map_err)?;
        self.wake_after_commit().await;
        Ok(true)
    }
}

impl PgStore {
    pub(super) async fn schedules_list_(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let db = self.db.clone();
        self.exec
            .run(async move { db.schedules_list().await })
            .await
    }

    pub(super) async fn schedule_upsert_(
        &self,
        record: &ScheduleRecord,
    ) -> Result<Upserted, StoreError> {
        let (db, record) = (self.db.clone(), record.clone());
        self.exec
            .run(async move { db.schedule_upsert(&record).await })
            .await
    }

    pub(super) async fn schedule_remove_(&self, name: &str) -> Result<bool, StoreError> {
        let (db, name) = (self.db.clone(), name.to_owned());
        self.exec
            .run(async move { db.schedule_remove(&name).await })
            .await
    }

    pub(super) async fn schedule_pause_(&self, pause: &SchedulePause) -> Result<bool, StoreError> {
        let (db, pause) = (self.db.clone(), pause.clone());
        self.exec
            .run(async move { db.schedule_pause(&pause).await })
            .await
    }

    pub(super) async fn schedule_advance_(
        &self,
        advance: &ScheduleAdvance,
        jobs: &[Job],
    ) -> Result<bool, StoreError> {
        let (db, advance, jobs) = (self.db.clone(), advance.clone(), jobs.to_vec());
        self.exec
            .run(async move { db.schedule_advance(&advance, &jobs).await })
            .await
    }
}
