//! Arbitrary input through the public API against a SQLite queue: every
//! call gives a typed error or a documented acceptance, never a panic, and
//! the file opens again afterwards into a queue that starts and answers.
//!
//! `tests/engine/validation.rs` already drives delays, expiries and start
//! times (as whole seconds) through an in-memory queue. This adds what
//! it does not reach: duration strings, sub-second and extreme
//! `Duration`s, times to the nanosecond, priorities, payload shapes, task
//! names, references, job ids, retention and clean ages, `run_jobs`
//! limits, and several options on one job; on SQLite, with the store
//! reopened after every case, so a value that stores but cannot be loaded
//! again (a poison row) fails the case.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kessel::{Clean, Error, JobId, JobStatus, Queue, Retention, TaskPayload};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// The last time kessel accepts for a job (see `NewJob::run_at`).
fn latest() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[derive(Debug, Clone)]
enum Span {
    Text(String),
    Std(Duration),
    Chrono(chrono::Duration),
}

fn span() -> impl Strategy<Value = Span> {
    prop_oneof![
        // Shaped like kessel's strings, and anything at all.
        "[0-9]{0,22} ?(ms|s|m|h|d|x|)".prop_map(Span::Text),
        ".{0,12}".prop_map(Span::Text),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Span::Std(Duration::new(s, n))),
        (0u64..10_000_000_000).prop_map(|ms| Span::Std(Duration::from_millis(ms))),
        Just(Span::Std(Duration::MAX)),
        Just(Span::Std(Duration::ZERO)),
        any::<i64>().prop_map(|ms| Span::Chrono(
            chrono::Duration::try_milliseconds(ms).unwrap_or(chrono::Duration::MAX)
        )),
        Just(Span::Chrono(chrono::Duration::MIN)),
    ]
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        Just(DateTime::<Utc>::MAX_UTC),
        Just(DateTime::<Utc>::MIN_UTC),
        Just(DateTime::<Utc>::UNIX_EPOCH),
        Just(latest()),
        (any::<i64>(), 0u32..1_000_000_000).prop_map(|(s, n)| {
            DateTime::<Utc>::from_timestamp(s % 400_000_000_000, n)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        }),
        // Around now, to the nanosecond (before 1677 or after 2262 a
        // nanosecond count overflows an i64).
        (-4_000_000_000i64..12_000_000_000, 0u32..1_000_000_000)
            .prop_map(|(s, n)| DateTime::<Utc>::from_timestamp(s, n).unwrap()),
    ]
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities are null
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        Just("a:b".to_owned()),
        Just("\0".to_owned()),
        Just("x".repeat(10_000)),
        any::<String>(),
        "\\PC{1,16}",
    ]
}

/// One call on the public API.
#[derive(Debug, Clone)]
enum Call {
    Delay(Span),
    ExpiresIn(Span),
    RunAt(DateTime<Utc>),
    ExpiresAt(DateTime<Utc>),
    /// Every option on one job.
    Job {
        task: String,
        payload: serde_json::Value,
        priority: i64,
        reference: String,
        max_attempts: u32,
        delay: Span,
        expires_in: Span,
    },
    Typed(Span, i64),
    Many(Vec<(String, serde_json::Value)>),
    Id(String),
    Clean(Span),
    RunJobs(Span),
    Define {
        task: String,
        tag: String,
        timeout: Span,
        grace: Span,
    },
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        span().prop_map(Call::Delay),
        span().prop_map(Call::ExpiresIn),
        time().prop_map(Call::RunAt),
        time().prop_map(Call::ExpiresAt),
        (
            name(),
            json(),
            any::<i64>(),
            name(),
            any::<u32>(),
            span(),
            span()
        )
            .prop_map(
                |(task, payload, priority, reference, max_attempts, delay, expires_in)| Call::Job {
                    task,
                    payload,
                    priority,
                    reference,
                    max_attempts,
                    delay,
                    expires_in,
                }
            ),
        (span(), any::<i64>()).prop_map(|(s, p)| Call::Typed(s, p)),
        prop::collection::vec((name(), json()), 0..5).prop_map(Call::Many),
        prop_oneof![
            any::<String>(),
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ]
        .prop_map(Call::Id),
        span().prop_map(Call::Clean),
        span().prop_map(Call::RunJobs),
        (name(), name(), span(), span()).prop_map(|(task, tag, timeout, grace)| Call::Define {
            task,
            tag,
            timeout,
            grace
        }),
    ]
}

fn retention() -> impl Strategy<Value = Retention> {
    let age = prop_oneof![
        Just(None),
        Just(Some(Duration::MAX)),
        Just(Some(Duration::ZERO)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Some(Duration::new(s, n))),
    ];
    let count = prop_oneof![
        Just(None),
        Just(Some(0)),
        Just(Some(usize::MAX)),
        any::<usize>().prop_map(Some)
    ];
    let interval = prop_oneof![
        Just(Duration::MAX),
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ];
    (age.clone(), count.clone(), age, count, interval).prop_map(
        |(completed_max_age, completed_max_count, buried_max_age, buried_max_count, interval)| {
            Retention {
                completed_max_age,
                completed_max_count,
                buried_max_age,
                buried_max_count,
                interval,
            }
        },
    )
}

#[derive(Debug, Serialize, Deserialize)]
struct Typed(i64);

impl TaskPayload for Typed {
    const TASK: &'static str = "typed";
}

macro_rules! with_span {
    ($builder:expr, $method:ident, $span:expr) => {
        match $span {
            Span::Text(t) => $builder.$method(t.as_str()),
            Span::Std(d) => $builder.$method(*d),
            Span::Chrono(d) => $builder.$method(*d),
        }
    };
}

/// Whether `result` is what the API documents for a call: success, or
/// one of the typed errors for bad input.
fn acceptable<T: std::fmt::Debug>(result: &Result<T, Error>) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(Error::InvalidDuration(_)) | Err(Error::InvalidPayload { .. }) => Ok(()),
        Err(Error::InvalidInput { field, reason }) => {
            let known = [
                "delay",
                "expires_in",
                "run_at",
                "expires_at",
                "task",
                "tag",
                "tags",
            ];
            if known.contains(field) && !reason.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "InvalidInput on unexpected field {field}: {reason}"
                ))
            }
        }
        Err(Error::UnknownJob(_)) => Ok(()),
        Err(other) => Err(format!("unexpected error {other:?}")),
    }
}

async fn open(path: &Path, retention: Retention) -> Result<Queue, Error> {
    let store = kessel::store::SqliteOptions::new(path)
        .lock_timeout(Duration::from_secs(30))
        .open()
        .await?;
    Queue::builder()
        .store(Arc::new(store))
        .retention(retention)
        .build()
        .await
}

/// Makes `call` on `queue`; returns the ids of the jobs it created.
async fn make(queue: &Queue, call: &Call) -> Result<Vec<JobId>, String> {
    let one = |r: Result<kessel::JobHandle, Error>| -> Result<Vec<JobId>, String> {
        acceptable(&r)?;
        Ok(r.map(|h| vec![h.id()]).unwrap_or_default())
    };
    match call {
        Call::Delay(s) => one(with_span!(queue.create("t", ()), delay, s).await),
        Call::ExpiresIn(s) => one(with_span!(queue.create("t", ()), expires_in, s).await),
        Call::RunAt(at) => one(queue.create("t", ()).run_at(*at).await),
        Call::ExpiresAt(at) => one(queue.create("t", ()).expires_at(*at).await),
        Call::Job {
            task,
            payload,
            priority,
            reference,
            max_attempts,
            delay,
            expires_in,
        } => {
            let job = queue
                .create(task.as_str(), payload)
                .priority(*priority)
                .reference(reference.as_str())
                .max_attempts(*max_attempts);
            let job = with_span!(job, delay, delay);
            one(with_span!(job, expires_in, expires_in).await)
        }
        Call::Typed(s, p) => one(with_span!(queue.enqueue(Typed(*p)), delay, s).await),
        Call::Many(jobs) => {
            let r = queue
                .create_many(jobs.iter().map(|(t, p)| kessel::NewJob::new(t.as_str(), p)))
                .await;
            acceptable(&r)?;
            Ok(r.map(|hs| hs.iter().map(|h| h.id()).collect())
                .unwrap_or_default())
        }
        Call::Id(text) => {
            if let Ok(id) = text.parse::<JobId>() {
                acceptable(&queue.job(id).await)?;
                acceptable(&queue.cancel(id).await)?;
                acceptable(&queue.kick(id).await)?;
            }
            Ok(Vec::new())
        }
        Call::Clean(s) => {
            acceptable(
                &queue
                    .clean(with_span!(Clean::completed(), older_than, s))
                    .await,
            )?;
            Ok(Vec::new())
        }
        Call::RunJobs(s) => {
            // With no task defined in this process a readable limit runs
            // nothing and returns at once; with one, a count of 0 does (a
            // limit of `Duration::MAX` would otherwise wait that long).
            // The limit is read first either way.
            let count = if queue.tasks().is_empty() {
                None
            } else {
                Some(0)
            };
            let r = match s {
                Span::Text(t) => queue.run_jobs(count, t.as_str()).await,
                Span::Std(d) => queue.run_jobs(count, *d).await,
                Span::Chrono(d) => queue.run_jobs(count, *d).await,
            };
            acceptable(&r)?;
            if let Ok(ran) = r {
                if ran != 0 {
                    return Err(format!("run_jobs ran {ran} jobs of no task"));
                }
            }
            Ok(Vec::new())
        }
        Call::Define {
            task,
            tag,
            timeout,
            grace,
        } => {
            let builder = queue.define(task.as_str()).tag(tag.as_str());
            let builder = with_span!(builder, timeout, timeout);
            let builder = with_span!(builder, grace, grace);
            let r = builder.action(|_: kessel::JobContext<serde_json::Value>| async {
                Ok::<_, kessel::JobError>(())
            });
            acceptable(&r)?;
            Ok(Vec::new())
        }
    }
}

/// Runs one case: the calls on a fresh file, then the file opened again.
fn case(retention: Retention, calls: Vec<Call>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("jobs.db");
    actix_rt::System::new().block_on(async move {
        let queue = open(&path, retention.clone())
            .await
            .map_err(|e| format!("first open: {e}"))?;
        let mut created = Vec::new();
        for call in &calls {
            created.extend(
                make(&queue, call)
                    .await
                    .map_err(|e| format!("{call:?}: {e}"))?,
            );
        }
        for &id in &created {
            let job = queue
                .job(id)
                .await
                .map_err(|e| format!("reading {id}: {e}"))?;
            if job.run_at > latest() || job.expires_at.is_some_and(|e| e > latest()) {
                return Err(format!("stored a time out of range: {job:?}"));
            }
        }
        queue
            .stats()
            .await
            .map_err(|e| format!("stats after the calls: {e}"))?;
        queue
            .shutdown(Duration::from_secs(1))
            .await
            .map_err(|e| format!("shutdown: {e}"))?;
        drop(queue);

        // The same file, again: it opens, starts, answers, and still
        // holds every job it acknowledged.
        let queue = open(&path, retention)
            .await
            .map_err(|e| format!("reopen: {e}"))?;
        queue
            .stats()
            .await
            .map_err(|e| format!("stats after the reopen: {e}"))?;
        for &id in &created {
            let job = queue
                .job(id)
                .await
                .map_err(|e| format!("job {id} after the reopen: {e}"))?;
            if job.status != JobStatus::Ready
                && job.status != JobStatus::Scheduled
                && job.status != JobStatus::Expired
            {
                return Err(format!("job {id} came back {}", job.status));
            }
        }
        queue
            .shutdown(Duration::from_secs(1))
            .await
            .map_err(|e| format!("second shutdown: {e}"))?;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64)
    ))]

    /// Any input through the public API: a typed error or a documented
    /// acceptance, never a panic, and the SQLite file opens again into a
    /// queue that starts and answers.
    #[test]
    fn any_public_input_is_accepted_or_a_typed_error_and_the_store_reopens(
        retention in retention(),
        calls in prop::collection::vec(call(), 1..4),
    ) {
        let outcome = case(retention, calls);
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
