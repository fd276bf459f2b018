//! The store conformance suite on the in-memory store: one test per
//! behaviour, each on a new store. The restart tests are skipped: a
//! memory store cannot be reopened.
#![cfg(feature = "test-utils")]

use std::sync::Arc;

use kessel::conformance::{StoreFactory, Verdict};
use kessel::store::{MemoryStore, Store};

fn memory() -> impl StoreFactory {
    || async { Arc::new(MemoryStore::new()) as Arc<dyn Store> }
}

kessel::conformance_tests!(memory());

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
