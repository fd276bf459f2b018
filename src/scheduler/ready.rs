//! Ready jobs of one tag, best first: lowest priority number, then earliest
//! due time, then creation order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The ordering key of a ready job, with the slab position that finds it.
/// The supervisor removes entries lazily: a popped key whose job has moved
/// on (cancelled, expired, suspended) is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReadyKey {
    pub(crate) priority: u32,
    pub(crate) due: u64,
    pub(crate) seq: u64,
    pub(crate) slot: u32,
}

#[derive(Debug, Default)]
pub(crate) struct ReadySet {
    heap: BinaryHeap<Reverse<ReadyKey>>,
}

impl ReadySet {
    pub(crate) fn push(&mut self, key: ReadyKey) {
        self.heap.push(Reverse(key));
    }

    pub(crate) fn pop(&mut self) -> Option<ReadyKey> {
        self.heap.pop().map(|Reverse(k)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_due_then_sequence() {
        let mut set = ReadySet::default();
        let key = |priority, due, seq| ReadyKey {
            priority,
            due,
            seq,
            slot: seq as u32,
        };
        set.push(key(1, 0, 0));
        set.push(key(0, 50, 1));
        set.push(key(0, 10, 3));
        set.push(key(0, 10, 2));
        let order: Vec<u64> = std::iter::from_fn(|| set.pop()).map(|k| k.seq).collect();
        assert_eq!(order, vec![2, 3, 1, 0]);
    }
}
