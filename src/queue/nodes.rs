//! The processes using the queue, and which one leads: [`Queue::nodes`],
//! [`Queue::is_leader`], [`Queue::node_id`].

use uuid::Uuid;

use super::Queue;
use crate::error::Error;
use crate::node::{Node, NodeStatus, VERSION};
use crate::scheduler::actor::NodeSnapshot;

impl Queue {
    /// The processes using the queue's store, oldest first.
    ///
    /// On a shared store (PostgreSQL), every process registered there:
    /// live ones, and those whose heartbeat lapsed (killed, cut off from
    /// the database), [`NodeStatus::Gone`] until the leader removes them
    /// after [`SharedConfig::node_retention`](crate::SharedConfig::node_retention).
    /// A process that shut down is not listed. On a store of one process
    /// (memory, SQLite), this process alone, live and leading.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store cannot be read (or keeps no nodes:
    /// [`StoreError::Unsupported`](crate::store::StoreError::Unsupported));
    /// [`Error::ShutDown`] on a store of one process whose queue stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.process(["mail", "reports"]).concurrency(8).start()?;
    /// let nodes = queue.nodes().await?;
    /// assert_eq!(nodes.len(), 1);
    /// assert_eq!(nodes[0].id, queue.node_id());
    /// assert_eq!(nodes[0].tags, ["mail", "reports"]);
    /// assert_eq!(nodes[0].concurrency, 8);
    /// assert_eq!(nodes[0].version, env!("CARGO_PKG_VERSION"));
    /// # Ok(()) }
    /// ```
    pub async fn nodes(&self) -> Result<Vec<Node>, Error> {
        let now = self.now();
        let me = &self.inner.node;
        if let Some(shared) = self.inner.store.shared() {
            return Ok(shared.nodes_list(now).await?);
        }
        let load = self
            .inner
            .scheduler
            .send(NodeSnapshot)
            .await
            .map_err(|_| Error::ShutDown)?;
        Ok(vec![Node {
            id: me.id,
            host: me.host.clone(),
            pid: me.pid,
            version: VERSION.to_owned(),
            tags: load.tags,
            concurrency: load.concurrency,
            running: load.running,
            started_at: me.started_at,
            last_heartbeat: now,
            leader: true,
            status: NodeStatus::Live,
        }])
    }

    /// Whether this process leads the queue now: on a shared store, it
    /// holds the leader's lease, and runs the maintenance that happens
    /// once for every process (rescue of lapsed leases, expiry of jobs
    /// nobody holds, retention pruning, removal of gone nodes); on a
    /// store of one process, always.
    ///
    /// On a shared store a process bids when its queue starts, when a
    /// worker starts, and with every lease heartbeat; one that runs
    /// workers is handed the leadership by one that does not (a producer,
    /// an API server): the leader gives it up at its next bid and the
    /// other takes it at its own, so two processes never both lead. This
    /// is `false` until its first bid returned.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// let queue = kessel::Queue::new();
    /// assert!(queue.is_leader(), "the only process leads");
    /// # }
    /// ```
    pub fn is_leader(&self) -> bool {
        self.inner.node.leads(self.now())
    }

    /// This process's node id: on a shared store, its lease owner
    /// ([`SharedStore::owner`](crate::store::SharedStore::owner)), which
    /// the logs of its rescued jobs name.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// let queue = kessel::Queue::new();
    /// assert_eq!(queue.node_id(), queue.node_id());
    /// # }
    /// ```
    pub fn node_id(&self) -> Uuid {
        self.inner.node.id
    }
}
