//! Error responses in the shape each protocol's clients parse: OpenAI's
//! `{"error": {"message", "type", "param", "code"}}` and MLflow's `{"error_code", "message"}`.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// Which protocol's error shape to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Mlflow,
}

/// An error answered before any body was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After` (queue full).
    pub retry_after: Option<u64>,
    pub dialect: Dialect,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), kind, param: None, code: None, retry_after: None, dialect: Dialect::OpenAi }
    }

    /// 400 for a request that will never work as sent.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 naming the field at fault.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self { param: Some(param.to_owned()), ..Self::invalid(message) }
    }

    pub fn context_length_exceeded(prompt_tokens: usize, max_length: usize) -> Self {
        Self {
            code: Some("context_length_exceeded"),
            param: Some("messages".into()),
            ..Self::invalid(format!(
                "This model's maximum context length is {max_length} tokens. However, your messages resulted in {prompt_tokens} tokens, which leaves no room for a reply. Please reduce the length of the messages."
            ))
        }
    }

    pub fn unauthorized() -> Self {
        Self {
            code: Some("invalid_api_key"),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "Invalid API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
            )
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    pub fn model_not_found(requested: &str, available: &str) -> Self {
        Self {
            code: Some("model_not_found"),
            param: Some("model".into()),
            ..Self::not_found(format!("The model '{requested}' does not exist here; this server serves '{available}'."))
        }
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "This method is not allowed on this endpoint.")
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request_error", message)
    }

    pub fn queue_full(queued: usize) -> Self {
        Self {
            code: Some("queue_full"),
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!("The server is busy: {queued} requests are already waiting. Retry shortly."),
            )
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable_error", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn in_dialect(self, dialect: Dialect) -> Self {
        Self { dialect, ..self }
    }

    fn body(&self) -> serde_json::Value {
        match self.dialect {
            Dialect::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }}),
            Dialect::Mlflow => {
                let fallback = match self.status {
                    StatusCode::BAD_REQUEST => "BAD_REQUEST",
                    StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
                    StatusCode::NOT_FOUND => "ENDPOINT_NOT_FOUND",
                    StatusCode::PAYLOAD_TOO_LARGE => "BAD_REQUEST",
                    StatusCode::TOO_MANY_REQUESTS => "REQUEST_LIMIT_EXCEEDED",
                    StatusCode::SERVICE_UNAVAILABLE => "TEMPORARILY_UNAVAILABLE",
                    _ => "INTERNAL_ERROR",
                };
                let own = self.code.filter(|c| c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
                json!({"error_code": own.unwrap_or(fallback), "message": self.message})
            }
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // Clients retry 5xx by default; an error that will repeat should not run the prompt
        // three times.
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response.extensions_mut().insert(ErrorMessage(self.message));
        response
    }
}

/// The message of an error response, for the request log.
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_errors_have_the_four_fields() {
        let body = ApiError::invalid_param("n", "only n=1 is supported").body();
        assert_eq!(body, json!({"error": {"message": "only n=1 is supported", "type": "invalid_request_error", "param": "n", "code": null}}));
    }

    #[test]
    fn mlflow_errors_have_an_error_code() {
        let body = ApiError::invalid("bad").in_dialect(Dialect::Mlflow).body();
        assert_eq!(body, json!({"error_code": "BAD_REQUEST", "message": "bad"}));
    }

    #[test]
    fn a_full_queue_says_when_to_retry() {
        let response = ApiError::queue_full(3).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
