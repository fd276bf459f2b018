//! How the queue handle keeps jobs: one component per persistence mode,
//! chosen once when the queue is built. The handle calls these verbs and
//! never asks which mode it is in.
//!
//! | step                     | in process (memory) | local (SQLite)  | shared (PostgreSQL)     |
//! |--------------------------|---------------------|-----------------|-------------------------|
//! | load at start            | the store's pending | the store's     | nothing: claimed later  |
//! | keep a new job           | nothing yet         | store it        | store it                |
//! | hand a new job over      | to the scheduler    | to the scheduler| the store wakes a claim |
//! | kick an ended job        | to the scheduler    | to the scheduler| ready in the store      |
//! | read a pending job       | from the scheduler  | from the store  | from the store          |
//! | another process finishes | never               | never           | may                     |

use async_trait::async_trait;

use crate::error::Error;
use crate::job::{Job, JobId};
use crate::persistence::Persistence;
use crate::scheduler::actor::{
    Admit, AdmitUnique, ClaimNow, CountCreated, Origin, SchedulerAddr, UniqueHolder, WatchExpiry,
};
use crate::store::{Inserted, JobUpdate, ScheduleAdvance, Store, StoreError, UniqueHold};

/// One persistence mode's way of keeping jobs, as the queue handle acts
/// on it.
#[async_trait]
pub(crate) trait Keeping: Send + Sync + std::fmt::Debug {
    /// The pending jobs the scheduler takes in when the queue starts.
    async fn pending_at_start(&self, store: &dyn Store) -> Result<Vec<Job>, StoreError>;

    /// Whether a new job is written with its "created" log line (the
    /// scheduler rebuilds it from `created_at` otherwise, so a pending job
    /// holds no log allocation).
    fn logs_created_line(&self) -> bool;

    /// Whether new jobs are written to the store before a create is
    /// acknowledged ([`Keeping::keep_new`] does nothing otherwise, and a
    /// create need not wait for it).
    fn stores_new(&self) -> bool {
        true
    }

    /// Keeps newly created jobs before the create is acknowledged.
    async fn keep_new(&self, store: &dyn Store, jobs: &[Job]) -> Result<(), StoreError>;

    /// Applies a schedule's compare-and-set and keeps its tick's new jobs
    /// with it, in one store transaction; whether it applied. Where new
    /// jobs are not kept in the store (in process), only the advance is.
    /// Used by recurring schedules (feature `cron`).
    #[cfg_attr(not(feature = "cron"), allow(dead_code))]
    async fn keep_tick(
        &self,
        store: &dyn Store,
        advance: &ScheduleAdvance,
        jobs: &[Job],
    ) -> Result<bool, StoreError>;

    /// Hands kept new jobs to whoever runs them.
    fn hand_over_new(&self, scheduler: &SchedulerAddr, jobs: Vec<Job>);

    /// Makes an ended job (made ready again, `line` logged) pending again.
    async fn kick(
        &self,
        store: &dyn Store,
        scheduler: &SchedulerAddr,
        job: Job,
        line: crate::job::LogLine,
    ) -> Result<(), StoreError>;

    /// Keeps a new unique job unless a live job holds its key, and hands
    /// it over when kept. The default asks the store, which enforces the
    /// key for every process using it.
    async fn keep_unique(
        &self,
        store: &dyn Store,
        scheduler: &SchedulerAddr,
        job: Job,
        hold: UniqueHold,
    ) -> Result<Inserted, Error> {
        let inserted = store.jobs_insert_unique(&job, &hold).await?;
        if inserted == Inserted::New {
            self.hand_over_new(scheduler, vec![job]);
        }
        Ok(inserted)
    }

    /// The job holding the unique key `key` at `now`. The default asks
    /// the store.
    async fn unique_holder(
        &self,
        store: &dyn Store,
        _scheduler: &SchedulerAddr,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<JobId>, Error> {
        Ok(store.job_unique_holder(key, now).await?)
    }

    /// Whether the scheduler holds the only copy of a pending job, so
    /// reads ask it before the store.
    fn pending_live_in_scheduler(&self) -> bool;

    /// Whether another process may finish a job this one does not hold.
    fn others_may_finish(&self) -> bool;
}

/// The memory store: the scheduler holds each pending job, the store
/// gets it when it becomes final.
#[derive(Debug)]
struct InProcess;

/// A durable store only this process uses: stored at creation, every
/// change recorded, pending jobs loaded at start.
#[derive(Debug)]
struct Local;

/// A store shared by processes: stored at creation, claimed with a lease
/// by whichever process is free.
#[derive(Debug)]
struct Shared;

/// The component for `persistence`.
pub(crate) fn of(persistence: Persistence) -> &'static dyn Keeping {
    match persistence {
        Persistence::InProcess => &InProcess,
        Persistence::Local => &Local,
        Persistence::Shared => &Shared,
    }
}

/// Admits new jobs to this process's scheduler.
fn admit_new(scheduler: &SchedulerAddr, jobs: Vec<Job>) {
    scheduler.admit_new(jobs);
}

/// Kicks a job back through this process's scheduler.
fn admit_kicked(scheduler: &SchedulerAddr, job: Job) {
    scheduler.do_send(Admit {
        jobs: vec![job],
        origin: Origin::Kicked,
    });
}

#[async_trait]
impl Keeping for InProcess {
    async fn pending_at_start(&self, store: &dyn Store) -> Result<Vec<Job>, StoreError> {
        store.jobs_pending().await
    }

    fn logs_created_line(&self) -> bool {
        false
    }

    fn stores_new(&self) -> bool {
        // Held by the scheduler until final.
        false
    }

    async fn keep_new(&self, _: &dyn Store, _: &[Job]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn keep_tick(
        &self,
        store: &dyn Store,
        advance: &ScheduleAdvance,
        _: &[Job],
    ) -> Result<bool, StoreError> {
        // The job is held by the scheduler until final, as any new job.
        store.schedule_advance(advance, &[]).await
    }

    fn hand_over_new(&self, scheduler: &SchedulerAddr, jobs: Vec<Job>) {
        admit_new(scheduler, jobs);
    }

    async fn kick(
        &self,
        _: &dyn Store,
        scheduler: &SchedulerAddr,
        job: Job,
        _: crate::job::LogLine,
    ) -> Result<(), StoreError> {
        admit_kicked(scheduler, job);
        Ok(())
    }

    async fn keep_unique(
        &self,
        _: &dyn Store,
        scheduler: &SchedulerAddr,
        job: Job,
        hold: UniqueHold,
    ) -> Result<Inserted, Error> {
        // The scheduler holds every pending job: it decides, and admits.
        scheduler
            .send(AdmitUnique { job, hold })
            .await
            .map_err(|_| Error::ShutDown)
    }

    async fn unique_holder(
        &self,
        _: &dyn Store,
        scheduler: &SchedulerAddr,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<JobId>, Error> {
        scheduler
            .send(UniqueHolder {
                key: key.to_owned(),
                now,
            })
            .await
            .map_err(|_| Error::ShutDown)
    }

    fn pending_live_in_scheduler(&self) -> bool {
        true
    }

    fn others_may_finish(&self) -> bool {
        false
    }
}

#[async_trait]
impl Keeping for Local {
    async fn pending_at_start(&self, store: &dyn Store) -> Result<Vec<Job>, StoreError> {
        store.jobs_pending().await
    }

    fn logs_created_line(&self) -> bool {
        true
    }

    async fn keep_new(&self, store: &dyn Store, jobs: &[Job]) -> Result<(), StoreError> {
        store.jobs_insert(jobs).await
    }

    async fn keep_tick(
        &self,
        store: &dyn Store,
        advance: &ScheduleAdvance,
        jobs: &[Job],
    ) -> Result<bool, StoreError> {
        store.schedule_advance(advance, jobs).await
    }

    fn hand_over_new(&self, scheduler: &SchedulerAddr, jobs: Vec<Job>) {
        admit_new(scheduler, jobs);
    }

    async fn kick(
        &self,
        _: &dyn Store,
        scheduler: &SchedulerAddr,
        job: Job,
        _: crate::job::LogLine,
    ) -> Result<(), StoreError> {
        // The scheduler records it ready, with its "kicked" line.
        admit_kicked(scheduler, job);
        Ok(())
    }

    fn pending_live_in_scheduler(&self) -> bool {
        false
    }

    fn others_may_finish(&self) -> bool {
        false
    }
}

#[async_trait]
impl Keeping for Shared {
    async fn pending_at_start(&self, _: &dyn Store) -> Result<Vec<Job>, StoreError> {
        // Claimed when due, by whichever process is free.
        Ok(Vec::new())
    }

    fn logs_created_line(&self) -> bool {
        true
    }

    async fn keep_new(&self, store: &dyn Store, jobs: &[Job]) -> Result<(), StoreError> {
        store.jobs_insert(jobs).await
    }

    async fn keep_tick(
        &self,
        store: &dyn Store,
        advance: &ScheduleAdvance,
        jobs: &[Job],
    ) -> Result<bool, StoreError> {
        store.schedule_advance(advance, jobs).await
    }

    fn hand_over_new(&self, scheduler: &SchedulerAddr, jobs: Vec<Job>) {
        // The insert notified every process: one claims each job. This
        // process times the expiry of what it created.
        let watched: Vec<_> = jobs
            .iter()
            .filter_map(|j| j.expires_at.map(|at| (j.id, at)))
            .collect();
        if !watched.is_empty() {
            scheduler.do_send(WatchExpiry(watched));
        }
        scheduler.do_send(ClaimNow);
        if cfg!(feature = "metrics") {
            scheduler.do_send(CountCreated(jobs.into_iter().map(|j| j.task).collect()));
        }
    }

    async fn kick(
        &self,
        store: &dyn Store,
        _: &SchedulerAddr,
        job: Job,
        line: crate::job::LogLine,
    ) -> Result<(), StoreError> {
        // Ready in the store again; the update wakes the processes.
        store.jobs_update(&[JobUpdate::of(&job, vec![line])]).await
    }

    fn pending_live_in_scheduler(&self) -> bool {
        false
    }

    fn others_may_finish(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_has_its_component() {
        assert!(of(Persistence::InProcess).pending_live_in_scheduler());
        assert!(!of(Persistence::InProcess).logs_created_line());
        assert!(!of(Persistence::Local).pending_live_in_scheduler());
        assert!(!of(Persistence::Local).others_may_finish());
        assert!(of(Persistence::Shared).others_may_finish());
    }

    #[tokio::test]
    async fn only_the_in_process_mode_leaves_new_jobs_out_of_the_store() {
        let store = crate::store::MemoryStore::new();
        let mut name = None;
        let job = crate::NewJob::new("t", 1)
            .into_job(chrono::Utc::now(), &mut name, true)
            .unwrap();
        of(Persistence::InProcess)
            .keep_new(&store, std::slice::from_ref(&job))
            .await
            .unwrap();
        assert!(store.job_get(job.id).await.unwrap().is_none());
        of(Persistence::Local)
            .keep_new(&store, std::slice::from_ref(&job))
            .await
            .unwrap();
        assert!(store.job_get(job.id).await.unwrap().is_some());
    }
}
