//! Events: order over a job's life, per-task/per-job/queue-wide
//! subscriptions, actix recipients, lagging subscribers, queue events, and
//! logs and progress stored with the job.

mod common;

use std::time::Duration;

use actix::prelude::*;
use common::{pause, Trace};
use futures::StreamExt;
use kessel::event::{Event, Filter, JobEventKind, QueueEvent};
use kessel::{JobContext, JobError, JobStatus, Queue, RetryPolicy};

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Job(j) => Some(j.kind.name()),
            _ => None,
        })
        .collect()
}

async fn until_final(stream: &mut kessel::event::EventStream) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Some(event) = stream.next().await {
        let done = matches!(&event, Event::Job(j) if j.kind.is_final());
        seen.push(event);
        if done {
            break;
        }
    }
    seen
}

#[actix_rt::test]
async fn one_jobs_events_follow_its_whole_life_in_order() {
    pause();
    let queue = Queue::new();
    let mut events = queue.events(Filter::Task("import".into()));
    queue
        .define("import")
        .tag("data")
        .retry(
            RetryPolicy::exponential(3)
                .base_delay(Duration::from_secs(1))
                .jitter(0.0),
        )
        .action(|job: JobContext<u32>| async move {
            job.progress(1, 2);
            job.log("halfway", serde_json::json!({ "rows": job.payload }));
            if job.attempt() == 1 {
                return Err(JobError::transient("lost connection"));
            }
            job.progress(2, 2);
            Ok(job.payload)
        })
        .unwrap();
    queue.process(["data"]).start().unwrap();
    let handle = queue.create("import", 7).delay("5s").await.unwrap();
    let seen = until_final(&mut events).await;
    assert_eq!(
        kinds(&seen),
        [
            "created",
            "scheduled",
            "started",
            "progress",
            "log",
            "failed",
            "retrying",
            "started",
            "progress",
            "log",
            "progress",
            "completed"
        ]
    );
    for event in &seen {
        let Event::Job(e) = event else {
            panic!("only job events on a task subscription")
        };
        assert_eq!(e.id, handle.id());
        assert_eq!(&*e.task, "import");
        assert_eq!(e.tag.as_deref(), Some("data"));
    }
    let attempts: Vec<u32> = seen
        .iter()
        .map(|e| match e {
            Event::Job(j) => j.attempt,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(attempts, [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    let Event::Job(last) = seen.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(
        last.kind,
        JobEventKind::Completed {
            value: Some(serde_json::json!(7))
        }
    );
}

#[actix_rt::test]
async fn logs_and_progress_are_stored_with_the_job() {
    pause();
    let queue = Queue::new();
    queue
        .define("report")
        .action(|job: JobContext<()>| async move {
            job.log("fetched rows", serde_json::json!({ "count": 3 }));
            job.progress(3, 3);
            Ok::<_, JobError>(())
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let h = queue.create("report", ()).await.unwrap();
    h.result().await.unwrap();
    let job = queue.job(h.id()).await.unwrap();
    let lines: Vec<(&str, u32)> = job.logs.iter().map(|l| (&*l.message, l.attempt)).collect();
    assert_eq!(
        lines,
        [
            ("created", 0),
            ("started", 1),
            ("fetched rows", 1),
            ("completed", 1)
        ]
    );
    assert_eq!(job.logs[2].data, Some(serde_json::json!({ "count": 3 })));
    assert_eq!(
        job.progress,
        Some(kessel::Progress {
            current: 3,
            total: 3
        })
    );
}

#[actix_rt::test]
async fn kessel_logs_failures_timeouts_and_burial_on_the_job() {
    pause();
    let queue = Queue::new();
    queue
        .define("slow")
        .timeout("1s")
        .retry(
            RetryPolicy::exponential(2)
                .base_delay(Duration::from_secs(1))
                .jitter(0.0),
        )
        .action(|_: JobContext<()>| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, JobError>(())
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let h = queue.create("slow", ()).await.unwrap();
    assert_eq!(h.result().await.unwrap().status, JobStatus::Buried);
    let job = queue.job(h.id()).await.unwrap();
    let lines: Vec<&str> = job.logs.iter().map(|l| &*l.message).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], "created");
    assert_eq!(lines[1], "started");
    assert!(
        lines[2].starts_with("failed: timed out after 1s; retrying in"),
        "{lines:?}"
    );
    assert_eq!(lines[3], "started");
    assert!(
        lines[4].starts_with("buried: timed out after 1s (attempt 2 of 2"),
        "{lines:?}"
    );
}

#[actix_rt::test]
async fn a_job_subscription_ends_with_the_job() {
    pause();
    let queue = Queue::new();
    queue
        .define("quick")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    let h = queue.create("quick", ()).delay("1s").await.unwrap();
    let events = queue.events(Filter::Job(h.id()));
    queue.process(["default"]).start().unwrap();
    let all: Vec<Event> = events.collect().await;
    assert_eq!(kinds(&all), ["started", "completed"]);
}

#[actix_rt::test]
async fn a_subscriber_that_never_reads_never_stalls_scheduling() {
    pause();
    let queue = Queue::new();
    let mut stuck = queue.events_with_buffer(Filter::All, 4);
    queue
        .define("noop")
        .action(|_: JobContext<u32>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue.process(["default"]).concurrency(8).start().unwrap();
    let handles = queue
        .create_many((0..1000).map(|n| kessel::NewJob::new("noop", n)))
        .await
        .unwrap();
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    let missed = queue.events_missed();
    // 1000 jobs × (created, started, completed) plus queue events, 4 buffered.
    assert!(missed >= 3000 - 4, "missed {missed}");
    assert_eq!(queue.stats().await.unwrap().events_missed, missed);
    let mut buffered = Vec::new();
    for _ in 0..4 {
        buffered.push(stuck.next().await.unwrap());
    }
    assert!(buffered.iter().all(|e| !matches!(e, Event::Lagged { .. })));
    // Room again: the next delivery starts with the lag marker.
    queue.create("noop", 1).await.unwrap();
    match stuck.next().await.unwrap() {
        Event::Lagged { missed: n } => assert_eq!(n, missed),
        other => panic!("expected the lag marker, got {other:?}"),
    }
    assert!(
        matches!(stuck.next().await.unwrap(), Event::Job(j) if j.kind == JobEventKind::Created)
    );
}

/// The scheduler settles hundreds of instant jobs in one turn of its
/// own; a subscriber on the same thread that reads as it goes takes all
/// that its buffer holds in its next turn, and so misses nothing. (On the
/// paused clock the scheduler and its handlers run on the test's thread;
/// a subscriber on another thread than the scheduler's may lag in such a
/// burst, and is told how much it missed.)
#[actix_rt::test]
async fn a_subscriber_reading_as_it_goes_keeps_up_with_a_burst() {
    const JOBS: usize = 3000;
    pause();
    let queue = Queue::new();
    queue
        .define("noop")
        .action(|_: JobContext<u32>| async { Ok::<_, JobError>(()) })
        .unwrap();
    let handles = queue
        .create_many((0..JOBS as u32).map(|n| kessel::NewJob::new("noop", n)))
        .await
        .unwrap();
    let mut stream = queue.events(Filter::All);
    let reader = actix_rt::spawn(async move {
        let mut job_events = 0;
        while let Some(event) = stream.next().await {
            match event {
                Event::Job(_) => job_events += 1,
                Event::Lagged { missed } => panic!("missed {missed} events"),
                Event::Queue(_) | Event::Remote { .. } => {}
            }
            if job_events == 2 * JOBS {
                break;
            }
        }
        job_events
    });
    queue.process(["default"]).concurrency(16).start().unwrap();
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    assert_eq!(queue.events_missed(), 0);
    // Started and completed, for every job.
    assert_eq!(reader.await.unwrap(), 2 * JOBS);
}

/// Queue-wide subscribers each get every event (the last one is handed
/// the event itself, the others a copy), and one that went away is
/// dropped without costing the others theirs.
#[actix_rt::test]
async fn every_queue_wide_subscriber_gets_every_event() {
    let queue = Queue::new();
    queue
        .define("noop")
        .action(|_: JobContext<u32>| async { Ok::<_, JobError>(()) })
        .unwrap();
    let mut first = queue.events(Filter::All);
    let mut second = queue.events(Filter::All);
    let gone = queue.events(Filter::All);
    drop(gone);
    queue.process(["default"]).start().unwrap();
    queue.create("noop", 1).await.unwrap();
    let (a, b) = (
        until_final(&mut first).await,
        until_final(&mut second).await,
    );
    assert_eq!(kinds(&a), ["created", "started", "completed"]);
    assert_eq!(kinds(&a), kinds(&b));
    assert_eq!(queue.events_missed(), 0);
}

#[actix_rt::test]
async fn queue_events_announce_tasks_drains_and_empty_workers() {
    pause();
    let queue = Queue::new();
    let mut events = queue.events(Filter::All);
    queue
        .define("t")
        .tag("only")
        .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue.process(["only"]).start().unwrap();
    queue.create("t", ()).await.unwrap().result().await.unwrap();
    let mut queue_events = Vec::new();
    while queue_events.len() < 4 {
        if let Event::Queue(q) = events.next().await.unwrap() {
            queue_events.push(q);
        }
    }
    // `drained` comes from the producer, the others from the scheduler:
    // their relative order is not fixed, the scheduler's own order is.
    assert_eq!(
        queue_events
            .iter()
            .filter(|e| **e == QueueEvent::Drained)
            .count(),
        1
    );
    let from_supervisor: Vec<&QueueEvent> = queue_events
        .iter()
        .filter(|e| **e != QueueEvent::Drained)
        .collect();
    let empty = QueueEvent::Empty {
        tags: vec!["only".into()],
    };
    let defined = QueueEvent::TaskDefined {
        task: "t".into(),
        tag: "only".into(),
    };
    assert_eq!(from_supervisor, [&defined, &empty, &empty]);
}

/// An actor in the user's service that collects events.
struct Collector(Trace<Event>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Event> for Collector {
    type Result = ();
    fn handle(&mut self, event: Event, _: &mut Self::Context) {
        self.0.push(event);
    }
}

#[actix_rt::test]
async fn an_actor_receives_a_tasks_events_until_it_unsubscribes() {
    pause();
    let queue = Queue::new();
    let trace = Trace::default();
    let collector = Collector(trace.clone()).start();
    let subscription = queue.subscribe(Filter::Task("t".into()), collector.recipient());
    queue
        .define("t")
        .action(|job: JobContext<()>| async move {
            job.log("hello", ());
            Ok::<_, JobError>(())
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    queue.create("t", ()).await.unwrap().result().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        kinds(&trace.items()),
        ["created", "started", "log", "completed"]
    );
    drop(subscription);
    queue.create("t", ()).await.unwrap().result().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(trace.items().len(), 4, "no events after unsubscribing");
}

#[actix_rt::test]
async fn dropping_a_stream_unsubscribes() {
    pause();
    let queue = Queue::new();
    let events = queue.events(Filter::All);
    drop(events);
    queue.create("t", ()).await.unwrap();
    queue.create("t", ()).await.unwrap();
    assert_eq!(
        queue.events_missed(),
        0,
        "a closed subscriber is removed, not counted as lagging"
    );
}

#[actix_rt::test]
async fn a_kicked_job_announces_it_and_runs_again() {
    pause();
    let queue = Queue::new();
    let mut events = queue.events(Filter::Task("once broken".into()));
    let fixed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fixed.clone();
    queue
        .define("once broken")
        .retry(RetryPolicy::none())
        .action(move |_: JobContext<()>| {
            let f = f.clone();
            async move {
                if !f.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(JobError::fatal("broken"));
                }
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let h = queue.create("once broken", ()).await.unwrap();
    assert_eq!(
        kinds(&until_final(&mut events).await),
        ["created", "started", "failed", "buried"]
    );
    fixed.store(true, std::sync::atomic::Ordering::SeqCst);
    queue.kick(h.id()).await.unwrap();
    assert_eq!(
        kinds(&until_final(&mut events).await),
        ["kicked", "started", "completed"]
    );
}
