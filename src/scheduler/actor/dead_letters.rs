//! Dead letters on their way out: a job buried this turn whose task names
//! a dead-letter task gets a letter, a new job of that task, made here and
//! kept as every new job is (webhook deliveries, made in `callbacks.rs`,
//! take the same way). On the memory store it is held at the end of the
//! turn. On a durable store it goes into the journal beside the bury, and
//! the store keeps both in one write (`Store::jobs_write`, one
//! transaction): a crash keeps both or neither, never the bury alone.
//! Once stored, a letter is held here (SQLite) or left for any process to
//! claim (a shared store).

use chrono::{DateTime, Utc};

use super::table::Entry;
use super::{Origin, Scheduler};
use crate::dead_letter::DeadLetter;
use crate::event::QueueEvent;
use crate::job::Job;
use crate::new_job::NewJob;

/// Letters made this turn on the memory store, held at its end.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    made: Vec<Job>,
}

impl Outbox {
    /// Whether letters were made and not yet held.
    pub(super) fn has_made(&self) -> bool {
        !self.made.is_empty()
    }

    /// Whether no letter waits (a drain waits for it; on a durable store
    /// the journal has them).
    pub(super) fn is_settled(&self) -> bool {
        self.made.is_empty()
    }

    /// Holds `job`, made this turn, until the turn's end.
    pub(super) fn push(&mut self, job: Job) {
        self.made.push(job);
    }
}

impl Scheduler {
    /// Makes the dead letter of `e`, buried at `at` with `message`, when
    /// its task names a dead-letter task.
    pub(super) fn post_dead_letter(&mut self, e: &Entry, message: Option<&str>, at: DateTime<Utc>) {
        let task = &self.routes.tasks[e.task as usize];
        let Some(dest) = task.def.as_ref().and_then(|d| d.dead_letter.clone()) else {
            return;
        };
        let letter =
            DeadLetter {
                job_id: e.job.id,
                task: task.name.to_string(),
                reference: e.job.reference().map(str::to_owned),
                // A payload kessel stored is JSON; one that is not (impossible
                // through the API) travels as its text.
                payload: e.job.payload.to_value().unwrap_or_else(|_| {
                    serde_json::Value::String(e.job.payload.as_str().to_owned())
                }),
                attempts: e.job.attempts,
                last_error: message.unwrap_or_default().to_owned(),
                buried_at: at,
            };
        let made = NewJob::new(&*dest, &letter)
            .reference(DeadLetter::reference_for(e.job.id))
            .into_job(at, &mut None, self.keeper.stores_created_line());
        match made {
            Ok(job) => self.keep_made(job),
            Err(err) => self.bus.queue(QueueEvent::Error {
                message: format!(
                    "the dead letter of job {} could not be made: {err}",
                    e.job.id
                ),
            }),
        }
    }

    /// Keeps a job made as another ended (its dead letter, its webhook
    /// delivery): on the memory store held at the end of this turn; on a
    /// durable one queued in the journal, so it is stored in the same write
    /// as the ending just queued there.
    pub(super) fn keep_made(&mut self, job: Job) {
        self.keeper.made(job, &mut self.letters, &mut self.journal);
    }

    /// Holds the letters made this turn on the memory store.
    pub(super) fn send_dead_letters(&mut self) {
        if self.letters.made.is_empty() {
            return;
        }
        let letters = std::mem::take(&mut self.letters.made);
        let now = self.now_ms();
        for job in letters {
            self.admit(job, Origin::New, now);
        }
    }

    /// Holds the new jobs a stored batch carried, now that they are
    /// stored, on a durable store of this process (SQLite); on a shared
    /// store any process claims them (their insert woke every claimer).
    /// Returns whether it held any.
    pub(super) fn admit_stored(&mut self, jobs: Vec<Job>) -> bool {
        if jobs.is_empty() || self.is_shared() {
            return false;
        }
        let now = self.begin();
        for job in jobs {
            self.admit(job, Origin::New, now);
        }
        true
    }
}
