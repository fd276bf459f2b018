//! The processes a queue runs in: [`Node`]s, and which one leads.
//!
//! On a shared store (PostgreSQL) every process registers itself as a
//! node, renews its row at the cadence of its lease heartbeats, and
//! deletes it when it shuts down. One node is the leader: it holds a lease
//! on leadership, and runs the maintenance that must happen once for the
//! whole store (rescue of lapsed leases, expiry of jobs nobody holds,
//! retention pruning, removal of nodes gone for long). On a store of one
//! process (memory, SQLite) the process is the only node, and it leads.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Whether a node is alive.
///
/// # Examples
///
/// ```
/// use kessel::NodeStatus;
/// assert_eq!(NodeStatus::Gone.as_str(), "gone");
/// assert_eq!(serde_json::to_string(&NodeStatus::Live).unwrap(), "\"live\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NodeStatus {
    /// Its heartbeat is current.
    Live,
    /// Its heartbeat lapsed (the process died or lost the store): it is
    /// removed once the retention of gone nodes
    /// ([`SharedConfig::node_retention`](crate::SharedConfig::node_retention))
    /// has passed.
    Gone,
}

impl NodeStatus {
    /// The status as a lowercase word.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(kessel::NodeStatus::Live.as_str(), "live");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Live => "live",
            NodeStatus::Gone => "gone",
        }
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A process using the queue, as [`Queue::nodes`](crate::Queue::nodes)
/// lists it.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// queue.process(["mail"]).concurrency(4).start()?;
/// let nodes = queue.nodes().await?;
/// // A store of one process: this process is the only node, and leads.
/// assert_eq!(nodes.len(), 1);
/// let me = &nodes[0];
/// assert_eq!(me.pid, std::process::id());
/// assert_eq!(me.tags, vec!["mail".to_string()]);
/// assert_eq!(me.concurrency, 4);
/// assert!(me.leader);
/// assert_eq!(me.status, kessel::NodeStatus::Live);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The node's id: on a shared store, its lease owner
    /// ([`SharedStore::owner`](crate::store::SharedStore::owner)).
    pub id: Uuid,
    /// The host name of its machine.
    pub host: String,
    /// Its process id on that machine.
    pub pid: u32,
    /// The kessel version it runs.
    pub version: String,
    /// The tags its workers serve, sorted.
    pub tags: Vec<String>,
    /// How many jobs its workers run at once, together.
    pub concurrency: u64,
    /// How many jobs it ran at its last heartbeat.
    pub running: u64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_heartbeat: DateTime<Utc>,
    /// Whether it is the leader.
    pub leader: bool,
    /// Whether it is alive.
    pub status: NodeStatus,
}

/// This machine's host name: from the kernel on Linux, else `/etc/hostname`
/// or the `HOSTNAME` variable; `unknown` when none says.
pub(crate) fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The kessel version this process runs.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// This process's identity and leadership, shared by the queue handle and
/// its scheduler (and the scheduler's successors).
#[derive(Debug)]
pub(crate) struct NodeSelf {
    pub(crate) id: Uuid,
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) started_at: DateTime<Utc>,
    /// Until when this node leads, in milliseconds since the epoch (0: it
    /// does not), on a shared store.
    leads_until_ms: std::sync::atomic::AtomicI64,
    /// The store is not shared: this process is the only node, and leads.
    alone: bool,
    /// Told each time this node becomes the leader, so the services only
    /// the leader runs start at once rather than at their next look.
    became_leader: tokio::sync::Notify,
}

impl NodeSelf {
    pub(crate) fn new(id: Uuid, started_at: DateTime<Utc>, alone: bool) -> Self {
        NodeSelf {
            id,
            host: host_name(),
            pid: std::process::id(),
            started_at,
            leads_until_ms: std::sync::atomic::AtomicI64::new(0),
            alone,
            became_leader: tokio::sync::Notify::new(),
        }
    }

    /// Whether this node leads at `now`.
    pub(crate) fn leads(&self, now: DateTime<Utc>) -> bool {
        self.alone
            || now.timestamp_millis()
                < self
                    .leads_until_ms
                    .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Completes the next time this node becomes the leader. Create it
    /// (and [`enable`](tokio::sync::futures::Notified::enable) it) before
    /// asking [`leads`](Self::leads), so an election in between is not
    /// missed.
    #[cfg_attr(not(feature = "cron"), allow(dead_code))]
    pub(crate) fn became_leader(&self) -> tokio::sync::futures::Notified<'_> {
        self.became_leader.notified()
    }

    /// Tells those waiting in [`became_leader`](Self::became_leader).
    pub(crate) fn tell_became_leader(&self) {
        self.became_leader.notify_waiters();
    }

    /// This node leads until `until`, or not at all (`None`).
    pub(crate) fn set_leads_until(&self, until: Option<DateTime<Utc>>) {
        self.leads_until_ms.store(
            until.map_or(0, |t| t.timestamp_millis()),
            std::sync::atomic::Ordering::Release,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_leads_until_its_term_ends() {
        let now = Utc::now();
        let node = NodeSelf::new(Uuid::nil(), now, false);
        assert!(!node.leads(now), "not before it was elected");
        node.set_leads_until(Some(now + chrono::Duration::seconds(1)));
        assert!(node.leads(now));
        assert!(!node.leads(now + chrono::Duration::seconds(2)), "term over");
        node.set_leads_until(None);
        assert!(!node.leads(now));
        assert!(NodeSelf::new(Uuid::nil(), now, true).leads(now), "alone");
    }

    #[test]
    fn a_host_name_is_never_empty() {
        assert!(!host_name().is_empty());
    }
}
