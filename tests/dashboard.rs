//! The dashboard (feature `dashboard`): through actix-web's test service,
//! then in headless Chromium (skipped with a note when it is not
//! installed, unless `KESSEL_REQUIRE_BROWSER` is set).
//!
//! `KESSEL_WRITE_SCREENSHOTS=1` makes the browser tests write the
//! screenshots in `docs/images/`.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use kessel::web::{Api, Auth};
use kessel::{JobContext, JobError, JobId, JobStatus, Queue};
use serde_json::{json, Value};

mod common;
mod dashboard {
    pub(crate) mod browser;
}
use dashboard::browser::{Browser, PATIENCE};

const ADMIN: &str = "admin-7f3a";
const READER: &str = "reader-91c2";

/// Tasks whose handlers the tests control: `echo` returns its payload,
/// `flaky` fails for good on its first attempt and succeeds on the next,
/// `hold` runs until it is cancelled or `release` is notified.
async fn with_tasks(queue: Queue, release: Arc<tokio::sync::Notify>) -> Queue {
    queue
        .define("echo")
        .action(|job: JobContext<Value>| async move { Ok::<_, JobError>(job.payload) })
        .unwrap();
    queue
        .define("flaky")
        .action(|job: JobContext<Value>| async move {
            if job.attempt() == 1 {
                Err(JobError::fatal("the first attempt always fails"))
            } else {
                Ok(json!("fine on attempt two"))
            }
        })
        .unwrap();
    queue
        .define("hold")
        .tag("slow")
        .grace("5s")
        .action(move |job: JobContext<Value>| {
            let release = release.clone();
            async move {
                job.progress(1, 3);
                job.log("waiting for a release or a cancel", ());
                tokio::select! {
                    () = release.notified() => Ok(json!("released")),
                    () = job.cancelled() => Err(JobError::fatal("stopped: cancelled")),
                }
            }
        })
        .unwrap();
    queue.process(["default"]).concurrency(4).start().unwrap();
    queue.process(["slow"]).concurrency(2).start().unwrap();
    queue
}

fn tokens() -> Auth {
    Auth::tokens().read_only(READER).admin(ADMIN).into()
}

type Response = ServiceResponse<actix_web::body::BoxBody>;

async fn send<S, B>(app: &S, req: actix_http::Request) -> Response
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    test::call_service(app, req).await.map_into_boxed_body()
}

async fn body_text(resp: Response) -> String {
    String::from_utf8(test::read_body(resp).await.to_vec()).expect("UTF-8")
}

fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn cookie(token: &str) -> (&'static str, String) {
    ("cookie", format!("kessel_dashboard={token}"))
}

/// Waits until `job` is in `status`.
async fn until_status(queue: &Queue, job: JobId, status: JobStatus) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if queue.job(job).await.unwrap().status == status {
            return;
        }
        assert!(Instant::now() < deadline, "job {job} never became {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- through actix-web's test service ----

#[actix_rt::test]
async fn every_page_renders_with_a_content_security_policy_and_no_inline_script() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let job = queue.create("echo", json!({"to": "ford"})).await.unwrap();
    job.result().await.unwrap();
    let app =
        test::init_service(App::new().service(Api::new(queue, Auth::none()).scope("/kessel")))
            .await;
    #[allow(unused_mut)]
    let mut paths = vec![
        "/kessel/dashboard/".to_owned(),
        "/kessel/dashboard/jobs".to_owned(),
        "/kessel/dashboard/jobs?status=completed&task=echo&page=1".to_owned(),
        format!("/kessel/dashboard/jobs/{}", job.id()),
        "/kessel/dashboard/login".to_owned(),
    ];
    #[cfg(feature = "cron")]
    paths.push("/kessel/dashboard/schedules".to_owned());
    for path in paths {
        let resp = send(&app, TestRequest::get().uri(&path).to_request()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let csp = header(&resp, "content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let html = body_text(resp).await;
        assert!(html.starts_with("<!DOCTYPE html>"), "{path}");
        // Scripts only from the served file; no handlers in attributes.
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=").count(),
            "{path}"
        );
        assert!(
            !html.contains(" onclick=") && !html.contains(" onsubmit="),
            "{path}"
        );
    }
    // The job page shows the payload and the result.
    let html = body_text(
        send(
            &app,
            TestRequest::get()
                .uri(&format!("/kessel/dashboard/jobs/{}", job.id()))
                .to_request(),
        )
        .await,
    )
    .await;
    assert!(
        html.contains("ford") && html.contains("data-status=\"completed\""),
        "{html}"
    );
    for (path, kind) in [
        ("/kessel/dashboard/assets/dashboard.js", "text/javascript"),
        ("/kessel/dashboard/assets/dashboard.css", "text/css"),
    ] {
        let resp = send(&app, TestRequest::get().uri(path).to_request()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(header(&resp, "content-type").starts_with(kind));
    }
    // The dashboard's 404s are pages too; the API's stay JSON.
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/dashboard/nothing")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(body_text(resp).await.contains("route_not_found"));
    let resp = send(&app, TestRequest::get().uri("/kessel/nothing").to_request()).await;
    assert_eq!(header(&resp, "content-type"), "application/json");
}

#[actix_rt::test]
async fn cross_site_posts_are_refused_with_the_reason() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let job = queue.create("later", ()).delay("1h").await.unwrap();
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), tokens()).scope("/kessel")))
            .await;
    let cancel = format!("/kessel/dashboard/jobs/{}/cancel", job.id());

    let resp = send(
        &app,
        TestRequest::post()
            .uri(&cancel)
            .insert_header(cookie(ADMIN))
            .insert_header(("sec-fetch-site", "cross-site"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let html = body_text(resp).await;
    assert!(
        html.contains("cross-site request refused: Sec-Fetch-Site is `cross-site`"),
        "{html}"
    );

    // Without Sec-Fetch-Site, Origin decides; the script asks for JSON.
    let resp = send(
        &app,
        TestRequest::post()
            .uri(&cancel)
            .insert_header(cookie(ADMIN))
            .insert_header(("host", "localhost:8080"))
            .insert_header(("origin", "https://evil.example"))
            .insert_header(("accept", "application/json"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Origin `https://evil.example`"));
    assert_eq!(
        queue.job(job.id()).await.unwrap().status,
        JobStatus::Scheduled
    );

    // The same request from the dashboard's own origin goes through.
    let resp = send(
        &app,
        TestRequest::post()
            .uri(&cancel)
            .insert_header(cookie(ADMIN))
            .insert_header(("host", "localhost:8080"))
            .insert_header(("origin", "http://localhost:8080"))
            .insert_header(("sec-fetch-site", "same-origin"))
            .insert_header(("accept", "application/json"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        queue.job(job.id()).await.unwrap().status,
        JobStatus::Cancelled
    );
}

#[actix_rt::test]
async fn read_only_tokens_get_no_forms_and_their_posts_are_refused() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let buried = queue.create("flaky", ()).await.unwrap();
    assert_eq!(buried.result().await.unwrap().status, JobStatus::Buried);
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), tokens()).scope("/kessel")))
            .await;
    let pages = [
        "/kessel/dashboard/".to_owned(),
        "/kessel/dashboard/jobs".to_owned(),
        format!("/kessel/dashboard/jobs/{}", buried.id()),
    ];
    for path in &pages {
        let html = body_text(
            send(
                &app,
                TestRequest::get()
                    .uri(path)
                    .insert_header(cookie(READER))
                    .to_request(),
            )
            .await,
        )
        .await;
        // Only the sign-out form posts.
        assert_eq!(html.matches("method=\"post\"").count(), 1, "{path}: {html}");
        assert!(
            html.contains("/logout") && !html.contains("id=\"retry\""),
            "{path}"
        );
        let html = body_text(
            send(
                &app,
                TestRequest::get()
                    .uri(path)
                    .insert_header(cookie(ADMIN))
                    .to_request(),
            )
            .await,
        )
        .await;
        assert!(
            html.matches("method=\"post\"").count() > 1,
            "{path}: an admin sees the actions"
        );
    }
    for path in [
        format!("/kessel/dashboard/jobs/{}/retry", buried.id()),
        "/kessel/dashboard/tasks/echo/suspend".to_owned(),
        "/kessel/dashboard/bulk".to_owned(),
    ] {
        let resp = send(
            &app,
            TestRequest::post()
                .uri(&path)
                .insert_header(cookie(READER))
                .set_form([("action", "retry")])
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(body_text(resp).await.contains("may only read"), "{path}");
    }
    assert_eq!(
        queue.job(buried.id()).await.unwrap().status,
        JobStatus::Buried
    );
    // Who asks is checked before what: a malformed form is still a 403.
    let resp = send(
        &app,
        TestRequest::post()
            .uri("/kessel/dashboard/bulk")
            .insert_header(cookie(READER))
            .set_form([("not", "a bulk form")])
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[actix_rt::test]
async fn bad_filters_are_a_400_naming_the_field() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let app =
        test::init_service(App::new().service(Api::new(queue, Auth::none()).scope("/kessel")))
            .await;
    for (query, field) in [
        ("status=lost", "status"),
        ("status=ready,nope", "status"),
        ("page=-1", "page"),
        ("page=0", "page"),
        ("page=two", "page"),
        ("page=99999999999999999999999", "page"),
    ] {
        let resp = send(
            &app,
            TestRequest::get()
                .uri(&format!("/kessel/dashboard/jobs?{query}"))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        let html = body_text(resp).await;
        assert!(
            html.contains(&format!("<dd id=\"error-field\">{field}</dd>")),
            "{query}: {html}"
        );
        assert!(html.contains("invalid_field"), "{query}");
        // Asked for JSON, the same error in the API's shape.
        let resp = send(
            &app,
            TestRequest::get()
                .uri(&format!("/kessel/dashboard/jobs?{query}"))
                .insert_header(("accept", "application/json"))
                .to_request(),
        )
        .await;
        let body: Value = serde_json::from_str(&body_text(resp).await).unwrap();
        assert_eq!(body["error"]["field"], field, "{query}");
    }
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/dashboard/jobs/not-a-uuid")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = send(
        &app,
        TestRequest::get()
            .uri(&format!("/kessel/dashboard/jobs/{}", JobId::new()))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn signing_in_sets_a_strict_http_only_cookie_the_api_does_not_take() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let app =
        test::init_service(App::new().service(Api::new(queue, tokens()).scope("/kessel"))).await;

    // No token: pages send to the sign-in page; the stream is refused.
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/dashboard/jobs?task=echo")
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header(&resp, "location"),
        "/kessel/dashboard/login?next=%2Fkessel%2Fdashboard%2Fjobs%3Ftask%3Decho"
    );
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/dashboard/events")
            .to_request(),
    )
    .await;
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "a stream is no page"
    );

    let resp = send(
        &app,
        TestRequest::post()
            .uri("/kessel/dashboard/login")
            .set_form([("token", "guess"), ("next", "/kessel/dashboard/jobs")])
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(body_text(resp).await.contains("Unknown token."));

    let resp = send(
        &app,
        TestRequest::post()
            .uri("/kessel/dashboard/login")
            .set_form([("token", ADMIN), ("next", "https://evil.example/")])
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header(&resp, "location"),
        "/kessel/dashboard/",
        "never off the dashboard"
    );
    let set = header(&resp, "set-cookie");
    assert_eq!(
        set,
        format!("kessel_dashboard={ADMIN}; Path=/kessel/dashboard; HttpOnly; SameSite=Strict")
    );

    // The cookie opens the dashboard and its stream, not the JSON API.
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/dashboard/")
            .insert_header(cookie(ADMIN))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/dashboard/events")
            .insert_header(cookie(ADMIN))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/jobs")
            .insert_header(cookie(ADMIN))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A bearer header works on the dashboard too (scripts, curl).
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/dashboard/")
            .insert_header(("authorization", format!("Bearer {READER}")))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);

    let resp = send(
        &app,
        TestRequest::post()
            .uri("/kessel/dashboard/logout")
            .insert_header(cookie(ADMIN))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(header(&resp, "set-cookie").contains("Max-Age=0"));
}

#[actix_rt::test]
async fn bulk_actions_ask_with_a_count_then_act_on_every_match() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    for n in 0..3 {
        queue.create("later", n).delay("1h").await.unwrap();
    }
    let other = queue.create("elsewhere", ()).delay("1h").await.unwrap();
    for _ in 0..2 {
        let job = queue.create("flaky", ()).await.unwrap();
        job.result().await.unwrap();
    }
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), Auth::none()).scope("")))
            .await;
    let post = |form: Vec<(&'static str, &'static str)>| {
        TestRequest::post()
            .uri("/dashboard/bulk")
            .set_form(form)
            .to_request()
    };

    let html =
        body_text(send(&app, post(vec![("action", "cancel"), ("task", "later")])).await).await;
    assert!(html.contains("data-count=\"3\""), "{html}");
    assert_eq!(
        queue.stats().await.unwrap().total(JobStatus::Cancelled),
        0,
        "nothing before the confirmation"
    );
    let html = body_text(
        send(
            &app,
            post(vec![
                ("action", "cancel"),
                ("task", "later"),
                ("confirm", "yes"),
            ]),
        )
        .await,
    )
    .await;
    assert!(html.contains("id=\"bulk-done\" data-count=\"3\""), "{html}");
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.count("later", JobStatus::Cancelled), 3);
    assert_eq!(
        queue.job(other.id()).await.unwrap().status,
        JobStatus::Scheduled
    );

    // Retry every buried job of a task: they run again and complete.
    let html = body_text(
        send(
            &app,
            post(vec![
                ("action", "retry"),
                ("task", "flaky"),
                ("confirm", "yes"),
            ]),
        )
        .await,
    )
    .await;
    assert!(html.contains("id=\"bulk-done\" data-count=\"2\""), "{html}");
    let deadline = Instant::now() + PATIENCE;
    while queue
        .stats()
        .await
        .unwrap()
        .count("flaky", JobStatus::Completed)
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the retried jobs never completed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Delete the finished jobs of one task, for good.
    let html =
        body_text(send(&app, post(vec![("action", "delete"), ("task", "later")])).await).await;
    assert!(html.contains("data-count=\"3\""), "{html}");
    let html = body_text(
        send(
            &app,
            post(vec![
                ("action", "delete"),
                ("task", "later"),
                ("confirm", "yes"),
            ]),
        )
        .await,
    )
    .await;
    assert!(html.contains("id=\"bulk-done\" data-count=\"3\""), "{html}");
    assert_eq!(
        queue
            .stats()
            .await
            .unwrap()
            .count("later", JobStatus::Cancelled),
        0
    );
    assert_eq!(
        queue
            .stats()
            .await
            .unwrap()
            .count("flaky", JobStatus::Completed),
        2
    );

    let resp = send(&app, post(vec![("action", "explode")])).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(resp)
        .await
        .contains("<dd id=\"error-field\">action</dd>"));
}

#[actix_rt::test]
async fn suspending_a_tag_from_the_dashboard_holds_its_jobs_until_resumed() {
    let release = Arc::new(tokio::sync::Notify::new());
    let queue = with_tasks(Queue::new(), release.clone()).await;
    let app = test::init_service(
        App::new().service(Api::new(queue.clone(), Auth::none()).scope("/kessel")),
    )
    .await;
    let post = |path: &str| {
        TestRequest::post()
            .uri(path)
            .insert_header(("accept", "application/json"))
            .to_request()
    };
    let resp = send(&app, post("/kessel/dashboard/tags/slow/suspend")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(body["message"], "Suspended 1 task(s) of tag slow.");
    // The overview offers what can be done: Resume for the tag, Suspend
    // for a task that is not suspended.
    let overview = body_text(
        send(
            &app,
            TestRequest::get().uri("/kessel/dashboard/").to_request(),
        )
        .await,
    )
    .await;
    let row = |attr: &str| {
        let start = overview
            .find(attr)
            .unwrap_or_else(|| panic!("{attr} in {overview}"));
        let end = start + overview[start..].find("</tr>").unwrap();
        overview[start..end].to_owned()
    };
    let slow = row("data-tag=\"slow\"");
    assert!(
        slow.contains("tags/slow/resume") && !slow.contains("tags/slow/suspend"),
        "{slow}"
    );
    assert!(slow.contains("data-suspended-by"), "{slow}");
    let echo = row("data-task=\"echo\"");
    assert!(
        echo.contains("tasks/echo/suspend") && !echo.contains("tasks/echo/resume"),
        "{echo}"
    );
    let job = queue.create("hold", ()).await.unwrap();
    // An echo job created after it runs: the queue works, `hold` waits.
    queue
        .create("echo", 1)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(queue.job(job.id()).await.unwrap().status, JobStatus::Ready);
    let resp = send(&app, post("/kessel/dashboard/tags/slow/resume")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    until_status(&queue, job.id(), JobStatus::Running).await;
    release.notify_one();
    until_status(&queue, job.id(), JobStatus::Completed).await;

    let resp = send(&app, post("/kessel/dashboard/tags/nobody/suspend")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = send(&app, post("/kessel/dashboard/tasks/echo/pause")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn text_search_finds_jobs_by_payload_or_error() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let alpha = queue
        .create("later", json!({"to": "Alpha@example.com"}))
        .delay("1h")
        .await
        .unwrap();
    queue
        .create("later", json!({"to": "beta@example.com"}))
        .delay("1h")
        .await
        .unwrap();
    let failed = queue.create("flaky", ()).await.unwrap();
    failed.result().await.unwrap();
    let app =
        test::init_service(App::new().service(Api::new(queue, Auth::none()).scope("/kessel")))
            .await;
    let rows = |html: &str| html.matches("<tr data-job=").count();

    let html = body_text(
        send(
            &app,
            TestRequest::get()
                .uri("/kessel/dashboard/jobs?q=alpha%40")
                .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(rows(&html), 1, "{html}");
    assert!(html.contains(&alpha.id().to_string()));
    // The search box keeps the text (lowercased).
    assert!(html.contains("name=\"q\" value=\"alpha@\""), "{html}");
    let html = body_text(
        send(
            &app,
            TestRequest::get()
                .uri("/kessel/dashboard/jobs?q=ALWAYS+FAILS")
                .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(rows(&html), 1, "{html}");
    assert!(html.contains(&failed.id().to_string()));
    let html = body_text(
        send(
            &app,
            TestRequest::get()
                .uri("/kessel/dashboard/jobs?q=example&task=later")
                .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(rows(&html), 2, "{html}");
    let html = body_text(
        send(
            &app,
            TestRequest::get()
                .uri("/kessel/dashboard/jobs?q=example&task=later&page=2")
                .to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(rows(&html), 0, "{html}");
}

/// A POST from the dashboard's own pages (as the browser sends it).
fn same_site_post(path: &str, token: &str) -> TestRequest {
    TestRequest::post()
        .uri(path)
        .insert_header(cookie(token))
        .insert_header(("host", "localhost:8080"))
        .insert_header(("origin", "http://localhost:8080"))
        .insert_header(("sec-fetch-site", "same-origin"))
}

/// The `<tr ...>` row of `html` that carries `attr`, up to its end.
fn row_of(html: &str, attr: &str) -> String {
    let start = html
        .find(attr)
        .unwrap_or_else(|| panic!("{attr} in {html}"));
    let end = start + html[start..].find("</tr>").unwrap();
    html[start..end].to_owned()
}

#[actix_rt::test]
async fn overview_lists_this_process_as_the_live_leading_node() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), tokens()).scope("/kessel")))
            .await;
    let resp = send(
        &app,
        TestRequest::get()
            .uri("/kessel/dashboard/")
            .insert_header(cookie(READER))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = body_text(resp).await;
    // The overview redraws on its own too: heartbeats send no event.
    assert!(html.contains("data-refresh=\"10\""), "{html}");
    assert!(html.contains("id=\"leader\" data-leads=\"true\""), "{html}");
    let nodes = queue.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    let node = &nodes[0];
    assert_eq!(html.matches("<tr data-node=").count(), 1, "{html}");
    let row = row_of(&html, &format!("data-node=\"{}\"", queue.node_id()));
    for expected in [
        "data-status=\"live\"".to_owned(),
        "data-leader=\"true\"".to_owned(),
        "leader</span>".to_owned(),
        "(this process)".to_owned(),
        node.host.clone(),
        format!("<td class=\"num\">{}</td>", std::process::id()),
        format!("<td>{}</td>", env!("CARGO_PKG_VERSION")),
        "default, slow".to_owned(),
        // Two workers: 4 and 2 at once.
        "data-count=\"6\"".to_owned(),
    ] {
        assert!(row.contains(&expected), "{expected} in {row}");
    }
}

/// Two processes' queues on one PostgreSQL schema: the dashboard of the
/// one without workers lists both nodes, and names the other the leader
/// (a node with workers takes the lead from one without).
#[cfg(feature = "postgres")]
#[actix_rt::test]
async fn overview_on_postgres_lists_every_node_and_names_the_leader() {
    let Some(db) = common::pg::fresh().await else {
        return;
    };
    // Long enough that a stall on a loaded machine does not end the
    // worker's term before the page is read (a term is two thirds of it).
    let lease = Duration::from_secs(6);
    let poll = Duration::from_millis(50);
    let producer = db.queue(lease, poll).await;
    let worker = with_tasks(db.queue(lease, poll).await, Default::default()).await;
    let deadline = Instant::now() + PATIENCE;
    // Both processes' own views agree with the store's (the producer
    // learns it lost the lead at its next bid).
    while !(worker.is_leader()
        && !producer.is_leader()
        && producer.nodes().await.unwrap().len() == 2)
    {
        assert!(Instant::now() < deadline, "the worker never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let app = test::init_service(
        App::new().service(Api::new(producer.clone(), Auth::none()).scope("/kessel")),
    )
    .await;
    let html = body_text(
        send(
            &app,
            TestRequest::get().uri("/kessel/dashboard/").to_request(),
        )
        .await,
    )
    .await;
    assert_eq!(html.matches("<tr data-node=").count(), 2, "{html}");
    assert!(
        html.contains("id=\"leader\" data-leads=\"false\""),
        "{html}"
    );
    assert!(html.contains("The leader is <strong>"), "{html}");
    let leader = row_of(&html, &format!("data-node=\"{}\"", worker.node_id()));
    assert!(
        leader.contains("data-leader=\"true\"")
            && leader.contains("default, slow")
            && !leader.contains("(this process)"),
        "{leader}"
    );
    let this = row_of(&html, &format!("data-node=\"{}\"", producer.node_id()));
    assert!(
        this.contains("data-leader=\"false\"")
            && this.contains("data-status=\"live\"")
            && this.contains("(this process)")
            && this.contains("none (no workers)"),
        "{this}"
    );
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    producer.shutdown(Duration::from_secs(5)).await.unwrap();
    db.drop().await;
}

#[actix_rt::test]
async fn deleting_an_ended_job_asks_first_then_removes_it_and_returns_to_the_list() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let job = queue.create("echo", json!({"n": 1})).await.unwrap();
    job.result().await.unwrap();
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), tokens()).scope("/kessel")))
            .await;
    let page = format!("/kessel/dashboard/jobs/{}", job.id());
    let delete = format!("{page}/delete");
    let html = body_text(
        send(
            &app,
            TestRequest::get()
                .uri(&page)
                .insert_header(cookie(ADMIN))
                .to_request(),
        )
        .await,
    )
    .await;
    assert!(
        html.contains(&format!("action=\"{delete}\"")) && html.contains("id=\"delete\""),
        "{html}"
    );

    // First the question; the job stays.
    let resp = send(&app, same_site_post(&delete, ADMIN).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = body_text(resp).await;
    assert!(
        html.contains("id=\"delete-question\"") && html.contains("id=\"confirm-delete\""),
        "{html}"
    );
    assert!(html.contains("name=\"confirm\" value=\"yes\""), "{html}");
    assert_eq!(
        queue.job(job.id()).await.unwrap().status,
        JobStatus::Completed
    );

    // Confirmed: gone, and back to the list.
    let resp = send(
        &app,
        same_site_post(&delete, ADMIN)
            .set_form([("confirm", "yes")])
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&resp, "location"), "/kessel/dashboard/jobs");
    assert!(matches!(
        queue.job(job.id()).await,
        Err(kessel::Error::UnknownJob(_))
    ));
    // Once gone, a second delete is a 404 page.
    let resp = send(
        &app,
        same_site_post(&delete, ADMIN)
            .set_form([("confirm", "yes")])
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[actix_rt::test]
async fn deleting_a_pending_job_shows_why_and_keeps_it() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let job = queue.create("later", ()).delay("1h").await.unwrap();
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), tokens()).scope("/kessel")))
            .await;
    let page = format!("/kessel/dashboard/jobs/{}", job.id());
    let html = body_text(
        send(
            &app,
            TestRequest::get()
                .uri(&page)
                .insert_header(cookie(ADMIN))
                .to_request(),
        )
        .await,
    )
    .await;
    assert!(html.contains("id=\"cancel\""), "{html}");
    assert!(
        !html.contains("/delete"),
        "no delete for a pending job: {html}"
    );

    let delete = format!("{page}/delete");
    for form in [vec![], vec![("confirm", "yes")]] {
        let resp = send(
            &app,
            same_site_post(&delete, ADMIN).set_form(form).to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        let html = body_text(resp).await;
        assert!(
            html.contains(&format!(
                "<p class=\"error\" id=\"delete-refused\">job {} is scheduled, cannot delete.</p>",
                job.id()
            )),
            "{html}"
        );
        assert!(
            html.contains(&format!("href=\"{page}\"")),
            "a way back: {html}"
        );
    }
    // The script gets the API's JSON error.
    let resp = send(
        &app,
        same_site_post(&delete, ADMIN)
            .insert_header(("accept", "application/json"))
            .set_form([("confirm", "yes")])
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(body["error"]["code"], "wrong_state");
    assert_eq!(
        queue.job(job.id()).await.unwrap().status,
        JobStatus::Scheduled
    );
}

#[actix_rt::test]
async fn deleting_is_refused_to_a_reader_and_across_sites() {
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let job = queue.create("echo", 1).await.unwrap();
    job.result().await.unwrap();
    let app =
        test::init_service(App::new().service(Api::new(queue.clone(), tokens()).scope("/kessel")))
            .await;
    let page = format!("/kessel/dashboard/jobs/{}", job.id());
    let html = body_text(
        send(
            &app,
            TestRequest::get()
                .uri(&page)
                .insert_header(cookie(READER))
                .to_request(),
        )
        .await,
    )
    .await;
    assert!(!html.contains("/delete"), "{html}");
    let delete = format!("{page}/delete");
    let resp = send(
        &app,
        same_site_post(&delete, READER)
            .set_form([("confirm", "yes")])
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(body_text(resp).await.contains("may only read"));
    let resp = send(
        &app,
        TestRequest::post()
            .uri(&delete)
            .insert_header(cookie(ADMIN))
            .insert_header(("sec-fetch-site", "cross-site"))
            .set_form([("confirm", "yes")])
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(body_text(resp).await.contains("cross-site request refused"));
    assert_eq!(
        queue.job(job.id()).await.unwrap().status,
        JobStatus::Completed
    );
}

#[cfg(feature = "cron")]
mod schedules {
    use super::*;
    use kessel::schedule::Schedule;

    /// A queue with a nightly cron schedule of `echo` in Berlin (no tick
    /// during a test) and an hourly interval of `later`.
    pub(super) async fn with_schedules(queue: Queue) -> Queue {
        let schedules = queue.schedules();
        schedules
            .upsert(
                Schedule::cron("nightly", "echo", "0 3 * * *")
                    .time_zone("Europe/Berlin")
                    .payload(json!({"report": "daily"})),
            )
            .await
            .unwrap();
        schedules
            .upsert(Schedule::every("rollup", "later", "1h"))
            .await
            .unwrap();
        queue
    }

    #[actix_rt::test]
    async fn schedules_page_lists_each_schedule_with_its_timing() {
        let queue = with_schedules(with_tasks(Queue::new(), Default::default()).await).await;
        let app = test::init_service(
            App::new().service(Api::new(queue.clone(), tokens()).scope("/kessel")),
        )
        .await;
        let resp = send(
            &app,
            TestRequest::get()
                .uri("/kessel/dashboard/schedules")
                .insert_header(cookie(ADMIN))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(header(&resp, "content-security-policy").contains("script-src 'self'"));
        let html = body_text(resp).await;
        // Linked from the navigation, on every page.
        assert!(
            html.contains("href=\"/kessel/dashboard/schedules\""),
            "{html}"
        );
        assert!(
            html.contains("data-events=\"/kessel/dashboard/events\""),
            "{html}"
        );
        let nightly = queue.schedules().get("nightly").await.unwrap();
        let row = row_of(&html, "data-schedule=\"nightly\"");
        for expected in [
            "data-paused=\"false\"".to_owned(),
            "cron <code>0 3 * * *</code>".to_owned(),
            "<td>Europe/Berlin</td>".to_owned(),
            "href=\"/kessel/dashboard/jobs?task=echo\"".to_owned(),
            format!("datetime=\"{}\"", nightly.next_run.to_rfc3339()),
            "data-action=\"pause\"".to_owned(),
            "data-action=\"run-now\"".to_owned(),
        ] {
            assert!(row.contains(&expected), "{expected} in {row}");
        }
        assert!(!row.contains("data-action=\"resume\""), "{row}");
        let row = row_of(&html, "data-schedule=\"rollup\"");
        assert!(
            row.contains("every 1h 00m</td><td>—</td>"),
            "an interval has no time zone: {row}"
        );

        // The overview's navigation links to it too.
        let html = body_text(
            send(
                &app,
                TestRequest::get()
                    .uri("/kessel/dashboard/")
                    .insert_header(cookie(READER))
                    .to_request(),
            )
            .await,
        )
        .await;
        assert!(html.contains("href=\"/kessel/dashboard/schedules\""));
    }

    #[actix_rt::test]
    async fn pause_resume_and_run_now_act_on_the_schedule() {
        let queue = with_schedules(with_tasks(Queue::new(), Default::default()).await).await;
        let app = test::init_service(
            App::new().service(Api::new(queue.clone(), tokens()).scope("/kessel")),
        )
        .await;
        let act = |action: &str, name: &str, json: bool| {
            let mut req = same_site_post(&format!("/kessel/dashboard/schedules/{action}"), ADMIN)
                .set_form([("name", name.to_owned())]);
            if json {
                req = req.insert_header(("accept", "application/json"));
            }
            req.to_request()
        };
        let page = || {
            TestRequest::get()
                .uri("/kessel/dashboard/schedules")
                .insert_header(cookie(ADMIN))
                .to_request()
        };

        // Without the script: a redirect back to the page.
        let resp = send(&app, act("pause", "nightly", false)).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(header(&resp, "location"), "/kessel/dashboard/schedules");
        assert!(queue.schedules().get("nightly").await.unwrap().paused);
        let row = row_of(
            &body_text(send(&app, page()).await).await,
            "data-schedule=\"nightly\"",
        );
        assert!(
            row.contains("data-paused=\"true\"") && row.contains("data-action=\"resume\""),
            "{row}"
        );
        assert!(!row.contains("data-action=\"pause\""), "{row}");

        let resp = send(&app, act("resume", "nightly", true)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = serde_json::from_str(&body_text(resp).await).unwrap();
        assert_eq!(body["ok"], true);
        assert!(!queue.schedules().get("nightly").await.unwrap().paused);

        // Run now: a job of the schedule's task, with its payload.
        let resp = send(&app, act("run-now", "nightly", true)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = serde_json::from_str(&body_text(resp).await).unwrap();
        let last = queue
            .schedules()
            .get("nightly")
            .await
            .unwrap()
            .last_job
            .unwrap();
        assert_eq!(
            body["message"],
            format!("Created job {last} of schedule nightly.")
        );
        until_status(&queue, last, JobStatus::Completed).await;
        let job = queue.job(last).await.unwrap();
        assert_eq!(&*job.task, "echo");
        assert_eq!(job.result, Some(json!({"report": "daily"})));
        let row = row_of(
            &body_text(send(&app, page()).await).await,
            "data-schedule=\"nightly\"",
        );
        assert!(
            row.contains(&format!("href=\"/kessel/dashboard/jobs/{last}\""))
                && row.contains("data-status=\"completed\""),
            "{row}"
        );

        // A name nobody stored is a 404 naming it; an unknown action too.
        let resp = send(&app, act("pause", "weekly", false)).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert!(body_text(resp)
            .await
            .contains("no schedule called `weekly`"));
        let resp = send(&app, act("explode", "nightly", false)).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert!(body_text(resp)
            .await
            .contains("no schedule action `explode`"));
        // A form without a name is a 400.
        let resp = send(
            &app,
            same_site_post("/kessel/dashboard/schedules/pause", ADMIN)
                .set_form([("nom", "nightly")])
                .to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }

    #[actix_rt::test]
    async fn a_reader_sees_no_schedule_buttons_and_is_refused_as_is_another_site() {
        let queue = with_schedules(with_tasks(Queue::new(), Default::default()).await).await;
        let app = test::init_service(
            App::new().service(Api::new(queue.clone(), tokens()).scope("/kessel")),
        )
        .await;
        let html = body_text(
            send(
                &app,
                TestRequest::get()
                    .uri("/kessel/dashboard/schedules")
                    .insert_header(cookie(READER))
                    .to_request(),
            )
            .await,
        )
        .await;
        assert!(html.contains("data-schedule=\"nightly\""), "{html}");
        // Only the sign-out form posts.
        assert_eq!(html.matches("method=\"post\"").count(), 1, "{html}");
        assert!(!html.contains("data-action="), "{html}");
        for action in ["pause", "resume", "run-now"] {
            let resp = send(
                &app,
                same_site_post(&format!("/kessel/dashboard/schedules/{action}"), READER)
                    .set_form([("name", "nightly")])
                    .to_request(),
            )
            .await;
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{action}");
            assert!(body_text(resp).await.contains("may only read"), "{action}");
            let resp = send(
                &app,
                TestRequest::post()
                    .uri(&format!("/kessel/dashboard/schedules/{action}"))
                    .insert_header(cookie(ADMIN))
                    .insert_header(("sec-fetch-site", "cross-site"))
                    .set_form([("name", "nightly")])
                    .to_request(),
            )
            .await;
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{action}");
            assert!(
                body_text(resp).await.contains("cross-site request refused"),
                "{action}"
            );
        }
        let nightly = queue.schedules().get("nightly").await.unwrap();
        assert!(!nightly.paused && nightly.last_job.is_none());
    }

    #[actix_rt::test]
    async fn schedules_page_says_when_there_are_none() {
        let queue = with_tasks(Queue::new(), Default::default()).await;
        let app =
            test::init_service(App::new().service(Api::new(queue, Auth::none()).scope(""))).await;
        let resp = send(
            &app,
            TestRequest::get().uri("/dashboard/schedules").to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(body_text(resp).await.contains("No schedules are stored"));
    }
}

#[actix_rt::test]
async fn without_dashboard_leaves_it_out() {
    let api = Api::new(Queue::new(), Auth::none()).without_dashboard();
    let app = test::init_service(App::new().service(api.scope(""))).await;
    let resp = send(&app, TestRequest::get().uri("/dashboard/").to_request()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&resp, "content-type"), "application/json");
}

// ---- in headless Chromium ----

/// The dashboard of `queue` on a real server, on a free port, with
/// tokens; returns the dashboard's URL.
async fn serve(queue: Queue) -> (String, actix_web::dev::ServerHandle) {
    let api = Api::new(queue, tokens());
    let server = actix_web::HttpServer::new(move || App::new().service(api.scope("/kessel")))
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("a port");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (format!("http://{addr}/kessel/dashboard"), handle)
}

async fn sqlite_queue(dir: &tempfile::TempDir, release: Arc<tokio::sync::Notify>) -> Queue {
    with_tasks(
        Queue::sqlite(dir.path().join("jobs.db")).await.unwrap(),
        release,
    )
    .await
}

/// Posts to the dashboard from outside the browser, with `token`'s
/// cookie and the dashboard's own origin; returns the status.
fn post_status(base: &str, path: &str, token: &str) -> u16 {
    let rest = base.strip_prefix("http://").unwrap();
    let (host, prefix) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST /{prefix}{path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
         Cookie: kessel_dashboard={token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap()
}

#[actix_rt::test]
async fn overview_shows_the_counts_of_a_seeded_queue() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let queue = sqlite_queue(&dir, Default::default()).await;
    let (base, server) = serve(queue.clone()).await;
    browser.sign_in(&base, ADMIN).await;
    for n in 0..5 {
        queue
            .create("echo", json!({"n": n}))
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
    }
    for _ in 0..2 {
        queue.create("later", ()).delay("1h").await.unwrap();
    }
    queue
        .create("flaky", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    browser.client.goto(&format!("{base}/")).await.unwrap();
    for (status, n) in [
        ("completed", "5"),
        ("scheduled", "2"),
        ("buried", "1"),
        ("running", "0"),
    ] {
        assert_eq!(
            browser.text(&format!("#count-{status}")).await,
            n,
            "{status}"
        );
    }
    assert_eq!(
        browser
            .text("#tasks tr[data-task=echo] td[data-status=completed]")
            .await,
        "5"
    );
    // This process is the only node, live, and leads.
    let node = format!(
        "#nodes tr[data-node='{}'][data-status=live][data-leader=true]",
        queue.node_id()
    );
    assert!(browser.text(&node).await.contains("leader"));
    assert!(browser
        .text("#leader")
        .await
        .starts_with("This process leads"));
    // The chart counted the attempts since the dashboard was first opened.
    browser
        .wait_until(
            "the chart has its bars",
            "return document.querySelectorAll('#chart-minutes rect.completed').length > 0 && document.querySelectorAll('#chart-hours rect.completed').length > 0;",
        )
        .await;
    browser
        .wait_until(
            "live",
            "return document.getElementById('live').dataset.state === 'live';",
        )
        .await;
    browser.screenshot("dashboard-overview.png").await;
    // A job completed now shows up in the counts without a reload.
    browser
        .client
        .execute("window.kesselMark = 'same page'; return true;", vec![])
        .await
        .unwrap();
    queue
        .create("echo", json!({"n": 5}))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    browser
        .wait_until(
            "the new count, on the same page",
            "return document.getElementById('count-completed').textContent === '6' \
             && window.kesselMark === 'same page';",
        )
        .await;
    // On a phone's width nothing but the tables' own boxes scrolls sideways.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser
        .wait_until(
            "the page fits a phone's width",
            "return window.innerWidth < 500 && document.documentElement.scrollWidth <= window.innerWidth;",
        )
        .await;
    browser.screenshot("dashboard-phone.png").await;
    browser.assert_no_console_errors().await;
    browser.finish().await;
    server.stop(false).await;
}

#[actix_rt::test]
async fn retrying_a_buried_job_completes_it_without_a_reload_and_it_can_then_be_deleted() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let queue = sqlite_queue(&dir, Default::default()).await;
    let (base, server) = serve(queue.clone()).await;
    let job = queue
        .create("flaky", json!({"order": 42}))
        .reference("order-42")
        .await
        .unwrap();
    assert_eq!(job.result().await.unwrap().status, JobStatus::Buried);
    browser.sign_in(&base, ADMIN).await;
    browser
        .client
        .goto(&format!("{base}/jobs/{}", job.id()))
        .await
        .unwrap();
    browser.wait_for("#job-status[data-status=buried]").await;
    browser
        .wait_until(
            "live",
            "return document.getElementById('live').dataset.state === 'live';",
        )
        .await;
    // A reload would lose this mark.
    browser
        .client
        .execute("window.kesselMark = 'same page'; return true;", vec![])
        .await
        .unwrap();
    browser.wait_for("#retry").await.click().await.unwrap();
    browser.wait_for("#job-status[data-status=completed]").await;
    let mark = browser
        .client
        .execute("return window.kesselMark;", vec![])
        .await
        .unwrap();
    assert_eq!(mark, json!("same page"), "the page was reloaded");
    assert!(browser
        .text("#result")
        .await
        .contains("fine on attempt two"));
    assert!(browser.text("#flash").await.contains("Queued to run again"));
    browser.screenshot("dashboard-job.png").await;
    // Ended, it may be deleted: a page asks, then the list shows without it.
    browser.wait_for("#delete").await.click().await.unwrap();
    assert!(browser
        .text("#delete-question")
        .await
        .contains(&job.id().to_string()));
    browser
        .wait_for("#confirm-delete")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for("#filter-summary").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(url.path().ends_with("/dashboard/jobs"), "{url}");
    assert!(matches!(
        queue.job(job.id()).await,
        Err(kessel::Error::UnknownJob(_))
    ));
    browser.assert_no_console_errors().await;
    browser.finish().await;
    server.stop(false).await;
}

#[actix_rt::test]
async fn task_filter_survives_a_reload() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let queue = sqlite_queue(&dir, Default::default()).await;
    let (base, server) = serve(queue.clone()).await;
    for n in 0..3 {
        queue
            .create("echo", n)
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
    }
    queue
        .create("flaky", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    browser.sign_in(&base, READER).await;
    browser.client.goto(&format!("{base}/jobs")).await.unwrap();
    browser
        .wait_until(
            "both tasks listed",
            "return document.querySelectorAll('#jobs tr[data-task]').length === 4;",
        )
        .await;
    let task = browser.wait_for("#filters input[name=task]").await;
    task.send_keys("echo").await.unwrap();
    browser
        .wait_for("#filters button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let only_echo = "const rows = [...document.querySelectorAll('#jobs tr[data-task]')]; \
                     return rows.length === 3 && rows.every(r => r.dataset.task === 'echo');";
    browser.wait_until("only echo jobs", only_echo).await;
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.query().unwrap_or_default().contains("task=echo"),
        "{url}"
    );
    browser.client.refresh().await.unwrap();
    browser
        .wait_until("only echo jobs after the reload", only_echo)
        .await;
    let value = browser
        .wait_for("#filters input[name=task]")
        .await
        .prop("value")
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some("echo"));
    // The bookmark works in a fresh tab of the same session too.
    browser.client.goto(url.as_str()).await.unwrap();
    browser
        .wait_until("only echo jobs from the bookmark", only_echo)
        .await;
    browser.assert_no_console_errors().await;
    browser.finish().await;
    server.stop(false).await;
}

#[actix_rt::test]
async fn read_only_token_sees_no_buttons_and_its_post_is_refused() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let queue = sqlite_queue(&dir, Default::default()).await;
    #[cfg(feature = "cron")]
    let queue = schedules::with_schedules(queue).await;
    let (base, server) = serve(queue.clone()).await;
    let job = queue.create("flaky", ()).await.unwrap();
    job.result().await.unwrap();
    browser.sign_in(&base, READER).await;
    #[allow(unused_mut)]
    let mut pages = vec![
        format!("{base}/"),
        format!("{base}/jobs"),
        format!("{base}/jobs/{}", job.id()),
    ];
    #[cfg(feature = "cron")]
    pages.push(format!("{base}/schedules"));
    for page in pages {
        browser.client.goto(&page).await.unwrap();
        browser.wait_for("main h1").await;
        let buttons = browser
            .client
            .execute("return [...document.querySelectorAll('main button, main form[method=post]')].length;", vec![])
            .await
            .unwrap();
        assert_eq!(buttons, json!(0), "{page}");
        assert_eq!(browser.text(".role").await, "read-only");
    }
    assert_eq!(
        post_status(&base, &format!("/jobs/{}/retry", job.id()), READER),
        403
    );
    assert_eq!(queue.job(job.id()).await.unwrap().status, JobStatus::Buried);
    // The admin's token does what the reader's may not.
    assert_eq!(
        post_status(&base, &format!("/jobs/{}/retry", job.id()), ADMIN),
        303
    );
    browser.assert_no_console_errors().await;
    browser.finish().await;
    server.stop(false).await;
}

#[actix_rt::test]
async fn cancelling_a_running_job_ends_its_log_with_the_cancel() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let queue = sqlite_queue(&dir, release).await;
    let (base, server) = serve(queue.clone()).await;
    let job = queue.create("hold", json!({"report": "q3"})).await.unwrap();
    until_status(&queue, job.id(), JobStatus::Running).await;
    browser.sign_in(&base, ADMIN).await;
    browser
        .client
        .goto(&format!("{base}/jobs/{}", job.id()))
        .await
        .unwrap();
    browser.wait_for("#job-status[data-status=running]").await;
    browser
        .wait_until(
            "live",
            "return document.getElementById('live').dataset.state === 'live';",
        )
        .await;
    browser.wait_for("#cancel").await.click().await.unwrap();
    browser.wait_for("#job-status[data-status=cancelled]").await;
    let last = "const lines = document.querySelectorAll('#log tr.line td.message'); \
                return lines.length > 0 && lines[lines.length - 1].textContent.startsWith('cancelled');";
    browser
        .wait_until("the log ends with the cancel", last)
        .await;
    assert!(browser
        .text("#log")
        .await
        .contains("waiting for a release or a cancel"));
    let progress = browser.wait_for("progress#progress").await;
    assert_eq!(progress.attr("value").await.unwrap().as_deref(), Some("1"));
    assert_eq!(progress.attr("max").await.unwrap().as_deref(), Some("3"));
    browser.assert_no_console_errors().await;
    browser.finish().await;
    server.stop(false).await;
}

#[cfg(feature = "cron")]
#[actix_rt::test]
async fn running_a_schedule_now_shows_its_job_without_a_reload() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let queue = schedules::with_schedules(sqlite_queue(&dir, Default::default()).await).await;
    let (base, server) = serve(queue.clone()).await;
    browser.sign_in(&base, ADMIN).await;
    // From the navigation.
    browser
        .wait_for("nav a[href$='/schedules']")
        .await
        .click()
        .await
        .unwrap();
    let row = "#schedules tr[data-schedule=nightly]";
    browser.wait_for(row).await;
    assert_eq!(browser.text(&format!("{row} td.last-job")).await, "—");
    browser
        .wait_until(
            "live",
            "return document.getElementById('live').dataset.state === 'live';",
        )
        .await;
    // A reload would lose this mark.
    browser
        .client
        .execute("window.kesselMark = 'same page'; return true;", vec![])
        .await
        .unwrap();
    browser
        .wait_for(&format!("{row} button[data-action=run-now]"))
        .await
        .click()
        .await
        .unwrap();
    // The job shows up in the row and follows its events to the end.
    browser
        .wait_for(&format!("{row} td.last-job [data-status=completed]"))
        .await;
    let mark = browser
        .client
        .execute("return window.kesselMark;", vec![])
        .await
        .unwrap();
    assert_eq!(mark, json!("same page"), "the page was reloaded");
    let last = queue
        .schedules()
        .get("nightly")
        .await
        .unwrap()
        .last_job
        .expect("run now made a job");
    assert_eq!(queue.job(last).await.unwrap().task.as_ref(), "echo");
    assert!(browser
        .text("#flash")
        .await
        .contains(&format!("Created job {last}")));
    browser.screenshot("dashboard-schedules.png").await;
    // Its link leads to the job.
    browser
        .wait_for(&format!("{row} td.last-job a"))
        .await
        .click()
        .await
        .unwrap();
    browser.wait_for("#job-status[data-status=completed]").await;
    assert!(browser.text("#result").await.contains("daily"));
    browser.assert_no_console_errors().await;
    browser.finish().await;
    server.stop(false).await;
}

#[actix_rt::test]
async fn console_error_check_catches_a_planted_error() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let queue = with_tasks(Queue::new(), Default::default()).await;
    let (base, server) = serve(queue).await;
    browser.sign_in(&base, ADMIN).await;
    browser.assert_no_console_errors().await;
    browser
        .client
        .execute(
            "setTimeout(function () { throw new Error('planted by the test'); }, 0); return true;",
            vec![],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let errors = loop {
        let errors = browser.console_errors().await;
        if !errors.is_empty() || Instant::now() > deadline {
            break errors;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        errors.iter().any(|e| e.contains("planted by the test")),
        "{errors:?}"
    );
    browser.finish().await;
    server.stop(false).await;
}
