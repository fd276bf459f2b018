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

use std::collections::{btree_map, BTreeMap, VecDeque};
use std::iter::Peekable;

/// Entries per chunk of the run.
const CHUNK: usize = 256;

/// A piece of the run: ascending keys and, beside them, their values; a
/// removed value leaves `None` until the chunk is compacted or dropped.
#[derive(Debug)]
struct Chunk<V> {
    keys: Vec<u128>,
    values: Vec<Option<V>>,
    /// How many of `values` are `Some`.
    live: usize,
    /// The first live entry (entries leave mostly from the front: a
    /// lookup checks here before it searches).
    head: usize,
}

impl<V> Chunk<V> {
    fn new() -> Self {
        Chunk {
            keys: Vec::with_capacity(CHUNK),
            values: Vec::with_capacity(CHUNK),
            live: 0,
            head: 0,
        }
    }

    fn first(&self) -> u128 {
        self.keys[0]
    }

    fn last(&self) -> u128 {
        self.keys[self.keys.len() - 1]
    }

    /// Drops the removed entries (the keys stay in order).
    fn compact(&mut self) {
        let (keys, values) = (
            std::mem::take(&mut self.keys),
            std::mem::take(&mut self.values),
        );
        self.keys = Vec::with_capacity(self.live);
        self.values = Vec::with_capacity(self.live);
        for (k, v) in keys.into_iter().zip(values) {
            if v.is_some() {
                self.keys.push(k);
                self.values.push(v);
            }
        }
        self.head = 0;
    }
}

/// Values by 128-bit key, iterated in key order.
///
/// The run is cut in chunks of [`CHUNK`] entries, so that entries removed
/// out of order (delayed jobs firing in their own order) are reclaimed a
/// chunk at a time: a chunk left empty is dropped, and one mostly empty is
/// compacted, each at a cost bounded by the chunk's size, never the run's.
#[derive(Debug)]
pub(crate) struct IdOrderedMap<V> {
    /// The run: chunks in key order, none empty.
    chunks: VecDeque<Chunk<V>>,
    /// How many values the run holds.
    live: usize,
    /// Entries that arrived out of order. Never holds a key of the run.
    tree: BTreeMap<u128, V>,
}

impl<V> Default for IdOrderedMap<V> {
    fn default() -> Self {
        IdOrderedMap {
            chunks: VecDeque::new(),
            live: 0,
            tree: BTreeMap::new(),
        }
    }
}

impl<V> IdOrderedMap<V> {
    /// Where in the run `key` is (its value live or not): chunk, index.
    fn find(&self, key: u128) -> Option<(usize, usize)> {
        let (front, back) = (self.chunks.front()?, self.chunks.back()?);
        if key < front.first() || key > back.last() {
            return None;
        }
        let c = if key <= front.last() {
            // The oldest entries: what leaves most often.
            0
        } else if key >= back.first() {
            self.chunks.len() - 1
        } else {
            self.chunks.partition_point(|ch| ch.first() <= key) - 1
        };
        let chunk = &self.chunks[c];
        let i = if chunk.keys[chunk.head] == key {
            chunk.head
        } else {
            chunk.keys.binary_search(&key).ok()?
        };
        Some((c, i))
    }

    pub(crate) fn len(&self) -> usize {
        self.live + self.tree.len()
    }

    pub(crate) fn get(&self, key: u128) -> Option<&V> {
        match self.find(key) {
            Some((c, i)) => self.chunks[c].values[i].as_ref(),
            None => self.tree.get(&key),
        }
    }

    pub(crate) fn contains(&self, key: u128) -> bool {
        self.get(key).is_some()
    }

    /// Adds `value` under `key`, returning the value it replaces.
    pub(crate) fn insert(&mut self, key: u128, value: V) -> Option<V> {
        if let Some((c, i)) = self.find(key) {
            let chunk = &mut self.chunks[c];
            let old = chunk.values[i].replace(value);
            if old.is_none() {
                chunk.live += 1;
                self.live += 1;
                chunk.head = chunk.head.min(i);
            }
            return old;
        }
        if !self.tree.is_empty() {
            if let Some(slot) = self.tree.get_mut(&key) {
                return Some(std::mem::replace(slot, value));
            }
        }
        if self.chunks.back().is_none_or(|ch| key > ch.last()) {
            if self.chunks.back().is_none_or(|ch| ch.keys.len() >= CHUNK) {
                self.chunks.push_back(Chunk::new());
            }
            let chunk = self.chunks.back_mut().expect("pushed");
            chunk.keys.push(key);
            chunk.values.push(Some(value));
            chunk.live += 1;
            self.live += 1;
            return None;
        }
        self.tree.insert(key, value)
    }

    pub(crate) fn remove(&mut self, key: u128) -> Option<V> {
        let Some((c, i)) = self.find(key) else {
            return self.tree.remove(&key);
        };
        let chunk = &mut self.chunks[c];
        let old = chunk.values[i].take()?;
        chunk.live -= 1;
        self.live -= 1;
        if i == chunk.head {
            while chunk.values.get(chunk.head).is_some_and(Option::is_none) {
                chunk.head += 1;
            }
        }
        if chunk.live == 0 {
            self.chunks.remove(c);
        } else if chunk.live * 4 <= chunk.keys.len() && chunk.keys.len() >= 8 {
            chunk.compact();
        }
        Some(old)
    }

    /// Every entry, in key order.
    pub(crate) fn iter(&self) -> Iter<'_, V> {
        Iter {
            chunks: &self.chunks,
            chunk: 0,
            at: 0,
            tree: self.tree.iter().peekable(),
        }
    }
}

/// The entries of a [`IdOrderedMap`] in key order: its run and its tree merged.
pub(crate) struct Iter<'a, V> {
    chunks: &'a VecDeque<Chunk<V>>,
    /// The next live entry of the run is at or after (chunk, at).
    chunk: usize,
    at: usize,
    tree: Peekable<btree_map::Iter<'a, u128, V>>,
}

impl<'a, V> Iter<'a, V> {
    /// The run's next live entry, without taking it.
    fn peek_run(&mut self) -> Option<(u128, &'a V)> {
        while let Some(chunk) = self.chunks.get(self.chunk) {
            match chunk.values.get(self.at) {
                Some(Some(v)) => return Some((chunk.keys[self.at], v)),
                Some(None) => self.at += 1,
                None => {
                    self.chunk += 1;
                    self.at = 0;
                }
            }
        }
        None
    }
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (u128, &'a V);

    fn next(&mut self) -> Option<(u128, &'a V)> {
        let run = self.peek_run();
        match (run, self.tree.peek()) {
            (None, None) => None,
            (Some((k, v)), t) if t.is_none_or(|t| k < *t.0) => {
                self.at += 1;
                Some((k, v))
            }
            _ => self.tree.next().map(|(k, v)| (*k, v)),
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
            let mut map = IdOrderedMap::default();
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
                prop_assert!(map.chunks.iter().all(|c| c.values[c.head].is_some()
                    && c.values[..c.head].iter().all(Option::is_none)));
            }
            let listed: Vec<(u128, usize)> = map.iter().map(|(k, v)| (k, *v)).collect();
            let expected: Vec<(u128, usize)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(listed, expected);
            for (k, v) in &model {
                prop_assert_eq!(map.get(*k), Some(v));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Thousands of entries added in order and removed in any order
        /// (delayed jobs firing): the chunks hold what a tree would, and
        /// every chunk left is non-empty.
        #[test]
        fn entries_removed_in_any_order_leave_what_a_tree_leaves(
            order in Just((0..3000u128).collect::<Vec<_>>()).prop_shuffle(),
            keep in 0..3000usize,
        ) {
            let mut map = IdOrderedMap::default();
            let mut model = BTreeMap::new();
            for k in 0..3000u128 {
                map.insert(k, k);
                model.insert(k, k);
            }
            for k in &order[keep..] {
                prop_assert_eq!(map.remove(*k), model.remove(k));
                prop_assert_eq!(map.get(*k), None);
            }
            prop_assert!(map.chunks.iter().all(|c| c.live > 0 && c.live <= c.keys.len()
                && c.values[c.head].is_some() && c.values[..c.head].iter().all(Option::is_none)));
            prop_assert_eq!(map.len(), model.len());
            let listed: Vec<u128> = map.iter().map(|(k, _)| k).collect();
            prop_assert_eq!(listed, model.keys().copied().collect::<Vec<_>>());
            for (k, v) in &model {
                prop_assert_eq!(map.get(*k), Some(v));
            }
        }
    }

    #[test]
    fn entries_added_in_order_stay_out_of_the_tree() {
        let mut map = IdOrderedMap::default();
        for key in 1..=100u128 {
            map.insert(key, ());
        }
        for key in 1..=50u128 {
            map.remove(key);
        }
        assert!(map.tree.is_empty());
        assert_eq!(map.live, 50);
        map.insert(10, ());
        assert!(map.tree.is_empty(), "a removed key comes back to its place");
        map.insert(0, ());
        assert_eq!(map.tree.len(), 1, "a key before the run goes to the tree");
        let first: Vec<u128> = map.iter().take(3).map(|(k, _)| k).collect();
        assert_eq!(first, [0, 10, 51]);
        for key in 300..=1000u128 {
            map.insert(key, ());
        }
        assert!(map.chunks.len() > 2 && map.tree.len() == 1);
    }
}
