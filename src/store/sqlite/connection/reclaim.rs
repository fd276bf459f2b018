//! Giving free pages back to the file system, a step at a time, while
//! no command waits.

use sqlx::sqlite::SqliteConnection;

use super::exec;
use crate::store::sqlite::errors::store_error;
use crate::store::StoreError;

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
pub(super) struct Reclaim {
    /// The file reclaims (incremental auto-vacuum is on).
    enabled: bool,
    /// A step may have something to do.
    pub(super) due: bool,
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
    pub(super) fn new(enabled: bool) -> Self {
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
    pub(super) fn resting(&self) -> Option<std::time::Duration> {
        let until = self.rest_until?;
        let now = std::time::Instant::now();
        (until > now).then(|| until - now)
    }

    /// A step that began at `started` ended: rest in proportion while a
    /// prune is under way, not otherwise.
    pub(super) fn rest_after(&mut self, started: std::time::Instant) {
        let now = std::time::Instant::now();
        self.rest_until =
            std::mem::take(&mut self.pruning).then(|| now + (now - started) * RECLAIM_REST_FACTOR);
    }

    /// A delete freed pages: steps are due again, and their progress is
    /// counted from here. (Counted from before the delete, the pages it
    /// freed looked like a step that freed none, and reclaiming stopped
    /// half way whenever a prune batch came between two steps.)
    pub(super) fn freed(&mut self) {
        self.due = self.enabled;
        self.last_free = i64::MAX;
        self.pruning = true;
    }

    pub(super) async fn step(&mut self, conn: &mut SqliteConnection) {
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
