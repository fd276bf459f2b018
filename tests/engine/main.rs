//! The core engine, one test binary with a module per behaviour; every
//! timing test runs on a paused tokio clock or awaits events.

#[path = "../common/mod.rs"]
mod common;

mod context;
mod operations;
mod ordering;
mod outcomes;
mod shutdown;
mod timing;
mod validation;

use common::Trace;
use kessel::{JobContext, JobError, Queue};

type Ctx<T> = JobContext<T>;

fn recorder(queue: &Queue, task: &str, tag: &str, trace: &Trace<u32>) {
    let trace = trace.clone();
    queue
        .define(task)
        .tag(tag)
        .action(move |job: Ctx<u32>| {
            let trace = trace.clone();
            async move {
                trace.push(job.payload);
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
}
