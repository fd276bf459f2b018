//! Rescue as a service: on a shared store, jobs of processes that died
//! come back.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{Store, StoreError};

/// What one rescue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RescueReport {
    /// Jobs whose lease lapsed, returned to ready.
    pub(crate) rescued: u64,
    /// Jobs nobody held, expired past their `expires_at`.
    pub(crate) expired: u64,
}

/// Returns to ready the jobs whose lease lapsed (the process running them
/// died or lost the store), a running one with its attempt counted, and
/// expires the pending jobs nobody holds past their expiry (their creator
/// may be gone too).
///
/// The leader runs it (see [`Elector`](super::Elector)): as soon as it
/// becomes the leader, then every quarter of a lease, so a lapsed lease is
/// rescued within a quarter lease of lapsing. Every process on the store
/// has one, and the others skip their runs; a rescue is one statement
/// each, safe should two processes lead at once for a moment (their
/// clocks disagreeing).
#[derive(Debug, Clone)]
pub(crate) struct Rescuer {
    store: Arc<dyn Store>,
}

impl Rescuer {
    /// A rescuer for `store`, or `None` when the store is not shared.
    pub(crate) fn new(store: Arc<dyn Store>) -> Option<Self> {
        store.shared()?;
        Some(Rescuer { store })
    }

    /// How often its loop runs: a quarter of the store's lease, at least
    /// every 10 ms.
    pub(crate) fn interval(&self) -> Duration {
        let lease = self
            .store
            .shared()
            .map_or(Duration::from_secs(30), |s| s.lease());
        (lease / 4).max(Duration::from_millis(10))
    }

    /// One run at `now`.
    pub(crate) async fn run_once(&self, now: DateTime<Utc>) -> Result<RescueReport, StoreError> {
        let Some(shared) = self.store.shared() else {
            return Ok(RescueReport::default());
        };
        let expired = shared.jobs_expire(now, &[]).await?;
        let rescued = shared.jobs_rescue(now).await?;
        Ok(RescueReport { rescued, expired })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_store_that_is_not_shared_needs_no_rescuer() {
        assert!(Rescuer::new(Arc::new(MemoryStore::new())).is_none());
    }
}
