//! The bounded channel from the event bus to one stream subscriber.
//!
//! The scheduler emits events for hundreds of jobs in one turn, and a
//! subscriber reads them in its own. A general-purpose channel pays for
//! each event on both sides (a semaphore permit taken and given back, a
//! block list pushed and popped). Here the sender pushes onto a locked
//! deque, and the receiver swaps the whole deque out under one lock and
//! reads its copy without locking, so a turn's worth of events costs the
//! reader one lock, not one per event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
}

struct State<T> {
    queue: VecDeque<T>,
    /// The receiver's, while it waits on an empty queue.
    waker: Option<Waker>,
    /// The receiver was dropped.
    receiver_gone: bool,
    /// The sender was dropped: the receiver ends once the queue is empty.
    sender_gone: bool,
}

/// Why [`Sender::try_send`] did not deliver.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SendError {
    /// The receiver holds `capacity` undelivered items.
    Full,
    /// The receiver is gone.
    Closed,
}

/// A channel holding at most `capacity` (at least one) undelivered items.
pub(super) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waker: None,
            receiver_gone: false,
            sender_gone: false,
        }),
        capacity: capacity.max(1),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver {
            shared,
            taken: VecDeque::new(),
        },
    )
}

pub(super) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` unless the receiver is full or gone.
    pub(super) fn try_send(&self, item: T) -> Result<(), SendError> {
        let waker = {
            let mut state = self.shared.state.lock();
            if state.receiver_gone {
                return Err(SendError::Closed);
            }
            if state.queue.len() >= self.shared.capacity {
                return Err(SendError::Full);
            }
            state.queue.push_back(item);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.state.lock();
            state.sender_gone = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pub(super) struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Items taken from the shared queue, not yet handed out. They no
    /// longer count against the capacity: the buffer is what waits in the
    /// shared queue, and a reader drains what it took before taking more.
    taken: VecDeque<T>,
}

impl<T> Receiver<T> {
    /// The next item: `Ready(None)` once the sender is gone and all was read.
    pub(super) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(item) = self.taken.pop_front() {
            return Poll::Ready(Some(item));
        }
        let mut state = self.shared.state.lock();
        std::mem::swap(&mut state.queue, &mut self.taken);
        if let Some(item) = self.taken.pop_front() {
            return Poll::Ready(Some(item));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.receiver_gone = true;
        state.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    fn poll<T>(rx: &mut Receiver<T>) -> Poll<Option<T>> {
        let waker = noop_waker();
        rx.poll_recv(&mut Context::from_waker(&waker))
    }

    #[test]
    fn items_arrive_in_order_up_to_the_capacity() {
        let (tx, mut rx) = channel(3);
        for n in 0..3 {
            tx.try_send(n).unwrap();
        }
        assert_eq!(tx.try_send(3), Err(SendError::Full));
        assert_eq!(poll(&mut rx), Poll::Ready(Some(0)));
        // What the reader took no longer fills the buffer.
        tx.try_send(4).unwrap();
        assert_eq!(poll(&mut rx), Poll::Ready(Some(1)));
        assert_eq!(poll(&mut rx), Poll::Ready(Some(2)));
        assert_eq!(poll(&mut rx), Poll::Ready(Some(4)));
        assert_eq!(poll(&mut rx), Poll::Pending);
    }

    #[test]
    fn the_receiver_ends_after_the_sender_and_the_sender_sees_it_gone() {
        let (tx, mut rx) = channel(8);
        tx.try_send(1).unwrap();
        drop(tx);
        assert_eq!(poll(&mut rx), Poll::Ready(Some(1)));
        assert_eq!(poll(&mut rx), Poll::Ready(None));
        let (tx, rx) = channel::<u8>(8);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(SendError::Closed));
    }

    #[actix_rt::test]
    async fn a_waiting_receiver_is_woken_by_a_send() {
        let (tx, mut rx) = channel(8);
        let reader =
            actix_rt::spawn(async move { std::future::poll_fn(|cx| rx.poll_recv(cx)).await });
        actix_rt::task::yield_now().await;
        tx.try_send(7).unwrap();
        assert_eq!(reader.await.unwrap(), Some(7));
    }
}
