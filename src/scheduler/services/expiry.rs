//! The expiry watch as a service: on a shared store, a job created here
//! with an expiry is expired on time even when no process holds it.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::job::JobId;
use crate::store::{Store, StoreError};

/// Times the expiry of the jobs this process created in a shared store.
///
/// Whoever holds such a job when its expiry comes expires it; if nobody
/// does (no process serves its tag, or all are busy), the process that
/// created it expires it in the store, on time. The watch keeps the ids
/// by a small slot number, which the scheduler's timers carry (one wheel
/// for every timer of the scheduler); a fired slot's job goes to the
/// next [`ExpiryWatch::run_once`]. The rescuer's sweep
/// ([`Rescuer`](super::Rescuer)) expires the rest, should this process die
/// before their time.
#[derive(Debug)]
pub(crate) struct ExpiryWatch {
    store: Arc<dyn Store>,
    /// The watched jobs, by slot.
    watched: Vec<Option<JobId>>,
    /// Slots free for reuse.
    free: Vec<u32>,
    /// Jobs whose expiry came, for the next run.
    due: Vec<JobId>,
}

impl ExpiryWatch {
    /// A watch over jobs in `store`, or `None` when the store is not shared
    /// (elsewhere the scheduler holds every pending job and times it).
    pub(crate) fn new(store: Arc<dyn Store>) -> Option<Self> {
        store.shared()?;
        Some(ExpiryWatch {
            store,
            watched: Vec::new(),
            free: Vec::new(),
            due: Vec::new(),
        })
    }

    /// Watches `id`: returns the slot its timer carries.
    pub(crate) fn watch(&mut self, id: JobId) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.watched[slot as usize] = Some(id);
                slot
            }
            None => {
                self.watched.push(Some(id));
                (self.watched.len() - 1) as u32
            }
        }
    }

    /// The timer of `slot` fired: its job is due for expiry. A slot that
    /// fired already, or was never given, is ignored.
    pub(crate) fn fired(&mut self, slot: u32) {
        if let Some(id) = self.watched.get_mut(slot as usize).and_then(Option::take) {
            self.free.push(slot);
            self.due.push(id);
        }
    }

    /// `id` expires now, without a timer (its time has come already, or
    /// no timer could hold it).
    pub(crate) fn expire_now(&mut self, id: JobId) {
        self.due.push(id);
    }

    /// Forgets `slot` (its timer could not be set).
    pub(crate) fn unwatch(&mut self, slot: u32) {
        if let Some(id) = self.watched.get_mut(slot as usize).and_then(Option::take) {
            self.free.push(slot);
            self.due.push(id);
        }
    }

    /// Takes the jobs due for expiry, for [`ExpiryWatch::run_once`].
    pub(crate) fn take_due(&mut self) -> Vec<JobId> {
        std::mem::take(&mut self.due)
    }

    /// One run: expires in the store those of `ids` nobody holds, at
    /// `now`. Returns how many it expired (a job someone holds is theirs
    /// to expire; a final one stays as it is).
    pub(crate) fn run_once(
        &self,
        ids: Vec<JobId>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send + 'static {
        let store = self.store.clone();
        async move {
            if ids.is_empty() {
                return Ok(0);
            }
            match store.shared() {
                Some(shared) => shared.jobs_expire(now, &ids).await,
                None => Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_store_that_is_not_shared_needs_no_watch() {
        assert!(ExpiryWatch::new(Arc::new(MemoryStore::new())).is_none());
    }

    fn watch() -> ExpiryWatch {
        ExpiryWatch {
            store: Arc::new(MemoryStore::new()),
            watched: Vec::new(),
            free: Vec::new(),
            due: Vec::new(),
        }
    }

    #[test]
    fn a_fired_slot_makes_its_job_due_once() {
        let mut w = watch();
        let (a, b) = (JobId::new(), JobId::new());
        let sa = w.watch(a);
        let sb = w.watch(b);
        w.fired(sb);
        w.fired(sb);
        assert_eq!(w.take_due(), vec![b]);
        assert!(w.take_due().is_empty());
        w.fired(sa);
        assert_eq!(w.take_due(), vec![a]);
        assert_eq!(w.free, vec![sb, sa]);
    }

    #[test]
    fn a_freed_slot_is_reused_and_a_stale_fire_is_ignored() {
        let mut w = watch();
        let (a, b) = (JobId::new(), JobId::new());
        let slot = w.watch(a);
        w.fired(slot);
        assert_eq!(w.watch(b), slot);
        w.fired(99);
        assert_eq!(w.take_due(), vec![a]);
        w.unwatch(slot);
        assert_eq!(w.take_due(), vec![b]);
    }

    #[tokio::test]
    async fn a_run_with_nothing_due_asks_nothing_of_the_store() {
        assert_eq!(watch().run_once(Vec::new(), Utc::now()).await.unwrap(), 0);
    }
}
