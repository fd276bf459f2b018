//! Leader election as a service: on a shared store, one process at a time
//! leads, by a lease it renews, and runs the maintenance that must happen
//! once: rescue of lapsed leases, expiry of jobs nobody holds, retention
//! pruning, removal of nodes gone for long.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::node::NodeSelf;
use crate::store::{LeaderElect, Store, StoreError};

/// Bids for the leadership of a shared store, and renews it.
///
/// Every process bids every third of a lease (with the node's beat) and
/// when a worker starts; the leader's bid renews its term of two thirds
/// of a lease. A process that runs workers is handed the leadership by
/// one that does not (a producer, an API server): its bid marks the lease
/// wanted, the leader gives it up at its next bid, and the worker takes
/// it at the bid after, within two thirds of a lease and never with two
/// leaders at once. So the maintenance, and the retention it applies, are
/// a worker's whenever there is one. A leader killed
/// right after renewing leaves a term of two thirds of a lease; the next
/// bid after that, at most a third of a lease later, takes over: a new
/// leader within one lease. A leader that shuts down gives the term up,
/// and another takes it at its next bid.
#[derive(Debug, Clone)]
pub(crate) struct Elector {
    store: Arc<dyn Store>,
    me: Arc<NodeSelf>,
}

impl Elector {
    /// An elector for node `me` on `store`, or `None` when the store is not
    /// shared (the process is then the only node and leads).
    pub(crate) fn new(store: Arc<dyn Store>, me: Arc<NodeSelf>) -> Option<Self> {
        store.shared()?;
        Some(Elector { store, me })
    }

    /// How long a term lasts without renewal: two thirds of the store's
    /// lease.
    pub(crate) fn term(&self) -> Duration {
        let lease = self
            .store
            .shared()
            .map_or(Duration::from_secs(30), |s| s.lease());
        lease * 2 / 3
    }

    /// The bid of this node at `now`, running workers or not (`serves`).
    pub(crate) fn bid(&self, now: DateTime<Utc>, serves: bool) -> LeaderElect {
        LeaderElect {
            owner: self.me.id,
            now,
            lease_until: crate::time::saturating_after(now, self.term()),
            serves,
        }
    }

    /// One bid: whether this node leads until `bid.lease_until`.
    pub(crate) fn run_once(
        &self,
        bid: LeaderElect,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'static {
        let store = self.store.clone();
        async move {
            match store.shared() {
                Some(shared) => shared.leader_elect(&bid).await,
                None => Ok(true),
            }
        }
    }

    /// Records the outcome of `bid`: this node leads until its term ends,
    /// or not. Returns whether it just became the leader.
    pub(crate) fn elected(&self, bid: &LeaderElect, won: bool) -> bool {
        let was = self.me.leads(bid.now);
        self.me.set_leads_until(won.then_some(bid.lease_until));
        let became = won && !was;
        if became {
            self.me.tell_became_leader();
        }
        became
    }

    /// This node no longer leads (it left).
    pub(crate) fn resigned(&self) {
        self.me.set_leads_until(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_store_that_is_not_shared_needs_no_election() {
        let me = Arc::new(NodeSelf::new(uuid::Uuid::nil(), Utc::now(), true));
        assert!(Elector::new(Arc::new(MemoryStore::new()), me).is_none());
    }

    #[tokio::test]
    async fn winning_a_first_term_tells_those_waiting_for_the_leadership() {
        let me = Arc::new(NodeSelf::new(uuid::Uuid::nil(), Utc::now(), false));
        let elector = Elector {
            store: Arc::new(MemoryStore::new()),
            me: me.clone(),
        };
        let now = Utc::now();
        let mut waiting = std::pin::pin!(me.became_leader());
        waiting.as_mut().enable();
        assert!(!elector.elected(&elector.bid(now, true), false));
        assert!(
            futures::poll!(waiting.as_mut()).is_pending(),
            "a lost bid tells nobody"
        );
        assert!(elector.elected(&elector.bid(now, true), true));
        assert!(futures::poll!(waiting.as_mut()).is_ready());
        // Renewing the term is not becoming the leader again.
        let mut again = std::pin::pin!(me.became_leader());
        again.as_mut().enable();
        assert!(!elector.elected(&elector.bid(now, true), true));
        assert!(futures::poll!(again.as_mut()).is_pending());
    }
}
