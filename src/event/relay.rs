//! Events between processes: the link between a queue's [`EventBus`] and a
//! store shared by several processes (PostgreSQL), which carries the
//! events in a log every process reads.
//!
//! The rules, which the store's side (`store/postgres/relay.rs`) keeps:
//!
//! - **Off unless someone listens.** A process publishes its job events
//!   to the log only while some process (itself included) has a
//!   subscriber; otherwise the bus drops them as it always did, and the
//!   relay costs one atomic load per event.
//! - **One order for everyone.** While relaying, a process's subscribers
//!   receive every job event, its own included, from the log and in the
//!   log's order, so events of one job arrive in the order they happened
//!   whichever processes they happened in. A job's `created` (and
//!   `scheduled`) event is written in the transaction that inserts the
//!   job, so it precedes anything another process does with the job.
//! - **Queue events** of this process are delivered here at once (an
//!   error must reach its subscribers when the database is down); those
//!   of other processes arrive from the log as [`Event::Remote`].
//! - **Nothing silently lost.** A reader goes on from the last position
//!   it read after a reconnect; events it cannot get any more (removed
//!   from the log, or never written because the outbox overflowed while
//!   the database was away) reach its subscribers as [`Event::Lagged`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use dashmap::DashMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Event, EventBus, JobEvent, JobEventKind, QueueEvent};
use crate::job::{Job, JobStatus};

/// The most events a process holds for the log while it cannot write
/// them (the database is away); older ones are dropped and announced to
/// the readers as missed.
pub(crate) const OUTBOX_MAX: usize = 100_000;

/// How long a write waits for the reader to find where the log stands.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One entry of the log, as written (a row holds an array of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Entry {
    /// A job event (its kind nested, not flattened: a log line's own `at`
    /// and `attempt` would otherwise collide with the event's).
    Job(#[serde(with = "wire")] JobEvent),
    /// A queue event of the writing process.
    Queue(QueueEvent),
    /// The writing process dropped this many events it could not write.
    Lost(u64),
}

/// A job event as the log holds it.
mod wire {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use uuid::Uuid;

    use crate::event::{JobEvent, JobEventKind};
    use crate::job::JobId;

    #[derive(Serialize)]
    struct Out<'a> {
        id: JobId,
        task: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        tag: Option<&'a str>,
        attempt: u32,
        at: DateTime<Utc>,
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<Uuid>,
        kind: &'a JobEventKind,
    }

    #[derive(Deserialize)]
    struct In {
        id: JobId,
        task: Arc<str>,
        #[serde(default)]
        tag: Option<Arc<str>>,
        attempt: u32,
        at: DateTime<Utc>,
        #[serde(default)]
        node: Option<Uuid>,
        kind: JobEventKind,
    }

    pub(super) fn serialize<S: Serializer>(e: &JobEvent, s: S) -> Result<S::Ok, S::Error> {
        Out {
            id: e.id,
            task: &e.task,
            tag: e.tag.as_deref(),
            attempt: e.attempt,
            at: e.at,
            node: e.node,
            kind: &e.kind,
        }
        .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<JobEvent, D::Error> {
        let e = In::deserialize(d)?;
        Ok(JobEvent {
            id: e.id,
            task: e.task,
            tag: e.tag,
            attempt: e.attempt,
            at: e.at,
            node: e.node,
            kind: e.kind,
        })
    }
}

/// Entries as one row of the log writes them: a JSON array, and its length.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogBatch {
    pub(crate) json: String,
    pub(crate) entries: i32,
}

impl LogBatch {
    /// `entries` as a row, or `None` when there are none (or they cannot
    /// be written as JSON, which a kessel event always can).
    pub(crate) fn of(entries: &[Entry]) -> Option<LogBatch> {
        if entries.is_empty() {
            return None;
        }
        Some(LogBatch {
            json: serde_json::to_string(entries).ok()?,
            entries: i32::try_from(entries.len()).unwrap_or(i32::MAX),
        })
    }
}

/// What a new job's `created` event is made of.
#[derive(Debug, Clone)]
pub(crate) struct CreatedJob {
    id: crate::job::JobId,
    task: Arc<str>,
    attempt: u32,
    created_at: chrono::DateTime<chrono::Utc>,
    /// Its `run_at`, when it waits for it.
    scheduled: Option<chrono::DateTime<chrono::Utc>>,
}

impl CreatedJob {
    pub(crate) fn of(job: &Job) -> Self {
        CreatedJob {
            id: job.id,
            task: job.task.clone(),
            attempt: job.attempts,
            created_at: job.created_at,
            scheduled: (job.status == JobStatus::Scheduled).then_some(job.run_at),
        }
    }
}

/// The relay's state in one process; shared by the bus, the store's
/// insert path and the store's relay tasks.
pub(crate) struct Relay {
    node: Uuid,
    /// This process has subscribers.
    local: AtomicBool,
    /// Another process has subscribers.
    others: AtomicBool,
    /// The store's listener may miss notifications (it is starting or
    /// reconnecting): no read of the listeners clears `others` meanwhile.
    deaf: AtomicBool,
    /// Times the listeners may have changed (a notification, or the
    /// listener deaf or hearing again): a read of the listeners begun
    /// before may be stale (see [`Relay::set_others_read`]).
    listeners_heard: AtomicU64,
    /// The reader knows where the log stands, so what is written from now
    /// on reaches this process's subscribers. Writes wait for it while
    /// this process has subscribers.
    positioned: AtomicBool,
    positioned_changed: Notify,
    /// Events waiting to be written, oldest first.
    outbox: Mutex<Outbox>,
    /// Woken when the outbox has events.
    pub(crate) flush: Notify,
    /// Woken when `local` changes.
    pub(crate) local_changed: Notify,
    /// Woken when the listeners may have changed (a notification).
    pub(crate) listeners_changed: Notify,
    /// Woken when the log may have grown (a notification or a reconnect).
    pub(crate) log_grew: Notify,
    /// The tag of each task defined in this process, for the events the
    /// store writes (it knows jobs, not task definitions).
    tags: DashMap<Arc<str>, Arc<str>>,
    bus: Mutex<Weak<EventBus>>,
    written: AtomicU64,
}

#[derive(Default)]
struct Outbox {
    entries: VecDeque<Entry>,
    /// Dropped since the last write.
    lost: u64,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("node", &self.node)
            .field("local", &self.local.load(Ordering::Relaxed))
            .field("others", &self.others.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// The relay of process `node`.
    pub(crate) fn new(node: Uuid) -> Self {
        Relay {
            node,
            local: AtomicBool::new(false),
            others: AtomicBool::new(false),
            listeners_heard: AtomicU64::new(0),
            deaf: AtomicBool::new(false),
            positioned: AtomicBool::new(false),
            positioned_changed: Notify::new(),
            outbox: Mutex::new(Outbox::default()),
            flush: Notify::new(),
            local_changed: Notify::new(),
            listeners_changed: Notify::new(),
            log_grew: Notify::new(),
            tags: DashMap::new(),
            bus: Mutex::new(Weak::new()),
            written: AtomicU64::new(0),
        }
    }

    /// Delivers what the log brings to `bus`, unless the relay serves
    /// another queue's bus already (two queues on one store object): false
    /// then, and that queue's events stay in its process.
    pub(crate) fn attach(&self, bus: &Arc<EventBus>) -> bool {
        let mut current = self.bus.lock();
        if current.strong_count() > 0 {
            return false;
        }
        *current = Arc::downgrade(bus);
        true
    }

    /// Whether job events go to the log.
    #[inline]
    pub(crate) fn publishing(&self) -> bool {
        self.local.load(Ordering::Relaxed) || self.others.load(Ordering::Relaxed)
    }

    /// Whether this process has subscribers.
    pub(crate) fn local(&self) -> bool {
        self.local.load(Ordering::Relaxed)
    }

    /// Whether another process has subscribers.
    pub(crate) fn others(&self) -> bool {
        self.others.load(Ordering::Relaxed)
    }

    pub(crate) fn set_local(&self, on: bool) {
        if self.local.swap(on, Ordering::SeqCst) != on {
            self.local_changed.notify_one();
        }
    }

    /// A notification said the listeners changed, most likely a new one
    /// came: relays from now on, until a read of the listeners begun
    /// after this finds nobody. So a job whose wake-up comes after that
    /// notification (the new listener is about to create it) is relayed.
    pub(crate) fn listeners_may_have_changed(&self) {
        self.listeners_heard.fetch_add(1, Ordering::SeqCst);
        self.others.store(true, Ordering::SeqCst);
        self.listeners_changed.notify_one();
    }

    /// The store's listener does not hear notifications (it starts, or
    /// lost its connection): a listener may come unheard, so this process
    /// relays until its listener hears again ([`Relay::hearing`]) and the
    /// listeners were read after that.
    pub(crate) fn not_hearing(&self) {
        self.deaf.store(true, Ordering::SeqCst);
        self.listeners_heard.fetch_add(1, Ordering::SeqCst);
        self.others.store(true, Ordering::SeqCst);
    }

    /// The store's listener hears notifications again (its `LISTEN` took
    /// hold): the listeners are read at once, and that read settles it.
    pub(crate) fn hearing(&self) {
        self.deaf.store(false, Ordering::SeqCst);
        self.listeners_may_have_changed();
    }

    /// Where a read of the listeners begins: pass it to
    /// [`Relay::set_others_read`] with what the read found.
    pub(crate) fn listeners_read_begins(&self) -> u64 {
        self.listeners_heard.load(Ordering::SeqCst)
    }

    /// What a read of the listeners begun at `began` found. A read that
    /// found nobody does not turn relaying off while the listener does
    /// not hear, nor if the listeners may have changed since it began: it
    /// may have run before a new listener committed, and the read asked
    /// for then settles it.
    pub(crate) fn set_others_read(&self, on: bool, began: u64) {
        if on {
            self.others.store(true, Ordering::SeqCst);
            return;
        }
        let stale = || {
            self.deaf.load(Ordering::SeqCst) || self.listeners_heard.load(Ordering::SeqCst) != began
        };
        if stale() {
            return;
        }
        self.others.store(false, Ordering::SeqCst);
        // A change between the check and the store counted before setting
        // `others`: either it stored after this or the count shows it now.
        if stale() {
            self.others.store(true, Ordering::SeqCst);
        }
    }

    /// The reader knows (or no longer knows) where the log stands.
    pub(crate) fn set_positioned(&self, on: bool) {
        self.positioned.store(on, Ordering::SeqCst);
        if on {
            self.positioned_changed.notify_waiters();
        }
    }

    /// Waits until what is written now reaches this process's subscribers
    /// too: at once unless this process has subscribers and its reader has
    /// not yet found where the log stands.
    /// Waits at most [`READY_WAIT`]: a reader that cannot reach the
    /// database must not hold writes back for ever.
    pub(crate) async fn ready_to_write(&self) {
        let give_up = tokio::time::Instant::now() + READY_WAIT;
        loop {
            let changed = self.positioned_changed.notified();
            if !self.local()
                || self.positioned.load(Ordering::SeqCst)
                || tokio::time::Instant::now() >= give_up
            {
                return;
            }
            // The reader may have stopped meanwhile; look again now and then.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), changed).await;
        }
    }

    /// Remembers task `task`'s tag, for events written by the store.
    pub(crate) fn define(&self, task: &str, tag: &str) {
        self.tags.insert(Arc::from(task), Arc::from(tag));
    }

    /// Queues an entry for the log.
    pub(crate) fn push(&self, entry: Entry) {
        {
            let mut out = self.outbox.lock();
            if out.entries.len() >= OUTBOX_MAX {
                out.entries.pop_front();
                out.lost += 1;
            }
            out.entries.push_back(entry);
        }
        self.flush.notify_one();
    }

    /// A job event of this process, for the log.
    pub(crate) fn push_job(&self, mut event: JobEvent) {
        event.node.get_or_insert(self.node);
        self.push(Entry::Job(event));
    }

    /// Takes what waits for the log, a "lost" entry first if some were dropped.
    pub(crate) fn take(&self) -> Vec<Entry> {
        let mut out = self.outbox.lock();
        let mut taken = Vec::with_capacity(out.entries.len() + 1);
        if out.lost > 0 {
            taken.push(Entry::Lost(std::mem::take(&mut out.lost)));
        }
        taken.extend(out.entries.drain(..));
        taken
    }

    /// Puts back entries a write failed to store, before any newer ones,
    /// dropping the oldest past [`OUTBOX_MAX`].
    pub(crate) fn put_back(&self, entries: Vec<Entry>) {
        let mut out = self.outbox.lock();
        let mut lost = 0;
        for entry in entries.into_iter().rev() {
            match entry {
                Entry::Lost(n) => lost += n,
                other => out.entries.push_front(other),
            }
        }
        while out.entries.len() > OUTBOX_MAX {
            out.entries.pop_front();
            lost += 1;
        }
        out.lost += lost;
    }

    /// Counts entries written to the log.
    pub(crate) fn wrote(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The `created` (and `scheduled`) events of `jobs`, as the JSON array
    /// the store writes in the transaction that inserts them, or `None`
    /// when nobody listens.
    pub(crate) fn created(&self, jobs: &[Job]) -> Option<LogBatch> {
        if !self.publishing() || jobs.is_empty() {
            return None;
        }
        self.created_of(jobs.iter().map(CreatedJob::of))
    }

    /// [`Relay::created`] of jobs already encoded for the store.
    pub(crate) fn created_of(&self, jobs: impl Iterator<Item = CreatedJob>) -> Option<LogBatch> {
        if !self.publishing() {
            return None;
        }
        let mut entries = Vec::new();
        for job in jobs {
            let event = |kind| {
                Entry::Job(JobEvent {
                    id: job.id,
                    task: job.task.clone(),
                    tag: self.tags.get(&job.task).map(|t| t.value().clone()),
                    attempt: job.attempt,
                    at: job.created_at,
                    node: Some(self.node),
                    kind,
                })
            };
            entries.push(event(JobEventKind::Created));
            if let Some(run_at) = job.scheduled {
                entries.push(event(JobEventKind::Scheduled { run_at }));
            }
        }
        LogBatch::of(&entries)
    }

    /// Delivers entries read from the log, written by `node`, to this
    /// process's subscribers.
    pub(crate) fn deliver(&self, node: Uuid, entries: Vec<Entry>) {
        let Some(bus) = self.bus.lock().upgrade() else {
            return;
        };
        for entry in entries {
            match entry {
                Entry::Job(event) => bus.deliver_job(event),
                // This process delivered its own at once.
                Entry::Queue(_) if node == self.node => {}
                Entry::Queue(event) => bus.deliver_queue(Event::Remote { node, event }),
                Entry::Lost(missed) => bus.lagged(missed),
            }
        }
    }

    /// Tells this process's subscribers they missed `missed` events.
    pub(crate) fn lagged(&self, missed: u64) {
        if let Some(bus) = self.bus.lock().upgrade() {
            bus.lagged(missed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Entry {
        Entry::Job(JobEvent {
            id: crate::job::JobId::new(),
            task: Arc::from("t"),
            tag: None,
            attempt: n,
            at: chrono::Utc::now(),
            node: None,
            kind: JobEventKind::Started,
        })
    }

    #[test]
    fn no_read_of_the_listeners_stops_relaying_while_the_listener_is_deaf() {
        let relay = Relay::new(Uuid::new_v4());
        assert!(
            !relay.publishing(),
            "nobody listens before the store listens"
        );
        // The store's listener starts: until it hears and the listeners
        // were read after that, a job claimed may be one somebody listens
        // for (a listener that came meanwhile was not heard of).
        relay.not_hearing();
        assert!(relay.publishing());
        let began = relay.listeners_read_begins();
        relay.set_others_read(false, began);
        assert!(relay.others(), "a read while deaf is not believed");
        let began = relay.listeners_read_begins();
        relay.hearing();
        relay.set_others_read(false, began);
        assert!(relay.others(), "nor one begun before it heard");
        relay.set_others_read(false, relay.listeners_read_begins());
        assert!(!relay.others(), "one begun once it hears is");
        // The connection is lost: relaying again until it hears again.
        relay.not_hearing();
        assert!(relay.others());
        relay.hearing();
        relay.set_others_read(false, relay.listeners_read_begins());
        assert!(!relay.others());
    }

    #[test]
    fn a_read_of_the_listeners_begun_before_a_listener_was_heard_of_does_not_stop_relaying() {
        let relay = Relay::new(Uuid::new_v4());
        relay.not_hearing();
        relay.hearing();
        relay.set_others_read(false, relay.listeners_read_begins());
        assert!(!relay.publishing());
        // The watcher reads the table; a new listener commits and its
        // notification is heard before the read's answer (nobody) comes.
        let began = relay.listeners_read_begins();
        relay.listeners_may_have_changed();
        relay.set_others_read(false, began);
        assert!(relay.others(), "the stale answer is ignored");
        // The read the notification asked for settles it either way.
        relay.set_others_read(true, relay.listeners_read_begins());
        assert!(relay.others());
        relay.set_others_read(false, relay.listeners_read_begins());
        assert!(!relay.others());
        // A read that finds a listener is believed whenever it began.
        relay.set_others_read(true, 0);
        assert!(relay.others());
    }

    #[test]
    fn entries_read_back_as_written() {
        let entries = vec![
            event(1),
            Entry::Queue(QueueEvent::Drained),
            // A log line has an `at` and an `attempt` of its own.
            Entry::Job(JobEvent {
                id: crate::job::JobId::new(),
                task: Arc::from("t"),
                tag: None,
                attempt: 2,
                at: chrono::Utc::now(),
                node: Some(Uuid::new_v4()),
                kind: JobEventKind::Log(crate::job::LogLine::new(
                    chrono::Utc::now() - chrono::Duration::seconds(3),
                    1,
                    "fetched",
                )),
            }),
            Entry::Lost(3),
            Entry::Job(JobEvent {
                id: crate::job::JobId::new(),
                task: Arc::from("t"),
                tag: Some(Arc::from("mail")),
                attempt: 2,
                at: chrono::Utc::now(),
                node: Some(Uuid::new_v4()),
                kind: JobEventKind::Progress(crate::job::Progress {
                    current: 3,
                    total: 9,
                }),
            }),
        ];
        let json = serde_json::to_string(&entries).unwrap();
        let back: Vec<Entry> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, entries);
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_says_how_many() {
        let relay = Relay::new(Uuid::new_v4());
        for n in 0..(OUTBOX_MAX as u32 + 2) {
            relay.push(event(n));
        }
        let taken = relay.take();
        assert_eq!(taken[0], Entry::Lost(2));
        assert_eq!(taken.len(), OUTBOX_MAX + 1);
        match &taken[1] {
            Entry::Job(e) => assert_eq!(e.attempt, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn entries_put_back_come_before_newer_ones() {
        let relay = Relay::new(Uuid::new_v4());
        relay.push(event(1));
        relay.push(event(2));
        let taken = relay.take();
        relay.push(event(3));
        relay.put_back(taken);
        let again = relay.take();
        let attempts: Vec<u32> = again
            .iter()
            .map(|e| match e {
                Entry::Job(e) => e.attempt,
                _ => 0,
            })
            .collect();
        assert_eq!(attempts, [1, 2, 3]);
    }
}
