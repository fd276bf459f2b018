//! The schedule service: one pass ([`ScheduleService::run_once`]) that
//! enqueues the due ticks, and the timer that runs a pass whenever the
//! earliest next run comes (on tokio's clock, so a paused test clock
//! drives it); and [`Schedules`], the queue's handle to both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::value::RawValue;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::spec::{Missed, StoredSpec, When};
use super::{tick_reference, Schedule};
use crate::error::Error;
use crate::event::QueueEvent;
use crate::job::JobId;
use crate::new_job::NewJob;
use crate::queue::{Inner, JobHandle, Queue};
use crate::store::{ScheduleAdvance, SchedulePause, ScheduleRecord, StoreError, Upserted};

/// The longest the timer sleeps between passes on a store of one process
/// (every change to its schedules wakes it).
const POLL: Duration = Duration::from_secs(60);

/// The longest the leader's timer sleeps between passes on a shared store
/// that does not say when another process added, changed or resumed a
/// schedule (see `SharedStore::schedule_changes`): such a change is seen
/// within this. A store that says so (PostgreSQL) wakes the timer at once,
/// and [`POLL`] covers a lost notification.
const SHARED_POLL: Duration = Duration::from_secs(1);

/// How often a process that does not lead a shared store looks whether it
/// leads now (a check of its own state, not a store call): a new leader's
/// first pass comes within this of its election.
const FOLLOWER_WAIT: Duration = Duration::from_secs(1);

/// How long the timer waits after a pass that failed (the store was
/// unreachable) before it tries again.
const RETRY: Duration = Duration::from_secs(1);

/// The state of a queue's schedule timer, kept by the queue.
#[derive(Debug, Default)]
pub(crate) struct Runtime {
    signals: Arc<Signals>,
}

#[derive(Debug, Default)]
struct Signals {
    started: AtomicBool,
    /// Passes run only when called (`QueueBuilder::manual_schedules`).
    manual: AtomicBool,
    /// Something asked for the service here (a schedule stored or
    /// resumed, or `Schedules::start`), beyond starting with a shared
    /// store: a store without schedules is then worth an error event.
    asked: AtomicBool,
    /// A schedule was added or resumed: look again now.
    wake: Notify,
    /// The queue is shutting down.
    stop: CancellationToken,
}

impl Runtime {
    /// Stops the timer (the queue shuts down).
    pub(crate) fn stop(&self) {
        self.signals.stop.cancel();
    }

    fn wake(&self) {
        self.signals.wake.notify_one();
    }

    /// Leaves passes to callers of [`ScheduleService::run_once`]: upserts
    /// no longer start the timer.
    pub(crate) fn set_manual(&self) {
        self.signals.manual.store(true, Ordering::SeqCst);
    }

    /// Starts the timer, unless the queue's schedules are run by hand.
    fn start_unless_manual(&self, queue: &Queue) {
        self.signals.asked.store(true, Ordering::SeqCst);
        if !self.signals.manual.load(Ordering::SeqCst) {
            self.start(queue);
        }
    }

    /// On a shared store, starts the timer at build (unless the queue's
    /// schedules are run by hand): whichever process leads runs the passes,
    /// whether or not it ever defined a schedule itself.
    pub(crate) fn start_if_shared(&self, queue: &Queue) {
        if queue.inner.store.shared().is_some() && !self.signals.manual.load(Ordering::SeqCst) {
            self.start(queue);
        }
    }

    /// Starts the timer unless it runs: on the current actix arbiter, with
    /// a weak handle, so it never keeps the queue alive.
    fn start(&self, queue: &Queue) {
        if self.signals.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(&queue.inner);
        let signals = self.signals.clone();
        actix_rt::spawn(run_timer(weak, signals));
    }
}

async fn run_timer(queue: Weak<Inner>, signals: Arc<Signals>) {
    // Changes other processes make, when the store tells of them; taken
    // before the first pass, which reads everything anyway.
    let mut changes = queue
        .upgrade()
        .and_then(|inner| inner.store.shared().and_then(|s| s.schedule_changes()));
    loop {
        if signals.stop.is_cancelled() {
            break;
        }
        let Some(inner) = queue.upgrade() else { break };
        let queue = Queue { inner };
        if !queue.inner.scheduler.connected() {
            break;
        }
        let shared = queue.inner.store.shared().is_some();
        // Armed before asking, so an election in between still wakes it.
        let node = queue.inner.node.clone();
        let mut elected = std::pin::pin!(node.became_leader());
        elected.as_mut().enable();
        if shared && !queue.is_leader() {
            // The leader runs the passes of a shared store: this process
            // waits until it leads (a killed leader is replaced within a
            // lease), and passes the moment it does, so the first tick is
            // not a look late. The ticks' compare-and-set keeps them once
            // even when two processes briefly both think they lead.
            drop(queue);
            tokio::select! {
                () = tokio::time::sleep(FOLLOWER_WAIT) => {}
                () = elected => {}
                () = signals.stop.cancelled() => break,
            }
            continue;
        }
        let longest = if shared && changes.is_none() {
            SHARED_POLL
        } else {
            POLL
        };
        let now = queue.now();
        let wait = match ScheduleService::of(&queue).run_once(now).await {
            Ok(pass) => {
                for (name, why) in &pass.failed {
                    queue.inner.bus.queue(QueueEvent::Error {
                        message: format!("schedule `{name}`: {why}"),
                    });
                }
                let wait = pass
                    .next_wake
                    .map_or(longest, |at| {
                        (at - queue.now()).to_std().unwrap_or_default()
                    })
                    .clamp(Duration::from_millis(1), longest);
                // A tick that failed stays due: try it again soon.
                if pass.failed.is_empty() {
                    wait
                } else {
                    wait.min(RETRY)
                }
            }
            Err(Error::Store(StoreError::Unsupported(_)))
                if !signals.asked.load(Ordering::SeqCst) =>
            {
                // Started only because the store is shared, and it keeps
                // no schedules: nothing to report.
                break;
            }
            Err(Error::Store(StoreError::Unsupported(what))) => {
                // Nothing to retry: the store keeps no schedules.
                queue.inner.bus.queue(QueueEvent::Error {
                    message: format!(
                        "the schedule service stops: the store does not support {what}"
                    ),
                });
                break;
            }
            Err(err) => {
                queue.inner.bus.queue(QueueEvent::Error {
                    message: format!("the schedule service's pass failed: {err}"),
                });
                RETRY
            }
        };
        drop(queue);
        let changed = async {
            match changes.as_mut() {
                Some(stream) => {
                    if stream.next().await.is_none() {
                        // The store stopped telling: poll as if it never did.
                        changes = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = signals.wake.notified() => {}
            () = changed => {}
            () = signals.stop.cancelled() => break,
        }
    }
}

/// One schedule as [`Schedules::list`] shows it.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::schedule::{Schedule, When};
/// let queue = kessel::Queue::new();
/// queue.schedules().upsert(Schedule::every("tick", "ping", "1h")).await?;
/// let info = queue.schedules().get("tick").await?;
/// assert_eq!(info.when, When::Every(std::time::Duration::from_secs(3600)));
/// assert!(info.next_run > queue.now() && info.last_job.is_none());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ScheduleInfo {
    /// Its name.
    pub name: String,
    /// The task of the jobs it creates.
    pub task: String,
    /// Their payload.
    pub payload: serde_json::Value,
    /// When it ticks.
    pub when: When,
    /// What it does about missed ticks.
    pub missed: Missed,
    /// Whether it is paused.
    pub paused: bool,
    /// Its next tick (while paused: the one it was waiting for).
    pub next_run: DateTime<Utc>,
    /// The tick its last job was created for (the time of a
    /// [`run_now`](Schedules::run_now)).
    pub last_run: Option<DateTime<Utc>>,
    /// The last job it created.
    pub last_job: Option<JobId>,
}

impl ScheduleInfo {
    fn of(record: ScheduleRecord) -> Result<ScheduleInfo, Error> {
        let corrupt = |reason: String| {
            Error::Store(StoreError::Corrupt {
                id: format!("(schedule {})", record.name),
                reason,
            })
        };
        let spec = StoredSpec::from_json(&record.spec).map_err(corrupt)?;
        let payload = serde_json::from_str(&record.payload)
            .map_err(|e| corrupt(format!("payload is not JSON: {e}")))?;
        Ok(ScheduleInfo {
            when: spec.when(),
            missed: spec.missed,
            payload,
            name: record.name,
            task: record.task,
            paused: record.paused,
            next_run: record.next_run,
            last_run: record.last_run,
            last_job: record.last_job,
        })
    }
}

/// What one [`ScheduleService::run_once`] did.
///
/// # Examples
///
/// ```
/// let pass = kessel::schedule::Pass::default();
/// assert!(pass.enqueued.is_empty() && pass.next_wake.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pass {
    /// The ticks this pass enqueued: each schedule's name and its job.
    pub enqueued: Vec<(String, JobId)>,
    /// Schedules whose due tick this pass skipped ([`Missed::Skip`], the
    /// tick more than its grace late).
    pub skipped: Vec<String>,
    /// Schedules whose due tick another pass (another process's) took
    /// first: it enqueued or skipped that tick, not this one.
    pub taken: Vec<String>,
    /// Schedules whose tick could not be enqueued, with why (the tick
    /// stays due and is tried again at the next pass).
    pub failed: Vec<(String, String)>,
    /// The earliest next run of the schedules not paused: when the next
    /// pass is due.
    pub next_wake: Option<DateTime<Utc>>,
}

impl Pass {
    fn wake_at(&mut self, at: DateTime<Utc>) {
        if at < crate::time::latest() && self.next_wake.is_none_or(|w| at < w) {
            self.next_wake = Some(at);
        }
    }
}

/// The service that enqueues the ticks of a queue's schedules: one pass
/// at a time, [`run_once`](ScheduleService::run_once), with the time
/// passed in. The queue's timer calls it whenever the earliest next run
/// comes; tests call it with the times they choose.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use chrono::Duration;
/// use kessel::schedule::Schedule;
///
/// let queue = kessel::Queue::new();
/// queue.schedules().upsert(Schedule::every("tick", "ping", "1h")).await?;
/// let service = queue.schedules().service();
/// let due = queue.schedules().get("tick").await?.next_run;
/// assert!(service.run_once(due - Duration::seconds(1)).await?.enqueued.is_empty());
/// let pass = service.run_once(due).await?;
/// assert_eq!(pass.enqueued.len(), 1);
/// assert_eq!(pass.next_wake, Some(due + Duration::hours(1)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ScheduleService {
    queue: Queue,
}

impl ScheduleService {
    fn of(queue: &Queue) -> Self {
        ScheduleService {
            queue: queue.clone(),
        }
    }

    /// One pass at time `now`: for each schedule not paused whose next run
    /// is at or before `now`, enqueues one job for that tick (or, under
    /// [`Missed::Skip`], none for a tick more than the grace late) and
    /// moves the schedule on to its first tick after `now`. However many
    /// ticks passed since, a schedule gets at most one job per pass.
    ///
    /// Each move is a compare-and-set on the schedule's stored next run,
    /// in the same store transaction as the job's insert, so passes of
    /// many processes (or of one, called twice) at the same `now` enqueue
    /// each tick once: the others find it [taken](Pass::taken).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the schedules cannot be read (the store is
    /// unreachable, or keeps no schedules). A schedule whose tick fails
    /// alone is listed in [`Pass::failed`] and stays due.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use chrono::TimeZone;
    /// use kessel::schedule::Schedule;
    /// let queue = kessel::Queue::builder().manual_schedules().build().await?;
    /// let noon = chrono::Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    /// queue.schedules().upsert(Schedule::cron("noon", "t", "0 12 * * *").start_at(noon)).await?;
    /// let service = queue.schedules().service();
    /// assert_eq!(service.run_once(noon).await?.enqueued.len(), 1);
    /// assert_eq!(service.run_once(noon).await?.enqueued.len(), 0, "once per tick");
    /// # Ok(()) }
    /// ```
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<Pass, Error> {
        let store = self.queue.store().clone();
        let mut pass = Pass::default();
        for record in store.schedules_list().await? {
            if record.paused {
                continue;
            }
            if record.next_run > now {
                pass.wake_at(record.next_run);
                continue;
            }
            let name = record.name.clone();
            match self.tick(record, now).await {
                Ok((outcome, next)) => {
                    match outcome {
                        Outcome::Enqueued(id) => pass.enqueued.push((name, id)),
                        Outcome::Skipped => pass.skipped.push(name),
                        Outcome::Taken => pass.taken.push(name),
                    }
                    pass.wake_at(next);
                }
                Err(err) => pass.failed.push((name, err.to_string())),
            }
        }
        Ok(pass)
    }

    /// The due tick of `record`, at `now`: enqueued, skipped or taken,
    /// and the next run the schedule moved on to.
    async fn tick(
        &self,
        record: ScheduleRecord,
        now: DateTime<Utc>,
    ) -> Result<(Outcome, DateTime<Utc>), Error> {
        let spec = StoredSpec::from_json(&record.spec).map_err(|reason| Error::InvalidInput {
            field: "schedule.spec",
            reason,
        })?;
        let timing = spec.timing()?;
        let due = record.next_run;
        let next = timing.next_after(now.max(due));
        let late = (now - due).to_std().unwrap_or_default();
        let run = match timing.missed {
            Missed::RunOnce => true,
            Missed::Skip => late <= timing.grace,
        };
        let mut advance = ScheduleAdvance {
            name: record.name.clone(),
            due,
            next,
            last_run: None,
            last_job: None,
            even_if_paused: false,
        };
        if !run {
            let applied = self.queue.store().schedule_advance(&advance, &[]).await?;
            let outcome = if applied {
                Outcome::Skipped
            } else {
                Outcome::Taken
            };
            return Ok((outcome, next));
        }
        advance.last_run = Some(due);
        let job = tick_job(&record, due)?;
        Ok(match self.queue.create_tick(&advance, job).await? {
            Some(handle) => (Outcome::Enqueued(handle.id()), next),
            None => (Outcome::Taken, next),
        })
    }
}

enum Outcome {
    Enqueued(JobId),
    Skipped,
    Taken,
}

/// The job for `record`'s tick `due`.
fn tick_job(record: &ScheduleRecord, due: DateTime<Utc>) -> Result<NewJob, Error> {
    let payload =
        RawValue::from_string(record.payload.clone()).map_err(|e| Error::InvalidInput {
            field: "schedule.payload",
            reason: format!("the stored payload is not JSON: {e}"),
        })?;
    Ok(NewJob::new(record.task.clone(), payload)
        .run_at(due)
        .reference(tick_reference(&record.name, due)))
}

/// The queue's schedules: what [`Queue::schedules`] returns.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::schedule::{Schedule, Upserted};
/// let queue = kessel::Queue::new();
/// let schedules = queue.schedules();
/// assert_eq!(schedules.upsert(Schedule::cron("nightly", "report", "0 3 * * *")).await?, Upserted::Created);
/// schedules.pause("nightly").await?;
/// assert!(schedules.get("nightly").await?.paused);
/// schedules.resume("nightly").await?;
/// assert!(schedules.remove("nightly").await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Schedules<'q> {
    queue: &'q Queue,
}

impl<'q> Schedules<'q> {
    pub(crate) fn of(queue: &'q Queue) -> Self {
        Schedules { queue }
    }

    fn runtime(&self) -> &Runtime {
        &self.queue.inner.schedules
    }

    /// Stores `schedule`, or leaves the stored one as it is when it has the
    /// same definition (task, payload, timing): its next run, paused flag
    /// and last job are kept, so calling this at every start-up is what it
    /// is for. A changed definition replaces the stored one and waits for
    /// its first tick after now (paused stays paused). Starts the queue's
    /// schedule service (see [`Schedules::start`]), unless the queue was
    /// built with [`manual_schedules`](crate::QueueBuilder::manual_schedules).
    ///
    /// # Errors
    ///
    /// The schedule's [`Error::InvalidInput`] (see
    /// [`Schedule::validate`]); [`Error::Store`] when the store fails or
    /// keeps no schedules; [`Error::ShutDown`].
    ///
    /// # Panics
    ///
    /// Outside a running actix system (the service's timer starts on the
    /// current arbiter), as [`Schedules::start`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::schedule::{Schedule, Upserted};
    /// let queue = kessel::Queue::new();
    /// let define = || Schedule::every("rollup", "roll up metrics", "5m");
    /// assert_eq!(queue.schedules().upsert(define()).await?, Upserted::Created);
    /// assert_eq!(queue.schedules().upsert(define()).await?, Upserted::Unchanged);
    /// let faster = Schedule::every("rollup", "roll up metrics", "1m");
    /// assert_eq!(queue.schedules().upsert(faster).await?, Upserted::Changed);
    /// # Ok(()) }
    /// ```
    pub async fn upsert(&self, schedule: Schedule) -> Result<Upserted, Error> {
        let record = schedule.record(self.queue.now())?;
        if !self.queue.inner.scheduler.connected() {
            return Err(Error::ShutDown);
        }
        let upserted = self.queue.store().schedule_upsert(&record).await?;
        self.runtime().start_unless_manual(self.queue);
        if upserted != Upserted::Unchanged {
            self.runtime().wake();
        }
        Ok(upserted)
    }

    /// Removes the schedule called `name`: it creates no more jobs; those
    /// it created stay. Whether there was one (so removing a schedule no
    /// longer defined can run at every start-up).
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// assert!(!queue.schedules().remove("retired").await?);
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, name: &str) -> Result<bool, Error> {
        Ok(self.queue.store().schedule_remove(name).await?)
    }

    /// Pauses the schedule called `name`, in the store: no process
    /// enqueues its ticks until it is [resumed](Schedules::resume).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSchedule`]; [`Error::Store`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let err = queue.schedules().pause("nope").await.unwrap_err();
    /// assert!(matches!(err, kessel::Error::UnknownSchedule(name) if name == "nope"));
    /// # Ok(()) }
    /// ```
    pub async fn pause(&self, name: &str) -> Result<(), Error> {
        let pause = SchedulePause {
            name: name.to_owned(),
            paused: true,
            next_run: None,
        };
        if self.queue.store().schedule_pause(&pause).await? {
            Ok(())
        } else {
            Err(Error::UnknownSchedule(name.to_owned()))
        }
    }

    /// Resumes the schedule called `name`: it waits for its first tick
    /// after now (ticks that passed while it was paused are not run,
    /// whatever its [`Missed`] policy). Resuming a schedule that is not
    /// paused changes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSchedule`]; [`Error::Store`]; the stored
    /// schedule's timing, should it not be readable.
    ///
    /// # Panics
    ///
    /// As [`Schedules::upsert`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::schedule::Schedule;
    /// let queue = kessel::Queue::new();
    /// queue.schedules().upsert(Schedule::every("tick", "ping", "1m")).await?;
    /// queue.schedules().pause("tick").await?;
    /// queue.schedules().resume("tick").await?;
    /// let info = queue.schedules().get("tick").await?;
    /// assert!(!info.paused && info.next_run > queue.now());
    /// # Ok(()) }
    /// ```
    pub async fn resume(&self, name: &str) -> Result<(), Error> {
        let record = self.record(name).await?;
        if !record.paused {
            return Ok(());
        }
        let timing = StoredSpec::from_json(&record.spec)
            .map_err(|reason| Error::InvalidInput {
                field: "schedule.spec",
                reason,
            })?
            .timing()?;
        let pause = SchedulePause {
            name: name.to_owned(),
            paused: false,
            next_run: Some(timing.next_after(self.queue.now().max(record.next_run))),
        };
        if !self.queue.store().schedule_pause(&pause).await? {
            return Err(Error::UnknownSchedule(name.to_owned()));
        }
        self.runtime().start_unless_manual(self.queue);
        self.runtime().wake();
        Ok(())
    }

    /// Every schedule in the store, by name.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], also for a stored schedule this kessel cannot
    /// read.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::schedule::Schedule;
    /// let queue = kessel::Queue::new();
    /// queue.schedules().upsert(Schedule::every("b", "t", "1m")).await?;
    /// queue.schedules().upsert(Schedule::every("a", "t", "1m")).await?;
    /// let names: Vec<_> = queue.schedules().list().await?.into_iter().map(|s| s.name).collect();
    /// assert_eq!(names, ["a", "b"]);
    /// # Ok(()) }
    /// ```
    pub async fn list(&self) -> Result<Vec<ScheduleInfo>, Error> {
        self.queue
            .store()
            .schedules_list()
            .await?
            .into_iter()
            .map(ScheduleInfo::of)
            .collect()
    }

    /// The schedule called `name`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSchedule`]; as [`Schedules::list`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.schedules().upsert(kessel::schedule::Schedule::cron("n", "t", "@daily")).await?;
    /// assert_eq!(queue.schedules().get("n").await?.task, "t");
    /// assert!(queue.schedules().get("m").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, name: &str) -> Result<ScheduleInfo, Error> {
        ScheduleInfo::of(self.record(name).await?)
    }

    async fn record(&self, name: &str) -> Result<ScheduleRecord, Error> {
        self.queue
            .store()
            .schedules_list()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::UnknownSchedule(name.to_owned()))
    }

    /// Creates a job of the schedule called `name` now, outside its ticks
    /// (paused or not), and records it as its last job; its next tick is
    /// unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSchedule`]; [`Error::Store`]; [`Error::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::schedule::Schedule;
    /// let queue = kessel::Queue::new();
    /// queue.schedules().upsert(Schedule::cron("nightly", "report", "@daily")).await?;
    /// let job = queue.schedules().run_now("nightly").await?;
    /// assert_eq!(queue.schedules().get("nightly").await?.last_job, Some(job.id()));
    /// # Ok(()) }
    /// ```
    pub async fn run_now(&self, name: &str) -> Result<JobHandle, Error> {
        // The compare-and-set on the next run the record shows: should a
        // tick move it meanwhile, read again.
        for _ in 0..8 {
            let record = self.record(name).await?;
            let now = self.queue.now();
            let advance = ScheduleAdvance {
                name: record.name.clone(),
                due: record.next_run,
                next: record.next_run,
                last_run: Some(now),
                last_job: None,
                even_if_paused: true,
            };
            let job = tick_job(&record, now)?;
            if let Some(handle) = self.queue.create_tick(&advance, job).await? {
                return Ok(handle);
            }
        }
        Err(Error::Store(StoreError::Locked(format!(
            "schedule `{name}` kept moving while a job was run by hand"
        ))))
    }

    /// Starts the queue's schedule service, unless it runs: a timer on the
    /// current actix arbiter that runs a [pass](ScheduleService::run_once)
    /// whenever the earliest next run comes, and at least every minute (on
    /// a shared store, another process may add or resume a schedule). It
    /// stops when the queue shuts down. [`Schedules::upsert`] and
    /// [`Schedules::resume`] start it (unless the queue was built with
    /// [`manual_schedules`](crate::QueueBuilder::manual_schedules)); a
    /// process that upserts no schedule but should serve those in the
    /// store (a SQLite file reopened, a PostgreSQL schema other processes
    /// define) calls this.
    ///
    /// # Panics
    ///
    /// Outside a running actix system.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// let queue = kessel::Queue::new();
    /// queue.schedules().start();
    /// queue.schedules().start(); // once is enough; twice changes nothing
    /// # }
    /// ```
    pub fn start(&self) {
        self.runtime().signals.asked.store(true, Ordering::SeqCst);
        self.runtime().start(self.queue);
    }

    /// The schedule service of this queue, for passes at chosen times
    /// (tests, tools); the timer [`Schedules::start`] starts calls the same.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let pass = queue.schedules().service().run_once(queue.now()).await?;
    /// assert!(pass.enqueued.is_empty(), "no schedules, no jobs");
    /// # Ok(()) }
    /// ```
    pub fn service(&self) -> ScheduleService {
        ScheduleService::of(self.queue)
    }
}
