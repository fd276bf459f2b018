//! The watch over tags no worker serves: a job ready for such a tag waits
//! for good, which is easy to do by mistake (a task defined without
//! `.tag(..)` lands in `default`; a worker started for another tag never
//! runs it). After a turn that leaves jobs ready for a tag no worker
//! serves, the watch looks again a second later (no timer otherwise);
//! [`Scheduler::watch_unserved_once`] then reports each such tag once
//! (a [`QueueEvent::TagUnserved`] event and a warning in the log) until a
//! worker serves it; `Stats::unserved_tags` lists them.

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;

use super::{ReadySet, Scheduler};
use crate::event::QueueEvent;
use crate::job::JobStatus;
use crate::reports::UnservedTag;

/// How long jobs wait for an unserved tag before the watch reports it.
const REPORT_AFTER: Duration = Duration::from_secs(1);

/// The tags reported so far, by slot, and the pending look.
#[derive(Debug, Default)]
pub(super) struct UnservedWatch {
    reported: HashSet<u32>,
    look: Option<SpawnHandle>,
}

impl Scheduler {
    /// After a turn: when jobs are ready for a tag no worker serves and
    /// that is not reported yet, looks again in [`REPORT_AFTER`] (not on a
    /// shared store, where such a tag is another process's to serve and
    /// its jobs are never claimed here).
    pub(super) fn after_turn_unserved(&mut self, ctx: &mut Context<Self>) {
        if self.unserved.look.is_some() || self.is_shared() {
            return;
        }
        let waiting = (0..self.routes.tags.len() as u32).any(|tag| {
            !self.unserved.reported.contains(&tag)
                && !self.routes.tags[tag as usize].is_empty()
                && !self
                    .workers
                    .iter()
                    .any(|w| !w.stopped && w.tags.contains(&tag))
        });
        if waiting {
            self.unserved.look = Some(ctx.run_later(REPORT_AFTER, |act, _| {
                act.unserved.look = None;
                act.watch_unserved_once();
            }));
        }
    }

    /// The tag slots a running worker serves.
    fn served_tags(&self) -> HashSet<u32> {
        self.workers
            .iter()
            .filter(|w| !w.stopped)
            .flat_map(|w| w.tags.iter().copied())
            .collect()
    }

    /// How many jobs are ready for tag slot `tag` (not suspended), from
    /// the counts kept as jobs change (a held job is in state ready
    /// exactly when its status is: `Scheduler::counts_mismatch` checks
    /// it), so `stats()` walks no job.
    fn ready_for(&self, tag: u32) -> u64 {
        self.jobs
            .counts()
            .iter()
            .filter(|&(task, status, _)| {
                let task = &self.routes.tasks[task as usize];
                status == JobStatus::Ready && task.tag == Some(tag) && !task.suspended
            })
            .map(|(_, _, n)| n)
            .sum()
    }

    /// One round: reports each tag that has jobs ready and no worker,
    /// once; forgets a tag a worker now serves. Returns the tags reported
    /// in this round.
    pub(super) fn watch_unserved_once(&mut self) -> Vec<UnservedTag> {
        let served = self.served_tags();
        let mut found = Vec::new();
        for tag in 0..self.routes.tags.len() as u32 {
            if served.contains(&tag) {
                self.unserved.reported.remove(&tag);
                continue;
            }
            if self.unserved.reported.contains(&tag) || self.routes.tags[tag as usize].is_empty() {
                continue;
            }
            let waiting = self.ready_for(tag);
            if waiting == 0 {
                // Only keys of jobs that left it: nothing waits.
                self.routes.tags[tag as usize] = ReadySet::default();
                continue;
            }
            let Some(name) = self.routes.tag_name(tag) else {
                continue;
            };
            tracing::warn!(
                tag = %name,
                waiting,
                "jobs are ready for a tag no worker serves: start a worker for it, or give their task a served tag"
            );
            self.bus.queue(QueueEvent::TagUnserved {
                tag: name.clone(),
                waiting,
            });
            self.unserved.reported.insert(tag);
            found.push(UnservedTag { tag: name, waiting });
        }
        found
    }

    /// The tags with jobs ready and no worker now.
    fn unserved_tags(&self) -> Vec<UnservedTag> {
        let served = self.served_tags();
        (0..self.routes.tags.len() as u32)
            .filter(|tag| !served.contains(tag) && !self.routes.tags[*tag as usize].is_empty())
            .filter_map(|tag| {
                let waiting = self.ready_for(tag);
                let name = self.routes.tag_name(tag)?;
                (waiting > 0).then_some(UnservedTag { tag: name, waiting })
            })
            .collect()
    }
}

/// The tags with jobs ready and no worker.
#[derive(Message)]
#[rtype(result = "Vec<UnservedTag>")]
pub(crate) struct UnservedTags;

impl Handler<UnservedTags> for Scheduler {
    type Result = MessageResult<UnservedTags>;
    fn handle(&mut self, _: UnservedTags, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.unserved_tags())
    }
}
