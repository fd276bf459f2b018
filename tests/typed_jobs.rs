//! Typed jobs: a `TaskPayload` type names its task, `define_for` ties the
//! handler to it, `enqueue` creates its jobs with the options of `create`,
//! and producers by name still reach the same task.

use std::sync::Arc;
use std::time::Duration;

use kessel::{Error, JobContext, JobError, JobStatus, NewJob, Queue, TaskPayload};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Email {
    to: String,
}

impl TaskPayload for Email {
    const TASK: &'static str = "send email";
    const TAG: &'static str = "notifications";
}

#[derive(Debug, Serialize, Deserialize)]
struct Tick(u32);

impl TaskPayload for Tick {
    const TASK: &'static str = "tick";
}

fn define_email(queue: &Queue) {
    queue
        .define_for::<Email>()
        .action(|job| async move { Ok::<_, JobError>(format!("sent to {}", job.payload.to)) })
        .unwrap();
}

#[actix_rt::test]
async fn an_enqueued_payload_runs_on_the_task_its_type_names() {
    let queue = Queue::new();
    define_email(&queue);
    queue.process(["notifications"]).start().unwrap();
    let handle = queue
        .enqueue(Email {
            to: "ford@example.com".into(),
        })
        .await
        .unwrap();
    let job = queue.job(handle.id()).await.unwrap();
    assert_eq!(&*job.task, "send email");
    let result = handle.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    assert_eq!(
        result.value,
        Some(serde_json::json!("sent to ford@example.com"))
    );
}

#[actix_rt::test]
async fn define_for_takes_the_payload_tag_and_tag_overrides_it() {
    let queue = Queue::new();
    let task = queue
        .define_for::<Email>()
        .action(|_: JobContext<Email>| async { Ok::<_, JobError>(()) })
        .unwrap();
    assert_eq!((task.name(), task.tag()), ("send email", "notifications"));
    let task = queue
        .define_for::<Tick>()
        .action(|_| async { Ok::<_, JobError>(()) })
        .unwrap();
    assert_eq!(task.tag(), kessel::DEFAULT_TAG);

    let other = Queue::new();
    let task = other
        .define_for::<Email>()
        .tag("mail")
        .action(|_| async { Ok::<_, JobError>(()) })
        .unwrap();
    assert_eq!(task.tag(), "mail");
}

#[actix_rt::test]
async fn enqueue_returns_the_create_builder_so_options_chain() {
    tokio::time::pause();
    let queue = Queue::new();
    let handle = queue
        .enqueue(Tick(1))
        .delay("1h")
        .priority(7)
        .reference("r-1")
        .max_attempts(2)
        .await
        .unwrap();
    let job = queue.job(handle.id()).await.unwrap();
    assert_eq!(job.status, JobStatus::Scheduled);
    assert_eq!(job.run_at - job.created_at, chrono::Duration::hours(1));
    assert_eq!(
        (job.priority, job.reference.as_deref(), job.max_attempts),
        (7, Some("r-1"), Some(2))
    );
    // Bad options are typed errors as with `create`.
    assert!(matches!(
        queue.enqueue(Tick(2)).delay("soon").await,
        Err(Error::InvalidDuration(_))
    ));
}

#[actix_rt::test]
async fn enqueue_many_and_new_job_of_create_jobs_of_the_task() {
    let queue = Queue::new();
    let sum = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = sum.clone();
    queue
        .define_for::<Tick>()
        .action(move |job| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(job.payload.0, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let mut handles = queue.enqueue_many((1..=4).map(Tick)).await.unwrap();
    handles.extend(
        queue
            .create_many([NewJob::of(Tick(10)).priority(1), NewJob::of(Tick(20))])
            .await
            .unwrap(),
    );
    assert_eq!(handles.len(), 6);
    for handle in handles {
        assert_eq!(handle.result().await.unwrap().status, JobStatus::Completed);
    }
    assert_eq!(sum.load(std::sync::atomic::Ordering::SeqCst), 40);
    assert!(queue
        .enqueue_many(Vec::<Tick>::new())
        .await
        .unwrap()
        .is_empty());
}

/// Producers without the type (another program, the HTTP API) name the
/// task: a payload that fits runs, one that does not is buried naming the
/// field, as for any task.
#[actix_rt::test]
async fn producers_by_name_reach_a_typed_task() {
    let queue = Queue::new();
    define_email(&queue);
    queue.process(["notifications"]).start().unwrap();
    let fits = queue
        .create(
            "send email",
            serde_json::json!({ "to": "zaphod@example.com" }),
        )
        .await
        .unwrap();
    assert_eq!(
        fits.result().await.unwrap().value,
        Some(serde_json::json!("sent to zaphod@example.com"))
    );
    let wrong = queue
        .create("send email", serde_json::json!({ "to": 42 }))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(wrong.status, JobStatus::Buried);
    assert!(wrong.message.unwrap().contains("`to`"));
}

#[actix_rt::test]
async fn a_typed_task_obeys_the_rules_of_task_names() {
    #[derive(Serialize, Deserialize)]
    struct Nameless;
    impl TaskPayload for Nameless {
        const TASK: &'static str = "";
    }
    #[derive(Serialize, Deserialize)]
    struct Coloned;
    impl TaskPayload for Coloned {
        const TASK: &'static str = "a:b";
    }
    let queue = Queue::new();
    let defined = queue
        .define_for::<Nameless>()
        .action(|_| async { Ok::<_, JobError>(()) });
    assert!(matches!(
        defined,
        Err(Error::InvalidInput { field: "task", .. })
    ));
    assert!(matches!(
        queue.enqueue(Nameless).await,
        Err(Error::InvalidInput { field: "task", .. })
    ));
    assert!(matches!(
        queue.enqueue(Coloned).await,
        Err(Error::InvalidInput { field: "task", .. })
    ));
    // Defining the same typed task twice is the same error as by name.
    define_email(&queue);
    let again = queue
        .define_for::<Email>()
        .action(|_| async { Ok::<_, JobError>(()) });
    assert!(matches!(
        again,
        Err(Error::InvalidInput { field: "task", .. })
    ));
}

/// A typed job stored on SQLite by one queue runs on the next one opened
/// on the file: the task name is what is stored, the type is recovered
/// from it by `define_for`.
#[cfg(feature = "sqlite")]
#[actix_rt::test]
async fn a_typed_job_survives_a_reopen_of_its_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let queue = open_sqlite(&path).await;
    let id = queue
        .enqueue(Email {
            to: "arthur@example.com".into(),
        })
        .await
        .unwrap()
        .id();
    queue.shutdown(Duration::from_secs(1)).await.unwrap();
    drop(queue);

    let queue = open_sqlite(&path).await;
    define_email(&queue);
    queue.process(["notifications"]).start().unwrap();
    let result = queue.result(id).await.unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    assert_eq!(
        result.value,
        Some(serde_json::json!("sent to arthur@example.com"))
    );
}

/// A queue on the SQLite file at `path`, waiting for the file's lock: a
/// queue shut down a moment ago lets go of the file shortly after
/// `shutdown` returns.
#[cfg(feature = "sqlite")]
async fn open_sqlite(path: &std::path::Path) -> Queue {
    let store = kessel::store::SqliteOptions::new(path)
        .lock_timeout(Duration::from_secs(30))
        .open()
        .await
        .expect("the file opens");
    Queue::builder()
        .store(Arc::new(store))
        .build()
        .await
        .expect("a queue")
}
