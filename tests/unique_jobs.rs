//! Unique jobs: bad input, the one-per-call rule, and a hold that
//! outlives the process on SQLite. (Every store's behaviour is in the
//! conformance suite; eight racing processes on PostgreSQL in
//! tests/postgres_processes.rs.)

use std::sync::Arc;
use std::time::Duration;

use kessel::store::SqliteStore;
use kessel::{Error, NewJob, Queue, UniqueScope, MAX_UNIQUE_KEY_LEN};
use proptest::prelude::*;

fn names_unique(err: &Error) -> bool {
    matches!(
        err,
        Error::InvalidInput {
            field: "unique",
            ..
        }
    )
}

#[actix_rt::test]
async fn bad_unique_input_is_a_typed_error_naming_the_field() {
    let queue = Queue::new();
    let cases = [
        NewJob::new("t", 1).unique(""),
        NewJob::new("t", 1).unique("   "),
        NewJob::new("t", 1).unique("k".repeat(MAX_UNIQUE_KEY_LEN + 1)),
        NewJob::new("t", 1)
            .unique("k")
            .unique_scope(UniqueScope::Window(Duration::ZERO)),
        NewJob::new("t", 1)
            .unique("k")
            .unique_scope(UniqueScope::Window(Duration::MAX)),
    ];
    for job in cases {
        let err = queue.create_job(job).await.unwrap_err();
        assert!(names_unique(&err), "{err:?}");
    }
    assert!(
        queue.fetch(Default::default()).await.unwrap().is_empty(),
        "nothing was created"
    );
    let longest = queue
        .create_job(NewJob::new("t", 1).unique("k".repeat(MAX_UNIQUE_KEY_LEN)))
        .await;
    assert!(longest.is_ok(), "a key of the longest length is fine");
}

#[actix_rt::test]
async fn create_many_takes_a_unique_job_only_alone() {
    let queue = Queue::new();
    let err = queue
        .create_many([NewJob::new("t", 1).unique("a"), NewJob::new("t", 2)])
        .await
        .unwrap_err();
    assert!(names_unique(&err), "{err:?}");
    assert!(queue.fetch(Default::default()).await.unwrap().is_empty());
    let one = queue
        .create_many([NewJob::new("t", 1).unique("a")])
        .await
        .unwrap();
    let again = queue
        .create_many([NewJob::new("t", 2).unique("a")])
        .await
        .unwrap();
    assert!(again[0].is_duplicate());
    assert_eq!(again[0].id(), one[0].id());
}

#[actix_rt::test]
async fn a_unique_hold_outlives_the_process_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jobs.db");
    let first = {
        let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
        let queue = Queue::builder().store(store.clone()).build().await.unwrap();
        let first = queue
            .create_job(NewJob::new("report", 1).unique("nightly").delay("1h"))
            .await
            .unwrap();
        queue.shutdown(Duration::from_secs(5)).await.unwrap();
        kessel::Store::close(&*store).await.unwrap();
        first.id()
    };
    let store = Arc::new(SqliteStore::open(&path).await.expect("reopen"));
    let queue = Queue::builder().store(store).build().await.unwrap();
    let again = queue
        .create_job(NewJob::new("report", 2).unique("nightly"))
        .await
        .unwrap();
    assert!(again.is_duplicate(), "the stored job still holds its key");
    assert_eq!(again.id(), first);
    assert_eq!(queue.unique_holder("nightly").await.unwrap(), Some(first));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any key is accepted or refused with a typed error, never a panic;
    /// an accepted key makes the second job with it a duplicate.
    #[test]
    fn any_key_is_a_typed_answer_and_an_accepted_one_is_held(key in ".{0,600}") {
        let outcome = actix_rt::System::new().block_on(async {
            let queue = Queue::new();
            let first = queue.create_job(NewJob::new("t", 1).unique(key.as_str())).await;
            match first {
                Ok(first) => {
                    let again = queue
                        .create_job(NewJob::new("t", 2).unique(key.as_str()))
                        .await
                        .unwrap();
                    Ok(again.is_duplicate() && again.id() == first.id())
                }
                Err(err) => Err(names_unique(&err)),
            }
        });
        match outcome {
            Ok(held) => prop_assert!(held, "the second job is a duplicate"),
            Err(typed) => {
                prop_assert!(typed, "a refusal names `unique`");
                prop_assert!(key.trim().is_empty() || key.len() > MAX_UNIQUE_KEY_LEN);
            }
        }
    }
}
