//! The store's connection thread: the one connection to the file, the
//! group commit, and the reads.
//!
//! Every call on a [`SqliteStore`](super::SqliteStore) becomes a
//! [`Command`] sent to this thread. The thread takes every command that is
//! waiting, runs all the writes among them in **one** transaction, commits
//! once, and only then answers the writers. While that commit syncs to
//! disk, new commands queue up and form the next group: the more producers
//! write at once, the more jobs share one disk sync, and a lone producer
//! waits for no timer. New jobs are inserted as multi-row `VALUES` lists
//! of up to 1,024 rows; state changes are one statement per table however
//! many jobs they hold (the rows travel as one JSON array). When one write fails
//! on its own (a duplicate id), the group is run again with a savepoint per
//! write, so that write fails alone and the rest commit.
//!
//! The thread runs its own single-threaded runtime, so the store works the
//! same from any runtime (or from none) and the callers' clocks (paused in
//! tests) never touch it.
//!
//! This file holds the commands and the thread's loop; the rest is one
//! file per concern: `write.rs` runs a group of writes in one transaction
//! (with savepoints when one write fails alone), `read.rs` answers the
//! reads, and `reclaim.rs` gives free pages back to the file system while
//! nothing waits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use tokio::sync::{mpsc, oneshot};

use super::errors::{closed, store_error};
use super::rows::{NewRows, Rows};
use super::{open, SqliteOptions};
use crate::job::{Job, JobId, JobStatus};
use crate::store::{ScheduleAdvance, ScheduleRecord, StatusCount, StoreError};

mod read;
mod reclaim;
mod write;

use read::answer;
#[cfg(test)]
pub(super) use read::{JOBS_BY_REFERENCE_NEWEST_FIRST, JOBS_BY_REFERENCE_OLDEST_FIRST};
use reclaim::Reclaim;
use write::commit_group;

/// The most commands taken into one round (one transaction for the writes
/// among them); more wait for the next round.
const MAX_ROUND: usize = 1024;

/// Where a command's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A request to the connection thread.
#[derive(Debug)]
pub(super) enum Command {
    /// A write, answered once it is committed.
    Write(WriteOp, Reply<u64>),
    /// Every job not in a final state, with logs.
    Pending(Reply<Vec<Job>>),
    /// One job, with logs.
    Get(JobId, Reply<Option<Job>>),
    /// A page of jobs, with logs.
    Query(QueryParams, Reply<Vec<Job>>),
    /// Counts by task and status.
    Count(Reply<Vec<StatusCount>>),
    /// The count of one status.
    CountStatus(JobStatus, Reply<u64>),
    /// The job keeping a unique key: live at the time given, or any.
    UniqueHolder(String, Option<i64>, Reply<Option<JobId>>),
    /// Every schedule, by name.
    Schedules(Reply<Vec<ScheduleRecord>>),
    /// Every suspension.
    Suspensions(Reply<Vec<crate::Suspension>>),
    /// Finish this round, close the connection (releasing the file), stop.
    Close(Reply<()>),
}

/// What a write does; its rows are encoded by the caller.
#[derive(Debug)]
pub(super) enum WriteOp {
    Insert(NewRows),
    /// One new unique job: stored (1) unless a live job keeps its key (0).
    InsertUnique(UniqueInsert),
    /// One final job and its log lines (1 removed, 0 not).
    DeleteOne(String),
    Update(Rows),
    /// Updates and the new jobs they made (a dead letter), one write: kept
    /// together or not at all.
    UpdateInsert(Rows, NewRows),
    Delete(DeleteParams),
    /// Answers [`UPSERT_UNCHANGED`], [`UPSERT_CREATED`] or
    /// [`UPSERT_CHANGED`].
    ScheduleUpsert(ScheduleRecord),
    /// Answers 1 when a schedule was removed.
    ScheduleRemove(String),
    /// Answers 1 when the schedule exists.
    SchedulePause {
        name: String,
        paused: bool,
        next_run: Option<i64>,
    },
    /// The compare-and-set, and the tick's jobs when it applies (in the
    /// same transaction, and the same savepoint when the group is run
    /// again with savepoints). Answers 1 when it applied.
    ScheduleAdvance(ScheduleAdvance, Option<NewRows>),
    /// Answers 1 when the suspension was recorded (0: already suspended).
    SuspensionInsert(crate::Suspension),
    /// Answers 1 when a suspension was removed.
    SuspensionDelete(crate::Suspended),
}

/// A unique job to store, and its hold.
#[derive(Debug)]
pub(super) struct UniqueInsert {
    pub(super) rows: NewRows,
    pub(super) id: String,
    pub(super) key: String,
    pub(super) scope: i64,
    pub(super) until: Option<i64>,
    /// Now, in microseconds: holds ended by then are cleared.
    pub(super) now: i64,
}

/// [`WriteOp::ScheduleUpsert`]'s answers.
pub(super) const UPSERT_UNCHANGED: u64 = 0;
pub(super) const UPSERT_CREATED: u64 = 1;
pub(super) const UPSERT_CHANGED: u64 = 2;

/// `jobs_delete.sql`'s parameters.
#[derive(Debug)]
pub(super) struct DeleteParams {
    /// JSON array of statuses.
    pub(super) statuses: String,
    /// JSON array of tasks; all when `None`.
    pub(super) tasks: Option<String>,
    pub(super) finished_before: Option<i64>,
    /// -1: no limit.
    pub(super) limit: i64,
    /// Only completed jobs, of every task: what retention removes, along
    /// its own index (`completed_delete.sql`).
    pub(super) completed_only: bool,
}

/// `jobs_query.sql`'s parameters.
#[derive(Debug)]
pub(super) struct QueryParams {
    pub(super) statuses: Option<String>,
    pub(super) tasks: Option<String>,
    pub(super) reference: Option<String>,
    pub(super) created_after: Option<i64>,
    pub(super) created_before: Option<i64>,
    pub(super) newest_first: bool,
    pub(super) limit: i64,
    pub(super) offset: i64,
}

/// Starts the connection thread and opens the file on it. Returns the
/// command channel once the file is open, locked and migrated.
pub(super) async fn start(
    options: SqliteOptions,
    counters: Arc<Counters>,
) -> Result<mpsc::UnboundedSender<Command>, StoreError> {
    let (commands, inbox) = mpsc::unbounded_channel();
    let (opened_tx, opened_rx) = oneshot::channel();
    let path = options.path.clone();
    std::thread::Builder::new()
        .name("kessel-sqlite".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = opened_tx.send(Err(StoreError::unavailable(err)));
                    return;
                }
            };
            runtime.block_on(async move {
                match open::open(&options).await {
                    Ok(conn) => {
                        if opened_tx.send(Ok(())).is_ok() {
                            serve(conn, inbox, options.path, counters).await;
                        }
                    }
                    Err(err) => {
                        let _ = opened_tx.send(Err(err));
                    }
                }
            });
        })
        .map_err(StoreError::unavailable)?;
    opened_rx.await.map_err(|_| closed(&path))??;
    Ok(commands)
}

async fn serve(
    mut conn: SqliteConnection,
    mut inbox: mpsc::UnboundedReceiver<Command>,
    path: PathBuf,
    counters: Arc<Counters>,
) {
    let mut round = Vec::new();
    let mut reclaim = Reclaim::new(open::reclaims(&mut conn).await);
    loop {
        // Free pages are given back while nothing waits, a step at a time.
        let first = if reclaim.due {
            match inbox.try_recv() {
                Ok(command) => command,
                Err(mpsc::error::TryRecvError::Empty) => match reclaim.resting() {
                    // A step is due, but the last one is not yet paid for:
                    // serve what comes meanwhile.
                    Some(rest) => match tokio::time::timeout(rest, inbox.recv()).await {
                        Ok(Some(command)) => command,
                        Ok(None) => break,
                        Err(_) => continue,
                    },
                    None => {
                        let started = std::time::Instant::now();
                        reclaim.step(&mut conn).await;
                        reclaim.rest_after(started);
                        Counters::took(&counters.longest_reclaim_ns, started);
                        continue;
                    }
                },
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match inbox.recv().await {
                Some(command) => command,
                None => break,
            }
        };
        round.push(first);
        while round.len() < MAX_ROUND {
            match inbox.try_recv() {
                Ok(command) => round.push(command),
                Err(_) => break,
            }
        }
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        let mut close = None;
        for command in round.drain(..) {
            match command {
                Command::Write(op, reply) => writes.push((op, reply)),
                Command::Close(reply) => close = Some(reply),
                read => reads.push(read),
            }
        }
        if !writes.is_empty() {
            let deletes = writes
                .iter()
                .any(|(op, _)| matches!(op, WriteOp::Delete(_) | WriteOp::DeleteOne(_)));
            commit_group(&mut conn, writes, &counters).await;
            if deletes {
                // Steps run only while no command waits: a step after
                // every prune batch of a busy queue (16 MiB moved in a
                // large file) slowed pruning below the completion rate.
                reclaim.freed();
            }
        }
        for read in reads {
            answer(&mut conn, read).await;
        }
        if let Some(reply) = close {
            // Later commands are dropped unanswered: their callers see the
            // store closed.
            inbox.close();
            while inbox.try_recv().is_ok() {}
            let result = conn.close().await.map_err(store_error);
            tracing::debug!(path = %path.display(), "closed the SQLite store");
            let _ = reply.send(result);
            return;
        }
    }
    // Every handle was dropped.
    if let Err(err) = conn.close().await {
        tracing::warn!(path = %path.display(), error = %err, "closing the SQLite store failed");
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(store_error)
}

/// What the connection thread has done, for [`SqliteStats`](super::SqliteStats).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) commits: AtomicU64,
    pub(super) writes: AtomicU64,
    pub(super) failed: AtomicU64,
    /// The longest group of writes, in nanoseconds.
    pub(super) longest_commit_ns: AtomicU64,
    /// The longest reclaiming step, in nanoseconds.
    pub(super) longest_reclaim_ns: AtomicU64,
}

impl Counters {
    fn took(counter: &AtomicU64, started: std::time::Instant) {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_max(nanos, Ordering::Relaxed);
    }
}
