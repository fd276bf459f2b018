//! Webhook callbacks over the API: a job's own callback URL at create,
//! and the deliveries of a job's callback in `GET /jobs/{id}`.

use actix_web::http::StatusCode;
use actix_web::test;
use futures::StreamExt;
use kessel::event::{Event, Filter, JobEventKind};
use kessel::webhook::{verify_signature, Webhooks, SIGNATURE_HEADER, TASK};
use kessel::{JobContext, JobError, Queue, RetryPolicy};
use serde_json::{json, Value};

use crate::{error_of, get, id_of, json_of, open_app, post};

/// A port nothing listens on: a delivery there fails at once.
const NOWHERE: &str = "http://127.0.0.1:9/hooks";

/// A queue whose `echo` jobs complete, with webhooks delivered on the tag
/// `webhooks` (not worked until a test starts it), one attempt each.
fn hooked_queue() -> Queue {
    let queue = Queue::new();
    queue
        .webhooks(
            Webhooks::new()
                .secret("default", "s3cret")
                .tag("webhooks")
                .retry(RetryPolicy::none()),
        )
        .unwrap();
    queue
        .define("echo")
        .action(|job: JobContext<Value>| async move { Ok::<_, JobError>(job.payload) })
        .unwrap();
    queue.process(["default"]).start().unwrap();
    queue
}

/// Waits for the next job event on `events` that `done` accepts.
async fn next_event(events: &mut kessel::event::EventStream, done: impl Fn(&JobEventKind) -> bool) {
    while let Some(event) = events.next().await {
        if let Event::Job(e) = event {
            if done(&e.kind) {
                return;
            }
        }
    }
    panic!("the event stream ended");
}

#[actix_rt::test]
async fn a_job_created_with_a_callback_shows_it_and_each_delivery_as_it_goes() {
    let queue = hooked_queue();
    let mut echoes = queue.events(Filter::Task("echo".into()));
    let mut events = queue.events(Filter::Task(TASK.into()));
    let app = test::init_service(open_app(&queue)).await;
    let created = json_of(
        &app,
        post(
            "/kessel/jobs",
            json!({"task": "echo", "payload": 1, "callback": NOWHERE}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let id = id_of(&created);
    // The job ran (its delivery is made in the same turn); the delivery
    // waits, as nobody works `webhooks` yet.
    next_event(&mut echoes, JobEventKind::is_final).await;
    let job = json_of(&app, get(&format!("/kessel/jobs/{id}")), StatusCode::OK).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["callback"], NOWHERE);
    let deliveries = job["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1, "{job}");
    let waiting = &deliveries[0];
    assert_eq!(waiting["url"], NOWHERE);
    assert_eq!(waiting["job_status"], "completed");
    assert_eq!(waiting["status"], "ready");
    assert_eq!(waiting["attempts"], 0);
    assert_eq!(waiting["last_error"], Value::Null);
    assert!(waiting["next_attempt_at"].is_string(), "{waiting}");
    assert_eq!(waiting["finished_at"], Value::Null);

    // Its one attempt fails (nothing listens): buried, with the error.
    queue.process(["webhooks"]).start().unwrap();
    next_event(&mut events, JobEventKind::is_final).await;
    let job = json_of(&app, get(&format!("/kessel/jobs/{id}")), StatusCode::OK).await;
    let ended = &job["deliveries"][0];
    assert_eq!(ended["id"], waiting["id"]);
    assert_eq!(ended["status"], "buried", "{job}");
    assert_eq!(ended["attempts"], 1);
    assert!(
        ended["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1:9")),
        "{ended}"
    );
    assert!(ended["finished_at"].is_string(), "{ended}");
    assert!(ended.get("next_attempt_at").is_none(), "{ended}");
    // The delivery is a job: its attempts are in its own log.
    let delivery = json_of(
        &app,
        get(&format!("/kessel/jobs/{}", ended["id"].as_str().unwrap())),
        StatusCode::OK,
    )
    .await;
    assert_eq!(delivery["task"], TASK);
    assert!(
        delivery["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"].as_str().unwrap_or("").starts_with("attempt 1")),
        "{delivery}"
    );
}

#[actix_rt::test]
async fn a_job_without_a_callback_shows_no_url_and_no_deliveries() {
    let queue = hooked_queue();
    let app = test::init_service(open_app(&queue)).await;
    let created = json_of(
        &app,
        post("/kessel/jobs", json!({"task": "echo", "payload": 2})),
        StatusCode::CREATED,
    )
    .await;
    let id = id_of(&created);
    let job = json_of(&app, get(&format!("/kessel/jobs/{id}")), StatusCode::OK).await;
    assert!(job.get("callback").is_none(), "{job}");
    assert_eq!(job["deliveries"], json!([]));
    // Lists leave deliveries out.
    let page = json_of(&app, get("/kessel/jobs?task=echo"), StatusCode::OK).await;
    assert!(page["jobs"][0].get("deliveries").is_none(), "{page}");
}

#[actix_rt::test]
async fn a_bad_callback_url_is_400_naming_the_field_and_creates_nothing() {
    let queue = hooked_queue();
    let app = test::init_service(open_app(&queue)).await;
    for url in ["ftp://example.com/x", "example.com/hooks", "http://", ""] {
        let body = json_of(
            &app,
            post("/kessel/jobs", json!({"task": "echo", "callback": url})),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(
            error_of(&body),
            ("invalid_field".into(), Some("callback".into())),
            "{url:?}: {body}"
        );
    }
    let body = json_of(
        &app,
        post(
            "/kessel/jobs/batch",
            json!({"jobs": [
                {"task": "echo", "callback": NOWHERE},
                {"task": "echo", "callback": "mailto:ops@example.com"},
            ]}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        error_of(&body),
        ("invalid_field".into(), Some("jobs[1].callback".into())),
        "{body}"
    );
    let page = json_of(&app, get("/kessel/jobs"), StatusCode::OK).await;
    assert_eq!(page["jobs"], json!([]), "nothing was created: {page}");
}

#[actix_rt::test]
async fn a_batch_gives_each_job_its_own_callback() {
    let queue = hooked_queue();
    let app = test::init_service(open_app(&queue)).await;
    let created = json_of(
        &app,
        post(
            "/kessel/jobs/batch",
            json!({"jobs": [
                {"task": "echo", "callback": "http://127.0.0.1:9/a", "delay": "1h"},
                {"task": "echo", "delay": "1h"},
            ]}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let ids = created["ids"].as_array().unwrap();
    let first = json_of(
        &app,
        get(&format!("/kessel/jobs/{}", ids[0].as_str().unwrap())),
        StatusCode::OK,
    )
    .await;
    assert_eq!(first["callback"], "http://127.0.0.1:9/a");
    let second = json_of(
        &app,
        get(&format!("/kessel/jobs/{}", ids[1].as_str().unwrap())),
        StatusCode::OK,
    )
    .await;
    assert!(second.get("callback").is_none(), "{second}");
}

/// A receiver on a free localhost port that answers 200 to every request
/// and hands over each one's signature header and body.
fn receiver() -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut signature, mut length) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    let value = value.trim().to_owned();
                    match name.trim().to_ascii_lowercase().as_str() {
                        "content-length" => length = value.parse().unwrap_or(0),
                        n if n == SIGNATURE_HEADER => signature = value,
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send((signature, body));
        }
    });
    (url, rx)
}

#[actix_rt::test]
async fn a_job_created_with_a_callback_secret_is_signed_with_that_secret() {
    const PARTNER: &[u8] = b"the secret partner A was given";
    let queue = Queue::new();
    queue
        .webhooks(
            Webhooks::new()
                .secret("default", "s3cret")
                .secret("partner-a", PARTNER)
                .retry(RetryPolicy::none()),
        )
        .unwrap();
    queue
        .define("echo")
        .action(|job: JobContext<Value>| async move { Ok::<_, JobError>(job.payload) })
        .unwrap();
    let mut events = queue.events(Filter::Task(TASK.into()));
    queue.process(["default"]).start().unwrap();
    let app = test::init_service(open_app(&queue)).await;
    let (url, requests) = receiver();
    let created = json_of(
        &app,
        post(
            "/kessel/jobs",
            json!({"task": "echo", "payload": 1, "callback": url, "callback_secret": "partner-a"}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let id = id_of(&created);
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        next_event(&mut events, JobEventKind::is_final),
    )
    .await
    .expect("the delivery ends within 60 s");
    let job = json_of(&app, get(&format!("/kessel/jobs/{id}")), StatusCode::OK).await;
    assert_eq!(job["callback_secret"], "partner-a", "the name only: {job}");
    assert_eq!(job["deliveries"][0]["status"], "completed", "{job}");
    let (signature, body) = requests
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the receiver got the callback");
    let window = std::time::Duration::from_secs(300);
    assert_eq!(verify_signature(PARTNER, &signature, &body, window), Ok(()));
    assert!(
        verify_signature(b"s3cret", &signature, &body, window).is_err(),
        "not signed with the default secret"
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["job_id"], id.to_string());
}

#[actix_rt::test]
async fn a_bad_callback_secret_is_400_naming_the_field_and_creates_nothing() {
    let queue = hooked_queue();
    let app = test::init_service(open_app(&queue)).await;
    let long = "k".repeat(201);
    for (job, field) in [
        (
            json!({"task": "echo", "callback": NOWHERE, "callback_secret": ""}),
            "callback_secret",
        ),
        (
            json!({"task": "echo", "callback": NOWHERE, "callback_secret": long}),
            "callback_secret",
        ),
        (
            json!({"task": "echo", "callback": NOWHERE, "callback_secret": "a\nb"}),
            "callback_secret",
        ),
        (
            json!({"task": "echo", "callback_secret": "partner-a"}),
            "callback_secret",
        ),
        (
            json!({"task": "echo", "callback": NOWHERE, "callback_secret": 7}),
            "callback_secret",
        ),
        (
            json!({"task": "echo", "callback": "ftp://x", "callback_secret": "partner-a"}),
            "callback",
        ),
    ] {
        let body = json_of(
            &app,
            post("/kessel/jobs", job.clone()),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_of(&body).1.as_deref(), Some(field), "{job}: {body}");
    }
    let body = json_of(
        &app,
        post(
            "/kessel/jobs/batch",
            json!({"jobs": [
                {"task": "echo", "callback": NOWHERE, "callback_secret": "partner-a"},
                {"task": "echo", "callback_secret": "partner-a"},
            ]}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        error_of(&body),
        (
            "invalid_field".into(),
            Some("jobs[1].callback_secret".into())
        ),
        "{body}"
    );
    let page = json_of(&app, get("/kessel/jobs"), StatusCode::OK).await;
    assert_eq!(page["jobs"], json!([]), "nothing was created: {page}");
}
