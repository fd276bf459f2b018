//! How the scheduler keeps the jobs it holds, picked once from the
//! queue's [`Persistence`] when the scheduler is built. The rest of the
//! scheduler asks the [`Keeper`] to record a change and never asks which
//! store it has.
//!
//! - **In process** (the memory store): the scheduler's entry *is* the
//!   job's record until the job is final. Nothing is written while a job
//!   waits or runs; its final record goes to the store in one piece, and a
//!   completed job the retention does not keep is written nowhere.
//! - **Journaled** (SQLite, PostgreSQL): every change is queued in the
//!   journal and written in batches, so the store always holds each job's
//!   latest state.

use std::sync::Arc;

use super::dead_letters::Outbox;
use super::held::Ending;
use super::journal::Journal;
use super::table::Entry;
use crate::job::{Job, JobId, JobResult, JobStatus, LogLine};
use crate::persistence::Persistence;
use crate::scheduler::services::PruneSchedule;

/// A batch of state changes this large goes to the store at once.
pub(super) const FLUSH_BATCH: usize = 4096;

/// On an in-process store, while jobs wait on timers, a batch goes at once
/// from this size: storing it holds the scheduler up, and short pauses
/// keep delayed jobs on time.
pub(super) const FLUSH_BATCH_TIMELY: usize = 64;

/// How the scheduler keeps its jobs: one value, chosen when it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keeper {
    /// The store lives in this process only: the scheduler holds the one
    /// copy of each pending job. `keeps_completed` is the retention's word
    /// on whether a completed job is kept at all.
    InProcess { keeps_completed: bool },
    /// The store is durable: every change goes through the journal.
    Journaled,
}

/// A job the keeper recorded as final.
pub(super) struct Ended {
    pub(super) id: JobId,
    pub(super) attempts: u32,
    /// What became of it, when asked for (someone awaits its result).
    pub(super) result: Option<JobResult>,
}

impl Keeper {
    /// The keeper `persistence` calls for.
    pub(super) fn new(persistence: Persistence, keeps_completed: bool) -> Self {
        if persistence.in_process() {
            Keeper::InProcess { keeps_completed }
        } else {
            Keeper::Journaled
        }
    }

    /// Whether the scheduler holds the only copy of its pending jobs, so
    /// that it must hand them to the store before it stops.
    pub(super) fn holds_only_copy(self) -> bool {
        matches!(self, Keeper::InProcess { .. })
    }

    /// Whether a job made by the scheduler (a dead letter, a webhook
    /// delivery) is stored with its "created" line. A job kept in process
    /// rebuilds that line from its creation time when it is read.
    pub(super) fn stores_created_line(self) -> bool {
        !self.holds_only_copy()
    }

    /// Whether a new job admitted with `logs` holds its "created" line
    /// implied rather than allocated.
    pub(super) fn implies_created_line(self, logs: &[LogLine]) -> bool {
        self.holds_only_copy() && logs.is_empty()
    }

    /// Records `entry`'s current state, appending `logs`.
    pub(super) fn record(self, entry: &mut Entry, journal: &mut Journal, logs: Vec<LogLine>) {
        match self {
            // The entry is the record until the job is final.
            Keeper::InProcess { .. } => entry.job.append_logs(logs, None),
            Keeper::Journaled => entry.write = journal.write(entry.write, &entry.job, logs, None),
        }
    }

    /// A buried job was kicked back to pending (its `logs` say so).
    pub(super) fn kicked(self, entry: &mut Entry, journal: &mut Journal, logs: Vec<LogLine>) {
        match self {
            Keeper::InProcess { .. } => {
                entry.job.append_logs(logs, None);
                // The store holds it as buried: it is pending again.
                journal.push_update(entry.job.update(Vec::new()));
            }
            Keeper::Journaled => self.record(entry, journal, logs),
        }
    }

    /// A run of `entry` begins: records its `started` line.
    pub(super) fn run_started(self, entry: &mut Entry, journal: &mut Journal, started: LogLine) {
        match self {
            Keeper::InProcess { .. } => {
                // Nothing is written while it runs: the line opens the
                // run's journal, which comes back with the report.
                if let Some(run) = entry.run.as_ref() {
                    run.journal.lock().started = Some(started);
                }
            }
            Keeper::Journaled => {
                // Room for the line that ends the attempt, merged in when
                // the job finishes before the next flush.
                let mut logs = Vec::with_capacity(2);
                logs.push(started);
                self.record(entry, journal, logs);
            }
        }
    }

    /// Whether a job that ends in `status` leaves a record: every one but
    /// a completed job when the retention keeps none in process.
    pub(super) fn keeps(self, status: JobStatus) -> bool {
        !matches!(
            (self, status),
            (
                Keeper::InProcess {
                    keeps_completed: false
                },
                JobStatus::Completed
            )
        )
    }

    /// Records `entry`, a job of task `task`, as ended as `end` says, with
    /// `logs` then the line that ends its attempt (made here, and only
    /// for a record that is kept) appended to its log. Builds its result
    /// when `wants_result`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ended(
        self,
        mut entry: Entry,
        task: &Arc<str>,
        end: Ending,
        logs: Vec<LogLine>,
        wants_result: bool,
        journal: &mut Journal,
        pruning: &mut PruneSchedule,
    ) -> Ended {
        let (id, status) = (entry.job.id, end.status);
        match self {
            keeper if !keeper.keeps(status) => {
                // Kept nowhere: no record to build, store and prune.
                Ended {
                    id,
                    attempts: entry.job.attempts,
                    result: wants_result.then_some(JobResult {
                        id,
                        status,
                        value: end.value,
                        message: end.message,
                    }),
                }
            }
            Keeper::InProcess { .. } => {
                // The entry becomes the stored record at once: no update to
                // merge, and the log in one allocation.
                let line = end.line(entry.job.attempts);
                let job = entry.job.into_final(task.clone(), end, logs, Some(line));
                let ended = Ended {
                    id,
                    attempts: job.attempts,
                    result: if wants_result { job.outcome() } else { None },
                };
                if status == JobStatus::Completed {
                    pruning.completed();
                }
                journal.push_final(job);
                ended
            }
            Keeper::Journaled => {
                let line = end.line(entry.job.attempts);
                let job = &mut entry.job;
                job.status = status;
                job.set_result(end.value);
                job.set_last_error(end.message);
                job.set_finished_at(end.at);
                journal.write(entry.write, job, logs, Some(line));
                pruning.ended(status);
                Ended {
                    id,
                    attempts: job.attempts,
                    // Answered once the outcome is stored, so whoever
                    // awaited it reads the same from the store.
                    result: if wants_result { job.outcome() } else { None },
                }
            }
        }
    }

    /// Keeps a job made as another ended (its dead letter, its webhook
    /// delivery): in process held at the end of this turn (`outbox`);
    /// journaled, stored in the same write as the ending just queued.
    pub(super) fn made(self, job: Job, outbox: &mut Outbox, journal: &mut Journal) {
        match self {
            Keeper::InProcess { .. } => outbox.push(job),
            Keeper::Journaled => journal.push_insert(job),
        }
    }

    /// A batch this large goes to the store without waiting; `timers_waiting`
    /// says whether jobs wait on timers.
    pub(super) fn flush_batch(self, timers_waiting: bool) -> usize {
        if self.holds_only_copy() && timers_waiting {
            FLUSH_BATCH_TIMELY
        } else {
            FLUSH_BATCH
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_in_process_store_leaves_the_created_line_implied() {
        let memory = Keeper::new(Persistence::InProcess, true);
        assert!(memory.implies_created_line(&[]));
        assert!(!memory.stores_created_line());
        for durable in [Persistence::Local, Persistence::Shared] {
            let keeper = Keeper::new(durable, true);
            assert!(!keeper.implies_created_line(&[]));
            assert!(keeper.stores_created_line());
            assert!(!keeper.holds_only_copy());
        }
    }

    #[test]
    fn flushes_come_sooner_only_for_in_process_jobs_waiting_on_timers() {
        let memory = Keeper::new(Persistence::InProcess, false);
        assert_eq!(memory.flush_batch(true), FLUSH_BATCH_TIMELY);
        assert_eq!(memory.flush_batch(false), FLUSH_BATCH);
        assert_eq!(Keeper::Journaled.flush_batch(true), FLUSH_BATCH);
    }
}
