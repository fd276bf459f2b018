//! Dead letters: what a task's dead-letter destination receives when one
//! of its jobs is buried (see
//! [`TaskBuilder::dead_letter`](crate::TaskBuilder::dead_letter)).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::JobId;

/// The payload of a dead-letter job: the buried job, as it was when it
/// was buried. A dead-letter task's handler takes `JobContext<DeadLetter>`.
///
/// # Examples
///
/// ```
/// use kessel::{DeadLetter, JobId};
/// let letter = DeadLetter {
///     job_id: JobId::new(),
///     task: "send email".into(),
///     reference: Some("welcome-42".into()),
///     payload: serde_json::json!({"to": "a@example.com"}),
///     attempts: 3,
///     last_error: "smtp: connection refused".into(),
///     buried_at: chrono::Utc::now(),
/// };
/// let json = serde_json::to_value(&letter).unwrap();
/// assert_eq!(json["task"], "send email");
/// assert_eq!(serde_json::from_value::<DeadLetter>(json).unwrap(), letter);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The buried job's id.
    pub job_id: JobId,
    /// The buried job's task.
    pub task: String,
    /// The buried job's producer reference, if it had one.
    pub reference: Option<String>,
    /// The buried job's payload, as JSON.
    pub payload: serde_json::Value,
    /// The attempts it made.
    pub attempts: u32,
    /// Why it was buried: its last error.
    pub last_error: String,
    /// When it was buried.
    pub buried_at: DateTime<Utc>,
}

impl DeadLetter {
    /// The reference kessel gives the dead letter of the job `id`:
    /// `dead-letter:{id}`, to find the letter from the buried job.
    ///
    /// ```
    /// let id = kessel::JobId::new();
    /// assert_eq!(kessel::DeadLetter::reference_for(id), format!("dead-letter:{id}"));
    /// ```
    pub fn reference_for(id: JobId) -> String {
        format!("dead-letter:{id}")
    }
}

/// Which buried jobs [`Queue::redrive`](crate::Queue::redrive) runs again:
/// every filter given must match. Built from [`Redrive::buried`].
///
/// # Examples
///
/// ```
/// use kessel::Redrive;
/// let timeouts = Redrive::buried().task("sync").error_contains("timed out").limit(500);
/// # let _ = timeouts;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Redrive {
    tasks: Vec<String>,
    error_contains: Option<String>,
    buried_after: Option<DateTime<Utc>>,
    buried_before: Option<DateTime<Utc>>,
    limit: Option<usize>,
}

impl Redrive {
    /// Every buried job; narrow it with the other methods.
    ///
    /// ```
    /// assert_eq!(kessel::Redrive::buried(), kessel::Redrive::default());
    /// ```
    pub fn buried() -> Self {
        Redrive::default()
    }

    /// Only jobs of `task` (call again to add more tasks).
    ///
    /// ```
    /// let r = kessel::Redrive::buried().task("a").task("b");
    /// # let _ = r;
    /// ```
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.tasks.push(task.into());
        self
    }

    /// Only jobs whose last error contains `text`.
    ///
    /// ```
    /// let r = kessel::Redrive::buried().error_contains("connection refused");
    /// # let _ = r;
    /// ```
    pub fn error_contains(mut self, text: impl Into<String>) -> Self {
        self.error_contains = Some(text.into());
        self
    }

    /// Only jobs buried in `[after, before)`, to the microsecond.
    ///
    /// ```
    /// let now = chrono::Utc::now();
    /// let r = kessel::Redrive::buried().buried_between(now - chrono::Duration::hours(1), now);
    /// # let _ = r;
    /// ```
    pub fn buried_between(mut self, after: DateTime<Utc>, before: DateTime<Utc>) -> Self {
        self.buried_after = Some(after);
        self.buried_before = Some(before);
        self
    }

    /// Runs at most `n` jobs again, the earliest buried first.
    ///
    /// ```
    /// let r = kessel::Redrive::buried().limit(100);
    /// # let _ = r;
    /// ```
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether `job` (a buried job) matches. Times compare to the
    /// microsecond, the precision every store keeps: a job buried at the
    /// instant a range starts is in it on every store.
    fn matches(&self, job: &crate::job::Job) -> bool {
        use chrono::SubsecRound;
        let at = job.finished_at.unwrap_or(job.created_at).trunc_subsecs(6);
        self.error_contains.as_ref().is_none_or(|text| {
            job.last_error
                .as_deref()
                .is_some_and(|e| e.contains(text.as_str()))
        }) && self.buried_after.is_none_or(|t| at >= t.trunc_subsecs(6))
            && self.buried_before.is_none_or(|t| at < t.trunc_subsecs(6))
    }
}

/// How many buried jobs one read of [`Queue::redrive`](crate::Queue::redrive) looks at.
const REDRIVE_PAGE: usize = 500;

impl crate::Queue {
    /// Runs buried jobs again, as [`Queue::kick`](crate::Queue::kick) does
    /// one: every buried job `filter` selects, the earliest created first,
    /// up to its limit. Returns how many were kicked (a job kicked or
    /// cleaned meanwhile by someone else is skipped).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) naming
    /// `buried_between` when its start is not before its end;
    /// [`Error::Store`](crate::Error::Store); [`Error::ShutDown`](crate::Error::ShutDown).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{JobContext, JobError, Redrive, RetryPolicy};
    /// let queue = kessel::Queue::new();
    /// let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    /// let u = up.clone();
    /// queue.define("sync").retry(RetryPolicy::none()).action(move |_: JobContext<()>| {
    ///     let up = u.load(std::sync::atomic::Ordering::SeqCst);
    ///     async move { if up { Ok(()) } else { Err(JobError::transient("upstream down")) } }
    /// })?;
    /// queue.create("sync", ()).await?;
    /// queue.run_jobs(None, None).await?;
    /// up.store(true, std::sync::atomic::Ordering::SeqCst);
    /// assert_eq!(queue.redrive(Redrive::buried().error_contains("upstream down")).await?, 1);
    /// assert_eq!(queue.run_jobs(None, None).await?, 1);
    /// # Ok(()) }
    /// ```
    pub async fn redrive(&self, filter: Redrive) -> Result<usize, crate::Error> {
        if let (Some(after), Some(before)) = (filter.buried_after, filter.buried_before) {
            if after >= before {
                return Err(crate::Error::InvalidInput {
                    field: "buried_between",
                    reason: format!(
                        "the range starts at {} and ends at {}: its start must be before its end",
                        after.to_rfc3339(),
                        before.to_rfc3339()
                    ),
                });
            }
        }
        let limit = filter.limit.unwrap_or(usize::MAX);
        // The matching ids first, then the kicks: kicking while paging
        // would move the pages under the reader.
        let mut chosen = Vec::new();
        let mut offset = 0;
        while chosen.len() < limit {
            let mut query = crate::store::JobQuery::default()
                .status(crate::job::JobStatus::Buried)
                .order(crate::store::Order::OldestFirst)
                .offset(offset)
                .limit(REDRIVE_PAGE);
            query.tasks = filter.tasks.clone();
            let page = self.fetch(query).await?;
            let read = page.len();
            chosen.extend(
                page.into_iter()
                    .filter(|j| filter.matches(j))
                    .map(|j| j.id)
                    .take(limit - chosen.len()),
            );
            if read < REDRIVE_PAGE {
                break;
            }
            offset += read;
        }
        let mut kicked = 0;
        for id in chosen {
            match self.kick(id).await {
                Ok(()) => kicked += 1,
                Err(crate::Error::WrongState { .. } | crate::Error::UnknownJob(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(kicked)
    }
}
