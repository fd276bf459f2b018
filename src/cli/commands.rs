//! One function per command: each reads and changes jobs through a
//! [`Backend`] (the library's public API on a store, or a running HTTP
//! API) and prints a table or JSON.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use chrono::{DateTime, Utc};
use kessel::store::{JobDelete, JobQuery, Order};
use kessel::{Job, JobId, JobStatus};
use serde_json::{json, Value};

use super::args::{
    BulkArgs, CleanArgs, CreateArgs, KickArgs, ListArgs, ScheduleAction, SchedulesArgs, SuspendArgs,
};
use super::backend::{Backend, Bulk, BulkFilter, CreateOptions, Suspendable, Unique, BATCH};
use super::error::CliError;
use super::output::{Cell, Out, Table};
use super::parse;

/// Counts of each status (in [`JobStatus::ALL`] order) by task.
type Counts = BTreeMap<String, [u64; 8]>;

/// Counts by status, in the order of [`JobStatus::ALL`], as JSON fields.
#[derive(Debug, serde::Serialize)]
struct StatusCounts {
    scheduled: u64,
    ready: u64,
    running: u64,
    retrying: u64,
    completed: u64,
    buried: u64,
    expired: u64,
    cancelled: u64,
    total: u64,
}

impl StatusCounts {
    fn of(n: &[u64; 8]) -> Self {
        let [scheduled, ready, running, retrying, completed, buried, expired, cancelled] = *n;
        StatusCounts {
            scheduled,
            ready,
            running,
            retrying,
            completed,
            buried,
            expired,
            cancelled,
            total: n.iter().sum(),
        }
    }
}

/// One row of `kessel jobs --json`.
#[derive(Debug, serde::Serialize)]
struct TaskCounts<'a> {
    task: &'a str,
    #[serde(flatten)]
    counts: StatusCounts,
}

fn slot(status: JobStatus) -> usize {
    JobStatus::ALL
        .iter()
        .position(|s| *s == status)
        .unwrap_or_default()
}

async fn counts(backend: &Backend) -> Result<Counts, CliError> {
    let mut by_task = Counts::new();
    for c in backend.counts().await? {
        by_task.entry(c.task).or_default()[slot(c.status)] += c.count;
    }
    Ok(by_task)
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn maybe_when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), when)
}

/// `kessel tasks`: each task that has jobs, with pending, running, final
/// and total counts.
pub(crate) async fn tasks(backend: &Backend, out: &Out) -> Result<(), CliError> {
    let by_task = counts(backend).await?;
    let rows: Vec<(String, u64, u64, u64, u64)> = by_task
        .into_iter()
        .map(|(task, n)| {
            let of = |f: fn(JobStatus) -> bool| -> u64 {
                JobStatus::ALL
                    .iter()
                    .filter(|s| f(**s))
                    .map(|s| n[slot(*s)])
                    .sum()
            };
            let running = n[slot(JobStatus::Running)];
            let fin = of(JobStatus::is_final);
            let total: u64 = n.iter().sum();
            (task, total - running - fin, running, fin, total)
        })
        .collect();
    if out.json {
        let list: Vec<Value> = rows
            .iter()
            .map(|(task, pending, running, fin, total)| {
                json!({"task": task, "pending": pending, "running": running, "final": fin, "total": total})
            })
            .collect();
        return out.json(&list);
    }
    if rows.is_empty() {
        return out.text("no jobs");
    }
    let mut table = Table::new(
        out,
        &["TASK", "PENDING", "RUNNING", "FINAL", "TOTAL"],
        &[false, true, true, true, true],
    );
    for (task, pending, running, fin, total) in rows {
        table.row(vec![
            Cell::left(task),
            Cell::right(pending),
            Cell::right(running),
            Cell::right(fin),
            Cell::right(total),
        ]);
    }
    out.text(&table.render())
}

/// `kessel jobs`: counts by task and status, with a total row.
pub(crate) async fn jobs(backend: &Backend, out: &Out) -> Result<(), CliError> {
    let by_task = counts(backend).await?;
    if out.json {
        let list: Vec<TaskCounts<'_>> = by_task
            .iter()
            .map(|(task, n)| TaskCounts {
                task,
                counts: StatusCounts::of(n),
            })
            .collect();
        return out.json(&list);
    }
    if by_task.is_empty() {
        return out.text("no jobs");
    }
    let mut headers = vec!["TASK".to_owned()];
    headers.extend(JobStatus::ALL.iter().map(|s| s.as_str().to_uppercase()));
    headers.push("TOTAL".into());
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut numeric = vec![true; headers.len()];
    numeric[0] = false;
    let mut table = Table::new(out, &headers, &numeric);
    let mut totals = [0u64; 8];
    for (task, n) in &by_task {
        let mut row = vec![Cell::left(task.clone())];
        row.extend(n.iter().map(Cell::right));
        row.push(Cell::right(n.iter().sum::<u64>()));
        table.row(row);
        for (t, c) in totals.iter_mut().zip(n) {
            *t += c;
        }
    }
    let mut row = vec![Cell::styled("total", out.bold("total"))];
    row.extend(totals.iter().map(Cell::right));
    row.push(Cell::right(totals.iter().sum::<u64>()));
    table.row(row);
    out.text(&table.render())
}

/// `kessel stats`: totals by status and what the store is.
pub(crate) async fn stats(backend: &Backend, out: &Out) -> Result<(), CliError> {
    let by_task = counts(backend).await?;
    let version = match backend {
        Backend::Store { opened, .. } => Some(opened.schema_version().await?),
        // The API does not say.
        Backend::Api(_) => None,
    };
    let location = backend.location();
    let mut totals = [0u64; 8];
    for n in by_task.values() {
        for (t, c) in totals.iter_mut().zip(n) {
            *t += c;
        }
    }
    let total: u64 = totals.iter().sum();
    let suspended = backend.suspensions().await?;
    if out.json {
        return out.json(&json!({
            "location": location,
            "schema_version": version,
            "tasks": by_task.len(),
            "counts": StatusCounts::of(&totals),
            "suspended": suspended,
        }));
    }
    let mut table = Table::new(out, &["", ""], &[]);
    table.row(vec![Cell::left("store"), Cell::left(location.to_string())]);
    if let Some(version) = version {
        table.row(vec![
            Cell::left("schema version"),
            Cell::left(version.to_string()),
        ]);
    }
    table.row(vec![
        Cell::left("tasks"),
        Cell::left(by_task.len().to_string()),
    ]);
    for s in JobStatus::ALL {
        table.row(vec![
            Cell::styled(s.as_str(), out.status(s)),
            Cell::left(totals[slot(s)].to_string()),
        ]);
    }
    table.row(vec![
        Cell::styled("total", out.bold("total")),
        Cell::left(total.to_string()),
    ]);
    for s in &suspended {
        let field = |k: &str| s[k].as_str().unwrap_or("?").to_owned();
        table.row(vec![
            Cell::left("suspended"),
            Cell::left(format!(
                "{} `{}` by {} since {}",
                field("kind"),
                field("name"),
                field("by"),
                field("since")
            )),
        ]);
    }
    let text = table.render();
    // The header row of this two-column table is empty.
    out.text(
        text.split_once('\n')
            .map_or(text.as_str(), |(_, rest)| rest),
    )
}

/// `kessel nodes`: the processes using the queue, oldest first.
pub(crate) async fn nodes(backend: &Backend, out: &Out) -> Result<(), CliError> {
    let nodes = backend.nodes().await?;
    if out.json {
        return out.json(&nodes);
    }
    let mut table = Table::new(
        out,
        &[
            "id",
            "host",
            "pid",
            "version",
            "tags",
            "running",
            "started",
            "last seen",
            "status",
        ],
        &[false, false, true, false, false, true, false, false, false],
    );
    for n in &nodes {
        let status = if n.leader {
            format!("{} (leader)", n.status)
        } else {
            n.status.to_string()
        };
        table.row(vec![
            Cell::left(n.id.to_string()),
            Cell::left(n.host.clone()),
            Cell::right(n.pid),
            Cell::left(n.version.clone()),
            Cell::left(n.tags.join(",")),
            Cell::right(format!("{}/{}", n.running, n.concurrency)),
            Cell::left(n.started_at.format("%Y-%m-%d %H:%M:%S").to_string()),
            Cell::left(n.last_heartbeat.format("%Y-%m-%d %H:%M:%S").to_string()),
            Cell::left(status),
        ]);
    }
    out.text(&table.render())
}

/// `kessel list`.
pub(crate) async fn list(backend: &Backend, out: &Out, args: ListArgs) -> Result<(), CliError> {
    let mut query = JobQuery::default()
        .limit(args.limit)
        .offset(args.offset)
        .order(if args.oldest {
            Order::OldestFirst
        } else {
            Order::NewestFirst
        });
    query.statuses = parse::statuses("--status", &args.status)?;
    query.tasks = args.task;
    query.reference = args.reference;
    if !args.tag.is_empty() && matches!(backend, Backend::Store { .. }) {
        return Err(tags_on_a_store());
    }
    query.tags = args.tag;
    let jobs = backend.fetch(query).await?;
    if out.json {
        return out.json(&jobs);
    }
    if jobs.is_empty() {
        return out.text("no jobs");
    }
    let mut table = Table::new(
        out,
        &[
            "ID",
            "TASK",
            "STATUS",
            "ATTEMPTS",
            "PRIORITY",
            "CREATED (UTC)",
            "RUN AT (UTC)",
            "REFERENCE",
        ],
        &[false, false, false, true, true, false, false, false],
    );
    for job in &jobs {
        table.row(vec![
            Cell::left(job.id.to_string()),
            Cell::left(job.task.to_string()),
            Cell::styled(job.status.as_str(), out.status(job.status)),
            Cell::right(job.attempts),
            Cell::right(job.priority),
            Cell::left(when(job.created_at)),
            Cell::left(when(job.run_at)),
            Cell::left(job.reference.clone().unwrap_or_else(|| "-".into())),
        ]);
    }
    out.text(&table.render())
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `kessel show ID`.
pub(crate) async fn show(backend: &Backend, out: &Out, id: &str) -> Result<(), CliError> {
    let id = parse::job_id(id)?;
    let job = backend.job(id).await?;
    if out.json {
        return out.json(&job);
    }
    out.text(&render_job(out, &job))
}

fn render_job(out: &Out, job: &Job) -> String {
    let attempts = match job.max_attempts {
        Some(max) => format!("{} of {max}", job.attempts),
        None => format!("{} (limit: the task's retry policy)", job.attempts),
    };
    let mut table = Table::new(out, &["", ""], &[]);
    let mut field =
        |name: &str, value: Cell| table.row(vec![Cell::styled(name, out.bold(name)), value]);
    field("id", Cell::left(job.id.to_string()));
    field("task", Cell::left(job.task.to_string()));
    field(
        "status",
        Cell::styled(job.status.as_str(), out.status(job.status)),
    );
    field(
        "reference",
        Cell::left(job.reference.clone().unwrap_or_else(|| "-".into())),
    );
    field("priority", Cell::left(job.priority.to_string()));
    field("attempts", Cell::left(attempts));
    field(
        "created",
        Cell::left(format!("{} UTC", when(job.created_at))),
    );
    field("run at", Cell::left(format!("{} UTC", when(job.run_at))));
    field("expires", Cell::left(maybe_when(job.expires_at)));
    field("finished", Cell::left(maybe_when(job.finished_at)));
    if let Some(node) = job.ran_by {
        field("ran by", Cell::left(node.to_string()));
    }
    field(
        "progress",
        Cell::left(
            job.progress
                .map_or_else(|| "-".into(), |p| format!("{}/{}", p.current, p.total)),
        ),
    );
    field(
        "last error",
        Cell::left(job.last_error.clone().unwrap_or_else(|| "-".into())),
    );
    let head = table.render();
    let head = head
        .split_once('\n')
        .map_or(head.as_str(), |(_, rest)| rest);
    let payload = job
        .payload
        .to_value()
        .map_or_else(|_| job.payload.as_str().to_owned(), |v| pretty(&v));
    let mut text = format!("{head}\n{}\n{}", out.bold("payload"), indent(&payload));
    if let Some(result) = &job.result {
        text.push_str(&format!(
            "\n{}\n{}",
            out.bold("result"),
            indent(&pretty(result))
        ));
    }
    text.push_str(&format!("\n{}", out.bold("log")));
    for line in &job.logs {
        let data = line
            .data
            .as_ref()
            .map_or_else(String::new, |d| format!("  {d}"));
        text.push_str(&format!(
            "\n  {}  #{}  {}{data}",
            when(line.at),
            line.attempt,
            line.message
        ));
    }
    text
}

/// The payloads `--from-file` names, one per non-empty line; a line that
/// is not JSON is an error naming it, before any job is created.
fn read_lines(path: &std::path::Path) -> Result<Vec<Box<serde_json::value::RawValue>>, CliError> {
    let (name, text) = if path.as_os_str() == "-" {
        ("stdin".to_owned(), read_stdin()?)
    } else {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
            what: name.clone(),
            source,
        })?;
        (name, text)
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse::payload(l, || format!("on line {} of {name}", i + 1)))
        .collect()
}

fn read_stdin() -> Result<String, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| CliError::Read {
            what: "stdin".into(),
            source,
        })?;
    Ok(text)
}

/// `kessel create TASK [PAYLOAD]` and `kessel create TASK --from-file FILE`.
pub(crate) async fn create(backend: &Backend, out: &Out, args: CreateArgs) -> Result<(), CliError> {
    let options = CreateOptions {
        delay: args
            .delay
            .as_deref()
            .map(|d| parse::duration("--delay", d))
            .transpose()?,
        run_at: args
            .run_at
            .as_deref()
            .map(|t| parse::time("--run-at", t))
            .transpose()?,
        expires_in: args
            .expires_in
            .as_deref()
            .map(|d| parse::duration("--expires-in", d))
            .transpose()?,
        priority: args.priority,
        reference: args.reference,
        max_attempts: args.max_attempts,
        group: args.group,
    };
    let payloads = match (&args.from, args.payload.as_deref()) {
        (Some(path), _) => read_lines(path)?,
        (None, Some("-")) => vec![parse::payload(&read_stdin()?, || "(stdin)".into())?],
        (None, Some(text)) => vec![parse::payload(text, || "(argument)".into())?],
        (None, None) => vec![parse::payload("null", String::new)?],
    };
    let task = args.task;
    let unique = match (args.unique, args.unique_by_payload) {
        (Some(key), _) => Some(Unique::Key(key)),
        (None, true) => Some(Unique::ByPayload),
        (None, false) => None,
    };
    if let (Some(unique), [payload]) = (unique, payloads.as_slice()) {
        let (id, duplicate) = backend
            .create_unique(&task, payload, &options, unique)
            .await?;
        if out.json {
            return out.json(&json!({"id": id, "task": task, "duplicate": duplicate}));
        }
        if duplicate {
            eprintln!("note: a live job holds this unique key; nothing was created");
        }
        return out.text(&id.to_string());
    }
    let bar = if args.from.is_some() {
        out.progress(payloads.len() as u64, "creating")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let ids = backend
        .create_many(&task, &payloads, &options, |n| bar.inc(n as u64))
        .await;
    bar.finish_and_clear();
    let ids = ids?;
    match (args.from.is_some(), out.json) {
        (false, true) => out.json(&json!({"id": ids.first(), "task": task})),
        (false, false) => out.text(&ids.first().map(ToString::to_string).unwrap_or_default()),
        (true, true) => out.json(&json!({"task": task, "created": ids.len(), "ids": ids})),
        (true, false) => out.text(&format!("created {} jobs of `{task}`", ids.len())),
    }
}

fn job_ids(texts: &[String]) -> Result<Vec<JobId>, CliError> {
    texts.iter().map(|t| parse::job_id(t)).collect()
}

/// `kessel cancel ID...` and `kessel cancel --task T --status S ...`.
pub(crate) async fn cancel(backend: &Backend, out: &Out, args: BulkArgs) -> Result<(), CliError> {
    if args.ids.is_empty() {
        return by_filter(backend, out, Bulk::Cancel, args).await;
    }
    let ids = job_ids(&args.ids)?;
    let mut done = Vec::new();
    for id in ids {
        backend.cancel(id).await?;
        if !out.json {
            out.text(&format!("cancelled {id}"))?;
        }
        done.push(id);
    }
    if out.json {
        return out.json(&json!({ "cancelled": done }));
    }
    Ok(())
}

/// `kessel delete ID...`: removes ended jobs, one by one; or `kessel
/// delete --status S ...`: every ended job matching.
pub(crate) async fn delete(backend: &Backend, out: &Out, args: BulkArgs) -> Result<(), CliError> {
    if args.ids.is_empty() {
        return by_filter(backend, out, Bulk::Delete, args).await;
    }
    let ids = job_ids(&args.ids)?;
    let mut done = Vec::new();
    for id in ids {
        backend.delete(id).await?;
        if !out.json {
            out.text(&format!("deleted {id}"))?;
        }
        done.push(id);
    }
    if out.json {
        return out.json(&json!({ "deleted": done }));
    }
    Ok(())
}

/// `cancel` or `delete` of every job matching a filter: through an API
/// one request (`POST /jobs/cancel`, `/jobs/delete`); on a store, the
/// matching jobs are listed, then acted on one by one with a progress
/// bar. A job in a state the action does not apply to is skipped.
async fn by_filter(
    backend: &Backend,
    out: &Out,
    action: Bulk,
    args: BulkArgs,
) -> Result<(), CliError> {
    if matches!(backend, Backend::Store { .. }) && !args.tag.is_empty() {
        return Err(tags_on_a_store());
    }
    let filter = BulkFilter {
        statuses: parse::statuses("--status", &args.status)?,
        tasks: args.task,
        tags: args.tag,
        reference: args.reference,
        all: args.all,
        dry_run: args.dry_run,
    };
    let done = backend.bulk(action, &filter, out).await?;
    if out.json {
        return out.json(&done);
    }
    let (did, would) = match action {
        Bulk::Cancel => ("cancelled", "cancel"),
        Bulk::Kick => ("kicked", "kick"),
        Bulk::Delete => ("deleted", "delete"),
    };
    if filter.dry_run {
        return out.text(&format!("would {would} up to {} jobs", done.matched));
    }
    out.text(&format!(
        "{did} {} of {} matching jobs ({} skipped: in another state or gone)",
        done.done, done.matched, done.skipped
    ))
}

/// `kessel kick ID...` and `kessel kick --task TASK [--limit N]`.
pub(crate) async fn kick(backend: &Backend, out: &Out, args: KickArgs) -> Result<(), CliError> {
    if !args.tag.is_empty() || args.reference.is_some() || args.all || args.dry_run {
        let filter = BulkArgs {
            ids: Vec::new(),
            status: vec!["buried".into()],
            task: args.task.into_iter().collect(),
            tag: args.tag,
            reference: args.reference,
            all: false,
            dry_run: args.dry_run,
        };
        return by_filter(backend, out, Bulk::Kick, filter).await;
    }
    let Some(task) = args.task else {
        let ids = job_ids(&args.ids)?;
        let mut done = Vec::new();
        for id in ids {
            backend.kick(id).await?;
            if !out.json {
                out.text(&format!("kicked {id}"))?;
            }
            done.push(id);
        }
        if out.json {
            return out.json(&json!({ "kicked": done }));
        }
        return Ok(());
    };
    let limit = args.limit.unwrap_or(usize::MAX);
    let buried = counts(backend)
        .await?
        .get(&task)
        .map_or(0, |n| n[slot(JobStatus::Buried)]);
    let bar = out.progress(buried.min(limit as u64), "kicking");
    let mut seen = HashSet::new();
    let mut done = Vec::new();
    while done.len() < limit {
        let page = backend
            .fetch(
                JobQuery::default()
                    .task(&task)
                    .status(JobStatus::Buried)
                    .order(Order::OldestFirst)
                    .limit(BATCH.min(limit - done.len())),
            )
            .await?;
        let fresh: Vec<JobId> = page
            .iter()
            .map(|j| j.id)
            .filter(|id| seen.insert(*id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for id in fresh {
            match backend.kick(id).await {
                Ok(()) => done.push(id),
                // Kicked, cleaned or changed meanwhile.
                Err(CliError::Refused(_) | CliError::NoJob(_)) => {}
                Err(e) => return Err(e),
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if out.json {
        return out.json(&json!({ "task": task, "kicked": done }));
    }
    out.text(&format!("kicked {} jobs of `{task}`", done.len()))
}

/// `kessel clean`: removes final jobs in batches, with a progress bar (on
/// a store; through the API one request, which removes them all).
pub(crate) async fn clean(backend: &Backend, out: &Out, args: CleanArgs) -> Result<(), CliError> {
    let mut statuses = parse::statuses("--status", &args.status)?;
    if statuses.is_empty() {
        statuses.push(JobStatus::Completed);
    }
    if let Some(s) = statuses.iter().find(|s| !s.is_final()) {
        return Err(CliError::BadValue {
            flag: "--status",
            reason: format!(
                "only final jobs (completed, buried, expired, cancelled) can be cleaned, not {s} ones"
            ),
        });
    }
    let age = args
        .older_than
        .as_deref()
        .map(|d| parse::duration("--older-than", d))
        .transpose()?;
    let opened = match backend {
        Backend::Api(api) => {
            if !args.task.is_empty() {
                return Err(CliError::BadValue {
                    flag: "--task",
                    reason: "the API cleans by tag, not by task: use --tag".into(),
                });
            }
            let mut body = json!({
                "statuses": statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "tags": args.tag,
            });
            if let Some(age) = age {
                body["older_than"] = json!(format!("{}ms", age.as_millis()));
            }
            let answer = api.post("cannot clean", "/clean", &body)?;
            return report_removed(out, answer["removed"].as_u64().unwrap_or_default());
        }
        Backend::Store { opened, .. } => opened,
    };
    if !args.tag.is_empty() {
        return Err(tags_on_a_store());
    }
    let store = &*opened.store;
    let finished_before = match age {
        None => None,
        Some(age) => {
            let before = chrono::Duration::from_std(age)
                .ok()
                .and_then(|d| Utc::now().checked_sub_signed(d));
            match before {
                Some(t) => Some(t),
                // Older than any time there is: nothing is.
                None => return report_removed(out, 0),
            }
        }
    };
    let upper: u64 = counts(backend)
        .await?
        .iter()
        .filter(|(task, _)| args.task.is_empty() || args.task.contains(task))
        .map(|(_, n)| statuses.iter().map(|s| n[slot(*s)]).sum::<u64>())
        .sum();
    let bar = out.progress(upper, "cleaning");
    let mut removed = 0u64;
    loop {
        let n = store
            .jobs_delete(&JobDelete {
                statuses: statuses.clone(),
                tasks: args.task.clone(),
                finished_before,
                limit: Some(BATCH),
            })
            .await
            .map_err(|e| {
                CliError::queue(
                    format!("cannot clean (after removing {removed} jobs)"),
                    e.into(),
                )
            })?;
        removed += n;
        bar.inc(n);
        if n < BATCH as u64 {
            break;
        }
    }
    bar.finish_and_clear();
    report_removed(out, removed)
}

/// `--tag` on a store: the CLI defines no task, so it knows no tag.
fn tags_on_a_store() -> CliError {
    CliError::BadValue {
        flag: "--tag",
        reason: "a job's tag is known only to the process that defines its task: use --task, or --tag with --api".into(),
    }
}

fn report_removed(out: &Out, removed: u64) -> Result<(), CliError> {
    if out.json {
        return out.json(&json!({ "removed": removed }));
    }
    out.text(&format!("removed {removed} jobs"))
}

/// `kessel delete-matching TASK PATTERN`: cancels the task's queued jobs
/// whose payload matches. On SQLite this is the library's
/// `Queue::delete_matching` (this process holds every pending job); on
/// PostgreSQL, where that only sees jobs this process claimed, the CLI
/// lists the queued jobs and cancels each match.
pub(crate) async fn delete_matching(
    backend: &Backend,
    out: &Out,
    task: &str,
    pattern: &str,
) -> Result<(), CliError> {
    let (opened, queue) = match backend {
        Backend::Api(api) => {
            let answer = api.post(
                &format!("cannot delete jobs of `{task}`"),
                "/delete-matching",
                &json!({"task": task, "pattern": pattern}),
            )?;
            let cancelled = answer["deleted"].as_u64().unwrap_or_default();
            return report_matching(out, task, pattern, cancelled);
        }
        Backend::Store { opened, queue } => (opened, queue),
    };
    let cancelled = if opened.store.shared().is_none() {
        queue
            .delete_matching(task, pattern)
            .await
            .map_err(|e| CliError::queue(format!("cannot delete jobs of `{task}`"), e))?
            as u64
    } else {
        let regex = regex::Regex::new(pattern).map_err(|e| CliError::BadValue {
            flag: "PATTERN",
            reason: format!("`{pattern}` is not a valid regular expression: {e}"),
        })?;
        let queued = counts(backend).await?.get(task).map_or(0, |n| {
            n[slot(JobStatus::Scheduled)] + n[slot(JobStatus::Ready)] + n[slot(JobStatus::Retrying)]
        });
        let bar = out.progress(queued, "matching");
        let mut skipped = 0;
        let mut cancelled = 0;
        loop {
            let mut query = JobQuery::default()
                .task(task)
                .order(Order::OldestFirst)
                .limit(BATCH)
                .offset(skipped);
            query.statuses = vec![JobStatus::Scheduled, JobStatus::Ready, JobStatus::Retrying];
            let page = backend.fetch(query).await?;
            for job in &page {
                bar.inc(1);
                if !regex.is_match(job.payload.as_str()) {
                    skipped += 1;
                    continue;
                }
                match backend.cancel(job.id).await {
                    Ok(()) => cancelled += 1,
                    // Finished or cancelled meanwhile.
                    Err(CliError::Refused(_) | CliError::NoJob(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if page.len() < BATCH {
                bar.finish_and_clear();
                break cancelled;
            }
        }
    };
    report_matching(out, task, pattern, cancelled)
}

fn report_matching(out: &Out, task: &str, pattern: &str, cancelled: u64) -> Result<(), CliError> {
    if out.json {
        return out.json(&json!({ "task": task, "cancelled": cancelled }));
    }
    out.text(&format!(
        "cancelled {cancelled} queued jobs of `{task}` matching /{pattern}/"
    ))
}

/// `kessel suspend TASK|--tag TAG` and `kessel resume TASK|--tag TAG`, on
/// a database (kept in the store: on PostgreSQL every process applies it
/// at once) or an API.
pub(crate) async fn suspend(
    backend: &Backend,
    out: &Out,
    command: &'static str,
    args: SuspendArgs,
) -> Result<(), CliError> {
    let (kind, name) = match (args.task, args.tag) {
        (_, Some(tag)) => (Suspendable::Tag, tag),
        (Some(task), None) => (Suspendable::Task, task),
        // clap requires one of them.
        (None, None) => {
            return Err(CliError::BadValue {
                flag: "TASK",
                reason: "name a task, or a tag with --tag".into(),
            })
        }
    };
    backend.suspension_action(command, kind, &name).await?;
    let done = if command == "suspend" {
        "suspended"
    } else {
        "resumed"
    };
    if out.json {
        return out.json(&json!({ kind.word(): name, done: true }));
    }
    match kind {
        Suspendable::Task => out.text(&format!("{done} `{name}`")),
        Suspendable::Tag => out.text(&format!("{done} tag `{name}`")),
    }
}

/// `kessel schedules [list]`, `kessel schedules pause|resume|run-now NAME`.
pub(crate) async fn schedules(
    backend: &Backend,
    out: &Out,
    args: SchedulesArgs,
) -> Result<(), CliError> {
    let (verb, done, name) = match args.action.unwrap_or(ScheduleAction::List) {
        ScheduleAction::List => return list_schedules(backend, out).await,
        ScheduleAction::Pause { name } => ("pause", "paused", name),
        ScheduleAction::Resume { name } => ("resume", "resumed", name),
        ScheduleAction::RunNow { name } => ("run-now", "ran", name),
    };
    let job = backend.schedule_action(verb, &name).await?;
    match (job, out.json) {
        (Some(id), true) => out.json(&json!({ "schedule": name, "job": id })),
        (Some(id), false) => out.text(&id.to_string()),
        (None, true) => out.json(&json!({ "schedule": name, done: true })),
        (None, false) => out.text(&format!("{done} schedule `{name}`")),
    }
}

async fn list_schedules(backend: &Backend, out: &Out) -> Result<(), CliError> {
    let schedules = backend.schedules().await?;
    if out.json {
        return out.json(&schedules);
    }
    if schedules.is_empty() {
        return out.text("no schedules");
    }
    let text = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
    let time = |v: &Value| {
        v.as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(|| "-".to_owned(), |t| when(t.with_timezone(&Utc)))
    };
    let mut table = Table::new(
        out,
        &[
            "NAME", "TASK", "WHEN", "MISSED", "STATE", "NEXT RUN", "LAST RUN", "LAST JOB",
        ],
        &[false; 8],
    );
    for s in &schedules {
        let timing = match (s["cron"].as_str(), s["every"].as_str()) {
            (Some(cron), _) => match s["time_zone"].as_str() {
                Some(tz) if tz != "UTC" => format!("{cron} ({tz})"),
                _ => cron.to_owned(),
            },
            (None, Some(every)) => format!("every {every}"),
            (None, None) => "-".to_owned(),
        };
        let state = if s["paused"].as_bool().unwrap_or(false) {
            "paused"
        } else {
            "active"
        };
        table.row(vec![
            Cell::left(text(&s["name"])),
            Cell::left(text(&s["task"])),
            Cell::left(timing),
            Cell::left(text(&s["missed"]).replace('_', "-")),
            Cell::left(state),
            Cell::left(time(&s["next_run"])),
            Cell::left(time(&s["last_run"])),
            Cell::left(text(&s["last_job"])),
        ]);
    }
    out.text(&table.render())
}
