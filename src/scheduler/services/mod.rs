//! The scheduler's background services, each its own type with its
//! configuration, a `run_once` that tests can call, and a loop the
//! scheduler runs it in (on its own interval, never inside another
//! service's work):
//!
//! - [`Pruner`]: removes the completed jobs the queue's retention does not
//!   keep;
//! - [`Rescuer`]: on a shared store, returns jobs whose lease lapsed (their
//!   process died) to ready, and expires jobs nobody holds past their
//!   expiry;
//! - [`Claimer`]: on a shared store, what to claim, how many, and when to
//!   claim again;
//! - [`Heartbeat`]: on a shared store, renews the leases of the jobs this
//!   process holds;
//! - [`ExpiryWatch`]: on a shared store, expires on time the jobs this
//!   process created that nobody holds when their expiry comes;
//! - [`NodeBeacon`]: on a shared store, keeps this process's row among
//!   the nodes, and leaves at shutdown;
//! - [`Elector`]: on a shared store, bids for leadership. The leader
//!   alone runs the [`Rescuer`], the [`Pruner`] and the removal of nodes
//!   gone for long; on other stores the process is the leader.
//!
//! The watch over worker threads is `actor::threads::ThreadWatch`.

mod claimer;
mod expiry;
mod heartbeat;
mod leader;
mod node;
mod prune_schedule;
mod pruner;
mod rescuer;

pub(crate) use claimer::{Claimer, RunningLimits};
pub(crate) use expiry::ExpiryWatch;
pub(crate) use heartbeat::Heartbeat;
pub(crate) use leader::Elector;
pub(crate) use node::{NodeBeacon, NodeLoad};
pub(crate) use prune_schedule::PruneSchedule;
pub(crate) use pruner::Pruner;
pub(crate) use rescuer::Rescuer;
