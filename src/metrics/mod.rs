//! Metrics (feature `metrics`): counters, gauges and histograms of jobs,
//! queue depth and store calls, recorded through the [`metrics`] facade
//! (the job histograms bucketed by kessel itself, for speed) and exposed
//! in the Prometheus text format.
//!
//! Three small parts:
//!
//! - [`JobMetrics`] has the scheduler count what happens to jobs, by
//!   task, with run-time and lateness histograms, as it moves them (the
//!   counters reach the recorder when [flushed](flush), the histograms
//!   are [rendered](render_histograms) by kessel);
//! - [`Sampler`] reads [`Queue::stats`](crate::Queue::stats) and the
//!   oldest ready job of each tag on an interval, into gauges;
//! - [`MeteredStore`] wraps a store and times every call, with a
//!   `tracing` span per call.
//!
//! [`attach`] starts the first two with their defaults. The metrics go to
//! whichever recorder is installed: your own, or [`Prometheus`], which
//! installs one and renders the text a scraper reads (no HTTP listener of
//! its own: you serve the text from your app). Install the recorder
//! before attaching: the counters are registered once per task and bound
//! to the recorder installed at that time.
//!
//! `docs/metrics.md` lists every metric with its type, labels and meaning.
//!
//! # Examples
//!
//! ```
//! # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let prometheus = kessel::metrics::Prometheus::install()?;
//! let queue = kessel::Queue::new();
//! let _metrics = kessel::metrics::attach(&queue)?;
//! // In a web handler: the scrape body.
//! let body: String = prometheus.render();
//! # let _ = body;
//! # Ok(()) }
//! ```

mod histogram;
mod jobs;
mod prometheus;
mod sampler;
mod store;

pub(crate) use jobs::JobRecorder;
pub use jobs::{flush, render_histograms, JobMetrics};
pub use prometheus::{InstallError, Prometheus};
pub use sampler::{Sampler, SamplerConfig, SamplerHandle};
pub use store::MeteredStore;

use crate::error::Error;
use crate::queue::Queue;

/// The metric names kessel records, for dashboards and tests.
///
/// # Examples
///
/// ```
/// use kessel::metrics::names;
/// assert_eq!(names::JOBS_COMPLETED, "kessel_jobs_completed_total");
/// ```
pub mod names {
    /// Counter, label `task`: jobs created through this queue.
    pub const JOBS_CREATED: &str = "kessel_jobs_created_total";
    /// Counter, label `task`: attempts started.
    pub const JOBS_STARTED: &str = "kessel_jobs_started_total";
    /// Counter, label `task`: jobs whose handler succeeded.
    pub const JOBS_COMPLETED: &str = "kessel_jobs_completed_total";
    /// Counter, label `task`: attempts that failed with an error or a panic.
    pub const JOBS_FAILED: &str = "kessel_jobs_failed_total";
    /// Counter, label `task`: attempts that ran past the task's timeout.
    pub const JOBS_TIMED_OUT: &str = "kessel_jobs_timed_out_total";
    /// Counter, label `task`: failed or timed-out attempts that will be retried.
    pub const JOBS_RETRIED: &str = "kessel_jobs_retried_total";
    /// Counter, label `task`: jobs buried (failed for good).
    pub const JOBS_BURIED: &str = "kessel_jobs_buried_total";
    /// Counter, label `task`: jobs that expired before they started.
    pub const JOBS_EXPIRED: &str = "kessel_jobs_expired_total";
    /// Counter, label `task`: jobs cancelled (or removed by `delete_matching`).
    pub const JOBS_CANCELLED: &str = "kessel_jobs_cancelled_total";
    /// Counter, label `task`: buried jobs kicked back to ready.
    pub const JOBS_KICKED: &str = "kessel_jobs_kicked_total";
    /// Histogram (seconds), label `task`: from an attempt's start to its
    /// end. Bucketed by kessel, not recorded through the facade: see
    /// [`render_histograms`](super::render_histograms).
    pub const JOB_RUN_SECONDS: &str = "kessel_job_run_seconds";
    /// Histogram (seconds), label `task`: from when a job was due to when
    /// its attempt started. Bucketed by kessel, as [`JOB_RUN_SECONDS`].
    pub const JOB_LATENESS_SECONDS: &str = "kessel_job_lateness_seconds";
    /// Counter: events dropped for any subscriber of the queue
    /// ([`Queue::events_missed`](crate::Queue::events_missed)), sampled.
    pub const EVENTS_DROPPED: &str = "kessel_events_dropped_total";
    /// Gauge, labels `tag` and `status`: pending jobs (scheduled, ready,
    /// running, retrying), sampled.
    pub const QUEUE_DEPTH: &str = "kessel_queue_depth";
    /// Gauge (seconds), label `tag`: how long the oldest ready job has
    /// been due, sampled.
    pub const OLDEST_JOB_AGE_SECONDS: &str = "kessel_oldest_job_age_seconds";
    /// Gauge: worker threads a handler blocks right now, sampled.
    pub const STUCK_THREADS: &str = "kessel_stuck_threads";
    /// Counter: samples that failed (the store or the queue did not answer).
    pub const SAMPLER_ERRORS: &str = "kessel_sampler_errors_total";
    /// Histogram (seconds), label `operation`: store calls through a
    /// [`MeteredStore`](super::MeteredStore).
    pub const STORE_CALL_SECONDS: &str = "kessel_store_call_seconds";
    /// Counter, label `operation`: store calls that returned an error.
    pub const STORE_ERRORS: &str = "kessel_store_errors_total";
    /// Counter: jobs whose lapsed lease this process's rescuer returned to
    /// ready (shared stores, through a [`MeteredStore`](super::MeteredStore)).
    pub const LEASES_RESCUED: &str = "kessel_leases_rescued_total";
    /// Counter: held jobs a heartbeat reported lost to this process
    /// (shared stores, through a [`MeteredStore`](super::MeteredStore)).
    pub const LEASES_LOST: &str = "kessel_leases_lost_total";
    /// Gauge, label `status` (`live`, `gone`): the processes registered
    /// on the queue's store ([`Queue::nodes`](crate::Queue::nodes)), sampled.
    pub const NODES: &str = "kessel_nodes";
    /// Gauge, label `version`, always 1: the kessel version of this
    /// process, set by [`Prometheus::install`](super::Prometheus::install).
    pub const BUILD_INFO: &str = "kessel_build_info";
}

/// The job metrics and the sampler of one queue, both with their defaults;
/// dropping it stops both.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// let metrics = kessel::metrics::attach(&queue)?;
/// drop(metrics); // stops recording
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Metrics {
    /// The job event subscriber.
    pub jobs: JobMetrics,
    /// The sampler's loop.
    pub sampler: SamplerHandle,
}

/// Records `queue`'s job metrics ([`JobMetrics::attach`]) and samples its
/// gauges ([`Sampler`] with [`SamplerConfig::default`]) into the installed
/// recorder, until the returned [`Metrics`] is dropped.
///
/// # Errors
///
/// None with the default configuration; the signature leaves room for
/// the sampler's validation.
///
/// # Panics
///
/// Outside a running actix system (or tokio runtime).
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// // With a recorder of your own installed (or none: nothing is recorded).
/// let queue = kessel::Queue::new();
/// let _metrics = kessel::metrics::attach(&queue)?;
/// # Ok(()) }
/// ```
pub fn attach(queue: &Queue) -> Result<Metrics, Error> {
    Ok(Metrics {
        jobs: JobMetrics::attach(queue),
        sampler: Sampler::new(queue, SamplerConfig::default())?.spawn(),
    })
}

/// The guide, `docs/metrics.md`: its examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/metrics.md")]
struct Guide;
