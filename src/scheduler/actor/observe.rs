//! Job metrics, recorded as the scheduler moves jobs (feature `metrics`):
//! the hooks the lifecycle calls, which cost a branch when no
//! [`JobMetrics`](crate::metrics::JobMetrics) is attached (and nothing
//! without the feature).

use actix::prelude::*;
#[cfg(feature = "metrics")]
use std::sync::Arc;

use super::Scheduler;
use crate::event::JobEventKind;

/// Starts recording job metrics with this recorder.
#[cfg(feature = "metrics")]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ObserveJobs(pub(crate) crate::metrics::JobRecorder);

#[cfg(feature = "metrics")]
impl Handler<ObserveJobs> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: ObserveJobs, _: &mut Self::Context) {
        *self.recorder.borrow_mut() = Some(msg.0);
        self.observing.set(true);
    }
}

/// Jobs of these tasks were created here in a shared store (where the
/// process that runs them is another's to count).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CountCreated(
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] pub(crate) Vec<std::sync::Arc<str>>,
);

impl Handler<CountCreated> for Scheduler {
    type Result = ();
    #[cfg(feature = "metrics")]
    fn handle(&mut self, msg: CountCreated, _: &mut Self::Context) {
        if !self.observed() {
            return;
        }
        for name in msg.0 {
            let task = self.routes.task_slot(&name);
            self.observe_created(task);
        }
    }
    #[cfg(not(feature = "metrics"))]
    fn handle(&mut self, _: CountCreated, _: &mut Self::Context) {}
}

#[cfg(feature = "metrics")]
impl Scheduler {
    /// Runs `f` on the recorder, if one is attached and its handle lives.
    fn with_recorder(
        &self,
        f: impl FnOnce(&mut crate::metrics::JobRecorder, &Arc<str>),
        task: u32,
    ) {
        let mut recorder = self.recorder.borrow_mut();
        let Some(r) = recorder.as_mut() else { return };
        if !r.alive() {
            *recorder = None;
            return;
        }
        if let Some(t) = self.routes.tasks.get(task as usize) {
            f(r, &t.name);
        }
    }

    /// Whether job metrics are recorded.
    #[inline]
    pub(super) fn observed(&self) -> bool {
        self.observing.get()
    }

    /// A job of task slot `task` changed as `kind` says.
    pub(super) fn observe(&self, task: u32, kind: &JobEventKind) {
        self.with_recorder(|r, name| r.job(task, name, kind), task);
    }

    /// A job of task slot `task` was created here.
    pub(super) fn observe_created(&self, task: u32) {
        self.with_recorder(|r, name| r.created(task, name, 1), task);
    }

    /// The job in `slot` started now; it was due at `due` (nanoseconds
    /// since the Unix epoch; `None` when too far ahead for them).
    pub(super) fn observe_started(&self, slot: u32, task: u32, due: Option<i64>) {
        let now = self.now_nanos();
        self.with_recorder(|r, name| r.run_started(slot, task, name, due, now), task);
    }

    /// The attempt running in `slot` ended (completed, failed, timed out).
    pub(super) fn observe_run_ended(&self, slot: u32, task: u32) {
        let now = self.now_nanos();
        self.with_recorder(|r, name| r.run_ended(slot, task, name, now), task);
    }
}

#[cfg(not(feature = "metrics"))]
impl Scheduler {
    #[inline(always)]
    pub(super) fn observed(&self) -> bool {
        false
    }
    #[inline(always)]
    pub(super) fn observe(&self, _: u32, _: &JobEventKind) {}
    #[inline(always)]
    pub(super) fn observe_created(&self, _: u32) {}
    #[inline(always)]
    pub(super) fn observe_started(&self, _: u32, _: u32, _: Option<i64>) {}
    #[inline(always)]
    pub(super) fn observe_run_ended(&self, _: u32, _: u32) {}
}
