//! What a handler's outcome does beyond success and failure: a snooze,
//! and a dead letter for a buried job, the same on every store.

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
