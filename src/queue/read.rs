//! Reading jobs through the queue: one job ([`Queue::job`]), its result
//! once final ([`Queue::result`]), the holder of a unique key, and the
//! barrier that lets a read see every change made before it.

use std::time::Duration;

use futures::StreamExt;

use super::Queue;
use crate::error::Error;
use crate::event::{Event, Filter};
use crate::job::{Job, JobId, JobResult};
use crate::scheduler::actor::{Barrier, PendingJob, WaitReply, WaitResult};

/// How often [`Queue::result`] reads a job another process runs when
/// events are relayed between the processes (its final event wakes the
/// wait before that).
const RELAYED_RESULT_CHECK: Duration = Duration::from_secs(5);

impl Queue {
    /// The job that holds the unique key `key` now, if any (see
    /// [`NewJob::unique`](crate::NewJob::unique)). Sees every change this
    /// process made before the call.
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
    /// let handle = queue.create("sync", 42).unique("sync:42").await?;
    /// assert_eq!(queue.unique_holder("sync:42").await?, Some(handle.id()));
    /// assert_eq!(queue.unique_holder("sync:43").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn unique_holder(&self, key: &str) -> Result<Option<JobId>, Error> {
        if !self.inner.keeping.pending_live_in_scheduler() {
            self.barrier().await?;
        }
        self.inner
            .keeping
            .unique_holder(&*self.inner.store, &self.inner.scheduler, key, self.now())
            .await
    }

    /// One job, as kessel has it now.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] when no job has this id; [`Error::Store`].
    pub async fn job(&self, id: JobId) -> Result<Job, Error> {
        if self.inner.keeping.pending_live_in_scheduler() {
            if let Ok(Some(job)) = self.inner.scheduler.send(PendingJob(id)).await {
                return Ok(job);
            }
        }
        // Let the scheduler's last changes reach the store first.
        self.barrier().await?;
        self.stored_job(id).await
    }

    /// The job as the store has it.
    pub(super) async fn stored_job(&self, id: JobId) -> Result<Job, Error> {
        self.inner
            .store
            .job_get(id)
            .await?
            .ok_or(Error::UnknownJob(id))
    }

    /// Waits until every state change made so far is in the store, so a
    /// read of the store sees them. Fails promptly with the store's error
    /// while the scheduler cannot store them (a full disk, a lost
    /// database): a reader answers from the store or fails, never blocks
    /// until the store recovers. A stopped scheduler has nothing left to
    /// store: the read goes on.
    pub(crate) async fn barrier(&self) -> Result<(), Error> {
        if let Ok(rx) = self.inner.scheduler.send(Barrier).await {
            if let Ok(Err(err)) = rx.await {
                return Err(Error::Store(err));
            }
        }
        Ok(())
    }

    /// Waits until the job is final and returns what became of it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] when no job has this id (including a completed
    /// job already removed by [`Retention`](crate::Retention): await a
    /// result before that many more jobs complete);
    /// [`Error::ShutDown`] when the queue stops before the job is final.
    /// While the queue cannot store its latest changes (a full disk), a
    /// result waits for them to be stored, unlike reads such as
    /// [`Queue::job`], which fail at once with the store's error.
    pub async fn result(&self, id: JobId) -> Result<JobResult, Error> {
        let reply = self
            .inner
            .scheduler
            .send(WaitResult(id))
            .await
            .map_err(|_| Error::ShutDown)?;
        match reply {
            WaitReply::Pending(rx) => match rx.await {
                Ok(result) => return Ok(result),
                // Given back to a shared store: watch the store below.
                Err(_) if self.inner.keeping.others_may_finish() => {}
                Err(_) => return Err(Error::ShutDown),
            },
            WaitReply::Stored(rx) => {
                let _ = rx.await;
            }
        }
        // Another process may run it. With events relayed between the
        // processes, its final event wakes this wait (subscribed before the
        // store is read, so it cannot slip between); the store is read
        // again then, and now and then in case the relay is cut off.
        let mut ends = self
            .inner
            .bus
            .relay()
            .map(|_| self.inner.bus.stream(Filter::Job(id), 16));
        let listening_since = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(5);
        loop {
            let job = self.stored_job(id).await?;
            if let Some(result) = job.outcome() {
                return Ok(result);
            }
            if !self.inner.keeping.others_may_finish() {
                return Err(Error::WrongState {
                    id,
                    status: job.status,
                    operation: "wait for its result here (no process is responsible for it)",
                });
            }
            // Another process runs it: watch the shared store, from its
            // run_at or expiry on (nothing can happen before).
            let now = self.now();
            let wake = job.expires_at.map_or(job.run_at, |x| x.min(job.run_at));
            let until = (wake - now).to_std().unwrap_or_default();
            match ends.as_mut() {
                Some(events) => {
                    let ended = async {
                        while let Some(event) = events.next().await {
                            match event {
                                Event::Job(e) if e.kind.is_final() => return true,
                                Event::Lagged { .. } => return true,
                                _ => {}
                            }
                        }
                        false
                    };
                    // Other processes relay from when they hear of this
                    // listener, within milliseconds; until then, the store.
                    let check = if listening_since.elapsed() < RELAYED_RESULT_CHECK / 2 {
                        wait = (wait * 2).min(Duration::from_millis(500));
                        wait
                    } else {
                        RELAYED_RESULT_CHECK
                    };
                    let timer = tokio::time::sleep(check.max(until));
                    tokio::select! {
                        closed = ended => if !closed { ends = None },
                        () = timer => {}
                    }
                }
                None => {
                    tokio::time::sleep(wait.max(until)).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
}
