//! The HTTP API (feature `web`): jobs, tasks, tags, stats, a live event
//! stream and, with feature `cron`, schedules, over JSON, to mount in your
//! own actix-web app or run standalone.
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//! use kessel::web::{Api, Auth};
//!
//! # #[actix_web::main] async fn main() -> std::io::Result<()> {
//! let queue = kessel::Queue::new();
//! let api = Api::new(queue.clone(), Auth::tokens().read_only("dash-7f3a").admin("ops-91c2"));
//! HttpServer::new(move || {
//!     App::new()
//!         .route("/health", web::get().to(|| async { "ok" }))
//!         .service(api.scope("/kessel"))
//! })
//! .bind("127.0.0.1:8080")?
//! .run()
//! .await
//! # }
//! ```
//!
//! Every error is JSON, `{"error": {"code", "message", "field"?}}` (see
//! [`WebError`]); the OpenAPI 3 document is served at `GET /openapi.json`
//! under the mount path. `docs/http.md` lists every endpoint with an
//! example.
//!
//! With feature `dashboard`, the same [`Api`] serves a dashboard under
//! `<mount>/dashboard/` (HTML pages, behind the same auth, signing in with
//! a cookie); see `docs/dashboard.md`.

use std::sync::Arc;

use actix_web::dev::{HttpServiceFactory, Server};
use actix_web::web::{self, Data};
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use futures::future::{ready, Ready};
use utoipa::OpenApi;

use crate::queue::Queue;

mod admin;
mod auth;
mod body;
mod cursor;
#[cfg(feature = "dashboard")]
mod dashboard;
mod dto;
mod error;
mod events;
mod jobs;
mod nodes;
mod remote;
#[cfg(feature = "cron")]
mod schedules;

pub use auth::{Auth, Authorize, Denied, Role, Tokens};
pub use error::{ErrorBody, ErrorDetail, WebError};
pub use remote::DEFAULT_REMOTE_SLOTS;

/// The default request body limit: 1 MiB.
///
/// # Examples
///
/// ```
/// assert_eq!(kessel::web::DEFAULT_BODY_LIMIT, 1 << 20);
/// ```
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// The default number of recent events kept for `Last-Event-ID` resume.
///
/// # Examples
///
/// ```
/// assert_eq!(kessel::web::DEFAULT_REPLAY, 1024);
/// ```
pub const DEFAULT_REPLAY: usize = 1024;

/// The HTTP API of one queue, with its options. Cheap to clone; build it
/// once and call [`Api::scope`] in the `HttpServer` factory (once per
/// worker thread): every worker shares the same event history.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() {
/// use kessel::web::{Api, Auth};
/// let queue = kessel::Queue::new();
/// let api = Api::new(queue, Auth::none()).body_limit(64 * 1024).replay(4096);
/// let app = actix_web::App::new().service(api.scope("/kessel"));
/// let service = actix_web::test::init_service(app).await;
/// let req = actix_web::test::TestRequest::get().uri("/kessel/stats").to_request();
/// assert!(actix_web::test::call_service(&service, req).await.status().is_success());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Api {
    queue: Queue,
    auth: Auth,
    body_limit: usize,
    replay: usize,
    hub: Arc<events::Hub>,
    /// Jobs parked for remote workers (`/remote/...`).
    remote: Arc<remote::Pool>,
    /// The dashboard's shared counts, or none when it is turned off.
    #[cfg(feature = "dashboard")]
    dashboard: Option<Arc<dashboard::Meter>>,
}

/// What every handler reads: shared by the workers of a server.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) queue: Queue,
    pub(crate) auth: Auth,
    pub(crate) body_limit: usize,
    pub(crate) hub: Arc<events::Hub>,
    /// Jobs parked for remote workers.
    pub(crate) remote: Arc<remote::Pool>,
    /// The OpenAPI document as served under this mount path.
    pub(crate) openapi: String,
}

/// The handlers' state, or a 500 when the scope was built without it
/// (it cannot be: [`Api::scope`] always adds it).
pub(crate) fn state(req: &HttpRequest) -> Result<Data<State>, actix_web::Error> {
    req.app_data::<Data<State>>()
        .cloned()
        .ok_or_else(|| WebError::Internal("kessel::web state missing".into()).into())
}

impl Api {
    /// The API of `queue`, with `auth` deciding who may use it.
    pub fn new(queue: Queue, auth: impl Into<Auth>) -> Self {
        Api {
            queue,
            auth: auth.into(),
            body_limit: DEFAULT_BODY_LIMIT,
            replay: DEFAULT_REPLAY,
            hub: Arc::new(events::Hub::new(DEFAULT_REPLAY)),
            remote: Arc::default(),
            #[cfg(feature = "dashboard")]
            dashboard: Some(Arc::default()),
        }
    }

    /// Leaves the dashboard out: with feature `dashboard`, [`Api::scope`]
    /// and [`Api::server`] serve it under `<mount>/dashboard/` unless this
    /// is called (see `docs/dashboard.md`).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() {
    /// use kessel::web::{Api, Auth};
    /// let api = Api::new(kessel::Queue::new(), Auth::none()).without_dashboard();
    /// let app = actix_web::test::init_service(actix_web::App::new().service(api.scope("/kessel"))).await;
    /// let req = actix_web::test::TestRequest::get().uri("/kessel/dashboard/").to_request();
    /// assert_eq!(actix_web::test::call_service(&app, req).await.status(), 404);
    /// # }
    /// ```
    #[cfg(feature = "dashboard")]
    pub fn without_dashboard(mut self) -> Self {
        self.dashboard = None;
        self
    }

    /// Request bodies over `bytes` are refused with 413 (default
    /// [`DEFAULT_BODY_LIMIT`]).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How many recent events `GET /events` keeps so a client that
    /// reconnects with `Last-Event-ID` misses nothing (default
    /// [`DEFAULT_REPLAY`]; 0 keeps none: a reconnecting client is told
    /// what it missed, as a `lagged` event).
    pub fn replay(mut self, events: usize) -> Self {
        self.replay = events;
        self.hub = Arc::new(events::Hub::new(events));
        self
    }

    /// The API as an actix-web service mounted at `path` (`"/kessel"`;
    /// `""` for the root), to add to an `App` with `.service(..)`.
    ///
    /// Paths the API does not know under `path` answer 404 in the API's
    /// error shape, and known paths with another method 405. With feature
    /// `dashboard`, the dashboard's pages are under `path` + `/dashboard/`
    /// (unless [`Api::without_dashboard`]).
    pub fn scope(&self, path: &str) -> impl HttpServiceFactory + 'static {
        let state = Data::new(State {
            queue: self.queue.clone(),
            auth: self.auth.clone(),
            body_limit: self.body_limit,
            hub: self.hub.clone(),
            remote: self.remote.clone(),
            openapi: openapi_json(path),
        });
        let resource = |p: &str, allow: &'static str| {
            web::resource(p).default_service(web::to(move || method_not_allowed(allow)))
        };
        let scope = web::scope(path)
            .app_data(state)
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .service(
                resource("/jobs", "GET, POST")
                    .route(web::get().to(jobs::list_jobs))
                    .route(web::post().to(jobs::create_job)),
            )
            .service(resource("/jobs/batch", "POST").route(web::post().to(jobs::create_jobs)))
            .service(resource("/jobs/cancel", "POST").route(web::post().to(jobs::cancel_jobs)))
            .service(resource("/jobs/kick", "POST").route(web::post().to(jobs::kick_jobs)))
            .service(resource("/jobs/delete", "POST").route(web::post().to(jobs::delete_jobs)))
            .service(
                resource("/jobs/{id}", "GET, DELETE")
                    .route(web::get().to(jobs::get_job))
                    .route(web::delete().to(jobs::delete_job)),
            )
            .service(resource("/jobs/{id}/cancel", "POST").route(web::post().to(jobs::cancel_job)))
            .service(resource("/jobs/{id}/kick", "POST").route(web::post().to(jobs::kick_job)))
            .service(resource("/tasks", "GET").route(web::get().to(admin::list_tasks)))
            .service(
                resource("/tasks/{task}/suspend", "POST")
                    .route(web::post().to(admin::suspend_task)),
            )
            .service(
                resource("/tasks/{task}/resume", "POST").route(web::post().to(admin::resume_task)),
            )
            .service(
                resource("/tags/{tag}/suspend", "POST").route(web::post().to(admin::suspend_tag)),
            )
            .service(
                resource("/tags/{tag}/resume", "POST").route(web::post().to(admin::resume_tag)),
            )
            .service(resource("/stats", "GET").route(web::get().to(admin::stats)))
            .service(resource("/nodes", "GET").route(web::get().to(nodes::list_nodes)))
            .service(resource("/clean", "POST").route(web::post().to(admin::clean)))
            .service(
                resource("/delete-matching", "POST").route(web::post().to(admin::delete_matching)),
            )
            .service(resource("/events", "GET").route(web::get().to(events::stream)))
            .service(resource("/remote/fetch", "POST").route(web::post().to(remote::fetch)))
            .service(
                resource("/remote/jobs/{id}/heartbeat", "POST")
                    .route(web::post().to(remote::heartbeat)),
            )
            .service(
                resource("/remote/jobs/{id}/complete", "POST")
                    .route(web::post().to(remote::complete)),
            )
            .service(resource("/remote/jobs/{id}/fail", "POST").route(web::post().to(remote::fail)))
            .service(resource("/remote/jobs/{id}/log", "POST").route(web::post().to(remote::log)))
            .service(
                resource("/remote/jobs/{id}/progress", "POST")
                    .route(web::post().to(remote::progress)),
            )
            .service(resource("/openapi.json", "GET").route(web::get().to(openapi)));
        #[cfg(feature = "cron")]
        let scope = scope
            .service(resource("/schedules", "GET").route(web::get().to(schedules::list_schedules)))
            .service(
                resource("/schedules/{name}", "GET, PUT, DELETE")
                    .route(web::get().to(schedules::get_schedule))
                    .route(web::put().to(schedules::upsert_schedule))
                    .route(web::delete().to(schedules::remove_schedule)),
            )
            .service(
                resource("/schedules/{name}/pause", "POST")
                    .route(web::post().to(schedules::pause_schedule)),
            )
            .service(
                resource("/schedules/{name}/resume", "POST")
                    .route(web::post().to(schedules::resume_schedule)),
            )
            .service(
                resource("/schedules/{name}/run-now", "POST")
                    .route(web::post().to(schedules::run_schedule_now)),
            );
        #[cfg(feature = "dashboard")]
        let scope = match &self.dashboard {
            Some(meter) => scope.service(dashboard::scope(path, meter.clone())),
            None => scope,
        };
        scope.default_service(web::to(route_not_found))
    }

    /// Runs the API alone on `addr`, mounted at the root, on actix-web's
    /// default number of worker threads. Await the returned server (it
    /// stops on Ctrl-C); its handle stops it early.
    ///
    /// # Errors
    ///
    /// When `addr` cannot be bound.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[actix_web::main] async fn main() -> std::io::Result<()> {
    /// let queue = kessel::Queue::new();
    /// kessel::web::Api::new(queue, kessel::web::Auth::none())
    ///     .server("127.0.0.1:8080")?
    ///     .await
    /// # }
    /// ```
    pub fn server(self, addr: impl std::net::ToSocketAddrs) -> std::io::Result<Server> {
        Ok(
            actix_web::HttpServer::new(move || actix_web::App::new().service(self.scope("")))
                .bind(addr)?
                .run(),
        )
    }
}

/// `Api::new(queue, auth).scope(path)`: the API as a service to mount in
/// an app, in one line.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() {
/// let queue = kessel::Queue::new();
/// let app = actix_web::App::new()
///     .service(kessel::web::scope("/kessel", queue.clone(), kessel::web::Auth::none()));
/// # let _ = actix_web::test::init_service(app).await;
/// # }
/// ```
pub fn scope(path: &str, queue: Queue, auth: impl Into<Auth>) -> impl HttpServiceFactory + 'static {
    Api::new(queue, auth).scope(path)
}

/// `Api::new(queue, auth).server(addr)`: the API alone on `addr`.
///
/// # Errors
///
/// When `addr` cannot be bound.
///
/// # Examples
///
/// ```no_run
/// # #[actix_web::main] async fn main() -> std::io::Result<()> {
/// let queue = kessel::Queue::new();
/// kessel::web::server(queue, kessel::web::Auth::none(), "127.0.0.1:8080")?.await
/// # }
/// ```
pub fn server(
    queue: Queue,
    auth: impl Into<Auth>,
    addr: impl std::net::ToSocketAddrs,
) -> std::io::Result<Server> {
    Api::new(queue, auth).server(addr)
}

/// Requires a caller who may read (any role).
#[derive(Debug)]
pub(crate) struct Read(pub(crate) Data<State>);

/// Requires a caller who may change things (the admin role).
#[derive(Debug)]
pub(crate) struct Admin(pub(crate) Data<State>);

fn authorize(req: &HttpRequest, role: Role) -> Result<Data<State>, actix_web::Error> {
    let state = state(req)?;
    state.auth.check(req.head(), role)?;
    Ok(state)
}

impl FromRequest for Read {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authorize(req, Role::ReadOnly).map(Read))
    }
}

impl FromRequest for Admin {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authorize(req, Role::Admin).map(Admin))
    }
}

async fn route_not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    WebError::NotFound {
        code: "route_not_found",
        message: format!("no route {} {}", req.method(), req.path()),
    }
    .error_response()
}

async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    use actix_web::ResponseError;
    let mut response = WebError::MethodNotAllowed.error_response();
    response.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    response
}

/// The OpenAPI document of the API, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kessel HTTP API",
        description = "Jobs, tasks, stats and a live event stream of a kessel queue. See docs/http.md.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        jobs::create_job,
        jobs::create_jobs,
        jobs::list_jobs,
        jobs::get_job,
        jobs::cancel_job,
        jobs::kick_job,
        jobs::delete_job,
        jobs::cancel_jobs,
        jobs::kick_jobs,
        jobs::delete_jobs,
        admin::list_tasks,
        admin::suspend_task,
        admin::resume_task,
        admin::suspend_tag,
        admin::resume_tag,
        admin::stats,
        nodes::list_nodes,
        admin::clean,
        admin::delete_matching,
        events::stream,
        remote::fetch,
        remote::heartbeat,
        remote::complete,
        remote::fail,
        remote::log,
        remote::progress,
        openapi,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "Create, read, cancel and kick jobs, one at a time or by filter"),
        (name = "admin", description = "Tasks, tags, stats, nodes, clean, delete-matching"),
        (name = "events", description = "A live stream of job and queue events"),
        (name = "remote", description = "Remote workers: fetch jobs with a lease, heartbeat, report"),
    )
)]
struct ApiDoc;

/// The schedules' part of the document (feature `cron`), merged into
/// [`ApiDoc`].
#[cfg(feature = "cron")]
#[derive(OpenApi)]
#[openapi(
    paths(
        schedules::list_schedules,
        schedules::get_schedule,
        schedules::upsert_schedule,
        schedules::remove_schedule,
        schedules::pause_schedule,
        schedules::resume_schedule,
        schedules::run_schedule_now,
    ),
    tags((name = "schedules", description = "Recurring jobs (feature `cron`): list, upsert, pause, resume, run now")),
)]
struct SchedulesDoc;

/// The document of the API as built: with feature `cron`, the schedules.
fn api_doc() -> utoipa::openapi::OpenApi {
    #[cfg(feature = "cron")]
    {
        ApiDoc::openapi().merge_from(SchedulesDoc::openapi())
    }
    #[cfg(not(feature = "cron"))]
    {
        ApiDoc::openapi()
    }
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI 3 document of the API, as JSON text, with no server
/// (paths relative to where the API is mounted). `docs/openapi.json` is a
/// copy; the API serves it at `GET /openapi.json` with its mount path as
/// the server.
///
/// # Examples
///
/// ```
/// let doc: serde_json::Value = serde_json::from_str(&kessel::web::openapi_document()).unwrap();
/// assert_eq!(doc["openapi"], "3.1.0");
/// assert!(doc["paths"]["/jobs/{id}/kick"]["post"].is_object());
/// ```
pub fn openapi_document() -> String {
    openapi_json("")
}

fn openapi_json(path: &str) -> String {
    let mut doc = api_doc();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    if !path.trim_matches('/').is_empty() {
        doc.servers = Some(vec![utoipa::openapi::Server::new(path)]);
    }
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    either_or(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// `delay` and `run_at` (and `expires_in` and `expires_at`) are either/or,
/// and `unique_window` goes with `unique_scope: window` only: said in the
/// schema too (utoipa has no attribute for `not` or `if`), so clients and
/// schema-driven testers know what is refused.
fn either_or(doc: &mut serde_json::Value) {
    let both = |a: &str, b: &str| {
        serde_json::json!({
            "required": [a, b],
            "properties": {a: {"not": {"type": "null"}}, b: {"not": {"type": "null"}}},
        })
    };
    if let Some(schema) = doc.pointer_mut("/components/schemas/CreateJobRequest") {
        if let Some(schema) = schema.as_object_mut() {
            schema.insert(
                "not".into(),
                serde_json::json!({"anyOf": [both("delay", "run_at"), both("expires_in", "expires_at")]}),
            );
            // `unique_window` goes with `unique_scope: window`, and it
            // with `unique_window`.
            let window = serde_json::json!({"required": ["unique_scope"], "properties": {"unique_scope": {"const": "window"}}});
            let sized = serde_json::json!({"required": ["unique_window"], "properties": {"unique_window": {"type": "string"}}});
            schema.insert(
                "allOf".into(),
                serde_json::json!([
                    {"if": sized, "then": window},
                    {"if": window, "then": sized},
                ]),
            );
        }
    }
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "admin",
    responses(
        (status = 200, description = "The OpenAPI document", content_type = "application/json"),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    )
)]
async fn openapi(read: Read) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(read.0.openapi.clone())
}
