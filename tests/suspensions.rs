//! Suspensions: of a task and of a tag, who and since when; kept across a
//! restart on SQLite; on PostgreSQL applied by every queue on the schema
//! and by queues started later. Real time on the durable stores; every
//! wait is on a result or a condition polled against a deadline.

mod common;

use std::sync::Arc;
use std::time::Duration;

use kessel::store::{SqliteStore, Store};
use kessel::{Error, JobContext, JobError, JobStatus, Queue, Suspended};

/// Long enough for any machine; the measured time is far shorter (see
/// `docs/benchmarks.md`).
const DEADLINE: Duration = Duration::from_secs(30);

fn define_ok(queue: &Queue, task: &str, tag: &str) {
    queue
        .define(task)
        .tag(tag)
        .action(|_: JobContext<serde_json::Value>| async { Ok::<_, JobError>(()) })
        .unwrap();
}

/// Polls `condition` until it holds, failing after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

#[actix_rt::test]
async fn a_suspended_tag_holds_back_every_task_with_it_until_resumed() {
    common::pause();
    let queue = Queue::new();
    define_ok(&queue, "daily", "reports");
    define_ok(&queue, "weekly", "reports");
    define_ok(&queue, "email", "default");
    queue.process(["reports", "default"]).start().unwrap();
    queue
        .suspend_tag_by("reports", "month-end freeze")
        .await
        .unwrap();
    let daily = queue.create("daily", ()).await.unwrap();
    let weekly = queue.create("weekly", ()).await.unwrap();
    let email = queue.create("email", ()).await.unwrap();
    assert_eq!(email.result().await.unwrap().status, JobStatus::Completed);
    tokio::time::sleep(Duration::from_secs(60)).await;
    for job in [&daily, &weekly] {
        assert_eq!(queue.job(job.id()).await.unwrap().status, JobStatus::Ready);
    }
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.suspended.len(), 1);
    assert_eq!(stats.suspended[0].what, Suspended::Tag("reports".into()));
    assert_eq!(stats.suspended[0].by, "month-end freeze");
    assert!(stats.suspension_of("daily", Some("reports")).is_some());
    queue.resume_tag("reports").await.unwrap();
    daily.result().await.unwrap();
    weekly.result().await.unwrap();
    assert!(queue.stats().await.unwrap().suspended.is_empty());
}

#[actix_rt::test]
async fn a_task_suspended_by_name_stays_suspended_when_its_tag_resumes() {
    common::pause();
    let queue = Queue::new();
    define_ok(&queue, "daily", "reports");
    queue.process(["reports"]).start().unwrap();
    queue.suspend("daily").await.unwrap();
    queue.suspend_tag("reports").await.unwrap();
    queue.resume_tag("reports").await.unwrap();
    let job = queue.create("daily", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(queue.job(job.id()).await.unwrap().status, JobStatus::Ready);
    queue.resume("daily").await.unwrap();
    job.result().await.unwrap();
}

#[actix_rt::test]
async fn suspending_again_keeps_who_suspended_first_and_since_when() {
    common::pause();
    let queue = Queue::new();
    queue.suspend_by("email", "ford").await.unwrap();
    let since = queue.stats().await.unwrap().suspended[0].since;
    tokio::time::sleep(Duration::from_secs(5)).await;
    queue.suspend_by("email", "arthur").await.unwrap();
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.suspended.len(), 1);
    assert_eq!(
        (stats.suspended[0].by.as_str(), stats.suspended[0].since),
        ("ford", since)
    );
}

#[actix_rt::test]
async fn an_empty_name_is_refused_as_invalid_input() {
    let queue = Queue::new();
    for result in [
        queue.suspend("").await,
        queue.resume("").await,
        queue.suspend_tag("").await,
        queue.resume_tag("").await,
    ] {
        assert!(
            matches!(result, Err(Error::InvalidInput { .. })),
            "{result:?}"
        );
    }
}

#[cfg(feature = "sqlite")]
#[actix_rt::test]
async fn a_sqlite_queue_reopened_starts_with_its_suspensions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let job = {
        let store = Arc::new(SqliteStore::open(&path).await.unwrap());
        let queue = Queue::builder().store(store.clone()).build().await.unwrap();
        queue.suspend_by("email", "ops").await.unwrap();
        queue.suspend_tag("reports").await.unwrap();
        let job = queue.create("email", ()).await.unwrap().id();
        queue.shutdown(Duration::from_secs(5)).await.unwrap();
        store.close().await.unwrap();
        job
    };
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let listed = store.suspensions_list().await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.what.clone()).collect::<Vec<_>>(),
        [
            Suspended::Task("email".into()),
            Suspended::Tag("reports".into())
        ]
    );
    let queue = Queue::builder().store(store.clone()).build().await.unwrap();
    assert_eq!(queue.applied_suspensions().await.unwrap().len(), 2);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.suspension_of("email", None).unwrap().by, "ops");
    define_ok(&queue, "email", "default");
    queue.process(["default"]).start().unwrap();
    // A job of another task, created after, runs: the worker claims work.
    define_ok(&queue, "probe", "default");
    let probe = queue.create("probe", ()).await.unwrap();
    within("the probe", probe.result()).await.unwrap();
    assert_eq!(queue.job(job).await.unwrap().status, JobStatus::Ready);
    queue.resume("email").await.unwrap();
    within("the resumed job", queue.result(job)).await.unwrap();
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    store.close().await.unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store
            .suspensions_list()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.what)
            .collect::<Vec<_>>(),
        [Suspended::Tag("reports".into())],
        "the resume is stored too"
    );
    store.close().await.unwrap();
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use common::pg;

    const LEASE: Duration = Duration::from_secs(5);
    const POLL: Duration = Duration::from_secs(5);

    /// A ready job of `task`, as a store takes it.
    fn job_at(task: &str, now: chrono::DateTime<chrono::Utc>) -> kessel::Job {
        let mut job: kessel::Job = serde_json::from_value(serde_json::json!({
            "id": kessel::JobId::new(), "reference": null, "task": task, "payload": 1, "priority": 0,
            "status": "ready", "created_at": now, "run_at": now, "expires_at": null, "attempts": 0,
            "max_attempts": null, "last_error": null, "result": null, "progress": null,
            "finished_at": null, "logs": []
        }))
        .unwrap();
        job.logs.clear();
        job
    }

    fn suspended(list: &[kessel::Suspension], what: &Suspended) -> bool {
        list.iter().any(|s| &s.what == what)
    }

    #[actix_rt::test]
    async fn a_suspend_in_one_queue_stops_dispatch_in_another_and_in_one_started_later() {
        let Some(db) = pg::fresh().await else { return };
        let a = db.queue(LEASE, POLL).await;
        let b = db.queue(LEASE, POLL).await;
        define_ok(&b, "work", "default");
        define_ok(&b, "probe", "default");
        b.process(["default"]).concurrency(4).start().unwrap();
        // Before: B runs what A creates.
        let first = a.create("work", ()).await.unwrap();
        within("a job before the suspend", first.result())
            .await
            .unwrap();

        let work = Suspended::Task("work".into());
        let asked = std::time::Instant::now();
        a.suspend_by("work", "test").await.unwrap();
        eventually("B applies A's suspend", || async {
            suspended(&b.applied_suspensions().await.unwrap(), &work)
        })
        .await;
        eprintln!(
            "B applied A's suspend {:?} after it was asked",
            asked.elapsed()
        );
        let held = a.create("work", ()).await.unwrap();
        // A job created after it, of a task B serves, runs: B has claimed
        // since `held` was created, and left it.
        let probe = a.create("probe", ()).await.unwrap();
        within("the probe", probe.result()).await.unwrap();
        assert_eq!(a.job(held.id()).await.unwrap().status, JobStatus::Ready);
        let stats = b.stats().await.unwrap();
        let s = stats
            .suspension_of("work", None)
            .expect("listed in B's stats");
        assert_eq!(s.by, "test");

        // A queue started after the suspend starts suspended.
        let c = db.queue(LEASE, POLL).await;
        assert!(suspended(&c.applied_suspensions().await.unwrap(), &work));
        define_ok(&c, "work", "default");
        define_ok(&c, "probe", "default");
        c.process(["default"]).start().unwrap();
        let probe = c.create("probe", ()).await.unwrap();
        within("C's probe", probe.result()).await.unwrap();
        assert_eq!(a.job(held.id()).await.unwrap().status, JobStatus::Ready);

        // A resume in C lets the held job run.
        c.resume("work").await.unwrap();
        eventually("B applies C's resume", || async {
            !suspended(&b.applied_suspensions().await.unwrap(), &work)
        })
        .await;
        let result = within("the held job after the resume", held.result())
            .await
            .unwrap();
        assert_eq!(result.status, JobStatus::Completed);
        for q in [a, b, c] {
            q.shutdown(Duration::from_secs(5)).await.unwrap();
        }
        db.drop().await;
    }

    /// The store's claim itself leaves a task suspended by name, so no
    /// claim that starts after the suspension's commit takes its jobs,
    /// whether or not its process has heard of it yet.
    #[actix_rt::test]
    async fn a_claim_after_a_task_is_suspended_in_the_store_takes_none_of_its_jobs() {
        use kessel::store::{JobClaim, SharedStore};
        let Some(db) = pg::fresh().await else { return };
        let store = db.store(LEASE).await;
        let now = chrono::Utc::now();
        let jobs: Vec<kessel::Job> = ["work", "other"]
            .into_iter()
            .map(|task| job_at(task, now))
            .collect();
        store.jobs_insert(&jobs).await.unwrap();
        let s = kessel::Suspension {
            what: Suspended::Task("work".into()),
            by: "test".into(),
            since: now,
        };
        assert!(store.suspension_insert(&s).await.unwrap());
        let claim = JobClaim::new(
            store.owner(),
            ["work", "other"],
            now + chrono::Duration::seconds(1),
            10,
            now + chrono::Duration::seconds(30),
        );
        let claimed = store.jobs_claim(&claim).await.unwrap();
        assert_eq!(
            claimed.iter().map(|j| &*j.task).collect::<Vec<_>>(),
            ["other"]
        );
        let limited = JobClaim {
            running_limits: vec![("work".into(), 5)],
            group_running_limits: Vec::new(),
            places: Vec::new(),
            tag_places: Vec::new(),
            ..claim.clone()
        };
        assert!(store.jobs_claim(&limited).await.unwrap().is_empty());
        assert!(store.suspension_delete(&s.what).await.unwrap());
        let claimed = store.jobs_claim(&claim).await.unwrap();
        assert_eq!(
            claimed.iter().map(|j| &*j.task).collect::<Vec<_>>(),
            ["work"]
        );
        store.close().await.unwrap();
        db.drop().await;
    }

    #[actix_rt::test]
    async fn a_suspended_tag_on_postgres_reaches_a_queue_that_defines_its_tasks() {
        let Some(db) = pg::fresh().await else { return };
        let a = db.queue(LEASE, POLL).await;
        let b = db.queue(LEASE, POLL).await;
        // A knows nothing of the tag's tasks; B defines one.
        a.suspend_tag("reports").await.unwrap();
        eventually("B applies the tag's suspension", || async {
            suspended(
                &b.applied_suspensions().await.unwrap(),
                &Suspended::Tag("reports".into()),
            )
        })
        .await;
        define_ok(&b, "daily", "reports");
        define_ok(&b, "probe", "default");
        b.process(["reports", "default"]).start().unwrap();
        let held = a.create("daily", ()).await.unwrap();
        let probe = a.create("probe", ()).await.unwrap();
        within("the probe", probe.result()).await.unwrap();
        assert_eq!(a.job(held.id()).await.unwrap().status, JobStatus::Ready);
        a.resume_tag("reports").await.unwrap();
        within("the held job", held.result()).await.unwrap();
        for q in [a, b] {
            q.shutdown(Duration::from_secs(5)).await.unwrap();
        }
        db.drop().await;
    }
}
