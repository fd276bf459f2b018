//! The overview: jobs by status and task, recent throughput and failures,
//! queue depth per tag, the nodes and their leader, and the queue's health.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse};
use maud::{html, Markup};

use super::meter::Bucket;
use super::page::{self, Frame};
use super::{html as respond, PageError, Viewer};
use crate::job::JobStatus;
use crate::node::{Node, NodeStatus};
use crate::store::{JobQuery, Order};
use crate::suspension::{Suspended, Suspension};

/// One tag of this process: its tasks, jobs waiting, and how long the
/// oldest has waited past its due time.
struct TagRow {
    tag: String,
    tasks: Vec<String>,
    ready: u64,
    oldest_wait: Option<chrono::Duration>,
}

/// How often the overview redraws with no event (seconds): other
/// processes' heartbeats, arrivals and departures send no event here.
const REFRESH: u32 = 10;

/// `GET /dashboard/`.
pub(crate) async fn page(req: HttpRequest) -> Result<HttpResponse, PageError> {
    let viewer = Viewer::of(&req)?;
    let queue = &viewer.state.queue;
    let failed = |e: crate::Error| PageError::new(&req, e.into());
    let stats = queue.stats().await.map_err(failed)?;
    let now = queue.now();

    // Tasks: defined here or with jobs in the store.
    let mut tags_of: BTreeMap<String, String> = BTreeMap::new();
    for entry in queue.inner.tasks.iter() {
        tags_of.insert(entry.key().clone(), entry.value().tag.clone());
    }
    let mut tasks: BTreeMap<String, BTreeMap<JobStatus, u64>> = BTreeMap::new();
    for name in tags_of.keys() {
        tasks.entry(name.clone()).or_default();
    }
    for count in &stats.counts {
        *tasks
            .entry(count.task.clone())
            .or_default()
            .entry(count.status)
            .or_default() += count.count;
    }

    // Tags of this process, with their depth and oldest waiting job.
    let mut tag_rows: BTreeMap<String, TagRow> = BTreeMap::new();
    for (task, tag) in &tags_of {
        let row = tag_rows.entry(tag.clone()).or_insert_with(|| TagRow {
            tag: tag.clone(),
            tasks: Vec::new(),
            ready: 0,
            oldest_wait: None,
        });
        row.tasks.push(task.clone());
        row.ready += stats.count(task, JobStatus::Ready);
    }
    for row in tag_rows.values_mut() {
        if row.ready == 0 {
            continue;
        }
        let oldest = queue
            .fetch(
                JobQuery::default()
                    .status(JobStatus::Ready)
                    .order(Order::OldestFirst)
                    .limit(1)
                    .tag(row.tag.clone()),
            )
            .await
            .map_err(failed)?;
        row.oldest_wait = oldest.first().map(|j| now - j.run_at);
    }

    // A store that keeps no nodes (or a queue that stopped) leaves the
    // rest of the overview standing: the section says why.
    let nodes = queue.nodes().await;
    let this_node = queue.node_id();
    let leads = queue.is_leader();

    let minutes = viewer.dash.meter.minutes(now);
    let hours = viewer.dash.meter.hours(now);
    let per_second = viewer.dash.meter.events_per_second(now);
    let since = viewer.dash.meter.since();
    let base = &viewer.dash.base;
    let admin = viewer.admin();

    let main = html! {
        h1 { "Overview" }
        section.counts #counts {
            @for status in JobStatus::ALL {
                a.count href={ (base) "/jobs?status=" (status.to_string()) } {
                    span.n #{ "count-" (status.to_string()) } data-count=(stats.total(status)) { (stats.total(status)) }
                    (page::status(status))
                }
            }
        }
        section {
            h2 { "Throughput" }
            (summary(&minutes, &hours, per_second))
            (chart("minutes", &minutes, "min"))
            (chart("hours", &hours, "h"))
            p.legend { span.key.completed {} " completed " span.key.failed {} " failed"
                @if let Some(s) = since { span.muted { " · counted since " (page::time(s)) " (the first dashboard request)" } }
            }
        }
        section {
            h2 { "Tasks" }
            @if tasks.is_empty() {
                p.muted { "No tasks are defined here and the store has no jobs." }
            } @else {
                div.scroll {
                    table.tasks #tasks {
                        thead { tr {
                            th { "Task" } th { "Tag" }
                            @for status in JobStatus::ALL { th.num { (status.to_string()) } }
                            @if admin { th { "Dispatch" } }
                        } }
                        tbody {
                            @for (task, counts) in &tasks {
                                tr data-task=(task) {
                                    td { a href={ (base) "/jobs?task=" (page::encode(task)) } { (task) } }
                                    td { (tags_of.get(task).map_or("—", String::as_str)) }
                                    @for status in JobStatus::ALL {
                                        @let n = counts.get(&status).copied().unwrap_or(0);
                                        td.num data-status=(status.to_string()) data-count=(n) {
                                            @if n > 0 {
                                                a href={ (base) "/jobs?task=" (page::encode(task)) "&status=" (status.to_string()) } { (n) }
                                            } @else { span.zero { "0" } }
                                        }
                                    }
                                    @if admin { td { (task_dispatch(base, task, stats.suspension_of(task, tags_of.get(task).map(String::as_str)))) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Queues by tag" }
            @if tag_rows.is_empty() && stats.unserved_tags.is_empty() {
                p.muted { "No tasks are defined in this process." }
            } @else {
                div.scroll {
                    table.tags #tags {
                        thead { tr { th { "Tag" } th { "Tasks" } th.num { "Waiting" } th { "Oldest waiting" } @if admin { th { "Dispatch" } } } }
                        tbody {
                            @for row in tag_rows.values() {
                                tr data-tag=(row.tag) {
                                    td { (row.tag) }
                                    td { (row.tasks.join(", ")) }
                                    td.num data-count=(row.ready) { (row.ready) }
                                    td { @if let Some(w) = row.oldest_wait { (page::span(w.max(chrono::Duration::zero()))) } @else { "—" } }
                                    @if admin { td { (tag_dispatch(base, &row.tag, stats.suspended.iter().find(|s| s.what == Suspended::Tag(row.tag.clone())))) } }
                                }
                            }
                            @for unserved in &stats.unserved_tags {
                                @if !tag_rows.contains_key(&unserved.tag) {
                                    tr.warn data-tag=(unserved.tag) {
                                        td { (unserved.tag) }
                                        td { em { "no worker of this process serves it" } }
                                        td.num data-count=(unserved.waiting) { (unserved.waiting) }
                                        td { "—" }
                                        @if admin { td {} }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Nodes" }
            (nodes_section(nodes.as_ref(), this_node, leads, now))
        }
        section {
            h2 { "Health" }
            dl.health {
                dt { "Events per second" } dd #events-per-second { (format!("{per_second:.1}")) }
                dt { "Events missed by slow subscribers" } dd { (stats.events_missed) }
                dt { "Stuck worker threads" } dd {
                    @if stats.stuck_threads.is_empty() { "none" } @else {
                        @for t in &stats.stuck_threads {
                            span.warn { "thread " (t.thread) " of " (t.tags.join(",")) " since " (page::time(t.since)) } " "
                        }
                    }
                }
            }
        }
    };
    Ok(respond(page::frame(
        &viewer,
        Frame {
            title: "Overview",
            events: Some(format!("{base}/events")),
            above: None,
            refresh: Some(REFRESH),
        },
        main,
    )))
}

/// The processes using the queue, oldest first, and which one leads.
fn nodes_section(
    nodes: Result<&Vec<Node>, &crate::Error>,
    this_node: uuid::Uuid,
    leads: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Markup {
    let nodes = match nodes {
        Ok(nodes) => nodes,
        Err(e) => {
            return html! { p.muted #nodes-unavailable { "The nodes cannot be listed: " (e.to_string()) } }
        }
    };
    let leader = nodes.iter().find(|n| n.leader);
    let ago = |at: chrono::DateTime<chrono::Utc>| {
        let age = (now - at).max(chrono::Duration::zero());
        if age < chrono::Duration::seconds(1) {
            "now".to_owned()
        } else {
            format!("{} ago", page::span(age))
        }
    };
    // The store's view (the node list) names the leader; this process's
    // own view (`is_leader`) may lag it until its next bid.
    html! {
        p #leader data-leads=(leads) {
            @match leader {
                Some(l) if l.id != this_node => {
                    "The leader is " strong { (l.host) " (pid " (l.pid) ")" } "; this process does not lead"
                    @if leads { " (it counts itself the leader until its next bid, within a third of a lease)" }
                    "."
                },
                None if !leads => {
                    span.warn { "No node leads right now" } " (one takes the lead at its next bid)."
                },
                _ => "This process leads: it runs the maintenance done once for every process (rescue of lapsed leases, expiry, pruning).",
            }
        }
        div.scroll {
            table.nodes #nodes {
                thead { tr {
                    th { "Host" } th.num { "PID" } th { "Version" } th { "Tags served" }
                    th.num { "Concurrency" } th.num { "Running" } th { "Started" }
                    th { "Last heartbeat" } th { "Status" }
                } }
                tbody {
                    @for node in nodes {
                        @let gone = node.status == NodeStatus::Gone;
                        tr class=[gone.then_some("warn")] data-node=(node.id.to_string()) data-status=(node.status.as_str()) data-leader=(node.leader) title={ "node " (node.id.to_string()) } {
                            td {
                                (node.host)
                                @if node.leader { " " span.badge.leader { "leader" } }
                                @if node.id == this_node { " " span.muted { "(this process)" } }
                            }
                            td.num { (node.pid) }
                            td { (node.version) }
                            td.tags { @if node.tags.is_empty() { span.muted { "none (no workers)" } } @else { (node.tags.join(", ")) } }
                            td.num data-count=(node.concurrency) { (node.concurrency) }
                            td.num data-count=(node.running) { (node.running) }
                            td { (page::time(node.started_at)) }
                            td { (page::time(node.last_heartbeat)) " " span.muted { "(" (ago(node.last_heartbeat)) ")" } }
                            td { span class={ "node " (node.status.as_str()) } { (node.status.as_str()) } }
                        }
                    }
                }
            }
        }
    }
}

/// A task's dispatch cell: Suspend, or who suspended it and since when
/// with Resume (none when only its tag is suspended: resume the tag).
fn task_dispatch(base: &str, task: &str, suspension: Option<&Suspension>) -> Markup {
    html! {
        @match suspension {
            None => (dispatch_button(base, "tasks", task, "suspend", "Suspend")),
            Some(s) => {
                (suspended_note(s))
                @if matches!(&s.what, Suspended::Task(_)) {
                    " " (dispatch_button(base, "tasks", task, "resume", "Resume"))
                } @else {
                    " " span.muted { "(with its tag)" }
                }
            }
        }
    }
}

/// A tag's dispatch cell: Suspend, or who suspended it with Resume.
fn tag_dispatch(base: &str, tag: &str, suspension: Option<&Suspension>) -> Markup {
    html! {
        @match suspension {
            None => (dispatch_button(base, "tags", tag, "suspend", "Suspend")),
            Some(s) => {
                (suspended_note(s)) " " (dispatch_button(base, "tags", tag, "resume", "Resume"))
            }
        }
    }
}

fn suspended_note(s: &Suspension) -> Markup {
    html! {
        span.warn data-suspended-by=(s.by) title={ "suspended by " (s.by) } {
            "suspended since " (page::time(s.since)) " by " (s.by)
        }
    }
}

fn dispatch_button(base: &str, kind: &str, name: &str, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action={ (base) "/" (kind) "/" (page::encode(name)) "/" (action) } data-live {
            button.small type="submit" data-action=(action) { (label) }
        }
    }
}

/// Totals over the minutes and hours charts.
fn summary(minutes: &[Bucket], hours: &[Bucket], per_second: f64) -> Markup {
    let sum = |b: &[Bucket]| -> (u64, u64) {
        (
            b.iter().map(|m| m.completed).sum(),
            b.iter().map(|m| m.failed).sum(),
        )
    };
    let rate = |(completed, failed): (u64, u64)| {
        if completed + failed > 0 {
            format!(
                "{:.1}%",
                failed as f64 * 100.0 / (completed + failed) as f64
            )
        } else {
            "—".into()
        }
    };
    let (completed, failed) = sum(minutes);
    let (day_completed, day_failed) = sum(hours);
    let recent: u64 = minutes
        .iter()
        .rev()
        .take(5)
        .map(|m| m.completed + m.failed)
        .sum();
    html! {
        p.chart-summary #throughput data-completed=(completed) data-failed=(failed) {
            "Last " (minutes.len()) " minutes: "
            strong { (completed) } " completed, " strong { (failed) } " failed attempts (failure rate "
            (rate((completed, failed))) "); last " (hours.len()) " hours: "
            (day_completed) " completed, " (day_failed) " failed (" (rate((day_completed, day_failed))) "). "
            (format!("{:.1}", recent as f64 / 5.0)) " attempts per minute over the last 5; "
            (format!("{per_second:.1}")) " events per second."
        }
    }
}

/// Completed and failed attempts per bucket as stacked bars, drawn here
/// as SVG (no script needed to see it); `unit` labels the buckets.
fn chart(id: &str, buckets: &[Bucket], unit: &str) -> Markup {
    const W: f64 = 600.0;
    const H: f64 = 100.0;
    let peak = buckets
        .iter()
        .map(|m| m.completed + m.failed)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = buckets.len();
    let bar = W / n.max(1) as f64;
    html! {
        svg.chart id={ "chart-" (id) } viewBox={ "0 0 " (W) " " (H + 16.0) } role="img" aria-label={ "attempts per " (unit) } {
            line x1="0" y1=(H) x2=(W) y2=(H) class="axis" {}
            @for (i, m) in buckets.iter().enumerate() {
                @let x = i as f64 * bar + 1.0;
                @let hc = m.completed as f64 / peak * (H - 14.0);
                @let hf = m.failed as f64 / peak * (H - 14.0);
                g {
                    title { (m.completed) " completed, " (m.failed) " failed, " (n - i - 1) " " (unit) " ago" }
                    @if hc > 0.0 { rect.completed x=(format!("{x:.1}")) y=(format!("{:.1}", H - hc)) width=(format!("{:.1}", bar - 2.0)) height=(format!("{hc:.1}")) {} }
                    @if hf > 0.0 { rect.failed x=(format!("{x:.1}")) y=(format!("{:.1}", H - hc - hf)) width=(format!("{:.1}", bar - 2.0)) height=(format!("{hf:.1}")) {} }
                }
            }
            text x="0" y=(H + 13.0) class="label" { "−" (n) " " (unit) }
            text x=(W) y=(H + 13.0) class="label end" { "now" }
            text x="2" y="10" class="label" { "per " (unit) ", peak " (peak as u64) }
        }
    }
}
