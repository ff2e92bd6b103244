//! The admin check, run before any handler reads the request: the bearer
//! token for the JSON API, and for the dashboard also HTTP Basic (any user
//! name, the token as password), which a browser asks a person for.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

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

/// The dashboard's admin check: the bearer token, or HTTP Basic with the
/// token as password. Without credentials the answer is 401 with a Basic
/// challenge (the browser asks for them); with wrong ones, 403.
pub(crate) async fn require_admin_in_browser(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let basic_password = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(_, password)| password.to_string())
        });
    let allowed = match basic_password {
        Some(password) => password == state.admin_token,
        None => match check_token(&state.admin_token, request.headers()) {
            Ok(()) => true,
            Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
                let mut response = (StatusCode::UNAUTHORIZED, "admins only").into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Basic realm=\"scheduler dashboard\", charset=\"UTF-8\"",
                    ),
                );
                return response;
            }
            Err(_) => false,
        },
    };
    if allowed {
        next.run(request).await
    } else {
        (StatusCode::FORBIDDEN, "only admins can see the scheduler").into_response()
    }
}
