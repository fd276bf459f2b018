//! What the commands work on: a store opened by this process, or a
//! running kessel HTTP API. Each operation the commands share is one
//! method here, answering the same types and errors from either; what
//! only one of them can do the commands match on themselves.

use kessel::store::{JobQuery, Order, StatusCount};
use kessel::{Job, JobId, NewJob, Queue};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::api::{self, ApiClient};
use super::connect::{Location, Opened};
use super::error::CliError;

/// Jobs read, created or changed per store call or request in bulk.
pub(crate) const BATCH: usize = 1000;

/// A request body of `POST /jobs/batch` is cut before it reaches this
/// many bytes (the API's default limit is 1 MiB).
const API_BATCH_BYTES: usize = 512 * 1024;

/// A store and a producer-only queue on it, or an API.
#[derive(Debug)]
pub(crate) enum Backend {
    /// A store this process opened.
    Store {
        /// The store.
        opened: Opened,
        /// A queue on it that defines no task and runs no job.
        queue: Queue,
    },
    /// A running kessel HTTP API.
    Api(ApiClient),
}

/// The options `kessel create` gives every job it creates.
#[derive(Debug, Default, Clone)]
pub(crate) struct CreateOptions {
    pub(crate) delay: Option<std::time::Duration>,
    pub(crate) run_at: Option<chrono::DateTime<chrono::Utc>>,
    pub(crate) expires_in: Option<std::time::Duration>,
    pub(crate) priority: Option<i64>,
    pub(crate) reference: Option<String>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) group: Option<String>,
}

/// How `kessel create --unique` makes a job unique.
#[derive(Debug, Clone)]
pub(crate) enum Unique {
    /// By this key.
    Key(String),
    /// By the task and payload.
    ByPayload,
}

impl CreateOptions {
    fn new_job(&self, task: &str, payload: &RawValue) -> NewJob {
        let mut job = NewJob::new(task, payload);
        if let Some(d) = self.delay {
            job = job.delay(d);
        }
        if let Some(at) = self.run_at {
            job = job.run_at(at);
        }
        if let Some(d) = self.expires_in {
            job = job.expires_in(d);
        }
        if let Some(p) = self.priority {
            job = job.priority(p);
        }
        if let Some(r) = &self.reference {
            job = job.reference(r.clone());
        }
        if let Some(m) = self.max_attempts {
            job = job.max_attempts(m);
        }
        if let Some(g) = &self.group {
            job = job.group(g.clone());
        }
        job
    }

    /// The job as `POST /jobs/batch` takes it.
    fn request(&self, task: &str, payload: &RawValue) -> Value {
        let mut job = json!({"task": task, "payload": payload});
        let fields = [
            (
                "delay",
                self.delay.map(|d| json!(format!("{}ms", d.as_millis()))),
            ),
            ("run_at", self.run_at.map(|t| json!(t.to_rfc3339()))),
            (
                "expires_in",
                self.expires_in
                    .map(|d| json!(format!("{}ms", d.as_millis()))),
            ),
            ("priority", self.priority.map(|p| json!(p))),
            ("reference", self.reference.as_ref().map(|r| json!(r))),
            ("max_attempts", self.max_attempts.map(|m| json!(m))),
            ("group", self.group.as_ref().map(|g| json!(g))),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                job[name] = value;
            }
        }
        job
    }
}

impl Backend {
    /// What the commands work on, as printed.
    pub(crate) fn location(&self) -> Location {
        match self {
            Backend::Store { opened, .. } => opened.location.clone(),
            Backend::Api(api) => Location::Api {
                url: api.base.clone(),
            },
        }
    }

    /// Non-zero job counts by task and status.
    pub(crate) async fn counts(&self) -> Result<Vec<StatusCount>, CliError> {
        match self {
            Backend::Store { queue, .. } => Ok(queue
                .stats()
                .await
                .map_err(|e| CliError::queue("read the job counts", e))?
                .counts),
            Backend::Api(api) => {
                let stats = api.get("cannot read the job counts", "/stats", &[])?;
                serde_json::from_value(stats["counts"].clone()).map_err(|e| CliError::Api {
                    action: "cannot read the job counts".into(),
                    status: 200,
                    code: "unexpected_shape".into(),
                    message: e.to_string(),
                })
            }
        }
    }

    /// The processes using the queue, oldest first: on a store, those the
    /// store lists, but not this command's own queue.
    pub(crate) async fn nodes(&self) -> Result<Vec<kessel::Node>, CliError> {
        match self {
            Backend::Store { queue, .. } => {
                let mut nodes = queue
                    .nodes()
                    .await
                    .map_err(|e| CliError::queue("cannot list the nodes", e))?;
                nodes.retain(|n| n.id != queue.node_id());
                Ok(nodes)
            }
            Backend::Api(api) => {
                let listed = api.get("cannot list the nodes", "/nodes", &[])?;
                serde_json::from_value(listed["nodes"].clone()).map_err(|e| CliError::Api {
                    action: "cannot list the nodes".into(),
                    status: 200,
                    code: "unexpected_shape".into(),
                    message: e.to_string(),
                })
            }
        }
    }

    /// Jobs matching `query` (statuses, tasks, reference, order, offset
    /// and limit).
    pub(crate) async fn fetch(&self, query: JobQuery) -> Result<Vec<Job>, CliError> {
        let api = match self {
            Backend::Store { queue, .. } => {
                return queue
                    .fetch(query)
                    .await
                    .map_err(|e| CliError::queue("cannot list jobs", e))
            }
            Backend::Api(api) => api,
        };
        // The API pages with a cursor, not an offset: skip by reading.
        let mut params: Vec<(&str, String)> = Vec::new();
        if !query.statuses.is_empty() {
            let names: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
            params.push(("status", names.join(",")));
        }
        if !query.tasks.is_empty() {
            params.push(("task", query.tasks.join(",")));
        }
        if !query.tags.is_empty() {
            params.push(("tag", query.tags.join(",")));
        }
        if let Some(r) = &query.reference {
            params.push(("reference", r.clone()));
        }
        let order = match query.order {
            Order::OldestFirst => "oldest",
            _ => "newest",
        };
        params.push(("order", order.into()));
        let wanted = query.offset.saturating_add(query.limit);
        let mut jobs: Vec<Job> = Vec::new();
        let mut cursor: Option<String> = None;
        while jobs.len() < wanted {
            let mut page_params = params.clone();
            page_params.push(("limit", (wanted - jobs.len()).min(BATCH).to_string()));
            if let Some(c) = &cursor {
                page_params.push(("cursor", c.clone()));
            }
            let page = api.get("cannot list jobs", "/jobs", &page_params)?;
            let items = page["jobs"].as_array().cloned().unwrap_or_default();
            for item in items {
                jobs.push(api::job_of(item)?);
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        Ok(jobs.into_iter().skip(query.offset).collect())
    }

    /// One job, or [`CliError::NoJob`].
    pub(crate) async fn job(&self, id: JobId) -> Result<Job, CliError> {
        match self {
            Backend::Store { queue, .. } => queue
                .job(id)
                .await
                .map_err(|e| CliError::queue(format!("cannot read job {id}"), e)),
            Backend::Api(api) => api.job(id),
        }
    }

    /// Cancels a job.
    pub(crate) async fn cancel(&self, id: JobId) -> Result<(), CliError> {
        match self {
            Backend::Store { queue, .. } => queue
                .cancel(id)
                .await
                .map_err(|e| CliError::queue(format!("cannot cancel {id}"), e)),
            Backend::Api(api) => api.job_action(id, "cancel"),
        }
    }

    /// Removes an ended job and its log.
    pub(crate) async fn delete(&self, id: JobId) -> Result<(), CliError> {
        match self {
            Backend::Store { queue, .. } => queue
                .delete(id)
                .await
                .map_err(|e| CliError::queue(format!("cannot delete {id}"), e)),
            Backend::Api(api) => api.delete_job(id),
        }
    }

    /// Returns a buried job to ready.
    pub(crate) async fn kick(&self, id: JobId) -> Result<(), CliError> {
        match self {
            Backend::Store { queue, .. } => queue
                .kick(id)
                .await
                .map_err(|e| CliError::queue(format!("cannot kick {id}"), e)),
            Backend::Api(api) => api.job_action(id, "kick"),
        }
    }

    /// Creates one job of `task` per payload, all with `options`, in
    /// batches; `done` is told how many each batch created. On a store
    /// a batch is one write; on the API one request (all or none).
    pub(crate) async fn create_many(
        &self,
        task: &str,
        payloads: &[Box<RawValue>],
        options: &CreateOptions,
        done: impl Fn(usize),
    ) -> Result<Vec<JobId>, CliError> {
        let total = payloads.len();
        let mut ids: Vec<JobId> = Vec::with_capacity(total);
        let failed = |ids: &Vec<JobId>| {
            let after = if ids.is_empty() {
                String::new()
            } else {
                format!(" (after creating {} of {total})", ids.len())
            };
            format!("cannot create jobs of `{task}`{after}")
        };
        match self {
            Backend::Store { queue, .. } => {
                for chunk in payloads.chunks(BATCH) {
                    let handles = queue
                        .create_many(chunk.iter().map(|p| options.new_job(task, p)))
                        .await
                        .map_err(|e| CliError::queue(failed(&ids), e))?;
                    ids.extend(handles.iter().map(|h| h.id()));
                    done(chunk.len());
                }
            }
            Backend::Api(api) => {
                let mut rest = payloads;
                while !rest.is_empty() {
                    let mut bytes = 0;
                    let mut batch = Vec::new();
                    for p in rest.iter().take(BATCH) {
                        let job = options.request(task, p);
                        bytes += p.get().len() + 128;
                        batch.push(job);
                        if bytes >= API_BATCH_BYTES {
                            break;
                        }
                    }
                    let n = batch.len();
                    let answer = api.post(&failed(&ids), "/jobs/batch", &json!({"jobs": batch}))?;
                    let created: Vec<JobId> = serde_json::from_value(answer["ids"].clone())
                        .map_err(|e| CliError::Api {
                            action: failed(&ids),
                            status: 201,
                            code: "unexpected_shape".into(),
                            message: e.to_string(),
                        })?;
                    ids.extend(created);
                    done(n);
                    rest = &rest[n..];
                }
            }
        }
        Ok(ids)
    }

    /// Creates one unique job; returns its id, or the id of the live job
    /// that holds the key and true.
    pub(crate) async fn create_unique(
        &self,
        task: &str,
        payload: &RawValue,
        options: &CreateOptions,
        unique: Unique,
    ) -> Result<(JobId, bool), CliError> {
        let action = format!("cannot create a job of `{task}`");
        let queue = match self {
            Backend::Store { queue, .. } => queue,
            Backend::Api(api) => {
                let mut body = options.request(task, payload);
                match unique {
                    Unique::Key(key) => body["unique"] = json!(key),
                    Unique::ByPayload => body["unique_by_payload"] = json!(true),
                }
                let answer = api.post(&action, "/jobs", &body)?;
                let id = answer["id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| CliError::Api {
                        action,
                        status: 201,
                        code: "unexpected_shape".into(),
                        message: format!("no job id in the answer: {answer}"),
                    })?;
                return Ok((id, answer["duplicate"].as_bool().unwrap_or(false)));
            }
        };
        let job = options.new_job(task, payload);
        let job = match unique {
            Unique::Key(key) => job.unique(key),
            Unique::ByPayload => job.unique_by_payload(),
        };
        let handle = queue
            .create_job(job)
            .await
            .map_err(|e| CliError::queue(action, e))?;
        Ok((handle.id(), handle.is_duplicate()))
    }

    /// Cancels or deletes every job matching `filter` (or counts them,
    /// with `dry_run`). Through an API, one request; on a store the
    /// matching jobs (created before now) are listed, then acted on one by
    /// one with a progress bar on `out`. A job in a state the action does
    /// not apply to, or gone meanwhile, is counted as skipped.
    pub(crate) async fn bulk(
        &self,
        action: Bulk,
        filter: &BulkFilter,
        out: &super::output::Out,
    ) -> Result<BulkDone, CliError> {
        let what = format!("cannot {} jobs by filter", action.name());
        if let Backend::Api(api) = self {
            let mut query: Vec<(&str, String)> = Vec::new();
            if !filter.statuses.is_empty() {
                let names: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
                query.push(("status", names.join(",")));
            }
            if !filter.tasks.is_empty() {
                query.push(("task", filter.tasks.join(",")));
            }
            if !filter.tags.is_empty() {
                query.push(("tag", filter.tags.join(",")));
            }
            if let Some(r) = &filter.reference {
                query.push(("reference", r.clone()));
            }
            if filter.all {
                query.push(("confirm", "all".into()));
            }
            if filter.dry_run {
                query.push(("dry_run", "true".into()));
            }
            let query: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode_segment(v)))
                .collect();
            let path = format!("/jobs/{}?{}", action.name(), query.join("&"));
            let answer = api.post(&what, &path, &Value::Null)?;
            return serde_json::from_value(answer).map_err(|e| CliError::Api {
                action: what,
                status: 200,
                code: "unexpected_shape".into(),
                message: e.to_string(),
            });
        }
        if filter.is_empty() && !filter.all {
            return Err(CliError::BadValue {
                flag: "--all",
                reason: format!(
                    "no filter: this would {} every job; pass --all to mean it",
                    action.name()
                ),
            });
        }
        let now = chrono::Utc::now();
        let mut ids = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut offset = 0;
        loop {
            let mut query = JobQuery::default()
                .order(Order::OldestFirst)
                .limit(BATCH)
                .offset(offset);
            query.statuses = filter.statuses.clone();
            query.tasks = filter.tasks.clone();
            query.reference = filter.reference.clone();
            query.created_before = Some(now);
            let page = self.fetch(query).await?;
            let n = page.len();
            offset += n;
            ids.extend(page.into_iter().map(|j| j.id).filter(|id| seen.insert(*id)));
            if n < BATCH {
                break;
            }
        }
        let mut done = BulkDone {
            action: action.name().to_owned(),
            matched: ids.len() as u64,
            done: 0,
            skipped: 0,
            dry_run: filter.dry_run,
        };
        if filter.dry_run {
            return Ok(done);
        }
        let bar = out.progress(done.matched, action.progress());
        for id in ids {
            let result = match action {
                Bulk::Cancel => self.cancel(id).await,
                Bulk::Kick => self.kick(id).await,
                Bulk::Delete => self.delete(id).await,
            };
            match result {
                Ok(()) => done.done += 1,
                Err(CliError::Refused(_) | CliError::NoJob(_)) => done.skipped += 1,
                Err(e) => {
                    bar.finish_and_clear();
                    return Err(e);
                }
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(done)
    }

    /// Suspends or resumes (`command`) a task or a tag (`kind`): on a
    /// store, kept in it; through the API (`POST /tasks/{task}/{command}`,
    /// `POST /tags/{tag}/{command}`), by the API's process.
    pub(crate) async fn suspension_action(
        &self,
        command: &'static str,
        kind: Suspendable,
        name: &str,
    ) -> Result<(), CliError> {
        let action = format!("cannot {command} {} `{name}`", kind.word());
        match self {
            // In the store: on PostgreSQL every process on the schema
            // applies it at once; on SQLite the next queue on the file
            // starts with it.
            Backend::Store { queue, .. } => match (kind, command) {
                (Suspendable::Task, "suspend") => queue.suspend_by(name, suspended_by()).await,
                (Suspendable::Task, _) => queue.resume(name).await,
                (Suspendable::Tag, "suspend") => queue.suspend_tag_by(name, suspended_by()).await,
                (Suspendable::Tag, _) => queue.resume_tag(name).await,
            }
            .map_err(|e| CliError::queue(action, e)),
            Backend::Api(api) => {
                let collection = match kind {
                    Suspendable::Task => "tasks",
                    Suspendable::Tag => "tags",
                };
                let path = format!("/{collection}/{}/{command}", encode_segment(name));
                api.post(&action, &path, &Value::Null)?;
                Ok(())
            }
        }
    }

    /// Every schedule, by name, as the API shows them (`name`, `task`,
    /// `payload`, `cron` and `time_zone` or `every`, `missed`, `paused`,
    /// `next_run`, `last_run`, `last_job`).
    pub(crate) async fn schedules(&self) -> Result<Vec<Value>, CliError> {
        let action = "cannot list the schedules";
        match self {
            Backend::Store { queue, .. } => Ok(queue
                .schedules()
                .list()
                .await
                .map_err(|e| CliError::queue(action, e))?
                .into_iter()
                .map(schedule_json)
                .collect()),
            Backend::Api(api) => {
                let listed = api.get(action, "/schedules", &[])?;
                Ok(listed["schedules"].as_array().cloned().unwrap_or_default())
            }
        }
    }

    /// Pauses, resumes or runs now (`verb`: `pause`, `resume`, `run-now`)
    /// the schedule called `name`; for `run-now`, the job's id.
    pub(crate) async fn schedule_action(
        &self,
        verb: &'static str,
        name: &str,
    ) -> Result<Option<JobId>, CliError> {
        let action = format!("cannot {verb} schedule `{name}`");
        match self {
            Backend::Store { queue, .. } => {
                let schedules = queue.schedules();
                let done = match verb {
                    "pause" => schedules.pause(name).await.map(|()| None),
                    "resume" => schedules.resume(name).await.map(|()| None),
                    _ => schedules.run_now(name).await.map(|h| Some(h.id())),
                };
                done.map_err(|e| CliError::queue(action, e))
            }
            Backend::Api(api) => {
                let path = format!("/schedules/{}/{verb}", encode_segment(name));
                let answer = api
                    .post(&action, &path, &Value::Null)
                    .map_err(|e| match e {
                        CliError::Api {
                            status: 404, code, ..
                        } if code == "schedule_not_found" => CliError::NoSchedule(name.to_owned()),
                        other => other,
                    })?;
                Ok(answer["id"].as_str().and_then(|id| id.parse().ok()))
            }
        }
    }

    /// The suspensions in force, as the API gives them: `kind`, `name`,
    /// `by` and `since` each.
    pub(crate) async fn suspensions(&self) -> Result<Vec<Value>, CliError> {
        match self {
            Backend::Store { queue, .. } => Ok(queue
                .stats()
                .await
                .map_err(|e| CliError::queue("read the suspensions", e))?
                .suspended
                .iter()
                .map(|s| {
                    json!({"kind": s.what.kind(), "name": s.what.name(), "by": s.by, "since": s.since})
                })
                .collect()),
            Backend::Api(api) => {
                let stats = api.get("cannot read the suspensions", "/stats", &[])?;
                Ok(stats["suspended"].as_array().cloned().unwrap_or_default())
            }
        }
    }

    /// Stops the queue and closes the store (nothing for an API).
    pub(crate) async fn close(self) -> Result<(), CliError> {
        match self {
            Backend::Store { opened, queue } => opened.close(Some(queue)).await,
            Backend::Api(_) => Ok(()),
        }
    }
}

/// What `kessel cancel`, `kick` and `delete` by filter do to each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bulk {
    /// Cancel it.
    Cancel,
    /// Kick it (buried jobs only).
    Kick,
    /// Remove it (ended jobs only).
    Delete,
}

impl Bulk {
    /// `cancel` or `delete`, as the API's path says it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Bulk::Cancel => "cancel",
            Bulk::Kick => "kick",
            Bulk::Delete => "delete",
        }
    }

    fn progress(self) -> &'static str {
        match self {
            Bulk::Cancel => "cancelling",
            Bulk::Kick => "kicking",
            Bulk::Delete => "deleting",
        }
    }
}

/// Which jobs `kessel cancel` and `kessel delete` act on by filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct BulkFilter {
    pub(crate) statuses: Vec<kessel::JobStatus>,
    pub(crate) tasks: Vec<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) reference: Option<String>,
    /// Every job, when there is no filter.
    pub(crate) all: bool,
    /// Only count.
    pub(crate) dry_run: bool,
}

impl BulkFilter {
    fn is_empty(&self) -> bool {
        self.statuses.is_empty()
            && self.tasks.is_empty()
            && self.tags.is_empty()
            && self.reference.is_none()
    }
}

/// What a bulk action did, as the API answers it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct BulkDone {
    pub(crate) action: String,
    pub(crate) matched: u64,
    pub(crate) done: u64,
    pub(crate) skipped: u64,
    pub(crate) dry_run: bool,
}

/// What `kessel suspend` and `kessel resume` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspendable {
    /// A task.
    Task,
    /// A tag: every task with it.
    Tag,
}

impl Suspendable {
    /// `task` or `tag`.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Suspendable::Task => "task",
            Suspendable::Tag => "tag",
        }
    }
}

/// A schedule as the API shows it.
fn schedule_json(info: kessel::schedule::ScheduleInfo) -> Value {
    let mut value = json!({
        "name": info.name,
        "task": info.task,
        "payload": info.payload,
        "missed": match info.missed {
            kessel::schedule::Missed::Skip => "skip",
            _ => "run_once",
        },
        "paused": info.paused,
        "next_run": info.next_run,
        "last_run": info.last_run,
        "last_job": info.last_job,
    });
    match info.when {
        kessel::schedule::When::Cron {
            expression,
            time_zone,
        } => {
            value["cron"] = json!(expression);
            value["time_zone"] = json!(time_zone);
        }
        kessel::schedule::When::Every(every) => value["every"] = json!(interval(every)),
        other => value["cron"] = json!(other.to_string()),
    }
    value
}

/// An interval in the largest unit that divides it (`90s`, `15m`), as the
/// API writes it.
fn interval(every: std::time::Duration) -> String {
    let ms = every.as_millis();
    if every.as_micros() % 1000 != 0 || ms == 0 {
        return format!("{}us", every.as_micros());
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Who `kessel suspend` records as suspending: the command line, and the
/// user when the environment names one.
fn suspended_by() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("USERNAME")) {
        Ok(user) if !user.is_empty() => format!("kessel cli ({user})"),
        _ => "kessel cli".to_owned(),
    }
}

/// `text` as one URL path segment: everything but unreserved characters
/// percent-encoded.
pub(crate) fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_segment("send email"), "send%20email");
        assert_eq!(encode_segment("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(encode_segment("ok-1_2.x~"), "ok-1_2.x~");
    }

    #[test]
    fn create_options_become_the_api_request() {
        let options = CreateOptions {
            delay: Some(std::time::Duration::from_secs(90)),
            priority: Some(3),
            reference: Some("r".into()),
            group: Some("tenant-7".into()),
            ..CreateOptions::default()
        };
        let payload = RawValue::from_string("{\"n\":1}".into()).unwrap();
        assert_eq!(
            options.request("email", &payload),
            json!({"task": "email", "payload": {"n": 1}, "delay": "90000ms", "priority": 3, "reference": "r", "group": "tenant-7"})
        );
    }
}
