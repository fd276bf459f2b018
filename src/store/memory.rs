use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use parking_lot::RwLock;

use super::{JobDelete, JobQuery, JobUpdate, StatusCount, Store, StoreError};
use crate::job::{Job, JobId, JobStatus};

/// The default store: jobs live in this process's memory and nothing
/// survives a restart. Every operation completes at once.
///
/// Under a [`Queue`](crate::Queue) it is [ephemeral](Store::ephemeral):
/// pending jobs are held once, by the queue's scheduler, and a job is
/// stored here when it becomes final. Read jobs through the queue
/// ([`Queue::job`](crate::Queue::job), [`Queue::fetch`](crate::Queue::fetch),
/// [`Queue::stats`](crate::Queue::stats)), which sees both.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use std::sync::Arc;
/// let queue = kessel::Queue::builder().store(Arc::new(kessel::store::MemoryStore::new())).build().await?;
/// # let _ = queue;
/// # Ok(()) }
/// ```
///
/// Jobs are kept in id order. Ids are time-ordered, so the supervisor's
/// batches of updates (jobs created together, started and finished
/// together) land on neighbouring entries, and a batch takes the lock once.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Boxed: a B-tree node holds eleven entries and is often little more
    /// than half full, so inline 248-byte jobs would waste more than the
    /// box's pointer costs.
    jobs: RwLock<BTreeMap<JobId, Box<Job>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many jobs it holds. Under a queue: the final (and kicked) ones.
    pub fn len(&self) -> usize {
        self.jobs.read().len()
    }

    /// Whether it holds no jobs.
    pub fn is_empty(&self) -> bool {
        self.jobs.read().is_empty()
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn ephemeral(&self) -> bool {
        true
    }

    async fn jobs_insert(&self, jobs: &[Job]) -> Result<(), StoreError> {
        let mut stored = self.jobs.write();
        for job in jobs {
            stored.insert(job.id, Box::new(job.clone()));
        }
        Ok(())
    }

    async fn jobs_insert_owned(&self, jobs: Vec<Job>) -> Result<(), (StoreError, Vec<Job>)> {
        let mut stored = self.jobs.write();
        for job in jobs {
            stored.insert(job.id, Box::new(job));
        }
        Ok(())
    }

    async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError> {
        let mut stored = self.jobs.write();
        for update in updates {
            if let Some(job) = stored.get_mut(&update.id) {
                update.apply_to(job);
            }
        }
        Ok(())
    }

    async fn jobs_pending(&self) -> Result<Vec<Job>, StoreError> {
        Ok(self
            .jobs
            .read()
            .values()
            .filter(|j| !j.status.is_final())
            .map(|j| (**j).clone())
            .collect())
    }

    async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.jobs.read().get(&id).map(|j| (**j).clone()))
    }

    async fn jobs_query(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let found: Vec<Job> = self
            .jobs
            .read()
            .values()
            .filter(|j| query.matches(j))
            .map(|j| (**j).clone())
            .collect();
        Ok(query.page(found))
    }

    async fn jobs_count(&self) -> Result<Vec<StatusCount>, StoreError> {
        let mut counts: HashMap<(String, JobStatus), u64> = HashMap::new();
        for job in self.jobs.read().values() {
            *counts
                .entry((job.task.to_string(), job.status))
                .or_default() += 1;
        }
        let mut out: Vec<StatusCount> = counts
            .into_iter()
            .map(|((task, status), count)| StatusCount {
                task,
                status,
                count,
            })
            .collect();
        out.sort_by(|a, b| (&a.task, a.status).cmp(&(&b.task, b.status)));
        Ok(out)
    }

    async fn jobs_delete(&self, params: &JobDelete) -> Result<u64, StoreError> {
        let mut stored = self.jobs.write();
        let mut doomed: Vec<(chrono::DateTime<chrono::Utc>, JobId)> = stored
            .values()
            .filter(|j| {
                j.status.is_final()
                    && params.statuses.contains(&j.status)
                    && (params.tasks.is_empty() || params.tasks.iter().any(|t| **t == *j.task))
                    && params
                        .finished_before
                        .is_none_or(|t| j.finished_at.is_some_and(|f| f < t))
            })
            .map(|j| (j.finished_at.unwrap_or(j.created_at), j.id))
            .collect();
        doomed.sort_unstable();
        if let Some(limit) = params.limit {
            doomed.truncate(limit);
        }
        let mut removed = 0;
        for (_, id) in doomed {
            if stored.remove(&id).is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
