//! Counts of the jobs a scheduler holds, kept as they change, so that
//! `stats()` (and the metrics sampler that calls it) reads a few numbers
//! per task rather than walking every held job.
//!
//! Two counters, one owner each:
//! - [`HeldCounts`], by task slot and status, owned by the
//!   [`JobTable`](super::table::JobTable): a job counts from its insert to
//!   its removal, under the status it has now (the table changes a held
//!   job's status, and so its count, in one place);
//! - [`TaskCounts`], by task name and status, owned by the
//!   [`Journal`](super::journal::Journal) for the final records on their
//!   way to an in-process store.
//!
//! Both can be checked against a full walk in tests and debug builds
//! (`JobTable::walk_counts`, `Journal::walk_final_counts`).

use std::sync::Arc;

use crate::job::{Job, JobStatus};

/// How many statuses there are: a count per status per task.
const STATUSES: usize = JobStatus::ALL.len();

/// Held jobs by task slot and status. See the [module documentation](self).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct HeldCounts {
    /// Indexed by task slot, then by status (in [`JobStatus::ALL`] order).
    by_task: Vec<[u64; STATUSES]>,
}

impl HeldCounts {
    /// The counts of task slot `task`, by status.
    #[inline]
    fn row(&mut self, task: u32) -> &mut [u64; STATUSES] {
        let task = task as usize;
        if task >= self.by_task.len() {
            self.by_task.resize(task + 1, [0; STATUSES]);
        }
        &mut self.by_task[task]
    }

    fn cell(&mut self, task: u32, status: JobStatus) -> &mut u64 {
        &mut self.row(task)[status as usize]
    }

    /// A job of task slot `task` in `status` is held.
    pub(super) fn add(&mut self, task: u32, status: JobStatus) {
        *self.cell(task, status) += 1;
    }

    /// A job of task slot `task` in `status` is no longer held.
    pub(super) fn remove(&mut self, task: u32, status: JobStatus) {
        let n = self.cell(task, status);
        debug_assert!(*n > 0, "a held job was counted when it came");
        *n = n.saturating_sub(1);
    }

    /// A held job of task slot `task` went from `from` to `to`.
    /// One look-up of the task's counts: every job that starts or
    /// settles moves.
    #[inline]
    pub(super) fn moved(&mut self, task: u32, from: JobStatus, to: JobStatus) {
        if from == to {
            return;
        }
        let row = self.row(task);
        let n = &mut row[from as usize];
        debug_assert!(*n > 0, "a held job was counted when it came");
        *n = n.saturating_sub(1);
        row[to as usize] += 1;
    }

    /// No job is held.
    pub(super) fn clear(&mut self) {
        self.by_task.clear();
    }

    /// The non-zero counts: (task slot, status, count), by task slot then
    /// status.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, JobStatus, u64)> + '_ {
        self.by_task.iter().enumerate().flat_map(|(task, counts)| {
            JobStatus::ALL
                .into_iter()
                .zip(counts.iter())
                .filter(|(_, n)| **n > 0)
                .map(move |(status, n)| (task as u32, status, *n))
        })
    }

    /// Whether both count the same jobs (a trailing task with no job
    /// counts as none).
    #[cfg(any(test, debug_assertions))]
    pub(super) fn same_as(&self, other: &HeldCounts) -> bool {
        self.iter().eq(other.iter())
    }
}

/// Jobs by task name and status: the final records a journal holds.
/// Few distinct pairs, so a short list searched in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct TaskCounts {
    counts: Vec<(Arc<str>, JobStatus, u64)>,
}

impl TaskCounts {
    /// Counts `job`.
    pub(super) fn add(&mut self, job: &Job) {
        self.add_n(&job.task, job.status, 1);
    }

    fn add_n(&mut self, task: &Arc<str>, status: JobStatus, n: u64) {
        // Jobs of one task share its name's allocation: the pointer
        // compare settles most lookups.
        match self
            .counts
            .iter_mut()
            .find(|(t, s, _)| *s == status && (Arc::ptr_eq(t, task) || **t == **task))
        {
            Some((_, _, count)) => *count += n,
            None => self.counts.push((task.clone(), status, n)),
        }
    }

    /// Adds what `other` counts.
    pub(super) fn merge(&mut self, other: TaskCounts) {
        for (task, status, n) in other.counts {
            self.add_n(&task, status, n);
        }
    }

    /// Counts every one of `jobs` (a full walk, for checks).
    #[cfg(any(test, debug_assertions))]
    pub(super) fn of<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> TaskCounts {
        let mut counts = TaskCounts::default();
        for job in jobs {
            counts.add(job);
        }
        counts
    }

    /// The counts: (task, status, count), each pair once.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, JobStatus, u64)> + '_ {
        self.counts.iter().map(|(t, s, n)| (&**t, *s, *n))
    }

    /// Whether both count the same jobs, in whatever order.
    #[cfg(any(test, debug_assertions))]
    pub(super) fn same_as(&self, other: &TaskCounts) -> bool {
        fn sorted(c: &TaskCounts) -> Vec<(&str, JobStatus, u64)> {
            let mut v: Vec<_> = c.iter().filter(|c| c.2 > 0).collect();
            v.sort();
            v
        }
        sorted(self) == sorted(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Operations on a set of held jobs, as the scheduler makes them.
    #[derive(Debug, Clone)]
    enum Op {
        Insert { task: u32, status: usize },
        SetStatus { pick: usize, status: usize },
        Remove { pick: usize },
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..5u32, 0..STATUSES).prop_map(|(task, status)| Op::Insert { task, status }),
            4 => (any::<usize>(), 0..STATUSES)
                .prop_map(|(pick, status)| Op::SetStatus { pick, status }),
            2 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Held counts kept op by op equal a count of the jobs held (the
        /// model: a plain list of (task, status)).
        #[test]
        fn held_counts_kept_op_by_op_equal_a_count_of_the_held_jobs(
            ops in proptest::collection::vec(op(), 0..200)
        ) {
            let mut counts = HeldCounts::default();
            let mut model: Vec<(u32, JobStatus)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert { task, status } => {
                        let status = JobStatus::ALL[status];
                        counts.add(task, status);
                        model.push((task, status));
                    }
                    Op::SetStatus { pick, status } if !model.is_empty() => {
                        let i = pick % model.len();
                        let to = JobStatus::ALL[status];
                        counts.moved(model[i].0, model[i].1, to);
                        model[i].1 = to;
                    }
                    Op::Remove { pick } if !model.is_empty() => {
                        let (task, status) = model.swap_remove(pick % model.len());
                        counts.remove(task, status);
                    }
                    Op::Clear => {
                        counts.clear();
                        model.clear();
                    }
                    _ => {}
                }
                let mut walked = HeldCounts::default();
                for (task, status) in &model {
                    walked.add(*task, *status);
                }
                prop_assert!(counts.same_as(&walked), "{counts:?} != {walked:?}");
            }
        }
    }

    fn job(task: &Arc<str>, status: JobStatus) -> Job {
        let mut job = crate::new_job::NewJob::new(&**task, 1)
            .into_job(chrono::Utc::now(), &mut None, false)
            .expect("job");
        job.task = task.clone();
        job.status = status;
        job
    }

    #[test]
    fn task_counts_merge_pairs_by_name_not_by_allocation() {
        let a: Arc<str> = "a".into();
        let also_a: Arc<str> = "a".into();
        let mut counts = TaskCounts::of([&job(&a, JobStatus::Completed)]);
        let more = TaskCounts::of([
            &job(&also_a, JobStatus::Completed),
            &job(&a, JobStatus::Buried),
        ]);
        counts.merge(more);
        let mut got: Vec<_> = counts.iter().collect();
        got.sort();
        assert_eq!(
            got,
            [("a", JobStatus::Completed, 2), ("a", JobStatus::Buried, 1)]
        );
    }

    mod through_a_queue {
        use std::time::Duration;

        use actix::prelude::*;
        use proptest::prelude::*;

        use super::super::super::Scheduler;
        use crate::{Clean, JobContext, JobError, JobStatus, Queue, RetryPolicy};

        /// Asks the scheduler how its kept counts differ from a walk.
        #[derive(Message)]
        #[rtype(result = "Option<String>")]
        struct CountsMismatch;

        impl Handler<CountsMismatch> for Scheduler {
            type Result = Option<String>;
            fn handle(&mut self, _: CountsMismatch, _: &mut Self::Context) -> Option<String> {
                self.counts_mismatch()
            }
        }

        /// The tasks jobs are created for: one completes after a while,
        /// one fails transiently (retried once), one fatally (its dead
        /// letter goes to "letters"), one snoozes once, and one is
        /// defined nowhere.
        const TASKS: [&str; 5] = ["ok", "flaky", "fatal", "snoozy", "nowhere"];

        #[derive(Debug, Clone)]
        enum Op {
            Create {
                task: usize,
                delay_ms: u64,
                expires: bool,
            },
            Advance {
                ms: u64,
            },
            Cancel {
                pick: usize,
            },
            Suspend {
                task: usize,
            },
            Resume {
                task: usize,
            },
            Kick {
                task: usize,
            },
            Delete {
                pick: usize,
            },
            Clean,
        }

        fn op() -> impl Strategy<Value = Op> {
            let task = 0..TASKS.len();
            prop_oneof![
                6 => (task.clone(), prop_oneof![Just(0u64), 1..50u64], any::<bool>())
                    .prop_map(|(task, delay_ms, expires)| Op::Create { task, delay_ms, expires }),
                4 => (0..40u64).prop_map(|ms| Op::Advance { ms }),
                2 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
                1 => task.clone().prop_map(|task| Op::Suspend { task }),
                1 => task.clone().prop_map(|task| Op::Resume { task }),
                1 => task.prop_map(|task| Op::Kick { task }),
                1 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
                1 => Just(Op::Clean),
            ]
        }

        fn define(queue: &Queue) {
            let ok = |_: JobContext<serde_json::Value>| async {
                tokio::time::sleep(Duration::from_millis(7)).await;
                Ok::<_, JobError>(())
            };
            queue.define("ok").action(ok).expect("ok");
            queue
                .define("flaky")
                .retry(RetryPolicy::exponential(2).base_delay(Duration::from_millis(5)))
                .action(|_: JobContext<serde_json::Value>| async {
                    Err::<(), _>(JobError::transient("flaky"))
                })
                .expect("flaky");
            queue
                .define("fatal")
                .dead_letter("letters")
                .action(|_: JobContext<serde_json::Value>| async {
                    Err::<(), _>(JobError::fatal("fatal"))
                })
                .expect("fatal");
            queue
                .define("snoozy")
                .action(|job: JobContext<serde_json::Value>| async move {
                    if job.attempt() == 1 {
                        return Err(JobError::snooze(Duration::from_millis(9), "later"));
                    }
                    Ok(())
                })
                .expect("snoozy");
            queue.define("letters").action(ok).expect("letters");
        }

        /// Runs `ops` on a queue on the paused clock; after each, how the
        /// kept counts differ from a walk, if they do.
        async fn run(ops: Vec<Op>) -> Result<(), String> {
            tokio::time::pause();
            let queue = Queue::new();
            define(&queue);
            queue
                .process(["default"])
                .concurrency(3)
                .start()
                .expect("workers");
            let mut ids = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op.clone() {
                    Op::Create {
                        task,
                        delay_ms,
                        expires,
                    } => {
                        let mut create = queue.create(TASKS[task], i);
                        if delay_ms > 0 {
                            create = create.delay(Duration::from_millis(delay_ms));
                        }
                        if expires {
                            create = create.expires_in(Duration::from_millis(20));
                        }
                        ids.push(create.await.expect("create").id());
                    }
                    Op::Advance { ms } => tokio::time::advance(Duration::from_millis(ms)).await,
                    Op::Cancel { pick } if !ids.is_empty() => {
                        // Final, or gone already: an error, and no change.
                        let _ = queue.cancel(ids[pick % ids.len()]).await;
                    }
                    Op::Suspend { task } => queue.suspend(TASKS[task]).await.expect("suspend"),
                    Op::Resume { task } => queue.resume(TASKS[task]).await.expect("resume"),
                    Op::Kick { task } => {
                        queue.kick_task(TASKS[task], 10).await.expect("kick");
                    }
                    Op::Delete { pick } if !ids.is_empty() => {
                        let _ = queue.delete(ids[pick % ids.len()]).await;
                    }
                    Op::Clean => {
                        queue
                            .clean(Clean::statuses([JobStatus::Completed, JobStatus::Expired]))
                            .await
                            .expect("clean");
                    }
                    _ => {}
                }
                tokio::task::yield_now().await;
                let mismatch = queue
                    .inner
                    .scheduler
                    .send(CountsMismatch)
                    .await
                    .expect("scheduler");
                if let Some(m) = mismatch {
                    return Err(format!("after op {i} {op:?}: {m}"));
                }
                // The public answer, merged with the store's, is there too.
                queue.stats().await.map_err(|e| e.to_string())?;
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Whatever happens to the jobs (created now or later, run,
            /// retried, buried with a dead letter, snoozed, expired,
            /// cancelled, suspended, kicked, deleted, cleaned), the counts
            /// kept as they change equal a count of the held jobs and
            /// final records one by one.
            #[test]
            fn kept_counts_equal_a_walk_whatever_happens_to_the_jobs(
                ops in proptest::collection::vec(op(), 1..60)
            ) {
                let outcome = actix_rt::System::new().block_on(run(ops));
                prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
            }
        }
    }
}
