//! The examples a newcomer runs first, run as they would run them: a
//! child process each, its output read. `cargo test` builds them beside
//! the tests; a run of this file alone builds them here.
#![cfg(feature = "cron")]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

/// How long an example may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(120);

/// Runs the example `name` to its end; its standard output.
fn run(name: &str) -> String {
    let child = Command::new(common::example_binary(name, "cron"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let watchdog = common::Watchdog::arm(&child, PATIENCE);
    // Reads its output to the end, so a full pipe never holds it up.
    let out = child.wait_with_output().expect("its output");
    assert!(
        !watchdog.disarm(),
        "the {name} example did not end within {PATIENCE:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the {name} example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_quickstart_example_runs_every_job_to_its_end_and_shuts_down() {
    let out = run("quickstart");
    let done = out.lines().filter(|l| l.contains(" done: ")).count();
    assert_eq!(done, 6, "each of its six jobs reports its end:\n{out}");
    assert!(
        out.lines().last().is_some_and(|l| l.contains("shut down")),
        "it ends with the shutdown:\n{out}"
    );
}

#[test]
fn the_recurring_example_prints_a_report_a_second_for_three_ticks() {
    let out = run("recurring");
    assert!(
        out.contains("schedule cpu-report") && out.contains("schedule nightly-report"),
        "both schedules listed:\n{out}"
    );
    // "cpu report until HH:MM:SS: N samples, ..."
    let ticks: Vec<chrono::NaiveTime> = out
        .lines()
        .filter_map(|l| l.strip_prefix("cpu report until "))
        .map(|rest| {
            chrono::NaiveTime::parse_from_str(&rest[..8], "%H:%M:%S")
                .unwrap_or_else(|e| panic!("a tick's time in {rest:?}: {e}"))
        })
        .collect();
    assert_eq!(ticks.len(), 3, "three reports:\n{out}");
    for pair in ticks.windows(2) {
        // One second apart; more only if the machine stalled past a tick
        // (a missed tick is skipped, by the example's policy), so only
        // their order is certain.
        let gap = (pair[1] - pair[0]).num_seconds().rem_euclid(24 * 3600);
        assert!(
            (1..12 * 3600).contains(&gap),
            "a report per one-second tick, in order:\n{out}"
        );
    }
    assert!(
        out.contains("cpu-report's last job: Some("),
        "the schedule shows its last job:\n{out}"
    );
}
