//! The `sustained` workload: producers and workers at once on PostgreSQL,
//! as users run them all day.
//!
//! Every system runs as child processes the parent drives over stdin and
//! stdout: one producer process and one or more worker processes (the
//! workers split between them). kessel's children are this binary with the
//! hidden `--sustained-role` flag; awa's are the `kessel-bench-awa` binary
//! built from `bench/awa` (a workspace of its own, see its manifest). The
//! line protocol:
//!
//! - a child says `ready` once it can start (the producer after it made a
//!   fresh schema, a worker once its worker is running), then waits for `go`;
//! - the producer creates jobs when told `make N`: `create_many` of up to
//!   128 while it owes more than one, a single create for one, from two
//!   concurrent callers; after each commit it says `made K` (its total);
//! - a worker runs jobs (a handler that records its claim latency and
//!   sleeps 1 ms on tokio's timer) and says `ran K` whenever its total of
//!   finished handlers changed, at most every 2 ms;
//! - on `stop` a worker writes its samples (created, latency; little-endian
//!   u64 pairs, Unix ns) to its samples file, says its last `ran K` and
//!   exits; kessel's producer, given `--samples`, writes each create
//!   call's (began, took) pairs there the same way before it exits; a
//!   failure is said as `failed <why>`.
//!
//! The parent keeps the backlog (asked for minus finished) at 4,000 jobs,
//! or asks for jobs at a fixed rate (single creates). After a warm-up it
//! counts the handlers finished over a window (completion rate) and takes
//! the claim latency (due, when the create call began, to the handler's
//! start) of the jobs created in the window. Meanwhile a thread reads the
//! system's tables in `pg_stat_user_tables` every second (dead tuples, the
//! highest seen); at the end it reads them once more, with their total size.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use kessel::store::{PgOptions, PgStore, Store};
use kessel::{JobContext, JobError, NewJob, Queue};
use serde::{Deserialize, Serialize};

use crate::measure::{histogram, percentiles, Percentiles};
use crate::systems::kessel::PG_SCHEMA;
use crate::systems::Fail;

/// The sustained workload's task (kessel).
pub const TASK: &str = "sustained";
const TAG: &str = "sustained";

/// The most jobs one create call makes.
pub const BULK: u64 = 128;

/// The job's payload: a struct of about 256 bytes of JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Work {
    /// When the job was due (its create call began), Unix ns.
    pub created_ns: u64,
    pub seq: u64,
    pub account: String,
    pub amount_cents: i64,
    pub tags: Vec<String>,
    pub note: String,
}

impl Work {
    pub fn new(seq: u64) -> Self {
        Work {
            created_ns: unix_ns(),
            seq,
            account: format!("acct-{:08}", seq % 100_000),
            amount_cents: (seq % 10_000) as i64,
            tags: vec!["bench".into(), "sustained".into()],
            note: "x".repeat(140),
        }
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Which system's children to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Kessel,
    Awa,
}

impl Peer {
    /// The schema whose tables are the system's.
    fn schema(self) -> &'static str {
        match self {
            Peer::Kessel => PG_SCHEMA,
            Peer::Awa => "awa",
        }
    }
}

/// How the parent asks for jobs.
#[derive(Debug, Clone, Copy)]
pub enum Offer {
    /// Keep this many jobs asked for and not yet finished.
    Backlog(u64),
    /// This many jobs per second, one create each.
    Rate(f64),
}

/// One sustained run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub peer: Peer,
    pub url: String,
    pub workers: usize,
    pub processes: usize,
    pub offer: Offer,
    pub warmup: Duration,
    pub window: Duration,
}

/// What one sustained run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Handlers finished per second over the window.
    pub completion: f64,
    /// Claim latency (due → started) of the jobs created in the window.
    pub claim: Percentiles,
    /// How long the producer's create calls begun in the window took
    /// (the part of the claim latency spent storing the job; kessel only).
    pub create: Option<Percentiles>,
    pub samples: u64,
    /// Dead tuples in the system's tables at the end, and the most seen.
    pub dead_end: i64,
    pub dead_peak: i64,
    pub live_end: i64,
    /// Total size of the system's tables with indexes and TOAST, bytes.
    pub bytes_end: i64,
    /// Autovacuum and autoanalyze runs on those tables during the run.
    pub autovacuums: i64,
    /// Checkpoints the server began during the run (server-wide, timed or
    /// requested, a WAL-triggered one included): a fixed-rate row that
    /// ran under one measured the disk's writes as much as the queue.
    pub checkpoints: i64,
    /// kessel's completed rows in its jobs table at the end (`None` for
    /// another system).
    pub completed_end: Option<i64>,
    /// Jobs asked for, made and finished in the whole run.
    pub asked: u64,
    pub made: u64,
    pub ran: u64,
}

/// Where the awa peer's binary is: `KESSEL_BENCH_AWA`, or beside this one.
pub fn awa_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KESSEL_BENCH_AWA") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.with_file_name("kessel-bench-awa");
    p.exists().then_some(p)
}

/// A child process the parent talks to.
struct Proc {
    child: Child,
    stdin: ChildStdin,
}

impl Proc {
    fn tell(&mut self, line: &str) -> Result<(), Fail> {
        writeln!(self.stdin, "{line}").map_err(|e| format!("cannot tell a child: {e}"))?;
        self.stdin.flush().map_err(|e| e.to_string())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug)]
enum Line {
    Ready,
    Ran(u64),
    Made(u64),
    Failed(String),
    Gone,
    Other,
}

impl Line {
    fn parse(line: &str) -> Line {
        if line == "ready" {
            Line::Ready
        } else if let Some(k) = line.strip_prefix("ran ") {
            k.parse().map_or(Line::Other, Line::Ran)
        } else if let Some(k) = line.strip_prefix("made ") {
            k.parse().map_or(Line::Other, Line::Made)
        } else if let Some(e) = line.strip_prefix("failed ") {
            Line::Failed(e.to_owned())
        } else {
            Line::Other
        }
    }
}

/// Starts one child; its lines arrive on `tx` tagged with `index`.
fn spawn(
    program: &Path,
    args: &[String],
    index: usize,
    tx: &mpsc::Sender<(usize, Line)>,
) -> Result<Proc, Fail> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let stdin = child.stdin.take().expect("piped");
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((index, Line::parse(&line))).is_err() {
                break;
            }
        }
        let _ = tx.send((index, Line::Gone));
    });
    Ok(Proc { child, stdin })
}

/// The workers of process `i` of `processes` when `workers` are split.
fn share(workers: usize, processes: usize, i: usize) -> usize {
    workers / processes + usize::from(i < workers % processes)
}

/// Table statistics of a schema.
#[derive(Debug, Default, Clone, Copy)]
struct TableStats {
    dead: i64,
    live: i64,
    bytes: i64,
    autovacuums: i64,
    checkpoints: i64,
}

async fn table_stats(conn: &mut sqlx::PgConnection, schema: &str) -> Result<TableStats, Fail> {
    let row: (Option<i64>, Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT sum(n_dead_tup)::bigint, sum(n_live_tup)::bigint,
                sum(pg_total_relation_size(relid))::bigint,
                sum(autovacuum_count + autoanalyze_count)::bigint
         FROM pg_stat_user_tables WHERE schemaname = $1",
    )
    .bind(schema)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    Ok(TableStats {
        dead: row.0.unwrap_or(0),
        live: row.1.unwrap_or(0),
        bytes: row.2.unwrap_or(0),
        autovacuums: row.3.unwrap_or(0),
        checkpoints: checkpoints(conn).await,
    })
}

/// Checkpoints the server has begun since its statistics were reset:
/// `pg_stat_bgwriter` up to PostgreSQL 16, `pg_stat_checkpointer` from 17;
/// 0 if neither answers.
async fn checkpoints(conn: &mut sqlx::PgConnection) -> i64 {
    for sql in [
        "SELECT (checkpoints_timed + checkpoints_req)::bigint FROM pg_stat_bgwriter",
        "SELECT (num_timed + num_requested)::bigint FROM pg_stat_checkpointer",
    ] {
        if let Ok(n) = sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut *conn)
            .await
        {
            return n;
        }
    }
    0
}

/// Reads the schema's dead tuples every second until `stop`; the most seen.
fn watch_dead(
    url: String,
    schema: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<i64> {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return 0;
        };
        rt.block_on(async move {
            use sqlx::Connection;
            let Ok(mut conn) = sqlx::PgConnection::connect(&url).await else {
                return 0;
            };
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = table_stats(&mut conn, schema).await {
                    peak = peak.max(s.dead);
                }
                for _ in 0..10 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            peak
        })
    })
}

/// Runs one sustained run (blocking: children, threads and their own
/// tokio runtimes).
pub fn run(spec: &Spec) -> Result<Outcome, Fail> {
    let (program, base): (PathBuf, Vec<String>) = match spec.peer {
        Peer::Kessel => (
            std::env::current_exe().map_err(|e| e.to_string())?,
            vec![
                "--pg-url".into(),
                spec.url.clone(),
                "--sustained-role".into(),
            ],
        ),
        Peer::Awa => (
            awa_binary().ok_or("the awa peer is not built (bench/awa)")?,
            Vec::new(),
        ),
    };
    let role_args = |role: &str, extra: &[String]| -> Vec<String> {
        let mut a = base.clone();
        a.push(role.into());
        if spec.peer == Peer::Awa {
            a.extend(["--pg-url".into(), spec.url.clone()]);
        }
        a.extend(extra.iter().cloned());
        a
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel::<(usize, Line)>();
    let recv = |timeout: Duration| rx.recv_timeout(timeout);
    let wait_ready = |n: usize, what: &str| -> Result<(), Fail> {
        let mut ready = 0;
        while ready < n {
            match recv(Duration::from_secs(180)) {
                Ok((_, Line::Ready)) => ready += 1,
                Ok((i, Line::Failed(e))) => return Err(format!("child {i}: {e}")),
                Ok((i, Line::Gone)) => return Err(format!("child {i} exited before it was ready")),
                Ok(_) => {}
                Err(_) => return Err(format!("{what} did not get ready within 180 s")),
            }
        }
        Ok(())
    };
    // Index 0 is the producer, 1.. the workers.
    let producer_file = dir.path().join("samples-producer");
    let producer_args = match spec.peer {
        Peer::Kessel => vec!["--samples".to_owned(), producer_file.display().to_string()],
        Peer::Awa => Vec::new(),
    };
    let mut procs = vec![spawn(
        &program,
        &role_args("producer", &producer_args),
        0,
        &tx,
    )?];
    wait_ready(1, "the producer")?;
    let mut sample_files = Vec::new();
    for i in 0..spec.processes {
        let file = dir.path().join(format!("samples-{i}"));
        let extra = [
            "--concurrency".to_owned(),
            share(spec.workers, spec.processes, i).to_string(),
            "--samples".to_owned(),
            file.display().to_string(),
        ];
        procs.push(spawn(&program, &role_args("worker", &extra), i + 1, &tx)?);
        sample_files.push(file);
    }
    drop(tx);
    wait_ready(spec.processes, "the worker processes")?;

    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = watch_dead(spec.url.clone(), spec.peer.schema(), stop_watch.clone());
    let stats_before = crate::run(|| async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&spec.url)
            .await
            .map_err(|e| e.to_string())?;
        table_stats(&mut conn, spec.peer.schema()).await
    })?;

    for p in &mut procs {
        p.tell("go")?;
    }
    let started = Instant::now();
    let end = spec.warmup + spec.window;
    let mut ran = vec![0u64; spec.processes + 1];
    let (mut asked, mut made) = (0u64, 0u64);
    let mut window_start: Option<(Instant, u64, u64)> = None;
    let mut window_end: Option<(Instant, u64, u64)> = None;
    let mut failure = None;
    while window_end.is_none() {
        let total: u64 = ran.iter().sum();
        let want = match spec.offer {
            Offer::Backlog(target) => {
                let backlog = asked.saturating_sub(total);
                if backlog + BULK / 2 < target {
                    target - backlog
                } else {
                    0
                }
            }
            Offer::Rate(rate) => {
                let due = (rate * started.elapsed().as_secs_f64()) as u64;
                due.saturating_sub(asked)
            }
        };
        if want > 0 {
            procs[0].tell(&format!("make {want}"))?;
            asked += want;
        }
        let elapsed = started.elapsed();
        if window_start.is_none() && elapsed >= spec.warmup {
            window_start = Some((Instant::now(), total, unix_ns()));
        }
        if elapsed >= end {
            window_end = Some((Instant::now(), total, unix_ns()));
            break;
        }
        match recv(Duration::from_millis(1)) {
            Ok((i, Line::Ran(k))) => ran[i] = k,
            Ok((_, Line::Made(k))) => made = k,
            Ok((i, Line::Failed(e))) => {
                failure = Some(format!("child {i}: {e}"));
                break;
            }
            Ok((i, Line::Gone)) => {
                failure = Some(format!("child {i} exited while running"));
                break;
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                failure = Some("every child is gone".into());
                break;
            }
        }
    }
    for p in &mut procs {
        let _ = p.tell("stop");
    }
    let mut gone = 0;
    let stop_by = Instant::now() + Duration::from_secs(30);
    while gone < procs.len() {
        match recv(stop_by.saturating_duration_since(Instant::now())) {
            Ok((i, Line::Ran(k))) => ran[i] = k,
            Ok((_, Line::Made(k))) => made = k,
            Ok((_, Line::Gone)) => gone += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // A child that has not exited by now is killed (when dropped).
    let exit_by = Instant::now() + Duration::from_secs(10);
    for p in &mut procs {
        while matches!(p.child.try_wait(), Ok(None)) && Instant::now() < exit_by {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(procs);
    stop_watch.store(true, Ordering::Relaxed);
    let dead_peak = watcher.join().unwrap_or(0);
    if let Some(e) = failure {
        return Err(e);
    }
    let (Some((t0, ran0, wall0)), Some((t1, ran1, wall1))) = (window_start, window_end) else {
        return Err("the run ended before its window".into());
    };
    let completion = (ran1 - ran0) as f64 / (t1 - t0).as_secs_f64();
    // Samples are (began, took) pairs, Unix ns: those begun in the window.
    let read_samples = |file: &Path, h: &mut Histogram<u64>| -> Result<u64, Fail> {
        let bytes = std::fs::read(file).map_err(|e| format!("samples: {e}"))?;
        let mut n = 0;
        for pair in bytes.chunks_exact(16) {
            let began = u64::from_le_bytes(pair[..8].try_into().expect("8 bytes"));
            let took = u64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
            if (wall0..wall1).contains(&began) {
                let _ = h.record(took.max(1));
                n += 1;
            }
        }
        Ok(n)
    };
    let mut h: Histogram<u64> = histogram();
    let mut samples = 0;
    for file in &sample_files {
        samples += read_samples(file, &mut h)?;
    }
    let create = match spec.peer {
        Peer::Kessel => {
            let mut h: Histogram<u64> = histogram();
            (read_samples(&producer_file, &mut h)? > 0).then(|| percentiles(&h))
        }
        Peer::Awa => None,
    };
    // The children's statistics are sent when they exit; give the
    // server a moment to take them in.
    std::thread::sleep(Duration::from_millis(1500));
    let after = crate::run(|| async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&spec.url)
            .await
            .map_err(|e| e.to_string())?;
        let stats = table_stats(&mut conn, spec.peer.schema()).await?;
        let completed = match spec.peer {
            Peer::Kessel => Some(
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM {PG_SCHEMA}.jobs WHERE status = 'completed'"
                )))
                .fetch_one(&mut conn)
                .await
                .map_err(|e| e.to_string())?,
            ),
            Peer::Awa => None,
        };
        Ok::<_, Fail>((stats, completed))
    })?;
    let (after, completed_end) = after;
    Ok(Outcome {
        completion,
        claim: percentiles(&h),
        create,
        samples,
        dead_end: after.dead,
        dead_peak: dead_peak.max(after.dead),
        live_end: after.live,
        bytes_end: after.bytes,
        autovacuums: after.autovacuums - stats_before.autovacuums,
        checkpoints: after.checkpoints - stats_before.checkpoints,
        completed_end,
        asked,
        made,
        ran: ran.iter().sum(),
    })
}

/// The work-bound limit of `workers` slots on this machine: that many
/// tasks on one current-thread runtime (as a kessel worker thread is),
/// each looping on the handler's "1 ms of work" (`tokio::time::sleep`),
/// counted over `window`. tokio's timer rounds a sleep up to its next
/// millisecond tick and the OS wakes it later still, so a slot does fewer
/// than 1,000 sleeps a second: this, not `workers × 1,000`, is the most
/// any queue can complete with that handler.
pub fn work_bound(workers: usize, window: Duration) -> f64 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return 0.0,
    };
    rt.block_on(async move {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (done, stop) = (done.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // A warm-up, then the window.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (t0, n0) = (Instant::now(), done.load(Ordering::Relaxed));
        tokio::time::sleep(window).await;
        let (t1, n1) = (Instant::now(), done.load(Ordering::Relaxed));
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        (n1 - n0) as f64 / (t1 - t0).as_secs_f64()
    })
}

/// The child's side for kessel: `producer` or `worker`.
pub fn child_main(
    role: &str,
    url: &str,
    concurrency: usize,
    samples: Option<&Path>,
) -> std::process::ExitCode {
    let outcome = actix_rt::System::new().block_on(async {
        match role {
            "producer" => producer(url, samples).await,
            "worker" => worker(url, concurrency, samples).await,
            other => Err(format!("unknown role {other}")),
        }
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("failed {e}"));
            std::process::ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Lines from the parent, read on a thread of their own; `stop` at the end.
fn commands() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                return;
            }
        }
        let _ = tx.send("stop".into());
    });
    rx
}

/// The store options of kessel's children: the bench schema, and
/// kessel's own vacuuming unless `KESSEL_BENCH_PG_VACUUM=off` (to measure
/// autovacuum alone).
fn options(url: &str) -> PgOptions {
    let options = PgOptions::new(url).schema(PG_SCHEMA);
    if std::env::var("KESSEL_BENCH_PG_VACUUM").as_deref() == Ok("off") {
        options.vacuum_after(None)
    } else {
        options
    }
}

async fn producer(url: &str, samples_file: Option<&Path>) -> Result<(), Fail> {
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"
        )))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    }
    let store = Arc::new(
        PgStore::connect_with(options(url).application_name("kessel-bench-producer"))
            .await
            .map_err(|e| e.to_string())?,
    );
    // A producer only: no worker, so it claims nothing.
    let queue = Queue::builder()
        .store(store.clone())
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let mut commands = commands();
    say("ready");
    let owed = Arc::new(AtomicU64::new(0));
    let made = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let wake = Arc::new(tokio::sync::Notify::new());
    // Each create call: when it began and how long it took, Unix ns.
    let calls: Arc<Mutex<Vec<(u64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let (fail_tx, mut fail_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for _ in 0..2 {
        let (queue, owed, made, seq, wake, fail_tx, calls) = (
            queue.clone(),
            owed.clone(),
            made.clone(),
            seq.clone(),
            wake.clone(),
            fail_tx.clone(),
            calls.clone(),
        );
        actix_rt::spawn(async move {
            loop {
                let take = owed
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                        (o > 0).then(|| o - o.min(BULK))
                    })
                    .map_or(0, |o| o.min(BULK));
                if take == 0 {
                    wake.notified().await;
                    continue;
                }
                let first = seq.fetch_add(take, Ordering::Relaxed);
                let began = unix_ns();
                let done = if take == 1 {
                    queue.create(TASK, Work::new(first)).await.map(drop)
                } else {
                    queue
                        .create_many((first..first + take).map(|i| NewJob::new(TASK, Work::new(i))))
                        .await
                        .map(drop)
                };
                if let Err(e) = done {
                    let _ = fail_tx.send(e.to_string());
                    return;
                }
                let took = unix_ns().saturating_sub(began);
                calls.lock().expect("not poisoned").push((began, took));
                let total = made.fetch_add(take, Ordering::AcqRel) + take;
                say(&format!("made {total}"));
                wake.notify_one();
            }
        });
    }
    loop {
        tokio::select! {
            command = commands.recv() => match command.as_deref() {
                Some(c) if c.starts_with("make ") => {
                    let n: u64 = c[5..].parse().unwrap_or(0);
                    owed.fetch_add(n, Ordering::AcqRel);
                    wake.notify_waiters();
                    wake.notify_one();
                }
                Some("stop") | None => break,
                Some(_) => {}
            },
            Some(e) = fail_rx.recv() => return Err(e),
        }
    }
    let _ = queue.shutdown(Duration::from_secs(5)).await;
    let _ = store.close().await;
    if let Some(path) = samples_file {
        write_samples(
            path,
            std::mem::take(&mut *calls.lock().expect("not poisoned")),
        )?;
    }
    Ok(())
}

/// Writes (began, took) pairs as little-endian u64s.
fn write_samples(path: &Path, samples: Vec<(u64, u64)>) -> Result<(), Fail> {
    let mut bytes = Vec::with_capacity(samples.len() * 16);
    for (a, b) in samples {
        bytes.extend_from_slice(&a.to_le_bytes());
        bytes.extend_from_slice(&b.to_le_bytes());
    }
    std::fs::write(path, bytes).map_err(|e| e.to_string())
}

async fn worker(url: &str, concurrency: usize, samples_file: Option<&Path>) -> Result<(), Fail> {
    let store = Arc::new(
        PgStore::connect_with(options(url).application_name("kessel-bench-worker"))
            .await
            .map_err(|e| e.to_string())?,
    );
    let queue = Queue::builder()
        .store(store.clone())
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let ran = Arc::new(AtomicU64::new(0));
    let samples: Arc<Mutex<Vec<(u64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let (r, s) = (ran.clone(), samples.clone());
    queue
        .define(TASK)
        .tag(TAG)
        .action(move |job: JobContext<Work>| {
            let started = unix_ns();
            let created = job.payload.created_ns;
            s.lock()
                .expect("not poisoned")
                .push((created, started.saturating_sub(created)));
            let r = r.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                r.fetch_add(1, Ordering::Relaxed);
                Ok::<(), JobError>(())
            }
        })
        .map_err(|e| e.to_string())?;
    // The default placement: handlers on a worker thread of their own.
    queue
        .process([TAG])
        .concurrency(concurrency)
        .start()
        .map_err(|e| e.to_string())?;
    let mut commands = commands();
    say("ready");
    loop {
        match commands.recv().await.as_deref() {
            Some("go") => break,
            Some("stop") | None => {
                let _ = queue.shutdown(Duration::from_secs(5)).await;
                return Ok(());
            }
            Some(_) => {}
        }
    }
    let mut told = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    loop {
        tokio::select! {
            command = commands.recv() => {
                if matches!(command.as_deref(), Some("stop") | None) {
                    break;
                }
            }
            _ = tick.tick() => {
                let now = ran.load(Ordering::Relaxed);
                if now != told {
                    told = now;
                    say(&format!("ran {now}"));
                }
            }
        }
    }
    let _ = queue.shutdown(Duration::from_secs(5)).await;
    let _ = store.close().await;
    if let Some(path) = samples_file {
        write_samples(
            path,
            std::mem::take(&mut *samples.lock().expect("not poisoned")),
        )?;
    }
    say(&format!("ran {}", ran.load(Ordering::Relaxed)));
    Ok(())
}
