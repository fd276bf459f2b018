//! What a handler gets: the job's typed payload and its run-time context.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::job::JobId;

/// The facts about one run of a job, shared by [`JobContext`] and the worker.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    pub(crate) id: JobId,
    pub(crate) task: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) reference: Option<String>,
    pub(crate) cancel: CancellationToken,
}

/// What a handler receives: the job's payload, decoded into the handler's
/// type, and the context of this run.
///
/// # Examples
///
/// ```
/// use kessel::{JobContext, JobError};
///
/// #[derive(serde::Deserialize)]
/// struct Email { to: String }
///
/// async fn send(job: JobContext<Email>) -> Result<String, JobError> {
///     if job.is_cancelled() {
///         return Err(JobError::transient("cancelled before sending"));
///     }
///     Ok(format!("sent to {} on attempt {}", job.payload.to, job.attempt()))
/// }
/// # let _ = send;
/// ```
#[derive(Debug)]
pub struct JobContext<T> {
    /// The job's payload.
    pub payload: T,
    pub(crate) info: RunInfo,
}

impl<T> JobContext<T> {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.info.id
    }

    /// The task being run.
    pub fn task(&self) -> &str {
        &self.info.task
    }

    /// Which attempt this is, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.info.attempt
    }

    /// The producer's reference for the job, if it gave one.
    pub fn reference(&self) -> Option<&str> {
        self.info.reference.as_deref()
    }

    /// Whether the job was cancelled or timed out. Once it is, kessel stops
    /// polling the handler's future at its next await point; work the handler
    /// moved elsewhere (`spawn_blocking`, a spawned task) should watch this
    /// or [`JobContext::cancelled`] and stop.
    pub fn is_cancelled(&self) -> bool {
        self.info.cancel.is_cancelled()
    }

    /// Resolves when the job is cancelled or times out.
    pub async fn cancelled(&self) {
        self.info.cancel.cancelled().await
    }

    /// A token that fires on cancellation, to hand to spawned work.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.info.cancel.clone()
    }

    /// Replaces the payload, keeping the context (used to chain steps).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> JobContext<U> {
        JobContext {
            payload: f(self.payload),
            info: self.info,
        }
    }
}
