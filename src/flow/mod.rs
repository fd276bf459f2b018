//! Flow control a task definition carries: how many of its jobs may run
//! at once ([`TaskBuilder::max_running`](crate::TaskBuilder::max_running))
//! and how often they may start ([`RateLimit`]), for the task as a whole
//! or for each of its jobs' groups
//! ([`TaskBuilder::max_running_per_group`](crate::TaskBuilder::max_running_per_group),
//! [`TaskBuilder::rate_limit_per_group`](crate::TaskBuilder::rate_limit_per_group)),
//! and the limits of a tag on all its jobs
//! ([`QueueBuilder::tag_max_running`](crate::QueueBuilder::tag_max_running)).
//!
//! The scheduler's side of each: [`Gcra`], a rate limit's state; [`Keyed`],
//! the limits of each group of a task; [`TagGate`], a tag's.

mod gcra;
mod groups;
mod tags;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

/// How often a task's jobs may start: `count` per `per`, with bursts of up
/// to `burst` (default 1: evenly spaced). A job over the limit waits, ready,
/// and starts when the limit allows; it is never failed for it.
///
/// Written as `"COUNT/PERIOD"`, PERIOD a kessel duration or a bare unit:
/// `"10/s"`, `"100/m"`, `"5/2s"`, `"1000/h"`; with `" per process"` after
/// it for [`RateLimit::per_process`] (`"10/s per process"`).
///
/// On PostgreSQL a limit holds for every process together, unless it is
/// [`per_process`](RateLimit::per_process): then each process keeps its
/// own count.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kessel::RateLimit;
/// let api = RateLimit::per_second(10).burst(20);
/// assert_eq!(api.count(), 10);
/// assert_eq!("100/m".parse::<RateLimit>().unwrap(), RateLimit::new(100, Duration::from_secs(60)));
/// assert_eq!(
///     "10/s per process".parse::<RateLimit>().unwrap(),
///     RateLimit::per_second(10).per_process()
/// );
/// assert!("0/s".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    count: u32,
    per: Duration,
    burst: u32,
    per_process: bool,
}

impl RateLimit {
    /// `count` starts per `per`. Checked when the task is defined: a zero
    /// count or period is [`Error::InvalidInput`] naming `rate_limit`.
    ///
    /// ```
    /// let limit = kessel::RateLimit::new(3, std::time::Duration::from_secs(1));
    /// assert_eq!(limit.per(), std::time::Duration::from_secs(1));
    /// ```
    pub fn new(count: u32, per: Duration) -> Self {
        RateLimit {
            count,
            per,
            burst: 1,
            per_process: false,
        }
    }

    /// `count` starts per second.
    ///
    /// ```
    /// assert_eq!(kessel::RateLimit::per_second(5).count(), 5);
    /// ```
    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` starts per minute.
    ///
    /// ```
    /// assert_eq!(kessel::RateLimit::per_minute(100).per().as_secs(), 60);
    /// ```
    pub fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// Lets up to `burst` jobs start at once after a quiet spell (default
    /// 1); the average stays `count` per `per`.
    ///
    /// ```
    /// assert_eq!(kessel::RateLimit::per_second(10).burst(50).burst_size(), 50);
    /// ```
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Makes the limit each process's own: on PostgreSQL, every process
    /// that defines the task (or tag) with it starts up to `count` per
    /// `per` of its jobs, whatever the others start; by default the limit
    /// holds for all of them together. It suits a limit that belongs to
    /// the machine (its CPU, its own IP's quota at a partner) rather than
    /// to the whole queue. On the memory and SQLite stores, which one
    /// process serves, it is the same limit.
    ///
    /// A process claims no more of the task's jobs than its own limit
    /// lets start within the claim's horizon (two seconds by default), so
    /// the jobs it cannot start soon stay in the store for the others.
    /// Not available per group: [`TaskBuilder::rate_limit_per_group`](crate::TaskBuilder::rate_limit_per_group)
    /// refuses it with [`Error::InvalidInput`].
    ///
    /// ```
    /// let limit = kessel::RateLimit::per_second(5).per_process();
    /// assert!(limit.is_per_process());
    /// assert!(!kessel::RateLimit::per_second(5).is_per_process());
    /// ```
    pub fn per_process(mut self) -> Self {
        self.per_process = true;
        self
    }

    /// Whether each process keeps its own count
    /// ([`RateLimit::per_process`]).
    ///
    /// ```
    /// let limit: kessel::RateLimit = "10/s per process".parse().unwrap();
    /// assert!(limit.is_per_process());
    /// ```
    pub fn is_per_process(&self) -> bool {
        self.per_process
    }

    /// Starts allowed per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// How many may start at once.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// Checks the numbers.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.validate_as("rate_limit")
    }

    /// Checks a limit per group: its numbers, and that it holds for every
    /// process together (a count per process is not kept per group).
    pub(crate) fn validate_per_group(&self) -> Result<(), Error> {
        self.validate_as("rate_limit_per_group")?;
        if self.per_process {
            return Err(Error::InvalidInput {
                field: "rate_limit_per_group",
                reason: format!(
                    "{self}: a rate limit per group holds for every process together; \
                     per_process is only for a task's or a tag's rate limit"
                ),
            });
        }
        Ok(())
    }

    /// Checks the numbers; an error names `field`.
    pub(crate) fn validate_as(&self, field: &'static str) -> Result<(), Error> {
        let invalid = |reason: &str| Error::InvalidInput {
            field,
            reason: format!("{self}: {reason}"),
        };
        if self.count == 0 {
            return Err(invalid("the count must be at least 1"));
        }
        if self.per.is_zero() {
            return Err(invalid("the period must be longer than zero"));
        }
        if self.burst == 0 {
            return Err(invalid("the burst must be at least 1"));
        }
        Ok(())
    }

    /// The time between two starts at the steady rate, in microseconds
    /// (at least 1).
    pub(crate) fn interval_micros(&self) -> u64 {
        let per = u64::try_from(self.per.as_micros()).unwrap_or(u64::MAX);
        (per / u64::from(self.count.max(1))).max(1)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {:?}", self.count, self.per)?;
        if self.burst != 1 {
            write!(f, " (bursts of {})", self.burst)?;
        }
        if self.per_process {
            write!(f, " per process")?;
        }
        Ok(())
    }
}

/// Why a rate limit's text cannot be read.
///
/// ```
/// let err = "ten/s".parse::<kessel::RateLimit>().unwrap_err();
/// assert!(err.to_string().contains("ten/s"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a rate limit (expected COUNT/PERIOD, e.g. 10/s or 100/m, \
     or 10/s per process): {reason}"
)]
pub struct RateLimitError {
    text: String,
    reason: String,
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| RateLimitError {
            text: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        let (rate, per_process) = match trimmed.strip_suffix("per process") {
            Some(rate) if rate.ends_with(char::is_whitespace) => (rate, true),
            _ => (trimmed, false),
        };
        let (count, per) = rate
            .split_once('/')
            .ok_or_else(|| fail("there is no `/`".into()))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|e| fail(format!("the count: {e}")))?;
        let per = per.trim();
        if per.is_empty() {
            return Err(fail("there is no period after the `/`".into()));
        }
        // A bare unit means one of it.
        let per = if per.chars().all(|c| c.is_ascii_alphabetic()) {
            format!("1{per}")
        } else {
            per.to_owned()
        };
        let per = crate::duration::parse_duration(&per).map_err(|e| fail(e.to_string()))?;
        let mut limit = RateLimit::new(count, per);
        limit.per_process = per_process;
        limit.validate().map_err(|e| fail(e.to_string()))?;
        Ok(limit)
    }
}

pub(crate) use gcra::Gcra;
pub(crate) use groups::{GroupKey, Keyed};
pub(crate) use tags::{TagGate, TagLimit, TagLimits};

/// Checks a task's `max_running`.
pub(crate) fn validate_max_running(n: u32) -> Result<(), Error> {
    validate_running_limit("max_running", n)
}

/// Checks a running limit named `field`.
pub(crate) fn validate_running_limit(field: &'static str, n: u32) -> Result<(), Error> {
    if n == 0 {
        return Err(Error::InvalidInput {
            field,
            reason: "at most 0 running jobs would run nothing; use suspend to hold a task".into(),
        });
    }
    Ok(())
}

/// Why a job of a limited task may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// Its task or group runs its most jobs: one may start when a run
    /// ends.
    Running,
    /// A rate limit allows the next start at this time (µs).
    Until(u64),
}

/// What [`TaskBuilder::rate_limit`](crate::TaskBuilder::rate_limit) takes:
/// a [`RateLimit`], or its text (`"10/s"`).
///
/// ```
/// use kessel::IntoRateLimit;
/// assert_eq!("10/s".into_rate_limit().unwrap(), kessel::RateLimit::per_second(10));
/// ```
pub trait IntoRateLimit {
    /// Converts into a [`RateLimit`].
    ///
    /// # Errors
    ///
    /// [`RateLimitError`] naming the text when it cannot be read.
    fn into_rate_limit(self) -> Result<RateLimit, RateLimitError>;
}

impl IntoRateLimit for RateLimit {
    fn into_rate_limit(self) -> Result<RateLimit, RateLimitError> {
        Ok(self)
    }
}

impl IntoRateLimit for &str {
    fn into_rate_limit(self) -> Result<RateLimit, RateLimitError> {
        self.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_are_read_from_text() {
        let r: RateLimit = "10/s".parse().unwrap();
        assert_eq!(r, RateLimit::per_second(10));
        assert_eq!(
            "5/2s".parse::<RateLimit>().unwrap().per(),
            Duration::from_secs(2)
        );
        for bad in [
            "",
            "10",
            "/s",
            "10/",
            "-1/s",
            "0/s",
            "10/0s",
            "10/parsec",
            "1e3/s",
            "per process",
            "10/sper process",
            "10/s per processes",
            "10/s per",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rate_per_process_is_read_from_text_and_written_back() {
        let r: RateLimit = " 10/s  per process ".parse().unwrap();
        assert_eq!(r, RateLimit::per_second(10).per_process());
        assert!(!"10/s".parse::<RateLimit>().unwrap().is_per_process());
        assert_eq!(r.to_string(), "10 per 1s per process");
    }

    #[test]
    fn a_rate_per_group_is_refused_per_process_naming_its_field() {
        let got = RateLimit::per_second(5).per_process().validate_per_group();
        match got {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, "rate_limit_per_group");
                assert!(reason.contains("per_process"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(RateLimit::per_second(5).validate_per_group().is_ok());
    }

    proptest! {
        /// A zero running limit is refused naming its field; any other is
        /// taken.
        #[test]
        fn a_running_limit_is_refused_only_at_zero(n in 0u32..1_000) {
            let got = validate_running_limit("max_running_per_group", n);
            if n == 0 {
                prop_assert!(
                    matches!(got, Err(Error::InvalidInput { field: "max_running_per_group", .. })),
                    "{got:?}"
                );
            } else {
                prop_assert!(got.is_ok());
            }
        }

        /// A per-group rate with a zero count, period or burst is refused
        /// naming `rate_limit_per_group`.
        #[test]
        fn a_group_rate_with_a_zero_is_refused_naming_its_field(
            count in 0u32..3, per_ms in 0u64..3, burst in 0u32..3,
        ) {
            let got = RateLimit::new(count, Duration::from_millis(per_ms))
                .burst(burst)
                .validate_as("rate_limit_per_group");
            if count == 0 || per_ms == 0 || burst == 0 {
                prop_assert!(
                    matches!(got, Err(Error::InvalidInput { field: "rate_limit_per_group", .. })),
                    "{got:?}"
                );
            } else {
                prop_assert!(got.is_ok());
            }
        }
    }
}
