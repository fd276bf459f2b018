//! The scheduler's address as a queue holds it, and the inbox of jobs
//! producers created.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::dev::{Request, ToEnvelope};
use actix::prelude::*;

use super::messages::Origin;
use super::{AddrSlot, Scheduler};
use crate::job::Job;

/// The scheduler's address, counting every message sent through it: the
/// scheduler, while it settles jobs that finished on their first poll,
/// stops as soon as anything came in, so what a handler sent (a job it
/// created, a cancellation) is handled before the next job is chosen, as
/// it would be if the handler had run on its worker (see
/// `Scheduler::dispatch`).
///
/// It reads the address from the queue's slot on every send: a restarted
/// scheduler's successor replaces it there (see `actor::restart`).
#[derive(Debug, Clone)]
pub(crate) struct SchedulerAddr {
    slot: AddrSlot,
    sent: Arc<AtomicU64>,
    new_jobs: Arc<NewJobs>,
}

/// Jobs producers created on a store that keeps pending jobs in the
/// scheduler, not yet taken in. A producer creating in a loop pushes onto
/// it, and only the push that finds it empty sends the scheduler a
/// message ([`TakeNewJobs`]): one message and one scheduler turn for
/// however many jobs came in meanwhile, instead of one each. The message
/// is sent under the inbox's lock, so anything a producer sends after its
/// create (a cancel of the job it made) is handled after the job is taken
/// in: while the inbox holds jobs, the message that will take them is
/// already in the mailbox.
#[derive(Debug, Default)]
pub(crate) struct NewJobs(parking_lot::Mutex<Vec<Job>>);

impl SchedulerAddr {
    pub(crate) fn new(slot: AddrSlot, sent: Arc<AtomicU64>, new_jobs: Arc<NewJobs>) -> Self {
        SchedulerAddr {
            slot,
            sent,
            new_jobs,
        }
    }

    /// Hands jobs just created to the scheduler, through the inbox.
    pub(crate) fn admit_new(&self, mut jobs: Vec<Job>) {
        // Counted as a message: the scheduler's dispatch looks for
        // anything sent (see above), and a job created here is.
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut inbox = self.new_jobs.0.lock();
        let was_empty = inbox.is_empty();
        inbox.append(&mut jobs);
        if was_empty {
            self.slot.read().do_send(TakeNewJobs);
        }
    }

    /// Sends `msg` without waiting for its handling.
    pub(crate) fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Scheduler: Handler<M>,
        <Scheduler as Actor>::Context: ToEnvelope<Scheduler, M>,
    {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.slot.read().do_send(msg);
    }

    /// Sends `msg`; the request resolves to the handler's answer.
    pub(crate) fn send<M>(&self, msg: M) -> Request<Scheduler, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Scheduler: Handler<M>,
        <Scheduler as Actor>::Context: ToEnvelope<Scheduler, M>,
    {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.slot.read().send(msg)
    }

    /// Whether the scheduler still runs.
    pub(crate) fn connected(&self) -> bool {
        self.slot.read().connected()
    }
}

/// Takes in every job in the inbox ([`NewJobs`]).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TakeNewJobs;

impl Handler<TakeNewJobs> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: TakeNewJobs, ctx: &mut Self::Context) {
        let mut jobs = std::mem::take(&mut self.taken_in);
        std::mem::swap(&mut *self.new_jobs.0.lock(), &mut jobs);
        if jobs.is_empty() {
            self.taken_in = jobs;
            return;
        }
        let now = self.begin();
        for job in jobs.drain(..) {
            self.admit(job, Origin::New, now);
        }
        self.taken_in = jobs;
        self.finish_turn(ctx);
    }
}
