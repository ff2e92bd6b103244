//! What every page shares: the request's context (where the dashboard is
//! mounted, its CSRF token, read-only or not, a notice to show), the page
//! shell with its navigation, and how times, arguments and actions look.

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::{base_path, csrf, Dashboard, PageError};
use crate::{JobStatus, Scheduler};

/// The sections of the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Upcoming,
    Running,
    Failed,
    Jobs,
    Schedules,
    /// A page that could not be built: no section is current.
    Error,
}

const SECTIONS: [(Nav, &str, &str); 6] = [
    (Nav::Overview, "", "Overview"),
    (Nav::Upcoming, "/upcoming", "Upcoming"),
    (Nav::Running, "/running", "Running"),
    (Nav::Failed, "/failed", "Failed"),
    (Nav::Jobs, "/jobs", "Jobs"),
    (Nav::Schedules, "/schedules", "Schedules"),
];

/// What a page handler knows about the request: built once per request by
/// the router's outer middleware (`render_errors`), which keeps it to show
/// the handler's error in the shell, and handed to the handler.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// The dashboard's scheduler.
    pub(crate) scheduler: Scheduler,
    /// The path the dashboard is mounted at ("" at the root).
    pub(crate) base: String,
    /// The path below `base` of this page, with its query.
    pub(crate) here: String,
    /// The CSRF token the forms carry.
    pub(crate) csrf: String,
    /// Whether the cookie must be set (the browser sent none).
    new_cookie: bool,
    pub(crate) read_only: bool,
    /// A notice to show (after an action), from the query.
    notice: Option<String>,
}

impl FromRequestParts<Dashboard> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Dashboard,
    ) -> Result<Self, Self::Rejection> {
        if let Some(ctx) = parts.extensions.get::<Ctx>() {
            return Ok(ctx.clone());
        }
        Ok(Ctx::of(parts, state))
    }
}

impl Ctx {
    /// The context of a request to `dashboard`.
    pub(crate) fn of(parts: &Parts, state: &Dashboard) -> Self {
        let original = parts
            .extensions
            .get::<OriginalUri>()
            .cloned()
            .unwrap_or_else(|| OriginalUri(parts.uri.clone()));
        let base = base_path(&original, parts.uri.path());
        let (csrf, new_cookie) = match csrf::cookie_token(&parts.headers) {
            Some(token) => (token, false),
            None => (csrf::new_token(), true),
        };
        let query = parts.uri.query().unwrap_or_default();
        let notice = super::actions::notice_from_query(query);
        let here = match parts.uri.path_and_query() {
            Some(pq) => pq.as_str().to_string(),
            None => "/".to_string(),
        };
        Ctx {
            scheduler: state.scheduler.clone(),
            base,
            here,
            csrf,
            new_cookie,
            read_only: state.read_only,
            notice,
        }
    }

    /// A link to `path` (below the dashboard).
    pub(crate) fn href(&self, path: &str) -> String {
        let path = if path.is_empty() && self.base.is_empty() {
            "/"
        } else {
            path
        };
        format!("{}{path}", self.base)
    }

    /// The page: shell, navigation, notice, then `body`; sets the CSRF
    /// cookie when the browser had none.
    pub(crate) fn page(&self, active: Nav, title: &str, body: Markup) -> Response {
        let namespace = self.scheduler.namespace();
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · scheduler · " (namespace) }
                    link rel="icon" type="image/svg+xml" href=(self.href("/assets/favicon.svg"));
                    link rel="stylesheet" href=(self.href("/assets/dashboard.css"));
                    script src=(self.href("/assets/dashboard.js")) defer {}
                }
                body {
                    header.top {
                        a.brand href=(self.href("")) { "scheduler" }
                        span.namespace title="namespace" { (namespace) }
                        nav {
                            @for (nav, path, label) in SECTIONS {
                                a class=[(nav == active).then_some("active")] href=(self.href(path)) { (label) }
                            }
                        }
                        @if self.read_only {
                            span.badge.readonly { "read-only" }
                        }
                    }
                    main {
                        @if let Some(notice) = &self.notice {
                            p.notice role="status" { (notice) }
                        }
                        h1 { (title) }
                        (body)
                    }
                }
            }
        };
        let mut response = markup.into_response();
        if self.new_cookie {
            if let Ok(value) = HeaderValue::from_str(&csrf::set_cookie(&self.csrf, &self.base)) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
        }
        response
    }

    /// The page, or the error page in the dashboard's shell.
    pub(crate) fn render(&self, page: Result<Response, PageError>) -> Response {
        match page {
            Ok(response) => response,
            Err(e) => {
                let title = e.status.canonical_reason().unwrap_or("Error");
                let body = html! {
                    p.error { (e.message) }
                    p { a href=(self.href("")) { "Back to the overview" } }
                };
                (e.status, self.page(Nav::Error, title, body)).into_response()
            }
        }
    }

    /// A one-button form posting `action` about job `id` of `generation`,
    /// coming back to this page; nothing on a read-only dashboard.
    pub(crate) fn action(
        &self,
        action: &str,
        label: &str,
        id: &str,
        generation: Option<u64>,
        confirm: Option<&str>,
    ) -> Markup {
        if self.read_only {
            return html! {};
        }
        html! {
            form.action method="post" action=(self.href(&format!("/actions/{action}"))) data-confirm=[confirm] {
                input type="hidden" name="csrf" value=(self.csrf);
                input type="hidden" name="id" value=(id);
                @if let Some(generation) = generation {
                    input type="hidden" name="generation" value=(generation);
                }
                input type="hidden" name="back" value=(self.here);
                button type="submit" class=(format!("btn {action}")) data-action=(action) data-job=(id) { (label) }
            }
        }
    }
}

/// A time as UTC, with how far it is from now.
pub(crate) fn when(time: Option<DateTime<Utc>>) -> Markup {
    match time {
        None => html! { span.muted { "—" } },
        Some(t) => html! {
            time datetime=(t.to_rfc3339()) title=(t.format("%Y-%m-%d %H:%M:%S%.3f UTC")) {
                (t.format("%Y-%m-%d %H:%M:%S")) " " span.muted { "(" (relative(t, Utc::now())) ")" }
            }
        },
    }
}

/// "in 4m 10s", "12s ago", "now".
pub(crate) fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let ms = (t - now).num_milliseconds();
    let s = ms.abs() / 1000;
    let amount = match s {
        0 => return "now".into(),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    };
    if ms > 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// JSON cut to `max` characters for a table cell (the detail page has it whole).
pub(crate) fn json_preview(value: Option<&serde_json::Value>, max: usize) -> Markup {
    let Some(value) = value else {
        return html! { span.muted { "—" } };
    };
    let text = value.to_string();
    if text.chars().count() <= max {
        return html! { code { (text) } };
    }
    let cut: String = text.chars().take(max).collect();
    html! { code title=(text) { (cut) "…" } }
}

/// A status as a short word with its class.
pub(crate) fn status_badge(status: &JobStatus) -> Markup {
    let (class, label) = match status {
        JobStatus::Deferred { .. } => ("deferred", "deferred"),
        JobStatus::Queued { .. } => ("queued", "queued"),
        JobStatus::Running { .. } => ("running", "running"),
        JobStatus::Completed => ("completed", "completed"),
        JobStatus::Failed => ("failed", "failed"),
        JobStatus::Cancelled => ("cancelled", "cancelled"),
        JobStatus::NotFound => ("unknown", "not found"),
    };
    html! { span class=(format!("badge {class}")) { (label) } }
}

/// A link to a job's detail page.
pub(crate) fn job_link(ctx: &Ctx, id: &str) -> Markup {
    html! { a.job href=(ctx.href(&format!("/jobs/{}", encode_path(id)))) { (id) } }
}

/// A path segment, percent-encoded (job ids may hold any printable character).
pub(crate) fn encode_path(segment: &str) -> String {
    /// Everything but the unreserved characters of RFC 3986.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn relative_times_read_as_a_person_says_them() {
        let now = Utc::now();
        assert_eq!(relative(now, now), "now");
        assert_eq!(relative(now + TimeDelta::seconds(250), now), "in 4m 10s");
        assert_eq!(relative(now - TimeDelta::seconds(12), now), "12s ago");
        assert_eq!(relative(now + TimeDelta::hours(26), now), "in 1d 2h");
    }

    #[test]
    fn ids_are_encoded_in_links() {
        assert_eq!(encode_path("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode_path("héllo"), "h%C3%A9llo");
        assert_eq!(encode_path("job-1.x_y~"), "job-1.x_y~");
    }
}
