//! The HTTP API (feature `web`) end to end through actix-web's test
//! service, on the memory store and on SQLite.

use std::pin::Pin;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use kessel::web::{Api, Auth, Denied, Role};
use kessel::{JobContext, JobError, JobId, JobStatus, Queue};
use serde_json::{json, Value};

mod web {
    pub(crate) mod bulk;
    #[cfg(feature = "webhooks")]
    pub(crate) mod callbacks;
    pub(crate) mod fuzz;
    pub(crate) mod groups;
    pub(crate) mod remote;
    #[cfg(feature = "cron")]
    pub(crate) mod schedules;
}

/// A queue with three tasks: `echo` returns its payload, `fail` fails
/// fatally (so its jobs are buried), `slow` waits to be cancelled.
async fn with_tasks(queue: Queue) -> Queue {
    queue
        .define("echo")
        .action(|job: JobContext<Value>| async move { Ok::<_, JobError>(job.payload) })
        .unwrap();
    queue
        .define("fail")
        .action(|_: JobContext<Value>| async move { Err::<(), _>(JobError::fatal("always")) })
        .unwrap();
    queue.process(["default"]).concurrency(4).start().unwrap();
    queue
}

async fn memory_queue() -> Queue {
    with_tasks(Queue::new()).await
}

#[cfg(feature = "sqlite")]
async fn sqlite_queue(dir: &tempfile::TempDir) -> Queue {
    with_tasks(Queue::sqlite(dir.path().join("jobs.db")).await.unwrap()).await
}

type Response = ServiceResponse<actix_web::body::BoxBody>;

/// Sends `req` and returns the response with its body boxed.
async fn send<S, B>(app: &S, req: actix_http::Request) -> Response
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    test::call_service(app, req).await.map_into_boxed_body()
}

/// Sends `req` and reads the JSON body, checking the status.
async fn json_of<S, B>(app: &S, req: actix_http::Request, status: StatusCode) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    let resp = send(app, req).await;
    let got = resp.status();
    let body = test::read_body(resp).await;
    let value: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    assert_eq!(got, status, "body: {value}");
    value
}

/// Checks the error shape and returns (code, field).
fn error_of(body: &Value) -> (String, Option<String>) {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"));
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (
        error["code"].as_str().expect("code").to_owned(),
        error
            .get("field")
            .map(|f| f.as_str().expect("field is text").to_owned()),
    )
}

fn post(uri: &str, body: Value) -> actix_http::Request {
    TestRequest::post().uri(uri).set_json(body).to_request()
}

fn get(uri: &str) -> actix_http::Request {
    TestRequest::get().uri(uri).to_request()
}

fn open_app(
    queue: &Queue,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new().service(Api::new(queue.clone(), Auth::none()).scope("/kessel"))
}

fn id_of(body: &Value) -> JobId {
    body["id"].as_str().expect("id").parse().expect("a job id")
}

/// create → get → list → cancel → kick, and the 404/409 answers.
async fn job_lifecycle(queue: Queue) {
    let app = test::init_service(open_app(&queue)).await;

    // Create and read back.
    let created = json_of(
        &app,
        post(
            "/kessel/jobs",
            json!({"task": "echo", "payload": {"n": 1}, "reference": "r1"}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let id = id_of(&created);
    assert_eq!(queue.result(id).await.unwrap().status, JobStatus::Completed);
    let job = json_of(&app, get(&format!("/kessel/jobs/{id}")), StatusCode::OK).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["payload"], json!({"n": 1}));
    assert_eq!(job["result"], json!({"n": 1}));
    assert_eq!(job["reference"], "r1");
    assert_eq!(job["attempts"], 1);
    assert!(job["finished_at"].is_string(), "{job}");
    assert!(!job["logs"].as_array().unwrap().is_empty(), "{job}");

    // Kicking a completed job is a conflict.
    let body = json_of(
        &app,
        post(&format!("/kessel/jobs/{id}/kick"), json!(null)),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(error_of(&body).0, "wrong_state");

    // A delayed job is cancelled once; the second cancel conflicts.
    let delayed = json_of(
        &app,
        post("/kessel/jobs", json!({"task": "echo", "delay": "1h"})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(delayed["status"], "scheduled");
    let delayed = id_of(&delayed);
    json_of(
        &app,
        TestRequest::post()
            .uri(&format!("/kessel/jobs/{delayed}/cancel"))
            .to_request(),
        StatusCode::OK,
    )
    .await;
    let body = json_of(
        &app,
        TestRequest::post()
            .uri(&format!("/kessel/jobs/{delayed}/cancel"))
            .to_request(),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(error_of(&body).0, "wrong_state");

    // A pending job cannot be deleted; cancelled, it can, once.
    let pending = id_of(
        &json_of(
            &app,
            post("/kessel/jobs", json!({"task": "echo", "delay": "1h"})),
            StatusCode::CREATED,
        )
        .await,
    );
    let delete = |id: JobId| {
        TestRequest::delete()
            .uri(&format!("/kessel/jobs/{id}"))
            .to_request()
    };
    let body = json_of(&app, delete(pending), StatusCode::CONFLICT).await;
    assert_eq!(error_of(&body).0, "wrong_state");
    queue.cancel(pending).await.unwrap();
    json_of(&app, delete(pending), StatusCode::OK).await;
    json_of(
        &app,
        get(&format!("/kessel/jobs/{pending}")),
        StatusCode::NOT_FOUND,
    )
    .await;
    json_of(&app, delete(pending), StatusCode::NOT_FOUND).await;

    // A buried job is kicked back and buried again.
    let failing = id_of(
        &json_of(
            &app,
            post("/kessel/jobs", json!({"task": "fail"})),
            StatusCode::CREATED,
        )
        .await,
    );
    assert_eq!(
        queue.result(failing).await.unwrap().status,
        JobStatus::Buried
    );
    json_of(
        &app,
        TestRequest::post()
            .uri(&format!("/kessel/jobs/{failing}/kick"))
            .to_request(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        queue.result(failing).await.unwrap().status,
        JobStatus::Buried
    );
    let job = json_of(
        &app,
        get(&format!("/kessel/jobs/{failing}")),
        StatusCode::OK,
    )
    .await;
    assert_eq!(job["attempts"], 2);

    // Lists: by status, by task, by reference.
    let page = json_of(&app, get("/kessel/jobs?status=cancelled"), StatusCode::OK).await;
    let ids: Vec<_> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].clone())
        .collect();
    assert_eq!(ids, [json!(delayed.to_string())]);
    let page = json_of(
        &app,
        get("/kessel/jobs?task=echo,fail&status=completed,buried"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2, "{page}");
    assert!(page.get("next_cursor").is_none(), "{page}");
    let page = json_of(&app, get("/kessel/jobs?reference=r1"), StatusCode::OK).await;
    assert_eq!(page["jobs"][0]["id"], json!(id.to_string()));

    // Unknown and malformed ids.
    let unknown = JobId::new();
    for req in [
        get(&format!("/kessel/jobs/{unknown}")),
        TestRequest::post()
            .uri(&format!("/kessel/jobs/{unknown}/cancel"))
            .to_request(),
        TestRequest::post()
            .uri(&format!("/kessel/jobs/{unknown}/kick"))
            .to_request(),
    ] {
        let body = json_of(&app, req, StatusCode::NOT_FOUND).await;
        assert_eq!(error_of(&body).0, "job_not_found");
    }
    let body = json_of(
        &app,
        get("/kessel/jobs/not-a-uuid"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_of(&body).1.as_deref(), Some("id"));
}

#[actix_rt::test]
async fn job_lifecycle_on_memory() {
    job_lifecycle(memory_queue().await).await;
}

#[cfg(feature = "sqlite")]
#[actix_rt::test]
async fn job_lifecycle_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    job_lifecycle(sqlite_queue(&dir).await).await;
}

/// Pages of 2 over 5 jobs: every job once, newest first, and jobs created
/// while paging do not shift the pages.
async fn cursor_paging(queue: Queue) {
    let app = test::init_service(open_app(&queue)).await;
    let jobs: Vec<Value> = (0..5)
        .map(|n| json!({"task": "later", "payload": n, "delay": "1h"}))
        .collect();
    let created = json_of(
        &app,
        post("/kessel/jobs/batch", json!({"jobs": jobs})),
        StatusCode::CREATED,
    )
    .await;
    let mut expected: Vec<String> = created["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(expected.len(), 5);
    expected.reverse();

    let mut seen = Vec::new();
    let mut uri = "/kessel/jobs?task=later&limit=2".to_owned();
    loop {
        let page = json_of(&app, get(&uri), StatusCode::OK).await;
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        // A job created between pages is not on the later ones.
        json_of(
            &app,
            post("/kessel/jobs", json!({"task": "later", "delay": "1h"})),
            StatusCode::CREATED,
        )
        .await;
        match page.get("next_cursor") {
            Some(cursor) => {
                uri = format!(
                    "/kessel/jobs?task=later&limit=2&cursor={}",
                    cursor.as_str().unwrap()
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, expected);

    let body = json_of(
        &app,
        get("/kessel/jobs?cursor=nonsense"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_of(&body).1.as_deref(), Some("cursor"));
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("status=sleeping", "status"),
        ("order=sideways", "order"),
        ("created_after=yesterday", "created_after"),
        ("colour=blue", "colour"),
    ] {
        let body = json_of(
            &app,
            get(&format!("/kessel/jobs?{query}")),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_of(&body).1.as_deref(), Some(field), "{query}: {body}");
    }
}

#[actix_rt::test]
async fn cursor_paging_on_memory() {
    cursor_paging(memory_queue().await).await;
}

#[cfg(feature = "sqlite")]
#[actix_rt::test]
async fn cursor_paging_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    cursor_paging(sqlite_queue(&dir).await).await;
}

#[actix_rt::test]
async fn bulk_create_is_all_or_nothing_and_names_the_bad_job() {
    let queue = memory_queue().await;
    let app = test::init_service(open_app(&queue)).await;
    let created = json_of(
        &app,
        post(
            "/kessel/jobs/batch",
            json!({"jobs": [{"task": "echo", "payload": 1}, {"task": "echo", "payload": 2}]}),
        ),
        StatusCode::CREATED,
    )
    .await;
    for id in created["ids"].as_array().unwrap() {
        let id: JobId = id.as_str().unwrap().parse().unwrap();
        assert_eq!(queue.result(id).await.unwrap().status, JobStatus::Completed);
    }
    let body = json_of(
        &app,
        post(
            "/kessel/jobs/batch",
            json!({"jobs": [{"task": "echo"}, {"task": "echo", "delay": "soon"}]}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        error_of(&body),
        ("invalid_field".into(), Some("jobs[1].delay".into()))
    );
    let body = json_of(
        &app,
        post(
            "/kessel/jobs/batch",
            json!({"jobs": [{"task": "echo"}, {"task": 7}]}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_of(&body).1.as_deref(), Some("jobs[1].task"));
    let stats = json_of(&app, get("/kessel/stats"), StatusCode::OK).await;
    assert_eq!(
        stats["totals"]["completed"], 2,
        "nothing of the bad batches was created: {stats}"
    );
}

#[actix_rt::test]
async fn bad_input_is_400_naming_the_problem_never_500() {
    let queue = memory_queue().await;
    let app = test::init_service(open_app(&queue)).await;
    let raw = |body: &'static str| {
        TestRequest::post()
            .uri("/kessel/jobs")
            .insert_header(("content-type", "application/json"))
            .set_payload(body)
            .to_request()
    };
    let body = json_of(&app, raw(r#"{"task": "echo""#), StatusCode::BAD_REQUEST).await;
    assert_eq!(error_of(&body), ("invalid_json".into(), None));
    assert!(
        body["error"]["message"].as_str().unwrap().contains("EOF"),
        "{body}"
    );
    let body = json_of(&app, raw(""), StatusCode::BAD_REQUEST).await;
    assert_eq!(error_of(&body).0, "invalid_json");
    for (job, field) in [
        (json!({"task": "echo", "delay": "soon"}), "delay"),
        (json!({"task": "echo", "expires_in": "-1s"}), "expires_in"),
        (
            json!({"task": "echo", "delay": "1s", "run_at": "2030-01-01T00:00:00Z"}),
            "run_at",
        ),
        (json!({"task": "echo", "run_at": "tomorrow"}), "run_at"),
        (json!({"task": "echo", "max_attempts": -1}), "max_attempts"),
        (json!({"task": "echo", "dealy": "1s"}), "dealy"),
        (json!({"payload": 1}), "task"),
        (json!({"task": ""}), "task"),
        (json!({"task": "a:b"}), "task"),
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
        post("/kessel/jobs", json!(7)),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_of(&body), ("invalid_body".into(), None));
    let body = json_of(
        &app,
        TestRequest::post()
            .uri("/kessel/jobs")
            .insert_header(("content-type", "text/plain"))
            .set_payload("{}")
            .to_request(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert_eq!(error_of(&body).0, "unsupported_media_type");
    let body = json_of(
        &app,
        post("/kessel/clean", json!({"statuses": ["ready"]})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_of(&body).1.as_deref(), Some("statuses"));
    let body = json_of(
        &app,
        post(
            "/kessel/delete-matching",
            json!({"task": "echo", "pattern": "("}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_of(&body).1.as_deref(), Some("pattern"));
    let body = json_of(&app, get("/kessel/nowhere"), StatusCode::NOT_FOUND).await;
    assert_eq!(error_of(&body).0, "route_not_found");
    let resp = send(&app, TestRequest::delete().uri("/kessel/jobs").to_request()).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers().get("allow").unwrap(), "GET, POST");
    let body = json_of(
        &app,
        TestRequest::delete().uri("/kessel/stats").to_request(),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    assert_eq!(error_of(&body).0, "method_not_allowed");
}

#[actix_rt::test]
async fn integer_fields_take_whole_numbers_written_as_floats_and_refuse_others() {
    let queue = memory_queue().await;
    let app = test::init_service(open_app(&queue)).await;
    // JSON Schema's `integer` holds 3.0; so does the API.
    let id = id_of(
        &json_of(
            &app,
            post(
                "/kessel/jobs",
                json!({"task": "echo", "delay": "1h", "priority": 3.0, "max_attempts": 2.0}),
            ),
            StatusCode::CREATED,
        )
        .await,
    );
    let job = json_of(&app, get(&format!("/kessel/jobs/{id}")), StatusCode::OK).await;
    assert_eq!(
        (job["priority"].clone(), job["max_attempts"].clone()),
        (json!(3), json!(2))
    );
    for (job, field) in [
        (json!({"task": "echo", "priority": 1.5}), "priority"),
        // Beyond i64: read as a float, and refused rather than rounded.
        (
            json!({"task": "echo", "priority": -9_223_372_036_854_775_809.0}),
            "priority",
        ),
        (
            json!({"task": "echo", "max_attempts": 4_294_967_296_u64}),
            "max_attempts",
        ),
        (json!({"task": "echo", "max_attempts": "2"}), "max_attempts"),
    ] {
        let body = json_of(
            &app,
            post("/kessel/jobs", job.clone()),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_of(&body).1.as_deref(), Some(field), "{job}: {body}");
    }
    // `max_attempts` is a u32: its largest value is taken, as documented.
    json_of(
        &app,
        post(
            "/kessel/jobs",
            json!({"task": "echo", "delay": "1h", "max_attempts": u32::MAX}),
        ),
        StatusCode::CREATED,
    )
    .await;
}

#[actix_rt::test]
async fn a_body_over_the_limit_is_413() {
    let queue = memory_queue().await;
    let app = test::init_service(
        App::new().service(
            Api::new(queue.clone(), Auth::none())
                .body_limit(256)
                .scope("/kessel"),
        ),
    )
    .await;
    let big = "x".repeat(300);
    let body = json_of(
        &app,
        post("/kessel/jobs", json!({"task": "echo", "payload": big})),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(error_of(&body).0, "payload_too_large");
    json_of(
        &app,
        post("/kessel/jobs", json!({"task": "echo", "payload": "small"})),
        StatusCode::CREATED,
    )
    .await;
}

#[actix_rt::test]
async fn tokens_with_roles_401_403_200() {
    let queue = memory_queue().await;
    let auth = Auth::tokens()
        .read_only("reader-token")
        .admin("admin-token");
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), auth).scope("/kessel")))
            .await;
    let with = |req: TestRequest, token: &str| {
        req.insert_header(("authorization", format!("Bearer {token}")))
            .to_request()
    };

    let resp = send(&app, get("/kessel/stats")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"kessel\""
    );
    let body = json_of(
        &app,
        with(TestRequest::get().uri("/kessel/stats"), "guess"),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(error_of(&body).0, "unauthorized");
    let body = json_of(
        &app,
        TestRequest::get()
            .uri("/kessel/stats")
            .insert_header(("authorization", "Basic YTpi"))
            .to_request(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(error_of(&body).0, "unauthorized");

    json_of(
        &app,
        with(TestRequest::get().uri("/kessel/stats"), "reader-token"),
        StatusCode::OK,
    )
    .await;
    json_of(
        &app,
        with(TestRequest::get().uri("/kessel/tasks"), "admin-token"),
        StatusCode::OK,
    )
    .await;
    let create = || {
        TestRequest::post()
            .uri("/kessel/jobs")
            .set_json(json!({"task": "echo"}))
    };
    let body = json_of(&app, with(create(), "reader-token"), StatusCode::FORBIDDEN).await;
    assert_eq!(error_of(&body).0, "forbidden");
    // Refused before the body is read: a bad body from a reader is still 403.
    let body = json_of(
        &app,
        with(
            TestRequest::post()
                .uri("/kessel/jobs")
                .insert_header(("content-type", "application/json"))
                .set_payload("{"),
            "reader-token",
        ),
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(error_of(&body).0, "forbidden");
    json_of(&app, with(create(), "admin-token"), StatusCode::CREATED).await;
    json_of(
        &app,
        with(create(), "bearer admin-token"),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[actix_rt::test]
async fn the_apps_own_auth_hook_decides() {
    let queue = memory_queue().await;
    let auth = Auth::custom(|head: &actix_web::dev::RequestHead| {
        match head.headers().get("x-group").and_then(|v| v.to_str().ok()) {
            Some("ops") => Ok(Role::Admin),
            Some("banned") => Err(Denied::forbidden("banned")),
            Some(_) => Ok(Role::ReadOnly),
            None => Err(Denied::unauthorized("sign in")),
        }
    });
    let app = test::init_service(App::new().service(Api::new(queue.clone(), auth).scope(""))).await;
    let req = |group: Option<&str>| {
        let mut req = TestRequest::post().uri("/tasks/echo/suspend");
        if let Some(group) = group {
            req = req.insert_header(("x-group", group));
        }
        req.to_request()
    };
    assert_eq!(
        send(&app, req(None)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let body = json_of(&app, req(Some("banned")), StatusCode::FORBIDDEN).await;
    assert_eq!(body["error"]["message"], "banned");
    json_of(&app, req(Some("interns")), StatusCode::FORBIDDEN).await;
    json_of(&app, req(Some("ops")), StatusCode::OK).await;
}

#[actix_rt::test]
async fn nodes_lists_the_serving_process_as_the_live_leader() {
    let queue = memory_queue().await;
    let app = test::init_service(open_app(&queue)).await;
    let nodes = json_of(&app, get("/kessel/nodes"), StatusCode::OK).await;
    let list = nodes["nodes"].as_array().expect("a list of nodes");
    assert_eq!(list.len(), 1, "{nodes}");
    let me = &list[0];
    assert_eq!(me["id"], queue.node_id().to_string());
    assert_eq!(me["pid"], std::process::id());
    assert_eq!(me["tags"], json!(["default"]));
    assert_eq!(me["concurrency"], 4);
    assert_eq!(me["leader"], true);
    assert_eq!(me["status"], "live");
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
}

#[actix_rt::test]
async fn tasks_stats_suspend_resume_clean_delete_matching() {
    let queue = memory_queue().await;
    let app = test::init_service(open_app(&queue)).await;
    json_of(
        &app,
        TestRequest::post()
            .uri("/kessel/tasks/echo/suspend")
            .to_request(),
        StatusCode::OK,
    )
    .await;
    let id = id_of(
        &json_of(
            &app,
            post("/kessel/jobs", json!({"task": "echo", "payload": "spam@x"})),
            StatusCode::CREATED,
        )
        .await,
    );
    let keep = id_of(
        &json_of(
            &app,
            post("/kessel/jobs", json!({"task": "echo", "payload": "ford"})),
            StatusCode::CREATED,
        )
        .await,
    );
    let tasks = json_of(&app, get("/kessel/tasks"), StatusCode::OK).await;
    let echo = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "echo")
        .unwrap()
        .clone();
    assert_eq!(echo["defined"], true);
    assert_eq!(
        echo["counts"]["ready"], 2,
        "suspended: nothing ran: {tasks}"
    );
    assert_eq!(echo["total"], 2);
    assert_eq!(echo["suspended"]["kind"], "task", "{tasks}");
    assert_eq!(echo["suspended"]["name"], "echo");
    assert!(echo["suspended"]["by"].is_string() && echo["suspended"]["since"].is_string());
    let stats = json_of(&app, get("/kessel/stats"), StatusCode::OK).await;
    assert_eq!(stats["suspended"][0]["name"], "echo", "{stats}");
    let deleted = json_of(
        &app,
        post(
            "/kessel/delete-matching",
            json!({"task": "echo", "pattern": "spam@"}),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(deleted["deleted"], 1);
    assert_eq!(queue.result(id).await.unwrap().status, JobStatus::Cancelled);
    json_of(
        &app,
        TestRequest::post()
            .uri("/kessel/tasks/echo/resume")
            .to_request(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        queue.result(keep).await.unwrap().status,
        JobStatus::Completed
    );
    let stats = json_of(&app, get("/kessel/stats"), StatusCode::OK).await;
    assert_eq!(stats["suspended"], json!([]), "resumed: {stats}");
    assert_eq!(stats["totals"]["completed"], 1, "{stats}");
    assert_eq!(stats["totals"]["cancelled"], 1, "{stats}");
    let cleaned = json_of(
        &app,
        post(
            "/kessel/clean",
            json!({"statuses": ["completed", "cancelled"]}),
        ),
        StatusCode::OK,
    )
    .await;
    assert_eq!(cleaned["removed"], 2);
    let body = json_of(
        &app,
        get(&format!("/kessel/jobs/{keep}")),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(error_of(&body).0, "job_not_found");
}

/// Reads a streaming body frame by frame.
struct Frames {
    body: Pin<Box<actix_web::body::BoxBody>>,
    text: String,
}

/// One server-sent event.
#[derive(Debug)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
    /// `data` as sent.
    raw: String,
}

impl Frames {
    fn new(resp: Response) -> Self {
        Frames {
            body: Box::pin(resp.into_body()),
            text: String::new(),
        }
    }

    /// The next event (comments skipped). Waits for events, with a
    /// generous guard so a broken stream fails the test instead of hanging.
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let frame: String = self.text.drain(..end + 2).collect();
                let (mut id, mut event, mut data, mut raw) = (None, None, None, String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("data is JSON"));
                        raw = v.to_owned();
                    }
                }
                match (event, data) {
                    (Some(event), Some(data)) => {
                        return Sse {
                            id,
                            event,
                            data,
                            raw,
                        }
                    }
                    _ => continue, // a comment
                }
            }
            let chunk = tokio::time::timeout(
                Duration::from_secs(30),
                futures::future::poll_fn(|cx| self.body.as_mut().poll_next(cx)),
            )
            .await
            .expect("an event within 30 s")
            .expect("the stream goes on")
            .expect("a chunk");
            self.text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn events_stream(queue: Queue) {
    let app = test::init_service(open_app(&queue)).await;
    let resp = send(&app, get("/kessel/events?task=echo")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut frames = Frames::new(resp);
    let id = id_of(
        &json_of(
            &app,
            post("/kessel/jobs", json!({"task": "echo", "payload": 5})),
            StatusCode::CREATED,
        )
        .await,
    );
    let mut kinds = Vec::new();
    let mut ids = Vec::new();
    loop {
        let sse = frames.next().await;
        assert_eq!(sse.event, "job", "{sse:?}");
        assert_eq!(sse.data["id"], json!(id.to_string()));
        kinds.push(sse.data["kind"].as_str().unwrap().to_owned());
        ids.push(sse.id.clone().expect("every event has an id"));
        if sse.data["kind"] == "completed" {
            assert_eq!(sse.data["value"], 5);
            break;
        }
    }
    assert_eq!(kinds, ["created", "started", "completed"]);
    let seqs: Vec<u64> = ids
        .iter()
        .map(|i| i.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {ids:?}"
    );

    // Reconnect after the first event: the rest is replayed, in order.
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/events?task=echo")
            .insert_header(("last-event-id", ids[0].as_str()))
            .to_request(),
    )
    .await;
    let mut again = Frames::new(resp);
    assert_eq!(again.next().await.id.as_ref(), Some(&ids[1]));
    assert_eq!(again.next().await.id.as_ref(), Some(&ids[2]));

    // An id from another server's life: told that an unknown number was missed.
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/events")
            .insert_header(("last-event-id", "00000000-3"))
            .to_request(),
    )
    .await;
    let lagged = Frames::new(resp).next().await;
    assert_eq!(lagged.event, "lagged");
    assert_eq!(lagged.data, json!({"type": "lagged", "missed": null}));

    let body = json_of(
        &app,
        get("/kessel/events?kinds=finished"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(error_of(&body).1.as_deref(), Some("kinds"));
}

#[actix_rt::test]
async fn sse_streams_a_jobs_events_in_order_and_resumes_on_memory() {
    events_stream(memory_queue().await).await;
}

#[cfg(feature = "sqlite")]
#[actix_rt::test]
async fn sse_streams_a_jobs_events_in_order_and_resumes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    events_stream(sqlite_queue(&dir).await).await;
}

/// JSON read strictly: an object that repeats a key is an error (serde_json
/// alone keeps the last one silently).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Strict;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                Ok(Strict(json!(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                Ok(Strict(json!(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                Ok(Strict(json!(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                Ok(Strict(json!(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                Ok(Strict(json!(v)))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Strict, A::Error> {
                let mut items = Vec::new();
                while let Some(Strict(v)) = a.next_element()? {
                    items.push(v);
                }
                Ok(Strict(Value::Array(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Strict, A::Error> {
                let mut map = serde_json::Map::new();
                while let Some((k, Strict(v))) = a.next_entry::<String, Strict>()? {
                    if map.insert(k.clone(), v).is_some() {
                        return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                    }
                }
                Ok(Strict(Value::Object(map)))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[test]
fn the_strict_reader_refuses_a_repeated_key() {
    let err = serde_json::from_str::<Strict>(r#"{"a":{"at":1,"at":2}}"#)
        .err()
        .expect("a repeated key is refused");
    assert!(err.to_string().contains("duplicate key `at`"), "{err}");
    assert!(serde_json::from_str::<Strict>(r#"{"a":{"at":1},"at":2}"#).is_ok());
}

#[actix_rt::test]
async fn a_log_event_on_the_stream_nests_its_line_and_repeats_no_key() {
    let queue = memory_queue().await;
    queue
        .define("logger")
        .action(|job: JobContext<Value>| async move {
            job.log("fetched rows", json!({"count": 1200}));
            Ok::<_, JobError>(())
        })
        .unwrap();
    let app = test::init_service(open_app(&queue)).await;
    let mut frames = Frames::new(send(&app, get("/kessel/events?task=logger&kinds=log")).await);
    let id = id_of(
        &json_of(
            &app,
            post("/kessel/jobs", json!({"task": "logger"})),
            StatusCode::CREATED,
        )
        .await,
    );
    let sse = frames.next().await;
    assert_eq!(sse.event, "job", "{sse:?}");
    let Strict(data) = serde_json::from_str(&sse.raw)
        .unwrap_or_else(|e| panic!("every key of a log event once: {e}: {}", sse.raw));
    assert_eq!(data["id"], json!(id.to_string()));
    assert_eq!(data["kind"], "log");
    assert_eq!(data["attempt"], 1);
    assert_eq!(data["line"]["attempt"], 1);
    assert!(data["line"]["at"].is_string(), "{data}");
    assert_eq!(data["line"]["message"], "fetched rows");
    assert_eq!(data["line"]["data"], json!({"count": 1200}));
    // The Rust event reads back from the same JSON.
    let event: kessel::event::JobEvent = serde_json::from_value(data).unwrap();
    match event.kind {
        kessel::event::JobEventKind::Log(line) => assert_eq!(line.message, "fetched rows"),
        other => panic!("a log event, not {other:?}"),
    }
}

#[actix_rt::test]
async fn sse_tag_filter_leaves_out_the_events_of_tasks_under_another_tag() {
    let queue = memory_queue().await;
    queue
        .define("report")
        .tag("reports")
        .action(|job: JobContext<Value>| async move { Ok::<_, JobError>(job.payload) })
        .unwrap();
    let app = test::init_service(open_app(&queue)).await;
    let mut frames = Frames::new(send(&app, get("/kessel/events?tag=reports")).await);

    // A job of `echo` (tag `default`) runs to its end first: none of its
    // events may come before the `report` job's.
    let echo = id_of(
        &json_of(
            &app,
            post("/kessel/jobs", json!({"task": "echo", "payload": 1})),
            StatusCode::CREATED,
        )
        .await,
    );
    assert_eq!(
        queue.result(echo).await.unwrap().status,
        JobStatus::Completed
    );
    let report = id_of(
        &json_of(
            &app,
            post("/kessel/jobs", json!({"task": "report", "payload": 2})),
            StatusCode::CREATED,
        )
        .await,
    );
    let first = frames.next().await;
    assert_eq!(first.event, "job", "{first:?}");
    assert_eq!(first.data["id"], json!(report.to_string()), "{first:?}");
    assert_eq!(first.data["tag"], "reports");
    assert_eq!(first.data["kind"], "created");

    // Several tags, comma separated: both tasks' events.
    let mut both = Frames::new(send(&app, get("/kessel/events?tag=reports,default")).await);
    let echo = id_of(
        &json_of(
            &app,
            post("/kessel/jobs", json!({"task": "echo"})),
            StatusCode::CREATED,
        )
        .await,
    );
    assert_eq!(both.next().await.data["id"], json!(echo.to_string()));

    let body = json_of(&app, get("/kessel/events?tag=,"), StatusCode::BAD_REQUEST).await;
    assert_eq!(error_of(&body).1.as_deref(), Some("tag"));
}

#[actix_rt::test]
async fn events_the_ring_no_longer_holds_are_announced_as_lagged() {
    let queue = memory_queue().await;
    let app = test::init_service(
        App::new().service(Api::new(queue.clone(), Auth::none()).replay(2).scope("")),
    )
    .await;
    let mut first = Frames::new(send(&app, get("/events?task=echo")).await);
    let id = id_of(
        &json_of(
            &app,
            post("/jobs", json!({"task": "echo"})),
            StatusCode::CREATED,
        )
        .await,
    );
    let created = first.next().await;
    assert_eq!(created.data["kind"], "created");
    assert_eq!(queue.result(id).await.unwrap().status, JobStatus::Completed);
    loop {
        if first.next().await.data["kind"] == "completed" {
            break;
        }
    }
    // Three events since `created` at most; the ring of two lost one.
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/events?task=echo")
            .insert_header(("last-event-id", created.id.unwrap().as_str()))
            .to_request(),
    )
    .await;
    let mut again = Frames::new(resp);
    let lagged = again.next().await;
    assert_eq!(lagged.event, "lagged", "{lagged:?}");
    assert!(lagged.data["missed"].as_u64().unwrap() >= 1, "{lagged:?}");
    // Then what the ring still holds of the job, in order: its last
    // events (the ring is queue-wide, so a queue event after the job's
    // end may have pushed `started` out, or not).
    let next = again.next().await.data["kind"].clone();
    match next.as_str() {
        Some("completed") => {}
        Some("started") => assert_eq!(again.next().await.data["kind"], "completed"),
        other => panic!("after the lag, expected the job's last events, got {other:?}"),
    }
}

/// The committed document is the one served; `KESSEL_WRITE_OPENAPI=1`
/// rewrites it.
#[actix_rt::test]
async fn committed_openapi_document_matches_the_served_one() {
    let queue = Queue::new();
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), Auth::none()).scope("")))
            .await;
    let served = test::read_body(send(&app, get("/openapi.json")).await).await;
    let served = String::from_utf8(served.to_vec()).unwrap();
    assert_eq!(served, kessel::web::openapi_document());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var_os("KESSEL_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &served).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    // The committed document is the API with every feature (`cron` adds
    // the schedules); without `cron`, it is compared without them.
    #[cfg(not(feature = "cron"))]
    let committed = without_schedules(&committed);
    assert!(
        committed == served,
        "docs/openapi.json differs from the document the API serves: regenerate it with\n  \
         KESSEL_WRITE_OPENAPI=1 cargo test --features web,cron --test web committed_openapi_document_matches_the_served_one"
    );

    // Under a mount path the served document names it as its server.
    let app =
        test::init_service(App::new().service(Api::new(queue, Auth::none()).scope("/kessel")))
            .await;
    let doc = json_of(&app, get("/kessel/openapi.json"), StatusCode::OK).await;
    assert_eq!(doc["servers"][0]["url"], "/kessel");
}

/// The committed OpenAPI document as served without feature `cron`: no
/// `/schedules` paths, no `schedules` tag, none of their schemas.
#[cfg(not(feature = "cron"))]
fn without_schedules(committed: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(committed) else {
        return committed.to_owned();
    };
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.retain(|path, _| !path.starts_with("/schedules"));
    }
    if let Some(tags) = doc["tags"].as_array_mut() {
        tags.retain(|tag| tag["name"] != "schedules");
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for name in [
            "MissedView",
            "Outcome",
            "ScheduleList",
            "ScheduleView",
            "UpsertScheduleRequest",
            "UpsertedSchedule",
        ] {
            schemas.remove(name);
        }
    }
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}
