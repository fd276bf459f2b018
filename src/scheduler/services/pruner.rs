//! Retention pruning as a service: removes completed jobs the queue's
//! [`Retention`] does not keep.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Retention;
use crate::store::{Store, StoreError};

/// Removes from a store the completed jobs a [`Retention`] does not keep.
///
/// The scheduler runs it every [`Retention::interval`], and also as soon as
/// [`Pruner::due_after`] jobs completed since it last ran on a store kept
/// in this process (there memory is what completed jobs take, so it stays
/// near the cap).
#[derive(Debug, Clone)]
pub(crate) struct Pruner {
    store: Arc<dyn Store>,
    retention: Retention,
}

impl Pruner {
    pub(crate) fn new(store: Arc<dyn Store>, retention: Retention) -> Self {
        Pruner { store, retention }
    }

    /// Whether it has anything to do: a retention that keeps every
    /// completed job needs no pruner.
    pub(crate) fn enabled(&self) -> bool {
        self.retention.completed_max_age.is_some() || self.retention.completed_max_count.is_some()
    }

    /// How often its loop runs.
    pub(crate) fn interval(&self) -> Duration {
        self.retention.interval.max(Duration::from_millis(1))
    }

    /// How many jobs may complete, on a store kept in this process, before
    /// it runs again ahead of its interval: a sixteenth of the count cap,
    /// at most 64, so that one run never holds the store up for long.
    /// `None` without a count cap.
    pub(crate) fn due_after(&self) -> Option<usize> {
        self.retention
            .completed_max_count
            .map(|cap| (cap / 16).clamp(1, 64))
    }

    /// One run at `now`: removes what the retention does not keep; returns
    /// how many jobs it removed.
    pub(crate) async fn run_once(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.retention.apply(&*self.store, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Job, JobStatus};
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
            },
        );
        assert_eq!(pruner.run_once(now).await.unwrap(), 1);
        assert!(store.job_get(old.id).await.unwrap().is_none());
        assert!(store.job_get(new.id).await.unwrap().is_some());
        assert_eq!(
            pruner.run_once(now).await.unwrap(),
            0,
            "nothing left to prune"
        );
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
