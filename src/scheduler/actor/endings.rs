//! How runs and jobs end: a worker's report applied to its job (completed,
//! failed and retried or buried, snoozed), a job made final, and the
//! signal (a cancel or a timeout) that asks a running job to stop, with
//! its grace period.

use super::*;

impl Scheduler {
    /// Removes a job for good: records its final state, emits its final
    /// event and answers waiters.
    pub(super) fn finalize(
        &mut self,
        slot: u32,
        status: JobStatus,
        value: Option<serde_json::Value>,
        message: Option<String>,
        logs: Vec<LogLine>,
    ) {
        debug_assert!(status.is_final());
        self.clear_timer(slot);
        let Some(mut e) = self.jobs.remove(slot) else {
            return;
        };
        if let Some(run) = e.run.take() {
            self.recycle(run);
        }
        if status == JobStatus::Buried {
            let finished_at = self.now_utc();
            self.post_dead_letter(&e, message.as_deref(), finished_at);
        }
        // Two `Option` checks per finished job when neither it nor its
        // task has a callback.
        #[cfg(feature = "webhooks")]
        if let Some(target) = self.callback_target(&e) {
            let finished_at = self.now_utc();
            self.post_callback(
                &e,
                &target,
                status,
                value.as_ref(),
                message.as_deref(),
                finished_at,
            );
        }
        // The event, when someone listens or records it.
        let kind = (self.bus.is_active() || self.observed()).then(|| match status {
            JobStatus::Completed => JobEventKind::Completed {
                value: value.clone(),
            },
            JobStatus::Buried => JobEventKind::Buried {
                message: message.clone().unwrap_or_default(),
            },
            JobStatus::Expired => JobEventKind::Expired,
            _ => JobEventKind::Cancelled,
        });
        let finished_at = self.now_utc();
        let end = Ending {
            status,
            value,
            message,
            at: finished_at,
        };
        let wants_result =
            !self.result_waiters.is_empty() && self.result_waiters.contains_key(&e.job.id);
        let task = e.task;
        let ended = self.keeper.ended(
            e,
            &self.routes.tasks[task as usize].name,
            end,
            logs,
            wants_result,
            &mut self.journal,
            &mut self.pruning,
        );
        if let Some(kind) = kind {
            self.emit(ended.id, task, ended.attempts, kind);
        }
        if let Some(result) = ended.result {
            if let Some(waiters) = self.result_waiters.remove(&ended.id) {
                self.journal.wait(Waiter::Result(waiters, result));
            }
        }
    }

    /// A transient failure: retry after backoff, or bury when out of attempts.
    pub(super) fn fail_transient(
        &mut self,
        slot: u32,
        message: String,
        retry_after: Option<Duration>,
        now: u64,
        logs: Vec<LogLine>,
    ) {
        self.fail_transient_since(slot, message, retry_after, now, logs, None);
    }

    /// [`Self::fail_transient`], the backoff counted from `since` (when
    /// the attempt was stopped) rather than from now.
    pub(super) fn fail_transient_since(
        &mut self,
        slot: u32,
        message: String,
        retry_after: Option<Duration>,
        now: u64,
        mut logs: Vec<LogLine>,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let Some(e) = self.jobs.get(slot) else { return };
        let def = self.routes.tasks[e.task as usize].def.clone();
        let attempts = e.job.attempts;
        let decision = lifecycle::after_failure(
            &message,
            attempts,
            e.job.max_attempts(),
            def.as_ref().map(|d| &d.retry),
            retry_after,
            fastrand::f64(),
            since.unwrap_or_else(|| self.now_utc()),
        );
        let (delay, run_at) = match decision {
            AfterFailure::Bury { message } => {
                self.finalize(slot, JobStatus::Buried, None, Some(message), logs);
                return;
            }
            AfterFailure::Retry { delay, run_at } => (delay, run_at),
        };
        logs.push(self.line(
            attempts,
            format!("failed: {message}; retrying in {delay:?}"),
        ));
        self.jobs.set_status(slot, JobStatus::Retrying);
        let Some(e) = self.jobs.get_mut(slot) else {
            return;
        };
        e.job.set_run_at(run_at);
        e.job.set_last_error(Some(message));
        e.state = State::Waiting;
        let run = e.run.take();
        self.record(slot, logs);
        if let Some(run) = run {
            self.recycle(run);
        }
        self.emit_slot(slot, JobEventKind::Retrying { run_at });
        if self.is_shared() {
            // Back to the store: whichever process is free when it is due runs it.
            self.release(slot);
            return;
        }
        if self.has_come(run_at) || !self.wait_until(slot, run_at, now) {
            self.make_ready(slot, now);
        }
    }

    /// A snoozed run: the job waits `delay` as scheduled, and the attempt
    /// it just made does not count.
    pub(super) fn snooze(
        &mut self,
        slot: u32,
        delay: Duration,
        reason: String,
        now: u64,
        mut logs: Vec<LogLine>,
    ) {
        let run_at = crate::time::saturating_after(self.now_utc(), delay);
        let Some(e) = self.jobs.get(slot) else { return };
        let attempt = e.job.attempts;
        logs.push(self.line(
            attempt,
            if reason.is_empty() {
                format!("snoozed for {delay:?}")
            } else {
                format!("snoozed for {delay:?}: {reason}")
            },
        ));
        self.jobs.set_status(slot, JobStatus::Scheduled);
        let Some(e) = self.jobs.get_mut(slot) else {
            return;
        };
        e.job.attempts = e.job.attempts.saturating_sub(1);
        e.job.set_run_at(run_at);
        e.state = State::Waiting;
        let run = e.run.take();
        self.record(slot, logs);
        if let Some(run) = run {
            self.recycle(run);
        }
        self.emit_slot(slot, JobEventKind::Scheduled { run_at });
        if self.is_shared() {
            // Back to the store: whichever process is free when it is due runs it.
            self.release(slot);
            return;
        }
        if self.has_come(run_at) || !self.wait_until(slot, run_at, now) {
            self.make_ready(slot, now);
        }
    }

    /// Keeps a finished run's shared state for the next run, when nothing
    /// else holds it (a handler may keep its context past the run).
    pub(super) fn on_report(&mut self, worker: usize, report: Report, now: u64) {
        self.flow_run_ended(report.task, report.slot);
        if let Some(w) = self.workers.get_mut(worker) {
            w.in_flight = w.in_flight.saturating_sub(1);
            if let Some(b) = w.batch.as_mut() {
                b.ran += 1;
            }
        }
        let Some(e) = self.jobs.get_mut(report.slot) else {
            return;
        };
        if e.job.attempts != report.attempt {
            return;
        }
        let mut journal = report.journal;
        if e.state
            == (State::Stopping {
                worker: worker as u32,
            })
        {
            // Signalled, and the run ended within its grace period: what
            // it returned and logged is recorded with the decision.
            if journal.progress.is_some() {
                e.job.set_progress(journal.progress);
            }
            if let Some(d) = self.draining.as_mut() {
                d.finished += 1;
            }
            let logs = journal.take_logs();
            self.resolve_stop(report.slot, Some(report.outcome), logs, now);
            return;
        }
        if e.state
            != (State::Running {
                worker: worker as u32,
            })
        {
            // Cancelled or timed out earlier and already decided: keep what
            // the run wrote, if the job is still here.
            let logs = journal.take_logs();
            if !logs.is_empty() || journal.progress.is_some() {
                if journal.progress.is_some() {
                    e.job.set_progress(journal.progress);
                }
                self.record(report.slot, logs);
            }
            return;
        }
        if journal.progress.is_some() {
            e.job.set_progress(journal.progress);
        }
        if let Some(d) = self.draining.as_mut() {
            d.finished += 1;
        }
        // A completed job kept nowhere drops its lines: none are made.
        let logs = match report.outcome {
            Outcome::Completed(_) if !self.keeper.keeps(JobStatus::Completed) => Vec::new(),
            _ => journal.take_logs(),
        };
        if self.observed() {
            if let Some(e) = self.jobs.get(report.slot) {
                self.observe_run_ended(report.slot, e.task);
            }
        }
        match report.outcome {
            Outcome::Completed(value) => {
                self.finalize(report.slot, JobStatus::Completed, value, None, logs)
            }
            Outcome::Failed(JobError {
                kind: JobErrorKind::Snooze(delay),
                message,
            }) => self.snooze(report.slot, delay, message, now, logs),
            Outcome::Failed(err) => {
                self.emit_slot(
                    report.slot,
                    JobEventKind::Failed {
                        message: err.message.clone(),
                    },
                );
                match err.kind {
                    JobErrorKind::Fatal => self.finalize(
                        report.slot,
                        JobStatus::Buried,
                        None,
                        Some(err.message),
                        logs,
                    ),
                    JobErrorKind::Transient => {
                        self.fail_transient(report.slot, err.message, None, now, logs)
                    }
                    JobErrorKind::RetryAfter(d) => {
                        self.fail_transient(report.slot, err.message, Some(d), now, logs)
                    }
                    JobErrorKind::Snooze(_) => unreachable!("matched above"),
                }
            }
            Outcome::Panicked(msg) => {
                let message = format!("the handler panicked: {msg}");
                self.emit_slot(
                    report.slot,
                    JobEventKind::Failed {
                        message: message.clone(),
                    },
                );
                self.fail_transient(report.slot, message, None, now, logs)
            }
            Outcome::Aborted => {
                // Only the scheduler fires the signal, and it decides first.
                tracing::debug!(
                    slot = report.slot,
                    "aborted run reported without a decision"
                );
            }
        }
    }

    /// Ends a running attempt here rather than by the worker's report (a
    /// cancel, a timeout, an abort): fires its cancellation signal and
    /// returns what it logged so far, to record before the line that ends
    /// it. What it logs afterwards arrives with its report.
    pub(super) fn end_run(&mut self, slot: u32) -> Vec<LogLine> {
        let Some(run) = self.jobs.get_mut(slot).and_then(|e| e.run.take()) else {
            return Vec::new();
        };
        run.cancel();
        let logs = run.journal.lock().take_logs();
        logs
    }

    /// Cancels a pending job: a running one is signalled and decided when
    /// its run ends (see [`Stopping`]), any other is cancelled at once.
    pub(super) fn cancel_slot(&mut self, slot: u32, now: u64) {
        let Some(e) = self.jobs.get(slot) else { return };
        match e.state {
            State::Running { .. } => self.signal_stop(slot, StopReason::Cancel, now),
            State::Stopping { .. } => {
                // Timed out and stopping: the cancel decides instead.
                if let Some(stop) = self.stopping.get_mut(&slot) {
                    stop.reason = StopReason::Cancel;
                }
            }
            State::Waiting | State::Ready => {
                let logs = self.end_run(slot);
                self.finalize(
                    slot,
                    JobStatus::Cancelled,
                    None,
                    Some("cancelled".into()),
                    logs,
                );
            }
        }
    }

    /// Fires a running job's signal (a cancel or a timeout) and gives its
    /// handler its task's grace period to stop: the job is decided when
    /// the run ends, or when the grace period does, whichever comes first.
    pub(super) fn signal_stop(&mut self, slot: u32, reason: StopReason, now: u64) {
        let Some(e) = self.jobs.get_mut(slot) else {
            return;
        };
        let State::Running { worker } = e.state else {
            return;
        };
        e.state = State::Stopping { worker };
        let grace = self.routes.tasks[e.task as usize]
            .def
            .as_ref()
            .map_or(Duration::ZERO, |d| d.grace);
        let logs = self.end_run(slot);
        self.stopping.insert(
            slot,
            Stopping {
                reason,
                signalled_at: self.now_utc(),
                logs,
            },
        );
        // The worker drops the run at the end of its grace period and
        // reports it with what it logged; this timer, a little later,
        // decides without the report when the worker's thread is blocked.
        let grace_ms = u64::try_from((grace + GRACE_MARGIN).as_millis()).unwrap_or(u64::MAX);
        if grace.is_zero()
            || !self.set_timer(slot, now.saturating_add(grace_ms), TimerKind::Grace, now)
        {
            self.resolve_stop(slot, None, Vec::new(), now);
        }
    }

    /// Decides a signalled job: its run ended with `ended` (and logged
    /// `logs` since the signal), or `None` when its grace period ended
    /// first. A timed-out job is retried (backoff from the signal) or
    /// buried; a cancelled one is cancelled. What the handler returned
    /// goes into the message.
    pub(super) fn resolve_stop(
        &mut self,
        slot: u32,
        ended: Option<Outcome>,
        mut logs: Vec<LogLine>,
        now: u64,
    ) {
        let Some(stop) = self.stopping.remove(&slot) else {
            return;
        };
        self.clear_timer(slot);
        let mut all = stop.logs;
        all.append(&mut logs);
        match lifecycle::after_stop(stop.reason, ended) {
            AfterStop::Fail { message } => {
                self.fail_transient_since(slot, message, None, now, all, Some(stop.signalled_at));
            }
            AfterStop::Cancel { message, value } => {
                self.finalize(slot, JobStatus::Cancelled, value, Some(message), all);
            }
        }
    }
}
