//! The scheduler's address as a queue holds it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::dev::{Request, ToEnvelope};
use actix::prelude::*;

use super::{AddrSlot, Scheduler};

/// The scheduler's address, counting every message sent through it: the
/// scheduler, while it settles jobs that finished on their first poll,
/// stops as soon as anything came in, so what a handler sent (a job it
/// created, a cancellation) is handled before the next job is chosen, as
/// it would be if the handler had run on its worker (see
/// `Scheduler::dispatch`).
#[derive(Debug, Clone)]
///
/// It reads the address from the queue's slot on every send: a restarted
/// scheduler's successor replaces it there (see `actor::restart`).
pub(crate) struct SchedulerAddr {
    slot: AddrSlot,
    sent: Arc<AtomicU64>,
}

impl SchedulerAddr {
    pub(crate) fn new(slot: AddrSlot, sent: Arc<AtomicU64>) -> Self {
        SchedulerAddr { slot, sent }
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
