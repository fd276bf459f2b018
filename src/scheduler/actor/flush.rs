//! Flushing: the journal's batches of state changes sent to the store, one
//! at a time, and the store calls made from the scheduler's turn.

use super::*;

impl Scheduler {
    /// Sends the queued state changes to the store. On a single-process
    /// store a small batch waits up to [`FLUSH_DELAY`] for more, so a job
    /// that starts and finishes within it costs the store one update, not
    /// two; a reader waiting on a barrier, a full batch or a drain send at
    /// once, and a shared store is always written at once.
    pub(super) fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.journal.is_busy() {
            return;
        }
        // On a shared store other processes read what is written (a
        // rescuer counts an attempt only if its start was recorded): no
        // waiting there.
        let urgent = self.shared.is_some()
            || self.journal.has_waiters()
            || self.journal.len() >= self.flush_batch()
            || self.draining.is_some();
        if !urgent && !self.journal.is_empty() {
            if self.journal.soon.is_none() {
                self.journal.soon = Some(ctx.run_later(FLUSH_DELAY, |act, ctx| {
                    act.journal.soon = None;
                    act.flush_now(ctx);
                }));
            }
            return;
        }
        self.flush_now(ctx);
    }

    /// A batch this large goes to the store without waiting.
    pub(super) fn flush_batch(&self) -> usize {
        self.keeper.flush_batch(self.timers.is_waiting())
    }

    /// Sends the journal's next batch to the store now.
    pub(super) fn flush_now(&mut self, ctx: &mut Context<Self>) {
        if self.journal.is_busy() {
            return;
        }
        if let Some(handle) = self.journal.soon.take() {
            ctx.cancel_future(handle);
        }
        let releases = self
            .shared
            .as_mut()
            .map(|m| std::mem::take(&mut m.releases))
            .unwrap_or_default();
        if releases.is_empty() && self.journal.answer_if_empty() {
            return;
        }
        let batch = self.journal.take_batch(FLUSH_BATCH);
        let store = self.store.clone();
        let owner = self.shared.as_ref().map(|m| m.owner);
        let fut = async move {
            let mut batch = batch;
            // The jobs the changes made (dead letters) in the same write
            // as the changes: one transaction on kessel's durable stores.
            let mut result = match (batch.updates.is_empty(), batch.inserts.is_empty()) {
                (true, true) => Ok(()),
                (false, true) => store.jobs_update(&batch.updates).await,
                _ => store.jobs_write(&batch.updates, &batch.inserts).await,
            };
            // After the updates: a kicked job's update must not overwrite
            // how it ended.
            if result.is_ok() && !batch.final_records.is_empty() {
                result = match store
                    .jobs_insert_owned(std::mem::take(&mut batch.final_records))
                    .await
                {
                    Ok(()) => Ok(()),
                    Err((err, back)) => {
                        batch.final_records = back;
                        Err(err)
                    }
                };
            }
            if let (Ok(()), Some(owner), Some(shared)) = (&result, owner, store.shared()) {
                if !releases.is_empty() {
                    result = shared.jobs_release(owner, &releases).await;
                }
            }
            (result, batch, releases)
        };
        ctx.spawn(self.store_call(fut).into_actor(self).map(move |done, act, ctx| {
            let Some((result, batch, releases)) = done else {
                act.journal.batch_lost();
                return;
            };
            match result {
                Ok(()) => {
                    act.journal.batch_stored();
                    let admitted = act.admit_stored(batch.inserts);
                    if !releases.is_empty() {
                        // What was given back may be due soon: look now
                        // rather than wait for the notification to come round.
                        act.want_claim(ctx);
                    }
                    // Once the jobs that completed are stored, they
                    // count: prune now if enough of them came.
                    if act.pruning.due() {
                        act.prune(ctx);
                    }
                    if admitted {
                        // Dead letters held now may be ready to run.
                        act.finish_turn(ctx);
                    } else {
                        act.flush(ctx);
                        act.check_drained(ctx);
                    }
                }
                Err(err) => {
                    let count = batch.len();
                    tracing::error!(error = %err, changes = count, "recording job state failed; retrying");
                    act.bus.queue(QueueEvent::Error {
                        message: format!("recording {count} job state changes failed, will retry: {err}"),
                    });
                    if let Some(mode) = act.shared.as_mut() {
                        let mut again = releases;
                        again.append(&mut mode.releases);
                        mode.releases = again;
                    }
                    let wait = act.journal.batch_failed(batch, &err);
                    ctx.run_later(wait, |act, ctx| {
                        act.journal.retry_now();
                        act.flush_now(ctx);
                    });
                }
            }
        }));
    }

    /// The one seam every store call of the scheduler goes through, as a
    /// future of its actor. (`None` is kept for a call whose task a runtime
    /// dropped; a store that runs its calls elsewhere, as PostgreSQL does
    /// on its own runtime, handles that itself.)
    pub(super) fn store_call<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<T>>>> {
        Box::pin(async move { Some(fut.await) })
    }
}
