//! A hierarchical hashed timer wheel with 1 ms slots.
//!
//! The wheel times every delayed thing the supervisor owns: jobs waiting for
//! their `run_at`, retries waiting out their backoff, ready jobs waiting to
//! expire and running jobs waiting for their timeout. It is a plain data
//! structure with no clock of its own: callers pass the current time (in
//! milliseconds since an origin they choose) to [`Wheel::poll`], and ask
//! [`Wheel::next_expiration`] when they next need to wake up.
//!
//! # Levels
//!
//! The design follows Varghese & Lauck, "Hashed and Hierarchical Timing Wheels"
//! (SOSP 1987), in the shape tokio's timer driver uses. There are
//! [`NUM_LEVELS`] levels of 64 slots each. A slot on level 0 spans 1 ms, on
//! level 1 it spans 64 ms, on level `n` it spans `64^n` ms, so six levels
//! cover `64^6` ms (about 2.2 years). An entry is put on the lowest level whose
//! slot range still separates its deadline from the wheel's current time;
//! when a higher-level slot comes due its entries are cascaded down to a
//! lower level, until on level 0 they fire. Deadlines further out than the top
//! level can hold go to the top level and are re-inserted when their slot
//! comes round, so nothing ever fires early.
//!
//! Insert and cancel are O(1): every slot is an intrusive doubly linked list
//! threaded through a slab, and each level keeps a 64-bit occupancy mask so
//! finding the next occupied slot is a rotate and a trailing-zero count.
//!
//! # Keys
//!
//! [`Wheel::insert`] returns a [`TimerKey`] carrying the slab index and a
//! generation. Cancelling with a key whose entry has already fired or been
//! cancelled returns `None` instead of touching whatever entry reuses the
//! slab slot.

const LEVEL_BITS: u32 = 6;
const SLOTS: usize = 1 << LEVEL_BITS;
/// How many levels the wheel has.
pub(crate) const NUM_LEVELS: usize = 6;
/// The first deadline (relative to the current time) that no longer fits the
/// wheel's levels exactly; such entries are parked on the top level.
const MAX_SPAN: u64 = 1 << (LEVEL_BITS as u64 * NUM_LEVELS as u64);
const NIL: u32 = u32::MAX;

/// A handle to an entry in the [`Wheel`], used to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TimerKey {
    index: u32,
    generation: u32,
}

/// Returned by [`Wheel::insert`] when the deadline is not after the wheel's
/// current time: the item is handed back so the caller can act on it now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Elapsed<T>(pub(crate) T);

#[derive(Debug)]
struct Entry<T> {
    when: u64,
    item: Option<T>,
    generation: u32,
    prev: u32,
    next: u32,
    /// `level * SLOTS + slot`, or `NIL` while not linked into a slot.
    home: u32,
}

#[derive(Debug, Clone, Copy)]
struct Expiration {
    level: usize,
    slot: usize,
    deadline: u64,
}

/// The timer wheel. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Wheel<T> {
    /// Everything up to and including this time has been processed.
    elapsed: u64,
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    heads: Vec<u32>,
    occupied: [u64; NUM_LEVELS],
    len: usize,
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

fn level_for(elapsed: u64, when: u64) -> usize {
    const SLOT_MASK: u64 = (1 << LEVEL_BITS) - 1;
    let mut masked = (elapsed ^ when) | SLOT_MASK;
    if masked >= MAX_SPAN {
        masked = MAX_SPAN - 1;
    }
    let significant = 63 - masked.leading_zeros() as usize;
    significant / LEVEL_BITS as usize
}

fn slot_range(level: usize) -> u64 {
    1u64 << (LEVEL_BITS as usize * level)
}

fn level_range(level: usize) -> u64 {
    slot_range(level + 1)
}

fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (LEVEL_BITS as usize * level)) as usize) & (SLOTS - 1)
}

impl<T> Wheel<T> {
    /// An empty wheel whose current time is 0.
    pub(crate) fn new() -> Self {
        Wheel {
            elapsed: 0,
            entries: Vec::new(),
            free: Vec::new(),
            heads: vec![NIL; SLOTS * NUM_LEVELS],
            occupied: [0; NUM_LEVELS],
            len: 0,
        }
    }

    /// How many entries are waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Schedules `item` to fire at `when`.
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
                entry.when = when;
                entry.item = Some(item);
                index
            }
            None => {
                let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 timers");
                self.entries.push(Entry {
                    when,
                    item: Some(item),
                    generation: 0,
                    prev: NIL,
                    next: NIL,
                    home: NIL,
                });
                index
            }
        };
        self.link(index);
        self.len += 1;
        Ok(TimerKey {
            index,
            generation: self.entries[index as usize].generation,
        })
    }

    /// Removes the entry `key` names, returning its item; `None` when the
    /// entry already fired or was cancelled.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let entry = self.entries.get(key.index as usize)?;
        if entry.generation != key.generation || entry.item.is_none() {
            return None;
        }
        self.unlink(key.index);
        self.release(key.index)
    }

    /// The time of the earliest slot that holds entries, if any. Entries in
    /// that slot fire no earlier than this; cascading may push them later,
    /// never earlier.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        self.next_slot().map(|e| e.deadline)
    }

    /// Fires every entry whose deadline is at or before `now`, pushing the
    /// items into `fired` in deadline order (entries sharing a millisecond
    /// come out in no particular order), and advances the wheel to `now`.
    pub(crate) fn poll(&mut self, now: u64, fired: &mut Vec<T>) {
        while let Some(exp) = self.next_slot() {
            if exp.deadline > now {
                break;
            }
            self.process(exp, fired);
            self.elapsed = exp.deadline;
        }
        if now > self.elapsed {
            self.elapsed = now;
        }
    }

    fn next_slot(&self) -> Option<Expiration> {
        (0..NUM_LEVELS).find_map(|level| self.level_next(level))
    }

    fn level_next(&self, level: usize) -> Option<Expiration> {
        let occupied = self.occupied[level];
        if occupied == 0 {
            return None;
        }
        let now = self.elapsed;
        let now_slot = slot_for(now, level);
        let rotated = occupied.rotate_right(now_slot as u32);
        let slot = (rotated.trailing_zeros() as usize + now_slot) % SLOTS;
        let range = level_range(level);
        let level_start = now & !(range - 1);
        let mut deadline = level_start + slot as u64 * slot_range(level);
        if deadline <= now && level > 0 {
            // The slot has wrapped: it belongs to the next turn of this level.
            deadline += range;
        }
        Some(Expiration {
            level,
            slot,
            deadline,
        })
    }

    fn process(&mut self, exp: Expiration, fired: &mut Vec<T>) {
        let head = exp.level * SLOTS + exp.slot;
        let mut index = std::mem::replace(&mut self.heads[head], NIL);
        self.occupied[exp.level] &= !(1u64 << exp.slot);
        while index != NIL {
            let next = self.entries[index as usize].next;
            let entry = &mut self.entries[index as usize];
            entry.prev = NIL;
            entry.next = NIL;
            entry.home = NIL;
            if entry.when <= exp.deadline {
                if let Some(item) = self.release(index) {
                    fired.push(item);
                }
            } else {
                // Cascade down relative to the slot's start time.
                let level = level_for(exp.deadline, self.entries[index as usize].when);
                debug_assert!(level < exp.level || exp.level == NUM_LEVELS - 1);
                self.link_at(index, level);
            }
            index = next;
        }
    }

    fn link(&mut self, index: u32) {
        let level = level_for(self.elapsed, self.entries[index as usize].when);
        self.link_at(index, level);
    }

    fn link_at(&mut self, index: u32, level: usize) {
        let slot = slot_for(self.entries[index as usize].when, level);
        let head = level * SLOTS + slot;
        let old = self.heads[head];
        {
            let entry = &mut self.entries[index as usize];
            entry.prev = NIL;
            entry.next = old;
            entry.home = head as u32;
        }
        if old != NIL {
            self.entries[old as usize].prev = index;
        }
        self.heads[head] = index;
        self.occupied[level] |= 1u64 << slot;
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next, home) = {
            let e = &self.entries[index as usize];
            (e.prev, e.next, e.home)
        };
        debug_assert!(home != NIL, "a live entry is always linked");
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[home as usize] = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if self.heads[home as usize] == NIL {
            let level = home as usize / SLOTS;
            let slot = home as usize % SLOTS;
            self.occupied[level] &= !(1u64 << slot);
        }
        let e = &mut self.entries[index as usize];
        e.prev = NIL;
        e.next = NIL;
        e.home = NIL;
    }

    fn release(&mut self, index: u32) -> Option<T> {
        let entry = &mut self.entries[index as usize];
        let item = entry.item.take();
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

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
    fn deadlines_beyond_the_top_level_fire_on_time() {
        let mut wheel = Wheel::new();
        let far = MAX_SPAN * 3 + 12_345;
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
    fn next_expiration_names_the_earliest_deadline_at_level_zero() {
        let mut wheel = Wheel::new();
        wheel.insert(5, ()).unwrap();
        assert_eq!(wheel.next_expiration(), Some(5));
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
                        // Jump straight to the next expiration, as the supervisor does.
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
