//! The scheduler's timer wheel: one slot per millisecond, the occupied
//! slots kept in order.
//!
//! The wheel times every delayed thing the scheduler owns: jobs waiting for
//! their `run_at`, retries waiting out their backoff, ready jobs waiting to
//! expire and running jobs waiting for their timeout. It is a plain data
//! structure with no clock of its own: callers pass the current time (in
//! milliseconds since an origin they choose) to [`Wheel::poll`], and ask
//! [`Wheel::next_expiration`] when they next need to wake up.
//!
//! # Slots
//!
//! Each millisecond that has entries is a slot: an intrusive doubly linked
//! list threaded through a slab, its head and tail kept in a `BTreeMap` by
//! millisecond. Inserting finds or opens the slot (O(log s) for s occupied
//! slots, and s is at most the number of distinct milliseconds pending);
//! cancelling unlinks in O(1) (plus closing the slot when it empties);
//! polling takes the first slots in order. A hierarchical wheel inserts in
//! O(1) but moves every far entry down a level when its coarse slot comes
//! due: a million jobs spread over ten seconds means hundreds of thousands
//! moved at once, and jobs due meanwhile start that much late. Here an
//! entry is touched once when it fires, so firing is as smooth as the
//! deadlines are.
//!
//! # Keys
//!
//! [`Wheel::insert`] returns a [`TimerKey`] carrying the slab index and a
//! generation. Cancelling with a key whose entry has already fired or been
//! cancelled returns `None` instead of touching whatever entry reuses the
//! slab slot.

use std::collections::BTreeMap;

const NIL: u32 = u32::MAX;

/// The size of the wheel's entry for items of type `T`.
#[cfg(test)]
pub(crate) fn entry_size<T>() -> usize {
    std::mem::size_of::<Entry<T>>()
}

fn split(tick: u64) -> [u32; 2] {
    [(tick >> 32) as u32, tick as u32]
}

fn join([high, low]: [u32; 2]) -> u64 {
    (u64::from(high) << 32) | u64::from(low)
}

/// A handle to an entry in the [`Wheel`], used to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TimerKey {
    index: u32,
    /// Never zero (generations skip it), so an absent key costs no room.
    generation: std::num::NonZeroU32,
}

/// Returned by [`Wheel::insert`] when the deadline is not after the wheel's
/// current time: the item is handed back so the caller can act on it now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Elapsed<T>(pub(crate) T);

#[derive(Debug)]
struct Entry<T> {
    /// The tick, as two halves: a `u64` would align the entry to 8 bytes
    /// and pad it from 28 to 32 (there is one entry per waiting job).
    when: [u32; 2],
    item: Option<T>,
    generation: u32,
    prev: u32,
    next: u32,
}

/// The first and last entry of one millisecond's slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    head: u32,
    tail: u32,
}

/// The timer wheel. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Wheel<T> {
    /// Everything up to and including this time has been processed.
    elapsed: u64,
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    slots: BTreeMap<u64, Slot>,
    len: usize,
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Wheel<T> {
    /// An empty wheel whose current time is 0.
    pub(crate) fn new() -> Self {
        Wheel {
            elapsed: 0,
            entries: Vec::new(),
            free: Vec::new(),
            slots: BTreeMap::new(),
            len: 0,
        }
    }

    /// How many entries are waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Schedules `item` to fire at `when`. Entries of one millisecond fire
    /// in the order they were inserted.
    ///
    /// # Errors
    ///
    /// Returns the item back in [`Elapsed`] when `when` is not after the
    /// wheel's current time.
    pub(crate) fn insert(&mut self, when: u64, item: T) -> Result<TimerKey, Elapsed<T>> {
        if when <= self.elapsed {
            return Err(Elapsed(item));
        }
        let index = match self.free.pop() {
            Some(index) => {
                let entry = &mut self.entries[index as usize];
                debug_assert!(entry.item.is_none());
                entry.when = split(when);
                entry.item = Some(item);
                entry.prev = NIL;
                entry.next = NIL;
                index
            }
            None => {
                let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 timers");
                self.entries.push(Entry {
                    when: split(when),
                    item: Some(item),
                    generation: 1,
                    prev: NIL,
                    next: NIL,
                });
                index
            }
        };
        match self.slots.entry(when) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Slot {
                    head: index,
                    tail: index,
                });
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let slot = o.get_mut();
                self.entries[slot.tail as usize].next = index;
                self.entries[index as usize].prev = slot.tail;
                slot.tail = index;
            }
        }
        self.len += 1;
        Ok(TimerKey {
            index,
            generation: std::num::NonZeroU32::new(self.entries[index as usize].generation)
                .expect("generations skip zero"),
        })
    }

    /// Removes the entry `key` names, returning its item; `None` when the
    /// entry already fired or was cancelled.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let entry = self.entries.get(key.index as usize)?;
        if entry.generation != key.generation.get() || entry.item.is_none() {
            return None;
        }
        let (when, prev, next) = (join(entry.when), entry.prev, entry.next);
        if prev != NIL {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if prev == NIL && next == NIL {
            self.slots.remove(&when);
        } else if let Some(slot) = self.slots.get_mut(&when) {
            if prev == NIL {
                slot.head = next;
            }
            if next == NIL {
                slot.tail = prev;
            }
        }
        self.release(key.index)
    }

    /// The earliest deadline waiting, if any.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        self.slots.first_key_value().map(|(when, _)| *when)
    }

    /// Fires every entry whose deadline is at or before `now`, pushing the
    /// items into `fired` in deadline order (entries sharing a millisecond
    /// in insertion order), and advances the wheel to `now`.
    #[cfg(test)]
    pub(crate) fn poll(&mut self, now: u64, fired: &mut Vec<T>) {
        self.poll_with(now, |_, item| fired.push(item));
    }

    /// [`Wheel::poll`], with each item the key it was inserted under: the
    /// caller can tell a timer it still expects from one it replaced.
    pub(crate) fn poll_keyed(&mut self, now: u64, fired: &mut Vec<(TimerKey, T)>) {
        self.poll_with(now, |key, item| fired.push((key, item)));
    }

    fn poll_with(&mut self, now: u64, mut fire: impl FnMut(TimerKey, T)) {
        while let Some(first) = self.slots.first_entry() {
            if *first.key() > now {
                break;
            }
            let slot = first.remove();
            let mut index = slot.head;
            while index != NIL {
                let entry = &self.entries[index as usize];
                let next = entry.next;
                let key = TimerKey {
                    index,
                    generation: std::num::NonZeroU32::new(entry.generation)
                        .expect("generations skip zero"),
                };
                if let Some(item) = self.release(index) {
                    fire(key, item);
                }
                index = next;
            }
        }
        if now > self.elapsed {
            self.elapsed = now;
        }
    }

    fn release(&mut self, index: u32) -> Option<T> {
        let entry = &mut self.entries[index as usize];
        let item = entry.item.take()?;
        entry.generation = entry.generation.wrapping_add(1).max(1);
        entry.prev = NIL;
        entry.next = NIL;
        self.free.push(index);
        self.len -= 1;
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fired_items_come_with_the_keys_they_were_inserted_under() {
        let mut wheel = Wheel::new();
        let a = wheel.insert(5, "a").unwrap();
        let b = wheel.insert(5, "b").unwrap();
        let mut fired = Vec::new();
        wheel.poll_keyed(5, &mut fired);
        assert_eq!(fired, vec![(a, "a"), (b, "b")]);
        let again = wheel.insert(9, "again").unwrap();
        assert_ne!(again, a, "a reused slot gets a new key");
    }

    #[test]
    fn ticks_split_and_join_back() {
        for tick in [0, 1, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX] {
            assert_eq!(join(split(tick)), tick);
        }
    }

    #[test]
    fn entry_fires_at_its_deadline_not_before() {
        let mut wheel = Wheel::new();
        wheel.insert(100, "a").unwrap();
        let mut fired = Vec::new();
        wheel.poll(99, &mut fired);
        assert!(fired.is_empty());
        wheel.poll(100, &mut fired);
        assert_eq!(fired, vec!["a"]);
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn insert_at_or_before_now_hands_the_item_back() {
        let mut wheel = Wheel::new();
        let mut fired = Vec::new();
        wheel.poll(50, &mut fired);
        assert_eq!(wheel.insert(50, 1), Err(Elapsed(1)));
        assert_eq!(wheel.insert(10, 2), Err(Elapsed(2)));
        assert!(wheel.insert(51, 3).is_ok());
    }

    #[test]
    fn stale_key_cancels_nothing() {
        let mut wheel = Wheel::new();
        let key = wheel.insert(10, "first").unwrap();
        assert_eq!(wheel.cancel(key), Some("first"));
        let reused = wheel.insert(20, "second").unwrap();
        assert_eq!(reused.index, key.index, "the slab slot is reused");
        assert_eq!(wheel.cancel(key), None);
        assert_eq!(wheel.cancel(reused), Some("second"));
    }

    #[test]
    fn far_deadlines_fire_on_time() {
        let mut wheel = Wheel::new();
        let far = (1u64 << 40) + 12_345;
        wheel.insert(far, "far").unwrap();
        let mut fired = Vec::new();
        let mut now = 0;
        while fired.is_empty() {
            let next = wheel.next_expiration().expect("entry is still waiting");
            assert!(next <= far, "never wakes past the deadline");
            now = next;
            wheel.poll(now, &mut fired);
        }
        assert_eq!(now, far);
    }

    #[test]
    fn next_expiration_names_the_earliest_deadline() {
        let mut wheel = Wheel::new();
        wheel.insert(9_000, ()).unwrap();
        wheel.insert(5, ()).unwrap();
        assert_eq!(wheel.next_expiration(), Some(5));
    }

    #[test]
    fn one_milliseconds_entries_fire_in_insertion_order_after_cancels() {
        let mut wheel = Wheel::new();
        let keys: Vec<TimerKey> = (0..5).map(|i| wheel.insert(7, i).unwrap()).collect();
        assert_eq!(wheel.cancel(keys[0]), Some(0));
        assert_eq!(wheel.cancel(keys[2]), Some(2));
        assert_eq!(wheel.cancel(keys[4]), Some(4));
        let mut fired = Vec::new();
        wheel.poll(7, &mut fired);
        assert_eq!(fired, vec![1, 3]);
        assert_eq!(wheel.next_expiration(), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Cancel(usize),
        Advance(u64),
        Jump,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u64..5_000).prop_map(Op::Insert),
            1 => (1u64..5_000_000).prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Cancel),
            3 => (0u64..3_000).prop_map(Op::Advance),
            1 => Just(Op::Jump),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random inserts, cancels and clock advances fire exactly what a
        /// BTreeMap model fires: none early, none lost, none twice.
        #[test]
        fn wheel_matches_a_btreemap_model(ops in proptest::collection::vec(op(), 1..300)) {
            let mut wheel = Wheel::new();
            let mut model: BTreeMap<(u64, u32), u32> = BTreeMap::new();
            let mut keys: Vec<(TimerKey, u64, u32)> = Vec::new();
            let mut next_id = 0u32;
            let mut now = 0u64;
            let mut fired = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(offset) => {
                        let id = next_id;
                        next_id += 1;
                        let when = now + offset;
                        let key = wheel.insert(when, id).unwrap();
                        model.insert((when, id), id);
                        keys.push((key, when, id));
                    }
                    Op::Cancel(pick) => {
                        if keys.is_empty() { continue; }
                        let (key, when, id) = keys[pick % keys.len()];
                        let expected = model.remove(&(when, id));
                        prop_assert_eq!(wheel.cancel(key), expected);
                    }
                    Op::Advance(by) => {
                        now += by;
                        fired.clear();
                        wheel.poll(now, &mut fired);
                        let mut expected: Vec<u32> = Vec::new();
                        let due: Vec<(u64, u32)> = model.range(..=(now, u32::MAX)).map(|(k, _)| *k).collect();
                        for k in due { expected.push(model.remove(&k).unwrap()); }
                        fired.sort_unstable();
                        expected.sort_unstable();
                        prop_assert_eq!(&fired, &expected);
                    }
                    Op::Jump => {
                        // Jump straight to the next expiration, as the scheduler does.
                        if let Some(next) = wheel.next_expiration() {
                            let earliest = model.keys().next().map(|k| k.0);
                            prop_assert!(earliest.is_some());
                            prop_assert!(next <= earliest.unwrap(), "wakes no later than the earliest deadline");
                            now = now.max(next);
                            fired.clear();
                            wheel.poll(now, &mut fired);
                            let due: Vec<(u64, u32)> = model.range(..=(now, u32::MAX)).map(|(k, _)| *k).collect();
                            let mut expected: Vec<u32> = due.iter().map(|k| model.remove(k).unwrap()).collect();
                            fired.sort_unstable();
                            expected.sort_unstable();
                            prop_assert_eq!(&fired, &expected);
                        } else {
                            prop_assert!(model.is_empty());
                        }
                    }
                }
                prop_assert_eq!(wheel.len(), model.len());
            }
            // Drain: everything left fires exactly at its time.
            while let Some(next) = wheel.next_expiration() {
                now = now.max(next);
                fired.clear();
                wheel.poll(now, &mut fired);
                for id in &fired {
                    let key = model.iter().find(|(_, v)| *v == id).map(|(k, _)| *k).unwrap();
                    prop_assert_eq!(key.0, now, "fires exactly at its deadline");
                    model.remove(&key);
                }
            }
            prop_assert!(model.is_empty(), "nothing lost");
        }
    }
}
