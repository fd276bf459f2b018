//! Where workers run their handlers, and the watch that reports a worker
//! thread a handler blocks.
//!
//! By default a worker has threads of its own (one, or
//! `ProcessBuilder::threads(n)`), each an actix arbiter with one worker
//! actor: the scheduler sends each thread the jobs it starts in one
//! message per dispatch round, to the thread with the fewest jobs running,
//! and the thread reports the runs that ended in one message per wake-up.
//! The scheduler's own thread never runs a handler, so a handler that
//! blocks cannot hold up timers, store writes, leases or other workers.
//!
//! Opt-in (`ProcessBuilder::on_scheduler_thread`), a worker runs its
//! handlers on the scheduler's thread instead: no thread hop per job, at
//! the risk that one blocking handler stalls the whole queue.
//!
//! [`ThreadWatch`] pings every worker thread; a thread that has not
//! answered for [`STUCK_AFTER`] of real time is reported stuck (a
//! [`QueueEvent::ThreadStuck`] event and `Stats::stuck_threads`) until it
//! answers again.

use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::Scheduler;
use crate::event::QueueEvent;
use crate::reports::StuckThread;
use crate::scheduler::spin::{Spinner, SPIN_FOR};
use crate::scheduler::worker::{Dispatch, Ping, Pong, Run, SameThreadHandoff, Stop, Worker};

/// Where a worker runs its handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// On the scheduler's own thread: fastest for handlers that never
    /// block, but one that blocks stalls the whole queue.
    SchedulerThread,
    /// On this many threads of the worker's own (at least one).
    Threads(usize),
}

/// How often the watch pings worker threads.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// How long (real time) a thread may leave a ping unanswered before it is
/// reported stuck.
pub(crate) const STUCK_AFTER: Duration = Duration::from_millis(500);

/// A worker's handlers, where they run.
#[derive(Debug)]
pub(super) enum Place {
    /// On the scheduler's thread: started jobs still pending go to the
    /// worker through `handoff`.
    SchedulerThread {
        addr: Addr<Worker>,
        handoff: Rc<SameThreadHandoff>,
    },
    /// On threads of the worker's own.
    Threads(Vec<WorkerThread>),
}

/// One thread of a worker.
#[derive(Debug)]
pub(super) struct WorkerThread {
    arbiter: Arbiter,
    addr: Addr<Worker>,
    /// Jobs sent to it and not reported back.
    in_flight: usize,
    /// The slots of those jobs.
    running: Vec<u32>,
    /// How long it was busy on the turn of its last report.
    busy: Duration,
    /// The ping it has not answered yet: its number and when it was sent.
    ping: Option<(u64, Instant)>,
    /// When it last answered (on the engine's clock).
    last_heard: DateTime<Utc>,
    /// Set while it is reported stuck.
    stuck: Option<StuckThread>,
}

impl Place {
    /// Starts worker `index`'s actors where `placement` says.
    pub(super) fn start(
        index: usize,
        placement: Placement,
        scheduler: Addr<Scheduler>,
        now: DateTime<Utc>,
    ) -> Place {
        match placement {
            Placement::SchedulerThread => {
                let handoff = Rc::new(SameThreadHandoff::default());
                let addr = Worker::new(
                    index,
                    0,
                    scheduler.clone().recipient(),
                    scheduler.recipient(),
                    handoff.clone(),
                )
                .start();
                Place::SchedulerThread { addr, handoff }
            }
            Placement::Threads(n) => Place::Threads(
                (0..n.max(1))
                    .map(|thread| {
                        let arbiter = Arbiter::new();
                        let scheduler = scheduler.clone();
                        let addr = Worker::start_in_arbiter(&arbiter.handle(), move |_| {
                            Worker::new(
                                index,
                                thread,
                                scheduler.clone().recipient(),
                                scheduler.recipient(),
                                Rc::new(SameThreadHandoff::default()),
                            )
                            .spinning()
                        });
                        WorkerThread {
                            arbiter,
                            addr,
                            in_flight: 0,
                            running: Vec::new(),
                            busy: Duration::ZERO,
                            ping: None,
                            last_heard: now,
                            stuck: None,
                        }
                    })
                    .collect(),
            ),
        }
    }

    /// Whether it has threads of its own.
    pub(super) fn has_threads(&self) -> bool {
        matches!(self, Place::Threads(_))
    }

    /// `thread` reported `slots` as ended, after a turn `busy` long.
    pub(super) fn finished(
        &mut self,
        thread: usize,
        busy: Duration,
        slots: impl Iterator<Item = u32>,
    ) {
        if let Place::Threads(threads) = self {
            if let Some(t) = threads.get_mut(thread) {
                t.busy = busy;
                for slot in slots {
                    t.in_flight = t.in_flight.saturating_sub(1);
                    if let Some(i) = t.running.iter().position(|&s| s == slot) {
                        t.running.swap_remove(i);
                    }
                }
            }
        }
    }

    /// Stops its actors (and threads): what they still run is dropped.
    pub(super) fn stop(&self) {
        match self {
            Place::SchedulerThread { addr, .. } => addr.do_send(Stop),
            Place::Threads(threads) => {
                for t in threads {
                    t.addr.do_send(Stop);
                    t.arbiter.stop();
                }
            }
        }
    }
}

/// A thread whose last turn was busy for less than this is expected to
/// answer within the scheduler's spin.
const ANSWERS_QUICKLY: Duration = Duration::from_micros(SPIN_FOR.as_micros() as u64 / 2);

/// Sends the jobs in `outbox` to `threads`, each to the thread with the
/// fewest jobs running, in one message per thread. Returns whether every
/// thread sent to is expected to answer within a spin (its last turn was
/// short): handlers that keep a thread busy longer leave the scheduler
/// nothing to spin for, and its spin would take a core from them.
pub(super) fn send_out(threads: &mut [WorkerThread], outbox: &mut Vec<Dispatch>) -> bool {
    if let [t] = threads {
        // One thread (the default): the outbox goes as it is.
        t.in_flight += outbox.len();
        t.running.extend(outbox.iter().map(|d| d.slot));
        t.addr.do_send(Run(std::mem::take(outbox)));
        return t.busy < ANSWERS_QUICKLY;
    }
    let mut batches: Vec<Vec<Dispatch>> = threads.iter().map(|_| Vec::new()).collect();
    for dispatch in outbox.drain(..) {
        let Some(i) = (0..threads.len()).min_by_key(|&i| threads[i].in_flight) else {
            break;
        };
        let t = &mut threads[i];
        t.in_flight += 1;
        t.running.push(dispatch.slot);
        batches[i].push(dispatch);
    }
    let mut quick = true;
    for (t, batch) in threads.iter().zip(batches) {
        if !batch.is_empty() {
            quick &= t.busy < ANSWERS_QUICKLY;
            t.addr.do_send(Run(batch));
        }
    }
    quick
}

/// The scheduler's spin for worker threads' reports (see
/// `scheduler::spin`): after it sends jobs to a worker thread, it stays
/// awake a moment, so the thread's report needs no wake-up.
#[derive(Debug, Default)]
pub(super) struct AnswerSpin {
    pub(super) spin: Spinner,
    /// A spin began this turn: its future is spawned as the turn ends.
    begun: bool,
    /// Its future runs.
    alive: bool,
}

impl AnswerSpin {
    /// Jobs went to a worker thread.
    pub(super) fn handed_over(&mut self) {
        if self.spin.handed_over(std::time::Instant::now()) {
            self.begun = true;
        }
    }
}

/// Polls itself (so the scheduler's thread does not park) while the
/// scheduler's spin lasts.
struct SpinWait;

impl ActorFuture<Scheduler> for SpinWait {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        act: &mut Scheduler,
        _: &mut Context<Scheduler>,
        task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if act.answer_spin.spin.keep_awake(std::time::Instant::now()) {
            task.waker().wake_by_ref();
            std::task::Poll::Pending
        } else {
            act.answer_spin.alive = false;
            std::task::Poll::Ready(())
        }
    }
}

/// The service that watches worker threads: [`ThreadWatch::run_once`]
/// pings them and reports those that stopped answering.
#[derive(Debug, Default)]
pub(super) struct ThreadWatch {
    seq: u64,
    started: bool,
}

impl Scheduler {
    /// Starts the spin for worker threads' reports when this turn sent
    /// jobs to one and none runs.
    pub(super) fn spin_for_reports(&mut self, ctx: &mut Context<Self>) {
        let spin = &mut self.answer_spin;
        if std::mem::take(&mut spin.begun) && !spin.alive {
            spin.alive = true;
            ctx.spawn(SpinWait);
        }
    }

    /// Starts the watch's loop, once, when a worker thread first starts.
    pub(super) fn start_thread_watch(&mut self, ctx: &mut Context<Self>) {
        if self.thread_watch.started {
            return;
        }
        self.thread_watch.started = true;
        ctx.run_interval(WATCH_EVERY, |act, _| {
            act.watch_threads_once(Instant::now());
        });
    }

    /// One round of the watch at real time `now`: a thread whose last ping
    /// went unanswered for [`STUCK_AFTER`] is reported stuck (once); every
    /// thread without a ping in flight gets one. Returns how many threads
    /// are stuck.
    pub(super) fn watch_threads_once(&mut self, now: Instant) -> usize {
        self.thread_watch.seq += 1;
        let seq = self.thread_watch.seq;
        let mut stuck = 0;
        let mut events = Vec::new();
        for w in &mut self.workers {
            let Place::Threads(threads) = &mut w.place else {
                continue;
            };
            for (index, t) in threads.iter_mut().enumerate() {
                match t.ping {
                    Some((_, sent)) if now.saturating_duration_since(sent) >= STUCK_AFTER => {
                        if t.stuck.is_none() {
                            let running = t
                                .running
                                .iter()
                                .filter_map(|&slot| self.jobs.get(slot))
                                .map(|e| e.job.id)
                                .collect::<Vec<_>>();
                            let report = StuckThread {
                                tags: w.tag_names.clone(),
                                thread: index,
                                since: t.last_heard,
                                running: running.clone(),
                            };
                            tracing::warn!(
                                tags = ?w.tag_names,
                                thread = index,
                                "a worker thread has not answered for {STUCK_AFTER:?}: a handler blocks it"
                            );
                            events.push(QueueEvent::ThreadStuck {
                                tags: w.tag_names.clone(),
                                thread: index,
                                running,
                            });
                            t.stuck = Some(report);
                        }
                        stuck += 1;
                    }
                    Some(_) => {}
                    None => {
                        t.ping = Some((seq, now));
                        t.addr.do_send(Ping(seq));
                    }
                }
            }
        }
        for event in events {
            self.bus.queue(event);
        }
        stuck
    }

    /// The threads reported stuck now.
    fn stuck_threads(&self) -> Vec<StuckThread> {
        self.workers
            .iter()
            .filter_map(|w| match &w.place {
                Place::Threads(threads) => Some(threads),
                Place::SchedulerThread { .. } => None,
            })
            .flatten()
            .filter_map(|t| t.stuck.clone())
            .collect()
    }
}

impl Handler<Pong> for Scheduler {
    type Result = ();
    fn handle(&mut self, msg: Pong, _: &mut Self::Context) {
        let now = self.clock.now_utc();
        let Some(w) = self.workers.get_mut(msg.worker) else {
            return;
        };
        let Place::Threads(threads) = &mut w.place else {
            return;
        };
        let Some(t) = threads.get_mut(msg.thread) else {
            return;
        };
        if t.ping.is_some_and(|(seq, _)| seq == msg.seq) {
            t.ping = None;
        }
        t.last_heard = now;
        if t.stuck.take().is_some() {
            tracing::info!(tags = ?w.tag_names, thread = msg.thread, "a stuck worker thread answers again");
            self.bus.queue(QueueEvent::ThreadResponsive {
                tags: w.tag_names.clone(),
                thread: msg.thread,
            });
        }
    }
}

/// The worker threads a handler blocks now.
#[derive(Message)]
#[rtype(result = "Vec<StuckThread>")]
pub(crate) struct StuckThreads;

impl Handler<StuckThreads> for Scheduler {
    type Result = MessageResult<StuckThreads>;
    fn handle(&mut self, _: StuckThreads, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.stuck_threads())
    }
}
