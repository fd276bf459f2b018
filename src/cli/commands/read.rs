//! `kessel list` and `kessel show`: pages of jobs, and one job in full.

use kessel::store::{JobQuery, Order};
use kessel::Job;
use serde_json::Value;

use super::{maybe_when, tags_on_a_store, when};
use crate::cli::args::ListArgs;
use crate::cli::backend::Backend;
use crate::cli::error::CliError;
use crate::cli::output::{Cell, Out, Table};
use crate::cli::parse;

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
