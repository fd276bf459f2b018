//! Worker actors: each polls the handlers of the jobs the scheduler gave
//! it, on its own thread.
//!
//! A worker (what `Queue::process` starts) is one actor per worker thread,
//! each on an arbiter of its own: the scheduler sends a thread the jobs it
//! starts in one [`Run`] message per dispatch round, the thread calls each
//! handler there (so handler futures need not be `Send`), and reports the
//! runs that ended in one [`Finished`] message per wake-up. A handler that
//! blocks its thread stalls that thread alone.
//!
//! Opt-in, a worker may instead share the scheduler's thread
//! (`ProcessBuilder::on_scheduler_thread`): then the scheduler starts a
//! job's handler and polls it once itself (see `Scheduler::dispatch`),
//! and only a job still pending after that comes here, through a
//! [`SameThreadHandoff`] cell rather than a message.
//!
//! Either way a worker keeps its jobs in one `FuturesUnordered` polled by
//! a single long-lived actor future, so a wake-up polls only the jobs that
//! were woken. A job that arrives is polled straight away, which registers
//! the worker's waker.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Instant;

use actix::prelude::*;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::context::{JobMeta, Journal, RunInfo, RunShared};
use crate::error::JobError;
use crate::job::Payload;
use crate::middleware::{wrap, Middleware};
use crate::scheduler::spin::Spinner;
use crate::task::{Action, RunFuture};

/// What a worker thread needs of a task to start its jobs: the handler,
/// the middleware around it, and the grace period of a signalled run.
pub(crate) struct Runnable {
    pub(crate) action: Arc<dyn Action>,
    pub(crate) chain: Option<Arc<[Arc<dyn Middleware>]>>,
    pub(crate) grace: std::time::Duration,
}

impl std::fmt::Debug for Runnable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runnable")
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// One job about to start. On the scheduler's thread its task's handler
/// and middleware are looked up when it starts, not carried: no reference
/// counts touched per job; a job for a worker thread carries them in
/// `runnable`.
pub(crate) struct Dispatch {
    pub(crate) slot: u32,
    /// The index of its task in the scheduler's table.
    pub(crate) task: u32,
    pub(crate) info: RunInfo,
    pub(crate) payload: Payload,
    pub(crate) runnable: Option<Arc<Runnable>>,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("slot", &self.slot)
            .field("task", &self.task)
            .field("job", &self.info.id)
            .finish()
    }
}

/// Where started jobs wait for a worker actor on the same thread to poll
/// them until they finish: left by the scheduler for a worker on its own
/// thread, or by a worker thread's [`Run`] handler for that thread's
/// worker. Handlers' futures need not be `Send`, and both sides share one
/// thread, so this is a plain shared cell, not a message.
#[derive(Default)]
pub(crate) struct SameThreadHandoff {
    jobs: RefCell<Vec<RunningJob>>,
    /// The worker's, registered whenever it looks.
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for SameThreadHandoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SameThreadHandoff")
            .field("jobs", &self.jobs.borrow().len())
            .finish()
    }
}

impl SameThreadHandoff {
    /// Leaves `jobs` for the worker and wakes it.
    pub(crate) fn push(&self, jobs: Vec<RunningJob>) {
        self.jobs.borrow_mut().extend(jobs);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Takes what was left, to be woken by `waker` when more comes.
    fn take(&self, into: &mut Vec<RunningJob>, waker: &Waker) {
        into.append(&mut self.jobs.borrow_mut());
        match self.waker.take() {
            Some(w) if w.will_wake(waker) => self.waker.set(Some(w)),
            _ => self.waker.set(Some(waker.clone())),
        }
    }
}

/// How one run ended, as the worker saw it.
#[derive(Debug)]
pub(crate) enum Outcome {
    Completed(Option<serde_json::Value>),
    Failed(JobError),
    Panicked(String),
    /// The job's cancellation signal fired; the scheduler already decided.
    Aborted,
}

/// One finished run.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) slot: u32,
    /// The run's task slot (a job decided while its run went on may be
    /// gone when the report arrives: the task still counts the run).
    pub(crate) task: u32,
    pub(crate) attempt: u32,
    pub(crate) outcome: Outcome,
    /// What the run logged and its last progress.
    pub(crate) journal: Journal,
}

/// Runs a worker finished, sent to the scheduler.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Finished {
    pub(crate) worker: usize,
    /// Which of the worker's threads ran them.
    pub(crate) thread: usize,
    pub(crate) reports: Vec<Report>,
    /// How long the thread was busy on the turn that ended them: with
    /// handlers that take longer than a spin, the scheduler does not spin
    /// for this thread's next report.
    pub(crate) busy: std::time::Duration,
}

/// Jobs for a worker thread to start: one message per dispatch round.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Run(pub(crate) Vec<Dispatch>);

/// Asks a worker thread whether it is free to answer: a thread whose
/// handler blocks it does not answer until the handler returns.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Ping(pub(crate) u64);

/// A worker thread's answer to [`Ping`].
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Pong {
    pub(crate) worker: usize,
    pub(crate) thread: usize,
    pub(crate) seq: u64,
}

/// Stops the worker once its running jobs are gone.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;

pub(crate) struct Worker {
    index: usize,
    thread: usize,
    /// Where it reports the runs that ended.
    finished: Recipient<Finished>,
    /// Where it answers pings.
    pong: Recipient<Pong>,
    handoff: Rc<SameThreadHandoff>,
    incoming: Vec<RunningJob>,
    running: FuturesUnordered<RunningJob>,
    done: Vec<Report>,
    /// On a thread of its own: stays awake a moment for the next jobs
    /// after it reports (see `spin`).
    spin: Option<Spinner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .field("running", &self.running.len())
            .finish()
    }
}

impl Worker {
    /// Worker `index`'s thread `thread`; `handoff` is where jobs arrive.
    pub(crate) fn new(
        index: usize,
        thread: usize,
        finished: Recipient<Finished>,
        pong: Recipient<Pong>,
        handoff: Rc<SameThreadHandoff>,
    ) -> Self {
        Worker {
            index,
            thread,
            finished,
            pong,
            handoff,
            incoming: Vec::new(),
            running: FuturesUnordered::new(),
            done: Vec::new(),
            spin: None,
        }
    }

    /// On a thread of its own, it spins a moment for the next jobs after
    /// it reports (see `scheduler::spin`).
    pub(crate) fn spinning(mut self) -> Self {
        self.spin = Some(Spinner::default());
        self
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.spawn(Drive);
    }
}

impl Handler<Stop> for Worker {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Run> for Worker {
    type Result = ();
    fn handle(&mut self, msg: Run, _: &mut Self::Context) {
        let jobs = msg
            .0
            .into_iter()
            .map(|d| match d.runnable.clone() {
                Some(r) => RunningJob::start(d, &*r.action, r.chain.as_deref(), r.grace),
                None => {
                    RunningJob::start_failed(d, "a job reached a worker thread without its task")
                }
            })
            .collect();
        self.handoff.push(jobs);
    }
}

impl Handler<Ping> for Worker {
    type Result = ();
    fn handle(&mut self, msg: Ping, _: &mut Self::Context) {
        self.pong.do_send(Pong {
            worker: self.index,
            thread: self.thread,
            seq: msg.0,
        });
    }
}

/// The actor future that starts and polls the worker's jobs.
struct Drive;

impl ActorFuture<Worker> for Drive {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Worker,
        _ctx: &mut Context<Worker>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        let began = act.spin.is_some().then(Instant::now);
        act.handoff.take(&mut act.incoming, task.waker());
        if let (Some(spin), false) = (&mut act.spin, act.incoming.is_empty()) {
            spin.answered();
        }
        for mut job in act.incoming.drain(..) {
            match Pin::new(&mut job).poll(task) {
                Poll::Ready(report) => act.done.push(report),
                Poll::Pending => act.running.push(job),
            }
        }
        while let Poll::Ready(Some(report)) = act.running.poll_next_unpin(task) {
            act.done.push(report);
        }
        if !act.done.is_empty() {
            act.finished.do_send(Finished {
                worker: act.index,
                thread: act.thread,
                reports: std::mem::take(&mut act.done),
                busy: began.map(|b| b.elapsed()).unwrap_or_default(),
            });
            if let Some(spin) = &mut act.spin {
                spin.handed_over(Instant::now());
            }
        }
        if let Some(spin) = &mut act.spin {
            if spin.keep_awake(Instant::now()) {
                task.waker().wake_by_ref();
            }
        }
        Poll::Pending
    }
}

/// A handler's future with its run's identity, cancellation and panic
/// capture around it. The run's facts went to the handler's context; this
/// keeps what it needs to report: the attempt and the run's shared state.
pub(crate) struct RunningJob {
    slot: u32,
    task: u32,
    attempt: u32,
    shared: Arc<RunShared>,
    fut: Option<RunFuture>,
    /// Created on the first `Pending`, so jobs that finish at once never
    /// allocate it.
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    early: Option<Outcome>,
    /// How long the run may go on once signalled.
    grace: std::time::Duration,
    /// Started when the signal is first seen: the future is dropped when
    /// it ends.
    grace_ends: Option<Pin<Box<tokio::time::Sleep>>>,
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

impl RunningJob {
    /// Calls the handler (which builds its future; a panic there is the
    /// run's outcome), through the middleware `chain` when there is one.
    pub(crate) fn start(
        d: Dispatch,
        action: &dyn Action,
        chain: Option<&[Arc<dyn Middleware>]>,
        grace: std::time::Duration,
    ) -> Self {
        let (attempt, shared) = (d.info.attempt, d.info.shared.clone());
        let (info, payload) = (d.info, d.payload);
        let started = catch_unwind(AssertUnwindSafe(|| match chain {
            Some(chain) => {
                let meta = JobMeta { info: info.clone() };
                wrap(chain, &meta, action.start(info, payload.as_str()))
            }
            None => action.start(info, payload.as_str()),
        }));
        let (fut, early) = match started {
            Ok(fut) => (Some(fut), None),
            Err(p) => (None, Some(Outcome::Panicked(panic_message(p)))),
        };
        RunningJob {
            slot: d.slot,
            task: d.task,
            attempt,
            shared,
            fut,
            cancelled: None,
            early,
            grace,
            grace_ends: None,
        }
    }

    /// A run that fails before its handler is called: a broken invariant
    /// fails the job, never the worker.
    pub(crate) fn start_failed(d: Dispatch, message: &str) -> Self {
        RunningJob {
            slot: d.slot,
            task: d.task,
            attempt: d.info.attempt,
            shared: d.info.shared,
            fut: None,
            cancelled: None,
            early: Some(Outcome::Failed(JobError::transient(format!(
                "internal: {message}"
            )))),
            grace: std::time::Duration::ZERO,
            grace_ends: None,
        }
    }

    /// Once signalled: whether its grace period is over (polling the timer
    /// registers `cx` to be woken when it is).
    fn grace_over(&mut self, cx: &mut TaskContext<'_>) -> bool {
        if self.grace.is_zero() {
            return true;
        }
        let grace = self.grace;
        let ends = self
            .grace_ends
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(grace)));
        ends.as_mut().poll(cx).is_ready()
    }

    /// Polls it once, with a waker that does nothing: for the first poll,
    /// after which a job still pending goes to a worker that polls it again
    /// with its own.
    pub(crate) fn poll_first(&mut self) -> Poll<Report> {
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        Pin::new(self).poll(&mut cx)
    }

    fn report(&self, outcome: Outcome) -> Report {
        Report {
            slot: self.slot,
            task: self.task,
            attempt: self.attempt,
            outcome,
            journal: std::mem::take(&mut *self.shared.journal.lock()),
        }
    }
}

impl Future for RunningJob {
    type Output = Report;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Report> {
        let this = self.get_mut();
        if let Some(outcome) = this.early.take() {
            return Poll::Ready(this.report(outcome));
        }
        // Signalled: the handler goes on for its grace period, then is
        // dropped.
        if this.shared.signal.is_cancelled() && this.grace_over(cx) {
            this.fut = None;
            return Poll::Ready(this.report(Outcome::Aborted));
        }
        let Some(fut) = this.fut.as_mut() else {
            return Poll::Ready(this.report(Outcome::Aborted));
        };
        let polled = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)));
        let outcome = match polled {
            Ok(Poll::Pending) => {
                if this.grace_ends.is_some() {
                    // Signalled, in its grace period: the timer is armed.
                    return Poll::Pending;
                }
                let cancelled = this.cancelled.get_or_insert_with(|| {
                    Box::pin(this.shared.signal.token().clone().cancelled_owned())
                });
                if cancelled.as_mut().poll(cx).is_ready() && this.grace_over(cx) {
                    Outcome::Aborted
                } else {
                    return Poll::Pending;
                }
            }
            Ok(Poll::Ready(Ok(value))) => Outcome::Completed(value),
            Ok(Poll::Ready(Err(e))) => Outcome::Failed(e),
            Err(p) => Outcome::Panicked(panic_message(p)),
        };
        this.fut = None;
        Poll::Ready(this.report(outcome))
    }
}
