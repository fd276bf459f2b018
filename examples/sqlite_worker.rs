//! A worker process on a SQLite file: produces jobs, runs them, and exits
//! once nothing is pending. `tests/sqlite_crash.rs` starts it, kills it
//! with SIGKILL in the middle, and starts it again.
//!
//! ```sh
//! cargo run --features sqlite --example sqlite_worker -- jobs.db events.log --produce 200
//! ```
//!
//! Arguments: the database file, an events file, then options:
//!
//! - `--produce N`: create N jobs while working (default 0);
//! - `--producers P`: producers creating them at once (default 1);
//! - `--pace-ms MS`: pause between two creates, in milliseconds (default 2);
//! - `--concurrency C`: jobs run at once (default 4);
//! - `--work-ms MS`: longest a job takes, in milliseconds (default 12);
//! - `--bury-every N`: every Nth job (by its number) fails fatally after
//!   its work, and is buried with a dead letter to the task `letters`
//!   (default 0: none).
//!
//! Every line of the events file is one `write` to a file opened for
//! appending, so a kill never leaves half a line:
//!
//! - `ack <id>`: the job was created: `create` returned, so it is durable;
//! - `start <id> <attempt>`: a handler started the job;
//! - `end <id>`: the handler finished (its completion may not be stored yet);
//! - `letter <id>`: the dead letter of job `<id>` ran.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kessel::{JobContext, JobError, Queue};
use parking_lot::Mutex;

struct Args {
    db: PathBuf,
    events: PathBuf,
    produce: usize,
    producers: usize,
    pace_ms: u64,
    concurrency: usize,
    work_ms: u64,
    bury_every: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: sqlite_worker <db> <events> [--produce N] [--producers P] [--pace-ms MS] [--concurrency C] [--work-ms MS] [--bury-every N]";
    let db = args.next().ok_or(usage)?.into();
    let events = args.next().ok_or(usage)?.into();
    let mut parsed = Args {
        db,
        events,
        produce: 0,
        producers: 1,
        pace_ms: 2,
        concurrency: 4,
        work_ms: 12,
        bury_every: 0,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {usage}"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--produce" => parsed.produce = number(&value)? as usize,
            "--producers" => parsed.producers = number(&value)?.max(1) as usize,
            "--pace-ms" => parsed.pace_ms = number(&value)?,
            "--concurrency" => parsed.concurrency = number(&value)? as usize,
            "--work-ms" => parsed.work_ms = number(&value)?.max(1),
            "--bury-every" => parsed.bury_every = number(&value)?,
            _ => return Err(format!("unknown option {flag}; {usage}")),
        }
    }
    Ok(parsed)
}

/// The events file: one `write` per line.
#[derive(Clone)]
struct Events(Arc<Mutex<File>>);

impl Events {
    fn open(path: &PathBuf) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Events(Arc::new(Mutex::new(file))))
    }

    /// Appends the line to the file and echoes it on stdout, where a
    /// watching process can read events as they happen.
    fn write(&self, line: String) -> std::io::Result<()> {
        let mut file = self.0.lock();
        file.write_all(line.as_bytes())?;
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())?;
        out.flush()
    }
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let events = Events::open(&args.events)?;

    let queue = Queue::sqlite(&args.db).await?;
    let (e, work_ms, bury_every) = (events.clone(), args.work_ms, args.bury_every);
    let mut step = queue.define("step");
    if bury_every > 0 {
        step = step.dead_letter("letters");
    }
    step.action(move |job: JobContext<u64>| {
        let e = e.clone();
        async move {
            e.write(format!("start {} {}\n", job.id(), job.attempt()))
                .map_err(JobError::fatal)?;
            tokio::time::sleep(Duration::from_millis(1 + job.payload % work_ms)).await;
            e.write(format!("end {}\n", job.id()))
                .map_err(JobError::fatal)?;
            if bury_every > 0 && job.payload % bury_every == 0 {
                return Err(JobError::fatal("buried by design"));
            }
            Ok::<_, JobError>(job.payload)
        }
    })?;
    let e = events.clone();
    queue
        .define("letters")
        .action(move |letter: JobContext<kessel::DeadLetter>| {
            let e = e.clone();
            async move {
                e.write(format!("letter {}\n", letter.payload.job_id))
                    .map_err(JobError::fatal)?;
                Ok::<_, JobError>(())
            }
        })?;
    queue
        .process(["default"])
        .concurrency(args.concurrency)
        .start()?;

    // What a previous run left pending is already queued; wait for it too.
    let mut waiting: Vec<kessel::JobId> = queue
        .store()
        .jobs_pending()
        .await?
        .iter()
        .map(|j| j.id)
        .collect();
    // Several producers at once, each creating one job at a time: their
    // creates share commits.
    let producers = (0..args.producers).map(|p| {
        let (queue, events) = (queue.clone(), events.clone());
        let (count, pace) = (args.produce, Duration::from_millis(args.pace_ms));
        async move {
            let mut created = Vec::new();
            for n in (p..count).step_by(args.producers) {
                let handle = queue.create("step", n as u64).await?;
                events.write(format!("ack {}\n", handle.id()))?;
                created.push(handle.id());
                tokio::time::sleep(pace).await;
            }
            Ok::<_, Box<dyn std::error::Error>>(created)
        }
    });
    for created in futures::future::join_all(producers).await {
        waiting.extend(created?);
    }
    let mut completed = 0;
    for id in &waiting {
        if queue.result(*id).await?.status == kessel::JobStatus::Completed {
            completed += 1;
        }
    }
    // The dead letters of the jobs buried last run: once every job
    // waited for has ended, none is made any more.
    if bury_every > 0 {
        let letters = kessel::store::JobQuery::default()
            .task("letters")
            .limit(usize::MAX);
        for letter in queue.fetch(letters).await? {
            queue.result(letter.id).await?;
        }
    }
    queue.shutdown(Duration::from_secs(5)).await?;
    queue.store().close().await?;
    println!("{completed} of {} jobs completed", waiting.len());
    Ok(())
}
