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
