//! The `kessel` binary end to end: each test runs the real program
//! against a fresh SQLite file (and a fresh PostgreSQL schema when one is
//! reachable, see `common/pg.rs`) and checks what it prints, what it
//! changed in the store and its exit code.
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;
use kessel::store::{SqliteStore, Store as _};
use kessel::{JobContext, JobError, Queue};
use predicates::prelude::*;
use serde_json::Value;

/// A temporary SQLite store, made by `kessel migrate`.
struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("jobs.db");
        let db = Db { _dir: dir, path };
        db.kessel(&["migrate"]).assert().success();
        db
    }

    fn url(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    /// `kessel ARGS` on this store.
    fn kessel(&self, args: &[&str]) -> Command {
        kessel_on(&self.url(), args)
    }

    /// `kessel --json ARGS`, which must succeed; its output parsed.
    fn json(&self, args: &[&str]) -> Value {
        json_of(self.kessel(&[&["--json"], args].concat()))
    }
}

fn kessel_on(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kessel"));
    cmd.env("KESSEL_DATABASE_URL", url)
        .env_remove("KESSEL_SCHEMA")
        .env("RUST_BACKTRACE", "1")
        .args(args);
    cmd
}

fn json_of(mut cmd: Command) -> Value {
    let out = cmd.assert().success().get_output().clone();
    assert_clean_stderr(&out.stderr);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs `cmd`, expects exit `code`, and returns its stderr, which must be
/// exactly one line starting with `error: `.
fn fails(mut cmd: Command, code: i32) -> String {
    let out = cmd.assert().code(code).get_output().clone();
    assert_clean_stderr(&out.stderr);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line on stderr, got: {stderr:?}"
    );
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr.trim_end().to_owned()
}

fn assert_clean_stderr(stderr: &[u8]) {
    let text = String::from_utf8_lossy(stderr);
    for line in text.lines() {
        assert!(
            !line.contains("panicked") && !line.to_lowercase().contains("backtrace"),
            "a panic leaked: {text}"
        );
    }
}

fn created_id(db: &Db, args: &[&str]) -> String {
    let v = db.json(&[&["create"], args].concat());
    v["id"].as_str().expect("an id").to_owned()
}

/// Runs every ready job of `flaky` in this process, as a worker would:
/// payload "fail" is buried, anything else completes.
async fn work(path: &Path) {
    let store = Arc::new(SqliteStore::open(path).await.expect("open the store"));
    let queue = Queue::builder().store(store.clone()).build().await.unwrap();
    queue
        .define("flaky")
        .action(|job: JobContext<Value>| async move {
            if job.payload == "fail" {
                Err(JobError::fatal("told to fail"))
            } else {
                Ok(job.payload)
            }
        })
        .unwrap();
    queue.run_jobs(None, None).await.unwrap();
    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    store.close().await.unwrap();
}

fn status_of(db: &Db, id: &str) -> String {
    db.json(&["show", id])["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[actix_rt::test]
async fn jobs_go_through_create_list_show_cancel_kick_and_clean() {
    let db = Db::new();
    let kept = created_id(&db, &["flaky", r#"{"n":1}"#, "--reference", "keep"]);
    let doomed = created_id(&db, &["flaky", r#""fail""#]);
    let later = created_id(&db, &["flaky", "3", "--delay", "1h", "--priority", "4"]);

    let listed = db.json(&["list", "--task", "flaky", "--oldest"]);
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept.as_str(), doomed.as_str(), later.as_str()]);
    assert_eq!(listed[2]["status"], "scheduled");
    assert_eq!(listed[2]["priority"], 4);
    let by_ref = db.json(&["list", "--reference", "keep"]);
    assert_eq!(by_ref.as_array().unwrap().len(), 1);
    assert_eq!(by_ref[0]["payload"], serde_json::json!({"n": 1}));

    let shown = db
        .kessel(&["show", &kept])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let shown = String::from_utf8(shown).unwrap();
    assert!(shown.contains("reference   keep"), "{shown}");
    assert!(shown.contains("\"n\": 1"), "{shown}");
    assert!(shown.contains("#0  created"), "{shown}");

    db.kessel(&["cancel", &later])
        .assert()
        .success()
        .stdout(format!("cancelled {later}\n"));
    assert_eq!(status_of(&db, &later), "cancelled");
    let err = fails(db.kessel(&["cancel", &later]), 1);
    assert_eq!(
        err,
        format!("error: job {later} is cancelled, cannot cancel")
    );

    work(&db.path).await;
    assert_eq!(status_of(&db, &kept), "completed");
    assert_eq!(status_of(&db, &doomed), "buried");
    let shown = db.json(&["show", &kept]);
    assert_eq!(shown["result"], serde_json::json!({"n": 1}));

    db.kessel(&["retry", &doomed])
        .assert()
        .success()
        .stdout(format!("kicked {doomed}\n"));
    assert_eq!(status_of(&db, &doomed), "ready");
    work(&db.path).await;
    assert_eq!(status_of(&db, &doomed), "buried");
    let kicked = db.json(&["kick", "--task", "flaky"]);
    assert_eq!(kicked["kicked"], serde_json::json!([doomed]));
    let doomed_job = db.json(&["show", &doomed]);
    assert_eq!(doomed_job["status"], "ready");
    assert!(doomed_job["logs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["message"] == "kicked"));

    // clean: completed by default, other final statuses when asked
    assert_eq!(db.json(&["clean"])["removed"], 1);
    fails(db.kessel(&["show", &kept]), 3);
    assert_eq!(
        db.json(&["clean", "--status", "cancelled", "--older-than", "1h"])["removed"],
        0
    );
    assert_eq!(db.json(&["clean", "--status", "cancelled"])["removed"], 1);
    let left = db.json(&["list"]);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], doomed.as_str());
}

#[test]
fn jobs_counts_jobs_by_task_and_status() {
    let db = Db::new();
    for _ in 0..3 {
        created_id(&db, &["email", "{}"]);
    }
    created_id(&db, &["email", "{}", "--delay", "10m"]);
    let report = created_id(&db, &["report", "7"]);
    db.kessel(&["cancel", &report]).assert().success();

    let rows = db.json(&["jobs"]);
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["task"], "email");
    assert_eq!(rows[0]["ready"], 3);
    assert_eq!(rows[0]["scheduled"], 1);
    assert_eq!(rows[0]["total"], 4);
    assert_eq!(rows[1]["task"], "report");
    assert_eq!(rows[1]["cancelled"], 1);
    assert_eq!(rows[1]["ready"], 0);

    let table = db
        .kessel(&["jobs"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(table).unwrap();
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0][..3], ["TASK", "SCHEDULED", "READY"]);
    assert_eq!(
        lines[1],
        ["email", "1", "3", "0", "0", "0", "0", "0", "0", "4"]
    );
    assert_eq!(
        lines[3],
        ["total", "1", "3", "0", "0", "0", "0", "0", "1", "5"]
    );

    let tasks = db.json(&["tasks"]);
    assert_eq!(tasks[0]["pending"], 4);
    assert_eq!(tasks[1]["final"], 1);
    let stats = db.json(&["stats"]);
    assert_eq!(stats["counts"]["total"], 5);
    assert_eq!(
        stats["schema_version"],
        kessel::store::SQLITE_SCHEMA_VERSION
    );
}

#[test]
fn create_from_a_file_of_json_lines_creates_one_job_per_line() {
    let db = Db::new();
    let file = db.path.with_file_name("jobs.jsonl");
    let lines: String = (0..2500).map(|n| format!("{{\"n\":{n}}}\n\n")).collect();
    std::fs::write(&file, lines).unwrap();
    let out = db.json(&[
        "create",
        "bulk",
        "--from",
        file.to_str().unwrap(),
        "--priority",
        "2",
    ]);
    assert_eq!(out["created"], 2500);
    let rows = db.json(&["jobs"]);
    assert_eq!(rows[0]["ready"], 2500);
    let oldest = db.json(&["list", "--oldest", "-n", "1"]);
    assert_eq!(oldest[0]["payload"], serde_json::json!({"n": 0}));
    assert_eq!(oldest[0]["priority"], 2);

    std::fs::write(&file, "1\n{\"ok\":true}\n{broken\n").unwrap();
    let err = fails(
        db.kessel(&["create", "bulk", "--from", file.to_str().unwrap()]),
        1,
    );
    assert!(
        err.starts_with(&format!(
            "error: malformed JSON payload on line 3 of {}",
            file.display()
        )),
        "{err}"
    );
    // nothing of a bad file is created
    assert_eq!(db.json(&["jobs"])[0]["total"], 2500);
}

#[test]
fn a_payload_can_come_from_stdin() {
    let db = Db::new();
    let id = db
        .kessel(&["create", "email", "-"])
        .write_stdin(r#"{"to": "ford@example.com"}"#)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let id = String::from_utf8(id).unwrap();
    assert_eq!(
        db.json(&["show", id.trim()])["payload"]["to"],
        "ford@example.com"
    );
}

#[test]
fn delete_matching_cancels_the_queued_jobs_whose_payload_matches() {
    let db = Db::new();
    let spam = created_id(&db, &["email", r#"{"to":"spam@example.com"}"#]);
    let ham = created_id(
        &db,
        &["email", r#"{"to":"ford@example.com"}"#, "--delay", "1h"],
    );
    assert_eq!(
        db.json(&["delete-matching", "email", "spam@"])["cancelled"],
        1
    );
    assert_eq!(status_of(&db, &spam), "cancelled");
    assert_eq!(status_of(&db, &ham), "scheduled");
    let err = fails(db.kessel(&["delete-matching", "email", "("]), 1);
    assert!(err.contains("not a valid regular expression"), "{err}");
}

#[test]
fn an_unknown_id_exits_3_with_one_line() {
    let db = Db::new();
    let id = "0190aaaa-0000-7000-8000-000000000000";
    for cmd in [["show", id], ["cancel", id], ["kick", id]] {
        assert_eq!(fails(db.kessel(&cmd), 3), format!("error: no job {id}"));
    }
    let err = fails(db.kessel(&["show", "0190-not-an-id"]), 1);
    assert!(
        err.starts_with("error: invalid job id \"0190-not-an-id\""),
        "{err}"
    );
}

#[test]
fn a_malformed_payload_exits_1_naming_the_payload() {
    let db = Db::new();
    let err = fails(db.kessel(&["create", "email", "{to: ford}"]), 1);
    assert!(
        err.starts_with("error: malformed JSON payload (argument): "),
        "{err}"
    );
    let mut from_stdin = db.kessel(&["create", "email", "-"]);
    from_stdin.write_stdin("nope");
    let err = fails(from_stdin, 1);
    assert!(
        err.starts_with("error: malformed JSON payload (stdin): "),
        "{err}"
    );
    assert_eq!(db.json(&["jobs"]), serde_json::json!([]));
}

#[test]
fn bad_durations_times_and_statuses_name_their_flag() {
    let db = Db::new();
    let err = fails(
        db.kessel(&["create", "email", "{}", "--delay", "5 parsecs"]),
        1,
    );
    assert_eq!(
        err,
        "error: invalid duration \"5 parsecs\" for --delay: invalid duration `5 parsecs`: the unit is not one of ms, s, m, h, d"
    );
    let err = fails(db.kessel(&["clean", "--older-than", "soon"]), 1);
    assert!(err.contains("for --older-than"), "{err}");
    let err = fails(
        db.kessel(&["create", "email", "{}", "--run-at", "tomorrow"]),
        1,
    );
    assert!(
        err.starts_with("error: invalid time \"tomorrow\" for --run-at"),
        "{err}"
    );
    let err = fails(db.kessel(&["list", "--status", "done"]), 1);
    assert!(
        err.starts_with("error: invalid status for --status: unknown job status `done`"),
        "{err}"
    );
    let err = fails(db.kessel(&["clean", "--status", "ready"]), 1);
    assert!(err.contains("not ready ones"), "{err}");
    assert_eq!(db.json(&["jobs"]), serde_json::json!([]));
}

#[test]
fn a_missing_or_unreachable_database_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.db");
    let err = fails(
        kessel_on(&format!("sqlite:{}", missing.display()), &["list"]),
        1,
    );
    assert!(err.starts_with("error: no SQLite store at "), "{err}");
    assert!(!missing.exists(), "list must not create a store");

    let err = fails(
        kessel_on("postgres://kessel:secret@127.0.0.1:1/none", &["list"]),
        1,
    );
    assert!(
        err.starts_with("error: cannot connect to postgres://kessel:***@127.0.0.1:1/none: "),
        "{err}"
    );
    let err = fails(kessel_on("mysql://h/db", &["list"]), 1);
    assert!(
        err.starts_with("error: cannot read database URL \"mysql://h/db\""),
        "{err}"
    );

    let mut no_url = Command::new(env!("CARGO_BIN_EXE_kessel"));
    no_url.env_remove("KESSEL_DATABASE_URL").arg("list");
    let err = fails(no_url, 2);
    assert_eq!(
        err,
        "error: no database given: pass --database-url or set KESSEL_DATABASE_URL"
    );
}

#[test]
fn a_store_in_use_by_a_worker_is_reported_not_waited_on() {
    let db = Db::new();
    let system = actix_rt::System::new();
    system.block_on(async {
        let store = SqliteStore::open(&db.path).await.unwrap();
        let err = fails(db.kessel(&["list"]), 1);
        assert!(err.contains("in use by another process"), "{err}");
        store.close().await.unwrap();
    });
    db.kessel(&["list"]).assert().success().stdout("no jobs\n");
}

#[test]
fn usage_errors_exit_2_and_completions_need_no_database() {
    let db = Db::new();
    db.kessel(&["cancel"]).assert().code(2);
    db.kessel(&["frobnicate"]).assert().code(2);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kessel"));
    cmd.env_remove("KESSEL_DATABASE_URL")
        .args(["completions", "bash"]);
    cmd.assert()
        .success()
        .stdout(predicate::str::contains("kessel"));
    // piped output is plain: no colour codes
    let out = db
        .kessel(&["stats"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(!String::from_utf8(out).unwrap().contains('\u{1b}'));
}

mod processes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Each case starts a process: few cases. The parsing functions
        // themselves get many more in the binary's unit tests.
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn any_delay_or_id_ends_in_a_documented_exit_code(text in "[^\u{0}]{0,24}") {
            let db = Db::new();
            for args in [
                vec!["create", "t", "1", "--delay", text.as_str()],
                vec!["show", text.as_str()],
            ] {
                let out = db.kessel(&args).output().unwrap();
                let code = out.status.code();
                prop_assert!(matches!(code, Some(0..=3)), "{:?} exited {:?}", args, code);
                let stderr = String::from_utf8_lossy(&out.stderr);
                prop_assert!(!stderr.contains("panicked"), "{}", stderr);
                if code == Some(1) || code == Some(3) {
                    prop_assert_eq!(stderr.lines().count(), 1, "{}", stderr);
                }
            }
        }
    }
}

/// The same round trip on PostgreSQL, in a fresh schema.
#[actix_rt::test]
async fn postgres_jobs_go_through_create_list_cancel_clean_and_counts() {
    let Some(db) = common::pg::fresh().await else {
        return;
    };
    let url = db.url.clone();
    let schema = db.schema.clone();
    let run = |args: &[&str]| kessel_on(&url, &[&["--schema", schema.as_str()], args].concat());
    run(&["migrate"]).assert().success();
    let json = |args: &[&str]| json_of(run(&[&["--json"], args].concat()));
    let a = json(&["create", "email", r#"{"to":"spam@x"}"#])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = json(&["create", "email", r#"{"to":"ford@x"}"#, "--reference", "b"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(json(&["list", "--reference", "b"])[0]["id"], b.as_str());
    assert_eq!(json(&["delete-matching", "email", "spam@"])["cancelled"], 1);
    assert_eq!(json(&["show", &a])["status"], "cancelled");
    run(&["cancel", &b]).assert().success();
    let err = fails(run(&["cancel", &b]), 1);
    assert!(err.ends_with("is cancelled, cannot cancel"), "{err}");
    fails(run(&["show", "0190aaaa-0000-7000-8000-000000000000"]), 3);
    let rows = json(&["jobs"]);
    assert_eq!(rows[0]["cancelled"], 2);
    assert_eq!(json(&["clean", "--status", "cancelled"])["removed"], 2);
    assert_eq!(json(&["jobs"]), serde_json::json!([]));
    let stats = json(&["stats"]);
    assert_eq!(stats["location"]["schema"], schema.as_str());
    db.drop().await;
}
