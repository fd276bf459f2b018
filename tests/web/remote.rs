//! Remote workers: `/remote/fetch` and the reports on a leased job, the
//! Rust `kessel::remote::Worker`, and `examples/remote_worker.py`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use kessel::web::{Api, Auth};
use kessel::{JobId, JobStatus, Queue, RetryPolicy};
use serde_json::{json, Value};

use crate::{error_of, json_of, post};

/// Retries at once, so a retried job can be fetched again without delay.
fn quick_retry() -> RetryPolicy {
    RetryPolicy::exponential(3)
        .base_delay(Duration::from_millis(1))
        .jitter(0.0)
}

fn remote_app(
    queue: &Queue,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new().service(
        Api::new(queue.clone(), Auth::none())
            .remote_retry(quick_retry())
            .scope("/kessel"),
    )
}

fn fetch(body: Value) -> actix_http::Request {
    post("/kessel/remote/fetch", body)
}

fn report(id: &str, what: &str, body: Value) -> actix_http::Request {
    post(&format!("/kessel/remote/jobs/{id}/{what}"), body)
}

/// The single job a fetch answer holds.
fn only_job(answer: &Value) -> (String, String) {
    let jobs = answer["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "{answer}");
    (
        jobs[0]["id"].as_str().unwrap().to_owned(),
        jobs[0]["lease_token"].as_str().unwrap().to_owned(),
    )
}

#[actix_rt::test]
async fn a_fetched_job_completes_with_the_remote_result_log_and_progress() {
    let queue = Queue::new();
    let app = test::init_service(remote_app(&queue)).await;
    // Created before any remote worker asked: held until one does.
    let handle = queue
        .create("resize", json!({"width": 640}))
        .reference("img-7")
        .await
        .unwrap();
    let answer = json_of(
        &app,
        fetch(json!({"tasks": ["resize"], "n": 5, "wait": "30s"})),
        StatusCode::OK,
    )
    .await;
    let (id, token) = only_job(&answer);
    assert_eq!(id, handle.id().to_string());
    let job = &answer["jobs"][0];
    assert_eq!(job["task"], "resize");
    assert_eq!(job["payload"], json!({"width": 640}));
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["reference"], "img-7");
    assert!(job["lease_expires_at"].is_string(), "{answer}");

    let beat = json_of(
        &app,
        report(
            &id,
            "heartbeat",
            json!({"lease_token": token, "lease": "1m"}),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(beat["cancelled"], false);
    assert!(beat["lease_expires_at"].is_string(), "{beat}");
    json_of(
        &app,
        report(
            &id,
            "log",
            json!({"lease_token": token, "message": "resizing remotely", "data": {"to": 320}}),
        ),
        StatusCode::OK,
    )
    .await;
    json_of(
        &app,
        report(
            &id,
            "progress",
            json!({"lease_token": token, "current": 1, "total": 2}),
        ),
        StatusCode::OK,
    )
    .await;
    json_of(
        &app,
        report(
            &id,
            "complete",
            json!({"lease_token": token, "result": {"width": 320}}),
        ),
        StatusCode::OK,
    )
    .await;

    let result = handle.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    assert_eq!(result.value, Some(json!({"width": 320})));
    let stored = queue.job(handle.id()).await.unwrap();
    let line = stored
        .logs
        .iter()
        .find(|l| l.message == "resizing remotely")
        .unwrap_or_else(|| panic!("no remote line in {:?}", stored.logs));
    assert_eq!(line.data, Some(json!({"to": 320})));
    assert_eq!(line.attempt, 1);
    assert_eq!(stored.progress.map(|p| (p.current, p.total)), Some((1, 2)));

    // The lease ended with the report: another one is refused.
    let body = json_of(
        &app,
        report(&id, "complete", json!({"lease_token": token})),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(error_of(&body).0, "wrong_state");
}

#[actix_rt::test]
async fn a_transient_failure_is_retried_and_a_fatal_one_buries_the_job() {
    let queue = Queue::new();
    let app = test::init_service(remote_app(&queue)).await;
    let flaky = queue.create("sync", json!(1)).await.unwrap();
    let (id, token) = only_job(
        &json_of(
            &app,
            fetch(json!({"tasks": ["sync"], "wait": "30s"})),
            StatusCode::OK,
        )
        .await,
    );
    json_of(
        &app,
        report(
            &id,
            "fail",
            json!({"lease_token": token, "message": "network down"}),
        ),
        StatusCode::OK,
    )
    .await;
    let again = json_of(
        &app,
        fetch(json!({"tasks": ["sync"], "wait": "30s"})),
        StatusCode::OK,
    )
    .await;
    let (id2, token2) = only_job(&again);
    assert_eq!(id2, id, "the retry is the same job");
    assert_eq!(again["jobs"][0]["attempt"], 2);
    assert_ne!(token2, token, "each lease has its own token");
    json_of(
        &app,
        report(
            &id,
            "complete",
            json!({"lease_token": token2, "result": "synced"}),
        ),
        StatusCode::OK,
    )
    .await;
    let result = flaky.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    let stored = queue.job(flaky.id()).await.unwrap();
    assert_eq!(stored.attempts, 2);

    let doomed = queue.create("sync", json!(2)).await.unwrap();
    let (id, token) = only_job(
        &json_of(
            &app,
            fetch(json!({"tasks": ["sync"], "wait": "30s"})),
            StatusCode::OK,
        )
        .await,
    );
    assert_eq!(id, doomed.id().to_string());
    json_of(
        &app,
        report(
            &id,
            "fail",
            json!({"lease_token": token, "message": "bad input", "fatal": true}),
        ),
        StatusCode::OK,
    )
    .await;
    let result = doomed.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Buried);
    let stored = queue.job(doomed.id()).await.unwrap();
    assert_eq!(stored.attempts, 1);
    assert!(
        stored
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("bad input")),
        "{:?}",
        stored.last_error
    );
}

#[actix_rt::test]
async fn a_lapsed_lease_runs_the_job_again_and_refuses_the_late_report() {
    let queue = Queue::new();
    let app = test::init_service(remote_app(&queue)).await;
    let handle = queue.create("render", json!("frame 1")).await.unwrap();
    // A tiny lease and no heartbeat: it lapses, the attempt fails as
    // transient, and the retry is parked for the next fetch.
    let (id, stale) = only_job(
        &json_of(
            &app,
            fetch(json!({"tasks": ["render"], "lease": "20ms", "wait": "30s"})),
            StatusCode::OK,
        )
        .await,
    );
    let again = json_of(
        &app,
        fetch(json!({"tasks": ["render"], "wait": "30s"})),
        StatusCode::OK,
    )
    .await;
    let (id2, fresh) = only_job(&again);
    assert_eq!(id2, id);
    assert_eq!(again["jobs"][0]["attempt"], 2);
    for what in ["complete", "heartbeat"] {
        let body = json_of(
            &app,
            report(&id, what, json!({"lease_token": stale})),
            StatusCode::CONFLICT,
        )
        .await;
        assert_eq!(error_of(&body).0, "wrong_state");
    }
    json_of(
        &app,
        report(&id, "complete", json!({"lease_token": fresh, "result": 1})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(handle.result().await.unwrap().status, JobStatus::Completed);
    let stored = queue.job(handle.id()).await.unwrap();
    assert!(
        stored
            .logs
            .iter()
            .any(|l| l.message.contains("lease lapsed")),
        "{:?}",
        stored.logs
    );
}

#[actix_rt::test]
async fn a_long_poll_returns_when_a_job_arrives() {
    let queue = Queue::new();
    let app = test::init_service(remote_app(&queue)).await;
    let waiting = test::call_service(&app, fetch(json!({"tasks": ["mail"], "wait": "60s"})));
    let producer = async {
        // Runs once the fetch is parked on its first await.
        queue.create("mail", json!({"to": "ford"})).await.unwrap()
    };
    let (response, handle) = futures::join!(waiting, producer);
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = serde_json::from_slice(&test::read_body(response).await).unwrap();
    let (id, _) = only_job(&answer);
    assert_eq!(id, handle.id().to_string());
}

#[actix_rt::test]
async fn a_job_cancelled_while_leased_is_announced_at_the_next_heartbeat() {
    let queue = Queue::new();
    let app = test::init_service(remote_app(&queue)).await;
    let handle = queue.create("crawl", json!(null)).await.unwrap();
    let (id, token) = only_job(
        &json_of(
            &app,
            fetch(json!({"tasks": ["crawl"], "wait": "30s"})),
            StatusCode::OK,
        )
        .await,
    );
    queue.cancel(handle.id()).await.unwrap();
    assert_eq!(handle.result().await.unwrap().status, JobStatus::Cancelled);
    let beat = json_of(
        &app,
        report(&id, "heartbeat", json!({"lease_token": token})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(beat["cancelled"], true, "{beat}");
    let body = json_of(
        &app,
        report(&id, "complete", json!({"lease_token": token})),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(error_of(&body).0, "wrong_state");
}

#[actix_rt::test]
async fn only_admin_tokens_may_fetch_or_report() {
    let queue = Queue::new();
    let api = Api::new(queue.clone(), Auth::tokens().read_only("dash").admin("ops"));
    let app = test::init_service(App::new().service(api.scope("/kessel"))).await;
    let with = |token: Option<&str>, uri: &str| {
        let body = if uri.ends_with("/fetch") {
            json!({"tasks": ["t"]})
        } else {
            json!({"lease_token": "x"})
        };
        let req = TestRequest::post().uri(uri).set_json(body);
        match token {
            Some(t) => req.insert_header(("authorization", format!("Bearer {t}"))),
            None => req,
        }
        .to_request()
    };
    let id = JobId::new();
    for uri in [
        "/kessel/remote/fetch".to_owned(),
        format!("/kessel/remote/jobs/{id}/complete"),
    ] {
        let body = json_of(&app, with(None, &uri), StatusCode::UNAUTHORIZED).await;
        assert_eq!(error_of(&body).0, "unauthorized");
        let body = json_of(&app, with(Some("dash"), &uri), StatusCode::FORBIDDEN).await;
        assert_eq!(error_of(&body).0, "forbidden");
    }
    json_of(
        &app,
        with(Some("ops"), "/kessel/remote/fetch"),
        StatusCode::OK,
    )
    .await;
}

#[actix_rt::test]
async fn a_report_with_a_wrong_lease_token_is_409() {
    let queue = Queue::new();
    let app = test::init_service(remote_app(&queue)).await;
    queue.create("t", json!(null)).await.unwrap();
    let (id, token) = only_job(
        &json_of(
            &app,
            fetch(json!({"tasks": ["t"], "wait": "30s"})),
            StatusCode::OK,
        )
        .await,
    );
    for (what, extra) in [
        ("heartbeat", json!({})),
        ("log", json!({"message": "x"})),
        ("progress", json!({"current": 1, "total": 1})),
        ("complete", json!({})),
        ("fail", json!({"message": "x"})),
    ] {
        let mut body = extra;
        body["lease_token"] = json!("not-the-token");
        let answer = json_of(&app, report(&id, what, body), StatusCode::CONFLICT).await;
        assert_eq!(error_of(&answer).0, "wrong_state", "{what}");
    }
    // A job never fetched has no lease either.
    let other = JobId::new();
    let answer = json_of(
        &app,
        report(
            &other.to_string(),
            "complete",
            json!({"lease_token": token}),
        ),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(error_of(&answer).0, "wrong_state");
    // The right token still works.
    json_of(
        &app,
        report(&id, "complete", json!({"lease_token": token})),
        StatusCode::OK,
    )
    .await;
}

#[actix_rt::test]
async fn bad_remote_bodies_are_400_naming_the_field() {
    let queue = Queue::new();
    queue
        .define("local")
        .action(|_: kessel::JobContext<()>| async { Ok::<_, kessel::JobError>(()) })
        .unwrap();
    let app = test::init_service(remote_app(&queue)).await;
    let id = JobId::new();
    let cases = [
        (fetch(json!({})), "tasks"),
        (fetch(json!({"tasks": []})), "tasks"),
        (fetch(json!({"tasks": [""]})), "tasks[0]"),
        (fetch(json!({"tasks": ["a", "b:c"]})), "tasks[1]"),
        (fetch(json!({"tasks": ["a"], "n": 0})), "n"),
        (fetch(json!({"tasks": ["a"], "n": 101})), "n"),
        (fetch(json!({"tasks": ["a"], "lease": "soon"})), "lease"),
        (fetch(json!({"tasks": ["a"], "lease": "0s"})), "lease"),
        (fetch(json!({"tasks": ["a"], "wait": "2h"})), "wait"),
        (fetch(json!({"tasks": ["a"], "wiat": "1s"})), "wiat"),
        (
            report(&id.to_string(), "complete", json!({})),
            "lease_token",
        ),
        (
            report(&id.to_string(), "fail", json!({"lease_token": "x"})),
            "message",
        ),
        (
            report(
                &id.to_string(),
                "fail",
                json!({"lease_token": "x", "message": "m", "fatal": "yes"}),
            ),
            "fatal",
        ),
        (
            report(
                &id.to_string(),
                "progress",
                json!({"lease_token": "x", "current": -1, "total": 1}),
            ),
            "current",
        ),
        (
            report(
                &id.to_string(),
                "heartbeat",
                json!({"lease_token": "x", "lease": "x"}),
            ),
            "lease",
        ),
        (
            report(
                "not-an-id",
                "log",
                json!({"lease_token": "x", "message": "m"}),
            ),
            "id",
        ),
    ];
    for (req, field) in cases {
        let body = json_of(&app, req, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_of(&body).1.as_deref(), Some(field), "{body}");
    }
    // A task with a local handler in the API's process is not handed out.
    let body = json_of(
        &app,
        fetch(json!({"tasks": ["local"]})),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("local"),
        "{body}"
    );
}

/// The API on a real port, for clients in other threads and processes:
/// its base URL and the server's handle.
fn serve(queue: &Queue) -> (String, actix_web::dev::ServerHandle) {
    let api = Api::new(queue.clone(), Auth::tokens().read_only("dash").admin("ops"))
        .remote_retry(quick_retry());
    let server = actix_web::HttpServer::new(move || App::new().service(api.scope("/kessel")))
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (format!("http://{addr}/kessel"), handle)
}

#[cfg(feature = "remote")]
#[actix_rt::test]
async fn the_rust_remote_worker_works_jobs_end_to_end() {
    use kessel::remote::Worker;
    use kessel::{JobContext, JobError};

    let queue = Queue::new();
    let (url, server) = serve(&queue);
    let ok = queue.create("halve", json!(640)).await.unwrap();
    let bad = queue.create("halve", json!("wide")).await.unwrap();
    let worker = Worker::new(url.clone(), "ops")
        .concurrency(2)
        .wait(Duration::from_secs(30));
    worker
        .define("halve")
        .action(|job: JobContext<u32>| async move {
            job.log("halving", json!({"of": job.payload}));
            job.progress(1, 1);
            Ok::<_, JobError>(job.payload / 2)
        })
        .unwrap();
    let mut ran = 0;
    while ran < 2 {
        ran += worker.run_once().await.unwrap();
    }
    let result = ok.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    assert_eq!(result.value, Some(json!(320)));
    let stored = queue.job(ok.id()).await.unwrap();
    assert!(
        stored.logs.iter().any(|l| l.message == "halving"),
        "{:?}",
        stored.logs
    );
    assert_eq!(stored.progress.map(|p| p.current), Some(1));
    // A payload that does not decode is buried, as it is locally.
    let result = bad.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Buried);

    // A read-only token is an error `run` does not wait out.
    let reader = Worker::new(url, "dash").wait(Duration::ZERO);
    reader
        .define("halve")
        .action(|job: JobContext<u32>| async move { Ok::<_, JobError>(job.payload) })
        .unwrap();
    let err = reader.run().await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    server.stop(true).await;
}

#[actix_rt::test]
async fn the_python_example_works_a_job_end_to_end() {
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    if python.is_err() {
        assert!(
            std::env::var("KESSEL_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "python3 is not installed and KESSEL_REQUIRE_PYTHON=1"
        );
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let queue = Queue::new();
    let (url, server) = serve(&queue);
    let shouted = queue
        .create("shout", json!({"text": "hello"}))
        .await
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/remote_worker.py");
    let run = |url: String| {
        actix_rt::task::spawn_blocking(move || {
            std::process::Command::new("python3")
                .args([
                    script, &url, "shout", "--token", "ops", "--once", "--wait", "30",
                ])
                .output()
                .unwrap()
        })
    };
    let out = run(url.clone()).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = shouted.result().await.unwrap();
    assert_eq!(result.status, JobStatus::Completed);
    assert_eq!(
        result.value,
        Some(json!({"text": "HELLO", "worker": "python"}))
    );
    let stored = queue.job(shouted.id()).await.unwrap();
    assert!(
        stored.logs.iter().any(|l| l.message == "shouting"),
        "{:?}",
        stored.logs
    );

    // Its handler's ValueError is a fatal failure: the job is buried.
    let mute = queue.create("shout", json!({"volume": 11})).await.unwrap();
    let out = run(url).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mute.result().await.unwrap().status, JobStatus::Buried);
    server.stop(true).await;
}

#[cfg(feature = "remote")]
#[actix_rt::test]
async fn the_rust_remote_worker_signals_a_cancel_at_its_next_heartbeat() {
    use kessel::remote::Worker;
    use kessel::{JobContext, JobError};

    let queue = Queue::new();
    let (url, server) = serve(&queue);
    let handle = queue.create("watch", json!(null)).await.unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let (saw_tx, mut saw_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    // A lease of 60 ms: a heartbeat every 20 ms.
    let worker = Worker::new(url, "ops")
        .lease(Duration::from_millis(60))
        .wait(Duration::from_secs(30));
    worker
        .define("watch")
        .action(move |job: JobContext<Value>| {
            let started = started_tx.lock().unwrap().take();
            let saw = saw_tx.clone();
            async move {
                if let Some(started) = started {
                    let _ = started.send(());
                }
                job.cancelled().await;
                let _ = saw.send(job.is_cancelled());
                Err::<(), _>(JobError::transient("stopped"))
            }
        })
        .unwrap();
    let cancel = async {
        started_rx.await.unwrap();
        queue.cancel(handle.id()).await.unwrap();
    };
    // Bounded, so a heartbeat that never tells ends the test as a failure.
    let (ran, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        futures::join!(worker.run_once(), cancel)
    })
    .await
    .expect("the handler was never told of the cancel");
    assert_eq!(ran.unwrap(), 1);
    assert_eq!(saw_rx.recv().await, Some(true));
    assert_eq!(handle.result().await.unwrap().status, JobStatus::Cancelled);
    server.stop(true).await;
}

#[actix_rt::test]
async fn a_task_parks_no_more_jobs_than_its_remote_workers_asked_for() {
    let queue = Queue::new();
    let app = test::init_service(remote_app(&queue)).await;
    for n in 0..6 {
        queue.create("batch", json!(n)).await.unwrap();
    }
    let answer = json_of(
        &app,
        fetch(json!({"tasks": ["batch"], "n": 2, "wait": "30s"})),
        StatusCode::OK,
    )
    .await;
    let jobs = answer["jobs"].as_array().unwrap().len();
    assert!((1..=2).contains(&jobs), "{answer}");
    // Two slots were asked for: at most two jobs run (parked or leased);
    // the others wait for a remote worker to ask.
    let stats = queue.stats().await.unwrap();
    let running: u64 = stats
        .counts
        .iter()
        .filter(|c| c.task == "batch" && c.status == JobStatus::Running)
        .map(|c| c.count)
        .sum();
    assert!(running <= 2, "{running} running: {stats:?}");
}

/// A 1 ms lease, likely lapsed before the bridge handler even learns it
/// was handed out: the job still comes back for the next fetch. (The
/// race itself, a lease lapsed before the handler saw it, once stranded
/// the job; this test catches it only when the handler is slow.)
#[actix_rt::test]
async fn the_shortest_lease_lapses_and_the_job_is_handed_out_again() {
    let queue = Queue::new();
    let app = test::init_service(remote_app(&queue)).await;
    let handle = queue.create("flash", json!(null)).await.unwrap();
    let (id, _) = only_job(
        &json_of(
            &app,
            fetch(json!({"tasks": ["flash"], "lease": "1ms", "wait": "30s"})),
            StatusCode::OK,
        )
        .await,
    );
    let again = json_of(
        &app,
        fetch(json!({"tasks": ["flash"], "wait": "30s"})),
        StatusCode::OK,
    )
    .await;
    let (id2, token) = only_job(&again);
    assert_eq!(id2, id);
    json_of(
        &app,
        report(&id, "complete", json!({"lease_token": token})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(handle.result().await.unwrap().status, JobStatus::Completed);
}

#[actix_rt::test]
async fn the_rust_remote_worker_refills_a_slot_while_its_other_jobs_still_run() {
    use kessel::remote::Worker;
    use kessel::{JobContext, JobError};

    let queue = Queue::new();
    let (url, server) = serve(&queue);
    // Job 0 holds its slot until job 2 has run; jobs 1 and 2 are quick.
    let (ran_tx, mut ran_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    for n in 0..3u32 {
        queue.create("step", json!(n)).await.unwrap();
    }
    let worker = Worker::new(url, "ops")
        .concurrency(2)
        .wait(Duration::from_secs(30));
    let released = release.clone();
    worker
        .define("step")
        .action(move |job: JobContext<u32>| {
            let (ran, release) = (ran_tx.clone(), released.clone());
            async move {
                if job.payload == 0 {
                    release.notified().await;
                }
                let _ = ran.send(job.payload);
                Ok::<_, JobError>(())
            }
        })
        .unwrap();
    let running = actix_rt::spawn(async move { worker.run().await });
    // With two slots, job 2 can only run in the slot job 1 left while
    // job 0 still runs: a worker that fetched again only once all the
    // jobs of its last fetch were done would never get to it.
    let mut quick = Vec::new();
    while quick.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(30), ran_rx.recv())
            .await
            .expect("jobs 1 and 2 ran while job 0 held its slot")
            .expect("a job ran");
        quick.push(n);
    }
    quick.sort_unstable();
    assert_eq!(quick, [1, 2]);
    release.notify_one();
    assert_eq!(ran_rx.recv().await, Some(0));
    running.abort();
    server.stop(true).await;
}

#[actix_rt::test]
async fn a_final_report_with_fetch_hands_out_the_next_job_in_its_answer() {
    let queue = Queue::new();
    let app = test::init_service(remote_app(&queue)).await;
    let first = queue.create("resize", json!(1)).await.unwrap();
    let answer = json_of(
        &app,
        fetch(json!({"tasks": ["resize"], "wait": "30s"})),
        StatusCode::OK,
    )
    .await;
    let (id, token) = only_job(&answer);
    assert_eq!(id, first.id().to_string());
    // A bad `fetch` is a 400 naming the field, and the report is not
    // taken: the lease still holds.
    let body = json_of(
        &app,
        report(
            &id,
            "complete",
            json!({"lease_token": token, "fetch": {"tasks": ["resize"], "n": 0}}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_of(&body).1.as_deref(), Some("fetch.n"), "{body}");
    let body = json_of(
        &app,
        report(
            &id,
            "complete",
            json!({"lease_token": token, "fetch": {"tasks": [], "wait": "1s"}}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_of(&body).1.as_deref(), Some("fetch.tasks"), "{body}");

    // The report ends this job; its answer waits for the next one.
    let second = queue.create("resize", json!(2)).await.unwrap();
    let answer = json_of(
        &app,
        report(
            &id,
            "complete",
            json!({"lease_token": token, "result": "done",
                   "fetch": {"tasks": ["resize"], "n": 1, "wait": "30s"}}),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["ok"], true);
    let (next, next_token) = only_job(&answer);
    assert_eq!(next, second.id().to_string());
    assert_eq!(first.result().await.unwrap().status, JobStatus::Completed);

    // A failure may fetch too; with nothing left its wait runs out and
    // the answer holds no job.
    let answer = json_of(
        &app,
        report(
            &next,
            "fail",
            json!({"lease_token": next_token, "message": "no", "fatal": true,
                   "fetch": {"tasks": ["resize"], "wait": "10ms"}}),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer["jobs"], json!([]), "{answer}");
    assert_eq!(second.result().await.unwrap().status, JobStatus::Buried);
    // Without `fetch` the answer is as before.
    let third = queue.create("resize", json!(3)).await.unwrap();
    let answer = json_of(
        &app,
        fetch(json!({"tasks": ["resize"], "wait": "30s"})),
        StatusCode::OK,
    )
    .await;
    let (id, token) = only_job(&answer);
    assert_eq!(id, third.id().to_string());
    let answer = json_of(
        &app,
        report(&id, "complete", json!({"lease_token": token})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(answer, json!({"ok": true}));
}
