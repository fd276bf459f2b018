//! Bad input gets typed errors that name what is wrong, and stores
//! nothing: unknown job ids, malformed durations, task names and tags,
//! payloads of the wrong shape, a task defined twice.

use kessel::{Error, JobError, JobStatus, Queue};

use crate::Ctx;

#[actix_rt::test(system = "crate::Paused")]
async fn unknown_job_ids_are_typed_errors() {
    let queue = Queue::new();
    let id = kessel::JobId::new();
    assert!(matches!(queue.cancel(id).await, Err(Error::UnknownJob(x)) if x == id));
    assert!(matches!(queue.kick(id).await, Err(Error::UnknownJob(x)) if x == id));
    assert!(matches!(queue.job(id).await, Err(Error::UnknownJob(x)) if x == id));
    assert!(matches!(queue.result(id).await, Err(Error::UnknownJob(x)) if x == id));
}

#[actix_rt::test(system = "crate::Paused")]
async fn malformed_input_gets_typed_errors_naming_what_is_wrong() {
    let queue = Queue::new();
    for bad in ["", "10x", "1.5h", "-3s", "soon"] {
        match queue.create("t", ()).delay(bad).await {
            Err(Error::InvalidDuration(e)) => assert_eq!(e.text(), bad),
            other => panic!("{bad:?} gave {other:?}"),
        }
        match queue.create("t", ()).expires_in(bad).await {
            Err(Error::InvalidDuration(e)) => assert_eq!(e.text(), bad),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    assert!(matches!(
        queue
            .define("x")
            .timeout("forever")
            .action(|_: Ctx<()>| async { Ok::<_, JobError>(()) }),
        Err(Error::InvalidDuration(_))
    ));
    assert!(matches!(
        queue.create("", ()).await,
        Err(Error::InvalidInput { field: "task", .. })
    ));
    assert!(matches!(
        queue.create("a:b", ()).await,
        Err(Error::InvalidInput { field: "task", .. })
    ));
    assert!(matches!(
        queue.process(Vec::<String>::new()).start(),
        Err(Error::InvalidInput { field: "tags", .. })
    ));
    // nothing was stored by the rejected calls
    assert!(queue
        .store()
        .jobs_query(&Default::default())
        .await
        .unwrap()
        .is_empty());

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Email {
        to: String,
        subject: String,
    }
    queue
        .define("email")
        .action(|_: Ctx<Email>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let wrong_type = queue
        .create("email", serde_json::json!({"to": 42, "subject": "x"}))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(wrong_type.status, JobStatus::Buried);
    let message = wrong_type.message.unwrap();
    assert!(message.contains("at `to`"), "{message}");
    let missing = queue
        .create("email", serde_json::json!({"to": "ford"}))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert!(missing.message.unwrap().contains("missing field `subject`"));
}

#[actix_rt::test]
async fn redefining_a_task_is_an_error() {
    let queue = Queue::new();
    queue
        .define("t")
        .action(|_: Ctx<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    let err = queue
        .define("t")
        .action(|_: Ctx<()>| async { Ok::<_, JobError>(()) })
        .unwrap_err();
    assert!(err.to_string().contains("already defined"), "{err}");
}

/// Times kessel cannot hold (past the end of the year 9999, before 1970)
/// are typed errors naming the field and the range, never a panic; an age
/// beyond the range matches nothing; and the queue goes on serving.
#[actix_rt::test(system = "crate::Paused")]
async fn times_out_of_range_are_typed_errors_and_the_queue_goes_on() {
    use chrono::{DateTime, Utc};
    use std::time::Duration;
    let queue = Queue::new();
    queue
        .define("t")
        .action(|_: Ctx<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    let cases = [
        ("delay", queue.create("t", ()).delay("100000000d").await),
        ("delay", queue.create("t", ()).delay(Duration::MAX).await),
        (
            "expires_in",
            queue.create("t", ()).expires_in(Duration::MAX).await,
        ),
        (
            "run_at",
            queue.create("t", ()).run_at(DateTime::<Utc>::MAX_UTC).await,
        ),
        (
            "run_at",
            queue.create("t", ()).run_at(DateTime::<Utc>::MIN_UTC).await,
        ),
        (
            "expires_at",
            queue
                .create("t", ())
                .expires_at(DateTime::<Utc>::MAX_UTC)
                .await,
        ),
    ];
    for (field, result) in cases {
        match result {
            Err(Error::InvalidInput { field: f, reason }) => {
                assert_eq!(f, field);
                assert!(reason.contains("9999-12-31"), "{reason}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(
        queue
            .clean(kessel::Clean::completed().older_than("100000000d"))
            .await
            .unwrap(),
        0
    );
    queue.process(["default"]).start().unwrap();
    let fine = queue.create("t", ()).delay("1h").await.unwrap();
    assert_eq!(fine.result().await.unwrap().status, JobStatus::Completed);
}

/// A retention whose age is too large to subtract keeps every completed
/// job instead of killing the scheduler at its first prune.
#[actix_rt::test(system = "crate::Paused")]
async fn a_retention_age_beyond_the_range_keeps_everything() {
    use std::time::Duration;
    let queue = Queue::builder()
        .retention(kessel::Retention {
            completed_max_age: Some(Duration::MAX),
            completed_max_count: None,
            interval: Duration::from_secs(1),
            buried_max_age: Some(Duration::MAX),
            ..kessel::Retention::default()
        })
        .build()
        .await
        .unwrap();
    queue
        .define("t")
        .action(|_: Ctx<()>| async { Ok::<_, JobError>(()) })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let first = queue.create("t", ()).await.unwrap();
    assert_eq!(first.result().await.unwrap().status, JobStatus::Completed);
    // Several prunings.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = queue.create("t", ()).await.unwrap();
    assert_eq!(second.result().await.unwrap().status, JobStatus::Completed);
    assert_eq!(
        queue.job(first.id()).await.unwrap().status,
        JobStatus::Completed
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Any delay, expiry or start time through the public API: a stored
    /// job whose times are in range, or a typed error naming the field;
    /// never a panic, and the queue answers afterwards.
    #[test]
    fn any_time_input_is_a_job_or_a_typed_error_never_a_panic(
        delay_secs in proptest::prelude::any::<u64>(),
        expiry_secs in proptest::prelude::any::<u64>(),
        run_at_secs in proptest::prelude::any::<i64>(),
        which in 0u8..3,
    ) {
        use chrono::{DateTime, Utc};
        use std::time::Duration;
        let outcome = actix_rt::System::new().block_on(async move {
            let queue = Queue::new();
            let job = queue.create("t", ());
            let job = match which {
                0 => job.delay(Duration::from_secs(delay_secs)),
                1 => job.expires_in(Duration::from_secs(expiry_secs)),
                _ => job.run_at(
                    DateTime::<Utc>::from_timestamp(run_at_secs / 1_000, 0)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                ),
            };
            let created = job.await;
            let read = match &created {
                Ok(handle) => Some(queue.job(handle.id()).await),
                Err(_) => None,
            };
            let alive = queue.stats().await.is_ok();
            let _ = queue.shutdown(Duration::from_secs(1)).await;
            (created.map(|_| ()), read.map(|r| r.map(|j| (j.run_at, j.expires_at))), alive)
        });
        let (created, read, alive) = outcome;
        proptest::prop_assert!(alive, "the queue answers after the input");
        match created {
            Ok(()) => {
                let (run_at, expires_at) = read.expect("read").expect("stored");
                let end = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z").unwrap();
                proptest::prop_assert!(run_at <= end);
                proptest::prop_assert!(expires_at.is_none_or(|e| e <= end));
            }
            Err(Error::InvalidInput { field, .. }) => {
                proptest::prop_assert!(["delay", "expires_in", "run_at"].contains(&field), "{field}");
            }
            Err(other) => proptest::prop_assert!(false, "unexpected {other:?}"),
        }
    }
}
