//! The scheduler's timers, with one owner: the timer wheel (delayed jobs,
//! expiries, timeouts and grace periods, by the millisecond), the exact
//! waits within the current millisecond (to the microsecond), and how the
//! scheduler wakes for the earliest of them (one actix timer, and an alarm
//! thread on the OS's high-resolution timer when it can be trusted).
//!
//! Like tokio's time driver, it takes the time as an argument:
//! [`Timers::poll`] and [`Timers::pop_exact`] hand back what is due at
//! `now`, and [`Timers::next_wake`] tells when to look again. The actor
//! side (arming an actix timer, cancelling it) stays with the scheduler,
//! which asks [`Timers::plan_wake`] what to do.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use actix::SpawnHandle;

use super::alarm::Alarm;
use super::clock::Clock;
use super::wheel::{TimerKey, Wheel};

/// The timers of one scheduler. `T` is what a wheel entry stands for.
pub(crate) struct Timers<T> {
    wheel: Wheel<T>,
    /// Waits due within the current millisecond, by exact time:
    /// (microseconds from the clock's origin, the waiter's sequence
    /// number, its slot).
    exact: BinaryHeap<Reverse<(u64, u64, u32)>>,
    /// Room for what a poll hands back, kept between polls.
    fired: Vec<(TimerKey, T)>,
    /// The armed actix timer and the microsecond it fires at.
    armed: Option<(SpawnHandle, u64)>,
    /// Rings at the same microsecond, more precisely than the actix timer.
    alarm: Option<Alarm>,
    /// The scheduler was told to look again right after its turn.
    due_now: bool,
    /// The actix timer last fired on real time, so the alarm may be used.
    alarm_trusted: bool,
    /// A task of its own that wakes the scheduler at the armed microsecond
    /// when the alarm cannot (a paused test clock): see [`Arm::Timer`].
    backup: Option<tokio::task::JoinHandle<()>>,
}

impl<T> Drop for Timers<T> {
    fn drop(&mut self) {
        if let Some(task) = self.backup.take() {
            task.abort();
        }
    }
}

impl<T> std::fmt::Debug for Timers<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers")
            .field("wheel", &self.wheel.len())
            .field("exact", &self.exact.len())
            .field("armed", &self.armed.map(|(_, at)| at))
            .finish_non_exhaustive()
    }
}

/// What the scheduler must do to wake in time (see [`Timers::plan_wake`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arm {
    /// Nothing: no deadline, or the timer armed already fires in time.
    Keep,
    /// Cancel `cancel`, if any, and look again right after this turn
    /// (`notify`: unless already asked to).
    Now {
        cancel: Option<SpawnHandle>,
        notify: bool,
    },
    /// Cancel `cancel`, if any, and arm the actix timer for `delay`; tell
    /// [`Timers::armed`] its handle, for microsecond `at`.
    ///
    /// `backup`: the alarm is not in use (a paused test clock, or real
    /// time not yet confirmed), so also start a task that wakes the
    /// scheduler at the same instant ([`Timers::backup`]). On a paused
    /// clock, with other threads reporting to the scheduler, the actix
    /// timer alone was seen to miss its instant: tokio's clock moved on to
    /// a timer a minute later (about 1 run in 10 of a test with a blocking
    /// handler on a loaded machine). A task of its own kept every instant
    /// in 160 runs of the same test.
    Timer {
        cancel: Option<SpawnHandle>,
        delay: Duration,
        at: u64,
        backup: bool,
    },
}

/// What to do when the alarm rang (see [`Timers::alarm_rang`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rang {
    /// It rang before the engine's clock got to the deadline: a paused test
    /// clock, which the actix timer follows. Leave it to that.
    Early,
    /// Fire what is due, cancelling the armed timer, if any.
    Fire { cancel: Option<SpawnHandle> },
}

impl<T: Copy> Timers<T> {
    pub(crate) fn new() -> Self {
        Timers {
            wheel: Wheel::new(),
            exact: BinaryHeap::new(),
            fired: Vec::new(),
            armed: None,
            alarm: None,
            due_now: false,
            alarm_trusted: false,
            backup: None,
        }
    }

    /// Uses `alarm` to wake precisely (when it can be trusted).
    pub(crate) fn set_alarm(&mut self, alarm: Option<Alarm>) {
        self.alarm = alarm;
    }

    /// Adds `item`, due at millisecond tick `when`; `None` when `when` has
    /// passed.
    pub(crate) fn insert(&mut self, when: u64, item: T) -> Option<TimerKey> {
        self.wheel.insert(when, item).ok()
    }

    /// Removes an entry (a key that went stale is ignored).
    pub(crate) fn cancel(&mut self, key: TimerKey) {
        self.wheel.cancel(key);
    }

    /// Adds a wait for exact microsecond `micros`, of waiter `slot` whose
    /// sequence number is `seq` (so a waiter that moved on is told apart).
    pub(crate) fn insert_exact(&mut self, micros: u64, seq: u64, slot: u32) {
        self.exact.push(Reverse((micros, seq, slot)));
    }

    /// The wheel entries due at tick `now`, with their keys. Give the
    /// vector back with [`Timers::recycle`] to keep its room.
    pub(crate) fn poll(&mut self, now: u64) -> Vec<(TimerKey, T)> {
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.poll_keyed(now, &mut fired);
        fired
    }

    /// Takes back the vector [`Timers::poll`] handed out.
    pub(crate) fn recycle(&mut self, mut fired: Vec<(TimerKey, T)>) {
        fired.clear();
        self.fired = fired;
    }

    /// The next exact wait due at microsecond `now`: (seq, slot).
    pub(crate) fn pop_exact(&mut self, now: u64) -> Option<(u64, u32)> {
        let &Reverse((micros, seq, slot)) = self.exact.peek()?;
        if micros > now {
            return None;
        }
        self.exact.pop();
        Some((seq, slot))
    }

    /// How many wheel entries there are.
    pub(crate) fn len(&self) -> usize {
        self.wheel.len()
    }

    /// Whether anything waits on a timer.
    pub(crate) fn is_waiting(&self) -> bool {
        self.wheel.len() > 0 || !self.exact.is_empty()
    }

    /// The microsecond of the earliest deadline, if any.
    pub(crate) fn next_wake(&self) -> Option<u64> {
        let wheel = self.wheel.next_expiration().map(|tick| tick * 1000);
        let exact = self.exact.peek().map(|r| r.0 .0);
        wheel.into_iter().chain(exact).min()
    }

    /// What to do to wake for the earliest deadline on `clock`.
    pub(crate) fn plan_wake(&mut self, clock: &Clock) -> Arm {
        let Some(next) = self.next_wake() else {
            return Arm::Keep;
        };
        let mut cancel = None;
        if let Some((handle, at)) = self.armed {
            if at <= next {
                return Arm::Keep;
            }
            cancel = Some(handle);
            self.armed = None;
        }
        let at = clock.instant_for_micros(next);
        let delay = at.saturating_duration_since(tokio::time::Instant::now());
        let alarm_at =
            (self.alarm.is_some() && self.alarm_trusted && clocks_agree()).then(|| at.into_std());
        // Read on tokio's clock: on a paused one a deadline still ahead
        // never looks passed, whatever real time does meanwhile.
        match plan_wake(delay, alarm_at, tokio::time::Instant::now().into_std()) {
            Wake::Now => {
                // It came due while this turn ran: look again right after
                // it, not at tokio's next tick (up to a millisecond later).
                let notify = !self.due_now;
                self.due_now = true;
                Arm::Now { cancel, notify }
            }
            Wake::Later { alarm } => {
                let backup = match (alarm, &self.alarm) {
                    (Some(at), Some(a)) => {
                        a.set(at);
                        false
                    }
                    _ => true,
                };
                Arm::Timer {
                    cancel,
                    delay,
                    at: next,
                    backup,
                }
            }
        }
    }

    /// The actix timer [`Arm::Timer`] asked for is armed.
    pub(crate) fn armed(&mut self, handle: SpawnHandle, at: u64) {
        self.armed = Some((handle, at));
    }

    /// The task that wakes the scheduler as [`Arm::Timer`]'s `backup`
    /// asked, in place of the one before (which is stopped).
    pub(crate) fn backup(&mut self, task: tokio::task::JoinHandle<()>) {
        if let Some(old) = self.backup.replace(task) {
            old.abort();
        }
    }

    /// The armed actix timer fired. The alarm keeps real time; a paused
    /// test clock does not: it is trusted only while the actix timer is
    /// seen firing on real time.
    pub(crate) fn timer_fired(&mut self) {
        self.armed = None;
        self.alarm_trusted = clocks_agree();
    }

    /// The alarm rang (or the scheduler looked again right after a turn)
    /// with the engine's clock at microsecond `now`.
    pub(crate) fn alarm_rang(&mut self, now: u64) -> Rang {
        self.due_now = false;
        match self.armed {
            Some((_, at)) if now < at => Rang::Early,
            Some((handle, _)) => {
                self.armed = None;
                Rang::Fire {
                    cancel: Some(handle),
                }
            }
            None => Rang::Fire { cancel: None },
        }
    }
}

/// Whether tokio's clock reads real time (within a millisecond): false on
/// a paused test clock once it has moved away from real time.
fn clocks_agree() -> bool {
    let real = std::time::Instant::now();
    let tokio_now = tokio::time::Instant::now().into_std();
    let apart = tokio_now
        .checked_duration_since(real)
        .unwrap_or_else(|| real.duration_since(tokio_now));
    apart < Duration::from_millis(1)
}

/// How the scheduler wakes for its next deadline.
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// It has come: right after this turn.
    Now,
    /// By the actix timer, and by the alarm at this instant when it is
    /// usable.
    Later { alarm: Option<std::time::Instant> },
}

/// How to wake for a deadline `delay` away on tokio's clock, at `alarm_at`
/// on the alarm's (when the alarm is usable), it being `now` there. The
/// alarm's instant is checked against a fresh reading: one that passed
/// since `delay` was read would never ring, and only the actix timer would
/// wake the scheduler, at tokio's next tick, up to a millisecond late.
fn plan_wake(
    delay: Duration,
    alarm_at: Option<std::time::Instant>,
    now: std::time::Instant,
) -> Wake {
    match alarm_at {
        _ if delay.is_zero() => Wake::Now,
        Some(at) if at <= now => Wake::Now,
        alarm => Wake::Later { alarm },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_deadline_that_passed_since_it_was_read_is_due_now() {
        let now = Instant::now();
        let just_passed = now - Duration::from_micros(1);
        assert_eq!(
            plan_wake(Duration::from_micros(3), Some(just_passed), now),
            Wake::Now,
            "not left to tokio's next tick"
        );
        assert_eq!(plan_wake(Duration::ZERO, None, now), Wake::Now);
        let ahead = now + Duration::from_micros(50);
        assert_eq!(
            plan_wake(Duration::from_micros(50), Some(ahead), now),
            Wake::Later { alarm: Some(ahead) }
        );
        assert_eq!(
            plan_wake(Duration::from_micros(50), None, now),
            Wake::Later { alarm: None },
            "a paused test clock: the actix timer alone"
        );
    }

    #[test]
    fn the_next_wake_is_the_earliest_of_the_wheel_and_the_exact_waits() {
        let mut timers: Timers<u32> = Timers::new();
        assert_eq!(timers.next_wake(), None);
        assert!(!timers.is_waiting());
        let key = timers.insert(5, 1).expect("ahead");
        assert_eq!(timers.next_wake(), Some(5_000));
        timers.insert_exact(4_200, 1, 9);
        assert_eq!(timers.next_wake(), Some(4_200));
        assert_eq!(timers.pop_exact(4_199), None, "not before its microsecond");
        assert_eq!(timers.pop_exact(4_200), Some((1, 9)));
        timers.cancel(key);
        assert_eq!(timers.next_wake(), None);
        assert!(timers.insert(0, 2).is_none(), "a tick that passed");
    }

    #[test]
    fn a_poll_hands_back_what_is_due_with_its_key() {
        let mut timers: Timers<u32> = Timers::new();
        let early = timers.insert(3, 10).unwrap();
        timers.insert(9, 20).unwrap();
        let fired = timers.poll(5);
        assert_eq!(fired, vec![(early, 10)]);
        timers.recycle(fired);
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.poll(9).len(), 1);
    }
}
