//! `GET /events`: server-sent events, resumable with `Last-Event-ID`.
//!
//! One subscription to the queue (taken at the first request) feeds a
//! [`Hub`]: it numbers each event, keeps the last `replay` of them in a
//! ring, and broadcasts them to the open streams. Every SSE event's `id:`
//! is `<epoch>-<sequence>`: the epoch tells this hub from an earlier one
//! (a restarted server), the sequence numbers the hub's events. A client
//! that reconnects with `Last-Event-ID` gets what the ring still holds
//! after that id; whatever it no longer holds is announced by a `lagged`
//! event with the count of events missed (of all streams: at most that
//! many were for this client's filter), or with `missed: null` when the id
//! is from another epoch and the count is unknown. Nothing is lost
//! silently.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{Bytes, Query};
use actix_web::{HttpRequest, HttpResponse};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::IntoParams;

use super::error::{ErrorBody, WebError};
use super::jobs::parse_id;
use super::Read;
use crate::event::{Event, EventStream, Filter};
use crate::job::JobId;
use crate::queue::Queue;

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The job event kinds a stream may select, and `queue` for queue events.
const KINDS: [&str; 14] = [
    "created",
    "scheduled",
    "started",
    "progress",
    "log",
    "completed",
    "failed",
    "timed-out",
    "retrying",
    "buried",
    "expired",
    "cancelled",
    "kicked",
    "queue",
];

/// One numbered event.
#[derive(Debug)]
pub(crate) struct Entry {
    seq: u64,
    event: Event,
}

#[derive(Debug)]
struct Ring {
    entries: VecDeque<Arc<Entry>>,
    /// The sequence number the next event gets (the first is 1).
    next: u64,
    started: bool,
}

/// The numbered history of the queue's events, shared by every stream
/// (and every worker thread of a server).
#[derive(Debug)]
pub(crate) struct Hub {
    epoch: String,
    capacity: usize,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Entry>>,
}

impl Hub {
    pub(crate) fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(256));
        Hub {
            epoch: format!("{:08x}", fastrand::u32(..)),
            capacity,
            ring: Mutex::new(Ring {
                entries: VecDeque::with_capacity(capacity),
                next: 1,
                started: false,
            }),
            tx,
        }
    }

    /// Subscribes to the queue once; the pump ends with the hub or the queue.
    fn start(self: &Arc<Self>, queue: &Queue) {
        let mut ring = self.ring.lock();
        if ring.started {
            return;
        }
        ring.started = true;
        let events = queue.events_with_buffer(Filter::All, self.capacity.max(1024));
        actix_rt::spawn(pump(Arc::downgrade(self), events));
    }

    fn publish(&self, event: Event) {
        let mut ring = self.ring.lock();
        let entry = Arc::new(Entry {
            seq: ring.next,
            event,
        });
        ring.next += 1;
        if self.capacity > 0 {
            if ring.entries.len() == self.capacity {
                ring.entries.pop_front();
            }
            ring.entries.push_back(entry.clone());
        }
        // Sent under the lock, so a stream that subscribes and reads the
        // ring under it sees every event exactly once. No receiver is fine.
        let _ = self.tx.send(entry);
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.epoch)
    }
}

async fn pump(hub: Weak<Hub>, mut events: EventStream) {
    while let Some(event) = events.next().await {
        let Some(hub) = hub.upgrade() else { return };
        hub.publish(event);
    }
}

/// Which events a stream receives. Lists are comma separated.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventParams {
    /// Only events of this task's jobs.
    task: Option<String>,
    /// Only events of jobs whose task is served under one of these tags
    /// (comma separated; as the task is defined in this process: events of
    /// a task this process does not define have no tag and are left out).
    tag: Option<String>,
    /// Only events of this job.
    #[param(value_type = Option<uuid::Uuid>)]
    job: Option<String>,
    /// Only these kinds: job event kinds (`started,completed,buried`) and
    /// `queue` for queue events. Default: all.
    kinds: Option<String>,
}

#[derive(Debug)]
struct Selection {
    task: Option<String>,
    tags: Option<Vec<String>>,
    job: Option<JobId>,
    kinds: Option<Vec<String>>,
}

impl Selection {
    fn wants(&self, event: &Event) -> bool {
        let kind_ok = |name: &str| {
            self.kinds
                .as_ref()
                .is_none_or(|k| k.iter().any(|x| x == name))
        };
        match event {
            Event::Job(e) => {
                self.task.as_ref().is_none_or(|t| **t == *e.task)
                    && self.tags.as_ref().is_none_or(|tags| {
                        e.tag
                            .as_deref()
                            .is_some_and(|tag| tags.iter().any(|t| t == tag))
                    })
                    && self.job.is_none_or(|j| j == e.id)
                    && kind_ok(e.kind.name())
            }
            Event::Queue(_) | Event::Remote { .. } => {
                self.task.is_none() && self.tags.is_none() && self.job.is_none() && kind_ok("queue")
            }
            Event::Lagged { .. } => true,
        }
    }
}

/// One open stream.
struct Conn {
    hub: Arc<Hub>,
    rx: broadcast::Receiver<Arc<Entry>>,
    queued: VecDeque<Bytes>,
    /// The last sequence number seen (sent or filtered out).
    last: u64,
    selection: Selection,
    keep_alive: tokio::time::Interval,
}

fn frame(id: Option<&str>, name: &str, data: &str) -> Bytes {
    let mut text = String::with_capacity(data.len() + 48);
    if let Some(id) = id {
        text.push_str("id: ");
        text.push_str(id);
        text.push('\n');
    }
    text.push_str("event: ");
    text.push_str(name);
    text.push_str("\ndata: ");
    text.push_str(data);
    text.push_str("\n\n");
    Bytes::from(text)
}

fn lagged(missed: Option<u64>) -> String {
    serde_json::json!({"type": "lagged", "missed": missed}).to_string()
}

impl Conn {
    /// Takes `entry` unless already seen; a gap before it is announced.
    fn accept(&mut self, entry: &Entry) {
        if entry.seq <= self.last {
            return;
        }
        if entry.seq > self.last + 1 {
            let missed = entry.seq - self.last - 1;
            let id = self.hub.id(entry.seq - 1);
            self.queued
                .push_back(frame(Some(&id), "lagged", &lagged(Some(missed))));
        }
        self.last = entry.seq;
        if !self.selection.wants(&entry.event) {
            return;
        }
        let name = match entry.event {
            Event::Job(_) => "job",
            Event::Queue(_) | Event::Remote { .. } => "queue",
            Event::Lagged { .. } => "lagged",
        };
        let data = serde_json::to_string(&entry.event).unwrap_or_else(|e| {
            serde_json::json!({"type": "error", "message": e.to_string()}).to_string()
        });
        let id = self.hub.id(entry.seq);
        self.queued.push_back(frame(Some(&id), name, &data));
    }

    /// After falling behind the broadcast: whatever the ring still holds.
    fn catch_up(&mut self) {
        let held: Vec<Arc<Entry>> = {
            let ring = self.hub.ring.lock();
            ring.entries
                .iter()
                .filter(|e| e.seq > self.last)
                .cloned()
                .collect()
        };
        for entry in held {
            self.accept(&entry);
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, actix_web::Error>, Self)> {
        loop {
            if let Some(bytes) = self.queued.pop_front() {
                return Some((Ok(bytes), self));
            }
            tokio::select! {
                received = self.rx.recv() => match received {
                    Ok(entry) => self.accept(&entry),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.keep_alive.tick() => {
                    self.queued.push_back(Bytes::from_static(b": keep-alive\n\n"));
                }
            }
        }
    }
}

/// A live stream of job and queue events (server-sent events).
///
/// Each event has an `id:` (`<epoch>-<sequence>`), an `event:` name (`job`,
/// `queue` or `lagged`) and JSON `data:` (the library's `Event`: `{"type":
/// "job", "id", "task", "tag", "attempt", "at", "kind", ...}`). Reconnect
/// with `Last-Event-ID` to get what was missed, or a `lagged` event with
/// how many were (`missed: null` when unknown).
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    params(
        EventParams,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, to resume after it"),
    ),
    responses(
        (status = 200, description = "A stream of server-sent events", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad filter (named in `field`)", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    )
)]
pub(crate) async fn stream(
    read: Read,
    req: HttpRequest,
    params: Query<EventParams>,
) -> Result<HttpResponse, WebError> {
    open(read.0, &req, params.into_inner())
}

/// Opens a stream for a caller already authorized (the API's `GET
/// /events`, and the dashboard's, which signs in with a cookie).
pub(crate) fn open(
    state: actix_web::web::Data<super::State>,
    req: &HttpRequest,
    params: EventParams,
) -> Result<HttpResponse, WebError> {
    let job = params
        .job
        .as_deref()
        .map(parse_id)
        .transpose()
        .map_err(|_| WebError::invalid_field("job", "not a job id (a UUID)"))?;
    let kinds = params
        .kinds
        .as_deref()
        .map(|k| {
            k.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    if KINDS.contains(&s) {
                        Ok(s.to_owned())
                    } else {
                        Err(WebError::invalid_field(
                            "kinds",
                            format!("`{s}` is not one of {}", KINDS.join(", ")),
                        ))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let tags = params.tag.as_deref().map(|t| {
        t.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    if tags.as_ref().is_some_and(Vec::is_empty) {
        return Err(WebError::invalid_field("tag", "names no tag"));
    }
    let resume = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let hub = state.hub.clone();
    hub.start(&state.queue);
    let mut conn = {
        let ring = hub.ring.lock();
        let rx = hub.tx.subscribe();
        Conn {
            hub: hub.clone(),
            rx,
            queued: VecDeque::new(),
            last: ring.next - 1,
            selection: Selection {
                task: params.task,
                tags,
                job,
                kinds,
            },
            keep_alive: tokio::time::interval_at(
                tokio::time::Instant::now() + KEEP_ALIVE,
                KEEP_ALIVE,
            ),
        }
    };
    conn.queued
        .push_back(Bytes::from_static(b": kessel events\n\n"));
    if let Some(resume) = resume {
        let latest = conn.last;
        let from = resume
            .strip_prefix(&hub.epoch)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|seq| seq.parse::<u64>().ok())
            .filter(|seq| *seq <= latest);
        match from {
            Some(seq) => {
                // Replay from the ring, announcing what it lost.
                conn.last = seq;
                let held: Vec<Arc<Entry>> = {
                    let ring = hub.ring.lock();
                    ring.entries
                        .iter()
                        .filter(|e| e.seq > seq && e.seq <= latest)
                        .cloned()
                        .collect()
                };
                for entry in held {
                    conn.accept(&entry);
                }
                if conn.last < latest {
                    let id = hub.id(latest);
                    conn.queued.push_back(frame(
                        Some(&id),
                        "lagged",
                        &lagged(Some(latest - conn.last)),
                    ));
                    conn.last = latest;
                }
            }
            None => {
                // Another epoch (a restarted server) or an id never given:
                // how much was missed is unknown.
                let id = hub.id(latest);
                conn.queued
                    .push_back(frame(Some(&id), "lagged", &lagged(None)));
            }
        }
    }
    let body = futures::stream::unfold(conn, Conn::next);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
