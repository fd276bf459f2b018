//! The queue's fair groups' weights (see [`crate::group`]).

use super::QueueBuilder;
use crate::error::Error;
use crate::group::{check_key, check_weight, GroupWeights};

impl QueueBuilder {
    /// Gives fair group `group` the weight `weight` (default 1): within
    /// one priority of a tag, a group of weight `w` gets `w` turns for
    /// every turn of a group of weight 1; `0.5` is a turn every other
    /// round. Jobs join a group with [`NewJob::group`](crate::NewJob::group);
    /// jobs without one form a group of weight 1. Call it once per group
    /// (a later call for the same group wins). On a shared store
    /// (PostgreSQL), give every process the same weights: each claim
    /// shares its batch between groups by the weights of the process that
    /// claims.
    ///
    /// See `docs/flow-control.md`, "Fair groups", for how priority, groups
    /// and weights combine.
    ///
    /// # Errors
    ///
    /// [`build`](QueueBuilder::build) fails with
    /// [`Error::InvalidInput`] naming `group` for a bad key (empty, blank,
    /// over [`MAX_GROUP_KEY_LEN`](crate::MAX_GROUP_KEY_LEN) bytes, with a
    /// control character), or naming `weight` for a weight that is not a
    /// number from [`MIN_GROUP_WEIGHT`](crate::MIN_GROUP_WEIGHT) to
    /// [`MAX_GROUP_WEIGHT`](crate::MAX_GROUP_WEIGHT) (zero, negative, NaN).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::builder()
    ///     .group_weight("enterprise", 3.0)
    ///     .group_weight("trial", 0.5)
    ///     .build()
    ///     .await?;
    /// queue.create("export", 1).group("enterprise").await?;
    ///
    /// let err = kessel::Queue::builder().group_weight("free", 0.0).build().await.unwrap_err();
    /// assert!(matches!(err, kessel::Error::InvalidInput { field: "weight", .. }));
    /// # Ok(()) }
    /// ```
    pub fn group_weight(mut self, group: impl Into<String>, weight: f64) -> Self {
        self.group_weights.push((group.into(), weight));
        self
    }

    /// The weights, checked.
    pub(super) fn checked_group_weights(&self) -> Result<GroupWeights, Error> {
        for (group, weight) in &self.group_weights {
            check_key(group)?;
            check_weight(*weight)?;
        }
        Ok(GroupWeights::new(&self.group_weights))
    }
}
