//! The jobs list (filters in the query string, paged) and a job's page.

use actix_web::web::{Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::page::{self, Frame};
use super::{html as respond, PageError, Viewer};
use crate::job::{Job, JobStatus};
use crate::store::{JobQuery, Order};
use crate::web::error::WebError;
use crate::web::jobs::parse_id;

/// Jobs on one page of the list.
pub(crate) const PAGE_SIZE: usize = 50;

/// How many of the newest jobs matching the other filters a text search
/// looks through.
pub(crate) const SEARCH_MAX: usize = 10_000;

/// The list's filters as the query string has them. Unknown parameters
/// are ignored (a bookmark may carry a tracker's); bad values are a 400
/// naming the parameter.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct FilterParams {
    pub(crate) status: Option<String>,
    pub(crate) task: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) reference: Option<String>,
    /// Text to find in the payload or the last error.
    pub(crate) q: Option<String>,
    pub(crate) page: Option<String>,
}

/// The filters, read and checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) statuses: Vec<JobStatus>,
    pub(crate) tasks: Vec<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) reference: Option<String>,
    /// Text to find in the payload or the last error, lowercased.
    pub(crate) text: Option<String>,
    /// From 1.
    pub(crate) page: usize,
}

fn split_list(text: &Option<String>) -> Vec<String> {
    text.iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl FilterParams {
    /// Checks the values.
    ///
    /// # Errors
    ///
    /// A 400 naming `status` (not a status) or `page` (not a whole number
    /// from 1).
    pub(crate) fn read(&self) -> Result<Filter, WebError> {
        let statuses = split_list(&self.status)
            .iter()
            .map(|s| s.parse::<JobStatus>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WebError::invalid_field("status", e.to_string()))?;
        let page = match self
            .page
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            None => 1,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1 && *n <= 1_000_000)
                .ok_or_else(|| {
                    WebError::invalid_field(
                        "page",
                        format!("`{text}` is not a page number (a whole number from 1)"),
                    )
                })?,
        };
        Ok(Filter {
            statuses,
            tasks: split_list(&self.task),
            tags: split_list(&self.tag),
            reference: self
                .reference
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
            text: self
                .q
                .as_deref()
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(str::to_lowercase),
            page,
        })
    }
}

impl Filter {
    /// The query for this filter's jobs, newest first: `limit` of them
    /// from `offset`.
    pub(crate) fn query(&self, offset: usize, limit: usize) -> JobQuery {
        JobQuery {
            statuses: self.statuses.clone(),
            tasks: self.tasks.clone(),
            tags: self.tags.clone(),
            reference: self.reference.clone(),
            order: Order::NewestFirst,
            offset,
            limit,
            ..JobQuery::default()
        }
    }

    /// Whether `job` holds the filter's text (if any) in its payload or
    /// last error, ignoring case.
    pub(crate) fn has_text(&self, job: &Job) -> bool {
        self.text.as_deref().is_none_or(|text| {
            job.payload.as_str().to_lowercase().contains(text)
                || job
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.to_lowercase().contains(text))
        })
    }

    /// `limit` matching jobs from `offset`, newest first. A text filter
    /// is applied here, to the newest [`SEARCH_MAX`] jobs matching the
    /// rest (the store's query has no text filter).
    ///
    /// # Errors
    ///
    /// The store's.
    pub(crate) async fn jobs(
        &self,
        queue: &crate::Queue,
        mut query: JobQuery,
    ) -> Result<Vec<Job>, crate::Error> {
        if self.text.is_none() {
            return queue.fetch(query).await;
        }
        let (offset, limit) = (query.offset, query.limit);
        query.offset = 0;
        query.limit = SEARCH_MAX;
        Ok(queue
            .fetch(query)
            .await?
            .into_iter()
            .filter(|job| self.has_text(job))
            .skip(offset)
            .take(limit)
            .collect())
    }

    /// The filter as a query string, without the page (`status=buried&task=x`).
    pub(crate) fn query_string(&self) -> String {
        let mut parts = Vec::new();
        let join = |v: &[String]| v.join(",");
        if !self.statuses.is_empty() {
            let s: Vec<String> = self.statuses.iter().map(ToString::to_string).collect();
            parts.push(format!("status={}", page::encode(&join(&s))));
        }
        if !self.tasks.is_empty() {
            parts.push(format!("task={}", page::encode(&join(&self.tasks))));
        }
        if !self.tags.is_empty() {
            parts.push(format!("tag={}", page::encode(&join(&self.tags))));
        }
        if let Some(r) = &self.reference {
            parts.push(format!("reference={}", page::encode(r)));
        }
        if let Some(q) = &self.text {
            parts.push(format!("q={}", page::encode(q)));
        }
        parts.join("&")
    }

    /// In words, for a confirmation: `status buried, task send-email`.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        let s: Vec<String> = self.statuses.iter().map(ToString::to_string).collect();
        for (name, values) in [
            ("status", s),
            ("task", self.tasks.clone()),
            ("tag", self.tags.clone()),
        ] {
            if !values.is_empty() {
                parts.push(format!("{name} {}", values.join(" or ")));
            }
        }
        if let Some(r) = &self.reference {
            parts.push(format!("reference {r}"));
        }
        if let Some(q) = &self.text {
            parts.push(format!("with “{q}” in the payload or error"));
        }
        if parts.is_empty() {
            "every job".into()
        } else {
            parts.join(", ")
        }
    }

    /// The filter's fields as hidden form inputs (for a bulk action).
    pub(crate) fn hidden_inputs(&self) -> Markup {
        let s: Vec<String> = self.statuses.iter().map(ToString::to_string).collect();
        html! {
            @if !s.is_empty() { input type="hidden" name="status" value=(s.join(",")); }
            @if !self.tasks.is_empty() { input type="hidden" name="task" value=(self.tasks.join(",")); }
            @if !self.tags.is_empty() { input type="hidden" name="tag" value=(self.tags.join(",")); }
            @if let Some(r) = &self.reference { input type="hidden" name="reference" value=(r); }
            @if let Some(q) = &self.text { input type="hidden" name="q" value=(q); }
        }
    }
}

/// The filter form, above the list (redraws leave it alone).
fn filter_form(viewer: &Viewer, filter: &Filter) -> Markup {
    let base = &viewer.dash.base;
    let status = filter
        .statuses
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    html! {
        form.filters #filters method="get" action={ (base) "/jobs" } {
            label { "Status "
                select name="status" {
                    option value="" selected[status.is_empty()] { "any" }
                    @for s in JobStatus::ALL {
                        option value=(s.to_string()) selected[status == s.to_string()] { (s.to_string()) }
                    }
                }
            }
            label { "Task " input type="text" name="task" value=(filter.tasks.join(",")) placeholder="any"; }
            label { "Tag " input type="text" name="tag" value=(filter.tags.join(",")) placeholder="any"; }
            label { "Reference " input type="text" name="reference" value=[filter.reference.as_deref()] placeholder="any"; }
            label { "Text " input type="search" name="q" value=[filter.text.as_deref()] placeholder="in payload or error"; }
            button type="submit" { "Filter" }
            a href={ (base) "/jobs" } { "Clear" }
        }
    }
}

/// `GET /dashboard/jobs`: a page of jobs matching the filters.
pub(crate) async fn list(
    req: HttpRequest,
    params: Query<FilterParams>,
) -> Result<HttpResponse, PageError> {
    let viewer = Viewer::of(&req)?;
    let filter = params.read().map_err(|e| PageError::new(&req, e))?;
    let offset = (filter.page - 1) * PAGE_SIZE;
    let mut jobs = filter
        .jobs(&viewer.state.queue, filter.query(offset, PAGE_SIZE + 1))
        .await
        .map_err(|e| PageError::new(&req, e.into()))?;
    let more = jobs.len() > PAGE_SIZE;
    jobs.truncate(PAGE_SIZE);
    let base = &viewer.dash.base;
    let qs = filter.query_string();
    let page_link = |page: usize| {
        if qs.is_empty() {
            format!("{base}/jobs?page={page}")
        } else {
            format!("{base}/jobs?{qs}&page={page}")
        }
    };
    let events = match filter.tasks.as_slice() {
        [task] => format!("{base}/events?task={}", page::encode(task)),
        _ => format!("{base}/events"),
    };
    let main = html! {
        h1 { "Jobs" }
        p.muted #filter-summary {
            "Showing " (filter.describe()) ", newest first, page " (filter.page) "."
            @if filter.text.is_some() {
                " Text is looked for in the newest " (SEARCH_MAX) " jobs matching the other filters."
            }
        }
        @if jobs.is_empty() {
            p #no-jobs { "No jobs match." }
        } @else {
            table.jobs #jobs {
                thead { tr { th { "Job" } th { "Task" } th { "Status" } th { "Attempts" } th { "Created" } th { "Reference" } } }
                tbody {
                    @for job in &jobs {
                        tr data-job=(job.id.to_string()) data-task=(job.task.as_ref()) {
                            td { a href={ (base) "/jobs/" (job.id.to_string()) } { code { (short_id(job)) } } }
                            td { (job.task.as_ref()) }
                            td { (page::status(job.status)) }
                            td { (job.attempts) }
                            td { (page::time(job.created_at)) }
                            td { (job.reference.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        nav.pages {
            @if filter.page > 1 { a rel="prev" href=(page_link(filter.page - 1)) { "← Newer" } }
            @if more { a rel="next" href=(page_link(filter.page + 1)) { "Older →" } }
        }
        @if viewer.admin() {
            section.bulk {
                h2 { "All jobs matching" }
                p.muted { "Asks for a confirmation, with the number of jobs, before doing anything." }
                @for (action, label) in [("cancel", "Cancel all…"), ("retry", "Retry all buried…"), ("delete", "Delete all finished…")] {
                    form.inline method="post" action={ (base) "/bulk" } {
                        input type="hidden" name="action" value=(action);
                        (filter.hidden_inputs())
                        button type="submit" data-bulk=(action) { (label) }
                    }
                }
            }
        }
    };
    Ok(respond(page::frame(
        &viewer,
        Frame {
            title: "Jobs",
            events: Some(events),
            above: Some(filter_form(&viewer, &filter)),
            refresh: None,
        },
        main,
    )))
}

fn short_id(job: &Job) -> String {
    let id = job.id.to_string();
    id[id.len().saturating_sub(12)..].to_owned()
}

/// When each attempt started, from the job's log.
fn starts(job: &Job) -> Vec<chrono::DateTime<chrono::Utc>> {
    job.logs
        .iter()
        .filter(|l| &*l.message == "started")
        .map(|l| l.at)
        .collect()
}

/// `GET /dashboard/jobs/{id}`: everything about one job.
pub(crate) async fn detail(req: HttpRequest, id: Path<String>) -> Result<HttpResponse, PageError> {
    let viewer = Viewer::of(&req)?;
    let id = parse_id(&id).map_err(|e| PageError::new(&req, e))?;
    let job = viewer
        .state
        .queue
        .job(id)
        .await
        .map_err(|e| PageError::new(&req, e.into()))?;
    let base = &viewer.dash.base;
    let now = viewer.state.queue.now();
    let started = starts(&job).last().copied();
    // How late the last attempt started after it was due; for a job
    // waiting past its due time, how late it is so far.
    let lateness = match (started, job.status) {
        (Some(s), _) => Some(s - job.run_at),
        (None, JobStatus::Ready) => Some(now - job.run_at),
        _ => None,
    }
    .filter(|l| *l >= chrono::Duration::zero());
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let payload = job
        .payload
        .to_value()
        .map(|v| pretty(&v))
        .unwrap_or_else(|_| job.payload.as_str().to_owned());
    let job_url = format!("{base}/jobs/{}", job.id);
    let main = html! {
        h1 { "Job " code { (job.id.to_string()) } }
        p {
            span #job-status data-status=(job.status.to_string()) { (page::status(job.status)) }
            " of task " a href={ (base) "/jobs?task=" (page::encode(&job.task)) } { (job.task.as_ref()) }
            @if let Some(r) = &job.reference { " · reference " code { (r) } }
        }
        @if viewer.admin() {
            div.actions #actions {
                @if !job.status.is_final() {
                    form.inline method="post" action={ (job_url) "/cancel" } data-live {
                        button.danger #cancel type="submit" { "Cancel" }
                    }
                }
                @if job.status == JobStatus::Buried {
                    form.inline method="post" action={ (job_url) "/retry" } data-live {
                        button #retry type="submit" { "Retry" }
                    }
                }
                // Not in the background: it asks first, then leaves the page.
                @if job.status.is_final() {
                    form.inline method="post" action={ (job_url) "/delete" } {
                        button.danger #delete type="submit" { "Delete…" }
                    }
                }
            }
        }
        @if let Some(p) = &job.progress {
            p.progress {
                label for="progress" { "Progress " (p.current) " of " (p.total) }
                progress #progress value=(p.current) max=(p.total.max(1)) { (p.current) "/" (p.total) }
            }
        }
        h2 { "Timings" }
        dl.timings #timings {
            dt { "Created" } dd { (page::time(job.created_at)) }
            dt { "Due" } dd { (page::time(job.run_at)) }
            dt { "Started" } dd { @if let Some(s) = started { (page::time(s)) } @else { "—" } }
            dt { "Finished" } dd { @if let Some(f) = job.finished_at { (page::time(f)) } @else { "—" } }
            dt { "Late by" } dd { @if let Some(l) = lateness { (page::span(l)) } @else { "—" } }
            dt { "Ran for" } dd {
                @match (started, job.finished_at) {
                    (Some(s), Some(f)) => (page::span(f - s)),
                    (Some(s), None) if job.status == JobStatus::Running => { (page::span(now - s)) " so far" },
                    _ => { "—" },
                }
            }
            @if let Some(e) = job.expires_at { dt { "Expires" } dd { (page::time(e)) } }
            dt { "Attempts" } dd #attempts {
                (job.attempts)
                @if let Some(max) = job.max_attempts { " of " (max) }
            }
            dt { "Priority" } dd { (job.priority) }
            @if let Some(node) = job.ran_by {
                dt { "Ran by" } dd #ran-by { "node " code { (node) } }
            }
        }
        @if let Some(err) = &job.last_error {
            h2 { "Last error" }
            pre.error #last-error { (err) }
        }
        h2 { "Payload" }
        pre #payload { (payload) }
        @if let Some(result) = &job.result {
            h2 { "Result" }
            pre #result { (pretty(result)) }
        }
        h2 { "Log" }
        table.log #log {
            thead { tr { th { "At" } th { "Attempt" } th { "Message" } } }
            tbody {
                @for line in &job.logs {
                    tr.line {
                        td { (page::time(line.at)) }
                        td { (line.attempt) }
                        td.message {
                            (line.message.as_ref())
                            @if let Some(data) = &line.data { " " code { (data.to_string()) } }
                        }
                    }
                }
            }
        }
    };
    Ok(respond(page::frame(
        &viewer,
        Frame {
            title: "Job",
            events: Some(format!("{base}/events?job={}", job.id)),
            above: None,
            refresh: None,
        },
        main,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(status: &str, page: &str) -> FilterParams {
        FilterParams {
            status: Some(status.into()),
            page: Some(page.into()),
            ..FilterParams::default()
        }
    }

    #[test]
    fn bad_filters_name_their_field() {
        assert_eq!(
            params("lost", "1").read().unwrap_err().field(),
            Some("status")
        );
        assert_eq!(
            params("ready", "-1").read().unwrap_err().field(),
            Some("page")
        );
        assert_eq!(
            params("ready", "0").read().unwrap_err().field(),
            Some("page")
        );
        let filter = params("ready,buried", "").read().unwrap();
        assert_eq!(filter.statuses, [JobStatus::Ready, JobStatus::Buried]);
        assert_eq!(filter.page, 1);
    }

    #[test]
    fn query_string_round_trips() {
        let filter = FilterParams {
            status: Some("buried".into()),
            task: Some("send email".into()),
            ..FilterParams::default()
        }
        .read()
        .unwrap();
        assert_eq!(filter.query_string(), "status=buried&task=send%20email");
    }
}
