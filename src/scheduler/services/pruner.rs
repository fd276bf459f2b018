//! Retention pruning as a service: removes completed jobs the queue's
//! [`Retention`] does not keep.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Removed, Retention, PRUNE_BATCH};
use crate::job::JobStatus;
use crate::store::{Store, StoreError};

/// Removes from a store the completed jobs a [`Retention`] does not keep.
///
/// The scheduler runs it every [`Retention::interval`], and also as soon as
/// [`Pruner::due_after`] jobs completed since it last ran on a store only
/// this process writes: kept in this process (there memory is what
/// completed jobs take), or a durable one of its own (SQLite: there disk
/// is, and a rare prune of a large excess stalled it). This process's
/// completions are then all the store's, so counting them says when the
/// cap is passed. A store shared between processes is pruned on the
/// interval only, by the leader only (see [`Elector`](super::Elector)),
/// and each run goes on while a pass removes a whole batch.
#[derive(Debug, Clone)]
pub(crate) struct Pruner {
    store: Arc<dyn Store>,
    retention: Retention,
    /// The store outlives the process and only this process writes it.
    durable_own: bool,
    /// The store is shared by many processes (pruned by the leader).
    shared: bool,
}

impl Pruner {
    pub(crate) fn new(store: Arc<dyn Store>, retention: Retention) -> Self {
        let shared = store.shared().is_some();
        let durable_own = store.capabilities().outlives_process && !shared;
        Pruner {
            store,
            retention,
            durable_own,
            shared,
        }
    }

    /// Whether it has anything to do: a retention that keeps every
    /// completed job needs no pruner.
    pub(crate) fn enabled(&self) -> bool {
        self.retention.completed_max_age.is_some()
            || self.retention.completed_max_count.is_some()
            || self.retention.buried_max_age.is_some()
            || self.retention.buried_max_count.is_some()
    }

    /// How often its loop runs.
    pub(crate) fn interval(&self) -> Duration {
        self.retention.interval.max(Duration::from_millis(1))
    }

    /// How many jobs may complete, on a store only this process writes,
    /// before it runs again ahead of its interval: a sixteenth of the count
    /// cap, so that one run never holds the store up for long. At most 64
    /// on a store kept in this process; on a durable one, where a run
    /// counts the completed jobs along an index (a cost that grows with
    /// the cap), at most 4 delete batches' worth. `None` without a count
    /// cap.
    pub(crate) fn due_after(&self) -> Option<usize> {
        let most = if self.durable_own {
            4 * PRUNE_BATCH
        } else {
            64
        };
        self.retention
            .completed_max_count
            .map(|cap| (cap / 16).clamp(1, most))
    }

    /// Whether it runs early on its own (a durable store only this process
    /// writes), whatever the scheduler says.
    fn early(&self) -> bool {
        self.durable_own
    }

    /// One run at `now`: removes what the retention does not keep; returns
    /// how many jobs it removed.
    ///
    /// On a durable store only this process writes, it goes on while a
    /// pass removed an early run's worth ([`Pruner::due_after`]): what
    /// completed during a large pass is removed by the next, not left past
    /// the cap until more jobs complete or the interval comes round.
    ///
    /// On a shared store, each pass after the first leaves room below the
    /// count cap for twice what completed during the pass before (what
    /// the count grew by, the removed jobs aside), at most the cap: jobs
    /// complete while a pass counts and deletes, so a pruner that only
    /// came down to the cap would leave the table over it by a pass's
    /// completions at any moment of a run at full speed. With room for
    /// one pass's completions the table would reach the cap as the next
    /// pass counts, and pass it while that pass deletes; with room for
    /// two it stays below the cap while completions keep their pace.
    pub(crate) async fn run_once(&self, now: DateTime<Utc>) -> Result<Removed, StoreError> {
        let (store, retention) = (&self.store, &self.retention);
        self.passes(|headroom| retention.apply(&**store, now, headroom))
            .await
    }

    /// The passes of one run, each made by `pass` with the headroom it
    /// leaves below the count cap (see [`Pruner::run_once`]).
    async fn passes<F, Fut>(&self, mut pass: F) -> Result<Removed, StoreError>
    where
        F: FnMut(u64) -> Fut,
        Fut: std::future::Future<Output = Result<Removed, StoreError>>,
    {
        let mut removed = Removed::default();
        let mut headroom = 0;
        // The count the last pass saw, and what it removed.
        let mut last: Option<(u64, u64)> = None;
        loop {
            let pass = pass(headroom).await?;
            removed.completed += pass.completed;
            removed.buried += pass.buried;
            if self.shared {
                if let (Some(seen), Some((before, gone))) = (pass.completed_seen, last) {
                    headroom = Self::growth(before, gone, seen)
                        .saturating_mul(2)
                        .min(self.retention.completed_max_count.unwrap_or(0) as u64);
                }
                last = pass.completed_seen.map(|seen| (seen, pass.completed));
            }
            let n = pass.completed;
            // On a shared store the leader prunes on its interval only, so
            // a pass that removed a whole batch or more says completions
            // outpace it: it goes on until a pass finds less (a run of 15k
            // jobs/s left a minute's worth, 900k, past the cap otherwise).
            let again = (self.durable_own && self.due_after().is_some_and(|d| n >= d as u64))
                || (self.shared && n >= PRUNE_BATCH as u64);
            if !again {
                return Ok(removed);
            }
        }
    }
}

impl Pruner {
    /// How many jobs completed between two passes: the count the second
    /// saw, less what the first saw and did not remove.
    fn growth(before: u64, removed: u64, seen: u64) -> u64 {
        seen.saturating_sub(before.saturating_sub(removed))
    }
}

/// When the pruner runs: on its loop's interval, and, on a store only this
/// process writes, early once [`Pruner::due_after`] jobs completed since
/// its last run. One run at a time.
#[derive(Debug)]
pub(crate) struct PruneSchedule {
    pruner: Pruner,
    /// Runs early after enough completions (a store only this process
    /// writes).
    early: bool,
    /// A run is under way.
    under_way: bool,
    /// Jobs completed since the last run began.
    completed_since: usize,
}

impl PruneSchedule {
    /// Runs of `pruner`; `early` on a store kept in this process, and on a
    /// durable store only this process writes whatever `early` says.
    pub(crate) fn new(pruner: Pruner, early: bool) -> Self {
        PruneSchedule {
            early: early || pruner.early(),
            pruner,
            under_way: false,
            completed_since: 0,
        }
    }

    /// The retention the pruner applies.
    pub(crate) fn retention(&self) -> &Retention {
        &self.pruner.retention
    }

    /// The pruner's loop interval, or `None` when it has nothing to do.
    pub(crate) fn interval(&self) -> Option<Duration> {
        self.pruner.enabled().then(|| self.pruner.interval())
    }

    /// A job completed (and is stored).
    pub(crate) fn completed(&mut self) {
        self.completed_since += 1;
    }

    /// A job became final in `status`: counted if it completed.
    pub(crate) fn ended(&mut self, status: JobStatus) {
        if status == JobStatus::Completed {
            self.completed();
        }
    }

    /// Whether enough jobs completed for an early run.
    pub(crate) fn due(&self) -> bool {
        self.early
            && !self.under_way
            && self
                .pruner
                .due_after()
                .is_some_and(|n| self.completed_since >= n)
    }

    /// Begins a run: the pruner to run, or `None` while one is under way.
    pub(crate) fn begin(&mut self) -> Option<Pruner> {
        if self.under_way {
            return None;
        }
        self.under_way = true;
        self.completed_since = 0;
        Some(self.pruner.clone())
    }

    /// The run under way ended.
    pub(crate) fn finished(&mut self) {
        self.under_way = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_run_is_due_after_a_sixteenth_of_the_cap_and_never_twice_at_once() {
        let retention = Retention {
            completed_max_count: Some(160),
            ..Retention::default()
        };
        let mut schedule =
            PruneSchedule::new(Pruner::new(Arc::new(MemoryStore::new()), retention), true);
        for _ in 0..9 {
            schedule.completed();
        }
        assert!(!schedule.due());
        schedule.completed();
        assert!(schedule.due());
        assert!(schedule.begin().is_some());
        assert!(schedule.begin().is_none(), "one run at a time");
        for _ in 0..10 {
            schedule.completed();
        }
        assert!(!schedule.due(), "not while a run is under way");
        schedule.finished();
        assert!(schedule.due());
    }

    #[test]
    fn without_early_runs_a_store_is_pruned_on_the_interval_only() {
        let retention = Retention {
            completed_max_count: Some(16),
            ..Retention::default()
        };
        let mut schedule =
            PruneSchedule::new(Pruner::new(Arc::new(MemoryStore::new()), retention), false);
        for _ in 0..100 {
            schedule.completed();
        }
        assert!(!schedule.due());
        assert!(schedule.interval().is_some());
    }
    use crate::job::Job;
    use crate::store::MemoryStore;

    fn completed(at: DateTime<Utc>) -> Job {
        let mut job = crate::new_job::NewJob::new("report", 1)
            .into_job(at, &mut None, true)
            .expect("a valid job");
        job.status = JobStatus::Completed;
        job.attempts = 1;
        job.finished_at = Some(at);
        job
    }

    #[tokio::test]
    async fn one_run_removes_what_the_retention_does_not_keep() {
        let store = Arc::new(MemoryStore::new());
        let now = Utc::now();
        let old = completed(now - chrono::Duration::hours(2));
        let new = completed(now);
        store
            .jobs_insert(&[old.clone(), new.clone()])
            .await
            .unwrap();
        let pruner = Pruner::new(
            store.clone(),
            Retention {
                completed_max_age: Some(Duration::from_secs(3600)),
                completed_max_count: None,
                interval: Duration::from_secs(60),
                ..Retention::default()
            },
        );
        assert_eq!(pruner.run_once(now).await.unwrap().completed, 1);
        assert!(store.job_get(old.id).await.unwrap().is_none());
        assert!(store.job_get(new.id).await.unwrap().is_some());
        assert_eq!(
            pruner.run_once(now).await.unwrap().completed,
            0,
            "nothing left to prune"
        );
    }

    /// A shared store's table while its leader prunes: `per_pass` jobs
    /// complete during each pass (half between its count and its
    /// deletes, half after them); `passes` passes at most. Returns the
    /// most completed jobs the table held at any moment from the fourth
    /// pass on (the first two learn how fast jobs complete, the third
    /// counted before it knew) and the fewest.
    async fn held_while_pruning(per_pass: u64, passes: usize) -> (u64, u64) {
        let cap = 100_000u64;
        let pruner = Pruner {
            store: Arc::new(MemoryStore::new()),
            retention: Retention {
                completed_max_count: Some(cap as usize),
                ..Retention::default()
            },
            durable_own: false,
            shared: true,
        };
        let table = std::cell::Cell::new(cap + 500_000);
        let (most, least) = (std::cell::Cell::new(0u64), std::cell::Cell::new(u64::MAX));
        let made = std::cell::Cell::new(0usize);
        let _ = pruner
            .passes(|headroom| {
                let (table, most, least, made) = (&table, &most, &least, &made);
                async move {
                    made.set(made.get() + 1);
                    let seen = table.get();
                    // Half the pass's completions come before it deletes.
                    table.set(table.get() + per_pass / 2);
                    if made.get() > 3 {
                        most.set(most.get().max(table.get()));
                    }
                    let keep = cap.saturating_sub(headroom);
                    let gone = seen.saturating_sub(keep);
                    table.set(table.get() - gone);
                    if made.get() > 3 {
                        least.set(least.get().min(table.get()));
                    }
                    table.set(table.get() + per_pass - per_pass / 2);
                    if made.get() > 3 {
                        most.set(most.get().max(table.get()));
                    }
                    // The run stops by itself only when completions slow.
                    let gone = if made.get() >= passes { 0 } else { gone };
                    Ok(Removed {
                        completed: gone,
                        buried: 0,
                        completed_seen: Some(seen),
                    })
                }
            })
            .await;
        (most.get(), least.get())
    }

    #[tokio::test]
    async fn a_shared_store_pruned_at_full_speed_stays_within_its_cap() {
        // 14k completions a pass: 20k jobs/s and a 0.7 s pass.
        let (most, least) = held_while_pruning(14_000, 50).await;
        assert!(
            most <= 100_000,
            "held {most} completed jobs, the cap is 100k"
        );
        assert!(
            least >= 100_000 - 3 * 14_000,
            "and not far below it: {least}"
        );
    }

    #[test]
    fn the_growth_between_passes_counts_what_the_first_did_not_remove() {
        assert_eq!(Pruner::growth(120_000, 20_000, 114_000), 14_000);
        assert_eq!(Pruner::growth(90_000, 0, 95_000), 5_000);
        assert_eq!(Pruner::growth(100_000, 10_000, 80_000), 0, "never below 0");
    }

    #[test]
    fn it_runs_early_after_a_sixteenth_of_its_cap_at_most_64() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let with_cap = |cap| {
            Pruner::new(
                store.clone(),
                Retention {
                    completed_max_count: cap,
                    ..Retention::default()
                },
            )
        };
        assert_eq!(with_cap(Some(160)).due_after(), Some(10));
        assert_eq!(with_cap(Some(100_000)).due_after(), Some(64));
        assert_eq!(with_cap(Some(0)).due_after(), Some(1));
        assert_eq!(with_cap(None).due_after(), None);
        assert!(!Pruner::new(store.clone(), Retention::keep_all()).enabled());
    }
}
