//! kessel's own PostgreSQL sessions plan every statement generically and
//! never JIT-compile.
//!
//! A generic plan is costed without its parameters' values. After an
//! `ANALYZE` that saw many leased jobs, a limited claim's rooms (counts
//! over the jobs table) are costed past `jit_above_cost`, and with JIT on
//! every execution of it compiled itself first: 100–150 ms of LLVM for a
//! statement that runs in under a millisecond, once per claim, which cut a
//! limited burn-down by a tenth (`docs/benchmarks.md`). The settings are
//! read back from the store's own sessions, so nothing here is timed.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use common::pg;
use kessel::store::{PgOptions, PgStore, StoreError};

#[actix_rt::test]
async fn kessels_own_sessions_never_jit_compile_and_plan_generically() {
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_secs(30)).await;
    // The server's default, for the record: this test means something only
    // where JIT is on by default, as it is from PostgreSQL 12.
    let server: String = sqlx::query_scalar("SELECT current_setting('jit')")
        .fetch_one(&db.pool)
        .await
        .expect("read the server's jit");
    assert_eq!(server, "on", "the test server's default");
    // Every session of the pool, not just the first: take several at once.
    let settings =
        futures::future::join_all((0..4).map(|_| async { store.session_setting("jit").await }))
            .await;
    for jit in settings {
        assert_eq!(jit.expect("read jit"), "off");
    }
    assert_eq!(
        store
            .session_setting("plan_cache_mode")
            .await
            .expect("read plan_cache_mode"),
        "force_generic_plan"
    );
    db.drop().await;
}

#[actix_rt::test]
async fn a_setting_the_server_does_not_know_is_an_error_naming_it() {
    let Some(db) = pg::fresh().await else { return };
    let store = PgStore::connect_with(PgOptions::new(&db.url).schema(&db.schema))
        .await
        .expect("connect");
    let err = store
        .session_setting("no_such_setting")
        .await
        .expect_err("an unknown setting");
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(err.to_string().contains("no_such_setting"), "{err}");
    db.drop().await;
}
