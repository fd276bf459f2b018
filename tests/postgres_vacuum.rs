//! The PostgreSQL store keeps its job tables' dead tuples down: the
//! per-table autovacuum settings of its migrations, and the vacuums a
//! running queue makes itself (`PgOptions::vacuum_after`). Real time (the
//! database has its own); every wait is for what the server reports.
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg;
use kessel::store::PgStore;
use kessel::{JobContext, JobError, NewJob, Queue};

/// The per-table storage options of `table` in the test's schema.
async fn reloptions(db: &pg::TestDb, table: &str) -> Vec<String> {
    sqlx::query_scalar::<_, Option<Vec<String>>>(
        "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = $2",
    )
    .bind(&db.schema)
    .bind(table)
    .fetch_one(&db.pool)
    .await
    .expect("read reloptions")
    .unwrap_or_default()
}

#[actix_rt::test]
async fn the_job_tables_are_autovacuumed_after_a_fixed_number_of_dead_rows() {
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_secs(30)).await;
    for table in ["jobs", "job_logs"] {
        let options = reloptions(&db, table).await;
        for wanted in [
            "autovacuum_vacuum_scale_factor=0",
            "autovacuum_vacuum_threshold=1000",
            "autovacuum_vacuum_cost_delay=0",
        ] {
            assert!(
                options.iter().any(|o| o == wanted),
                "{table}: {wanted} missing from {options:?}"
            );
        }
    }
    use kessel::store::Store;
    store.close().await.unwrap();
    db.drop().await;
}

/// Vacuums of `jobs` in the test's schema that were not autovacuum's.
async fn own_vacuums(db: &pg::TestDb) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'jobs'",
    )
    .bind(&db.schema)
    .fetch_one(&db.pool)
    .await
    .expect("read vacuum_count")
}

#[actix_rt::test]
async fn a_running_queue_vacuums_its_jobs_table_once_dead_rows_pass_the_threshold() {
    let Some(db) = pg::fresh().await else { return };
    let store = PgStore::connect_with(db.options().vacuum_after(Some(10)))
        .await
        .expect("connect the store");
    let queue = Queue::builder()
        .store(Arc::new(store))
        .build()
        .await
        .expect("build the queue");
    queue
        .define("noop")
        .action(|_job: JobContext<u32>| async { Ok::<(), JobError>(()) })
        .unwrap();
    queue.process(["default"]).concurrency(8).start().unwrap();
    let handles = queue
        .create_many((0..200).map(|n| NewJob::new("noop", n)))
        .await
        .unwrap();
    for h in &handles {
        h.result().await.unwrap();
    }
    // Each job's claim and finish left dead row versions: the queue sees
    // them within a second or two and vacuums. The deadline is for a
    // broken build only.
    let deadline = Instant::now() + Duration::from_secs(60);
    while own_vacuums(&db).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no vacuum of the jobs table within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}
