//! New jobs in `COPY`'s binary format.
//!
//! A large batch of new jobs is written with `COPY ... FROM STDIN (FORMAT
//! binary)` rather than an `INSERT` over `UNNEST`ed arrays: the server then
//! reads each value as it is (no arrays to take apart, no text to parse)
//! and adds the rows to the table in bulk. The index entries cost the same
//! either way.
//!
//! The format: a signature and two 32-bit words (flags, header extension
//! length), then per row a 16-bit field count and per field its length in
//! bytes (−1 for null) and its value in the type's binary send format, and
//! a 16-bit −1 at the end.

use chrono::{DateTime, Utc};

use crate::job::Job;
use crate::store::StoreError;

/// The columns a [`CopyRows`] holds, in order.
pub(super) const COLUMNS: &str =
    "id, reference, task, payload, priority, status, created_at, run_at, expires_at, \
     attempts, max_attempts, last_error, result, progress_current, progress_total, finished_at, \
     log_created, callback, group_key, callback_secret";

const FIELDS: i16 = 20;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// New jobs' rows, encoded for `COPY ... (FORMAT binary)`.
#[derive(Debug)]
pub(super) struct CopyRows {
    data: Vec<u8>,
}

impl CopyRows {
    /// Encodes `jobs`. Their log lines are not part of it, except that a
    /// job whose log starts with its "created" line gets `log_created`.
    pub(super) fn new(jobs: &[Job]) -> Result<Self, StoreError> {
        let mut data = Vec::with_capacity(19 + jobs.len() * 160);
        data.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&0i32.to_be_bytes());
        let mut w = Writer {
            out: &mut data,
            too_long: false,
        };
        for job in jobs {
            w.i16(FIELDS);
            w.bytes(Some(job.id.0.as_bytes()));
            w.text(job.reference.as_deref());
            w.text(Some(&job.task));
            w.text(Some(job.payload.as_str()));
            w.int(Some(i64::from(job.priority)));
            w.text(Some(job.status.as_str()));
            w.time(Some(job.created_at));
            w.time(Some(job.run_at));
            w.time(job.expires_at);
            w.int(Some(i64::from(job.attempts)));
            w.int(job.max_attempts.map(i64::from));
            w.text(job.last_error.as_deref());
            w.text(job.result.as_ref().map(|r| r.to_string()).as_deref());
            w.int(job.progress.map(|p| p.current as i64));
            w.int(job.progress.map(|p| p.total as i64));
            w.time(job.finished_at);
            let log_created = job
                .logs
                .first()
                .is_some_and(|l| l.is_created_at(job.created_at));
            w.bytes(Some(&[u8::from(log_created)]));
            w.text(job.callback.as_deref());
            w.text(job.group.as_deref());
            w.text(job.callback_secret.as_deref());
        }
        w.i16(-1);
        if w.too_long {
            return Err(StoreError::other(std::io::Error::other(
                "a job's field is longer than PostgreSQL can store (1 GiB)",
            )));
        }
        Ok(CopyRows { data })
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.data
    }
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// A field did not fit the format's 32-bit length.
    too_long: bool,
}

impl Writer<'_> {
    fn i16(&mut self, v: i16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn bytes(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => match i32::try_from(v.len()) {
                Ok(len) => {
                    self.out.extend_from_slice(&len.to_be_bytes());
                    self.out.extend_from_slice(v);
                }
                Err(_) => {
                    self.too_long = true;
                    self.out.extend_from_slice(&(-1i32).to_be_bytes());
                }
            },
            None => self.out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    fn text(&mut self, v: Option<&str>) {
        self.bytes(v.map(str::as_bytes));
    }

    fn int(&mut self, v: Option<i64>) {
        self.bytes(v.map(i64::to_be_bytes).as_ref().map(|b| &b[..]));
    }

    fn time(&mut self, v: Option<DateTime<Utc>>) {
        self.int(v.map(|t| t.timestamp_micros() - PG_EPOCH_MICROS));
    }
}
