//! Dead letters, snooze's bad input, redrive by filter, and the dead set's
//! cap: what happens to buried jobs after they are buried.

mod common;

use std::time::Duration;

use common::pause;
use futures::StreamExt;
use kessel::event::{Event, Filter, QueueEvent};
use kessel::store::JobQuery;
use kessel::{Error, JobContext, JobError, JobStatus, Queue, Redrive, Retention, RetryPolicy};
use proptest::prelude::*;

/// A task whose jobs fail once, for good, with their payload as the error.
fn define_failing(queue: &Queue, task: &str) {
    queue
        .define(task)
        .retry(RetryPolicy::none())
        .action(
            |job: JobContext<String>| async move { Err::<(), _>(JobError::transient(job.payload)) },
        )
        .unwrap();
}

#[actix_rt::test]
async fn a_task_cannot_name_itself_or_an_empty_name_as_its_dead_letter_task() {
    let queue = Queue::new();
    let own = queue
        .define("sync")
        .dead_letter("sync")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap_err();
    assert!(
        matches!(&own, Error::InvalidInput { field: "dead_letter", reason } if reason.contains("its own")),
        "{own:?}"
    );
    let empty = queue
        .define("sync")
        .dead_letter("  ")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap_err();
    assert!(
        matches!(
            empty,
            Error::InvalidInput {
                field: "dead_letter",
                ..
            }
        ),
        "{empty:?}"
    );
}

#[actix_rt::test]
async fn a_dead_letter_task_defined_nowhere_still_gets_its_letters_stored() {
    pause();
    let queue = Queue::new();
    queue
        .define("charge")
        .retry(RetryPolicy::none())
        .dead_letter("charges to review")
        .action(|_: JobContext<()>| async { Err::<(), _>(JobError::fatal("declined")) })
        .unwrap();
    let charge = queue.create("charge", ()).await.unwrap();
    assert_eq!(queue.run_jobs(None, None).await.unwrap(), 1);
    let letters = queue
        .fetch(JobQuery::default().reference(kessel::DeadLetter::reference_for(charge.id())))
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(&*letters[0].task, "charges to review");
    assert_eq!(
        letters[0].status,
        JobStatus::Ready,
        "it waits for a process that runs it"
    );
}

#[actix_rt::test]
async fn redrive_kicks_only_the_buried_jobs_its_filter_selects() {
    pause();
    let queue = Queue::new();
    define_failing(&queue, "sync");
    define_failing(&queue, "mail");
    for (task, error) in [
        ("sync", "timed out"),
        ("sync", "timed out"),
        ("sync", "bad request"),
        ("mail", "timed out"),
    ] {
        queue.create(task, error).await.unwrap();
    }
    queue.run_jobs(None, None).await.unwrap();
    let kicked = queue
        .redrive(Redrive::buried().task("sync").error_contains("timed out"))
        .await
        .unwrap();
    assert_eq!(kicked, 2);
    let ready = queue
        .fetch(JobQuery::default().status(JobStatus::Ready))
        .await
        .unwrap();
    assert_eq!(ready.len(), 2);
    assert!(ready.iter().all(|j| &*j.task == "sync"), "{ready:?}");
    assert!(ready.iter().all(|j| j.payload.as_str() == "\"timed out\""));
    assert_eq!(
        queue.redrive(Redrive::buried().limit(1)).await.unwrap(),
        1,
        "a limit caps the kicks"
    );
}

#[actix_rt::test]
async fn redrive_selects_by_when_the_jobs_were_buried() {
    pause();
    let queue = Queue::new();
    define_failing(&queue, "sync");
    queue.create("sync", "early").await.unwrap();
    queue.run_jobs(None, None).await.unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    let cut = queue.now();
    queue.create("sync", "late").await.unwrap();
    queue.run_jobs(None, None).await.unwrap();
    let later = cut + chrono::Duration::hours(1);
    assert_eq!(
        queue
            .redrive(Redrive::buried().buried_between(cut, later))
            .await
            .unwrap(),
        1
    );
    let ready = queue
        .fetch(JobQuery::default().status(JobStatus::Ready))
        .await
        .unwrap();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].payload.as_str(), "\"late\"");
}

#[actix_rt::test]
async fn redrive_rejects_a_range_that_does_not_start_before_it_ends() {
    let queue = Queue::new();
    let now = queue.now();
    let err = queue
        .redrive(Redrive::buried().buried_between(now, now))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: "buried_between",
                ..
            }
        ),
        "{err:?}"
    );
}

#[actix_rt::test]
async fn the_dead_set_drops_its_oldest_beyond_its_cap_and_says_so() {
    pause();
    let queue = Queue::builder()
        .retention(Retention {
            buried_max_count: Some(3),
            interval: Duration::from_secs(10),
            ..Retention::default()
        })
        .build()
        .await
        .unwrap();
    let mut events = queue.events(Filter::All);
    define_failing(&queue, "sync");
    for n in 0..5 {
        queue.create("sync", format!("failure {n}")).await.unwrap();
        queue.run_jobs(None, None).await.unwrap();
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    let dropped = loop {
        match events.next().await {
            Some(Event::Queue(QueueEvent::BuriedDropped {
                count, max_count, ..
            })) => break (count, max_count),
            Some(_) => continue,
            None => panic!("the event stream ended"),
        }
    };
    assert_eq!(dropped, (2, Some(3)));
    let kept = queue
        .fetch(JobQuery::default().status(JobStatus::Buried))
        .await
        .unwrap();
    let mut errors: Vec<_> = kept.iter().filter_map(|j| j.last_error.clone()).collect();
    errors.sort();
    assert_eq!(errors.len(), 3);
    for (kept, n) in errors.iter().zip(2..5) {
        assert!(kept.starts_with(&format!("failure {n}")), "{errors:?}");
    }
}

#[actix_rt::test]
async fn a_snooze_past_the_calendar_waits_until_the_latest_time_kessel_accepts() {
    pause();
    let queue = Queue::new();
    queue
        .define("forever")
        .action(|_: JobContext<()>| async { Err::<(), _>(JobError::snooze(Duration::MAX, "")) })
        .unwrap();
    let h = queue.create("forever", ()).await.unwrap();
    assert_eq!(queue.run_jobs(None, None).await.unwrap(), 1);
    let job = queue.job(h.id()).await.unwrap();
    assert_eq!(job.status, JobStatus::Scheduled);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.run_at.format("%Y").to_string(), "9999");
    assert!(
        job.logs
            .iter()
            .any(|l| l.message.starts_with("snoozed for")),
        "{:?}",
        job.logs
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Redrive kicks exactly the buried jobs that match every filter, up
    /// to its limit, whatever the mix of tasks and errors.
    #[test]
    fn redrive_kicks_exactly_the_matching_buried_jobs(
        jobs in proptest::collection::vec((0usize..3, 0usize..3), 0..12),
        task in proptest::option::of(0usize..3),
        error in proptest::option::of(0usize..3),
        limit in proptest::option::of(0usize..8),
    ) {
        let tasks = ["sync", "mail", "bill"];
        let errors = ["timed out", "refused", "bad request"];
        let kicked = actix_rt::System::new().block_on(async {
            pause();
            let queue = Queue::new();
            for t in tasks {
                define_failing(&queue, t);
            }
            for (t, e) in &jobs {
                queue.create(tasks[*t], errors[*e]).await.unwrap();
            }
            queue.run_jobs(None, None).await.unwrap();
            let mut filter = Redrive::buried();
            if let Some(t) = task {
                filter = filter.task(tasks[t]);
            }
            if let Some(e) = error {
                filter = filter.error_contains(errors[e]);
            }
            if let Some(l) = limit {
                filter = filter.limit(l);
            }
            let kicked = queue.redrive(filter).await.unwrap();
            let ready = queue
                .fetch(JobQuery::default().status(JobStatus::Ready).limit(100))
                .await
                .unwrap()
                .len();
            assert_eq!(kicked, ready, "each kick made one job ready");
            kicked
        });
        let matching = jobs
            .iter()
            .filter(|(t, e)| task.is_none_or(|w| w == *t) && error.is_none_or(|w| w == *e))
            .count();
        prop_assert_eq!(kicked, matching.min(limit.unwrap_or(usize::MAX)));
    }
}
