//! What a handler's context holds: its own run's task, tag, lines,
//! progress and cancellation token, though the state behind it is reused
//! from one run to the next.

use std::sync::Arc;

use kessel::{JobError, JobStatus, NewJob, Queue};

use crate::common::Trace;
use crate::Ctx;

/// A run's shared state is reused once nothing else holds it: each run
/// starts with no lines and no progress of an earlier one, and a context a
/// handler keeps past its run is never handed to another.
#[actix_rt::test(system = "crate::Paused")]
async fn a_reused_run_starts_clean_and_a_kept_context_stays_its_own() {
    let queue = Queue::new();
    let kept: Arc<parking_lot::Mutex<Vec<Ctx<u32>>>> = Default::default();
    let token: Arc<parking_lot::Mutex<Option<tokio_util::sync::CancellationToken>>> =
        Default::default();
    let (k, t) = (kept.clone(), token.clone());
    queue
        .define("work")
        .action(move |job: Ctx<u32>| {
            job.log(format!("line of {}", job.payload), ());
            if job.payload % 2 == 0 {
                job.progress(u64::from(job.payload), 100);
            }
            if job.payload == 19 {
                *t.lock() = Some(job.cancellation_token());
            }
            if job.payload == 0 {
                k.lock().push(job);
            }
            std::future::ready(Ok::<_, JobError>(()))
        })
        .unwrap();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    queue
        .define("wait")
        .action(move |job: Ctx<()>| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(());
                job.cancellation_token().cancelled().await;
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let mut handles = Vec::new();
    for n in 0..20u32 {
        handles.push(queue.create("work", n).await.unwrap());
    }
    for h in &handles {
        h.result().await.unwrap();
    }
    // Logged through the kept context after its run: into no other job.
    kept.lock()[0].log("late line", ());
    for (n, h) in handles.iter().enumerate() {
        let job = queue.job(h.id()).await.unwrap();
        let lines: Vec<&str> = job.logs.iter().map(|l| &*l.message).collect();
        let own = format!("line of {n}");
        assert_eq!(lines, ["created", "started", own.as_str(), "completed"]);
        let progress = (n % 2 == 0).then_some(kessel::Progress {
            current: n as u64,
            total: 100,
        });
        assert_eq!(job.progress, progress, "job {n}");
    }
    // The next run reuses job 19's state; cancelling it leaves the token
    // job 19's handler took alone.
    let waiting = queue.create("wait", ()).await.unwrap();
    started_rx.recv().await.unwrap();
    queue.cancel(waiting.id()).await.unwrap();
    assert_eq!(waiting.result().await.unwrap().status, JobStatus::Cancelled);
    assert!(
        !token.lock().as_ref().unwrap().is_cancelled(),
        "an earlier run's token fired with a later run's cancellation"
    );
}

/// Runs of different tasks, one after the other, each see their own task
/// in their context, and middleware sees its tag too (a run's state is
/// reused from one run to the next).
#[actix_rt::test(system = "crate::Paused")]
async fn each_run_sees_its_own_task_and_tag() {
    let queue = Queue::new();
    let handled: Trace<(u32, String)> = Trace::default();
    for (task, tag) in [("resize", "images"), ("send", "mail")] {
        let handled = handled.clone();
        queue
            .define(task)
            .tag(tag)
            .action(move |job: Ctx<u32>| {
                handled.push((job.payload, job.task().to_owned()));
                async { Ok::<_, JobError>(()) }
            })
            .unwrap();
    }
    let tasks = ["resize", "send", "send", "resize", "send", "resize"];
    let tag_of = |task: &str| if task == "resize" { "images" } else { "mail" };
    let create = |offset: usize| {
        queue.create_many(
            tasks
                .iter()
                .enumerate()
                .map(move |(i, task)| NewJob::new(*task, (offset + i) as u32)),
        )
    };
    create(0).await.unwrap();
    assert_eq!(queue.run_jobs(None, None).await.unwrap(), tasks.len());
    // The same again through middleware, which also sees the tag.
    let wrapped: Trace<(String, Option<String>)> = Trace::default();
    let w = wrapped.clone();
    queue.middleware(kessel::middleware::from_fn(
        move |job: kessel::JobMeta, next: kessel::middleware::Next| {
            w.push((job.task().to_owned(), job.tag().map(str::to_owned)));
            next.run()
        },
    ));
    create(tasks.len()).await.unwrap();
    assert_eq!(queue.run_jobs(None, None).await.unwrap(), tasks.len());
    let mut handled = handled.items();
    handled.sort();
    let expected: Vec<_> = tasks
        .iter()
        .chain(tasks.iter())
        .enumerate()
        .map(|(i, task)| (i as u32, task.to_string()))
        .collect();
    assert_eq!(handled, expected);
    let mut wrapped = wrapped.items();
    wrapped.sort();
    let mut expected: Vec<_> = tasks
        .iter()
        .map(|task| (task.to_string(), Some(tag_of(task).to_owned())))
        .collect();
    expected.sort();
    assert_eq!(wrapped, expected);
}
