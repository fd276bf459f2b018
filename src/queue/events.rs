//! Subscribing to the queue's events: streams, actors, and the count of
//! events dropped for subscribers that lagged.

use actix::Recipient;

use super::Queue;
use crate::event::{Event, EventStream, Filter, Subscription};

impl Queue {
    /// A stream of the events `filter` selects, buffering up to
    /// [`DEFAULT_BUFFER`](crate::event::DEFAULT_BUFFER) of them.
    ///
    /// On PostgreSQL the stream carries the job events of every process on
    /// the schema (each [`JobEvent::node`](crate::event::JobEvent::node)
    /// says where it happened), in the same order in every process, and
    /// the queue events of the others as [`Event::Remote`]. Events that
    /// can no longer be had (the shared event log was pruned while this
    /// process was away) arrive as [`Event::Lagged`]; see
    /// `docs/events.md`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use futures::StreamExt;
    /// use kessel::event::{Event, Filter};
    ///
    /// let queue = kessel::Queue::new();
    /// let mut events = queue.events(Filter::Task("resize".into()));
    /// let job = queue.create("resize", 640).await?;
    /// let Some(Event::Job(created)) = events.next().await else { panic!() };
    /// assert_eq!((created.id, created.kind.name()), (job.id(), "created"));
    /// # Ok(()) }
    /// ```
    pub fn events(&self, filter: Filter) -> EventStream {
        self.inner.bus.stream(filter, crate::event::DEFAULT_BUFFER)
    }

    /// Like [`Queue::events`] with a chosen buffer size.
    pub fn events_with_buffer(&self, filter: Filter, buffer: usize) -> EventStream {
        self.inner.bus.stream(filter, buffer)
    }

    /// Sends the events `filter` selects to an actix actor. The actor's
    /// mailbox is the buffer: when it is full, events are dropped for it and
    /// counted, and it gets [`Event::Lagged`] once it has room.
    pub fn subscribe(&self, filter: Filter, recipient: Recipient<Event>) -> Subscription {
        self.inner.bus.recipient(filter, recipient)
    }

    /// How many events were dropped because subscribers lagged.
    pub fn events_missed(&self) -> u64 {
        self.inner.bus.missed()
    }
}
