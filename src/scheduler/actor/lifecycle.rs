//! The lifecycle's decisions, apart from the state they act on: what
//! becomes of a job whose attempt failed, and of one whose run was
//! signalled to stop. Each is a pure function of the job's numbers, its
//! task's policy and the time, returning the decision; the scheduler
//! applies it (moves the job, writes the journal, emits the event), so
//! the rules can be read, and tested, in one place.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::table::StopReason;
use crate::scheduler::worker::Outcome;
use crate::task::RetryPolicy;

/// What becomes of a job after a transient failure.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AfterFailure {
    /// No attempts left: buried with this message.
    Bury { message: String },
    /// Runs again at `run_at`, `delay` after the failure.
    Retry {
        delay: Duration,
        run_at: DateTime<Utc>,
    },
}

/// Decides a transient failure of attempt `attempts` (counted from 1).
///
/// The job's own `max_attempts` wins over its task's policy; a job with
/// neither gets one attempt. The delay is `retry_after` when the handler
/// named one, else the policy's backoff for this attempt with `jitter`
/// (0.0 to 1.0), counted from `since` (when the attempt failed, or when
/// its signal fired).
pub(super) fn after_failure(
    message: &str,
    attempts: u32,
    job_max_attempts: Option<u32>,
    policy: Option<&RetryPolicy>,
    retry_after: Option<Duration>,
    jitter: f64,
    since: DateTime<Utc>,
) -> AfterFailure {
    let max = job_max_attempts
        .or_else(|| policy.map(|p| p.max_attempts))
        .unwrap_or(1);
    if attempts >= max {
        return AfterFailure::Bury {
            message: format!("{message} (attempt {attempts} of {max}, no attempts left)"),
        };
    }
    let delay = retry_after.unwrap_or_else(|| {
        policy
            .map(|p| p.backoff_jittered(attempts, jitter))
            .unwrap_or_default()
    });
    AfterFailure::Retry {
        delay,
        run_at: crate::time::saturating_after(since, delay),
    }
}

/// What a signalled run's end decides.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AfterStop {
    /// Timed out: fails transiently with this message (retried or buried
    /// by [`after_failure`]).
    Fail { message: String },
    /// Cancelled, with this message and what the handler returned.
    Cancel {
        message: String,
        value: Option<serde_json::Value>,
    },
}

/// Decides a run signalled for `reason` that ended with `ended`, or
/// `None` when its grace period ended first. What the handler said on its
/// way out goes into the message.
pub(super) fn after_stop(reason: StopReason, ended: Option<Outcome>) -> AfterStop {
    let (said, value) = match ended {
        Some(Outcome::Completed(value)) => (None, value),
        Some(Outcome::Failed(err)) => (Some(err.message), None),
        Some(Outcome::Panicked(m)) => (Some(format!("the handler panicked: {m}")), None),
        Some(Outcome::Aborted) | None => (None, None),
    };
    match reason {
        StopReason::Timeout { after } => AfterStop::Fail {
            message: match said {
                Some(m) => format!("timed out after {after:?}: {m}"),
                None => format!("timed out after {after:?}"),
            },
        },
        StopReason::Cancel => AfterStop::Cancel {
            message: match said {
                Some(m) => format!("cancelled: {m}"),
                None => "cancelled".to_owned(),
            },
            value,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobError;
    use proptest::prelude::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn a_job_without_a_policy_gets_one_attempt() {
        let d = after_failure("boom", 1, None, None, None, 0.0, at(0));
        assert_eq!(
            d,
            AfterFailure::Bury {
                message: "boom (attempt 1 of 1, no attempts left)".into()
            }
        );
    }

    #[test]
    fn the_jobs_own_limit_wins_over_its_tasks() {
        let policy = RetryPolicy::exponential(5).jitter(0.0);
        assert!(matches!(
            after_failure("x", 2, Some(2), Some(&policy), None, 0.0, at(0)),
            AfterFailure::Bury { .. }
        ));
        assert!(matches!(
            after_failure("x", 2, None, Some(&policy), None, 0.0, at(0)),
            AfterFailure::Retry { .. }
        ));
    }

    #[test]
    fn a_named_retry_delay_counts_from_the_failure() {
        let policy = RetryPolicy::exponential(3);
        let d = after_failure(
            "x",
            1,
            None,
            Some(&policy),
            Some(Duration::from_secs(7)),
            0.5,
            at(100),
        );
        assert_eq!(
            d,
            AfterFailure::Retry {
                delay: Duration::from_secs(7),
                run_at: at(107)
            }
        );
    }

    #[test]
    fn a_timed_out_run_says_what_its_handler_said() {
        let after = Duration::from_millis(500);
        let ended = Some(Outcome::Failed(JobError::transient("stopped early")));
        assert_eq!(
            after_stop(StopReason::Timeout { after }, ended),
            AfterStop::Fail {
                message: "timed out after 500ms: stopped early".into()
            }
        );
        assert_eq!(
            after_stop(StopReason::Timeout { after }, None),
            AfterStop::Fail {
                message: "timed out after 500ms".into()
            }
        );
    }

    #[test]
    fn a_cancelled_run_keeps_what_it_returned() {
        let value = Some(serde_json::json!({"partial": 3}));
        assert_eq!(
            after_stop(StopReason::Cancel, Some(Outcome::Completed(value.clone()))),
            AfterStop::Cancel {
                message: "cancelled".into(),
                value
            }
        );
    }

    proptest! {
        /// Never more attempts than allowed, never a retry before the
        /// failure, whatever the numbers.
        #[test]
        fn a_failure_never_retries_past_the_limit_or_into_the_past(
            attempts in 1u32..20,
            job_max in proptest::option::of(1u32..20),
            task_max in proptest::option::of(1u32..20),
            retry_after_ms in proptest::option::of(0u64..10_000_000_000),
            jitter in 0.0f64..=1.0,
            since in 0i64..250_000_000_000,
        ) {
            let policy = task_max.map(RetryPolicy::exponential);
            let since = at(since);
            let d = after_failure(
                "x",
                attempts,
                job_max,
                policy.as_ref(),
                retry_after_ms.map(Duration::from_millis),
                jitter,
                since,
            );
            let max = job_max.or(task_max).unwrap_or(1);
            match d {
                AfterFailure::Bury { message } => {
                    prop_assert!(attempts >= max);
                    prop_assert!(message.contains("no attempts left"), "{}", message);
                }
                AfterFailure::Retry { run_at, .. } => {
                    prop_assert!(attempts < max);
                    prop_assert!(run_at >= since);
                }
            }
        }
    }
}
