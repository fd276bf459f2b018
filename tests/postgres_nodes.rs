//! Nodes and the leader with real processes on one PostgreSQL schema:
//! worker processes (`examples/worker.rs`) register as nodes, one leads;
//! the leader killed with SIGKILL is replaced within a lease and the jobs
//! it held are still rescued; a worker that shuts down cleanly leaves.
//!
//! These tests wait on other processes, so they poll the database in
//! bounded loops (every 50 ms, with a deadline that fails the test), never
//! sleeping a fixed time to "let things happen".
#![cfg(feature = "postgres")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg;
use kessel::store::{PgStore, SharedStore, Store};
use kessel::{JobStatus, Node, NodeStatus, Queue};
use uuid::Uuid;

/// Short, so failover is quick to see; long enough that a loaded 2-core
/// machine (CI runs test binaries' tests in parallel) does not let a live
/// worker's lease or the leader's term lapse: renewed every third, a
/// stall of over a second lapses a lease of two.
const LEASE_MS: u64 = 5000;

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

struct Worker {
    child: Child,
    owner: Uuid,
    tag: String,
}

impl Worker {
    fn start(db: &pg::TestDb, n: usize, concurrency: u32, work_ms: u64) -> Self {
        let tag = format!("t{n}");
        let mut child = Command::new(example("worker"))
            .args([&db.url, "--schema", &db.schema])
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--work-ms", &work_ms.to_string()])
            .args(["--lease-ms", &LEASE_MS.to_string()])
            .args(["--tag", &tag])
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
            .parse()
            .expect("the worker names its lease owner");
        Worker { child, owner, tag }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the worker");
        self.child.wait().expect("reap the worker");
    }

    /// Ctrl-C: the worker shuts its queue down and exits.
    fn interrupt(&mut self) {
        let sent = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -INT {}", self.pid());
        let status = self.child.wait().expect("reap the worker");
        assert!(status.success(), "the worker shut down cleanly: {status}");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// Polls `check` until it gives a value, or fails the test after `limit`.
async fn wait_for_value<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn nodes(store: &PgStore) -> Vec<Node> {
    store
        .nodes_list(chrono::Utc::now())
        .await
        .expect("list the nodes")
}

fn leader(nodes: &[Node]) -> Option<&Node> {
    let leaders: Vec<&Node> = nodes.iter().filter(|n| n.leader).collect();
    assert!(leaders.len() <= 1, "one leader at most: {nodes:#?}");
    leaders.first().copied()
}

#[actix_rt::test]
async fn three_workers_register_as_nodes_with_their_tags_and_one_of_them_leads_and_a_clean_shutdown_removes_its_node(
) {
    let Some(db) = pg::fresh().await else { return };
    let mut workers: Vec<Worker> = (0..3).map(|n| Worker::start(&db, n, 3, 5)).collect();
    // This process too, through its queue: a fourth node, with no workers.
    let queue = db
        .queue(Duration::from_millis(LEASE_MS), Duration::from_secs(1))
        .await;

    // Each worker's row shows its tags once its workers started.
    let tagged = |listed: &[Node]| {
        workers.iter().all(|w| {
            listed
                .iter()
                .any(|n| n.id == w.owner && n.tags == ["default".to_owned(), w.tag.clone()])
        })
    };
    let listed = wait_for_value(
        "four live nodes and a leader",
        Duration::from_secs(30),
        || {
            let queue = queue.clone();
            async move {
                let listed = queue.nodes().await.expect("list the nodes");
                (listed.len() == 4
                    && listed.iter().all(|n| n.status == NodeStatus::Live)
                    && leader(&listed).is_some()
                    && tagged(&listed))
                .then_some(listed)
            }
        },
    )
    .await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok();
    for w in &workers {
        let node = listed
            .iter()
            .find(|n| n.id == w.owner)
            .unwrap_or_else(|| panic!("worker {} is not listed: {listed:#?}", w.owner));
        assert_eq!(node.pid, w.pid());
        assert_eq!(node.tags, vec!["default".to_owned(), w.tag.clone()]);
        assert_eq!(node.concurrency, 3);
        assert_eq!(node.version, env!("CARGO_PKG_VERSION"));
        if let Some(host) = &host {
            assert_eq!(&node.host, host);
        }
        assert!(node.last_heartbeat >= node.started_at);
    }
    let me = listed
        .iter()
        .find(|n| n.id == queue.node_id())
        .expect("this process is listed");
    assert_eq!(me.pid, std::process::id());
    assert!(me.tags.is_empty(), "no workers here: {me:?}");
    assert!(
        !me.leader && !queue.is_leader(),
        "a queue without workers gives way to a worker"
    );
    let leading = leader(&listed).expect("a leader");
    assert!(
        workers.iter().any(|w| w.owner == leading.id),
        "a worker leads"
    );

    // A clean shutdown leaves before the process exits.
    let leaving = workers.remove(1);
    let mut leaving = leaving;
    leaving.interrupt();
    let after = queue.nodes().await.unwrap();
    assert_eq!(after.len(), 3, "{after:#?}");
    assert!(after.iter().all(|n| n.id != leaving.owner));

    // So does this process's queue.
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    let store = db.store(Duration::from_millis(LEASE_MS)).await;
    let left = nodes(&store).await;
    assert_eq!(left.len(), 2, "{left:#?}");
    assert!(left.iter().all(|n| n.id != queue.node_id()));
    drop(workers);
    db.drop().await;
}

#[actix_rt::test]
async fn when_the_leader_is_killed_another_node_leads_within_a_lease_and_rescues_its_jobs() {
    let Some(db) = pg::fresh().await else { return };
    let store = Arc::new(db.store(Duration::from_millis(LEASE_MS)).await);
    let mut workers: Vec<Worker> = (0..3).map(|n| Worker::start(&db, n, 4, 200)).collect();
    let first = wait_for_value("a worker to lead", Duration::from_secs(30), || {
        let store = store.clone();
        async move { leader(&nodes(&store).await).map(|n| n.id) }
    })
    .await;

    // Work for every worker for a while: 600 jobs of 200 ms, 12 at a time.
    // This process's queue creates them, then leaves (a worker leads).
    {
        let queue = Queue::builder().store(store.clone()).build().await.unwrap();
        queue
            .create_many((0..600u64).map(|i| kessel::NewJob::new("work", i)))
            .await
            .unwrap();
        queue.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    let count = |status: JobStatus| {
        let store = store.clone();
        async move {
            store
                .jobs_count()
                .await
                .unwrap()
                .iter()
                .filter(|c| c.status == status)
                .map(|c| c.count)
                .sum::<u64>()
        }
    };
    wait_for("60 completions", Duration::from_secs(60), || async {
        count(JobStatus::Completed).await >= 60
    })
    .await;

    let victim = workers
        .iter()
        .position(|w| w.owner == first)
        .expect("the leader is a worker");
    let victim_pid = workers[victim].pid();
    workers[victim].kill();
    let killed = Instant::now();
    let killed_at = chrono::Utc::now();

    // Another node leads within a lease.
    let next = wait_for_value(
        "another node to lead",
        Duration::from_millis(LEASE_MS * 6),
        || {
            let store = store.clone();
            async move {
                leader(&nodes(&store).await)
                    .filter(|n| n.id != first && n.status == NodeStatus::Live)
                    .map(|n| n.id)
            }
        },
    )
    .await;
    let failover = killed.elapsed();
    eprintln!("a new leader {failover:?} after the kill (lease {LEASE_MS} ms)");
    // By design within a lease; the second lease is slack for a loaded
    // machine, where three worker processes and this test share two cores.
    assert!(
        failover <= Duration::from_millis(LEASE_MS * 2),
        "a new leader within a lease (and slack): took {failover:?}"
    );
    assert!(workers.iter().any(|w| w.owner == next));

    // The killed node is listed as gone once its own lease passed.
    wait_for(
        "the killed node to show as gone",
        Duration::from_millis(LEASE_MS * 6),
        || async {
            nodes(&store)
                .await
                .iter()
                .any(|n| n.id == first && n.status == NodeStatus::Gone && !n.leader)
        },
    )
    .await;

    // The jobs it held: rescued by the new leader, and every job completes.
    wait_for(
        "the killed worker's sessions to end",
        Duration::from_secs(30),
        || async {
            let sessions: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind(format!("kessel-worker-{victim_pid}"))
            .fetch_one(&db.pool)
            .await
            .unwrap();
            sessions == 0
        },
    )
    .await;
    wait_for(
        "every job to complete",
        Duration::from_secs(120),
        || async { count(JobStatus::Completed).await == 600 },
    )
    .await;
    let rescued: Vec<(Uuid, chrono::DateTime<chrono::Utc>, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT job_id, at, message FROM {}.job_logs WHERE message LIKE 'lease lapsed%'",
            db.schema
        )))
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(
        !rescued.is_empty(),
        "the killed leader held jobs, and they were rescued"
    );
    for (id, at, message) in &rescued {
        assert!(
            message.contains(&first.to_string()),
            "job {id} rescued from a live worker: {message}"
        );
        let after = (*at - killed_at).num_milliseconds();
        assert!(
            after <= (LEASE_MS as i64) * 4,
            "job {id} rescued {after} ms after the kill"
        );
    }
    drop(workers);
    db.drop().await;
}

/// A process that becomes the leader keeps the retention from then on,
/// not an interval later: completed jobs past the count cap, left by a
/// fleet that kept them all, are removed as soon as it leads, with an
/// interval of an hour.
#[actix_rt::test]
async fn a_process_that_becomes_the_leader_prunes_past_the_cap_at_once() {
    let Some(db) = pg::fresh().await else { return };
    let store = Arc::new(db.store(Duration::from_millis(LEASE_MS)).await);
    let now = chrono::Utc::now();
    let mut jobs = pg::ready_jobs("report", 40, now - chrono::Duration::minutes(5));
    for (i, job) in jobs.iter_mut().enumerate() {
        job.status = JobStatus::Completed;
        job.attempts = 1;
        job.finished_at = Some(now - chrono::Duration::seconds(100 - i as i64));
    }
    store
        .jobs_insert(&jobs)
        .await
        .expect("insert completed jobs");
    assert_eq!(
        store.jobs_count_status(JobStatus::Completed).await.unwrap(),
        40
    );
    let queue = Queue::builder()
        .store(store.clone())
        .retention(kessel::Retention {
            completed_max_count: Some(5),
            interval: Duration::from_secs(3600),
            ..kessel::Retention::default()
        })
        .shared(kessel::SharedConfig {
            poll: Duration::from_millis(100),
            ..Default::default()
        })
        .build()
        .await
        .expect("build the queue");
    wait_for(
        "the new leader to prune to the cap",
        Duration::from_secs(20),
        || {
            let store = store.clone();
            async move { store.jobs_count_status(JobStatus::Completed).await.unwrap() == 5 }
        },
    )
    .await;
    assert!(queue.is_leader(), "the only process leads");
    // The newest five are the ones kept.
    for job in &jobs[35..] {
        assert!(
            store.job_get(job.id).await.unwrap().is_some(),
            "{} kept",
            job.id
        );
    }
    queue
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shut down");
    db.drop().await;
}
