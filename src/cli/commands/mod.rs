//! One function per command: each reads and changes jobs through a
//! [`Backend`] (the library's public API on a store, or a running HTTP
//! API) and prints a table or JSON.
//!
//! This file holds the overviews (`tasks`, `jobs`, `stats`, `nodes`) and
//! the helpers the commands share; `read.rs`, `create.rs`, `change.rs` and
//! `schedules.rs` hold the rest.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kessel::JobStatus;
use serde_json::{json, Value};

use super::backend::Backend;
use super::error::CliError;
use super::output::{Cell, Out, Table};

mod change;
mod create;
mod read;
mod schedules;

pub(crate) use change::*;
pub(crate) use create::*;
pub(crate) use read::*;
pub(crate) use schedules::*;

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

/// `--tag` on a store: the CLI defines no task, so it knows no tag.
fn tags_on_a_store() -> CliError {
    CliError::BadValue {
        flag: "--tag",
        reason: "a job's tag is known only to the process that defines its task: use --task, or --tag with --api".into(),
    }
}
