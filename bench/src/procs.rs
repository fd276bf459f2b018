//! kessel on PostgreSQL with several worker processes sharing one schema.
//!
//! The parent creates every job, then starts N copies of this binary with
//! the hidden `--pg-worker` flag. Each child opens the same schema, defines
//! the no-op task, says `ready` on stdout and waits for `go` on stdin before
//! it starts its worker, so child start-up is not timed. While it runs, a
//! child writes `ran K` (jobs its handler has started) whenever K changed,
//! at most every 2 ms; the parent sums the children's counts and stops the
//! clock when they reach N. Then it tells the children to `stop`, waits for
//! them, and checks in the database that every job was recorded completed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use kessel::store::{PgOptions, PgStore};
use kessel::{JobContext, JobError, NewJob, Queue};

use crate::systems::kessel::{create_all, Handlers, PG_SCHEMA, TAG, TASK};
use crate::systems::Fail;

/// What a multi-process burn-down measured.
#[derive(Debug)]
pub struct Outcome {
    /// Jobs started per second, from `go` until the last job started.
    pub rate: f64,
    /// Handler runs beyond one per job (at-least-once re-runs).
    pub extra_runs: u64,
    /// Jobs the database records as completed once the children stopped.
    pub completed: u64,
    /// Job events the parent's queue-wide subscriber received, when it had one.
    pub events: Option<u64>,
}

/// A worker process the parent talks to.
struct Worker {
    child: Child,
    stdin: ChildStdin,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A child still running here (the run failed) is not left behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Creates `n` jobs in a fresh schema, then lets `processes` worker
/// processes (each with `concurrency` slots) burn them down; with
/// `subscriber`, while the parent subscribes to every event of the queue
/// (the workers then relay theirs through the shared event log).
pub async fn burn_down(
    url: &str,
    n: u64,
    processes: usize,
    concurrency: usize,
    cap: Duration,
    subscriber: bool,
) -> Result<Outcome, Fail> {
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
        PgStore::connect_with(PgOptions::new(url).schema(PG_SCHEMA))
            .await
            .map_err(|e| e.to_string())?,
    );
    {
        // A producer only: no worker, so it claims nothing.
        let queue = Queue::builder()
            .scheduler_on_current_thread()
            .store(store.clone())
            .build()
            .await
            .map_err(|e| e.to_string())?;
        create_all(&queue, n, |i| NewJob::new(TASK, i)).await?;
        let _ = queue.shutdown(Duration::from_secs(1)).await;
    }
    // The remote subscriber: a queue of its own in this process, listening
    // before the workers start (they read the listeners as they start).
    let events_seen = Arc::new(AtomicU64::new(0));
    let listener = if subscriber {
        let store = PgStore::connect_with(PgOptions::new(url).schema(PG_SCHEMA))
            .await
            .map_err(|e| e.to_string())?;
        let queue = Queue::builder()
            .store(Arc::new(store))
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let mut events = queue.events_with_buffer(kessel::event::Filter::All, 1 << 20);
        let seen = events_seen.clone();
        actix_rt::spawn(async move {
            use futures::StreamExt;
            while let Some(event) = events.next().await {
                if matches!(event, kessel::event::Event::Job(_)) {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listening: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {PG_SCHEMA}.event_listeners"
            )))
            .fetch_one(store_pool(&queue)?)
            .await
            .map_err(|e| e.to_string())?;
            if listening > 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err("the subscriber did not register within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Some(queue)
    } else {
        None
    };

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel::<(usize, Line)>();
    let mut workers = Vec::with_capacity(processes);
    for i in 0..processes {
        let mut child = Command::new(&exe)
            .args([
                "--pg-worker",
                "--pg-url",
                url,
                "--concurrency",
                &concurrency.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start a worker process: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((i, Line::parse(&line))).is_err() {
                    break;
                }
            }
            let _ = tx.send((i, Line::Gone));
        });
        workers.push(Worker { child, stdin });
    }
    drop(tx);

    let recv = |timeout: Duration| rx.recv_timeout(timeout);
    let mut ready = 0;
    while ready < processes {
        match recv(Duration::from_secs(30)) {
            Ok((_, Line::Ready)) => ready += 1,
            Ok((i, Line::Failed(e))) => return Err(format!("worker {i}: {e}")),
            Ok((i, Line::Gone)) => return Err(format!("worker {i} exited before it was ready")),
            Ok(_) => {}
            Err(_) => return Err("worker processes did not get ready within 30 s".into()),
        }
    }
    let started = Instant::now();
    for w in &mut workers {
        writeln!(w.stdin, "go").map_err(|e| e.to_string())?;
        w.stdin.flush().map_err(|e| e.to_string())?;
    }
    let mut ran = vec![0u64; processes];
    let mut elapsed = None;
    while elapsed.is_none() {
        let left = cap.saturating_sub(started.elapsed());
        match recv(left) {
            Ok((i, Line::Ran(k))) => {
                ran[i] = k;
                if ran.iter().sum::<u64>() >= n {
                    elapsed = Some(started.elapsed());
                }
            }
            Ok((i, Line::Failed(e))) => return Err(format!("worker {i}: {e}")),
            Ok((i, Line::Gone)) => return Err(format!("worker {i} exited while running")),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    for w in &mut workers {
        let _ = writeln!(w.stdin, "stop");
        let _ = w.stdin.flush();
    }
    // Each child reports its last count as it stops.
    let mut gone = 0;
    let stop_by = Instant::now() + Duration::from_secs(30);
    while gone < processes {
        match recv(stop_by.saturating_duration_since(Instant::now())) {
            Ok((i, Line::Ran(k))) => ran[i] = k,
            Ok((_, Line::Gone)) => gone += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    for w in &mut workers {
        let _ = w.child.wait();
    }
    let total: u64 = ran.iter().sum();
    let Some(elapsed) = elapsed else {
        let secs = cap.as_secs_f64();
        return Err(format!(
            "only {total} of {n} jobs started within {cap:.0?} ({:.0} jobs/s)",
            total as f64 / secs
        ));
    };
    let completed: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {PG_SCHEMA}.jobs WHERE status = 'completed'"
    )))
    .fetch_one(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    use kessel::store::Store;
    let _ = store.close().await;
    let events = match listener {
        Some(queue) => {
            // Each job starts and completes: wait (a while) for the last ones.
            let by = Instant::now() + Duration::from_secs(30);
            while events_seen.load(Ordering::Relaxed) < 2 * n && Instant::now() < by {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = queue.shutdown(Duration::from_secs(1)).await;
            Some(events_seen.load(Ordering::Relaxed))
        }
        None => None,
    };
    Ok(Outcome {
        rate: n as f64 / elapsed.as_secs_f64(),
        extra_runs: total.saturating_sub(n),
        completed: completed as u64,
        events,
    })
}

/// The pool of `queue`'s PostgreSQL store.
fn store_pool(queue: &Queue) -> Result<&sqlx::PgPool, Fail> {
    queue
        .store()
        .postgres()
        .map(|pg| pg.pool())
        .ok_or_else(|| "not a PostgreSQL queue".to_string())
}

/// A line a worker process wrote.
#[derive(Debug)]
enum Line {
    Ready,
    Ran(u64),
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
        } else if let Some(e) = line.strip_prefix("failed ") {
            Line::Failed(e.to_owned())
        } else {
            Line::Other
        }
    }
}

/// The child's side: serve the no-op task from the bench schema until the
/// parent says `stop` (or goes away).
pub fn worker_main(url: &str, concurrency: usize) -> std::process::ExitCode {
    let outcome = actix_rt::System::new().block_on(worker(url, concurrency));
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(ran) => {
            let _ = writeln!(out, "ran {ran}");
            let _ = out.flush();
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(out, "failed {e}");
            let _ = out.flush();
            std::process::ExitCode::FAILURE
        }
    }
}

async fn worker(url: &str, concurrency: usize) -> Result<u64, Fail> {
    let store = PgStore::connect_with(
        PgOptions::new(url)
            .schema(PG_SCHEMA)
            .application_name("kessel-bench-worker"),
    )
    .await
    .map_err(|e| e.to_string())?;
    let store = Arc::new(store);
    // The one-thread queue every earlier row measured.
    let queue = Queue::builder()
        .scheduler_on_current_thread()
        .store(store.clone())
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let ran = Arc::new(AtomicU64::new(0));
    let counter = ran.clone();
    queue
        .define(TASK)
        .tag(TAG)
        .action(move |_job: JobContext<u64>| {
            counter.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok::<(), JobError>(()))
        })
        .map_err(|e| e.to_string())?;

    // Commands from the parent, read on a thread of their own.
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                return;
            }
        }
        let _ = tx.send("stop".into());
    });
    say("ready");
    loop {
        match commands.recv().await.as_deref() {
            Some("go") => break,
            Some("stop") | None => return Ok(0),
            Some(_) => {}
        }
    }
    Handlers::SchedulerThread.start(&queue, concurrency)?;
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
    use kessel::store::Store;
    let _ = store.close().await;
    Ok(ran.load(Ordering::Relaxed))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
