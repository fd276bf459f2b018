//! The node as a service: on a shared store, this process registers
//! itself, renews its row at the cadence of the lease heartbeats, and
//! leaves at shutdown; the leader also removes nodes gone for longer than
//! the retention of gone nodes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::node::{NodeSelf, VERSION};
use crate::store::{NodeBeat, Store, StoreError};

/// Keeps this process's row in a shared store's nodes.
///
/// The scheduler runs it with the lease heartbeat, every third of a lease
/// (a node is gone once a whole lease passed without one), and once at
/// start; [`NodeBeacon::leave`] once at shutdown, after the last beat
/// returned, so no beat puts the row back.
#[derive(Debug, Clone)]
pub(crate) struct NodeBeacon {
    store: Arc<dyn Store>,
    me: Arc<NodeSelf>,
    /// How long a gone node is listed before it is removed.
    retention: Duration,
}

/// What this process runs, at a beat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodeLoad {
    /// The tags its workers serve, sorted, each once.
    pub(crate) tags: Vec<String>,
    /// Its workers' slots, together.
    pub(crate) concurrency: u64,
    /// The jobs they run.
    pub(crate) running: u64,
}

impl NodeBeacon {
    /// The beacon of node `me` on `store`, or `None` when the store is not
    /// shared.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        me: Arc<NodeSelf>,
        retention: Duration,
    ) -> Option<Self> {
        store.shared()?;
        Some(NodeBeacon {
            store,
            me,
            retention,
        })
    }

    /// How long a node's row lasts without a beat: the store's lease.
    pub(crate) fn lease(&self) -> Duration {
        self.store
            .shared()
            .map_or(Duration::from_secs(30), |s| s.lease())
    }

    /// The beat of this node at `now`, running `load`.
    pub(crate) fn beat(&self, load: NodeLoad, now: DateTime<Utc>) -> NodeBeat {
        NodeBeat {
            id: self.me.id,
            host: self.me.host.clone(),
            pid: self.me.pid,
            version: VERSION.to_owned(),
            tags: load.tags,
            concurrency: load.concurrency,
            running: load.running,
            started_at: self.me.started_at,
            at: now,
            lease_until: crate::time::saturating_after(now, self.lease()),
        }
    }

    /// One beat: the store call for `beat`.
    pub(crate) fn run_once(
        &self,
        beat: NodeBeat,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let store = self.store.clone();
        async move {
            match store.shared() {
                Some(shared) => shared.node_beat(&beat).await,
                None => Ok(()),
            }
        }
    }

    /// Removes the nodes gone (their lease ended) longer than the
    /// retention before `now`; the leader's work. Returns how many.
    pub(crate) fn prune_once(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send + 'static {
        let store = self.store.clone();
        let before = chrono::Duration::from_std(self.retention)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        async move {
            match store.shared() {
                Some(shared) => shared.nodes_prune(before).await,
                None => Ok(0),
            }
        }
    }

    /// Leaves: removes this node's row and gives up its leadership.
    pub(crate) fn leave(&self) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let (store, id) = (self.store.clone(), self.me.id);
        async move {
            match store.shared() {
                Some(shared) => shared.node_leave(id).await,
                None => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_store_that_is_not_shared_needs_no_beacon() {
        let me = Arc::new(NodeSelf::new(uuid::Uuid::nil(), Utc::now(), true));
        assert!(
            NodeBeacon::new(Arc::new(MemoryStore::new()), me, Duration::from_secs(1)).is_none()
        );
    }
}
