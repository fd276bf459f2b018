//! Shutting down: running jobs finish within the grace period, the rest
//! are aborted and left pending, and nothing new is accepted.

use std::time::Duration;

use kessel::{Error, JobError, JobStatus, Queue};

use crate::Ctx;

#[actix_rt::test(system = "crate::Paused")]
async fn shutdown_lets_running_jobs_finish_then_aborts_the_rest() {
    let queue = Queue::new();
    queue
        .define("sleepy")
        .action(|job: Ctx<u64>| async move {
            tokio::time::sleep(Duration::from_secs(job.payload)).await;
            Ok::<_, JobError>(())
        })
        .unwrap();
    queue.process(["default"]).concurrency(2).start().unwrap();
    let quick = queue.create("sleepy", 1).await.unwrap();
    let slow = queue.create("sleepy", 100).await.unwrap();
    let never = queue.create("sleepy", 1).delay("1h").await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let report = queue.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(report.finished_while_draining, 1);
    assert_eq!(report.aborted, vec![slow.id()]);
    assert_eq!(report.left_pending, 2);
    let store = queue.store();
    assert_eq!(
        store.job_get(quick.id()).await.unwrap().unwrap().status,
        JobStatus::Completed
    );
    assert_eq!(
        store.job_get(slow.id()).await.unwrap().unwrap().status,
        JobStatus::Ready
    );
    assert_eq!(
        store.job_get(never.id()).await.unwrap().unwrap().status,
        JobStatus::Scheduled
    );
    assert!(matches!(
        queue.create("sleepy", 1).await,
        Err(Error::ShutDown)
    ));
}
