//! The operator's web dashboard (feature `dashboard`): an axum [`Router`]
//! the application mounts under any path, behind its own authentication.
//!
//! Pages, all rendered on the server from the same inspection API as the
//! `scheduler` command line ([`Scheduler::list`], [`Scheduler::counts`],
//! [`Scheduler::info`], [`Scheduler::activity`], [`Scheduler::schedules`]):
//!
//! - **Overview**: jobs per state and queue, health, and the last hour's
//!   throughput and lateness as a chart.
//! - **Upcoming**: deferred jobs on a timeline, in due order, each with
//!   *run now* and *cancel*.
//! - **Running**: running jobs with their worker, lease and progress, and
//!   *abort*.
//! - **Failed**: dead-lettered jobs with their reason, *retry* and
//!   *delete*.
//! - **Jobs**: any state, filtered by task (and outcome), page by page.
//! - **Job detail**: arguments, attempts, last error, result and progress.
//! - **Schedules**: periodic tasks, their next runs, *pause* and *resume*.
//!
//! Everything the pages need (a style sheet, a few lines of script that ask
//! before a destructive action) is served by the router itself: it works
//! offline. Actions are `POST` forms carrying a CSRF token that must match a
//! cookie the dashboard set (`SameSite=Strict`, scoped to the dashboard's
//! path), and a request whose `Origin` names another host is refused. Cancel
//! and abort name the job's [generation](crate#generations) the page showed
//! ([`Scheduler::cancel_generation`]), so a form sent twice, or after the id
//! was reused, never touches a newer job; so does *run now*
//! ([`Scheduler::reschedule_generation`]); retry and delete act on the id's
//! dead letter. A read-only dashboard shows
//! no actions and answers `403` to every one.
//!
//! ```
//! use axum::Router;
//!
//! # async fn demo() -> Result<(), scheduler::Error> {
//! let scheduler = scheduler::Scheduler::builder("memory://dashboard-doc")
//!     .producer_only()
//!     .start()
//!     .await?;
//! // Mounted under the application's own admin check (a middleware).
//! let app: Router = Router::new().nest("/admin/scheduler", scheduler::dashboard::router(scheduler.clone()));
//! // For people who may look but not touch:
//! let audit: Router = Router::new().nest(
//!     "/audit/scheduler",
//!     scheduler::dashboard::Dashboard::new(scheduler).read_only().into_router(),
//! );
//! # let _ = (app, audit);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```

use axum::extract::{OriginalUri, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::Scheduler;

mod actions;
mod assets;
mod chart;
mod csrf;
mod layout;
mod pages;

/// A dashboard to mount: [`router`] for the usual one, or built with
/// [`read_only`](Dashboard::read_only) first.
#[derive(Clone, Debug)]
pub struct Dashboard {
    scheduler: Scheduler,
    read_only: bool,
}

impl Dashboard {
    /// A dashboard of `scheduler`'s namespace, with actions.
    pub fn new(scheduler: Scheduler) -> Self {
        Dashboard {
            scheduler,
            read_only: false,
        }
    }

    /// Shows no actions, and refuses every one with `403 Forbidden`.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The routes, to mount with [`Router::nest`] (or serve as they are).
    pub fn into_router(self) -> Router {
        let state = self;
        Router::new()
            .route("/", get(pages::overview))
            .route("/upcoming", get(pages::upcoming))
            .route("/running", get(pages::running))
            .route("/failed", get(pages::failed))
            .route("/jobs", get(pages::jobs))
            .route("/jobs/{id}", get(pages::job))
            .route("/schedules", get(pages::schedules))
            .route("/actions/{action}", post(actions::act))
            .route("/assets/{file}", get(assets::serve))
            .fallback(pages::not_found)
            .layer(middleware::from_fn_with_state(state.clone(), render_errors))
            .layer(middleware::from_fn(security_headers))
            .with_state(state)
    }
}

/// The dashboard of `scheduler`'s namespace, with actions: mount it with
/// [`Router::nest`] behind the application's own authentication.
pub fn router(scheduler: Scheduler) -> Router {
    Dashboard::new(scheduler).into_router()
}

/// The path the dashboard is mounted at (empty at the root), from the
/// request's original path and the part the dashboard's router saw.
pub(crate) fn base_path(original: &OriginalUri, inner: &str) -> String {
    let full = original.path();
    let base = full.strip_suffix(inner).unwrap_or(full);
    base.trim_end_matches('/').to_string()
}

/// Shows a page's error (a [`PageError`] its handler returned) inside the
/// dashboard's shell, with the navigation.
async fn render_errors(
    State(dashboard): State<Dashboard>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let ctx = layout::Ctx::of(&parts, &dashboard);
    parts.extensions.insert(ctx.clone());
    let mut response = next.run(Request::from_parts(parts, body)).await;
    match response.extensions_mut().remove::<PageError>() {
        Some(error) => ctx.render(Err(error)),
        None => response,
    }
}

/// Headers on every answer: no framing (clickjacking), nothing loaded from
/// anywhere but the dashboard, no inline script.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
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
    response
}

/// A page that could not be built: its status and one line saying why
/// (shown in the shell by `render_errors`).
#[derive(Clone, Debug)]
pub(crate) struct PageError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl PageError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::Error> for PageError {
    fn from(e: crate::Error) -> Self {
        let status = if e.is_transient() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_REQUEST
        };
        PageError::new(status, e.to_string())
    }
}

impl IntoResponse for PageError {
    /// The status, carrying the error for `render_errors` to show.
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_path_is_what_the_mount_added() {
        let uri = |s: &str| OriginalUri(s.parse().expect("uri"));
        assert_eq!(
            base_path(&uri("/admin/scheduler/running"), "/running"),
            "/admin/scheduler"
        );
        assert_eq!(
            base_path(&uri("/admin/scheduler/"), "/"),
            "/admin/scheduler"
        );
        assert_eq!(base_path(&uri("/admin/scheduler"), "/"), "/admin/scheduler");
        assert_eq!(base_path(&uri("/running"), "/running"), "");
        assert_eq!(base_path(&uri("/"), "/"), "");
    }
}
