//! Where handlers run: a handler that blocks its worker thread (a thread
//! sleep, a CPU spin, a loop that never yields) holds up neither the
//! scheduler's timers nor other workers; its timeout is recorded; the
//! blocked thread is reported while it is stuck; a worker's threads share
//! its jobs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kessel::event::{Event, Filter, JobEventKind, QueueEvent};
use kessel::{JobContext, JobError, JobStatus, Queue, RetryPolicy};

/// Ways a handler can hold its thread without yielding.
#[derive(Debug, Clone, Copy)]
enum Block {
    /// `std::thread::sleep`.
    Sleep,
    /// A CPU loop for a while.
    Spin,
    /// A loop that never yields, until the test lets it go.
    Forever,
}

fn block(how: Block, release: &AtomicBool) {
    match how {
        Block::Sleep => std::thread::sleep(Duration::from_millis(800)),
        Block::Spin => {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(800) {
                std::hint::spin_loop();
            }
        }
        Block::Forever => {
            while !release.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        }
    }
}

/// On the paused clock, with the blocking handler on a worker thread of
/// its own: every delayed job of another tag starts within 2 ms of its
/// time, and the blocked job's timeout is recorded and decided while its
/// thread is still blocked.
#[actix_rt::test(system = "crate::Paused")]
async fn a_blocking_handler_delays_neither_timers_nor_other_tags() {
    for how in [Block::Sleep, Block::Spin, Block::Forever] {
        let queue = Queue::new();
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        queue
            .define("block")
            .tag("slow")
            .timeout("500ms")
            .grace("100ms")
            .retry(RetryPolicy::none())
            .action(move |_job: JobContext<()>| {
                let r = r.clone();
                async move {
                    block(how, &r);
                    Ok::<_, JobError>(())
                }
            })
            .unwrap();
        queue
            .define("on time")
            .tag("fast")
            .action(|_job: JobContext<u32>| async { Ok::<_, JobError>(()) })
            .unwrap();
        let mut events = queue.events(Filter::Task("on time".into()));
        queue.process(["slow"]).threads(1).start().unwrap();
        // Room for every delayed job at once: on the paused clock, virtual
        // time runs ahead while the test waits on real threads, so a slot
        // freed in real time may come back late in virtual time. What is
        // pinned is that the scheduler starts each job on time.
        queue
            .process(["fast"])
            .concurrency(8)
            .threads(1)
            .start()
            .unwrap();

        let blocked = queue.create("block", ()).await.unwrap();
        let mut delayed = Vec::new();
        for ms in [100u64, 250, 700, 1_300] {
            let job = queue
                .create("on time", ms as u32)
                .delay(Duration::from_millis(ms))
                .await
                .unwrap();
            delayed.push(job);
        }
        let outcome = blocked.result().await.unwrap();
        assert_eq!(outcome.status, JobStatus::Buried, "{how:?}");
        assert!(
            outcome
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with("timed out after 500ms")),
            "{how:?}: {outcome:?}"
        );
        let mut started = 0;
        while started < delayed.len() {
            let Some(Event::Job(event)) = events.next().await else {
                continue;
            };
            if event.kind != JobEventKind::Started {
                continue;
            }
            let job = queue.job(event.id).await.unwrap();
            let late = event.at - job.run_at;
            assert!(
                late >= chrono::Duration::zero() && late <= chrono::Duration::milliseconds(2),
                "{how:?}: a job due at {} started {late} after it",
                job.run_at
            );
            started += 1;
        }
        for job in delayed {
            assert_eq!(job.result().await.unwrap().status, JobStatus::Completed);
        }
        release.store(true, Ordering::SeqCst);
        queue.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

/// On the real clock: a thread a handler blocks is reported stuck (an
/// event, and in `stats`) until the handler returns, and the job it runs is
/// named; a job of the same worker's other thread runs meanwhile.
#[actix_rt::test]
async fn a_blocked_worker_thread_is_reported_until_it_returns() {
    let queue = Queue::new();
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    queue
        .define("block")
        .action(move |_job: JobContext<()>| {
            let r = r.clone();
            async move {
                block(Block::Forever, &r);
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    queue
        .define("quick")
        .action(|_job: JobContext<()>| async { Ok::<_, JobError>("done") })
        .unwrap();
    let mut events = queue.events(Filter::All);
    queue
        .process(["default"])
        .concurrency(2)
        .threads(2)
        .start()
        .unwrap();
    let blocked = queue.create("block", ()).await.unwrap();
    // The other thread serves the next job while the first is blocked.
    let quick = queue.create("quick", ()).await.unwrap();
    assert_eq!(quick.result().await.unwrap().status, JobStatus::Completed);

    let stuck = loop {
        match events.next().await {
            // The blocked thread's report: on a starved machine the idle
            // thread may be late to answer a ping too, and be reported.
            Some(Event::Queue(QueueEvent::ThreadStuck {
                tags,
                thread,
                running,
            })) if running.contains(&blocked.id()) => break (tags, thread, running),
            Some(_) => continue,
            None => panic!("the event stream ended"),
        }
    };
    assert_eq!(stuck.0, vec!["default".to_owned()]);
    assert_eq!(stuck.2, vec![blocked.id()]);
    let stats = queue.stats().await.unwrap();
    let reported: Vec<_> = stats
        .stuck_threads
        .iter()
        .filter(|s| s.thread == stuck.1)
        .collect();
    assert_eq!(reported.len(), 1, "{stats:?}");
    assert_eq!(reported[0].running, vec![blocked.id()]);

    release.store(true, Ordering::SeqCst);
    loop {
        match events.next().await {
            Some(Event::Queue(QueueEvent::ThreadResponsive { thread, .. }))
                if thread == stuck.1 =>
            {
                break;
            }
            Some(_) => continue,
            None => panic!("the event stream ended"),
        }
    }
    let stats = queue.stats().await.unwrap();
    assert!(
        stats.stuck_threads.iter().all(|s| s.thread != stuck.1),
        "{stats:?}"
    );
    assert_eq!(blocked.result().await.unwrap().status, JobStatus::Completed);
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A worker with two threads runs two jobs at once on two different
/// threads, neither of them the test's.
#[actix_rt::test]
async fn a_worker_spreads_its_jobs_over_its_threads() {
    let queue = Queue::new();
    let meet = Arc::new((
        parking_lot::Mutex::new(Vec::new()),
        parking_lot::Condvar::new(),
    ));
    let m = meet.clone();
    queue
        .define("meet")
        .action(move |_job: JobContext<()>| {
            let m = m.clone();
            async move {
                // Blocks its thread until the other job is running too: on
                // one thread the two could never meet.
                let (seen, arrived) = &*m;
                let mut seen = seen.lock();
                seen.push(std::thread::current().id());
                arrived.notify_all();
                let deadline = Instant::now() + Duration::from_secs(20);
                while seen.len() < 2 {
                    if arrived.wait_until(&mut seen, deadline).timed_out() {
                        return Err(JobError::fatal("the other job never ran alongside"));
                    }
                }
                Ok(())
            }
        })
        .unwrap();
    let worker = queue
        .process(["default"])
        .concurrency(2)
        .threads(2)
        .start()
        .unwrap();
    assert_eq!(worker.threads(), Some(2));
    let a = queue.create("meet", ()).await.unwrap();
    let b = queue.create("meet", ()).await.unwrap();
    for job in [a, b] {
        let result = job.result().await.unwrap();
        assert_eq!(result.status, JobStatus::Completed, "{result:?}");
    }
    let seen = meet.0.lock().clone();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0], seen[1], "two threads");
    assert!(!seen.contains(&std::thread::current().id()));
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
}
