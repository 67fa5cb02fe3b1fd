//! Routes and the layers around them: request log, API key, CORS, panics as 500s, 404/405 in
//! OpenAI's error shape, bodies read with a size limit; and the small endpoints.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures_util::StreamExt as _;
use serde_json::json;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
};

use super::{
    AppState, RequestLogEntry, ServerError,
    chat::{chat_completions, loaded_model},
    errors::{ApiError, ErrorMessage},
    scoring::invocations,
};
use crate::engine::Completion;

/// Token counts and timings of a generation, attached to its response for the request log.
#[derive(Debug, Clone, Copy)]
pub(super) struct GenerationInfo {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub queue_wait: Duration,
    pub time_to_first_token: Option<Duration>,
}

impl GenerationInfo {
    pub fn new(completion: &Completion, queue_wait: Duration, time_to_first_token: Option<Duration>) -> Self {
        Self {
            prompt_tokens: completion.usage.prompt_tokens,
            completion_tokens: completion.usage.completion_tokens,
            queue_wait,
            time_to_first_token,
        }
    }

    /// Several generations in one request (MLflow rows) add up.
    pub fn add(self, other: GenerationInfo) -> Self {
        Self {
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            completion_tokens: self.completion_tokens + other.completion_tokens,
            queue_wait: self.queue_wait + other.queue_wait,
            time_to_first_token: self.time_to_first_token.or(other.time_to_first_token),
        }
    }
}

/// Marks a streamed response, which writes its own log entry when the stream ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamLogged;

pub(super) fn router(state: Arc<AppState>) -> Result<Router, ServerError> {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/invocations", post(invocations))
        .route("/stats", get(stats))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), require_key));
    let public = Router::new()
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/version", get(version));
    let mut router = api
        .merge(public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), log_requests))
        .with_state(Arc::clone(&state));
    if !state.config.cors_origins.is_empty() {
        router = router.layer(cors(&state.config.cors_origins)?);
    }
    Ok(router)
}

fn cors(origins: &[String]) -> Result<CorsLayer, ServerError> {
    let origins = origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin.trim_end_matches('/'))
                .map_err(|e| ServerError::CorsOrigin { origin: origin.clone(), message: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::HeaderName::from_static("x-api-key")])
        // Chromium's Private Network Access preflight for pages calling a local server.
        .allow_private_network(true)
        .max_age(Duration::from_secs(600)))
}

/// Reads a body of at most `limit` bytes (413 above it).
pub(super) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::with_capacity(declared.map_or(0, |l| l as usize));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("The request body could not be read: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}

async fn require_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(key) = state.config.api_key.as_deref() else {
        return next.run(request).await;
    };
    let headers = request.headers();
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let plain = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if [bearer, plain].into_iter().flatten().any(|given| same_secret(given.trim(), key)) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the key.
fn same_secret(given: &str, key: &str) -> bool {
    let (given, key) = (given.as_bytes(), key.as_bytes());
    let mut difference = u8::from(given.len() != key.len());
    for (index, &byte) in key.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(0);
    }
    difference == 0
}

async fn log_requests(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (time, arrived) = (SystemTime::now(), Instant::now());
    let method = request.method().to_string();
    let endpoint = request.uri().path().to_owned();
    let response = next.run(request).await;
    if response.extensions().get::<StreamLogged>().is_some() {
        return response;
    }
    let info = response.extensions().get::<GenerationInfo>().copied();
    state.log.record(RequestLogEntry {
        time,
        method,
        endpoint,
        status: response.status().as_u16(),
        prompt_tokens: info.map(|i| i.prompt_tokens),
        completion_tokens: info.map(|i| i.completion_tokens),
        duration: arrived.elapsed(),
        queue_wait: info.map(|i| i.queue_wait),
        time_to_first_token: info.and_then(|i| i.time_to_first_token),
        error: response.extensions().get::<ErrorMessage>().map(|m| m.0.clone()),
    });
    response
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown cause".into());
    ApiError::internal(format!("An internal error stopped this request ({detail}); the server goes on serving.")).into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!("There is no endpoint {} {}.", request.method(), request.uri().path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

fn model_object(id: &str) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "modeldesk"})
}

async fn models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let data: Vec<_> = state.queue.model().map(|m| model_object(&m.facts.name)).into_iter().collect();
    Json(json!({"object": "list", "data": data}))
}

async fn model(State(state): State<Arc<AppState>>, axum::extract::Path(id): axum::extract::Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let loaded = loaded_model(&state)?;
    if loaded.facts.name != id {
        return Err(ApiError::model_not_found(&id, &loaded.facts.name));
    }
    Ok(Json(model_object(&id)))
}

/// Counts for monitoring: requests generating, waiting, and answered so far.
async fn stats(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let counts = state.queue.counts();
    Json(json!({
        "in_flight": counts.in_flight,
        "queued": counts.queued,
        "max_queue": state.queue.max_queue(),
        "requests": state.log.answered.load(std::sync::atomic::Ordering::Relaxed),
    }))
}

/// `/ping` and `/health`: MLflow's answer (`"\n"`) when a model is loaded, 503 otherwise.
async fn ping(State(state): State<Arc<AppState>>) -> Response {
    match state.queue.model() {
        Some(_) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "\n").into_response(),
        None => ApiError::unavailable("No model is loaded.").into_response(),
    }
}

/// The MLflow version the packages are written for, as `mlflow models serve` answers.
async fn version() -> &'static str {
    crate::mlflow::create::MLFLOW_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("abcd", "abc"));
        assert!(!same_secret("", "abc"));
    }
}
