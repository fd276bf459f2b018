//! Recurring jobs on the memory store: the schedule timer on a paused
//! clock, bad input as typed errors, and arbitrary text as cron
//! expressions and time zones. The store-independent behaviour runs in the
//! schedule conformance suite (tests/conformance_*.rs).
#![cfg(feature = "cron")]

use std::time::Duration;

use chrono::{DurationRound, TimeZone, Utc};
use kessel::schedule::{Missed, Schedule};
use kessel::store::{JobQuery, Order};
use kessel::{Error, Queue};
use proptest::prelude::*;

async fn jobs_of(queue: &Queue, task: &str) -> Vec<kessel::Job> {
    queue
        .fetch(
            JobQuery::default()
                .task(task)
                .order(Order::OldestFirst)
                .limit(10_000),
        )
        .await
        .unwrap()
}

fn field_of(err: Error) -> &'static str {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[actix_rt::test]
async fn the_timer_enqueues_every_hourly_tick_of_a_day_on_the_paused_clock() {
    tokio::time::pause();
    let queue = Queue::builder()
        .schedule(Schedule::cron("hourly", "report", "@hourly"))
        .build()
        .await
        .unwrap();
    let start = queue.now();
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    let jobs = jobs_of(&queue, "report").await;
    let first_hour =
        start.duration_trunc(chrono::Duration::hours(1)).unwrap() + chrono::Duration::hours(1);
    let hours: Vec<_> = (0..24)
        .map(|h| first_hour + chrono::Duration::hours(h))
        .collect();
    let due: Vec<_> = jobs.iter().map(|j| j.run_at).collect();
    assert_eq!(due, hours, "one job per hour, due on the hour");
    for job in &jobs {
        assert!(
            job.created_at >= job.run_at,
            "never enqueued before its tick"
        );
        assert!(
            job.created_at - job.run_at < chrono::Duration::milliseconds(2),
            "enqueued on time: {} for {}",
            job.created_at,
            job.run_at
        );
    }
}

#[actix_rt::test]
async fn a_schedule_upserted_later_wakes_the_sleeping_timer() {
    tokio::time::pause();
    let queue = Queue::new();
    queue.schedules().start();
    // The timer sleeps (nothing to wait for) when this one is added.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Ticks counted from a second from now (not from the epoch, whose
    // 2 s boundaries fall anywhere against this test's start): at +1 s and
    // +3 s within the next 4.1 s, the one at +5 s not yet.
    let start = queue.now() + chrono::Duration::seconds(1);
    queue
        .schedules()
        .upsert(Schedule::every("often", "often", "2s").start_at(start))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert_eq!(jobs_of(&queue, "often").await.len(), 2);
}

#[actix_rt::test]
async fn after_shutdown_the_timer_enqueues_nothing() {
    tokio::time::pause();
    let queue = Queue::new();
    queue
        .schedules()
        .upsert(Schedule::every("stopped", "stopped", "1m"))
        .await
        .unwrap();
    let before = queue.schedules().get("stopped").await.unwrap();
    queue.shutdown(Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let after = queue.schedules().get("stopped").await.unwrap();
    assert_eq!(after.next_run, before.next_run, "no pass after shutdown");
    assert!(after.last_job.is_none());
}

#[actix_rt::test]
async fn a_manual_queue_runs_passes_only_when_called() {
    tokio::time::pause();
    let queue = Queue::builder().manual_schedules().build().await.unwrap();
    queue
        .schedules()
        .upsert(Schedule::every("by-hand", "by-hand", "1m").missed(Missed::Skip))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(jobs_of(&queue, "by-hand").await.is_empty());
    let pass = queue
        .schedules()
        .service()
        .run_once(queue.now())
        .await
        .unwrap();
    assert_eq!(
        pass.skipped,
        ["by-hand"],
        "ten minutes late: past the grace"
    );
}

#[actix_rt::test]
async fn bad_input_is_a_typed_error_naming_the_field() {
    let cases: Vec<(Schedule, &str)> = vec![
        (Schedule::cron("n", "t", "not cron"), "schedule.cron"),
        (Schedule::cron("n", "t", "61 * * * *"), "schedule.cron"),
        (Schedule::cron("n", "t", "* * * *"), "schedule.cron"),
        (
            Schedule::cron("n", "t", "0 0 0 1 1 * 2030"),
            "schedule.cron",
        ),
        (Schedule::cron("n", "t", "0 0 30 2 *"), "schedule.cron"),
        (Schedule::cron("n", "t", ""), "schedule.cron"),
        (Schedule::cron("n", "t", "@fortnightly"), "schedule.cron"),
        (
            Schedule::cron("n", "t", "@daily").time_zone("Europe/Atlantis"),
            "schedule.time_zone",
        ),
        (Schedule::every("n", "t", "0s"), "schedule.every"),
        (
            Schedule::every("n", "t", Duration::from_micros(10)),
            "schedule.every",
        ),
        (Schedule::every("n", "t", "soon"), "schedule.every"),
        (Schedule::every("", "t", "1s"), "schedule.name"),
        (Schedule::every("\n", "t", "1s"), "schedule.name"),
        (Schedule::every("x".repeat(201), "t", "1s"), "schedule.name"),
        (Schedule::every("n", "", "1s"), "schedule.task"),
        (Schedule::every("n", "a:b", "1s"), "schedule.task"),
        (
            Schedule::every("n", "t", "1s").grace("later"),
            "schedule.grace",
        ),
        (
            Schedule::every("n", "t", "1s")
                .start_at(Utc.with_ymd_and_hms(1960, 1, 1, 0, 0, 0).unwrap()),
            "schedule.start_at",
        ),
    ];
    let queue = Queue::new();
    for (schedule, field) in cases {
        let what = format!("{schedule:?}");
        assert_eq!(field_of(schedule.validate().unwrap_err()), field, "{what}");
        let upserted = queue.schedules().upsert(schedule).await;
        assert_eq!(field_of(upserted.unwrap_err()), field, "{what}");
    }
    assert!(
        queue.schedules().list().await.unwrap().is_empty(),
        "nothing stored"
    );

    let mut map = std::collections::HashMap::new();
    map.insert((1, 2), 3); // keys that are not strings: no JSON object
    let err = Schedule::every("n", "t", "1s")
        .payload(map)
        .validate()
        .unwrap_err();
    assert_eq!(field_of(err), "schedule.payload");

    let err = Queue::builder()
        .schedule(Schedule::cron("bad", "t", "every day"))
        .build()
        .await
        .unwrap_err();
    assert_eq!(field_of(err), "schedule.cron");

    for err in [
        queue.schedules().pause("none").await.unwrap_err(),
        queue.schedules().resume("none").await.unwrap_err(),
        queue.schedules().run_now("none").await.unwrap_err(),
        queue.schedules().get("none").await.unwrap_err(),
    ] {
        assert!(
            matches!(err, Error::UnknownSchedule(ref n) if n == "none"),
            "{err:?}"
        );
    }
}

#[test]
fn the_error_names_what_is_wrong() {
    let err = Schedule::cron("n", "t", "* * * *").validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid schedule.cron: `* * * *` has 4 fields; a cron expression has 5 (minute hour day month weekday) or 6 (second first)"
    );
    let err = Schedule::every("n", "t", "0s").validate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid schedule.every: 0ns is shorter than the shortest interval, 1ms"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any text as a cron expression or a time zone is read or refused
    /// with an error naming it; it never panics, and a schedule that is
    /// read has ticks in order.
    #[test]
    fn arbitrary_cron_expressions_and_time_zones_never_panic(
        expression in prop_oneof![
            any::<String>(),
            "[0-9*/,LW#?A-Z@ -]{0,40}",
            proptest::collection::vec("[0-9*/,L#-]{1,6}", 5..=6).prop_map(|f| f.join(" ")),
        ],
        zone in prop_oneof![any::<String>(), "[A-Za-z_/+-]{0,24}", Just("Europe/Berlin".to_owned())],
    ) {
        let schedule = Schedule::cron("p", "t", expression).time_zone(zone);
        match schedule.validate() {
            Ok(()) => {
                let from = Utc.with_ymd_and_hms(2026, 3, 28, 0, 0, 0).unwrap();
                let runs = schedule.next_runs(from, 3).unwrap();
                prop_assert!(runs.windows(2).all(|w| w[0] < w[1]), "{runs:?}");
            }
            Err(Error::InvalidInput { field, .. }) => {
                prop_assert!(field == "schedule.cron" || field == "schedule.time_zone", "{field}");
            }
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }
}

/// A store of one's own that keeps jobs (in a memory store) and no
/// schedules: the trait's defaults.
#[derive(Debug, Default)]
struct JobsOnly(kessel::store::MemoryStore);

#[async_trait::async_trait]
impl kessel::Store for JobsOnly {
    async fn jobs_insert(&self, jobs: &[kessel::Job]) -> Result<(), kessel::store::StoreError> {
        self.0.jobs_insert(jobs).await
    }
    async fn jobs_update(
        &self,
        updates: &[kessel::store::JobUpdate],
    ) -> Result<(), kessel::store::StoreError> {
        self.0.jobs_update(updates).await
    }
    async fn jobs_pending(&self) -> Result<Vec<kessel::Job>, kessel::store::StoreError> {
        self.0.jobs_pending().await
    }
    async fn job_get(
        &self,
        id: kessel::JobId,
    ) -> Result<Option<kessel::Job>, kessel::store::StoreError> {
        self.0.job_get(id).await
    }
    async fn jobs_query(
        &self,
        query: &JobQuery,
    ) -> Result<Vec<kessel::Job>, kessel::store::StoreError> {
        self.0.jobs_query(query).await
    }
    async fn jobs_count(
        &self,
    ) -> Result<Vec<kessel::store::StatusCount>, kessel::store::StoreError> {
        self.0.jobs_count().await
    }
    async fn jobs_delete(
        &self,
        params: &kessel::store::JobDelete,
    ) -> Result<u64, kessel::store::StoreError> {
        self.0.jobs_delete(params).await
    }
}

#[actix_rt::test]
async fn a_store_that_keeps_no_schedules_answers_unsupported() {
    use kessel::store::StoreError;
    let queue = Queue::builder()
        .store(std::sync::Arc::new(JobsOnly::default()))
        .build()
        .await
        .unwrap();
    let err = queue
        .schedules()
        .upsert(Schedule::every("n", "t", "1s"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Unsupported("schedules"))),
        "{err:?}"
    );
    let err = queue.schedules().list().await.unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Unsupported(_))),
        "{err:?}"
    );
}
