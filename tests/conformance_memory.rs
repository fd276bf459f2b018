//! The store conformance suite on the in-memory store: one test per
//! behaviour, each on a new store. The restart tests are skipped: a
//! memory store cannot be reopened; so are the shared tests: it serves
//! one process.
#![cfg(feature = "test-utils")]

use std::sync::Arc;

use kessel::conformance::{StoreFactory, Verdict};
use kessel::store::{MemoryStore, Store};

fn memory() -> impl StoreFactory {
    || async { Arc::new(MemoryStore::new()) as Arc<dyn Store> }
}

kessel::conformance_tests!(memory());

/// The schedule suite (feature `cron`), on the same stores.
#[cfg(feature = "cron")]
mod schedules {
    use super::*;

    kessel::schedule_conformance_tests!(memory());
}

#[test]
fn memory_store_skips_the_restart_tests_by_capability() {
    assert!(!memory().reopens());
    let verdict = kessel::conformance::run_one_blocking(
        "restart_keeps_every_pending_job_with_its_attempts",
        &memory(),
    );
    assert!(
        matches!(verdict, Verdict::Skipped(why) if why.contains("reopen")),
        "{verdict:?}"
    );
}

#[test]
fn memory_store_skips_the_shared_tests_by_capability() {
    let report = futures::executor::block_on(kessel::conformance::run_all(memory()));
    let shared: Vec<&str> = report
        .skipped
        .iter()
        .filter(|(_, why)| why.contains("not shared"))
        .map(|(name, _)| *name)
        .collect();
    assert!(
        shared.contains(&"a_claim_never_takes_a_job_another_owner_leases"),
        "{report:?}"
    );
    assert!(
        report.skipped.iter().all(|(_, why)| why.contains("reopen")
            || why.contains("not shared")
            || why.contains("keeps no suspensions")),
        "{report:?}"
    );
    assert_eq!(
        report.passed.len() + report.skipped.len(),
        kessel::conformance::TESTS.len()
    );
}
