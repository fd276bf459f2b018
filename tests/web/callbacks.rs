//! Webhook callbacks over the API: a job's own callback URL at create,
//! and the deliveries of a job's callback in `GET /jobs/{id}`.

use actix_web::http::StatusCode;
use actix_web::test;
use futures::StreamExt;
use kessel::event::{Event, Filter, JobEventKind};
use kessel::webhook::{Webhooks, TASK};
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
