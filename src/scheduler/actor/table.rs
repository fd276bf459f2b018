//! The jobs a scheduler holds, and the state each is in.

use std::sync::Arc;
use std::time::Duration;

use super::counts::HeldCounts;
use super::held::HeldJob;
use super::index::IdIndex;
use super::journal::WriteAt;
use crate::context::RunShared;
use crate::job::{JobId, JobStatus, LogLine};
use crate::scheduler::wheel::TimerKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// In the wheel, waiting for run_at (status scheduled or retrying).
    Waiting,
    /// In its tag's ready set, or parked on its task.
    Ready,
    /// Handed to a worker.
    Running { worker: u32 },
    /// Handed to a worker, and its signal fired (a cancel or a timeout):
    /// decided when the run ends or its grace period does (see
    /// [`Stopping`]).
    Stopping { worker: u32 },
}

impl State {
    /// Whether a worker holds the job (running, or stopping).
    pub(super) fn is_running(self) -> bool {
        matches!(self, State::Running { .. } | State::Stopping { .. })
    }
}

/// Why a running job's signal fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    /// Its task's timeout, `after`, passed.
    Timeout { after: Duration },
    /// It was cancelled.
    Cancel,
}

/// A running job whose signal fired, in its grace period: what happens to
/// it is decided when its run ends (so what the handler returned and
/// logged is recorded with it), or when the grace period ends.
#[derive(Debug)]
pub(super) struct Stopping {
    pub(super) reason: StopReason,
    /// When the signal fired: a retry's backoff counts from here.
    pub(super) signalled_at: chrono::DateTime<chrono::Utc>,
    /// What the run had logged by then.
    pub(super) logs: Vec<LogLine>,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) job: HeldJob,
    pub(super) generation: u32,
    pub(super) task: u32,
    pub(super) state: State,
    /// The ready-set sequence number of its latest push.
    pub(super) seq: u64,
    pub(super) timer: Option<TimerKey>,
    /// The running attempt: its cancellation signal and its journal.
    pub(super) run: Option<Arc<RunShared>>,
    /// Where its not yet flushed update sits in `writes`.
    pub(super) write: Option<WriteAt>,
}

/// The jobs a scheduler holds: each in a slot (a small number the
/// ready sets, timers and workers carry), found by id too.
///
/// A slot is reused once its job leaves; its generation is bumped then, so
/// a parked reference to the old job (slot and generation) is told apart.
///
/// It counts its jobs by task and status as they come, change status
/// ([`JobTable::set_status`], the one way a held job's status changes) and
/// leave, so the counts cost nothing to read.
#[derive(Debug, Default)]
pub(super) struct JobTable {
    entries: Vec<Option<Entry>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    /// Slots by job id.
    by_id: IdIndex,
    /// Its jobs by task and status.
    counts: HeldCounts,
}

impl JobTable {
    /// Holds `job` of task slot `task`, ready: returns its slot.
    pub(super) fn insert(&mut self, job: HeldJob, task: u32) -> u32 {
        let id = job.id;
        self.counts.add(task, job.status);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.entries.push(None);
                self.generations.push(0);
                (self.entries.len() - 1) as u32
            }
        };
        let generation = self.generations[slot as usize];
        self.entries[slot as usize] = Some(Entry {
            job,
            generation,
            task,
            state: State::Ready,
            seq: 0,
            timer: None,
            run: None,
            write: None,
        });
        self.by_id.insert(id, slot);
        slot
    }

    pub(super) fn get(&self, slot: u32) -> Option<&Entry> {
        self.entries.get(slot as usize).and_then(Option::as_ref)
    }

    /// The entry of `slot`, to change. Its job's status changes through
    /// [`JobTable::set_status`] instead, which keeps the counts.
    pub(super) fn get_mut(&mut self, slot: u32) -> Option<&mut Entry> {
        self.entries.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// Sets the status of the job of `slot`; returns the one it had (none
    /// when the slot holds no job).
    pub(super) fn set_status(&mut self, slot: u32, status: JobStatus) -> Option<JobStatus> {
        let e = self
            .entries
            .get_mut(slot as usize)
            .and_then(Option::as_mut)?;
        let before = std::mem::replace(&mut e.job.status, status);
        self.counts.moved(e.task, before, status);
        Some(before)
    }

    /// How many of its jobs of task slot `task` are not final.
    pub(super) fn of_task(&self, task: u32) -> usize {
        self.counts
            .iter()
            .filter(|&(t, status, _)| t == task && !status.is_final())
            .map(|(_, _, n)| n as usize)
            .sum()
    }

    /// Its jobs by task slot and status.
    pub(super) fn counts(&self) -> &HeldCounts {
        &self.counts
    }

    /// Its jobs by task slot and status, counted one by one: what
    /// [`JobTable::counts`] must equal (checked in tests and debug builds).
    #[cfg(any(test, debug_assertions))]
    pub(super) fn walk_counts(&self) -> HeldCounts {
        let mut counts = HeldCounts::default();
        for e in self.entries.iter().flatten() {
            counts.add(e.task, e.job.status);
        }
        counts
    }

    /// Takes every entry out (for a restarted scheduler's successor).
    pub(super) fn drain(&mut self) -> impl Iterator<Item = Entry> + '_ {
        self.free.clear();
        self.generations.clear();
        self.by_id = IdIndex::default();
        self.counts.clear();
        self.entries.drain(..).flatten()
    }

    /// The slot of job `id`, if held.
    pub(super) fn slot_of(&self, id: &JobId) -> Option<u32> {
        self.by_id.get(id)
    }

    /// Whether job `id` is held.
    pub(super) fn contains(&self, id: &JobId) -> bool {
        self.by_id.contains(id)
    }

    /// How many jobs are held.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every held job's slot, in id order.
    pub(super) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_id.slots()
    }

    /// Every held job's id, in order.
    pub(super) fn ids(&self) -> impl Iterator<Item = JobId> + '_ {
        self.by_id.ids()
    }

    /// Lets the job of `slot` go: its slot is free for another.
    pub(super) fn remove(&mut self, slot: u32) -> Option<Entry> {
        let entry = self.entries.get_mut(slot as usize)?.take()?;
        self.by_id.remove(&entry.job.id);
        self.counts.remove(entry.task, entry.job.status);
        let generation = &mut self.generations[slot as usize];
        *generation = generation.wrapping_add(1);
        self.free.push(slot);
        Some(entry)
    }
}
