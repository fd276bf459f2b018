//! kessel-bench: kessel side by side with a raw tokio baseline and apalis,
//! in one run on one machine. It reports; it asserts nothing about speed.
//!
//! ```text
//! cargo run --release -p kessel-bench -- --json bench/results/latest.json
//! cargo run -p kessel-bench -- --quick --json /tmp/kessel-bench-quick.json
//! ```
//!
//! See `docs/benchmarks.md` for the workloads and the latest table.

mod http;
mod measure;
mod payloads;
mod procs;
mod report;
mod sqlite_disk;
mod sustained;
mod systems;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use measure::{latencies, now_ns, percentiles, rss_bytes};
use report::{Better, Goal, Report, Row};
use systems::{Answer, Env, System};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
enum Workload {
    /// Create N no-op jobs, then process them all: jobs/s.
    BurnDown,
    /// create→start latency at half of each system's measured capacity.
    Latency,
    /// Jobs delayed uniformly over a window: how late they start.
    Delay,
    /// Resident memory per pending delayed job (child process per size).
    Memory,
    /// SQLite and PostgreSQL burn-down and latency.
    Durable,
    /// Bulk create into each store: jobs/s.
    BulkCreate,
    /// Only the multi-process PostgreSQL burn-downs of `durable` (1 and 3
    /// worker processes), for profiling them alone.
    DurableProcesses,
    /// Handlers that spin the CPU for 20 µs each, on 1 and 2 worker
    /// threads: jobs/s and how it scales.
    CpuHandler,
    /// N jobs through kessel's SQLite store at full speed with the default
    /// retention: the longest pause between completions, and the file and
    /// WAL sizes against what the retained jobs need.
    SqliteDisk,
    /// kessel's burn-down with metrics off and on (`kessel::metrics::attach`
    /// into the Prometheus recorder), interleaved (off, on, on, off, ...)
    /// for several rounds per concurrency: the ratio on / off of the
    /// medians. Not in the default run.
    MetricsCost,
    /// kessel's HTTP API served in-process: single creates over HTTP from
    /// 64 keep-alive clients (memory and PostgreSQL) and remote workers
    /// through the API, each beside the same work done in-process.
    Http,
    /// kessel's burn-down with jobs in 10 fair groups and in none, in
    /// turns (none, groups, groups, none, ...), on memory and PostgreSQL:
    /// the cost of taking turns. Not in the default run.
    Groups,
    /// PostgreSQL with producers and workers at once: a backlog of 4,000
    /// kept up by single and bulk creates, 1 ms of work per job, 16 to 256
    /// workers in one and three processes; completion rate, claim latency,
    /// and the dead tuples and size of the tables at the end. Then fixed
    /// rates: 200/s at 8 workers and half of capacity at 16.
    Sustained,
    /// The 3-process PostgreSQL burn-down without and with one queue-wide
    /// subscriber in another process (events relayed through the shared
    /// event log), in turns: the throughput of each, side by side.
    RemoteEvents,
    /// Only the `sustained` workload's 200 jobs/s run (its length set with
    /// `--paced-secs`; the dead-tuple goal is judged after 300 s). Not in
    /// the default run.
    SustainedPaced,
    /// The headline with payloads shaped like a user's (a struct of two
    /// integers and a 32-byte string) at the default retention: burn-down
    /// at concurrency 16 (kessel both ways, with and without a queue-wide
    /// subscriber, beside the tokio baseline and apalis) and single
    /// creates (one awaited create per job), in rounds taken in turns; the
    /// medians and their ratios.
    Payloads,
    /// kessel on PostgreSQL at full speed for 10 minutes (`--retention-secs`)
    /// with the default retention: a backlog of 4,000 kept up by creates,
    /// 64 workers; at the end the completed rows against the retention's
    /// cap, and the dead tuples and size of the tables (no manual VACUUM).
    /// Not in the default run.
    PgRetention,
    /// Only the flow-limited PostgreSQL burn-downs of `durable` (no limit,
    /// `max_running(50)`, a rate limit far above the run's rate), one
    /// process at concurrency 64, for profiling them alone. Not in the
    /// default run (`durable` runs them).
    PgLimits,
}

impl Workload {
    const ALL: [Workload; 18] = [
        Workload::Payloads,
        Workload::BurnDown,
        Workload::Latency,
        Workload::Delay,
        Workload::Memory,
        Workload::Durable,
        Workload::BulkCreate,
        Workload::DurableProcesses,
        Workload::CpuHandler,
        Workload::SqliteDisk,
        Workload::MetricsCost,
        Workload::Groups,
        Workload::Http,
        Workload::Sustained,
        Workload::SustainedPaced,
        Workload::RemoteEvents,
        Workload::PgRetention,
        Workload::PgLimits,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::BurnDown => "burn-down",
            Workload::Latency => "latency",
            Workload::Delay => "delay",
            Workload::Memory => "memory",
            Workload::Durable => "durable",
            Workload::BulkCreate => "bulk-create",
            Workload::DurableProcesses => "durable-processes",
            Workload::CpuHandler => "cpu-handler",
            Workload::SqliteDisk => "sqlite-disk",
            Workload::MetricsCost => "metrics-cost",
            Workload::Groups => "groups",
            Workload::Http => "http",
            Workload::Sustained => "sustained",
            Workload::SustainedPaced => "sustained-paced",
            Workload::PgRetention => "pg-retention",
            Workload::PgLimits => "pg-limits",
            Workload::RemoteEvents => "remote-events",
            Workload::Payloads => "payloads",
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "kessel-bench",
    about = "kessel beside a tokio baseline and apalis, in one run"
)]
struct Args {
    /// Small counts: finishes in seconds (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the table as Markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Run only these workloads (repeatable).
    #[arg(long, value_enum)]
    only: Vec<Workload>,
    /// Run only these systems (repeatable).
    #[arg(long, value_enum)]
    system: Vec<System>,
    /// The PostgreSQL database for the durable workloads; created if missing.
    #[arg(
        long,
        env = "KESSEL_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/kessel_bench"
    )]
    pg_url: String,
    /// Internal: measure pending-job memory for one system in this process.
    #[arg(long, value_enum, hide = true)]
    child_memory: Option<System>,
    /// Print the tables of a JSON file an earlier run wrote (ratios are
    /// recomputed; `--json` writes the result), instead of running anything.
    #[arg(long, value_name = "JSON")]
    render: Option<PathBuf>,
    /// Internal: how many jobs the memory child leaves pending.
    #[arg(long, hide = true, default_value_t = 0)]
    count: u64,
    /// Internal: the memory child's jobs carry the `payloads` workload's
    /// struct, not a `u64`.
    #[arg(long, hide = true)]
    struct_payload: bool,
    /// Internal: be one worker process of the multi-process PostgreSQL
    /// burn-down (started by the parent run, driven over stdin/stdout).
    #[arg(long, hide = true)]
    pg_worker: bool,
    /// Internal: the worker process's concurrency.
    #[arg(long, hide = true, default_value_t = 16)]
    concurrency: usize,
    /// Internal: be a producer or worker process of the `sustained`
    /// workload (started by the parent run, driven over stdin/stdout).
    #[arg(long, hide = true)]
    sustained_role: Option<String>,
    /// Internal: where a sustained worker process writes its samples.
    #[arg(long, hide = true)]
    samples: Option<PathBuf>,
    /// How long the `sustained` workload's 200 jobs/s run lasts, seconds
    /// (the dead-tuple goal is for 300).
    #[arg(long)]
    paced_secs: Option<f64>,
    /// How long the `pg-retention` workload runs, seconds (default 600).
    #[arg(long)]
    retention_secs: Option<f64>,
    /// The rate of the `sustained` workload's latency row at 16 workers,
    /// jobs/s, instead of half the capacity its backlog rows measured
    /// (with `--only sustained-paced`, which measures no capacity, the row
    /// runs only when this is given).
    #[arg(long)]
    half_rate: Option<f64>,
}

/// Counts and limits of one run.
#[derive(Debug, Clone)]
struct Plan {
    burn_n: u64,
    concurrencies: Vec<usize>,
    latency_secs: f64,
    latency_concurrency: usize,
    delay_n: u64,
    delay_lead: Duration,
    delay_spread: Duration,
    memory_sizes: Vec<u64>,
    durable_n: u64,
    durable_concurrency: usize,
    durable_cap: Duration,
    durable_latency_secs: f64,
    bulk_n: u64,
    durable_bulk_n: u64,
    cpu_n: u64,
    cpu_micros: u32,
    cpu_concurrency: usize,
    disk_n: u64,
    /// Jobs created over HTTP (and in-process) into the memory store.
    http_n: u64,
    /// The same into PostgreSQL.
    http_pg_n: u64,
    /// Jobs worked by remote workers (and burnt down in-process).
    remote_n: u64,
    /// Sustained: total workers per run, processes per run, warm-up and
    /// measured window of the backlog runs.
    sustained_workers: Vec<usize>,
    sustained_processes: Vec<usize>,
    sustained_warmup: Duration,
    sustained_window: Duration,
    /// Sustained at a fixed rate: the 200/s run's workers and length, and
    /// the half-capacity run's length.
    paced_workers: usize,
    paced_window: Duration,
    /// How long the `pg-retention` run lasts.
    retention_window: Duration,
    half_window: Duration,
    /// The latency row's rate when given (`--half-rate`), else half the
    /// measured capacity.
    half_rate: Option<f64>,
    /// The same on PostgreSQL.
    remote_pg_n: u64,
    /// Jobs per run of the `payloads` workload, and its rounds.
    payload_n: u64,
    payload_rounds: usize,
    /// Seconds of the steady 500 jobs/s PostgreSQL latency run.
    pg_steady_secs: f64,
    cap: Duration,
}

impl Plan {
    fn full() -> Self {
        Plan {
            burn_n: 1_000_000,
            concurrencies: vec![1, 16, 256],
            latency_secs: 5.0,
            latency_concurrency: 16,
            delay_n: 1_000_000,
            delay_lead: Duration::from_secs(20),
            delay_spread: Duration::from_secs(10),
            memory_sizes: vec![1_000_000, 10_000_000],
            durable_n: 100_000,
            durable_concurrency: 16,
            durable_cap: Duration::from_secs(60),
            durable_latency_secs: 5.0,
            bulk_n: 1_000_000,
            durable_bulk_n: 100_000,
            cpu_n: 200_000,
            cpu_micros: 20,
            cpu_concurrency: 16,
            disk_n: 3_000_000,
            http_n: 100_000,
            http_pg_n: 20_000,
            remote_n: 20_000,
            sustained_workers: vec![16, 64, 256],
            sustained_processes: vec![1, 3],
            sustained_warmup: Duration::from_secs(3),
            sustained_window: Duration::from_secs(10),
            paced_workers: 8,
            paced_window: Duration::from_secs(30),
            retention_window: Duration::from_secs(600),
            half_window: Duration::from_secs(10),
            half_rate: None,
            remote_pg_n: 20_000,
            payload_n: 1_000_000,
            payload_rounds: 5,
            pg_steady_secs: 30.0,
            cap: Duration::from_secs(120),
        }
    }

    fn quick() -> Self {
        Plan {
            burn_n: 20_000,
            concurrencies: vec![1, 16, 256],
            latency_secs: 0.3,
            latency_concurrency: 16,
            delay_n: 20_000,
            delay_lead: Duration::from_millis(300),
            delay_spread: Duration::from_secs(1),
            memory_sizes: vec![20_000],
            durable_n: 500,
            durable_concurrency: 16,
            durable_cap: Duration::from_secs(3),
            durable_latency_secs: 0.5,
            bulk_n: 20_000,
            durable_bulk_n: 1_000,
            cpu_n: 2_000,
            cpu_micros: 20,
            cpu_concurrency: 16,
            disk_n: 20_000,
            http_n: 2_048,
            http_pg_n: 512,
            remote_n: 500,
            sustained_workers: vec![16],
            sustained_processes: vec![1, 3],
            sustained_warmup: Duration::from_millis(300),
            sustained_window: Duration::from_millis(700),
            paced_workers: 8,
            paced_window: Duration::from_millis(700),
            retention_window: Duration::from_secs(2),
            half_window: Duration::from_millis(700),
            half_rate: None,
            remote_pg_n: 500,
            payload_n: 20_000,
            payload_rounds: 1,
            pg_steady_secs: 0.5,
            cap: Duration::from_secs(60),
        }
    }
}

/// Runs one future on a fresh actix system (a current-thread tokio runtime),
/// so nothing of one run is left running in the next.
fn run<F: Future>(f: impl FnOnce() -> F) -> F::Output {
    actix_rt::System::new().block_on(f())
}

fn main() -> ExitCode {
    let args = Args::parse();
    measure::init_clock();
    if let Some(system) = args.child_memory {
        return memory_child(system, args.count, args.struct_payload);
    }
    if args.pg_worker {
        return procs::worker_main(&args.pg_url, args.concurrency);
    }
    if let Some(role) = &args.sustained_role {
        return sustained::child_main(
            role,
            &args.pg_url,
            args.concurrency,
            args.samples.as_deref(),
        );
    }
    if let Some(path) = &args.render {
        let report: Result<Report, String> = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()));
        return match report {
            Ok(mut report) => {
                report.compute_ratios();
                println!("{}", report.table());
                if let Some(out) = &args.json {
                    let json = serde_json::to_string_pretty(&report).expect("serializable");
                    if let Err(e) = std::fs::write(out, json) {
                        eprintln!("cannot write {}: {e}", out.display());
                        return ExitCode::FAILURE;
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(secs) = args.paced_secs.filter(|s| s.is_finite() && *s > 0.0) {
        plan.paced_window = Duration::from_secs_f64(secs);
    }
    if let Some(secs) = args.retention_secs.filter(|s| s.is_finite() && *s > 0.0) {
        plan.retention_window = Duration::from_secs_f64(secs);
    }
    plan.half_rate = args.half_rate.filter(|r| r.is_finite() && *r > 0.0);
    let workloads: Vec<Workload> = if args.only.is_empty() {
        // `durable` runs the multi-process burn-downs too; `burn-down`
        // has a metrics-on row, which `metrics-cost` repeats in turns.
        Workload::ALL
            .into_iter()
            .filter(|w| {
                ![
                    Workload::DurableProcesses,
                    Workload::MetricsCost,
                    Workload::Groups,
                    Workload::SustainedPaced,
                    Workload::PgRetention,
                    Workload::PgLimits,
                ]
                .contains(w)
            })
            .collect()
    } else {
        Workload::ALL
            .into_iter()
            .filter(|w| args.only.contains(w))
            .collect()
    };
    let wanted = |s: System| args.system.is_empty() || args.system.contains(&s);
    let env = Env {
        postgres: run(|| async {
            systems::ensure_pg_database(&args.pg_url)
                .await
                .map(|()| args.pg_url.clone())
        }),
    };
    let mut bench = Bench {
        plan,
        env,
        report: Report {
            mode: if args.quick { "quick" } else { "full" }.to_owned(),
            ..Report::default()
        },
        capacity: HashMap::new(),
    };
    let started = Instant::now();
    eprintln!(
        "kessel-bench: {} run, {} core(s)",
        bench.report.mode,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for w in workloads {
        eprintln!("== {}", w.name());
        match w {
            Workload::BurnDown => System::IN_MEMORY_WORKERS
                .into_iter()
                .filter(|s| wanted(*s))
                .for_each(|s| bench.burn_down(s)),
            Workload::Latency => System::IN_MEMORY_WORKERS
                .into_iter()
                .filter(|s| wanted(*s))
                .for_each(|s| bench.latency(s)),
            Workload::Delay => System::IN_MEMORY
                .into_iter()
                .filter(|s| wanted(*s))
                .for_each(|s| bench.delay(s)),
            Workload::Memory => System::IN_MEMORY
                .into_iter()
                .filter(|s| wanted(*s))
                .for_each(|s| bench.memory(s)),
            Workload::Durable => System::DURABLE
                .into_iter()
                .filter(|s| wanted(*s))
                .for_each(|s| bench.durable(s)),
            Workload::BulkCreate => System::IN_MEMORY
                .into_iter()
                .chain(System::DURABLE)
                .filter(|s| wanted(*s))
                .for_each(|s| bench.bulk_create(s)),
            Workload::DurableProcesses => {
                if wanted(System::KesselPostgres) {
                    for processes in [1, 3] {
                        bench.pg_processes(processes, false);
                    }
                }
            }
            Workload::RemoteEvents => {
                if wanted(System::KesselPostgres) {
                    for subscriber in [false, true, false, true] {
                        bench.pg_processes(3, subscriber);
                    }
                }
            }
            Workload::CpuHandler => {
                if wanted(System::Kessel) || wanted(System::KesselWorkerThread) {
                    bench.cpu_handler();
                }
            }
            Workload::SqliteDisk => {
                if wanted(System::KesselSqlite) {
                    bench.sqlite_disk();
                }
            }
            Workload::MetricsCost => {
                if wanted(System::Kessel) {
                    bench.metrics_cost();
                }
            }
            Workload::Groups => {
                if wanted(System::Kessel) {
                    bench.groups_cost();
                }
            }
            Workload::Payloads => bench.payloads(&wanted),
            Workload::Sustained => {
                let systems: Vec<System> = System::SUSTAINED
                    .into_iter()
                    .filter(|s| wanted(*s))
                    .collect();
                bench.sustained(&systems, false);
            }
            Workload::PgRetention => {
                if wanted(System::KesselPostgres) {
                    bench.pg_retention();
                }
            }
            Workload::PgLimits => {
                if wanted(System::KesselPostgres) {
                    let (n, cap) = (bench.plan.durable_n, bench.plan.durable_cap);
                    bench.pg_limited(n, cap);
                }
            }
            Workload::SustainedPaced => {
                let systems: Vec<System> = System::SUSTAINED
                    .into_iter()
                    .filter(|s| wanted(*s))
                    .collect();
                bench.sustained(&systems, true);
            }
            Workload::Http => {
                if wanted(System::Kessel) {
                    bench.http(false);
                }
                if wanted(System::KesselPostgres) {
                    bench.http(true);
                }
                if wanted(System::Kessel) {
                    bench.http_remote(false);
                }
                if wanted(System::KesselPostgres) {
                    bench.http_remote(true);
                }
            }
        }
    }
    bench.report.compute_ratios();
    let table = bench.report.table();
    println!("{table}");
    eprintln!("kessel-bench: done in {:.1?}", started.elapsed());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&bench.report).expect("serializable");
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.markdown {
        if let Err(e) = std::fs::write(path, &table) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let failed = bench.report.kessel_failed();
    if !failed.is_empty() {
        eprintln!(
            "kessel-bench: {} kessel run(s) failed (lost or hung jobs, errors):",
            failed.len()
        );
        for r in failed {
            eprintln!(
                "  {} [{}] {}: {}",
                r.workload,
                r.params,
                r.system,
                r.note.as_deref().unwrap_or("")
            );
        }
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

struct Bench {
    plan: Plan,
    env: Env,
    report: Report,
    /// Processing jobs/s at the latency workload's concurrency, per system.
    capacity: HashMap<System, f64>,
}

/// The goal a kessel row is held to, if any.
fn goal(workload: &str, system: System, metric: &str, value: Option<f64>) -> Option<Goal> {
    if !system.is_kessel() {
        return None;
    }
    let at_most = |limit: f64, text: &str| Goal {
        text: text.into(),
        met: value.map(|v| v <= limit),
        bar_met: None,
    };
    let at_least = |limit: f64, text: &str| Goal {
        text: text.into(),
        met: value.map(|v| v >= limit),
        bar_met: None,
    };
    match (workload, system, metric) {
        ("burn-down", System::Kessel | System::KesselWorkerThread, "throughput") => Some(Goal {
            text: "≥ 3.6M/s (bar 1.1M/s)".into(),
            met: value.map(|v| v >= 3.6e6),
            bar_met: value.map(|v| v >= 1.1e6),
        }),
        ("latency", System::Kessel | System::KesselWorkerThread, "p50") => {
            Some(at_most(10.0, "≤ 10 µs"))
        }
        ("latency", System::Kessel | System::KesselWorkerThread, "p99") => {
            Some(at_most(50.0, "≤ 50 µs"))
        }
        ("payloads burn-down", _, "÷ apalis") => Some(at_least(3.0, "≥ 3× apalis")),
        ("payloads burn-down", _, "÷ baseline") => Some(at_least(1.5, "≥ 1.5× baseline")),
        ("payloads burn-down, one subscriber", _, "÷ apalis") => {
            Some(at_least(2.0, "≥ 2× apalis"))
        }
        ("payloads create", _, "÷ apalis") => Some(at_least(2.0, "≥ 2× apalis's push")),
        ("cpu-handler", _, "scaling") => Some(at_least(1.8, "≥ 1.8× on 2 cores")),
        ("delay", System::Kessel, "lateness p99") => Some(at_most(1000.0, "≤ 1 ms")),
        ("memory", System::Kessel, "per job") => Some(at_most(200.0, "≤ 200 B")),
        ("memory", System::Kessel, "total") => None,
        ("durable burn-down", _, "throughput") => Some(at_least(50_000.0, "≥ 50k/s")),
        ("durable latency", System::KesselPostgres, "p50") => Some(at_most(2000.0, "≤ 2 ms")),
        ("durable latency 500/s", System::KesselPostgres, "p50") => Some(at_most(1000.0, "≤ 1 ms")),
        ("durable latency 500/s", System::KesselPostgres, "p99") => Some(at_most(5000.0, "≤ 5 ms")),
        ("durable latency 500/s", System::KesselPostgres, "p99.9") => {
            Some(at_most(20_000.0, "≤ 20 ms"))
        }
        ("bulk-create", _, "throughput") => Some(at_least(200_000.0, "≥ 200k/s")),
        ("pg-retention", System::KesselPostgres, "completed rows at the end") => {
            Some(at_most(100_000.0, "≤ the retention's cap (100k)"))
        }
        ("sustained 200/s" | "sustained latency", System::KesselPostgres, "claim p99") => {
            Some(at_most(10.0, "≤ 10 ms"))
        }
        _ => None,
    }
}

impl Bench {
    /// The `sustained` workload (see `sustained.rs`): each configuration
    /// runs every system in turn, so their numbers are of the same minute.
    fn sustained(&mut self, systems: &[System], paced_only: bool) {
        use sustained::{Offer, Peer, Spec};
        let url = match self.env.postgres.clone() {
            Ok(url) => url,
            Err(e) => {
                for &system in systems {
                    let params = "PostgreSQL".to_owned();
                    self.no_value(
                        "sustained",
                        params,
                        system,
                        "completion",
                        "jobs/s",
                        Better::Higher,
                        Answer::<()>::Failed(e.clone()),
                    );
                }
                return;
            }
        };
        let peer = |s: System| match s {
            System::Awa => Peer::Awa,
            _ => Peer::Kessel,
        };
        let warmup = self.plan.sustained_warmup;
        let spec = |system: System, workers, processes, offer, window| Spec {
            peer: peer(system),
            url: url.clone(),
            workers,
            processes,
            offer,
            warmup,
            window,
        };
        let mut capacity: HashMap<System, f64> = HashMap::new();
        let backlog_runs = if paced_only {
            Vec::new()
        } else {
            self.plan.sustained_processes.clone()
        };
        for processes in backlog_runs {
            for workers in self.plan.sustained_workers.clone() {
                let params = format!(
                    "{workers} workers, {processes} process{}, backlog 4,000, 1 ms/job",
                    if processes == 1 { "" } else { "es" }
                );
                if processes == 1 && systems.contains(&System::KesselPostgres) {
                    // What the handler's 1 ms sleep allows `workers` slots
                    // at most, measured beside the systems.
                    let bound = sustained::work_bound(workers, self.plan.sustained_window);
                    self.row(
                        "sustained",
                        params.clone(),
                        System::Baseline,
                        "completion",
                        "jobs/s",
                        Better::Higher,
                        Some(bound),
                        Some(format!(
                            "the work bound: {workers} tasks on one thread looping on \
                             tokio::time::sleep(1 ms), no queue"
                        )),
                    );
                }
                for &system in systems {
                    let window = self.plan.sustained_window;
                    let run = sustained::run(&spec(
                        system,
                        workers,
                        processes,
                        Offer::Backlog(4_000),
                        window,
                    ));
                    if let Ok(o) = &run {
                        if workers == 16 && processes == 1 {
                            capacity.insert(system, o.completion);
                        }
                    }
                    self.sustained_rows("sustained", params.clone(), system, run);
                }
            }
        }
        let workers = self.plan.paced_workers;
        let window = self.plan.paced_window;
        let params = format!("200 jobs/s, {workers} workers, 1 process, {:.0?}", window);
        for &system in systems {
            let run = sustained::run(&spec(system, workers, 1, Offer::Rate(200.0), window));
            self.sustained_rows("sustained 200/s", params.clone(), system, run);
        }
        let window = self.plan.half_window;
        for &system in systems {
            let half = capacity.get(&system).map(|c| c / 2.0);
            let Some(rate) = self.plan.half_rate.or(half) else {
                continue;
            };
            let what = if self.plan.half_rate.is_some() {
                "given"
            } else {
                "half of capacity"
            };
            let params = format!(
                "{} jobs/s ({what}), 16 workers, 1 process, {:.0?}",
                report::human(rate),
                window
            );
            let run = sustained::run(&spec(system, 16, 1, Offer::Rate(rate), window));
            self.sustained_rows("sustained latency", params, system, run);
        }
    }

    /// The `pg-retention` workload: kessel on PostgreSQL at full speed for
    /// the plan's retention window, then what is left in its tables.
    fn pg_retention(&mut self) {
        use sustained::{Offer, Peer, Spec};
        let system = System::KesselPostgres;
        let cap = kessel::Retention::default()
            .completed_max_count
            .unwrap_or(usize::MAX);
        let window = self.plan.retention_window;
        let params = format!(
            "64 workers, 1 process, backlog 4,000, 1 ms/job, {:.0?}, default retention (at most {} completed kept)",
            window,
            report::human(cap as f64)
        );
        let url = match self.env.postgres.clone() {
            Ok(url) => url,
            Err(e) => {
                self.no_value(
                    "pg-retention",
                    params,
                    system,
                    "completion",
                    "jobs/s",
                    Better::Higher,
                    Answer::<()>::Failed(e),
                );
                return;
            }
        };
        let run = sustained::run(&Spec {
            peer: Peer::Kessel,
            url,
            workers: 64,
            processes: 1,
            offer: Offer::Backlog(4_000),
            warmup: self.plan.sustained_warmup,
            window,
        });
        let completed = run.as_ref().ok().and_then(|o| o.completed_end);
        self.sustained_rows("pg-retention", params.clone(), system, run);
        self.row(
            "pg-retention",
            params,
            system,
            "completed rows at the end",
            "",
            Better::Lower,
            completed.map(|c| c as f64),
            None,
        );
    }

    fn sustained_rows(
        &mut self,
        workload: &str,
        params: String,
        system: System,
        run: Result<sustained::Outcome, systems::Fail>,
    ) {
        match run {
            Ok(o) => {
                let note = format!(
                    "{} asked, {} made, {} ran in the run; {} claims sampled; {} live tuples, \
                     {} autovacuum/analyze runs and {} checkpoints begun during the run",
                    o.asked, o.made, o.ran, o.samples, o.live_end, o.autovacuums, o.checkpoints
                );
                let ms = |us: f64| us / 1000.0;
                let rows: [(&'static str, &'static str, Better, f64); 7] = [
                    ("completion", "jobs/s", Better::Higher, o.completion),
                    ("claim p50", "ms", Better::Lower, ms(o.claim.p50)),
                    ("claim p99", "ms", Better::Lower, ms(o.claim.p99)),
                    ("claim p99.9", "ms", Better::Lower, ms(o.claim.p999)),
                    (
                        "dead tuples at the end",
                        "",
                        Better::Lower,
                        o.dead_end as f64,
                    ),
                    (
                        "dead tuples, most seen",
                        "",
                        Better::Lower,
                        o.dead_peak as f64,
                    ),
                    (
                        "table size at the end",
                        "MB",
                        Better::Lower,
                        o.bytes_end as f64 / (1 << 20) as f64,
                    ),
                ];
                for (metric, unit, better, value) in rows {
                    let note = (metric == "completion").then(|| note.clone());
                    // No claim sampled: no latency, rather than zero.
                    let value = (o.samples > 0 || !metric.starts_with("claim")).then_some(value);
                    self.row(
                        workload,
                        params.clone(),
                        system,
                        metric,
                        unit,
                        better,
                        value,
                        note,
                    );
                }
                if let Some(create) = &o.create {
                    for (metric, value) in [
                        ("create call p50", create.p50),
                        ("create call p99", create.p99),
                    ] {
                        self.row(
                            workload,
                            params.clone(),
                            system,
                            metric,
                            "ms",
                            Better::Lower,
                            Some(ms(value)),
                            None,
                        );
                    }
                }
            }
            Err(e) => {
                let answer = if e.contains("not built") {
                    Answer::<()>::Unavailable("the awa peer is not built: cargo build --release --manifest-path bench/awa/Cargo.toml")
                } else {
                    Answer::Failed(e)
                };
                self.no_value(
                    workload,
                    params,
                    system,
                    "completion",
                    "jobs/s",
                    Better::Higher,
                    answer,
                );
            }
        }
    }

    /// The `sqlite-disk` workload (see `sqlite_disk.rs`).
    fn sqlite_disk(&mut self) {
        let n = self.plan.disk_n;
        let c = 256;
        let params = format!("n={}, c={c}, default retention", report::human(n as f64));
        // Creating and running 3M jobs at ~40k/s takes minutes, not the
        // two the other workloads are capped at.
        let cap = self.plan.cap + Duration::from_secs(n / 10_000);
        let system = System::KesselSqlite;
        let w = "sqlite-disk";
        let mb = |b: u64| b as f64 / (1 << 20) as f64;
        match run(|| sqlite_disk::run(n, c, cap)) {
            Ok(d) => {
                let ratio = d.end_file as f64 / d.need.max(1) as f64;
                let note = format!(
                    "{} completed jobs kept at the end, {:.0} bytes each in a compact copy \
                     ({:.1} MB); end file / that = {ratio:.2}",
                    d.completed_kept,
                    sqlite_disk::per_job(d.need, d.completed_kept),
                    mb(d.need),
                );
                let note = Some(note);
                let rows: [(&'static str, &'static str, Better, f64); 10] = [
                    ("jobs/s", "jobs/s", Better::Higher, d.jobs_per_sec),
                    ("longest pause", "ms", Better::Lower, d.max_pause_ms),
                    (
                        "longest stall (jobs waiting)",
                        "ms",
                        Better::Lower,
                        d.max_stall_ms,
                    ),
                    ("longest commit", "ms", Better::Lower, d.longest_commit_ms),
                    (
                        "longest reclaim step",
                        "ms",
                        Better::Lower,
                        d.longest_reclaim_ms,
                    ),
                    ("peak file", "MB", Better::Lower, mb(d.peak_file)),
                    ("peak WAL", "MB", Better::Lower, mb(d.peak_wal)),
                    ("end file", "MB", Better::Lower, mb(d.end_file)),
                    ("end WAL", "MB", Better::Lower, mb(d.end_wal)),
                    ("end file / need", "×", Better::Lower, ratio),
                ];
                for (metric, unit, better, value) in rows {
                    // Over 2× what the retained jobs need fails the run.
                    let (value, note) = if metric == "end file / need" && ratio > 2.0 {
                        (
                            None,
                            Some(format!(
                                "FAILED: {ratio:.2}× over 2×; {}",
                                note.clone().unwrap_or_default()
                            )),
                        )
                    } else {
                        (Some(value), note.clone())
                    };
                    self.row(w, params.clone(), system, metric, unit, better, value, note);
                }
            }
            Err(e) => {
                for metric in ["jobs/s", "longest pause", "end file / need"] {
                    self.row(
                        w,
                        params.clone(),
                        system,
                        metric,
                        "",
                        Better::Lower,
                        None,
                        Some(format!("FAILED: {e}")),
                    );
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        workload: &str,
        params: String,
        system: System,
        metric: &'static str,
        unit: &'static str,
        better: Better,
        value: Option<f64>,
        note: Option<String>,
    ) {
        let goal = goal(workload, system, metric, value);
        self.report.push(Row {
            workload: workload.into(),
            params,
            system: system.name().to_owned(),
            metric: metric.to_owned(),
            unit: unit.to_owned(),
            better,
            value,
            goal,
            note,
        });
    }

    /// A row for a run that gave no number.
    #[allow(clippy::too_many_arguments)]
    fn no_value<T>(
        &mut self,
        workload: &str,
        params: String,
        system: System,
        metric: &'static str,
        unit: &'static str,
        better: Better,
        answer: Answer<T>,
    ) {
        let note = match answer {
            Answer::Done(_) => None,
            Answer::Failed(e) => Some(format!("FAILED: {e}")),
            Answer::Unavailable(why) => Some(why.to_owned()),
        };
        self.row(workload, params, system, metric, unit, better, None, note);
    }

    /// A burn-down row: the rate and its note, or why there is none.
    fn burn_row(&mut self, params: String, system: System, answer: Answer<(f64, Option<String>)>) {
        let (rate, note) = match answer {
            Answer::Done((rate, note)) => (Some(rate), note),
            Answer::Failed(e) => (None, Some(format!("FAILED: {e}"))),
            Answer::Unavailable(why) => (None, Some(why.to_owned())),
        };
        let better = Better::Higher;
        self.row(
            "burn-down",
            params,
            system,
            "throughput",
            "jobs/s",
            better,
            rate,
            note,
        );
    }

    /// Metrics off, on (`attach`: job metrics and the sampler) and job
    /// metrics alone (no sampler) in turn, the order rotated every round so
    /// a drift of the machine's speed weighs on all alike.
    fn metrics_cost(&mut self) {
        use systems::kessel::{Backend, Handlers, Watch};
        const ROUNDS: usize = 5;
        const WATCHES: [Watch; 3] = [Watch::Off, Watch::Metrics, Watch::JobMetrics];
        let n = self.plan.burn_n;
        for c in self.plan.concurrencies.clone() {
            let mut rates: [Vec<f64>; 3] = Default::default();
            let mut failed = None;
            for round in 0..ROUNDS {
                for k in 0..WATCHES.len() {
                    let i = (round + k) % WATCHES.len();
                    let (watch, cap) = (WATCHES[i], self.plan.cap);
                    let handlers = Handlers::SchedulerThread;
                    match run(|| {
                        systems::kessel::burn_down(Backend::Memory, n, c, handlers, watch, cap)
                    }) {
                        Ok((rate, _)) => rates[i].push(rate),
                        Err(e) => failed = Some(e),
                    }
                }
            }
            let medians: Vec<Option<f64>> = rates
                .iter_mut()
                .map(|v| {
                    v.sort_by(f64::total_cmp);
                    v.get(v.len() / 2).copied()
                })
                .collect();
            let rounds = |v: &[f64]| {
                v.iter()
                    .map(|r| format!("{:.0}k", r / 1000.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let ratio = |i: usize| {
                medians[0]
                    .zip(medians[i])
                    .map_or("-".into(), |(off, on)| format!("{:.2}", on / off))
            };
            let note = format!(
                "off {}; metrics on {}; job metrics alone {}; on / off of the medians {}, \
                 job metrics alone / off {}",
                rounds(&rates[0]),
                rounds(&rates[1]),
                rounds(&rates[2]),
                ratio(1),
                ratio(2)
            );
            eprintln!("metrics-cost c={c}: {note}");
            for (i, what) in ["metrics off", "metrics on", "job metrics alone"]
                .into_iter()
                .enumerate()
            {
                let params = format!("n={}, c={c}, {what}, interleaved", report::human(n as f64));
                let answer = match (medians[i], &failed) {
                    (Some(rate), _) => Answer::Done((rate, Some(note.clone()))),
                    (None, Some(e)) => Answer::Failed(e.clone()),
                    (None, None) => Answer::Failed("no round finished".into()),
                };
                self.burn_row(params, System::Kessel, answer);
            }
        }
    }

    fn burn_down(&mut self, system: System) {
        let n = self.plan.burn_n;
        for c in self.plan.concurrencies.clone() {
            let params = format!("n={}, c={c}, events off", report::human(n as f64));
            let cap = self.plan.cap;
            let answer = match run(|| system.burn_down(&self.env, n, c, cap)) {
                Answer::Done(rate) => {
                    if c == self.plan.latency_concurrency {
                        self.capacity.insert(system, rate);
                    }
                    Answer::Done((rate, None))
                }
                Answer::Failed(e) => Answer::Failed(e),
                Answer::Unavailable(why) => Answer::Unavailable(why),
            };
            self.burn_row(params, system, answer);
        }
        use systems::kessel::{Backend, Handlers, Watch};
        let kept_nowhere = ", completed jobs not kept";
        let (handlers, variants) = match system {
            // Events on; metrics on (`kessel::metrics::attach`, to set
            // beside events off and on); and events off and on again
            // keeping no completed job (`Retention::keep_none`), as the
            // peers keep none.
            System::Kessel => (
                Handlers::SchedulerThread,
                vec![
                    (Backend::Memory, Watch::Events, ""),
                    (Backend::Memory, Watch::Metrics, ""),
                    (Backend::MemoryKeepNone, Watch::Off, kept_nowhere),
                    (Backend::MemoryKeepNone, Watch::Events, kept_nowhere),
                ],
            ),
            // Keeping no completed job, events off: where the scheduler's
            // own per-job work is smallest, so the hand-off shows most.
            System::KesselWorkerThread => (
                Handlers::Threads(1),
                vec![(Backend::MemoryKeepNone, Watch::Off, kept_nowhere)],
            ),
            _ => return,
        };
        for (backend, watch, kept) in variants {
            for c in self.plan.concurrencies.clone() {
                let params = format!(
                    "n={}, c={c}, {}{kept}",
                    report::human(n as f64),
                    match watch {
                        Watch::Off => "events off",
                        Watch::Events => "events on",
                        Watch::Metrics => "metrics on",
                        Watch::JobMetrics => "job metrics on (no sampler)",
                    }
                );
                let cap = self.plan.cap;
                let answer =
                    run(|| systems::kessel::burn_down(backend, n, c, handlers, watch, cap));
                self.burn_row(params, system, answer.into());
            }
        }
    }

    /// The system's processing capacity at the latency concurrency, measured
    /// now if the burn-down did not run.
    fn capacity(&mut self, system: System, n: u64, cap: Duration) -> Result<f64, String> {
        if let Some(&c) = self.capacity.get(&system) {
            return Ok(c);
        }
        let c = self.plan.latency_concurrency;
        match run(|| system.burn_down(&self.env, n, c, cap)) {
            Answer::Done(rate) => {
                self.capacity.insert(system, rate);
                Ok(rate)
            }
            Answer::Failed(e) => Err(format!("capacity probe failed: {e}")),
            Answer::Unavailable(why) => Err(why.into()),
        }
    }

    fn latency(&mut self, system: System) {
        let probe = (self.plan.burn_n / 5).max(10_000);
        let secs = self.plan.latency_secs;
        let c = self.plan.latency_concurrency;
        let cap = self.plan.cap;
        self.latency_run("latency", system, probe, secs, c, cap);
    }

    fn latency_run(
        &mut self,
        workload: &str,
        system: System,
        probe: u64,
        secs: f64,
        c: usize,
        cap: Duration,
    ) {
        let metrics: [&'static str; 3] = ["p50", "p99", "p99.9"];
        let capacity = match self.capacity(system, probe, cap) {
            Ok(r) => r,
            Err(e) => {
                let params = format!("c={c}");
                let answer: Answer<()> = if e.starts_with("not available") {
                    Answer::Unavailable(if system == System::KesselSqlite {
                        "not available yet: kessel has no SQLite store in this build"
                    } else {
                        "not available yet: kessel has no PostgreSQL store in this build"
                    })
                } else {
                    Answer::Failed(e)
                };
                let note = match answer {
                    Answer::Failed(e) => format!("FAILED: {e}"),
                    Answer::Unavailable(w) => w.into(),
                    Answer::Done(()) => unreachable!("built above"),
                };
                for m in metrics {
                    self.row(
                        workload,
                        params.clone(),
                        system,
                        m,
                        "µs",
                        Better::Lower,
                        None,
                        Some(note.clone()),
                    );
                }
                return;
            }
        };
        let rate = capacity * 0.5;
        let params = format!("{}/s offered (50% of capacity), c={c}", report::human(rate));
        self.latency_at(workload, system, rate, params, secs, c, cap);
    }

    /// The latency rows of `system` with jobs offered at `rate` for `secs`.
    #[allow(clippy::too_many_arguments)]
    fn latency_at(
        &mut self,
        workload: &str,
        system: System,
        rate: f64,
        params: String,
        secs: f64,
        c: usize,
        cap: Duration,
    ) {
        let metrics: [&'static str; 3] = ["p50", "p99", "p99.9"];
        let n = ((rate * secs) as u64).max(50);
        let answer = run(|| system.latency(&self.env, rate, n, c, cap));
        match answer {
            Answer::Done((created, stamps)) => {
                let made = created.len() as u64;
                let span = created
                    .last()
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(created.first().copied().unwrap_or(0))
                    as f64
                    / 1e9;
                let achieved = if span > 0.0 {
                    made.saturating_sub(1) as f64 / span
                } else {
                    rate
                };
                let (h, missing) = latencies(&created, &stamps);
                let p = percentiles(&h);
                let mut note = vec![if made < n {
                    format!("{made} of {n} jobs created before the producer's deadline")
                } else {
                    format!("{n} jobs")
                }];
                if missing > 0 {
                    note.push(format!(
                        "FAILED: {missing} of {made} jobs never started within {cap:.0?}"
                    ));
                }
                if stamps.duplicates() > 0 {
                    note.push(format!("{} jobs ran twice", stamps.duplicates()));
                }
                if achieved < rate * 0.9 {
                    note.push(format!(
                        "producer reached only {}/s",
                        report::human(achieved)
                    ));
                }
                let note = Some(note.join("; "));
                let value = |v: f64| if h.is_empty() { None } else { Some(v) };
                self.row(
                    workload,
                    params.clone(),
                    system,
                    "p50",
                    "µs",
                    Better::Lower,
                    value(p.p50),
                    note.clone(),
                );
                self.row(
                    workload,
                    params.clone(),
                    system,
                    "p99",
                    "µs",
                    Better::Lower,
                    value(p.p99),
                    note.clone(),
                );
                self.row(
                    workload,
                    params,
                    system,
                    "p99.9",
                    "µs",
                    Better::Lower,
                    value(p.p999),
                    note,
                );
            }
            other => {
                let note = match other {
                    Answer::Failed(e) => format!("FAILED: {e}"),
                    Answer::Unavailable(w) => w.into(),
                    Answer::Done(_) => unreachable!("matched above"),
                };
                for m in metrics {
                    self.row(
                        workload,
                        params.clone(),
                        system,
                        m,
                        "µs",
                        Better::Lower,
                        None,
                        Some(note.clone()),
                    );
                }
            }
        }
    }

    fn delay(&mut self, system: System) {
        let n = self.plan.delay_n;
        let (lead, spread) = (self.plan.delay_lead, self.plan.delay_spread);
        let params = format!("n={} over {spread:.0?}", report::human(n as f64));
        let cap = lead + spread + self.plan.cap;
        let mut rng = fastrand::Rng::with_seed(6);
        let base = now_ns() + lead.as_nanos() as u64;
        let targets: Vec<u64> = (0..n)
            .map(|_| base + rng.u64(0..spread.as_nanos() as u64))
            .collect();
        let answer = run(|| system.delay(&targets, 256, cap));
        #[allow(clippy::type_complexity)]
        let metrics: [(&'static str, fn(&measure::Percentiles) -> f64); 3] = [
            ("lateness p50", |p| p.p50),
            ("lateness p99", |p| p.p99),
            ("lateness max", |p| p.max),
        ];
        match answer {
            Answer::Done(stamps) => {
                let mut late = measure::histogram();
                let (mut early, mut missing, mut earliest) = (0u64, 0u64, 0u64);
                for (i, &t) in targets.iter().enumerate() {
                    match stamps.started_at(i) {
                        None => missing += 1,
                        Some(s) if s < t => {
                            early += 1;
                            earliest = earliest.max(t - s);
                        }
                        Some(s) => late.saturating_record((s - t).max(1)),
                    }
                }
                let p = measure::percentiles(&late);
                let mut notes = Vec::new();
                if let Some(done) = stamps.created_by() {
                    let due_before = targets.iter().filter(|&&t| t < done).count();
                    if due_before > 0 {
                        notes.push(format!(
                            "{due_before} jobs were due before creating all {n} finished (creation took longer than the {lead:.0?} lead)"
                        ));
                    }
                }
                if early > 0 {
                    notes.push(format!(
                        "FAILED: {early} of {n} jobs started before their time (up to {:.1} s early)",
                        earliest as f64 / 1e9
                    ));
                }
                if missing > 0 {
                    notes.push(format!("FAILED: {missing} of {n} jobs never started"));
                }
                if stamps.duplicates() > 0 {
                    notes.push(format!("{} jobs ran twice", stamps.duplicates()));
                }
                let note = (!notes.is_empty()).then(|| notes.join("; "));
                for (m, f) in metrics {
                    let v = (!late.is_empty()).then(|| f(&p));
                    self.row(
                        "delay",
                        params.clone(),
                        system,
                        m,
                        "µs",
                        Better::Lower,
                        v,
                        note.clone(),
                    );
                }
            }
            other => {
                let note = match other {
                    Answer::Failed(e) => format!("FAILED: {e}"),
                    Answer::Unavailable(w) => w.into(),
                    Answer::Done(_) => unreachable!("matched above"),
                };
                for (m, _) in metrics {
                    self.row(
                        "delay",
                        params.clone(),
                        system,
                        m,
                        "µs",
                        Better::Lower,
                        None,
                        Some(note.clone()),
                    );
                }
            }
        }
    }

    fn memory(&mut self, system: System) {
        for orders in [false, true] {
            self.memory_of(system, orders);
        }
    }

    /// [`Bench::memory`] with `u64` payloads, or the `payloads` workload's
    /// struct (`orders`).
    fn memory_of(&mut self, system: System, orders: bool) {
        let mut per_job: Option<f64> = None;
        let payload = if orders { "struct" } else { "u64" };
        for n in self.plan.memory_sizes.clone() {
            let params = format!("{} pending, {payload} payload", report::human(n as f64));
            // Projected from the smaller size: skip sizes that would not fit.
            let limit = 8e9;
            if let Some(b) = per_job.filter(|b| b * n as f64 > limit) {
                let note = format!(
                    "skipped: {:.1} GB projected from the smaller size (limit {:.0} GB on this machine)",
                    b * n as f64 / 1e9,
                    limit / 1e9
                );
                self.row(
                    "memory",
                    params.clone(),
                    system,
                    "per job",
                    "B",
                    Better::Lower,
                    None,
                    Some(note),
                );
                continue;
            }
            match memory_in_child(system, n, orders) {
                Ok((before, after)) => {
                    let delta = after.saturating_sub(before) as f64;
                    per_job = Some(delta / n as f64);
                    let note = Some(format!(
                        "RSS {} → {} MB",
                        before / 1_000_000,
                        after / 1_000_000
                    ));
                    self.row(
                        "memory",
                        params.clone(),
                        system,
                        "per job",
                        "B",
                        Better::Lower,
                        Some(delta / n as f64),
                        note,
                    );
                    let total_goal = if system == System::Kessel && n >= 10_000_000 {
                        Some(Goal {
                            text: "10M in ≤ 4 GB".into(),
                            met: Some(delta <= 4e9),
                            bar_met: None,
                        })
                    } else {
                        None
                    };
                    self.report.push(Row {
                        workload: "memory".into(),
                        params,
                        system: system.name().to_owned(),
                        metric: "total".to_owned(),
                        unit: "B".to_owned(),
                        better: Better::Lower,
                        value: Some(delta),
                        goal: total_goal,
                        note: None,
                    });
                }
                Err(e) => {
                    self.row(
                        "memory",
                        params,
                        system,
                        "per job",
                        "B",
                        Better::Lower,
                        None,
                        Some(format!("FAILED: {e}")),
                    );
                }
            }
        }
    }

    fn durable(&mut self, system: System) {
        let n = self.plan.durable_n;
        let c = self.plan.durable_concurrency;
        let cap = self.plan.durable_cap;
        let params = format!("n={}, c={c}", report::human(n as f64));
        match run(|| system.burn_down(&self.env, n, c, cap)) {
            Answer::Done(rate) => {
                self.capacity.insert(system, rate);
                self.row(
                    "durable burn-down",
                    params,
                    system,
                    "throughput",
                    "jobs/s",
                    Better::Higher,
                    Some(rate),
                    None,
                );
            }
            Answer::Failed(e) => {
                // A run cut off at the cap still tells its rate: report it,
                // and use it for the latency run.
                match cut_off_rate(&e) {
                    Some(rate) => {
                        self.capacity.insert(system, rate);
                        let note = format!("cut off at the cap: {e}");
                        self.row(
                            "durable burn-down",
                            params,
                            system,
                            "throughput",
                            "jobs/s",
                            Better::Higher,
                            Some(rate),
                            Some(note),
                        );
                    }
                    None => {
                        self.row(
                            "durable burn-down",
                            params,
                            system,
                            "throughput",
                            "jobs/s",
                            Better::Higher,
                            None,
                            Some(format!("FAILED: {e}")),
                        );
                    }
                }
            }
            other => self.no_value(
                "durable burn-down",
                params,
                system,
                "throughput",
                "jobs/s",
                Better::Higher,
                other,
            ),
        }
        if system == System::KesselPostgres {
            self.pg_limited(n, cap);
            for processes in [1, 3] {
                self.pg_processes(processes, false);
            }
        }
        let probe = (n / 10).max(100);
        let secs = self.plan.durable_latency_secs;
        let cap = self.plan.durable_cap;
        self.latency_run("durable latency", system, probe, secs, c, cap);
        // A steady 500 jobs/s, one process: the create→start tail a
        // PostgreSQL user sees at an ordinary rate.
        if matches!(system, System::KesselPostgres | System::ApalisPostgres) {
            let secs = self.plan.pg_steady_secs;
            let params = format!("500/s offered for {secs} s, c={c}");
            self.latency_at("durable latency 500/s", system, 500.0, params, secs, c, cap);
        }
    }

    /// The burn-down with no group and with 10 fair groups, in turns, on
    /// memory (`burn_n`, concurrency 16) and PostgreSQL (`durable_n`,
    /// concurrency 64): the median of three rounds each, and their ratio.
    /// The `payloads` workload: every run of one round in turn (the order
    /// rotated each round), then each run's median and, for kessel's, its
    /// ratio to apalis's and the baseline's medians of the same rounds.
    fn payloads(&mut self, wanted: &dyn Fn(System) -> bool) {
        use payloads::{apalis, baseline, kessel};
        use systems::kessel::Handlers;
        const C: usize = 16;
        let (n, cap) = (self.plan.payload_n, self.plan.cap);
        let burn_params = format!(
            "n={}, c={C}, struct payload, default retention",
            report::human(n as f64)
        );
        let create_params = format!(
            "n={}, one awaited create per job, struct payload",
            report::human(n as f64)
        );
        // (workload, system, what it is)
        let runs: Vec<(&'static str, System, u8)> = [
            ("payloads burn-down", System::KesselWorkerThread, 0),
            ("payloads burn-down", System::Kessel, 1),
            (
                "payloads burn-down, one subscriber",
                System::KesselWorkerThread,
                2,
            ),
            ("payloads burn-down", System::Baseline, 3),
            ("payloads burn-down", System::Apalis, 4),
            ("payloads create", System::Kessel, 5),
            ("payloads create", System::Baseline, 6),
            ("payloads create", System::Apalis, 7),
        ]
        .into_iter()
        .filter(|(_, system, _)| wanted(*system))
        .filter(|(_, _, what)| {
            std::env::var("KESSEL_BENCH_PAYLOAD_RUN")
                .map_or(true, |only| only.parse::<u8>().ok() == Some(*what))
        })
        .collect();
        let one = |what: u8| -> Result<f64, systems::Fail> {
            match what {
                0 => run(|| kessel::burn_down(n, C, Handlers::Threads(1), false, cap)),
                1 => run(|| kessel::burn_down(n, C, Handlers::SchedulerThread, false, cap)),
                2 => run(|| kessel::burn_down(n, C, Handlers::Threads(1), true, cap)),
                3 => run(|| baseline::burn_down(n, C, cap)),
                4 => run(|| apalis::burn_down(n, C, cap)),
                5 => run(|| kessel::single_create(n)),
                6 => run(|| baseline::single_create(n)),
                _ => run(|| apalis::single_create(n)),
            }
        };
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
        let mut failed: Vec<Option<String>> = vec![None; runs.len()];
        for round in 0..self.plan.payload_rounds {
            for k in 0..runs.len() {
                let i = (round + k) % runs.len();
                match one(runs[i].2) {
                    Ok(rate) => rates[i].push(rate),
                    Err(e) => failed[i] = Some(e),
                }
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        let medians: Vec<Option<f64>> = rates.iter_mut().map(median).collect();
        let peer = |workload: &str, system: System| {
            let workload = if workload.starts_with("payloads create") {
                "payloads create"
            } else {
                "payloads burn-down"
            };
            runs.iter()
                .position(|(w, s, _)| *w == workload && *s == system)
                .and_then(|i| medians[i])
        };
        for (i, &(workload, system, _)) in runs.iter().enumerate() {
            let params = if workload == "payloads create" {
                create_params.clone()
            } else {
                burn_params.clone()
            };
            let rounds = rates[i]
                .iter()
                .map(|r| format!("{:.0}k", r / 1000.0))
                .collect::<Vec<_>>()
                .join(", ");
            let note = match &failed[i] {
                Some(e) => format!("FAILED: {e}; rounds {rounds}"),
                None => format!("rounds {rounds}"),
            };
            self.row(
                workload,
                params.clone(),
                system,
                "throughput",
                "jobs/s",
                Better::Higher,
                medians[i],
                Some(note),
            );
            if !system.is_kessel() {
                continue;
            }
            for (metric, of) in [
                ("÷ apalis", System::Apalis),
                ("÷ baseline", System::Baseline),
            ] {
                let ratio = medians[i].zip(peer(workload, of)).map(|(k, p)| k / p);
                self.row(
                    workload,
                    params.clone(),
                    system,
                    metric,
                    "×",
                    Better::Higher,
                    ratio,
                    Some("ratio of the medians of the same rounds".into()),
                );
            }
        }
    }

    fn groups_cost(&mut self) {
        use systems::kessel::{burn_down_with, Backend, Handlers, Limit, Watch};
        const ROUNDS: usize = 3;
        let postgres = self.env.postgres.clone().ok();
        let mut backends = vec![("memory", None, self.plan.burn_n, 16, self.plan.cap)];
        if let Some(url) = postgres {
            let (n, cap) = (self.plan.durable_n, self.plan.durable_cap);
            backends.push(("PostgreSQL", Some(url), n, 64, cap));
        }
        for (store, url, n, c, cap) in backends {
            let kinds = [(Limit::None, "no group"), (Limit::Groups(10), "10 groups")];
            let mut rates: [Vec<f64>; 2] = Default::default();
            let mut failed = None;
            for round in 0..ROUNDS {
                for k in 0..kinds.len() {
                    let i = (round + k) % kinds.len();
                    let backend = match &url {
                        Some(url) => Backend::Postgres(url),
                        None => Backend::Memory,
                    };
                    let limit = kinds[i].0;
                    match run(|| {
                        burn_down_with(
                            backend,
                            n,
                            c,
                            Handlers::SchedulerThread,
                            Watch::Off,
                            limit,
                            cap,
                        )
                    }) {
                        Ok((rate, _)) => rates[i].push(rate),
                        Err(e) => failed = Some(e),
                    }
                }
            }
            let medians: Vec<Option<f64>> = rates
                .iter_mut()
                .map(|v| {
                    v.sort_by(f64::total_cmp);
                    v.get(v.len() / 2).copied()
                })
                .collect();
            let ratio = medians[0]
                .zip(medians[1])
                .map_or("-".into(), |(none, groups)| format!("{:.2}", groups / none));
            let note = format!("{store}, interleaved, {ROUNDS} rounds; 10 groups / no group of the medians {ratio}");
            eprintln!("groups {store}: {note}");
            for (i, (_, what)) in kinds.iter().enumerate() {
                let params = format!("n={}, c={c}, {what}", report::human(n as f64));
                let answer = match (medians[i], &failed) {
                    (Some(rate), _) => Answer::Done((rate, Some(note.clone()))),
                    (None, Some(e)) => Answer::Failed(e.clone()),
                    (None, None) => Answer::Failed("no round finished".into()),
                };
                if url.is_none() {
                    self.burn_row(params, System::Kessel, answer);
                    continue;
                }
                let (rate, note) = match answer {
                    Answer::Done((rate, note)) => (Some(rate), note),
                    Answer::Failed(e) => (None, Some(format!("FAILED: {e}"))),
                    Answer::Unavailable(why) => (None, Some(why.to_owned())),
                };
                self.row(
                    "durable burn-down",
                    params,
                    System::KesselPostgres,
                    "throughput",
                    "jobs/s",
                    Better::Higher,
                    rate,
                    note,
                );
            }
        }
    }

    /// PostgreSQL burn-down, one process at concurrency 64, with flow
    /// control on the task: none (the row to compare with), a running
    /// limit of 50 (below the concurrency, so it binds, and claims take
    /// the limited path) and a rate limit far above what the run achieves
    /// (the limiter's cost alone).
    fn pg_limited(&mut self, n: u64, cap: Duration) {
        use systems::kessel::{burn_down_with, Backend, Handlers, Limit, Watch};
        let url = match self.env.postgres.clone() {
            Ok(url) => url,
            Err(_) => return,
        };
        let c = 64;
        let limits = [
            (Limit::None, "no limit"),
            (Limit::MaxRunning(50), "max_running 50"),
            (Limit::TagMaxRunning(50), "tag_max_running 50"),
            (Limit::PerSecond(1_000_000), "rate limit 1M/s"),
        ];
        // Passes over every limit in turn, so each limit's runs meet the
        // machine's moods alike; each row is the median of its passes,
        // and its note gives each pass's ratio to the pass's run
        // without a limit (a run of 100k jobs lasts about a second, so
        // one run alone is noisy).
        let passes = if self.plan.durable_n >= 10_000 { 5 } else { 1 };
        // For profiling one kind of run alone: `KESSEL_BENCH_LIMITS=1`
        // runs only the second (indexes into `limits`, comma-separated).
        let only: Option<Vec<usize>> = std::env::var("KESSEL_BENCH_LIMITS")
            .ok()
            .map(|v| v.split(',').filter_map(|i| i.trim().parse().ok()).collect());
        let limits: Vec<(Limit, &str)> = limits
            .into_iter()
            .enumerate()
            .filter(|(i, _)| only.as_ref().is_none_or(|o| o.contains(i)))
            .map(|(_, l)| l)
            .collect();
        let mut rates: Vec<Vec<Result<f64, String>>> = vec![Vec::new(); limits.len()];
        for _ in 0..passes {
            for (i, (limit, _)) in limits.iter().enumerate() {
                let limit = *limit;
                let answer: Answer<(f64, Option<String>)> = run(|| {
                    burn_down_with(
                        Backend::Postgres(&url),
                        n,
                        c,
                        Handlers::SchedulerThread,
                        Watch::Off,
                        limit,
                        cap,
                    )
                })
                .into();
                rates[i].push(match answer {
                    Answer::Done((rate, _)) => Ok(rate),
                    Answer::Failed(e) => Err(e),
                    Answer::Unavailable(why) => Err(why.to_owned()),
                });
            }
        }
        let unlimited: Vec<Option<f64>> = match limits.first() {
            Some((Limit::None, _)) => rates[0].iter().map(|r| r.as_ref().ok().copied()).collect(),
            _ => Vec::new(),
        };
        for (i, (_, what)) in limits.iter().enumerate() {
            let params = format!(
                "n={}, c={c}, {what}, median of {passes}",
                report::human(n as f64)
            );
            if let Some(Err(e)) = rates[i].iter().find(|r| r.is_err()) {
                let e = e.clone();
                self.no_value(
                    "durable burn-down",
                    params,
                    System::KesselPostgres,
                    "throughput",
                    "jobs/s",
                    Better::Higher,
                    Answer::<()>::Failed(e),
                );
                continue;
            }
            let mine: Vec<f64> = rates[i]
                .iter()
                .filter_map(|r| r.as_ref().ok().copied())
                .collect();
            let mut sorted = mine.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted.get(sorted.len() / 2).copied();
            let note = (i > 0 && !unlimited.is_empty()).then(|| {
                let ratios: Vec<String> = mine
                    .iter()
                    .zip(&unlimited)
                    .filter_map(|(r, u)| u.map(|u| format!("{:.2}", r / u)))
                    .collect();
                format!("÷ no limit, each pass: {}", ratios.join(", "))
            });
            self.row(
                "durable burn-down",
                params,
                System::KesselPostgres,
                "throughput",
                "jobs/s",
                Better::Higher,
                median,
                note,
            );
        }
    }

    /// PostgreSQL burn-down with `processes` worker processes (each with
    /// the durable concurrency) sharing one schema.
    fn pg_processes(&mut self, processes: usize, subscriber: bool) {
        let system = System::KesselPostgres;
        let n = self.plan.durable_n;
        let c = self.plan.durable_concurrency;
        let cap = self.plan.durable_cap;
        let noun = if processes == 1 {
            "process"
        } else {
            "processes"
        };
        let params = format!(
            "n={}, c={c} per process, {processes} worker {noun}{}",
            report::human(n as f64),
            if subscriber {
                ", one remote subscriber"
            } else {
                ""
            }
        );
        let answer = match self.env.postgres.clone() {
            Ok(url) => run(|| procs::burn_down(&url, n, processes, c, cap, subscriber)),
            Err(e) => Err(e),
        };
        match answer {
            Ok(outcome) => {
                let mut notes = Vec::new();
                if outcome.completed != n {
                    notes.push(format!(
                        "FAILED: {} of {n} jobs recorded completed",
                        outcome.completed
                    ));
                }
                if outcome.extra_runs > 0 {
                    notes.push(format!("{} extra runs", outcome.extra_runs));
                }
                if let Some(events) = outcome.events {
                    notes.push(format!(
                        "the subscriber received {events} of {} job events",
                        2 * n
                    ));
                }
                let note = (!notes.is_empty()).then(|| notes.join("; "));
                self.row(
                    "durable burn-down",
                    params,
                    system,
                    "throughput",
                    "jobs/s",
                    Better::Higher,
                    Some(outcome.rate),
                    note,
                );
            }
            Err(e) => {
                // A run cut off at the cap still tells its rate.
                let (value, note) = match cut_off_rate(&e) {
                    Some(rate) => (Some(rate), format!("cut off at the cap: {e}")),
                    None => (None, format!("FAILED: {e}")),
                };
                self.row(
                    "durable burn-down",
                    params,
                    system,
                    "throughput",
                    "jobs/s",
                    Better::Higher,
                    value,
                    Some(note),
                )
            }
        }
    }

    /// Handlers that keep the CPU busy: on the scheduler's thread, then
    /// on one and two worker threads; rows of jobs/s and the two threads'
    /// rate over the one thread's.
    fn cpu_handler(&mut self) {
        use systems::kessel::Handlers;
        let (n, micros) = (self.plan.cpu_n, self.plan.cpu_micros);
        let c = self.plan.cpu_concurrency;
        let cap = self.plan.cap;
        // One core's ceiling: every job's loop back to back.
        let ceiling = 1e6 / f64::from(micros);
        let base = format!(
            "n={}, c={c}, {micros} µs CPU per job",
            report::human(n as f64)
        );
        let placements = [
            (
                System::Kessel,
                Handlers::SchedulerThread,
                "on the scheduler's thread",
            ),
            (
                System::KesselWorkerThread,
                Handlers::Threads(1),
                "threads(1)",
            ),
            (
                System::KesselWorkerThread,
                Handlers::Threads(2),
                "threads(2)",
            ),
        ];
        let mut rates = Vec::new();
        for (system, handlers, label) in placements {
            let params = format!("{base}, {label}");
            let answer = run(|| systems::kessel::cpu_burn_down(n, micros, c, handlers, cap));
            match answer {
                Ok(rate) => {
                    rates.push((handlers, rate));
                    let note = format!(
                        "{:.0}% of one core's ceiling ({}/s)",
                        100.0 * rate / ceiling,
                        report::human(ceiling)
                    );
                    self.row(
                        "cpu-handler",
                        params,
                        system,
                        "throughput",
                        "jobs/s",
                        Better::Higher,
                        Some(rate),
                        Some(note),
                    );
                }
                Err(e) => self.no_value(
                    "cpu-handler",
                    params,
                    system,
                    "throughput",
                    "jobs/s",
                    Better::Higher,
                    Answer::<()>::Failed(e),
                ),
            }
        }
        let rate_of = |h: Handlers| rates.iter().find(|(p, _)| *p == h).map(|(_, r)| *r);
        let scaling = rate_of(Handlers::Threads(2))
            .zip(rate_of(Handlers::Threads(1)))
            .map(|(two, one)| two / one);
        let note = (scaling.is_none()).then(|| "a run above gave no rate".to_owned());
        self.row(
            "cpu-handler",
            format!("{base}, threads(2) ÷ threads(1)"),
            System::KesselWorkerThread,
            "scaling",
            "×",
            Better::Higher,
            scaling,
            note,
        );
    }

    fn bulk_create(&mut self, system: System) {
        let n = if System::DURABLE.contains(&system) {
            self.plan.durable_bulk_n
        } else {
            self.plan.bulk_n
        };
        let params = format!(
            "n={}, batches of {}",
            report::human(n as f64),
            systems::CREATE_BATCH
        );
        match run(|| system.bulk_create(&self.env, n)) {
            Answer::Done(rate) => self.row(
                "bulk-create",
                params,
                system,
                "throughput",
                "jobs/s",
                Better::Higher,
                Some(rate),
                None,
            ),
            other => self.no_value(
                "bulk-create",
                params,
                system,
                "throughput",
                "jobs/s",
                Better::Higher,
                other,
            ),
        }
    }
}

/// The rate a run cut off at its cap reached: the `(N jobs/s)` at the end
/// of its error.
fn cut_off_rate(e: &str) -> Option<f64> {
    e.rsplit_once('(')
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|r| r.parse::<f64>().ok())
        .filter(|r| *r > 0.0)
}

/// Runs the memory measurement for one system and size in a child process,
/// so no other workload's heap is in its numbers. Returns RSS before/after.
fn memory_in_child(system: System, n: u64, orders: bool) -> Result<(u64, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let name = system
        .to_possible_value()
        .expect("named")
        .get_name()
        .to_owned();
    let mut child = std::process::Command::new(exe);
    child.args(["--child-memory", &name, "--count", &n.to_string()]);
    if orders {
        child.arg("--struct-payload");
    }
    let out = child.output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "child exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).map_err(|e| format!("{e}: {stdout}"))?;
    match (v["rss_before"].as_u64(), v["rss_after"].as_u64()) {
        (Some(b), Some(a)) => Ok((b, a)),
        _ => Err(v["error"].as_str().unwrap_or("no numbers").to_owned()),
    }
}

fn memory_child(system: System, n: u64, orders: bool) -> ExitCode {
    let out = run(|| async move {
        // Let the runtime settle before the first reading.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = rss_bytes();
        match system.pending(n, orders).await {
            Answer::Done(keep) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let after = rss_bytes();
                println!(
                    "{}",
                    serde_json::json!({ "rss_before": before, "rss_after": after })
                );
                // Tearing down millions of jobs takes longer than the
                // measurement: leave it to the operating system.
                std::mem::forget(keep);
                std::process::exit(0)
            }
            Answer::Failed(e) => serde_json::json!({ "error": e }),
            Answer::Unavailable(w) => serde_json::json!({ "error": w }),
        }
    });
    println!("{out}");
    ExitCode::SUCCESS
}
