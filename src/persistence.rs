//! How a queue keeps its jobs: chosen once, from its store's
//! capabilities, when the queue is built.

use crate::store::Store;

/// How a queue keeps its jobs. The queue handle and the scheduler read
/// this one value; neither asks the store again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// A store that lives in this process only (the memory store): the
    /// scheduler holds the one copy of each pending job, and the store is
    /// given a job when it becomes final (or is kicked back to ready).
    /// Reads combine the two.
    InProcess,
    /// A durable store only this process uses (SQLite): every job is
    /// stored when created and every change recorded, in batches; the
    /// pending jobs are loaded when the queue starts.
    Local,
    /// A store shared by many processes (PostgreSQL): jobs are stored when
    /// created, claimed with a lease when due, and every change recorded
    /// at once.
    Shared,
}

impl Persistence {
    /// The mode `store` calls for.
    pub(crate) fn of(store: &dyn Store) -> Persistence {
        if store.shared().is_some() {
            Persistence::Shared
        } else if store.capabilities().outlives_process {
            Persistence::Local
        } else {
            Persistence::InProcess
        }
    }

    /// Whether the scheduler holds the only copy of a pending job.
    pub(crate) fn in_process(self) -> bool {
        self == Persistence::InProcess
    }

    /// Whether other processes share the store.
    pub(crate) fn shared(self) -> bool {
        self == Persistence::Shared
    }
}

#[cfg(test)]
mod tests {
    use super::Persistence;
    use crate::store::MemoryStore;

    #[test]
    fn the_memory_store_is_kept_in_process() {
        assert_eq!(Persistence::of(&MemoryStore::new()), Persistence::InProcess);
    }
}
