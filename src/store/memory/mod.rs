use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::RwLock;

use super::{
    Capabilities, JobDelete, JobQuery, JobUpdate, ScheduleAdvance, SchedulePause, ScheduleRecord,
    ScheduleTable, StatusCount, Store, StoreError, Upserted,
};
use crate::job::{Job, JobId, JobStatus};
use map::JobMap;

mod map;

/// The default store: jobs live in this process's memory and nothing
/// survives a restart. Every operation completes at once.
///
/// It does not [outlive the process](super::Capabilities::outlives_process),
/// so under a [`Queue`](crate::Queue) pending jobs are held once, by the queue's scheduler, and a job is
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
/// Jobs are kept in id order. Ids are time-ordered and jobs mostly finish
/// in the order they were created, so a job that arrives after every job
/// held is appended to a sorted run, and the oldest leave from its front;
/// the few that arrive out of order wait in a tree beside it. A batch of
/// writes takes the lock once. Counts per task
/// and status are kept as jobs change, and completed jobs are also listed
/// in the order they finished, so counting and pruning the oldest
/// completed jobs cost nothing like a scan.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
    /// Schedules, by name. Locked before `inner` when both are.
    schedules: parking_lot::Mutex<ScheduleTable>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Boxed: moving a job in or out of the map moves a pointer, not a
    /// 248-byte record.
    jobs: JobMap,
    /// How many jobs of each task are in each status (none listed at 0).
    counts: Vec<(Arc<str>, JobStatus, u64)>,
    /// Completed jobs as (finished_at, id), oldest first unless
    /// `out_of_order`. An entry whose job was since removed or changed is
    /// stale and skipped.
    completed: VecDeque<(DateTime<Utc>, JobId)>,
    /// A job was listed after one that finished later (jobs finish in
    /// order unless a caller inserts old ones): `completed` is rebuilt from
    /// `jobs` before it is used.
    out_of_order: bool,
}

impl Inner {
    fn count(&mut self, job: &Job, delta: i64) {
        // A handful of (task, status) pairs: a scan that mostly compares
        // pointers beats hashing the task's name.
        let found = self.counts.iter().position(|(task, status, _)| {
            *status == job.status && (Arc::ptr_eq(task, &job.task) || **task == *job.task)
        });
        match found {
            Some(i) => {
                let n = &mut self.counts[i].2;
                *n = n.saturating_add_signed(delta);
                if *n == 0 {
                    self.counts.swap_remove(i);
                }
            }
            None if delta > 0 => self
                .counts
                .push((job.task.clone(), job.status, delta as u64)),
            None => {}
        }
    }

    /// Lists a job that just became completed.
    fn note_completed(&mut self, job: &Job) {
        if job.status != JobStatus::Completed {
            return;
        }
        let at = job.finished_at.unwrap_or(job.created_at);
        if self.completed.back().is_some_and(|&(last, _)| last > at) {
            self.out_of_order = true;
        }
        self.completed.push_back((at, job.id));
    }

    fn insert(&mut self, job: Box<Job>) {
        self.count(&job, 1);
        self.note_completed(&job);
        if let Some(old) = self.jobs.insert(job) {
            self.count(&old, -1);
        }
    }

    /// Applies `updates` in order; an unknown job's is skipped.
    fn update(&mut self, updates: &[JobUpdate]) {
        for update in updates {
            let Some(mut job) = self.jobs.remove(&update.id) else {
                continue;
            };
            self.count(&job, -1);
            update.apply_to(&mut job);
            self.insert(job);
        }
    }

    fn remove(&mut self, id: &JobId) -> bool {
        match self.jobs.remove(id) {
            Some(job) => {
                self.count(&job, -1);
                true
            }
            None => false,
        }
    }

    /// Whether `entry` still names a completed job that finished then.
    fn is_current(&self, &(at, id): &(DateTime<Utc>, JobId)) -> bool {
        self.jobs.get(&id).is_some_and(|j| {
            j.status == JobStatus::Completed && j.finished_at.unwrap_or(j.created_at) == at
        })
    }

    /// Re-lists the completed jobs in finish order.
    fn reorder(&mut self) {
        let mut completed: Vec<(DateTime<Utc>, JobId)> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Completed)
            .map(|j| (j.finished_at.unwrap_or(j.created_at), j.id))
            .collect();
        completed.sort_unstable();
        self.completed = completed.into();
        self.out_of_order = false;
    }

    /// Removes the oldest completed jobs: those that finished before
    /// `before`, at most `limit`.
    fn delete_oldest_completed(
        &mut self,
        before: Option<DateTime<Utc>>,
        limit: Option<usize>,
    ) -> u64 {
        let completed = self.counts_of(JobStatus::Completed);
        if self.out_of_order || self.completed.len() > 2 * completed as usize + 64 {
            self.reorder();
        }
        let mut removed = 0u64;
        // Listed by created_at for want of a finish time: never "finished
        // before" anything, so kept.
        let mut kept = Vec::new();
        while let Some(&entry) = self.completed.front() {
            if limit.is_some_and(|l| removed as usize >= l) || before.is_some_and(|b| entry.0 >= b)
            {
                break;
            }
            self.completed.pop_front();
            if !self.is_current(&entry) {
                continue;
            }
            if before.is_some()
                && self
                    .jobs
                    .get(&entry.1)
                    .is_some_and(|j| j.finished_at.is_none())
            {
                kept.push(entry);
            } else if self.remove(&entry.1) {
                removed += 1;
            }
        }
        for entry in kept.into_iter().rev() {
            self.completed.push_front(entry);
        }
        removed
    }

    fn counts_of(&self, status: JobStatus) -> u64 {
        self.counts
            .iter()
            .filter(|(_, s, _)| *s == status)
            .map(|(_, _, n)| n)
            .sum()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many jobs it holds. Under a queue: the final (and kicked) ones.
    pub fn len(&self) -> usize {
        self.inner.read().jobs.len()
    }

    /// Whether it holds no jobs.
    pub fn is_empty(&self) -> bool {
        self.inner.read().jobs.len() == 0
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        // One lock around the whole of `jobs_write`.
        Capabilities::IN_PROCESS.with_atomic_writes()
    }

    async fn jobs_insert(&self, jobs: &[Job]) -> Result<(), StoreError> {
        let mut inner = self.inner.write();
        for job in jobs {
            inner.insert(Box::new(job.clone()));
        }
        Ok(())
    }

    async fn jobs_insert_owned(&self, jobs: Vec<Job>) -> Result<(), (StoreError, Vec<Job>)> {
        let mut inner = self.inner.write();
        for job in jobs {
            inner.insert(Box::new(job));
        }
        Ok(())
    }

    async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError> {
        self.inner.write().update(updates);
        Ok(())
    }

    async fn jobs_write(&self, updates: &[JobUpdate], inserts: &[Job]) -> Result<(), StoreError> {
        let mut inner = self.inner.write();
        inner.update(updates);
        for job in inserts {
            inner.insert(Box::new(job.clone()));
        }
        Ok(())
    }

    async fn jobs_pending(&self) -> Result<Vec<Job>, StoreError> {
        Ok(self
            .inner
            .read()
            .jobs
            .values()
            .filter(|j| !j.status.is_final())
            .cloned()
            .collect())
    }

    async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.inner.read().jobs.get(&id).cloned())
    }

    async fn jobs_query(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let found: Vec<Job> = self
            .inner
            .read()
            .jobs
            .values()
            .filter(|j| query.matches(j))
            .cloned()
            .collect();
        Ok(query.page(found))
    }

    async fn jobs_count(&self) -> Result<Vec<StatusCount>, StoreError> {
        let mut out: Vec<StatusCount> = self
            .inner
            .read()
            .counts
            .iter()
            .map(|(task, status, count)| StatusCount {
                task: task.to_string(),
                status: *status,
                count: *count,
            })
            .collect();
        out.sort_by(|a, b| (&a.task, a.status).cmp(&(&b.task, b.status)));
        Ok(out)
    }

    async fn job_delete(&self, id: JobId) -> Result<bool, StoreError> {
        let mut inner = self.inner.write();
        let is_final = inner.jobs.get(&id).is_some_and(|j| j.status.is_final());
        Ok(is_final && inner.remove(&id))
    }

    async fn jobs_delete(&self, params: &JobDelete) -> Result<u64, StoreError> {
        let mut inner = self.inner.write();
        if params.statuses == [JobStatus::Completed] && params.tasks.is_empty() {
            return Ok(inner.delete_oldest_completed(params.finished_before, params.limit));
        }
        let mut doomed: Vec<(DateTime<Utc>, JobId)> = inner
            .jobs
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
            if inner.remove(&id) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn schedules_list(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        Ok(self.schedules.lock().list())
    }

    async fn schedule_upsert(&self, record: &ScheduleRecord) -> Result<Upserted, StoreError> {
        Ok(self.schedules.lock().upsert(record))
    }

    async fn schedule_remove(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.schedules.lock().remove(name))
    }

    async fn schedule_pause(&self, pause: &SchedulePause) -> Result<bool, StoreError> {
        Ok(self.schedules.lock().pause(pause))
    }

    /// The compare-and-set and the jobs under one lock: nobody sees the
    /// schedule moved on without its jobs.
    async fn schedule_advance(
        &self,
        advance: &ScheduleAdvance,
        jobs: &[Job],
    ) -> Result<bool, StoreError> {
        let mut schedules = self.schedules.lock();
        if !schedules.advance(advance) {
            return Ok(false);
        }
        let mut inner = self.inner.write();
        for job in jobs {
            inner.insert(Box::new(job.clone()));
        }
        Ok(true)
    }
}
