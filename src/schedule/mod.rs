//! Recurring jobs (feature `cron`): a [`Schedule`] creates a job of its
//! task at every tick of a cron expression in a time zone, or of a fixed
//! interval, exactly once per tick however many processes serve it.
//!
//! ```
//! # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
//! use kessel::schedule::{Missed, Schedule};
//!
//! let queue = kessel::Queue::new();
//! let nightly = Schedule::cron("nightly-report", "report", "0 3 * * *")
//!     .time_zone("Europe/Berlin")
//!     .payload(serde_json::json!({ "kind": "daily" }))
//!     .missed(Missed::RunOnce);
//! queue.schedules().upsert(nightly).await?; // at start-up, every time
//! let listed = queue.schedules().list().await?;
//! assert_eq!(listed[0].name, "nightly-report");
//! assert!(!listed[0].paused);
//! # Ok(()) }
//! ```
//!
//! - **Defined in code, kept in the store.** [`Schedules::upsert`] at
//!   start-up stores the schedule, or leaves it as it is when the stored
//!   one has the same definition (its next run and last job are kept);
//!   a changed definition takes effect from the next tick it computes.
//!   Pause, resume and removal are stored too, so on PostgreSQL they hold
//!   for every process.
//! - **Exactly one job per tick.** The schedule service moves a due
//!   schedule on with a compare-and-set of its next run, in the same
//!   store transaction as the insert of the tick's job: of the passes
//!   that try, one wins and enqueues; a crash leaves the tick either
//!   enqueued and moved on, or still due. On PostgreSQL only the leader's
//!   service runs passes (every process starts one when its queue is
//!   built; a new leader takes over within a lease). See
//!   [`ScheduleService`].
//! - **Missed ticks** (every process was down): [`Missed::RunOnce`] (the
//!   default) enqueues one job for all of them; [`Missed::Skip`] enqueues
//!   none for a tick more than its grace late. Never more than one job
//!   per schedule at a time: after a downtime there is no burst.
//! - **Daylight saving:** see the rule in the [`When`] docs and
//!   `docs/recurring.md`; in short, a fixed time that does not exist runs
//!   at the first instant after the gap, one that happens twice runs at
//!   its first occurrence, once.
//!
//! Each tick's job is an ordinary job of the schedule's task, created with
//! the schedule's payload, its `run_at` the tick's time and its reference
//! `schedule:<name>@<tick in RFC 3339>`.

mod service;
mod spec;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::duration::IntoDuration;
use crate::error::Error;
use crate::store::ScheduleRecord;
use spec::StoredSpec;

pub use crate::store::Upserted;
pub(crate) use service::Runtime;
pub use service::{Pass, ScheduleInfo, ScheduleService, Schedules};
pub use spec::{Missed, When};

/// How late a tick may still run under [`Missed::Skip`] unless
/// [`Schedule::grace`] says otherwise.
///
/// # Examples
///
/// ```
/// assert_eq!(kessel::schedule::DEFAULT_GRACE, std::time::Duration::from_secs(60));
/// ```
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// The longest schedule name, in bytes.
const LONGEST_NAME: usize = 200;

/// A recurring job: a name, a task, a payload, and when it ticks.
///
/// Build one with [`Schedule::cron`] or [`Schedule::every`] and store it
/// with [`Schedules::upsert`]. As with [`NewJob`](crate::NewJob), invalid
/// input (an expression that cannot be read, an unknown time zone, a zero
/// interval, an empty name) is kept and returned as an
/// [`Error::InvalidInput`] naming the field when the schedule is upserted,
/// or at once by [`Schedule::validate`].
///
/// # Examples
///
/// ```
/// use kessel::schedule::{Missed, Schedule};
/// let hourly = Schedule::cron("sync", "sync accounts", "@hourly").missed(Missed::Skip);
/// let often = Schedule::every("heartbeat", "ping", "30s").payload("hello");
/// assert!(hourly.validate().is_ok() && often.validate().is_ok());
///
/// let err = Schedule::cron("bad", "report", "61 * * * *").validate().unwrap_err();
/// assert!(matches!(err, kessel::Error::InvalidInput { field: "schedule.cron", .. }));
/// ```
#[derive(Debug)]
#[must_use = "a schedule does nothing until it is upserted"]
pub struct Schedule {
    name: String,
    task: String,
    payload: String,
    spec: StoredSpec,
    /// The first invalid input, reported when the schedule is used.
    error: Option<Error>,
}

impl Schedule {
    fn new(name: String, task: String) -> Self {
        let mut schedule = Schedule {
            name,
            task,
            payload: "null".into(),
            spec: StoredSpec {
                cron: None,
                every_us: None,
                tz: None,
                missed: Missed::default(),
                grace_us: DEFAULT_GRACE.as_micros() as u64,
                start_at: None,
            },
            error: None,
        };
        if let Err(err) = check_name(&schedule.name) {
            schedule.keep_error(err);
        }
        if let Err(err) = crate::task::validate_task_name(&schedule.task) {
            schedule.keep_error(match err {
                Error::InvalidInput { reason, .. } => Error::InvalidInput {
                    field: "schedule.task",
                    reason,
                },
                other => other,
            });
        }
        schedule
    }

    fn keep_error(&mut self, err: Error) {
        if self.error.is_none() {
            self.error = Some(err);
        }
    }

    /// A schedule called `name` that creates a job of `task` at every tick
    /// of the cron `expression`, read in UTC unless
    /// [`time_zone`](Schedule::time_zone) says otherwise.
    ///
    /// The expression has 5 fields (minute, hour, day of month, month, day
    /// of week), or 6 with seconds first, or is a shorthand: `@yearly`,
    /// `@monthly`, `@weekly`, `@daily`, `@hourly`. Fields take numbers,
    /// ranges (`1-5`), lists (`1,15`), steps (`*/15`), month and weekday
    /// names (`JAN`, `MON`), and croner's `L` (last), `#` (nth weekday)
    /// and `W` (nearest weekday).
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::schedule::Schedule;
    /// let weekdays = Schedule::cron("standup", "remind", "0 9 * * MON-FRI");
    /// let every_10s = Schedule::cron("poll", "poll feed", "*/10 * * * * *");
    /// assert!(weekdays.validate().is_ok() && every_10s.validate().is_ok());
    /// ```
    pub fn cron(
        name: impl Into<String>,
        task: impl Into<String>,
        expression: impl Into<String>,
    ) -> Self {
        let mut schedule = Schedule::new(name.into(), task.into());
        let expression = expression.into();
        if let Err(err) = spec::parse_cron(&expression) {
            schedule.keep_error(err);
        }
        schedule.spec.cron = Some(expression);
        schedule.spec.tz = Some("UTC".into());
        schedule
    }

    /// A schedule called `name` that creates a job of `task` every
    /// `interval` of real time (`"30s"`, `"15m"`, a
    /// [`Duration`]; at least 1 ms). Ticks are counted from the Unix
    /// epoch, so `every("…", "…", "15m")` ticks at :00, :15, :30 and :45
    /// (UTC), or from [`start_at`](Schedule::start_at) when set.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::schedule::Schedule;
    /// assert!(Schedule::every("metrics", "roll up", "5m").validate().is_ok());
    /// let zero = Schedule::every("metrics", "roll up", "0s").validate().unwrap_err();
    /// assert!(matches!(zero, kessel::Error::InvalidInput { field: "schedule.every", .. }));
    /// ```
    pub fn every(
        name: impl Into<String>,
        task: impl Into<String>,
        interval: impl IntoDuration,
    ) -> Self {
        let mut schedule = Schedule::new(name.into(), task.into());
        match interval.into_duration() {
            Ok(every) => match spec::check_interval(every) {
                Ok(_) => schedule.spec.every_us = Some(every.as_micros() as u64),
                Err(err) => schedule.keep_error(err),
            },
            Err(err) => schedule.keep_error(Error::InvalidInput {
                field: "schedule.every",
                reason: err.to_string(),
            }),
        }
        schedule
    }

    /// Reads the cron expression in the IANA time zone `name`
    /// (`Europe/Berlin`, `America/New_York`; default `UTC`). An interval
    /// counts real time and ignores it.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::schedule::Schedule;
    /// let berlin = Schedule::cron("nightly", "report", "0 3 * * *").time_zone("Europe/Berlin");
    /// assert!(berlin.validate().is_ok());
    /// let mars = Schedule::cron("nightly", "report", "0 3 * * *").time_zone("Mars/Olympus");
    /// assert!(matches!(
    ///     mars.validate().unwrap_err(),
    ///     kessel::Error::InvalidInput { field: "schedule.time_zone", .. }
    /// ));
    /// ```
    pub fn time_zone(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        match spec::parse_time_zone(&name) {
            Ok(tz) => {
                if self.spec.cron.is_some() {
                    self.spec.tz = Some(tz.name().to_owned());
                }
            }
            Err(err) => self.keep_error(err),
        }
        self
    }

    /// The payload of every job the schedule creates (anything serde can
    /// serialize; `null` unless set).
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::schedule::Schedule;
    /// let report = Schedule::cron("nightly", "report", "@daily")
    ///     .payload(serde_json::json!({ "window": "24h" }));
    /// assert!(report.validate().is_ok());
    /// ```
    pub fn payload(mut self, payload: impl Serialize) -> Self {
        match serde_json::to_string(&payload) {
            Ok(json) => self.payload = json,
            Err(err) => self.keep_error(Error::InvalidInput {
                field: "schedule.payload",
                reason: err.to_string(),
            }),
        }
        self
    }

    /// What to do about ticks missed while no process served the schedule
    /// (default [`Missed::RunOnce`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::schedule::{Missed, Schedule};
    /// let fresh_only = Schedule::every("prices", "fetch prices", "1m").missed(Missed::Skip);
    /// # let _ = fresh_only;
    /// ```
    pub fn missed(mut self, missed: Missed) -> Self {
        self.spec.missed = missed;
        self
    }

    /// How late a tick may be and still run under [`Missed::Skip`]
    /// (default [`DEFAULT_GRACE`], one minute). A tick found later than
    /// that is skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::schedule::{Missed, Schedule};
    /// let s = Schedule::cron("nightly", "report", "@daily").missed(Missed::Skip).grace("15m");
    /// assert!(s.validate().is_ok());
    /// ```
    pub fn grace(mut self, grace: impl IntoDuration) -> Self {
        match grace.into_duration() {
            Ok(grace) => self.spec.grace_us = grace.as_micros().min(u64::MAX as u128) as u64,
            Err(err) => self.keep_error(Error::InvalidInput {
                field: "schedule.grace",
                reason: err.to_string(),
            }),
        }
        self
    }

    /// The schedule's first tick is its first at or after `at` (default:
    /// its first after the schedule is first upserted). Ticks between `at`
    /// and the time of the upsert, if `at` is past, are missed ticks (see
    /// [`Schedule::missed`]). An interval counts its ticks from `at`.
    ///
    /// # Examples
    ///
    /// ```
    /// use chrono::TimeZone;
    /// use kessel::schedule::Schedule;
    /// let from = chrono::Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
    /// let s = Schedule::every("quarterly", "report", "90d").start_at(from);
    /// assert_eq!(s.next_runs(from, 2)?, vec![from, from + chrono::Duration::days(90)]);
    /// # Ok::<(), kessel::Error>(())
    /// ```
    pub fn start_at(mut self, at: DateTime<Utc>) -> Self {
        match crate::time::check(at, "schedule.start_at") {
            Ok(at) => self.spec.start_at = DateTime::from_timestamp_micros(at.timestamp_micros()),
            Err(err) => self.keep_error(err),
        }
        self
    }

    /// The schedule's name.
    ///
    /// ```
    /// assert_eq!(kessel::schedule::Schedule::every("a", "t", "1s").name(), "a");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The task of the jobs it creates.
    ///
    /// ```
    /// assert_eq!(kessel::schedule::Schedule::every("a", "t", "1s").task(), "t");
    /// ```
    pub fn task(&self) -> &str {
        &self.task
    }

    /// When it ticks.
    ///
    /// ```
    /// use kessel::schedule::{Schedule, When};
    /// let s = Schedule::cron("a", "t", "@daily").time_zone("Asia/Tokyo");
    /// assert_eq!(s.when(), When::Cron { expression: "@daily".into(), time_zone: "Asia/Tokyo".into() });
    /// ```
    pub fn when(&self) -> When {
        self.spec.when()
    }

    /// Checks the schedule: the first invalid input, if any.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming the field: `schedule.name`,
    /// `schedule.task`, `schedule.cron`, `schedule.every`,
    /// `schedule.time_zone`, `schedule.payload`, `schedule.grace` or
    /// `schedule.start_at`.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::schedule::Schedule;
    /// let err = Schedule::every(" ", "report", "1h").validate().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid schedule.name: the schedule name is empty");
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(err) = &self.error {
            return Err(copy_input_error(err));
        }
        let timing = self.spec.timing()?;
        // Without a year field an expression that matches once matches
        // again every few years: one that has no tick after 1970 never has.
        if timing.next_after(DateTime::<Utc>::UNIX_EPOCH) >= crate::time::latest() {
            return Err(Error::InvalidInput {
                field: "schedule.cron",
                reason: format!("`{}` matches no time at all", self.when()),
            });
        }
        Ok(())
    }

    /// The schedule's first `n` ticks at or after `from` (and its
    /// [start](Schedule::start_at), if it has one): a preview, computed as
    /// the schedule service computes them.
    ///
    /// # Errors
    ///
    /// As [`Schedule::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use kessel::schedule::Schedule;
    /// // Berlin moves its clocks from 02:00 to 03:00 on 2026-03-29: the
    /// // 02:30 run happens once, at 03:00 local (01:00 UTC).
    /// let s = Schedule::cron("early", "t", "30 2 * * *").time_zone("Europe/Berlin");
    /// let from = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
    /// let runs = s.next_runs(from, 2)?;
    /// assert_eq!(runs[0], Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap());
    /// assert_eq!(runs[1], Utc.with_ymd_and_hms(2026, 3, 30, 0, 30, 0).unwrap());
    /// # Ok::<(), kessel::Error>(())
    /// ```
    pub fn next_runs(&self, from: DateTime<Utc>, n: usize) -> Result<Vec<DateTime<Utc>>, Error> {
        self.validate()?;
        let timing = self.spec.timing()?;
        let mut runs = Vec::with_capacity(n.min(1024));
        let mut next = timing.at_or_after(from);
        while runs.len() < n && next < crate::time::latest() {
            runs.push(next);
            next = timing.next_after(next);
        }
        Ok(runs)
    }

    /// The record a store keeps, its first tick computed from `now`.
    pub(crate) fn record(&self, now: DateTime<Utc>) -> Result<ScheduleRecord, Error> {
        self.validate()?;
        let timing = self.spec.timing()?;
        Ok(ScheduleRecord::new(
            self.name.clone(),
            self.task.clone(),
            self.payload.clone(),
            self.spec.to_json(),
            timing.first(now),
        ))
    }
}

/// A copy of a kept input error (errors are not `Clone`: a serde error
/// inside some is not).
fn copy_input_error(err: &Error) -> Error {
    match err {
        Error::InvalidInput { field, reason } => Error::InvalidInput {
            field,
            reason: reason.clone(),
        },
        other => Error::InvalidInput {
            field: "schedule",
            reason: other.to_string(),
        },
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    let reason = if name.trim().is_empty() {
        "the schedule name is empty".to_owned()
    } else if name.len() > LONGEST_NAME {
        format!(
            "the schedule name is {} bytes long; at most {LONGEST_NAME}",
            name.len()
        )
    } else if name.chars().any(char::is_control) {
        "the schedule name contains a control character".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::InvalidInput {
        field: "schedule.name",
        reason,
    })
}

/// The reference of the job created for `name`'s tick `due`.
pub(crate) fn tick_reference(name: &str, due: DateTime<Utc>) -> String {
    format!(
        "schedule:{name}@{}",
        due.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    )
}
