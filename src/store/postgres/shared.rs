//! The shared-store capability of [`PgStore`]: claims, leases, rescue,
//! cross-process cancel and notifications.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt};
use sqlx::postgres::PgListener;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::rounds::Rounds;
use super::rows::{map_err, JOB_COLUMNS};
use super::schedules::SCHEDULES_PAYLOAD;
use super::suspensions::SUSPENSIONS_PAYLOAD;
use super::{Db, PgStore};
use crate::job::{Job, JobId, JobStatus};
use crate::node::Node;
use crate::store::{
    CancelOutcome, ClaimReply, HeartbeatReply, JobClaim, JobHeartbeat, LeaderElect, NodeBeat,
    SharedStore, StoreError,
};

use super::claim::{self, CLAIMABLE};

/// A condition that is always true and makes the statement's own
/// transaction commit without waiting for its WAL to reach disk
/// (`synchronous_commit = off` for this transaction only; evaluated once).
///
/// Claims and lease renewals use it: they are leases, not state. Should the
/// database server crash within the fraction of a second before their WAL
/// is flushed, the recovered database has the job unleased (or its lease
/// shorter) and another process may run it again: the at-least-once that
/// a lapsed lease already means. It saves a disk flush (~3 ms on the
/// benchmark machine) on every claim, which is on the way of every job
/// from creation to start. Creates, state changes, releases and cancels
/// commit durably as before.
pub(super) const LEASE_COMMIT: &str =
    "(SELECT set_config('synchronous_commit', 'off', true)) = 'off'";

/// The job columns a claim returns, of the updated rows `j`.
pub(super) fn returned_columns() -> String {
    JOB_COLUMNS
        .split(", ")
        .map(|c| format!("j.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Db {
    /// A claim's condition on each served task `t.task`: not suspended by
    /// name in the store. The scheduler leaves suspended tasks out of its
    /// claims once it has heard of the suspension; this makes every claim
    /// that starts after the suspension's commit leave them out too (a
    /// tag's suspension, whose tasks the store does not know, is the
    /// scheduler's alone).
    pub(super) fn not_suspended(&self) -> String {
        format!(
            "NOT EXISTS (SELECT 1 FROM {} AS s WHERE s.kind = 'task' AND s.name = t.task)",
            self.sql.table("suspensions")
        )
    }

    pub(super) async fn jobs_claim(&self, params: &JobClaim) -> Result<ClaimReply, StoreError> {
        if params.tasks.is_empty() || params.limit == 0 {
            return Ok(ClaimReply::default());
        }
        if !params.running_limits.is_empty()
            || !params.group_running_limits.is_empty()
            || !params.rate_limits.is_empty()
            || !params.group_rate_limits.is_empty()
            || !params.tag_limits.is_empty()
            || !params.task_caps.is_empty()
            || !params.tag_caps.is_empty()
        {
            return self.jobs_claim_limited(params).await;
        }
        let jobs = self.jobs_table();
        let not_suspended = self.not_suspended();
        // See `claim.rs` for what is picked. The taken rows are updated
        // through the primary key, one lookup each: joined with `FROM
        // picked`, the generic plan hashed the whole table for every
        // claim (a third of a claim of 1,600 rows from 100,000).
        // One row more, of NULLs, when it takes nothing: the row still
        // says whether grouped jobs wait, so an empty claim need not ask
        // again the fair way to find out (it did, a second round trip for
        // every claim that came back empty: one claim in ten at a few
        // thousand jobs a second, where the wake-ups of jobs a claim
        // already took start another).
        let sql = |form: claim::Form| {
            format!(
                "{picked},
                 claimed AS (
                     UPDATE {jobs} AS j SET {set}
                     WHERE j.id = ANY (ARRAY(SELECT id FROM picked)) AND {LEASE_COMMIT}
                     RETURNING {columns})
                 {rows}",
                picked = claim::picked_sql(form, &jobs, &not_suspended, None, (6, 7)),
                set = claim::CLAIM_SET,
                columns = returned_columns(),
                rows = claim::claimed_rows(
                    &claim::groups_waiting_sql(&jobs),
                    "FROM (VALUES (true)) AS one (x)"
                ),
            )
        };
        let (names, strides) = claim::group_params(&params.group_weights);
        let mut rounds = Rounds::new(self, params.limit);
        while let Some((form, want)) = rounds.next() {
            let statement = sql(form);
            let mut query = sqlx::query(AssertSqlSafe(statement))
                .bind(&params.tasks)
                .bind(params.due_by)
                .bind(i64::try_from(want).unwrap_or(i64::MAX))
                .bind(params.owner)
                .bind(params.lease_until);
            if form != claim::Form::Fast {
                query = query.bind(&names).bind(&strides);
            }
            let rows = query.fetch_all(self.pool()).await.map_err(map_err)?;
            rounds.took(&rows)?;
        }
        Ok(ClaimReply {
            jobs: rounds.taken,
            retry_at: None,
            places: Vec::new(),
            tag_places: Vec::new(),
        })
    }

    /// Renews the leases of the owner's jobs in `params`, and its places
    /// of the tasks of those jobs (schema version 20) and of their tags
    /// (version 21): places of a task or tag it no longer holds a job of
    /// are not renewed, and lapse.
    pub(super) async fn jobs_heartbeat(
        &self,
        params: &JobHeartbeat,
    ) -> Result<HeartbeatReply, StoreError> {
        if params.ids.is_empty() {
            return Ok(HeartbeatReply::default());
        }
        let ids: Vec<Uuid> = params.ids.iter().map(|i| i.0).collect();
        let rows = sqlx::query(AssertSqlSafe(format!(
            "WITH places AS (
                 UPDATE {places} AS p SET until_us = $4
                 WHERE p.owner = $1 AND p.until_us < $4
                   AND EXISTS (SELECT 1 FROM {jobs} AS h
                               WHERE h.id = ANY($2) AND h.leased_by = $1 AND h.task = p.task)),
                  tag_places AS (
                 UPDATE {tag_places} AS p SET until_us = $4
                 WHERE p.owner = $1 AND p.until_us < $4
                   AND EXISTS (SELECT 1 FROM {jobs} AS h
                               WHERE h.id = ANY($2) AND h.leased_by = $1 AND h.task = ANY (p.tasks)))
             UPDATE {jobs} SET lease_until = $3 WHERE id = ANY($2) AND leased_by = $1 AND {LEASE_COMMIT}
             RETURNING id, cancel_requested",
            places = self.sql.table("running_places"),
            tag_places = self.sql.table("tag_places"),
            jobs = self.jobs_table()
        )))
        .bind(params.owner)
        .bind(&ids)
        .bind(params.lease_until)
        .bind(params.lease_until.timestamp_micros())
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        let mut reply = HeartbeatReply::default();
        let mut renewed = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            let id: Uuid = row.try_get("id").map_err(map_err)?;
            let cancel: bool = row.try_get("cancel_requested").map_err(map_err)?;
            renewed.insert(id);
            if cancel {
                reply.cancel_requested.push(JobId(id));
            }
        }
        reply.lost = params
            .ids
            .iter()
            .copied()
            .filter(|i| !renewed.contains(&i.0))
            .collect();
        Ok(reply)
    }

    pub(super) async fn jobs_release(&self, owner: Uuid, ids: &[JobId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        sqlx::query(AssertSqlSafe(format!(
            // A job still as its claim left it (the owner recorded
            // nothing since: see `claim::CLAIM_SET`) goes back ready, the
            // attempt the claim counted undone; the scheduler records a
            // job's state before it gives it back, so this is for an owner
            // that does not.
            "WITH released AS (
                 UPDATE {} SET leased_by = NULL, lease_until = NULL,
                     status = CASE WHEN status = 'running' THEN 'ready' ELSE status END,
                     attempts = CASE WHEN status = 'running' THEN GREATEST(attempts - 1, 0) ELSE attempts END
                 WHERE id = ANY($2) AND leased_by = $1)
             SELECT pg_notify($3, '')",
            self.jobs_table()
        )))
        .bind(owner)
        .bind(&ids)
        .bind(self.channel())
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn jobs_rescue(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let jobs = self.jobs_table();
        let logs = self.logs_table();
        let rescued: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH lapsed AS (
                 -- `started`: a job stored as running made the attempt the
                 -- claim counted only if its start was recorded (its
                 -- `started` line, which the scheduler writes as it hands
                 -- the job to a worker): a job claimed and never started
                 -- goes back as it was, the claim's attempt undone
                 SELECT id, leased_by AS owner,
                        status <> 'running' OR leased_by IS NULL OR {started} AS started
                 FROM {jobs} AS x
                 WHERE id IN (
                         -- each kind through its own index, not a table scan
                         SELECT id FROM {jobs} WHERE leased_by IS NOT NULL AND lease_until < $1
                         UNION ALL
                         -- running but held by nobody: cut off outside any lease
                         SELECT id FROM {jobs} WHERE leased_by IS NULL AND status = 'running')
                   AND ((leased_by IS NOT NULL AND lease_until < $1)
                        OR (leased_by IS NULL AND status = 'running'))
                   AND status IN ('scheduled', 'ready', 'retrying', 'running')
                 FOR UPDATE SKIP LOCKED),
             rescued AS (
                 UPDATE {jobs} AS j SET
                     leased_by = NULL, lease_until = NULL,
                     status = CASE WHEN j.cancel_requested THEN 'cancelled'
                                   WHEN j.status = 'running' THEN 'ready' ELSE j.status END,
                     attempts = CASE WHEN lapsed.started THEN j.attempts ELSE GREATEST(j.attempts - 1, 0) END,
                     finished_at = CASE WHEN j.cancel_requested THEN $1 ELSE j.finished_at END,
                     last_error = CASE WHEN j.cancel_requested THEN 'cancelled'
                                       WHEN j.status = 'running' AND lapsed.started
                                           THEN 'the process running this attempt stopped renewing its lease'
                                       ELSE j.last_error END
                 FROM lapsed WHERE j.id = lapsed.id
                 RETURNING j.id, j.attempts, lapsed.owner, lapsed.started),
             logged AS (
                 INSERT INTO {logs} (job_id, at, attempt, message)
                 SELECT id, $1, attempts,
                        'lease lapsed (held by ' || coalesce(owner::text, 'nobody') || ')'
                        || CASE WHEN started THEN '' ELSE ' before it started' END
                        || ': returned to the queue'
                 FROM rescued)
             SELECT count(*) FROM rescued",
            started = claim::started_sql(&logs, "x"),
        )))
        .bind(now)
        .fetch_one(self.pool())
        .await
        .map_err(map_err)?;
        if rescued > 0 {
            self.notify_work().await?;
        }
        Ok(rescued as u64)
    }

    pub(super) async fn jobs_expire(
        &self,
        now: DateTime<Utc>,
        ids: &[JobId],
    ) -> Result<u64, StoreError> {
        let jobs = self.jobs_table();
        let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        // The named jobs by id, or the sweep through `jobs_expiring`: two
        // statements, so each is planned on its index.
        let which = if ids.is_empty() {
            "expires_at IS NOT NULL AND cardinality($2::uuid[]) = 0"
        } else {
            "id = ANY($2)"
        };
        let expired: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH expired AS (
                 UPDATE {jobs} SET status = 'expired', finished_at = $1, last_error = 'not started before it expired'
                 WHERE {which} AND leased_by IS NULL AND status IN {CLAIMABLE} AND expires_at <= $1
                 RETURNING id, attempts),
             logged AS (
                 INSERT INTO {logs} (job_id, at, attempt, message)
                 SELECT id, $1, attempts, 'expired: not started before it expired' FROM expired)
             SELECT count(*) FROM expired",
            logs = self.logs_table()
        )))
        .bind(now)
        .bind(&ids)
        .fetch_one(self.pool())
        .await
        .map_err(map_err)?;
        Ok(expired as u64)
    }

    pub(super) async fn job_cancel(
        &self,
        id: JobId,
        now: DateTime<Utc>,
    ) -> Result<CancelOutcome, StoreError> {
        let jobs = self.jobs_table();
        let mut tx = self.pool().begin().await.map_err(map_err)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT status, leased_by FROM {jobs} WHERE id = $1 FOR UPDATE"
        )))
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
        let Some(row) = row else {
            return Ok(CancelOutcome::Unknown);
        };
        let status: String = row.try_get("status").map_err(map_err)?;
        let status: JobStatus =
            status
                .parse()
                .map_err(|e: crate::job::UnknownStatus| StoreError::Corrupt {
                    id: id.to_string(),
                    reason: e.to_string(),
                })?;
        let leased: Option<Uuid> = row.try_get("leased_by").map_err(map_err)?;
        let outcome = if status.is_final() {
            CancelOutcome::Final(status)
        } else if leased.is_some() {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {jobs} SET cancel_requested = true WHERE id = $1"
            )))
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            CancelOutcome::Requested
        } else {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {jobs} SET status = 'cancelled', finished_at = $2, last_error = 'cancelled' WHERE id = $1"
            )))
            .bind(id.0)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (job_id, at, attempt, message) SELECT id, $2, attempts, 'cancelled' FROM {jobs} WHERE id = $1",
                self.logs_table()
            )))
            .bind(id.0)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            CancelOutcome::Cancelled
        };
        tx.commit().await.map_err(map_err)?;
        Ok(outcome)
    }

    pub(super) async fn jobs_next_due(
        &self,
        tasks: &[String],
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        if tasks.is_empty() {
            return Ok(None);
        }
        // The first entry of each task's range of `jobs_next_due` (whose
        // predicate names `lease_until`: null exactly when `leased_by` is).
        // Jobs due when created are not in it: their insert's wake-up
        // brings the claim that takes them.
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT min(n.run_at) FROM UNNEST($1::text[]) AS t(task) CROSS JOIN LATERAL (
                 SELECT run_at FROM {} WHERE task = t.task AND leased_by IS NULL AND lease_until IS NULL
                   AND run_at > created_at AND status IN {CLAIMABLE}
                 ORDER BY run_at LIMIT 1) AS n",
            self.jobs_table()
        )))
        .bind(tasks)
        .fetch_one(self.pool())
        .await
        .map_err(map_err)
    }
}

#[async_trait]
impl SharedStore for PgStore {
    fn owner(&self) -> Uuid {
        self.db.owner_id()
    }

    fn lease(&self) -> Duration {
        self.db.lease_duration()
    }

    async fn jobs_claim(&self, params: &JobClaim) -> Result<Vec<Job>, StoreError> {
        Ok(self.jobs_claim_reply(params).await?.jobs)
    }

    async fn jobs_claim_reply(&self, params: &JobClaim) -> Result<ClaimReply, StoreError> {
        let (db, params) = (self.db.clone(), params.clone());
        self.exec
            .run(async move { db.jobs_claim(&params).await })
            .await
    }

    async fn jobs_heartbeat(&self, params: &JobHeartbeat) -> Result<HeartbeatReply, StoreError> {
        let (db, params) = (self.db.clone(), params.clone());
        self.exec
            .run(async move { db.jobs_heartbeat(&params).await })
            .await
    }

    async fn jobs_release(&self, owner: Uuid, ids: &[JobId]) -> Result<(), StoreError> {
        let (db, ids) = (self.db.clone(), ids.to_vec());
        self.exec
            .run(async move { db.jobs_release(owner, &ids).await })
            .await
    }

    async fn jobs_rescue(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let db = self.db.clone();
        self.exec
            .run(async move { db.jobs_rescue(now).await })
            .await
    }

    async fn jobs_expire(&self, now: DateTime<Utc>, ids: &[JobId]) -> Result<u64, StoreError> {
        let (db, ids) = (self.db.clone(), ids.to_vec());
        self.exec
            .run(async move { db.jobs_expire(now, &ids).await })
            .await
    }

    async fn job_cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        let db = self.db.clone();
        self.exec
            .run(async move { db.job_cancel(id, now).await })
            .await
    }

    async fn jobs_next_due(&self, tasks: &[String]) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (db, tasks) = (self.db.clone(), tasks.to_vec());
        self.exec
            .run(async move { db.jobs_next_due(&tasks).await })
            .await
    }

    async fn node_beat(&self, beat: &NodeBeat) -> Result<(), StoreError> {
        self.node_beat_(beat).await
    }

    async fn node_leave(&self, id: Uuid) -> Result<(), StoreError> {
        self.node_leave_(id).await
    }

    async fn nodes_list(&self, now: DateTime<Utc>) -> Result<Vec<Node>, StoreError> {
        self.nodes_list_(now).await
    }

    async fn nodes_prune(&self, gone_before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.nodes_prune_(gone_before).await
    }

    async fn leader_elect(&self, bid: &LeaderElect) -> Result<bool, StoreError> {
        self.leader_elect_(bid).await
    }

    fn suspension_changes(&self) -> BoxStream<'static, ()> {
        // Marks made from now on: the listener's first connection, then
        // every notification.
        let rx = self.db.suspensions_changed.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok().map(|()| ((), rx))
        })
        .boxed()
    }

    fn schedule_changes(&self) -> Option<BoxStream<'static, ()>> {
        // Marks made from now on: the listener's first connection, then
        // every notification.
        let rx = self.db.schedules_changed.subscribe();
        Some(
            futures::stream::unfold(rx, |mut rx| async move {
                rx.changed().await.ok().map(|()| ((), rx))
            })
            .boxed(),
        )
    }

    fn wakeups(&self) -> BoxStream<'static, ()> {
        // The listener runs on the store's runtime; wake-ups cross over a channel.
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
        if let Some(dead) = self.db.vacuum_threshold() {
            // Vacuuming lasts as long as the scheduler listens.
            let tables = [self.db.jobs_table(), self.db.logs_table()];
            self.exec.spawn(super::vacuum::vacuum(
                self.db.pool().clone(),
                tables,
                dead,
                tx.clone(),
            ));
        }
        // Events between processes, as long as the scheduler listens.
        let relay = self.db.relay.clone();
        // Until the listener hears notifications and the listeners were
        // read after that, a job claimed may be one somebody listens for.
        relay.not_hearing();
        self.exec.spawn(super::relay::publish(
            self.db.clone(),
            relay.clone(),
            tx.clone(),
        ));
        self.exec.spawn(super::relay::read(
            self.db.clone(),
            relay.clone(),
            tx.clone(),
        ));
        self.exec.spawn(super::relay::watch(
            self.db.clone(),
            relay.clone(),
            tx.clone(),
        ));
        self.exec.spawn(listen(
            self.db.pool().clone(),
            self.db.channel().to_owned(),
            tx,
            Marks {
                suspensions: self.db.suspensions_changed.clone(),
                schedules: self.db.schedules_changed.clone(),
            },
            relay,
        ));
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|()| ((), rx)) },
        )
        .boxed()
    }
}

/// What the listener marks when a notification says something other than
/// "jobs may be claimable" changed.
struct Marks {
    /// The suspensions ([`SUSPENSIONS_PAYLOAD`]).
    suspensions: std::sync::Arc<tokio::sync::watch::Sender<()>>,
    /// The schedules ([`SCHEDULES_PAYLOAD`]).
    schedules: std::sync::Arc<tokio::sync::watch::Sender<()>>,
}

/// Forwards notifications on `channel` as wake-ups until the receiver goes,
/// those with the payload [`SUSPENSIONS_PAYLOAD`] or [`SCHEDULES_PAYLOAD`]
/// to `marks`, and those about the event log to `relay`. A lost connection
/// is re-established and counts as all of them, since notifications may
/// have been missed meanwhile; until it is, `relay` knows it cannot hear a
/// new listener (`Relay::not_hearing`).
async fn listen(
    pool: sqlx::PgPool,
    channel: String,
    tx: tokio::sync::mpsc::Sender<()>,
    marks: Marks,
    relay: std::sync::Arc<crate::event::relay::Relay>,
) {
    let missed_all = || {
        marks.suspensions.send_replace(());
        marks.schedules.send_replace(());
        relay.log_grew.notify_one();
    };
    let mut backoff = Duration::from_millis(100);
    let mut listener: Option<PgListener> = None;
    while !tx.is_closed() {
        if listener.is_none() {
            match PgListener::connect_with(&pool).await {
                Ok(mut l) => match l.listen(&channel).await {
                    Ok(()) => {
                        listener = Some(l);
                        backoff = Duration::from_millis(100);
                        // Changes committed before LISTEN took hold were
                        // not notified here: read them once now, and claim
                        // the jobs created meanwhile.
                        relay.hearing();
                        missed_all();
                        let _ = tx.try_send(());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for kessel notifications failed")
                    }
                },
                Err(e) => tracing::warn!(error = %e, "connecting the kessel listener failed"),
            }
            if listener.is_none() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        let l = listener.as_mut().expect("connected above");
        let received = tokio::select! {
            r = l.try_recv() => r,
            () = tx.closed() => return,
        };
        match received {
            Ok(Some(n)) if n.payload() == SUSPENSIONS_PAYLOAD => {
                marks.suspensions.send_replace(());
                continue;
            }
            Ok(Some(n)) if n.payload() == SCHEDULES_PAYLOAD => {
                marks.schedules.send_replace(());
                continue;
            }
            Ok(Some(n)) if n.payload() == super::relay::LOG_GREW => {
                relay.log_grew.notify_one();
                continue;
            }
            Ok(Some(n)) if n.payload() == super::relay::LISTENERS_CHANGED => {
                // Before the wake-ups notified after it (of a job the new
                // listener is about to create) are handled; `watch` reads
                // the table to be sure.
                relay.listeners_may_have_changed();
                continue;
            }
            Ok(Some(_)) => {}
            // The connection was lost: connect again, as the first time.
            Ok(None) => {
                relay.not_hearing();
                missed_all();
                listener = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "kessel listener failed; reconnecting");
                relay.not_hearing();
                missed_all();
                listener = None;
            }
        }
        // A full channel already holds a wake-up: nothing is lost by skipping.
        let _ = tx.try_send(());
    }
}
