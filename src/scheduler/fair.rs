//! Weighted turns between the groups of one priority of a ready set (see
//! [`crate::group`] for the rule).
//!
//! Stride scheduling (Waldspurger & Weihl, 1995): each group with ready
//! keys has a pass; the group with the lowest pass takes the next turn and
//! advances its pass by its stride (`STRIDE / weight`). The pass of the
//! turn last taken is the lane's virtual time; a group that becomes ready
//! again starts from it, so idling earns no credit. The keys without a
//! group are one more group, of weight 1, kept in the lane's plain keys.
//!
//! Pending turns sit in a heap ordered by (pass, due, seq): equal passes
//! go to the group whose front job is older. A turn is pushed when a
//! group gets its first key and after each of its turns while it has
//! keys left, so a group has exactly one turn in the heap while it has
//! keys, and none otherwise.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use super::ready::{Keys, ReadyKey};
use crate::group::STRIDE;

/// One group's keys and pass.
#[derive(Debug)]
struct Group {
    keys: Keys,
    pass: u64,
    stride: u64,
}

/// A pending turn: `group` is `None` for the keys without a group.
#[derive(Debug)]
struct Turn {
    pass: u64,
    due: u64,
    seq: u64,
    group: Option<Arc<str>>,
}

impl Turn {
    fn order(&self) -> (u64, u64, u64) {
        (self.pass, self.due, self.seq)
    }
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}

impl Eq for Turn {}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order().cmp(&other.order())
    }
}

/// The groups of one priority. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Fair {
    /// The groups with keys.
    groups: HashMap<Arc<str>, Group>,
    /// The pass of the keys without a group.
    plain_pass: u64,
    turns: BinaryHeap<Reverse<Turn>>,
    /// The pass of the turn last taken.
    now: u64,
}

impl Fair {
    /// Turns for a lane whose keys without a group are `plain`.
    pub(crate) fn new(plain: &Keys) -> Self {
        let mut fair = Fair {
            groups: HashMap::new(),
            plain_pass: 0,
            turns: BinaryHeap::new(),
            now: 0,
        };
        if let Some(front) = plain.peek() {
            fair.turns.push(Reverse(Turn {
                pass: 0,
                due: front.due,
                seq: front.seq,
                group: None,
            }));
        }
        fair
    }

    /// Whether any group has keys (the plain keys aside).
    pub(crate) fn has_groups(&self) -> bool {
        !self.groups.is_empty()
    }

    /// Pushes a key without a group into `plain`.
    pub(crate) fn push_plain(&mut self, plain: &mut Keys, key: ReadyKey) {
        if plain.is_empty() {
            self.plain_pass = self.plain_pass.max(self.now);
            self.turns.push(Reverse(Turn {
                pass: self.plain_pass,
                due: key.due,
                seq: key.seq,
                group: None,
            }));
        }
        plain.push(key);
    }

    /// Pushes a key of `group`, of stride `stride`.
    pub(crate) fn push(&mut self, key: ReadyKey, group: &Arc<str>, stride: u64) {
        let now = self.now;
        let g = self.groups.entry(group.clone()).or_insert_with(|| Group {
            keys: Keys::default(),
            pass: now,
            stride,
        });
        if g.keys.is_empty() {
            g.pass = g.pass.max(now);
            self.turns.push(Reverse(Turn {
                pass: g.pass,
                due: key.due,
                seq: key.seq,
                group: Some(group.clone()),
            }));
        }
        g.keys.push(key);
    }

    /// The next key: the front key of the group whose turn it is.
    pub(crate) fn pop(&mut self, plain: &mut Keys) -> Option<ReadyKey> {
        while let Some(Reverse(turn)) = self.turns.pop() {
            self.now = turn.pass;
            let next = turn.pass.saturating_add(match &turn.group {
                None => STRIDE,
                Some(name) => self.groups.get(name).map_or(STRIDE, |g| g.stride),
            });
            let (key, front) = match &turn.group {
                None => {
                    self.plain_pass = next;
                    (plain.pop(), plain.peek())
                }
                Some(name) => {
                    let Some(g) = self.groups.get_mut(name) else {
                        continue;
                    };
                    g.pass = next;
                    let key = g.keys.pop();
                    let front = g.keys.peek();
                    if front.is_none() {
                        self.groups.remove(name);
                    }
                    (key, front)
                }
            };
            if let Some(front) = front {
                self.turns.push(Reverse(Turn {
                    pass: next,
                    due: front.due,
                    seq: front.seq,
                    group: turn.group,
                }));
            }
            if key.is_some() {
                return key;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::ready::ReadySet;
    use super::*;
    use proptest::prelude::*;

    fn key(priority: u32, seq: u64) -> ReadyKey {
        ReadyKey {
            priority,
            due: 0,
            seq,
            slot: seq as u32,
        }
    }

    fn name(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn a_small_group_is_not_starved_by_a_large_one() {
        let mut set = ReadySet::default();
        let (big, small) = (name("big"), name("small"));
        for seq in 0..1000 {
            set.push_grouped(key(0, seq), &big, STRIDE);
        }
        for seq in 1000..1010 {
            set.push_grouped(key(0, seq), &small, STRIDE);
        }
        let first: Vec<u64> = (0..20).filter_map(|_| set.pop()).map(|k| k.seq).collect();
        let small_served = first.iter().filter(|&&s| s >= 1000).count();
        assert_eq!(small_served, 10, "{first:?}");
    }

    #[test]
    fn weights_three_to_one_give_three_turns_to_one() {
        let mut set = ReadySet::default();
        let (heavy, light) = (name("heavy"), name("light"));
        for seq in 0..400 {
            let (g, w) = if seq % 2 == 0 {
                (&heavy, 3.0)
            } else {
                (&light, 1.0)
            };
            set.push_grouped(key(0, seq), g, crate::group::stride_of(w));
        }
        let first: Vec<u64> = (0..200).filter_map(|_| set.pop()).map(|k| k.seq).collect();
        let heavy_served = first.iter().filter(|&&s| s % 2 == 0).count();
        assert_eq!(heavy_served, 150, "3:1 of 200 turns");
    }

    #[test]
    fn priority_wins_before_groups_take_turns() {
        let mut set = ReadySet::default();
        let (a, b) = (name("a"), name("b"));
        set.push_grouped(key(5, 0), &a, STRIDE);
        set.push_grouped(key(5, 1), &a, STRIDE);
        set.push_grouped(key(0, 2), &b, STRIDE);
        set.push_grouped(key(0, 3), &b, STRIDE);
        set.push(key(5, 4));
        let order: Vec<u64> = std::iter::from_fn(|| set.pop()).map(|k| k.seq).collect();
        assert_eq!(order, vec![2, 3, 0, 4, 1]);
    }

    #[test]
    fn jobs_without_a_group_are_one_more_group() {
        let mut set = ReadySet::default();
        let g = name("g");
        for seq in 0..4 {
            set.push(key(0, seq));
        }
        for seq in 4..6 {
            set.push_grouped(key(0, seq), &g, STRIDE);
        }
        let order: Vec<u64> = std::iter::from_fn(|| set.pop()).map(|k| k.seq).collect();
        assert_eq!(order, vec![0, 4, 1, 5, 2, 3]);
    }

    #[test]
    fn an_idle_group_earns_no_credit() {
        let mut set = ReadySet::default();
        let (a, b) = (name("a"), name("b"));
        for seq in 0..10 {
            set.push_grouped(key(0, seq), &a, STRIDE);
        }
        for _ in 0..6 {
            set.pop();
        }
        // `b` arrives late: it takes turns with `a` from now on, not six
        // turns in a row for the time it was away.
        for seq in 10..20 {
            set.push_grouped(key(0, seq), &b, STRIDE);
        }
        let next: Vec<u64> = (0..6).filter_map(|_| set.pop()).map(|k| k.seq).collect();
        assert_eq!(next.iter().filter(|&&s| s >= 10).count(), 3, "{next:?}");
    }

    proptest! {
        /// Whatever is pushed, grouped or not, between any pops, comes out
        /// exactly once, and the set is empty after.
        #[test]
        fn every_key_comes_out_once_in_fair_order(
            ops in proptest::collection::vec((0u32..3, 0u8..4, 0u64..20, any::<bool>()), 1..300)
        ) {
            let mut set = ReadySet::default();
            let names: Vec<Arc<str>> = ["a", "b", "c"].into_iter().map(name).collect();
            let mut pushed = std::collections::BTreeMap::new();
            let mut popped = Vec::new();
            for (seq, (priority, group, due, pop)) in ops.into_iter().enumerate() {
                if pop {
                    if let Some(k) = set.pop() {
                        popped.push(k);
                    }
                    continue;
                }
                let k = ReadyKey { priority, due, seq: seq as u64, slot: seq as u32 };
                match group {
                    0 => set.push(k),
                    g => set.push_grouped(k, &names[usize::from(g) - 1], STRIDE),
                }
                pushed.insert(k.seq, (k, group));
            }
            while let Some(k) = set.pop() {
                popped.push(k);
            }
            prop_assert!(set.is_empty());
            prop_assert_eq!(popped.len(), pushed.len());
            let mut seen = std::collections::HashSet::new();
            for k in &popped {
                prop_assert!(seen.insert(k.seq), "popped twice");
                prop_assert_eq!(pushed.get(&k.seq).map(|p| p.0), Some(*k));
            }
        }

        /// Two groups of equal weight, filled first and then drained, take
        /// strict turns while both have keys.
        #[test]
        fn equal_groups_alternate(a in 1usize..50, b in 1usize..50) {
            let mut set = ReadySet::default();
            let (ga, gb) = (name("a"), name("b"));
            let mut seq = 0u64;
            for _ in 0..a { set.push_grouped(key(0, seq), &ga, STRIDE); seq += 1; }
            for _ in 0..b { set.push_grouped(key(0, seq), &gb, STRIDE); seq += 1; }
            let order: Vec<bool> = std::iter::from_fn(|| set.pop()).map(|k| k.seq < a as u64).collect();
            let both = 2 * a.min(b);
            for (i, is_a) in order[..both].iter().enumerate() {
                prop_assert_eq!(*is_a, i % 2 == 0);
            }
            prop_assert_eq!(order.len(), a + b);
        }
    }
}
