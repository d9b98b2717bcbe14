//! The one HTTP error type: the library's errors mapped to statuses and OpenAI-shaped JSON bodies.
//! 5xx bodies never carry internals; those go to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lmstudio as lms;
use serde_json::json;

/// An HTTP error: a status and an OpenAI-style `{"error": {...}}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    message: String,
}

impl ApiError {
    /// A client error with the given status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, kind: "invalid_request_error", code: None, message: message.into() }
    }

    /// 400: the request is malformed or has an invalid value.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, kind: "invalid_request_error", code: None, message: message.into() }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, kind: "invalid_request_error", code: None, message: message.into() }
    }

    /// 401: missing or wrong API key.
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "invalid_request_error",
            code: Some("invalid_api_key"),
            message: "a valid API key is required (Authorization: Bearer <key>)".into(),
        }
    }
}

/// The single table from library errors to HTTP.
impl From<lms::Error> for ApiError {
    fn from(e: lms::Error) -> Self {
        use lms::Error as E;
        let (status, code) = match &e {
            E::ModelNotFound { .. } => (StatusCode::NOT_FOUND, Some("model_not_found")),
            E::AmbiguousModel { .. } => (StatusCode::BAD_REQUEST, Some("ambiguous_model")),
            E::InvalidConfig(_) | E::InvalidPrompt(_) => (StatusCode::BAD_REQUEST, None),
            E::ContextOverflow { .. } => (StatusCode::BAD_REQUEST, Some("context_length_exceeded")),
            E::Overloaded { .. } => (StatusCode::TOO_MANY_REQUESTS, Some("overloaded")),
            E::InvalidModelFile { .. } => (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_model_file")),
            E::ModelUnloaded => (StatusCode::SERVICE_UNAVAILABLE, None),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let message = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!("request failed: {e}");
            "internal error".to_owned()
        } else {
            e.to_string()
        };
        let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
        Self { status, kind, code, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "code": self.code}});
        (self.status, Json(body)).into_response()
    }
}
