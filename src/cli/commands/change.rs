//! The commands that change jobs: `cancel`, `delete`, `kick`, `clean`,
//! `delete-matching` and `suspend`/`resume`.

use std::collections::HashSet;

use chrono::Utc;
use kessel::store::{JobDelete, JobQuery, Order};
use kessel::{JobId, JobStatus};
use serde_json::json;

use super::{counts, slot, tags_on_a_store};
use crate::cli::args::{BulkArgs, CleanArgs, KickArgs, SuspendArgs};
use crate::cli::backend::{Backend, Bulk, BulkFilter, Suspendable, BATCH};
use crate::cli::error::CliError;
use crate::cli::output::Out;
use crate::cli::parse;

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
