//! The nodes and the leader of a [`PgStore`]: a row per process in
//! `nodes`, renewed by heartbeat, and a one-row `leader` lease taken or
//! renewed by one `UPDATE` (schema version 8).

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::rows::map_err;
use super::{Db, PgStore};
use crate::node::{Node, NodeStatus};
use crate::store::{LeaderElect, NodeBeat, StoreError};

impl Db {
    fn nodes_table(&self) -> String {
        self.sql.table("nodes")
    }

    fn leader_table(&self) -> String {
        self.sql.table("leader")
    }

    async fn node_beat(&self, beat: &NodeBeat) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (id, host, pid, version, tags, concurrency, running, started_at, last_heartbeat, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET
                 tags = EXCLUDED.tags, concurrency = EXCLUDED.concurrency, running = EXCLUDED.running,
                 last_heartbeat = EXCLUDED.last_heartbeat, lease_until = EXCLUDED.lease_until",
            self.nodes_table()
        )))
        .bind(beat.id)
        .bind(&beat.host)
        .bind(i64::from(beat.pid))
        .bind(&beat.version)
        .bind(&beat.tags)
        .bind(i64::try_from(beat.concurrency).unwrap_or(i64::MAX))
        .bind(i64::try_from(beat.running).unwrap_or(i64::MAX))
        .bind(beat.started_at)
        .bind(beat.at)
        .bind(beat.lease_until)
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn node_leave(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "WITH gone AS (DELETE FROM {nodes} WHERE id = $1),
                  resigned AS (UPDATE {leader} SET owner = NULL, lease_until = '-infinity' WHERE owner = $1),
                  -- Its places of tasks and tags with a running limit,
                  -- for the other processes at once (see versions 20, 21).
                  places AS (DELETE FROM {places} WHERE owner = $1),
                  tag_places AS (DELETE FROM {tag_places} WHERE owner = $1)
             SELECT 1",
            nodes = self.nodes_table(),
            leader = self.leader_table(),
            places = self.sql.table("running_places"),
            tag_places = self.sql.table("tag_places"),
        )))
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn nodes_list(&self, now: DateTime<Utc>) -> Result<Vec<Node>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT n.id, n.host, n.pid, n.version, n.tags, n.concurrency, n.running, n.started_at,
                    n.last_heartbeat, n.lease_until < $1 AS gone,
                    coalesce(l.owner = n.id AND l.lease_until >= $1, false) AS leader
             FROM {nodes} AS n LEFT JOIN {leader} AS l ON l.one
             ORDER BY n.started_at, n.id",
            nodes = self.nodes_table(),
            leader = self.leader_table(),
        )))
        .bind(now)
        .fetch_all(self.pool())
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let id: Uuid = row.try_get("id").map_err(map_err)?;
                let count = |name: &str| -> Result<u64, StoreError> {
                    let n: i64 = row.try_get(name).map_err(map_err)?;
                    u64::try_from(n).map_err(|_| StoreError::Corrupt {
                        id: format!("(node {id})"),
                        reason: format!("{name} is negative: {n}"),
                    })
                };
                let pid: i64 = row.try_get("pid").map_err(map_err)?;
                let gone: bool = row.try_get("gone").map_err(map_err)?;
                Ok(Node {
                    id,
                    host: row.try_get("host").map_err(map_err)?,
                    pid: u32::try_from(pid).map_err(|_| StoreError::Corrupt {
                        id: format!("(node {id})"),
                        reason: format!("pid out of range: {pid}"),
                    })?,
                    version: row.try_get("version").map_err(map_err)?,
                    tags: row.try_get("tags").map_err(map_err)?,
                    concurrency: count("concurrency")?,
                    running: count("running")?,
                    started_at: row.try_get("started_at").map_err(map_err)?,
                    last_heartbeat: row.try_get("last_heartbeat").map_err(map_err)?,
                    leader: row.try_get("leader").map_err(map_err)?,
                    status: if gone {
                        NodeStatus::Gone
                    } else {
                        NodeStatus::Live
                    },
                })
            })
            .collect()
    }

    async fn nodes_prune(&self, gone_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let removed = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE lease_until < $1",
            self.nodes_table()
        )))
        .bind(gone_before)
        .execute(self.pool())
        .await
        .map_err(map_err)?;
        Ok(removed.rows_affected())
    }

    async fn leader_elect(&self, bid: &LeaderElect) -> Result<bool, StoreError> {
        // One row, one statement: the row lock orders concurrent bids, and
        // the second is evaluated against the first's outcome. Every
        // expression reads only the row, so a bid that waited for the lock
        // decides on what the first one wrote.
        //
        // - The leader renews, and anyone takes a lease nobody holds.
        // - A leader without workers whose lease a node with workers
        //   wants gives it up instead of renewing (and is not the leader
        //   from then on); that node takes it at its next bid.
        // - A node with workers facing a live leader without marks the
        //   lease wanted, and waits: never two leaders at once.
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET
                 owner = CASE WHEN owner = $1 AND NOT $4 AND wanted THEN NULL
                              WHEN owner = $1 OR lease_until < $2 THEN $1
                              ELSE owner END,
                 lease_until = CASE WHEN owner = $1 AND NOT $4 AND wanted THEN '-infinity'
                                    WHEN owner = $1 OR lease_until < $2 THEN $3
                                    ELSE lease_until END,
                 serves = CASE WHEN owner = $1 AND NOT $4 AND wanted THEN false
                               WHEN owner = $1 OR lease_until < $2 THEN $4
                               ELSE serves END,
                 wanted = CASE WHEN owner = $1 OR lease_until < $2 THEN false
                               ELSE true END
             WHERE one AND (owner = $1 OR lease_until < $2 OR ($4 AND NOT serves AND NOT wanted))
             RETURNING coalesce(owner = $1, false) AS won",
            self.leader_table()
        )))
        .bind(bid.owner)
        .bind(bid.now)
        .bind(bid.lease_until)
        .bind(bid.serves)
        .fetch_optional(self.pool())
        .await
        .map_err(map_err)?;
        match row {
            Some(row) => row.try_get::<bool, _>("won").map_err(map_err),
            None => Ok(false),
        }
    }
}

impl PgStore {
    pub(super) async fn node_beat_(&self, beat: &NodeBeat) -> Result<(), StoreError> {
        let (db, beat) = (self.db.clone(), beat.clone());
        self.exec
            .run(async move { db.node_beat(&beat).await })
            .await
    }

    pub(super) async fn node_leave_(&self, id: Uuid) -> Result<(), StoreError> {
        let db = self.db.clone();
        self.exec.run(async move { db.node_leave(id).await }).await
    }

    pub(super) async fn nodes_list_(&self, now: DateTime<Utc>) -> Result<Vec<Node>, StoreError> {
        let db = self.db.clone();
        self.exec.run(async move { db.nodes_list(now).await }).await
    }

    pub(super) async fn nodes_prune_(&self, gone_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let db = self.db.clone();
        self.exec
            .run(async move { db.nodes_prune(gone_before).await })
            .await
    }

    pub(super) async fn leader_elect_(&self, bid: &LeaderElect) -> Result<bool, StoreError> {
        let (db, bid) = (self.db.clone(), *bid);
        self.exec
            .run(async move { db.leader_elect(&bid).await })
            .await
    }
}
