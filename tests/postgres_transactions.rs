//! Jobs created in the caller's own PostgreSQL transaction
//! (`Queue::create_in`, `Queue::create_many_in`): they exist, and run,
//! only if that transaction commits, with the business rows written
//! beside them. A real database, a fresh schema per test, a queue with a
//! worker; every wait is on a result, an event or a bounded timeout.
#![cfg(feature = "postgres")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::pg;
use futures::StreamExt;
use kessel::event::{Event, Filter};
use kessel::{Error, JobContext, JobError, JobHandle, JobId, JobStatus, NewJob, Queue};
use parking_lot::Mutex;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Short, for the expiry tests: the rescuer sweeps at a lease's cadence.
const LEASE: Duration = Duration::from_millis(600);
/// For queues with workers: long enough that a stall on a loaded machine
/// never lapses a running job's lease (a lapse reruns the job, and these
/// tests count runs).
const WORKER_LEASE: Duration = Duration::from_secs(10);
/// Long enough that only a notification can make a claim come in time:
/// a job picked up well within it was woken by its commit.
const POLL: Duration = Duration::from_secs(30);
/// Any wait longer than this is a failure, not a slow machine.
const LIMIT: Duration = Duration::from_secs(20);

type Runs = Arc<Mutex<HashMap<JobId, (u32, chrono::DateTime<chrono::Utc>)>>>;

/// A queue on `db` with task `work` (payload `u32`, doubled) served by
/// one worker; `runs` counts each job's runs and keeps its last start.
async fn queue_with_worker(db: &pg::TestDb) -> (Queue, Runs) {
    let queue = db.queue(WORKER_LEASE, POLL).await;
    let runs: Runs = Arc::default();
    let r = runs.clone();
    queue
        .define("work")
        .action(move |job: JobContext<u32>| {
            let r = r.clone();
            async move {
                r.lock()
                    .entry(job.id())
                    .and_modify(|e| *e = (e.0 + 1, chrono::Utc::now()))
                    .or_insert((1, chrono::Utc::now()));
                Ok::<_, JobError>(job.payload * 2)
            }
        })
        .unwrap();
    queue.process(["default"]).concurrency(8).start().unwrap();
    (queue, runs)
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {LIMIT:?}"))
}

/// Creates `orders` (business rows) in the test's schema.
async fn orders_table(db: &pg::TestDb) -> String {
    let table = format!("{}.orders", db.schema);
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, email text NOT NULL)"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    table
}

async fn order_exists(db: &pg::TestDb, table: &str, id: i64) -> bool {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)"
    )))
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

async fn jobs_in_schema(db: &pg::TestDb) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.jobs",
        db.schema
    )))
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// A committed job of `work` run to the end: after it, the worker has
/// claimed since whatever came before, and is idle.
async fn sentinel(queue: &Queue) -> JobId {
    let handle = queue.create("work", 1000).await.unwrap();
    let result = within("the sentinel job", handle.result()).await.unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    handle.id()
}

fn assert_unknown(result: Result<impl std::fmt::Debug, Error>, id: JobId) {
    match result {
        Err(Error::UnknownJob(unknown)) => assert_eq!(unknown, id),
        other => panic!("expected UnknownJob({id}), got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_committed_job_is_woken_by_its_commit_and_runs_once() {
    let Some(db) = pg::fresh().await else { return };
    let (queue, runs) = queue_with_worker(&db).await;
    // The worker has claimed once and is idle: its next claim without a
    // notification would come after POLL (30 s).
    let warm = sentinel(&queue).await;

    let mut tx = db.pool.begin().await.unwrap();
    let handle = queue
        .create_in(&mut tx, NewJob::new("work", 21))
        .await
        .unwrap();
    let mut events = queue.events(Filter::Job(handle.id()));
    // Not visible outside the transaction until it commits.
    assert_unknown(queue.job(handle.id()).await, handle.id());
    let committed = chrono::Utc::now();
    tx.commit().await.unwrap();

    let result = within("the committed job", handle.result()).await.unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    assert_eq!(result.value, Some(serde_json::json!(42)));
    let (count, started) = runs.lock()[&handle.id()];
    assert_eq!(count, 1, "ran once");
    let waited = (started - committed).to_std().unwrap_or_default();
    assert!(
        waited < Duration::from_secs(10),
        "started {waited:?} after the commit: the commit's NOTIFY did not wake the claim (poll is {POLL:?})"
    );
    assert_eq!(runs.lock().len(), 2, "the warm-up and this job only");
    assert!(runs.lock().contains_key(&warm));

    // No `Created` for a transactional create; the run's events as usual.
    let mut kinds = Vec::new();
    while let Some(event) = within("the job's events", events.next()).await {
        if let Event::Job(e) = event {
            kinds.push(e.kind.name());
        }
    }
    assert_eq!(kinds, ["started", "completed"]);
    // The stored log has the "created" line, written with the job.
    let job = queue.job(handle.id()).await.unwrap();
    assert_eq!(&*job.logs[0].message, "created");
    assert_eq!(job.attempts, 1);

    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn a_rolled_back_job_never_exists_and_never_runs() {
    let Some(db) = pg::fresh().await else { return };
    let (queue, runs) = queue_with_worker(&db).await;

    let mut tx = db.pool.begin().await.unwrap();
    let handles = queue
        .create_many_in(&mut tx, (0..3).map(|n| NewJob::new("work", n)))
        .await
        .unwrap();
    let one = queue
        .create_in(&mut tx, NewJob::new("work", 9).priority(0))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    // The worker claims after the rollback and runs what exists: the
    // sentinel only (it would have taken the others first, or with it).
    let sentinel = sentinel(&queue).await;
    for handle in handles.iter().chain([&one]) {
        assert_unknown(queue.job(handle.id()).await, handle.id());
        assert_unknown(handle.result().await, handle.id());
    }
    assert_eq!(runs.lock().keys().copied().collect::<Vec<_>>(), [sentinel]);
    assert_eq!(jobs_in_schema(&db).await, 1);

    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn a_business_row_and_its_jobs_commit_or_roll_back_together() {
    let Some(db) = pg::fresh().await else { return };
    let (queue, runs) = queue_with_worker(&db).await;
    let orders = orders_table(&db).await;

    // A plain connection, as a handler would hold from its own pool.
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    for (order, commit) in [(1_i64, true), (2, false)] {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {orders} (id, email) VALUES ($1, $2)"
        )))
        .bind(order)
        .bind("ford@example.com")
        .execute(&mut *tx)
        .await
        .unwrap();
        let handles = queue
            .create_many_in(
                &mut tx,
                (0..3).map(|n| NewJob::new("work", n + 10 * order as u32)),
            )
            .await
            .unwrap();
        if commit {
            tx.commit().await.unwrap();
            assert!(order_exists(&db, &orders, order).await);
            for (n, h) in handles.iter().enumerate() {
                let r = within("a committed job", h.result()).await.unwrap();
                assert_eq!(r.value, Some(serde_json::json!((n as u32 + 10) * 2)));
            }
        } else {
            tx.rollback().await.unwrap();
            assert!(!order_exists(&db, &orders, order).await);
            let sentinel = sentinel(&queue).await;
            for h in &handles {
                assert_unknown(queue.job(h.id()).await, h.id());
                assert!(!runs.lock().contains_key(&h.id()));
            }
            assert!(runs.lock().contains_key(&sentinel));
        }
    }
    // Three jobs of the committed order and the sentinel ran, once each.
    let runs = runs.lock().clone();
    assert_eq!(runs.len(), 4);
    assert!(runs.values().all(|(n, _)| *n == 1), "{runs:?}");

    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn a_crash_before_the_commit_leaves_neither_the_row_nor_the_job() {
    let Some(db) = pg::fresh().await else { return };
    let (queue, runs) = queue_with_worker(&db).await;
    let orders = orders_table(&db).await;

    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {orders} (id, email) VALUES (7, 'arthur@example.com')"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let handle = queue
        .create_in(&mut tx, NewJob::new("work", 7))
        .await
        .unwrap();
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    // The application's session dies between its writes and its commit.
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(backend)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(killed);
    assert!(tx.commit().await.is_err(), "the commit cannot succeed");
    drop(conn);

    let sentinel = sentinel(&queue).await;
    assert!(!order_exists(&db, &orders, 7).await);
    assert_unknown(queue.job(handle.id()).await, handle.id());
    assert_eq!(runs.lock().keys().copied().collect::<Vec<_>>(), [sentinel]);

    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn a_hundred_jobs_in_one_transaction_all_run_once() {
    let Some(db) = pg::fresh().await else { return };
    let (queue, runs) = queue_with_worker(&db).await;

    let mut tx = db.pool.begin().await.unwrap();
    // 100 is past the store's COPY threshold: the COPY path, on the
    // caller's connection.
    let handles = queue
        .create_many_in(&mut tx, (0..100).map(|n| NewJob::new("work", n)))
        .await
        .unwrap();
    assert_eq!(handles.len(), 100);
    assert_eq!(
        jobs_in_schema(&db).await,
        0,
        "nothing visible before the commit"
    );
    tx.commit().await.unwrap();

    for (n, h) in handles.iter().enumerate() {
        let r = within("a bulk job", h.result()).await.unwrap();
        assert_eq!(r.status, JobStatus::Completed);
        assert_eq!(r.value, Some(serde_json::json!(n * 2)));
    }
    let runs = runs.lock().clone();
    assert_eq!(runs.len(), 100);
    assert!(runs.values().all(|(n, _)| *n == 1), "each ran once");
    let job = queue.job(handles[99].id()).await.unwrap();
    assert_eq!(&*job.logs[0].message, "created");

    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn an_invalid_job_is_refused_before_the_connection_is_used() {
    let Some(db) = pg::fresh().await else { return };
    let (queue, _runs) = queue_with_worker(&db).await;

    // A connection whose session is gone: anything sent on it fails.
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(backend)
        .execute(&db.pool)
        .await
        .unwrap();

    let err = queue
        .create_in(&mut conn, NewJob::new("work", 1).delay("soon"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidDuration(_)), "{err:?}");
    let err = queue
        .create_many_in(
            &mut conn,
            [
                NewJob::new("work", 1),
                NewJob::new("work", 2).run_at(chrono::DateTime::<chrono::Utc>::MIN_UTC),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: "run_at",
                ..
            }
        ),
        "{err:?}"
    );
    // Nothing to create is no statement.
    assert!(queue
        .create_many_in(&mut conn, [])
        .await
        .unwrap()
        .is_empty());
    // A valid job does reach the connection, and its loss is a store error.
    let err = queue
        .create_in(&mut conn, NewJob::new("work", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    assert_eq!(jobs_in_schema(&db).await, 0);

    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn a_job_committed_after_its_expiry_ends_expired_without_running() {
    let Some(db) = pg::fresh().await else { return };
    // Nobody serves `nobody's`: no claim can expire it, only the
    // creator's watch (if the commit came first) or the rescuer's sweep.
    let queue = db.queue(LEASE, POLL).await;

    let mut tx = db.pool.begin().await.unwrap();
    let already = chrono::Utc::now() - chrono::Duration::seconds(1);
    let handle = queue
        .create_in(&mut tx, NewJob::new("nobody's", ()).expires_at(already))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let result = within("the expiry", handle.result()).await.unwrap();
    assert_eq!(result.status, JobStatus::Expired);
    assert_eq!(queue.job(handle.id()).await.unwrap().attempts, 0);

    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn a_served_job_committed_after_its_expiry_is_expired_by_its_claimer() {
    let Some(db) = pg::fresh().await else { return };
    let (queue, runs) = queue_with_worker(&db).await;

    let mut tx = db.pool.begin().await.unwrap();
    let already = chrono::Utc::now() - chrono::Duration::seconds(1);
    let handle = queue
        .create_in(&mut tx, NewJob::new("work", 1).expires_at(already))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let result = within("the expiry", handle.result()).await.unwrap();
    assert_eq!(result.status, JobStatus::Expired);
    assert!(!runs.lock().contains_key(&handle.id()), "it never ran");

    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

// `place_order` exactly as docs/deploying.md shows it ("Enqueue in your
// own transaction").
async fn place_order(
    pool: &PgPool,
    queue: &Queue,
    id: i64,
    email: &str,
) -> Result<JobHandle, Box<dyn std::error::Error + Send + Sync>> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO orders (id, email) VALUES ($1, $2)")
        .bind(id)
        .bind(email)
        .execute(&mut *tx)
        .await?;
    let receipt = queue
        .create_in(
            &mut tx,
            NewJob::new(
                "send receipt",
                serde_json::json!({ "order": id, "to": email }),
            ),
        )
        .await?;
    tx.commit().await?;
    Ok(receipt)
}

#[actix_rt::test]
async fn the_documented_example_runs_with_the_app_tables_elsewhere_on_the_search_path() {
    let Some(db) = pg::fresh().await else { return };
    let queue = db.queue(WORKER_LEASE, POLL).await;
    queue
        .define("send receipt")
        .action(|job: JobContext<serde_json::Value>| async move {
            Ok::<_, JobError>(format!(
                "sent to {}",
                job.payload["to"].as_str().unwrap_or("?")
            ))
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();

    // The application's tables in a schema of their own, found through
    // its connections' search_path; it has no `jobs` table, so only a
    // schema-qualified insert can land the job in the queue's schema.
    let app = format!("{}_app", db.schema);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA {app}; CREATE TABLE {app}.orders (id bigint PRIMARY KEY, email text NOT NULL)"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let options: PgConnectOptions = db.url.parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.options([("search_path", app.as_str())]))
        .await
        .unwrap();

    let receipt = place_order(&pool, &queue, 42, "ford@example.com")
        .await
        .unwrap();
    let result = within("the receipt", receipt.result()).await.unwrap();
    assert_eq!(
        result.value,
        Some(serde_json::json!("sent to ford@example.com"))
    );
    assert!(order_exists(&db, &format!("{app}.orders"), 42).await);
    // The same order again: the insert fails, the transaction rolls back
    // as it is dropped, and no second receipt is queued.
    assert!(place_order(&pool, &queue, 42, "ford@example.com")
        .await
        .is_err());
    let receipts: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.jobs WHERE task = 'send receipt'",
        db.schema
    )))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(receipts, 1);

    pool.close().await;
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {app} CASCADE")))
        .execute(&db.pool)
        .await
        .unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn a_queue_on_another_store_refuses_with_a_typed_error() {
    let Some(db) = pg::fresh().await else { return };
    let queue = Queue::new();
    let mut tx = db.pool.begin().await.unwrap();
    let err = queue
        .create_in(&mut tx, NewJob::new("work", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NeedsPostgres {
                operation: "create_in",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "create_in needs a queue on the PostgreSQL store"
    );
    let err = queue
        .create_many_in(&mut tx, [NewJob::new("work", 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NeedsPostgres {
                operation: "create_many_in",
                ..
            }
        ),
        "{err:?}"
    );
    // The transaction is untouched and still usable.
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(one, 1);
    tx.rollback().await.unwrap();
    db.drop().await;
}
