//! The paging cursor of `GET /jobs`.
//!
//! kessel's job query pages by offset (there is no "after this id"). A
//! cursor therefore carries the offset of the next page and the time of
//! the first page's request: every page only sees jobs created before it,
//! so jobs created while a client pages do not shift the pages. A job
//! removed meanwhile (clean, retention) still shifts later pages by one.
//! The cursor is hex text, opaque to clients.

use chrono::{DateTime, Utc};

use super::error::WebError;

/// Where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Jobs to skip.
    pub(crate) offset: usize,
    /// Only jobs created before this (the first page's time).
    pub(crate) before: DateTime<Utc>,
}

impl Cursor {
    /// The first page's cursor at `now`, truncated to the microsecond
    /// (what the stores keep).
    pub(crate) fn first(now: DateTime<Utc>) -> Self {
        Cursor {
            offset: 0,
            before: DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now),
        }
    }

    pub(crate) fn encode(&self) -> String {
        let text = format!("1.{}.{}", self.offset, self.before.timestamp_micros());
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn decode(text: &str) -> Result<Self, WebError> {
        let bad = || WebError::invalid_field("cursor", "not a cursor this API gave out");
        if text.len() % 2 != 0 || text.len() > 128 {
            return Err(bad());
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.split('.');
        let (Some("1"), Some(offset), Some(before), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Cursor {
            offset: offset.parse().map_err(|_| bad())?,
            before: before
                .parse()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(bad)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor {
            offset: 200,
            ..Cursor::first(Utc::now())
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "zz", "abc", "312e", &"00".repeat(100)] {
            let err = Cursor::decode(bad).unwrap_err();
            assert_eq!(err.field(), Some("cursor"), "{bad}");
        }
    }
}
