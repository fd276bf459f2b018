//! The held jobs' slots by id.

use crate::id_ordered_map::IdOrderedMap;
use crate::job::JobId;

/// Held jobs' slab slots by job id, in id order. Jobs are mostly admitted
/// in id order and mostly finish in it, which a [`IdOrderedMap`] makes cheap.
#[derive(Debug, Default)]
pub(super) struct IdIndex(IdOrderedMap<u32>);

impl IdIndex {
    pub(super) fn get(&self, id: &JobId) -> Option<u32> {
        self.0.get(id.key()).copied()
    }

    pub(super) fn contains(&self, id: &JobId) -> bool {
        self.0.contains(id.key())
    }

    pub(super) fn insert(&mut self, id: JobId, slot: u32) {
        self.0.insert(id.key(), slot);
    }

    pub(super) fn remove(&mut self, id: &JobId) -> Option<u32> {
        self.0.remove(id.key())
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Every held job's slot, in id order.
    pub(super) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().map(|(_, &slot)| slot)
    }

    /// Every held job's id.
    pub(super) fn ids(&self) -> impl Iterator<Item = JobId> + '_ {
        self.0.iter().map(|(k, _)| JobId::from_key(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_holds_and_lists_ids_in_order() {
        let mut index = IdIndex::default();
        let ids: Vec<JobId> = (0..5).map(|_| JobId::new()).collect();
        for (slot, id) in ids.iter().enumerate().rev() {
            index.insert(*id, slot as u32);
        }
        assert_eq!(index.get(&ids[3]), Some(3));
        assert!(index.contains(&ids[0]));
        assert_eq!(index.remove(&ids[0]), Some(0));
        assert!(!index.contains(&ids[0]));
        assert_eq!(index.ids().collect::<Vec<_>>(), ids[1..].to_vec());
        assert_eq!(index.slots().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(index.len(), 4);
    }
}
