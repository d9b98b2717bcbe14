//! The one HTTP error type: the library's errors mapped to statuses and OpenAI-shaped JSON bodies.
//! 5xx bodies never carry internals; those go to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

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
            message: "a valid API key is required (Authorization: Bearer <key>, or x-api-key: <key>)".into(),
        }
    }
}

/// The single table from library errors to HTTP.
impl From<lmstudio::Error> for ApiError {
    fn from(e: lmstudio::Error) -> Self {
        use lmstudio::Error as E;
        let (status, code) = match &e {
            E::ModelNotFound { .. } => (StatusCode::NOT_FOUND, Some("model_not_found")),
            E::PresetNotFound { .. } => (StatusCode::NOT_FOUND, Some("preset_not_found")),
            E::AmbiguousModel { .. } => (StatusCode::BAD_REQUEST, Some("ambiguous_model")),
            E::IncompatibleDraftModel { .. } => (StatusCode::BAD_REQUEST, Some("incompatible_draft_model")),
            E::InvalidConfig(_) | E::InvalidPrompt(_) | E::InvalidRequest(_) => (StatusCode::BAD_REQUEST, None),
            E::ContextOverflow { .. } => (StatusCode::BAD_REQUEST, Some("context_length_exceeded")),
            E::Overloaded { .. } => (StatusCode::TOO_MANY_REQUESTS, Some("overloaded")),
            E::InvalidModelFile { .. } => (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_model_file")),
            E::ModelUnloaded => (StatusCode::SERVICE_UNAVAILABLE, None),
            E::IdentifierInUse { .. } => (StatusCode::CONFLICT, Some("identifier_in_use")),
            E::InsufficientMemory { .. } | E::InsufficientGpuMemory { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, Some("insufficient_memory"))
            }
            // The hub refused or failed: its answer, not ours, so the message says it.
            E::Download(_) => (StatusCode::BAD_GATEWAY, Some("download_failed")),
            // An RPC worker the load names did not answer as one: its state, said as it is.
            E::RpcWorker { .. } => (StatusCode::BAD_GATEWAY, Some("rpc_worker_unavailable")),
            E::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, Some("timeout")),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let said = [StatusCode::SERVICE_UNAVAILABLE, StatusCode::BAD_GATEWAY];
        let message = if status.is_server_error() && !said.contains(&status) {
            tracing::error!("request failed: {e}");
            "internal error".to_owned()
        } else {
            e.to_string()
        };
        // Overload is the server's state, not a fault of the request.
        let busy = status == StatusCode::TOO_MANY_REQUESTS;
        let kind = if status.is_server_error() || busy { "server_error" } else { "invalid_request_error" };
        Self { status, kind, code, message }
    }
}

/// OpenAI's error body: `{"error": {"message", "type", "code"}}`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Serialize)]
struct ErrorDetail {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    code: Option<&'static str>,
}

impl ApiError {
    /// Its code (`model_not_found`...), when it has one.
    pub(crate) fn code(&self) -> Option<&'static str> {
        self.code
    }

    /// What it says.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The body alone (a stream that ends in an error sends it as its last event).
    pub(crate) fn body(self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { message: self.message, kind: self.kind, code: self.code } }
    }
}

/// Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`, its type from the
/// status as Anthropic names them.
#[derive(Debug, Serialize)]
pub(crate) struct AnthropicErrorBody {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorDetail,
}

#[derive(Debug, Serialize)]
struct AnthropicErrorDetail {
    #[serde(rename = "type")]
    kind: &'static str,
    message: String,
}

impl ApiError {
    /// The body in Anthropic's shape (a stream's `error` event is the same).
    pub(crate) fn anthropic_body(self) -> AnthropicErrorBody {
        let kind = match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            s if s.is_server_error() => "api_error",
            _ => "invalid_request_error",
        };
        AnthropicErrorBody { kind: "error", error: AnthropicErrorDetail { kind, message: self.message } }
    }

    /// The response in Anthropic's shape.
    pub(crate) fn into_anthropic_response(self) -> Response {
        reply(self.status, self.anthropic_body())
    }
}

/// LM Studio's v1 REST error body: `{"error": {"type", "message", "code"}}`, its type one of LM
/// Studio's (`invalid_request`, `model_not_found`, `internal_error`).
#[derive(Debug, Serialize)]
pub(crate) struct LmStudioErrorBody {
    error: ErrorDetail,
}

impl ApiError {
    /// The body in LM Studio's v1 shape (a stream's `error` event carries the same `error`).
    pub(crate) fn lmstudio_body(self) -> LmStudioErrorBody {
        let kind = match (self.status, self.code) {
            (_, Some("model_not_found")) => "model_not_found",
            (s, _) if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => "internal_error",
            _ => "invalid_request",
        };
        LmStudioErrorBody { error: ErrorDetail { message: self.message, kind, code: self.code } }
    }

    /// The response in LM Studio's v1 shape.
    pub(crate) fn into_lmstudio_response(self) -> Response {
        reply(self.status, self.lmstudio_body())
    }
}

/// An error reply: the status, the body, and `Retry-After` on a 429 (a queue full of predictions
/// drains in about a second on a small model).
fn reply(status: StatusCode, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        reply(self.status, self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, D9: overload is a 429 the client may retry, not a fault of its request.
    #[test]
    fn overload_is_a_retryable_429() {
        let response = ApiError::from(lmstudio::Error::Overloaded { queued: 64 }).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
        let api = ApiError::from(lmstudio::Error::Overloaded { queued: 64 });
        assert_eq!((api.kind, api.code), ("server_error", Some("overloaded")));
        let bad = ApiError::from(lmstudio::Error::InvalidConfig("x".into()));
        assert_eq!(bad.kind, "invalid_request_error");
    }
}
