//! Jobs whose payload is shaped like a user's: a serde-derived struct of
//! two integers and a 32-byte string, not the bare index the other
//! in-memory workloads send. Burn-down (jobs created beforehand, then
//! worked at the default retention) and single create (one awaited create
//! per job, no worker), for kessel both ways, the tokio baseline and
//! apalis, in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::measure::{now_ns, Stamps};
use crate::systems::kessel::{create_all, Handlers};
use crate::systems::Fail;

/// The job a user would send: an order for a customer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// The job's index (what the handler stamps).
    pub id: u64,
    /// When it was made (`now_ns`).
    pub enq_ns: u64,
    /// 32 bytes of text.
    pub customer: String,
}

impl Order {
    pub fn new(id: u64) -> Self {
        Order {
            id,
            enq_ns: now_ns(),
            customer: format!("customer-{id:023}"),
        }
    }
}

const TASK: &str = "order";

/// kessel on its in-memory store at the default retention.
pub mod kessel {
    use super::*;
    use ::kessel::event::Filter;
    use ::kessel::{JobContext, JobError, NewJob, Queue};

    async fn queue(handlers: Handlers, stamps: Option<Arc<Stamps>>) -> Result<Queue, Fail> {
        let builder = match handlers {
            Handlers::SchedulerThread => Queue::builder().scheduler_on_current_thread(),
            Handlers::Threads(_) => Queue::builder(),
        };
        let queue = builder.build().await.map_err(|e| e.to_string())?;
        queue
            .define(TASK)
            .tag(crate::systems::kessel::TAG)
            .action(move |job: JobContext<Order>| {
                if let Some(s) = &stamps {
                    s.hit(job.payload.id);
                }
                std::future::ready(Ok::<(), JobError>(()))
            })
            .map_err(|e| e.to_string())?;
        Ok(queue)
    }

    /// Creates `n` orders in batches, then works them off; jobs/s of the
    /// working. With `events`, one queue-wide subscriber counts every event.
    pub async fn burn_down(
        n: u64,
        concurrency: usize,
        handlers: Handlers,
        events: bool,
        cap: Duration,
    ) -> Result<f64, Fail> {
        let stamps = Stamps::counter(n);
        let queue = queue(handlers, Some(stamps.clone())).await?;
        let counter = events.then(|| {
            let mut stream = queue.events(Filter::All);
            actix_rt::spawn(async move { while stream.next().await.is_some() {} })
        });
        create_all(&queue, n, |i| NewJob::new(TASK, Order::new(i))).await?;
        let t = Instant::now();
        handlers.start(&queue, concurrency)?;
        stamps.wait(cap).await.map_err(|e| e.to_string())?;
        let rate = n as f64 / t.elapsed().as_secs_f64();
        if let Some(task) = counter {
            task.abort();
        }
        let _ = queue.shutdown(Duration::from_secs(1)).await;
        Ok(rate)
    }

    /// Leaves `n` orders pending for an hour, created in batches (the
    /// `memory` workload); the value keeps them alive.
    pub async fn pending(n: u64) -> Result<Box<dyn std::any::Any>, Fail> {
        let queue = queue(Handlers::SchedulerThread, None).await?;
        Handlers::SchedulerThread.start(&queue, 16)?;
        create_all(&queue, n, |i| {
            NewJob::new(TASK, Order::new(i)).delay(Duration::from_secs(3600))
        })
        .await?;
        Ok(Box::new(queue))
    }

    /// `n` awaited `create` calls, one order each, no worker: creates/s.
    pub async fn single_create(n: u64) -> Result<f64, Fail> {
        let queue = queue(Handlers::Threads(1), None).await?;
        let t = Instant::now();
        for i in 0..n {
            queue
                .create(TASK, Order::new(i))
                .await
                .map_err(|e| e.to_string())?;
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        let _ = queue.shutdown(Duration::from_secs(1)).await;
        Ok(rate)
    }
}

/// A tokio channel feeding one spawned task per order.
pub mod baseline {
    use super::*;
    use tokio::sync::{mpsc, Semaphore};

    pub async fn burn_down(n: u64, concurrency: usize, cap: Duration) -> Result<f64, Fail> {
        let stamps = Stamps::counter(n);
        let (tx, mut rx) = mpsc::unbounded_channel::<Order>();
        for i in 0..n {
            tx.send(Order::new(i)).map_err(|e| e.to_string())?;
        }
        let t = Instant::now();
        let s = stamps.clone();
        let permits = Arc::new(Semaphore::new(concurrency));
        tokio::spawn(async move {
            while let Some(order) = rx.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    s.hit(order.id);
                    drop(permit);
                });
            }
        });
        stamps.wait(cap).await.map_err(|e| e.to_string())?;
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }

    /// One task per order, sleeping an hour with it.
    pub async fn pending(n: u64) -> Result<Box<dyn std::any::Any>, Fail> {
        let at = Instant::now() + Duration::from_secs(3600);
        for i in 0..n {
            let order = Order::new(i);
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                drop(order);
            });
        }
        // Let every task run once and register its timer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(Box::new(()))
    }

    pub async fn single_create(n: u64) -> Result<f64, Fail> {
        let (tx, rx) = mpsc::unbounded_channel::<Order>();
        let t = Instant::now();
        for i in 0..n {
            tx.send(Order::new(i)).map_err(|e| e.to_string())?;
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        drop(rx);
        Ok(rate)
    }
}

/// apalis 1.0 with its in-memory backend.
pub mod apalis {
    use super::*;
    use ::apalis::prelude::*;
    use futures::SinkExt;

    fn memory() -> MemoryStorage<Order> {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Task<Order>>();
        let sender: Box<
            dyn futures::Sink<Task<Order>, Error = MemoryStorageError> + Send + Sync + Unpin,
        > = Box::new(tx.sink_map_err(MemoryStorageError::from));
        let sink = MemorySink::new(Arc::new(futures::lock::Mutex::new(sender)));
        MemoryStorage::new_with(sink, rx.boxed())
    }

    pub async fn burn_down(n: u64, concurrency: usize, cap: Duration) -> Result<f64, Fail> {
        let stamps = Stamps::counter(n);
        let mut storage = memory();
        let mut i = 0;
        while i < n {
            let end = (i + crate::systems::CREATE_BATCH).min(n);
            storage
                .push_bulk((i..end).map(Order::new).collect())
                .await
                .map_err(|e| e.to_string())?;
            i = end;
        }
        let t = Instant::now();
        let s = stamps.clone();
        let worker = WorkerBuilder::new("kessel-bench-orders")
            .backend(storage)
            .concurrency(concurrency)
            .build(move |order: Order| {
                let s = s.clone();
                async move {
                    s.hit(order.id);
                    Ok::<(), BoxDynError>(())
                }
            });
        let running = actix_rt::spawn(async move {
            if let Err(e) = worker.run().await {
                eprintln!("apalis worker stopped: {e}");
            }
        });
        let waited = stamps.wait(cap).await;
        let secs = t.elapsed().as_secs_f64();
        running.abort();
        let _ = running.await;
        waited.map_err(|e| e.to_string())?;
        Ok(n as f64 / secs)
    }

    /// Orders pushed to run in an hour, kept by the storage.
    pub async fn pending(n: u64) -> Result<Box<dyn std::any::Any>, Fail> {
        let mut storage = memory();
        for i in 0..n {
            storage
                .push_task(
                    TaskBuilder::new(Order::new(i))
                        .run_after(Duration::from_secs(3600))
                        .build(),
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(Box::new(storage))
    }

    pub async fn single_create(n: u64) -> Result<f64, Fail> {
        let mut storage = memory();
        let t = Instant::now();
        for i in 0..n {
            storage
                .push(Order::new(i))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }
}
