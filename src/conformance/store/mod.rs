//! Tests of the [`Store`](crate::store::Store) trait itself, call by
//! call, one file per concern:
//!
//! - inserts: every field of a [`Job`](crate::Job) round-trips, through
//!   `jobs_insert` and `jobs_insert_owned`;
//! - updates: every state transition, batches in order, unknown jobs
//!   skipped, logs appended and progress replaced;
//! - writes: updates with the jobs they made (a bury and its dead letter),
//!   stored together, and not at all when a part is refused (on a store
//!   with atomic writes);
//! - reads: `job_get`, `jobs_query` with its filters, order and pages,
//!   `jobs_count`;
//! - deletes: only matching final jobs, oldest first, with their logs;
//! - loads: `jobs_pending`, what a process reads at start;
//! - scale: concurrent writers and large batches;
//! - shared: the [`SharedStore`](crate::store::SharedStore) capability
//!   (claims, leases, heartbeats, rescue, release, cancel, expiry, the
//!   next due time, wake-ups), run only on stores whose
//!   [`Store::shared`](crate::store::Store::shared) is `Some` and
//!   reported skipped on the others;
//! - nodes: a shared store's nodes (registered, renewed, gone, pruned,
//!   left) and its leader's lease, skipped on stores that keep none.
//!
//! The contract they pin, beyond each method's docs:
//!
//! - every field of a [`Job`](crate::Job) round-trips: times to the
//!   microsecond at least, from 1970 to the year 9000; payloads and
//!   results as the same JSON value (the text may be reformatted);
//!   priorities and attempts over the whole `u32` range; progress counts
//!   up to `i64::MAX`;
//! - updates apply in order, within a batch and across batches; an update
//!   of an unknown job is skipped; log lines append in the order written
//!   (not sorted by time), progress is replaced;
//! - queries order by id (ids are UUIDv7, so by creation), and page with
//!   offset and limit; deletes remove only final jobs, oldest first, with their logs;
//! - concurrent callers lose nothing, and large batches are stored whole.

mod delete;
mod insert;
mod load;
mod nodes;
mod read;
mod scale;
mod shared;
mod update;
mod write;

pub use delete::*;
pub use insert::*;
pub use load::*;
pub use nodes::*;
pub use read::*;
pub use scale::*;
pub use shared::*;
pub use update::*;
pub use write::*;
