//! Dead letters on their way out: a job buried this turn whose task names
//! a dead-letter task gets a letter, a new job of that task, made here and
//! kept as every new job is (webhook deliveries, made in `callbacks.rs`,
//! travel in the same outbox) (held here on the memory store; stored first,
//! then held, on a durable store only this process uses; stored, for any
//! process to claim, on a shared store).

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::table::Entry;
use super::{Origin, Scheduler};
use crate::dead_letter::DeadLetter;
use crate::event::QueueEvent;
use crate::job::Job;
use crate::new_job::NewJob;

/// Letters made this turn, and how many are being stored.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    made: Vec<Job>,
    storing: usize,
}

impl Outbox {
    /// Adds a job made this turn (a webhook delivery, say) to send with
    /// the letters.
    #[cfg(feature = "webhooks")]
    pub(super) fn push(&mut self, job: Job) {
        self.made.push(job);
    }

    /// Whether letters were made and not yet sent.
    pub(super) fn has_made(&self) -> bool {
        !self.made.is_empty()
    }

    /// Whether no letter is waiting or being stored (a drain waits for it).
    pub(super) fn is_settled(&self) -> bool {
        self.made.is_empty() && self.storing == 0
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
            .into_job(at, &mut None, !self.in_process);
        match made {
            Ok(job) => self.letters.made.push(job),
            Err(err) => self.bus.queue(QueueEvent::Error {
                message: format!(
                    "the dead letter of job {} could not be made: {err}",
                    e.job.id
                ),
            }),
        }
    }

    /// Keeps the letters made this turn: held at once on the memory store,
    /// stored first on any other.
    pub(super) fn send_dead_letters(&mut self, ctx: &mut Context<Self>) {
        if self.letters.made.is_empty() {
            return;
        }
        let letters = std::mem::take(&mut self.letters.made);
        if self.in_process {
            let now = self.now_ms();
            for job in letters {
                self.admit(job, Origin::New, now);
            }
            return;
        }
        self.letters.storing += letters.len();
        let store = self.store.clone();
        let shared = self.is_shared();
        let fut = async move {
            let stored = store.jobs_insert(&letters).await;
            (stored, letters)
        };
        ctx.spawn(self.store_call(fut).into_actor(self).map(move |result, act, ctx| {
            let Some((stored, letters)) = result else {
                return;
            };
            act.letters.storing -= letters.len();
            match stored {
                // Another process may run a letter on a shared store: the
                // insert woke every claimer.
                Ok(()) if shared => {}
                Ok(()) => {
                    let now = act.begin();
                    for job in letters {
                        act.admit(job, Origin::New, now);
                    }
                }
                Err(err) => {
                    let ids: Vec<String> = letters
                        .iter()
                        .filter_map(|l| l.reference.clone())
                        .collect();
                    tracing::error!(%err, letters = ?ids, "storing dead letters failed");
                    act.bus.queue(QueueEvent::Error {
                        message: format!(
                            "storing {} dead letter(s) or webhook deliveries failed ({}): {err}; the jobs they follow stay as they ended",
                            ids.len(),
                            ids.join(", ")
                        ),
                    });
                }
            }
            act.finish_turn(ctx);
        }));
    }
}
