//! # kessel
//!
//! Delayed and background job processing for actix services.
//!
//! Define tasks with a chained builder, create jobs with delays, priorities
//! and expirations, and start workers that serve tags in order. A scheduler
//! actor times delayed jobs on a timer wheel of 1 ms slots (then to the
//! microsecond) and hands ready jobs to worker actors; state changes are
//! recorded in a [`Store`] in batches.
//!
//! ```
//! use kessel::{JobContext, JobError, JobStatus, Queue};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Email { to: String }
//!
//! # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
//! let queue = Queue::new();
//! queue
//!     .define("send email")
//!     .tag("notifications")
//!     .timeout("30s")
//!     .action(|job: JobContext<Email>| async move {
//!         Ok::<_, JobError>(format!("sent to {}", job.payload.to))
//!     })?;
//! queue.process(["notifications"]).concurrency(8).start()?;
//!
//! let job = queue.create("send email", Email { to: "ford@example.com".into() })
//!     .priority(0)
//!     .await?;
//! assert_eq!(job.result().await?.status, JobStatus::Completed);
//! # Ok(()) }
//! ```
//!
//! # Stores and features
//!
//! - memory, the default: `Queue::new()`; nothing survives a restart;
//! - SQLite (feature `sqlite`): `Queue::sqlite("jobs.db")`, durable, one
//!   process per file, group commit;
//! - PostgreSQL (feature `postgres`): `Queue::postgres(url)`, many processes
//!   on many machines share one queue (claims, leases, rescue) and one
//!   event stream: a subscriber in any process sees every process's job
//!   events, in one order (`docs/events.md`);
//! - `metrics`: [`metrics`], Prometheus counters, gauges and histograms
//!   of jobs, queue depth and store calls (`docs/metrics.md`);
//! - `test-utils`: `kessel::conformance`, the suite every
//!   store passes, to run on your own [`Store`].
//! - `web`: `kessel::web`, the HTTP API (jobs, tasks, stats, a live event
//!   stream, an OpenAPI document) to mount in an actix-web app or run
//!   standalone; see `docs/http.md`;
//! - `dashboard`: the same API also serves a dashboard under
//!   `<mount>/dashboard/`, HTML pages to see and steer the queue in a
//!   browser, live; see `docs/dashboard.md`;
//! - `remote`: `kessel::remote::Worker`, a process with no store of its
//!   own that works jobs through the HTTP API (same task builder and
//!   handlers); see `docs/http.md`, "Remote workers";
//! - `webhooks`: `kessel::webhook`, callbacks: a task names a URL that
//!   kessel POSTs to, signed with HMAC-SHA256, when one of its jobs
//!   reaches a final state; delivered by ordinary jobs, so retried with
//!   backoff and as durable as the store (`docs/http.md`, "Webhook
//!   callbacks"); `webhooks-tls` adds `https://` URLs;
//! - `cli`: the `kessel` operator binary (`docs/cli.md`);
//! - `cron`: [`schedule`], recurring jobs: cron expressions (5 or 6
//!   fields, `@daily`) in a time zone, or fixed intervals, enqueued
//!   exactly once per tick across processes (`docs/recurring.md`).
//!
//! On PostgreSQL, `Queue::create_in` enqueues inside your own sqlx
//! transaction: the job exists only if it commits (`docs/deploying.md`).
//!
//! # Where handlers run
//!
//! The scheduler runs on an actix arbiter of its own and never runs a
//! handler: each worker runs its handlers on threads of its own (one by
//! default; [`ProcessBuilder::threads`] spreads a worker over more, so
//! CPU-bound handlers use more cores). A handler that blocks or spins
//! stalls only its own worker thread; timers, timeouts, store writes and
//! other workers go on, and a thread that stops answering is reported
//! ([`event::QueueEvent::ThreadStuck`], [`Stats::stuck_threads`]). A
//! handler's future is created and polled on one thread, so it need not be
//! `Send`. For floods of tiny jobs, [`ProcessBuilder::on_scheduler_thread`]
//! and [`QueueBuilder::scheduler_on_current_thread`] put everything on one
//! thread, at the risk their names say. On a paused tokio clock (tests)
//! the queue stays on the test's thread and follows its virtual time.
//!
//! A cancel or a timeout first signals the handler
//! ([`JobContext::cancelled`]) and gives it its task's grace period
//! ([`TaskBuilder::grace`]) to stop and return before its future is
//! dropped.
//!
//! # Fair groups
//!
//! A job may carry a group key, a tenant ([`NewJob::group`]): within one
//! priority of a tag, groups take turns, weighted by
//! [`QueueBuilder::group_weight`], so one tenant's backlog cannot starve
//! another's few jobs. Priority comes first, then groups' turns, then
//! due time and creation; jobs without a group are one more group of
//! weight 1 (`docs/flow-control.md`, "Fair groups"). The group is also
//! the key of a task's limits per group:
//! [`TaskBuilder::max_running_per_group`] ("one running sync per
//! customer", across processes on PostgreSQL) and
//! [`TaskBuilder::rate_limit_per_group`] ("each customer 5 a second").
//! A whole tag may be limited too, whatever its jobs' tasks:
//! [`QueueBuilder::tag_max_running`] and [`QueueBuilder::tag_rate_limit`]
//! ("the `email` tag at most 10 at once and 100 a minute"; across
//! processes on PostgreSQL, `docs/flow-control.md`, "Limits per tag").
//!
//! ```
//! # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
//! let queue = kessel::Queue::builder().group_weight("enterprise", 3.0).build().await?;
//! let job = queue.create("export", 42).group("enterprise").priority(1).await?;
//! assert_eq!(queue.job(job.id()).await?.group.as_deref(), Some("enterprise"));
//! # Ok(()) }
//! ```
//!
//! The guides in `docs/` cover the concepts, the job lifecycle and each
//! capability.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]

mod admin;
mod config;
#[cfg(feature = "test-utils")]
pub mod conformance;
mod context;
mod dead_letter;
mod duration;
mod error;
pub mod event;
mod flow;
mod group;
mod id_ordered_map;
mod job;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod middleware;
mod new_job;
mod node;
mod persistence;
mod queue;
#[cfg(feature = "remote")]
pub mod remote;
mod reports;
#[cfg(feature = "cron")]
pub mod schedule;
mod scheduler;
pub mod store;
mod suspension;
mod task;
mod time;
mod unique;
#[cfg(feature = "web")]
pub mod web;
#[cfg(feature = "webhooks")]
pub mod webhook;

pub use admin::{Clean, IntoTimeLimit, Stats};
pub use config::{Retention, SharedConfig};
pub use context::{JobContext, JobMeta};
pub use dead_letter::{DeadLetter, Redrive};
pub use duration::{parse_duration, IntoDuration};
pub use error::{DurationError, Error, JobError, PayloadError};
pub use flow::{IntoRateLimit, RateLimit, RateLimitError};
pub use group::{MAX_GROUP_KEY_LEN, MAX_GROUP_WEIGHT, MIN_GROUP_WEIGHT};
pub use job::{Job, JobId, JobResult, JobStatus, LogLine, Payload, Progress, UnknownStatus};
pub use new_job::NewJob;
pub use node::{Node, NodeStatus};
pub use queue::plugin;
pub use queue::{
    AnyPayload, CreateJob, JobHandle, ProcessBuilder, Queue, QueueBuilder, TaskBuilder,
    TaskPayload, WorkerHandle, DROP_GRACE,
};
pub use reports::{ShutdownReport, StuckThread, UnservedTag};
pub use store::Store;
pub use suspension::{Suspended, Suspension};
pub use task::{RetryPolicy, Step, Task, DEFAULT_GRACE, DEFAULT_TAG};
pub use unique::{UniqueScope, MAX_UNIQUE_KEY_LEN};

/// The guide, `docs/getting-started.md`: each of its steps runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../docs/getting-started.md")]
struct GettingStarted;

/// The guide, `docs/dead-letters.md`: each example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../docs/dead-letters.md")]
struct DeadLettersGuide;

/// The guide, `docs/unique.md`: each example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../docs/unique.md")]
struct UniqueGuide;

/// The guide to recurring jobs, `docs/recurring.md`, as doctests.
#[cfg(all(doctest, feature = "cron"))]
#[doc = include_str!("../docs/recurring.md")]
struct Recurring;

/// The HTTP guide, `docs/http.md`: its webhook examples run as doctests
/// (the API's own are `rust,ignore`: they start a server).
#[cfg(all(doctest, feature = "web", feature = "webhooks"))]
#[doc = include_str!("../docs/http.md")]
struct HttpGuide;

/// The guide, `docs/flow-control.md`: each example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../docs/flow-control.md")]
struct FlowControlGuide;
