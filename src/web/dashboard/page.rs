//! The frame every page shares, and small pieces pages are made of.

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::super::error::WebError;
use super::Viewer;
use crate::job::JobStatus;

/// What a page puts in the frame.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    /// The page's title.
    pub(crate) title: &'a str,
    /// The event stream the script follows to redraw `<main>` (a URL
    /// under the dashboard), or none for a page that does not change.
    pub(crate) events: Option<String>,
    /// Shown above `<main>` and left alone by redraws (a filter form).
    pub(crate) above: Option<Markup>,
    /// Redraw `<main>` this often (seconds) even when no event comes: for
    /// what changes without an event here (other processes' heartbeats).
    pub(crate) refresh: Option<u32>,
}

/// A whole page: head, navigation, then `main`.
pub(crate) fn frame(viewer: &Viewer, frame: Frame<'_>, main: Markup) -> Markup {
    let base = &viewer.dash.base;
    let role = if viewer.admin() { "admin" } else { "read-only" };
    shell(
        base,
        frame.title,
        Live {
            events: frame.events.as_deref(),
            refresh: frame.refresh,
        },
        html! {
            header {
                nav {
                    a.brand href={ (base) "/" } { "kessel" }
                    a href={ (base) "/" } { "Overview" }
                    a href={ (base) "/jobs" } { "Jobs" }
                    @if cfg!(feature = "cron") {
                        a href={ (base) "/schedules" } { "Schedules" }
                    }
                    span.spacer {}
                    @if frame.events.is_some() {
                        span #live .live data-state="connecting" title="live updates" { "connecting" }
                    }
                    span.role data-role=(role) { (role) }
                    @if viewer.state.auth.takes_tokens() {
                        form.inline method="post" action={ (base) "/logout" } {
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
            }
            div #flash role="status" aria-live="polite" {}
            @if let Some(above) = frame.above { (above) }
            main { (main) }
        },
    )
}

/// What the script follows to redraw a page: read from `<body>`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Live<'a> {
    /// The event stream (`data-events`).
    pub(crate) events: Option<&'a str>,
    /// Seconds between redraws without events (`data-refresh`).
    pub(crate) refresh: Option<u32>,
}

/// The document around `body`; `live` goes on `<body>` for the script.
pub(crate) fn shell(base: &str, title: &str, live: Live<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · kessel" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href={ (base) "/assets/dashboard.css" };
                script src={ (base) "/assets/dashboard.js" } defer {}
            }
            body data-events=[live.events] data-refresh=[live.refresh] { (body) }
        }
    }
}

/// The page for an error: its status, code, message and field.
pub(crate) fn error_page(base: &str, error: &WebError) -> Markup {
    use actix_web::ResponseError;
    let status = error.status_code();
    shell(
        base,
        status.canonical_reason().unwrap_or("Error"),
        Live::default(),
        html! {
            header { nav { a.brand href={ (base) "/" } { "kessel" } } }
            main.error {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                p #error-message { (error.to_string()) }
                dl {
                    dt { "code" } dd #error-code { (error.code()) }
                    @if let Some(field) = error.field() {
                        dt { "field" } dd #error-field { (field) }
                    }
                }
                @if matches!(error, WebError::Unauthorized(_)) {
                    p { a href={ (base) "/login" } { "Sign in" } }
                }
                p { a href={ (base) "/" } { "Back to the overview" } }
            }
        },
    )
}

/// A status as a coloured label.
pub(crate) fn status(status: JobStatus) -> Markup {
    html! { span class={ "status " (status.to_string()) } data-status=(status.to_string()) { (status.to_string()) } }
}

/// A time as UTC text, to the second, with the full time on hover.
pub(crate) fn time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) title=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S")) }
    }
}

/// A duration in the largest unit that keeps it short: `450ms`, `12s`,
/// `3m 20s`, `5h 02m`, `2d 4h`.
pub(crate) fn span(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds();
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let s = ms / 1000;
    let text = match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    };
    format!("{sign}{text}")
}

/// Percent-encodes `text` for a query string.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_short() {
        let ms = chrono::Duration::milliseconds;
        assert_eq!(span(ms(450)), "450ms");
        assert_eq!(span(ms(12_000)), "12s");
        assert_eq!(span(ms(200_000)), "3m 20s");
        assert_eq!(span(ms(-2_000)), "-2s");
        assert_eq!(span(ms(3 * 86_400_000 + 3_600_000)), "3d 1h");
    }

    #[test]
    fn encode_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(
            encode("/kessel/jobs?x=a b&c"),
            "%2Fkessel%2Fjobs%3Fx%3Da%20b%26c"
        );
    }
}
