//! `/schedules` (feature `cron`): list, read, upsert, remove, pause,
//! resume and run now, with the 400/401/403/404 answers.

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use kessel::web::{Api, Auth};
use kessel::Queue;
use serde_json::json;

use crate::{error_of, get, json_of, post, send};

/// A queue that runs no schedule service: ticks happen only when a test
/// asks, so nothing here depends on the clock.
async fn manual_queue() -> Queue {
    Queue::builder().manual_schedules().build().await.unwrap()
}

fn put(uri: &str, body: serde_json::Value) -> actix_http::Request {
    TestRequest::put().uri(uri).set_json(body).to_request()
}

#[actix_rt::test]
async fn schedules_are_upserted_listed_paused_resumed_run_and_removed_on_memory() {
    schedule_lifecycle(manual_queue().await).await;
}

#[cfg(feature = "sqlite")]
#[actix_rt::test]
async fn schedules_are_upserted_listed_paused_resumed_run_and_removed_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = kessel::store::SqliteStore::open(dir.path().join("jobs.db"))
        .await
        .unwrap();
    let queue = Queue::builder()
        .store(std::sync::Arc::new(store))
        .manual_schedules()
        .build()
        .await
        .unwrap();
    schedule_lifecycle(queue).await;
}

async fn schedule_lifecycle(queue: Queue) {
    let app = test::init_service(
        App::new().service(Api::new(queue.clone(), Auth::none()).scope("/kessel")),
    )
    .await;
    let nightly = json!({
        "task": "report",
        "cron": "0 3 * * *",
        "time_zone": "Europe/Berlin",
        "payload": {"window": "24h"},
        "missed": "skip",
        "grace": "15m",
    });
    let created = json_of(
        &app,
        put("/kessel/schedules/nightly", nightly.clone()),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["outcome"], "created");
    assert_eq!(created["schedule"]["cron"], "0 3 * * *");
    assert_eq!(created["schedule"]["time_zone"], "Europe/Berlin");
    assert_eq!(created["schedule"]["missed"], "skip");
    assert_eq!(created["schedule"]["payload"], json!({"window": "24h"}));
    assert_eq!(created["schedule"]["paused"], false);
    let again = json_of(
        &app,
        put("/kessel/schedules/nightly", nightly),
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["outcome"], "unchanged");
    assert_eq!(
        again["schedule"]["next_run"],
        created["schedule"]["next_run"]
    );
    let every = json_of(
        &app,
        put(
            "/kessel/schedules/rollup",
            json!({"task": "roll up", "every": "5m"}),
        ),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(every["schedule"]["every"], "5m");
    assert!(every["schedule"].get("cron").is_none(), "{every}");
    let changed = json_of(
        &app,
        put(
            "/kessel/schedules/rollup",
            json!({"task": "roll up", "every": "90s"}),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["outcome"], "changed");
    assert_eq!(changed["schedule"]["every"], "90s");

    let listed = json_of(&app, get("/kessel/schedules"), StatusCode::OK).await;
    let names: Vec<_> = listed["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["nightly", "rollup"]);

    json_of(
        &app,
        post("/kessel/schedules/nightly/pause", json!(null)),
        StatusCode::OK,
    )
    .await;
    let paused = json_of(&app, get("/kessel/schedules/nightly"), StatusCode::OK).await;
    assert_eq!(paused["paused"], true);
    assert!(queue.schedules().get("nightly").await.unwrap().paused);

    // Run now: a job of the task with the schedule's payload, recorded as
    // its last job even while paused.
    let ran = json_of(
        &app,
        post("/kessel/schedules/nightly/run-now", json!(null)),
        StatusCode::CREATED,
    )
    .await;
    let job: kessel::JobId = ran["id"].as_str().unwrap().parse().unwrap();
    let stored = queue.job(job).await.unwrap();
    assert_eq!(&*stored.task, "report");
    let info = json_of(&app, get("/kessel/schedules/nightly"), StatusCode::OK).await;
    assert_eq!(info["last_job"], job.to_string());

    json_of(
        &app,
        post("/kessel/schedules/nightly/resume", json!(null)),
        StatusCode::OK,
    )
    .await;
    assert!(!queue.schedules().get("nightly").await.unwrap().paused);

    json_of(
        &app,
        TestRequest::delete()
            .uri("/kessel/schedules/nightly")
            .to_request(),
        StatusCode::OK,
    )
    .await;
    let body = json_of(
        &app,
        get("/kessel/schedules/nightly"),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(error_of(&body).0, "schedule_not_found");
    // The job it created stays.
    assert!(queue.job(job).await.is_ok());
}

#[actix_rt::test]
async fn an_unknown_schedule_is_404_for_every_verb() {
    let queue = manual_queue().await;
    let app =
        test::init_service(App::new().service(Api::new(queue, Auth::none()).scope("/kessel")))
            .await;
    for req in [
        get("/kessel/schedules/nope"),
        TestRequest::delete()
            .uri("/kessel/schedules/nope")
            .to_request(),
        post("/kessel/schedules/nope/pause", json!(null)),
        post("/kessel/schedules/nope/resume", json!(null)),
        post("/kessel/schedules/nope/run-now", json!(null)),
    ] {
        let body = json_of(&app, req, StatusCode::NOT_FOUND).await;
        assert_eq!(error_of(&body).0, "schedule_not_found", "{body}");
    }
}

#[actix_rt::test]
async fn a_bad_cron_time_zone_or_duration_is_400_naming_the_field() {
    let queue = manual_queue().await;
    let app = test::init_service(
        App::new().service(Api::new(queue.clone(), Auth::none()).scope("/kessel")),
    )
    .await;
    let cases = [
        (json!({"task": "t", "cron": "61 * * * *"}), "cron"),
        (
            json!({"task": "t", "cron": "* * * * *", "time_zone": "Mars/Olympus"}),
            "time_zone",
        ),
        (json!({"task": "t", "every": "soon"}), "every"),
        (json!({"task": "t", "every": "0s"}), "every"),
        (
            json!({"task": "t", "cron": "@daily", "every": "1m"}),
            "every",
        ),
        (json!({"task": "t"}), "cron"),
        (
            json!({"task": "t", "every": "1m", "grace": "a while"}),
            "grace",
        ),
        (json!({"task": " ", "every": "1m"}), "task"),
        (
            json!({"task": "t", "every": "1m", "missed": "twice"}),
            "missed",
        ),
        (json!({"task": "t", "every": "1m", "when": "now"}), "when"),
    ];
    for (body, field) in cases {
        let answer = json_of(
            &app,
            put("/kessel/schedules/s", body.clone()),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(
            error_of(&answer).1.as_deref(),
            Some(field),
            "{body} → {answer}"
        );
    }
    assert!(
        queue.schedules().list().await.unwrap().is_empty(),
        "nothing stored"
    );
}

#[actix_rt::test]
async fn reading_schedules_takes_any_token_changing_them_an_admin_one() {
    let queue = manual_queue().await;
    let auth = Auth::tokens().read_only("reader").admin("admin");
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), auth).scope("/kessel")))
            .await;
    let with = |req: TestRequest, token: Option<&str>| match token {
        Some(token) => req
            .insert_header(("authorization", format!("Bearer {token}")))
            .to_request(),
        None => req.to_request(),
    };
    let upsert = || {
        TestRequest::put()
            .uri("/kessel/schedules/tick")
            .set_json(json!({"task": "ping", "every": "1m"}))
    };
    assert_eq!(
        send(&app, with(upsert(), None)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, with(upsert(), Some("reader"))).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, with(upsert(), Some("admin"))).await.status(),
        StatusCode::CREATED
    );
    for verb in ["pause", "resume", "run-now"] {
        let req = TestRequest::post().uri(&format!("/kessel/schedules/tick/{verb}"));
        assert_eq!(
            send(&app, with(req, Some("reader"))).await.status(),
            StatusCode::FORBIDDEN,
            "{verb}"
        );
    }
    let delete = TestRequest::delete().uri("/kessel/schedules/tick");
    assert_eq!(
        send(&app, with(delete, Some("reader"))).await.status(),
        StatusCode::FORBIDDEN
    );
    let list = TestRequest::get().uri("/kessel/schedules");
    assert_eq!(
        send(&app, with(list, None)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    for uri in ["/kessel/schedules", "/kessel/schedules/tick"] {
        let req = TestRequest::get().uri(uri);
        assert_eq!(
            send(&app, with(req, Some("reader"))).await.status(),
            StatusCode::OK
        );
    }
    assert!(!queue.schedules().get("tick").await.unwrap().paused);
}
