//! Signing in with a token: a browser cannot send a bearer header when it
//! follows a link, so the sign-in form puts the token in a cookie that
//! only the dashboard's routes read.
//!
//! The cookie is `HttpOnly` (the page's script cannot read it),
//! `SameSite=Strict` (another site's links and forms arrive without it),
//! scoped to the dashboard's path (the JSON API never receives it),
//! `Secure` when the request came over HTTPS, and lasts until the browser
//! closes or the user signs out. It holds the token itself: removing a
//! token from the API's [`Auth`](crate::web::Auth) signs its users out.

use actix_web::http::header;
use actix_web::web::{Form, Query};
use actix_web::{HttpRequest, HttpResponse};
use maud::html;
use serde::Deserialize;

use super::page::{self, encode};
use super::{dash_of, same_origin, see_other, with_headers, PageError, COOKIE};
use crate::web::error::WebError;

#[derive(Debug, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignIn {
    token: String,
    next: Option<String>,
}

/// Where to go after signing in: a dashboard page, never elsewhere.
fn next_page(base: &str, next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with(&format!("{base}/")) && !n.contains("//") => n.to_owned(),
        _ => format!("{base}/"),
    }
}

fn login_page(base: &str, next: &str, problem: Option<&str>, takes_tokens: bool) -> maud::Markup {
    page::shell(
        base,
        "Sign in",
        page::Live::default(),
        html! {
            header { nav { a.brand href={ (base) "/" } { "kessel" } } }
            main.signin {
                h1 { "Sign in" }
                @if takes_tokens {
                    @if let Some(problem) = problem { p.error #signin-error role="alert" { (problem) } }
                    form method="post" action={ (base) "/login" } {
                        input type="hidden" name="next" value=(next);
                        label { "Token"
                            input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        }
                        button #sign-in type="submit" { "Sign in" }
                    }
                    p.muted { "An admin token may change jobs; a read-only token may look." }
                } @else {
                    p { "This dashboard takes no token: the application decides who may use it." }
                    p { a href=(next) { "Go on" } }
                }
            }
        },
    )
}

/// `GET /dashboard/login`.
pub(crate) async fn form(req: HttpRequest, query: Query<Next>) -> Result<HttpResponse, PageError> {
    let dash = dash_of(&req).map_err(|e| PageError::new(&req, e))?;
    let state = crate::web::state(&req).map_err(|_| {
        PageError::new(&req, WebError::Internal("kessel::web state missing".into()))
    })?;
    let next = next_page(&dash.base, query.next.as_deref());
    Ok(super::html(login_page(
        &dash.base,
        &next,
        None,
        state.auth.takes_tokens(),
    )))
}

/// `POST /dashboard/login`: a known token gets the cookie and goes on to
/// `next`; an unknown one sees the form again, with a 401.
pub(crate) async fn submit(
    req: HttpRequest,
    form: Result<Form<SignIn>, actix_web::Error>,
) -> Result<HttpResponse, PageError> {
    same_origin(&req).map_err(|e| PageError::new(&req, e))?;
    let form = form.map_err(|e| PageError::new(&req, super::actions::form_error(&e)))?;
    let dash = dash_of(&req).map_err(|e| PageError::new(&req, e))?;
    let state = crate::web::state(&req).map_err(|_| {
        PageError::new(&req, WebError::Internal("kessel::web state missing".into()))
    })?;
    let next = next_page(&dash.base, form.next.as_deref());
    let token = form.token.trim();
    if state.auth.token_role(token).is_none() {
        let markup = login_page(
            &dash.base,
            &next,
            Some("Unknown token."),
            state.auth.takes_tokens(),
        );
        return Ok(with_headers(
            HttpResponse::Unauthorized()
                .content_type("text/html; charset=utf-8")
                .body(markup.into_string()),
        ));
    }
    let secure = if req.connection_info().scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; Path={}; HttpOnly; SameSite=Strict{secure}",
        encode(token),
        dash.base
    );
    let mut response = see_other(&next);
    response.headers_mut().append(
        header::SET_COOKIE,
        header::HeaderValue::from_str(&cookie)
            .map_err(|e| PageError::new(&req, WebError::Internal(e.to_string())))?,
    );
    Ok(response)
}

/// `POST /dashboard/logout`: the cookie is cleared.
pub(crate) async fn sign_out(req: HttpRequest) -> Result<HttpResponse, PageError> {
    same_origin(&req).map_err(|e| PageError::new(&req, e))?;
    let dash = dash_of(&req).map_err(|e| PageError::new(&req, e))?;
    let cookie = format!(
        "{COOKIE}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
        dash.base
    );
    let mut response = see_other(&format!("{}/login", dash.base));
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Reverses [`encode`] (`%XX` escapes), for the cookie's value.
pub(crate) fn decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_dashboard() {
        let base = "/kessel/dashboard";
        assert_eq!(
            next_page(base, Some("/kessel/dashboard/jobs?x=1")),
            "/kessel/dashboard/jobs?x=1"
        );
        assert_eq!(
            next_page(base, Some("https://evil.example/")),
            "/kessel/dashboard/"
        );
        assert_eq!(
            next_page(base, Some("/kessel/dashboard//evil.example")),
            "/kessel/dashboard/"
        );
        assert_eq!(next_page(base, None), "/kessel/dashboard/");
    }

    #[test]
    fn cookie_values_round_trip() {
        for token in ["ops-91c2", "a;b,c=\"d\"%", "ünï"] {
            assert_eq!(decode(&encode(token)), token);
        }
    }
}
