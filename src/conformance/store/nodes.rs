//! Nodes and the leader: a shared store keeps a row per process, renewed
//! by heartbeat and removed when it leaves; a row whose lease ended is
//! listed gone until pruned; one owner at a time leads, by a lease it
//! renews, and gives it up when it leaves.
//!
//! These tests run only on a shared store that keeps nodes; on any other
//! they return [`Verdict::Skipped`]. Every time is passed in: no test
//! waits for a lease to end, it asks the store as of a later time.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::conformance::fixtures::{fresh, now, secs};
use crate::conformance::harness::conformance_test;
use crate::conformance::{StoreFactory, Verdict};
use crate::node::{Node, NodeStatus};
use crate::store::{LeaderElect, NodeBeat, SharedStore, StoreError};

/// Opens a fresh store and binds its shared capability to `$shared`, or
/// returns [`Verdict::Skipped`] for a store that is not shared or keeps
/// no nodes.
macro_rules! nodes_store {
    ($factory:expr => $store:ident, $shared:ident) => {
        let ($store, _place) = fresh(&$factory).await;
        let Some($shared) = $store.shared() else {
            return Verdict::Skipped("the store is not shared (Store::shared is None)");
        };
        if let Err(StoreError::Unsupported(_)) = $shared.nodes_list(now()).await {
            return Verdict::Skipped("the shared store keeps no nodes");
        }
    };
}

fn beat(id: Uuid, tag: &str, running: u64, at: DateTime<Utc>, lease_secs: i64) -> NodeBeat {
    NodeBeat {
        id,
        host: format!("host-{tag}"),
        pid: 1000 + running as u32,
        version: "9.9.9".into(),
        tags: vec!["default".into(), tag.into()],
        concurrency: 8,
        running,
        started_at: secs(at, -60),
        at,
        lease_until: secs(at, lease_secs),
    }
}

async fn list(shared: &dyn SharedStore, at: DateTime<Utc>) -> Vec<Node> {
    shared
        .nodes_list(at)
        .await
        .unwrap_or_else(|e| panic!("nodes_list failed: {e}"))
}

async fn send(shared: &dyn SharedStore, beat: &NodeBeat) {
    shared
        .node_beat(beat)
        .await
        .unwrap_or_else(|e| panic!("node_beat({beat:?}) failed: {e}"));
}

async fn elect(shared: &dyn SharedStore, owner: Uuid, at: DateTime<Utc>, term: i64) -> bool {
    bid(shared, owner, at, term, true).await
}

async fn bid(
    shared: &dyn SharedStore,
    owner: Uuid,
    at: DateTime<Utc>,
    term: i64,
    serves: bool,
) -> bool {
    let bid = LeaderElect {
        owner,
        now: at,
        lease_until: secs(at, term),
        serves,
    };
    shared
        .leader_elect(&bid)
        .await
        .unwrap_or_else(|e| panic!("leader_elect({bid:?}) failed: {e}"))
}

conformance_test!(store,
    /// A node's beat registers it with every field as sent, a later beat
    /// renews its load, and leaving removes it; nodes list oldest first.
    a_node_beat_registers_and_renews_a_node_and_leaving_removes_it => node_beats
);

async fn node_beats<F: StoreFactory>(factory: F) -> Verdict {
    nodes_store!(factory => store, shared);
    let t = now();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut first = beat(a, "a", 1, t, 30);
    first.started_at = secs(t, -120);
    send(shared, &first).await;
    send(shared, &beat(b, "b", 2, t, 30)).await;
    let nodes = list(shared, secs(t, 1)).await;
    assert_eq!(nodes.len(), 2, "{nodes:#?}");
    let got = &nodes[0];
    assert_eq!(got.id, a, "the node that started first comes first");
    assert_eq!(
        (
            &*got.host,
            got.pid,
            &*got.version,
            got.concurrency,
            got.running
        ),
        ("host-a", 1001, "9.9.9", 8, 1)
    );
    assert_eq!(got.tags, ["default", "a"]);
    assert_eq!((got.started_at, got.last_heartbeat), (secs(t, -120), t));
    assert_eq!(got.status, NodeStatus::Live);
    assert!(!got.leader, "nobody bid for leadership");

    let mut again = beat(a, "c", 5, secs(t, 10), 30);
    again.started_at = secs(t, -120);
    send(shared, &again).await;
    let nodes = list(shared, secs(t, 11)).await;
    let got = nodes.iter().find(|n| n.id == a).expect("still listed");
    assert_eq!((got.running, got.last_heartbeat), (5, secs(t, 10)));
    assert_eq!(got.tags, ["default", "c"], "tags follow the workers");

    shared.node_leave(a).await.expect("node_leave");
    let nodes = list(shared, secs(t, 12)).await;
    assert_eq!(nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [b]);
    drop(store);
    Verdict::Passed
}

conformance_test!(store,
    /// A node whose lease ended is listed gone; pruning removes the nodes
    /// whose lease ended before the time it is given, and no other.
    a_node_whose_lease_ended_is_listed_gone_until_pruned => nodes_gone
);

async fn nodes_gone<F: StoreFactory>(factory: F) -> Verdict {
    nodes_store!(factory => store, shared);
    let t = now();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    send(shared, &beat(a, "a", 0, t, 30)).await;
    send(shared, &beat(b, "b", 0, secs(t, 20), 30)).await;
    let status = |nodes: &[Node], id| nodes.iter().find(|n| n.id == id).map(|n| n.status);
    let nodes = list(shared, secs(t, 30)).await;
    assert_eq!(
        status(&nodes, a),
        Some(NodeStatus::Live),
        "its lease ends now"
    );
    let nodes = list(shared, secs(t, 31)).await;
    assert_eq!(status(&nodes, a), Some(NodeStatus::Gone));
    assert_eq!(status(&nodes, b), Some(NodeStatus::Live));
    assert_eq!(shared.nodes_prune(secs(t, 30)).await.expect("prune"), 0);
    assert_eq!(shared.nodes_prune(secs(t, 31)).await.expect("prune"), 1);
    let nodes = list(shared, secs(t, 31)).await;
    assert_eq!(nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [b]);
    drop(store);
    Verdict::Passed
}

conformance_test!(store,
    /// One owner leads at a time: a bid wins when nobody's term lasts or
    /// the bidder leads already (a renewal); the leader is marked in the
    /// list while its term lasts; leaving gives the leadership up.
    one_owner_leads_until_its_term_ends_or_it_leaves => leader_terms
);

async fn leader_terms<F: StoreFactory>(factory: F) -> Verdict {
    nodes_store!(factory => store, shared);
    let t = now();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    send(shared, &beat(a, "a", 0, t, 3600)).await;
    send(shared, &beat(b, "b", 0, t, 3600)).await;
    assert!(elect(shared, a, t, 20).await, "nobody led: a wins");
    assert!(!elect(shared, b, secs(t, 1), 20).await, "a's term lasts");
    assert!(elect(shared, a, secs(t, 10), 20).await, "a renews");
    assert!(
        !elect(shared, b, secs(t, 29), 20).await,
        "a's renewed term lasts"
    );
    let leaders = |nodes: &[Node]| {
        nodes
            .iter()
            .filter(|n| n.leader)
            .map(|n| n.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(leaders(&list(shared, secs(t, 29)).await), [a]);
    assert!(
        leaders(&list(shared, secs(t, 31)).await).is_empty(),
        "a's term ended"
    );
    assert!(
        elect(shared, b, secs(t, 31), 20).await,
        "a's term ended: b wins"
    );
    assert!(!elect(shared, a, secs(t, 32), 20).await, "b leads now");
    assert_eq!(leaders(&list(shared, secs(t, 32)).await), [b]);
    shared.node_leave(b).await.expect("node_leave");
    assert!(
        elect(shared, a, secs(t, 33), 20).await,
        "b left and gave it up"
    );
    drop(store);
    Verdict::Passed
}

conformance_test!(store,
    /// A bidder that runs workers is handed the leadership by a leader
    /// that does not: the leader gives it up at its next bid, the bidder
    /// takes it at its own, and never do both lead at once. A bidder that
    /// does not run workers never takes it from one that does.
    a_node_with_workers_is_handed_the_leadership_by_one_without => leader_serves
);

async fn leader_serves<F: StoreFactory>(factory: F) -> Verdict {
    nodes_store!(factory => store, shared);
    let t = now();
    let (producer, worker, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert!(bid(shared, producer, t, 20, false).await, "nobody led");
    assert!(
        bid(shared, producer, secs(t, 1), 20, false).await,
        "it renews"
    );
    assert!(
        !bid(shared, other, secs(t, 2), 20, false).await,
        "another without workers waits for the term to end"
    );
    let leaders = |nodes: &[Node]| nodes.iter().filter(|n| n.leader).count();
    for id in [producer, worker, other] {
        send(shared, &beat(id, "default", 0, t, 3600)).await;
    }
    assert!(
        !bid(shared, worker, secs(t, 3), 20, false).await,
        "without workers yet, it waits"
    );
    assert!(
        !bid(shared, worker, secs(t, 3), 20, true).await,
        "with workers it asks for the lease, but the producer's term lasts"
    );
    assert!(
        !bid(shared, worker, secs(t, 3), 20, true).await,
        "asking again changes nothing"
    );
    assert_eq!(leaders(&list(shared, secs(t, 3)).await), 1, "one leader");
    assert!(
        !bid(shared, producer, secs(t, 4), 20, false).await,
        "the producer gives the lease up instead of renewing"
    );
    assert_eq!(
        leaders(&list(shared, secs(t, 4)).await),
        0,
        "nobody leads between the two bids"
    );
    assert!(
        bid(shared, worker, secs(t, 5), 20, true).await,
        "the node with workers takes the lease nobody holds"
    );
    assert!(
        !bid(shared, producer, secs(t, 6), 20, false).await,
        "the producer does not take it back"
    );
    assert!(
        !bid(shared, other, secs(t, 7), 20, true).await,
        "another node with workers waits for the worker's term to end"
    );
    assert!(
        bid(shared, worker, secs(t, 8), 20, true).await,
        "and the worker renews as before"
    );
    assert_eq!(leaders(&list(shared, secs(t, 8)).await), 1);
    drop(store);
    Verdict::Passed
}
