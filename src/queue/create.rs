//! Creating jobs: [`Queue::create`] and its [`CreateJob`], batches,
//! unique jobs, a schedule's ticks, and the [`JobHandle`] a create
//! returns.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Queue;
use crate::duration::IntoDuration;
use crate::error::Error;
use crate::event::{EventStream, Filter, JobEvent, JobEventKind, QueueEvent};
use crate::job::{Job, JobId, JobResult, JobStatus};
use crate::new_job::NewJob;

/// What [`Queue::create`] returns: a [`NewJob`] bound to the queue. Set
/// options with the same methods as [`NewJob`], then `.await` it.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// let handle = queue.create("report", 7).delay("1h").priority(3).await?;
/// assert_eq!(queue.job(handle.id()).await?.status, kessel::JobStatus::Scheduled);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a job is only created when this is awaited"]
pub struct CreateJob<'q> {
    pub(super) queue: &'q Queue,
    pub(super) job: NewJob,
}

macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        $(#[$doc])*
        pub fn $name(self, $($arg: $ty),*) -> Self {
            CreateJob { queue: self.queue, job: self.job.$name($($arg),*) }
        }
    )*};
}

impl CreateJob<'_> {
    forward! {
        /// See [`NewJob::delay`].
        delay(delay: impl IntoDuration);
        /// See [`NewJob::run_at`].
        run_at(at: DateTime<Utc>);
        /// See [`NewJob::expires_at`].
        expires_at(at: DateTime<Utc>);
        /// See [`NewJob::expires_in`].
        expires_in(within: impl IntoDuration);
        /// See [`NewJob::priority`].
        priority(priority: i64);
        /// See [`NewJob::reference`].
        reference(reference: impl Into<String>);
        /// See [`NewJob::max_attempts`].
        max_attempts(attempts: u32);
        /// See [`NewJob::unique`].
        unique(key: impl Into<String>);
        /// See [`NewJob::unique_by_payload`].
        unique_by_payload();
        /// See [`NewJob::unique_scope`].
        unique_scope(scope: crate::UniqueScope);
        /// See [`NewJob::callback`].
        #[cfg(feature = "webhooks")]
        callback(url: impl Into<String>);
        /// See [`NewJob::callback_secret`].
        #[cfg(feature = "webhooks")]
        callback_secret(name: impl Into<String>);
        /// See [`NewJob::group`].
        group(key: impl Into<String>);
    }
}

impl CreateJob<'_> {
    /// Creates the job as `.await` does, subscribed to its events first:
    /// the stream sees every event of the job from
    /// [`Created`](JobEventKind::Created) (and
    /// [`Scheduled`](JobEventKind::Scheduled) for a delayed job) on, which
    /// [`Queue::events`]`(Filter::Job(id))` after `create` returns may miss.
    /// The stream buffers up to [`DEFAULT_BUFFER`](crate::event::DEFAULT_BUFFER)
    /// events (see [`Queue::events`]).
    ///
    /// # Errors
    ///
    /// As `.await`; the stream is dropped then.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use futures::StreamExt;
    /// use kessel::event::{Event, JobEventKind};
    ///
    /// let queue = kessel::Queue::new();
    /// let (handle, mut events) = queue.create("report", 7).delay("1h").events().await?;
    /// let Some(Event::Job(first)) = events.next().await else { panic!("no event") };
    /// assert_eq!((first.id, first.kind), (handle.id(), JobEventKind::Created));
    /// let Some(Event::Job(second)) = events.next().await else { panic!("no event") };
    /// assert_eq!(second.kind.name(), "scheduled");
    /// # Ok(()) }
    /// ```
    pub async fn events(self) -> Result<(JobHandle, EventStream), Error> {
        // The id is chosen here so the subscription exists before the job.
        let id = JobId::new();
        let stream = self.queue.events(Filter::Job(id));
        let mut handles = self.queue.create_many([self.job.with_id(id)]).await?;
        let handle = handles.pop().expect("one job in, one handle out");
        Ok((handle, stream))
    }
}

impl<'q> IntoFuture for CreateJob<'q> {
    type Output = Result<JobHandle, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + 'q>>;

    fn into_future(self) -> Self::IntoFuture {
        self.queue.create_one(self.job)
    }
}

/// A created job: its id, and a way to wait for its result.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// let handle = queue.create("never defined here", ()).await?;
/// queue.cancel(handle.id()).await?;
/// assert_eq!(handle.result().await?.status, kessel::JobStatus::Cancelled);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct JobHandle {
    pub(super) id: JobId,
    pub(super) queue: Queue,
    pub(super) duplicate: bool,
}

impl JobHandle {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Whether the create found a live job holding the new job's unique
    /// key and created nothing: this handle is then the holder's (see
    /// [`NewJob::unique`]). Always false for a job without a unique key.
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let handle = queue.create("report", 1).unique("daily report").await?;
    /// assert!(!handle.is_duplicate());
    /// assert!(queue.create("report", 2).unique("daily report").await?.is_duplicate());
    /// # Ok(()) }
    /// ```
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// Waits until the job is final and returns what became of it.
    ///
    /// # Errors
    ///
    /// See [`Queue::result`].
    pub async fn result(&self) -> Result<JobResult, Error> {
        self.queue.result(self.id).await
    }
}

impl Queue {
    /// Creates `job` for a schedule's tick, if and only if `advance` (the
    /// compare-and-set of the schedule's next run) applies: both in one
    /// store transaction, through the persistence mode's `keep_tick`.
    /// `None` when the advance did not apply (another pass took the tick).
    #[cfg(feature = "cron")]
    pub(crate) async fn create_tick(
        &self,
        advance: &crate::store::ScheduleAdvance,
        job: NewJob,
    ) -> Result<Option<JobHandle>, Error> {
        let now = self.inner.clock.now_utc();
        let mut name = None;
        let job = job.into_job(now, &mut name, self.inner.keeping.logs_created_line())?;
        if !self.inner.scheduler.connected() {
            return Err(Error::ShutDown);
        }
        let mut advance = advance.clone();
        advance.last_job = Some(job.id);
        self.inner.creating.fetch_add(1, Ordering::SeqCst);
        let kept = self
            .inner
            .keeping
            .keep_tick(&*self.inner.store, &advance, std::slice::from_ref(&job))
            .await;
        let drained = self.inner.creating.fetch_sub(1, Ordering::SeqCst) == 1;
        let applied = match kept {
            Ok(applied) => applied,
            Err(err) => {
                self.inner.bus.queue(QueueEvent::Error {
                    message: format!(
                        "enqueueing a tick of schedule `{}` failed: {err}",
                        advance.name
                    ),
                });
                return Err(err.into());
            }
        };
        if applied && self.inner.bus.is_active() {
            self.emit_created(&job);
        }
        if drained {
            self.inner.bus.queue(QueueEvent::Drained);
        }
        if !applied {
            return Ok(None);
        }
        let handle = JobHandle {
            id: job.id,
            queue: self.clone(),
            duplicate: false,
        };
        self.inner
            .keeping
            .hand_over_new(&self.inner.scheduler, vec![job]);
        Ok(Some(handle))
    }

    /// Creates a job of `task` with `payload`. The task need not be defined
    /// in this process: the job waits until a process that defines it runs
    /// it. Set options on the returned [`CreateJob`], then `.await` it.
    pub fn create(&self, task: impl Into<String>, payload: impl Serialize) -> CreateJob<'_> {
        CreateJob {
            queue: self,
            job: NewJob::new(task, payload),
        }
    }

    /// Creates many jobs in one call and one store write. Either every job
    /// is created or none is.
    ///
    /// # Errors
    ///
    /// The first invalid job's error (nothing is stored then), or
    /// [`Error::Store`] when the store fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::NewJob;
    /// let queue = kessel::Queue::new();
    /// let jobs = (0..100).map(|n| NewJob::new("square", n).priority(n % 3));
    /// let handles = queue.create_many(jobs).await?;
    /// assert_eq!(handles.len(), 100);
    /// # Ok(()) }
    /// ```
    pub async fn create_many(
        &self,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<Vec<JobHandle>, Error> {
        let now = self.inner.clock.now_utc();
        let mut name = None;
        let log_created = self.inner.keeping.logs_created_line();
        let mut jobs: Vec<NewJob> = jobs.into_iter().collect();
        if jobs.iter().any(NewJob::is_unique) {
            if jobs.len() > 1 {
                return Err(Error::InvalidInput {
                    field: "unique",
                    reason: format!(
                        "create_many got {} jobs, some unique: create unique jobs one per call",
                        jobs.len()
                    ),
                });
            }
            let one = jobs.pop().expect("one job");
            // Boxed, as in `create_one`: its state would otherwise make
            // every create's future several times larger.
            return Ok(vec![
                Box::pin(self.create_unique(one, now, log_created)).await?,
            ]);
        }
        let jobs: Vec<Job> = jobs
            .into_iter()
            .map(|j| j.into_job(now, &mut name, log_created))
            .collect::<Result<_, _>>()?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let handles = jobs.iter().map(|j| self.handle_of_new(j.id)).collect();
        self.keep_created(jobs).await?;
        Ok(handles)
    }

    /// Creates one job: what `create(..).await` runs. As `create_many` of
    /// one job, without the vectors around it: the job is built (and
    /// checked) here, and the future only keeps and hands it over, so it
    /// stays small; on a store that keeps pending jobs in the scheduler
    /// alone it finishes on its first poll.
    fn create_one(
        &self,
        job: NewJob,
    ) -> Pin<Box<dyn Future<Output = Result<JobHandle, Error>> + '_>> {
        let now = self.inner.clock.now_utc();
        let log_created = self.inner.keeping.logs_created_line();
        if job.is_unique() {
            return Box::pin(self.create_unique(job, now, log_created));
        }
        // The task's name as the last single create shared it: most
        // producers create jobs of one task in a row.
        let mut name = self.inner.last_task.lock().take();
        let job = job.into_job(now, &mut name, log_created);
        *self.inner.last_task.lock() = name;
        let job = match job {
            Ok(job) => job,
            Err(err) => return Box::pin(std::future::ready(Err(err))),
        };
        let handle = self.handle_of_new(job.id);
        Box::pin(async move {
            self.keep_created(vec![job]).await?;
            Ok(handle)
        })
    }

    /// The handle of a job just made (never a duplicate).
    fn handle_of_new(&self, id: JobId) -> JobHandle {
        JobHandle {
            id,
            queue: self.clone(),
            duplicate: false,
        }
    }

    /// Keeps jobs just made (in the store, where new jobs are stored
    /// before the create is acknowledged), announces them and hands them
    /// to the scheduler.
    async fn keep_created(&self, jobs: Vec<Job>) -> Result<(), Error> {
        if !self.inner.scheduler.connected() {
            return Err(Error::ShutDown);
        }
        self.inner.creating.fetch_add(1, Ordering::SeqCst);
        let stored = if self.inner.keeping.stores_new() {
            self.inner.keeping.keep_new(&*self.inner.store, &jobs).await
        } else {
            Ok(())
        };
        let drained = self.inner.creating.fetch_sub(1, Ordering::SeqCst) == 1;
        if let Err(err) = stored {
            self.inner.bus.queue(QueueEvent::Error {
                message: format!("storing {} new jobs failed: {err}", jobs.len()),
            });
            return Err(err.into());
        }
        if self.inner.bus.is_active() {
            for job in &jobs {
                self.emit_created(job);
            }
        }
        if drained {
            self.inner.bus.queue(QueueEvent::Drained);
        }
        self.inner
            .keeping
            .hand_over_new(&self.inner.scheduler, jobs);
        Ok(())
    }

    /// Creates `job`, a unique job, unless a live job holds its key.
    async fn create_unique(
        &self,
        mut job: NewJob,
        now: DateTime<Utc>,
        log_created: bool,
    ) -> Result<JobHandle, Error> {
        let spec = job.take_unique().expect("a unique job");
        let job = job.into_job(now, &mut None, log_created)?;
        let hold = spec.hold(&job)?;
        if !self.inner.scheduler.connected() {
            return Err(Error::ShutDown);
        }
        let id = job.id;
        if !self.inner.keeping.pending_live_in_scheduler() {
            // The store decides: first give it every change this process
            // has made (a holder that started or ended), so the decision
            // sees what this process has seen.
            self.barrier().await?;
        }
        self.inner.creating.fetch_add(1, Ordering::SeqCst);
        let kept = self
            .inner
            .keeping
            .keep_unique(&*self.inner.store, &self.inner.scheduler, job.clone(), hold)
            .await;
        let drained = self.inner.creating.fetch_sub(1, Ordering::SeqCst) == 1;
        let inserted = match kept {
            Ok(inserted) => inserted,
            Err(err) => {
                if let Error::Store(err) = &err {
                    self.inner.bus.queue(QueueEvent::Error {
                        message: format!("storing a new unique job failed: {err}"),
                    });
                }
                return Err(err);
            }
        };
        if inserted == crate::store::Inserted::New && self.inner.bus.is_active() {
            self.emit_created(&job);
        }
        if drained {
            self.inner.bus.queue(QueueEvent::Drained);
        }
        Ok(JobHandle {
            id: inserted.holder().unwrap_or(id),
            queue: self.clone(),
            duplicate: inserted.holder().is_some(),
        })
    }

    /// Creates `job`, a job built with [`NewJob`]; set more options on the
    /// returned [`CreateJob`], then `.await` it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::NewJob;
    /// let queue = kessel::Queue::new();
    /// let handle = queue.create_job(NewJob::new("report", 7).reference("nov")).priority(2).await?;
    /// assert_eq!(queue.job(handle.id()).await?.priority, 2);
    /// # Ok(()) }
    /// ```
    pub fn create_job(&self, job: NewJob) -> CreateJob<'_> {
        CreateJob { queue: self, job }
    }

    fn emit_created(&self, job: &Job) {
        if self.inner.bus.relay().is_some() {
            // A shared store wrote these events with the job, to the log
            // every process's subscribers read.
            return;
        }
        let tag = self
            .inner
            .tasks
            .get(&*job.task)
            .map(|t| Arc::from(t.tag.as_str()));
        let event = |kind| JobEvent {
            id: job.id,
            task: job.task.clone(),
            tag: tag.clone(),
            attempt: 0,
            at: job.created_at,
            node: None,
            kind,
        };
        self.inner.bus.job(event(JobEventKind::Created));
        if job.status == JobStatus::Scheduled {
            self.inner
                .bus
                .job(event(JobEventKind::Scheduled { run_at: job.run_at }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `create(..).await` boxes its future: a large one was a slow
    /// allocation and copies per create (1.6 KB, when `create_many` held
    /// the unique path's state inline).
    #[actix_rt::test]
    async fn a_create_future_stays_small() {
        let queue = Queue::new();
        let one = queue.create_one(NewJob::new("t", 1u64));
        assert!(
            std::mem::size_of_val(&*one) <= 512,
            "{}",
            std::mem::size_of_val(&*one)
        );
        let many = queue.create_many([NewJob::new("t", 1u64)]);
        assert!(
            std::mem::size_of_val(&many) <= 512,
            "{}",
            std::mem::size_of_val(&many)
        );
    }
}
