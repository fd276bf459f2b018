//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "postgres")]
pub mod pg;

use std::sync::Arc;

use parking_lot::Mutex;

/// A log the handlers append to, to check order and timing.
#[derive(Clone)]
pub struct Trace<T>(pub Arc<Mutex<Vec<T>>>);

impl<T> Default for Trace<T> {
    fn default() -> Self {
        Trace(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T: Clone> Trace<T> {
    pub fn push(&self, item: T) {
        self.0.lock().push(item);
    }

    pub fn items(&self) -> Vec<T> {
        self.0.lock().clone()
    }
}

/// A paused tokio clock: timers fire as soon as the runtime is idle, at the
/// exact virtual time they were set for.
pub fn pause() {
    tokio::time::pause();
}
