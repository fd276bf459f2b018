//! The store conformance suite on the PostgreSQL store: one test per
//! behaviour, each on a fresh schema, the restart tests connecting to
//! that schema again, and the shared tests (claims, leases, heartbeats,
//! rescue, release, cancel, expiry) run, the store being shared.
#![cfg(all(feature = "postgres", feature = "test-utils"))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pg;
use kessel::conformance::StoreFactory;
use kessel::store::{PgOptions, PgStore, Store, StoreError};

/// A schema of its own for one test, dropped when the test ends.
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs outside any runtime: use a small one on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let pool = sqlx::PgPool::connect(&url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(&pool)
                .await
                .ok()
            })
        })
        .join();
    }
}

#[derive(Debug, Clone, Copy)]
struct PgSchemas;

impl PgSchemas {
    fn options(url: &str, schema: &str) -> PgOptions {
        // The queue tests pass hours of paused time at once: a long lease
        // keeps the rescuer (every quarter lease) from running thousands of
        // times meanwhile. Leases are renewed all the same.
        PgOptions::new(url)
            .schema(schema)
            .lease(Duration::from_secs(3600))
    }
}

impl StoreFactory for PgSchemas {
    type Place = Schema;

    async fn fresh(&self) -> Result<(Arc<dyn Store>, Schema), StoreError> {
        let url = pg::url();
        let name = format!(
            "kessel_c_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let store = match PgStore::connect_with(Self::options(&url, &name)).await {
            Ok(store) => store,
            Err(e) => panic!("the PostgreSQL conformance suite needs a database at {url}: {e}"),
        };
        Ok((Arc::new(store), Schema { url, name }))
    }

    fn reopens(&self) -> bool {
        true
    }

    fn configure(&self, builder: kessel::QueueBuilder) -> kessel::QueueBuilder {
        // Notifications wake the queue; the fallback poll is for lost ones,
        // which these tests do not lose. Over days of paused time a 5 s poll
        // would be a hundred thousand round trips.
        builder.shared(kessel::SharedConfig {
            poll: Duration::from_secs(24 * 3600),
            ..Default::default()
        })
    }

    async fn reopen(&self, place: &Schema) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(
            PgStore::connect_with(Self::options(&place.url, &place.name)).await?,
        ))
    }
}

kessel::conformance_tests!(PgSchemas);

/// The schedule suite (feature `cron`), on the same stores.
#[cfg(feature = "cron")]
mod schedules {
    use super::*;

    kessel::schedule_conformance_tests!(PgSchemas);
}
