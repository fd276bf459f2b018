//! What goes over the wire: the API's own request and response types,
//! mirroring the library's, with their OpenAPI schemas. The library's
//! types stay free of web concerns; these convert from them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::{Job, JobStatus, LogLine};
use crate::Stats;

// Duration fields carry, in the OpenAPI document, the pattern of what
// `kessel::parse_duration` reads (a whole number, then `ms`, `s`, `m`, `h`
// or `d`; none is milliseconds), so a value the pattern allows is one the
// API parses (too large a number is still a 400). utoipa takes only a
// literal there, so it is repeated: "^[\\t\\n\\r ]*[0-9]+...".

/// Integer fields take any JSON number without a fraction (`3.0` is 3),
/// as JSON Schema's `integer` does; serde alone refuses `3.0`.
pub(crate) mod integral {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    fn whole<E: Error, T: TryFrom<i128>>(n: &serde_json::Number) -> Result<T, E> {
        let wide = if let Some(i) = n.as_i64() {
            Some(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            Some(i128::from(u))
        } else {
            // Only where a float holds every whole number exactly (below
            // 2^53): a larger one was an integer out of range, rounded.
            #[allow(clippy::cast_possible_truncation)]
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0)
                .map(|f| f as i128)
        };
        let wide = wide.ok_or_else(|| E::custom(format!("`{n}` is not a whole number")))?;
        T::try_from(wide).map_err(|_| E::custom(format!("`{n}` is out of range")))
    }

    /// A required integer.
    pub(crate) fn required<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i128>,
    {
        whole(&serde_json::Number::deserialize(d)?)
    }

    /// An optional integer (with `#[serde(default)]`).
    pub(crate) fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i128>,
    {
        Option::<serde_json::Number>::deserialize(d)?
            .as_ref()
            .map(whole)
            .transpose()
    }
}

/// The statuses `POST /clean` takes, for the OpenAPI document.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // read as `Status`, which names the field when it is wrong
pub(crate) enum FinalStatus {
    Completed,
    Buried,
    Expired,
    Cancelled,
}

/// Where a job is in its life (see `docs/lifecycle.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Scheduled,
    Ready,
    Running,
    Retrying,
    Completed,
    Buried,
    Expired,
    Cancelled,
}

impl From<JobStatus> for Status {
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::Scheduled => Status::Scheduled,
            JobStatus::Ready => Status::Ready,
            JobStatus::Running => Status::Running,
            JobStatus::Retrying => Status::Retrying,
            JobStatus::Completed => Status::Completed,
            JobStatus::Buried => Status::Buried,
            JobStatus::Expired => Status::Expired,
            JobStatus::Cancelled => Status::Cancelled,
        }
    }
}

impl From<Status> for JobStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Scheduled => JobStatus::Scheduled,
            Status::Ready => JobStatus::Ready,
            Status::Running => JobStatus::Running,
            Status::Retrying => JobStatus::Retrying,
            Status::Completed => JobStatus::Completed,
            Status::Buried => JobStatus::Buried,
            Status::Expired => JobStatus::Expired,
            Status::Cancelled => JobStatus::Cancelled,
        }
    }
}

/// A job to create. Only `task` is required.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateJobRequest {
    /// The task the job runs (need not be defined in this process): not
    /// blank, no `:`.
    #[schema(
        example = "send email",
        min_length = 1,
        pattern = "^[^:]*[^:\\s][^:]*$"
    )]
    pub(crate) task: String,
    /// The input for the task's handler: any JSON value (null when left out).
    #[serde(default)]
    #[schema(example = json!({"to": "ford@example.com"}))]
    pub(crate) payload: serde_json::Value,
    /// Start no earlier than this long from now: `10ms`, `30s`, `45m`, `2h`,
    /// `6d`, or a bare number of milliseconds. Not with `run_at`.
    #[schema(
        example = "10m",
        pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$"
    )]
    pub(crate) delay: Option<String>,
    /// Start no earlier than this time (RFC 3339). Not with `delay`.
    pub(crate) run_at: Option<DateTime<Utc>>,
    /// Expire, without running, if not started this long from now. Not
    /// with `expires_at`.
    #[schema(pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$")]
    pub(crate) expires_in: Option<String>,
    /// Expire, without running, if not started by this time. Not with
    /// `expires_in`.
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// 0 runs first (the default); larger numbers wait; negatives are 0.
    #[serde(default, deserialize_with = "integral::optional")]
    pub(crate) priority: Option<i64>,
    /// The producer's own reference for the job.
    pub(crate) reference: Option<String>,
    /// Attempts allowed for this job, overriding the task's retry policy;
    /// 0 is read as 1.
    #[serde(default, deserialize_with = "integral::optional")]
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 4294967295_u64)]
    pub(crate) max_attempts: Option<u32>,
    /// A unique key: while a live job holds it, nothing is created and
    /// the answer names that job (`duplicate: true`). One namespace for
    /// the whole queue; 1 to 512 bytes. Not with `unique_by_payload`.
    #[schema(example = "sync:42", min_length = 1, max_length = 512)]
    pub(crate) unique: Option<String>,
    /// Unique by task and payload: the key is derived from both. Not with
    /// `unique`.
    pub(crate) unique_by_payload: Option<bool>,
    /// How long the job holds its key: `waiting` (until an attempt
    /// starts), `unfinished` (until it is final; the default) or `window`
    /// (for `unique_window` after it was created). Without `unique`, makes
    /// the job unique by payload.
    pub(crate) unique_scope: Option<UniqueScopeParam>,
    /// With `unique_scope: window`: how long (`1h`, `30m`).
    #[schema(
        example = "1h",
        pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$"
    )]
    pub(crate) unique_window: Option<String>,
    /// A URL to POST the job's outcome to when it reaches a final state
    /// (a webhook callback, signed; see `docs/http.md`): `http` or
    /// `https`, with a host. Wins over the task's own callback.
    #[schema(example = "https://example.com/hooks/kessel")]
    pub(crate) callback: Option<String>,
    /// The name of the secret that signs the job's own `callback` (one
    /// the API's process registered with `Webhooks::secret`), in place of
    /// its task's: a callback to a third party signed with the secret that
    /// party was given. Only the name is stored, never the secret. Needs
    /// `callback`; 1 to 200 bytes, no control characters.
    #[schema(example = "partner-a", min_length = 1, max_length = 200)]
    pub(crate) callback_secret: Option<String>,
    /// The job's fair group (a tenant, a customer): within one priority,
    /// the groups of a tag take turns, weighted as the queue says (see
    /// `docs/flow-control.md`, "Fair groups"). 1 to 255 bytes, not blank,
    /// no control characters.
    #[schema(example = "tenant-42", min_length = 1, max_length = 255)]
    pub(crate) group: Option<String>,
}

/// How long a unique job holds its key (see `docs/unique.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum UniqueScopeParam {
    /// While it waits to run.
    Waiting,
    /// Until it is final.
    Unfinished,
    /// For `unique_window` after it was created.
    Window,
}

/// Several jobs to create in one store write: all or none (a batch with
/// unique jobs in it is created job by job, in order).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBatchRequest {
    /// The jobs, created in this order.
    pub(crate) jobs: Vec<CreateJobRequest>,
}

/// A created job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CreatedJob {
    /// Its id.
    #[schema(value_type = String, format = Uuid)]
    pub(crate) id: String,
    /// Its status: `ready`, or `scheduled` when it waits for a delay.
    pub(crate) status: Status,
    /// True when nothing was created because a live job holds the unique
    /// key: `id` and `status` are that job's.
    pub(crate) duplicate: bool,
}

/// Jobs created in one request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CreatedJobs {
    /// The created jobs' ids, in the order the jobs were given (for a
    /// unique job whose key a live job holds, that job's id).
    #[schema(value_type = Vec<String>)]
    pub(crate) ids: Vec<String>,
    /// For each job, in the same order: true when it was not created
    /// because a live job holds its unique key.
    pub(crate) duplicates: Vec<bool>,
}

/// One line of a job's log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LogLineView {
    /// When it was written.
    pub(crate) at: DateTime<Utc>,
    /// The attempt that wrote it (0 before the first attempt).
    pub(crate) attempt: u32,
    /// The message.
    pub(crate) message: String,
    /// Structured data, when the handler gave some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<serde_json::Value>,
}

impl From<&LogLine> for LogLineView {
    fn from(line: &LogLine) -> Self {
        LogLineView {
            at: line.at,
            attempt: line.attempt,
            message: line.message.to_string(),
            data: line.data.clone(),
        }
    }
}

/// A job's last reported progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ProgressView {
    /// Steps done.
    pub(crate) current: u64,
    /// Steps in all.
    pub(crate) total: u64,
}

/// Everything kessel records about a job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct JobView {
    /// kessel's id for the job (a UUIDv7: ids sort by creation).
    #[schema(value_type = String, format = Uuid)]
    pub(crate) id: String,
    /// The task the job runs.
    pub(crate) task: String,
    /// The producer's own reference, if it gave one.
    pub(crate) reference: Option<String>,
    /// Where the job is in its life.
    pub(crate) status: Status,
    /// The input for the task's handler.
    pub(crate) payload: serde_json::Value,
    /// 0 runs first.
    pub(crate) priority: u32,
    /// Attempts started so far.
    pub(crate) attempts: u32,
    /// Attempts allowed, when the producer set it.
    pub(crate) max_attempts: Option<u32>,
    /// The last failure's message, or the final outcome's message.
    pub(crate) last_error: Option<String>,
    /// What the handler returned, once completed.
    pub(crate) result: Option<serde_json::Value>,
    /// The last reported progress.
    pub(crate) progress: Option<ProgressView>,
    /// When the job was created.
    pub(crate) created_at: DateTime<Utc>,
    /// The earliest the job may start (its next attempt, while retrying).
    pub(crate) run_at: DateTime<Utc>,
    /// The latest the job may start.
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// When the job reached a final state.
    pub(crate) finished_at: Option<DateTime<Utc>>,
    /// The node (process, as `GET /nodes` lists it) that took the job's
    /// latest attempt, on a store shared by several processes; absent on
    /// a store of one process, which runs every job itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ran_by: Option<String>,
    /// The job's own webhook callback URL, when it was created with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) callback: Option<String>,
    /// The name of the secret that signs its own callback, when it was
    /// created with one (the name only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) callback_secret: Option<String>,
    /// The job's fair group, when it was created in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    /// The deliveries of its webhook callback (the job's own or its
    /// task's), oldest first: one per final state the job reached. Only
    /// in `GET /jobs/{id}`, not in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deliveries: Option<Vec<DeliveryView>>,
    /// The job's log.
    pub(crate) logs: Vec<LogLineView>,
}

/// One delivery of a job's webhook callback: the POST of one final state,
/// tried until the receiver answers 2xx or the attempts run out. It is a
/// job of task `kessel.webhook`, so `GET /jobs/{id}` with its id shows
/// each attempt in its log (the status code or the error, the duration).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    /// The delivery's id (a job id).
    #[schema(value_type = String, format = Uuid)]
    pub(crate) id: String,
    /// The URL it POSTs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    /// The final state of the job it announces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) job_status: Option<Status>,
    /// Where the delivery stands: `ready` or `retrying` while it is still
    /// to be sent, `completed` once a receiver answered 2xx, `buried` when
    /// its attempts ran out.
    pub(crate) status: Status,
    /// Attempts made so far.
    pub(crate) attempts: u32,
    /// Why the last attempt failed (a status code, a timeout, a refused
    /// connection), when it did.
    pub(crate) last_error: Option<String>,
    /// When it was made (when the job reached that state).
    pub(crate) created_at: DateTime<Utc>,
    /// When the next attempt is due, while it is still to be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_attempt_at: Option<DateTime<Utc>>,
    /// When it ended (delivered, or given up).
    pub(crate) finished_at: Option<DateTime<Utc>>,
}

#[cfg(feature = "webhooks")]
impl From<Job> for DeliveryView {
    fn from(job: Job) -> Self {
        let delivery = job
            .payload
            .to_value()
            .ok()
            .and_then(|v| serde_json::from_value::<crate::webhook::WebhookDelivery>(v).ok());
        DeliveryView {
            id: job.id.to_string(),
            url: delivery.as_ref().map(|d| d.url.clone()),
            job_status: delivery.map(|d| d.body.status.into()),
            status: job.status.into(),
            attempts: job.attempts,
            last_error: job.last_error,
            created_at: job.created_at,
            next_attempt_at: (!job.status.is_final()).then_some(job.run_at),
            finished_at: job.finished_at,
        }
    }
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        JobView {
            id: job.id.to_string(),
            task: job.task.to_string(),
            reference: job.reference,
            status: job.status.into(),
            // A payload a foreign writer stored as something other than
            // JSON is shown as its text rather than failing the request.
            payload: job
                .payload
                .to_value()
                .unwrap_or_else(|_| serde_json::Value::String(job.payload.as_str().to_owned())),
            priority: job.priority,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            last_error: job.last_error,
            result: job.result,
            progress: job.progress.map(|p| ProgressView {
                current: p.current,
                total: p.total,
            }),
            created_at: job.created_at,
            run_at: job.run_at,
            expires_at: job.expires_at,
            finished_at: job.finished_at,
            ran_by: job.ran_by.map(|node| node.to_string()),
            callback: job.callback,
            callback_secret: job.callback_secret,
            group: job.group,
            deliveries: None,
            logs: job.logs.iter().map(LogLineView::from).collect(),
        }
    }
}

/// One page of jobs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct JobPage {
    /// The jobs on this page.
    pub(crate) jobs: Vec<JobView>,
    /// Pass as `cursor` (with the same filters) for the next page; absent
    /// on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_cursor: Option<String>,
}

/// A suspension in force: what it holds back, who asked, since when.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct SuspensionView {
    /// `task` or `tag`.
    pub(crate) kind: String,
    /// The task's or the tag's name.
    pub(crate) name: String,
    /// Who suspended it.
    pub(crate) by: String,
    /// Since when.
    pub(crate) since: DateTime<Utc>,
}

impl From<&crate::Suspension> for SuspensionView {
    fn from(s: &crate::Suspension) -> Self {
        SuspensionView {
            kind: s.what.kind().to_owned(),
            name: s.what.name().to_owned(),
            by: s.by.clone(),
            since: s.since,
        }
    }
}

/// A task and how many of its jobs are in each status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TaskView {
    /// The task's name.
    pub(crate) task: String,
    /// Whether this process defines it (has a handler for it).
    pub(crate) defined: bool,
    /// The suspension that holds its jobs back (its own, or its tag's as
    /// defined in this process); absent when it is not suspended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) suspended: Option<SuspensionView>,
    /// Jobs by status; every status is present.
    pub(crate) counts: BTreeMap<String, u64>,
    /// All its jobs.
    pub(crate) total: u64,
}

/// The tasks, sorted by name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TaskList {
    /// The tasks defined here or with jobs in the store.
    pub(crate) tasks: Vec<TaskView>,
}

/// How many jobs of one task are in one status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct StatusCountView {
    /// The task.
    pub(crate) task: String,
    /// The status.
    pub(crate) status: Status,
    /// How many jobs.
    pub(crate) count: u64,
}

/// A worker thread a handler blocks.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct StuckThreadView {
    /// The tags of the worker the thread belongs to.
    pub(crate) tags: Vec<String>,
    /// Which of the worker's threads, from 0.
    pub(crate) thread: usize,
    /// When the scheduler last heard from it.
    pub(crate) since: DateTime<Utc>,
    /// The jobs it was running then.
    #[schema(value_type = Vec<String>)]
    pub(crate) running: Vec<String>,
}

/// A tag with jobs ready and no worker of this process to run them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct UnservedTagView {
    /// The tag.
    pub(crate) tag: String,
    /// How many jobs wait for it.
    pub(crate) waiting: u64,
}

/// Counts of jobs by task and status, and the queue's health.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct StatsView {
    /// Non-zero counts by task and status.
    pub(crate) counts: Vec<StatusCountView>,
    /// Jobs by status over all tasks; every status is present.
    pub(crate) totals: BTreeMap<String, u64>,
    /// Events dropped because subscribers lagged.
    pub(crate) events_missed: u64,
    /// Worker threads a handler blocks right now.
    pub(crate) stuck_threads: Vec<StuckThreadView>,
    /// Tags with jobs ready and no worker to run them.
    pub(crate) unserved_tags: Vec<UnservedTagView>,
    /// The tasks and tags suspended (on a shared store, by any process).
    pub(crate) suspended: Vec<SuspensionView>,
}

impl From<Stats> for StatsView {
    fn from(stats: Stats) -> Self {
        let suspended = stats.suspended.iter().map(SuspensionView::from).collect();
        let totals = JobStatus::ALL
            .into_iter()
            .map(|s| (s.to_string(), stats.total(s)))
            .collect();
        StatsView {
            totals,
            counts: stats
                .counts
                .into_iter()
                .map(|c| StatusCountView {
                    task: c.task,
                    status: c.status.into(),
                    count: c.count,
                })
                .collect(),
            events_missed: stats.events_missed,
            stuck_threads: stats
                .stuck_threads
                .into_iter()
                .map(|t| StuckThreadView {
                    tags: t.tags,
                    thread: t.thread,
                    since: t.since,
                    running: t.running.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            unserved_tags: stats
                .unserved_tags
                .into_iter()
                .map(|t| UnservedTagView {
                    tag: t.tag,
                    waiting: t.waiting,
                })
                .collect(),
            suspended,
        }
    }
}

/// What to clean: final jobs of these statuses (default `completed`), of
/// tasks with these tags (default all), finished longer ago than
/// `older_than` (default any age).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CleanRequest {
    /// Final statuses: completed, buried, expired, cancelled.
    #[serde(default)]
    #[schema(value_type = Vec<FinalStatus>)]
    pub(crate) statuses: Vec<Status>,
    /// Only jobs of tasks with these tags (as defined in this process).
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    /// Only jobs that finished longer ago than this (`7d`, `12h`).
    #[schema(pattern = "^[\\t\\n\\r ]*[0-9]+[\\t\\n\\r ]*(ms|s|m|h|d)?[\\t\\n\\r ]*$")]
    pub(crate) older_than: Option<String>,
}

/// How many jobs were removed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CleanResponse {
    /// Jobs removed, with their logs.
    pub(crate) removed: u64,
}

/// Which queued jobs to delete: those of `task` whose payload, as JSON
/// text, matches the regular expression `pattern`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteMatchingRequest {
    /// The task.
    pub(crate) task: String,
    /// A regular expression (Rust `regex` syntax) over the payload's JSON text.
    #[schema(example = "spam@")]
    pub(crate) pattern: String,
}

/// How many queued jobs were deleted (they end as cancelled).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeleteMatchingResponse {
    /// Jobs deleted.
    pub(crate) deleted: u64,
}

/// The answer to a suspend, resume, cancel or kick.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Done {
    /// Always true.
    pub(crate) ok: bool,
}

/// What a bulk action did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct BulkResponse {
    /// `cancel`, `kick` or `delete`.
    pub(crate) action: String,
    /// Jobs that matched the filter.
    pub(crate) matched: u64,
    /// Jobs the action was done to (0 with `dry_run`).
    pub(crate) done: u64,
    /// Matched jobs the action did not apply to: in a state that does not
    /// allow it (kick a job that is not buried, cancel a final one, delete
    /// a pending one), or gone meanwhile.
    pub(crate) skipped: u64,
    /// Whether this was only a count.
    pub(crate) dry_run: bool,
}
