//! An ordered map for keys that mostly arrive in order and leave from the
//! front: jobs by id.
//!
//! Job ids are time-ordered, jobs are mostly admitted in the order they
//! were created and mostly finish in that order too. A B-tree pays a search
//! from its root for every insert and every removal, and rebalances its
//! first leaf over and over as the oldest entries leave. This map keeps
//! such entries in a sorted run, where adding one past the end and dropping
//! the first each cost a comparison; an entry that arrives out of order (a
//! retried or long job finishing late, a kicked job coming back) goes to a
//! tree beside the run, and reading in order merges the two.

use std::collections::{btree_map, vec_deque, BTreeMap, VecDeque};
use std::iter::{Peekable, Zip};

/// Values by 128-bit key, iterated in key order.
#[derive(Debug)]
pub(crate) struct RunMap<V> {
    /// Ascending keys of the run.
    keys: VecDeque<u128>,
    /// The run's values, beside their keys; a removed one leaves `None`
    /// until the run's ends are trimmed or it is compacted.
    values: VecDeque<Option<V>>,
    /// How many of `values` are `Some`.
    live: usize,
    /// Entries that arrived out of order. Never holds a key of the run.
    tree: BTreeMap<u128, V>,
}

impl<V> Default for RunMap<V> {
    fn default() -> Self {
        RunMap {
            keys: VecDeque::new(),
            values: VecDeque::new(),
            live: 0,
            tree: BTreeMap::new(),
        }
    }
}

impl<V> RunMap<V> {
    /// The index in the run of `key` (its value live or not).
    fn find(&self, key: u128) -> Option<usize> {
        let (&first, &last) = (self.keys.front()?, self.keys.back()?);
        if key < first || key > last {
            None
        } else if key == first {
            // The oldest entry: what leaves most often.
            Some(0)
        } else {
            self.keys.binary_search(&key).ok()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live + self.tree.len()
    }

    pub(crate) fn get(&self, key: u128) -> Option<&V> {
        match self.find(key) {
            Some(i) => self.values[i].as_ref(),
            None => self.tree.get(&key),
        }
    }

    pub(crate) fn contains(&self, key: u128) -> bool {
        self.get(key).is_some()
    }

    /// Adds `value` under `key`, returning the value it replaces.
    pub(crate) fn insert(&mut self, key: u128, value: V) -> Option<V> {
        if let Some(i) = self.find(key) {
            let old = self.values[i].replace(value);
            if old.is_none() {
                self.live += 1;
            }
            return old;
        }
        if !self.tree.is_empty() {
            if let Some(slot) = self.tree.get_mut(&key) {
                return Some(std::mem::replace(slot, value));
            }
        }
        if self.keys.back().is_none_or(|&last| key > last) {
            self.keys.push_back(key);
            self.values.push_back(Some(value));
            self.live += 1;
            return None;
        }
        self.tree.insert(key, value)
    }

    pub(crate) fn remove(&mut self, key: u128) -> Option<V> {
        let Some(i) = self.find(key) else {
            return self.tree.remove(&key);
        };
        let old = self.values[i].take()?;
        self.live -= 1;
        while self.values.front().is_some_and(Option::is_none) {
            self.values.pop_front();
            self.keys.pop_front();
        }
        while self.values.back().is_some_and(Option::is_none) {
            self.values.pop_back();
            self.keys.pop_back();
        }
        if self.values.len() > 2 * self.live + 64 {
            // Removed in the middle more than kept: close the gaps.
            let (keys, values) = (std::mem::take(&mut self.keys), std::mem::take(&mut self.values));
            for (k, v) in keys.into_iter().zip(values) {
                if let Some(v) = v {
                    self.keys.push_back(k);
                    self.values.push_back(Some(v));
                }
            }
        }
        Some(old)
    }

    /// Every entry, in key order.
    pub(crate) fn iter(&self) -> Iter<'_, V> {
        Iter {
            run: self.keys.iter().zip(self.values.iter()).peekable(),
            tree: self.tree.iter().peekable(),
        }
    }
}

/// The entries of a [`RunMap`] in key order: its run and its tree merged.
pub(crate) struct Iter<'a, V> {
    run: Peekable<Zip<vec_deque::Iter<'a, u128>, vec_deque::Iter<'a, Option<V>>>>,
    tree: Peekable<btree_map::Iter<'a, u128, V>>,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (u128, &'a V);

    fn next(&mut self) -> Option<(u128, &'a V)> {
        loop {
            let from_run = match (self.run.peek(), self.tree.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(r), Some(t)) => r.0 < t.0,
            };
            if !from_run {
                return self.tree.next().map(|(k, v)| (*k, v));
            }
            if let Some((k, Some(v))) = self.run.next() {
                return Some((*k, v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<u8>().prop_map(Op::Insert),
            2 => any::<u8>().prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Any mix of inserts (in order, out of order, replacing) and
        /// removes leaves the same entries, in the same order, as an
        /// ordered tree would hold.
        #[test]
        fn holds_what_an_ordered_tree_holds(ops in proptest::collection::vec(op(), 0..400),
                                            ascending in any::<bool>()) {
            let mut map = RunMap::default();
            let mut model: BTreeMap<u128, usize> = BTreeMap::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(n) => {
                        // Mostly ascending keys when asked, as jobs finish.
                        let key = if ascending && i % 4 != 0 { i as u128 + 256 } else { n as u128 };
                        prop_assert_eq!(map.insert(key, i), model.insert(key, i));
                    }
                    Op::Remove(n) => {
                        prop_assert_eq!(map.remove(n as u128), model.remove(&(n as u128)));
                    }
                }
                prop_assert_eq!(map.len(), model.len());
            }
            let listed: Vec<(u128, usize)> = map.iter().map(|(k, v)| (k, *v)).collect();
            let expected: Vec<(u128, usize)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(listed, expected);
            for (k, v) in &model {
                prop_assert_eq!(map.get(*k), Some(v));
            }
        }
    }

    #[test]
    fn entries_added_in_order_stay_out_of_the_tree() {
        let mut map = RunMap::default();
        for key in 1..=100u128 {
            map.insert(key, ());
        }
        for key in 1..=50u128 {
            map.remove(key);
        }
        assert!(map.tree.is_empty());
        assert_eq!((map.keys.len(), map.live), (50, 50));
        map.insert(10, ());
        assert_eq!(map.tree.len(), 1, "a key before the run goes to the tree");
        assert_eq!(map.iter().next().map(|(k, _)| k), Some(10));
    }
}
