//! What the node and leader calls of a [`SharedStore`](super::SharedStore)
//! take: a node's heartbeat, and a bid for leadership.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What [`SharedStore::node_beat`](super::SharedStore::node_beat) records:
/// a process's node row, registered or renewed.
///
/// # Examples
///
/// ```
/// use kessel::store::NodeBeat;
/// let now = chrono::Utc::now();
/// let beat = NodeBeat {
///     id: uuid::Uuid::new_v4(),
///     host: "worker-1".into(),
///     pid: 4242,
///     version: "0.1.0".into(),
///     tags: vec!["mail".into()],
///     concurrency: 16,
///     running: 3,
///     started_at: now,
///     at: now,
///     lease_until: now + chrono::Duration::seconds(30),
/// };
/// assert!(beat.lease_until > beat.at);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBeat {
    /// The node (the process's lease owner).
    pub id: Uuid,
    /// Its machine's host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The kessel version it runs.
    pub version: String,
    /// The tags its workers serve.
    pub tags: Vec<String>,
    /// How many jobs its workers run at once, together.
    pub concurrency: u64,
    /// How many jobs it runs now.
    pub running: u64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The heartbeat's time.
    pub at: DateTime<Utc>,
    /// Past this, without another heartbeat, the node is gone.
    pub lease_until: DateTime<Utc>,
}

/// What [`SharedStore::leader_elect`](super::SharedStore::leader_elect)
/// asks: leadership for `owner` until `lease_until`, if nobody else holds
/// it at `now` (or, for a bidder that `serves`, if the one holding it
/// does not).
///
/// # Examples
///
/// ```
/// use kessel::store::LeaderElect;
/// let now = chrono::Utc::now();
/// let bid = LeaderElect {
///     owner: uuid::Uuid::new_v4(),
///     now,
///     lease_until: now + chrono::Duration::seconds(20),
///     serves: true,
/// };
/// assert!(bid.lease_until > bid.now);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderElect {
    /// Who bids: a node's id.
    pub owner: Uuid,
    /// The bid's time: another's lease that ends before it is over.
    pub now: DateTime<Utc>,
    /// Until when the winner leads, without renewing.
    pub lease_until: DateTime<Utc>,
    /// The bidder runs workers. A leader that does not (a producer, an
    /// API server) gives way to the next bidder that does, so the
    /// maintenance, and its retention, are a worker's whenever there is
    /// one.
    pub serves: bool,
}
