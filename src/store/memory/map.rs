//! The memory store's jobs in id order, cheap to append to and to take
//! from the front.
//!
//! Under a queue, jobs arrive here as they become final, which is nearly
//! always in id order (ids are time-ordered, and jobs mostly finish in the
//! order they were created), and pruning removes the ones that finished
//! first. An ordered tree pays a search from its root for each of these;
//! this map keeps such jobs in a sorted run, where adding one past the end
//! and dropping the first cost a comparison. A job that arrives out of
//! order (a retried or long job finishing late, a kicked job coming back)
//! goes to a tree beside the run; reading in order merges the two.

use std::collections::{BTreeMap, VecDeque};
use std::iter::Peekable;

use crate::job::{Job, JobId};

/// Jobs by id, iterated in id order.
#[derive(Debug, Default)]
pub(super) struct JobMap {
    /// Ascending ids; a removed job leaves `None` until the run's ends are
    /// trimmed or it is compacted.
    run: VecDeque<(u128, Option<Box<Job>>)>,
    /// How many entries of `run` hold a job.
    run_live: usize,
    /// Jobs that arrived out of order. Never holds an id `run` holds.
    tree: BTreeMap<u128, Box<Job>>,
}

fn key(id: &JobId) -> u128 {
    id.0.as_u128()
}

impl JobMap {
    /// The index in `run` of `key`'s entry (live or not).
    fn find(&self, key: u128) -> Option<usize> {
        let (first, last) = (self.run.front()?.0, self.run.back()?.0);
        if key < first || key > last {
            return None;
        }
        self.run.binary_search_by_key(&key, |e| e.0).ok()
    }

    pub(super) fn len(&self) -> usize {
        self.run_live + self.tree.len()
    }

    pub(super) fn get(&self, id: &JobId) -> Option<&Job> {
        let key = key(id);
        match self.find(key) {
            Some(i) => self.run[i].1.as_deref(),
            None => self.tree.get(&key).map(|j| &**j),
        }
    }

    /// Adds `job`, returning the job it replaces.
    pub(super) fn insert(&mut self, job: Box<Job>) -> Option<Box<Job>> {
        let key = key(&job.id);
        if let Some(i) = self.find(key) {
            let old = self.run[i].1.replace(job);
            if old.is_none() {
                self.run_live += 1;
            }
            return old;
        }
        if !self.tree.is_empty() {
            if let Some(slot) = self.tree.get_mut(&key) {
                return Some(std::mem::replace(slot, job));
            }
        }
        if self.run.back().is_none_or(|&(last, _)| key > last) {
            self.run.push_back((key, Some(job)));
            self.run_live += 1;
            return None;
        }
        self.tree.insert(key, job)
    }

    pub(super) fn remove(&mut self, id: &JobId) -> Option<Box<Job>> {
        let key = key(id);
        let Some(i) = self.find(key) else {
            return self.tree.remove(&key);
        };
        let old = self.run[i].1.take()?;
        self.run_live -= 1;
        while self.run.front().is_some_and(|e| e.1.is_none()) {
            self.run.pop_front();
        }
        while self.run.back().is_some_and(|e| e.1.is_none()) {
            self.run.pop_back();
        }
        if self.run.len() > 2 * self.run_live + 64 {
            // Removed in the middle more than kept: close the gaps.
            self.run.retain(|e| e.1.is_some());
        }
        Some(old)
    }

    /// Every job, in id order.
    pub(super) fn values(&self) -> Values<'_> {
        Values {
            run: self.run.iter().peekable(),
            tree: self.tree.iter().peekable(),
        }
    }
}

/// The jobs of a [`JobMap`] in id order: its run and its tree merged.
pub(super) struct Values<'a> {
    run: Peekable<std::collections::vec_deque::Iter<'a, (u128, Option<Box<Job>>)>>,
    tree: Peekable<std::collections::btree_map::Iter<'a, u128, Box<Job>>>,
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a Job;

    fn next(&mut self) -> Option<&'a Job> {
        loop {
            let from_run = match (self.run.peek(), self.tree.peek()) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(r), Some(t)) => r.0 < *t.0,
            };
            if !from_run {
                return self.tree.next().map(|(_, j)| &**j);
            }
            if let Some(job) = self.run.next().and_then(|(_, j)| j.as_deref()) {
                return Some(job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(n: u128) -> Box<Job> {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "id": JobId(uuid::Uuid::from_u128(n)), "reference": null, "task": "t",
            "payload": 1, "priority": 0, "status": "completed",
            "created_at": "2026-11-25T00:00:00Z", "run_at": "2026-11-25T00:00:00Z",
            "expires_at": null, "attempts": 1, "max_attempts": null, "last_error": null,
            "result": null, "progress": null, "finished_at": null, "logs": []
        }))
        .expect("a job");
        job.priority = n as u32;
        Box::new(job)
    }

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
        /// removes leaves the same jobs, in the same order, as an ordered
        /// tree would hold.
        #[test]
        fn holds_what_an_ordered_tree_holds(ops in proptest::collection::vec(op(), 0..400),
                                            ascending in any::<bool>()) {
            let mut map = JobMap::default();
            let mut model: BTreeMap<u128, u32> = BTreeMap::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(n) => {
                        // Mostly ascending ids when asked, as jobs finish.
                        let n = if ascending && i % 4 != 0 { i as u128 + 256 } else { n as u128 };
                        let mut j = job(n);
                        j.priority = i as u32;
                        let old = map.insert(j).map(|j| j.priority);
                        prop_assert_eq!(old, model.insert(n, i as u32));
                    }
                    Op::Remove(n) => {
                        let id = JobId(uuid::Uuid::from_u128(n as u128));
                        prop_assert_eq!(map.remove(&id).map(|j| j.priority), model.remove(&(n as u128)));
                    }
                }
                prop_assert_eq!(map.len(), model.len());
            }
            let listed: Vec<(u128, u32)> = map.values().map(|j| (j.id.0.as_u128(), j.priority)).collect();
            let expected: Vec<(u128, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(listed, expected);
            for (k, v) in &model {
                let id = JobId(uuid::Uuid::from_u128(*k));
                prop_assert_eq!(map.get(&id).map(|j| j.priority), Some(*v));
            }
        }
    }

    #[test]
    fn jobs_added_in_order_stay_out_of_the_tree() {
        let mut map = JobMap::default();
        for n in 1..=100 {
            map.insert(job(n));
        }
        for n in 1..=50 {
            map.remove(&JobId(uuid::Uuid::from_u128(n)));
        }
        assert!(map.tree.is_empty());
        assert_eq!((map.run.len(), map.run_live), (50, 50));
        map.insert(job(10));
        assert_eq!(map.tree.len(), 1, "an id before the run goes to the tree");
        assert_eq!(map.values().next().map(|j| j.id.0.as_u128()), Some(10));
    }
}
