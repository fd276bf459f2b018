//! The shared event log (schema version 15): how events cross processes
//! on PostgreSQL. The rules are `event/relay.rs`'s; this is the database
//! side, three loops per process that run while its scheduler listens:
//!
//! - [`publish`] writes the outbox to `event_log`, a row per batch, and
//!   notifies the schema's channel with [`LOG_GREW`]. The `created` events
//!   of new jobs are not written here but by the insert itself (see
//!   `jobs_insert_rows`), in the job's own transaction.
//! - [`read`], while this process has subscribers: registers it in
//!   `event_listeners`, finds where the log stands, then reads on from
//!   there at every notification (and every [`READ_AT_LEAST`]), rows in
//!   `(xid, seq)` order up to the oldest transaction still running.
//!   After a reconnect it goes on from its last position; if the log was
//!   pruned past it, its subscribers get `Lagged` with the count pruned.
//! - [`watch`] keeps the "another process listens" flag, at every
//!   [`LISTENERS_CHANGED`] notification and every [`WATCH_EVERY`], and
//!   prunes the log (one process at a time, under an advisory lock). The
//!   flag is set at once by that notification, and while the listener
//!   starts or reconnects (notifications may be missed then); a read
//!   that began before either cannot clear it (`Relay::set_others_read`),
//!   so a job whose wake-up comes after a new listener's notification, or
//!   that is claimed before the listeners were read, is relayed.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, PgConnection, Row};
use uuid::Uuid;

use super::rows::map_err;
use super::Db;
use crate::event::relay::{Entry, LogBatch, Relay};
use crate::store::StoreError;

/// The notification payload that says the log has new rows.
pub(super) const LOG_GREW: &str = "kessel:events";
/// The notification payload that says a process started or stopped listening.
pub(super) const LISTENERS_CHANGED: &str = "kessel:listeners";

/// How often a listening process reads the log even without a notification
/// (one lost with a connection, or rows held back by a running transaction).
const READ_AT_LEAST: Duration = Duration::from_millis(500);
/// How often a process refreshes its listener row and the "others listen" flag.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// A listener row not refreshed for this long is ignored, and removed.
const LISTENER_TTL: &str = "30 seconds";
/// Rows are pruned after this long, read or not (or after
/// `PgOptions::event_log_kept`, when longer).
const KEEP_AT_MOST: Duration = Duration::from_secs(600);
/// How long a process stays a listener after its last subscriber left.
const LINGER: Duration = Duration::from_secs(5);
/// The most rows one read takes.
const READ_ROWS: i64 = 256;

/// A position in the log: `(xid, seq)` of the last row read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    xid: i64,
    seq: i64,
}

/// The SQL text of an `xid8` held as an `i64` (xid8 values stay far below
/// 2^63 for the life of any cluster).
fn xid8(n: i64) -> String {
    n.max(0).to_string()
}

impl Db {
    /// Writes `batch` as one row of the log, on `conn`, in whatever
    /// transaction is open there.
    pub(super) async fn log_write_on(
        &self,
        conn: &mut PgConnection,
        batch: &LogBatch,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "WITH row AS (INSERT INTO {} (node, events, entries) VALUES ($1, $2, $5))
             SELECT pg_notify($3, $4)",
            self.sql.table("event_log")
        )))
        .bind(self.owner)
        .bind(&batch.json)
        .bind(&self.sql.channel)
        .bind(LOG_GREW)
        .bind(batch.entries)
        .execute(conn)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn log_write(&self, batch: &LogBatch) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        self.log_write_on(&mut conn, batch).await
    }

    /// Where the log stands (every row written from now on lies past
    /// it), and the count of events pruned from it so far.
    async fn log_position(&self) -> Result<(Position, i64), StoreError> {
        let (xmin, pruned): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint, events FROM {}",
            self.sql.table("event_log_pruned")
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        // Rows of transactions at or after xmin are not read yet.
        let position = Position {
            xid: xmin - 1,
            seq: i64::MAX,
        };
        Ok((position, pruned))
    }

    /// The rows past `after` that no running transaction can still
    /// precede, in order, and what the log says beside them.
    async fn log_read(&self, after: Position) -> Result<LogRead, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "WITH horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
             batch AS (
                 SELECT e.xid, e.seq, e.node, e.events FROM {log} e, horizon h
                 WHERE (e.xid, e.seq) > ($1::text::xid8, $2) AND e.xid < h.xmin
                 ORDER BY e.xid, e.seq LIMIT $3),
             state AS (
                 SELECT EXISTS (SELECT 1 FROM {log} e, horizon h
                                WHERE e.xid >= h.xmin AND (e.xid, e.seq) > ($1::text::xid8, $2)) AS held,
                        (p.upto_xid::text)::bigint AS upto_xid, p.upto_seq, p.events AS pruned
                 FROM {pruned} p)
             SELECT (b.xid::text)::bigint AS xid, b.seq, b.node, b.events,
                    s.held, s.upto_xid, s.upto_seq, s.pruned
             FROM state s LEFT JOIN batch b ON true
             ORDER BY b.xid, b.seq",
            log = self.sql.table("event_log"),
            pruned = self.sql.table("event_log_pruned"),
        )))
        .bind(xid8(after.xid))
        .bind(after.seq)
        .bind(READ_ROWS)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut read = LogRead {
            rows: Vec::with_capacity(rows.len()),
            full: rows.len() as i64 >= READ_ROWS,
            held: false,
            pruned_to: Position { xid: 0, seq: 0 },
            pruned: 0,
        };
        for row in rows {
            read.held = row.try_get("held").map_err(map_err)?;
            read.pruned_to = Position {
                xid: row.try_get("upto_xid").map_err(map_err)?,
                seq: row.try_get("upto_seq").map_err(map_err)?,
            };
            read.pruned = row.try_get("pruned").map_err(map_err)?;
            let Some(xid) = row.try_get::<Option<i64>, _>("xid").map_err(map_err)? else {
                continue;
            };
            read.rows.push((
                Position {
                    xid,
                    seq: row.try_get("seq").map_err(map_err)?,
                },
                row.try_get("node").map_err(map_err)?,
                row.try_get("events").map_err(map_err)?,
            ));
        }
        Ok(read)
    }

    /// Registers (or refreshes) this process as a listener that has read
    /// up to `read`.
    async fn listener_beat(&self, read: Position) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (node, read_xid, read_seq) VALUES ($1, $2::text::xid8, $3)
             ON CONFLICT (node) DO UPDATE SET seen_at = now(), read_xid = EXCLUDED.read_xid,
                                              read_seq = EXCLUDED.read_seq",
            self.sql.table("event_listeners")
        )))
        .bind(self.owner)
        .bind(xid8(read.xid))
        .bind(read.seq)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn listeners_notify(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.sql.channel)
            .bind(LISTENERS_CHANGED)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn listener_leave(&self) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "WITH gone AS (DELETE FROM {} WHERE node = $1) SELECT pg_notify($2, $3)",
            self.sql.table("event_listeners")
        )))
        .bind(self.owner)
        .bind(&self.sql.channel)
        .bind(LISTENERS_CHANGED)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    /// Whether a process other than this one listens.
    async fn others_listen(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE node <> $1 AND seen_at > now() - interval '{LISTENER_TTL}')",
            self.sql.table("event_listeners")
        )))
        .bind(self.owner)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)
    }

    /// Removes rows every live listener has read once older than
    /// `PgOptions::event_log_kept`, and any row older than [`KEEP_AT_MOST`]; forgets listeners gone
    /// for [`LISTENER_TTL`]. One process at a time; returns the rows removed.
    async fn log_prune(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtext('kessel prune events ' || $1))",
        )
        .bind(&self.sql.schema)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        if !locked {
            return Ok(0);
        }
        let (log, listeners, pruned) = (
            self.sql.table("event_log"),
            self.sql.table("event_listeners"),
            self.sql.table("event_log_pruned"),
        );
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {listeners} WHERE seen_at < now() - interval '{LISTENER_TTL}' * 10"
        )))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let removed: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "WITH floor AS (
                 SELECT l.read_xid AS xid, l.read_seq AS seq FROM {listeners} l
                 WHERE l.seen_at > now() - interval '{LISTENER_TTL}'
                 ORDER BY l.read_xid, l.read_seq LIMIT 1),
             gone AS (
                 DELETE FROM {log} e
                 WHERE e.written_at < now() - make_interval(secs => $2)
                    OR (e.written_at < now() - make_interval(secs => $1)
                        AND (NOT EXISTS (SELECT 1 FROM floor)
                             OR (e.xid, e.seq) <= (SELECT f.xid, f.seq FROM floor f)))
                 RETURNING e.xid, e.seq, e.entries AS n),
             last AS (SELECT xid, seq FROM gone ORDER BY xid DESC, seq DESC LIMIT 1),
             noted AS (
                 UPDATE {pruned} p SET
                     upto_xid = CASE WHEN (l.xid, l.seq) > (p.upto_xid, p.upto_seq) THEN l.xid ELSE p.upto_xid END,
                     upto_seq = CASE WHEN (l.xid, l.seq) > (p.upto_xid, p.upto_seq) THEN l.seq ELSE p.upto_seq END,
                     events = p.events + (SELECT sum(n) FROM gone)
                 FROM last l)
             SELECT count(*) FROM gone"
        )))
        .bind(self.event_log_kept.as_secs_f64())
        .bind(KEEP_AT_MOST.max(self.event_log_kept).as_secs_f64())
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(removed as u64)
    }
}

/// Waits `d`, or returns false at once when `alive`'s receiver is gone.
async fn rest(alive: &tokio::sync::mpsc::Sender<()>, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = alive.closed() => false,
    }
}

/// Writes the outbox to the log until `alive`'s receiver goes.
pub(super) async fn publish(db: Db, relay: Arc<Relay>, alive: tokio::sync::mpsc::Sender<()>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        tokio::select! {
            () = relay.flush.notified() => {}
            () = alive.closed() => return,
            // A wake-up that came while a write was under way.
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        loop {
            relay.ready_to_write().await;
            let entries = relay.take();
            if entries.is_empty() {
                break;
            }
            let written = match LogBatch::of(&entries) {
                Some(batch) => db.log_write(&batch).await,
                None => {
                    tracing::warn!("events could not be written as JSON; dropped");
                    relay.put_back(vec![Entry::Lost(entries.len() as u64)]);
                    continue;
                }
            };
            match written {
                Ok(()) => {
                    relay.wrote(entries.len());
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "writing events to the shared log failed; retrying");
                    relay.put_back(entries);
                    if !rest(&alive, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Reads the log for this process's subscribers while it has any, until
/// `alive`'s receiver goes.
pub(super) async fn read(db: Db, relay: Arc<Relay>, alive: tokio::sync::mpsc::Sender<()>) {
    // Where this process has read up to; kept across reconnects.
    let mut at: Option<Position> = None;
    // The count of pruned events when this process last read.
    let mut pruned_seen: Option<i64> = None;
    let mut beat_due = tokio::time::Instant::now();
    // When this process stops listening if it has no subscriber.
    let mut linger: Option<tokio::time::Instant> = None;
    loop {
        if relay.local() {
            linger = None;
        } else if at.is_some() {
            let until = *linger.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
            if tokio::time::Instant::now() < until {
                // Reads on meanwhile (delivering to nobody), so a
                // subscriber that comes back finds the other processes
                // still relaying: `result()` waits in turn do that.
                let _ = read_step(&db, &relay, &mut at, &mut pruned_seen, &mut beat_due).await;
                tokio::select! {
                    () = relay.log_grew.notified() => {}
                    () = relay.local_changed.notified() => {}
                    () = alive.closed() => return,
                    () = tokio::time::sleep_until(until) => {}
                }
                continue;
            }
        }
        if !relay.local() {
            linger = None;
            if at.take().is_some() {
                relay.set_positioned(false);
                pruned_seen = None;
                if let Err(e) = db.listener_leave().await {
                    tracing::warn!(error = %e, "leaving the event listeners failed");
                }
            }
            tokio::select! {
                () = relay.local_changed.notified() => {}
                () = alive.closed() => return,
                () = tokio::time::sleep(WATCH_EVERY) => {}
            }
            continue;
        }
        let step = read_step(&db, &relay, &mut at, &mut pruned_seen, &mut beat_due).await;
        let wait = match step {
            Ok(Next::Now) => Duration::ZERO,
            Ok(Next::Soon) => Duration::from_millis(5),
            Ok(Next::Notified) => READ_AT_LEAST,
            Err(e) => {
                tracing::warn!(error = %e, "reading the shared event log failed; retrying");
                Duration::from_millis(500)
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            () = relay.log_grew.notified() => {}
            () = relay.local_changed.notified() => {}
            () = alive.closed() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// What [`Db::log_read`] found.
struct LogRead {
    /// The rows, in order: position, writer, its JSON array of entries.
    rows: Vec<(Position, Uuid, String)>,
    /// As many rows as one read takes: there may be more.
    full: bool,
    /// Rows past these wait for a transaction still running.
    held: bool,
    /// The log was pruned up to here...
    pruned_to: Position,
    /// ... removing this many events in all.
    pruned: i64,
}

/// When to read the log again.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// There is more to read.
    Now,
    /// Rows wait for a running transaction to end.
    Soon,
    /// At the next notification.
    Notified,
}

/// One read: positions the reader first if it has no position.
async fn read_step(
    db: &Db,
    relay: &Relay,
    at: &mut Option<Position>,
    pruned_seen: &mut Option<i64>,
    beat_due: &mut tokio::time::Instant,
) -> Result<Next, StoreError> {
    let position = match *at {
        Some(p) => p,
        None => {
            let (p, pruned) = db.log_position().await?;
            db.listener_beat(p).await?;
            db.listeners_notify().await?;
            *beat_due = tokio::time::Instant::now() + WATCH_EVERY;
            *at = Some(p);
            *pruned_seen = Some(pruned);
            relay.set_positioned(true);
            p
        }
    };
    if tokio::time::Instant::now() >= *beat_due {
        db.listener_beat(position).await?;
        *beat_due = tokio::time::Instant::now() + WATCH_EVERY;
    }
    let read = db.log_read(position).await?;
    let seen = pruned_seen.unwrap_or(read.pruned);
    if (read.pruned_to.xid, read.pruned_to.seq) > (position.xid, position.seq) {
        // Rows this process had not read were pruned (it was away longer
        // than a listener is waited for): its subscribers missed them.
        relay.lagged((read.pruned - seen).max(1) as u64);
        *at = Some(read.pruned_to);
    }
    *pruned_seen = Some(read.pruned);
    for (p, node, events) in read.rows {
        if at.is_some_and(|a| (p.xid, p.seq) <= (a.xid, a.seq)) {
            continue;
        }
        *at = Some(p);
        match serde_json::from_str::<Vec<Entry>>(&events) {
            Ok(entries) => relay.deliver(node, entries),
            Err(e) => {
                tracing::warn!(error = %e, "an event row could not be read; counted as missed");
                relay.lagged(1);
            }
        }
    }
    Ok(if read.full {
        Next::Now
    } else if read.held {
        Next::Soon
    } else {
        Next::Notified
    })
}

/// Keeps [`Relay::others`] current and prunes the log, until `alive`'s
/// receiver goes.
pub(super) async fn watch(db: Db, relay: Arc<Relay>, alive: tokio::sync::mpsc::Sender<()>) {
    let every = db
        .event_log_kept
        .clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut prune_due = tokio::time::Instant::now() + every;
    loop {
        let began = relay.listeners_read_begins();
        match db.others_listen().await {
            Ok(on) => relay.set_others_read(on, began),
            Err(e) => tracing::debug!(error = %e, "reading the event listeners failed"),
        }
        if tokio::time::Instant::now() >= prune_due {
            prune_due = tokio::time::Instant::now() + every;
            if let Err(e) = db.log_prune().await {
                tracing::warn!(error = %e, "pruning the shared event log failed");
            }
        }
        tokio::select! {
            () = relay.listeners_changed.notified() => {}
            () = alive.closed() => return,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
}
