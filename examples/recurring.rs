//! Recurring jobs: as new metric data becomes available, periodically
//! create derived data reports.
//!
//! A sensor writes a sample every 100 ms. A schedule creates a "metric
//! report" job every second; each job summarises the samples of the
//! second that ended at its tick (count, mean, max), which the handler
//! reads as `job.run_at()`. A nightly report in Berlin time is defined
//! beside it, to show a cron schedule in a time zone. The example prints
//! three reports and exits.
//!
//! Run with `cargo run --example recurring --features cron`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kessel::schedule::{Missed, Schedule};
use kessel::{JobContext, JobError, Queue};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The samples written so far: (when, value).
type Samples = Arc<Mutex<Vec<(DateTime<Utc>, f64)>>>;

/// What a report job is asked for.
#[derive(Debug, Serialize, Deserialize)]
struct ReportRequest {
    metric: String,
    /// The window each report covers, ending at its tick.
    window_ms: i64,
}

/// A derived report.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    metric: String,
    until: DateTime<Utc>,
    samples: usize,
    mean: f64,
    max: f64,
}

#[actix_rt::main]
async fn main() -> Result<(), kessel::Error> {
    let samples: Samples = Arc::default();
    let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel();

    // Schedules are defined in code and upserted when the queue is built:
    // on every start, unchanged ones keep their next run and last job.
    let queue = Queue::builder()
        .schedule(
            Schedule::every("cpu-report", "metric report", "1s")
                .payload(ReportRequest {
                    metric: "cpu".into(),
                    window_ms: 1000,
                })
                // A report for a second nobody was up for is worth nothing.
                .missed(Missed::Skip),
        )
        .schedule(
            Schedule::cron("nightly-report", "metric report", "0 3 * * *")
                .time_zone("Europe/Berlin")
                .payload(ReportRequest {
                    metric: "cpu".into(),
                    window_ms: 24 * 3600 * 1000,
                }),
        )
        .build()
        .await?;

    let data = samples.clone();
    queue.define("metric report").tag("reports").action(
        move |job: JobContext<ReportRequest>| {
            let (data, tx) = (data.clone(), reports_tx.clone());
            async move {
                // The tick this job stands for ends its window.
                let until = job.run_at();
                let from = until - chrono::Duration::milliseconds(job.payload.window_ms);
                let window: Vec<f64> = data
                    .lock()
                    .iter()
                    .filter(|(at, _)| *at > from && *at <= until)
                    .map(|(_, v)| *v)
                    .collect();
                let report = Report {
                    metric: job.payload.metric.clone(),
                    until,
                    samples: window.len(),
                    mean: window.iter().sum::<f64>() / window.len().max(1) as f64,
                    max: window.iter().copied().fold(0.0, f64::max),
                };
                let _ = tx.send(format!(
                    "{} report until {}: {} samples, mean {:.1}, max {:.1}",
                    report.metric,
                    report.until.format("%H:%M:%S"),
                    report.samples,
                    report.mean,
                    report.max
                ));
                Ok::<_, JobError>(report)
            }
        },
    )?;
    queue.process(["reports"]).start()?;

    // The sensor: a new sample every 100 ms.
    let sensor = {
        let (samples, queue) = (samples.clone(), queue.clone());
        actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for n in 0u32.. {
                tick.tick().await;
                let value = 40.0 + f64::from(n % 7) * 5.0;
                samples.lock().push((queue.now(), value));
            }
        })
    };

    for schedule in queue.schedules().list().await? {
        println!(
            "schedule {:<15} {} -> next run {}",
            schedule.name,
            schedule.when,
            schedule.next_run.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    for _ in 0..3 {
        match reports.recv().await {
            Some(line) => println!("{line}"),
            None => break,
        }
    }
    let cpu = queue.schedules().get("cpu-report").await?;
    println!("cpu-report's last job: {:?}", cpu.last_job);
    sensor.abort();
    queue.shutdown(Duration::from_secs(1)).await?;
    Ok(())
}
