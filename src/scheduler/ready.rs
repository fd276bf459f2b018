//! Ready jobs of one tag, best first: lowest priority number, then earliest
//! due time, then creation order.
//!
//! Jobs almost always become ready in order: a new job is due now, and the
//! wheel fires delayed jobs in time order. So each priority has a lane: a
//! FIFO queue taking every key that sorts after the lane's last one (O(1)
//! push and pop, sequential memory), and a heap only for the rare key that
//! arrives out of order (a retry or kick due earlier than jobs already
//! waiting). Popping takes the better of the two fronts, so the order is
//! exact either way.
//!
//! A lane whose jobs carry group keys also has a [`Fair`] part: groups
//! then take weighted turns within the priority (see `fair.rs` and
//! [`crate::group`]). A lane without grouped jobs has none, and pays one
//! branch for it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;

use super::fair::Fair;

/// The ordering key of a ready job, with the slab position that finds it.
/// The scheduler removes entries lazily: a popped key whose job has moved
/// on (cancelled, expired, suspended) is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReadyKey {
    pub(crate) priority: u32,
    pub(crate) due: u64,
    pub(crate) seq: u64,
    pub(crate) slot: u32,
}

/// Keys in order: a FIFO for keys that arrive in order, a heap for the
/// rest.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    in_order: VecDeque<ReadyKey>,
    out_of_order: BinaryHeap<Reverse<ReadyKey>>,
}

impl Keys {
    pub(crate) fn push(&mut self, key: ReadyKey) {
        match self.in_order.back() {
            Some(last) if key < *last => self.out_of_order.push(Reverse(key)),
            _ => self.in_order.push_back(key),
        }
    }

    pub(crate) fn pop(&mut self) -> Option<ReadyKey> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) if b < a => self.out_of_order.pop().map(|Reverse(k)| k),
            (Some(_), _) => self.in_order.pop_front(),
            (None, _) => self.out_of_order.pop().map(|Reverse(k)| k),
        }
    }

    /// The key `pop` would return.
    pub(crate) fn peek(&self) -> Option<ReadyKey> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) => Some(*a.min(b)),
            (Some(a), None) => Some(*a),
            (None, b) => b.map(|Reverse(k)| *k),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.in_order.is_empty() && self.out_of_order.is_empty()
    }
}

/// The keys of one priority: those without a group, and the groups' when
/// any job of the priority has one.
#[derive(Debug, Default)]
struct Lane {
    plain: Keys,
    fair: Option<Box<Fair>>,
}

impl Lane {
    fn push(&mut self, key: ReadyKey) {
        match self.fair.as_deref_mut() {
            None => self.plain.push(key),
            Some(fair) => fair.push_plain(&mut self.plain, key),
        }
    }

    fn push_grouped(&mut self, key: ReadyKey, group: &Arc<str>, stride: u64) {
        let plain = &self.plain;
        self.fair
            .get_or_insert_with(|| Box::new(Fair::new(plain)))
            .push(key, group, stride);
    }

    fn pop(&mut self) -> Option<ReadyKey> {
        let Some(fair) = self.fair.as_deref_mut() else {
            return self.plain.pop();
        };
        let key = fair.pop(&mut self.plain);
        if !fair.has_groups() {
            // Back to the plain path until a grouped job comes again.
            self.fair = None;
        }
        key
    }

    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.fair.as_deref().is_none_or(|f| !f.has_groups())
    }
}

/// Empty lanes kept for reuse before they are dropped.
const SPARE_LANES: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct ReadySet {
    lanes: BTreeMap<u32, Lane>,
}

impl ReadySet {
    /// Whether it holds no key (it may hold keys of jobs that left it,
    /// dropped as they are popped).
    pub(crate) fn is_empty(&self) -> bool {
        self.lanes.values().all(Lane::is_empty)
    }

    pub(crate) fn push(&mut self, key: ReadyKey) {
        self.lanes.entry(key.priority).or_default().push(key);
    }

    /// Pushes the key of a job of `group`, whose stride is `stride` (see
    /// [`crate::group`]).
    pub(crate) fn push_grouped(&mut self, key: ReadyKey, group: &Arc<str>, stride: u64) {
        self.lanes
            .entry(key.priority)
            .or_default()
            .push_grouped(key, group, stride);
    }

    pub(crate) fn pop(&mut self) -> Option<ReadyKey> {
        let mut emptied = 0;
        let mut found = None;
        for lane in self.lanes.values_mut() {
            if let Some(key) = lane.pop() {
                found = Some(key);
                break;
            }
            emptied += 1;
        }
        if emptied > SPARE_LANES {
            self.lanes.retain(|_, lane| !lane.is_empty());
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(priority: u32, due: u64, seq: u64) -> ReadyKey {
        ReadyKey {
            priority,
            due,
            seq,
            slot: seq as u32,
        }
    }

    #[test]
    fn priority_then_due_then_sequence() {
        let mut set = ReadySet::default();
        set.push(key(1, 0, 0));
        set.push(key(0, 50, 1));
        set.push(key(0, 10, 3));
        set.push(key(0, 10, 2));
        let order: Vec<u64> = std::iter::from_fn(|| set.pop()).map(|k| k.seq).collect();
        assert_eq!(order, vec![2, 3, 1, 0]);
    }

    #[test]
    fn a_late_arrival_due_earlier_jumps_the_lane() {
        let mut set = ReadySet::default();
        set.push(key(0, 100, 1));
        set.push(key(0, 200, 2));
        set.push(key(0, 50, 3));
        set.push(key(0, 300, 4));
        let order: Vec<u64> = std::iter::from_fn(|| set.pop()).map(|k| k.seq).collect();
        assert_eq!(order, vec![3, 1, 2, 4]);
    }

    proptest! {
        /// Any interleaving of pushes and pops gives what a plain heap gives.
        #[test]
        fn pops_in_the_same_order_as_a_heap(
            ops in proptest::collection::vec((0u32..12, 0u64..50, any::<bool>()), 1..400)
        ) {
            let mut set = ReadySet::default();
            let mut model = BinaryHeap::new();
            for (seq, (priority, due, pop)) in ops.into_iter().enumerate() {
                if pop {
                    prop_assert_eq!(set.pop(), model.pop().map(|Reverse(k)| k));
                } else {
                    let k = key(priority, due, seq as u64);
                    set.push(k);
                    model.push(Reverse(k));
                }
            }
            while let Some(Reverse(k)) = model.pop() {
                prop_assert_eq!(set.pop(), Some(k));
            }
            prop_assert_eq!(set.pop(), None);
        }
    }
}
