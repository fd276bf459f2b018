//! A pending job as the scheduler holds it.
//!
//! The scheduler may hold millions of pending jobs, and scheduling reads
//! only a few of their fields. Those sit inline; the rest (reference,
//! expiry, attempt limit, last error, result, progress, log) sits in one
//! box that a fresh job without any of them does not allocate. The task's
//! name is not held at all: the scheduler keeps it once per task and
//! passes it in where a full record is built.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::job::{Job, JobId, JobResult, JobStatus, LogLine, Payload, Progress};
use crate::store::{JobQuery, JobUpdate};

/// A pending job, compact. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct HeldJob {
    pub(crate) id: JobId,
    pub(crate) payload: Payload,
    created_at: Stamp,
    run_at: Stamp,
    pub(crate) priority: u32,
    pub(crate) attempts: u32,
    /// Once in the scheduler's job table, changed only through
    /// `JobTable::set_status`, which counts jobs by status.
    pub(crate) status: JobStatus,
    /// Its log's first line, "created", is not held but rebuilt from
    /// `created_at` with the full record.
    pub(crate) created_implied: bool,
    rest: Option<Box<Rest>>,
}

/// A time as nanoseconds since the Unix epoch: 8 bytes where a
/// `DateTime<Utc>` takes 12. A time beyond what that covers (before 1677 or
/// after 2262) is [`Stamp::FAR`], and the job keeps it exactly in its
/// [`Rest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(i64);

impl Stamp {
    const FAR: Stamp = Stamp(i64::MIN);

    /// `at` as a stamp; a far time is also put in `far`.
    fn of(at: DateTime<Utc>, far: &mut Option<DateTime<Utc>>) -> Stamp {
        match at.timestamp_nanos_opt() {
            Some(nanos) if nanos != Self::FAR.0 => Stamp(nanos),
            _ => {
                *far = Some(at);
                Self::FAR
            }
        }
    }

    /// The time back, `far` being where a far one was kept.
    /// The stamp as a [`CompactTime`](crate::time::CompactTime); `far`
    /// reads the exact time of a far stamp.
    fn compact(self, far: impl FnOnce() -> DateTime<Utc>) -> crate::time::CompactTime {
        if self == Self::FAR {
            crate::time::CompactTime::Far(far())
        } else {
            crate::time::CompactTime::Nanos(self.0)
        }
    }

    fn at(self, far: Option<DateTime<Utc>>) -> DateTime<Utc> {
        if self == Self::FAR {
            far.expect("a far time is kept in the rest")
        } else {
            crate::scheduler::utc::from_nanos(self.0)
        }
    }
}

/// How a job ended: see [`HeldJob::into_final`].
#[derive(Debug)]
pub(crate) struct Ending {
    pub(crate) status: JobStatus,
    pub(crate) value: Option<serde_json::Value>,
    pub(crate) message: Option<String>,
    pub(crate) at: DateTime<Utc>,
}

impl Ending {
    /// The log line that ends attempt `attempt` so.
    pub(crate) fn line(&self, attempt: u32) -> LogLine {
        match (self.status, &self.message) {
            (JobStatus::Completed, _) => LogLine::new(self.at, attempt, "completed"),
            (JobStatus::Cancelled, _) => LogLine::new(self.at, attempt, "cancelled"),
            (status, Some(m)) => LogLine::new(self.at, attempt, format!("{status}: {m}")),
            (status, None) => LogLine::new(self.at, attempt, status.as_str()),
        }
    }
}

/// The fields most jobs leave empty.
#[derive(Debug, Default)]
struct Rest {
    reference: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    max_attempts: Option<u32>,
    last_error: Option<String>,
    result: Option<serde_json::Value>,
    progress: Option<Progress>,
    finished_at: Option<DateTime<Utc>>,
    /// The job's own callback URL (`Job::callback`).
    callback: Option<String>,
    /// The name of the secret that signs it (`Job::callback_secret`).
    callback_secret: Option<String>,
    /// The job's fair group (`Job::group`), shared with the ready sets.
    group: Option<Arc<str>>,
    logs: Vec<LogLine>,
    /// `created_at` and `run_at` when they are too far to stamp.
    far_created_at: Option<DateTime<Utc>>,
    far_run_at: Option<DateTime<Utc>>,
}

impl Rest {
    fn is_empty(&self) -> bool {
        self.reference.is_none()
            && self.expires_at.is_none()
            && self.max_attempts.is_none()
            && self.last_error.is_none()
            && self.result.is_none()
            && self.progress.is_none()
            && self.finished_at.is_none()
            && self.callback.is_none()
            && self.callback_secret.is_none()
            && self.group.is_none()
            && self.logs.is_empty()
            && self.far_created_at.is_none()
            && self.far_run_at.is_none()
    }
}

impl HeldJob {
    pub(crate) fn new(job: Job) -> Self {
        let (mut far_created_at, mut far_run_at) = (None, None);
        let created_at = Stamp::of(job.created_at, &mut far_created_at);
        let run_at = Stamp::of(job.run_at, &mut far_run_at);
        let rest = Rest {
            reference: job.reference,
            expires_at: job.expires_at,
            max_attempts: job.max_attempts,
            last_error: job.last_error,
            result: job.result,
            progress: job.progress,
            finished_at: job.finished_at,
            callback: job.callback,
            callback_secret: job.callback_secret,
            group: job.group.map(Arc::from),
            logs: job.logs,
            far_created_at,
            far_run_at,
        };
        HeldJob {
            id: job.id,
            payload: job.payload,
            created_at,
            run_at,
            priority: job.priority,
            attempts: job.attempts,
            status: job.status,
            created_implied: false,
            rest: (!rest.is_empty()).then(|| Box::new(rest)),
        }
    }

    pub(crate) fn created_at(&self) -> DateTime<Utc> {
        self.created_at
            .at(self.rest.as_deref().and_then(|r| r.far_created_at))
    }

    /// When it was created, converted only when read.
    pub(crate) fn created_at_compact(&self) -> crate::time::CompactTime {
        self.created_at.compact(|| self.created_at())
    }

    /// When it is due, converted only when read.
    pub(crate) fn run_at_compact(&self) -> crate::time::CompactTime {
        self.run_at.compact(|| self.run_at())
    }

    /// When it is due, in nanoseconds since the Unix epoch; `None` past
    /// 2262 (or before 1677).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn run_at_nanos(&self) -> Option<i64> {
        (self.run_at != Stamp::FAR).then_some(self.run_at.0)
    }

    /// When it is due.
    pub(crate) fn run_at(&self) -> DateTime<Utc> {
        self.run_at
            .at(self.rest.as_deref().and_then(|r| r.far_run_at))
    }

    pub(crate) fn set_run_at(&mut self, at: DateTime<Utc>) {
        let mut far = None;
        self.run_at = Stamp::of(at, &mut far);
        if far.is_some() || self.rest.as_ref().is_some_and(|r| r.far_run_at.is_some()) {
            self.rest_mut().far_run_at = far;
        }
    }

    fn rest_mut(&mut self) -> &mut Rest {
        self.rest.get_or_insert_with(Default::default)
    }

    /// The "created" line it does not hold, if so.
    fn first_line(&self) -> Option<LogLine> {
        self.created_implied
            .then(|| LogLine::created(self.created_at()))
    }

    /// The full record of this job of `task`.
    pub(crate) fn to_job(&self, task: &Arc<str>) -> Job {
        let rest = self.rest.as_deref();
        let mut logs = Vec::new();
        logs.extend(self.first_line());
        if let Some(r) = rest {
            logs.extend(r.logs.iter().cloned());
        }
        Job {
            id: self.id,
            reference: rest.and_then(|r| r.reference.clone()),
            task: task.clone(),
            payload: self.payload.clone(),
            priority: self.priority,
            status: self.status,
            created_at: self.created_at(),
            run_at: self.run_at(),
            expires_at: self.expires_at(),
            attempts: self.attempts,
            max_attempts: self.max_attempts(),
            last_error: rest.and_then(|r| r.last_error.clone()),
            result: rest.and_then(|r| r.result.clone()),
            progress: self.progress(),
            finished_at: rest.and_then(|r| r.finished_at),
            ran_by: None,
            callback: rest.and_then(|r| r.callback.clone()),
            callback_secret: rest.and_then(|r| r.callback_secret.clone()),
            group: rest.and_then(|r| r.group.as_deref().map(String::from)),
            logs,
        }
    }

    /// The final record of this job of `task`, taking the held one apart:
    /// it ended as `end` says, and its log is its "created" line, what it
    /// held, `logs`, then `line`, in one allocation (that of `logs` when it
    /// held none).
    pub(crate) fn into_final(
        self,
        task: Arc<str>,
        end: Ending,
        mut logs: Vec<LogLine>,
        line: Option<LogLine>,
    ) -> Job {
        let (created_at, run_at) = (self.created_at(), self.run_at());
        let first_line = self.created_implied.then(|| LogLine::created(created_at));
        let rest = self.rest.map(|r| *r).unwrap_or_default();
        let held = rest.logs;
        let logs = if held.is_empty() {
            logs.reserve(usize::from(first_line.is_some()) + usize::from(line.is_some()));
            if let Some(first) = first_line {
                logs.insert(0, first);
            }
            logs.extend(line);
            logs
        } else {
            let mut all = Vec::with_capacity(
                usize::from(first_line.is_some())
                    + held.len()
                    + logs.len()
                    + usize::from(line.is_some()),
            );
            all.extend(first_line);
            all.extend(held);
            all.append(&mut logs);
            all.extend(line);
            all
        };
        Job {
            id: self.id,
            reference: rest.reference,
            task,
            payload: self.payload,
            priority: self.priority,
            status: end.status,
            created_at,
            run_at,
            expires_at: rest.expires_at,
            attempts: self.attempts,
            max_attempts: rest.max_attempts,
            last_error: end.message,
            result: end.value,
            progress: rest.progress,
            finished_at: Some(end.at),
            ran_by: None,
            callback: rest.callback,
            callback_secret: rest.callback_secret,
            group: rest.group.as_deref().map(String::from),
            logs,
        }
    }

    /// The update that sets a stored copy to this state, appending `logs`.
    pub(crate) fn update(&self, logs: Vec<LogLine>) -> JobUpdate {
        let rest = self.rest.as_deref();
        JobUpdate {
            id: self.id,
            status: self.status,
            attempts: self.attempts,
            max_attempts: self.max_attempts(),
            run_at: self.run_at(),
            last_error: rest.and_then(|r| r.last_error.clone()),
            result: rest.and_then(|r| r.result.clone()),
            progress: self.progress(),
            finished_at: rest.and_then(|r| r.finished_at),
            logs,
        }
    }

    /// Whether `query` selects this job of `task` (its filters, not its
    /// paging).
    pub(crate) fn matches(&self, task: &str, query: &JobQuery) -> bool {
        (query.statuses.is_empty() || query.statuses.contains(&self.status))
            && (query.tasks.is_empty() || query.tasks.iter().any(|t| **t == *task))
            && query
                .reference
                .as_ref()
                .is_none_or(|r| self.reference() == Some(r.as_str()))
            && query.created_after.is_none_or(|t| self.created_at() >= t)
            && query.created_before.is_none_or(|t| self.created_at() < t)
    }

    /// What became of it, once it is final.
    pub(crate) fn outcome(&self) -> Option<JobResult> {
        let rest = self.rest.as_deref();
        self.status.is_final().then(|| JobResult {
            id: self.id,
            status: self.status,
            value: rest.and_then(|r| r.result.clone()),
            message: rest.and_then(|r| r.last_error.clone()),
        })
    }

    pub(crate) fn reference(&self) -> Option<&str> {
        self.rest.as_deref().and_then(|r| r.reference.as_deref())
    }

    /// The job's fair group, if it has one.
    pub(crate) fn group(&self) -> Option<&Arc<str>> {
        self.rest.as_deref().and_then(|r| r.group.as_ref())
    }

    /// The job's own callback URL, if it names one.
    #[cfg_attr(not(feature = "webhooks"), allow(dead_code))]
    pub(crate) fn callback(&self) -> Option<&str> {
        self.rest.as_deref().and_then(|r| r.callback.as_deref())
    }

    /// The name of the secret that signs the job's own callback, if it
    /// names one.
    #[cfg_attr(not(feature = "webhooks"), allow(dead_code))]
    pub(crate) fn callback_secret(&self) -> Option<&str> {
        self.rest
            .as_deref()
            .and_then(|r| r.callback_secret.as_deref())
    }

    pub(crate) fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.rest.as_deref().and_then(|r| r.expires_at)
    }

    pub(crate) fn max_attempts(&self) -> Option<u32> {
        self.rest.as_deref().and_then(|r| r.max_attempts)
    }

    pub(crate) fn progress(&self) -> Option<Progress> {
        self.rest.as_deref().and_then(|r| r.progress)
    }

    pub(crate) fn set_last_error(&mut self, message: Option<String>) {
        if message.is_some() || self.rest.is_some() {
            self.rest_mut().last_error = message;
        }
    }

    pub(crate) fn set_result(&mut self, value: Option<serde_json::Value>) {
        if value.is_some() || self.rest.is_some() {
            self.rest_mut().result = value;
        }
    }

    pub(crate) fn set_progress(&mut self, progress: Option<Progress>) {
        if progress.is_some() || self.rest.is_some() {
            self.rest_mut().progress = progress;
        }
    }

    pub(crate) fn set_finished_at(&mut self, at: DateTime<Utc>) {
        self.rest_mut().finished_at = Some(at);
    }

    /// Appends `logs`, then `line`, to its log, keeping the allocation of
    /// `logs` when its log is empty so far.
    pub(crate) fn append_logs(&mut self, mut logs: Vec<LogLine>, line: Option<LogLine>) {
        if logs.is_empty() && line.is_none() {
            return;
        }
        let rest = self.rest_mut();
        if rest.logs.is_empty() {
            logs.extend(line);
            rest.logs = logs;
        } else {
            rest.logs.append(&mut logs);
            rest.logs.extend(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        let now = Utc::now();
        Job {
            id: JobId::new(),
            reference: None,
            task: "t".into(),
            payload: Payload::from_json_unchecked("1"),
            priority: 3,
            status: JobStatus::Ready,
            created_at: now,
            run_at: now,
            expires_at: None,
            attempts: 0,
            max_attempts: None,
            last_error: None,
            result: None,
            progress: None,
            finished_at: None,
            ran_by: None,
            callback: None,
            callback_secret: None,
            group: None,
            logs: Vec::new(),
        }
    }

    #[test]
    fn a_plain_job_holds_nothing_boxed_and_round_trips() {
        let plain = job();
        let held = HeldJob::new(plain.clone());
        assert!(held.rest.is_none());
        assert_eq!(held.to_job(&plain.task), plain);
    }

    #[test]
    fn every_field_round_trips() {
        let now = Utc::now();
        let full = Job {
            reference: Some("r".into()),
            expires_at: Some(now),
            max_attempts: Some(4),
            last_error: Some("boom".into()),
            result: Some(serde_json::json!({"ok": true})),
            progress: Some(Progress {
                current: 1,
                total: 2,
            }),
            finished_at: Some(now),
            callback: Some("http://127.0.0.1:9/hooks".into()),
            callback_secret: Some("partner-a".into()),
            group: Some("tenant-7".into()),
            logs: vec![LogLine::new(now, 1, "started")],
            ..job()
        };
        let mut held = HeldJob::new(full.clone());
        assert_eq!(held.to_job(&full.task), full);
        held.created_implied = true;
        let mut want = full.clone();
        want.logs
            .insert(0, LogLine::new(full.created_at, 0, "created"));
        assert_eq!(held.to_job(&full.task), want);
    }

    #[test]
    fn times_beyond_what_a_stamp_covers_round_trip() {
        let far_future = DateTime::parse_from_rfc3339("3000-01-01T00:00:00.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let far_past = DateTime::parse_from_rfc3339("1000-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let start = Job {
            created_at: far_past,
            run_at: far_future,
            ..job()
        };
        let mut held = HeldJob::new(start.clone());
        assert_eq!(held.to_job(&start.task), start);
        let near = Utc::now();
        held.set_run_at(near);
        assert_eq!(held.run_at(), near);
        held.set_run_at(far_future);
        assert_eq!(held.run_at(), far_future);
        assert_eq!(held.created_at(), far_past);
    }

    #[test]
    fn a_final_record_keeps_every_field_and_orders_its_log() {
        let now = Utc::now();
        let line = |m: &'static str| LogLine::new(now, 1, m);
        let end = |status| Ending {
            status,
            value: Some(serde_json::json!(7)),
            message: None,
            at: now,
        };
        let with_log = Job {
            reference: Some("r".into()),
            expires_at: Some(now),
            max_attempts: Some(4),
            last_error: Some("an earlier failure".into()),
            progress: Some(Progress {
                current: 1,
                total: 2,
            }),
            attempts: 2,
            logs: vec![line("held")],
            ..job()
        };
        for start in [job(), with_log] {
            let mut held = HeldJob::new(start.clone());
            held.created_implied = true;
            let done = held.into_final(
                start.task.clone(),
                end(JobStatus::Completed),
                vec![line("ran")],
                Some(line("last")),
            );
            let mut want = start.clone();
            want.status = JobStatus::Completed;
            want.result = Some(serde_json::json!(7));
            want.last_error = None;
            want.finished_at = Some(now);
            want.logs = [LogLine::new(start.created_at, 0, "created")]
                .into_iter()
                .chain(start.logs.iter().cloned())
                .chain([line("ran"), line("last")])
                .collect();
            assert_eq!(done, want);
        }
    }
}
