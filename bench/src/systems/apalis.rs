//! apalis 1.0: the in-memory backend, apalis-sqlite and apalis-postgres,
//! each at its default settings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_postgres::{PgPool, PostgresStorage};
use apalis_sqlite::{SqlitePool, SqliteStorage};
use futures::{SinkExt, StreamExt};

use super::{Fail, CREATE_BATCH};
use crate::measure::{now_ns, Pacer, Stamps};

/// Starts a worker with `concurrency` on `backend` that hits `stamps`, and
/// returns a guard that stops it when dropped.
macro_rules! run_worker {
    ($backend:expr, $concurrency:expr, $stamps:expr) => {{
        let s: Arc<Stamps> = $stamps.clone();
        let worker = WorkerBuilder::new("kessel-bench")
            .backend($backend)
            .concurrency($concurrency)
            .build(move |i: u64| {
                let s = s.clone();
                async move {
                    s.hit(i);
                    Ok::<(), BoxDynError>(())
                }
            });
        Abort(Some(actix_rt::spawn(async move {
            if let Err(e) = worker.run().await {
                eprintln!("apalis worker stopped: {e}");
            }
        })))
    }};
}

/// The worker's task; aborted when dropped.
struct Abort(Option<tokio::task::JoinHandle<()>>);

impl Abort {
    /// Aborts the worker and waits until its task is gone, so its database
    /// connections are dropped while the runtime still runs.
    async fn stop(mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for Abort {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// An in-memory backend and a sink that feeds it while a worker owns it.
fn memory() -> (MemoryStorage<u64>, MemorySink<u64>) {
    let (tx, rx) = futures::channel::mpsc::unbounded::<Task<u64>>();
    let sender: Box<
        dyn futures::Sink<Task<u64>, Error = MemoryStorageError> + Send + Sync + Unpin,
    > = Box::new(tx.sink_map_err(MemoryStorageError::from));
    let sink = MemorySink::new(Arc::new(futures::lock::Mutex::new(sender)));
    (MemoryStorage::new_with(sink.clone(), rx.boxed()), sink)
}

fn err(e: impl std::fmt::Display) -> Fail {
    e.to_string()
}

pub mod mem {
    use super::*;

    pub async fn burn_down(n: u64, concurrency: usize, cap: Duration) -> Result<f64, Fail> {
        let stamps = Stamps::counter(n);
        let (mut storage, _sink) = memory();
        let mut i = 0;
        while i < n {
            let end = (i + CREATE_BATCH).min(n);
            storage.push_bulk((i..end).collect()).await.map_err(err)?;
            i = end;
        }
        let t = Instant::now();
        let _worker = run_worker!(storage, concurrency, stamps);
        stamps.wait(cap).await.map_err(err)?;
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }

    pub async fn bulk_create(n: u64) -> Result<f64, Fail> {
        let (mut storage, _sink) = memory();
        let t = Instant::now();
        let mut i = 0;
        while i < n {
            let end = (i + CREATE_BATCH).min(n);
            storage.push_bulk((i..end).collect()).await.map_err(err)?;
            i = end;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }

    pub async fn latency(
        rate: f64,
        n: u64,
        concurrency: usize,
        cap: Duration,
    ) -> Result<(Vec<u64>, Arc<Stamps>), Fail> {
        let stamps = Stamps::timed(n);
        let (storage, mut sink) = memory();
        let _worker = run_worker!(storage, concurrency, stamps);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut created = vec![0u64; n as usize];
        let mut pacer = Pacer::new(rate, n);
        while !pacer.finished() {
            if let Some(i) = pacer.next_due() {
                created[i as usize] = now_ns();
                sink.send(TaskBuilder::new(i).build()).await.map_err(err)?;
            }
            pacer.pause().await;
        }
        created.truncate(pacer.sent() as usize);
        stamps.expect(pacer.sent());
        // An incomplete wait is reported by the caller as jobs that never started.
        let _ = stamps.wait(cap).await;
        Ok((created, stamps))
    }

    /// Delayed tasks: `run_at` is whole UNIX seconds, and the in-memory
    /// backend does not wait for it.
    pub async fn delay(
        targets: &[u64],
        concurrency: usize,
        cap: Duration,
    ) -> Result<Arc<Stamps>, Fail> {
        let stamps = Stamps::timed(targets.len() as u64);
        let (storage, mut sink) = memory();
        let _worker = run_worker!(storage, concurrency, stamps);
        let (base_ns, base_sys) = (now_ns(), std::time::SystemTime::now());
        for (i, &t) in targets.iter().enumerate() {
            let at = base_sys + Duration::from_nanos(t.saturating_sub(base_ns));
            sink.send(TaskBuilder::new(i as u64).run_at_time(at).build())
                .await
                .map_err(err)?;
        }
        stamps.mark_created();
        let _ = stamps.wait(cap).await;
        Ok(stamps)
    }

    pub async fn pending(n: u64) -> Result<Box<dyn std::any::Any>, Fail> {
        let (storage, mut sink) = memory();
        for i in 0..n {
            sink.send(
                TaskBuilder::new(i)
                    .run_after(Duration::from_secs(3600))
                    .build(),
            )
            .await
            .map_err(err)?;
        }
        Ok(Box::new((storage, sink)))
    }
}

pub mod sqlite {
    use super::*;

    /// A fresh database file in a temporary directory (dropped with it).
    pub async fn open() -> Result<(SqlitePool, tempfile::TempDir), Fail> {
        let dir = tempfile::tempdir().map_err(err)?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("apalis.db").display()
        );
        let pool = SqlitePool::connect(&url).await.map_err(err)?;
        SqliteStorage::setup(&pool).await.map_err(err)?;
        Ok((pool, dir))
    }

    pub async fn create(storage: &mut SqliteStorage<u64>, n: u64) -> Result<f64, Fail> {
        let t = Instant::now();
        let mut i = 0;
        while i < n {
            let end = (i + CREATE_BATCH).min(n);
            storage.push_bulk((i..end).collect()).await.map_err(err)?;
            i = end;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }

    pub async fn bulk_create(n: u64) -> Result<f64, Fail> {
        let (pool, _dir) = open().await?;
        let mut storage = SqliteStorage::<u64>::new(&pool);
        let rate = create(&mut storage, n).await;
        pool.close().await;
        rate
    }

    pub async fn burn_down(n: u64, concurrency: usize, cap: Duration) -> Result<f64, Fail> {
        let (pool, _dir) = open().await?;
        let mut storage = SqliteStorage::<u64>::new(&pool);
        create(&mut storage, n).await?;
        let stamps = Stamps::counter(n);
        let t = Instant::now();
        let worker = run_worker!(storage, concurrency, stamps);
        let waited = stamps.wait(cap).await;
        let secs = t.elapsed().as_secs_f64();
        worker.stop().await;
        pool.close().await;
        waited.map_err(|e| format!("{e} ({:.0} jobs/s)", stamps.runs() as f64 / secs))?;
        Ok(n as f64 / secs)
    }

    pub async fn latency(
        rate: f64,
        n: u64,
        concurrency: usize,
        cap: Duration,
    ) -> Result<(Vec<u64>, Arc<Stamps>), Fail> {
        let (pool, _dir) = open().await?;
        let stamps = Stamps::timed(n);
        let mut producer = SqliteStorage::<u64>::new(&pool);
        let worker = run_worker!(SqliteStorage::<u64>::new(&pool), concurrency, stamps);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut created = vec![0u64; n as usize];
        let mut pacer = Pacer::new(rate, n);
        while !pacer.finished() {
            if let Some(i) = pacer.next_due() {
                created[i as usize] = now_ns();
                producer.push(i).await.map_err(err)?;
            }
            pacer.pause().await;
        }
        created.truncate(pacer.sent() as usize);
        stamps.expect(pacer.sent());
        // An incomplete wait is reported by the caller as jobs that never started.
        let _ = stamps.wait(cap).await;
        worker.stop().await;
        pool.close().await;
        Ok((created, stamps))
    }
}

pub mod postgres {
    use super::*;

    /// Connects to the benchmark database (creating it if needed) and
    /// empties apalis' job table.
    pub async fn open(url: &str) -> Result<PgPool, Fail> {
        super::super::ensure_pg_database(url).await?;
        let pool = PgPool::connect(url).await.map_err(err)?;
        PostgresStorage::setup(&pool).await.map_err(err)?;
        sqlx::query("TRUNCATE apalis.jobs")
            .execute(&pool)
            .await
            .map_err(err)?;
        Ok(pool)
    }

    pub async fn create(storage: &mut PostgresStorage<u64>, n: u64) -> Result<f64, Fail> {
        let t = Instant::now();
        let mut i = 0;
        while i < n {
            let end = (i + CREATE_BATCH).min(n);
            storage.push_bulk((i..end).collect()).await.map_err(err)?;
            i = end;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }

    pub async fn bulk_create(url: &str, n: u64) -> Result<f64, Fail> {
        let pool = open(url).await?;
        let mut storage = PostgresStorage::<u64>::new(&pool);
        let rate = create(&mut storage, n).await;
        pool.close().await;
        rate
    }

    pub async fn burn_down(
        url: &str,
        n: u64,
        concurrency: usize,
        cap: Duration,
    ) -> Result<f64, Fail> {
        let pool = open(url).await?;
        let mut storage = PostgresStorage::<u64>::new(&pool);
        create(&mut storage, n).await?;
        let stamps = Stamps::counter(n);
        let t = Instant::now();
        let worker = run_worker!(storage, concurrency, stamps);
        let waited = stamps.wait(cap).await;
        let secs = t.elapsed().as_secs_f64();
        worker.stop().await;
        pool.close().await;
        waited.map_err(|e| format!("{e} ({:.0} jobs/s)", stamps.runs() as f64 / secs))?;
        Ok(n as f64 / secs)
    }

    pub async fn latency(
        url: &str,
        rate: f64,
        n: u64,
        concurrency: usize,
        cap: Duration,
    ) -> Result<(Vec<u64>, Arc<Stamps>), Fail> {
        let pool = open(url).await?;
        let stamps = Stamps::timed(n);
        let mut producer = PostgresStorage::<u64>::new(&pool);
        let worker = run_worker!(PostgresStorage::<u64>::new(&pool), concurrency, stamps);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut created = vec![0u64; n as usize];
        let mut pacer = Pacer::new(rate, n);
        while !pacer.finished() {
            if let Some(i) = pacer.next_due() {
                created[i as usize] = now_ns();
                producer.push(i).await.map_err(err)?;
            }
            pacer.pause().await;
        }
        created.truncate(pacer.sent() as usize);
        stamps.expect(pacer.sent());
        // An incomplete wait is reported by the caller as jobs that never started.
        let _ = stamps.wait(cap).await;
        worker.stop().await;
        pool.close().await;
        Ok((created, stamps))
    }
}
