//! Tag suspensions, unique keys in `POST /jobs`, and bulk cancel, kick and
//! delete by filter.

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use kessel::web::{Api, Auth};
use kessel::{JobId, JobStatus};
use serde_json::{json, Value};

use crate::{error_of, get, id_of, json_of, memory_queue, open_app, post, send};

#[actix_rt::test]
async fn a_suspended_tag_holds_its_tasks_jobs_until_resumed() {
    let queue = memory_queue().await;
    let app = test::init_service(open_app(&queue)).await;
    json_of(
        &app,
        post("/kessel/tags/default/suspend", json!(null)),
        StatusCode::OK,
    )
    .await;
    let id = id_of(
        &json_of(
            &app,
            post("/kessel/jobs", json!({"task": "echo", "payload": 1})),
            StatusCode::CREATED,
        )
        .await,
    );
    let stats = json_of(&app, get("/kessel/stats"), StatusCode::OK).await;
    assert_eq!(stats["suspended"][0]["kind"], "tag", "{stats}");
    assert_eq!(stats["suspended"][0]["name"], "default");
    assert!(stats["suspended"][0]["by"].is_string() && stats["suspended"][0]["since"].is_string());
    let tasks = json_of(&app, get("/kessel/tasks"), StatusCode::OK).await;
    let echo = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "echo")
        .unwrap()
        .clone();
    assert_eq!(echo["suspended"]["kind"], "tag", "{tasks}");
    assert_eq!(echo["counts"]["ready"], 1, "held back: {tasks}");

    json_of(
        &app,
        post("/kessel/tags/default/resume", json!(null)),
        StatusCode::OK,
    )
    .await;
    assert_eq!(queue.result(id).await.unwrap().status, JobStatus::Completed);
    let stats = json_of(&app, get("/kessel/stats"), StatusCode::OK).await;
    assert_eq!(stats["suspended"], json!([]));
}

#[actix_rt::test]
async fn a_unique_key_a_live_job_holds_answers_that_job_as_a_duplicate() {
    let queue = memory_queue().await;
    let app = test::init_service(open_app(&queue)).await;
    let job = |unique: Value| {
        let mut body = json!({"task": "idle", "payload": 1, "delay": "1h"});
        body.as_object_mut()
            .unwrap()
            .extend(unique.as_object().unwrap().clone());
        post("/kessel/jobs", body)
    };
    let first = json_of(&app, job(json!({"unique": "sync:42"})), StatusCode::CREATED).await;
    assert_eq!(first["duplicate"], false);
    let again = json_of(&app, job(json!({"unique": "sync:42"})), StatusCode::OK).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["status"], "scheduled");

    let a = json_of(
        &app,
        job(json!({"unique_by_payload": true})),
        StatusCode::CREATED,
    )
    .await;
    let b = json_of(
        &app,
        job(json!({"unique_by_payload": true})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(b["id"], a["id"]);

    // A window outlives the job: cancelled, it still holds the key.
    let windowed = json!({"unique": "digest", "unique_scope": "window", "unique_window": "1h"});
    let w = json_of(&app, job(windowed.clone()), StatusCode::CREATED).await;
    queue.cancel(id_of(&w)).await.unwrap();
    let w2 = json_of(&app, job(windowed), StatusCode::OK).await;
    assert_eq!(w2["id"], w["id"]);
    // While waiting only: a cancelled holder frees it.
    let waiting = json!({"unique": "poll", "unique_scope": "waiting"});
    let p = json_of(&app, job(waiting.clone()), StatusCode::CREATED).await;
    queue.cancel(id_of(&p)).await.unwrap();
    let p2 = json_of(&app, job(waiting), StatusCode::CREATED).await;
    assert_ne!(p2["id"], p["id"]);

    // In a batch: each job decides on its own key, in order.
    let batch = json_of(
        &app,
        post(
            "/kessel/jobs/batch",
            json!({"jobs": [
                {"task": "idle", "delay": "1h", "unique": "b"},
                {"task": "idle", "delay": "1h", "unique": "b"},
                {"task": "idle", "delay": "1h"},
            ]}),
        ),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(batch["duplicates"], json!([false, true, false]));
    assert_eq!(batch["ids"][0], batch["ids"][1]);
    assert_ne!(batch["ids"][0], batch["ids"][2]);
}

#[actix_rt::test]
async fn bad_unique_fields_are_400_naming_the_field() {
    let queue = memory_queue().await;
    let app = test::init_service(open_app(&queue)).await;
    let cases = [
        (
            json!({"unique": "k", "unique_by_payload": true}),
            "unique_by_payload",
        ),
        (
            json!({"unique": "k", "unique_scope": "window"}),
            "unique_window",
        ),
        (
            json!({"unique": "k", "unique_scope": "window", "unique_window": "soon"}),
            "unique_window",
        ),
        (
            json!({"unique": "k", "unique_scope": "window", "unique_window": "0s"}),
            "unique",
        ),
        (
            json!({"unique": "k", "unique_window": "1h"}),
            "unique_window",
        ),
        (
            json!({"unique": "k", "unique_scope": "sometimes"}),
            "unique_scope",
        ),
        (json!({"unique": ""}), "unique"),
        (json!({"unique": "k".repeat(513)}), "unique"),
        (json!({"unique_by_payload": "yes"}), "unique_by_payload"),
    ];
    for (fields, field) in cases {
        let mut body = json!({"task": "idle"});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let answer = json_of(
            &app,
            post("/kessel/jobs", body.clone()),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(
            error_of(&answer).1.as_deref(),
            Some(field),
            "{body} → {answer}"
        );
    }
    let answer = json_of(
        &app,
        post(
            "/kessel/jobs/batch",
            json!({"jobs": [{"task": "idle", "unique": "a"}, {"task": "idle", "unique": "b", "unique_window": "1h"}]}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        error_of(&answer).1.as_deref(),
        Some("jobs[1].unique_window")
    );
    assert!(
        queue.stats().await.unwrap().counts.is_empty(),
        "nothing created"
    );
}

async fn create<S, B>(app: &S, body: Value) -> JobId
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    B: actix_web::body::MessageBody + 'static,
{
    id_of(&json_of(app, post("/kessel/jobs", body), StatusCode::CREATED).await)
}

#[actix_rt::test]
async fn bulk_actions_by_filter_count_what_they_did_and_want_confirm_for_all() {
    let queue = memory_queue().await;
    let app = test::init_service(open_app(&queue)).await;
    let mut idle = Vec::new();
    for n in 0..3 {
        idle.push(
            create(
                &app,
                json!({"task": "idle", "payload": n, "reference": "batch-7"}),
            )
            .await,
        );
    }
    let other = create(&app, json!({"task": "other", "delay": "1h"})).await;
    let mut failed = Vec::new();
    for _ in 0..2 {
        let id = create(&app, json!({"task": "fail"})).await;
        assert_eq!(queue.result(id).await.unwrap().status, JobStatus::Buried);
        failed.push(id);
    }

    // No filter, no confirmation: refused, nothing done.
    for action in ["cancel", "kick", "delete"] {
        let body = json_of(
            &app,
            post(&format!("/kessel/jobs/{action}"), json!(null)),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(
            error_of(&body).1.as_deref(),
            Some("confirm"),
            "{action}: {body}"
        );
    }
    for (query, field) in [
        ("confirm=yes", "confirm"),
        ("task=idle&dry_run=maybe", "dry_run"),
        ("status=bogus", "status"),
        ("created_after=yesterday", "created_after"),
        ("colour=red", "colour"),
    ] {
        let body = json_of(
            &app,
            post(&format!("/kessel/jobs/cancel?{query}"), json!(null)),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_of(&body).1.as_deref(), Some(field), "{query}: {body}");
    }
    assert_eq!(queue.job(other).await.unwrap().status, JobStatus::Scheduled);

    // A dry run counts.
    let counted = json_of(
        &app,
        post(
            "/kessel/jobs/cancel?reference=batch-7&dry_run=true",
            json!(null),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        counted,
        json!({"action": "cancel", "matched": 3, "done": 0, "skipped": 0, "dry_run": true})
    );
    assert_eq!(queue.job(idle[0]).await.unwrap().status, JobStatus::Ready);

    let cancelled = json_of(
        &app,
        post(
            "/kessel/jobs/cancel?task=idle,other&status=ready",
            json!(null),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(cancelled["matched"], 3, "{cancelled}");
    assert_eq!(cancelled["done"], 3);
    for id in &idle {
        assert_eq!(queue.job(*id).await.unwrap().status, JobStatus::Cancelled);
    }
    assert_eq!(queue.job(other).await.unwrap().status, JobStatus::Scheduled);

    // Kick by task: the buried jobs run again (and are buried again).
    let kicked = json_of(
        &app,
        post("/kessel/jobs/kick?task=fail", json!(null)),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (kicked["matched"].as_u64(), kicked["done"].as_u64()),
        (Some(2), Some(2))
    );
    for id in &failed {
        assert_eq!(queue.result(*id).await.unwrap().status, JobStatus::Buried);
        assert_eq!(queue.job(*id).await.unwrap().attempts, 2);
    }

    // Everything, confirmed: the ended jobs go, the pending one is skipped.
    let deleted = json_of(
        &app,
        post("/kessel/jobs/delete?confirm=all", json!(null)),
        StatusCode::OK,
    )
    .await;
    assert_eq!(deleted["matched"], 6, "{deleted}");
    assert_eq!(deleted["done"], 5);
    assert_eq!(deleted["skipped"], 1);
    assert!(queue.job(idle[0]).await.is_err());
    assert_eq!(queue.job(other).await.unwrap().status, JobStatus::Scheduled);
}

#[actix_rt::test]
async fn tags_and_bulk_actions_are_for_admin_tokens() {
    let queue = memory_queue().await;
    let auth = Auth::tokens().read_only("reader").admin("admin");
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), auth).scope("/kessel")))
            .await;
    for uri in [
        "/kessel/tags/default/suspend",
        "/kessel/tags/default/resume",
        "/kessel/jobs/cancel?task=echo",
        "/kessel/jobs/kick?task=echo",
        "/kessel/jobs/delete?confirm=all",
    ] {
        let none = send(&app, TestRequest::post().uri(uri).to_request()).await;
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{uri}");
        let reader = TestRequest::post()
            .uri(uri)
            .insert_header(("authorization", "Bearer reader"))
            .to_request();
        assert_eq!(
            send(&app, reader).await.status(),
            StatusCode::FORBIDDEN,
            "{uri}"
        );
        let admin = TestRequest::post()
            .uri(uri)
            .insert_header(("authorization", "Bearer admin"))
            .to_request();
        assert_eq!(send(&app, admin).await.status(), StatusCode::OK, "{uri}");
    }
}
