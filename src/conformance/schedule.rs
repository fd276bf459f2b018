//! Recurring jobs on the store under test (feature `cron`): the schedule
//! methods of [`Store`] and a queue's schedules on it.
//!
//! A suite of its own beside [`run_all`](super::run_all): [`run_all`],
//! [`run_one`], [`TESTS`] and
//! [`schedule_conformance_tests!`](crate::schedule_conformance_tests).
//! The queue tests build their queue with
//! [`manual_schedules`](crate::QueueBuilder::manual_schedules) and drive
//! [`ScheduleService::run_once`](crate::schedule::ScheduleService::run_once)
//! with the times they choose (a day in 2026 with a daylight-saving
//! change, a downtime of hours), on a paused clock. A store that keeps no
//! schedules (the trait's defaults) fails them with
//! [`StoreError::Unsupported`](crate::store::StoreError::Unsupported).
//!
//! ```
//! # #[actix_rt::main] async fn main() {
//! use std::sync::Arc;
//! use kessel::store::{MemoryStore, Store};
//! let factory = || async { Arc::new(MemoryStore::new()) as Arc<dyn Store> };
//! let report = kessel::conformance::schedule::run_all(factory).await;
//! assert_eq!(report.passed.len(), kessel::conformance::schedule::TESTS.len());
//! # }
//! ```

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;

use super::fixtures::{fresh, job, micro};
use super::harness::conformance_test;
use super::{Report, StoreFactory, Verdict};
use crate::config::Retention;
use crate::job::{Job, JobId};
use crate::queue::Queue;
use crate::schedule::{Missed, Schedule, Upserted};
use crate::store::{JobQuery, Order, ScheduleAdvance, SchedulePause, ScheduleRecord, Store};

/// A time in UTC.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .unwrap_or_else(|| panic!("{y}-{mo}-{d} {h}:{mi} is a time"))
}

/// A queue on `store` whose schedule passes run only when called.
async fn queue_on<F: StoreFactory>(factory: &F, store: &Arc<dyn Store>) -> Queue {
    factory
        .configure(
            Queue::builder()
                .store(store.clone())
                .retention(Retention::keep_all())
                .manual_schedules(),
        )
        .build()
        .await
        .unwrap_or_else(|e| panic!("building a queue on the store failed: {e}"))
}

/// Every job of `task`, oldest first.
async fn jobs_of(queue: &Queue, task: &str) -> Vec<Job> {
    queue
        .fetch(
            JobQuery::default()
                .task(task)
                .order(Order::OldestFirst)
                .limit(10_000),
        )
        .await
        .unwrap_or_else(|e| panic!("fetching the jobs of {task}: {e}"))
}

async fn upsert(queue: &Queue, schedule: Schedule) -> Upserted {
    queue
        .schedules()
        .upsert(schedule)
        .await
        .unwrap_or_else(|e| panic!("upsert: {e}"))
}

/// Runs passes from `from` to `until`, each at the earliest next run (as
/// the timer does), and returns the times of the passes that enqueued.
async fn drive(queue: &Queue, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let service = queue.schedules().service();
    let mut now = from;
    let mut enqueued_at = Vec::new();
    while now <= until {
        let pass = service
            .run_once(now)
            .await
            .unwrap_or_else(|e| panic!("pass at {now}: {e}"));
        assert!(pass.failed.is_empty(), "pass at {now}: {:?}", pass.failed);
        for _ in &pass.enqueued {
            enqueued_at.push(now);
        }
        match pass.next_wake {
            Some(next) => {
                assert!(
                    next > now,
                    "the next wake {next} is after the pass at {now}"
                );
                now = next;
            }
            None => break,
        }
    }
    enqueued_at
}

conformance_test!(schedule,
    /// An hourly schedule driven over a day gets 24 jobs, one per tick,
    /// each due at its tick and named after it; a second pass at the same
    /// time finds the tick taken and enqueues nothing.
    schedule_a_day_of_hourly_ticks_makes_one_job_per_tick => hourly_day
);

async fn hourly_day<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let start = utc(2026, 6, 1, 0, 30);
    let schedule = Schedule::cron("hourly", "report", "0 * * * *")
        .payload(json!({ "kind": "hourly" }))
        .start_at(start);
    assert_eq!(upsert(&queue, schedule).await, Upserted::Created);
    let runs = drive(&queue, start, utc(2026, 6, 2, 0, 30)).await;
    let hours: Vec<_> = (1..=24)
        .map(|h| utc(2026, 6, 1, 0, 0) + Duration::hours(h))
        .collect();
    assert_eq!(runs, hours, "one pass enqueued at each tick");
    let jobs = jobs_of(&queue, "report").await;
    let due: Vec<_> = jobs.iter().map(|j| j.run_at).collect();
    assert_eq!(due, hours, "one job per tick, due at the tick");
    for j in &jobs {
        assert_eq!(j.payload.to_value().ok(), Some(json!({ "kind": "hourly" })));
        assert_eq!(
            j.reference.as_deref(),
            Some(crate::schedule::tick_reference("hourly", j.run_at).as_str())
        );
    }
    let again = queue
        .schedules()
        .service()
        .run_once(hours[23])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.enqueued.is_empty(), "{again:?}");
    let info = queue
        .schedules()
        .get("hourly")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.next_run, utc(2026, 6, 2, 1, 0));
    assert_eq!(info.last_run, Some(hours[23]));
    assert_eq!(info.last_job, jobs.last().map(|j| j.id));
    Verdict::Passed
}

conformance_test!(schedule,
    /// In `Europe/Berlin`, a 02:30 schedule runs once on the day clocks
    /// skip 02:00 to 03:00 (at 03:00 CEST) and once on the day they repeat
    /// 02:00 to 03:00 (at the first 02:30); an hourly one runs every real
    /// hour through both days.
    schedule_daylight_saving_changes_neither_double_nor_drop_a_run => dst
);

async fn dst<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    for (from, until, early_run) in [
        // 2026-03-29, 02:00 CET -> 03:00 CEST: 03:00 CEST is 01:00 UTC.
        (
            utc(2026, 3, 28, 12, 0),
            utc(2026, 3, 30, 12, 0),
            utc(2026, 3, 29, 1, 0),
        ),
        // 2026-10-25, 03:00 CEST -> 02:00 CET: the first 02:30 is 00:30 UTC.
        (
            utc(2026, 10, 24, 12, 0),
            utc(2026, 10, 26, 12, 0),
            utc(2026, 10, 25, 0, 30),
        ),
    ] {
        for name in ["early", "hourly"] {
            queue
                .schedules()
                .remove(name)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let early = Schedule::cron("early", "early", "30 2 * * *")
            .time_zone("Europe/Berlin")
            .start_at(from);
        let hourly = Schedule::cron("hourly", "hourly", "0 * * * *")
            .time_zone("Europe/Berlin")
            .start_at(from);
        upsert(&queue, early).await;
        upsert(&queue, hourly).await;
        drive(&queue, from, until).await;
        let runs: Vec<_> = jobs_of(&queue, "early")
            .await
            .iter()
            .map(|j| j.run_at)
            .filter(|at| (from..=until).contains(at))
            .collect();
        assert_eq!(runs.len(), 2, "one 02:30 run a day: {runs:?}");
        assert_eq!(runs[0], early_run, "the change day's run: {runs:?}");
        let hours: Vec<_> = jobs_of(&queue, "hourly")
            .await
            .iter()
            .map(|j| j.run_at)
            .filter(|at| (from..=until).contains(at))
            .collect();
        assert_eq!(
            hours.len(),
            49,
            "48 real hours: 49 ticks, both ends included"
        );
        for pair in hours.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::hours(1), "{pair:?}");
        }
    }
    Verdict::Passed
}

conformance_test!(schedule,
    /// After five hours with no pass (every process down), a
    /// [`Missed::RunOnce`] schedule gets one job for all the missed ticks
    /// and a [`Missed::Skip`] one none; both then wait for their next tick.
    schedule_missed_ticks_run_once_or_are_skipped_after_a_downtime => missed
);

async fn missed<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let start = utc(2026, 6, 1, 10, 0);
    upsert(
        &queue,
        Schedule::every("catch-up", "catch-up", "1h")
            .missed(Missed::RunOnce)
            .start_at(start),
    )
    .await;
    upsert(
        &queue,
        Schedule::every("fresh-only", "fresh-only", "1h")
            .missed(Missed::Skip)
            .grace("5m")
            .start_at(start),
    )
    .await;
    let service = queue.schedules().service();
    let first = service
        .run_once(start)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.enqueued.len(), 2, "both tick on time: {first:?}");
    // Down from 10:00 to 15:20: the ticks of 11:00 to 15:00 were missed.
    let back = start + Duration::minutes(5 * 60 + 20);
    let pass = service
        .run_once(back)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pass.enqueued
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["catch-up"],
        "{pass:?}"
    );
    assert_eq!(pass.skipped, ["fresh-only"], "{pass:?}");
    assert_eq!(jobs_of(&queue, "catch-up").await.len(), 2);
    assert_eq!(jobs_of(&queue, "fresh-only").await.len(), 1);
    let caught_up = jobs_of(&queue, "catch-up").await;
    assert_eq!(
        caught_up[1].run_at,
        start + Duration::hours(1),
        "the job stands for the first missed tick"
    );
    for name in ["catch-up", "fresh-only"] {
        let info = queue
            .schedules()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.next_run, utc(2026, 6, 1, 16, 0), "{name}");
    }
    // Late within the grace: a Skip schedule still runs its tick.
    let pass = service
        .run_once(utc(2026, 6, 1, 16, 4))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.enqueued.len(), 2, "{pass:?}");
    Verdict::Passed
}

conformance_test!(schedule,
    /// A paused schedule, as the store keeps it, gets no jobs; resumed, it
    /// waits for its first tick after the resume (none for the ticks it
    /// missed while paused), and runs again. On a store that reopens, the
    /// pause outlives the process.
    schedule_pause_and_resume_are_kept_in_the_store => pause_resume
);

async fn pause_resume<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let now = queue.now();
    let start = micro(now - Duration::hours(10));
    upsert(
        &queue,
        Schedule::every("paused", "paused", "1h").start_at(start),
    )
    .await;
    let schedules = queue.schedules();
    schedules
        .pause("paused")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pass = schedules
        .service()
        .run_once(now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        pass.enqueued.is_empty() && pass.next_wake.is_none(),
        "{pass:?}"
    );
    assert!(jobs_of(&queue, "paused").await.is_empty());
    let listed = schedules.list().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        listed[0].paused && listed[0].next_run == start,
        "{listed:?}"
    );

    let queue = if factory.reopens() {
        queue
            .shutdown(std::time::Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("shutdown: {e}"));
        drop(queue);
        store.close().await.unwrap_or_else(|e| panic!("close: {e}"));
        let store = factory
            .reopen(&place)
            .await
            .unwrap_or_else(|e| panic!("reopen: {e}"));
        let queue = queue_on(&factory, &store).await;
        let info = queue
            .schedules()
            .get("paused")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(info.paused, "paused after reopening: {info:?}");
        queue
    } else {
        queue
    };
    let schedules = queue.schedules();
    schedules
        .resume("paused")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let info = schedules
        .get("paused")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let now = queue.now();
    assert!(!info.paused);
    assert!(
        info.next_run > now && info.next_run <= now + Duration::hours(1),
        "the first tick after the resume: {info:?}, now {now}"
    );
    let pass = schedules
        .service()
        .run_once(info.next_run)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.enqueued.len(), 1, "{pass:?}");
    let jobs = jobs_of(&queue, "paused").await;
    assert_eq!(jobs.len(), 1, "no job for the ticks missed while paused");
    assert_eq!(jobs[0].run_at, info.next_run);
    Verdict::Passed
}

conformance_test!(schedule,
    /// Upserting the same schedule again changes nothing (its next run and
    /// last job are kept); a changed definition replaces it and keeps its
    /// paused flag and last job; removing it stops its ticks and keeps its
    /// jobs; a job run by hand leaves its next tick as it was.
    schedule_upsert_is_idempotent_and_remove_stops_the_ticks => upsert_remove
);

async fn upsert_remove<F: StoreFactory>(factory: F) -> Verdict {
    tokio::time::pause();
    let (store, _place) = fresh(&factory).await;
    let queue = queue_on(&factory, &store).await;
    let start = utc(2026, 6, 1, 0, 0);
    let define = || {
        Schedule::cron("nightly", "nightly", "0 3 * * *")
            .time_zone("Europe/Berlin")
            .payload(json!({ "window": "24h" }))
            .start_at(start)
    };
    assert_eq!(upsert(&queue, define()).await, Upserted::Created);
    let schedules = queue.schedules();
    let first = schedules
        .get("nightly")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.next_run, utc(2026, 6, 1, 1, 0), "03:00 CEST");
    let pass = schedules
        .service()
        .run_once(first.next_run)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pass.enqueued.len(), 1);
    let ticked = schedules
        .get("nightly")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(upsert(&queue, define()).await, Upserted::Unchanged);
    assert_eq!(
        schedules
            .get("nightly")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        ticked,
        "an unchanged upsert keeps the next run and last job"
    );

    // By hand: a job now, the next tick unchanged.
    let by_hand = schedules
        .run_now("nightly")
        .await
        .unwrap_or_else(|e| panic!("run_now: {e}"));
    let after = schedules
        .get("nightly")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.last_job, Some(by_hand.id()));
    assert_eq!(after.next_run, ticked.next_run);

    schedules
        .pause("nightly")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let changed = Schedule::cron("nightly", "nightly", "0 4 * * *")
        .time_zone("Europe/Berlin")
        .payload(json!({ "window": "24h" }))
        .start_at(start);
    assert_eq!(upsert(&queue, changed).await, Upserted::Changed);
    let info = schedules
        .get("nightly")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(info.paused, "a changed definition stays paused");
    assert_eq!(info.last_job, Some(by_hand.id()));
    assert_eq!(
        info.when,
        crate::schedule::When::Cron {
            expression: "0 4 * * *".into(),
            time_zone: "Europe/Berlin".into()
        }
    );

    assert!(schedules
        .remove("nightly")
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    assert!(!schedules
        .remove("nightly")
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    let pass = schedules
        .service()
        .run_once(utc(2027, 1, 1, 0, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        pass.enqueued.is_empty() && pass.next_wake.is_none(),
        "{pass:?}"
    );
    assert_eq!(jobs_of(&queue, "nightly").await.len(), 2, "its jobs stay");
    assert!(matches!(
        schedules.pause("nightly").await,
        Err(crate::Error::UnknownSchedule(name)) if name == "nightly"
    ));
    Verdict::Passed
}

conformance_test!(schedule,
    /// Store level: of many advances of the same tick at once, each with a
    /// job of its own, exactly one applies and exactly its job is stored;
    /// an advance of a paused schedule applies only when asked to.
    schedule_advance_applies_once_per_tick_with_its_job => advance_once
);

async fn advance_once<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let due = utc(2026, 6, 1, 0, 0);
    let record = ScheduleRecord::new("race", "race", "null", "{}", due);
    store
        .schedule_upsert(&record)
        .await
        .unwrap_or_else(|e| panic!("schedule_upsert: {e}"));
    let jobs: Vec<Job> = (0..16).map(|n| job("race", json!(n))).collect();
    let attempts = jobs.iter().map(|j| {
        let store = store.clone();
        let advance = ScheduleAdvance {
            name: "race".into(),
            due,
            next: due + Duration::hours(1),
            last_run: Some(due),
            last_job: Some(j.id),
            even_if_paused: false,
        };
        let j = j.clone();
        async move {
            let applied = store
                .schedule_advance(&advance, std::slice::from_ref(&j))
                .await
                .unwrap_or_else(|e| panic!("schedule_advance: {e}"));
            (applied, j.id)
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<JobId> = results
        .iter()
        .filter(|(a, _)| *a)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(winners.len(), 1, "one advance applies: {results:?}");
    let stored: Vec<JobId> = store
        .jobs_query(&JobQuery::default().task("race").limit(100))
        .await
        .unwrap_or_else(|e| panic!("jobs_query: {e}"))
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(stored, winners, "only the winner's job is stored");
    let listed = store
        .schedules_list()
        .await
        .unwrap_or_else(|e| panic!("schedules_list: {e}"));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].next_run, due + Duration::hours(1));
    assert_eq!(listed[0].last_run, Some(due));
    assert_eq!(listed[0].last_job, Some(winners[0]));

    // Paused: only an advance that says so applies.
    let pause = SchedulePause {
        name: "race".into(),
        paused: true,
        next_run: None,
    };
    assert!(store
        .schedule_pause(&pause)
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    let mut advance = ScheduleAdvance {
        name: "race".into(),
        due: due + Duration::hours(1),
        next: due + Duration::hours(2),
        last_run: None,
        last_job: None,
        even_if_paused: false,
    };
    assert!(!store
        .schedule_advance(&advance, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    advance.even_if_paused = true;
    assert!(store
        .schedule_advance(&advance, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}")));
    let listed = store
        .schedules_list()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(listed[0].paused);
    assert_eq!(listed[0].next_run, due + Duration::hours(2));
    assert_eq!(
        listed[0].last_job,
        Some(winners[0]),
        "kept without a new job"
    );
    Verdict::Passed
}

conformance_test!(schedule,
    /// A tick whose job the store refuses (here: a job id already taken)
    /// is not advanced either: the compare-and-set and the insert commit
    /// together or not at all, so the tick stays due for the next pass. (A
    /// store that accepts the duplicate, as the memory store does, passes
    /// by storing both.)
    schedule_a_tick_whose_job_cannot_be_stored_stays_due => atomic_advance
);

async fn atomic_advance<F: StoreFactory>(factory: F) -> Verdict {
    let (store, _place) = fresh(&factory).await;
    let due = utc(2026, 6, 1, 0, 0);
    store
        .schedule_upsert(&ScheduleRecord::new("atomic", "atomic", "null", "{}", due))
        .await
        .unwrap_or_else(|e| panic!("schedule_upsert: {e}"));
    let taken = job("atomic", json!("first"));
    super::fixtures::insert(&store, std::slice::from_ref(&taken)).await;
    let mut duplicate = job("atomic", json!("second"));
    duplicate.id = taken.id;
    let advance = ScheduleAdvance {
        name: "atomic".into(),
        due,
        next: due + Duration::hours(1),
        last_run: Some(due),
        last_job: Some(duplicate.id),
        even_if_paused: false,
    };
    let listed = match store.schedule_advance(&advance, &[duplicate]).await {
        Err(_) => store
            .schedules_list()
            .await
            .unwrap_or_else(|e| panic!("schedules_list: {e}")),
        Ok(applied) => {
            assert!(applied, "nothing else moved the tick");
            return Verdict::Passed;
        }
    };
    assert_eq!(listed[0].next_run, due, "the tick is still due");
    assert_eq!(listed[0].last_job, None);
    // The next pass, with a job that can be stored, takes it.
    let fresh_job = job("atomic", json!("third"));
    let advance = ScheduleAdvance {
        last_job: Some(fresh_job.id),
        ..advance
    };
    assert!(store
        .schedule_advance(&advance, std::slice::from_ref(&fresh_job))
        .await
        .unwrap_or_else(|e| panic!("schedule_advance: {e}")));
    Verdict::Passed
}

/// Lists every test of this suite once.
macro_rules! with_every_schedule_test {
    ($callback:ident) => {
        $callback! {
            schedule_a_day_of_hourly_ticks_makes_one_job_per_tick,
            schedule_daylight_saving_changes_neither_double_nor_drop_a_run,
            schedule_missed_ticks_run_once_or_are_skipped_after_a_downtime,
            schedule_pause_and_resume_are_kept_in_the_store,
            schedule_upsert_is_idempotent_and_remove_stops_the_ticks,
            schedule_advance_applies_once_per_tick_with_its_job,
            schedule_a_tick_whose_job_cannot_be_stored_stays_due,
        }
    };
}

macro_rules! define_schedule_runners {
    ($($name:ident),* $(,)?) => {
        /// The name of every test of this suite, in the order [`run_all`]
        /// runs them.
        ///
        /// ```
        /// assert!(kessel::conformance::schedule::TESTS.len() >= 6);
        /// ```
        pub const TESTS: &[&str] = &[$(stringify!($name)),*];

        /// Runs every test of this suite, each on a fresh store from
        /// `factory`.
        ///
        /// # Panics
        ///
        /// At the first failing check.
        ///
        /// # Examples
        ///
        /// See the [module docs](self).
        pub async fn run_all<F: StoreFactory>(factory: F) -> Report {
            let mut report = Report::default();
            $(report.record(stringify!($name), $name(&factory).await);)*
            report
        }

        /// Runs the test of this suite called `name` (one of [`TESTS`]).
        ///
        /// # Panics
        ///
        /// When a check fails, or no test has this name.
        ///
        /// ```
        /// # #[actix_rt::main] async fn main() {
        /// use std::sync::Arc;
        /// use kessel::store::{MemoryStore, Store};
        /// let factory = || async { Arc::new(MemoryStore::new()) as Arc<dyn Store> };
        /// let verdict = kessel::conformance::schedule::run_one(
        ///     "schedule_advance_applies_once_per_tick_with_its_job",
        ///     &factory,
        /// ).await;
        /// assert!(verdict.passed());
        /// # }
        /// ```
        pub async fn run_one<F: StoreFactory>(name: &str, factory: &F) -> Verdict {
            match name {
                $(stringify!($name) => $name(factory).await,)*
                other => panic!("no schedule conformance test is called `{other}`; see kessel::conformance::schedule::TESTS"),
            }
        }
    };
}

with_every_schedule_test!(define_schedule_runners);

/// [`run_one`] for a plain `#[test]`: blocks until the test ends.
///
/// # Panics
///
/// As [`run_one`].
///
/// ```
/// use std::sync::Arc;
/// use kessel::store::{MemoryStore, Store};
/// let factory = || async { Arc::new(MemoryStore::new()) as Arc<dyn Store> };
/// let verdict = kessel::conformance::schedule::run_one_blocking(
///     "schedule_advance_applies_once_per_tick_with_its_job",
///     &factory,
/// );
/// assert!(verdict.passed());
/// ```
pub fn run_one_blocking<F: StoreFactory>(name: &str, factory: &F) -> Verdict {
    futures::executor::block_on(run_one(name, factory))
}

/// Defines one `#[test]` per test of the schedule suite (feature `cron`),
/// each on a fresh store from the factory expression, plus one that checks
/// the list is complete: as [`conformance_tests!`](crate::conformance_tests)
/// does for the main suite.
///
/// # Examples
///
/// ```
/// // tests/conformance_memory.rs
/// use std::sync::Arc;
/// use kessel::store::{MemoryStore, Store};
///
/// kessel::schedule_conformance_tests!(|| async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! schedule_conformance_tests {
    ($factory:expr) => {
        $crate::schedule_conformance_tests!(@tests $factory;
            schedule_a_day_of_hourly_ticks_makes_one_job_per_tick,
            schedule_daylight_saving_changes_neither_double_nor_drop_a_run,
            schedule_missed_ticks_run_once_or_are_skipped_after_a_downtime,
            schedule_pause_and_resume_are_kept_in_the_store,
            schedule_upsert_is_idempotent_and_remove_stops_the_ticks,
            schedule_advance_applies_once_per_tick_with_its_job,
            schedule_a_tick_whose_job_cannot_be_stored_stays_due,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let factory = $factory;
                if let $crate::conformance::Verdict::Skipped(why) =
                    $crate::conformance::schedule::run_one_blocking(stringify!($name), &factory)
                {
                    eprintln!("skipped {}: {}", stringify!($name), why);
                }
            }
        )*

        #[test]
        fn schedule_conformance_tests_cover_the_whole_suite() {
            assert_eq!(&[$(stringify!($name)),*][..], $crate::conformance::schedule::TESTS);
        }
    };
}
