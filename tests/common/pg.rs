//! A fresh PostgreSQL schema per test, from `KESSEL_TEST_DATABASE_URL`
//! (default the local server). Without a database the test is skipped,
//! unless `KESSEL_REQUIRE_DB=1`, which makes it fail.

use std::sync::Arc;
use std::time::Duration;

use kessel::store::{PgOptions, PgStore};
use kessel::Queue;
use sqlx::postgres::PgPool;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("KESSEL_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

pub struct TestDb {
    pub url: String,
    pub schema: String,
    pub pool: PgPool,
}

/// A fresh schema, or `None` (skip) when there is no database and
/// `KESSEL_REQUIRE_DB` is not `1`.
pub async fn fresh() -> Option<TestDb> {
    let url = url();
    let pool = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            if std::env::var("KESSEL_REQUIRE_DB").as_deref() == Ok("1") {
                panic!("KESSEL_REQUIRE_DB=1 but PostgreSQL at {url} is unreachable: {e}");
            }
            eprintln!("skipping: no PostgreSQL at {url} ({e})");
            return None;
        }
    };
    let schema = format!(
        "kessel_t_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    Some(TestDb { url, schema, pool })
}

impl TestDb {
    pub fn options(&self) -> PgOptions {
        PgOptions::new(&self.url).schema(&self.schema)
    }

    pub async fn store(&self, lease: Duration) -> PgStore {
        PgStore::connect_with(self.options().lease(lease))
            .await
            .expect("connect the store")
    }

    pub async fn queue(&self, lease: Duration, poll: Duration) -> Queue {
        Queue::builder()
            .store(Arc::new(self.store(lease).await))
            .shared(kessel::SharedConfig {
                poll,
                ..Default::default()
            })
            .build()
            .await
            .expect("build the queue")
    }

    /// Two processes' stores on this schema, with leases of `lease`.
    pub async fn two_stores(&self, lease: Duration) -> (PgStore, PgStore) {
        (self.store(lease).await, self.store(lease).await)
    }

    /// Drops the schema. Call at the end of a test.
    pub async fn drop(self) {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.schema
        )))
        .execute(&self.pool)
        .await;
    }
}

/// `n` ready jobs of `task`, due at `now`, to insert into a store.
pub fn ready_jobs(task: &str, n: usize, now: chrono::DateTime<chrono::Utc>) -> Vec<kessel::Job> {
    (0..n)
        .map(|i| {
            let mut job: kessel::Job = serde_json::from_value(serde_json::json!({
                "id": kessel::JobId::new(), "reference": null, "task": task, "payload": i,
                "priority": 0, "status": "ready", "created_at": now, "run_at": now,
                "expires_at": null, "attempts": 0, "max_attempts": null, "last_error": null,
                "result": null, "progress": null, "finished_at": null, "logs": []
            }))
            .expect("a job");
            job.logs.clear();
            job
        })
        .collect()
}
