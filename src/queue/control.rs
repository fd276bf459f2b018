//! Changing a job's course: cancel it (by id, by unique key, by
//! reference) or kick a buried one back to ready.

use super::Queue;
use crate::error::Error;
use crate::job::{JobId, JobStatus};
use crate::scheduler::actor::{Cancel, CancelReply};
use crate::store::CancelOutcome;

impl Queue {
    /// Cancels the job that holds the unique key `key`, without knowing
    /// its id; returns it, or `None` when no job holds the key.
    ///
    /// # Errors
    ///
    /// As [`Queue::cancel`], and [`Queue::unique_holder`]'s.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let handle = queue.create("sync", 42).unique("sync:42").await?;
    /// assert_eq!(queue.cancel_unique("sync:42").await?, Some(handle.id()));
    /// assert_eq!(handle.result().await?.status, kessel::JobStatus::Cancelled);
    /// assert_eq!(queue.cancel_unique("sync:42").await?, None, "the key is free again");
    /// # Ok(()) }
    /// ```
    pub async fn cancel_unique(&self, key: &str) -> Result<Option<JobId>, Error> {
        let Some(id) = self.unique_holder(key).await? else {
            return Ok(None);
        };
        self.cancel(id).await?;
        Ok(Some(id))
    }

    /// Cancels every pending job with the producer reference `reference`;
    /// returns how many. Jobs that end meanwhile are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; [`Error::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.create("remind", 1).reference("order-9").delay("1h").await?;
    /// queue.create("remind", 2).reference("order-9").delay("2h").await?;
    /// assert_eq!(queue.cancel_by_reference("order-9").await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn cancel_by_reference(&self, reference: &str) -> Result<usize, Error> {
        let mut query = crate::store::JobQuery::default()
            .reference(reference)
            .limit(usize::MAX);
        query.statuses = JobStatus::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .collect();
        let mut cancelled = 0;
        for job in self.fetch(query).await? {
            match self.cancel(job.id).await {
                Ok(()) => cancelled += 1,
                Err(Error::WrongState { .. } | Error::UnknownJob(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(cancelled)
    }

    /// Cancels a pending job. A running job's cancellation signal fires and
    /// its handler's future is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`]; [`Error::WrongState`] when it is already final.
    pub async fn cancel(&self, id: JobId) -> Result<(), Error> {
        match self
            .inner
            .scheduler
            .send(Cancel(id))
            .await
            .map_err(|_| Error::ShutDown)?
        {
            CancelReply::Cancelled => Ok(()),
            CancelReply::NotHere => {
                self.barrier().await?;
                if let Some(shared) = self.inner.store.shared() {
                    return match shared.job_cancel(id, self.now()).await? {
                        CancelOutcome::Cancelled | CancelOutcome::Requested => Ok(()),
                        CancelOutcome::Final(status) => Err(Error::WrongState {
                            id,
                            status,
                            operation: "cancel",
                        }),
                        CancelOutcome::Unknown => Err(Error::UnknownJob(id)),
                    };
                }
                let job = self.stored_job(id).await?;
                Err(Error::WrongState {
                    id,
                    status: job.status,
                    operation: "cancel",
                })
            }
        }
    }

    /// Returns a buried job to ready. It gets one more attempt than it has
    /// used (its `max_attempts` is raised if needed).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`]; [`Error::WrongState`] when it is not buried.
    pub async fn kick(&self, id: JobId) -> Result<(), Error> {
        let mut job = self.job(id).await?;
        if job.status != JobStatus::Buried {
            return Err(Error::WrongState {
                id,
                status: job.status,
                operation: "kick",
            });
        }
        let limit = job
            .max_attempts
            .or_else(|| {
                self.inner
                    .tasks
                    .get(&*job.task)
                    .map(|t| t.retry.max_attempts)
            })
            .unwrap_or(1);
        if limit <= job.attempts {
            job.max_attempts = Some(job.attempts + 1);
        }
        job.status = JobStatus::Ready;
        job.run_at = self.now();
        job.finished_at = None;
        job.result = None;
        if !self.inner.scheduler.connected() {
            return Err(Error::ShutDown);
        }
        let line = crate::job::LogLine::new(self.now(), job.attempts, "kicked");
        self.inner
            .keeping
            .kick(&*self.inner.store, &self.inner.scheduler, job, line)
            .await?;
        Ok(())
    }
}
