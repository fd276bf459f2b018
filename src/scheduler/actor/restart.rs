//! The scheduler survives itself.
//!
//! No path that data or timing can reach ends the scheduler on purpose;
//! should it stop anyway (a handler of its panicked on a broken
//! invariant), its actor is not simply gone, taking every later call of
//! the queue with it. Its `stopped` hook builds a successor from the same
//! [`Setup`] and hands it what the stopped one held:
//!
//! - every job it held, as it held it: on the memory store the only copy
//!   of a pending job is here, so it is kept; a job that was running is
//!   treated as cut off by a crash (its attempt counts and it runs again);
//! - the state changes not yet stored (the journal) and the callers
//!   waiting on results;
//! - the task definitions, suspensions, queue middleware and workers
//!   (started again, on new threads where they had their own).
//!
//! Then it reloads from the store what the store holds: on a durable
//! single-process store (SQLite) the pending jobs are read again (a job
//! whose admission was in the stopped scheduler's mailbox is found
//! there); on a shared store the successor claims as any process does.
//!
//! The successor takes a new mailbox, published through the queue's
//! [`AddrSlot`], so every later call reaches it. Calls in flight at the
//! stop (in the old mailbox) fail with `ShutDown`. Jobs created and not
//! yet taken in wait in the queue's inbox (`NewJobs`), not in the
//! mailbox: the successor takes them in as it starts.
//!
//! actix's own `Supervisor` restarts an actor that stops, but not one
//! whose handler panicked (the panic ends the supervisor's task too), so
//! the scheduler does it itself, in the same spirit. After
//! [`MAX_RESTARTS`] it stops for good.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::journal::Journal;
use super::messages::Origin;
use super::threads::Placement;
use super::Scheduler;
use crate::event::QueueEvent;
use crate::job::{IdHash, Job, JobId, JobResult};
use crate::middleware::Middleware;
use crate::persistence::Persistence;
use crate::task::TaskDef;

/// Where the queue finds its scheduler: replaced when a successor takes
/// over.
pub(crate) type AddrSlot = Arc<parking_lot::RwLock<Addr<Scheduler>>>;

/// How many times a queue's scheduler is restarted before it stays
/// stopped (a scheduler that cannot start would otherwise restart for
/// ever).
pub(crate) const MAX_RESTARTS: u32 = 16;

/// A new mailbox for a scheduler, and the address that reaches it.
pub(crate) fn mailbox() -> (
    Addr<Scheduler>,
    actix::dev::channel::AddressReceiver<Scheduler>,
) {
    let (tx, rx) = actix::dev::channel::channel(16);
    (Addr::new(tx), rx)
}

/// A task as the successor defines it again.
struct TaskHandover {
    name: Arc<str>,
    def: Option<Arc<TaskDef>>,
    suspended: bool,
}

/// A worker as the successor starts it again.
struct WorkerHandover {
    tags: Vec<String>,
    concurrency: usize,
    placement: Placement,
}

/// What a stopped scheduler hands its successor.
pub(super) struct Handover {
    jobs: Vec<Job>,
    tasks: Vec<TaskHandover>,
    middleware: Vec<Arc<dyn Middleware>>,
    workers: Vec<WorkerHandover>,
    journal: Journal,
    result_waiters: HashMap<JobId, Vec<oneshot::Sender<JobResult>>, IdHash>,
    uniques: super::unique::Uniques,
    suspensions: std::collections::BTreeMap<crate::Suspended, crate::Suspension>,
    restarts: u32,
}

impl std::fmt::Debug for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handover")
            .field("jobs", &self.jobs.len())
            .field("tasks", &self.tasks.len())
            .field("workers", &self.workers.len())
            .field("restarts", &self.restarts)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// From `stopped`: when the scheduler stopped without being shut down,
    /// starts its successor on this thread. Returns whether it did.
    pub(super) fn restart_unless_shut_down(&mut self) -> bool {
        if self.shut_down || self.restarts >= MAX_RESTARTS {
            return false;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            // The runtime it ran on is gone (its thread or process is
            // ending, and the arbiter drops its actors): there is nothing
            // to run a successor on, and nothing left to serve.
            return false;
        }
        let handover = self.handover();
        let restarts = handover.restarts;
        tracing::error!(
            restarts,
            jobs = handover.jobs.len(),
            "the scheduler stopped unexpectedly; a successor takes over"
        );
        let mut next = Scheduler::new(self.setup.clone());
        next.own_thread = self.own_thread;
        next.restarts = restarts;
        next.handover = Some(handover);
        let (addr, rx) = mailbox();
        *self.setup.slot.write() = addr;
        Context::with_receiver(rx).run(next);
        true
    }

    /// Takes out everything the successor needs.
    fn handover(&mut self) -> Handover {
        let entries: Vec<_> = self.jobs.drain().map(|e| (e.task, e.job)).collect();
        let jobs = entries
            .into_iter()
            .map(|(task, job)| job.to_job(&self.routes.tasks[task as usize].name))
            .collect();
        let tasks = self
            .routes
            .tasks
            .iter()
            .filter(|t| t.def.is_some() || t.suspended)
            .map(|t| TaskHandover {
                name: t.name.clone(),
                def: t.def.clone(),
                suspended: t.suspended,
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .filter(|w| w.batch.is_none() && !w.stopped)
            .map(|w| WorkerHandover {
                tags: w.tag_names.clone(),
                concurrency: w.capacity,
                placement: w.placement,
            })
            .collect();
        Handover {
            jobs,
            tasks,
            middleware: self.routes.middleware.clone(),
            workers,
            journal: std::mem::take(&mut self.journal).for_successor(),
            result_waiters: std::mem::take(&mut self.result_waiters),
            uniques: self.uniques.take(),
            suspensions: std::mem::take(&mut self.routes.suspensions),
            restarts: self.restarts + 1,
        }
    }

    /// From `started`: a successor takes over what its predecessor held.
    pub(super) fn take_over(&mut self, handover: Handover, ctx: &mut Context<Self>) {
        let Handover {
            jobs,
            tasks,
            middleware,
            workers,
            journal,
            result_waiters,
            uniques,
            suspensions,
            restarts,
        } = handover;
        self.uniques = uniques;
        self.routes.suspensions = suspensions;
        self.routes.middleware = middleware;
        for task in tasks {
            let slot = self.routes.task_slot(&task.name);
            if let Some(def) = task.def {
                self.install_task(def);
            }
            self.routes.tasks[slot as usize].suspended = task.suspended;
        }
        for w in workers {
            self.add_worker(w.tags, w.concurrency, w.placement, ctx);
        }
        self.journal = journal;
        self.result_waiters = result_waiters;
        self.bus.queue(QueueEvent::Error {
            message: format!(
                "the scheduler stopped unexpectedly and was restarted \
                 (restart {restarts} of at most {MAX_RESTARTS}); it took over {} jobs",
                jobs.len()
            ),
        });
        match self.setup.persistence {
            Persistence::Local => self.reload(jobs, ctx),
            Persistence::Shared | Persistence::InProcess => {
                self.admit_all(jobs, Origin::Restarted);
                self.want_claim(ctx);
                self.finish_turn(ctx);
            }
        }
    }

    fn admit_all(&mut self, jobs: Vec<Job>, origin: Origin) {
        let now = self.begin();
        for job in jobs {
            self.admit(job, origin, now);
        }
    }

    /// On a durable single-process store: stores what the predecessor left
    /// unwritten, reads the pending jobs again, and takes in what it held
    /// (the newest state of those) and then what only the store has. No
    /// message is handled meanwhile, so nothing runs from a stale copy.
    fn reload(&mut self, held: Vec<Job>, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let batch = self.journal.take_batch(0);
        let fut = async move {
            let mut stored = Ok(());
            if !batch.updates.is_empty() {
                stored = store.jobs_update(&batch.updates).await;
            }
            if stored.is_ok() && !batch.final_records.is_empty() {
                stored = store.jobs_insert(&batch.final_records).await;
            }
            let pending = match stored {
                Ok(()) => Some(store.jobs_pending().await),
                Err(_) => None,
            };
            (stored, batch, pending)
        };
        ctx.wait(
            self.store_call(fut)
                .into_actor(self)
                .map(move |done, act, ctx| {
                    act.admit_all(held, Origin::Restarted);
                    match done {
                        Some((Ok(()), _, Some(Ok(jobs)))) => {
                            act.journal.batch_stored();
                            act.admit_all(jobs, Origin::Loaded);
                        }
                        Some((Ok(()), _, pending)) => {
                            act.journal.batch_stored();
                            if let Some(Err(err)) = pending {
                                act.bus.queue(QueueEvent::Error {
                                    message: format!(
                                        "reloading pending jobs after a restart failed: {err}"
                                    ),
                                });
                            }
                        }
                        Some((Err(err), batch, _)) => {
                            act.bus.queue(QueueEvent::Error {
                                message: format!(
                            "storing the stopped scheduler's last changes failed, will retry: {err}"
                        ),
                            });
                            let wait = act.journal.batch_failed(batch, &err);
                            ctx.run_later(wait, |act, ctx| {
                                act.journal.retry_now();
                                act.flush_now(ctx);
                            });
                        }
                        None => act.journal.batch_lost(),
                    }
                    act.finish_turn(ctx);
                }),
        );
    }
}

/// Stops the scheduler as a broken invariant would: its handler panics.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Crash;

#[cfg(test)]
impl Handler<Crash> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Crash, _: &mut Self::Context) {
        panic!("a broken invariant (the restart test's)");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::event::{Event, Filter, QueueEvent};
    use crate::{JobContext, JobError, JobStatus, Queue};

    /// Restarts `queue`'s scheduler with a job running and one delayed;
    /// `behind_its_back`, when given, is a job put in the store directly
    /// (as if its admission were lost with the stopped scheduler's
    /// mailbox), which only a reload finds.
    async fn restarted_queue_loses_no_job(queue: Queue, behind_its_back: bool) {
        let mut events = queue.events(Filter::All);
        let started = std::sync::Arc::new(tokio::sync::Notify::new());
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let (s, r) = (started.clone(), release.clone());
        queue
            .define("work")
            .action(move |job: JobContext<u32>| {
                let (s, r) = (s.clone(), r.clone());
                async move {
                    if job.payload == 0 && job.attempt() == 1 {
                        // Still running when the scheduler stops.
                        s.notify_one();
                        r.notified().await;
                    }
                    Ok::<_, JobError>(job.payload * 2)
                }
            })
            .unwrap();
        queue.process(["default"]).concurrency(4).start().unwrap();
        let running = queue.create("work", 0u32).await.unwrap();
        started.notified().await;
        let delayed = queue
            .create("work", 7u32)
            .delay(Duration::from_millis(300))
            .await
            .unwrap();
        queue.suspend("later").await.unwrap();
        let mut name = None;
        let unseen = crate::NewJob::new("work", 21u32)
            .into_job(queue.now(), &mut name, true)
            .unwrap();
        let unseen_id = unseen.id;
        if behind_its_back {
            queue.store().jobs_insert(&[unseen]).await.unwrap();
        }
        queue.inner.scheduler.do_send(super::Crash);
        // The successor says so.
        loop {
            match events.next().await {
                Some(Event::Queue(QueueEvent::Error { message }))
                    if message.contains("restarted") =>
                {
                    assert!(message.contains("took over 2 jobs"), "{message}");
                    break;
                }
                Some(_) => {}
                None => panic!("the event stream ended"),
            }
        }
        // Every later call reaches it.
        let after = queue.create("work", 5u32).await.unwrap();
        assert_eq!(
            after.result().await.unwrap().value,
            Some(serde_json::json!(10))
        );
        let delayed = delayed.result().await.unwrap();
        assert_eq!(delayed.status, JobStatus::Completed);
        assert_eq!(delayed.value, Some(serde_json::json!(14)));
        // The running job's attempt was cut off, and it ran again.
        let ran = running.result().await.unwrap();
        assert_eq!(ran.status, JobStatus::Completed);
        let job = queue.job(running.id()).await.unwrap();
        assert_eq!(job.attempts, 2);
        assert!(
            job.logs
                .iter()
                .any(|l| l.message.contains("scheduler restarted")),
            "{:?}",
            job.logs
        );
        if behind_its_back {
            let found = queue.result(unseen_id).await.unwrap();
            assert_eq!(found.value, Some(serde_json::json!(42)));
        }
        release.notify_waiters();
        queue.shutdown(Duration::from_secs(5)).await.unwrap();
    }

    use futures::StreamExt;

    #[actix_rt::test]
    async fn a_restarted_scheduler_keeps_the_memory_stores_pending_jobs() {
        let queue = Queue::builder().build().await.unwrap();
        restarted_queue_loses_no_job(queue, false).await;
    }

    #[actix_rt::test]
    async fn jobs_created_as_the_scheduler_stops_are_taken_in_by_its_successor() {
        // The scheduler on this thread: the crash and the creates are all
        // sent before it handles any of them.
        let queue = Queue::builder()
            .scheduler_on_current_thread()
            .build()
            .await
            .unwrap();
        queue
            .define("work")
            .action(|job: JobContext<u32>| async move { Ok::<_, JobError>(job.payload * 2) })
            .unwrap();
        queue.process(["default"]).start().unwrap();
        let mut events = queue.events(Filter::All);
        queue.inner.scheduler.do_send(super::Crash);
        // Created after the crash's message: the message that would take
        // them in is lost with the stopped scheduler's mailbox.
        let mut made = Vec::new();
        for n in 1..=3u32 {
            made.push(queue.create("work", n).await.unwrap());
        }
        // Calls sent before the successor took over fail: wait for it.
        loop {
            match events.next().await {
                Some(Event::Queue(QueueEvent::Error { message }))
                    if message.contains("restarted") =>
                {
                    break
                }
                Some(_) => {}
                None => panic!("the event stream ended"),
            }
        }
        for (n, handle) in (1..=3u32).zip(&made) {
            let result = tokio::time::timeout(Duration::from_secs(10), handle.result())
                .await
                .expect("the successor takes the job in and runs it")
                .unwrap();
            assert_eq!(result.value, Some(serde_json::json!(n * 2)));
        }
        queue.shutdown(Duration::from_secs(5)).await.unwrap();
    }

    #[cfg(feature = "sqlite")]
    #[actix_rt::test]
    async fn a_restarted_scheduler_reloads_a_sqlite_stores_pending_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::sqlite(dir.path().join("jobs.db")).await.unwrap();
        restarted_queue_loses_no_job(queue, true).await;
    }
}
