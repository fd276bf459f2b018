//! The PostgreSQL store in one test process: the job flow, migrations,
//! claims never shared, leases rescued, cancel across queues, and recovery
//! from terminated connections. Real time (the database has its own), and
//! every wait is on an event or a result.
#![cfg(feature = "postgres")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::SubsecRound;
use common::pg;
use common::Trace;
use futures::StreamExt;
use kessel::event::{Event, Filter, JobEventKind};
use kessel::store::{JobClaim, JobHeartbeat, JobUpdate, PgStore, SharedStore, Store, StoreError};
use kessel::{Error, JobContext, JobError, JobStatus, NewJob, Queue, RetryPolicy};
use parking_lot::Mutex;

/// Long enough that a stall on a loaded machine never lapses a running
/// job's lease: a lapse reruns the job, and these tests pin attempts and
/// log lines. The tests of lapses set short leases of their own.
const LEASE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(500);

#[actix_rt::test]
async fn jobs_flow_through_a_postgres_queue_with_their_outcomes_and_logs() {
    let Some(db) = pg::fresh().await else { return };
    let queue = db.queue(LEASE, POLL).await;
    queue
        .define("mixed")
        .retry(
            RetryPolicy::exponential(2)
                .base_delay(Duration::from_millis(20))
                .jitter(0.0),
        )
        .action(|job: JobContext<u32>| async move {
            job.log("working", serde_json::json!({ "n": job.payload }));
            match job.payload % 3 {
                0 => Ok(job.payload),
                1 => Err(JobError::fatal("bad input")),
                _ if job.attempt() == 1 => Err(JobError::transient("flaky")),
                _ => Ok(job.payload * 10),
            }
        })
        .unwrap();
    queue.process(["default"]).concurrency(8).start().unwrap();
    let handles = queue
        .create_many((0..90).map(|n| NewJob::new("mixed", n)))
        .await
        .unwrap();
    let mut statuses = HashMap::new();
    for (n, h) in handles.iter().enumerate() {
        let r = h.result().await.unwrap();
        *statuses.entry(r.status).or_insert(0) += 1;
        match n % 3 {
            0 => assert_eq!(r.value, Some(serde_json::json!(n))),
            1 => assert_eq!(r.message.as_deref(), Some("bad input")),
            _ => assert_eq!(r.value, Some(serde_json::json!(n * 10))),
        }
    }
    assert_eq!(statuses[&JobStatus::Completed], 60);
    assert_eq!(statuses[&JobStatus::Buried], 30);
    let retried = queue.job(handles[2].id()).await.unwrap();
    let lines: Vec<&str> = retried.logs.iter().map(|l| &*l.message).collect();
    assert_eq!(lines[0], "created");
    assert_eq!(lines[1], "started");
    assert_eq!(lines[2], "working");
    assert!(
        lines[3].starts_with("failed: flaky; retrying in"),
        "{lines:?}"
    );
    assert_eq!(&lines[4..], ["started", "working", "completed"]);
    assert_eq!(retried.attempts, 2);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("mixed", JobStatus::Completed), 60);
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn a_delayed_job_is_claimed_and_never_starts_before_its_time() {
    let Some(db) = pg::fresh().await else { return };
    let queue = db.queue(LEASE, POLL).await;
    let starts: Trace<chrono::DateTime<chrono::Utc>> = Trace::default();
    let s = starts.clone();
    queue
        .define("later")
        .action(move |_: JobContext<()>| {
            let s = s.clone();
            async move {
                s.push(chrono::Utc::now());
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    let mut expected = Vec::new();
    let mut handles = Vec::new();
    for ms in [300, 2500] {
        // 2.5 s is past the claim horizon: timed from the database's next-due.
        let h = queue
            .create("later", ())
            .delay(Duration::from_millis(ms))
            .await
            .unwrap();
        expected.push(queue.job(h.id()).await.unwrap().run_at);
        handles.push(h);
    }
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    let mut starts = starts.items();
    starts.sort();
    for (start, due) in starts.iter().zip(&expected) {
        assert!(start >= due, "started {start}, due {due}");
    }
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn two_queues_sharing_a_schema_run_each_job_exactly_once() {
    let Some(db) = pg::fresh().await else { return };
    let runs: Arc<Mutex<HashMap<kessel::JobId, u32>>> = Arc::default();
    let ran_on: Arc<Mutex<HashMap<kessel::JobId, uuid::Uuid>>> = Arc::default();
    let mut queues = Vec::new();
    for _ in 0..2 {
        // A lease no loaded machine lets lapse: a lapsed lease is rescued
        // and its job run again (at least once), which is not what this
        // test is about.
        let queue = db.queue(Duration::from_secs(10), POLL).await;
        let (runs, ran_on, node) = (runs.clone(), ran_on.clone(), queue.node_id());
        queue
            .define("count")
            .action(move |job: JobContext<u32>| {
                let (runs, ran_on) = (runs.clone(), ran_on.clone());
                async move {
                    *runs.lock().entry(job.id()).or_default() += 1;
                    ran_on.lock().insert(job.id(), node);
                    Ok::<_, JobError>(())
                }
            })
            .unwrap();
        queue.process(["default"]).concurrency(8).start().unwrap();
        queues.push(queue);
    }
    let handles = queues[0]
        .create_many((0..600).map(|n| NewJob::new("count", n)))
        .await
        .unwrap();
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    let runs = runs.lock().clone();
    assert_eq!(runs.len(), 600);
    assert!(runs.values().all(|&n| n == 1), "a job ran twice");
    // Each job names the process that ran it.
    let ran_on = ran_on.lock().clone();
    for h in &handles {
        let job = queues[0].job(h.id()).await.unwrap();
        assert_eq!(job.ran_by, Some(ran_on[&h.id()]), "job {}", h.id());
    }
    for q in &queues {
        q.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    db.drop().await;
}

#[actix_rt::test]
async fn cancel_from_one_queue_reaches_a_job_running_in_another() {
    let Some(db) = pg::fresh().await else { return };
    let worker = db.queue(LEASE, POLL).await;
    let mut events = worker.events(Filter::Task("long".into()));
    worker
        .define("long")
        .action(|_: JobContext<()>| async move {
            tokio::time::sleep(Duration::from_secs(600)).await;
            Ok::<_, JobError>(())
        })
        .unwrap();
    worker.process(["default"]).start().unwrap();
    let other = db.queue(LEASE, POLL).await; // serves nothing
    let h = other.create("long", ()).await.unwrap();
    // wait until the worker started it
    while let Some(event) = events.next().await {
        if matches!(event, Event::Job(ref e) if e.kind == JobEventKind::Started) {
            break;
        }
    }
    other.cancel(h.id()).await.unwrap();
    let result = other.result(h.id()).await.unwrap();
    assert_eq!(result.status, JobStatus::Cancelled);
    // the worker's own subscribers see it too, and its slot is free again
    loop {
        match events.next().await {
            Some(Event::Job(e)) if e.kind == JobEventKind::Cancelled => break,
            Some(_) => continue,
            None => panic!("stream ended"),
        }
    }
    assert!(matches!(
        other.cancel(h.id()).await,
        Err(Error::WrongState {
            status: JobStatus::Cancelled,
            ..
        })
    ));
    assert!(matches!(
        other.cancel(kessel::JobId::new()).await,
        Err(Error::UnknownJob(_))
    ));
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

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

/// The next-due lookup serves the wait for jobs that come due later; a job
/// due when created is taken by the claim its insert's wake-up brings, and
/// has no entry in the index the lookup reads.
#[actix_rt::test]
async fn the_next_due_lookup_names_jobs_delayed_past_their_creation() {
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_secs(1)).await;
    let now = chrono::Utc::now();
    let immediate = job_at("t", now - chrono::Duration::seconds(5));
    let mut delayed = job_at("t", now);
    delayed.run_at = now + chrono::Duration::seconds(30);
    let mut retrying = job_at("u", now - chrono::Duration::seconds(60));
    retrying.status = JobStatus::Retrying;
    retrying.attempts = 1;
    retrying.run_at = now + chrono::Duration::seconds(10);
    store
        .jobs_insert(&[immediate, delayed.clone(), retrying.clone()])
        .await
        .unwrap();
    let tasks = |names: &[&str]| names.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    assert_eq!(
        store.jobs_next_due(&tasks(&["t"])).await.unwrap(),
        Some(delayed.run_at.trunc_subsecs(6))
    );
    assert_eq!(
        store.jobs_next_due(&tasks(&["t", "u"])).await.unwrap(),
        Some(retrying.run_at.trunc_subsecs(6))
    );
    assert_eq!(store.jobs_next_due(&tasks(&["v"])).await.unwrap(), None);
    db.drop().await;
}

#[actix_rt::test]
async fn a_lapsed_lease_is_rescued_with_its_attempt_counted_and_only_then() {
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_secs(1)).await;
    let now = chrono::Utc::now();
    let job = job_at("t", now);
    store.jobs_insert(std::slice::from_ref(&job)).await.unwrap();
    let claimed = claim_of_t(&store, store.owner(), now, 10, 1).await;
    assert_eq!(claimed.len(), 1);
    // a second claim finds nothing: it is leased
    let again = claim_of_t(&store, uuid::Uuid::new_v4(), now, 10, 1).await;
    assert!(again.is_empty());
    // it starts running (attempt 1, its `started` line written, as the
    // scheduler records a start), then its process "dies"
    let mut running = claimed[0].clone();
    running.status = JobStatus::Running;
    running.attempts = 1;
    let started = kessel::LogLine::new(now, 1, "started");
    store
        .jobs_update(&[JobUpdate::of(&running, vec![started])])
        .await
        .unwrap();
    assert_eq!(
        store.jobs_rescue(now).await.unwrap(),
        0,
        "the lease has not lapsed"
    );
    assert_eq!(
        store
            .jobs_rescue(now + chrono::Duration::seconds(2))
            .await
            .unwrap(),
        1
    );
    let rescued = store.job_get(job.id).await.unwrap().unwrap();
    assert_eq!(rescued.status, JobStatus::Ready);
    assert_eq!(rescued.attempts, 1, "the cut-off attempt counts");
    assert!(rescued
        .logs
        .iter()
        .any(|l| l.message.starts_with("lease lapsed")));
    // the old owner learns it lost the lease at its next heartbeat
    let reply = store
        .jobs_heartbeat(&JobHeartbeat {
            owner: store.owner(),
            ids: vec![job.id],
            lease_until: now + chrono::Duration::seconds(5),
        })
        .await
        .unwrap();
    assert_eq!(reply.lost, vec![job.id]);
    db.drop().await;
}

#[actix_rt::test]
async fn migrations_run_once_under_concurrent_starts_and_refuse_a_newer_schema() {
    let Some(db) = pg::fresh().await else { return };
    let (a, b, c) = tokio::join!(
        PgStore::connect_with(db.options()),
        PgStore::connect_with(db.options()),
        PgStore::connect_with(db.options())
    );
    let a = a.unwrap();
    b.unwrap();
    c.unwrap();
    assert_eq!(
        a.schema_version().await.unwrap(),
        kessel::store::postgres::SCHEMA_VERSION
    );
    // a newer kessel migrated this schema: refuse, touch nothing
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {}.kessel_schema (version) VALUES (99)",
        db.schema
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    match PgStore::connect_with(db.options()).await {
        Err(StoreError::NewerSchema {
            found: 99,
            supported,
        }) => {
            assert_eq!(supported, kessel::store::postgres::SCHEMA_VERSION)
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert_eq!(a.schema_version().await.unwrap(), 99);
    assert!(matches!(
        PgStore::connect_with(
            kessel::store::PgOptions::new(&db.url).schema("Robert'); DROP TABLE x;--")
        )
        .await,
        Err(StoreError::InvalidConfig(_))
    ));
    assert!(matches!(
        PgStore::connect_with(kessel::store::PgOptions::new("not a url").schema("fine")).await,
        Err(StoreError::InvalidConfig(_))
    ));
    db.drop().await;
}

#[actix_rt::test]
async fn terminated_connections_are_recovered_and_nothing_is_lost() {
    let Some(db) = pg::fresh().await else { return };
    let app = format!("kessel-cut-{}", &db.schema);
    let store = kessel::store::PgStore::connect_with(
        db.options()
            .lease(Duration::from_secs(2))
            .application_name(&app),
    )
    .await
    .unwrap();
    let queue = Queue::builder()
        .store(Arc::new(store))
        .shared(kessel::SharedConfig {
            poll: Duration::from_millis(200),
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let mut events = queue.events(Filter::All);
    queue
        .define("io")
        .action(|_: JobContext<u32>| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, JobError>(())
        })
        .unwrap();
    queue.process(["default"]).concurrency(8).start().unwrap();
    let handles = queue
        .create_many((0..300).map(|n| NewJob::new("io", n)))
        .await
        .unwrap();
    let mut completed = 0;
    while completed < 50 {
        if let Some(Event::Job(e)) = events.next().await {
            if matches!(e.kind, JobEventKind::Completed { .. }) {
                completed += 1;
            }
        }
    }
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&app)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(killed > 0, "the queue's sessions were cut");
    for h in &handles {
        assert_eq!(h.result().await.unwrap().status, JobStatus::Completed);
    }
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("io", JobStatus::Completed), 300);
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

/// A PostgreSQL store whose next-due lookup never answers: what a claim
/// took must not wait for it.
#[derive(Debug)]
struct NextDueNeverAnswers(PgStore);

#[async_trait::async_trait]
impl Store for NextDueNeverAnswers {
    async fn jobs_insert(&self, jobs: &[kessel::Job]) -> Result<(), StoreError> {
        self.0.jobs_insert(jobs).await
    }
    async fn jobs_update(&self, updates: &[JobUpdate]) -> Result<(), StoreError> {
        self.0.jobs_update(updates).await
    }
    async fn jobs_pending(&self) -> Result<Vec<kessel::Job>, StoreError> {
        self.0.jobs_pending().await
    }
    async fn job_get(&self, id: kessel::JobId) -> Result<Option<kessel::Job>, StoreError> {
        self.0.job_get(id).await
    }
    async fn jobs_query(
        &self,
        query: &kessel::store::JobQuery,
    ) -> Result<Vec<kessel::Job>, StoreError> {
        self.0.jobs_query(query).await
    }
    async fn jobs_count(&self) -> Result<Vec<kessel::store::StatusCount>, StoreError> {
        self.0.jobs_count().await
    }
    async fn jobs_delete(&self, params: &kessel::store::JobDelete) -> Result<u64, StoreError> {
        self.0.jobs_delete(params).await
    }
    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.0.close().await
    }
}

#[async_trait::async_trait]
impl SharedStore for NextDueNeverAnswers {
    fn owner(&self) -> uuid::Uuid {
        self.0.owner()
    }
    async fn jobs_claim(&self, params: &JobClaim) -> Result<Vec<kessel::Job>, StoreError> {
        self.0.jobs_claim(params).await
    }
    async fn jobs_heartbeat(
        &self,
        params: &JobHeartbeat,
    ) -> Result<kessel::store::HeartbeatReply, StoreError> {
        self.0.jobs_heartbeat(params).await
    }
    async fn jobs_release(
        &self,
        owner: uuid::Uuid,
        ids: &[kessel::JobId],
    ) -> Result<(), StoreError> {
        self.0.jobs_release(owner, ids).await
    }
    async fn jobs_rescue(&self, now: chrono::DateTime<chrono::Utc>) -> Result<u64, StoreError> {
        self.0.jobs_rescue(now).await
    }
    async fn jobs_expire(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        ids: &[kessel::JobId],
    ) -> Result<u64, StoreError> {
        self.0.jobs_expire(now, ids).await
    }
    async fn job_cancel(
        &self,
        id: kessel::JobId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<kessel::store::CancelOutcome, StoreError> {
        self.0.job_cancel(id, now).await
    }
    async fn jobs_next_due(
        &self,
        _tasks: &[String],
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        std::future::pending().await
    }
    fn wakeups(&self) -> futures::stream::BoxStream<'static, ()> {
        self.0.wakeups()
    }
    fn lease(&self) -> Duration {
        self.0.lease()
    }
}

/// A claim's jobs are taken in and started as soon as the claim returns:
/// they do not wait for the lookup of when the next job is due, nor does
/// the claim for a job created meanwhile.
#[actix_rt::test]
async fn claimed_jobs_start_without_waiting_for_the_next_due_lookup() {
    let Some(db) = pg::fresh().await else { return };
    let store = NextDueNeverAnswers(db.store(LEASE).await);
    let queue = Queue::builder()
        .store(Arc::new(store))
        .shared(kessel::SharedConfig {
            // Only a claim right after each create can start these jobs in
            // time: the poll is far beyond the test's bound.
            poll: Duration::from_secs(3600),
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    queue
        .define("quick")
        .action(|job: JobContext<u32>| async move { Ok::<_, JobError>(job.payload) })
        .unwrap();
    queue.process(["default"]).concurrency(4).start().unwrap();
    for n in 0..3u32 {
        let handle = queue.create("quick", n).await.unwrap();
        let done = tokio::time::timeout(Duration::from_secs(20), handle.result())
            .await
            .unwrap_or_else(|_| panic!("job {n} never ran"))
            .unwrap();
        assert_eq!(done.value, Some(serde_json::json!(n)));
    }
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

/// The one-line constructor takes options: the queue lives in the schema
/// it names.
#[actix_rt::test]
async fn a_queue_built_in_one_line_lives_in_the_schema_its_options_name() {
    let Some(db) = pg::fresh().await else { return };
    let queue = Queue::postgres_with(db.options()).await.expect("the queue");
    let job = queue.create("elsewhere", 1).delay("1h").await.unwrap();
    let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.jobs WHERE id = $1",
        db.schema
    )))
    .bind(job.id().0)
    .fetch_one(&db.pool)
    .await
    .expect("the job's row in the named schema");
    assert_eq!(count, 1);
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

/// A job nobody serves is expired on time by the process that created
/// it (its expiry watch), not only by the rescuer's sweep a quarter lease
/// later: the lease here is a minute, so only the watch can be on time.
#[actix_rt::test]
async fn a_job_nobody_holds_is_expired_on_time_by_the_process_that_created_it() {
    let Some(db) = pg::fresh().await else { return };
    let queue = db.queue(Duration::from_secs(60), POLL).await;
    queue
        .define("unserved")
        .tag("nobody-serves-this")
        .action(|_: JobContext<u32>| async move { Ok::<_, JobError>(()) })
        .unwrap();
    let created = std::time::Instant::now();
    let handle = queue
        .create("unserved", 1)
        .expires_in(Duration::from_millis(300))
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), handle.result())
        .await
        .expect("expired well before the rescuer's sweep")
        .unwrap();
    assert_eq!(result.status, JobStatus::Expired);
    let waited = created.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "expired early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

/// A vacuum that gives a table's empty last pages back takes an ACCESS
/// EXCLUSIVE lock on it, which stops every claim and create until it is
/// done: the job tables are set never to be truncated (schema 19), so a
/// vacuum after the last pages emptied leaves the table's size as it was.
#[actix_rt::test]
async fn a_vacuum_never_truncates_the_job_tables_so_it_never_locks_the_queue_out() {
    use sqlx::Connection;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(LEASE).await;
    let now = chrono::Utc::now().trunc_subsecs(6);
    let jobs: Vec<kessel::Job> = (0..2_000)
        .map(|_| {
            let mut job = job_at("filler", now);
            job.logs.push(kessel::LogLine {
                at: now,
                attempt: 0,
                message: "a line for the log table".into(),
                data: None,
            });
            job
        })
        .collect();
    store.jobs_insert(&jobs).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&pg::url()).await.unwrap();
    let size = |table: String| {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT pg_relation_size('{table}')"
        )))
    };
    for table in ["jobs", "job_logs"] {
        let table = format!("{}.{table}", db.schema);
        let full = size(table.clone()).fetch_one(&mut conn).await.unwrap();
        assert!(full > 8192 * 4, "{table} holds pages to give back: {full}");
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM {table}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let after = size(table.clone()).fetch_one(&mut conn).await.unwrap();
        assert_eq!(after, full, "a vacuum truncated {table}");
    }
    conn.close().await.unwrap();
    drop(store);
    db.drop().await;
}

/// The rate state of each group of a task limited in rate per group is a
/// row in `rate_limits`: the rows of groups rested for a minute go in
/// later claims (a sampled cleanup), so one-off groups leave nothing
/// behind, and a group still inside its rate keeps its row.
#[actix_rt::test]
async fn rested_groups_rate_rows_are_removed_by_later_claims() {
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_secs(30)).await;
    let t = chrono::Utc::now();
    let mut jobs = Vec::new();
    for g in 0..40 {
        let mut job = job_at("rated", t - chrono::Duration::seconds(10));
        job.group = Some(format!("one-off-{g}"));
        jobs.push(job);
    }
    for _ in 0..2 {
        let mut job = job_at("rated", t - chrono::Duration::seconds(10));
        job.group = Some("steady".into());
        jobs.push(job);
    }
    store.jobs_insert(&jobs).await.unwrap();
    let claim = |at: chrono::DateTime<chrono::Utc>| JobClaim {
        group_rate_limits: vec![("rated".into(), kessel::RateLimit::per_second(1))],
        ..JobClaim::new(
            store.owner(),
            ["rated"],
            at,
            100,
            at + chrono::Duration::seconds(600),
        )
    };
    let first = store.jobs_claim(&claim(t)).await.unwrap();
    assert_eq!(first.len(), 41, "one of each group: {first:?}");
    let rows = format!(
        "SELECT grp FROM {}.rate_limits WHERE kind = 'group' ORDER BY grp",
        db.schema
    );
    let groups = || async {
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(rows.clone()))
            .fetch_all(store.pool())
            .await
            .unwrap()
    };
    assert_eq!(groups().await.len(), 41, "a row per group that started");
    // Two minutes on: the steady group's second job starts, the one-off
    // groups have rested for a minute. One claim in sixteen cleans up:
    // 400 claims all missing it would happen once in 10^11.
    let later = t + chrono::Duration::seconds(120);
    let second = store.jobs_claim(&claim(later)).await.unwrap();
    assert_eq!(second.len(), 1, "the steady group's second job");
    let mut left = groups().await;
    for _ in 0..400 {
        if left == ["steady"] {
            break;
        }
        store.jobs_claim(&claim(later)).await.unwrap();
        left = groups().await;
    }
    assert_eq!(
        left,
        ["steady"],
        "the rested groups' rows went, the steady one's stayed"
    );
    db.drop().await;
}

/// A create on the store's own pool wakes the listening processes, each
/// kind of it (one at a time, so each wakes with its insert): one job
/// with its "created" line (the usual single create), a few (one
/// statement) and many (`COPY`).
#[actix_rt::test]
async fn every_kind_of_create_wakes_the_listeners_once_it_committed() {
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_secs(30)).await;
    let mut wakeups = store.wakeups();
    let now = chrono::Utc::now().trunc_subsecs(6);
    let with_created_line = |n: usize| {
        let mut jobs = pg::ready_jobs("x", n, now);
        for job in &mut jobs {
            job.logs = vec![kessel::LogLine::new(job.created_at, 0, "created")];
        }
        jobs
    };
    // The listener takes a moment to start: single jobs until one wakes it.
    let mut heard = false;
    for _ in 0..100 {
        store.jobs_insert(&with_created_line(1)).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(100), wakeups.next())
            .await
            .is_ok()
        {
            heard = true;
            break;
        }
    }
    assert!(heard, "a hundred single creates brought no wake-up");
    for (what, jobs) in [
        ("one job", with_created_line(1)),
        ("three jobs", pg::ready_jobs("x", 3, now)),
        ("a thousand jobs", pg::ready_jobs("x", 1000, now)),
    ] {
        // What earlier inserts brought, out of the way.
        while let Ok(Some(())) =
            tokio::time::timeout(Duration::from_millis(200), wakeups.next()).await
        {}
        store.jobs_insert(&jobs).await.unwrap();
        let woke = tokio::time::timeout(Duration::from_secs(10), wakeups.next()).await;
        assert!(
            matches!(woke, Ok(Some(()))),
            "{what}: no wake-up ({woke:?})"
        );
    }
    db.drop().await;
}

/// Creates that overlap send their wake-up apart from their insert, once
/// it committed, so their commits can share a WAL flush: two single
/// creates held in flight together (the jobs table locked against them)
/// each wake the listeners, the first with its insert, the second after
/// its commit.
#[actix_rt::test]
async fn overlapping_creates_each_wake_the_listeners_once_they_committed() {
    let Some(db) = pg::fresh().await else { return };
    let store = Arc::new(db.store(Duration::from_secs(30)).await);
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    listener
        .listen(&format!("kessel_{}", db.schema))
        .await
        .unwrap();
    let jobs_table = format!("{}.jobs", db.schema);
    let mut locker = db.pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {jobs_table} IN SHARE MODE"
    )))
    .execute(&mut *locker)
    .await
    .unwrap();
    let waiting = |n: i64| {
        let (pool, table) = (db.pool.clone(), jobs_table.clone());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let blocked: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass",
                )
                .bind(&table)
                .fetch_one(&pool)
                .await
                .unwrap();
                if blocked == n {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{blocked} inserts waiting, not {n}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let now = chrono::Utc::now().trunc_subsecs(6);
    let create = || {
        let store = store.clone();
        let mut jobs = pg::ready_jobs("x", 1, now);
        jobs[0].logs = vec![kessel::LogLine::new(now, 0, "created")];
        tokio::spawn(async move { store.jobs_insert(&jobs).await })
    };
    let first = create();
    waiting(1).await;
    let second = create();
    waiting(2).await;
    locker.rollback().await.unwrap();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let mut heard = 0;
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), listener.recv()).await {
        if n.payload().is_empty() {
            heard += 1;
        }
    }
    assert_eq!(heard, 2, "a wake-up from each create");
    db.drop().await;
}

/// A claim of task `t` by `owner` at `now`, at most `limit` jobs, leased
/// for `lease_secs`.
async fn claim_of_t(
    store: &PgStore,
    owner: uuid::Uuid,
    now: chrono::DateTime<chrono::Utc>,
    limit: usize,
    lease_secs: i64,
) -> Vec<kessel::Job> {
    let lease_until = now + chrono::Duration::seconds(lease_secs);
    store
        .jobs_claim(&JobClaim::new(owner, ["t"], now, limit, lease_until))
        .await
        .unwrap()
}

/// The physical place of job `id`'s current row version: a new one
/// means the row was written again.
async fn row_version(db: &pg::TestDb, id: kessel::JobId) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT ctid::text || '/' || xmin::text FROM {}.jobs WHERE id = $1",
        db.schema
    )))
    .bind(id.0)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// The claim counts the attempt in the table, so the start that follows
/// writes only its log line: the job's row is not written again. The
/// claim hands the job over as it was; a job given back unstarted returns
/// as it was, whether its owner recorded it (a retry keeps its status) or
/// not (back to ready, the claim's attempt undone).
#[actix_rt::test]
async fn a_claim_counts_the_attempt_so_starting_the_job_writes_no_row() {
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(LEASE).await;
    let now = chrono::Utc::now();
    let mut retrying = job_at("t", now - chrono::Duration::seconds(2));
    retrying.status = JobStatus::Retrying;
    retrying.attempts = 1;
    retrying.last_error = Some("flaky".into());
    let fresh = job_at("t", now - chrono::Duration::seconds(1));
    let kept = job_at("t", now);
    store
        .jobs_insert(&[retrying.clone(), fresh.clone(), kept.clone()])
        .await
        .unwrap();

    let claimed = claim_of_t(&store, store.owner(), now, 3, 30).await;
    let by_id = |id| claimed.iter().find(|j| j.id == id).unwrap().clone();
    let (mine_retrying, mine_fresh) = (by_id(retrying.id), by_id(fresh.id));
    assert_eq!(
        (mine_retrying.status, mine_retrying.attempts),
        (JobStatus::Retrying, 1),
        "handed over as it was"
    );
    assert_eq!(
        (mine_fresh.status, mine_fresh.attempts),
        (JobStatus::Ready, 0)
    );
    for (j, attempts) in [(&retrying, 2), (&fresh, 1), (&kept, 1)] {
        let stored = store.job_get(j.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.attempts),
            (JobStatus::Running, attempts),
            "others read a claimed job as running, its attempt counted"
        );
    }

    // The owner starts `kept`: the same status and attempt, and a line.
    let before = row_version(&db, kept.id).await;
    let mut started = by_id(kept.id);
    started.status = JobStatus::Running;
    started.attempts = 1;
    let line = kessel::LogLine::new(now, 1, "started");
    store
        .jobs_update(&[JobUpdate::of(&started, vec![line])])
        .await
        .unwrap();
    assert_eq!(
        row_version(&db, kept.id).await,
        before,
        "the start wrote the job's row again"
    );
    let stored = store.job_get(kept.id).await.unwrap().unwrap();
    assert!(
        stored.logs.iter().any(|l| &*l.message == "started"),
        "the start's line is written: {:?}",
        stored.logs
    );
    // A change is still written.
    started.status = JobStatus::Completed;
    started.finished_at = Some(now);
    store
        .jobs_update(&[JobUpdate::of(&started, Vec::new())])
        .await
        .unwrap();
    assert_eq!(
        store.job_get(kept.id).await.unwrap().unwrap().status,
        JobStatus::Completed
    );

    // Given back unstarted: the retry recorded as it was, the other not.
    store
        .jobs_update(&[JobUpdate::of(&mine_retrying, Vec::new())])
        .await
        .unwrap();
    store
        .jobs_release(store.owner(), &[retrying.id, fresh.id])
        .await
        .unwrap();
    for (j, status, attempts) in [
        (&retrying, JobStatus::Retrying, 1),
        (&fresh, JobStatus::Ready, 0),
    ] {
        let stored = store.job_get(j.id).await.unwrap().unwrap();
        assert_eq!((stored.status, stored.attempts), (status, attempts));
    }
    let again = claim_of_t(&store, uuid::Uuid::new_v4(), now, 3, 30).await;
    assert_eq!(again.len(), 2, "both are claimable again: {again:?}");
    db.drop().await;
}
