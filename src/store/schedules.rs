//! The stored side of recurring jobs: one record per schedule, and the
//! parameter types of the [`Store`](super::Store) methods that keep them.
//!
//! A store keeps schedules as opaque records: their timing (`spec`) is
//! kessel's own JSON text, read and computed by the queue (feature
//! `cron`); the store compares it, never parses it. What the store does
//! guarantee is the compare-and-set of [`Store::schedule_advance`]: a
//! schedule's tick moves on, and the tick's job is stored, together and
//! only once, however many processes try at the same moment.
//!
//! [`Store::schedule_advance`]: super::Store::schedule_advance

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::JobId;

/// One schedule as a store keeps it.
///
/// # Examples
///
/// ```
/// use kessel::store::ScheduleRecord;
/// let record = ScheduleRecord::new("nightly", "report", "null", r#"{"cron":"0 3 * * *"}"#, chrono::Utc::now());
/// assert!(!record.paused && record.last_job.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduleRecord {
    /// The schedule's name, unique in the store.
    pub name: String,
    /// The task of the jobs it creates.
    pub task: String,
    /// The payload of the jobs it creates, as JSON text.
    pub payload: String,
    /// Its timing, as kessel's JSON text (the store only compares it).
    pub spec: String,
    /// Whether it is paused: a paused schedule creates no jobs.
    pub paused: bool,
    /// When its next tick is due.
    pub next_run: DateTime<Utc>,
    /// The tick its last job was created for (the time it was created, for
    /// a job run by hand).
    pub last_run: Option<DateTime<Utc>>,
    /// The last job it created.
    pub last_job: Option<JobId>,
}

impl ScheduleRecord {
    /// A new, unpaused record that has created no job yet.
    ///
    /// ```
    /// let at = chrono::Utc::now();
    /// let record = kessel::store::ScheduleRecord::new("n", "t", "null", "{}", at);
    /// assert_eq!((record.next_run, record.last_run), (at, None));
    /// ```
    pub fn new(
        name: impl Into<String>,
        task: impl Into<String>,
        payload: impl Into<String>,
        spec: impl Into<String>,
        next_run: DateTime<Utc>,
    ) -> Self {
        ScheduleRecord {
            name: name.into(),
            task: task.into(),
            payload: payload.into(),
            spec: spec.into(),
            paused: false,
            next_run,
            last_run: None,
            last_job: None,
        }
    }

    /// Whether `other` defines the same schedule (task, payload and spec),
    /// whatever its state.
    ///
    /// ```
    /// use kessel::store::ScheduleRecord;
    /// let at = chrono::Utc::now();
    /// let a = ScheduleRecord::new("n", "t", "null", "{}", at);
    /// let mut b = a.clone();
    /// b.paused = true;
    /// assert!(a.same_definition(&b));
    /// b.task = "other".into();
    /// assert!(!a.same_definition(&b));
    /// ```
    pub fn same_definition(&self, other: &ScheduleRecord) -> bool {
        self.task == other.task && self.payload == other.payload && self.spec == other.spec
    }
}

/// What [`Store::schedule_upsert`](super::Store::schedule_upsert) did.
///
/// # Examples
///
/// ```
/// use kessel::store::Upserted;
/// assert_ne!(Upserted::Created, Upserted::Unchanged);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upserted {
    /// No schedule had the name: the record was stored as given.
    Created,
    /// A schedule of that name had another definition: its task, payload,
    /// spec and next run were replaced; paused, last run and last job kept.
    Changed,
    /// A schedule of that name had the same definition: nothing changed
    /// (its next run, paused flag and last job are kept).
    Unchanged,
}

/// What [`Store::schedule_pause`](super::Store::schedule_pause) sets.
///
/// # Examples
///
/// ```
/// use kessel::store::SchedulePause;
/// let pause = SchedulePause { name: "nightly".into(), paused: true, next_run: None };
/// # let _ = pause;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulePause {
    /// The schedule.
    pub name: String,
    /// Paused (`true`) or running.
    pub paused: bool,
    /// A new next run, when given (a resumed schedule skips the ticks it
    /// missed while paused).
    pub next_run: Option<DateTime<Utc>>,
}

/// A compare-and-set of a schedule's next run: what
/// [`Store::schedule_advance`](super::Store::schedule_advance) applies.
///
/// It applies only while the stored schedule's `next_run` is still `due`
/// (and, unless `even_if_paused`, it is not paused): the process whose
/// advance applies is the one that enqueues the tick.
///
/// # Examples
///
/// ```
/// use kessel::store::ScheduleAdvance;
/// let due = chrono::Utc::now();
/// let advance = ScheduleAdvance {
///     name: "nightly".into(),
///     due,
///     next: due + chrono::Duration::days(1),
///     last_run: Some(due),
///     last_job: None,
///     even_if_paused: false,
/// };
/// # let _ = advance;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleAdvance {
    /// The schedule.
    pub name: String,
    /// The next run the caller read: the advance applies only if it is
    /// still the stored one.
    pub due: DateTime<Utc>,
    /// The next run to store.
    pub next: DateTime<Utc>,
    /// The last run to record, when a job is created (kept otherwise).
    pub last_run: Option<DateTime<Utc>>,
    /// The job created, if any (kept otherwise).
    pub last_job: Option<JobId>,
    /// Applies to a paused schedule too (a job run by hand).
    pub even_if_paused: bool,
}

impl ScheduleAdvance {
    /// Whether it applies to `record`.
    ///
    /// ```
    /// use kessel::store::{ScheduleAdvance, ScheduleRecord};
    /// let due = chrono::Utc::now();
    /// let mut record = ScheduleRecord::new("n", "t", "null", "{}", due);
    /// let advance = ScheduleAdvance {
    ///     name: "n".into(), due, next: due + chrono::Duration::hours(1),
    ///     last_run: Some(due), last_job: None, even_if_paused: false,
    /// };
    /// assert!(advance.applies_to(&record));
    /// record.paused = true;
    /// assert!(!advance.applies_to(&record));
    /// ```
    pub fn applies_to(&self, record: &ScheduleRecord) -> bool {
        record.name == self.name
            && record.next_run == self.due
            && (self.even_if_paused || !record.paused)
    }

    /// Applies it to `record` (which it [applies to](Self::applies_to)):
    /// the next run, and the last run and job where given.
    ///
    /// ```
    /// use kessel::store::{ScheduleAdvance, ScheduleRecord};
    /// let due = chrono::Utc::now();
    /// let mut record = ScheduleRecord::new("n", "t", "null", "{}", due);
    /// let next = due + chrono::Duration::hours(1);
    /// let advance = ScheduleAdvance {
    ///     name: "n".into(), due, next, last_run: None, last_job: None, even_if_paused: false,
    /// };
    /// advance.apply_to(&mut record);
    /// assert_eq!((record.next_run, record.last_run), (next, None));
    /// ```
    pub fn apply_to(&self, record: &mut ScheduleRecord) {
        record.next_run = self.next;
        if self.last_run.is_some() {
            record.last_run = self.last_run;
        }
        if self.last_job.is_some() {
            record.last_job = self.last_job;
        }
    }
}

/// Schedules kept in process memory, by name: the memory store's, and a
/// ready-made implementation for a store of your own that keeps its
/// schedules in memory.
///
/// # Examples
///
/// ```
/// use kessel::store::{ScheduleRecord, ScheduleTable, Upserted};
/// let mut table = ScheduleTable::default();
/// let record = ScheduleRecord::new("nightly", "report", "null", "{}", chrono::Utc::now());
/// assert_eq!(table.upsert(&record), Upserted::Created);
/// assert_eq!(table.upsert(&record), Upserted::Unchanged);
/// assert_eq!(table.list().len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScheduleTable {
    by_name: BTreeMap<String, ScheduleRecord>,
}

impl ScheduleTable {
    /// Every schedule, by name.
    ///
    /// ```
    /// assert!(kessel::store::ScheduleTable::default().list().is_empty());
    /// ```
    pub fn list(&self) -> Vec<ScheduleRecord> {
        self.by_name.values().cloned().collect()
    }

    /// As [`Store::schedule_upsert`](super::Store::schedule_upsert).
    ///
    /// ```
    /// use kessel::store::{ScheduleRecord, ScheduleTable, Upserted};
    /// let mut table = ScheduleTable::default();
    /// let mut record = ScheduleRecord::new("n", "t", "null", "{}", chrono::Utc::now());
    /// assert_eq!(table.upsert(&record), Upserted::Created);
    /// record.spec = r#"{"every_us":1000}"#.into();
    /// assert_eq!(table.upsert(&record), Upserted::Changed);
    /// ```
    pub fn upsert(&mut self, record: &ScheduleRecord) -> Upserted {
        match self.by_name.get_mut(&record.name) {
            None => {
                self.by_name.insert(record.name.clone(), record.clone());
                Upserted::Created
            }
            Some(stored) if stored.same_definition(record) => Upserted::Unchanged,
            Some(stored) => {
                stored.task.clone_from(&record.task);
                stored.payload.clone_from(&record.payload);
                stored.spec.clone_from(&record.spec);
                stored.next_run = record.next_run;
                Upserted::Changed
            }
        }
    }

    /// As [`Store::schedule_remove`](super::Store::schedule_remove).
    ///
    /// ```
    /// assert!(!kessel::store::ScheduleTable::default().remove("n"));
    /// ```
    pub fn remove(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    /// As [`Store::schedule_pause`](super::Store::schedule_pause).
    ///
    /// ```
    /// use kessel::store::{SchedulePause, ScheduleTable};
    /// let pause = SchedulePause { name: "n".into(), paused: true, next_run: None };
    /// assert!(!ScheduleTable::default().pause(&pause), "no schedule of that name");
    /// ```
    pub fn pause(&mut self, pause: &SchedulePause) -> bool {
        match self.by_name.get_mut(&pause.name) {
            Some(stored) => {
                stored.paused = pause.paused;
                if let Some(next) = pause.next_run {
                    stored.next_run = next;
                }
                true
            }
            None => false,
        }
    }

    /// The compare-and-set of
    /// [`Store::schedule_advance`](super::Store::schedule_advance), without
    /// the jobs: whether it applied.
    ///
    /// ```
    /// use kessel::store::{ScheduleAdvance, ScheduleRecord, ScheduleTable};
    /// let due = chrono::Utc::now();
    /// let mut table = ScheduleTable::default();
    /// table.upsert(&ScheduleRecord::new("n", "t", "null", "{}", due));
    /// let advance = ScheduleAdvance {
    ///     name: "n".into(), due, next: due + chrono::Duration::hours(1),
    ///     last_run: Some(due), last_job: None, even_if_paused: false,
    /// };
    /// assert!(table.advance(&advance));
    /// assert!(!table.advance(&advance), "the tick moved on");
    /// ```
    pub fn advance(&mut self, advance: &ScheduleAdvance) -> bool {
        match self.by_name.get_mut(&advance.name) {
            Some(stored) if advance.applies_to(stored) => {
                advance.apply_to(stored);
                true
            }
            _ => false,
        }
    }
}
