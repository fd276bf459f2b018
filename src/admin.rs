//! Administrative operations on a queue: fetch, stats, clean, kick by task,
//! suspend/resume (of a task or a tag), delete-matching and batch runs.

use std::time::Duration;

use regex::Regex;

use crate::duration::IntoDuration;
use crate::error::DurationError;
use crate::error::Error;
use crate::job::{Job, JobId, JobStatus};
use crate::queue::Queue;
use crate::reports::{StuckThread, UnservedTag};
use crate::scheduler::actor::{
    DeleteMatching, PendingCounts, PendingJobs, RunJobs, StoredWrites, StuckThreads, Suspend,
    SuspensionChange, SuspensionsNow, UnservedTags,
};
use crate::store::{JobDelete, JobQuery, StatusCount, StoreError};
use crate::suspension::{Suspended, Suspension};

/// `name`, unless it is empty.
fn named(field: &'static str, name: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::InvalidInput {
            field,
            reason: format!("a {field} to suspend or resume needs a name"),
        });
    }
    Ok(name.to_owned())
}

/// Counts of jobs by task and status, and how many events subscribers missed.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::JobStatus;
/// let queue = kessel::Queue::new();
/// queue.create("report", ()).await?;
/// queue.create("report", ()).delay("1h").await?;
/// let stats = queue.stats().await?;
/// assert_eq!(stats.count("report", JobStatus::Ready), 1);
/// assert_eq!(stats.count("report", JobStatus::Scheduled), 1);
/// assert_eq!(stats.total(JobStatus::Completed), 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Non-zero counts by task and status.
    pub counts: Vec<StatusCount>,
    /// Events dropped because subscribers lagged.
    pub events_missed: u64,
    /// Worker threads of this process that a handler blocks right now
    /// (see [`QueueEvent::ThreadStuck`](crate::event::QueueEvent::ThreadStuck)).
    pub stuck_threads: Vec<StuckThread>,
    /// Tags with jobs ready and no worker of this process to run them
    /// (see [`QueueEvent::TagUnserved`](crate::event::QueueEvent::TagUnserved)).
    pub unserved_tags: Vec<UnservedTag>,
    /// The tasks and tags suspended, who suspended them and since when:
    /// on SQLite and PostgreSQL as the store records them (on PostgreSQL,
    /// every process's), on the memory store this process's.
    pub suspended: Vec<Suspension>,
}

impl Stats {
    /// Jobs of `task` in `status`.
    pub fn count(&self, task: &str, status: JobStatus) -> u64 {
        self.counts
            .iter()
            .filter(|c| c.task == task && c.status == status)
            .map(|c| c.count)
            .sum()
    }

    /// Jobs in `status`, over all tasks.
    pub fn total(&self, status: JobStatus) -> u64 {
        self.counts
            .iter()
            .filter(|c| c.status == status)
            .map(|c| c.count)
            .sum()
    }

    /// The suspension that holds back task `task` (tagged `tag`, when
    /// known): its own, else its tag's.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.suspend_tag("reports").await?;
    /// let stats = queue.stats().await?;
    /// assert!(stats.suspension_of("daily", Some("reports")).is_some());
    /// assert!(stats.suspension_of("daily", None).is_none());
    /// # Ok(()) }
    /// ```
    pub fn suspension_of(&self, task: &str, tag: Option<&str>) -> Option<&Suspension> {
        self.suspended
            .iter()
            .find(|s| matches!(&s.what, Suspended::Task(t) if t == task))
            .or_else(|| self.suspended.iter().find(|s| s.what.covers(task, tag)))
    }
}

/// What [`Queue::clean`] removes. By default completed jobs of every tag,
/// whatever their age.
///
/// # Examples
///
/// ```
/// use kessel::{Clean, JobStatus};
/// let old_failures = Clean::statuses([JobStatus::Buried, JobStatus::Expired])
///     .tags(["reports"])
///     .older_than("7d");
/// # let _ = old_failures;
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct Clean {
    tasks: Vec<String>,
    tags: Vec<String>,
    statuses: Vec<JobStatus>,
    older_than: Option<Duration>,
    error: Option<Error>,
}

impl Clean {
    /// Completed jobs.
    pub fn completed() -> Self {
        Clean::default()
    }

    /// Jobs in these final statuses.
    pub fn statuses(statuses: impl IntoIterator<Item = JobStatus>) -> Self {
        Clean {
            statuses: statuses.into_iter().collect(),
            ..Clean::default()
        }
    }

    /// Only jobs of tasks with these tags (as defined in this process).
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Only jobs of these tasks (with [`Clean::tags`], of the tasks that
    /// are both named here and tagged so).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{Clean, JobStatus};
    /// let queue = kessel::Queue::new();
    /// for task in ["a", "b"] {
    ///     let job = queue.create(task, ()).delay("1h").await?;
    ///     queue.cancel(job.id()).await?;
    /// }
    /// assert_eq!(queue.clean(Clean::statuses([JobStatus::Cancelled]).tasks(["a"])).await?, 1);
    /// assert_eq!(queue.stats().await?.total(JobStatus::Cancelled), 1);
    /// # Ok(()) }
    /// ```
    pub fn tasks<S: Into<String>>(mut self, tasks: impl IntoIterator<Item = S>) -> Self {
        self.tasks = tasks.into_iter().map(Into::into).collect();
        self
    }

    /// Only jobs that finished longer ago than `age`.
    pub fn older_than(mut self, age: impl IntoDuration) -> Self {
        match age.into_duration() {
            Ok(d) => self.older_than = Some(d),
            Err(e) => self.error = Some(e.into()),
        }
        self
    }
}

/// How often `stats` takes its two reads again when a store write came
/// between them, before it settles for the last (a write lands every
/// millisecond or so at most, and the reads take microseconds).
const STATS_ATTEMPTS: usize = 16;

impl Queue {
    /// The tag of task `name` as defined in this process.
    #[cfg(feature = "web")]
    pub(crate) fn task_tag(&self, name: &str) -> Option<String> {
        self.inner.tasks.get(name).map(|t| t.tag.clone())
    }

    pub(crate) fn tasks_tagged(&self, tags: &[String]) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .tasks
            .iter()
            .filter(|t| tags.contains(&t.tag))
            .map(|t| t.key().clone())
            .collect();
        names.sort();
        names
    }

    /// Jobs matching `query`, with their logs: by status, task, tag (of the
    /// tasks defined in this process), reference and creation time; paged;
    /// newest or oldest first, by id (ids are UUIDv7, so by creation).
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::{store::{JobQuery, Order}, JobStatus};
    /// let queue = kessel::Queue::new();
    /// for n in 0..5 { queue.create("report", n).reference(format!("r{n}")).await?; }
    /// let page = queue.fetch(JobQuery::default().task("report").order(Order::OldestFirst).limit(2).offset(1)).await?;
    /// let refs: Vec<_> = page.iter().map(|j| j.reference.clone().unwrap()).collect();
    /// assert_eq!(refs, ["r1", "r2"]);
    /// # Ok(()) }
    /// ```
    pub async fn fetch(&self, mut query: JobQuery) -> Result<Vec<Job>, Error> {
        if !query.tags.is_empty() {
            let tagged = self.tasks_tagged(&query.tags);
            if tagged.is_empty() {
                return Ok(Vec::new());
            }
            query.tasks = if query.tasks.is_empty() {
                tagged
            } else {
                query
                    .tasks
                    .into_iter()
                    .filter(|t| tagged.contains(t))
                    .collect()
            };
            if query.tasks.is_empty() {
                return Ok(Vec::new());
            }
            query.tags.clear();
        }
        if self.inner.keeping.pending_live_in_scheduler() {
            return self.fetch_with_pending(query).await;
        }
        self.barrier().await?;
        Ok(self.inner.store.jobs_query(&query).await?)
    }

    /// `fetch` on an in-process store: the scheduler holds the pending jobs,
    /// the store the final ones. Each side gives its first `offset + limit`
    /// matches in order; the page is cut from their merge.
    async fn fetch_with_pending(&self, query: JobQuery) -> Result<Vec<Job>, Error> {
        let pending = self
            .inner
            .scheduler
            .send(PendingJobs(query.clone()))
            .await
            .map_err(|_| Error::ShutDown)?;
        let final_statuses: Vec<JobStatus> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_final() && (query.statuses.is_empty() || query.statuses.contains(s)))
            .collect();
        let mut found = pending;
        if !final_statuses.is_empty() {
            self.barrier().await?;
            let stored = self
                .inner
                .store
                .jobs_query(&JobQuery {
                    statuses: final_statuses,
                    offset: 0,
                    limit: query.offset.saturating_add(query.limit),
                    ..query.clone()
                })
                .await?;
            // A job that finished between the two reads is in both: keep
            // the store's, which is newer.
            let ids: std::collections::HashSet<_> = stored.iter().map(|j| j.id).collect();
            found.retain(|j| !ids.contains(&j.id));
            found.extend(stored);
        }
        Ok(query.page(found))
    }

    /// Counts of jobs by task and status. On the in-memory store, taken
    /// while jobs finish, they still count every job once.
    ///
    /// # Errors
    ///
    /// [`Error::Store`], also when the queue cannot store its latest
    /// changes (a full disk, a lost database): the counts would be stale,
    /// so `stats` fails at once with the store's error rather than wait
    /// for the store to recover.
    pub async fn stats(&self) -> Result<Stats, Error> {
        let counts = if self.inner.keeping.pending_live_in_scheduler() {
            // Pending jobs (and final ones on their way to the store) are
            // counted where they live, final ones in the store; the
            // store's copy of a kicked job is pending again, not counted
            // twice. The two reads agree when no store write completed
            // between them: otherwise they are taken again.
            self.barrier().await?;
            let mut attempts = 0;
            let counts = loop {
                let (mut counts, writes) = self
                    .inner
                    .scheduler
                    .send(PendingCounts)
                    .await
                    .map_err(|_| Error::ShutDown)?;
                let stored = self.inner.store.jobs_count().await?;
                let writes_after = self
                    .inner
                    .scheduler
                    .send(StoredWrites)
                    .await
                    .map_err(|_| Error::ShutDown)?;
                attempts += 1;
                if writes_after == writes || attempts == STATS_ATTEMPTS {
                    counts.extend(stored.into_iter().filter(|c| c.status.is_final()));
                    break counts;
                }
            };
            let mut merged: std::collections::BTreeMap<(String, JobStatus), u64> =
                std::collections::BTreeMap::new();
            for c in counts {
                *merged.entry((c.task, c.status)).or_default() += c.count;
            }
            merged
                .into_iter()
                .map(|((task, status), count)| StatusCount {
                    task,
                    status,
                    count,
                })
                .collect()
        } else {
            self.barrier().await?;
            self.inner.store.jobs_count().await?
        };
        let stuck_threads = self
            .inner
            .scheduler
            .send(StuckThreads)
            .await
            .map_err(|_| Error::ShutDown)?;
        let unserved_tags = self
            .inner
            .scheduler
            .send(UnservedTags)
            .await
            .map_err(|_| Error::ShutDown)?;
        let suspended = self.suspensions().await?;
        Ok(Stats {
            counts,
            events_missed: self.inner.bus.missed(),
            stuck_threads,
            unserved_tags,
            suspended,
        })
    }

    /// Removes final jobs and their logs; returns how many.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a status that is not final;
    /// [`Error::InvalidDuration`]; [`Error::Store`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let removed = queue.clean(kessel::Clean::completed().older_than("1h")).await?;
    /// assert_eq!(removed, 0);
    /// # Ok(()) }
    /// ```
    pub async fn clean(&self, clean: Clean) -> Result<u64, Error> {
        if let Some(err) = clean.error {
            return Err(err);
        }
        let statuses = if clean.statuses.is_empty() {
            vec![JobStatus::Completed]
        } else {
            clean.statuses
        };
        if let Some(s) = statuses.iter().find(|s| !s.is_final()) {
            return Err(Error::InvalidInput {
                field: "status",
                reason: format!("only final jobs can be cleaned, not {s} ones"),
            });
        }
        let tasks = if clean.tags.is_empty() {
            clean.tasks
        } else {
            let mut tasks = self.tasks_tagged(&clean.tags);
            if !clean.tasks.is_empty() {
                tasks.retain(|t| clean.tasks.contains(t));
            }
            if tasks.is_empty() {
                return Ok(0);
            }
            tasks
        };
        let finished_before = clean.older_than.map(|age| {
            // Older than the earliest time kessel accepts: nothing is.
            crate::time::before(self.now(), age).unwrap_or(crate::time::EARLIEST)
        });
        self.barrier().await?;
        Ok(self
            .inner
            .store
            .jobs_delete(&JobDelete {
                statuses,
                tasks,
                finished_before,
                limit: None,
            })
            .await?)
    }

    /// Removes one ended job (completed, buried, expired or cancelled) and
    /// its log. A pending job is not removed: cancel it first.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownJob`] when no job has this id;
    /// [`Error::WrongState`] when the job is still pending;
    /// [`Error::Store`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let handle = queue.create("report", 1).delay("1h").await?;
    /// assert!(matches!(queue.delete(handle.id()).await, Err(kessel::Error::WrongState { .. })));
    /// queue.cancel(handle.id()).await?;
    /// queue.delete(handle.id()).await?;
    /// assert!(matches!(queue.job(handle.id()).await, Err(kessel::Error::UnknownJob(_))));
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, id: JobId) -> Result<(), Error> {
        self.barrier().await?;
        if self.inner.store.job_delete(id).await? {
            return Ok(());
        }
        // Not removed: say why.
        let job = self.job(id).await?;
        Err(Error::WrongState {
            id,
            status: job.status,
            operation: "delete",
        })
    }

    /// Kicks up to `limit` buried jobs of `task`, oldest first; returns how many.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; [`Error::ShutDown`].
    pub async fn kick_task(&self, task: &str, limit: usize) -> Result<usize, Error> {
        let buried = self
            .fetch(
                JobQuery::default()
                    .task(task)
                    .status(JobStatus::Buried)
                    .order(crate::store::Order::OldestFirst)
                    .limit(limit),
            )
            .await?;
        let mut kicked = 0;
        for job in buried {
            match self.kick(job.id).await {
                Ok(()) => kicked += 1,
                Err(Error::WrongState { .. }) => {} // kicked meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(kicked)
    }

    /// Stops dispatching `task`'s jobs: they stay queued, their delays keep
    /// running, and nothing of theirs starts until [`Queue::resume`].
    /// Running jobs are not touched. Recorded as suspended by this process
    /// (see [`Queue::suspend_by`] to say who).
    ///
    /// `task` need not be defined here: a task another process defines, or
    /// this one defines later, is suspended all the same. Suspending a
    /// suspended task changes nothing (its first suspension, who and since
    /// when, stays).
    ///
    /// Where it holds: on SQLite and PostgreSQL the suspension is stored,
    /// so a queue opened later starts with it; on PostgreSQL every process
    /// on the schema applies it within milliseconds (a notification on the
    /// schema's channel, with a read at every claim poll should one be
    /// lost). On the memory store it holds in this process only.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty name; [`Error::Store`] when
    /// the store cannot record it (nothing changes then);
    /// [`Error::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.suspend("email").await?;
    /// assert!(queue.stats().await?.suspension_of("email", None).is_some());
    /// queue.resume("email").await?;
    /// assert!(queue.stats().await?.suspended.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn suspend(&self, task: &str) -> Result<(), Error> {
        self.suspend_by(task, self.suspended_by()).await
    }

    /// [`Queue::suspend`], recording `by` as who suspended it (an
    /// operator's name, a reason).
    ///
    /// # Errors
    ///
    /// As [`Queue::suspend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.suspend_by("email", "ford: mail server down").await?;
    /// assert_eq!(queue.stats().await?.suspended[0].by, "ford: mail server down");
    /// # Ok(()) }
    /// ```
    pub async fn suspend_by(&self, task: &str, by: impl Into<String>) -> Result<(), Error> {
        let what = Suspended::Task(named("task", task)?);
        self.change_suspension(SuspensionChange::Add(Suspension {
            what,
            by: by.into(),
            since: self.now(),
        }))
        .await
    }

    /// Resumes dispatching `task`'s jobs; what is due runs. A task whose
    /// tag is suspended stays suspended until [`Queue::resume_tag`].
    /// Resuming a task that is not suspended changes nothing. Where it
    /// holds: as [`Queue::suspend`].
    ///
    /// # Errors
    ///
    /// As [`Queue::suspend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.resume("never suspended").await?;
    /// # Ok(()) }
    /// ```
    pub async fn resume(&self, task: &str) -> Result<(), Error> {
        let what = Suspended::Task(named("task", task)?);
        self.change_suspension(SuspensionChange::Remove(what)).await
    }

    /// Suspends every task with tag `tag`, defined now or later, here or in
    /// another process; as [`Queue::suspend`] otherwise.
    ///
    /// # Errors
    ///
    /// As [`Queue::suspend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::Suspended;
    /// let queue = kessel::Queue::new();
    /// queue.suspend_tag("reports").await?;
    /// let stats = queue.stats().await?;
    /// assert_eq!(stats.suspended[0].what, Suspended::Tag("reports".into()));
    /// assert!(stats.suspension_of("daily", Some("reports")).is_some());
    /// # Ok(()) }
    /// ```
    pub async fn suspend_tag(&self, tag: &str) -> Result<(), Error> {
        self.suspend_tag_by(tag, self.suspended_by()).await
    }

    /// [`Queue::suspend_tag`], recording `by` as who suspended it.
    ///
    /// # Errors
    ///
    /// As [`Queue::suspend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.suspend_tag_by("reports", "month-end freeze").await?;
    /// assert_eq!(queue.stats().await?.suspended[0].by, "month-end freeze");
    /// # Ok(()) }
    /// ```
    pub async fn suspend_tag_by(&self, tag: &str, by: impl Into<String>) -> Result<(), Error> {
        let what = Suspended::Tag(named("tag", tag)?);
        self.change_suspension(SuspensionChange::Add(Suspension {
            what,
            by: by.into(),
            since: self.now(),
        }))
        .await
    }

    /// Lifts the suspension of tag `tag`; tasks suspended by name stay
    /// suspended.
    ///
    /// # Errors
    ///
    /// As [`Queue::suspend`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.suspend_tag("reports").await?;
    /// queue.resume_tag("reports").await?;
    /// assert!(queue.stats().await?.suspended.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn resume_tag(&self, tag: &str) -> Result<(), Error> {
        let what = Suspended::Tag(named("tag", tag)?);
        self.change_suspension(SuspensionChange::Remove(what)).await
    }

    /// Who this process records as suspending: its process id, and on a
    /// shared store its owner id.
    fn suspended_by(&self) -> String {
        match self.inner.store.shared() {
            Some(shared) => format!("pid {} (owner {})", std::process::id(), shared.owner()),
            None => format!("pid {}", std::process::id()),
        }
    }

    /// Records the change in the store (unless it keeps no suspensions),
    /// then applies it here.
    async fn change_suspension(&self, change: SuspensionChange) -> Result<(), Error> {
        let stored = match &change {
            SuspensionChange::Add(s) => self.inner.store.suspension_insert(s).await.map(drop),
            SuspensionChange::Remove(what) => {
                self.inner.store.suspension_delete(what).await.map(drop)
            }
        };
        match stored {
            Ok(()) | Err(StoreError::Unsupported(_)) => {}
            Err(err) => return Err(err.into()),
        }
        self.inner
            .scheduler
            .send(Suspend(change))
            .await
            .map_err(|_| Error::ShutDown)
    }

    /// The suspensions this process applies right now, as its scheduler
    /// holds them. [`Stats::suspended`] is what the store records; on
    /// PostgreSQL another process's suspend reaches this list within
    /// milliseconds of its commit, so the two may differ for that long.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::Suspended;
    /// let queue = kessel::Queue::new();
    /// queue.suspend("email").await?;
    /// let here = queue.applied_suspensions().await?;
    /// assert_eq!(here[0].what, Suspended::Task("email".into()));
    /// # Ok(()) }
    /// ```
    pub async fn applied_suspensions(&self) -> Result<Vec<Suspension>, Error> {
        self.inner
            .scheduler
            .send(SuspensionsNow)
            .await
            .map_err(|_| Error::ShutDown)
    }

    /// The suspensions in force: the store's (every process's), or this
    /// scheduler's on a store that keeps none.
    pub(crate) async fn suspensions(&self) -> Result<Vec<Suspension>, Error> {
        match self.inner.store.suspensions_list().await {
            Ok(list) => Ok(list),
            Err(StoreError::Unsupported(_)) => self.applied_suspensions().await,
            Err(err) => Err(err.into()),
        }
    }

    /// Removes the queued (not running) jobs of `task` whose payload, as
    /// JSON text, matches the regular expression `pattern`; returns how
    /// many. Removed jobs end as cancelled, with the message
    /// `deleted by delete_matching`, so they are counted like every other
    /// job and can be cleaned.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] naming the pattern when it is not a valid
    /// regular expression; [`Error::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// queue.create("email", serde_json::json!({"to": "spam@example.com"})).await?;
    /// queue.create("email", serde_json::json!({"to": "ford@example.com"})).await?;
    /// assert_eq!(queue.delete_matching("email", "spam@").await?, 1);
    /// # Ok(()) }
    /// ```
    pub async fn delete_matching(&self, task: &str, pattern: &str) -> Result<usize, Error> {
        let pattern = Regex::new(pattern).map_err(|e| Error::InvalidInput {
            field: "pattern",
            reason: format!("`{pattern}` is not a valid regular expression: {e}"),
        })?;
        self.inner
            .scheduler
            .send(DeleteMatching {
                task: task.to_owned(),
                pattern,
            })
            .await
            .map_err(|_| Error::ShutDown)
    }

    /// Runs due jobs of every task defined in this process, one at a time
    /// on a temporary worker, until `count_limit` jobs ran (`None`: no
    /// limit) or `time_limit` passed; returns how many ran. The time limit
    /// is any [`IntoDuration`] (`"30s"`, a `Duration`), or `None`. With no
    /// time limit (`None` or zero) it runs only what is ready now and
    /// returns when none is left; with one it also waits for jobs that
    /// become due. For tests, scripts and cron-driven batch runs.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDuration`] for a time limit that cannot be read
    /// (nothing runs then); [`Error::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// # tokio::time::pause();
    /// let queue = kessel::Queue::new();
    /// queue.define("tick").action(|_: kessel::JobContext<()>| async { Ok::<_, kessel::JobError>(()) })?;
    /// for _ in 0..5 { queue.create("tick", ()).await?; }
    /// assert_eq!(queue.run_jobs(Some(3), None).await?, 3);
    /// assert_eq!(queue.run_jobs(None, None).await?, 2);
    /// // With a time limit it also waits for jobs that become due.
    /// queue.create("tick", ()).delay("10s").await?;
    /// assert_eq!(queue.run_jobs(None, "1m").await?, 1);
    /// assert!(matches!(queue.run_jobs(None, "a while").await, Err(kessel::Error::InvalidDuration(_))));
    /// # Ok(()) }
    /// ```
    pub async fn run_jobs(
        &self,
        count_limit: Option<usize>,
        time_limit: impl IntoTimeLimit,
    ) -> Result<usize, Error> {
        let time_limit = time_limit.into_time_limit()?;
        let mut tags: Vec<String> = self.inner.tasks.iter().map(|t| t.tag.clone()).collect();
        tags.sort();
        tags.dedup();
        if tags.is_empty() || count_limit == Some(0) {
            return Ok(0);
        }
        let rx = self
            .inner
            .scheduler
            .send(RunJobs {
                tags,
                count: count_limit,
                time: time_limit,
            })
            .await
            .map_err(|_| Error::ShutDown)?;
        rx.await.map_err(|_| Error::ShutDown)
    }
}

/// A time limit for [`Queue::run_jobs`]: anything [`IntoDuration`] takes
/// (`"30s"`, a [`Duration`], a `chrono::Duration`), or an
/// `Option<Duration>` where `None` is no limit.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kessel::IntoTimeLimit;
/// assert_eq!("5s".into_time_limit().unwrap(), Some(Duration::from_secs(5)));
/// assert_eq!(None.into_time_limit().unwrap(), None);
/// assert_eq!(Some(Duration::from_millis(1)).into_time_limit().unwrap(), Some(Duration::from_millis(1)));
/// assert!("soon".into_time_limit().is_err());
/// ```
pub trait IntoTimeLimit {
    /// The limit, `None` for none.
    ///
    /// # Errors
    ///
    /// [`DurationError`] naming the text when it cannot be read.
    fn into_time_limit(self) -> Result<Option<Duration>, DurationError>;
}

impl<D: IntoDuration> IntoTimeLimit for D {
    fn into_time_limit(self) -> Result<Option<Duration>, DurationError> {
        self.into_duration().map(Some)
    }
}

impl IntoTimeLimit for Option<Duration> {
    fn into_time_limit(self) -> Result<Option<Duration>, DurationError> {
        Ok(self)
    }
}
