//! A kessel worker process on PostgreSQL. Run as many as you like, on as
//! many machines, against one database:
//!
//! ```sh
//! cargo run --features postgres --example worker -- postgres://postgres@127.0.0.1/test
//! ```
//!
//! Options (after the URL): `--schema NAME` (default `kessel`),
//! `--concurrency N` (default 16), `--work-ms N` (how long each job works,
//! default 5), `--lease-ms N` (default 30000), `--max-running N` (at most N
//! `work` jobs running at once across every worker process),
//! `--max-running-per-group N` (at most N `work` jobs of each group running
//! at once across every worker process), `--rate-limit RATE` (e.g.
//! `10/s`: at most that many `work` jobs start, across every worker
//! process; `"10/s per process"`: in each worker alone), `--rate-burst N` (how many may start at once after a quiet
//! spell, of each rate limit here, default 1), `--rate-limit-per-group
//! RATE` (of each group of `work`, across every worker process),
//! `--tag-max-running N` and `--tag-rate-limit RATE` (of the tag
//! `default`: its tasks together, across every worker process), `--tag
//! NAME` (a tag to serve beside `default`; repeat for more), `--without
//! TASK` (leave `work` or `work b` undefined here, as a service that
//! does not run it would; repeat for both).
//!
//! The `work b` task does what `work` does, with none of its limits: a
//! second task of the tag `default`.
//!
//! The `doomed` task fails every job for good and leaves a dead letter of
//! `doomed letter` for each.
//!
//! The `work` task shows the at-least-once discipline: before it reports
//! success it records the job in an application table keyed by job id, so a
//! rerun after a crash can see the job was already done (idempotency).

use std::sync::Arc;
use std::time::Duration;

use kessel::store::{PgOptions, PgStore};
use kessel::{JobContext, JobError, Queue};

struct Args {
    url: String,
    schema: String,
    concurrency: usize,
    work: Duration,
    lease: Duration,
    tags: Vec<String>,
    max_running: Option<u32>,
    max_running_per_group: Option<u32>,
    rate_limit: Option<kessel::RateLimit>,
    rate_burst: u32,
    rate_limit_per_group: Option<kessel::RateLimit>,
    tag_max_running: Option<u32>,
    tag_rate_limit: Option<kessel::RateLimit>,
    without: Vec<String>,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let url = it
        .next()
        .ok_or("usage: worker URL [--schema S] [--concurrency N] [--work-ms N] [--lease-ms N] [--max-running N] [--max-running-per-group N] [--rate-limit RATE] [--rate-burst N] [--rate-limit-per-group RATE] [--tag-max-running N] [--tag-rate-limit RATE] [--tag T]... [--without TASK]...")?;
    let mut args = Args {
        url,
        schema: "kessel".into(),
        concurrency: 16,
        work: Duration::from_millis(5),
        lease: Duration::from_secs(30),
        tags: vec!["default".into()],
        max_running: None,
        max_running_per_group: None,
        rate_limit: None,
        rate_burst: 1,
        rate_limit_per_group: None,
        tag_max_running: None,
        tag_rate_limit: None,
        without: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--schema" => args.schema = value.clone(),
            "--concurrency" => args.concurrency = number()? as usize,
            "--work-ms" => args.work = Duration::from_millis(number()?),
            "--lease-ms" => args.lease = Duration::from_millis(number()?),
            "--max-running" => {
                args.max_running =
                    Some(u32::try_from(number()?).map_err(|e| format!("{flag}: {e}"))?)
            }
            "--max-running-per-group" => {
                args.max_running_per_group =
                    Some(u32::try_from(number()?).map_err(|e| format!("{flag}: {e}"))?)
            }
            "--rate-limit" => {
                args.rate_limit = Some(value.parse().map_err(|e| format!("{flag}: {e}"))?)
            }
            "--rate-burst" => {
                args.rate_burst = u32::try_from(number()?).map_err(|e| format!("{flag}: {e}"))?
            }
            "--rate-limit-per-group" => {
                args.rate_limit_per_group = Some(value.parse().map_err(|e| format!("{flag}: {e}"))?)
            }
            "--tag-max-running" => {
                args.tag_max_running =
                    Some(u32::try_from(number()?).map_err(|e| format!("{flag}: {e}"))?)
            }
            "--tag-rate-limit" => {
                args.tag_rate_limit = Some(value.parse().map_err(|e| format!("{flag}: {e}"))?)
            }
            "--tag" => args.tags.push(value.clone()),
            "--without" if value == "work" || value == "work b" => args.without.push(value.clone()),
            "--without" => return Err(format!("--without {value}: only `work` or `work b`")),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let store = PgStore::connect_with(
        PgOptions::new(&args.url)
            .schema(&args.schema)
            .lease(args.lease)
            // Tells this process's sessions apart in pg_stat_activity.
            .application_name(format!("kessel-worker-{}", std::process::id())),
    )
    .await?;
    let pool = store.pool().clone();
    let owner = kessel::store::SharedStore::owner(&store);
    let done_table = format!("{}.work_done", args.schema);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {done_table} (job_id uuid NOT NULL, attempt int NOT NULL, pid int NOT NULL, at timestamptz NOT NULL DEFAULT now(), started_at timestamptz, finished_at timestamptz)"
    )))
    .execute(&pool)
    .await?;
    let mut builder = Queue::builder().store(Arc::new(store));
    if let Some(n) = args.tag_max_running {
        builder = builder.tag_max_running("default", n);
    }
    if let Some(rate) = args.tag_rate_limit {
        builder = builder.tag_rate_limit("default", rate.burst(args.rate_burst));
    }
    let queue = builder.build().await?;
    let work = args.work;
    let insert = Arc::new(format!(
        "INSERT INTO {done_table} (job_id, attempt, pid, started_at, finished_at) VALUES ($1, $2, $3, $4, $5)"
    ));
    let work_task = queue.define("work").tag("default");
    let work_task = match args.max_running {
        Some(n) => work_task.max_running(n),
        None => work_task,
    };
    let work_task = match args.max_running_per_group {
        Some(n) => work_task.max_running_per_group(n),
        None => work_task,
    };
    let work_task = match args.rate_limit {
        Some(rate) => work_task.rate_limit(rate.burst(args.rate_burst)),
        None => work_task,
    };
    let work_task = match args.rate_limit_per_group {
        Some(rate) => work_task.rate_limit_per_group(rate.burst(args.rate_burst)),
        None => work_task,
    };
    let handler = move |job: JobContext<u64>| {
        let (pool, insert) = (pool.clone(), insert.clone());
        async move {
            // When the handler ran, as this machine's clock says: what a
            // test of running limits measures.
            let started = chrono::Utc::now();
            tokio::time::sleep(work).await;
            let finished = chrono::Utc::now();
            sqlx::query(sqlx::AssertSqlSafe(insert.as_str().to_owned()))
                .bind(job.id().0)
                .bind(job.attempt() as i32)
                .bind(std::process::id() as i32)
                .bind(started)
                .bind(finished)
                .execute(&pool)
                .await?;
            Ok::<_, JobError>(job.payload)
        }
    };
    if !args.without.iter().any(|t| t == "work") {
        work_task.action(handler.clone())?;
    }
    if !args.without.iter().any(|t| t == "work b") {
        queue.define("work b").tag("default").action(handler)?;
    }
    queue
        .define("sleep")
        .tag("default")
        .action(|job: JobContext<u64>| async move {
            // Runs until done or cancelled; the signal drops this future.
            tokio::time::sleep(Duration::from_millis(job.payload)).await;
            Ok::<_, JobError>(())
        })?;
    // Every job of `doomed` fails for good after its work, and leaves a
    // dead letter of `doomed letter` (which no worker here runs, so the
    // letters stay to be counted).
    queue
        .define("doomed")
        .tag("default")
        .retry(kessel::RetryPolicy::none())
        .dead_letter("doomed letter")
        .action(move |_: JobContext<u64>| async move {
            tokio::time::sleep(work).await;
            Err::<(), _>(JobError::fatal("doomed"))
        })?;
    queue
        .process(args.tags.clone())
        .concurrency(args.concurrency)
        .start()?;
    println!("worker {} ready, lease owner {owner}", std::process::id());
    tokio::signal::ctrl_c().await?;
    let report = queue.shutdown(Duration::from_secs(10)).await?;
    println!("worker {} stopped: {report:?}", std::process::id());
    Ok(())
}
