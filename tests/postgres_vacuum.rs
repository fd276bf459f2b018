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

/// The jobs table's counts in the test's schema: (vacuums, analyzes, rows
/// changed since the last analyze), kessel's own (not autovacuum's).
async fn jobs_stats(db: &pg::TestDb) -> (i64, i64, i64) {
    sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT vacuum_count, analyze_count, n_mod_since_analyze
         FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'jobs'",
    )
    .bind(&db.schema)
    .fetch_one(&db.pool)
    .await
    .expect("read the jobs table's statistics")
}

/// Waits (real time, for the server's counts) until `done` holds of the
/// jobs table's counts, running `meanwhile` between looks.
async fn wait_for_jobs_stats(
    db: &pg::TestDb,
    what: &str,
    mut meanwhile: impl FnMut() -> Option<String>,
    done: impl Fn((i64, i64, i64)) -> bool,
) -> (i64, i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = jobs_stats(db).await;
        if done(stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 60 s, last {stats:?}"
        );
        if let Some(sql) = meanwhile() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&db.pool)
                .await
                .expect("change some jobs");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_rt::test]
async fn a_busy_jobs_table_has_its_statistics_taken_at_most_once_a_minute() {
    let Some(db) = pg::fresh().await else { return };
    let store = PgStore::connect_with(db.options().vacuum_after(Some(10)))
        .await
        .expect("connect the store");
    // No worker: the jobs wait, and only this test changes them.
    let queue = Queue::builder()
        .store(Arc::new(store))
        .build()
        .await
        .expect("build the queue");
    queue
        .create_many((0..10_000).map(|n| NewJob::new("waits", n)))
        .await
        .unwrap();
    let touch_all = format!("UPDATE {}.jobs SET priority = priority", db.schema);
    let touch_some = format!(
        "UPDATE {}.jobs SET priority = priority WHERE id IN (SELECT id FROM {}.jobs LIMIT 100)",
        db.schema, db.schema
    );
    // No statistics can have been taken before this.
    let began = std::time::Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(touch_all.clone()))
        .execute(&db.pool)
        .await
        .unwrap();
    // Never analyzed, 20,000 changes of 10,000 rows: the queue's vacuum
    // takes the statistics.
    wait_for_jobs_stats(&db, "the first analyze", || None, |(_, a, _)| a >= 1).await;
    // As many changes again, seen by the server's counts...
    sqlx::raw_sql(sqlx::AssertSqlSafe(touch_all))
        .execute(&db.pool)
        .await
        .unwrap();
    let (vacuums, _, _) =
        wait_for_jobs_stats(&db, "the changes counted", || None, |(_, _, m)| m >= 10_000).await;
    // ...and two vacuums after that (the second surely read them), fed
    // with a few dead rows each time.
    let (_, analyzes, changed) = wait_for_jobs_stats(
        &db,
        "two more vacuums",
        || Some(touch_some.clone()),
        |(v, _, _)| v >= vacuums + 2,
    )
    .await;
    // Within a minute of the first (the usual case), no second; on a
    // machine so loaded that the waits took longer, one a minute at most.
    let minutes = began.elapsed().as_secs() / 60;
    assert!(
        analyzes <= 1 + minutes as i64,
        "statistics taken {analyzes} times in {:?} ({changed} rows changed since)",
        began.elapsed()
    );
    assert!(analyzes >= 1);
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}
