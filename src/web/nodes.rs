//! `/nodes`: the processes using the queue, and which one leads.

use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ErrorBody, WebError};
use super::Read;
use crate::node::{Node, NodeStatus};

/// Whether a node is alive.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NodeStatusView {
    /// Its heartbeat is current.
    Live,
    /// Its heartbeat lapsed; it is removed after the retention of gone nodes.
    Gone,
}

impl From<NodeStatus> for NodeStatusView {
    fn from(status: NodeStatus) -> Self {
        match status {
            NodeStatus::Live => NodeStatusView::Live,
            NodeStatus::Gone => NodeStatusView::Gone,
        }
    }
}

/// A process using the queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct NodeView {
    /// The node's id (its lease owner on a shared store).
    pub(crate) id: String,
    /// The host name of its machine.
    pub(crate) host: String,
    /// Its process id.
    pub(crate) pid: u32,
    /// The kessel version it runs.
    pub(crate) version: String,
    /// The tags its workers serve, sorted.
    pub(crate) tags: Vec<String>,
    /// How many jobs its workers run at once, together.
    pub(crate) concurrency: u64,
    /// How many jobs it ran at its last heartbeat.
    pub(crate) running: u64,
    /// When it started.
    pub(crate) started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub(crate) last_heartbeat: DateTime<Utc>,
    /// Whether it is the leader (runs rescue, expiry sweeps and pruning).
    pub(crate) leader: bool,
    /// Whether it is alive.
    pub(crate) status: NodeStatusView,
}

impl From<Node> for NodeView {
    fn from(node: Node) -> Self {
        NodeView {
            id: node.id.to_string(),
            host: node.host,
            pid: node.pid,
            version: node.version,
            tags: node.tags,
            concurrency: node.concurrency,
            running: node.running,
            started_at: node.started_at,
            last_heartbeat: node.last_heartbeat,
            leader: node.leader,
            status: node.status.into(),
        }
    }
}

/// The nodes, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct NodeList {
    /// Live nodes, and gone ones until they are removed.
    pub(crate) nodes: Vec<NodeView>,
}

/// The processes using the queue's store, oldest first, and which one
/// leads (on a store of one process, this process alone).
#[utoipa::path(
    get,
    path = "/nodes",
    tag = "admin",
    responses(
        (status = 200, description = "The nodes, oldest first", body = NodeList),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn list_nodes(read: Read) -> Result<HttpResponse, WebError> {
    let nodes = read.0.queue.nodes().await?;
    Ok(HttpResponse::Ok().json(NodeList {
        nodes: nodes.into_iter().map(NodeView::from).collect(),
    }))
}
