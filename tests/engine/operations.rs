//! What callers do to jobs and workers: kick a buried job, cancel a
//! pending or running one, define a task late for jobs already waiting on
//! it, and choose a worker's tags from the environment.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kessel::{Error, JobError, JobStatus, Queue, RetryPolicy};

use crate::common::Trace;
use crate::{recorder, Ctx};

#[actix_rt::test(system = "crate::Paused")]
async fn kick_returns_a_buried_job_to_ready() {
    let queue = Queue::new();
    let fixed = Arc::new(AtomicUsize::new(0));
    let f = fixed.clone();
    queue
        .define("needs fix")
        .retry(RetryPolicy::none())
        .action(move |_: Ctx<()>| {
            let f = f.clone();
            async move {
                if f.load(Ordering::SeqCst) == 0 {
                    return Err(JobError::transient("bug"));
                }
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let h = queue.create("needs fix", ()).await.unwrap();
    assert_eq!(h.result().await.unwrap().status, JobStatus::Buried);
    fixed.store(1, Ordering::SeqCst);
    queue.kick(h.id()).await.unwrap();
    assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    let job = queue.job(h.id()).await.unwrap();
    assert_eq!(job.attempts, 2);
    // kicking a job that is not buried is a typed error
    match queue.kick(h.id()).await {
        Err(Error::WrongState { status, .. }) => assert_eq!(status, JobStatus::Completed),
        other => panic!("unexpected {other:?}"),
    }
}

#[actix_rt::test(system = "crate::Paused")]
async fn cancel_removes_a_pending_job_and_signals_a_running_one() {
    let queue = Queue::new();
    let signalled = Arc::new(AtomicUsize::new(0));
    let sig = signalled.clone();
    queue
        .define("long")
        .action(move |job: Ctx<()>| {
            let sig = sig.clone();
            async move {
                let token = job.cancellation_token();
                actix_rt::spawn(async move {
                    token.cancelled().await;
                    sig.fetch_add(1, Ordering::SeqCst);
                });
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    let pending = queue.create("long", ()).delay("1h").await.unwrap();
    queue.cancel(pending.id()).await.unwrap();
    assert_eq!(pending.result().await.unwrap().status, JobStatus::Cancelled);

    queue.process(["default"]).start().unwrap();
    let running = queue.create("long", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        queue.job(running.id()).await.unwrap().status,
        JobStatus::Running
    );
    queue.cancel(running.id()).await.unwrap();
    assert_eq!(running.result().await.unwrap().status, JobStatus::Cancelled);
    tokio::task::yield_now().await;
    assert_eq!(signalled.load(Ordering::SeqCst), 1);
    // the worker's slot is free again
    let next = queue.create("long", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        queue.job(next.id()).await.unwrap().status,
        JobStatus::Running
    );
    // a final job cannot be cancelled
    assert!(matches!(
        queue.cancel(pending.id()).await,
        Err(Error::WrongState {
            status: JobStatus::Cancelled,
            ..
        })
    ));
}

#[actix_rt::test(system = "crate::Paused")]
async fn jobs_wait_unrouted_until_their_task_is_defined() {
    let queue = Queue::new();
    queue.process(["mail"]).start().unwrap();
    let h = queue.create("send", "hi").await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(queue.job(h.id()).await.unwrap().status, JobStatus::Ready);
    queue
        .define("send")
        .tag("mail")
        .action(|job: Ctx<String>| async move { Ok::<_, JobError>(job.payload.len()) })
        .unwrap();
    assert_eq!(h.result().await.unwrap().value, Some(serde_json::json!(2)));
}

#[actix_rt::test(system = "crate::Paused")]
async fn queue_env_selects_the_tags_to_serve() {
    let queue = Queue::new();
    let trace = Trace::default();
    recorder(&queue, "t", "from-env", &trace);
    // SAFETY of the environment: only this test reads or writes QUEUE.
    std::env::set_var("QUEUE", "from-env, other");
    let worker = queue.process_from_env(1).unwrap().expect("QUEUE is set");
    std::env::remove_var("QUEUE");
    assert_eq!(worker.tags(), ["from-env", "other"]);
    queue.create("t", 7).await.unwrap().result().await.unwrap();
    assert_eq!(trace.items(), vec![7]);
    assert!(queue.process_from_env(1).unwrap().is_none());
}

/// A task defined without `.tag(..)` lands in `default`; a worker started
/// for another tag never runs it. That is made loud: a `TagUnserved`
/// event (once) and the tag in `stats`, until a worker serves it.
#[actix_rt::test(system = "crate::Paused")]
async fn jobs_ready_for_a_tag_no_worker_serves_are_reported() {
    use futures::StreamExt;
    use kessel::event::{Event, Filter, QueueEvent};
    let queue = Queue::new();
    let mut events = queue.events(Filter::All);
    queue
        .define("send email")
        .action(|_: Ctx<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue.process(["notifications"]).start().unwrap();
    let a = queue.create("send email", ()).await.unwrap();
    queue.create("send email", ()).await.unwrap();
    let reported = loop {
        match events.next().await {
            Some(Event::Queue(QueueEvent::TagUnserved { tag, waiting })) => break (tag, waiting),
            Some(_) => continue,
            None => panic!("the stream ended"),
        }
    };
    assert_eq!(reported, ("default".to_owned(), 2));
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.unserved_tags.len(), 1, "{stats:?}");
    assert_eq!(stats.unserved_tags[0].tag, "default");
    assert_eq!(stats.unserved_tags[0].waiting, 2);

    // Served from now on: the jobs run and the tag is no longer listed.
    queue.process(["default"]).start().unwrap();
    assert_eq!(a.result().await.unwrap().status, JobStatus::Completed);
    assert!(queue.stats().await.unwrap().unserved_tags.is_empty());
}
