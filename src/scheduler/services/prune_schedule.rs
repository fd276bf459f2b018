//! When retention pruning runs: on the pruner's interval, early after
//! enough completions on a store only this process writes, one run at a
//! time, and again at once after a run cut short for its time.

use std::time::Duration;

use crate::config::{Carry, Removed, Retention};
use crate::job::JobStatus;

use super::Pruner;

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
    /// Where a run cut short was, for the next.
    carried: Carry,
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
            carried: Carry::default(),
        }
    }

    /// The retention the pruner applies.
    pub(crate) fn retention(&self) -> &Retention {
        self.pruner.retention()
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

    /// Begins a run: the pruner to run, with the headroom its first pass
    /// leaves below the count cap, or `None` while one is under way.
    pub(crate) fn begin(&mut self) -> Option<(Pruner, Carry)> {
        if self.under_way {
            return None;
        }
        self.under_way = true;
        self.completed_since = 0;
        Some((self.pruner.clone(), std::mem::take(&mut self.carried)))
    }

    /// The run under way ended, having `removed` what it says: whether
    /// the next should begin at once (it was cut short for its time).
    pub(crate) fn finished(&mut self, removed: Option<&Removed>) -> bool {
        self.under_way = false;
        match removed.and_then(|r| r.cut_short) {
            Some(carry) => {
                self.carried = carry;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryStore;

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
        assert!(
            !schedule.finished(None),
            "a run that failed is not cut short"
        );
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
}
