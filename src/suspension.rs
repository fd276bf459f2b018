//! Suspensions: what [`Queue::suspend`](crate::Queue::suspend) and
//! [`Queue::suspend_tag`](crate::Queue::suspend_tag) record, who asked and
//! since when.
//!
//! On a store that keeps suspensions (SQLite, PostgreSQL) they are durable:
//! a queue opened later starts with them, and on PostgreSQL every process
//! on the schema applies a change within milliseconds (a notification on
//! the schema's channel). On the memory store (or a store of your own that
//! keeps the [`Store`](crate::store::Store) defaults) they live in the
//! queue's scheduler, for this process only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a suspension holds back: one task, or every task of a tag.
///
/// # Examples
///
/// ```
/// use kessel::Suspended;
/// let what = Suspended::Tag("reports".into());
/// assert_eq!(what.name(), "reports");
/// assert_eq!(what.kind(), "tag");
/// assert_eq!(Suspended::Task("email".into()).to_string(), "task `email`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Suspended {
    /// The jobs of this task.
    Task(String),
    /// The jobs of every task with this tag, defined now or later.
    Tag(String),
}

impl Suspended {
    /// The task's or the tag's name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(kessel::Suspended::Task("email".into()).name(), "email");
    /// ```
    pub fn name(&self) -> &str {
        match self {
            Suspended::Task(name) | Suspended::Tag(name) => name,
        }
    }

    /// `"task"` or `"tag"`, as stores record it.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(kessel::Suspended::Task("email".into()).kind(), "task");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Suspended::Task(_) => "task",
            Suspended::Tag(_) => "tag",
        }
    }

    /// The value of `kind` (as [`Suspended::kind`] gives it) and `name`;
    /// `None` for a kind this kessel does not know.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::Suspended;
    /// assert_eq!(Suspended::from_parts("tag", "reports"), Some(Suspended::Tag("reports".into())));
    /// assert_eq!(Suspended::from_parts("queue", "x"), None);
    /// ```
    pub fn from_parts(kind: &str, name: impl Into<String>) -> Option<Self> {
        match kind {
            "task" => Some(Suspended::Task(name.into())),
            "tag" => Some(Suspended::Tag(name.into())),
            _ => None,
        }
    }

    /// Whether this holds back the jobs of task `task`, tagged `tag`.
    ///
    /// # Examples
    ///
    /// ```
    /// use kessel::Suspended;
    /// assert!(Suspended::Tag("reports".into()).covers("daily", Some("reports")));
    /// assert!(!Suspended::Task("daily".into()).covers("weekly", Some("reports")));
    /// ```
    pub fn covers(&self, task: &str, tag: Option<&str>) -> bool {
        match self {
            Suspended::Task(name) => name == task,
            Suspended::Tag(name) => tag == Some(name.as_str()),
        }
    }
}

impl std::fmt::Display for Suspended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}`", self.kind(), self.name())
    }
}

/// A suspension in force: what it holds back, who asked and since when
/// (see [`Stats::suspended`](crate::Stats::suspended)).
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::Suspended;
/// let queue = kessel::Queue::new();
/// queue.suspend_by("email", "ops: mail server down").await?;
/// let stats = queue.stats().await?;
/// let s = &stats.suspended[0];
/// assert_eq!(s.what, Suspended::Task("email".into()));
/// assert_eq!(s.by, "ops: mail server down");
/// assert!(s.since <= queue.now());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// The task or tag held back.
    pub what: Suspended,
    /// Who suspended it: the label given to
    /// [`Queue::suspend_by`](crate::Queue::suspend_by), or the process
    /// that asked (its process id, and on a shared store its owner id).
    pub by: String,
    /// Since when.
    pub since: DateTime<Utc>,
}
