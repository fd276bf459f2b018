//! Lease renewal as a service: on a shared store, the jobs this process
//! holds keep their leases while it lives.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::job::JobId;
use crate::store::{HeartbeatReply, JobHeartbeat, Store, StoreError};

/// Renews the leases of the jobs this process holds, every third of a
/// lease, so a lease lapses only when its process is gone (or has lost
/// the store for two thirds of a lease). The reply names the jobs whose
/// cancellation was requested from elsewhere, and those this process no
/// longer holds (rescued by another after a lapse), which the scheduler
/// then drops.
#[derive(Debug, Clone)]
pub(crate) struct Heartbeat {
    store: Arc<dyn Store>,
    owner: Uuid,
}

impl Heartbeat {
    /// A heartbeat of `owner` on `store`, or `None` when the store is not
    /// shared.
    pub(crate) fn new(store: Arc<dyn Store>, owner: Uuid) -> Option<Self> {
        store.shared()?;
        Some(Heartbeat { store, owner })
    }

    /// How long a lease lasts without renewal.
    pub(crate) fn lease(&self) -> Duration {
        self.store
            .shared()
            .map_or(Duration::from_secs(30), |s| s.lease())
    }

    /// How often its loop runs: a third of a lease, at least every 10 ms.
    pub(crate) fn interval(&self) -> Duration {
        (self.lease() / 3).max(Duration::from_millis(10))
    }

    /// What renewing the leases of `ids` at `now` asks of the store.
    pub(crate) fn params(&self, ids: Vec<JobId>, now: DateTime<Utc>) -> JobHeartbeat {
        JobHeartbeat {
            owner: self.owner,
            ids,
            lease_until: crate::time::saturating_after(now, self.lease()),
        }
    }

    /// One renewal: the store call for `params`, to run wherever the
    /// caller runs store calls.
    pub(crate) fn run_once(
        &self,
        params: JobHeartbeat,
    ) -> impl Future<Output = Result<HeartbeatReply, StoreError>> + Send + 'static {
        let store = self.store.clone();
        async move {
            match store.shared() {
                Some(shared) => shared.jobs_heartbeat(&params).await,
                None => Ok(HeartbeatReply::default()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_store_that_is_not_shared_needs_no_heartbeat() {
        assert!(Heartbeat::new(Arc::new(MemoryStore::new()), Uuid::nil()).is_none());
    }
}
