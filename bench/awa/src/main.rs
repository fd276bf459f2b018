//! awa's side of kessel-bench's `sustained` workload: one producer or one
//! worker process, driven by kessel-bench over stdin and stdout with the
//! same line protocol as kessel's own child processes (see
//! `bench/src/sustained.rs`):
//!
//! - the child says `ready` once it can start, then waits for `go`;
//! - a producer creates jobs when told `make N` (up to 128 at a time with
//!   `QueueStorage::enqueue_params_copy`, one with `enqueue_params_batch`:
//!   awa's advice for producers on its queue storage) and says
//!   `made K` (its running total) after each commit;
//! - a worker runs jobs (1 ms of `tokio::time::sleep` each) and says
//!   `ran K` whenever its running total changed, at most every 2 ms;
//! - on `stop` (or end of input) a worker writes its claim latencies
//!   (created, due → started) to the samples file, says its last `ran K`
//!   and exits; a failure is said as `failed <why>`.
//!
//! ```text
//! kessel-bench-awa producer --pg-url URL
//! kessel-bench-awa worker --pg-url URL --concurrency 16 --samples FILE
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use awa::{InsertOpts, JobArgs, JobResult, QueueConfig};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncBufReadExt, BufReader};

const QUEUE: &str = "bench";

/// The job's payload: kessel-bench's `Work`, field for field, about 256
/// bytes of JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Work {
    /// When the job was due (its create call started), Unix ns.
    created_ns: u64,
    seq: u64,
    account: String,
    amount_cents: i64,
    tags: Vec<String>,
    note: String,
}

impl JobArgs for Work {
    fn kind() -> &'static str {
        "sustained_work"
    }
}

impl Work {
    fn new(seq: u64) -> Self {
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

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

struct Args {
    role: String,
    url: String,
    concurrency: u32,
    samples: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let role = it
        .next()
        .ok_or("usage: kessel-bench-awa producer|worker ...")?;
    let mut a = Args {
        role,
        url: String::new(),
        concurrency: 16,
        samples: None,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pg-url" => a.url = value,
            "--concurrency" => a.concurrency = value.parse().map_err(|e| format!("{e}"))?,
            "--samples" => a.samples = Some(value),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn main() {
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            let outcome = rt.block_on(async {
                let a = args()?;
                match a.role.as_str() {
                    "producer" => producer(&a).await,
                    "worker" => worker(&a).await,
                    other => Err(format!("unknown role {other}")),
                }
            });
            // Dropping the runtime would wait for the blocking read of
            // stdin, which the parent keeps open.
            rt.shutdown_background();
            outcome
        });
    if let Err(e) = outcome {
        say(&format!("failed {e}"));
        std::process::exit(1);
    }
}

/// Lines from the parent, read on a task of their own; `stop` at the end.
fn commands() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                return;
            }
        }
        let _ = tx.send("stop".into());
    });
    rx
}

async fn producer(a: &Args) -> Result<(), String> {
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect(&a.url)
        .await
        .map_err(|e| e.to_string())?;
    // A fresh install for every run.
    sqlx::query("DROP SCHEMA IF EXISTS awa CASCADE")
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
    awa::migrations::run(&pool)
        .await
        .map_err(|e| e.to_string())?;
    let mut commands = commands();
    say("ready");
    // Work to make, shared by two concurrent creators.
    let owed = Arc::new(AtomicU64::new(0));
    let made = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let wake = Arc::new(tokio::sync::Notify::new());
    let (fail_tx, mut fail_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let storage = Arc::new(
        awa::QueueStorage::new(awa::QueueStorageConfig::default()).map_err(|e| e.to_string())?,
    );
    for _ in 0..2 {
        let storage = storage.clone();
        let (pool, owed, made, seq, wake, fail_tx) = (
            pool.clone(),
            owed.clone(),
            made.clone(),
            seq.clone(),
            wake.clone(),
            fail_tx.clone(),
        );
        tokio::spawn(async move {
            loop {
                let take = owed
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                        (o > 0).then(|| o - o.min(128))
                    })
                    .map_or(0, |o| o.min(128));
                if take == 0 {
                    wake.notified().await;
                    continue;
                }
                let opts = || InsertOpts {
                    queue: QUEUE.into(),
                    ..Default::default()
                };
                let first = seq.fetch_add(take, Ordering::Relaxed);
                let params: Result<Vec<_>, _> = (first..first + take)
                    .map(|i| awa::model::insert::params_with(&Work::new(i), opts()))
                    .collect();
                // awa's own advice for producers on its queue storage:
                // COPY for a batch, a batch insert for one.
                let done = match params {
                    Ok(params) if take == 1 => storage
                        .enqueue_params_batch(&pool, &params)
                        .await
                        .map(drop),
                    Ok(params) => storage.enqueue_params_copy(&pool, &params).await.map(drop),
                    Err(e) => Err(e),
                };
                if let Err(e) = done {
                    let _ = fail_tx.send(e.to_string());
                    return;
                }
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
    pool.close().await;
    Ok(())
}

async fn worker(a: &Args) -> Result<(), String> {
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect(&a.url)
        .await
        .map_err(|e| e.to_string())?;
    let ran = Arc::new(AtomicU64::new(0));
    let samples: Arc<Mutex<Vec<(u64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let (r, s) = (ran.clone(), samples.clone());
    let client = awa::Client::builder(pool.clone())
        .queue(
            QUEUE,
            QueueConfig {
                max_workers: a.concurrency,
                ..QueueConfig::default()
            },
        )
        .register::<Work, _, _>(move |work: Work, _ctx| {
            let started = unix_ns();
            s.lock()
                .expect("not poisoned")
                .push((work.created_ns, started.saturating_sub(work.created_ns)));
            let r = r.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                r.fetch_add(1, Ordering::Relaxed);
                Ok(JobResult::Completed)
            }
        })
        .build()
        .map_err(|e| e.to_string())?;
    // Started before `ready`: the first client on a fresh install sets up
    // awa's queue storage, which must happen before any job is inserted.
    client.start().await.map_err(|e| e.to_string())?;
    let mut commands = commands();
    say("ready");
    loop {
        match commands.recv().await.as_deref() {
            Some("go") => break,
            Some("stop") | None => {
                client.shutdown(Duration::from_secs(5)).await;
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
    client.shutdown(Duration::from_secs(5)).await;
    if let Some(path) = &a.samples {
        let samples = std::mem::take(&mut *samples.lock().expect("not poisoned"));
        let mut bytes = Vec::with_capacity(samples.len() * 16);
        for (created, latency) in samples {
            bytes.extend_from_slice(&created.to_le_bytes());
            bytes.extend_from_slice(&latency.to_le_bytes());
        }
        std::fs::write(path, bytes).map_err(|e| e.to_string())?;
    }
    say(&format!("ran {}", ran.load(Ordering::Relaxed)));
    pool.close().await;
    Ok(())
}
