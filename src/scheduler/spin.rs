//! A short, bounded spin after a thread hands work to another thread and
//! expects an answer soon.
//!
//! The scheduler sends a worker thread the jobs it starts and the worker
//! thread reports the runs that ended; with handlers that finish quickly
//! the two threads answer each other thousands of times a second. A
//! thread that parks between those answers must be woken by the other
//! (a system call for the waker, and the kernel's wake-up latency for the
//! sleeper: tens of microseconds on a virtual machine), which then bounds
//! the whole queue's throughput. So after it hands work away, a thread
//! stays awake for [`SPIN_FOR`] of real time, polling its mailbox, before
//! it parks, as tokio's and Go's schedulers spin a little before parking.
//!
//! The spin adapts: one that ends with nothing having arrived backs off
//! for the next hand-over, two in a row for the next two, and so on up to
//! [`BACK_OFF`]; one answered in time spins again next time. So a queue
//! whose handlers take milliseconds (where the answer never comes within
//! the spin) spends at most one spin in [`BACK_OFF`] + 1 hand-overs, and
//! a busy one that missed an answer once (its thread preempted) is back to
//! spinning at once.
//!
//! Real time (`std::time::Instant`), never tokio's clock: under a paused
//! test clock the spin still ends.

use std::time::{Duration, Instant};

/// How long a thread stays awake for an answer after handing work away.
pub(crate) const SPIN_FOR: Duration = Duration::from_micros(50);

/// The most hand-overs that go without a spin after spins in vain.
pub(crate) const BACK_OFF: u32 = 64;

/// When a thread should stay awake: see the module's docs.
#[derive(Debug, Default)]
pub(crate) struct Spinner {
    /// While spinning: when the spin ends.
    until: Option<Instant>,
    /// Hand-overs left to go without a spin.
    skip: u32,
    /// Spins in vain in a row.
    misses: u32,
}

impl Spinner {
    /// Work went to another thread at `now`: spin, unless backing off.
    /// Returns whether a spin began (it was not spinning before).
    pub(crate) fn handed_over(&mut self, now: Instant) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        let began = self.until.is_none();
        self.until = Some(now + SPIN_FOR);
        began
    }

    /// The answer arrived: the spin paid, and ends.
    pub(crate) fn answered(&mut self) {
        if self.until.take().is_some() {
            self.misses = 0;
        }
    }

    /// Whether to stay awake at `now`, with nothing else to do. A spin
    /// that ran out without an answer backs off.
    pub(crate) fn keep_awake(&mut self, now: Instant) -> bool {
        match self.until {
            Some(until) if now < until => true,
            Some(_) => {
                self.until = None;
                self.skip = (1u32 << self.misses.min(6)).min(BACK_OFF);
                self.misses += 1;
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_lasts_until_its_time_or_its_answer() {
        let t = Instant::now();
        let mut s = Spinner::default();
        assert!(!s.keep_awake(t), "idle until work is handed over");
        assert!(s.handed_over(t));
        assert!(s.keep_awake(t + SPIN_FOR / 2));
        s.answered();
        assert!(!s.keep_awake(t + SPIN_FOR / 2), "an answer ends the spin");
        assert!(s.handed_over(t), "a spin that paid does not back off");
        assert!(!s.handed_over(t), "already spinning: not a new spin");
        assert!(s.keep_awake(t + SPIN_FOR - Duration::from_micros(1)));
        assert!(!s.keep_awake(t + SPIN_FOR));
    }

    /// Misses the spin, then counts the hand-overs that go without one.
    fn skipped_after_a_miss(s: &mut Spinner, t: Instant) -> u32 {
        assert!(s.handed_over(t));
        assert!(!s.keep_awake(t + SPIN_FOR), "ran out");
        let mut skipped = 0;
        while !s.handed_over(t) {
            assert!(!s.keep_awake(t), "no spin while backing off");
            skipped += 1;
        }
        s.until = None;
        skipped
    }

    #[test]
    fn spins_in_vain_back_off_longer_each_time_up_to_a_bound() {
        let t = Instant::now();
        let mut s = Spinner::default();
        let skipped: Vec<u32> = (0..9).map(|_| skipped_after_a_miss(&mut s, t)).collect();
        assert_eq!(skipped, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
    }

    #[test]
    fn an_answered_spin_ends_the_back_off() {
        let t = Instant::now();
        let mut s = Spinner::default();
        for _ in 0..5 {
            skipped_after_a_miss(&mut s, t);
        }
        assert!(s.handed_over(t));
        s.answered();
        assert_eq!(skipped_after_a_miss(&mut s, t), 1, "back to the shortest");
    }
}
