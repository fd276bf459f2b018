//! Which job runs next and how many run at once: priority, then due
//! time, then creation order; a worker's first tag before its others; the
//! concurrency limit; and a long run of jobs that finish at once still
//! leaves the thread's other tasks a turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kessel::{JobError, JobStatus, NewJob, Queue};

use crate::common::Trace;
use crate::{recorder, Ctx};

#[actix_rt::test(system = "crate::Paused")]
async fn ready_jobs_run_by_priority_then_due_time_then_creation_order() {
    let queue = Queue::new();
    let trace = Trace::default();
    recorder(&queue, "t", "tag", &trace);
    let mut handles = Vec::new();
    // payload = expected position
    handles.push(queue.create("t", 4).priority(5).await.unwrap());
    handles.push(queue.create("t", 2).priority(1).await.unwrap());
    handles.push(queue.create("t", 0).priority(-3).await.unwrap()); // clamps to 0
    handles.push(queue.create("t", 3).priority(1).await.unwrap());
    handles.push(queue.create("t", 1).priority(0).await.unwrap());
    // due earlier than the priority-1 jobs created above? Due time is run_at:
    // a delayed job created first but due later runs after them.
    handles.push(queue.create("t", 6).priority(5).delay("1ms").await.unwrap());
    handles.push(queue.create("t", 5).priority(5).await.unwrap());
    tokio::time::advance(Duration::from_millis(5)).await;
    queue.process(["tag"]).start().unwrap();
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    assert_eq!(trace.items(), vec![0, 1, 2, 3, 4, 5, 6]);
}

#[actix_rt::test(system = "crate::Paused")]
async fn worker_returns_to_its_first_tag_after_every_job() {
    let queue = Queue::new();
    let trace = Trace::default();
    recorder(&queue, "low", "b", &trace);
    let hi_trace = trace.clone();
    let q2 = queue.clone();
    let spawned: Trace<kessel::JobId> = Trace::default();
    let sp = spawned.clone();
    // The first "b" job creates an "a" job while it runs: it must run next,
    // before the remaining "b" jobs.
    queue
        .define("spawner")
        .tag("b")
        .action(move |job: Ctx<u32>| {
            let (t, q, sp) = (hi_trace.clone(), q2.clone(), sp.clone());
            async move {
                t.push(job.payload);
                let high = q.create("high", 100).await.map_err(JobError::fatal)?;
                sp.push(high.id());
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    recorder(&queue, "high", "a", &trace);
    let mut handles = vec![queue.create("spawner", 10).await.unwrap()];
    for n in 11..14 {
        handles.push(queue.create("low", n).await.unwrap());
    }
    for n in 1..3 {
        handles.push(queue.create("high", n).await.unwrap());
    }
    queue.process(["a", "b"]).start().unwrap();
    for h in &handles {
        h.result().await.unwrap();
    }
    // the job spawned inside the handler too: its result, not a timer
    for id in spawned.items() {
        queue.result(id).await.unwrap();
    }
    assert_eq!(trace.items(), vec![1, 2, 10, 100, 11, 12, 13]);
}

#[actix_rt::test(system = "crate::Paused")]
async fn concurrency_limit_is_never_exceeded() {
    let queue = Queue::new();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    queue
        .define("slow")
        .action(move |job: Ctx<u64>| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(job.payload % 7 + 1)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).concurrency(3).start().unwrap();
    let handles = queue
        .create_many((0..50).map(|n| NewJob::new("slow", n)))
        .await
        .unwrap();
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "uses all three slots and never more"
    );
}

/// Jobs that finish on their first poll are settled by the scheduler
/// itself, one after another; a long run of them still leaves the other
/// tasks on the thread a turn every few hundred jobs.
#[actix_rt::test(system = "crate::Paused")]
async fn a_long_run_of_instant_jobs_leaves_other_tasks_a_turn() {
    let queue = Queue::new();
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    queue
        .define("instant")
        .action(move |_: Ctx<()>| {
            d.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, JobError>(()))
        })
        .unwrap();
    let handles = queue
        .create_many((0..10_000).map(|_| NewJob::new("instant", ())))
        .await
        .unwrap();
    queue.process(["default"]).start().unwrap();
    // The scheduler takes the jobs in, starts the worker and runs jobs.
    let mut turns = 0;
    while done.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
        turns += 1;
        assert!(turns < 1000, "no job ran");
    }
    let seen = done.load(Ordering::SeqCst);
    assert!(
        seen < 10_000,
        "this task got a turn only after all {seen} jobs ran"
    );
    handles.last().unwrap().result().await.unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 10_000);
}
