//! The HTTP API: defer, re-plan, cancel and inspect notifications.
//!
//! Every endpoint needs the admin's bearer token, checked before the request
//! is read; every error, the extractors' included, is JSON:
//! `{"error": "<what went wrong>"}`. The scheduler's dashboard is mounted at
//! `/admin/scheduler/` behind the same token (also taken as the password of
//! HTTP Basic, which a browser asks for).

mod auth;
mod error;
mod extract;

use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use scheduler::{CancelOutcome, JobStatus, ReplaceOutcome, Scheduler};
use serde::{Deserialize, Serialize};

use crate::notifications::{send_notification, Message};
pub use error::ApiError;
use extract::{Json as JsonBody, Path, Query};

/// The job id of the admin's test notification (as in the guide).
pub const TEST_JOB_ID: &str = "send_test_future_notification";

/// What handlers share: the scheduler handle and the admin's token.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The scheduler (cheap to clone).
    pub scheduler: Scheduler,
    /// Bearer token of the admin user.
    pub admin_token: String,
    /// How far ahead the test notification is planned (10 s in the guide).
    pub test_delay: Duration,
    /// The Prometheus recorder's handle, rendered at `GET /metrics` (`None`:
    /// no recorder installed, and the endpoint answers 404).
    pub metrics: Option<PrometheusHandle>,
}

/// The routes. All of them require the admin's bearer token; the scheduler
/// dashboard under `/admin/scheduler/` also takes it as an HTTP Basic
/// password, so that a browser can ask for it.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/notification/test/send/future",
            post(send_test_future_notification),
        )
        .route("/notification/send/future", post(send_future_notification))
        .route(
            "/notification/jobs/{job_id}",
            get(job_status).delete(cancel_job),
        )
        .route("/metrics", get(prometheus_metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
        .fallback(ApiError::not_found)
        .method_not_allowed_fallback(ApiError::method_not_allowed)
        .with_state(state.clone())
        // The operator's dashboard, for a person in a browser: the same
        // admin token, also as the password of HTTP Basic.
        .nest(
            "/admin/scheduler",
            scheduler::dashboard::router(state.scheduler.clone()).layer(
                middleware::from_fn_with_state(state, auth::require_admin_in_browser),
            ),
        )
}

/// Query of the test endpoint.
#[derive(Debug, Deserialize)]
pub struct TestQuery {
    /// Recipient (default: the admin).
    pub user_id: Option<String>,
}

/// What a deferral did.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Planned {
    /// The job id.
    pub job_id: String,
    /// `enqueued`, `replaced`, `aborted_running` or `queued_after_running`.
    pub outcome: String,
    /// When it runs.
    pub run_at: DateTime<Utc>,
}

fn planned(job_id: &str, outcome: ReplaceOutcome) -> Planned {
    let (name, run_at) = match outcome {
        ReplaceOutcome::Enqueued { run_at, .. } => ("enqueued", run_at),
        ReplaceOutcome::Replaced { run_at, .. } => ("replaced", run_at),
        ReplaceOutcome::AbortedRunning { run_at, .. } => ("aborted_running", run_at),
        ReplaceOutcome::QueuedAfterRunning { run_at, .. } => ("queued_after_running", run_at),
        ReplaceOutcome::Running { .. } => ("running", Utc::now()),
    };
    Planned {
        job_id: job_id.to_string(),
        outcome: name.to_string(),
        run_at,
    }
}

/// `POST /notification/test/send/future`: the admin sends themself a test
/// notification in 10 s. Calling it again re-plans the same job (one atomic
/// replace) instead of sending twice.
async fn send_test_future_notification(
    State(state): State<AppState>,
    Query(query): Query<TestQuery>,
) -> Result<Json<Planned>, ApiError> {
    let message = Message {
        title: "Test notification future".into(),
        content: "Ceci est un test de notification future".into(),
        action_module: "test".into(),
    };
    let when = Utc::now() + state.test_delay;
    let user = query.user_id.unwrap_or_else(|| "admin".into());
    let outcome =
        send_notification::replace(&state.scheduler, TEST_JOB_ID, when, vec![user], message)
            .await?;
    Ok(Json(planned(TEST_JOB_ID, outcome)))
}

/// Body of `POST /notification/send/future`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FutureNotification {
    /// The job id (re-planning the same id replaces the pending notification).
    pub job_id: String,
    /// Recipients.
    pub user_ids: Vec<String>,
    /// The message.
    pub message: Message,
    /// When to send it.
    pub at: DateTime<Utc>,
}

/// `POST /notification/send/future`: defer a notification to a given time.
async fn send_future_notification(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<FutureNotification>,
) -> Result<Json<Planned>, ApiError> {
    let outcome = send_notification::replace(
        &state.scheduler,
        &body.job_id,
        body.at,
        body.user_ids,
        body.message,
    )
    .await?;
    Ok(Json(planned(&body.job_id, outcome)))
}

/// `DELETE /notification/jobs/{job_id}`: cancel; a planned notification is never sent.
async fn cancel_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let outcome = send_notification::cancel(&state.scheduler, &job_id).await?;
    let name = match outcome {
        CancelOutcome::Removed { .. } => "removed",
        CancelOutcome::AbortSignalled { .. } => "abort_signalled",
        CancelOutcome::NotFound => "not_found",
        CancelOutcome::AlreadyFinished(_) => "already_finished",
    };
    Ok(Json(
        serde_json::json!({ "job_id": job_id, "outcome": name }),
    ))
}

/// `GET /metrics`: the scheduler's metrics in Prometheus text format, with
/// the job-count gauges read at the scrape.
async fn prometheus_metrics(
    State(state): State<AppState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "metrics are not enabled in this process",
        ));
    };
    state.scheduler.counts().await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    ))
}

/// `GET /notification/jobs/{job_id}`: where the job is.
async fn job_status(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = send_notification::status(&state.scheduler, &job_id).await?;
    let body = match status {
        JobStatus::Deferred { run_at } => {
            serde_json::json!({ "status": "deferred", "run_at": run_at })
        }
        JobStatus::Queued { run_at } => serde_json::json!({ "status": "queued", "run_at": run_at }),
        JobStatus::Running { attempt, worker } => {
            serde_json::json!({ "status": "running", "attempt": attempt, "worker": worker })
        }
        JobStatus::Completed => serde_json::json!({ "status": "completed" }),
        JobStatus::Failed => serde_json::json!({ "status": "failed" }),
        JobStatus::Cancelled => serde_json::json!({ "status": "cancelled" }),
        JobStatus::NotFound => serde_json::json!({ "status": "not_found" }),
    };
    Ok(Json(body))
}
