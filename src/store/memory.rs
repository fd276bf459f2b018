use std::collections::HashMap;

use async_trait::async_trait;
use dashmap::DashMap;

use super::{JobDelete, JobQuery, JobUpdate, Order, StatusCount, Store, StoreError};
use crate::job::{IdHash, Job, JobId, JobStatus};

/// The default store: jobs live in this process's memory and nothing
/// survives a restart. Every operation completes at once.
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
#[derive(Debug, Default)]
pub struct MemoryStore {
    jobs: DashMap<JobId, Job, IdHash>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many jobs it holds, final ones included.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether it holds no jobs.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn jobs_insert(&self, jobs: &[Job]) -> Result<(), StoreError> {
        for job in jobs {
            self.jobs.insert(job.id, job.clone());
        }
        Ok(())
    }

    async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError> {
        for update in updates {
            if let Some(mut job) = self.jobs.get_mut(&update.id) {
                update.apply_to(&mut job);
            }
        }
        Ok(())
    }

    async fn jobs_pending(&self) -> Result<Vec<Job>, StoreError> {
        Ok(self
            .jobs
            .iter()
            .filter(|j| !j.status.is_final())
            .map(|j| j.clone())
            .collect())
    }

    async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.jobs.get(&id).map(|j| j.clone()))
    }

    async fn jobs_query(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let mut found: Vec<Job> = self
            .jobs
            .iter()
            .filter(|j| query.matches(j))
            .map(|j| j.clone())
            .collect();
        found.sort_by_key(|j| (j.created_at, j.id));
        if query.order == Order::NewestFirst {
            found.reverse();
        }
        Ok(found
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .collect())
    }

    async fn jobs_count(&self) -> Result<Vec<StatusCount>, StoreError> {
        let mut counts: HashMap<(String, JobStatus), u64> = HashMap::new();
        for job in self.jobs.iter() {
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
        let mut doomed: Vec<(chrono::DateTime<chrono::Utc>, JobId)> = self
            .jobs
            .iter()
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
            if self.jobs.remove(&id).is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
