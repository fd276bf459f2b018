//! The floor for an in-process queue: a tokio mpsc channel feeding one
//! spawned task per job, at most `concurrency` at once. Delays are one
//! spawned task per job sleeping until its time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

use super::Fail;
use crate::measure::{instant_of, now_ns, Pacer, Stamps};

/// Receives job indices and runs each in its own task.
fn consumer(mut rx: mpsc::UnboundedReceiver<u64>, concurrency: usize, stamps: Arc<Stamps>) {
    let permits = Arc::new(Semaphore::new(concurrency));
    tokio::spawn(async move {
        while let Some(i) = rx.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let s = stamps.clone();
            tokio::spawn(async move {
                s.hit(i);
                drop(permit);
            });
        }
    });
}

pub async fn burn_down(n: u64, concurrency: usize, cap: Duration) -> Result<f64, Fail> {
    let stamps = Stamps::counter(n);
    let (tx, rx) = mpsc::unbounded_channel();
    for i in 0..n {
        tx.send(i).map_err(|e| e.to_string())?;
    }
    let t = Instant::now();
    consumer(rx, concurrency, stamps.clone());
    stamps.wait(cap).await.map_err(|e| e.to_string())?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

pub async fn bulk_create(n: u64) -> Result<f64, Fail> {
    let (tx, rx) = mpsc::unbounded_channel();
    let t = Instant::now();
    for i in 0..n {
        tx.send(i).map_err(|e| e.to_string())?;
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    drop(rx);
    Ok(rate)
}

pub async fn latency(
    rate: f64,
    n: u64,
    concurrency: usize,
    cap: Duration,
) -> Result<(Vec<u64>, Arc<Stamps>), Fail> {
    let stamps = Stamps::timed(n);
    let (tx, rx) = mpsc::unbounded_channel();
    consumer(rx, concurrency, stamps.clone());
    tokio::task::yield_now().await;
    let mut created = vec![0u64; n as usize];
    let mut pacer = Pacer::new(rate, n);
    while !pacer.finished() {
        if let Some(i) = pacer.next_due() {
            created[i as usize] = now_ns();
            tx.send(i).map_err(|e| e.to_string())?;
        }
        pacer.pause().await;
    }
    created.truncate(pacer.sent() as usize);
    stamps.expect(pacer.sent());
    // An incomplete wait is reported by the caller as jobs that never started.
    let _ = stamps.wait(cap).await;
    Ok((created, stamps))
}

pub async fn delay(targets: &[u64], cap: Duration) -> Result<Arc<Stamps>, Fail> {
    let stamps = Stamps::timed(targets.len() as u64);
    for (i, &t) in targets.iter().enumerate() {
        let s = stamps.clone();
        let at = instant_of(t);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            s.hit(i as u64);
        });
    }
    stamps.mark_created();
    let _ = stamps.wait(cap).await;
    Ok(stamps)
}

/// `n` tasks sleeping for an hour.
pub async fn pending(n: u64) -> Result<Box<dyn std::any::Any>, Fail> {
    let at = Instant::now() + Duration::from_secs(3600);
    for _ in 0..n {
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
        });
    }
    // Let every task run once and register its timer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Box::new(()))
}
