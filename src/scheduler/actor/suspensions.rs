//! Suspensions: which tasks' jobs the scheduler holds back, and how it
//! learns of them.
//!
//! The queue records a suspend or resume in the store first (when the
//! store keeps suspensions), then tells this scheduler with [`Suspend`],
//! so the change holds here once the call returns. A queue being built
//! hands over what the store holds with [`SetSuspensions`], before any job.
//! On a shared store the scheduler also reads the store's suspensions
//! again whenever the store says they changed (another process suspended
//! or resumed: [`SharedStore::suspension_changes`]) and at every claim
//! poll, in case a notification was lost.
//!
//! [`SharedStore::suspension_changes`]: crate::store::SharedStore::suspension_changes

use actix::prelude::*;

use super::Scheduler;
use crate::event::QueueEvent;
use crate::store::StoreError;
use crate::suspension::{Suspended, Suspension};

/// A suspend or a resume.
#[derive(Debug, Clone)]
pub(crate) enum SuspensionChange {
    /// Hold back what it names (a suspension already there is kept).
    Add(Suspension),
    /// Stop holding it back.
    Remove(Suspended),
}

/// Applies a suspend or resume made in this process.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Suspend(pub(crate) SuspensionChange);

impl Handler<Suspend> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Suspend, ctx: &mut Self::Context) {
        // A read of the store's suspensions started before this change
        // may not have seen it: it must not undo it.
        self.routes.suspension_epoch += 1;
        match msg.0 {
            SuspensionChange::Add(s) => {
                self.routes.suspensions.entry(s.what.clone()).or_insert(s);
            }
            SuspensionChange::Remove(what) => {
                self.routes.suspensions.remove(&what);
            }
        }
        self.suspensions_changed(ctx);
        if self.is_shared() {
            // What the store holds now, with the other processes' changes.
            self.reload_suspensions(ctx);
        }
    }
}

/// Replaces every suspension: what the store held when the queue was built.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetSuspensions(pub(crate) Vec<Suspension>);

impl Handler<SetSuspensions> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: SetSuspensions, ctx: &mut Self::Context) {
        self.routes.suspension_epoch += 1;
        self.replace_suspensions(msg.0, ctx);
    }
}

/// The suspensions this scheduler applies, in the order of what they hold
/// back.
#[derive(Message)]
#[rtype(result = "Vec<Suspension>")]
pub(crate) struct SuspensionsNow;

impl Handler<SuspensionsNow> for Scheduler {
    type Result = MessageResult<SuspensionsNow>;
    fn handle(&mut self, _: SuspensionsNow, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.routes.suspensions.values().cloned().collect())
    }
}

/// The store says its suspensions may have changed.
pub(super) struct SuspensionsChanged;

impl StreamHandler<SuspensionsChanged> for Scheduler {
    fn handle(&mut self, _: SuspensionsChanged, ctx: &mut Self::Context) {
        self.reload_suspensions(ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {
        tracing::warn!("the store's suspension notifications ended; reading them at each poll");
    }
}

impl Scheduler {
    /// On a shared store: follows the store's suspension changes, and reads
    /// them at every `poll` too.
    pub(super) fn start_suspension_watch(
        &mut self,
        poll: std::time::Duration,
        ctx: &mut Context<Self>,
    ) {
        let Some(shared) = self.store.shared() else {
            return;
        };
        ctx.add_stream(futures::StreamExt::map(shared.suspension_changes(), |()| {
            SuspensionsChanged
        }));
        ctx.run_interval(poll, |act, ctx| act.reload_suspensions(ctx));
    }

    /// Reads the store's suspensions and applies them, unless a change
    /// was made here (or another read started) meanwhile: then the newest
    /// read applies.
    pub(super) fn reload_suspensions(&mut self, ctx: &mut Context<Self>) {
        self.routes.suspension_epoch += 1;
        let epoch = self.routes.suspension_epoch;
        let store = self.store.clone();
        let fut = async move { store.suspensions_list().await };
        ctx.spawn(self.store_call(fut).into_actor(self).map(
            move |result, act, ctx| match result {
                None | Some(Err(StoreError::Unsupported(_))) => {}
                Some(Ok(list)) => {
                    if act.routes.suspension_epoch == epoch {
                        act.replace_suspensions(list, ctx);
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "reading the suspensions failed");
                    act.bus.queue(QueueEvent::Error {
                        message: format!("reading the suspensions failed, will retry: {err}"),
                    });
                }
            },
        ));
    }

    fn replace_suspensions(&mut self, list: Vec<Suspension>, ctx: &mut Context<Self>) {
        let list: std::collections::BTreeMap<Suspended, Suspension> =
            list.into_iter().map(|s| (s.what.clone(), s)).collect();
        if list == self.routes.suspensions {
            return;
        }
        self.routes.suspensions = list;
        self.suspensions_changed(ctx);
    }

    /// Sets each task's flag from the suspensions: the jobs of tasks no
    /// longer suspended are queued again (and, on a shared store, claimed).
    fn suspensions_changed(&mut self, ctx: &mut Context<Self>) {
        let freed = self.routes.apply_suspensions();
        self.requeue(freed);
        self.want_claim(ctx);
        self.finish_turn(ctx);
    }
}
