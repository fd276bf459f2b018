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
