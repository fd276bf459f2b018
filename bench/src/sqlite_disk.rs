//! The `sqlite-disk` workload: N jobs pushed through kessel's SQLite store
//! at full speed, with the default retention (100,000 completed jobs kept),
//! and what that leaves on disk.
//!
//! A producer creates jobs in batches while one worker runs them, so a
//! backlog builds and drains. Reported: jobs/s; the longest pause between
//! two consecutive completions (a prune that stalls the store shows here);
//! the file and WAL sizes sampled during the run (peak) and once the queue
//! is idle (end); and the end size over what the retained jobs need,
//! measured as the size of a `VACUUM INTO` copy of the file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kessel::store::{SqliteOptions, Store};
use kessel::{JobContext, JobError, JobStatus, NewJob, Queue};
use serde::{Deserialize, Serialize};

use crate::measure::Stamps;
use crate::systems::kessel::{Handlers, TAG};

/// A payload shaped like a user's struct (about 300 bytes of JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Email {
    pub index: u64,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub tags: Vec<String>,
}

pub fn email(index: u64) -> Email {
    Email {
        index,
        to: format!("customer{index}@example.com"),
        subject: format!("Your order #{index} has shipped"),
        body: "Hello! Your parcel is on its way and should arrive within three working \
               days. You can follow it from your account page at any time."
            .into(),
        tags: vec!["transactional".into(), "shipping".into()],
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Disk {
    pub jobs_per_sec: f64,
    /// Longest gap between two consecutive completions, ms.
    pub max_pause_ms: f64,
    /// Longest time jobs were stored and waiting while none started, ms:
    /// a gap counts from when a created job was waiting (at its start, or
    /// when the producer's next batch was acknowledged), so a worker that
    /// has run every job created so far is not stalled, only idle.
    pub max_stall_ms: f64,
    /// The longest group of writes the store committed (with the
    /// checkpoint a commit may run), ms: what a command waited behind.
    pub longest_commit_ms: f64,
    /// The longest reclaiming step, ms.
    pub longest_reclaim_ms: f64,
    pub peak_file: u64,
    pub peak_wal: u64,
    pub end_file: u64,
    pub end_wal: u64,
    /// The size of a compact copy of the file at the end (what the
    /// retained jobs need).
    pub need: u64,
    pub completed_kept: u64,
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn wal_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Runs `n` jobs through a fresh SQLite file with the default retention.
pub async fn run(n: u64, concurrency: usize, cap: Duration) -> Result<Disk, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("jobs.db");
    let store = Arc::new(
        SqliteOptions::new(&path)
            .open()
            .await
            .map_err(|e| e.to_string())?,
    );
    let queue = Queue::builder()
        .store(store.clone())
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let stamps = Stamps::timed(n);
    let s = stamps.clone();
    queue
        .define("send email")
        .tag(TAG)
        .action(move |job: JobContext<Email>| {
            s.hit(job.payload.index);
            std::future::ready(Ok::<(), JobError>(()))
        })
        .map_err(|e| e.to_string())?;

    // Samples the file and WAL sizes every 50 ms from a thread of its own.
    let done = Arc::new(AtomicBool::new(false));
    let (peak_file, peak_wal) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let sampler = {
        let (done, peak_file, peak_wal, path) = (
            done.clone(),
            peak_file.clone(),
            peak_wal.clone(),
            path.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak_file.fetch_max(size(&path), Ordering::Relaxed);
                peak_wal.fetch_max(size(&wal_of(&path)), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let t = Instant::now();
    Handlers::Threads(1).start(&queue, concurrency)?;
    // Created in batches as `create_all` does, noting when each batch
    // was acknowledged (stored and handed to the scheduler).
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut i = 0;
    while i < n {
        let end = (i + crate::systems::CREATE_BATCH).min(n);
        queue
            .create_many((i..end).map(|i| NewJob::new("send email", email(i))))
            .await
            .map_err(|e| e.to_string())?;
        acked.push((end, crate::measure::now_ns()));
        i = end;
    }
    stamps.mark_created();
    let waited = stamps.wait(cap).await;
    let secs = t.elapsed().as_secs_f64();

    // Until retention has caught up and the file stops shrinking: reads
    // go through the store's one connection, and reclaiming runs between
    // them.
    let keep = kessel::Retention::default()
        .completed_max_count
        .unwrap_or(usize::MAX) as u64;
    let settle = Instant::now();
    let (mut last, mut still) = (u64::MAX, 0);
    let mut kept = 0;
    while settle.elapsed() < Duration::from_secs(60) && still < 20 {
        kept = store
            .jobs_count_status(JobStatus::Completed)
            .await
            .map_err(|e| e.to_string())?;
        let now = size(&path);
        still = if kept <= keep + 4096 && now == last {
            still + 1
        } else {
            0
        };
        last = now;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (end_file, end_wal) = (size(&path), size(&wal_of(&path)));
    let store_stats = store.stats();
    let _ = queue.shutdown(Duration::from_secs(5)).await;
    store.close().await.map_err(|e| e.to_string())?;
    waited.map_err(|e| e.to_string())?;

    let mut times: Vec<u64> = (0..n as usize)
        .filter_map(|i| stamps.started_at(i))
        .collect();
    times.sort_unstable();
    let max_pause = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let max_stall = longest_stall(&times, &acked);
    let need = compact_size(&path, dir.path()).await?;
    Ok(Disk {
        jobs_per_sec: n as f64 / secs,
        max_pause_ms: max_pause as f64 / 1e6,
        max_stall_ms: max_stall as f64 / 1e6,
        longest_commit_ms: store_stats.longest_commit.as_secs_f64() * 1e3,
        longest_reclaim_ms: store_stats.longest_reclaim_step.as_secs_f64() * 1e3,
        peak_file: peak_file.load(Ordering::Relaxed).max(end_file),
        peak_wal: peak_wal.load(Ordering::Relaxed).max(end_wal),
        end_file,
        end_wal,
        need,
        completed_kept: kept,
    })
}

/// The longest stretch, in ns, during which created jobs waited and none
/// started. `starts` are the jobs' start times, sorted; `acked` the
/// producer's batches as (jobs created so far, when acknowledged), in
/// order. In the gap after the k-th start (k jobs started), jobs wait from
/// the first moment more than k were acknowledged.
fn longest_stall(starts: &[u64], acked: &[(u64, u64)]) -> u64 {
    let mut longest = 0;
    for (k, gap) in starts.windows(2).enumerate() {
        let started = k as u64 + 1;
        // The first batch that took the created count past `started`.
        let Some(&(_, at)) = acked.iter().find(|(created, _)| *created > started) else {
            continue;
        };
        let from = at.max(gap[0]);
        if from < gap[1] {
            longest = longest.max(gap[1] - from);
        }
    }
    longest
}

/// The size of a `VACUUM INTO` copy of the (closed) store file.
async fn compact_size(path: &Path, dir: &Path) -> Result<u64, String> {
    use sqlx::{ConnectOptions, Connection};
    let copy = dir.join("compact.db");
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query("VACUUM INTO ?1")
        .bind(copy.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    conn.close().await.map_err(|e| e.to_string())?;
    Ok(size(&copy))
}

/// The stored schema's view, for a note: what the retained jobs cost each.
pub fn per_job(need: u64, kept: u64) -> f64 {
    if kept == 0 {
        0.0
    } else {
        need as f64 / kept as f64
    }
}

#[cfg(test)]
mod tests {
    use super::longest_stall;

    #[test]
    fn a_worker_that_ran_every_created_job_is_idle_not_stalled() {
        // 2 jobs acknowledged at 0, started at 10 and 20; the next 2
        // acknowledged at 500, started at 510 and 520.
        let starts = [10, 20, 510, 520];
        let acked = [(2, 0), (4, 500)];
        assert_eq!(longest_stall(&starts, &acked), 10);
    }

    #[test]
    fn waiting_jobs_make_a_gap_a_stall() {
        // 4 jobs acknowledged at 0; a 300 ns gap between the 2nd and 3rd start.
        let starts = [10, 20, 320, 330];
        let acked = [(4, 0)];
        assert_eq!(longest_stall(&starts, &acked), 300);
    }
}
