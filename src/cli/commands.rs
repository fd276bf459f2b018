//! One function per command: each reads and changes the store through
//! the library's public API and prints a table or JSON.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use chrono::{DateTime, Utc};
use kessel::store::{JobDelete, JobQuery, Order, Store};
use kessel::{Error, Job, JobId, JobStatus, NewJob, Queue};
use serde_json::{json, Value};

use super::args::{CleanArgs, CreateArgs, KickArgs, ListArgs};
use super::connect::Opened;
use super::error::CliError;
use super::output::{Cell, Out, Table};
use super::parse;

/// Jobs created, kicked, cancelled or removed per store call in bulk.
const BATCH: usize = 1000;

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

async fn counts(queue: &Queue) -> Result<Counts, CliError> {
    let stats = queue
        .stats()
        .await
        .map_err(|e| CliError::queue("read the job counts", e))?;
    let mut by_task = Counts::new();
    for c in stats.counts {
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
pub(crate) async fn tasks(queue: &Queue, out: &Out) -> Result<(), CliError> {
    let by_task = counts(queue).await?;
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
pub(crate) async fn jobs(queue: &Queue, out: &Out) -> Result<(), CliError> {
    let by_task = counts(queue).await?;
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
pub(crate) async fn stats(opened: &Opened, queue: &Queue, out: &Out) -> Result<(), CliError> {
    let by_task = counts(queue).await?;
    let version = opened.schema_version().await?;
    let mut totals = [0u64; 8];
    for n in by_task.values() {
        for (t, c) in totals.iter_mut().zip(n) {
            *t += c;
        }
    }
    let total: u64 = totals.iter().sum();
    if out.json {
        return out.json(&json!({
            "location": opened.location,
            "schema_version": version,
            "tasks": by_task.len(),
            "counts": StatusCounts::of(&totals),
        }));
    }
    let mut table = Table::new(out, &["", ""], &[]);
    table.row(vec![
        Cell::left("store"),
        Cell::left(opened.location.to_string()),
    ]);
    table.row(vec![
        Cell::left("schema version"),
        Cell::left(version.to_string()),
    ]);
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
    let text = table.render();
    // The header row of this two-column table is empty.
    out.text(
        text.split_once('\n')
            .map_or(text.as_str(), |(_, rest)| rest),
    )
}

/// `kessel list`.
pub(crate) async fn list(queue: &Queue, out: &Out, args: ListArgs) -> Result<(), CliError> {
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
    let jobs = queue
        .fetch(query)
        .await
        .map_err(|e| CliError::queue("list jobs", e))?;
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
pub(crate) async fn show(queue: &Queue, out: &Out, id: &str) -> Result<(), CliError> {
    let id = parse::job_id(id)?;
    let job = queue
        .job(id)
        .await
        .map_err(|e| CliError::queue(format!("read job {id}"), e))?;
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

/// The payloads `--from` names, one per non-empty line.
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

/// `kessel create TASK [PAYLOAD]` and `kessel create TASK --from FILE`.
pub(crate) async fn create(queue: &Queue, out: &Out, args: CreateArgs) -> Result<(), CliError> {
    let delay = args
        .delay
        .as_deref()
        .map(|d| parse::duration("--delay", d))
        .transpose()?;
    let run_at = args
        .run_at
        .as_deref()
        .map(|t| parse::time("--run-at", t))
        .transpose()?;
    let expires_in = args
        .expires_in
        .as_deref()
        .map(|d| parse::duration("--expires-in", d))
        .transpose()?;
    let payloads = match (&args.from, args.payload.as_deref()) {
        (Some(path), _) => read_lines(path)?,
        (None, Some("-")) => vec![parse::payload(&read_stdin()?, || "(stdin)".into())?],
        (None, Some(text)) => vec![parse::payload(text, || "(argument)".into())?],
        (None, None) => vec![parse::payload("null", String::new)?],
    };
    let task = args.task;
    let build = |payload: &serde_json::value::RawValue| {
        let mut job = NewJob::new(&task, payload);
        if let Some(d) = delay {
            job = job.delay(d);
        }
        if let Some(at) = run_at {
            job = job.run_at(at);
        }
        if let Some(d) = expires_in {
            job = job.expires_in(d);
        }
        if let Some(p) = args.priority {
            job = job.priority(p);
        }
        if let Some(r) = &args.reference {
            job = job.reference(r.clone());
        }
        if let Some(m) = args.max_attempts {
            job = job.max_attempts(m);
        }
        job
    };
    let total = payloads.len();
    let bar = if args.from.is_some() {
        out.progress(total as u64, "creating")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut ids: Vec<JobId> = Vec::with_capacity(total);
    for chunk in payloads.chunks(BATCH) {
        let handles = queue
            .create_many(chunk.iter().map(|p| build(p)))
            .await
            .map_err(|e| {
                let done = if ids.is_empty() {
                    String::new()
                } else {
                    format!(" (after creating {} of {total})", ids.len())
                };
                CliError::queue(format!("cannot create jobs of `{task}`{done}"), e)
            })?;
        ids.extend(handles.iter().map(|h| h.id()));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
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

/// `kessel cancel ID...`.
pub(crate) async fn cancel(queue: &Queue, out: &Out, ids: &[String]) -> Result<(), CliError> {
    let ids = job_ids(ids)?;
    let mut done = Vec::new();
    for id in ids {
        queue
            .cancel(id)
            .await
            .map_err(|e| CliError::queue(format!("cannot cancel {id}"), e))?;
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

/// `kessel kick ID...` and `kessel kick --task TASK [--limit N]`.
pub(crate) async fn kick(queue: &Queue, out: &Out, args: KickArgs) -> Result<(), CliError> {
    let Some(task) = args.task else {
        let ids = job_ids(&args.ids)?;
        let mut done = Vec::new();
        for id in ids {
            queue
                .kick(id)
                .await
                .map_err(|e| CliError::queue(format!("cannot kick {id}"), e))?;
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
    let buried = counts(queue)
        .await?
        .get(&task)
        .map_or(0, |n| n[slot(JobStatus::Buried)]);
    let bar = out.progress(buried.min(limit as u64), "kicking");
    let mut seen = HashSet::new();
    let mut done = Vec::new();
    while done.len() < limit {
        let page = queue
            .fetch(
                JobQuery::default()
                    .task(&task)
                    .status(JobStatus::Buried)
                    .order(Order::OldestFirst)
                    .limit(BATCH.min(limit - done.len())),
            )
            .await
            .map_err(|e| CliError::queue(format!("cannot list buried jobs of `{task}`"), e))?;
        let fresh: Vec<JobId> = page
            .iter()
            .map(|j| j.id)
            .filter(|id| seen.insert(*id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for id in fresh {
            match queue.kick(id).await {
                Ok(()) => done.push(id),
                // Kicked, cleaned or changed meanwhile.
                Err(Error::WrongState { .. } | Error::UnknownJob(_)) => {}
                Err(e) => return Err(CliError::queue(format!("cannot kick {id}"), e)),
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

/// `kessel clean`: removes final jobs in batches, with a progress bar.
pub(crate) async fn clean(
    queue: &Queue,
    store: &dyn Store,
    out: &Out,
    args: CleanArgs,
) -> Result<(), CliError> {
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
    let upper: u64 = counts(queue)
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
    queue: &Queue,
    store: &dyn Store,
    out: &Out,
    task: &str,
    pattern: &str,
) -> Result<(), CliError> {
    let cancelled = if store.shared().is_none() {
        queue
            .delete_matching(task, pattern)
            .await
            .map_err(|e| CliError::queue(format!("cannot delete jobs of `{task}`"), e))?
    } else {
        let regex = regex::Regex::new(pattern).map_err(|e| CliError::BadValue {
            flag: "PATTERN",
            reason: format!("`{pattern}` is not a valid regular expression: {e}"),
        })?;
        let mut skipped = 0;
        let mut cancelled = 0;
        loop {
            let mut query = JobQuery::default()
                .task(task)
                .order(Order::OldestFirst)
                .limit(BATCH)
                .offset(skipped);
            query.statuses = vec![JobStatus::Scheduled, JobStatus::Ready, JobStatus::Retrying];
            let page = queue
                .fetch(query)
                .await
                .map_err(|e| CliError::queue(format!("cannot list jobs of `{task}`"), e))?;
            for job in &page {
                if !regex.is_match(job.payload.as_str()) {
                    skipped += 1;
                    continue;
                }
                match queue.cancel(job.id).await {
                    Ok(()) => cancelled += 1,
                    // Finished or cancelled meanwhile.
                    Err(Error::WrongState { .. } | Error::UnknownJob(_)) => {}
                    Err(e) => return Err(CliError::queue(format!("cannot cancel {}", job.id), e)),
                }
            }
            if page.len() < BATCH {
                break cancelled;
            }
        }
    };
    if out.json {
        return out.json(&json!({ "task": task, "cancelled": cancelled }));
    }
    out.text(&format!(
        "cancelled {cancelled} queued jobs of `{task}` matching /{pattern}/"
    ))
}
