//! Events across processes on PostgreSQL: queues on one schema, each with
//! a store of its own (a node, as a process is), see each other's events
//! through the shared event log.
//!
//! Every wait here awaits events or polls the database with a deadline
//! that fails the test; nothing sleeps a fixed time to let things happen.
#![cfg(feature = "postgres")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::pg;
use futures::StreamExt;
use kessel::event::{Event, EventStream, Filter, QueueEvent};
use kessel::{JobContext, JobError, JobId, Queue};

const LEASE: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(60);

async fn queue(db: &pg::TestDb, name: &str) -> Queue {
    let store = kessel::store::PgStore::connect_with(
        db.options()
            .lease(LEASE)
            .application_name(format!("{}-{name}", db.schema)),
    )
    .await
    .expect("connect the store");
    Queue::builder()
        .store(Arc::new(store))
        .build()
        .await
        .expect("build the queue")
}

fn define_work(queue: &Queue) {
    queue
        .define("work")
        .action(|ctx: JobContext<u32>| async move {
            ctx.progress(1, 2);
            Ok::<_, JobError>(ctx.payload * 2)
        })
        .expect("define work");
}

/// The kinds of each of `ids`' events, in the order received, until
/// each has a final one; fails on a `Lagged`.
async fn collect(
    events: &mut EventStream,
    jobs: &[JobId],
) -> HashMap<JobId, Vec<(String, uuid::Uuid)>> {
    collect_on(events, jobs, None).await
}

/// [`collect`], telling the stored state of the unfinished jobs on failure.
async fn collect_on(
    events: &mut EventStream,
    ids: &[JobId],
    queue: Option<&Queue>,
) -> HashMap<JobId, Vec<(String, uuid::Uuid)>> {
    let wanted: std::collections::HashSet<JobId> = ids.iter().copied().collect();
    let jobs = wanted.len();
    let mut seen: HashMap<JobId, Vec<(String, uuid::Uuid)>> = HashMap::new();
    let mut ended = 0;
    let until = tokio::time::Instant::now() + DEADLINE;
    while ended < jobs {
        let Ok(event) = tokio::time::timeout_at(until, events.next()).await else {
            let mut unfinished = Vec::new();
            for (id, kinds) in &seen {
                if kinds.last().is_none_or(|(k, _)| k != "completed") {
                    let stored = match queue {
                        Some(q) => format!("{:?}", q.job(*id).await.map(|j| (j.status, j.logs))),
                        None => String::new(),
                    };
                    unfinished.push(format!("{id}: {kinds:?} stored {stored}"));
                }
            }
            panic!("{ended} of {jobs} jobs ended before the deadline: {unfinished:#?}");
        };
        let event = event.expect("the stream goes on");
        match event {
            Event::Job(e) => {
                let node = e.node.expect("a relayed event names its node");
                if !wanted.contains(&e.id) {
                    continue;
                }
                if e.kind.is_final() {
                    ended += 1;
                }
                seen.entry(e.id)
                    .or_default()
                    .push((e.kind.name().to_owned(), node));
            }
            Event::Lagged { missed } => panic!("missed {missed} events"),
            Event::Queue(_) | Event::Remote { .. } => {}
        }
    }
    seen
}

fn node_of(queue: &Queue) -> uuid::Uuid {
    queue.node_id()
}

fn kinds(events: &[(String, uuid::Uuid)]) -> Vec<&str> {
    events.iter().map(|(k, _)| k.as_str()).collect()
}

#[actix_rt::test]
async fn a_subscriber_sees_every_event_of_jobs_another_process_runs_in_order() {
    let Some(db) = pg::fresh().await else { return };
    let producer = queue(&db, "producer").await;
    let worker = queue(&db, "worker").await;
    define_work(&worker);
    worker.process(["default"]).concurrency(8).start().unwrap();
    let mut events = producer.events(Filter::All);
    until_worker_relays(&producer, &mut events).await;
    let mut ids = Vec::new();
    for n in 0..50u32 {
        ids.push(producer.create("work", n).await.unwrap().id());
    }
    let seen = collect(&mut events, &ids).await;
    let (p, w) = (node_of(&producer), node_of(&worker));
    for id in &ids {
        let job = &seen[id];
        assert_eq!(
            kinds(job),
            ["created", "started", "progress", "completed"],
            "job {id}"
        );
        assert_eq!(job[0].1, p, "created where it was created");
        assert!(job[1..].iter().all(|(_, n)| *n == w), "run where it ran");
    }
    db.drop().await;
}

#[actix_rt::test]
async fn a_worker_sees_a_created_event_from_elsewhere_before_it_starts_the_job() {
    let Some(db) = pg::fresh().await else { return };
    let producer = queue(&db, "producer").await;
    let worker = queue(&db, "worker").await;
    define_work(&worker);
    // The worker's own subscriber: its local events come from the log
    // too, after the producer's `created` that the log holds first.
    let mut events = worker.events(Filter::All);
    until_relayed(&producer, &mut events).await;
    worker.process(["default"]).concurrency(16).start().unwrap();
    let ids: Vec<JobId> = producer
        .create_many((0..200u32).map(|n| kessel::NewJob::new("work", n)))
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.id())
        .collect();
    let seen = collect(&mut events, &ids).await;
    for id in &ids {
        assert_eq!(
            kinds(&seen[id]),
            ["created", "started", "progress", "completed"]
        );
    }
    db.drop().await;
}

#[actix_rt::test]
async fn the_result_of_a_job_another_process_runs_arrives_through_its_events() {
    let Some(db) = pg::fresh().await else { return };
    let producer = queue(&db, "producer").await;
    let worker = queue(&db, "worker").await;
    define_work(&worker);
    worker.process(["default"]).start().unwrap();
    let handle = producer.create("work", 21u32).await.unwrap();
    let result = tokio::time::timeout(DEADLINE, handle.result())
        .await
        .expect("the result before the deadline")
        .unwrap();
    assert_eq!(result.value, Some(serde_json::json!(42)));
    db.drop().await;
}

#[actix_rt::test]
async fn queue_events_of_another_process_arrive_marked_remote() {
    let Some(db) = pg::fresh().await else { return };
    let watcher = queue(&db, "watcher").await;
    let mut events = watcher.events(Filter::All);
    let other = queue(&db, "other").await;
    let other_node = node_of(&other);
    // The other process hears of the listener, then defines tasks until
    // one definition reaches the watcher (the first may come before).
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut n = 0;
    loop {
        let name = format!("task-{n}");
        other
            .define(&name)
            .action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })
            .unwrap();
        n += 1;
        let got = tokio::time::timeout(Duration::from_millis(200), async {
            while let Some(event) = events.next().await {
                if let Event::Remote {
                    node,
                    event: QueueEvent::TaskDefined { task, .. },
                } = event
                {
                    return Some((node, task));
                }
            }
            None
        })
        .await;
        if let Ok(Some((node, task))) = got {
            assert_eq!(node, other_node);
            assert!(task.starts_with("task-"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no remote queue event arrived"
        );
    }
    db.drop().await;
}

/// Polls the store until job `id` is final (no events: nobody may listen).
async fn wait_final(queue: &Queue, id: JobId) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        if queue.job(id).await.unwrap().status.is_final() {
            return;
        }
        assert!(tokio::time::Instant::now() < until, "job {id} never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `producer` relays to the process whose subscriber
/// `events` is: creates jobs of a task nobody serves until one's
/// `created` arrives there. A process learns of a new listener from a
/// notification; events it wrote before are not relayed.
async fn until_relayed(producer: &Queue, events: &mut EventStream) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let probe = producer.create("probe", ()).await.unwrap().id();
        let got = tokio::time::timeout(Duration::from_millis(200), async {
            while let Some(event) = events.next().await {
                if matches!(&event, Event::Job(e) if e.id == probe) {
                    return true;
                }
            }
            false
        })
        .await;
        if got == Ok(true) {
            return;
        }
        assert!(tokio::time::Instant::now() < until, "nothing was relayed");
    }
}

/// Waits until the process running `work` jobs relays to the subscriber
/// `events` (in `producer`'s process): creates jobs until one's `started`
/// arrives there, then lets every probe end.
async fn until_worker_relays(producer: &Queue, events: &mut EventStream) {
    let until = tokio::time::Instant::now() + DEADLINE;
    let mut probes = std::collections::HashSet::new();
    let mut heard = false;
    while !heard {
        assert!(
            tokio::time::Instant::now() < until,
            "the worker never relayed"
        );
        probes.insert(producer.create("work", 0u32).await.unwrap().id());
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while let Some(event) = events.next().await {
                if matches!(&event, Event::Job(e) if e.kind.name() == "started") {
                    heard = true;
                    return;
                }
            }
        })
        .await;
    }
    for id in probes {
        wait_final(producer, id).await;
    }
    // What the probes sent is not what the test looks at.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), events.next()).await {}
}

async fn log_rows(db: &pg::TestDb) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.event_log",
        db.schema
    )))
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[actix_rt::test]
async fn nothing_is_written_to_the_log_while_nobody_listens() {
    let Some(db) = pg::fresh().await else { return };
    let producer = queue(&db, "producer").await;
    let worker = queue(&db, "worker").await;
    define_work(&worker);
    worker.process(["default"]).concurrency(8).start().unwrap();
    for n in 0..20u32 {
        producer
            .create("work", n)
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
    }
    // `result()` listened while it waited; once every wait is over and
    // the listeners are gone, new jobs write nothing.
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let listeners: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}.event_listeners",
            db.schema
        )))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if listeners == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "listeners never left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every process hears that nobody listens any more: a job then
    // writes no row.
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let before = log_rows(&db).await;
        let probe = producer.create("work", 0u32).await.unwrap().id();
        wait_final(&producer, probe).await;
        if log_rows(&db).await == before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the log was still written"
        );
    }
    let before = log_rows(&db).await;
    let mut ids = Vec::new();
    for n in 0..20u32 {
        ids.push(producer.create("work", n).await.unwrap().id());
    }
    for id in ids {
        wait_final(&producer, id).await;
    }
    assert_eq!(
        log_rows(&db).await,
        before,
        "rows written while nobody listened"
    );
    db.drop().await;
}

#[actix_rt::test]
async fn a_subscriber_misses_nothing_when_its_connections_are_cut() {
    let Some(db) = pg::fresh().await else { return };
    let producer = queue(&db, "producer").await;
    let worker = queue(&db, "worker").await;
    define_work(&worker);
    worker.process(["default"]).concurrency(8).start().unwrap();
    let mut events = producer.events(Filter::All);
    until_worker_relays(&producer, &mut events).await;
    let mut ids = Vec::new();
    for n in 0..30u32 {
        ids.push(producer.create("work", n).await.unwrap().id());
    }
    // Cut every connection of both processes (their pools reconnect; the
    // reader goes on from its position), then create more.
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE $1",
    )
    .bind(format!("{}-%", db.schema))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(cut > 0, "no connection was cut");
    for n in 30..60u32 {
        loop {
            match producer.create("work", n).await {
                Ok(h) => {
                    ids.push(h.id());
                    break;
                }
                // A create on a connection cut under it fails; try again.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    let seen = collect_on(&mut events, &ids, Some(&producer)).await;
    for id in &ids {
        let kinds = kinds(&seen[id]);
        assert_eq!(kinds.first(), Some(&"created"), "job {id}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"completed"), "job {id}: {kinds:?}");
    }
    db.drop().await;
}

#[actix_rt::test]
async fn events_pruned_before_a_reader_read_them_reach_it_as_lagged() {
    let Some(db) = pg::fresh().await else { return };
    let watcher = queue(&db, "watcher").await;
    let mut events = watcher.events(Filter::All);
    // Once the watcher is positioned (its listener row exists), mark the
    // log pruned past it, as a prune does when a reader was away too long.
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}.event_listeners",
            db.schema
        )))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if n > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the watcher never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {}.event_log_pruned SET upto_xid = pg_current_xact_id(), upto_seq = 0, events = events + 7",
        db.schema
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    // A write wakes the reader at once.
    watcher.create("nobody serves this", ()).await.unwrap();
    let missed = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.next().await {
            if let Event::Lagged { missed } = event {
                return missed;
            }
        }
        0
    })
    .await
    .expect("a Lagged before the deadline");
    assert_eq!(missed, 7);
    db.drop().await;
}

#[actix_rt::test]
async fn a_job_created_after_subscribing_has_every_event_relayed() {
    let Some(db) = pg::fresh().await else { return };
    let producer = queue(&db, "producer").await;
    let worker = queue(&db, "worker").await;
    define_work(&worker);
    worker.process(["default"]).concurrency(4).start().unwrap();
    // Nobody listened before: the worker relays nothing until it hears of
    // this subscription, which it does before it hears of the job.
    let (handle, mut events) = producer.create("work", 1u32).events().await.unwrap();
    let seen = collect(&mut events, &[handle.id()]).await;
    assert_eq!(
        kinds(&seen[&handle.id()]),
        ["created", "started", "progress", "completed"]
    );
    db.drop().await;
}

#[actix_rt::test]
async fn a_worker_that_starts_while_somebody_listens_relays_its_first_jobs() {
    let Some(db) = pg::fresh().await else { return };
    let producer = queue(&db, "producer").await;
    // Created and listened for before any worker runs.
    let (handle, mut events) = producer.create("work", 1u32).events().await.unwrap();
    // The worker cannot read who listens until its job has ended: it
    // must relay a job it claims before it knows whether anyone listens.
    let mut hold = db.pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {}.event_listeners IN ACCESS EXCLUSIVE MODE",
        db.schema
    )))
    .execute(&mut *hold)
    .await
    .unwrap();
    let worker = queue(&db, "worker").await;
    define_work(&worker);
    // Its first claim finds the job, before its listener hears anything.
    worker.process(["default"]).concurrency(4).start().unwrap();
    wait_final(&producer, handle.id()).await;
    hold.commit().await.unwrap();
    let seen = collect(&mut events, &[handle.id()]).await;
    assert_eq!(
        kinds(&seen[&handle.id()]),
        ["created", "started", "progress", "completed"]
    );
    db.drop().await;
}

#[actix_rt::test]
async fn the_log_is_pruned_once_every_listener_has_read_it() {
    let Some(db) = pg::fresh().await else { return };
    let store = kessel::store::PgStore::connect_with(
        db.options()
            .lease(LEASE)
            .event_log_kept(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let queue = Queue::builder()
        .store(Arc::new(store))
        .build()
        .await
        .unwrap();
    define_work(&queue);
    queue.process(["default"]).concurrency(4).start().unwrap();
    let mut events = queue.events(Filter::All);
    let ids: Vec<JobId> = queue
        .create_many((0..20u32).map(|n| kessel::NewJob::new("work", n)))
        .await
        .unwrap()
        .iter()
        .map(|h| h.id())
        .collect();
    collect(&mut events, &ids).await;
    assert!(log_rows(&db).await > 0, "the events went through the log");
    // Read by the only listener, and older than a second: pruned, and
    // counted as pruned.
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        let pruned: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT events FROM {}.event_log_pruned",
            db.schema
        )))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if log_rows(&db).await == 0 {
            assert!(pruned >= 80, "{pruned} events counted as pruned");
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the log was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing pruned reached the subscriber as missed: it had read it all.
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(100), events.next()).await
    {
        assert!(!matches!(event, Event::Lagged { .. }), "{event:?}");
    }
    db.drop().await;
}
