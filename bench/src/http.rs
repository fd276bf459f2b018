//! The `http` workload (issue 17): kessel's HTTP API served in-process on
//! 127.0.0.1, beside the same work done in-process.
//!
//! - Creates: `clients` keep-alive HTTP clients each POST single creates
//!   (`POST /jobs`, a user-shaped payload) for a fixed count, a worker
//!   running a no-op handler that stamps its start; then the same count
//!   created with `queue.create` from as many tasks. Requests/s and
//!   create→start latency for both.
//! - Remote workers: N jobs created beforehand, worked by
//!   `kessel::remote::Worker`s through the API (`/remote/fetch` and
//!   `/remote/jobs/{id}/complete`); then the same N burnt down by a local
//!   worker with as many slots. Jobs/s for both.
//!
//! The client is hyper-util's pooled client (HTTP/1.1 keep-alive: one
//! connection per client task, reused for every request).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kessel::{JobContext, JobError, NewJob, Queue};

use crate::measure::{latencies, now_ns, percentiles, Percentiles, Stamps};
use crate::report::{self, Better, Row};
use crate::sqlite_disk::{email, Email};
use crate::systems::kessel::{create_all, store_for, Backend, Handlers, TAG};
use crate::systems::Fail;

/// The task the creates go to (a no-op handler in the API's process).
const TASK: &str = "send-email";
/// The task remote workers work (defined by the API's bridge on first fetch).
const REMOTE_TASK: &str = "send-email-remote";
/// The local worker's slots while jobs are created.
const WORKER_SLOTS: usize = 64;
/// The actix-web workers serving the API (one per core of the machine the
/// table was made on).
const SERVER_WORKERS: usize = 2;

/// What one way of creating measured.
#[derive(Debug, Clone, Copy)]
pub struct Creates {
    /// Create calls (HTTP requests) per second, until the last answered.
    pub per_sec: f64,
    /// create (request sent / call made) → handler start.
    pub latency: Percentiles,
}

/// The API on `queue` (at most `remote_slots` jobs parked and leased for
/// remote workers), served on 127.0.0.1 by actix-web on this actix system;
/// its address and a handle to stop it.
fn serve(
    queue: &Queue,
    remote_slots: usize,
) -> Result<(std::net::SocketAddr, actix_web::dev::ServerHandle), Fail> {
    let api =
        kessel::web::Api::new(queue.clone(), kessel::web::Auth::none()).remote_slots(remote_slots);
    let server = actix_web::HttpServer::new(move || actix_web::App::new().service(api.scope("")))
        .workers(SERVER_WORKERS)
        .disable_signals()
        .bind("127.0.0.1:0")
        .map_err(|e| format!("cannot bind the API: {e}"))?;
    let addr = *server
        .addrs()
        .first()
        .ok_or_else(|| "the API is bound to no address".to_owned())?;
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok((addr, handle))
}

/// A queue on `backend` whose no-op task `TASK` stamps `stamps` with the
/// payload's index, a worker running it.
async fn queue_for(
    backend: Backend<'_>,
    stamps: &Arc<Stamps>,
) -> Result<(Queue, Option<tempfile::TempDir>), Fail> {
    let (store, keep) = store_for(backend).await?;
    let builder = Queue::builder();
    let builder = match store {
        Some(store) => builder.store(store),
        None => builder,
    };
    let queue = builder.build().await.map_err(|e| e.to_string())?;
    let s = stamps.clone();
    queue
        .define(TASK)
        .tag(TAG)
        .action(move |job: JobContext<Email>| {
            s.hit(job.payload.index);
            std::future::ready(Ok::<(), JobError>(()))
        })
        .map_err(|e| e.to_string())?;
    Handlers::Threads(1).start(&queue, WORKER_SLOTS)?;
    Ok((queue, keep))
}

/// Waits for every job to start, then reads the latencies.
async fn finish(
    created: &[AtomicU64],
    stamps: &Stamps,
    secs: f64,
    cap: Duration,
) -> Result<Creates, Fail> {
    stamps.wait(cap).await.map_err(|e| e.to_string())?;
    if stamps.duplicates() > 0 {
        return Err(format!("{} jobs ran twice", stamps.duplicates()));
    }
    let created: Vec<u64> = created.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let (h, missing) = latencies(&created, stamps);
    if missing > 0 {
        return Err(format!("{missing} jobs never started"));
    }
    Ok(Creates {
        per_sec: created.len() as f64 / secs,
        latency: percentiles(&h),
    })
}

/// `n` jobs (payload `email(i)`) POSTed to `/jobs` of an API on `backend`
/// by `clients` keep-alive clients, `n / clients` each.
pub async fn creates_over_http(
    backend: Backend<'_>,
    n: u64,
    clients: u64,
    cap: Duration,
) -> Result<Creates, Fail> {
    let per_client = n / clients;
    let n = per_client * clients;
    let stamps = Stamps::timed(n);
    let (queue, _keep) = queue_for(backend, &stamps).await?;
    let (addr, server) = serve(&queue, kessel::web::DEFAULT_REMOTE_SLOTS)?;
    let uri: hyper::Uri = format!("http://{addr}/jobs")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(clients as usize)
        .build_http();
    let created: Arc<[AtomicU64]> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|k| {
            let (client, uri, created) = (client.clone(), uri.clone(), created.clone());
            actix_rt::spawn(async move {
                for i in k * per_client..(k + 1) * per_client {
                    let body = serde_json::to_vec(&serde_json::json!({
                        "task": TASK,
                        "payload": email(i),
                    }))
                    .map_err(|e| e.to_string())?;
                    let request = hyper::Request::post(uri.clone())
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .map_err(|e| e.to_string())?;
                    created[i as usize].store(now_ns(), Ordering::Relaxed);
                    let response = client
                        .request(request)
                        .await
                        .map_err(|e| format!("POST /jobs: {e}"))?;
                    let status = response.status();
                    // Reading the body to its end returns the connection
                    // to the pool for the next request.
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| format!("POST /jobs: {e}"))?
                        .to_bytes();
                    if status != hyper::StatusCode::CREATED {
                        return Err(format!(
                            "POST /jobs: {status}: {}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                }
                Ok::<(), Fail>(())
            })
        })
        .collect();
    let mut failed = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(e) => failed = failed.or(Some(e.to_string())),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let result = match failed {
        Some(e) => Err(e),
        None => finish(&created, &stamps, secs, cap).await,
    };
    server.stop(false).await;
    let _ = queue.shutdown(Duration::from_secs(1)).await;
    result
}

/// The same as [`creates_over_http`], with `queue.create` from `tasks`
/// tasks in this process: no API, no HTTP.
pub async fn creates_in_process(
    backend: Backend<'_>,
    n: u64,
    tasks: u64,
    cap: Duration,
) -> Result<Creates, Fail> {
    let per_task = n / tasks;
    let n = per_task * tasks;
    let stamps = Stamps::timed(n);
    let (queue, _keep) = queue_for(backend, &stamps).await?;
    let created: Arc<[AtomicU64]> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let t = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|k| {
            let (queue, created) = (queue.clone(), created.clone());
            actix_rt::spawn(async move {
                for i in k * per_task..(k + 1) * per_task {
                    created[i as usize].store(now_ns(), Ordering::Relaxed);
                    queue
                        .create(TASK, email(i))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), Fail>(())
            })
        })
        .collect();
    let mut failed = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(e) => failed = failed.or(Some(e.to_string())),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let result = match failed {
        Some(e) => Err(e),
        None => finish(&created, &stamps, secs, cap).await,
    };
    let _ = queue.shutdown(Duration::from_secs(1)).await;
    result
}

/// The PostgreSQL schema of the remote-worker rows, dropped and made
/// again for each run (apart from `kessel_bench`, which other workloads use).
const REMOTE_PG_SCHEMA: &str = "kessel_bench_remote";

/// A queue on `backend` with no task defined (on PostgreSQL, in
/// [`REMOTE_PG_SCHEMA`], new).
async fn bare_queue(backend: Backend<'_>) -> Result<(Queue, Option<tempfile::TempDir>), Fail> {
    if let Backend::Postgres(url) = backend {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {REMOTE_PG_SCHEMA} CASCADE"
        )))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        let store = kessel::store::PgStore::connect_with(
            kessel::store::PgOptions::new(url).schema(REMOTE_PG_SCHEMA),
        )
        .await
        .map_err(|e| e.to_string())?;
        let queue = Queue::builder()
            .store(Arc::new(store))
            .build()
            .await
            .map_err(|e| e.to_string())?;
        return Ok((queue, None));
    }
    let (store, keep) = store_for(backend).await?;
    let builder = Queue::builder();
    let builder = match store {
        Some(store) => builder.store(store),
        None => builder,
    };
    Ok((builder.build().await.map_err(|e| e.to_string())?, keep))
}

/// `n` jobs created beforehand (on `backend`), then worked by `workers`
/// `kessel::remote::Worker`s of `slots` each through an API that parks
/// and leases up to `workers × slots` jobs at once, no-op handlers:
/// jobs/s from the workers' start to the last handler's start.
pub async fn remote_burn_down(
    backend: Backend<'_>,
    n: u64,
    workers: usize,
    slots: usize,
    cap: Duration,
) -> Result<f64, Fail> {
    let stamps = Stamps::counter(n);
    let (queue, _keep) = bare_queue(backend).await?;
    create_all(&queue, n, |i| NewJob::new(REMOTE_TASK, email(i))).await?;
    let (addr, server) = serve(&queue, workers * slots)?;
    let url = format!("http://{addr}");
    let t = Instant::now();
    let running: Vec<_> = (0..workers)
        .map(|_| {
            let worker = kessel::remote::Worker::new(url.clone(), "")
                .concurrency(slots)
                .wait(Duration::from_secs(1));
            let s = stamps.clone();
            let defined = worker
                .define(REMOTE_TASK)
                .action(move |job: JobContext<Email>| {
                    s.hit(job.payload.index);
                    std::future::ready(Ok::<(), JobError>(()))
                })
                .map_err(|e| e.to_string());
            actix_rt::spawn(async move {
                defined?;
                worker.run().await.map_err(|e| e.to_string())
            })
        })
        .collect();
    let waited = stamps.wait(cap).await;
    let secs = t.elapsed().as_secs_f64();
    // A worker that stopped on its own (a 4xx) says why.
    let mut failed = None;
    for w in running {
        if w.is_finished() {
            if let Ok(Err(e)) = w.await {
                failed = failed.or(Some(e));
            }
        } else {
            w.abort();
        }
    }
    server.stop(false).await;
    let _ = queue.shutdown(Duration::from_secs(1)).await;
    if let Some(e) = failed {
        return Err(format!("a remote worker stopped: {e}"));
    }
    waited.map_err(|e| format!("{e} ({:.0} jobs/s)", stamps.runs() as f64 / secs))?;
    Ok(n as f64 / secs)
}

/// The same `n` jobs burnt down by a local worker with `slots` slots in
/// the API's process: the in-process number beside [`remote_burn_down`].
pub async fn local_burn_down(
    backend: Backend<'_>,
    n: u64,
    slots: usize,
    cap: Duration,
) -> Result<f64, Fail> {
    let stamps = Stamps::counter(n);
    let (queue, _keep) = bare_queue(backend).await?;
    let s = stamps.clone();
    queue
        .define(REMOTE_TASK)
        .tag(TAG)
        .action(move |job: JobContext<Email>| {
            s.hit(job.payload.index);
            std::future::ready(Ok::<(), JobError>(()))
        })
        .map_err(|e| e.to_string())?;
    create_all(&queue, n, |i| NewJob::new(REMOTE_TASK, email(i))).await?;
    let t = Instant::now();
    Handlers::Threads(1).start(&queue, slots)?;
    let waited = stamps.wait(cap).await;
    let secs = t.elapsed().as_secs_f64();
    let _ = queue.shutdown(Duration::from_secs(1)).await;
    waited.map_err(|e| format!("{e} ({:.0} jobs/s)", stamps.runs() as f64 / secs))?;
    Ok(n as f64 / secs)
}

/// How many HTTP clients (and in-process creating tasks).
const CLIENTS: u64 = 64;
/// Remote workers and the slots of each: 4 × 4 fills the API's default
/// `remote_slots` (16); 8 × 8 with `remote_slots(64)` shows how the rate
/// grows with jobs in flight.
const REMOTE_SHAPES: [(usize, usize); 2] = [(4, 4), (8, 8)];

impl crate::Bench {
    #[allow(clippy::too_many_arguments)]
    fn http_row(
        &mut self,
        workload: &str,
        params: &str,
        system: &str,
        metric: &str,
        unit: &str,
        better: Better,
        value: Result<f64, &Fail>,
    ) {
        let (value, note) = match value {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(format!("FAILED: {e}"))),
        };
        self.report.push(Row {
            workload: workload.into(),
            params: params.into(),
            system: system.into(),
            metric: metric.into(),
            unit: unit.into(),
            better,
            value,
            goal: None,
            note,
        });
    }

    /// Creates over HTTP and in-process into the memory store, or into
    /// PostgreSQL with `postgres`: requests/s, create→start p50/p99 and
    /// the ratios HTTP / in-process.
    pub(crate) fn http(&mut self, postgres: bool) {
        let (n, store) = if postgres {
            (self.plan.http_pg_n, "postgres")
        } else {
            (self.plan.http_n, "memory")
        };
        let n = n / CLIENTS * CLIENTS;
        let cap = self.plan.cap;
        let params = format!(
            "n={}, {CLIENTS} clients, {store}, payload ≈300 B JSON",
            report::human(n as f64)
        );
        let w = "http creates";
        if postgres {
            if let Err(e) = self.env.postgres.clone() {
                for system in ["kessel over HTTP", "kessel in-process"] {
                    self.report.push(Row {
                        workload: w.into(),
                        params: params.clone(),
                        system: system.into(),
                        metric: "creates/s".into(),
                        unit: "req/s".into(),
                        better: Better::Higher,
                        value: None,
                        goal: None,
                        note: Some(format!("no PostgreSQL: {e}")),
                    });
                }
                return;
            }
        }
        let url = self.env.postgres.clone().unwrap_or_default();
        let backend = if postgres {
            Backend::Postgres(&url)
        } else {
            Backend::Memory
        };
        let over_http = crate::run(|| creates_over_http(backend, n, CLIENTS, cap));
        let in_process = crate::run(|| creates_in_process(backend, n, CLIENTS, cap));
        for (system, r) in [
            ("kessel over HTTP", &over_http),
            ("kessel in-process", &in_process),
        ] {
            let unit = if system == "kessel over HTTP" {
                "req/s"
            } else {
                "creates/s"
            };
            let r = r.as_ref();
            self.http_row(
                w,
                &params,
                system,
                "creates/s",
                unit,
                Better::Higher,
                r.map(|c| c.per_sec),
            );
            self.http_row(
                w,
                &params,
                system,
                "create→start p50",
                "µs",
                Better::Lower,
                r.map(|c| c.latency.p50),
            );
            self.http_row(
                w,
                &params,
                system,
                "create→start p99",
                "µs",
                Better::Lower,
                r.map(|c| c.latency.p99),
            );
        }
        if let (Ok(h), Ok(l)) = (&over_http, &in_process) {
            let ratio = "HTTP / in-process";
            self.http_row(
                w,
                &params,
                ratio,
                "creates/s",
                "×",
                Better::Higher,
                Ok(h.per_sec / l.per_sec),
            );
            self.http_row(
                w,
                &params,
                ratio,
                "create→start p50",
                "×",
                Better::Lower,
                Ok(h.latency.p50 / l.latency.p50),
            );
        }
    }

    /// Remote workers through the API beside a local burn-down of the
    /// same jobs with as many slots: jobs/s and the ratio, per shape; on
    /// the memory store, or with `postgres` on PostgreSQL (the larger
    /// shape only).
    pub(crate) fn http_remote(&mut self, postgres: bool) {
        let (n, store, shapes) = if postgres {
            (self.plan.remote_pg_n, "postgres", &REMOTE_SHAPES[1..])
        } else {
            (self.plan.remote_n, "memory", &REMOTE_SHAPES[..])
        };
        let cap = self.plan.cap;
        let w = "http remote workers";
        let url = self.env.postgres.clone();
        for &(workers, per) in shapes {
            let slots = workers * per;
            let params = format!(
                "n={}, {store}, no-op handler, {slots} slots ({workers} remote workers × {per})",
                report::human(n as f64)
            );
            let (remote, local) = match (&url, postgres) {
                (Err(e), true) => {
                    let e = format!("no PostgreSQL: {e}");
                    (Err(e.clone()), Err(e))
                }
                (url, _) => {
                    let url = url.as_deref().unwrap_or_default();
                    let backend = if postgres {
                        Backend::Postgres(url)
                    } else {
                        Backend::Memory
                    };
                    (
                        crate::run(|| remote_burn_down(backend, n, workers, per, cap)),
                        crate::run(|| local_burn_down(backend, n, slots, cap)),
                    )
                }
            };
            self.http_row(
                w,
                &params,
                "kessel remote workers",
                "throughput",
                "jobs/s",
                Better::Higher,
                remote.as_ref().copied(),
            );
            self.http_row(
                w,
                &params,
                "kessel in-process",
                "throughput",
                "jobs/s",
                Better::Higher,
                local.as_ref().copied(),
            );
            if let (Ok(r), Ok(l)) = (&remote, &local) {
                self.http_row(
                    w,
                    &params,
                    "remote / in-process",
                    "throughput",
                    "×",
                    Better::Higher,
                    Ok(r / l),
                );
            }
        }
    }
}
