//! How the durable stores keep jobs, beyond what the conformance suite
//! asks of every store: a job's "created" line is kept as a flag and read
//! back first in its log (and only a line that is exactly that), batches
//! large enough for PostgreSQL's `COPY` store every field, and stores
//! written at the previous schema version upgrade with their logs intact.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kessel::store::{JobQuery, JobUpdate, Order, Store};
use kessel::{Job, JobId, JobStatus, LogLine, Payload, Progress};
use serde_json::json;

/// A time the stores keep exactly (whole microseconds).
fn at(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("a valid time")
}

fn line(message: &'static str, attempt: u32, at: DateTime<Utc>) -> LogLine {
    LogLine::new(at, attempt, message)
}

/// Job `n` of a batch; its log is one of four kinds, by `n % 4`:
/// 0. every field set; "created" and a line with data;
/// 1. only the "created" line;
/// 2. no log at all;
/// 3. lines that look like "created" but are not the implied one (another
///    time, data, another attempt), and the real one not first.
fn job(n: usize) -> Job {
    let created_at = at(1_764_050_000_000_000 + n as i64 * 1_000);
    let mut job = Job {
        id: JobId::new(),
        reference: None,
        task: Arc::from("durable"),
        payload: Payload::from_value(&json!({ "n": n })).expect("JSON"),
        priority: 0,
        status: JobStatus::Ready,
        created_at,
        run_at: created_at,
        expires_at: None,
        attempts: 0,
        max_attempts: None,
        last_error: None,
        result: None,
        progress: None,
        finished_at: None,
        ran_by: None,
        callback: None,
        callback_secret: None,
        group: None,
        logs: Vec::new(),
    };
    match n % 4 {
        0 => {
            job.reference = Some(format!("ref-{n}"));
            job.priority = u32::MAX - n as u32;
            job.status = JobStatus::Retrying;
            job.run_at = at(253_402_300_799_999_999);
            job.expires_at = Some(at(946_684_799_999_999));
            job.attempts = 3;
            job.max_attempts = Some(u32::MAX);
            job.last_error = Some("upstream said 503 — try later".into());
            job.result = Some(json!({ "partial": [1, 2.5, "žluť", null] }));
            job.progress = Some(Progress {
                current: 3,
                total: i64::MAX as u64,
            });
            job.finished_at = Some(at(1));
            let mut noted = line("note", 2, at(0));
            noted.data = Some(json!({ "worker": 3 }));
            job.logs = vec![line("created", 0, created_at), noted];
        }
        1 => job.logs = vec![line("created", 0, created_at)],
        2 => {}
        _ => {
            let mut with_data = line("created", 0, created_at);
            with_data.data = Some(json!(true));
            job.logs = vec![
                line("created", 0, at(created_at.timestamp_micros() + 1)),
                with_data,
                line("created", 1, created_at),
                line("created", 0, created_at),
            ];
        }
    }
    job
}

/// Inserts `n` jobs in one call and checks that every read gives each of
/// them back as written, and that an update appends after its log.
async fn stores_every_log_as_written(store: &dyn Store, n: usize) {
    let jobs: Vec<Job> = (0..n).map(job).collect();
    store.jobs_insert(&jobs).await.expect("insert");
    for job in &jobs {
        assert_eq!(
            store.job_get(job.id).await.expect("get").as_ref(),
            Some(job),
            "job_get of job {}",
            job.payload.as_str()
        );
    }
    let listed = store
        .jobs_query(&JobQuery {
            tasks: vec!["durable".into()],
            order: Order::OldestFirst,
            limit: n,
            ..JobQuery::default()
        })
        .await
        .expect("query");
    assert_eq!(listed, jobs, "jobs_query");
    let mut pending = store.jobs_pending().await.expect("pending");
    pending.retain(|j| &*j.task == "durable");
    assert_eq!(pending, jobs, "jobs_pending");

    let appended = line("started", 1, at(1_800_000_000_000_000));
    let mut started = jobs[1].clone();
    started.status = JobStatus::Running;
    started.attempts = 1;
    store
        .jobs_update(&[JobUpdate::of(&started, vec![appended.clone()])])
        .await
        .expect("update");
    started.logs.push(appended);
    assert_eq!(
        store.job_get(started.id).await.expect("get"),
        Some(started.clone())
    );
    assert_eq!(
        started.logs.iter().map(|l| &*l.message).collect::<Vec<_>>(),
        ["created", "started"]
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use kessel::store::{SqliteStore, SQLITE_SCHEMA_VERSION};
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};

    /// A file holding a job whose time kessel cannot schedule (stored before
    /// times were checked, or by other means) opens: that job is buried
    /// with a message saying why (and an error event), the others run.
    #[actix_rt::test]
    async fn a_row_with_a_time_out_of_range_is_buried_and_the_rest_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jobs.db");
        let (mut bad, good) = (job(1), job(5));
        bad.run_at = DateTime::<Utc>::MAX_UTC;
        {
            let store = SqliteStore::open(&path).await.expect("open");
            store
                .jobs_insert(&[bad.clone(), good.clone()])
                .await
                .expect("insert");
            store.close().await.expect("close");
        }
        let queue = kessel::Queue::sqlite(&path).await.expect("the file opens");
        queue
            .define("durable")
            .action(|_: kessel::JobContext<serde_json::Value>| async {
                Ok::<_, kessel::JobError>(())
            })
            .expect("define");
        queue.process(["default"]).start().expect("worker");
        assert_eq!(
            queue.result(good.id).await.expect("result").status,
            JobStatus::Completed
        );
        let buried = queue.job(bad.id).await.expect("read");
        assert_eq!(buried.status, JobStatus::Buried);
        assert!(
            buried
                .last_error
                .as_deref()
                .is_some_and(|m| m.contains("outside the times kessel accepts")),
            "{buried:?}"
        );
        queue
            .shutdown(std::time::Duration::from_secs(5))
            .await
            .expect("shutdown");
    }

    #[actix_rt::test]
    async fn a_small_batch_keeps_every_log_as_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("jobs.db"))
            .await
            .expect("open");
        stores_every_log_as_written(&store, 4).await;
    }

    #[actix_rt::test]
    async fn a_large_batch_keeps_every_log_as_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("jobs.db"))
            .await
            .expect("open");
        // More than one multi-row statement's worth.
        stores_every_log_as_written(&store, 2_100).await;
    }

    #[actix_rt::test]
    async fn a_new_file_has_16_kib_pages() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jobs.db");
        let store = SqliteStore::open(&path).await.expect("open");
        store.jobs_insert(&[job(1)]).await.expect("insert");
        store.close().await.expect("close");
        let header = std::fs::read(&path).expect("read the file");
        // The header's page size: bytes 16 and 17, big-endian.
        assert_eq!(u16::from_be_bytes([header[16], header[17]]), 16_384);
    }

    #[actix_rt::test]
    async fn a_version_1_file_upgrades_with_its_stored_created_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jobs.db");
        let mut old = job(3);
        old.task = Arc::from("legacy");
        old.logs = vec![
            line("created", 0, old.created_at),
            line("note", 0, old.created_at),
        ];
        {
            let mut conn = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .connect()
                .await
                .expect("create a version 1 file");
            sqlx::raw_sql(include_str!(
                "../src/store/sqlite/sql/migrations/0001_init.sql"
            ))
            .execute(&mut conn)
            .await
            .expect("version 1 schema");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "INSERT INTO kessel_schema (version, applied_at) VALUES (1, 0);
                 INSERT INTO kessel_jobs (id, task, payload, priority, status, created_at, run_at, attempts)
                 VALUES ('{id}', 'legacy', '{payload}', 0, 'ready', {t}, {t}, 0);
                 INSERT INTO kessel_job_logs (job_id, at, attempt, message)
                 VALUES ('{id}', {t}, 0, 'created'), ('{id}', {t}, 0, 'note');",
                id = old.id,
                payload = old.payload.as_str(),
                t = old.created_at.timestamp_micros(),
            )))
            .execute(&mut conn)
            .await
            .expect("a job of version 1");
            conn.close().await.expect("close");
        }
        let store = SqliteStore::open(&path).await.expect("open and upgrade");
        assert_eq!(store.job_get(old.id).await.expect("get"), Some(old.clone()));
        assert_eq!(store.jobs_pending().await.expect("pending"), vec![old]);
        stores_every_log_as_written(&store, 4).await;
        store.close().await.expect("close");

        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .expect("reopen");
        let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM kessel_schema")
            .fetch_one(&mut conn)
            .await
            .expect("version");
        assert_eq!(version, SQLITE_SCHEMA_VERSION);
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::common::pg;
    use kessel::store::PgStore;

    #[actix_rt::test]
    async fn a_small_batch_keeps_every_log_as_written() {
        let Some(db) = pg::fresh().await else { return };
        let store = PgStore::connect_with(db.options()).await.expect("connect");
        stores_every_log_as_written(&store, 4).await;
        store.close().await.expect("close");
        db.drop().await;
    }

    #[actix_rt::test]
    async fn a_batch_written_with_copy_keeps_every_field_and_log() {
        let Some(db) = pg::fresh().await else { return };
        let store = PgStore::connect_with(db.options()).await.expect("connect");
        stores_every_log_as_written(&store, 400).await;
        store.close().await.expect("close");
        db.drop().await;
    }

    #[actix_rt::test]
    async fn a_duplicate_in_a_copied_batch_stores_none_of_it() {
        let Some(db) = pg::fresh().await else { return };
        let store = PgStore::connect_with(db.options()).await.expect("connect");
        let mut jobs: Vec<Job> = (0..200).map(job).collect();
        jobs[150].id = jobs[20].id;
        assert!(store.jobs_insert(&jobs).await.is_err());
        assert!(store.jobs_pending().await.expect("pending").is_empty());
        // The connection is usable again.
        stores_every_log_as_written(&store, 100).await;
        store.close().await.expect("close");
        db.drop().await;
    }

    #[actix_rt::test]
    async fn listings_put_leased_jobs_in_their_place() {
        use kessel::store::{JobClaim, SharedStore};
        let Some(db) = pg::fresh().await else { return };
        let store = PgStore::connect_with(db.options()).await.expect("connect");
        let jobs: Vec<Job> = (0..12).map(|n| job(n * 4 + 1)).collect();
        store.jobs_insert(&jobs).await.expect("insert");
        // Leases the jobs with the lowest priority numbers: all are 0, so
        // the oldest three.
        let claimed = store
            .jobs_claim(&JobClaim::new(
                store.owner(),
                ["durable"],
                jobs[11].run_at,
                3,
                jobs[11].run_at + chrono::Duration::hours(1),
            ))
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 3);
        let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
        for order in [Order::OldestFirst, Order::NewestFirst] {
            let mut want = ids.clone();
            if order == Order::NewestFirst {
                want.reverse();
            }
            for (offset, limit) in [(0, 12), (0, 2), (1, 4), (2, 3), (10, 5), (12, 1)] {
                let page = store
                    .jobs_query(&JobQuery {
                        order,
                        offset,
                        limit,
                        ..JobQuery::default()
                    })
                    .await
                    .expect("query");
                let got: Vec<JobId> = page.iter().map(|j| j.id).collect();
                let end = (offset + limit).min(want.len());
                assert_eq!(
                    got,
                    want[offset.min(end)..end],
                    "{order:?} {offset}+{limit}"
                );
            }
        }
        store.close().await.expect("close");
        db.drop().await;
    }

    #[actix_rt::test]
    async fn a_version_2_schema_upgrades_with_its_stored_created_lines() {
        let Some(db) = pg::fresh().await else { return };
        let mut old = job(3);
        old.task = Arc::from("legacy");
        old.logs = vec![
            line("created", 0, old.created_at),
            line("note", 0, old.created_at),
        ];
        let schema = &db.schema;
        let mut setup = format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.kessel_schema (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO {schema}.kessel_schema (version) VALUES (1), (2);"
        );
        for migration in [
            include_str!("../src/store/postgres/migrations/0001_jobs.sql"),
            include_str!("../src/store/postgres/migrations/0002_claims.sql"),
        ] {
            setup.push_str(&migration.replace("{schema}", schema));
        }
        setup.push_str(&format!(
            "INSERT INTO {schema}.jobs (id, task, payload, priority, status, created_at, run_at)
             VALUES ('{id}', 'legacy', '{payload}', 0, 'ready', '{t}', '{t}');
             INSERT INTO {schema}.job_logs (job_id, at, attempt, message)
             VALUES ('{id}', '{t}', 0, 'created'), ('{id}', '{t}', 0, 'note');",
            id = old.id,
            payload = old.payload.as_str(),
            t = old.created_at.to_rfc3339(),
        ));
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
            .execute(&db.pool)
            .await
            .expect("a schema at version 2");
        let store = PgStore::connect_with(db.options())
            .await
            .expect("connect and upgrade");
        assert_eq!(
            store.schema_version().await.expect("version"),
            kessel::store::postgres::SCHEMA_VERSION
        );
        assert_eq!(store.job_get(old.id).await.expect("get"), Some(old.clone()));
        assert_eq!(store.jobs_pending().await.expect("pending"), vec![old]);
        stores_every_log_as_written(&store, 100).await;
        store.close().await.expect("close");
        db.drop().await;
    }
}
