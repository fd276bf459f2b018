//! A schedule's timing: what is stored (the JSON `spec` text) and what is
//! computed from it (the ticks), kept apart from the store and the clock:
//! every function here takes the time it works from.
//!
//! # The daylight-saving rule
//!
//! Cron expressions are read on the wall clock of the schedule's time zone
//! (croner's search, which follows the Open Cron Pattern Specification):
//!
//! - a wall-clock time that does not exist (the hour skipped when clocks
//!   go forward) runs at the first instant after the gap, once, on that
//!   day: `30 2 * * *` in `Europe/Berlin` runs at 03:00 CEST on the day
//!   clocks go from 02:00 to 03:00;
//! - a fixed wall-clock time that happens twice (the hour repeated when
//!   clocks go back) runs once, at its first occurrence: `30 2 * * *` runs
//!   at 02:30 CEST, not again at 02:30 CET;
//! - expressions with a wildcard or step in the second, minute or hour
//!   field (`0 * * * *`, `*/15 * * * *`) follow the real passing of time:
//!   in a skipped hour there are no ticks, and a repeated hour has its
//!   ticks twice, once per pass, as an hourly job runs every real hour.
//!
//! Intervals (`every`) count real time, not wall-clock time, and ignore
//! the time zone.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::time;

/// What a schedule does about ticks that passed while no process served
/// it (every process was down, or the schedule's service was not running).
///
/// # Examples
///
/// ```
/// use kessel::schedule::{Missed, Schedule};
/// let every_hour = Schedule::cron("sync", "sync accounts", "@hourly").missed(Missed::Skip);
/// assert_eq!(Missed::default(), Missed::RunOnce);
/// # let _ = every_hour;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Missed {
    /// One job for all the ticks that were missed, as soon as a process
    /// serves the schedule again (the default: a missed tick is never
    /// silently lost).
    #[default]
    RunOnce,
    /// No job for a tick found more than the schedule's grace late (one
    /// minute unless set with [`Schedule::grace`](super::Schedule::grace));
    /// the schedule waits for its next tick.
    Skip,
}

/// When a schedule ticks: a cron expression in a time zone, or a fixed
/// interval.
///
/// # Examples
///
/// ```
/// use kessel::schedule::When;
/// let when = When::Every(std::time::Duration::from_secs(60));
/// assert_eq!(when.to_string(), "every 60s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum When {
    /// A cron expression, read in an IANA time zone.
    Cron {
        /// The expression as given (5 or 6 fields, or a shorthand).
        expression: String,
        /// The time zone's IANA name (`UTC` unless set).
        time_zone: String,
    },
    /// A fixed interval of real time.
    Every(Duration),
}

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            When::Cron {
                expression,
                time_zone,
            } => write!(f, "cron `{expression}` in {time_zone}"),
            When::Every(d) => write!(f, "every {d:?}"),
        }
    }
}

/// The JSON text a store keeps as a schedule's `spec`. Field order is
/// fixed, so the same schedule always gives the same text (upserts compare
/// it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) every_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tz: Option<String>,
    pub(crate) missed: Missed,
    pub(crate) grace_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) start_at: Option<DateTime<Utc>>,
}

/// A schedule's timing, parsed: what ticks are computed from.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    clock: Clock,
    pub(crate) missed: Missed,
    pub(crate) grace: Duration,
    start_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
enum Clock {
    Cron(Box<Cron>, Tz),
    Every(i64),
}

/// The shortest interval: one tick of the timer wheel.
const SHORTEST: Duration = Duration::from_millis(1);

/// The longest interval: about 100 years (longer ones would run past the
/// times kessel accepts before they tick twice).
const LONGEST: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// Reads a cron expression: 5 fields (minutes), 6 (seconds first) or a
/// shorthand (`@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`).
pub(crate) fn parse_cron(expression: &str) -> Result<Cron, Error> {
    let invalid = |reason: String| Error::InvalidInput {
        field: "schedule.cron",
        reason,
    };
    let fields = expression.split_whitespace().count();
    if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(invalid(format!(
            "`{expression}` has {fields} fields; a cron expression has 5 (minute hour day month weekday) or 6 (second first)"
        )));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    // croner returns errors for what it cannot read; the guard keeps a
    // panic on some input nobody tried from reaching the caller.
    let parsed = std::panic::catch_unwind(|| parser.parse(expression))
        .map_err(|_| invalid(format!("`{expression}` cannot be read")))?;
    parsed.map_err(|e| invalid(format!("`{expression}`: {e}")))
}

/// Reads an IANA time zone name (`Europe/Berlin`, `UTC`).
pub(crate) fn parse_time_zone(name: &str) -> Result<Tz, Error> {
    Tz::from_str(name).map_err(|_| Error::InvalidInput {
        field: "schedule.time_zone",
        reason: format!(
            "`{name}` is not an IANA time zone name (such as `Europe/Berlin` or `UTC`)"
        ),
    })
}

/// Checks an interval.
pub(crate) fn check_interval(every: Duration) -> Result<i64, Error> {
    if every < SHORTEST {
        return Err(Error::InvalidInput {
            field: "schedule.every",
            reason: format!("{every:?} is shorter than the shortest interval, 1ms"),
        });
    }
    if every > LONGEST {
        return Err(Error::InvalidInput {
            field: "schedule.every",
            reason: format!("{every:?} is longer than the longest interval, 100 years"),
        });
    }
    Ok(every.as_micros() as i64)
}

impl StoredSpec {
    /// The JSON text.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a spec of strings and numbers serializes")
    }

    /// Reads the JSON text a store kept.
    pub(crate) fn from_json(text: &str) -> Result<StoredSpec, String> {
        serde_json::from_str(text).map_err(|e| format!("unreadable schedule spec: {e}"))
    }

    /// The timing, parsed and checked.
    pub(crate) fn timing(&self) -> Result<Timing, Error> {
        let clock = match (&self.cron, self.every_us) {
            (Some(expression), None) => {
                let tz = parse_time_zone(self.tz.as_deref().unwrap_or("UTC"))?;
                Clock::Cron(Box::new(parse_cron(expression)?), tz)
            }
            (None, Some(us)) => Clock::Every(check_interval(Duration::from_micros(us))?),
            _ => {
                return Err(Error::InvalidInput {
                    field: "schedule",
                    reason: "a schedule needs either a cron expression or an interval".into(),
                })
            }
        };
        Ok(Timing {
            clock,
            missed: self.missed,
            grace: Duration::from_micros(self.grace_us),
            start_at: self.start_at,
        })
    }

    /// When, as shown to users.
    pub(crate) fn when(&self) -> When {
        match (&self.cron, self.every_us) {
            (Some(expression), _) => When::Cron {
                expression: expression.clone(),
                time_zone: self.tz.clone().unwrap_or_else(|| "UTC".into()),
            },
            (None, us) => When::Every(Duration::from_micros(us.unwrap_or(0))),
        }
    }
}

/// `at` cut to whole seconds (cron ticks fall on whole seconds).
fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(chrono::Duration::seconds(1))
        .unwrap_or(at)
}

/// A computed tick, or [`time::latest`] ("never") when there is none
/// within the times kessel accepts.
fn in_range(tick: Option<DateTime<Utc>>) -> DateTime<Utc> {
    tick.filter(|t| *t <= time::latest())
        .unwrap_or_else(time::latest)
}

impl Timing {
    /// The first tick strictly after `after`; [`time::latest`] when there
    /// is none (an expression that never matches again).
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        if let Some(start) = self.start_at.filter(|s| after < *s) {
            return self.first_from(start);
        }
        match &self.clock {
            Clock::Cron(cron, tz) => {
                let local = tz.from_utc_datetime(&whole_second(after).naive_utc());
                in_range(
                    cron.find_next_occurrence(&local, false)
                        .ok()
                        .map(|t| t.with_timezone(&Utc)),
                )
            }
            Clock::Every(us) => {
                let anchor = self.anchor();
                let since = (after - anchor).num_microseconds().unwrap_or(i64::MAX);
                let steps = since.div_euclid(*us).saturating_add(1);
                in_range(
                    steps.checked_mul(*us).and_then(|us| {
                        anchor.checked_add_signed(chrono::Duration::microseconds(us))
                    }),
                )
            }
        }
    }

    /// The first tick at or after `from` (and its start).
    pub(crate) fn at_or_after(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        self.first_from(self.start_at.map_or(from, |s| s.max(from)))
    }

    /// The first tick at or after `from`, whatever the start.
    fn first_from(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        match &self.clock {
            Clock::Cron(cron, tz) => {
                // The first whole second at or after `from`.
                let second = whole_second(from);
                let from = if second < from {
                    second + chrono::Duration::seconds(1)
                } else {
                    second
                };
                let local = tz.from_utc_datetime(&from.naive_utc());
                in_range(
                    cron.find_next_occurrence(&local, true)
                        .ok()
                        .map(|t| t.with_timezone(&Utc)),
                )
            }
            Clock::Every(us) => {
                let anchor = self.anchor();
                if from <= anchor {
                    return anchor;
                }
                let since = (from - anchor).num_microseconds().unwrap_or(i64::MAX);
                let steps = since.saturating_add(us - 1).div_euclid(*us);
                in_range(
                    steps.checked_mul(*us).and_then(|us| {
                        anchor.checked_add_signed(chrono::Duration::microseconds(us))
                    }),
                )
            }
        }
    }

    /// Where an interval's ticks are counted from: its start, or the Unix
    /// epoch (so `every 15m` ticks at :00, :15, :30 and :45, UTC).
    fn anchor(&self) -> DateTime<Utc> {
        self.start_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// The first tick a new schedule waits for, upserted at `now`: the
    /// first at or after its start, if it has one, else the first after
    /// `now`.
    pub(crate) fn first(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.start_at {
            Some(start) => self.first_from(start),
            None => self.next_after(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn cron(expression: &str, tz: &str) -> Timing {
        StoredSpec {
            cron: Some(expression.into()),
            every_us: None,
            tz: Some(tz.into()),
            missed: Missed::RunOnce,
            grace_us: 0,
            start_at: None,
        }
        .timing()
        .unwrap()
    }

    fn ticks(timing: &Timing, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut at = from;
        loop {
            let next = timing.next_after(at);
            if next > until {
                return out;
            }
            out.push(next);
            at = next;
        }
    }

    #[test]
    fn a_fixed_time_in_the_skipped_hour_runs_once_right_after_the_gap() {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let t = cron("30 2 * * *", "Europe/Berlin");
        let runs = ticks(&t, utc(2026, 3, 27, 12, 0, 0), utc(2026, 3, 31, 0, 0, 0));
        assert_eq!(
            runs,
            vec![
                utc(2026, 3, 28, 1, 30, 0), // 02:30 CET
                utc(2026, 3, 29, 1, 0, 0),  // 03:00 CEST, right after the gap
                utc(2026, 3, 30, 0, 30, 0), // 02:30 CEST
            ]
        );
    }

    #[test]
    fn a_fixed_time_in_the_repeated_hour_runs_once_at_its_first_occurrence() {
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC).
        let t = cron("30 2 * * *", "Europe/Berlin");
        let runs = ticks(&t, utc(2026, 10, 24, 12, 0, 0), utc(2026, 10, 26, 12, 0, 0));
        assert_eq!(
            runs,
            vec![
                utc(2026, 10, 25, 0, 30, 0), // 02:30 CEST, the first 02:30
                utc(2026, 10, 26, 1, 30, 0), // 02:30 CET, the next day
            ]
        );
    }

    #[test]
    fn an_hourly_schedule_ticks_every_real_hour_across_both_changes() {
        let t = cron("0 * * * *", "Europe/Berlin");
        // 23 wall-clock hours on the spring day, 25 on the autumn day: 24
        // real hours each time.
        let spring = ticks(&t, utc(2026, 3, 28, 23, 0, 0), utc(2026, 3, 29, 23, 0, 0));
        assert_eq!(spring.len(), 24);
        let autumn = ticks(&t, utc(2026, 10, 24, 22, 0, 0), utc(2026, 10, 25, 22, 0, 0));
        assert_eq!(autumn.len(), 24);
        for pair in spring.windows(2).chain(autumn.windows(2)) {
            assert_eq!(pair[1] - pair[0], chrono::Duration::hours(1), "{pair:?}");
        }
    }

    #[test]
    fn five_and_six_fields_and_shorthands_are_read() {
        let from = utc(2026, 1, 1, 0, 0, 0);
        assert_eq!(
            cron("*/10 * * * * *", "UTC").next_after(from),
            utc(2026, 1, 1, 0, 0, 10)
        );
        assert_eq!(
            cron("15 * * * *", "UTC").next_after(from),
            utc(2026, 1, 1, 0, 15, 0)
        );
        assert_eq!(
            cron("@hourly", "UTC").next_after(from),
            utc(2026, 1, 1, 1, 0, 0)
        );
        assert_eq!(
            cron("@daily", "UTC").next_after(from),
            utc(2026, 1, 2, 0, 0, 0)
        );
        assert!(parse_cron("* * * *").is_err(), "4 fields");
        assert!(
            parse_cron("* * * * * * *").is_err(),
            "7 fields: no year field"
        );
    }

    #[test]
    fn an_interval_ticks_from_the_epoch_or_its_start() {
        let every = |us: u64, start_at| {
            StoredSpec {
                cron: None,
                every_us: Some(us),
                tz: None,
                missed: Missed::RunOnce,
                grace_us: 0,
                start_at,
            }
            .timing()
            .unwrap()
        };
        let quarter = every(15 * 60 * 1_000_000, None);
        assert_eq!(
            quarter.next_after(utc(2026, 1, 1, 10, 7, 0)),
            utc(2026, 1, 1, 10, 15, 0)
        );
        assert_eq!(
            quarter.next_after(utc(2026, 1, 1, 10, 15, 0)),
            utc(2026, 1, 1, 10, 30, 0)
        );
        let start = utc(2026, 1, 1, 10, 7, 0);
        let from_start = every(15 * 60 * 1_000_000, Some(start));
        assert_eq!(from_start.first(utc(2025, 1, 1, 0, 0, 0)), start);
        assert_eq!(from_start.next_after(start), utc(2026, 1, 1, 10, 22, 0));
        assert_eq!(from_start.next_after(utc(2020, 1, 1, 0, 0, 0)), start);
    }

    #[test]
    fn an_expression_that_never_matches_is_never_due() {
        // 30 February.
        let t = cron("0 0 30 2 *", "UTC");
        assert_eq!(t.next_after(utc(2026, 1, 1, 0, 0, 0)), time::latest());
    }
}
