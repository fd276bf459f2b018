//! Real processes on one PostgreSQL schema: three workers
//! (`examples/worker.rs`) and a producer (`examples/producer.rs`); one
//! worker killed with SIGKILL mid-run; a cancel crossing processes.
//!
//! These tests wait on other processes, so they poll the database in
//! bounded loops (every 50 ms, with a deadline that fails the test), never
//! sleeping a fixed time to "let things happen".
#![cfg(feature = "postgres")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg;
use kessel::store::{JobQuery, PgStore, Store};
use kessel::{JobStatus, Queue};

// Long enough that a busy 2-core machine never lets a live worker's
// lease lapse (heartbeats come every third of it), so the only rescues
// are the killed worker's.
const LEASE_MS: u64 = 5000;

/// One test at a time: each starts several processes with a pool of
/// connections each, and together they would pass the server's
/// `max_connections`.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn example(name: &str) -> PathBuf {
    // target/debug/deps/<test> -> target/debug/examples/<name>
    let mut path = std::env::current_exe().expect("test binary path");
    path.pop();
    path.pop();
    path.push("examples");
    path.push(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test --all-features` builds the examples",
        path.display()
    );
    path
}

struct Worker(Child, String);

impl Worker {
    fn start(db: &pg::TestDb, concurrency: u32) -> Self {
        Self::start_with(db, concurrency, &["--work-ms", "5"])
    }

    fn start_with(db: &pg::TestDb, concurrency: u32, extra: &[&str]) -> Self {
        let mut child = Command::new(example("worker"))
            .args([&db.url, "--schema", &db.schema])
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--lease-ms", &LEASE_MS.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a worker");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped"))
            .read_line(&mut line)
            .expect("read the worker's first line");
        assert!(line.contains("ready"), "worker said {line:?}");
        let owner = line
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        Worker(child, owner)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL the worker");
        self.0.wait().expect("reap the worker");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count_final(store: &PgStore) -> u64 {
    store
        .jobs_count()
        .await
        .expect("count jobs")
        .iter()
        .filter(|c| c.status.is_final())
        .map(|c| c.count)
        .sum()
}

#[actix_rt::test]
async fn three_workers_finish_ten_thousand_jobs_when_one_is_killed_mid_run() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::start(&db, 8)).collect();

    let produced = Command::new(example("producer"))
        .args([
            &db.url, "--schema", &db.schema, "--count", "10000", "--batch", "1000",
        ])
        .output()
        .expect("run the producer");
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );

    wait_for("2,000 completions", Duration::from_secs(120), || async {
        count_final(&store).await >= 2000
    })
    .await;
    let victim = workers[0].pid();
    let victim_owner = workers[0].1.clone();
    workers[0].kill();
    let killed_at = chrono::Utc::now();
    // A statement the worker had sent before it died still commits (each
    // write is one statement): wait until its sessions are gone, so the
    // jobs it holds now are the ones it will never finish.
    wait_for(
        "the killed worker's sessions to end",
        Duration::from_secs(30),
        || async {
            let sessions: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind(format!("kessel-worker-{victim}"))
            .fetch_one(&db.pool)
            .await
            .unwrap();
            sessions == 0
        },
    )
    .await;
    // What the dead worker held: claimed, running, or finished but not yet
    // acknowledged; with those already rescued from it, should the wait
    // above have outlasted a lease on a loaded machine.
    let held: Vec<uuid::Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {schema}.jobs WHERE leased_by = $1::uuid
         UNION
         SELECT job_id FROM {schema}.job_logs
         WHERE message LIKE 'lease lapsed%' AND strpos(message, $1) > 0",
        schema = db.schema
    )))
    .bind(&victim_owner)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(!held.is_empty(), "the killed worker held jobs");

    wait_for(
        "every job to be final",
        Duration::from_secs(180),
        || async { count_final(&store).await >= 10_000 },
    )
    .await;

    let counts = store.jobs_count().await.unwrap();
    let completed: u64 = counts
        .iter()
        .filter(|c| c.status == JobStatus::Completed)
        .map(|c| c.count)
        .sum();
    assert_eq!(
        completed, 10_000,
        "every job completed exactly once in the store: {counts:?}"
    );

    // Executions recorded by the handler (one row per finished run).
    let rows: Vec<(uuid::Uuid, i32)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT job_id, pid FROM {}.work_done",
        db.schema
    )))
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut runs: HashMap<uuid::Uuid, Vec<i32>> = HashMap::new();
    for (id, pid) in rows {
        runs.entry(id).or_default().push(pid);
    }
    assert_eq!(runs.len(), 10_000, "every job ran");
    let rerun: Vec<uuid::Uuid> = runs
        .iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(id, _)| *id)
        .collect();

    // The killed worker's leased jobs were rescued after its leases ran
    // out (a lease, the rescuer's quarter-lease period, and slack for a
    // loaded machine, where the rescuer may be a leader elected after the
    // kill), and only its jobs: live workers renew theirs.
    let rescued: Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT job_id, at, message FROM {}.job_logs WHERE message LIKE 'lease lapsed%'",
            db.schema
        )))
        .fetch_all(&db.pool)
        .await
        .unwrap();
    for (id, at, message) in &rescued {
        assert!(
            message.contains(&victim_owner),
            "job {id} rescued from a live worker: {message}"
        );
        let after = (*at - killed_at).num_milliseconds();
        assert!(
            after <= (LEASE_MS as i64) * 4,
            "rescued {after} ms after the kill"
        );
    }
    let mut rescued_ids: Vec<uuid::Uuid> = rescued.iter().map(|r| r.0).collect();
    rescued_ids.sort();
    let mut held = held;
    held.sort();
    assert_eq!(
        rescued_ids, held,
        "exactly the jobs the killed worker held were rescued"
    );
    // Reruns are only jobs the killed worker held, and it ran them first.
    for id in &rerun {
        assert!(
            held.binary_search(id).is_ok(),
            "job {id} ran twice but the killed worker never held it"
        );
        assert!(
            runs[id].contains(&victim),
            "job {id} ran twice without the killed worker"
        );
    }
    drop(workers);
    db.drop().await;
}

#[actix_rt::test]
async fn a_cancel_from_this_process_reaches_a_job_running_in_a_worker_process() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let _worker = Worker::start(&db, 2);
    let store = Arc::new(db.store(Duration::from_millis(LEASE_MS)).await);
    let queue = Queue::builder().store(store.clone()).build().await.unwrap();
    let h = queue.create("sleep", 600_000u64).await.unwrap();
    wait_for(
        "the worker to start the job",
        Duration::from_secs(30),
        || async {
            store
                .job_get(h.id())
                .await
                .unwrap()
                .is_some_and(|j| j.status == JobStatus::Running)
        },
    )
    .await;
    let asked = Instant::now();
    queue.cancel(h.id()).await.unwrap();
    let result = queue.result(h.id()).await.unwrap();
    assert_eq!(result.status, JobStatus::Cancelled);
    assert!(
        asked.elapsed() < Duration::from_millis(LEASE_MS * 2),
        "seen within a heartbeat"
    );
    let job = store.job_get(h.id()).await.unwrap().unwrap();
    assert_eq!(job.attempts, 1);
    let lines: Vec<&str> = job.logs.iter().map(|l| &*l.message).collect();
    assert_eq!(lines.last(), Some(&"cancelled"), "{lines:?}");
    let none_left = store
        .jobs_query(&JobQuery::default().status(JobStatus::Running))
        .await
        .unwrap();
    assert!(none_left.is_empty());
    db.drop().await;
}

#[actix_rt::test]
async fn eight_processes_racing_to_create_one_unique_key_store_one_job() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    let producers: Vec<Child> = (0..8)
        .map(|_| {
            Command::new(example("producer"))
                .args([
                    &db.url,
                    "--schema",
                    &db.schema,
                    "--count",
                    "1000",
                    "--task",
                    "race",
                    "--unique",
                    "the one key",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a producer")
        })
        .collect();
    let (mut new, mut duplicates) = (0u64, 0u64);
    for producer in producers {
        let out = producer.wait_with_output().expect("wait for a producer");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let numbers: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert_eq!(numbers.len(), 2, "{line}");
        new += numbers[0];
        duplicates += numbers[1];
    }
    assert_eq!(
        (new, duplicates),
        (1, 7999),
        "one create of 8,000 made a job"
    );
    let stored = store
        .jobs_query(&JobQuery::default().task("race").limit(100))
        .await
        .expect("query");
    assert_eq!(stored.len(), 1, "one job in the database");
    assert_eq!(stored[0].status, JobStatus::Ready);
}

#[actix_rt::test]
async fn a_suspend_in_this_process_stops_dispatch_in_a_worker_process_and_one_started_later() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let mut first = Worker::start(&db, 2);
    let store = Arc::new(db.store(Duration::from_millis(LEASE_MS)).await);
    let queue = Queue::builder().store(store.clone()).build().await.unwrap();
    // Before: the worker runs `work`.
    let before = queue.create("work", 1u64).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), before.result())
        .await
        .expect("a job before the suspend")
        .unwrap();

    queue.suspend_by("work", "operator").await.unwrap();
    let held = queue.create("work", 2u64).await.unwrap();
    // A job created after it, of a task the worker serves, runs: the
    // worker has claimed since `held` was created, and left it.
    let probe = queue.create("sleep", 1u64).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), probe.result())
        .await
        .expect("the probe")
        .unwrap();
    assert_eq!(
        store.job_get(held.id()).await.unwrap().unwrap().status,
        JobStatus::Ready
    );

    // A worker started after the suspend starts suspended.
    first.kill();
    let _second = Worker::start(&db, 2);
    let probe = queue.create("sleep", 1u64).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), probe.result())
        .await
        .expect("the second worker's probe")
        .unwrap();
    assert_eq!(
        store.job_get(held.id()).await.unwrap().unwrap().status,
        JobStatus::Ready
    );
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.suspension_of("work", None).unwrap().by, "operator");

    // Resumed here, the held job runs there.
    queue.resume("work").await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), held.result())
        .await
        .expect("the held job after the resume")
        .unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn three_workers_never_run_more_of_a_task_than_its_max_running_between_them() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    let _workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start_with(&db, 8, &["--work-ms", "20", "--max-running", "5"]))
        .collect();
    let produced = Command::new(example("producer"))
        .args([
            &db.url, "--schema", &db.schema, "--count", "300", "--batch", "300",
        ])
        .output()
        .expect("run the producer");
    assert!(produced.status.success());
    wait_for("300 completions", Duration::from_secs(120), || async {
        count_final(&store).await >= 300
    })
    .await;
    // Each run wrote when its handler started and ended (one machine, one
    // clock): the most runs under way at once, from those spans.
    let done = format!("{}.work_done", db.schema);
    let most: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT max(running)::bigint FROM (
             SELECT sum(delta) OVER (ORDER BY at, delta ROWS UNBOUNDED PRECEDING) AS running FROM (
                 SELECT started_at AS at, 1 AS delta FROM {done}
                 UNION ALL SELECT finished_at, -1 FROM {done}) AS e) AS r"
    )))
    .fetch_one(store.pool())
    .await
    .expect("the most at once");
    let most = most.unwrap_or(0);
    assert!(most <= 5, "{most} runs at once, the limit is 5");
    assert!(
        most >= 3,
        "the workers ran several at once (at most {most})"
    );
    let runs: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {done}")))
        .fetch_one(store.pool())
        .await
        .expect("count runs");
    assert_eq!(runs, 300, "each job ran once");
}

/// Events across real processes: a subscriber here, three worker
/// processes, and every connection of all four cut in the middle.
#[actix_rt::test]
async fn a_subscriber_here_sees_every_jobs_events_from_three_worker_processes_through_a_cut() {
    use futures::StreamExt;
    use kessel::event::{Event, Filter};
    use std::collections::HashSet;

    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let workers: Vec<Worker> = (0..3).map(|_| Worker::start(&db, 8)).collect();
    let worker_nodes: HashSet<uuid::Uuid> = workers
        .iter()
        .map(|w| w.1.parse().expect("a node id"))
        .collect();
    let store = PgStore::connect_with(
        db.options()
            .lease(Duration::from_millis(LEASE_MS))
            .application_name(format!("{}-producer", db.schema)),
    )
    .await
    .unwrap();
    let queue = Queue::builder()
        .store(Arc::new(store))
        .build()
        .await
        .unwrap();
    let mut events = queue.events_with_buffer(Filter::All, 100_000);
    let mut seen: HashMap<kessel::JobId, Vec<(String, Option<uuid::Uuid>)>> = HashMap::new();
    let take = |event: Event, seen: &mut HashMap<_, Vec<_>>| match event {
        Event::Job(e) => {
            let last = e.kind.is_final();
            seen.entry(e.id)
                .or_default()
                .push((e.kind.name().to_owned(), e.node));
            last.then_some(e.id)
        }
        Event::Lagged { missed } => panic!("missed {missed} events"),
        _ => None,
    };
    // The workers relay from when they hear of this listener: wait until
    // jobs have been seen starting on each of them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut heard_from = HashSet::new();
    while heard_from != worker_nodes {
        assert!(Instant::now() < deadline, "workers relayed: {heard_from:?}");
        queue
            .create_many((0..12u64).map(|_| kessel::NewJob::new("work", 0u64)))
            .await
            .unwrap();
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(event)) = tokio::time::timeout_at(until, events.next()).await {
            if let Event::Job(e) = &event {
                if e.kind.name() == "started" {
                    heard_from.extend(e.node);
                }
            }
        }
    }
    seen.clear();
    let mut ids = Vec::new();
    let app_names: Vec<String> = workers
        .iter()
        .map(|w| format!("kessel-worker-{}", w.0.id()))
        .chain([format!("{}-producer", db.schema)])
        .collect();
    let mut ended = HashSet::new();
    for batch in 0..12 {
        if batch == 6 {
            let cut: i64 = sqlx::query_scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = ANY($1)",
            )
            .bind(&app_names)
            .fetch_one(&db.pool)
            .await
            .unwrap();
            assert!(cut >= 4, "cut {cut} connections");
        }
        loop {
            match queue
                .create_many((0..50u64).map(|_| kessel::NewJob::new("work", 0u64)))
                .await
            {
                Ok(handles) => {
                    ids.extend(handles.iter().map(|h| h.id()));
                    break;
                }
                // A create on a connection cut under it fails: again.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    let wanted: HashSet<kessel::JobId> = ids.iter().copied().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !wanted.is_subset(&ended) {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {} jobs' ends seen",
                    wanted.intersection(&ended).count(),
                    wanted.len()
                )
            })
            .expect("the stream goes on");
        if let Some(id) = take(event, &mut seen) {
            ended.insert(id);
        }
    }
    let producer = queue.node_id();
    for id in &ids {
        let job = &seen[id];
        let kinds: Vec<&str> = job.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"created"), "job {id}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"completed"), "job {id}: {kinds:?}");
        assert!(kinds.contains(&"started"), "job {id}: {kinds:?}");
        assert_eq!(job[0].1, Some(producer));
        for (kind, node) in &job[1..] {
            let node = node.expect("a node");
            assert!(worker_nodes.contains(&node), "{kind} on {node}");
        }
    }
    drop(workers);
    db.drop().await;
}

#[actix_rt::test]
async fn a_small_group_is_not_starved_by_a_large_one_across_worker_processes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    // Created before any worker runs: 1,000 jobs of one tenant, then 10
    // of another.
    let producer = Queue::builder()
        .store(Arc::new(db.store(Duration::from_millis(LEASE_MS)).await))
        .build()
        .await
        .expect("a producer queue");
    let mut jobs: Vec<kessel::NewJob> = (0..1000u64)
        .map(|i| kessel::NewJob::new("work", i).group("big"))
        .collect();
    jobs.extend((0..10u64).map(|i| kessel::NewJob::new("work", 1000 + i).group("small")));
    producer.create_many(jobs).await.expect("create the jobs");
    let _workers: Vec<Worker> = (0..2)
        .map(|_| Worker::start_with(&db, 2, &["--work-ms", "2"]))
        .collect();
    wait_for("1,010 completions", Duration::from_secs(120), || async {
        count_final(&store).await >= 1010
    })
    .await;
    let done = format!("{}.work_done", db.schema);
    let jobs = format!("{}.jobs", db.schema);
    let order: Vec<(i32, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT d.pid, j.group_key FROM {done} AS d JOIN {jobs} AS j ON j.id = d.job_id ORDER BY d.started_at"
    )))
    .fetch_all(store.pool())
    .await
    .expect("the start order");
    assert_eq!(order.len(), 1010, "each job ran once");
    // In each process's own start order (the processes' clocks and speeds
    // on a busy machine do not interleave them reliably), the small
    // group's jobs start among its first starts: its claims shared their
    // batches between the groups.
    let mut starts: HashMap<i32, Vec<&str>> = HashMap::new();
    for (pid, group) in &order {
        starts.entry(*pid).or_default().push(group);
    }
    let mut small = 0;
    for (pid, groups) in &starts {
        let small_at: Vec<usize> = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| **g == "small")
            .map(|(i, _)| i)
            .collect();
        small += small_at.len();
        assert!(
            small_at.iter().all(|&i| i < 2 * small_at.len() + 4),
            "worker {pid} started the small group's jobs at {small_at:?} of its {} starts",
            groups.len()
        );
    }
    assert_eq!(small, 10);
    let _ = producer.shutdown(Duration::ZERO).await;
}

/// The running limit per group holds across processes: three worker
/// processes at concurrency 8, with `max_running_per_group(2)`, never run
/// more than 2 jobs of one group at once between them (from the times each
/// handler started and ended), and still run several groups side by side.
#[actix_rt::test]
async fn three_workers_never_run_more_of_a_group_than_its_max_running_per_group_between_them() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    let producer = Queue::builder()
        .store(Arc::new(db.store(Duration::from_millis(LEASE_MS)).await))
        .build()
        .await
        .expect("a producer queue");
    // 240 jobs over 4 groups, and 20 without a group (one more group).
    let mut jobs: Vec<kessel::NewJob> = (0..240u64)
        .map(|i| kessel::NewJob::new("work", i).group(format!("customer-{}", i % 4)))
        .collect();
    jobs.extend((240..260u64).map(|i| kessel::NewJob::new("work", i)));
    producer.create_many(jobs).await.expect("create the jobs");
    let _workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start_with(&db, 8, &["--work-ms", "20", "--max-running-per-group", "2"]))
        .collect();
    wait_for("260 completions", Duration::from_secs(120), || async {
        count_final(&store).await >= 260
    })
    .await;
    let done = format!("{}.work_done", db.schema);
    let jobs = format!("{}.jobs", db.schema);
    // The most runs of each group under way at once, from the spans.
    let most: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT grp, max(running)::bigint FROM (
             SELECT grp, sum(delta) OVER (PARTITION BY grp ORDER BY at, delta ROWS UNBOUNDED PRECEDING) AS running
             FROM (SELECT COALESCE(j.group_key, '') AS grp, d.started_at AS at, 1 AS delta
                   FROM {done} AS d JOIN {jobs} AS j ON j.id = d.job_id
                   UNION ALL
                   SELECT COALESCE(j.group_key, ''), d.finished_at, -1
                   FROM {done} AS d JOIN {jobs} AS j ON j.id = d.job_id) AS e) AS r
         GROUP BY grp ORDER BY grp"
    )))
    .fetch_all(store.pool())
    .await
    .expect("the most at once per group");
    assert_eq!(most.len(), 5, "{most:?}");
    for (group, n) in &most {
        assert!(
            *n <= 2,
            "{n} runs of group {group:?} at once, the limit is 2: {most:?}"
        );
    }
    let overall: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT max(running)::bigint FROM (
             SELECT sum(delta) OVER (ORDER BY at, delta ROWS UNBOUNDED PRECEDING) AS running FROM (
                 SELECT started_at AS at, 1 AS delta FROM {done}
                 UNION ALL SELECT finished_at, -1 FROM {done}) AS e) AS r"
    )))
    .fetch_one(store.pool())
    .await
    .expect("the most at once");
    assert!(
        overall.unwrap_or(0) >= 4,
        "groups ran side by side (at most {overall:?} at once)"
    );
    let runs: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {done}")))
        .fetch_one(store.pool())
        .await
        .expect("count runs");
    assert_eq!(runs, 260, "each job ran once");
    let _ = producer.shutdown(Duration::ZERO).await;
}

/// Dead letters through a SIGKILL: jobs buried by three worker processes,
/// one killed mid-run, each leave exactly one dead letter, and no letter
/// names a job that was not buried. The letter is written in the same
/// transaction as the bury, so a kill between them cannot split them.
#[actix_rt::test]
async fn every_job_buried_by_worker_processes_leaves_one_dead_letter_through_a_kill() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let _store = db.store(Duration::from_millis(LEASE_MS)).await;
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::start(&db, 8)).collect();
    let produced = Command::new(example("producer"))
        .args([
            &db.url, "--schema", &db.schema, "--count", "3000", "--batch", "500", "--task",
            "doomed",
        ])
        .output()
        .expect("run the producer");
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let jobs = format!("{}.jobs", db.schema);
    let buried = |pool: sqlx::PgPool, jobs: String| async move {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {jobs} WHERE task = 'doomed' AND status = 'buried'"
        )))
        .fetch_one(&pool)
        .await
        .expect("count buried jobs")
    };
    wait_for("600 buried jobs", Duration::from_secs(120), || {
        let (pool, jobs) = (db.pool.clone(), jobs.clone());
        async move { buried(pool, jobs).await >= 600 }
    })
    .await;
    workers[0].kill();
    wait_for("every doomed job buried", Duration::from_secs(180), || {
        let (pool, jobs) = (db.pool.clone(), jobs.clone());
        async move { buried(pool, jobs).await >= 3000 }
    })
    .await;
    // Each letter's reference names its buried job.
    let letters: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT reference, count(*) FROM {jobs} WHERE task = 'doomed letter' GROUP BY reference"
    )))
    .fetch_all(&db.pool)
    .await
    .expect("count letters");
    let twice: Vec<&(String, i64)> = letters.iter().filter(|(_, n)| *n != 1).collect();
    assert!(twice.is_empty(), "letters made more than once: {twice:?}");
    let buried_ids: std::collections::HashSet<String> =
        sqlx::query_scalar::<_, uuid::Uuid>(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM {jobs} WHERE task = 'doomed' AND status = 'buried'"
        )))
        .fetch_all(&db.pool)
        .await
        .expect("buried ids")
        .into_iter()
        .map(|id| kessel::DeadLetter::reference_for(kessel::JobId(id)))
        .collect();
    assert_eq!(buried_ids.len(), 3000, "every doomed job was buried");
    let lettered: std::collections::HashSet<String> = letters
        .into_iter()
        .map(|(reference, _)| reference)
        .collect();
    let missing = buried_ids.difference(&lettered).count();
    let stray = lettered.difference(&buried_ids).count();
    assert_eq!(missing, 0, "buried jobs without a dead letter");
    assert_eq!(stray, 0, "dead letters of jobs that were not buried");
    drop(workers);
    db.drop().await;
}

/// A task's rate limit holds across processes: three worker processes at
/// concurrency 8, with `rate_limit("10/s")` and bursts of 10, start the
/// task's jobs no faster than 10 a second between them (from the times
/// each handler started), and about that fast.
#[actix_rt::test]
async fn three_workers_never_start_more_of_a_task_than_its_rate_limit_between_them() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    let _workers: Vec<Worker> = (0..3)
        .map(|_| {
            Worker::start_with(
                &db,
                8,
                &[
                    "--work-ms",
                    "5",
                    "--rate-limit",
                    "10/s",
                    "--rate-burst",
                    "10",
                ],
            )
        })
        .collect();
    let produced = Command::new(example("producer"))
        .args([
            &db.url, "--schema", &db.schema, "--count", "60", "--batch", "60",
        ])
        .output()
        .expect("run the producer");
    assert!(produced.status.success());
    wait_for("60 completions", Duration::from_secs(120), || async {
        count_final(&store).await >= 60
    })
    .await;
    let done = format!("{}.work_done", db.schema);
    let starts: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(sqlx::AssertSqlSafe(
        format!("SELECT started_at FROM {done} ORDER BY started_at"),
    ))
    .fetch_all(store.pool())
    .await
    .expect("the starts");
    assert_eq!(starts.len(), 60, "each job ran once");
    // Over any span between two starts, at most the burst plus one per
    // 100 ms, and 3 more: a handler starts a little after the claim that
    // spent its start (the claim's answer and the dispatch, under 300 ms
    // even on a loaded machine), so a span of starts may hold the claims
    // of a span up to that much longer. Three processes each
    // applying the limit alone would start 30 at once, then 30 a second.
    for (i, from) in starts.iter().enumerate() {
        for (j, to) in starts.iter().enumerate().skip(i) {
            let span_ms = (*to - *from).num_milliseconds();
            let most = 10 + span_ms / 100 + 3;
            let count = (j - i + 1) as i64;
            assert!(
                count <= most,
                "{count} starts within {span_ms} ms, the limit allows {most}"
            );
        }
    }
    // About the limit: the 50 after the burst take about 5 s.
    let secs = (starts[59] - starts[0]).num_milliseconds() as f64 / 1000.0;
    let rate = 50.0 / secs;
    // Slack both ways for a loaded machine: a burst's first start late
    // by up to a second reads 12.5; three processes each applying the
    // limit alone would start 30 a second.
    assert!(
        (4.0..=12.5).contains(&rate),
        "{rate:.1} starts a second after the burst ({secs:.2} s for 50), the limit is 10"
    );
}

/// Checks that `starts` (sorted) never hold more than `burst` plus one
/// per `interval_ms` over any span between two of them, and 3 more: a
/// handler starts a little after the claim that spent its start (the
/// claim's answer and the dispatch, under 300 ms even on a loaded
/// machine), so a span of starts may hold the claims of a span up to
/// that much longer.
fn assert_rate(what: &str, starts: &[chrono::DateTime<chrono::Utc>], burst: i64, interval_ms: i64) {
    for (i, from) in starts.iter().enumerate() {
        for (j, to) in starts.iter().enumerate().skip(i) {
            let span_ms = (*to - *from).num_milliseconds();
            let most = burst + span_ms / interval_ms + 3;
            let count = (j - i + 1) as i64;
            assert!(
                count <= most,
                "{what}: {count} starts within {span_ms} ms, the limit allows {most}"
            );
        }
    }
}

/// The most runs under way at once, from the spans the handlers wrote.
async fn most_at_once(store: &PgStore, done: &str) -> i64 {
    let most: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT max(running)::bigint FROM (
             SELECT sum(delta) OVER (ORDER BY at, delta ROWS UNBOUNDED PRECEDING) AS running FROM (
                 SELECT started_at AS at, 1 AS delta FROM {done}
                 UNION ALL SELECT finished_at, -1 FROM {done}) AS e) AS r"
    )))
    .fetch_one(store.pool())
    .await
    .expect("the most at once");
    most.unwrap_or(0)
}

/// Runs the producer for `count` jobs of `task`.
fn produce(db: &pg::TestDb, task: &str, count: u32) {
    let produced = Command::new(example("producer"))
        .args([&db.url, "--schema", &db.schema, "--task", task])
        .args(["--count", &count.to_string(), "--batch", &count.to_string()])
        .output()
        .expect("run the producer");
    assert!(produced.status.success(), "{produced:?}");
}

#[actix_rt::test]
async fn three_workers_never_run_more_of_a_tag_than_its_tag_max_running_between_them() {
    tag_max_running_between(&[&[], &[], &[]]).await;
}

/// The same with workers that define different tasks of the tag, as
/// services that each run their own would: the tag's places are shared
/// by tag, whatever tasks each process defines for it.
#[actix_rt::test]
async fn workers_defining_different_tasks_of_a_tag_never_run_more_of_it_than_its_tag_max_running() {
    tag_max_running_between(&[
        &["--without", "work b"],
        &["--without", "work"],
        &["--without", "work b"],
    ])
    .await;
}

/// Starts a worker with `extra` options for each of `workers` (at
/// concurrency 8, `tag_max_running("default", 5)`), runs 150 jobs of each
/// of the tag's two tasks, and checks that at most 5 ran at once.
async fn tag_max_running_between(workers: &[&[&str]]) {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    let _workers: Vec<Worker> = workers
        .iter()
        .map(|extra| {
            let args = [&["--work-ms", "20", "--tag-max-running", "5"][..], extra].concat();
            Worker::start_with(&db, 8, &args)
        })
        .collect();
    // Two tasks of the tag: the limit holds for both together.
    produce(&db, "work", 150);
    produce(&db, "work b", 150);
    wait_for("300 completions", Duration::from_secs(120), || async {
        count_final(&store).await >= 300
    })
    .await;
    let done = format!("{}.work_done", db.schema);
    let most = most_at_once(&store, &done).await;
    assert!(most <= 5, "{most} runs of the tag at once, the limit is 5");
    assert!(
        most >= 3,
        "the workers ran several at once (at most {most})"
    );
    assert_each_ran_once(&store, &db, 150).await;
}

/// Each of the 2 × `each` jobs of `work` and `work b` ran exactly once.
async fn assert_each_ran_once(store: &PgStore, db: &pg::TestDb, each: i64) {
    let done = format!("{}.work_done", db.schema);
    let jobs = format!("{}.jobs", db.schema);
    let runs: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT j.task, count(*), count(DISTINCT j.id) FROM {done} AS d JOIN {jobs} AS j ON j.id = d.job_id
         GROUP BY j.task ORDER BY j.task"
    )))
    .fetch_all(store.pool())
    .await
    .expect("count runs");
    assert_eq!(
        runs,
        [
            ("work".to_owned(), each, each),
            ("work b".to_owned(), each, each)
        ],
        "each job ran once"
    );
}

#[actix_rt::test]
async fn three_workers_never_start_more_of_a_tag_than_its_tag_rate_limit_between_them() {
    tag_rate_limit_between(&[&[], &[], &[]]).await;
}

/// The same with workers that define different tasks of the tag: the
/// tag's rate is kept by tag, whatever tasks each process defines for it.
#[actix_rt::test]
async fn workers_defining_different_tasks_of_a_tag_never_start_more_of_it_than_its_tag_rate_limit()
{
    tag_rate_limit_between(&[
        &["--without", "work b"],
        &["--without", "work"],
        &["--without", "work b"],
    ])
    .await;
}

/// Starts a worker with `extra` options for each of `workers` (at
/// concurrency 8, `tag_rate_limit("default", "10/s")`, bursts of 10),
/// runs 30 jobs of each of the tag's two tasks, and checks the starts
/// kept the tag's rate.
async fn tag_rate_limit_between(workers: &[&[&str]]) {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    let _workers: Vec<Worker> = workers
        .iter()
        .map(|extra| {
            let args = [
                &[
                    "--work-ms",
                    "5",
                    "--tag-rate-limit",
                    "10/s",
                    "--rate-burst",
                    "10",
                ][..],
                extra,
            ]
            .concat();
            Worker::start_with(&db, 8, &args)
        })
        .collect();
    produce(&db, "work", 30);
    produce(&db, "work b", 30);
    wait_for("60 completions", Duration::from_secs(120), || async {
        count_final(&store).await >= 60
    })
    .await;
    let done = format!("{}.work_done", db.schema);
    let starts: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(sqlx::AssertSqlSafe(
        format!("SELECT started_at FROM {done} ORDER BY started_at"),
    ))
    .fetch_all(store.pool())
    .await
    .expect("the starts");
    assert_each_ran_once(&store, &db, 30).await;
    // Three processes each applying the limit alone would start 30 at
    // once, then 30 a second.
    assert_rate("the tag", &starts, 10, 100);
    // About the limit: the 50 after the burst take about 5 s.
    let secs = (starts[59] - starts[0]).num_milliseconds() as f64 / 1000.0;
    let rate = 50.0 / secs;
    // Slack both ways for a loaded machine: a burst's first start late
    // by up to a second reads 12.5; three processes each applying the
    // limit alone would start 30 a second.
    assert!(
        (4.0..=12.5).contains(&rate),
        "{rate:.1} starts a second after the burst ({secs:.2} s for 50), the limit is 10"
    );
}

#[actix_rt::test]
async fn three_workers_never_start_more_of_a_group_than_its_rate_limit_per_group_between_them() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    let producer = Queue::builder()
        .store(Arc::new(db.store(Duration::from_millis(LEASE_MS)).await))
        .build()
        .await
        .expect("a producer queue");
    // 3 groups of 30 jobs, and 30 without a group (one more group).
    let mut jobs: Vec<kessel::NewJob> = (0..90u64)
        .map(|i| kessel::NewJob::new("work", i).group(format!("customer-{}", i % 3)))
        .collect();
    jobs.extend((90..120u64).map(|i| kessel::NewJob::new("work", i)));
    producer.create_many(jobs).await.expect("create the jobs");
    let _workers: Vec<Worker> = (0..3)
        .map(|_| {
            Worker::start_with(
                &db,
                8,
                &[
                    "--work-ms",
                    "5",
                    "--rate-limit-per-group",
                    "10/s",
                    "--rate-burst",
                    "5",
                ],
            )
        })
        .collect();
    wait_for("120 completions", Duration::from_secs(120), || async {
        count_final(&store).await >= 120
    })
    .await;
    let done = format!("{}.work_done", db.schema);
    let jobs = format!("{}.jobs", db.schema);
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(j.group_key, ''), d.started_at
             FROM {done} AS d JOIN {jobs} AS j ON j.id = d.job_id ORDER BY d.started_at"
        )))
        .fetch_all(store.pool())
        .await
        .expect("the starts");
    assert_eq!(rows.len(), 120, "each job ran once");
    let mut by_group: HashMap<String, Vec<chrono::DateTime<chrono::Utc>>> = HashMap::new();
    for (group, at) in rows {
        by_group.entry(group).or_default().push(at);
    }
    assert_eq!(by_group.len(), 4, "{:?}", by_group.keys());
    for (group, starts) in &by_group {
        // Three processes each applying the limit alone would start 15
        // of a group at once, then 30 a second.
        assert_rate(&format!("group {group:?}"), starts, 5, 100);
        // About the limit: the 25 after the burst take about 2.5 s (the
        // burst's first start may come later after its claim than the
        // last's, by up to a second on a loaded machine: 2 s reads 12.5).
        // Three processes each applying the limit alone would start 30 a
        // second.
        let secs = (starts[29] - starts[0]).num_milliseconds() as f64 / 1000.0;
        let rate = 25.0 / secs;
        assert!(
            (3.0..=12.5).contains(&rate),
            "group {group:?}: {rate:.1} starts a second after the burst ({secs:.2} s for 25), the limit is 10"
        );
    }
    // The groups each went at their own rate, side by side: every group
    // started before any group was done (one after another, the first
    // would be done before the last began).
    let latest_first = by_group.values().map(|s| s[0]).max().expect("starts");
    let earliest_last = by_group
        .values()
        .map(|s| s[s.len() - 1])
        .min()
        .expect("starts");
    assert!(
        latest_first < earliest_last,
        "the groups were held back by one another: one began at {latest_first}, after another was done at {earliest_last}"
    );
    let _ = producer.shutdown(Duration::ZERO).await;
}

/// A rate limit per process holds in each process alone, and a process
/// claims no more of the task than its own limit lets start soon: three
/// workers with `rate_limit("3/h per process")` and bursts of 3 each
/// start exactly 3 of 12 jobs (one process's limit for all would start
/// 3 in all); the 3 left stay in the store, unleased, and a fourth
/// worker without the limit runs them.
#[actix_rt::test]
async fn each_worker_starts_its_own_rate_per_process_and_leaves_the_rest_in_the_store() {
    rate_per_process("--rate-limit").await;
}

/// The same with the tag's rate limit per process
/// (`tag_rate_limit("default", "3/h per process")`).
#[actix_rt::test]
async fn each_worker_starts_its_own_tag_rate_per_process_and_leaves_the_rest_in_the_store() {
    rate_per_process("--tag-rate-limit").await;
}

async fn rate_per_process(flag: &str) {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(db) = pg::fresh().await else { return };
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    let limited = [flag, "3/h per process", "--rate-burst", "3"];
    let workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start_with(&db, 8, &limited))
        .collect();
    produce(&db, "work", 12);
    wait_for("9 completions", Duration::from_secs(60), || async {
        count_final(&store).await >= 9
    })
    .await;
    let done = format!("{}.work_done", db.schema);
    let per_pid: Vec<(i32, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT pid, count(*) FROM {done} GROUP BY pid ORDER BY pid"
    )))
    .fetch_all(store.pool())
    .await
    .expect("the starts per process");
    let mut pids: Vec<i32> = workers.iter().map(Worker::pid).collect();
    pids.sort();
    assert_eq!(
        per_pid,
        pids.iter().map(|&p| (p, 3)).collect::<Vec<_>>(),
        "{flag}: each worker started its own 3"
    );
    let jobs = format!("{}.jobs", db.schema);
    let (left, leased): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), count(leased_by) FROM {jobs}
         WHERE status NOT IN ('completed', 'buried', 'cancelled', 'expired')"
    )))
    .fetch_one(store.pool())
    .await
    .expect("the jobs left");
    assert_eq!(
        (left, leased),
        (3, 0),
        "{flag}: the 3 left wait unleased in the store"
    );
    let _free = Worker::start_with(&db, 8, &[]);
    wait_for("12 completions", Duration::from_secs(60), || async {
        count_final(&store).await >= 12
    })
    .await;
    drop(workers);
    db.drop().await;
}
