//! The journal: the state changes on their way to the store, with one
//! owner. It queues each job's latest state (an update still in the batch
//! is brought up to date in place, so a job that starts and finishes
//! between two flushes costs the store one update), the final records of
//! an in-process store, the new jobs changes made (dead letters, webhook
//! deliveries: stored in the same write as the change that made them, see
//! `Store::jobs_write`), and whoever waits for them to be stored; it hands
//! out one batch at a time and takes a failed one back in front, with a
//! growing wait before the retry. The scheduler does the store call.

use std::num::NonZeroU32;
use std::time::Duration;

use actix::SpawnHandle;
use tokio::sync::oneshot;

use super::counts::TaskCounts;
use super::held::HeldJob;
use crate::job::{Job, JobResult, LogLine};
use crate::store::{JobUpdate, StoreError};

/// The first wait before a failed batch is tried again; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);

/// The longest wait before a failed batch is tried again.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Someone waiting for the store to catch up.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// The scheduler itself, needing every change made so far in the
    /// store: it waits through failed batches until one is stored.
    Barrier(oneshot::Sender<()>),
    /// A reader that needs every change made so far in the store. It is
    /// told the store's error as soon as a batch fails (or at once while
    /// the journal retries one) rather than waiting for the store to
    /// recover: a read answers from the store or fails promptly.
    Reader(oneshot::Sender<Result<(), StoreError>>),
    /// `result()` callers of a job that has become final.
    Result(Vec<oneshot::Sender<JobResult>>, JobResult),
}

impl Waiter {
    fn answer(self) {
        match self {
            Waiter::Barrier(tx) => {
                let _ = tx.send(());
            }
            Waiter::Reader(tx) => {
                let _ = tx.send(Ok(()));
            }
            Waiter::Result(waiters, result) => {
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        }
    }
}

/// Where a job's not yet flushed update sits in the batch: trusted only
/// while `epoch` is the journal's current one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteAt {
    epoch: u32,
    /// Its index plus one (so an absent one costs no room).
    index: NonZeroU32,
}

/// One batch on its way to the store.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) updates: Vec<JobUpdate>,
    pub(crate) final_records: Vec<Job>,
    /// New jobs the updates made, stored with them.
    pub(crate) inserts: Vec<Job>,
}

impl Batch {
    /// How many changes it carries.
    pub(crate) fn len(&self) -> usize {
        self.updates.len() + self.final_records.len() + self.inserts.len()
    }
}

/// The state changes not yet stored, and who waits for them.
#[derive(Debug)]
pub(crate) struct Journal {
    updates: Vec<JobUpdate>,
    /// New jobs made by the changes queued (on a durable store), stored
    /// in the same write.
    inserts: Vec<Job>,
    /// On an in-process store: jobs that became final, to store whole.
    final_records: Vec<Job>,
    /// Counts of `final_records`, kept as they are queued (see
    /// `PendingCounts`).
    final_counts: TaskCounts,
    /// Counts of the final records in the batch under way.
    in_flight_counts: TaskCounts,
    /// Batches stored so far (see `StoredWrites`).
    stored: u64,
    /// Bumped whenever the updates are taken or reordered, so a job's
    /// remembered [`WriteAt`] is trusted only within one batch.
    epoch: u32,
    /// A batch is with the store, or waits to be tried again.
    busy: bool,
    /// The timer of a small batch waiting briefly for more (see
    /// `Scheduler::flush`).
    pub(crate) soon: Option<SpawnHandle>,
    retry_wait: Duration,
    /// Why the last batch failed, until one is stored: readers are told
    /// at once.
    failing: Option<StoreError>,
    /// Answered once what is queued now is stored.
    waiting_next: Vec<Waiter>,
    /// Answered once the batch under way is stored.
    waiting_in_flight: Vec<Waiter>,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            updates: Vec::new(),
            inserts: Vec::new(),
            final_records: Vec::new(),
            final_counts: TaskCounts::default(),
            in_flight_counts: TaskCounts::default(),
            stored: 0,
            epoch: 0,
            busy: false,
            soon: None,
            retry_wait: RETRY_FIRST,
            failing: None,
            waiting_next: Vec::new(),
            waiting_in_flight: Vec::new(),
        }
    }
}

impl Journal {
    /// Queues `job`'s current state, appending `logs` then `line`. When the
    /// job's previous update (`pending`) is still in this batch it is
    /// brought up to date in place instead. Returns where the update sits.
    pub(crate) fn write(
        &mut self,
        pending: Option<WriteAt>,
        job: &HeldJob,
        mut logs: Vec<LogLine>,
        line: Option<LogLine>,
    ) -> Option<WriteAt> {
        if let Some(at) = pending {
            if at.epoch == self.epoch {
                if let Some(update) = self.updates.get_mut(at.index.get() as usize - 1) {
                    if update.id == job.id {
                        let mut merged = std::mem::take(&mut update.logs);
                        merged.append(&mut logs);
                        merged.extend(line);
                        *update = job.update(merged);
                        return pending;
                    }
                }
            }
        }
        logs.extend(line);
        self.updates.push(job.update(logs));
        // Past 2^32 updates in one batch an update is no longer merged in
        // place: only a little more work for the store.
        let index = u32::try_from(self.updates.len())
            .ok()
            .and_then(NonZeroU32::new)?;
        Some(WriteAt {
            epoch: self.epoch,
            index,
        })
    }

    /// Queues an update as it is (never merged).
    pub(crate) fn push_update(&mut self, update: JobUpdate) {
        self.updates.push(update);
    }

    /// Queues a new job made by a change queued now (a dead letter), to be
    /// stored in the same write as that change.
    pub(crate) fn push_insert(&mut self, job: Job) {
        self.inserts.push(job);
    }

    /// Queues a final record of an in-process store.
    pub(crate) fn push_final(&mut self, job: Job) {
        self.final_counts.add(&job);
        self.final_records.push(job);
    }

    /// Queues final records of an in-process store.
    pub(crate) fn extend_final(&mut self, jobs: impl IntoIterator<Item = Job>) {
        for job in jobs {
            self.push_final(job);
        }
    }

    /// Answers `waiter` once what is queued now is stored; a
    /// [`Waiter::Reader`] is told the store's error at once while a failed
    /// batch waits to be tried again.
    pub(crate) fn wait(&mut self, waiter: Waiter) {
        match (waiter, &self.failing) {
            (Waiter::Reader(tx), Some(err)) => {
                let _ = tx.send(Err(err.clone()));
            }
            (waiter, _) => self.waiting_next.push(waiter),
        }
    }

    /// Whether anyone waits for the next batch.
    pub(crate) fn has_waiters(&self) -> bool {
        !self.waiting_next.is_empty()
    }

    /// How many changes are queued.
    pub(crate) fn len(&self) -> usize {
        self.updates.len() + self.final_records.len() + self.inserts.len()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.updates.is_empty() && self.final_records.is_empty() && self.inserts.is_empty()
    }

    /// Whether a batch is with the store or waits to be tried again.
    pub(crate) fn is_busy(&self) -> bool {
        self.busy
    }

    /// Whether everything is stored: nothing queued, no batch under way.
    pub(crate) fn is_settled(&self) -> bool {
        self.is_empty() && !self.busy
    }

    /// Batches stored so far.
    pub(crate) fn stored(&self) -> u64 {
        self.stored
    }

    /// Counts of the final records queued and of those in the batch under
    /// way.
    pub(super) fn final_counts(&self) -> [&TaskCounts; 2] {
        [&self.final_counts, &self.in_flight_counts]
    }

    /// Counts of the final records queued, counted one by one: what
    /// [`Journal::final_counts`]' first must equal (checked in tests and
    /// debug builds).
    #[cfg(any(test, debug_assertions))]
    pub(super) fn walk_final_counts(&self) -> TaskCounts {
        TaskCounts::of(&self.final_records)
    }

    /// Answers the waiters at once when nothing is queued (nothing to
    /// store for them); returns whether it did.
    pub(crate) fn answer_if_empty(&mut self) -> bool {
        if !self.is_empty() {
            return false;
        }
        for w in self.waiting_next.drain(..) {
            w.answer();
        }
        true
    }

    /// Takes what is queued as the next batch: from now on its waiters
    /// wait for it, and jobs' remembered positions no longer count.
    pub(crate) fn take_batch(&mut self, keep_room: usize) -> Batch {
        self.busy = true;
        let updates = std::mem::take(&mut self.updates);
        let inserts = std::mem::take(&mut self.inserts);
        // The next batch is likely as large: keep its room ready.
        let room = self.final_records.len().min(keep_room);
        let final_records = std::mem::replace(&mut self.final_records, Vec::with_capacity(room));
        self.in_flight_counts = std::mem::take(&mut self.final_counts);
        self.epoch = self.epoch.wrapping_add(1);
        self.waiting_in_flight = std::mem::take(&mut self.waiting_next);
        Batch {
            updates,
            final_records,
            inserts,
        }
    }

    /// The batch under way is stored: its waiters are answered.
    pub(crate) fn batch_stored(&mut self) {
        self.busy = false;
        self.in_flight_counts = TaskCounts::default();
        self.stored += 1;
        self.retry_wait = RETRY_FIRST;
        self.failing = None;
        for w in self.waiting_in_flight.drain(..) {
            w.answer();
        }
    }

    /// The batch under way failed with `err`: it goes back in front of
    /// what was queued since, its waiters with it, except readers, who are
    /// told `err` (now and until a batch is stored). Returns how long to
    /// wait before trying again; the journal stays busy until
    /// [`Journal::retry_now`].
    pub(crate) fn batch_failed(&mut self, batch: Batch, err: &StoreError) -> Duration {
        let in_flight = std::mem::take(&mut self.in_flight_counts);
        self.final_counts.merge(in_flight);
        let mut updates = batch.updates;
        updates.append(&mut self.updates);
        self.updates = updates;
        let mut inserts = batch.inserts;
        inserts.append(&mut self.inserts);
        self.inserts = inserts;
        let mut finals = batch.final_records;
        finals.append(&mut self.final_records);
        self.final_records = finals;
        self.epoch = self.epoch.wrapping_add(1);
        let mut waiting = std::mem::take(&mut self.waiting_in_flight);
        waiting.append(&mut self.waiting_next);
        self.waiting_next = Vec::with_capacity(waiting.len());
        self.failing = Some(err.clone());
        for waiter in waiting {
            self.wait(waiter);
        }
        let wait = self.retry_wait;
        self.retry_wait = (self.retry_wait * 2).min(RETRY_MAX);
        wait
    }

    /// The wait after a failure is over: the next batch may go.
    pub(crate) fn retry_now(&mut self) {
        self.busy = false;
    }

    /// The batch under way ended without an answer (its task was dropped).
    pub(crate) fn batch_lost(&mut self) {
        self.busy = false;
        self.in_flight_counts = TaskCounts::default();
        self.failing = None;
    }

    /// The journal as a restarted scheduler takes it over: what is queued
    /// stays queued, in order. A batch that was with the store went with
    /// the stopped scheduler's tasks (stored or not, as the store got
    /// it); its waiters wait for the next batch instead. Remembered
    /// [`WriteAt`]s are void (the successor's jobs have none).
    pub(crate) fn for_successor(mut self) -> Journal {
        self.batch_lost();
        self.soon = None;
        self.retry_wait = RETRY_FIRST;
        self.epoch = self.epoch.wrapping_add(1);
        let mut waiting = std::mem::take(&mut self.waiting_in_flight);
        waiting.append(&mut self.waiting_next);
        self.waiting_next = waiting;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobStatus;

    fn held(status: JobStatus) -> HeldJob {
        let mut job = crate::new_job::NewJob::new("t", 1)
            .into_job(chrono::Utc::now(), &mut None, false)
            .expect("job");
        job.status = status;
        HeldJob::new(job)
    }

    #[test]
    fn an_update_still_in_the_batch_is_merged_in_place() {
        let mut journal = Journal::default();
        let mut job = held(JobStatus::Ready);
        let line = |m: &'static str| LogLine::new(chrono::Utc::now(), 1, m);
        let at = journal.write(None, &job, vec![line("started")], None);
        job.status = JobStatus::Completed;
        let again = journal.write(at, &job, Vec::new(), Some(line("completed")));
        assert_eq!(journal.len(), 1, "one update for the two changes");
        let batch = journal.take_batch(16);
        assert_eq!(batch.updates[0].status, JobStatus::Completed);
        let lines: Vec<&str> = batch.updates[0].logs.iter().map(|l| &*l.message).collect();
        assert_eq!(lines, ["started", "completed"]);
        // After the batch went, the remembered position is stale.
        journal.write(again, &job, Vec::new(), None);
        assert_eq!(journal.len(), 1);
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_with_its_waiters() {
        let mut journal = Journal::default();
        let first = held(JobStatus::Ready);
        let second = held(JobStatus::Ready);
        journal.write(None, &first, Vec::new(), None);
        let (tx, mut rx) = oneshot::channel();
        journal.wait(Waiter::Barrier(tx));
        let batch = journal.take_batch(16);
        assert!(journal.is_busy());
        journal.write(None, &second, Vec::new(), None);
        assert_eq!(journal.batch_failed(batch, &injected()), RETRY_FIRST);
        assert!(journal.is_busy(), "busy until the retry");
        journal.retry_now();
        let batch = journal.take_batch(16);
        let ids: Vec<_> = batch.updates.iter().map(|u| u.id).collect();
        assert_eq!(ids, [first.id, second.id], "the failed one first");
        assert!(rx.try_recv().is_err(), "not answered before it is stored");
        journal.batch_stored();
        assert!(rx.try_recv().is_ok());
        assert_eq!(journal.stored(), 1);
        assert!(journal.is_settled());
    }

    #[test]
    fn new_jobs_travel_in_the_batch_of_the_change_that_made_them_and_back_with_it() {
        let mut journal = Journal::default();
        let buried = held(JobStatus::Buried);
        let letter = held(JobStatus::Ready).to_job(&"letters".into());
        journal.write(None, &buried, Vec::new(), None);
        journal.push_insert(letter.clone());
        assert_eq!(journal.len(), 2);
        let batch = journal.take_batch(16);
        assert_eq!(batch.updates[0].id, buried.id);
        assert_eq!(
            batch.inserts[0].id, letter.id,
            "the letter goes with its bury"
        );
        assert!(journal.is_empty());
        journal.batch_failed(batch, &injected());
        journal.retry_now();
        let batch = journal.take_batch(16);
        assert_eq!(
            (batch.updates.len(), batch.inserts.len()),
            (1, 1),
            "both are tried again, together"
        );
    }

    fn injected() -> StoreError {
        StoreError::unavailable(std::io::Error::other("injected"))
    }

    #[test]
    fn readers_are_told_a_failed_batchs_error_until_one_is_stored() {
        let mut journal = Journal::default();
        let job = held(JobStatus::Ready);
        journal.write(None, &job, Vec::new(), None);
        let (tx, mut in_flight) = oneshot::channel();
        journal.wait(Waiter::Reader(tx));
        let (tx, mut scheduler) = oneshot::channel();
        journal.wait(Waiter::Barrier(tx));
        let batch = journal.take_batch(16);
        journal.batch_failed(batch, &injected());
        assert!(
            matches!(in_flight.try_recv(), Ok(Err(StoreError::Unavailable(_)))),
            "the reader of the failed batch is told at once"
        );
        assert!(
            scheduler.try_recv().is_err(),
            "the scheduler's own waits on"
        );
        let (tx, mut later) = oneshot::channel();
        journal.wait(Waiter::Reader(tx));
        assert!(
            matches!(later.try_recv(), Ok(Err(_))),
            "a reader during the retry wait is told at once"
        );
        journal.retry_now();
        let batch = journal.take_batch(16);
        assert_eq!(batch.updates.len(), 1, "the failed change is kept");
        journal.batch_stored();
        assert!(scheduler.try_recv().is_ok());
        let (tx, mut after) = oneshot::channel();
        journal.wait(Waiter::Reader(tx));
        assert!(journal.answer_if_empty());
        assert!(
            matches!(after.try_recv(), Ok(Ok(()))),
            "once stored, readers wait for the store again"
        );
    }

    #[test]
    fn retries_wait_longer_each_time_up_to_a_cap() {
        let mut journal = Journal::default();
        let mut waits = Vec::new();
        for _ in 0..10 {
            let batch = journal.take_batch(0);
            waits.push(journal.batch_failed(batch, &injected()));
            journal.retry_now();
        }
        assert_eq!(waits[0], RETRY_FIRST);
        assert_eq!(waits[1], RETRY_FIRST * 2);
        assert_eq!(*waits.last().unwrap(), RETRY_MAX);
    }
}
