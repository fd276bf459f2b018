//! Jobs created inside the caller's own PostgreSQL transaction (feature
//! `postgres`): [`Queue::create_in`] and [`Queue::create_many_in`].
//!
//! The jobs are written on the caller's connection, with the store's own
//! statements (its schema, its log lines, the `NOTIFY` of its channel), so
//! they exist only if the caller's transaction commits, together with
//! whatever else it wrote, and the processes serving them wake when it
//! commits: PostgreSQL delivers a notification issued in a transaction at
//! its commit, and drops it at a rollback.
//!
//! What this process cannot know is whether, or when, the caller commits.
//! So, unlike [`Queue::create_many`]:
//!
//! - no `Created` (nor `Scheduled`) event is emitted: the job may never
//!   exist. Its later events (`started`, `completed`, ...) come from the
//!   process that runs it, as for a job another process created. Its
//!   stored log does start with its "created" line, written in the same
//!   transaction, at the time of the call (not of the commit).
//! - no `drained` event counts it, and no claim is asked for at once: the
//!   commit's notification brings the claim.
//! - an expiring job's expiry is still watched by this process, which
//!   expires it at its `expires_at` if it exists by then and nobody holds
//!   it (for a rolled-back job that finds nothing, and does nothing). A job
//!   whose transaction commits after its `expires_at`, or whose creator
//!   stopped meanwhile, is expired, without running, by the process that
//!   claims it, or by the rescuer's sweep, which every process on the
//!   schema runs every quarter lease.

#![cfg(feature = "postgres")]

use sqlx::PgConnection;

use super::{JobHandle, Queue};
use crate::error::Error;
use crate::job::Job;
use crate::new_job::NewJob;
use crate::scheduler::actor::WatchExpiry;

impl Queue {
    /// Creates `job` inside the transaction open on `conn`, the caller's
    /// own connection to the queue's PostgreSQL database (feature
    /// `postgres`). The job exists only if that transaction commits; it is
    /// picked up as soon as it does (the commit delivers the wake-up the
    /// insert issued); a rollback leaves nothing, not even the wake-up.
    ///
    /// `conn` is a `&mut sqlx::PgConnection`: pass `&mut tx` for a
    /// `sqlx::Transaction<'_, Postgres>` (or `&mut *tx`), or `&mut conn`
    /// for a pooled or plain connection (with no transaction open, the
    /// insert commits by itself). Use the same sqlx as kessel (0.9). The
    /// job goes into the queue's schema whatever the connection's
    /// `search_path`, but the connection must reach the queue's database.
    ///
    /// The returned handle is for after the commit: until then nobody
    /// else sees the job, and [`JobHandle::result`] or [`Queue::job`]
    /// answer [`Error::UnknownJob`], as they do for good after a rollback.
    ///
    /// No `Created` event is emitted for it (the transaction may still
    /// roll back); see [`Queue::create_many_in`] for this and for expiry.
    ///
    /// # Errors
    ///
    /// - [`Error::NeedsPostgres`] when the queue is not on the PostgreSQL
    ///   store; nothing is written.
    /// - The job's own error when it is invalid (an unreadable delay, a
    ///   payload serde cannot serialize, a time out of range, a bad task
    ///   name), as [`Queue::create`] returns it, before anything is sent on
    ///   `conn`.
    /// - [`Error::Store`] when the insert fails on `conn` (the connection
    ///   was lost, the transaction is already aborted). PostgreSQL then
    ///   aborts the transaction: roll it back.
    /// - [`Error::ShutDown`] when the queue has shut down.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kessel::{NewJob, Queue};
    ///
    /// let url = "postgres://postgres@127.0.0.1:5432/test";
    /// let queue = Queue::postgres(url).await?;
    /// let pool = sqlx::PgPool::connect(url).await?;
    ///
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("INSERT INTO orders (id, email) VALUES ($1, $2)")
    ///     .bind(42_i64)
    ///     .bind("ford@example.com")
    ///     .execute(&mut *tx)
    ///     .await?;
    /// let receipt = queue
    ///     .create_in(&mut tx, NewJob::new("send receipt", 42).priority(1))
    ///     .await?;
    /// tx.commit().await?; // the order and its job, or neither
    ///
    /// let result = receipt.result().await?;
    /// # let _ = result;
    /// # Ok(()) }
    /// ```
    pub async fn create_in(
        &self,
        conn: &mut PgConnection,
        job: NewJob,
    ) -> Result<JobHandle, Error> {
        let mut handles = self.insert_in(conn, [job], "create_in").await?;
        Ok(handles.pop().expect("one job in, one handle out"))
    }

    /// Creates many jobs inside the transaction open on `conn` (feature
    /// `postgres`), as [`Queue::create_in`] does one: all of them exist if
    /// that transaction commits, none if it rolls back. A batch of 64 or
    /// more is sent with `COPY`, as [`Queue::create_many`] sends one.
    ///
    /// What differs from [`Queue::create_many`], because this process
    /// cannot know whether or when the caller commits:
    ///
    /// - no `Created` or `Scheduled` event is emitted. The later events
    ///   of a job come from the process that runs it. Its stored log
    ///   starts with its "created" line, timed at this call.
    /// - the jobs are not counted for the `drained` event, and this
    ///   process does not claim at once: the commit's notification wakes
    ///   every process serving them, this one included.
    /// - expiring jobs are watched by this process as usual: a job that
    ///   exists by its `expires_at` and that nobody holds is expired then.
    ///   One whose transaction commits only after its `expires_at` (the
    ///   watch found nothing), or whose creator stopped, is expired without
    ///   running by the process that claims it, or, when none serves it,
    ///   by the rescuer's sweep within a quarter lease. For a rolled-back
    ///   job the watch finds nothing and does nothing.
    ///
    /// # Errors
    ///
    /// As [`Queue::create_in`]: the first invalid job's error (nothing is
    /// sent then), [`Error::NeedsPostgres`], [`Error::Store`],
    /// [`Error::ShutDown`]. No jobs is no statement and no error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kessel::{NewJob, Queue};
    ///
    /// let url = "postgres://postgres@127.0.0.1:5432/test";
    /// let queue = Queue::postgres(url).await?;
    /// let pool = sqlx::PgPool::connect(url).await?;
    ///
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("UPDATE imports SET state = 'queued' WHERE id = $1")
    ///     .bind(7_i64)
    ///     .execute(&mut *tx)
    ///     .await?;
    /// let rows = (0..100).map(|row| NewJob::new("import row", (7, row)).expires_in("1h"));
    /// let handles = queue.create_many_in(&mut tx, rows).await?;
    /// tx.commit().await?;
    /// assert_eq!(handles.len(), 100);
    /// # Ok(()) }
    /// ```
    pub async fn create_many_in(
        &self,
        conn: &mut PgConnection,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<Vec<JobHandle>, Error> {
        self.insert_in(conn, jobs, "create_many_in").await
    }

    async fn insert_in(
        &self,
        conn: &mut PgConnection,
        jobs: impl IntoIterator<Item = NewJob>,
        operation: &'static str,
    ) -> Result<Vec<JobHandle>, Error> {
        let Some(store) = self.inner.store.postgres() else {
            return Err(Error::NeedsPostgres { operation });
        };
        // Validated and built as `create_many` builds them, before `conn`
        // is touched; a PostgreSQL store keeps the "created" line.
        let now = self.inner.clock.now_utc();
        let mut name = None;
        let jobs: Vec<Job> = jobs
            .into_iter()
            .map(|j| {
                if j.is_unique() {
                    return Err(Error::InvalidInput {
                        field: "unique",
                        reason: format!(
                            "{operation} does not create unique jobs yet: use create or create_job"
                        ),
                    });
                }
                j.into_job(now, &mut name, true)
            })
            .collect::<Result<_, _>>()?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        if !self.inner.scheduler.connected() {
            return Err(Error::ShutDown);
        }
        store.jobs_insert_on(conn, &jobs).await?;
        let watched: Vec<_> = jobs
            .iter()
            .filter_map(|j| j.expires_at.map(|at| (j.id, at)))
            .collect();
        if !watched.is_empty() {
            self.inner.scheduler.do_send(WatchExpiry(watched));
        }
        Ok(jobs
            .iter()
            .map(|j| JobHandle {
                id: j.id,
                queue: self.clone(),
                duplicate: false,
            })
            .collect())
    }
}
