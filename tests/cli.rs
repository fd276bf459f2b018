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
        "error: no database given: pass --database-url or set KESSEL_DATABASE_URL (or --api URL for a running kessel HTTP API)"
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
                vec!["clean", "--older-than", text.as_str()],
                vec!["migrate", "--print", "--from", text.as_str()],
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
            // Through an API nobody serves: a bad kind or id is named
            // before connecting, a good one ends in "cannot reach".
            for args in [
                vec!["tail", "--kind", text.as_str()],
                vec!["tail", "--job", text.as_str()],
                vec!["kick", text.as_str()],
            ] {
                let out = kessel_api("http://127.0.0.1:1", None, &args).output().unwrap();
                let code = out.status.code();
                prop_assert!(matches!(code, Some(1..=2)), "{:?} exited {:?}", args, code);
                let stderr = String::from_utf8_lossy(&out.stderr);
                prop_assert!(!stderr.contains("panicked"), "{}", stderr);
                if code == Some(1) {
                    prop_assert_eq!(stderr.lines().count(), 1, "{}", stderr);
                }
            }
        }
    }
}

/// `kessel nodes` on PostgreSQL lists the processes on the schema (here
/// this test's, with a worker, leading) and not its own connection.
#[actix_rt::test]
async fn postgres_nodes_lists_the_processes_on_the_schema_but_not_itself() {
    let Some(db) = common::pg::fresh().await else {
        return;
    };
    // A lease far longer than the CLI runs take, which run on a thread of
    // their own so this test's scheduler keeps renewing its term meanwhile.
    let queue = db
        .queue(
            std::time::Duration::from_secs(30),
            std::time::Duration::from_secs(1),
        )
        .await;
    queue.process(["mail"]).concurrency(2).start().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !queue.is_leader() {
        assert!(
            std::time::Instant::now() < deadline,
            "this process never led"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (url, schema) = (db.url.clone(), db.schema.clone());
    let cmd = kessel_on(&url, &["--schema", &schema, "--json", "nodes"]);
    let nodes = actix_rt::task::spawn_blocking(move || json_of(cmd))
        .await
        .expect("the CLI's thread");
    let nodes = nodes.as_array().expect("a list");
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0]["id"], queue.node_id().to_string());
    assert_eq!(nodes[0]["pid"], std::process::id());
    assert_eq!(nodes[0]["tags"], serde_json::json!(["mail"]));
    assert_eq!(nodes[0]["leader"], true);
    assert_eq!(nodes[0]["status"], "live");
    let mut cmd = kessel_on(&url, &["--schema", &schema, "nodes"]);
    let table =
        actix_rt::task::spawn_blocking(move || cmd.assert().success().get_output().stdout.clone())
            .await
            .expect("the CLI's thread");
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains("live (leader)"), "{table}");
    queue
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    db.drop().await;
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

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.jsonl");
    std::fs::write(&file, "{\"n\":1}\n{\"n\":2}\n\n{\"n\":3}\n").unwrap();
    let created = json(&[
        "create",
        "bulk",
        "--from-file",
        file.to_str().unwrap(),
        "--delay",
        "1h",
    ]);
    assert_eq!(created["created"], 3);
    assert_eq!(json(&["jobs"])[0]["scheduled"], 3);
    std::fs::write(&file, "{\"n\":1}\n{\"n\":\n").unwrap();
    let err = fails(
        run(&["create", "bulk", "--from-file", file.to_str().unwrap()]),
        1,
    );
    assert!(err.contains("on line 2 of"), "{err}");
    assert_eq!(json(&["jobs"])[0]["total"], 3);
    let first = json(&["create", "sync", "1", "--unique", "k-1"]);
    let again = json(&["create", "sync", "2", "--unique", "k-1"]);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["duplicate"], true);
    // Suspended in the schema, for every process on it.
    assert_eq!(json(&["suspend", "bulk"])["suspended"], true);
    let stats = json(&["stats"]);
    assert_eq!(stats["suspended"][0]["name"], "bulk", "{stats}");
    assert!(stats["suspended"][0]["by"]
        .as_str()
        .unwrap()
        .starts_with("kessel cli"));
    let store = kessel::store::PgStore::connect_with(db.options())
        .await
        .unwrap();
    let queue = kessel::Queue::builder()
        .store(std::sync::Arc::new(store))
        .manual_schedules()
        .build()
        .await
        .unwrap();
    assert_eq!(
        queue.applied_suspensions().await.unwrap()[0].what,
        kessel::Suspended::Task("bulk".into()),
        "a queue started after the CLI's suspend starts with it"
    );
    // Schedules an application stored, steered from the CLI.
    queue
        .schedules()
        .upsert(kessel::schedule::Schedule::every("pg-tick", "bulk", "1h"))
        .await
        .unwrap();
    let listed = json(&["schedules"]);
    assert_eq!(listed[0]["name"], "pg-tick", "{listed}");
    assert_eq!(listed[0]["every"], "1h");
    assert_eq!(json(&["schedules", "pause", "pg-tick"])["paused"], true);
    assert!(queue.schedules().get("pg-tick").await.unwrap().paused);
    assert_eq!(
        json(&["cancel", "--task", "bulk", "--dry-run"])["matched"],
        3
    );
    let job = json(&["schedules", "run-now", "pg-tick"])["job"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(json(&["show", &job])["task"], "bulk");
    assert_eq!(
        fails(run(&["schedules", "resume", "nope"]), 3),
        "error: no schedule called `nope`"
    );
    queue
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(json(&["resume", "bulk"])["resumed"], true);
    assert_eq!(json(&["stats"])["suspended"], serde_json::json!([]));
    let err = fails(run(&["tail"]), 2);
    assert!(err.contains("needs a running kessel HTTP API"), "{err}");
    db.drop().await;
}

// ---------------------------------------------------------------------
// Through a running HTTP API (`--api`), against an API served in this
// test process (see `cli/server.rs`).

#[path = "cli/server.rs"]
mod server;

use kessel::web::Auth;
use server::{eventually, terminate, wait_for, ApiServer};

/// `kessel --api URL [--token T] ARGS`, with no database in the
/// environment.
fn kessel_api(url: &str, token: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kessel"));
    cmd.env_remove("KESSEL_DATABASE_URL")
        .env_remove("KESSEL_SCHEMA")
        .env_remove("KESSEL_API_TOKEN")
        .env("KESSEL_API_URL", url)
        .env("RUST_BACKTRACE", "1");
    if let Some(token) = token {
        cmd.env("KESSEL_API_TOKEN", token);
    }
    cmd.args(args);
    cmd
}

/// `kessel --json ARGS` on an open API, which must succeed; its output.
fn api_json(url: &str, args: &[&str]) -> Value {
    json_of(kessel_api(url, None, &[&["--json"], args].concat()))
}

fn api_status(url: &str, id: &str) -> String {
    api_json(url, &["show", id])["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The same `std::process::Command` as `kessel_api`, for children the test
/// reads while they run.
fn spawn_kessel(envs: &[(&str, &str)], args: &[&str]) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kessel"));
    cmd.env_remove("KESSEL_DATABASE_URL")
        .env_remove("KESSEL_SCHEMA")
        .env_remove("KESSEL_API_URL")
        .env_remove("KESSEL_API_TOKEN")
        .env("RUST_BACKTRACE", "1")
        .envs(envs.iter().copied())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().expect("start kessel")
}

#[test]
fn over_the_api_jobs_go_through_create_list_show_cancel_kick_and_clean() {
    let api = ApiServer::start(Auth::none());
    let url = api.url.as_str();
    let later = api_json(
        url,
        &[
            "create",
            "greet",
            "3",
            "--delay",
            "1h",
            "--priority",
            "4",
            "--reference",
            "r-1",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = api_json(url, &["list", "--reference", "r-1"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], later.as_str());
    assert_eq!(listed[0]["status"], "scheduled");
    assert_eq!(listed[0]["priority"], 4);

    let doomed = api_json(url, &["create", "greet", r#""fail""#])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the failing job to be buried", || {
        api_status(url, &doomed) == "buried"
    });
    let shown = kessel_api(url, None, &["show", &doomed])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let shown = String::from_utf8(shown).unwrap();
    assert!(shown.contains("last error  told to fail"), "{shown}");

    // the same words and exit codes as on a store
    kessel_api(url, None, &["cancel", &later])
        .assert()
        .success()
        .stdout(format!("cancelled {later}\n"));
    let err = fails(kessel_api(url, None, &["cancel", &later]), 1);
    assert_eq!(
        err,
        format!("error: job {later} is cancelled, cannot cancel")
    );
    let unknown = "0190aaaa-0000-7000-8000-000000000000";
    for cmd in [["show", unknown], ["cancel", unknown], ["kick", unknown]] {
        assert_eq!(
            fails(kessel_api(url, None, &cmd), 3),
            format!("error: no job {unknown}")
        );
    }

    kessel_api(url, None, &["kick", &doomed])
        .assert()
        .success()
        .stdout(format!("kicked {doomed}\n"));
    eventually("the kicked job to be buried again", || {
        api_status(url, &doomed) == "buried"
    });
    let kicked = api_json(url, &["kick", "--task", "greet"]);
    assert_eq!(kicked["kicked"], serde_json::json!([doomed]));
    eventually("the job kicked by task to be buried again", || {
        api_status(url, &doomed) == "buried"
    });

    let fine = api_json(url, &["create", "greet", r#"{"n":1}"#])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the job to complete", || {
        api_status(url, &fine) == "completed"
    });
    assert_eq!(
        api_json(url, &["show", &fine])["result"],
        serde_json::json!({"n": 1})
    );

    let rows = api_json(url, &["jobs"]);
    assert_eq!(rows[0]["task"], "greet");
    assert_eq!(rows[0]["cancelled"], 1);
    assert_eq!(rows[0]["completed"], 1);
    assert_eq!(rows[0]["buried"], 1);
    let tasks = api_json(url, &["tasks"]);
    assert_eq!(tasks[0]["final"], 3);
    let stats = api_json(url, &["stats"]);
    assert_eq!(stats["location"]["store"], "api");
    assert_eq!(stats["schema_version"], Value::Null);

    // tags are known through the API, not on a store
    assert_eq!(
        api_json(url, &["list", "--tag", "default", "--status", "completed"])[0]["id"],
        fine.as_str()
    );
    assert_eq!(
        api_json(url, &["list", "--tag", "nope"]),
        serde_json::json!([])
    );
    let db = Db::new();
    for cmd in [
        &["list", "--tag", "default"][..],
        &["clean", "--tag", "default"],
    ] {
        let err = fails(db.kessel(cmd), 1);
        assert!(
            err.starts_with("error: invalid value for --tag: a job's tag is known only"),
            "{err}"
        );
    }

    // clean goes by tag through the API, by task on a store
    assert_eq!(api_json(url, &["clean", "--tag", "default"])["removed"], 1);
    fails(kessel_api(url, None, &["show", &fine]), 3);
    let err = fails(kessel_api(url, None, &["clean", "--task", "greet"]), 1);
    assert!(err.contains("use --tag"), "{err}");
    assert_eq!(
        api_json(
            url,
            &["clean", "--status", "cancelled", "--older-than", "1h"]
        )["removed"],
        0
    );

    api_json(
        url,
        &["create", "other", r#"{"to":"spam@x"}"#, "--delay", "1h"],
    );
    assert_eq!(
        api_json(url, &["delete-matching", "other", "spam@"])["cancelled"],
        1
    );
    let err = fails(kessel_api(url, None, &["delete-matching", "other", "("]), 1);
    assert!(err.contains("not a valid regular expression"), "{err}");
}

#[test]
fn over_the_api_create_from_a_file_creates_every_line_or_none() {
    let api = ApiServer::start(Auth::none());
    let url = api.url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.jsonl");
    let lines: String = (0..1500)
        .map(|n| format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(500)))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = kessel_api(
        url,
        None,
        &[
            "--json",
            "create",
            "other",
            "--from-file",
            file.to_str().unwrap(),
            "--delay",
            "1h",
        ],
    )
    .assert()
    .success()
    .get_output()
    .clone();
    // piped: no progress bar
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["created"], 1500);
    assert_eq!(api_json(url, &["jobs"])[0]["scheduled"], 1500);
    let oldest = api_json(url, &["list", "--oldest", "-n", "2", "--offset", "1"]);
    assert_eq!(oldest[0]["payload"]["n"], 1);
    assert_eq!(oldest[1]["payload"]["n"], 2);
    // paging through the API's cursor
    assert_eq!(
        api_json(url, &["list", "-n", "1200"])
            .as_array()
            .unwrap()
            .len(),
        1200
    );

    std::fs::write(&file, "{\"ok\":1}\n\n[1,\n").unwrap();
    let err = fails(
        kessel_api(
            url,
            None,
            &["create", "other", "--from-file", file.to_str().unwrap()],
        ),
        1,
    );
    assert!(
        err.starts_with(&format!(
            "error: malformed JSON payload on line 3 of {}",
            file.display()
        )),
        "{err}"
    );
    assert_eq!(api_json(url, &["jobs"])[0]["total"], 1500);
}

#[test]
fn tail_over_the_api_follows_events_filtered_by_task_tag_and_kind() {
    let api = ApiServer::start(Auth::none());
    let url = api.url.clone();
    let tail = spawn_kessel(
        &[("KESSEL_API_URL", &url)],
        &[
            "--json",
            "tail",
            "--task",
            "greet",
            "--tag",
            "default",
            "--kind",
            "completed",
            "--count",
            "2",
        ],
    );
    // Until the stream is open, events go unseen: keep making them.
    let (status, stdout, stderr) = wait_for(tail, || {
        api_json(&url, &["create", "other", "1"]);
        api_json(&url, &["create", "greet", r#""fail""#]);
        api_json(&url, &["create", "greet", "2"]);
    });
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for event in &lines {
        assert_eq!(event["type"], "job");
        assert_eq!(event["task"], "greet");
        assert_eq!(event["kind"], "completed");
        assert_eq!(event["value"], 2);
    }

    // human lines: time, kind, task, id, attempt, detail
    let tail = spawn_kessel(
        &[("KESSEL_API_URL", &url)],
        &["tail", "--task", "greet", "--kind", "buried", "-n", "1"],
    );
    let (status, stdout, _) = wait_for(tail, || {
        api_json(&url, &["create", "greet", r#""fail""#]);
    });
    assert!(status.success());
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words[2..4], ["buried", "greet"], "{stdout}");
    assert_eq!(words[5..], ["#1", "told", "to", "fail"], "{stdout}");

    let err = fails(kessel_api(&url, None, &["tail", "--kind", "done"]), 1);
    assert!(
        err.starts_with("error: invalid value for --kind: `done` is not one of created"),
        "{err}"
    );
    let err = fails(kessel_api(&url, None, &["tail", "--job", "nope"]), 1);
    assert!(err.starts_with("error: invalid job id \"nope\""), "{err}");
}

#[test]
fn suspend_over_the_api_holds_a_tasks_jobs_until_resumed() {
    let api = ApiServer::start(Auth::none());
    let url = api.url.as_str();
    kessel_api(url, None, &["suspend", "greet"])
        .assert()
        .success()
        .stdout("suspended `greet`\n");
    let held = api_json(url, &["create", "greet", "1"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A job of another task, created after it, runs on the same worker.
    let runs = api_json(url, &["create", "other", "1"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the other task's job to complete", || {
        api_status(url, &runs) == "completed"
    });
    assert_eq!(api_status(url, &held), "ready");
    assert_eq!(
        api_json(url, &["resume", "greet"]),
        serde_json::json!({"task": "greet", "resumed": true})
    );
    eventually("the resumed task's job to complete", || {
        api_status(url, &held) == "completed"
    });
}

#[test]
fn suspend_on_a_sqlite_database_is_kept_for_the_next_queue_and_resume_lifts_it() {
    let db = Db::new();
    db.kessel(&["suspend", "email"])
        .assert()
        .success()
        .stdout("suspended `email`\n");
    let stats = json_of(db.kessel(&["--json", "stats"]));
    assert_eq!(stats["suspended"][0]["kind"], "task", "{stats}");
    assert_eq!(stats["suspended"][0]["name"], "email");
    let text = db.kessel(&["stats"]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("suspended") && text.contains("task `email` by kessel cli"),
        "{text}"
    );
    let listed = actix_rt::System::new().block_on(async {
        let store = kessel::store::SqliteStore::open(&db.path).await.unwrap();
        let listed = kessel::Store::suspensions_list(&store).await.unwrap();
        kessel::Store::close(&store).await.unwrap();
        listed
    });
    assert_eq!(listed[0].what, kessel::Suspended::Task("email".into()));
    db.kessel(&["resume", "email"])
        .assert()
        .success()
        .stdout("resumed `email`\n");
    assert_eq!(
        json_of(db.kessel(&["--json", "stats"]))["suspended"],
        serde_json::json!([])
    );
}

#[test]
fn tail_on_a_database_says_it_needs_the_api() {
    let db = Db::new();
    let err = fails(db.kessel(&["tail"]), 2);
    assert!(
        err.starts_with("error: `tail` needs a running kessel HTTP API (--api URL): "),
        "{err}"
    );
    assert!(err.contains("a database does not carry them to another process yet"));
}

#[test]
fn tokens_are_sent_and_a_read_only_token_cannot_change_jobs() {
    let api = ApiServer::start(Auth::tokens().admin("adm-1").read_only("ro-1").into());
    let url = api.url.as_str();
    let err = fails(kessel_api(url, None, &["list"]), 1);
    assert_eq!(
        err,
        "error: cannot list jobs: the API answered 401 unauthorized: a bearer token is required"
    );
    let err = fails(kessel_api(url, Some("wrong"), &["stats"]), 1);
    assert!(err.contains("401 unauthorized"), "{err}");
    let id = json_of(kessel_api(
        url,
        Some("adm-1"),
        &["--json", "create", "other", "1", "--delay", "1h"],
    ))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    kessel_api(url, Some("ro-1"), &["show", &id])
        .assert()
        .success();
    let err = fails(kessel_api(url, Some("ro-1"), &["cancel", &id]), 1);
    assert!(
        err.starts_with(&format!(
            "error: cannot cancel {id}: the API answered 403 forbidden"
        )),
        "{err}"
    );
    // --token on the command line, and an http:// --database-url is an API
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kessel"));
    cmd.env_remove("KESSEL_API_URL")
        .env_remove("KESSEL_API_TOKEN")
        .args(["-d", url, "--token", "adm-1", "cancel", &id]);
    cmd.assert().success().stdout(format!("cancelled {id}\n"));
}

#[test]
fn an_unreachable_or_unusable_api_is_one_line() {
    let port = server::free_port();
    let url = format!("http://127.0.0.1:{port}");
    for cmd in [
        &["list"][..],
        &["tail"],
        &["suspend", "t"],
        &["create", "t"],
    ] {
        let err = fails(kessel_api(&url, None, cmd), 1);
        assert!(
            err.starts_with(&format!("error: cannot reach the kessel API at {url}: ")),
            "{err}"
        );
    }
    let err = fails(kessel_api("ftp://h", None, &["list"]), 1);
    assert!(
        err.starts_with("error: cannot use API URL \"ftp://h\""),
        "{err}"
    );
    if !cfg!(feature = "cli-tls") {
        let err = fails(kessel_api("https://h", None, &["list"]), 1);
        assert!(err.contains("`cli-tls` feature"), "{err}");
    }
    let mut both = kessel_api(&url, None, &["list"]);
    both.env("KESSEL_DATABASE_URL", "sqlite:x.db");
    assert_eq!(
        fails(both, 2),
        "error: give either a database (--database-url) or an API (--api), not both"
    );
    for cmd in [&["migrate"][..], &["serve", "--no-auth"]] {
        let err = fails(kessel_api(&url, None, cmd), 2);
        assert!(
            err.ends_with("works on a database (--database-url), not on an API"),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------
// `kessel serve`: the HTTP API on a store, in its own process.

/// Runs `kessel serve` on `envs`' store with token `tok`, awaits it
/// answering, runs `check` on its URL, stops it with SIGTERM and expects
/// a clean exit.
fn serving(envs: &[(&str, &str)], check: impl FnOnce(&str)) {
    let port = server::free_port().to_string();
    let bind = format!("127.0.0.1:{port}");
    let url = format!("http://{bind}");
    let child = spawn_kessel(envs, &["serve", "--bind", &bind, "--token", "tok"]);
    eventually("kessel serve to answer", || {
        kessel_api(&url, Some("tok"), &["stats"])
            .output()
            .unwrap()
            .status
            .success()
    });
    check(&url);
    terminate(&child);
    let (status, stdout, stderr) = wait_for(child, || {});
    assert!(status.success(), "{status:?} {stderr}");
    assert!(
        stdout.starts_with(&format!("kessel HTTP API on {url} for ")),
        "{stdout}"
    );
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn serve_puts_the_http_api_on_a_sqlite_store() {
    let db = Db::new();
    let mut created = String::new();
    serving(&[("KESSEL_DATABASE_URL", &db.url())], |url| {
        let out = json_of(kessel_api(
            url,
            Some("tok"),
            &["--json", "create", "email", "{}", "--delay", "1h"],
        ));
        created = out["id"].as_str().unwrap().to_owned();
        let err = fails(kessel_api(url, None, &["list"]), 1);
        assert!(err.contains("401 unauthorized"), "{err}");
    });
    // stopped, it let go of the file, and the job is stored
    assert_eq!(status_of(&db, &created), "scheduled");
}

#[test]
fn serve_needs_a_token_or_no_auth_and_a_free_address() {
    let db = Db::new();
    let err = fails(db.kessel(&["serve"]), 2);
    assert!(err.starts_with("error: `serve` needs a token"), "{err}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let err = fails(db.kessel(&["serve", "--no-auth", "--bind", &bind]), 1);
    assert!(
        err.starts_with(&format!("error: cannot listen on {bind}: ")),
        "{err}"
    );
    let err = fails(db.kessel(&["serve", "--no-auth", "--bind", "nowhere"]), 1);
    assert!(
        err.starts_with("error: cannot listen on nowhere: "),
        "{err}"
    );
}

#[actix_rt::test]
async fn postgres_serve_puts_the_http_api_on_a_schema() {
    let Some(db) = common::pg::fresh().await else {
        return;
    };
    kessel_on(&db.url, &["--schema", &db.schema, "migrate"])
        .assert()
        .success();
    let envs = [
        ("KESSEL_DATABASE_URL", db.url.as_str()),
        ("KESSEL_SCHEMA", db.schema.as_str()),
    ];
    let mut created = String::new();
    serving(&envs, |url| {
        let out = json_of(kessel_api(
            url,
            Some("tok"),
            &["--json", "create", "email", r#"{"a":1}"#],
        ));
        created = out["id"].as_str().unwrap().to_owned();
        assert_eq!(
            json_of(kessel_api(url, Some("tok"), &["--json", "jobs"]))[0]["ready"],
            1
        );
    });
    let shown = json_of(kessel_on(
        &db.url,
        &["--schema", &db.schema, "--json", "show", &created],
    ));
    assert_eq!(shown["payload"], serde_json::json!({"a": 1}));
    db.drop().await;
}

// ---------------------------------------------------------------------
// `kessel migrate --print`.

async fn sqlite_objects(path: &Path) -> Vec<(String, String)> {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    sqlx::query_as("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[actix_rt::test]
async fn migrate_print_gives_the_sql_that_makes_a_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("by-hand.db");
    let url = format!("sqlite:{}", path.display());
    let sql = kessel_on(&url, &["migrate", "--print"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let sql = String::from_utf8(sql).unwrap();
    assert!(!path.exists(), "--print must not create the store");
    assert!(sql.starts_with(&format!(
        "-- kessel schema migrations from version 0 to {}",
        kessel::store::SQLITE_SCHEMA_VERSION
    )));
    {
        use sqlx::{ConnectOptions, Executor};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
            .await
            .unwrap();
    }
    // the store made by hand is the store `migrate` makes
    let made = Db::new();
    assert_eq!(
        sqlite_objects(&path).await,
        sqlite_objects(&made.path).await
    );
    let stats = json_of(kessel_on(&url, &["--json", "stats"]));
    assert_eq!(
        stats["schema_version"],
        kessel::store::SQLITE_SCHEMA_VERSION
    );
    kessel_on(&url, &["migrate", "--print"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to apply"));

    let from_3 = json_of(kessel_on(
        "",
        &[
            "--json", "migrate", "--print", "--from", "3", "--store", "sqlite",
        ],
    ));
    assert_eq!(from_3["from_version"], 3);
    assert!(from_3["sql"]
        .as_str()
        .unwrap()
        .contains("-- schema version 4"));
    assert!(!from_3["sql"]
        .as_str()
        .unwrap()
        .contains("-- schema version 3"));
    let err = fails(kessel_on(&url, &["migrate", "--print", "--from", "99"]), 1);
    assert!(
        err.starts_with("error: invalid value for --from: schema versions go from 0"),
        "{err}"
    );
    let err = fails(kessel_on("", &["migrate", "--print", "--from", "1"]), 1);
    assert!(err.contains("--store sqlite|postgres"), "{err}");
}

#[actix_rt::test]
async fn postgres_migrate_print_gives_the_sql_that_makes_a_schema() {
    let Some(db) = common::pg::fresh().await else {
        return;
    };
    let run =
        |args: &[&str]| kessel_on(&db.url, &[&["--schema", db.schema.as_str()], args].concat());
    let sql = run(&["migrate", "--print"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let sql = String::from_utf8(sql).unwrap();
    assert!(
        sql.contains(&format!("CREATE TABLE {}.jobs", db.schema)),
        "{sql}"
    );
    let made: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)",
    )
    .bind(&db.schema)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(!made, "--print must not create the schema");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&db.pool)
        .await
        .unwrap();
    run(&["migrate", "--print"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to apply"));
    let stats = json_of(run(&["--json", "stats"]));
    assert_eq!(
        stats["schema_version"],
        kessel::store::postgres::SCHEMA_VERSION
    );
    assert_eq!(
        json_of(run(&["--json", "create", "email", "1"]))["task"],
        "email"
    );
    db.drop().await;
}

#[test]
fn tail_ends_in_one_line_when_the_api_goes_away() {
    let api = ApiServer::start(Auth::none());
    let url = api.url.clone();
    let mut tail = spawn_kessel(&[("KESSEL_API_URL", &url)], &["tail", "--kind", "created"]);
    // The first event it prints says the stream is open.
    let mut stdout = std::io::BufReader::new(tail.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    let deadline = std::time::Instant::now() + server::PATIENCE;
    loop {
        api_json(&url, &["create", "other", "1", "--delay", "1h"]);
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            assert!(line.contains("created"), "{line}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "tail printed nothing");
    }
    drop(api);
    let (status, _, stderr) = wait_for(tail, || {});
    let _ = reader.join();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot reach the kessel API at {url}: ")),
        "{stderr}"
    );
}

#[test]
fn create_unique_creates_nothing_while_a_live_job_holds_the_key() {
    let db = Db::new();
    let first = db.json(&["create", "sync", "42", "--unique", "customer-42"]);
    assert_eq!(first["duplicate"], false);
    let again = db.json(&["create", "sync", "43", "--unique", "customer-42"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"]);
    let out = db
        .kessel(&["create", "sync", "44", "--unique", "customer-42"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        first["id"].as_str().unwrap()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "note: a live job holds this unique key; nothing was created\n"
    );
    // by payload: an equal payload of the same task is a duplicate
    let a = db.json(&["create", "reindex", r#""users""#, "--unique-by-payload"]);
    let b = db.json(&["create", "reindex", r#""users""#, "--unique-by-payload"]);
    let c = db.json(&["create", "reindex", r#""orders""#, "--unique-by-payload"]);
    assert_eq!(b["id"], a["id"]);
    assert_ne!(c["id"], a["id"]);
    // once the holder is final, the key is free
    db.kessel(&["cancel", first["id"].as_str().unwrap()])
        .assert()
        .success();
    let next = db.json(&["create", "sync", "45", "--unique", "customer-42"]);
    assert_eq!(next["duplicate"], false);
    assert_ne!(next["id"], first["id"]);
    assert_eq!(db.json(&["jobs"])[1]["total"], 2);

    let err = fails(db.kessel(&["create", "sync", "1", "--unique", ""]), 1);
    assert!(err.contains("unique"), "{err}");
    db.kessel(&["create", "sync", "--from-file", "x.jsonl", "--unique", "k"])
        .assert()
        .code(2);

    // Through the API too: the holder's id, and that it was a duplicate.
    let api = ApiServer::start(Auth::none());
    let url = api.url.as_str();
    let first = api_json(
        url,
        &["create", "greet", "1", "--delay", "1h", "--unique", "k"],
    );
    let again = api_json(url, &["create", "greet", "2", "--unique", "k"]);
    assert_eq!(first["duplicate"], false);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"]);
    let by_payload = api_json(
        url,
        &[
            "create",
            "greet",
            "7",
            "--delay",
            "1h",
            "--unique-by-payload",
        ],
    );
    let same = api_json(url, &["create", "greet", "7", "--unique-by-payload"]);
    assert_eq!(same["id"], by_payload["id"]);
    assert_eq!(same["duplicate"], true);
    let err = fails(
        kessel_api(url, None, &["create", "greet", "1", "--unique", ""]),
        1,
    );
    assert!(err.contains("unique"), "{err}");
}

#[test]
fn delete_removes_an_ended_job_by_id_on_a_store_and_through_the_api() {
    let db = Db::new();
    let later = created_id(&db, &["flaky", "3", "--delay", "1h"]);
    let err = fails(db.kessel(&["delete", &later]), 1);
    assert_eq!(
        err,
        format!("error: job {later} is scheduled, cannot delete")
    );
    db.kessel(&["cancel", &later]).assert().success();
    db.kessel(&["delete", &later])
        .assert()
        .success()
        .stdout(format!("deleted {later}\n"));
    assert_eq!(
        fails(db.kessel(&["delete", &later]), 3),
        format!("error: no job {later}")
    );
    db.kessel(&["delete"]).assert().code(2);

    let api = ApiServer::start(Auth::none());
    let url = api.url.as_str();
    let id = api_json(url, &["create", "greet", "3", "--delay", "1h"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = fails(kessel_api(url, None, &["delete", &id]), 1);
    assert!(err.contains("cannot delete"), "{err}");
    kessel_api(url, None, &["cancel", &id]).assert().success();
    assert_eq!(
        api_json(url, &["delete", &id])["deleted"],
        serde_json::json!([id])
    );
    assert_eq!(
        fails(kessel_api(url, None, &["delete", &id]), 3),
        format!("error: no job {id}")
    );
}

// ---------------------------------------------------------------------
// Schedules and tag suspensions.

/// Stores two schedules in the SQLite file at `path`, as an application
/// defining them at start-up would (without running them).
fn define_schedules(path: &Path) {
    use kessel::schedule::Schedule;
    actix_rt::System::new().block_on(async {
        let store = Arc::new(SqliteStore::open(path).await.expect("open the store"));
        let queue = Queue::builder()
            .store(store.clone())
            .manual_schedules()
            .schedule(
                Schedule::cron("nightly", "report", "0 3 * * *")
                    .time_zone("Europe/Berlin")
                    .payload(serde_json::json!({"window": "24h"})),
            )
            .schedule(Schedule::every("rollup", "roll up", "5m"))
            .build()
            .await
            .unwrap();
        queue.shutdown(Duration::from_secs(5)).await.unwrap();
        store.close().await.unwrap();
    });
}

#[test]
fn schedules_are_listed_paused_resumed_and_run_now_on_a_store() {
    let db = Db::new();
    db.kessel(&["schedules"])
        .assert()
        .success()
        .stdout("no schedules\n");
    define_schedules(&db.path);

    let out = db
        .kessel(&["schedules"])
        .assert()
        .success()
        .get_output()
        .clone();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("NAME"), "{table}");
    assert!(
        lines[1].starts_with("nightly") && lines[1].contains("0 3 * * * (Europe/Berlin)"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("rollup") && lines[2].contains("every 5m"),
        "{table}"
    );
    // Aligned: each column starts at the same place on every line.
    let at = |line: &str, word: &str| line.find(word).unwrap();
    assert_eq!(at(lines[0], "TASK"), at(lines[1], "report"), "{table}");
    assert_eq!(at(lines[0], "TASK"), at(lines[2], "roll up"), "{table}");

    let listed = db.json(&["schedules", "list"]);
    assert_eq!(listed[0]["name"], "nightly");
    assert_eq!(listed[0]["time_zone"], "Europe/Berlin");
    assert_eq!(listed[0]["paused"], false);
    assert_eq!(listed[1]["every"], "5m");

    db.kessel(&["schedules", "pause", "nightly"])
        .assert()
        .success()
        .stdout("paused schedule `nightly`\n");
    assert_eq!(db.json(&["schedules"])[0]["paused"], true);
    let ran = db.json(&["schedules", "run-now", "nightly"]);
    let job = ran["job"].as_str().expect("a job id").to_owned();
    let shown = db.json(&["show", &job]);
    assert_eq!(shown["task"], "report");
    assert_eq!(shown["payload"], serde_json::json!({"window": "24h"}));
    assert_eq!(db.json(&["schedules"])[0]["last_job"], job.as_str());
    assert_eq!(
        db.json(&["schedules", "resume", "nightly"])["resumed"],
        true
    );
    assert_eq!(db.json(&["schedules"])[0]["paused"], false);

    for verb in ["pause", "resume", "run-now"] {
        let err = fails(db.kessel(&["schedules", verb, "nope"]), 3);
        assert_eq!(err, "error: no schedule called `nope`");
    }
    db.kessel(&["schedules", "pause"]).assert().code(2);
    db.kessel(&["schedules", "stop", "nightly"])
        .assert()
        .code(2);
}

#[test]
fn a_tag_is_suspended_and_resumed_on_a_store() {
    let db = Db::new();
    db.kessel(&["suspend", "--tag", "reports"])
        .assert()
        .success()
        .stdout("suspended tag `reports`\n");
    let stats = db.json(&["stats"]);
    assert_eq!(stats["suspended"][0]["kind"], "tag", "{stats}");
    assert_eq!(stats["suspended"][0]["name"], "reports");
    assert!(stats["suspended"][0]["by"]
        .as_str()
        .unwrap()
        .starts_with("kessel cli"));
    assert_eq!(
        db.json(&["resume", "--tag", "reports"]),
        serde_json::json!({"tag": "reports", "resumed": true})
    );
    assert_eq!(db.json(&["stats"])["suspended"], serde_json::json!([]));
    db.kessel(&["suspend"]).assert().code(2);
    db.kessel(&["suspend", "email", "--tag", "reports"])
        .assert()
        .code(2);
}

#[test]
fn over_the_api_schedules_and_tags_are_steered() {
    let api = ApiServer::start(Auth::none());
    let url = api.url.as_str();
    assert_eq!(api_json(url, &["schedules"]), serde_json::json!([]));
    let answer = ureq::put(format!("{url}/schedules/hourly"))
        .header("content-type", "application/json")
        .send(r#"{"task": "greet", "cron": "@hourly", "payload": "hi"}"#)
        .expect("upsert a schedule");
    assert_eq!(answer.status().as_u16(), 201);

    let listed = api_json(url, &["schedules"]);
    assert_eq!(listed[0]["name"], "hourly");
    assert_eq!(listed[0]["cron"], "@hourly");
    kessel_api(url, None, &["schedules", "pause", "hourly"])
        .assert()
        .success()
        .stdout("paused schedule `hourly`\n");
    assert_eq!(api_json(url, &["schedules"])[0]["paused"], true);
    let job = kessel_api(url, None, &["schedules", "run-now", "hourly"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let job = String::from_utf8(job).unwrap().trim().to_owned();
    eventually("the run-now job completes", || {
        api_status(url, &job) == "completed"
    });
    assert_eq!(api_json(url, &["show", &job])["result"], "hi");
    kessel_api(url, None, &["schedules", "resume", "hourly"])
        .assert()
        .success();
    assert_eq!(
        fails(kessel_api(url, None, &["schedules", "run-now", "nope"]), 3),
        "error: no schedule called `nope`"
    );

    kessel_api(url, None, &["suspend", "--tag", "default"])
        .assert()
        .success()
        .stdout("suspended tag `default`\n");
    let stats = api_json(url, &["stats"]);
    assert_eq!(stats["suspended"][0]["kind"], "tag", "{stats}");
    kessel_api(url, None, &["resume", "--tag", "default"])
        .assert()
        .success();
    assert_eq!(
        api_json(url, &["stats"])["suspended"],
        serde_json::json!([])
    );
}

#[test]
fn cancel_and_delete_by_filter_count_what_they_did_on_a_store() {
    let db = Db::new();
    for n in 0..3 {
        created_id(&db, &["flaky", &n.to_string(), "--delay", "1h"]);
    }
    let other = created_id(&db, &["other", "1", "--delay", "1h"]);
    assert_eq!(
        db.json(&["cancel", "--task", "flaky", "--dry-run"]),
        serde_json::json!({"action": "cancel", "matched": 3, "done": 0, "skipped": 0, "dry_run": true})
    );
    assert_eq!(status_of(&db, &other), "scheduled");
    db.kessel(&["cancel", "--task", "flaky", "--status", "scheduled"])
        .assert()
        .success()
        .stdout("cancelled 3 of 3 matching jobs (0 skipped: in another state or gone)\n");
    // The pending job is skipped, not an error.
    let deleted = db.json(&["delete", "--all"]);
    assert_eq!(
        (&deleted["matched"], &deleted["done"], &deleted["skipped"]),
        (
            &serde_json::json!(4),
            &serde_json::json!(3),
            &serde_json::json!(1)
        ),
        "{deleted}"
    );
    assert_eq!(status_of(&db, &other), "scheduled");
    assert_eq!(db.json(&["jobs"])[0]["total"], 1);

    db.kessel(&["cancel"]).assert().code(2);
    db.kessel(&["cancel", &other, "--task", "flaky"])
        .assert()
        .code(2);
    db.kessel(&["delete", "--all", "--task", "flaky"])
        .assert()
        .code(2);
    let err = fails(db.kessel(&["cancel", "--tag", "reports"]), 1);
    assert!(err.contains("--tag"), "{err}");
    let err = fails(db.kessel(&["cancel", "--status", "soon"]), 1);
    assert!(err.contains("--status"), "{err}");
}

#[test]
fn over_the_api_cancel_and_delete_by_filter_use_the_bulk_endpoints() {
    let api = ApiServer::start(Auth::none());
    let url = api.url.as_str();
    for n in 0..2 {
        api_json(url, &["create", "greet", &n.to_string(), "--delay", "1h"]);
    }
    let counted = api_json(url, &["cancel", "--task", "greet", "--dry-run"]);
    assert_eq!(counted["matched"], 2, "{counted}");
    assert_eq!(counted["done"], 0);
    kessel_api(url, None, &["cancel", "--task", "greet"])
        .assert()
        .success()
        .stdout("cancelled 2 of 2 matching jobs (0 skipped: in another state or gone)\n");
    let deleted = api_json(url, &["delete", "--all"]);
    assert_eq!(deleted["done"], 2, "{deleted}");
    assert_eq!(api_json(url, &["list"]), serde_json::json!([]));
    let err = fails(kessel_api(url, None, &["cancel", "--status", "soon"]), 1);
    assert!(err.contains("--status"), "{err}");

    let failed = api_json(url, &["create", "greet", r#""fail""#])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the job is buried", || api_status(url, &failed) == "buried");
    let kicked = api_json(url, &["kick", "--tag", "default"]);
    assert_eq!(
        (&kicked["matched"], &kicked["done"]),
        (&serde_json::json!(1), &serde_json::json!(1)),
        "{kicked}"
    );
    eventually("the kicked job is buried again", || {
        api_json(url, &["show", &failed])["attempts"] == 2
    });
}

#[test]
fn kick_by_filter_kicks_only_the_buried_jobs_matching() {
    let db = Db::new();
    let a = created_id(&db, &["flaky", r#""fail""#, "--reference", "r-1"]);
    let b = created_id(&db, &["flaky", r#""fail""#]);
    let ok = created_id(&db, &["flaky", "1"]);
    actix_rt::System::new().block_on(work(&db.path));
    assert_eq!(status_of(&db, &a), "buried");
    assert_eq!(status_of(&db, &ok), "completed");
    let counted = db.json(&["kick", "--all", "--dry-run"]);
    assert_eq!(counted["matched"], 2, "{counted}");
    assert_eq!(counted["done"], 0);
    db.kessel(&["kick", "--reference", "r-1"])
        .assert()
        .success()
        .stdout("kicked 1 of 1 matching jobs (0 skipped: in another state or gone)\n");
    assert_eq!(status_of(&db, &a), "ready");
    assert_eq!(status_of(&db, &b), "buried");
    assert_eq!(db.json(&["kick", "--all"])["done"], 1);
    assert_eq!(status_of(&db, &b), "ready");
    assert_eq!(status_of(&db, &ok), "completed");
    db.kessel(&["kick", &b, "--all"]).assert().code(2);
    db.kessel(&["kick", "--task", "flaky", "--limit", "1", "--dry-run"])
        .assert()
        .code(2);
    let err = fails(db.kessel(&["kick", "--tag", "reports"]), 1);
    assert!(err.contains("--tag"), "{err}");
}
