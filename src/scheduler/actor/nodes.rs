//! The scheduler's side of nodes and the leader: on a shared store, a
//! tick every third of a lease (with the lease heartbeat, and when a
//! worker starts) renews this node's row and bids for leadership; the
//! leader then removes nodes gone for long, and a node that just became
//! leader rescues and prunes at once. At shutdown the node leaves, after
//! its last tick returned.
//!
//! A node with running workers is handed the leadership by one without
//! (a producer, an API server, the `kessel` command line: it gives the
//! lease up at its next bid, and the node with workers takes it at its
//! own; never both at once), so such a node
//! leads only while no node runs workers, and its retention (often
//! `keep_all`) decides the pruning only then.

use actix::prelude::*;

use super::Scheduler;
use crate::event::QueueEvent;
use crate::scheduler::services::{Elector, NodeBeacon, NodeLoad};
use crate::store::StoreError;

#[derive(Debug)]
pub(super) struct NodeMode {
    beacon: NodeBeacon,
    elector: Elector,
    /// A tick is with the store.
    ticking: bool,
    /// A tick was asked for while one was with the store: another follows.
    again: bool,
    /// Leaving is with the store, or done.
    leaving: bool,
    /// The node left (or failed to, which its lapse then covers).
    left: bool,
}

impl NodeMode {
    pub(super) fn new(beacon: NodeBeacon, elector: Elector) -> Self {
        NodeMode {
            beacon,
            elector,
            ticking: false,
            again: false,
            leaving: false,
            left: false,
        }
    }
}

/// What one tick did.
struct Tick {
    beat: Result<(), StoreError>,
    bid: crate::store::LeaderElect,
    elected: Result<bool, StoreError>,
    pruned: Option<Result<u64, StoreError>>,
}

impl Scheduler {
    /// What this process runs now: its running workers' tags, slots and
    /// jobs.
    pub(super) fn node_load(&self) -> NodeLoad {
        let running: Vec<_> = self.workers.iter().filter(|w| !w.stopped).collect();
        let mut tags: Vec<String> = running
            .iter()
            .flat_map(|w| w.tag_names.iter().cloned())
            .collect();
        tags.sort();
        tags.dedup();
        NodeLoad {
            tags,
            concurrency: running.iter().map(|w| w.capacity as u64).sum(),
            running: self.workers.iter().map(|w| w.in_flight as u64).sum(),
        }
    }

    /// Whether this process leads now (always, on a store of its own).
    pub(super) fn leads(&self) -> bool {
        self.node_self.leads(self.clock.now_utc())
    }

    /// One tick: renews this node's row, bids for leadership and, as
    /// leader, removes nodes gone for long. Asked while one is under way,
    /// another follows it; none once the node leaves.
    pub(super) fn node_tick(&mut self, ctx: &mut Context<Self>) {
        let load = self.node_load();
        let now = self.clock.now_utc();
        let Some(mode) = self.node.as_mut() else {
            return;
        };
        if mode.leaving {
            return;
        }
        if mode.ticking {
            mode.again = true;
            return;
        }
        mode.ticking = true;
        let bid = mode.elector.bid(now, load.concurrency > 0);
        let beat = mode.beacon.run_once(mode.beacon.beat(load, now));
        let elect = mode.elector.run_once(bid);
        let beacon = mode.beacon.clone();
        let fut = async move {
            let beat = beat.await;
            let elected = elect.await;
            let pruned = match elected {
                Ok(true) => Some(beacon.prune_once(now).await),
                _ => None,
            };
            Tick {
                beat,
                bid,
                elected,
                pruned,
            }
        };
        ctx.spawn(
            self.store_call(fut)
                .into_actor(self)
                .map(|tick, act, ctx| act.ticked(tick, ctx)),
        );
    }

    fn ticked(&mut self, tick: Option<Tick>, ctx: &mut Context<Self>) {
        let Some(mode) = self.node.as_mut() else {
            return;
        };
        mode.ticking = false;
        let again = std::mem::take(&mut mode.again);
        let Some(tick) = tick else { return };
        let mut became = false;
        match tick.elected {
            Ok(won) => {
                became = mode.elector.elected(&tick.bid, won);
                if became {
                    tracing::info!("this process leads the queue's maintenance");
                }
            }
            // The term runs out by itself should bids keep failing.
            Err(err) => self.bus.queue(QueueEvent::Error {
                message: format!("bidding for leadership failed: {err}"),
            }),
        }
        if let Err(err) = tick.beat {
            self.bus.queue(QueueEvent::Error {
                message: format!("renewing this node's row failed: {err}"),
            });
        }
        match tick.pruned {
            Some(Ok(n)) if n > 0 => tracing::info!(removed = n, "removed nodes gone for long"),
            Some(Err(err)) => self.bus.queue(QueueEvent::Error {
                message: format!("removing gone nodes failed: {err}"),
            }),
            _ => {}
        }
        if became {
            // Jobs of processes that died while nobody led come back now,
            // and the retention is kept from now, not an interval later
            // (a minute of completions past the cap at full speed).
            self.rescue(ctx);
            self.prune(ctx);
        }
        if again {
            self.node_tick(ctx);
        }
        if self.draining.is_some() {
            self.check_drained(ctx);
        }
    }

    /// At shutdown: whether the node left. Starts leaving (once no tick
    /// is under way) and answers `false` until the store answered; the
    /// answer drives [`Scheduler::check_drained`] again.
    pub(super) fn node_left(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(mode) = self.node.as_mut() else {
            return true;
        };
        if mode.left {
            return true;
        }
        if mode.ticking || mode.leaving {
            return false;
        }
        mode.leaving = true;
        let fut = mode.beacon.leave();
        ctx.spawn(self.store_call(fut).into_actor(self).map(|result, act, ctx| {
            if let Some(Err(err)) = result {
                tracing::warn!(error = %err, "leaving the nodes failed: the node lapses instead");
            }
            if let Some(mode) = act.node.as_mut() {
                mode.left = true;
                mode.elector.resigned();
            }
            act.check_drained(ctx);
        }));
        false
    }
}

/// This process as a node: what its workers serve and run (for
/// [`Queue::nodes`](crate::Queue::nodes) on a store of one process).
#[derive(Message)]
#[rtype(result = "NodeLoad")]
pub(crate) struct NodeSnapshot;

impl Handler<NodeSnapshot> for Scheduler {
    type Result = MessageResult<NodeSnapshot>;
    fn handle(&mut self, _: NodeSnapshot, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.node_load())
    }
}
