//! Nanosecond stamps back to UTC times, fast.
//!
//! The scheduler keeps a held job's times as nanoseconds since the Unix
//! epoch and turns them back into `DateTime<Utc>` for every record it
//! writes. Most of that conversion is finding the calendar date of a day
//! count, and nearly every time converted falls on the same day as the one
//! before: the last day's date is kept per thread.

use std::cell::Cell;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

const NANOS_PER_DAY: i64 = 86_400_000_000_000;
const NANOS_PER_SEC: i64 = 1_000_000_000;

thread_local! {
    /// The last day converted (days since the epoch) and its date.
    static LAST_DAY: Cell<(i64, NaiveDate)> = const { Cell::new((i64::MIN, NaiveDate::MIN)) };
}

/// `nanos` since the Unix epoch as a UTC time; the same as
/// `DateTime::from_timestamp_nanos`.
pub(crate) fn from_nanos(nanos: i64) -> DateTime<Utc> {
    let (day, in_day) = (
        nanos.div_euclid(NANOS_PER_DAY),
        nanos.rem_euclid(NANOS_PER_DAY),
    );
    let (last_day, last_date) = LAST_DAY.get();
    let date = if last_day == day {
        Some(last_date)
    } else {
        let date = day
            .checked_mul(86_400)
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .map(|t| t.date_naive());
        if let Some(date) = date {
            LAST_DAY.set((day, date));
        }
        date
    };
    let time = NaiveTime::from_num_seconds_from_midnight_opt(
        (in_day / NANOS_PER_SEC) as u32,
        (in_day % NANOS_PER_SEC) as u32,
    );
    match (date, time) {
        (Some(date), Some(time)) => NaiveDateTime::new(date, time).and_utc(),
        _ => DateTime::from_timestamp_nanos(nanos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any stamp, alone or after others on nearby days, converts as
        /// chrono converts it.
        #[test]
        fn converts_as_chrono_does(stamps in proptest::collection::vec(
            prop_oneof![any::<i64>(), -3 * NANOS_PER_DAY..3 * NANOS_PER_DAY], 1..20)) {
            for nanos in stamps {
                prop_assert_eq!(from_nanos(nanos), DateTime::from_timestamp_nanos(nanos));
            }
        }
    }

    #[test]
    fn the_ends_of_the_range_and_of_a_day_convert() {
        let day_end = 20_000 * NANOS_PER_DAY - 1;
        for nanos in [
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            0,
            -1,
            day_end,
            day_end + 1,
        ] {
            assert_eq!(from_nanos(nanos), DateTime::from_timestamp_nanos(nanos));
        }
    }
}
