//! A real process, a real kill: `examples/sqlite_worker.rs` produces and
//! runs jobs on a SQLite file, is killed with SIGKILL mid-run, and is
//! started again on the same file. Every job it acknowledged must be
//! there, every job must end completed exactly once in the store, and the
//! only jobs that run twice must be ones that were running when it died.
//!
//! The test waits on the child by reading the events it echoes on stdout,
//! line by line, and by waiting for it to exit; a watchdog kills a child
//! that takes longer than `PATIENCE`, which fails the test.
#![cfg(all(feature = "sqlite", unix))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Watchdog;
use futures::executor::block_on;
use kessel::store::{JobQuery, SqliteStore, Store, StoreError};
use kessel::{Job, JobId, JobStatus};

/// Jobs the first life is asked to produce; it is killed long before
/// (producing them all takes 1.5 s; the kill comes after about 100).
const JOBS: usize = 600;
/// How long the child may take to reach each point before the test fails.
const PATIENCE: Duration = Duration::from_secs(120);

/// The worker example (see [`common::example_binary`]).
fn worker_binary() -> PathBuf {
    let features = if cfg!(feature = "test-utils") {
        "sqlite,test-utils"
    } else if cfg!(feature = "postgres") {
        "sqlite,postgres"
    } else {
        "sqlite"
    };
    common::example_binary("sqlite_worker", features)
}

/// What the events file says so far (see the example's docs).
#[derive(Debug, Default)]
struct Events {
    acked: Vec<JobId>,
    starts: Vec<(JobId, u32)>,
    ends: Vec<JobId>,
    /// The jobs whose dead letters ran.
    letters: Vec<JobId>,
}

fn read_events(path: &Path) -> Events {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut events = Events::default();
    // A line is whole once its newline is there.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    for line in complete.lines() {
        let mut words = line.split(' ');
        let (kind, id) = (
            words.next(),
            words.next().and_then(|w| w.parse::<JobId>().ok()),
        );
        match (kind, id) {
            (Some("ack"), Some(id)) => events.acked.push(id),
            (Some("start"), Some(id)) => {
                let attempt = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                events.starts.push((id, attempt));
            }
            (Some("end"), Some(id)) => events.ends.push(id),
            (Some("letter"), Some(id)) => events.letters.push(id),
            _ => panic!("an unreadable events line: {line:?}"),
        }
    }
    events
}

fn spawn_worker(binary: &Path, db: &Path, events: &Path, produce: usize, extra: &[&str]) -> Child {
    Command::new(binary)
        .arg(db)
        .arg(events)
        // Four producers create a job every 10 ms each (400/s), and jobs
        // take up to 20 ms on 4 slots (200/s at most): a backlog builds,
        // every slot is busy when the kill comes, and the producers are
        // far from done even if this test's thread is held up a while.
        .args([
            "--produce",
            &produce.to_string(),
            "--producers",
            "4",
            "--pace-ms",
            "10",
        ])
        .args(["--concurrency", "4", "--work-ms", "20"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the worker process")
}

/// Every job in the file, read by a store of this process.
fn jobs_in(db: &Path) -> BTreeMap<JobId, Job> {
    block_on(async {
        let store = SqliteStore::open(db)
            .await
            .expect("open the file after the worker stopped");
        let jobs = store
            .jobs_query(&JobQuery::default().limit(usize::MAX))
            .await
            .expect("read every job");
        store.close().await.expect("close");
        jobs.into_iter().map(|j| (j.id, j)).collect()
    })
}

/// Starts a worker producing [`JOBS`] jobs and kills it with SIGKILL once
/// it acknowledged 100 and finished 20, checking on the way that no
/// second process can open the file it holds.
fn kill_mid_run(binary: &Path, db: &Path, events: &Path, extra: &[&str]) {
    let mut child = spawn_worker(binary, db, events, JOBS, extra);
    let watchdog = Watchdog::arm(&child, PATIENCE);
    let (mut acks, mut ends) = (0, 0);
    // Kept open until the kill, so the worker never writes to a closed pipe.
    let mut reader = BufReader::new(child.stdout.take().expect("piped"));
    for line in reader.by_ref().lines() {
        let line = line.expect("read the worker's events");
        match line.split(' ').next() {
            Some("ack") => acks += 1,
            Some("end") => ends += 1,
            _ => {}
        }
        if acks >= 100 && ends >= 20 {
            break;
        }
    }
    assert!(
        !watchdog.disarm(),
        "the worker made too little progress in {PATIENCE:?}"
    );
    assert!(
        acks >= 100 && ends >= 20,
        "the worker exited before it could be killed mid-run ({acks} acks, {ends} ends)"
    );
    // A second process cannot open the file while the worker has it.
    match block_on(SqliteStore::open(db)) {
        Err(StoreError::Locked(_)) => {}
        other => panic!("a second process must be locked out, got {other:?}"),
    }
    child.kill().expect("SIGKILL the worker");
    let status = child.wait().expect("reap the worker");
    drop(reader);
    assert_eq!(
        status.signal(),
        Some(9),
        "the worker died of SIGKILL: {status}"
    );
}

/// Starts a worker that produces nothing and waits for it to run what is
/// pending and exit.
fn run_to_end(binary: &Path, db: &Path, events: &Path, extra: &[&str]) {
    let mut child = spawn_worker(binary, db, events, 0, extra);
    // Its events are read from the file at the end: drain the pipe so it never fills.
    let mut out = child.stdout.take().expect("piped");
    let drain = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let watchdog = Watchdog::arm(&child, PATIENCE);
    let status = child.wait().expect("wait for the restarted worker");
    let _ = drain.join();
    assert!(
        !watchdog.disarm(),
        "the restarted worker did not finish in {PATIENCE:?}"
    );
    assert!(status.success(), "the restarted worker failed: {status}");
}

#[test]
fn killed_mid_run_no_acknowledged_job_is_lost_and_only_running_ones_rerun() {
    let binary = worker_binary();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    let events_path = dir.path().join("events.log");

    // First life: producing and working, killed mid-run.
    kill_mid_run(&binary, &db, &events_path, &[]);

    let first = read_events(&events_path);
    assert!(first.acked.len() < JOBS, "killed while still producing");
    let at_kill = jobs_in(&db);
    for id in &first.acked {
        assert!(
            at_kill.contains_key(id),
            "job {id} was acknowledged but is not in the file"
        );
    }
    let in_flight: BTreeSet<JobId> = first
        .starts
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| at_kill.get(id).is_some_and(|j| !j.status.is_final()))
        .collect();

    // Second life: nothing new, just what is pending.
    run_to_end(&binary, &db, &events_path, &[]);

    let both = read_events(&events_path);
    let second_starts = &both.starts[first.starts.len()..];
    assert!(
        both.acked.len() == first.acked.len(),
        "the second life produced nothing"
    );
    let after = jobs_in(&db);
    let ids_at_kill: BTreeSet<&JobId> = at_kill.keys().collect();
    let ids_after: BTreeSet<&JobId> = after.keys().collect();
    assert_eq!(ids_after, ids_at_kill, "no job was lost or appeared");
    for (id, job) in &after {
        assert_eq!(
            job.status,
            JobStatus::Completed,
            "job {id} ended completed: {job:?}"
        );
        let was = &at_kill[id];
        if was.status == JobStatus::Running {
            assert_eq!(
                job.attempts,
                was.attempts + 1,
                "job {id}: the interrupted attempt counts"
            );
        }
    }
    let mut runs: BTreeMap<JobId, usize> = BTreeMap::new();
    for (id, _) in both.starts.iter() {
        *runs.entry(*id).or_default() += 1;
    }
    for id in after.keys() {
        assert!(runs.contains_key(id), "job {id} is completed but never ran");
    }
    let rerun: BTreeSet<JobId> = second_starts
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| first.starts.iter().any(|(f, _)| f == id))
        .collect();
    assert!(
        rerun.is_subset(&in_flight),
        "only jobs running when the worker died may run again; rerun {rerun:?}, in flight {in_flight:?}"
    );
    for (id, n) in &runs {
        assert!(*n <= 2, "job {id} ran {n} times across one crash");
    }
    for (id, job) in &at_kill {
        if job.status.is_final() {
            assert!(
                !second_starts.iter().any(|(s, _)| s == id),
                "job {id} was final at the kill and ran again"
            );
        }
    }
    eprintln!(
        "killed after {} acks and {} ends; {} jobs in flight, {} rerun, {} jobs in all",
        first.acked.len(),
        first.ends.len(),
        in_flight.len(),
        rerun.len(),
        after.len()
    );
}

/// Buried jobs of "step" and the jobs whose dead letters are in the file,
/// by buried job: how many letters each has.
fn buried_and_letters(jobs: &BTreeMap<JobId, Job>) -> (BTreeSet<JobId>, BTreeMap<JobId, usize>) {
    let buried = jobs
        .values()
        .filter(|j| &*j.task == "step" && j.status == JobStatus::Buried)
        .map(|j| j.id)
        .collect();
    let mut letters: BTreeMap<JobId, usize> = BTreeMap::new();
    for letter in jobs.values().filter(|j| &*j.task == "letters") {
        let of = letter
            .payload
            .to_value()
            .ok()
            .and_then(|p| p.get("job_id")?.as_str()?.parse::<JobId>().ok())
            .unwrap_or_else(|| panic!("letter {} names no job: {letter:?}", letter.id));
        assert_eq!(
            letter.reference,
            Some(kessel::DeadLetter::reference_for(of)),
            "letter {} is referenced by the job it follows",
            letter.id
        );
        *letters.entry(of).or_default() += 1;
    }
    (buried, letters)
}

#[test]
fn killed_mid_run_a_buried_job_and_its_dead_letter_are_kept_together() {
    let binary = worker_binary();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    let events_path = dir.path().join("events.log");
    // Every third job is buried, with a dead letter.
    let bury = ["--bury-every", "3"];

    kill_mid_run(&binary, &db, &events_path, &bury);
    let at_kill = jobs_in(&db);
    let (buried, letters) = buried_and_letters(&at_kill);
    assert!(!buried.is_empty(), "jobs were buried before the kill");
    let buried_at_kill = buried.len();
    let lettered: BTreeSet<JobId> = letters.keys().copied().collect();
    assert_eq!(
        lettered, buried,
        "at the kill, every buried job has its letter in the file and every letter its buried job"
    );
    assert!(
        letters.values().all(|n| *n == 1),
        "one letter per buried job: {letters:?}"
    );

    run_to_end(&binary, &db, &events_path, &bury);
    let after = jobs_in(&db);
    let (buried, letters) = buried_and_letters(&after);
    let lettered: BTreeSet<JobId> = letters.keys().copied().collect();
    assert_eq!(lettered, buried, "after the restart too");
    assert!(
        letters.values().all(|n| *n == 1),
        "no buried job got a second letter: {letters:?}"
    );
    for job in after.values() {
        let want = match &*job.task {
            "step" => {
                let n: u64 = job
                    .payload
                    .to_value()
                    .ok()
                    .and_then(|v| v.as_u64())
                    .unwrap_or(1);
                if n % 3 == 0 {
                    JobStatus::Buried
                } else {
                    JobStatus::Completed
                }
            }
            _ => JobStatus::Completed,
        };
        assert_eq!(
            job.status, want,
            "job {} of {} ended as it should",
            job.id, job.task
        );
    }
    let ran = read_events(&events_path).letters;
    for id in &buried {
        assert!(ran.contains(id), "the letter of job {id} ran");
    }
    eprintln!(
        "{} buried at the kill, each with its letter; {} buried in all",
        buried_at_kill,
        buried.len()
    );
}
