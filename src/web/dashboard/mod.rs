//! The dashboard (feature `dashboard`): server-rendered HTML pages to see
//! and steer the queue, mounted under the API at `<mount>/dashboard/`.
//!
//! Pages are rendered with maud (templates are Rust, checked by the
//! compiler, escaped by default). One small script and one stylesheet are
//! compiled into the crate and served from `<mount>/dashboard/assets/`;
//! nothing is fetched from elsewhere. Every page sends a
//! Content-Security-Policy that allows scripts, styles and connections
//! from the dashboard's own origin only, so no inline script can run.
//!
//! - Who may look: the API's [`Auth`](super::Auth). With tokens, the
//!   sign-in page puts the token in an `HttpOnly`, `SameSite=Strict`
//!   cookie that only the dashboard's routes read (the JSON API still
//!   wants its bearer header). A read-only token sees no action buttons,
//!   and its POSTs are refused.
//! - Changes are POSTs, refused when they come from another site
//!   (`Sec-Fetch-Site`, else `Origin`, must say this origin).
//! - Live: the script follows the dashboard's event stream (the API's
//!   `/events`, behind the dashboard's sign-in) and redraws the page's
//!   main part when something happens; no reload.

use std::sync::Arc;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::error::WebError;
use super::{Role, State};

mod actions;
mod jobs;
mod meter;
mod overview;
mod page;
#[cfg(feature = "cron")]
mod schedules;
mod signin;

pub(crate) use meter::Meter;

/// The cookie that holds a signed-in token.
const COOKIE: &str = "kessel_dashboard";

/// The Content-Security-Policy of every dashboard response: nothing
/// inline runs, nothing is loaded from elsewhere, no other site may frame
/// the pages, and forms post only here.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// What the dashboard's handlers share beside the API's state.
#[derive(Debug)]
pub(crate) struct Dash {
    /// Where the dashboard is mounted, as links start (`/kessel/dashboard`).
    pub(crate) base: String,
    /// Counts of recent events, for the overview's chart.
    pub(crate) meter: Arc<Meter>,
}

/// The dashboard as a scope to add to the API's, at `<mount>/dashboard`.
pub(crate) fn scope(mount: &str, meter: Arc<Meter>) -> impl HttpServiceFactory + 'static {
    let base = format!("{}/dashboard", mount.trim_end_matches('/'));
    let dash = Data::new(Dash { base, meter });
    let scope = web::scope("/dashboard")
        .app_data(dash)
        .app_data(web::QueryConfig::default().error_handler(|err, req| {
            html_error(
                req,
                WebError::BadRequest {
                    code: "invalid_query",
                    message: err.to_string(),
                    field: None,
                },
            )
        }))
        .app_data(
            web::FormConfig::default()
                .limit(64 * 1024)
                .error_handler(|err, req| {
                    html_error(
                        req,
                        WebError::BadRequest {
                            code: "invalid_form",
                            message: err.to_string(),
                            field: None,
                        },
                    )
                }),
        )
        .app_data(web::PathConfig::default().error_handler(|err, req| {
            html_error(
                req,
                WebError::BadRequest {
                    code: "invalid_path",
                    message: err.to_string(),
                    field: None,
                },
            )
        }))
        .route("", web::get().to(to_overview))
        .route("/", web::get().to(overview::page))
        .route("/jobs", web::get().to(jobs::list))
        .route("/jobs/{id}", web::get().to(jobs::detail))
        .route("/jobs/{id}/cancel", web::post().to(actions::cancel))
        .route("/jobs/{id}/retry", web::post().to(actions::retry))
        .route("/bulk", web::post().to(actions::bulk))
        .route("/tasks/{task}/{action}", web::post().to(actions::task))
        .route("/jobs/{id}/delete", web::post().to(actions::delete))
        .route("/tags/{tag}/{action}", web::post().to(actions::tag))
        .route("/events", web::get().to(events))
        .route("/login", web::get().to(signin::form))
        .route("/login", web::post().to(signin::submit))
        .route("/logout", web::post().to(signin::sign_out))
        .route("/assets/dashboard.js", web::get().to(script))
        .route("/assets/dashboard.css", web::get().to(style));
    #[cfg(feature = "cron")]
    let scope = scope
        .route("/schedules", web::get().to(schedules::page))
        .route("/schedules/{action}", web::post().to(schedules::act));
    scope.default_service(web::to(not_found))
}

/// `/dashboard` without its slash: relative links need the slash.
async fn to_overview(req: HttpRequest) -> HttpResponse {
    let base = dash_of(&req).map(|d| d.base.clone()).unwrap_or_default();
    see_other(&format!("{base}/"))
}

pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn dash_of(req: &HttpRequest) -> Result<Data<Dash>, WebError> {
    req.app_data::<Data<Dash>>()
        .cloned()
        .ok_or_else(|| WebError::Internal("kessel dashboard state missing".into()))
}

/// A signed-in (or, on an open API, any) caller: the API's state, the
/// dashboard's, and the caller's role.
#[derive(Debug)]
pub(crate) struct Viewer {
    pub(crate) state: Data<State>,
    pub(crate) dash: Data<Dash>,
    pub(crate) role: Role,
}

impl Viewer {
    /// Whether the caller may change things (and so sees the buttons).
    pub(crate) fn admin(&self) -> bool {
        self.role.may(Role::Admin)
    }

    /// The caller, or why not. A caller without a token on an API with
    /// tokens is sent to the sign-in page when it asked for a page.
    pub(crate) fn of(req: &HttpRequest) -> Result<Viewer, PageError> {
        let dash = dash_of(req).map_err(|e| PageError::new(req, e))?;
        let state = super::state(req).map_err(|_| {
            PageError::new(req, WebError::Internal("kessel::web state missing".into()))
        })?;
        let token = cookie(req, COOKIE).map(|c| signin::decode(&c));
        match state.auth.dashboard_role(req.head(), token.as_deref()) {
            Ok(role) => {
                dash.meter.start(&state.queue);
                Ok(Viewer { state, dash, role })
            }
            Err(WebError::Unauthorized(_))
                if state.auth.takes_tokens() && req.method() == actix_web::http::Method::GET =>
            {
                let next = req.uri().path_and_query().map_or("", |p| p.as_str());
                Err(PageError::SignIn(format!(
                    "{}/login?next={}",
                    dash.base,
                    page::encode(next)
                )))
            }
            Err(e) => Err(PageError::new(req, e)),
        }
    }

    /// The caller when it may change things and the request comes from
    /// the dashboard's own pages.
    pub(crate) fn admin_of(req: &HttpRequest) -> Result<Viewer, PageError> {
        same_origin(req).map_err(|e| PageError::new(req, e))?;
        let viewer = Viewer::of(req)?;
        if !viewer.admin() {
            return Err(PageError::new(
                req,
                WebError::Forbidden(
                    "this token may only read: cancelling, retrying, deleting, suspending \
                     and steering schedules need an admin token"
                        .into(),
                ),
            ));
        }
        Ok(viewer)
    }
}

/// Refuses a request another site made the browser send: `Sec-Fetch-Site`
/// must be `same-origin`; without it (older browsers), `Origin` must name
/// this host. A request with neither comes from no browser (a script,
/// curl) and is let through: cross-site forgery needs a browser.
pub(crate) fn same_origin(req: &HttpRequest) -> Result<(), WebError> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        return if site.eq_ignore_ascii_case("same-origin") {
            Ok(())
        } else {
            Err(WebError::Forbidden(format!(
                "cross-site request refused: Sec-Fetch-Site is `{site}`, not `same-origin`"
            )))
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("?");
        let host = req.connection_info().host().to_owned();
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'));
        return if origin_host.is_some_and(|o| o.eq_ignore_ascii_case(&host)) {
            Ok(())
        } else {
            Err(WebError::Forbidden(format!(
                "cross-site request refused: Origin `{origin}` is not this host (`{host}`)"
            )))
        };
    }
    Ok(())
}

/// The value of the cookie `name`, read from the `Cookie` header.
pub(crate) fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Whether the request wants JSON back (the dashboard's script does).
pub(crate) fn wants_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// Why a dashboard request was not served: an API error shown as a page
/// (or as the API's JSON when the script asked), or a trip to sign in.
#[derive(Debug)]
pub(crate) enum PageError {
    /// Shown with the error's status, code and field.
    Failed {
        error: WebError,
        base: String,
        json: bool,
    },
    /// No token yet: to the sign-in page (a 303 to this location).
    SignIn(String),
}

impl PageError {
    pub(crate) fn new(req: &HttpRequest, error: WebError) -> Self {
        PageError::Failed {
            error,
            base: dash_of(req).map(|d| d.base.clone()).unwrap_or_default(),
            json: wants_json(req),
        }
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::Failed { error, .. } => error.fmt(f),
            PageError::SignIn(_) => f.write_str("sign in first"),
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::Failed { error, .. } => error.status_code(),
            PageError::SignIn(_) => StatusCode::SEE_OTHER,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            PageError::SignIn(location) => see_other(location),
            PageError::Failed {
                error, json: true, ..
            } => with_headers(error.error_response()),
            PageError::Failed { error, base, .. } => {
                let markup = page::error_page(base, error);
                let mut response = HttpResponse::build(error.status_code())
                    .content_type("text/html; charset=utf-8")
                    .body(markup.into_string());
                if let WebError::Unauthorized(_) = error {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"kessel\""),
                    );
                }
                with_headers(response)
            }
        }
    }
}

fn html_error(req: &HttpRequest, error: WebError) -> actix_web::Error {
    PageError::new(req, error).into()
}

/// Adds the dashboard's security headers to a response.
pub(crate) fn with_headers(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// An HTML page, with the dashboard's headers.
pub(crate) fn html(markup: maud::Markup) -> HttpResponse {
    html_with(StatusCode::OK, markup)
}

/// An HTML page with `status`, with the dashboard's headers.
pub(crate) fn html_with(status: StatusCode, markup: maud::Markup) -> HttpResponse {
    with_headers(
        HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(markup.into_string()),
    )
}

/// The event stream, for a signed-in caller (the API's `/events` wants a
/// bearer header, which `EventSource` cannot send).
async fn events(
    req: HttpRequest,
    params: Result<web::Query<super::events::EventParams>, actix_web::Error>,
) -> Result<HttpResponse, PageError> {
    // A stream is no page: without a token it is a 401, not a trip to
    // the sign-in form (which `EventSource` could not read).
    let viewer = Viewer::of(&req).map_err(|e| match e {
        PageError::SignIn(_) => PageError::new(
            &req,
            WebError::Unauthorized("sign in to the dashboard first".into()),
        ),
        other => other,
    })?;
    let params = params.map_err(|e| {
        PageError::new(
            &req,
            WebError::BadRequest {
                code: "invalid_query",
                message: e.to_string(),
                field: None,
            },
        )
    })?;
    super::events::open(viewer.state, &req, params.into_inner())
        .map_err(|e| PageError::new(&req, e))
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// The script and stylesheet need no sign-in (the sign-in page uses
/// them) and hold nothing secret.
fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    with_headers(
        HttpResponse::Ok()
            .content_type(content_type)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(body),
    )
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, PageError> {
    Err(PageError::new(
        &req,
        WebError::NotFound {
            code: "route_not_found",
            message: format!("no dashboard page {} {}", req.method(), req.path()),
        },
    ))
}
