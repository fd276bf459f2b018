//! The memory store's jobs by id, in id order.

use crate::id_ordered_map::IdOrderedMap;
use crate::job::{Job, JobId};

/// Jobs by id, iterated in id order. Under a queue, jobs arrive here as
/// they become final, nearly always in id order, and pruning takes the
/// ones that finished first: a [`IdOrderedMap`] appends the one and drops the
/// other at the cost of a comparison.
#[derive(Debug, Default)]
pub(super) struct JobMap(IdOrderedMap<Box<Job>>);

impl JobMap {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn get(&self, id: &JobId) -> Option<&Job> {
        self.0.get(id.key()).map(|j| &**j)
    }

    /// Adds `job`, returning the job it replaces.
    pub(super) fn insert(&mut self, job: Box<Job>) -> Option<Box<Job>> {
        self.0.insert(job.id.key(), job)
    }

    pub(super) fn remove(&mut self, id: &JobId) -> Option<Box<Job>> {
        self.0.remove(id.key())
    }

    /// Every job, in id order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Job> + '_ {
        self.0.iter().map(|(_, j)| &**j)
    }
}
