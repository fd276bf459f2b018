//! The wake-up of new jobs, sent after their insert commits.
//!
//! A `NOTIFY` makes PostgreSQL serialize the commits of the transactions
//! that send one: each holds a database-wide lock from just before its
//! commit until it ends, so its wait for the WAL flush too. Creates that
//! notified inside their insert could therefore not share a flush (group
//! commit): with four clients inserting one job each, 660–1,190
//! inserts a second with the `NOTIFY` in the insert's statement against
//! 2,230–2,750 without it on this machine (`pgbench`), and at half of
//! the sustained workload's capacity the create call waited for the
//! commits of the others.
//!
//! So a create on kessel's own pool that starts while another of this
//! store's inserts is in flight inserts without it, and once the insert
//! committed sends the wake-up on its own, in a transaction that does not
//! wait for the disk (`synchronous_commit` off for it: a notification is
//! not data; if the server stops before it is flushed the listeners simply
//! do not hear it, and poll). Such creates share one: a wake-up sent
//! after a create committed covers it. A create with no other in flight
//! keeps the wake-up in its insert's statement: one round trip, where a
//! second would only add latency (a producer creating one job at a time
//! at 3,500 a second saw its create call's p99 go from 4.2 to 4.9 ms with
//! every wake-up sent apart).
//!
//! An insert inside a caller's transaction still notifies inside it: the
//! wake-up must be sent when that transaction commits, and never if it
//! rolls back.

use std::sync::atomic::{AtomicU64, Ordering};

use super::rows::map_err;
use super::Db;
use crate::store::StoreError;

/// Where the wake-up of new jobs is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    /// In the insert's own statement: on a caller's transaction it is
    /// delivered when that commits.
    WithInsert,
    /// By the caller once the insert committed ([`Db::wake_after_commit`]).
    AfterCommit,
}

/// A wake-up on its own: its transaction does not wait for the WAL flush.
pub(super) const WAKE_SQL: &str =
    "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')";

/// The wake-ups after commits, shared by the concurrent creates of one
/// store: each create takes a ticket once its insert committed; a
/// wake-up sent after a ticket was taken covers it.
#[derive(Debug, Default)]
pub(super) struct Wakes {
    /// Inserts of this store in flight (see [`Wakes::inserting`]).
    in_flight: AtomicU64,
    /// Tickets taken: inserts committed that want a wake-up.
    committed: AtomicU64,
    /// Every ticket up to this one is covered by a wake-up sent.
    sent: AtomicU64,
    /// One wake-up on the wire at a time; the others wait their turn and
    /// find themselves covered.
    turn: tokio::sync::Mutex<()>,
}

/// An insert in flight, and where its wake-up goes: with it when no
/// other insert of the store was in flight as it began, after its commit
/// otherwise.
#[derive(Debug)]
pub(super) struct Inserting<'a> {
    wakes: &'a Wakes,
    pub(super) wake: Wake,
}

impl Drop for Inserting<'_> {
    fn drop(&mut self) {
        self.wakes.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Wakes {
    /// An insert begins: where its wake-up goes (see [`Inserting`]).
    pub(super) fn inserting(&self) -> Inserting<'_> {
        let others = self.in_flight.fetch_add(1, Ordering::SeqCst);
        Inserting {
            wakes: self,
            wake: if others == 0 {
                Wake::WithInsert
            } else {
                Wake::AfterCommit
            },
        }
    }

    /// A ticket for an insert that just committed.
    fn take(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Whether a wake-up sent since `ticket` was taken covers it.
    fn covered(&self, ticket: u64) -> bool {
        self.sent.load(Ordering::SeqCst) >= ticket
    }

    /// Sends a wake-up with `send` for `ticket`, unless one sent after
    /// it was taken covers it; returns whether this call sent one.
    async fn wake<F, Fut>(&self, ticket: u64, send: F) -> Result<bool, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        if self.covered(ticket) {
            return Ok(false);
        }
        let _turn = self.turn.lock().await;
        if self.covered(ticket) {
            return Ok(false);
        }
        // Every ticket taken by now is of an insert committed before
        // this wake-up is sent.
        let upto = self.committed.load(Ordering::SeqCst);
        send().await?;
        self.sent.fetch_max(upto, Ordering::SeqCst);
        Ok(true)
    }
}

impl Db {
    /// Wakes the processes serving jobs whose insert just committed
    /// without a wake-up ([`Wake::AfterCommit`]). Never fails the create:
    /// the jobs are stored, and a process that does not hear of them
    /// finds them at its next poll.
    pub(super) async fn wake_after_commit(&self) {
        let wakes = &self.wakes;
        let ticket = wakes.take();
        let sent = wakes
            .wake(ticket, || async {
                sqlx::query(WAKE_SQL)
                    .bind(&self.sql.channel)
                    .execute(&self.pool)
                    .await
                    .map(drop)
                    .map_err(map_err)
            })
            .await;
        if let Err(err) = sent {
            tracing::warn!(error = %err, "the wake-up of new jobs failed: they start at the next poll");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_sent_after_a_commit_covers_it_and_concurrent_creates_share_one() {
        let wakes = Arc::new(Wakes::default());
        let sends = Arc::new(AtomicU64::new(0));
        let wake = |wakes: Arc<Wakes>, sends: Arc<AtomicU64>| async move {
            let ticket = wakes.take();
            wakes
                .wake(ticket, || async {
                    sends.fetch_add(1, Ordering::SeqCst);
                    // On the wire for a while: others commit meanwhile.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok(())
                })
                .await
                .unwrap()
        };
        // Alone: each create sends its own.
        assert!(wake(wakes.clone(), sends.clone()).await);
        assert!(wake(wakes.clone(), sends.clone()).await);
        assert_eq!(sends.load(Ordering::SeqCst), 2);
        // Ten at once: the first sends one; the nine that committed while
        // it was on the wire are not covered by it (it may have been read
        // before they committed), and share the one sent after it.
        let all: Vec<_> = (0..10)
            .map(|_| tokio::spawn(wake(wakes.clone(), sends.clone())))
            .collect();
        let mut sent = 0;
        for h in all {
            sent += usize::from(h.await.unwrap());
        }
        assert_eq!(sent, 1 + 1, "two wake-ups for ten creates");
        assert_eq!(sends.load(Ordering::SeqCst), 4);
        assert_eq!(
            wakes.sent.load(Ordering::SeqCst),
            12,
            "every ticket covered"
        );
    }

    #[test]
    fn an_insert_alone_wakes_with_itself_and_one_beside_others_after_its_commit() {
        let wakes = Wakes::default();
        let first = wakes.inserting();
        assert_eq!(first.wake, Wake::WithInsert, "alone: one round trip");
        let second = wakes.inserting();
        assert_eq!(second.wake, Wake::AfterCommit, "beside another");
        drop(first);
        let third = wakes.inserting();
        assert_eq!(
            third.wake,
            Wake::AfterCommit,
            "the second is still in flight"
        );
        drop((second, third));
        assert_eq!(wakes.inserting().wake, Wake::WithInsert, "alone again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ticket_taken_after_a_wake_up_was_read_is_not_covered_by_it() {
        let wakes = Wakes::default();
        let first = wakes.take();
        // The wake-up for `first` reads the tickets taken; a create
        // committing while it is on the wire takes a later one.
        let mut late = None;
        wakes
            .wake(first, || {
                late = Some(wakes.take());
                async { Ok(()) }
            })
            .await
            .unwrap();
        let late = late.expect("taken");
        assert!(wakes.covered(first));
        assert!(!wakes.covered(late), "sent before it committed");
    }
}
