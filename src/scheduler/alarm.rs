//! A precise wake-up call for the scheduler.
//!
//! tokio's timers count whole milliseconds and its driver sleeps in whole
//! milliseconds too, so a timer set for a given instant fires up to about
//! 2 ms after it. The scheduler keeps its tokio timer (it is what a paused
//! test clock drives) and also sets this alarm: a thread that sleeps until
//! the instant on the operating system's high-resolution timer and then
//! calls back, typically within a few tens of microseconds. Whichever comes
//! first wakes the scheduler; a wake-up with nothing due does nothing.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    at: Option<Instant>,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// A thread that calls `ring` when the instant it was set for comes.
/// Dropping the alarm stops the thread.
#[derive(Debug)]
pub(crate) struct Alarm {
    shared: Arc<Shared>,
}

impl Alarm {
    /// Starts the alarm's thread; `ring` runs on it.
    pub(crate) fn start(ring: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("kessel-alarm".into())
            .spawn(move || run(&theirs, ring))?;
        Ok(Alarm { shared })
    }

    /// Rings at `at` instead of whatever was set before.
    pub(crate) fn set(&self, at: Instant) {
        let mut state = self.shared.state.lock();
        if state.at != Some(at) {
            state.at = Some(at);
            self.shared.changed.notify_one();
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.changed.notify_one();
    }
}

fn run(shared: &Shared, ring: impl Fn()) {
    let mut state = shared.state.lock();
    loop {
        if state.stop {
            return;
        }
        match state.at {
            None => shared.changed.wait(&mut state),
            Some(at) if Instant::now() >= at => {
                state.at = None;
                drop(state);
                ring();
                state = shared.state.lock();
            }
            Some(at) => {
                shared.changed.wait_until(&mut state, at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn rings_at_the_instant_not_before() {
        let (tx, rx) = mpsc::channel();
        let alarm = Alarm::start(move || {
            let _ = tx.send(Instant::now());
        })
        .unwrap();
        let at = Instant::now() + Duration::from_millis(20);
        alarm.set(at);
        let rang = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(rang >= at);
    }

    #[test]
    fn a_new_instant_replaces_the_old_one() {
        let (tx, rx) = mpsc::channel();
        let alarm = Alarm::start(move || {
            let _ = tx.send(Instant::now());
        })
        .unwrap();
        let far = Instant::now() + Duration::from_secs(3600);
        alarm.set(far);
        let near = Instant::now() + Duration::from_millis(5);
        alarm.set(near);
        let rang = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(rang >= near && rang < far);
    }
}
