//! kessel in one file: two tags, a few tasks, jobs with a delay, priorities
//! and an expiration, one that fails transiently then succeeds, one that
//! fails fatally. Prints what happens as it happens and exits once every
//! job is final.
//!
//! Run with `cargo run --example quickstart`.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use kessel::{JobContext, JobError, Queue, RetryPolicy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Email {
    to: String,
    subject: String,
}

#[actix_rt::main]
async fn main() -> Result<(), kessel::Error> {
    let queue = Queue::new();
    let started = queue.now();
    let elapsed = {
        let queue = queue.clone();
        move || format!("{:>6} ms", (queue.now() - started).num_milliseconds())
    };

    let clock = elapsed.clone();
    queue
        .define("send email")
        .tag("notifications")
        .desc("sends one transactional email")
        .timeout("5s")
        .action(move |job: JobContext<Email>| {
            let clock = clock.clone();
            async move {
                println!(
                    "{} notifications: emailing {} ({:?})",
                    clock(),
                    job.payload.to,
                    job.payload.subject
                );
                Ok::<_, JobError>(format!("queued for {}", job.payload.to))
            }
        })?;

    let clock = elapsed.clone();
    queue
        .define("flaky webhook")
        .tag("notifications")
        .retry(
            RetryPolicy::exponential(3)
                .base_delay(Duration::from_millis(200))
                .jitter(0.0),
        )
        .action(move |job: JobContext<String>| {
            let clock = clock.clone();
            async move {
                if job.attempt() == 1 {
                    println!(
                        "{} notifications: webhook {} timed out, will retry",
                        clock(),
                        job.payload
                    );
                    return Err(JobError::transient("connection reset"));
                }
                println!(
                    "{} notifications: webhook {} delivered on attempt {}",
                    clock(),
                    job.payload,
                    job.attempt()
                );
                Ok(())
            }
        })?;

    let clock = elapsed.clone();
    queue
        .define("aggregate")
        .tag("reports")
        .action(move |job: JobContext<Vec<u64>>| {
            let clock = clock.clone();
            async move {
                if job.payload.is_empty() {
                    println!("{} reports: nothing to aggregate, giving up", clock());
                    return Err(JobError::fatal("no data points"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                let sum: u64 = job.payload.iter().sum();
                println!("{} reports: sum is {sum}", clock());
                Ok(sum)
            }
        })?;

    // One worker serves notifications first, then reports.
    queue
        .process(["notifications", "reports"])
        .concurrency(2)
        .start()?;

    let mut jobs = Vec::new();
    jobs.push((
        "report, low priority",
        queue
            .create("aggregate", vec![1, 2, 3])
            .priority(10)
            .await?,
    ));
    jobs.push((
        "welcome email, delayed 300ms",
        queue
            .create(
                "send email",
                Email {
                    to: "ford@example.com".into(),
                    subject: "Welcome".into(),
                },
            )
            .delay("300ms")
            .await?,
    ));
    jobs.push((
        "receipt email, high priority",
        queue
            .create(
                "send email",
                Email {
                    to: "arthur@example.com".into(),
                    subject: "Receipt".into(),
                },
            )
            .priority(0)
            .await?,
    ));
    jobs.push((
        "webhook, fails once",
        queue.create("flaky webhook", "order-42").await?,
    ));
    jobs.push((
        "empty report, fatal",
        queue.create("aggregate", Vec::<u64>::new()).await?,
    ));
    jobs.push((
        "digest for a task no worker serves, expires",
        queue
            .create("weekly digest", ())
            .expires_in("500ms")
            .await?,
    ));

    let mut results: FuturesUnordered<_> = jobs
        .iter()
        .map(|(label, handle)| async move { (label, handle.result().await) })
        .collect();
    while let Some((label, result)) = results.next().await {
        let result = result?;
        println!(
            "{} done: {label}: {}{}",
            elapsed(),
            result.status,
            result
                .message
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
    }
    let report = queue.shutdown(Duration::from_secs(1)).await?;
    println!("{} shut down: {report:?}", elapsed());
    Ok(())
}
