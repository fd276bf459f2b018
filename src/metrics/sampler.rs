//! Gauges sampled from the queue on an interval: depth by tag and status,
//! the oldest ready job's age by tag, stuck threads, dropped events, nodes
//! by status; each sample also flushes the job counters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{counter, gauge};
use parking_lot::Mutex;

use super::names;
use crate::error::Error;
use crate::job::JobStatus;
use crate::node::NodeStatus;
use crate::queue::{Inner, Queue};
use crate::store::{JobQuery, Order, StoreError};

/// The `tag` label of jobs whose task is not defined in this process.
const UNDEFINED_TAG: &str = "(undefined)";

/// The statuses `kessel_queue_depth` reports: the pending ones.
const PENDING: [JobStatus; 4] = [
    JobStatus::Scheduled,
    JobStatus::Ready,
    JobStatus::Running,
    JobStatus::Retrying,
];

/// How a [`Sampler`] samples.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kessel::metrics::SamplerConfig;
/// let mut config = SamplerConfig::default();
/// assert_eq!(config.interval, Duration::from_secs(15));
/// config.interval = Duration::from_secs(5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SamplerConfig {
    /// Time between samples (default 15 s, a common scrape interval; at
    /// least 10 ms).
    pub interval: Duration,
    /// Whether to read the oldest ready job of each tag (one query per tag
    /// defined in this process; default on).
    pub oldest_job_age: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            interval: Duration::from_secs(15),
            oldest_job_age: true,
        }
    }
}

/// Samples a queue into gauges: `kessel_queue_depth{tag,status}` from
/// [`Queue::stats`], `kessel_oldest_job_age_seconds{tag}` from the oldest
/// ready job of each tag defined in this process, `kessel_stuck_threads`,
/// `kessel_events_dropped_total`, and on a shared store
/// `kessel_nodes{status}` (live and gone processes) from [`Queue::nodes`].
/// Each sample also [flushes](super::flush) the job
/// counters to the recorder.
///
/// Depth is reported for the pending statuses (scheduled, ready, running,
/// retrying), with zeros for every defined tag so panels show no gaps.
/// Jobs of tasks not defined in this process carry the tag
/// `(undefined)`. On a shared store the counts are the whole store's.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::metrics::{Sampler, SamplerConfig};
/// let queue = kessel::Queue::new();
/// let sampler = Sampler::new(&queue, SamplerConfig::default())?;
/// sampler.run_once().await?; // one sample now
/// let running = sampler.spawn(); // and one every 15 s until dropped
/// # drop(running);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Sampler {
    /// Weak, so sampling does not keep a dropped queue running.
    queue: Weak<Inner>,
    config: SamplerConfig,
    /// The `(tag, status)` pairs reported so far: one that has no jobs
    /// now is set back to zero, not left at its last value.
    reported: Mutex<BTreeSet<(String, JobStatus)>>,
}

impl Sampler {
    /// A sampler of `queue`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an interval under 10 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// use std::time::Duration;
    /// use kessel::metrics::{Sampler, SamplerConfig};
    /// let queue = kessel::Queue::new();
    /// let mut too_often = SamplerConfig::default();
    /// too_often.interval = Duration::ZERO;
    /// assert!(Sampler::new(&queue, too_often).is_err());
    /// # }
    /// ```
    pub fn new(queue: &Queue, config: SamplerConfig) -> Result<Sampler, Error> {
        if config.interval < Duration::from_millis(10) {
            return Err(Error::InvalidInput {
                field: "interval",
                reason: format!("{:?} is under the 10 ms minimum", config.interval),
            });
        }
        Ok(Sampler {
            queue: Arc::downgrade(&queue.inner),
            config,
            reported: Mutex::new(BTreeSet::new()),
        })
    }

    /// Flushes the job counters ([`flush`](super::flush)), takes one
    /// sample and sets the gauges.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] or [`Error::ShutDown`] from [`Queue::stats`] or
    /// [`Queue::fetch`], and [`Error::ShutDown`] once every handle of the
    /// queue is dropped; the gauges keep their last values.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::metrics::{Sampler, SamplerConfig};
    /// let queue = kessel::Queue::new();
    /// queue.create("report", ()).await?;
    /// Sampler::new(&queue, SamplerConfig::default())?.run_once().await?;
    /// // kessel_queue_depth{tag="(undefined)",status="ready"} is 1
    /// # Ok(()) }
    /// ```
    pub async fn run_once(&self) -> Result<(), Error> {
        super::flush();
        let queue = Queue {
            inner: self.queue.upgrade().ok_or(Error::ShutDown)?,
        };
        let stats = queue.stats().await?;
        let tags: BTreeMap<String, String> = queue
            .inner
            .tasks
            .iter()
            .map(|t| (t.key().clone(), t.tag.clone()))
            .collect();
        let mut depth: BTreeMap<(String, JobStatus), u64> = BTreeMap::new();
        for tag in tags.values() {
            for status in PENDING {
                depth.insert((tag.clone(), status), 0);
            }
        }
        for c in stats.counts.iter().filter(|c| !c.status.is_final()) {
            let tag = tags.get(&c.task).map_or(UNDEFINED_TAG, String::as_str);
            *depth.entry((tag.to_owned(), c.status)).or_default() += c.count;
        }
        let mut ages = Vec::new();
        if self.config.oldest_job_age {
            let now = queue.now();
            let distinct: BTreeSet<&String> = tags.values().collect();
            for tag in distinct {
                let oldest = queue
                    .fetch(
                        JobQuery::default()
                            .tag(tag.clone())
                            .status(JobStatus::Ready)
                            .order(Order::OldestFirst)
                            .limit(1),
                    )
                    .await?;
                let age = oldest.first().map_or(0.0, |job| {
                    (now - job.run_at).to_std().map_or(0.0, |d| d.as_secs_f64())
                });
                ages.push((tag.clone(), age));
            }
        }
        // Nodes on a shared store only (a store of one process has this
        // one alone), and not on one that keeps none.
        let nodes = if queue.inner.store.shared().is_some() {
            match queue.nodes().await {
                Ok(nodes) => Some(nodes),
                Err(Error::Store(StoreError::Unsupported(_))) => None,
                Err(err) => return Err(err),
            }
        } else {
            None
        };
        // Every read succeeded: set the gauges together.
        let mut reported = self.reported.lock();
        for key in reported.iter() {
            if !depth.contains_key(key) {
                set_depth(key, 0);
            }
        }
        for (key, count) in &depth {
            set_depth(key, *count);
        }
        reported.extend(depth.into_keys());
        for (tag, age) in ages {
            gauge!(names::OLDEST_JOB_AGE_SECONDS, "tag" => tag).set(age);
        }
        gauge!(names::STUCK_THREADS).set(stats.stuck_threads.len() as f64);
        counter!(names::EVENTS_DROPPED).absolute(stats.events_missed);
        if let Some(nodes) = nodes {
            for status in [NodeStatus::Live, NodeStatus::Gone] {
                let n = nodes.iter().filter(|node| node.status == status).count();
                gauge!(names::NODES, "status" => status.as_str()).set(n as f64);
            }
        }
        Ok(())
    }

    /// Samples now and then every [`SamplerConfig::interval`] on the
    /// current actix arbiter, until the handle is dropped. A sample that
    /// fails counts in `kessel_sampler_errors_total` and is logged
    /// (`tracing`, warn); the loop goes on, and ends with the queue.
    ///
    /// # Panics
    ///
    /// Outside a running actix system (or tokio runtime).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::metrics::{Sampler, SamplerConfig};
    /// let queue = kessel::Queue::new();
    /// let handle = Sampler::new(&queue, SamplerConfig::default())?.spawn();
    /// drop(handle); // stops sampling
    /// # Ok(()) }
    /// ```
    pub fn spawn(self) -> SamplerHandle {
        let task = actix_rt::spawn(async move {
            let mut interval = tokio::time::interval(self.config.interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Err(err) = self.run_once().await {
                    counter!(names::SAMPLER_ERRORS).increment(1);
                    tracing::warn!(error = %err, "kessel metrics sample failed");
                    if matches!(err, Error::ShutDown) {
                        return;
                    }
                }
            }
        });
        SamplerHandle { task }
    }
}

fn set_depth((tag, status): &(String, JobStatus), count: u64) {
    gauge!(names::QUEUE_DEPTH, "tag" => tag.clone(), "status" => status.as_str()).set(count as f64);
}

/// A [`Sampler`]'s loop; dropping it stops the loop.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// let handle = kessel::metrics::Sampler::new(&queue, Default::default())?.spawn();
/// # drop(handle);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SamplerHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SamplerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
