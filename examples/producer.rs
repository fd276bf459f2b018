//! A kessel producer process on PostgreSQL: creates jobs and exits. It
//! needs no task code; workers (`examples/worker.rs`) in other processes
//! run the jobs.
//!
//! ```sh
//! cargo run --features postgres --example producer -- postgres://postgres@127.0.0.1/test --count 10000
//! ```
//!
//! Options (after the URL): `--schema NAME` (default `kessel`), `--count N`
//! (default 1000), `--task NAME` (default `work`), `--batch N` (jobs per
//! insert, default 1000), `--unique KEY` (every job unique by `KEY`,
//! created one per call; prints how many were new and how many were
//! duplicates).

use std::sync::Arc;

use kessel::store::{PgOptions, PgStore};
use kessel::{NewJob, Queue};

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut it = std::env::args().skip(1);
    let url = it.next().ok_or(
        "usage: producer URL [--schema S] [--count N] [--task T] [--batch N] [--unique KEY]",
    )?;
    let (mut schema, mut count, mut task, mut batch) =
        ("kessel".to_owned(), 1000u64, "work".to_owned(), 1000u64);
    let mut unique: Option<String> = None;
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--schema" => schema = value,
            "--count" => count = value.parse()?,
            "--task" => task = value,
            "--batch" => batch = value.parse::<u64>()?.max(1),
            "--unique" => unique = Some(value),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let store = PgStore::connect_with(PgOptions::new(&url).schema(&schema)).await?;
    let queue = Queue::builder().store(Arc::new(store)).build().await?;
    if let Some(key) = unique {
        let (mut new, mut duplicates) = (0u64, 0u64);
        for i in 0..count {
            let handle = queue
                .create_job(NewJob::new(&task, i).unique(key.as_str()))
                .await?;
            if handle.is_duplicate() {
                duplicates += 1;
            } else {
                new += 1;
            }
        }
        println!("new {new} duplicates {duplicates}");
        return Ok(());
    }
    let mut created = 0;
    while created < count {
        let n = batch.min(count - created);
        let jobs = (created..created + n).map(|i| NewJob::new(&task, i));
        queue.create_many(jobs).await?;
        created += n;
    }
    println!("created {created} jobs of `{task}`");
    Ok(())
}
