//! The SQLite store against bad files, a second opener, a full disk, I/O
//! errors while committing and corrupt rows: typed errors, nothing
//! acknowledged that was not stored, files that are not ours untouched,
//! and a queue that keeps running once the fault is gone.
#![cfg(feature = "sqlite")]

use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kessel::store::{
    JobDelete, JobQuery, JobUpdate, SqliteOptions, SqliteStore, StatusCount, Store, StoreError,
    SQLITE_SCHEMA_VERSION,
};
use kessel::{Error, Job, JobContext, JobError, JobId, JobStatus, NewJob, Queue, Retention};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("jobs.db")
}

/// Every file in the directory, with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| {
            let e = e.expect("a directory entry");
            let bytes = std::fs::read(e.path()).expect("read a file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs raw SQL on the file with a plain SQLite connection (as another
/// program would), then closes it.
async fn raw_sql(path: &Path, sql: &'static str) {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .expect("open the file with plain SQLite");
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .expect("run the SQL");
    conn.close().await.expect("close");
}

async fn queue_on(store: Arc<dyn Store>) -> Queue {
    Queue::builder()
        .store(store)
        .retention(Retention::keep_all())
        .build()
        .await
        .expect("build a queue")
}

#[actix_rt::test]
async fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    std::fs::write(&path, "these are my notes, not a database\n".repeat(300)).unwrap();
    let before = snapshot(dir.path());
    match SqliteStore::open(&path).await {
        Err(StoreError::NotKessel(why)) => assert!(why.contains("not a SQLite database"), "{why}"),
        other => panic!("expected NotKessel, got {other:?}"),
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "the file and its directory are as they were"
    );
}

#[actix_rt::test]
async fn another_programs_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    raw_sql(
        &path,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ford');",
    )
    .await;
    let before = snapshot(dir.path());
    match SqliteStore::open(&path).await {
        Err(StoreError::NotKessel(why)) => {
            assert!(why.contains("users"), "names what it found: {why}")
        }
        other => panic!("expected NotKessel, got {other:?}"),
    }
    assert_eq!(snapshot(dir.path()), before);
}

#[actix_rt::test]
async fn a_store_from_a_newer_kessel_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let queue = queue_on(store.clone()).await;
    queue.create("report", 1).await.unwrap();
    queue.shutdown(Duration::from_secs(1)).await.unwrap();
    store.close().await.unwrap();
    raw_sql(
        &path,
        "INSERT INTO kessel_schema (version, applied_at) VALUES (99, 0)",
    )
    .await;
    let before = snapshot(dir.path());
    match SqliteStore::open(&path).await {
        Err(StoreError::NewerSchema { found, supported }) => {
            assert_eq!((found, supported), (99, SQLITE_SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(snapshot(dir.path()), before);
}

#[actix_rt::test]
async fn a_missing_directory_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no such directory").join("jobs.db");
    match SqliteStore::open(&path).await {
        Err(err @ StoreError::Unavailable(_)) => assert!(err.is_transient()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_second_store_on_the_same_file_is_locked_out_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let first = SqliteStore::open(&path).await.unwrap();
    match SqliteStore::open(&path).await {
        Err(StoreError::Locked(why)) => assert!(why.contains("another process"), "{why}"),
        other => panic!("expected Locked, got {other:?}"),
    }
    match Queue::sqlite(&path).await {
        Err(Error::Store(StoreError::Locked(_))) => {}
        other => panic!("expected a Locked store error, got {other:?}"),
    }
    first.close().await.unwrap();
    first.close().await.expect("closing twice is fine");
    assert!(
        matches!(first.jobs_pending().await, Err(StoreError::Unavailable(_))),
        "a closed store refuses calls"
    );
    let second = SqliteStore::open(&path)
        .await
        .expect("open once the first is closed");
    // Dropped without close: the lock goes with it, and an opener that
    // waits gets the file.
    drop(second);
    let third = SqliteOptions::new(&path)
        .lock_timeout(Duration::from_secs(30))
        .open()
        .await
        .expect("open once the dropped store let go");
    third.close().await.unwrap();
}

#[actix_rt::test]
async fn a_corrupt_row_is_a_typed_error_naming_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let queue = queue_on(store.clone()).await;
    let bad_payload = queue.create("t", 1).await.unwrap().id();
    let bad_priority = queue.create("t", 2).await.unwrap().id();
    queue.shutdown(Duration::from_secs(1)).await.unwrap();
    store.close().await.unwrap();
    raw_sql(
        &path,
        "UPDATE kessel_jobs SET payload = '{not json' WHERE payload = '1';
         UPDATE kessel_jobs SET priority = -7 WHERE payload = '2';",
    )
    .await;

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    for (id, column) in [(bad_payload, "payload"), (bad_priority, "priority")] {
        match store.job_get(id).await {
            Err(StoreError::Corrupt { id: named, reason }) => {
                assert_eq!(named, id.to_string());
                assert!(reason.contains(column), "{reason}");
            }
            other => panic!("expected Corrupt for the bad {column}, got {other:?}"),
        }
    }
    assert!(matches!(
        store.jobs_pending().await,
        Err(StoreError::Corrupt { .. })
    ));
    match Queue::builder().store(store.clone()).build().await {
        Err(Error::Store(StoreError::Corrupt { .. })) => {}
        other => panic!("a queue on a corrupt store must not start: {other:?}"),
    }
}

#[actix_rt::test]
async fn concurrent_producers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(db_in(&dir)).await.unwrap());
    let queue = queue_on(store.clone()).await;
    const PRODUCERS: usize = 200;
    let creates = (0..PRODUCERS).map(|n| queue.create("report", n).into_future());
    let handles = futures::future::try_join_all(creates).await.unwrap();
    assert_eq!(handles.len(), PRODUCERS);
    let stats = store.stats();
    assert_eq!(stats.writes, PRODUCERS as u64, "{stats:?}");
    assert!(
        stats.commits * 4 <= stats.writes,
        "200 producers at once should share commits: {stats:?}"
    );
    let stored: u64 = store
        .jobs_count()
        .await
        .unwrap()
        .iter()
        .map(|c| c.count)
        .sum();
    assert_eq!(stored, PRODUCERS as u64);
}

#[actix_rt::test]
async fn a_full_disk_fails_the_waiting_producers_and_the_queue_recovers_once_there_is_room() {
    tokio::time::pause();
    let dir = tempfile::tempdir().unwrap();
    // A 640 KiB database: SQLite answers SQLITE_FULL past it, as on a
    // full disk.
    let store = Arc::new(
        SqliteOptions::new(db_in(&dir))
            .max_size(640 * 1024)
            .open()
            .await
            .unwrap(),
    );
    let queue = queue_on(store.clone()).await;
    queue
        .define("filler")
        .action(|_: JobContext<String>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue.process(["default"]).concurrency(4).start().unwrap();

    // 320 KiB of completed jobs, as old history.
    let filler = queue
        .create_many((0..20).map(|_| NewJob::new("filler", "f".repeat(16 * 1024))))
        .await
        .unwrap();
    for h in &filler {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    queue.job(filler[0].id()).await.unwrap(); // their completion is stored

    // Jobs of a task not defined yet (so they wait, and write nothing
    // more) until the disk is full.
    let big = || "b".repeat(8 * 1024);
    let mut acknowledged = Vec::new();
    let full = loop {
        match queue.create("big", big()).await {
            Ok(h) => acknowledged.push(h),
            Err(err) => break err,
        }
        assert!(acknowledged.len() < 1000, "the store never filled up");
    };
    assert!(
        matches!(full, Error::Store(StoreError::Full(_))),
        "{full:?}"
    );
    assert!(!acknowledged.is_empty());
    // Producers waiting on the same failing commit all get the error.
    let at_once =
        futures::future::join_all((0..10).map(|_| queue.create("big", big()).into_future())).await;
    for result in &at_once {
        assert!(
            matches!(result, Err(Error::Store(StoreError::Full(_)))),
            "{result:?}"
        );
    }
    // Nothing that was refused is stored; everything acknowledged is.
    let counts = store.jobs_count().await.unwrap();
    let count = |status| {
        counts
            .iter()
            .find(|c| c.task == "big" && c.status == status)
            .map_or(0, |c| c.count)
    };
    assert_eq!(
        count(JobStatus::Ready),
        acknowledged.len() as u64,
        "{counts:?}"
    );
    for h in &acknowledged {
        assert!(store.job_get(h.id()).await.unwrap().is_some());
    }

    // Room is made (old completed jobs deleted), and the queue goes on.
    let freed = store
        .jobs_delete(&JobDelete {
            statuses: vec![JobStatus::Completed],
            tasks: vec!["filler".into()],
            finished_before: None,
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(freed, 20);
    let after = queue.create("big", big()).await.expect("room again");
    queue
        .define("big")
        .action(|job: JobContext<String>| async move { Ok::<_, JobError>(job.payload.len()) })
        .unwrap();
    for h in acknowledged.iter().chain([&after]) {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    assert_eq!(
        queue.job(after.id()).await.unwrap().status,
        JobStatus::Completed
    );
    let stats = store.stats();
    assert!(
        stats.failed >= 11,
        "the refused writes are counted: {stats:?}"
    );
}

/// A store that fails every write while `failing` is set, as a disk with
/// I/O errors would: the injected fault for the queue-level test below.
#[derive(Debug)]
struct FailingWrites {
    inner: SqliteStore,
    failing: AtomicBool,
}

impl FailingWrites {
    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(std::io::Error::other(
                "injected I/O error",
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FailingWrites {
    async fn jobs_insert(&self, jobs: &[Job]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.jobs_insert(jobs).await
    }
    async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.jobs_update(updates).await
    }
    async fn jobs_pending(&self) -> Result<Vec<Job>, StoreError> {
        self.inner.jobs_pending().await
    }
    async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.inner.job_get(id).await
    }
    async fn jobs_query(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        self.inner.jobs_query(query).await
    }
    async fn jobs_count(&self) -> Result<Vec<StatusCount>, StoreError> {
        self.inner.jobs_count().await
    }
    async fn jobs_delete(&self, params: &JobDelete) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.jobs_delete(params).await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

#[actix_rt::test]
async fn io_errors_while_committing_fail_the_producers_and_the_queue_recovers() {
    tokio::time::pause();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FailingWrites {
        inner: SqliteStore::open(db_in(&dir)).await.unwrap(),
        failing: AtomicBool::new(false),
    });
    let queue = queue_on(store.clone()).await;
    // Handlers wait for a permit each, so the test decides when they end,
    // and say when they did.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let g = gate.clone();
    queue
        .define("gated")
        .action(move |job: JobContext<u32>| {
            let (g, ended) = (g.clone(), ended_tx.clone());
            async move {
                g.acquire().await.map_err(JobError::fatal)?.forget();
                let _ = ended.send(job.payload);
                Ok::<_, JobError>(job.payload)
            }
        })
        .unwrap();
    queue.process(["default"]).concurrency(8).start().unwrap();
    let before = queue
        .create_many((0..5).map(|n| NewJob::new("gated", n)))
        .await
        .unwrap();
    queue.job(before[4].id()).await.unwrap(); // all five are running and stored so

    store.failing.store(true, Ordering::SeqCst);
    match queue.create("gated", 99).await {
        Err(Error::Store(err @ StoreError::Unavailable(_))) => assert!(err.is_transient()),
        other => panic!("a producer must get the I/O error, got {other:?}"),
    }
    // The running jobs finish while nothing can be recorded (their results
    // wait until it can).
    gate.add_permits(before.len());
    for _ in &before {
        assert!(ended.recv().await.is_some());
    }
    tokio::time::sleep(Duration::from_secs(30)).await; // the queue retries, and fails, meanwhile
    let stored = store.inner.jobs_query(&JobQuery::default()).await.unwrap();
    assert_eq!(stored.len(), 5, "the refused job is not stored");
    assert!(
        stored.iter().all(|j| j.status == JobStatus::Running),
        "nothing new was recorded"
    );
    // Reads that need those results stored fail promptly with the store's
    // error rather than wait for the disk to recover. (On the paused
    // clock the retries would go on for ever: the bound turns a blocked
    // read into a failure of this test, not a hang.)
    let bound = Duration::from_secs(60);
    match tokio::time::timeout(bound, queue.stats()).await {
        Ok(Err(Error::Store(StoreError::Unavailable(_)))) => {}
        other => panic!("stats must fail with the store's error, got {other:?}"),
    }
    match tokio::time::timeout(bound, queue.job(before[0].id())).await {
        Ok(Err(Error::Store(StoreError::Unavailable(_)))) => {}
        other => panic!("a job read must fail with the store's error, got {other:?}"),
    }
    match tokio::time::timeout(bound, queue.fetch(JobQuery::default())).await {
        Ok(Err(Error::Store(StoreError::Unavailable(_)))) => {}
        other => panic!("a listing must fail with the store's error, got {other:?}"),
    }

    store.failing.store(false, Ordering::SeqCst);
    for h in &before {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
        assert_eq!(
            queue.job(h.id()).await.unwrap().status,
            JobStatus::Completed,
            "recorded once the disk recovered"
        );
    }
    let after = queue
        .create("gated", 100)
        .await
        .expect("producers are served again");
    gate.add_permits(1);
    assert_eq!(
        after.result().await.unwrap().value,
        Some(serde_json::json!(100))
    );
}

#[actix_rt::test]
async fn a_bad_write_fails_alone_and_the_rest_of_its_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(db_in(&dir)).await.unwrap());
    let queue = queue_on(store.clone()).await;
    let first = queue.create("report", 0).await.unwrap();
    let stored = store.job_get(first.id()).await.unwrap().unwrap();
    // Fifty inserts at once, one of them a job that exists already.
    let mut batches: Vec<Vec<Job>> = (1..50)
        .map(|n| {
            let mut job = stored.clone();
            job.id = JobId::new();
            job.payload = kessel::Payload::from_value(&n).unwrap();
            vec![job]
        })
        .collect();
    batches.insert(25, vec![stored.clone()]);
    let results =
        futures::future::join_all(batches.iter().map(|jobs| store.jobs_insert(jobs))).await;
    for (i, result) in results.iter().enumerate() {
        if i == 25 {
            assert!(
                matches!(result, Err(StoreError::Other(_))),
                "the duplicate fails: {result:?}"
            );
        } else {
            assert!(
                result.is_ok(),
                "insert {i} must not fail with the duplicate: {result:?}"
            );
            assert!(store.job_get(batches[i][0].id).await.unwrap().is_some());
        }
    }
    let count: u64 = store
        .jobs_count()
        .await
        .unwrap()
        .iter()
        .map(|c| c.count)
        .sum();
    assert_eq!(count, 50);
    let stats = store.stats();
    assert_eq!((stats.writes, stats.failed), (50, 1), "{stats:?}");
}

/// Dropping every handle of a queue stops it and lets go of its file: the
/// same file opens again in the same process (waiting on its lock while
/// the dropped queue finishes), with the jobs the first one left pending.
#[actix_rt::test]
async fn dropping_the_last_handle_releases_the_file_for_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let open = || async {
        let store = SqliteOptions::new(&path)
            .lock_timeout(Duration::from_secs(30))
            .open()
            .await
            .expect("the file opens");
        Queue::builder()
            .store(Arc::new(store))
            .build()
            .await
            .expect("a queue")
    };
    let id = {
        let queue = open().await;
        let id = queue.create("later", 7).delay("1h").await.unwrap().id();
        // The handle returned by create is dropped with the queue.
        id
    };
    let queue = open().await;
    let job = queue.job(id).await.expect("the job survived");
    assert_eq!(job.status, JobStatus::Scheduled);
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
}
