//! The systems under test. Each is a set of async functions with the same
//! shapes; [`System`] names them and dispatches. A store that does not
//! exist yet is a system too: it answers every workload with
//! [`Unavailable`](Answer::Unavailable), so the table shows the gap.

pub mod apalis;
pub mod baseline;
pub mod kessel;

use std::sync::Arc;
use std::time::Duration;

use crate::measure::Stamps;

/// Why a run failed, in words for the table.
pub type Fail = String;

/// Jobs per create call when creating in bulk.
pub const CREATE_BATCH: u64 = 10_000;

/// Why awa has no row in the other PostgreSQL workloads.
const SUSTAINED_ONLY: &str = "awa runs in the sustained workload only";

/// The systems, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum System {
    /// kessel on its in-memory store, handlers on the scheduler's thread
    /// (`on_scheduler_thread`), as every kessel row before handlers had
    /// threads of their own.
    Kessel,
    /// kessel on its in-memory store, handlers on a worker thread of their
    /// own (`threads(1)`, the default). Burn-down and latency only.
    KesselWorkerThread,
    /// A tokio mpsc channel feeding spawned tasks.
    Baseline,
    /// apalis 1.0 with its in-memory backend.
    Apalis,
    /// kessel on SQLite.
    KesselSqlite,
    /// kessel on PostgreSQL.
    KesselPostgres,
    /// apalis-sqlite 1.0.
    ApalisSqlite,
    /// apalis-postgres 1.0.
    ApalisPostgres,
    /// awa 0.6 (PostgreSQL), run as child processes of its own binary
    /// (`bench/awa`); the `sustained` workload only.
    Awa,
}

/// What a system said to a workload.
#[derive(Debug)]
pub enum Answer<T> {
    Done(T),
    Failed(Fail),
    /// The system cannot run this workload; why.
    Unavailable(&'static str),
}

impl<T> From<Result<T, Fail>> for Answer<T> {
    fn from(r: Result<T, Fail>) -> Self {
        match r {
            Ok(v) => Answer::Done(v),
            Err(e) => Answer::Failed(e),
        }
    }
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Kessel => "kessel",
            System::KesselWorkerThread => "kessel (worker thread)",
            System::Baseline => "baseline",
            System::Apalis => "apalis",
            System::KesselSqlite => "kessel-sqlite",
            System::KesselPostgres => "kessel-postgres",
            System::ApalisSqlite => "apalis-sqlite",
            System::ApalisPostgres => "apalis-postgres",
            System::Awa => "awa",
        }
    }

    pub const IN_MEMORY: [System; 3] = [System::Kessel, System::Baseline, System::Apalis];
    /// The in-memory systems of the workloads that time a worker
    /// (burn-down, latency): kessel both ways.
    pub const IN_MEMORY_WORKERS: [System; 4] = [
        System::Kessel,
        System::KesselWorkerThread,
        System::Baseline,
        System::Apalis,
    ];
    pub const DURABLE: [System; 4] = [
        System::KesselSqlite,
        System::KesselPostgres,
        System::ApalisSqlite,
        System::ApalisPostgres,
    ];

    /// The systems of the `sustained` workload.
    pub const SUSTAINED: [System; 2] = [System::KesselPostgres, System::Awa];

    pub fn is_kessel(self) -> bool {
        matches!(
            self,
            System::Kessel
                | System::KesselWorkerThread
                | System::KesselSqlite
                | System::KesselPostgres
        )
    }

    /// Creates `n` jobs, then processes them all; processing jobs/s.
    pub async fn burn_down(
        self,
        env: &Env,
        n: u64,
        concurrency: usize,
        cap: Duration,
    ) -> Answer<f64> {
        use kessel::{Backend, Handlers};
        let run_kessel = |backend, handlers| async move {
            kessel::burn_down(backend, n, concurrency, handlers, kessel::Watch::Off, cap)
                .await
                .map(|(r, _)| r)
                .into()
        };
        match self {
            System::Kessel => run_kessel(Backend::Memory, Handlers::SchedulerThread).await,
            System::KesselWorkerThread => run_kessel(Backend::Memory, Handlers::Threads(1)).await,
            System::KesselSqlite => run_kessel(Backend::Sqlite, Handlers::SchedulerThread).await,
            System::KesselPostgres => match env.pg() {
                Ok(url) => run_kessel(Backend::Postgres(url), Handlers::SchedulerThread).await,
                Err(e) => Answer::Failed(e),
            },
            System::Baseline => baseline::burn_down(n, concurrency, cap).await.into(),
            System::Apalis => apalis::mem::burn_down(n, concurrency, cap).await.into(),
            System::ApalisSqlite => apalis::sqlite::burn_down(n, concurrency, cap).await.into(),
            System::Awa => Answer::Unavailable(SUSTAINED_ONLY),
            System::ApalisPostgres => match env.pg() {
                Ok(url) => apalis::postgres::burn_down(url, n, concurrency, cap)
                    .await
                    .into(),
                Err(e) => Answer::Failed(e),
            },
        }
    }

    /// Creates `n` jobs with no worker; jobs/s.
    pub async fn bulk_create(self, env: &Env, n: u64) -> Answer<f64> {
        match self {
            System::Kessel | System::KesselWorkerThread => {
                kessel::bulk_create(kessel::Backend::Memory, n).await.into()
            }
            System::KesselSqlite => kessel::bulk_create(kessel::Backend::Sqlite, n).await.into(),
            System::KesselPostgres => match env.pg() {
                Ok(url) => kessel::bulk_create(kessel::Backend::Postgres(url), n)
                    .await
                    .into(),
                Err(e) => Answer::Failed(e),
            },
            System::Baseline => baseline::bulk_create(n).await.into(),
            System::Apalis => apalis::mem::bulk_create(n).await.into(),
            System::ApalisSqlite => apalis::sqlite::bulk_create(n).await.into(),
            System::Awa => Answer::Unavailable(SUSTAINED_ONLY),
            System::ApalisPostgres => match env.pg() {
                Ok(url) => apalis::postgres::bulk_create(url, n).await.into(),
                Err(e) => Answer::Failed(e),
            },
        }
    }

    /// Creates `n` jobs one at a time at `rate`; creation times and stamps.
    pub async fn latency(
        self,
        env: &Env,
        rate: f64,
        n: u64,
        concurrency: usize,
        cap: Duration,
    ) -> Answer<(Vec<u64>, Arc<Stamps>)> {
        use kessel::{Backend, Handlers};
        let run_kessel = |backend, handlers| async move {
            kessel::latency(backend, rate, n, concurrency, handlers, cap)
                .await
                .into()
        };
        match self {
            System::Kessel => run_kessel(Backend::Memory, Handlers::SchedulerThread).await,
            System::KesselWorkerThread => run_kessel(Backend::Memory, Handlers::Threads(1)).await,
            System::KesselSqlite => run_kessel(Backend::Sqlite, Handlers::SchedulerThread).await,
            System::KesselPostgres => match env.pg() {
                Ok(url) => run_kessel(Backend::Postgres(url), Handlers::SchedulerThread).await,
                Err(e) => Answer::Failed(e),
            },
            System::Baseline => baseline::latency(rate, n, concurrency, cap).await.into(),
            System::Apalis => apalis::mem::latency(rate, n, concurrency, cap).await.into(),
            System::ApalisSqlite => apalis::sqlite::latency(rate, n, concurrency, cap)
                .await
                .into(),
            System::Awa => Answer::Unavailable(SUSTAINED_ONLY),
            System::ApalisPostgres => match env.pg() {
                Ok(url) => apalis::postgres::latency(url, rate, n, concurrency, cap)
                    .await
                    .into(),
                Err(e) => Answer::Failed(e),
            },
        }
    }

    /// One job per target time; stamps of when each started.
    pub async fn delay(
        self,
        targets: &[u64],
        concurrency: usize,
        cap: Duration,
    ) -> Answer<Arc<Stamps>> {
        match self {
            System::Kessel => kessel::delay(targets, concurrency, cap).await.into(),
            System::Baseline => baseline::delay(targets, cap).await.into(),
            System::Apalis => apalis::mem::delay(targets, concurrency, cap).await.into(),
            _ => Answer::Unavailable("in-memory workload"),
        }
    }

    /// Leaves `n` small jobs pending for an hour (their payload a `u64`, or
    /// with `orders` the `payloads` workload's struct); the value keeps
    /// them alive.
    pub async fn pending(self, n: u64, orders: bool) -> Answer<Box<dyn std::any::Any>> {
        use crate::payloads;
        match (self, orders) {
            (System::Kessel, false) => kessel::pending(n).await.into(),
            (System::Baseline, false) => baseline::pending(n).await.into(),
            (System::Apalis, false) => apalis::mem::pending(n).await.into(),
            (System::Kessel, true) => payloads::kessel::pending(n).await.into(),
            (System::Baseline, true) => payloads::baseline::pending(n).await.into(),
            (System::Apalis, true) => payloads::apalis::pending(n).await.into(),
            _ => Answer::Unavailable("in-memory workload"),
        }
    }
}

/// What the durable systems need from outside.
#[derive(Debug, Clone)]
pub struct Env {
    /// The PostgreSQL database for benchmarks, or why there is none.
    pub postgres: Result<String, Fail>,
}

impl Env {
    fn pg(&self) -> Result<&str, Fail> {
        self.postgres.as_deref().map_err(Clone::clone)
    }
}

/// Creates the database `url` names, through the server's `postgres`
/// database, unless it exists.
pub async fn ensure_pg_database(url: &str) -> Result<(), Fail> {
    use sqlx::Connection;
    let (server, name) = url
        .rsplit_once('/')
        .ok_or_else(|| format!("no database name in {url}"))?;
    let name = name.split('?').next().unwrap_or(name);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "database name `{name}` must be letters, digits and _"
        ));
    }
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .map_err(|e| format!("cannot reach PostgreSQL: {e}"))?;
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    if exists.is_none() {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
