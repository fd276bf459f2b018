//! The core engine, one test binary with a module per behaviour; every
//! timing test runs on a paused tokio clock or awaits events.

#[path = "../common/mod.rs"]
mod common;

mod context;
mod grace;
mod operations;
mod ordering;
mod outcomes;
mod shutdown;
mod threads;
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

/// The actix system the timing tests run on: its tokio clock is paused
/// from the moment the runtime is built, which is also the instant tokio's
/// timer counts its milliseconds from.
///
/// `tokio::time::pause()` called in the test instead stops the clock
/// wherever real time has got to since the runtime was built: an unknown
/// fraction of a millisecond off that grid. A paused clock keeps the
/// fraction as it advances to the next timer (whole milliseconds at a
/// time), so when a timer fires, to within a millisecond, would depend on
/// how fast the runtime started. Paused from the start, every test's
/// timeline is the same on every run.
pub(crate) struct Paused;

impl Paused {
    /// `#[actix_rt::test(system = ...)]` calls `new`, as on `actix_rt::System`.
    #[allow(clippy::new_ret_no_self)]
    pub(crate) fn new() -> actix_rt::SystemRunner {
        actix_rt::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("a tokio runtime")
        })
    }
}
