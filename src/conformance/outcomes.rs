//! What a handler's outcome does beyond success and failure, and what
//! becomes of buried jobs, the same on every store: a snooze, a retry
//! after a delay of the handler's, a dead letter, redrive by filter, and
//! the dead set's cap.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::fixtures::{fresh, get};
use super::harness::conformance_test;
use super::queue::{outcome, queue_on, Trace, WeakQueue};
use super::{StoreFactory, Verdict};
use crate::context::JobContext;
use crate::dead_letter::DeadLetter;
use crate::error::JobError;
use crate::job::JobStatus;
use crate::store::JobQuery;
use crate::task::RetryPolicy;

conformance_test!(outcomes,
    /// A snoozed job waits its delay as scheduled and runs again, and the
    /// snoozes do not use up its attempts: a job allowed one attempt that
    /// snoozes twice still completes.
    snooze_runs_a_job_again_later_without_using_an_attempt => snooze
);

async fn snooze<F: StoreFactory>(factory: F) -> Verdict {
    use futures::StreamExt;
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    // Each run: its attempt number, when it started, and the job's
    // status and attempts as the store had them then.
    let runs: Trace<(u32, DateTime<Utc>, JobStatus, u32)> = Trace::default();
    let (r, q) = (runs.clone(), WeakQueue::of(&queue));
    queue
        .define("poll export")
        .retry(RetryPolicy::none())
        .action(move |job: JobContext<()>| {
            let (r, q) = (r.clone(), q.clone());
            async move {
                let now = q.now();
                let stored = q.get().job(job.id()).await.map_err(JobError::fatal)?;
                r.push((job.attempt(), now, stored.status, stored.attempts));
                if r.items().len() < 3 {
                    return Err::<&str, _>(JobError::snooze(
                        Duration::from_secs(30),
                        "export not ready",
                    ));
                }
                Ok("exported")
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let (h, mut events) = queue
        .create("poll export", ())
        .events()
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        if let crate::event::Event::Job(e) = event {
            let last = e.kind.is_final();
            seen.push(e.kind);
            if last {
                break;
            }
        }
    }
    let result = outcome(&h).await;
    assert_eq!(result.status, JobStatus::Completed, "{result:?}");
    let runs = runs.items();
    assert_eq!(
        runs.iter()
            .map(|(a, _, s, n)| (*a, *s, *n))
            .collect::<Vec<_>>(),
        vec![
            (1, JobStatus::Running, 1),
            (1, JobStatus::Running, 1),
            (1, JobStatus::Running, 1)
        ],
        "every run is the first attempt, as the store had it"
    );
    let snoozed_until: Vec<DateTime<Utc>> = seen
        .iter()
        .filter_map(|k| match k {
            crate::event::JobEventKind::Scheduled { run_at } => Some(*run_at),
            _ => None,
        })
        .collect();
    assert_eq!(
        snoozed_until.len(),
        2,
        "a scheduled event per snooze: {seen:?}"
    );
    for (i, until) in snoozed_until.iter().enumerate() {
        let wanted = runs[i].1 + chrono::Duration::seconds(30);
        assert!(
            (*until - wanted).num_milliseconds().abs() <= 2,
            "snooze {i} until {until}, 30 s after the run at {}",
            runs[i].1
        );
        let gap = (runs[i + 1].1 - runs[i].1).num_milliseconds();
        assert!((30_000..=30_050).contains(&gap), "runs {runs:?}");
    }
    let stored = get(&store, h.id()).await;
    assert_eq!(stored.attempts, 1);
    let snoozes = stored
        .logs
        .iter()
        .filter(|l| l.message == "snoozed for 30s: export not ready")
        .count();
    assert_eq!(snoozes, 2, "each snooze is logged: {:?}", stored.logs);
    Verdict::Passed
}

conformance_test!(outcomes,
    /// A job buried with attempts left over or none, of a task that names
    /// a dead-letter task, sends that task one letter with the buried
    /// job's id, task, payload, attempts and last error; the buried job
    /// stays buried.
    dead_letter_carries_the_buried_job_to_its_dead_letter_task => dead_letter
);

async fn dead_letter<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    queue
        .define("charge card")
        .retry(
            RetryPolicy::exponential(2)
                .base_delay(Duration::from_secs(1))
                .jitter(0.0),
        )
        .dead_letter("failed charges")
        .action(|job: JobContext<serde_json::Value>| async move {
            Err::<(), _>(JobError::transient(format!(
                "declined on attempt {}",
                job.attempt()
            )))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let received: Trace<DeadLetter> = Trace::default();
    let r = received.clone();
    queue
        .define("failed charges")
        .action(move |job: JobContext<DeadLetter>| {
            let r = r.clone();
            async move {
                r.push(job.payload.clone());
                Ok::<_, JobError>(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let payload = serde_json::json!({"customer": 7, "cents": 1999});
    let h = queue
        .create("charge card", &payload)
        .reference("order-7")
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(outcome(&h).await.status, JobStatus::Buried);
    let mut polls = 0;
    let letters = loop {
        polls += 1;
        assert!(
            polls < 10_000,
            "the dead letter never completed: {:?}",
            queue.fetch(JobQuery::default()).await
        );
        let found = queue
            .fetch(JobQuery::default().reference(DeadLetter::reference_for(h.id())))
            .await
            .unwrap_or_else(|e| panic!("fetch: {e}"));
        if found.iter().any(|j| j.status == JobStatus::Completed) {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(letters.len(), 1, "one letter: {letters:?}");
    assert_eq!(&*letters[0].task, "failed charges");
    let buried = get(&store, h.id()).await;
    assert_eq!(
        buried.status,
        JobStatus::Buried,
        "the buried job stays buried"
    );
    let got = received.items();
    assert_eq!(got.len(), 1);
    let letter = &got[0];
    assert_eq!(letter.job_id, h.id());
    assert_eq!(letter.task, "charge card");
    assert_eq!(letter.reference.as_deref(), Some("order-7"));
    assert_eq!(letter.payload, payload);
    assert_eq!(letter.attempts, 2);
    assert!(
        letter.last_error.contains("declined on attempt 2"),
        "last_error: {}",
        letter.last_error
    );
    assert_eq!(Some(letter.last_error.clone()), buried.last_error);
    Verdict::Passed
}

/// A task whose jobs fail for good with their payload as the error until
/// `fixed` is set, then complete.
fn define_failing_until_fixed(
    queue: &crate::Queue,
    task: &str,
    fixed: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let fixed = fixed.clone();
    queue
        .define(task)
        .retry(RetryPolicy::none())
        .action(move |job: JobContext<String>| {
            let fixed = fixed.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if fixed {
                    Ok(())
                } else {
                    Err(JobError::transient(job.payload))
                }
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

conformance_test!(outcomes,
    /// Redrive runs again exactly the buried jobs its filter selects, by
    /// task, error text and when they were buried, the earliest first up
    /// to its limit; the others stay buried.
    redrive_runs_again_only_the_buried_jobs_its_filter_selects => redrive
);

async fn redrive<F: StoreFactory>(factory: F) -> Verdict {
    use crate::dead_letter::Redrive;
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let fixed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    define_failing_until_fixed(&queue, "sync", &fixed);
    define_failing_until_fixed(&queue, "mail", &fixed);
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let bury = |task: &'static str, error: &'static str| {
        let queue = queue.clone();
        async move {
            let h = queue
                .create(task, error)
                .await
                .unwrap_or_else(|e| panic!("create: {e}"));
            assert_eq!(outcome(&h).await.status, JobStatus::Buried);
            // Apart in time, so "earliest" has one answer.
            tokio::time::sleep(Duration::from_millis(5)).await;
            h.id()
        }
    };
    let early = bury("sync", "timed out early").await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    // The first late job is buried at this very instant (the clock is
    // paused): a range starting here takes it, whatever precision the
    // store keeps times in.
    let cut = queue.now();
    let late_a = bury("sync", "timed out").await;
    let late_b = bury("sync", "timed out").await;
    let bad_request = bury("sync", "bad request").await;
    let mail = bury("mail", "timed out").await;
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    let selected = Redrive::buried()
        .task("sync")
        .error_contains("timed out")
        .buried_between(cut, cut + chrono::Duration::hours(1));
    let kicked = queue
        .redrive(selected)
        .await
        .unwrap_or_else(|e| panic!("redrive: {e}"));
    assert_eq!(kicked, 2, "the two late sync jobs that timed out");
    let status_of = |id| {
        let queue = queue.clone();
        async move {
            let mut polls = 0;
            loop {
                let job = queue.job(id).await.unwrap_or_else(|e| panic!("{e}"));
                if job.status.is_final() || polls > 1_000 {
                    return job.status;
                }
                polls += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    assert_eq!(status_of(late_a).await, JobStatus::Completed);
    assert_eq!(status_of(late_b).await, JobStatus::Completed);
    for (id, what) in [
        (early, "buried before the range"),
        (bad_request, "another error"),
        (mail, "another task"),
    ] {
        assert_eq!(status_of(id).await, JobStatus::Buried, "{what}");
    }
    // A limit takes the earliest buried first.
    let kicked = queue
        .redrive(Redrive::buried().limit(1))
        .await
        .unwrap_or_else(|e| panic!("redrive: {e}"));
    assert_eq!(kicked, 1);
    assert_eq!(status_of(early).await, JobStatus::Completed);
    assert_eq!(status_of(bad_request).await, JobStatus::Buried);
    assert_eq!(status_of(mail).await, JobStatus::Buried);
    Verdict::Passed
}

conformance_test!(outcomes,
    /// The dead set keeps at most its cap of buried jobs, the newest; the
    /// oldest beyond it are removed and reported with a `BuriedDropped`
    /// event, never silently.
    the_dead_set_keeps_its_newest_up_to_its_cap_and_reports_what_it_drops => dead_set_cap
);

async fn dead_set_cap<F: StoreFactory>(factory: F) -> Verdict {
    use crate::event::{Event, Filter, QueueEvent};
    use futures::StreamExt;
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = factory
        .configure(
            crate::Queue::builder()
                .store(store.clone())
                .retention(crate::Retention {
                    buried_max_count: Some(3),
                    interval: Duration::from_secs(10),
                    ..crate::Retention::keep_all()
                }),
        )
        .build()
        .await
        .unwrap_or_else(|e| panic!("building a queue on the store failed: {e}"));
    let mut events = queue.events(Filter::All);
    let fixed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    define_failing_until_fixed(&queue, "sync", &fixed);
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    for n in 0..5 {
        let h = queue
            .create("sync", format!("failure {n}"))
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
        assert_eq!(outcome(&h).await.status, JobStatus::Buried);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // One pass or more: every drop is reported, with the cap.
    let mut dropped = 0;
    while dropped < 2 {
        match events.next().await {
            Some(Event::Queue(QueueEvent::BuriedDropped {
                count, max_count, ..
            })) => {
                assert_eq!(max_count, Some(3));
                dropped += count;
            }
            Some(_) => {}
            None => panic!("the event stream ended"),
        }
    }
    assert_eq!(dropped, 2, "two beyond the cap of 3");
    let kept = queue
        .fetch(JobQuery::default().status(JobStatus::Buried))
        .await
        .unwrap_or_else(|e| panic!("fetch: {e}"));
    let mut errors: Vec<String> = kept.iter().filter_map(|j| j.last_error.clone()).collect();
    errors.sort();
    assert_eq!(errors.len(), 3, "{errors:?}");
    for (kept, n) in errors.iter().zip(2..5) {
        assert!(kept.starts_with(&format!("failure {n}")), "{errors:?}");
    }
    Verdict::Passed
}

conformance_test!(outcomes,
    /// A job that fails asking to be retried after a delay waits that
    /// delay, not its task's backoff, and the retry uses an attempt: the
    /// store has it ready for the second attempt until then.
    retry_after_waits_its_own_delay_instead_of_the_backoff => retry_after
);

async fn retry_after<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let starts: Trace<(u32, DateTime<Utc>)> = Trace::default();
    let (s, q) = (starts.clone(), WeakQueue::of(&queue));
    queue
        .define("call partner")
        .retry(
            RetryPolicy::exponential(3)
                .base_delay(Duration::from_secs(1))
                .jitter(0.0),
        )
        .action(move |job: JobContext<()>| {
            let (s, q) = (s.clone(), q.clone());
            async move {
                s.push((job.attempt(), q.now()));
                if job.attempt() == 1 {
                    return Err(JobError::retry_after(Duration::from_secs(90), "429"));
                }
                Ok(())
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    queue
        .process(["default"])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let h = queue
        .create("call partner", ())
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(outcome(&h).await.status, JobStatus::Completed);
    let starts = starts.items();
    assert_eq!(
        starts.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![1, 2],
        "{starts:?}"
    );
    let gap = (starts[1].1 - starts[0].1).num_milliseconds();
    assert!(
        (90_000..=90_050).contains(&gap),
        "the retry came {gap} ms after the first attempt, not 90 s"
    );
    let stored = get(&store, h.id()).await;
    assert_eq!((stored.status, stored.attempts), (JobStatus::Completed, 2));
    Verdict::Passed
}
