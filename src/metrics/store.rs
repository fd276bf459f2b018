//! A store wrapper that times every call: a histogram by operation and a
//! `tracing` span per call.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use metrics::{counter, histogram};
use tracing::Instrument;
use uuid::Uuid;

use super::names;
use crate::job::{Job, JobId};
use crate::store::{
    CancelOutcome, Capabilities, ClaimReply, HeartbeatReply, JobClaim, JobDelete, JobHeartbeat,
    JobQuery, JobUpdate, ScheduleAdvance, SchedulePause, ScheduleRecord, SharedStore, StatusCount,
    Store, StoreError, Upserted,
};

/// A [`Store`] that times every call of the store it wraps: the
/// `kessel_store_call_seconds{operation}` histogram, a
/// `kessel_store_errors_total{operation}` count of failed calls, and a
/// `kessel.store` `tracing` span (debug level) per call with the
/// `operation` and, for batches, their size.
///
/// It keeps what the wrapped store is: the same [`Capabilities`], and,
/// when the wrapped store is shared between processes, its
/// [`SharedStore`] calls are timed too, and the jobs its rescuer returns
/// to ready (`kessel_leases_rescued_total`) and the leases a heartbeat
/// finds lost (`kessel_leases_lost_total`) are counted.
///
/// `operation` is the method's name (`jobs_insert`, `jobs_update`,
/// `jobs_claim`, ...): a label with a bounded set of values.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use std::sync::Arc;
/// use kessel::metrics::MeteredStore;
/// use kessel::store::MemoryStore;
/// let store = MeteredStore::new(MemoryStore::new());
/// let queue = kessel::Queue::builder().store(Arc::new(store)).build().await?;
/// # let _ = queue;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MeteredStore<S: ?Sized = dyn Store> {
    inner: Arc<S>,
}

impl<S: Store> MeteredStore<S> {
    /// Wraps `store`.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::{metrics::MeteredStore, store::MemoryStore};
    /// let store = MeteredStore::new(MemoryStore::new());
    /// # let _ = store;
    /// ```
    pub fn new(store: S) -> Self {
        MeteredStore {
            inner: Arc::new(store),
        }
    }
}

impl<S: Store + ?Sized> MeteredStore<S> {
    /// Wraps a store already shared, such as the `Arc<dyn Store>` of a
    /// queue built elsewhere.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use kessel::{metrics::MeteredStore, store::{MemoryStore, Store}};
    /// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    /// let metered: MeteredStore = MeteredStore::from_arc(store);
    /// # let _ = metered;
    /// ```
    pub fn from_arc(store: Arc<S>) -> Self {
        MeteredStore { inner: store }
    }

    /// The wrapped store.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::{metrics::MeteredStore, store::{MemoryStore, Store}};
    /// let store = MeteredStore::new(MemoryStore::new());
    /// assert!(!store.inner().capabilities().outlives_process);
    /// ```
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// The wrapped store's shared capability, for the [`SharedStore`]
    /// methods: an error if it has none (they are reached only through
    /// [`Store::shared`], which says so first).
    fn shared_inner(&self) -> Result<&dyn SharedStore, StoreError> {
        self.inner
            .shared()
            .ok_or_else(|| StoreError::InvalidConfig("the wrapped store is not shared".into()))
    }
}

/// Runs one store call in its span and records how long it took and
/// whether it failed.
async fn timed<T, E, F>(operation: &'static str, rows: Option<usize>, call: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let span = match rows {
        Some(rows) => tracing::debug_span!("kessel.store", operation, rows),
        None => tracing::debug_span!("kessel.store", operation),
    };
    let start = Instant::now();
    let result = call.instrument(span).await;
    observe(operation, start.elapsed(), result.is_err());
    result
}

fn observe(operation: &'static str, took: Duration, failed: bool) {
    histogram!(names::STORE_CALL_SECONDS, "operation" => operation).record(took.as_secs_f64());
    if failed {
        counter!(names::STORE_ERRORS, "operation" => operation).increment(1);
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for MeteredStore<S> {
    async fn jobs_insert(&self, jobs: &[Job]) -> Result<(), StoreError> {
        timed(
            "jobs_insert",
            Some(jobs.len()),
            self.inner.jobs_insert(jobs),
        )
        .await
    }

    async fn jobs_insert_owned(&self, jobs: Vec<Job>) -> Result<(), (StoreError, Vec<Job>)> {
        let rows = jobs.len();
        timed(
            "jobs_insert_owned",
            Some(rows),
            self.inner.jobs_insert_owned(jobs),
        )
        .await
    }

    async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError> {
        timed(
            "jobs_update",
            Some(updates.len()),
            self.inner.jobs_update(updates),
        )
        .await
    }

    async fn jobs_write(&self, updates: &[JobUpdate], inserts: &[Job]) -> Result<(), StoreError> {
        timed(
            "jobs_write",
            Some(updates.len() + inserts.len()),
            self.inner.jobs_write(updates, inserts),
        )
        .await
    }

    async fn jobs_pending(&self) -> Result<Vec<Job>, StoreError> {
        timed("jobs_pending", None, self.inner.jobs_pending()).await
    }

    async fn job_get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        timed("job_get", None, self.inner.job_get(id)).await
    }

    async fn jobs_query(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        timed("jobs_query", None, self.inner.jobs_query(query)).await
    }

    async fn jobs_count(&self) -> Result<Vec<StatusCount>, StoreError> {
        timed("jobs_count", None, self.inner.jobs_count()).await
    }

    async fn jobs_delete(&self, params: &JobDelete) -> Result<u64, StoreError> {
        timed("jobs_delete", None, self.inner.jobs_delete(params)).await
    }

    async fn jobs_count_status(&self, status: crate::job::JobStatus) -> Result<u64, StoreError> {
        timed(
            "jobs_count_status",
            None,
            self.inner.jobs_count_status(status),
        )
        .await
    }

    async fn schedules_list(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        timed("schedules_list", None, self.inner.schedules_list()).await
    }

    async fn schedule_upsert(&self, record: &ScheduleRecord) -> Result<Upserted, StoreError> {
        timed("schedule_upsert", None, self.inner.schedule_upsert(record)).await
    }

    async fn schedule_remove(&self, name: &str) -> Result<bool, StoreError> {
        timed("schedule_remove", None, self.inner.schedule_remove(name)).await
    }

    async fn schedule_pause(&self, pause: &SchedulePause) -> Result<bool, StoreError> {
        timed("schedule_pause", None, self.inner.schedule_pause(pause)).await
    }

    async fn schedule_advance(
        &self,
        advance: &ScheduleAdvance,
        jobs: &[Job],
    ) -> Result<bool, StoreError> {
        timed(
            "schedule_advance",
            Some(jobs.len()),
            self.inner.schedule_advance(advance, jobs),
        )
        .await
    }

    async fn job_delete(&self, id: JobId) -> Result<bool, StoreError> {
        timed("job_delete", None, self.inner.job_delete(id)).await
    }

    async fn jobs_insert_unique(
        &self,
        job: &Job,
        hold: &crate::store::UniqueHold,
    ) -> Result<crate::store::Inserted, StoreError> {
        timed(
            "jobs_insert_unique",
            None,
            self.inner.jobs_insert_unique(job, hold),
        )
        .await
    }

    async fn job_unique_holder(
        &self,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::job::JobId>, StoreError> {
        timed(
            "job_unique_holder",
            None,
            self.inner.job_unique_holder(key, now),
        )
        .await
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        // Shared calls go through this wrapper too, so they are timed.
        self.inner.shared().map(|_| self as &dyn SharedStore)
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// The wrapped PostgreSQL store, so transactional enqueue works through
    /// the wrapper (its inserts run on the caller's connection, untimed).
    #[cfg(feature = "postgres")]
    fn postgres(&self) -> Option<&crate::store::PgStore> {
        self.inner.postgres()
    }

    async fn close(&self) -> Result<(), StoreError> {
        timed("close", None, self.inner.close()).await
    }
}

#[async_trait]
impl<S: Store + ?Sized> SharedStore for MeteredStore<S> {
    fn owner(&self) -> Uuid {
        self.inner.shared().map_or(Uuid::nil(), |s| s.owner())
    }

    async fn jobs_claim(&self, params: &JobClaim) -> Result<Vec<Job>, StoreError> {
        let shared = self.shared_inner()?;
        timed("jobs_claim", None, shared.jobs_claim(params)).await
    }

    async fn jobs_claim_reply(&self, params: &JobClaim) -> Result<ClaimReply, StoreError> {
        let shared = self.shared_inner()?;
        timed("jobs_claim", None, shared.jobs_claim_reply(params)).await
    }

    async fn jobs_heartbeat(&self, params: &JobHeartbeat) -> Result<HeartbeatReply, StoreError> {
        let shared = self.shared_inner()?;
        let reply = timed(
            "jobs_heartbeat",
            Some(params.ids.len()),
            shared.jobs_heartbeat(params),
        )
        .await?;
        if !reply.lost.is_empty() {
            counter!(names::LEASES_LOST).increment(reply.lost.len() as u64);
        }
        Ok(reply)
    }

    async fn jobs_release(&self, owner: Uuid, ids: &[JobId]) -> Result<(), StoreError> {
        let shared = self.shared_inner()?;
        timed(
            "jobs_release",
            Some(ids.len()),
            shared.jobs_release(owner, ids),
        )
        .await
    }

    async fn jobs_rescue(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let shared = self.shared_inner()?;
        let rescued = timed("jobs_rescue", None, shared.jobs_rescue(now)).await?;
        counter!(names::LEASES_RESCUED).increment(rescued);
        Ok(rescued)
    }

    async fn jobs_expire(&self, now: DateTime<Utc>, ids: &[JobId]) -> Result<u64, StoreError> {
        let shared = self.shared_inner()?;
        timed("jobs_expire", Some(ids.len()), shared.jobs_expire(now, ids)).await
    }

    async fn job_cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        let shared = self.shared_inner()?;
        timed("job_cancel", None, shared.job_cancel(id, now)).await
    }

    async fn jobs_next_due(&self, tasks: &[String]) -> Result<Option<DateTime<Utc>>, StoreError> {
        let shared = self.shared_inner()?;
        timed("jobs_next_due", None, shared.jobs_next_due(tasks)).await
    }

    fn wakeups(&self) -> BoxStream<'static, ()> {
        // Not a call that returns: a stream the scheduler keeps.
        match self.inner.shared() {
            Some(shared) => shared.wakeups(),
            None => Box::pin(futures::stream::empty()),
        }
    }

    fn lease(&self) -> Duration {
        self.inner
            .shared()
            .map_or(Duration::from_secs(30), |s| s.lease())
    }
}
