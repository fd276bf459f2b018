//! Retention bounds the disk a SQLite store takes as it bounds memory:
//! completed jobs are pruned in small batches as they complete (not once a
//! minute, in one stalling delete), the WAL stays bounded, and the pages
//! pruning frees are given back to the file system. No wall-clock waits:
//! every check follows an awaited result.
#![cfg(feature = "sqlite")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kessel::store::{Durability, SqliteOptions, SqliteStore, Store, SQLITE_SCHEMA_VERSION};
use kessel::{JobContext, JobError, JobStatus, NewJob, Queue, Retention};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// The count cap the tests keep.
const CAP: usize = 1_000;

/// Retention deletes at most this many jobs at a time
/// (`kessel::config::PRUNE_BATCH`); the completed jobs may pass the cap by
/// what completed since the last prune counted them, at most about this.
const ONE_BATCH: u64 = 1_024;

/// The WAL is checkpointed once it holds 1,000 pages (16 KiB each) and cut
/// back to 32 MiB when it starts over; between two checkpoints it grows by
/// one group of writes at most. The groups of these tests write a few
/// hundred jobs: a few MiB.
const WAL_BOUND: u64 = 1_000 * 16_384 + (8 << 20);

/// A payload shaped like a user's struct.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Email {
    to: String,
    subject: String,
    body: String,
    attempt: u32,
}

fn email(n: u64) -> Email {
    Email {
        to: format!("user{n}@example.com"),
        subject: format!("Your order #{n} has shipped"),
        // About 1 KiB: 20,000 jobs outgrow what the WAL holds before a
        // checkpoint, so the file itself grows.
        body: format!("Hello user {n}! Your parcel is on its way. ").repeat(24),
        attempt: 0,
    }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn wal(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

async fn queue_on(store: Arc<SqliteStore>) -> Queue {
    let queue = Queue::builder()
        .store(store)
        .retention(Retention {
            completed_max_age: None,
            completed_max_count: Some(CAP),
            // Far beyond the test: only pruning as jobs complete runs.
            interval: Duration::from_secs(3_600),
            ..Retention::default()
        })
        .build()
        .await
        .expect("queue");
    queue
        .define("send email")
        .action(|_: JobContext<Email>| async { Ok::<_, JobError>(()) })
        .expect("define");
    queue
}

async fn open(path: &Path) -> Arc<SqliteStore> {
    Arc::new(
        SqliteOptions::new(path)
            .durability(Durability::ProcessCrash)
            .open()
            .await
            .expect("open"),
    )
}

async fn completed(store: &SqliteStore) -> u64 {
    store
        .jobs_count_status(JobStatus::Completed)
        .await
        .expect("count")
}

/// Creates `n` jobs numbered from `from`, in batches of 500; returns the
/// last one's id.
async fn create(queue: &Queue, from: u64, n: u64) -> kessel::JobId {
    let mut last = None;
    let mut i = from;
    while i < from + n {
        let end = (i + 500).min(from + n);
        let handles = queue
            .create_many((i..end).map(|k| NewJob::new("send email", email(k))))
            .await
            .expect("create");
        last = handles.last().map(|h| h.id());
        i = end;
    }
    last.expect("at least one job")
}

/// 20,000 jobs run in rounds of 500 with a cap of 1,000: after every
/// round the completed jobs are within the cap and one batch, and the WAL
/// within its bound. Before, the first prune came after a minute.
#[actix_rt::test]
async fn completed_jobs_stay_within_the_cap_as_they_complete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    let store = open(&path).await;
    let queue = queue_on(store.clone()).await;
    let mut most = 0;
    for round in 0..40 {
        let last = create(&queue, round * 500, 500).await;
        assert_eq!(queue.run_jobs(Some(500), None).await.expect("run"), 500);
        // Answered once its outcome is stored.
        queue.result(last).await.expect("result");
        let n = completed(&store).await;
        most = most.max(n);
        assert!(
            n <= CAP as u64 + ONE_BATCH,
            "round {round}: {n} completed jobs kept, cap {CAP}"
        );
        let wal_size = size(&wal(&path));
        assert!(
            wal_size <= WAL_BOUND,
            "round {round}: the WAL holds {wal_size} bytes"
        );
    }
    assert!(most >= CAP as u64, "the cap was reached ({most})");
    queue
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    store.close().await.expect("close");
}

/// A backlog of 20,000 jobs grows the file; once they ran and all but
/// 1,000 were pruned, the file gives the pages back: it ends at less than
/// a quarter of its peak, and the WAL is emptied.
#[actix_rt::test]
async fn the_file_shrinks_once_a_backlog_is_pruned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    let store = open(&path).await;
    let queue = queue_on(store.clone()).await;
    let mut peak = 0;
    let mut last = None;
    for chunk in 0..40 {
        last = Some(create(&queue, chunk * 500, 500).await);
        peak = peak.max(size(&path));
    }
    let last = last.expect("jobs");
    queue.job(last).await.expect("stored");
    peak = peak.max(size(&path));
    assert_eq!(queue.run_jobs(None, None).await.expect("run"), 20_000);
    queue.result(last).await.expect("result");
    // The last prune may still be under way: each awaited read lets it on.
    let mut reads = 0;
    while completed(&store).await > CAP as u64 + ONE_BATCH && reads < 10_000 {
        reads += 1;
    }
    assert!(completed(&store).await <= CAP as u64 + ONE_BATCH);
    assert!(peak > 8 << 20, "the backlog took room: {peak} bytes");
    // Free pages are given back while the store is idle, a bounded step
    // between two commands, resting four times as long as a step took:
    // the awaited reads go on until it is done (each a fraction of a
    // millisecond: the bound is far above what the ~12 steps need).
    let mut reads = 0;
    while size(&path) * 4 > peak && reads < 1_000_000 {
        completed(&store).await;
        reads += 1;
    }
    let end = size(&path);
    assert!(
        end * 4 <= peak,
        "the file stayed at {end} bytes after {reads} reads (peak {peak})"
    );
    let wal_size = size(&wal(&path));
    assert!(wal_size <= WAL_BOUND, "the WAL holds {wal_size} bytes");
    eprintln!("file: peak {peak} bytes, end {end} bytes after {reads} reads; WAL {wal_size} bytes");
    queue
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    store.close().await.expect("close");
}

/// A file made before schema version 4, without incremental auto-vacuum,
/// opens: it is switched once (a VACUUM), keeps its jobs, and they run.
#[actix_rt::test]
async fn a_file_without_incremental_auto_vacuum_is_switched_and_works() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    let id = kessel::JobId::new();
    {
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .expect("create a version 3 file");
        for sql in [
            include_str!("../src/store/sqlite/sql/migrations/0001_init.sql"),
            include_str!("../src/store/sqlite/sql/migrations/0002_implied_created.sql"),
            include_str!("../src/store/sqlite/sql/migrations/0003_list_by_id.sql"),
        ] {
            sqlx::raw_sql(sql).execute(&mut conn).await.expect("schema");
        }
        let now = chrono::Utc::now().timestamp_micros();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO kessel_schema (version, applied_at) VALUES (1, 0), (2, 0), (3, 0);
             INSERT INTO kessel_jobs (id, task, payload, priority, status, created_at, run_at,
                                      attempts, log_created)
             VALUES ('{id}', 'send email', '{payload}', 0, 'ready', {now}, {now}, 0, 1);",
            payload = serde_json::to_string(&email(7)).expect("JSON"),
        )))
        .execute(&mut conn)
        .await
        .expect("a job of version 3");
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&mut conn)
            .await
            .expect("auto_vacuum");
        assert_eq!(mode, 0, "made without auto-vacuum");
        conn.close().await.expect("close");
    }
    let store = open(&path).await;
    let queue = queue_on(store.clone()).await;
    assert_eq!(queue.run_jobs(None, None).await.expect("run"), 1);
    assert_eq!(
        queue.result(id).await.expect("result").status,
        JobStatus::Completed
    );
    queue
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    store.close().await.expect("close");

    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .expect("reopen");
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut conn)
        .await
        .expect("auto_vacuum");
    assert_eq!(mode, 2, "switched to incremental");
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM kessel_schema")
        .fetch_one(&mut conn)
        .await
        .expect("version");
    assert_eq!(version, SQLITE_SCHEMA_VERSION);
}

/// A new file is made with incremental auto-vacuum.
#[actix_rt::test]
async fn a_new_file_reclaims_incrementally() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    open(&path).await.close().await.expect("close");
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .expect("reopen");
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&mut conn)
        .await
        .expect("auto_vacuum");
    assert_eq!(mode, 2);
}
