//! Fair groups: a job may carry a group key (a tenant, a customer), and
//! within one priority the groups of a tag take turns, so one group's
//! million queued jobs cannot starve another's ten.
//!
//! The rule, the same on every store:
//!
//! 1. **Priority first.** The best priority present (the lowest number)
//!    is served first, whatever its groups.
//! 2. **Within one priority, groups take turns**, weighted: a group of
//!    weight `w` gets `w` turns for every turn of a group of weight 1
//!    (weights may be fractions: 0.5 is one turn every other round). Jobs
//!    without a group form one more group, the default one, of weight 1.
//! 3. **Within one group**, the old order: earliest due time, then
//!    creation order.
//!
//! Turns are counted as in stride scheduling: each group keeps a pass,
//! the group with the lowest pass goes next and then advances its pass by
//! `1 / weight`; a group that had nothing ready starts again at the pass
//! of the last turn taken, so being idle earns no credit.
//!
//! Weights are set per queue with
//! [`QueueBuilder::group_weight`](crate::QueueBuilder::group_weight); on a
//! shared store (PostgreSQL) every process should set the same weights,
//! since each claim shares its batch by the weights of the process that
//! makes it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Error;

/// The longest group key kessel accepts, in bytes.
///
/// # Examples
///
/// ```
/// assert_eq!(kessel::MAX_GROUP_KEY_LEN, 255);
/// ```
pub const MAX_GROUP_KEY_LEN: usize = 255;

/// The least weight a group may have.
///
/// # Examples
///
/// ```
/// assert!(kessel::MIN_GROUP_WEIGHT > 0.0);
/// ```
pub const MIN_GROUP_WEIGHT: f64 = 0.001;

/// The greatest weight a group may have.
///
/// # Examples
///
/// ```
/// assert_eq!(kessel::MAX_GROUP_WEIGHT, 1000.0);
/// ```
pub const MAX_GROUP_WEIGHT: f64 = 1000.0;

/// How far a group of weight 1 advances its pass per turn. A group of
/// weight `w` advances `STRIDE / w` (rounded): between 1,000 and
/// 1,000,000,000 for the weights allowed, so a `u64` pass never wraps.
pub(crate) const STRIDE: u64 = 1_000_000;

/// Checks a group key: not empty nor blank, at most
/// [`MAX_GROUP_KEY_LEN`] bytes, no control characters.
///
/// # Errors
///
/// [`Error::InvalidInput`] naming `group`.
pub(crate) fn check_key(key: &str) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidInput {
        field: "group",
        reason,
    };
    if key.trim().is_empty() {
        return Err(invalid("the group key is empty".into()));
    }
    if key.len() > MAX_GROUP_KEY_LEN {
        return Err(invalid(format!(
            "the group key is {} bytes long; at most {MAX_GROUP_KEY_LEN} are allowed",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid("the group key has a control character".into()));
    }
    Ok(())
}

/// Checks a weight: a finite number from [`MIN_GROUP_WEIGHT`] to
/// [`MAX_GROUP_WEIGHT`].
///
/// # Errors
///
/// [`Error::InvalidInput`] naming `weight`.
pub(crate) fn check_weight(weight: f64) -> Result<(), Error> {
    if weight.is_finite() && (MIN_GROUP_WEIGHT..=MAX_GROUP_WEIGHT).contains(&weight) {
        return Ok(());
    }
    Err(Error::InvalidInput {
        field: "weight",
        reason: format!(
            "a group weight is a number from {MIN_GROUP_WEIGHT} to {MAX_GROUP_WEIGHT}, not {weight}"
        ),
    })
}

/// The stride of a group of `weight` (a checked weight).
pub(crate) fn stride_of(weight: f64) -> u64 {
    ((STRIDE as f64 / weight).round() as u64).max(1)
}

/// The weights a queue gives its groups, as strides; a group not named
/// has weight 1. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupWeights {
    strides: Arc<HashMap<Arc<str>, u64>>,
    /// The weights by group name, for claims.
    pairs: Arc<Vec<(String, f64)>>,
}

impl GroupWeights {
    /// Weights from checked `(group, weight)` pairs; a later pair for the
    /// same group wins.
    pub(crate) fn new(pairs: &[(String, f64)]) -> Self {
        let mut last: HashMap<&str, f64> = HashMap::new();
        for (g, w) in pairs {
            last.insert(g, *w);
        }
        let mut pairs: Vec<(String, f64)> =
            last.into_iter().map(|(g, w)| (g.to_owned(), w)).collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let strides = pairs
            .iter()
            .map(|(g, w)| (Arc::from(g.as_str()), stride_of(*w)))
            .collect();
        GroupWeights {
            strides: Arc::new(strides),
            pairs: Arc::new(pairs),
        }
    }

    /// The stride of `group`.
    pub(crate) fn stride(&self, group: &str) -> u64 {
        if self.strides.is_empty() {
            return STRIDE;
        }
        self.strides.get(group).copied().unwrap_or(STRIDE)
    }

    /// Every weight set, by group name, for a claim.
    pub(crate) fn pairs(&self) -> Vec<(String, f64)> {
        self.pairs.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strides_are_inverse_to_weights() {
        assert_eq!(stride_of(1.0), STRIDE);
        assert_eq!(stride_of(3.0), 333_333);
        assert_eq!(stride_of(0.5), 2 * STRIDE);
        assert_eq!(stride_of(MAX_GROUP_WEIGHT), 1_000);
        assert_eq!(stride_of(MIN_GROUP_WEIGHT), 1_000_000_000);
        let w = GroupWeights::new(&[("a".into(), 2.0), ("a".into(), 3.0)]);
        assert_eq!(w.stride("a"), 333_333);
        assert_eq!(w.pairs(), vec![("a".to_string(), 3.0)]);
        assert_eq!(w.stride("b"), STRIDE);
    }

    proptest! {
        /// Any key is either accepted, or refused with an error naming
        /// `group`; accepted keys are the non-blank ones of at most 255
        /// bytes without control characters.
        #[test]
        fn a_group_key_is_checked_and_named(key in ".{0,300}") {
            let ok = !key.trim().is_empty()
                && key.len() <= MAX_GROUP_KEY_LEN
                && !key.chars().any(char::is_control);
            match check_key(&key) {
                Ok(()) => prop_assert!(ok),
                Err(Error::InvalidInput { field, .. }) => {
                    prop_assert!(!ok);
                    prop_assert_eq!(field, "group");
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        /// A job given any key is created in that group when the key is
        /// good, and refused naming `group` otherwise: never a panic, never
        /// a job in another group.
        #[test]
        fn a_new_job_takes_a_good_key_and_names_a_bad_one(key in ".{0,300}") {
            let built = crate::NewJob::new("t", 1)
                .group(key.clone())
                .into_job(chrono::Utc::now(), &mut None, true);
            match (check_key(&key), built) {
                (Ok(()), Ok(job)) => prop_assert_eq!(job.group.as_deref(), Some(key.as_str())),
                (Err(_), Err(Error::InvalidInput { field, .. })) => prop_assert_eq!(field, "group"),
                (want, got) => prop_assert!(false, "check {:?}, built {:?}", want, got.map(|j| j.group)),
            }
        }

        /// Any weight is either accepted (finite, within the bounds) or
        /// refused naming `weight`: zero, negatives, NaN and infinities
        /// never pass.
        #[test]
        fn a_weight_is_checked_and_named(weight in prop_oneof![
            any::<f64>(),
            Just(0.0), Just(-0.0), Just(-1.0), Just(f64::NAN), Just(f64::INFINITY),
            Just(MIN_GROUP_WEIGHT), Just(MAX_GROUP_WEIGHT), 0.0..2000.0f64,
        ]) {
            let ok = weight.is_finite() && (MIN_GROUP_WEIGHT..=MAX_GROUP_WEIGHT).contains(&weight);
            match check_weight(weight) {
                Ok(()) => {
                    prop_assert!(ok);
                    prop_assert!(stride_of(weight) >= 1_000);
                }
                Err(Error::InvalidInput { field, .. }) => {
                    prop_assert!(!ok);
                    prop_assert_eq!(field, "weight");
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
