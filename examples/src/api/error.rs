//! Every error the API answers, in one JSON shape: `{"error": "<what went wrong>"}`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered as JSON with its status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// The status code it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// `404`: no such route.
    pub(crate) async fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "no such endpoint")
    }

    /// `405`: the route exists, not with this method.
    pub(crate) async fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "this endpoint does not accept this method",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<scheduler::Error> for ApiError {
    fn from(e: scheduler::Error) -> Self {
        let status = match e {
            scheduler::Error::InvalidJobId { .. }
            | scheduler::Error::PayloadTooLarge { .. }
            | scheduler::Error::Serialize { .. }
            | scheduler::Error::InvalidRunTime(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ref e if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

/// Axum's rejections keep their status code (400, 413, 415, 422, ...) and
/// their text; only the shape changes from plain text to JSON.
macro_rules! from_rejection {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                Self::new(rejection.status(), rejection.body_text())
            }
        }
    )*};
}

from_rejection!(JsonRejection, PathRejection, QueryRejection);
