//! Recurring jobs across processes on one PostgreSQL schema: several
//! queues, each with a store (a pool of connections) of its own, as
//! several processes would have, race over the same schedule.
#![cfg(all(feature = "postgres", feature = "cron"))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::pg;
use kessel::schedule::{Schedule, Upserted};
use kessel::store::{JobQuery, Order, PgStore, Store};
use kessel::Queue;

async fn queue_on(db: &pg::TestDb, manual: bool) -> Queue {
    let store = PgStore::connect_with(db.options().max_connections(4))
        .await
        .expect("connect the store");
    let builder = Queue::builder().store(Arc::new(store));
    let builder = if manual {
        builder.manual_schedules()
    } else {
        builder
    };
    builder.build().await.expect("build the queue")
}

/// A queue on `db` whose store holds leases of `lease`, running its own
/// schedule passes unless `manual`.
async fn queue_leasing(db: &pg::TestDb, lease: Duration, manual: bool) -> Queue {
    let builder = Queue::builder().store(Arc::new(db.store(lease).await));
    let builder = if manual {
        builder.manual_schedules()
    } else {
        builder
    };
    builder.build().await.expect("build the queue")
}

async fn stored_jobs(db: &pg::TestDb, task: &str) -> Vec<kessel::Job> {
    let store = db.store(Duration::from_secs(30)).await;
    let jobs = store
        .jobs_query(
            &JobQuery::default()
                .task(task)
                .order(Order::OldestFirst)
                .limit(100_000),
        )
        .await
        .expect("query the jobs");
    store.close().await.expect("close");
    jobs
}

/// Six queues pass over the same schedule at the same times, all at once,
/// for 60 ticks: every tick gets exactly one job, from whichever queue won
/// its compare-and-set; the others find it taken.
#[actix_rt::test]
async fn racing_passes_of_six_queues_enqueue_each_tick_exactly_once() {
    let Some(db) = pg::fresh().await else { return };
    let mut queues = Vec::new();
    for _ in 0..6 {
        queues.push(queue_on(&db, true).await);
    }
    let start = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let define = || Schedule::every("race", "race", "1s").start_at(start);
    let mut created = 0;
    for queue in &queues {
        if queue.schedules().upsert(define()).await.unwrap() == Upserted::Created {
            created += 1;
        }
    }
    assert_eq!(
        created, 1,
        "one queue created it, the others found it unchanged"
    );

    let ticks = 60;
    for k in 0..ticks {
        let now = start + chrono::Duration::seconds(k);
        let passes = futures::future::join_all(
            queues
                .iter()
                .map(|q| async move { q.schedules().service().run_once(now).await.unwrap() }),
        )
        .await;
        let enqueued: usize = passes.iter().map(|p| p.enqueued.len()).sum();
        let taken: usize = passes.iter().map(|p| p.taken.len()).sum();
        assert_eq!(enqueued, 1, "tick {k}: {passes:?}");
        // A pass that read the schedule after the winner's commit saw it
        // not due yet: neither enqueued nor taken.
        assert!(enqueued + taken <= queues.len(), "tick {k}: {passes:?}");
    }

    let jobs = stored_jobs(&db, "race").await;
    assert_eq!(jobs.len(), ticks as usize, "one job per tick");
    let due: BTreeSet<_> = jobs.iter().map(|j| j.run_at).collect();
    assert_eq!(due.len(), ticks as usize, "no tick twice");
    let info = queues[0].schedules().get("race").await.unwrap();
    assert_eq!(info.next_run, start + chrono::Duration::seconds(ticks));
    for queue in &queues {
        queue.shutdown(Duration::from_secs(1)).await.unwrap();
    }
    db.drop().await;
}

/// Three queues with their schedule timers running, on the real clock,
/// serve an every-second schedule for about three seconds: the jobs are
/// one per tick, none twice, and a tick is left out only when the pass
/// before it came a whole tick late.
#[actix_rt::test]
async fn three_live_queues_enqueue_an_every_second_schedule_once_per_tick() {
    let Some(db) = pg::fresh().await else { return };
    let mut queues = Vec::new();
    for _ in 0..3 {
        let queue = queue_on(&db, false).await;
        queue
            .schedules()
            .upsert(Schedule::every("live", "live", "1s"))
            .await
            .unwrap();
        queues.push(queue);
    }
    // Bounded: until four ticks have their jobs, or 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let jobs = stored_jobs(&db, "live").await;
        if jobs.len() >= 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} jobs after 10 s",
            jobs.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for queue in &queues {
        queue.shutdown(Duration::from_secs(1)).await.unwrap();
    }
    let mut jobs = stored_jobs(&db, "live").await;
    jobs.sort_by_key(|job| job.run_at);
    let mut per_tick: BTreeMap<_, usize> = BTreeMap::new();
    for job in &jobs {
        *per_tick.entry(job.run_at).or_default() += 1;
    }
    assert!(
        per_tick.values().all(|&n| n == 1),
        "a tick twice: {per_tick:?}"
    );
    // A tick is missing only where the schedule's default `RunOnce` asks
    // for it: the pass that served the tick before came when the missing
    // one was already due (a loaded machine), and that one job stood for
    // both. A pass on time never leaves one out.
    let one = chrono::Duration::seconds(1);
    for pair in jobs.windows(2) {
        let (served, next) = (&pair[0], &pair[1]);
        let gap = next.run_at - served.run_at;
        assert!(
            gap >= one && gap.num_milliseconds() % 1000 == 0,
            "ticks a whole number of seconds apart: {per_tick:?}"
        );
        if gap > one {
            assert!(
                served.created_at >= served.run_at + one,
                "the tick after {} missing, though its job came on time at {}: {per_tick:?}",
                served.run_at,
                served.created_at
            );
        }
    }
    db.drop().await;
}

/// Waits (real time, bounded) until `done` holds.
async fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An hourly schedule named `name` (of the task `name`) whose first tick
/// came five minutes ago: overdue, so a pass enqueues one job for it.
fn overdue(name: &str) -> Schedule {
    Schedule::every(name, name, "1h").start_at(Utc::now() - chrono::Duration::minutes(5))
}

/// The stored jobs of `task` once there are any, waiting (real time,
/// polling the table) at most `limit` after `since`; `what` names the
/// failure.
async fn first_jobs(
    db: &pg::TestDb,
    task: &str,
    since: std::time::Instant,
    limit: Duration,
    what: impl Fn() -> String,
) -> Vec<kessel::Job> {
    loop {
        let jobs = stored_jobs(db, task).await;
        if !jobs.is_empty() {
            return jobs;
        }
        assert!(since.elapsed() < limit, "{} within {limit:?}", what());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On a shared store the leader runs the schedule passes: a process that
/// does not lead never enqueues a tick, even one due long ago; once the
/// leader leaves, it leads and runs the tick itself — with no schedule
/// ever defined or started in it.
#[actix_rt::test]
async fn only_the_leader_runs_schedule_passes_and_a_new_leader_takes_them_over() {
    let Some(db) = pg::fresh().await else { return };
    // Long enough that a stalled renewal on a loaded machine does not end
    // the leader's term early (a term is two thirds of it); failover does
    // not wait for it: a leader that shuts down gives its term up.
    let lease = Duration::from_secs(9);
    // The leader runs schedules by hand only, so nothing ticks while it leads.
    let leader = queue_leasing(&db, lease, true).await;
    eventually("the first queue leads", Duration::from_secs(10), || {
        leader.is_leader()
    })
    .await;
    let follower = queue_leasing(&db, lease, false).await;
    leader.schedules().upsert(overdue("overdue")).await.unwrap();

    // The follower's timer looks every second; give it three looks.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        leader.is_leader(),
        "the premise: the first queue still leads"
    );
    assert!(!follower.is_leader());
    assert!(
        stored_jobs(&db, "overdue").await.is_empty(),
        "a process that does not lead ran a pass"
    );

    // The leader leaves; the follower leads within a lease and ticks.
    leader.shutdown(Duration::from_secs(1)).await.unwrap();
    let left = std::time::Instant::now();
    let jobs = first_jobs(&db, "overdue", left, Duration::from_secs(30), || {
        format!("a pass by the new leader (leads: {})", follower.is_leader())
    })
    .await;
    assert!(follower.is_leader());
    assert_eq!(jobs.len(), 1, "one job for the overdue tick: {jobs:?}");
    follower.shutdown(Duration::from_secs(1)).await.unwrap();
    db.drop().await;
}

/// A schedule another process adds reaches the leader at once: the
/// upsert notifies every process, and the leader's timer, which between
/// passes waits up to a minute on a store that notifies, runs a pass when
/// told. The bound (20 s, slack for a loaded machine) is well below the
/// minute the timer would otherwise sleep.
#[actix_rt::test]
async fn a_schedule_another_process_adds_is_run_by_the_leader_without_waiting_for_its_poll() {
    let Some(db) = pg::fresh().await else { return };
    let lease = Duration::from_secs(30);
    let leader = queue_leasing(&db, lease, false).await;
    eventually("the first queue leads", Duration::from_secs(10), || {
        leader.is_leader()
    })
    .await;
    // A schedule of its own, overdue: once its job is stored, the leader's
    // timer has run a pass as leader and sleeps until the next tick is
    // near (an hour), at most its longest, a minute.
    leader.schedules().upsert(overdue("local")).await.unwrap();
    let upserted = std::time::Instant::now();
    first_jobs(&db, "local", upserted, Duration::from_secs(10), || {
        "the leader's pass of its own schedule".into()
    })
    .await;
    let other = queue_leasing(&db, lease, true).await;
    let added = std::time::Instant::now();
    other.schedules().upsert(overdue("remote")).await.unwrap();
    let jobs = first_jobs(&db, "remote", added, Duration::from_secs(20), || {
        "the leader's pass after another process's upsert".into()
    })
    .await;
    assert_eq!(jobs.len(), 1, "one job for the overdue tick: {jobs:?}");
    assert!(leader.is_leader() && !other.is_leader());
    other.shutdown(Duration::from_secs(1)).await.unwrap();
    leader.shutdown(Duration::from_secs(1)).await.unwrap();
    db.drop().await;
}

/// Pause and resume hold for the whole queue: a schedule another process
/// pauses gets no tick from the leader from the moment the pause is
/// stored, and once that process resumes it the leader ticks it again.
#[actix_rt::test]
async fn a_schedule_another_process_pauses_stops_ticking_on_the_leader_until_it_resumes() {
    let Some(db) = pg::fresh().await else { return };
    let lease = Duration::from_secs(30);
    let leader = queue_leasing(&db, lease, false).await;
    eventually("the first queue leads", Duration::from_secs(10), || {
        leader.is_leader()
    })
    .await;
    let other = queue_leasing(&db, lease, true).await;
    other
        .schedules()
        .upsert(Schedule::every("beat", "beat", "1s"))
        .await
        .unwrap();
    let upserted = std::time::Instant::now();
    first_jobs(&db, "beat", upserted, Duration::from_secs(10), || {
        "the leader's first tick".into()
    })
    .await;
    other.schedules().pause("beat").await.unwrap();
    // A tick the leader stored before the pause is counted here; none
    // can be stored after it (the advance requires NOT paused).
    let at_pause = stored_jobs(&db, "beat").await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stored_jobs(&db, "beat").await.len(),
        at_pause,
        "no tick while paused, for three of its seconds"
    );
    let info = leader.schedules().get("beat").await.unwrap();
    assert!(info.paused, "the leader sees the pause: {info:?}");
    other.schedules().resume("beat").await.unwrap();
    let resumed = std::time::Instant::now();
    loop {
        if stored_jobs(&db, "beat").await.len() > at_pause {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "a tick after the resume within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(leader.is_leader() && !other.is_leader());
    other.shutdown(Duration::from_secs(1)).await.unwrap();
    leader.shutdown(Duration::from_secs(1)).await.unwrap();
    db.drop().await;
}
