//! Events: what happens to jobs and to the queue, delivered to subscribers.
//!
//! Subscribe queue-wide, per task or per job, as a [`futures::Stream`]
//! ([`Queue::events`](crate::Queue::events)) or as an actix
//! `Recipient<Event>` ([`Queue::subscribe`](crate::Queue::subscribe)).
//!
//! Delivery never blocks the scheduler: each subscriber has a bounded
//! buffer. When it is full the event is dropped for that subscriber, counted
//! (see [`Queue::events_missed`](crate::Queue::events_missed)), and the
//! subscriber receives [`Event::Lagged`] with the number it missed as soon as
//! it has room again, before any newer event.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::job::{JobId, LogLine, Progress};

mod channel;
pub(crate) mod relay;

use relay::Relay;

/// What happened to a job.
///
/// For one job the kinds come in this order: `Created`, then `Scheduled`
/// when it was created with a delay; per attempt `Started`, any number of
/// `Progress` and `Log`, then one of `Completed`, `Failed` or `TimedOut`; after
/// a `Failed` or `TimedOut`, either `Retrying` (attempts left) or `Buried`.
/// `Expired` and `Cancelled` end a job that did not complete; `Kicked`
/// brings a buried job back. `Completed`, `Buried`, `Expired` and
/// `Cancelled` are final: exactly one of them ends each job's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum JobEventKind {
    /// The job was stored.
    Created,
    /// It waits for its `run_at`.
    Scheduled {
        /// When it becomes due.
        run_at: DateTime<Utc>,
    },
    /// An attempt started.
    Started,
    /// The handler reported progress.
    Progress(Progress),
    /// The handler wrote a line to the job's log. (The lines kessel writes
    /// itself, at creation and each attempt's start and end, are stored
    /// with the job but not sent as events: the state events say the same.)
    ///
    /// In JSON the line is nested under `line` (`{"kind": "log", "line":
    /// {"at", "attempt", "message", "data"?}}`), so its own `at` and
    /// `attempt` do not repeat the event's keys.
    ///
    /// ```
    /// use kessel::event::JobEventKind;
    /// let line = kessel::LogLine::new(chrono::Utc::now(), 2, "fetched");
    /// let json = serde_json::to_value(JobEventKind::Log(line.clone())).unwrap();
    /// assert_eq!(json["kind"], "log");
    /// assert_eq!(json["line"]["message"], "fetched");
    /// assert_eq!(serde_json::from_value::<JobEventKind>(json).unwrap(), JobEventKind::Log(line));
    /// ```
    #[serde(with = "nested_line")]
    Log(LogLine),
    /// The handler succeeded.
    Completed {
        /// What it returned.
        value: Option<serde_json::Value>,
    },
    /// The attempt failed (an error or a panic).
    Failed {
        /// Why.
        message: String,
    },
    /// The attempt ran past the task's timeout.
    TimedOut,
    /// It will be retried after a backoff.
    Retrying {
        /// When the next attempt may start.
        run_at: DateTime<Utc>,
    },
    /// It failed for good and waits to be kicked or cleaned.
    Buried {
        /// Why.
        message: String,
    },
    /// It was not started before its expiration.
    Expired,
    /// It was cancelled.
    Cancelled,
    /// A buried job was returned to ready.
    Kicked,
}

impl JobEventKind {
    /// The kind's name as written in JSON (`"timed-out"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            JobEventKind::Created => "created",
            JobEventKind::Scheduled { .. } => "scheduled",
            JobEventKind::Started => "started",
            JobEventKind::Progress(_) => "progress",
            JobEventKind::Log(_) => "log",
            JobEventKind::Completed { .. } => "completed",
            JobEventKind::Failed { .. } => "failed",
            JobEventKind::TimedOut => "timed-out",
            JobEventKind::Retrying { .. } => "retrying",
            JobEventKind::Buried { .. } => "buried",
            JobEventKind::Expired => "expired",
            JobEventKind::Cancelled => "cancelled",
            JobEventKind::Kicked => "kicked",
        }
    }

    /// Whether this kind ends the job.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobEventKind::Completed { .. }
                | JobEventKind::Buried { .. }
                | JobEventKind::Expired
                | JobEventKind::Cancelled
        )
    }
}

/// The JSON of [`JobEventKind::Log`]: its line under `line`. Reading
/// also takes the line's fields flattened beside `kind` (as the event log
/// of a shared store held them before), so no stored event is lost.
mod nested_line {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::job::LogLine;

    #[derive(Serialize)]
    struct Out<'a> {
        line: &'a LogLine,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum In {
        Nested { line: LogLine },
        Flat(LogLine),
    }

    pub(super) fn serialize<S: Serializer>(line: &LogLine, s: S) -> Result<S::Ok, S::Error> {
        Out { line }.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LogLine, D::Error> {
        Ok(match In::deserialize(d)? {
            In::Nested { line } | In::Flat(line) => line,
        })
    }
}

/// One thing that happened to one job.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use futures::StreamExt;
/// use kessel::{event::{Event, JobEventKind}, JobContext, JobError};
///
/// let queue = kessel::Queue::new();
/// let mut events = queue.events(kessel::event::Filter::Task("hello".into()));
/// queue.define("hello").action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
/// queue.process(["default"]).start()?;
/// queue.create("hello", ()).await?;
/// let mut kinds = Vec::new();
/// while let Some(Event::Job(e)) = events.next().await {
///     kinds.push(e.kind.name());
///     if e.kind.is_final() { break; }
/// }
/// assert_eq!(kinds, ["created", "started", "completed"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub id: JobId,
    /// Its task.
    pub task: Arc<str>,
    /// Its task's tag, when the task is defined in this process.
    pub tag: Option<Arc<str>>,
    /// The attempt (0 before the first).
    pub attempt: u32,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The node (the process, as [`Queue::nodes`](crate::Queue::nodes)
    /// lists it) where it happened, on a store shared by several processes
    /// (PostgreSQL), where a subscriber receives the events of every
    /// process; `None` on a store of one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<uuid::Uuid>,
    /// What happened.
    #[serde(flatten)]
    pub kind: JobEventKind,
}

/// Something that happened to the queue rather than to one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum QueueEvent {
    /// A task was defined in this process.
    TaskDefined {
        /// The task's name.
        task: String,
        /// Its tag.
        tag: String,
    },
    /// Every job created so far through this queue is stored.
    Drained,
    /// A worker found all of its tags empty.
    Empty {
        /// The worker's tags.
        tags: Vec<String>,
    },
    /// A store or internal error, with its cause.
    Error {
        /// What failed and why.
        message: String,
    },
    /// A worker thread has not answered the scheduler for a while: a
    /// handler blocks it (a blocking call, a long CPU loop, a future that
    /// never yields). Its jobs' timeouts still fire and other threads go
    /// on; the jobs it would run next wait. Sent once, then
    /// [`QueueEvent::ThreadResponsive`] when it answers again.
    ThreadStuck {
        /// The tags of the worker the thread belongs to.
        tags: Vec<String>,
        /// Which of the worker's threads, from 0.
        thread: usize,
        /// The jobs it was running when it stopped answering.
        running: Vec<JobId>,
    },
    /// Jobs are ready for a tag no worker of this process serves: they wait
    /// until one does (a task defined without `.tag(..)` lands in
    /// `default`). Sent once per tag, until a worker serves it; see
    /// `Stats::unserved_tags`.
    TagUnserved {
        /// The tag.
        tag: String,
        /// How many jobs were ready for it.
        waiting: u64,
    },
    /// Retention removed buried jobs past the dead set's cap
    /// ([`Retention::buried_max_count`](crate::Retention::buried_max_count))
    /// or age ([`Retention::buried_max_age`](crate::Retention::buried_max_age)),
    /// oldest first.
    BuriedDropped {
        /// How many were removed.
        count: u64,
        /// The cap in force.
        max_count: Option<usize>,
        /// The age in force, in milliseconds.
        max_age_ms: Option<u64>,
    },
    /// A thread reported by [`QueueEvent::ThreadStuck`] answers again.
    ThreadResponsive {
        /// The tags of the worker the thread belongs to.
        tags: Vec<String>,
        /// Which of the worker's threads, from 0.
        thread: usize,
    },
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Serialize, Message)]
#[rtype(result = "()")]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// Something happened to a job.
    Job(JobEvent),
    /// Something happened to the queue.
    Queue(QueueEvent),
    /// This subscriber's buffer was full and it missed this many events
    /// (or, on a store shared by processes, events it can no longer get
    /// from the shared event log: see [`Queue::events`](crate::Queue::events)).
    Lagged {
        /// How many events were dropped for this subscriber.
        missed: u64,
    },
    /// Something happened to the queue in another process on the same
    /// shared store (PostgreSQL).
    Remote {
        /// The process (node) where it happened.
        node: uuid::Uuid,
        /// What happened.
        event: QueueEvent,
    },
}

/// Which events a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Every job event and every queue event.
    All,
    /// Events of one task's jobs.
    Task(String),
    /// Events of one job.
    Job(JobId),
}

/// The default number of events buffered per subscriber.
pub const DEFAULT_BUFFER: usize = 1024;

enum Sink {
    Channel(channel::Sender<Event>),
    Actor(Recipient<Event>),
}

struct Subscriber {
    id: u64,
    sink: Sink,
    missed: u64,
}

enum Delivery {
    Sent,
    Full,
    Closed,
}

impl Subscriber {
    fn try_send(&self, event: Event) -> Delivery {
        match &self.sink {
            Sink::Channel(tx) => match tx.try_send(event) {
                Ok(()) => Delivery::Sent,
                Err(channel::SendError::Full) => Delivery::Full,
                Err(channel::SendError::Closed) => Delivery::Closed,
            },
            Sink::Actor(r) => match r.try_send(event) {
                Ok(()) => Delivery::Sent,
                Err(SendError::Full(_)) => Delivery::Full,
                Err(SendError::Closed(_)) => Delivery::Closed,
            },
        }
    }

    /// Delivers `event`, after the lag marker if one is owed. Returns false
    /// when the subscriber is gone.
    fn deliver(&mut self, event: &Event, total_missed: &AtomicU64) -> bool {
        if self.missed > 0 {
            match self.try_send(Event::Lagged {
                missed: self.missed,
            }) {
                Delivery::Sent => self.missed = 0,
                Delivery::Full => {
                    self.missed += 1;
                    total_missed.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Delivery::Closed => return false,
            }
        }
        match self.try_send(event.clone()) {
            Delivery::Sent => true,
            Delivery::Full => {
                self.missed += 1;
                total_missed.fetch_add(1, Ordering::Relaxed);
                true
            }
            Delivery::Closed => false,
        }
    }
}

#[derive(Default)]
struct Subscribers {
    all: Vec<Subscriber>,
    by_task: HashMap<String, Vec<Subscriber>>,
    by_job: HashMap<JobId, Vec<Subscriber>>,
}

/// The queue's event hub, shared by the queue handle, the scheduler and
/// running jobs.
///
/// On a store shared by processes it has a [`Relay`]: while some process
/// listens, job events go to the shared log instead of straight to the
/// subscribers, and reach them (and every other process's) from there,
/// in the log's order (see `relay.rs`).
#[derive(Default)]
pub(crate) struct EventBus {
    subscribers: Mutex<Subscribers>,
    count: AtomicUsize,
    next_id: AtomicU64,
    missed: AtomicU64,
    relay: std::sync::OnceLock<Arc<Relay>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &self.count.load(Ordering::Relaxed))
            .field("missed", &self.missed.load(Ordering::Relaxed))
            .field("relay", &self.relay.get())
            .finish()
    }
}

fn deliver_all(list: &mut Vec<Subscriber>, event: &Event, missed: &AtomicU64) -> usize {
    let before = list.len();
    list.retain_mut(|s| s.deliver(event, missed));
    before - list.len()
}

impl EventBus {
    /// Whether anyone listens, here or (on a shared store) in another
    /// process: the scheduler skips building events if not.
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0 || self.relay.get().is_some_and(|r| r.publishing())
    }

    pub(crate) fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Relays events through a shared store's log from now on.
    pub(crate) fn attach_relay(self: &Arc<Self>, relay: Arc<Relay>) {
        if relay.attach(self) {
            relay.set_local(self.count.load(Ordering::SeqCst) > 0);
            let _ = self.relay.set(relay);
        }
    }

    /// The relay, on a shared store.
    pub(crate) fn relay(&self) -> Option<&Arc<Relay>> {
        self.relay.get()
    }

    fn add(&self, filter: Filter, sink: Sink) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Subscriber {
            id,
            sink,
            missed: 0,
        };
        let mut subs = self.subscribers.lock();
        match filter {
            Filter::All => subs.all.push(sub),
            Filter::Task(t) => subs.by_task.entry(t).or_default().push(sub),
            Filter::Job(j) => subs.by_job.entry(j).or_default().push(sub),
        }
        if self.count.fetch_add(1, Ordering::SeqCst) == 0 {
            if let Some(relay) = self.relay.get() {
                relay.set_local(true);
            }
        }
        id
    }

    /// Counts `n` subscribers gone.
    fn gone(&self, n: usize) {
        if n > 0 && self.count.fetch_sub(n, Ordering::SeqCst) == n {
            if let Some(relay) = self.relay.get() {
                relay.set_local(false);
            }
        }
    }

    pub(crate) fn stream(self: &Arc<Self>, filter: Filter, buffer: usize) -> EventStream {
        let (tx, rx) = channel::channel(buffer);
        let id = self.add(filter.clone(), Sink::Channel(tx));
        EventStream {
            rx,
            _subscription: Subscription {
                bus: Arc::downgrade(self),
                filter,
                id,
            },
        }
    }

    pub(crate) fn recipient(
        self: &Arc<Self>,
        filter: Filter,
        recipient: Recipient<Event>,
    ) -> Subscription {
        let id = self.add(filter.clone(), Sink::Actor(recipient));
        Subscription {
            bus: Arc::downgrade(self),
            filter,
            id,
        }
    }

    fn remove(&self, filter: &Filter, id: u64) {
        let mut subs = self.subscribers.lock();
        let list = match filter {
            Filter::All => Some(&mut subs.all),
            Filter::Task(t) => subs.by_task.get_mut(t),
            Filter::Job(j) => subs.by_job.get_mut(j),
        };
        if let Some(list) = list {
            let before = list.len();
            list.retain(|s| s.id != id);
            let gone = before - list.len();
            drop(subs);
            self.gone(gone);
        }
    }

    /// A job event of this process: to the subscribers, or, while
    /// relaying, to the shared log they read it from.
    pub(crate) fn job(&self, event: JobEvent) {
        if let Some(relay) = self.relay.get() {
            if relay.publishing() {
                relay.push_job(event);
                return;
            }
        }
        self.deliver_job(event);
    }

    /// Sends a job event to the queue-wide, task and job subscribers here.
    pub(crate) fn deliver_job(&self, event: JobEvent) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let last = event.kind.is_final();
        let id = event.id;
        let mut subs = self.subscribers.lock();
        // The maps are looked up (a hash each) only when someone follows a
        // task or a job: a queue-wide subscriber alone costs no lookups.
        let task = (!subs.by_task.is_empty()).then(|| event.task.clone());
        let event = Event::Job(event);
        let mut gone = deliver_all(&mut subs.all, &event, &self.missed);
        if let Some(task) = task {
            if let Some(list) = subs.by_task.get_mut(&*task) {
                gone += deliver_all(list, &event, &self.missed);
                if list.is_empty() {
                    subs.by_task.remove(&*task);
                }
            }
        }
        let by_job = if subs.by_job.is_empty() {
            None
        } else {
            subs.by_job.get_mut(&id)
        };
        if let Some(list) = by_job {
            gone += deliver_all(list, &event, &self.missed);
            if last || list.is_empty() {
                // The job is over: its subscriptions end with it.
                gone += subs.by_job.remove(&id).map_or(0, |l| l.len());
            }
        }
        drop(subs);
        self.gone(gone);
    }

    /// A queue event of this process: to the queue-wide subscribers here,
    /// and to the shared log while another process listens.
    pub(crate) fn queue(&self, event: QueueEvent) {
        if let Some(relay) = self.relay.get() {
            if relay.others() {
                relay.push(relay::Entry::Queue(event.clone()));
            }
        }
        self.deliver_queue(Event::Queue(event));
    }

    /// Sends an event to the queue-wide subscribers here.
    pub(crate) fn deliver_queue(&self, event: Event) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut subs = self.subscribers.lock();
        let gone = deliver_all(&mut subs.all, &event, &self.missed);
        drop(subs);
        self.gone(gone);
    }

    /// Tells every subscriber here that it missed `missed` events: at
    /// once where there is room, else before its next event.
    pub(crate) fn lagged(&self, missed: u64) {
        if missed == 0 || self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut subs = self.subscribers.lock();
        let Subscribers {
            all,
            by_task,
            by_job,
        } = &mut *subs;
        let lists = std::iter::once(all)
            .chain(by_task.values_mut())
            .chain(by_job.values_mut());
        for list in lists {
            for s in list.iter_mut() {
                s.missed += missed;
                if let Delivery::Sent = s.try_send(Event::Lagged { missed: s.missed }) {
                    s.missed = 0;
                }
            }
        }
    }
}

/// A stream of [`Event`]s; dropping it unsubscribes.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() {
/// let queue = kessel::Queue::new();
/// let events = queue.events(kessel::event::Filter::All);
/// drop(events); // unsubscribed
/// # }
/// ```
pub struct EventStream {
    rx: channel::Receiver<Event>,
    /// Unsubscribes when the stream is dropped, not only at the next event
    /// (which a finished job's stream never gets).
    _subscription: Subscription,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl futures::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        // The channel hands over what is buffered without a per-turn
        // budget, so a subscriber empties its buffer in the turn it gets
        // instead of falling behind a scheduler that emits events for
        // hundreds of jobs in one of its own. Only an empty buffer waits.
        self.rx.poll_recv(cx)
    }
}

/// An actix subscription; dropping it unsubscribes. A recipient whose actor
/// stopped is unsubscribed at the next event.
#[derive(Debug)]
#[must_use = "dropping the subscription unsubscribes"]
pub struct Subscription {
    bus: std::sync::Weak<EventBus>,
    filter: Filter,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            bus.remove(&self.filter, self.id);
        }
    }
}
