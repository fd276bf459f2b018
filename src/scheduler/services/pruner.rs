//! Retention pruning as a service: removes completed jobs the queue's
//! [`Retention`] does not keep.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Carry, Removed, Retention, PRUNE_BATCH};
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
/// and at once when a process becomes the leader; each run goes on while
/// a pass removes a whole batch, or, pausing between passes, while jobs
/// complete faster than the interval keeps near the cap (a run that
/// does not know how fast yet makes a second pass to measure it).
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

    /// The retention it applies.
    pub(super) fn retention(&self) -> &Retention {
        &self.retention
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
    pub(super) fn early(&self) -> bool {
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
    /// On a shared store, once the rate is known, each pass leaves room
    /// below the count cap for twice what will complete until the next
    /// pass counts (at the rate the count grew by since the run's first
    /// pass, the removed jobs aside; over the pass and the pause after it),
    /// at most the cap: jobs complete while a pass
    /// counts and deletes, so a pruner that only came down to the cap
    /// would leave the table over it by a pass's completions at any
    /// moment of a run at full speed. With room for one pass's completions
    /// the table would reach the cap as the next pass counts, and pass it
    /// while that pass deletes; with room for two it stays below the cap
    /// while completions keep their pace.
    ///
    /// A run on a shared store lasts at most about its interval: one that
    /// would go on longer ends with `Removed::cut_short`, the headroom it
    /// had reached, and the scheduler begins the next at once if it still
    /// leads; a run also ends at its next pass once another process leads.
    #[cfg(test)]
    pub(crate) async fn run_once(&self, now: DateTime<Utc>) -> Result<Removed, StoreError> {
        self.run_from(now, Carry::default(), || true).await
    }

    /// [`Pruner::run_once`], going on from where a run cut short was
    /// (its headroom below the count cap, and how fast jobs completed),
    /// for as long as `still_leads` says this process leads: a run that
    /// went on after another process took over would prune beside that
    /// one's runs, and each would misread the other's deletes as jobs
    /// that stopped completing.
    pub(crate) async fn run_from(
        &self,
        now: DateTime<Utc>,
        from: Carry,
        still_leads: impl Fn() -> bool,
    ) -> Result<Removed, StoreError> {
        let (store, retention) = (&self.store, &self.retention);
        self.passes(from, still_leads, |headroom| {
            retention.apply(&**store, now, headroom)
        })
        .await
    }

    /// The passes of one run, each made by `pass` with the headroom it
    /// leaves below the count cap (see [`Pruner::run_once`]), going on
    /// `from` where a run cut short was, while `still_leads`.
    async fn passes<F, Fut>(
        &self,
        from: Carry,
        still_leads: impl Fn() -> bool,
        mut pass: F,
    ) -> Result<Removed, StoreError>
    where
        F: FnMut(u64) -> Fut,
        Fut: std::future::Future<Output = Result<Removed, StoreError>>,
    {
        let started = tokio::time::Instant::now();
        let mut removed = Removed::default();
        let mut headroom = from.headroom;
        // How fast jobs complete, a second, as last measured.
        let mut known_rate = (from.rate > 0).then_some(from.rate as f64);
        // The count the last pass saw, and what it removed.
        let mut last: Option<(u64, u64)> = None;
        // When this run first counted, and how many jobs completed since.
        // The rate is measured over the whole run so far, not between the
        // last two passes: two passes a few milliseconds apart may see no
        // completion land between them (they are stored in batches), and
        // that read as jobs no longer completing ended a run at full
        // speed, leaving an interval of them past the cap.
        let mut counting: Option<(tokio::time::Instant, u64)> = None;
        // A pass was made only to learn the rate (see `Pruner::probe`).
        let mut probed = false;
        let mut first = true;
        loop {
            if !first && !still_leads() {
                tracing::debug!("another process leads now: the pruning run ends");
                return Ok(removed);
            }
            first = false;
            let began = tokio::time::Instant::now();
            let pass = pass(headroom).await?;
            removed.completed += pass.completed;
            removed.buried += pass.buried;
            // How fast jobs complete, in jobs a second, from the growth
            // of the count since the run's first pass.
            let mut rate = None;
            if self.shared {
                if let (Some(seen), Some((before, gone)), Some((since, grown))) =
                    (pass.completed_seen, last, counting.as_mut())
                {
                    *grown += Self::growth(before, gone, seen);
                    let span = began.duration_since(*since);
                    rate = (span >= self.rate_span() && !span.is_zero())
                        .then(|| *grown as f64 / span.as_secs_f64());
                }
                if counting.is_none() && pass.completed_seen.is_some() {
                    counting = Some((began, 0));
                }
                // The first pass of a run that goes on from another's
                // knows the rate that one measured.
                rate = rate.or(known_rate);
                known_rate = rate;
                last = pass.completed_seen.map(|seen| (seen, pass.completed));
            }
            let n = pass.completed;
            if self.durable_own && self.due_after().is_some_and(|d| n >= d as u64) {
                continue;
            }
            if !self.shared {
                return Ok(removed);
            }
            // On a shared store the leader prunes on its interval only, so
            // a pass that removed a whole batch or more says completions
            // outpace it: it goes on at once (a run of 15k jobs/s left a
            // minute's worth, 900k, past the cap otherwise). A shorter
            // pass while jobs still complete faster than the interval
            // keeps up with goes on after a pause (see `Pruner::pause`).
            let wait = if n >= PRUNE_BATCH as u64 {
                Duration::ZERO
            } else {
                match (self.pause(rate), self.probe()) {
                    (Some(wait), _) => wait,
                    // Not measured yet: one more pass tells.
                    (None, Some(probe)) if rate.is_none() && !probed => {
                        probed = true;
                        probe
                    }
                    _ => return Ok(removed),
                }
            };
            // Room for twice what completes until the next pass counts:
            // a pass as long as this one, and the pause after it should
            // it remove less than a batch (as the pass after one that
            // caught up does; room for no pause let the table pass the
            // cap during it).
            let pause = self.pause(rate).unwrap_or(Duration::ZERO).max(wait);
            let until_next = began.elapsed().saturating_add(pause).as_secs_f64();
            if let Some(rate) = rate {
                headroom = ((2.0 * rate * until_next) as u64)
                    .min(self.retention.completed_max_count.unwrap_or(0) as u64);
            }
            if started.elapsed().saturating_add(wait) >= self.interval() {
                removed.cut_short = Some(Carry {
                    headroom,
                    rate: rate.map_or(0, |r| r as u64),
                });
                return Ok(removed);
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// How long a run on a shared store whose first pass removed less
    /// than a batch, and which knows no rate yet (the first run of a
    /// leader, or one after a run that ended), waits for a second pass
    /// that measures how fast jobs complete: a sixty-fourth of the
    /// interval (0.94 s by default: at 21k jobs/s, 20k completions go
    /// unpruned meanwhile). Without it such a run would end at once, and
    /// jobs completing at full speed from a nearly empty table would pile
    /// up past the cap for a whole interval (1.4M at 23k jobs/s, for a
    /// cap of 100k). `None` without a count cap.
    fn probe(&self) -> Option<Duration> {
        self.retention.completed_max_count?;
        Some(self.rate_span())
    }

    /// The least time over which a run measures how fast jobs complete:
    /// a sixty-fourth of the interval. Completions are stored in batches,
    /// so a shorter span may see none land and read a rate of zero.
    fn rate_span(&self) -> Duration {
        self.interval() / 64
    }

    /// How long a run on a shared store pauses before its next pass, with
    /// jobs completing at `rate` a second: about the time a sixteenth of
    /// the count cap (at least a delete batch) takes to complete. `None`
    /// ends the run: completions are slow enough for the interval to keep
    /// the table near the cap.
    fn pause(&self, rate: Option<f64>) -> Option<Duration> {
        let cap = self.retention.completed_max_count? as f64;
        let rate = rate.filter(|r| *r > 0.0)?;
        let wait = Duration::try_from_secs_f64((cap / 16.0).max(PRUNE_BATCH as f64) / rate).ok()?;
        (wait < self.interval()).then_some(wait)
    }
}

impl Pruner {
    /// How many jobs completed between two passes: the count the second
    /// saw, less what the first saw and did not remove.
    fn growth(before: u64, removed: u64, seen: u64) -> u64 {
        seen.saturating_sub(before.saturating_sub(removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::job::{Job, JobStatus};
    use crate::scheduler::services::PruneSchedule;
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

    /// What a model of a shared store's table shows while its leader
    /// prunes it: jobs complete at `rate` a second, and each pass takes
    /// `pass_ms` (its deletes half-way through). The run begins with a
    /// minute's backlog and is cut after `passes` passes.
    #[derive(Debug)]
    struct Seen {
        /// The most completed jobs held at any moment from the fifth
        /// pass on (the first three learn how fast jobs complete, over at
        /// least the run's rate span, 0.94 s; the fourth counted before it
        /// knew), and the fewest.
        most: u64,
        least: u64,
        /// How many passes the run made.
        passes: usize,
        /// The run ended for its time, with this headroom.
        cut_short: Option<Carry>,
        /// When the second pass began, from the run's start.
        second_pass_at: Option<Duration>,
    }

    async fn pruned_at(rate: u64, pass_ms: u64, passes: usize) -> Seen {
        pruned_from(rate, pass_ms, passes, 100_000 + rate * 60, Carry::default()).await
    }

    /// [`pruned_at`], the table holding `at_start` completed jobs (the
    /// cap is 100k), the run going on `from` where another was.
    async fn pruned_from(
        rate: u64,
        pass_ms: u64,
        passes: usize,
        at_start: u64,
        from: Carry,
    ) -> Seen {
        pruned_leading(rate, pass_ms, passes, at_start, from, usize::MAX, 0).await
    }

    /// [`pruned_from`], the process leading for `leads_for` passes, and
    /// the completed jobs landing every `flush_ms` (at once when 0).
    async fn pruned_leading(
        rate: u64,
        pass_ms: u64,
        passes: usize,
        at_start: u64,
        from: Carry,
        leads_for: usize,
        flush_ms: u64,
    ) -> Seen {
        use std::cell::Cell;
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
        let table = Cell::new(at_start);
        let start = tokio::time::Instant::now();
        let second_pass_at = Cell::new(None);
        let since = Cell::new(start);
        // Adds the jobs completed since the last look.
        let accrue = || {
            let now = tokio::time::Instant::now();
            let landed = if flush_ms == 0 {
                let secs = now.duration_since(since.get()).as_secs_f64();
                (rate as f64 * secs) as u64
            } else {
                let flushes =
                    |t: tokio::time::Instant| t.duration_since(start).as_millis() as u64 / flush_ms;
                (flushes(now) - flushes(since.get())) * rate * flush_ms / 1000
            };
            table.set(table.get() + landed);
            since.set(now);
        };
        let (most, least, made) = (Cell::new(0u64), Cell::new(u64::MAX), Cell::new(0usize));
        let half = Duration::from_millis(pass_ms / 2);
        let still_leads = || made.get() < leads_for;
        let run = pruner
            .passes(from, still_leads, |headroom| {
                let (table, most, least, made, accrue) = (&table, &most, &least, &made, &accrue);
                let second_pass_at = &second_pass_at;
                async move {
                    made.set(made.get() + 1);
                    if made.get() == 2 {
                        second_pass_at.set(Some(start.elapsed()));
                    }
                    if made.get() > passes {
                        return Ok(Removed::default());
                    }
                    let counted = made.get() > 4;
                    accrue();
                    let seen = table.get();
                    tokio::time::sleep(half).await;
                    accrue();
                    if counted {
                        most.set(most.get().max(table.get()));
                    }
                    let gone = seen.saturating_sub(cap.saturating_sub(headroom));
                    table.set(table.get() - gone);
                    if counted {
                        least.set(least.get().min(table.get()));
                    }
                    tokio::time::sleep(half).await;
                    accrue();
                    if counted {
                        most.set(most.get().max(table.get()));
                    }
                    Ok(Removed {
                        completed: gone,
                        buried: 0,
                        completed_seen: Some(seen),
                        cut_short: None,
                    })
                }
            })
            .await;
        Seen {
            most: most.get(),
            least: least.get(),
            passes: made.get().min(passes),
            cut_short: run.ok().and_then(|r| r.cut_short),
            second_pass_at: second_pass_at.get(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_store_pruned_at_full_speed_stays_within_its_cap() {
        // 20k jobs/s and a pass of 0.7 s: every pass removes many batches.
        let seen = pruned_at(20_000, 700, 50).await;
        assert_eq!(seen.passes, 50, "the run goes on: {seen:?}");
        assert!(seen.most <= 100_000, "{seen:?}, the cap is 100k");
        assert!(
            seen.least >= 100_000 - 3 * 14_000,
            "not far below it: {seen:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_at_full_speed_ends_after_its_interval_for_the_next_to_begin() {
        // Passes of 0.7 s: the 86th ends past the minute.
        let seen = pruned_at(20_000, 700, 1_000).await;
        assert!((80..=90).contains(&seen.passes), "{seen:?}");
        let carry = seen.cut_short.expect("cut short, to begin again at once");
        assert!(
            (20_000..=41_000).contains(&carry.headroom),
            "twice a pass and its pause (0.7 + 0.31 s at 20k/s): {seen:?}"
        );
        assert!((19_000..=21_000).contains(&carry.rate), "{seen:?}");
        let mut schedule = PruneSchedule::new(
            Pruner::new(Arc::new(MemoryStore::new()), Retention::default()),
            false,
        );
        assert!(schedule.begin().is_some());
        let cut = Removed {
            cut_short: Some(carry),
            ..Removed::default()
        };
        assert!(schedule.finished(Some(&cut)), "the next begins at once");
        assert_eq!(
            schedule.begin().map(|(_, c)| c),
            Some(carry),
            "from where it was"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_goes_on_from_another_knows_the_rate_from_its_first_pass() {
        // Its first pass removes less than a batch, and it cannot measure
        // the rate yet: it goes on at the rate carried over, after the
        // pause that rate asks for (0.27 s: a sixteenth of the cap).
        let from = Carry {
            headroom: 14_000,
            rate: 23_000,
        };
        let seen = pruned_from(23_000, 30, 20, 100_000, from).await;
        assert_eq!(seen.passes, 20, "it went on: {seen:?}");
        assert!(
            seen.second_pass_at < Some(Duration::from_millis(400)),
            "{seen:?}"
        );
        // Without it, it waits for a second pass to measure the rate
        // (a sixty-fourth of the interval: 0.94 s), then goes on.
        let alone = pruned_from(23_000, 30, 20, 100_000, Carry::default()).await;
        assert_eq!(alone.passes, 20, "it went on: {alone:?}");
        assert!(
            alone.second_pass_at > Some(Duration::from_millis(937)),
            "{alone:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_run_on_an_empty_table_learns_the_rate_and_keeps_the_cap() {
        // The first run of a leader, jobs starting to complete at 23k/s:
        // its first pass finds nothing to remove and no rate to go by.
        let seen = pruned_from(23_000, 30, 150, 0, Carry::default()).await;
        assert_eq!(seen.passes, 150, "the run goes on: {seen:?}");
        assert!(seen.most <= 100_000, "{seen:?}, the cap is 100k");
        assert!(
            seen.most >= 80_000,
            "filled to near the cap, and held there: {seen:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn short_passes_while_jobs_complete_fast_pause_and_go_on() {
        // 23k jobs/s and passes of 30 ms: a pass removes less than a
        // batch, yet a minute's wait would leave 1.4M past the cap.
        let seen = pruned_at(23_000, 30, 150).await;
        assert_eq!(seen.passes, 150, "the run goes on: {seen:?}");
        assert!(seen.most <= 100_000, "{seen:?}, the cap is 100k");
        assert!(seen.least >= 50_000, "not far below it: {seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn completions_stored_in_batches_do_not_read_as_jobs_no_longer_completing() {
        // 22k jobs/s landing every 250 ms, passes of 10 ms: two passes in
        // a row often see none land between them. The run goes on.
        let backlog = 100_000 + 22_000 * 60;
        let seen = pruned_leading(
            22_000,
            10,
            1_000,
            backlog,
            Carry::default(),
            usize::MAX,
            250,
        )
        .await;
        assert!(
            seen.cut_short.is_some(),
            "the run went on for its interval, to begin again at once: {seen:?}"
        );
        assert!(seen.most <= 100_000 + 5_500, "{seen:?}, the cap is 100k");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_ends_when_another_process_leads() {
        // At full speed the run would go on for its interval; it stops
        // after the fifth pass, when this process no longer leads.
        let backlog = 100_000 + 20_000 * 60;
        let seen = pruned_leading(20_000, 700, 1_000, backlog, Carry::default(), 5, 0).await;
        assert_eq!(seen.passes, 5, "{seen:?}");
        assert_eq!(seen.cut_short, None, "not to begin again: {seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_ends_when_jobs_complete_slowly_enough_for_the_interval() {
        // 10 jobs/s: a sixteenth of the cap takes 10 minutes to complete.
        // The first pass knows no rate: a second, 0.94 s later, measures it.
        let seen = pruned_at(10, 30, 50).await;
        assert_eq!(
            seen.passes, 2,
            "a pass, and one to learn the rate: {seen:?}"
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
