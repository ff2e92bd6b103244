//! The bearer-token check, run before any handler reads the request.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::AppState;

/// Lets the request through only with the admin's bearer token: 401 without
/// a token, 403 with a wrong one. It runs as a route layer, so it answers
/// before any extractor parses the path, query or body.
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_token(&state.admin_token, request.headers())?;
    Ok(next.run(request).await)
}

fn check_token(admin_token: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token",
        )),
        Some(t) if t == admin_token => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only admins can use this endpoint",
        )),
    }
}
