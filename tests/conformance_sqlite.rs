//! The store conformance suite on the SQLite store: one test per
//! behaviour, each on a new file in a temporary directory, and the restart
//! tests reopening that file. The shared tests are skipped: a SQLite
//! store serves one process.
#![cfg(all(feature = "sqlite", feature = "test-utils"))]

use std::sync::Arc;

use kessel::conformance::{StoreFactory, Verdict};
use kessel::store::{SqliteStore, Store, StoreError};

/// SQLite stores, each in a temporary directory kept for its test.
#[derive(Debug, Clone, Copy)]
struct SqliteFiles;

impl StoreFactory for SqliteFiles {
    type Place = tempfile::TempDir;

    async fn fresh(&self) -> Result<(Arc<dyn Store>, Self::Place), StoreError> {
        let dir = tempfile::tempdir().map_err(StoreError::unavailable)?;
        let store = SqliteStore::open(dir.path().join("jobs.db")).await?;
        Ok((Arc::new(store), dir))
    }

    fn reopens(&self) -> bool {
        true
    }

    async fn reopen(&self, dir: &Self::Place) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(
            SqliteStore::open(dir.path().join("jobs.db")).await?,
        ))
    }
}

kessel::conformance_tests!(SqliteFiles);

/// The schedule suite (feature `cron`), on the same stores.
#[cfg(feature = "cron")]
mod schedules {
    use super::*;

    kessel::schedule_conformance_tests!(SqliteFiles);
}

#[test]
fn sqlite_factory_reopens_so_no_test_is_skipped() {
    assert!(SqliteFiles.reopens());
    let verdict = kessel::conformance::run_one_blocking(
        "restart_keeps_every_pending_job_with_its_attempts",
        &SqliteFiles,
    );
    assert!(verdict.passed(), "{verdict:?}");
}

#[test]
fn sqlite_store_skips_the_shared_tests_by_capability() {
    let verdict = kessel::conformance::run_one_blocking(
        "a_claim_never_takes_a_job_another_owner_leases",
        &SqliteFiles,
    );
    assert!(
        matches!(verdict, Verdict::Skipped(why) if why.contains("not shared")),
        "{verdict:?}"
    );
}
