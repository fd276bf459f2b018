//! An actix actor subscribed to one task's events, printing the progress
//! and log lines of a long job as they happen.
//!
//! Run with `cargo run --example events`.

use std::time::Duration;

use actix::prelude::*;
use kessel::event::{Event, Filter, JobEventKind};
use kessel::{JobContext, JobError, Queue};

/// The actor in "your service" that watches imports.
struct ImportWatcher;

impl Actor for ImportWatcher {
    type Context = Context<Self>;
}

impl Handler<Event> for ImportWatcher {
    type Result = ();

    fn handle(&mut self, event: Event, _: &mut Self::Context) {
        match event {
            Event::Job(e) => match &e.kind {
                JobEventKind::Progress(p) => {
                    let width = 30;
                    let done = (p.current * width / p.total.max(1)) as usize;
                    println!(
                        "[{}{}] {}/{}",
                        "#".repeat(done),
                        " ".repeat(width as usize - done),
                        p.current,
                        p.total
                    );
                }
                JobEventKind::Log(line) => match &line.data {
                    Some(data) => println!("log: {} {data}", line.message),
                    None => println!("log: {}", line.message),
                },
                kind => println!("{} (attempt {})", kind.name(), e.attempt),
            },
            Event::Lagged { missed } => println!("(missed {missed} events)"),
            Event::Queue(q) => println!("queue: {q:?}"),
            Event::Remote { node, event } => println!("queue, at {node}: {event:?}"),
        }
    }
}

#[actix_rt::main]
async fn main() -> Result<(), kessel::Error> {
    let queue = Queue::new();
    let watcher = ImportWatcher.start();
    let _subscription = queue.subscribe(Filter::Task("import".into()), watcher.recipient());

    queue
        .define("import")
        .tag("data")
        .action(|job: JobContext<u64>| async move {
            let rows = job.payload;
            job.log("starting import", serde_json::json!({ "rows": rows }));
            for n in 1..=rows {
                tokio::time::sleep(Duration::from_millis(40)).await;
                job.progress(n, rows);
                if n == rows / 2 {
                    job.log("halfway there", ());
                }
            }
            Ok::<_, JobError>(rows)
        })?;
    queue.process(["data"]).start()?;

    let result = queue.create("import", 20u64).await?.result().await?;
    // Let the watcher print the final event before the system stops.
    tokio::time::sleep(Duration::from_millis(20)).await;
    println!("result: {:?}", result.value);
    Ok(())
}
