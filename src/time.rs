//! The range of times kessel accepts, and checked arithmetic on them.
//!
//! A job's times (`run_at`, `expires_at`, a retry's next run) must lie
//! between [`EARLIEST`] (the Unix epoch) and [`latest`] (the last
//! microsecond of the year 9999, UTC): every store keeps them to the microsecond, and
//! the scheduler's clock maps them onto its own. A delay or an expiry that
//! would reach past [`latest`] is a typed error at the call, never a
//! panic; an age that reaches before [`EARLIEST`] matches nothing.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::error::Error;

/// The earliest time kessel accepts for a job: 1970-01-01T00:00:00Z.
pub(crate) const EARLIEST: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

/// The latest time kessel accepts for a job: the last microsecond of the
/// year 9999, UTC.
pub(crate) fn latest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .and_then(|t| t.checked_add_signed(chrono::Duration::microseconds(999_999)))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Why a time is out of range, for an error naming `field`.
fn out_of_range(field: &'static str, what: String) -> Error {
    Error::InvalidInput {
        field,
        reason: format!(
            "{what} is outside the times kessel accepts ({} to {})",
            EARLIEST.to_rfc3339(),
            latest().to_rfc3339()
        ),
    }
}

/// `now` plus `d`, for the job field `field` (`delay`, `expires_in`).
///
/// # Errors
///
/// [`Error::InvalidInput`] naming `field` when the sum passes [`latest`].
pub(crate) fn after(
    now: DateTime<Utc>,
    d: Duration,
    field: &'static str,
) -> Result<DateTime<Utc>, Error> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .filter(|at| *at <= latest())
        .ok_or_else(|| out_of_range(field, format!("now plus {d:?}")))
}

/// `at`, checked to lie in the accepted range, for the job field `field`.
///
/// # Errors
///
/// [`Error::InvalidInput`] naming `field` when it does not.
pub(crate) fn check(at: DateTime<Utc>, field: &'static str) -> Result<DateTime<Utc>, Error> {
    if at < EARLIEST || at > latest() {
        return Err(out_of_range(field, at.to_rfc3339()));
    }
    Ok(at)
}

/// Whether `at` lies in the accepted range.
pub(crate) fn in_range(at: DateTime<Utc>) -> bool {
    (EARLIEST..=latest()).contains(&at)
}

/// `now` minus `age`, or `None` when that would be before [`EARLIEST`]
/// (nothing is that old).
pub(crate) fn before(now: DateTime<Utc>, age: Duration) -> Option<DateTime<Utc>> {
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .filter(|at| *at >= EARLIEST)
}

/// `at` plus `d`, saturating at [`latest`]: for times the engine computes
/// (a retry's next run), which must stay in range whatever the backoff.
pub(crate) fn saturating_after(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .map_or_else(latest, |t| t.min(latest()))
}

/// A time kept as nanoseconds since the Unix epoch where it fits (until
/// 2262), converted to a `DateTime` only when read: a job's dispatch
/// carries its times this way, so a handler that never reads them costs no
/// conversion (two per job were measurable at millions of jobs a second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompactTime {
    /// Nanoseconds since the epoch.
    Nanos(i64),
    /// A time past what nanoseconds hold, as it is.
    Far(DateTime<Utc>),
}

impl CompactTime {
    /// The time.
    pub(crate) fn get(self) -> DateTime<Utc> {
        match self {
            CompactTime::Nanos(nanos) => DateTime::from_timestamp_nanos(nanos),
            CompactTime::Far(at) => at,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_compact_time_reads_back_exactly_near_and_far() {
        let near = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let nanos = near.timestamp_nanos_opt().unwrap();
        assert_eq!(super::CompactTime::Nanos(nanos).get(), near);
        let far = crate::time::latest();
        assert_eq!(super::CompactTime::Far(far).get(), far);
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_range_is_stated_in_the_error() {
        let err = after(Utc::now(), Duration::MAX, "delay").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("delay") && text.contains("9999-12-31"),
            "{text}"
        );
        assert!(check(DateTime::<Utc>::MAX_UTC, "run_at").is_err());
        assert!(check(DateTime::<Utc>::MIN_UTC, "run_at").is_err());
        assert_eq!(before(Utc::now(), Duration::MAX), None);
        assert_eq!(saturating_after(Utc::now(), Duration::MAX), latest());
    }

    proptest! {
        #[test]
        fn arithmetic_on_any_duration_never_panics(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            let now = Utc::now();
            match after(now, d, "delay") {
                Ok(at) => prop_assert!(at >= now && at <= latest()),
                Err(Error::InvalidInput { field, .. }) => prop_assert_eq!(field, "delay"),
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
            if let Some(at) = before(now, d) {
                prop_assert!(at <= now && at >= EARLIEST);
            }
            let at = saturating_after(now, d);
            prop_assert!(in_range(at));
        }
    }
}
