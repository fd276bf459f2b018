//! Durations as kessel accepts them: a [`std::time::Duration`], a
//! [`chrono::Duration`], or a short string such as `"10ms"`, `"30s"`,
//! `"45m"`, `"2h"` or `"6d"`.

use std::time::Duration;

use crate::error::DurationError;

/// Something kessel can read as a duration.
///
/// Implemented for [`std::time::Duration`], [`chrono::Duration`] (negative
/// values are an error), and strings in the form `<integer><unit>` with unit
/// `ms`, `s`, `m`, `h` or `d`, a space between them allowed (`"10 s"`). A
/// bare integer is read as milliseconds.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kessel::IntoDuration;
///
/// assert_eq!("30s".into_duration().unwrap(), Duration::from_secs(30));
/// assert_eq!("2h".into_duration().unwrap(), Duration::from_secs(7200));
/// assert_eq!("10 s".into_duration().unwrap(), Duration::from_secs(10));
/// assert_eq!(Duration::from_millis(5).into_duration().unwrap(), Duration::from_millis(5));
/// let err = "ten minutes".into_duration().unwrap_err();
/// assert_eq!(err.text(), "ten minutes");
/// ```
pub trait IntoDuration {
    /// Converts into a [`Duration`].
    ///
    /// # Errors
    ///
    /// [`DurationError`] naming the offending text when it cannot be read.
    fn into_duration(self) -> Result<Duration, DurationError>;
}

impl IntoDuration for Duration {
    fn into_duration(self) -> Result<Duration, DurationError> {
        Ok(self)
    }
}

impl IntoDuration for chrono::Duration {
    fn into_duration(self) -> Result<Duration, DurationError> {
        self.to_std()
            .map_err(|_| DurationError::new(self.to_string(), "a negative duration"))
    }
}

impl IntoDuration for &str {
    fn into_duration(self) -> Result<Duration, DurationError> {
        parse_duration(self)
    }
}

impl IntoDuration for String {
    fn into_duration(self) -> Result<Duration, DurationError> {
        parse_duration(&self)
    }
}

impl IntoDuration for &String {
    fn into_duration(self) -> Result<Duration, DurationError> {
        parse_duration(self)
    }
}

/// Parses kessel's duration strings: `10ms`, `30s`, `45m`, `2h`, `6d`, or a
/// bare number of milliseconds. Surrounding whitespace is ignored.
///
/// # Errors
///
/// [`DurationError`] naming the text when it is empty, has no number, has an
/// unknown unit or overflows.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// assert_eq!(kessel::parse_duration("45m").unwrap(), Duration::from_secs(45 * 60));
/// assert!(kessel::parse_duration("45 parsecs").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::new(text, "it is empty"));
    }
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(DurationError::new(text, "it does not start with a number"));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| DurationError::new(text, "the number is too large"))?;
    let millis_per_unit: u64 = match unit.trim_start() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(DurationError::new(
                text,
                "the unit is not one of ms, s, m, h, d",
            ))
        }
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::new(text, "the number is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse_duration("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("45m").unwrap(), Duration::from_secs(2700));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("6d").unwrap(), Duration::from_secs(518_400));
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration(" 5 s ").unwrap(), Duration::from_secs(5));
    }

    #[test]
    fn malformed_durations_name_the_text() {
        for bad in [
            "",
            "s",
            "10x",
            "1.5h",
            "-3s",
            "10 minutes",
            "ms10",
            "99999999999999999999d",
            "18446744073709551615d",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert_eq!(err.text(), bad);
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn negative_chrono_duration_is_an_error() {
        let err = chrono::Duration::seconds(-5).into_duration().unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
    }
}
