//! Unique keys on a queue whose scheduler holds every pending job (the
//! memory store): the scheduler is where "is a live job holding this
//! key?" can be answered and acted on in one step, so it decides and
//! admits. Stores that outlive the process enforce keys themselves.

use std::collections::HashMap;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::{Origin, Scheduler};
use crate::job::{Job, JobId};
use crate::store::{Inserted, UniqueHold};

/// The keys held, and by which job.
#[derive(Debug, Default)]
pub(super) struct Uniques {
    /// A hold stays here after its job ends (a kicked job takes its key
    /// back) until a sweep finds it no longer live.
    by_key: HashMap<String, (JobId, UniqueHold)>,
    /// `by_key`'s size after the last sweep of ended holds.
    swept_at: usize,
}

impl Uniques {
    /// Carried to a successor scheduler.
    pub(super) fn take(&mut self) -> Uniques {
        std::mem::take(self)
    }
}

impl Scheduler {
    /// The job holding `key` live at `now`.
    fn unique_live_holder(&self, key: &str, now: DateTime<Utc>) -> Option<JobId> {
        let (holder, hold) = self.uniques.by_key.get(key)?;
        let status = self
            .jobs
            .slot_of(holder)
            .and_then(|slot| self.jobs.get(slot))
            .map(|e| e.job.status);
        hold.is_live(status, now).then_some(*holder)
    }

    /// Forgets holds that no longer hold (ended windows), once the map has
    /// doubled since the last sweep.
    fn sweep_uniques(&mut self, now: DateTime<Utc>) {
        if self.uniques.by_key.len() < 2 * self.uniques.swept_at.max(512) {
            return;
        }
        let dead: Vec<String> = self
            .uniques
            .by_key
            .keys()
            .filter(|key| self.unique_live_holder(key, now).is_none())
            .cloned()
            .collect();
        for key in dead {
            self.uniques.by_key.remove(&key);
        }
        self.uniques.swept_at = self.uniques.by_key.len();
    }
}

/// A new unique job: admit it unless a live job holds its key.
#[derive(Message)]
#[rtype(result = "Inserted")]
pub(crate) struct AdmitUnique {
    pub(crate) job: Job,
    pub(crate) hold: UniqueHold,
}

impl Handler<AdmitUnique> for Scheduler {
    type Result = MessageResult<AdmitUnique>;
    fn handle(&mut self, msg: AdmitUnique, ctx: &mut Self::Context) -> Self::Result {
        let now = self.begin();
        let now_utc = self.now_utc();
        if let Some(holder) = self.unique_live_holder(&msg.hold.key, now_utc) {
            self.now.set(None);
            return MessageResult(Inserted::Duplicate(holder));
        }
        self.sweep_uniques(now_utc);
        let id = msg.job.id;
        self.uniques
            .by_key
            .insert(msg.hold.key.clone(), (id, msg.hold));
        self.admit(msg.job, Origin::New, now);
        self.finish_turn(ctx);
        MessageResult(Inserted::New)
    }
}

/// Which job holds a key now.
#[derive(Message)]
#[rtype(result = "Option<JobId>")]
pub(crate) struct UniqueHolder {
    pub(crate) key: String,
    pub(crate) now: DateTime<Utc>,
}

impl Handler<UniqueHolder> for Scheduler {
    type Result = Option<JobId>;
    fn handle(&mut self, msg: UniqueHolder, _: &mut Self::Context) -> Self::Result {
        self.unique_live_holder(&msg.key, msg.now)
    }
}
