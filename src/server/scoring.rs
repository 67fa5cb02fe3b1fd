//! MLflow's scoring protocol (`POST /invocations`) as `mlflow models serve` answers it for the
//! packages `modeldesk create` writes (`../shared/docs/mlflow-format.md` §8; behaviour captured
//! from MLflow 3.17.2 serving such packages, whose signature has no input schema and declares
//! the generation options as params, and whose wrapper reads every request shape):
//!
//! * Bodies: the unified LLM form (a top-level `messages` or `prompt`; answered unwrapped, as a
//!   JSON array) or exactly one of `dataframe_split`, `dataframe_records`, `instances`, `inputs`
//!   (answered as `{"predictions": [...]}`).
//! * Generation options (`max_tokens`, `max_length`, `temperature`, `top_p`, `top_k`,
//!   `do_sample`, `repetition_penalty`, `seed`): as `params` (or, in the unified form, as
//!   top-level keys) they are checked against the params schema's types as MLflow checks them
//!   (`INVALID_PARAMETER_VALUE`); a row's own values win over params and are converted as the
//!   wrapper converts them (Python's `int`, `float`, `bool`; a failure is `BAD_REQUEST`). Other
//!   keys are ignored. `seed` makes sampling repeatable, the same ids as onnxruntime-genai's.
//! * Rows: a value holding several prompts (or conversations) is one row each, with options
//!   given as lists of the same length taken per row. A reply whose limit leaves no room after
//!   the prompt is empty with `finish_reason` "length", as the wrapper answers it.
//! * Deliberate differences: a message's `content` must be text (the wrapper renders any JSON
//!   value), a negative `top_k` is refused, and conversations given as a column of several work
//!   here (MLflow's numpy conversion fails on them).

use std::{path::Path, sync::Arc, time::Instant};

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    AppState,
    chat::{count_prompt_tokens, enqueue, loaded_model, run_to_end},
    errors::{ApiError, Dialect},
    http::{GenerationInfo, read_body},
    sse::{ReplyIdentity, finish_reason},
};
use crate::{
    engine::{GenerateOptions, generate},
    mlflow::{mlmodel::MlModel, yaml::Node},
};

mod request;

use request::{INPUT_KEYS, RowOptions, bad_request, read_prompt, rows_of};

/// How `/invocations` reads rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoringTask {
    /// A plain Phi ONNX folder: rows with `messages` chat, rows with `prompt` complete text.
    #[default]
    Auto,
    Prompt,
    Chat,
}

/// What an MLflow package says about scoring: its task, the name its replies carry and the
/// search options in its `model_config`.
#[derive(Debug, Clone, Default)]
pub struct ScoringConfig {
    pub task: ScoringTask,
    pub model_name: Option<String>,
    /// model_config's search options, applied over the server's base options.
    pub search: GenerateOptions,
}

impl ScoringConfig {
    /// Reads a package folder's MLmodel; `None` when `dir` is not an MLflow model.
    pub fn from_package(dir: &Path) -> Option<ScoringConfig> {
        let model = MlModel::load(&dir.join("MLmodel")).ok()?;
        let Some(Node::Map(config)) = model.model_config() else {
            return Some(ScoringConfig::default());
        };
        let text = |key: &str| config.get(key).and_then(Node::as_str).map(str::to_owned);
        let number = |key: &str| match config.get(key) {
            Some(Node::Float(value)) => Some(*value as f32),
            Some(Node::Int(value)) => Some(*value as f32),
            _ => None,
        };
        let count = |key: &str| match config.get(key) {
            Some(Node::Int(value)) => usize::try_from(*value).ok(),
            _ => None,
        };
        let task = match text("task").as_deref() {
            Some("chat") => ScoringTask::Chat,
            Some("prompt") => ScoringTask::Prompt,
            _ => ScoringTask::Auto,
        };
        let search = GenerateOptions {
            max_length: count("max_length"),
            temperature: number("temperature"),
            top_p: number("top_p"),
            top_k: count("top_k"),
            do_sample: match config.get("do_sample") {
                Some(Node::Bool(value)) => Some(*value),
                _ => None,
            },
            repetition_penalty: number("repetition_penalty"),
            ..GenerateOptions::default()
        };
        Some(ScoringConfig { task, model_name: text("model_name"), search })
    }

    /// `search` laid over `base` (whose KV mode stays: the package does not choose one).
    fn options(&self, base: &GenerateOptions) -> GenerateOptions {
        crate::session::layer(base, &GenerateOptions { kv_mode: base.kv_mode, ..self.search.clone() })
    }
}

/// `POST /invocations`.
pub(super) async fn invocations(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    check_content_type(&headers)?;
    let bytes = read_body(&headers, body, state.config.body_limit).await.map_err(|e| e.in_dialect(Dialect::Mlflow))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad_request(format!("Invalid input. Ensure that input is a valid JSON formatted string. Error: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(bad_request(format!(
            "Invalid input. The input must be a JSON dictionary with exactly one of the input fields {INPUT_KEYS:?}."
        )));
    };
    let task = state.config.scoring.task;
    let request = rows_of(&fields, task)?;
    let options = state.config.scoring.options(&state.config.base);
    let model_name = match &state.config.scoring.model_name {
        Some(name) => name.clone(),
        None => state.queue.model().map(|m| m.facts.name.clone()).unwrap_or_default(),
    };
    let mut predictions = Vec::with_capacity(request.rows.len());
    let mut info: Option<GenerationInfo> = None;
    for row in &request.rows {
        let (prompt, chat) = read_prompt(row, task)?;
        let row_options = RowOptions::read(&request.params, row)?;
        let mut generate = row_options.apply(&options)?;
        let model = loaded_model(&state).map_err(|e| e.in_dialect(Dialect::Mlflow))?;
        let context_length = model.facts.context_length;
        let prompt_tokens = count_prompt_tokens(model.clone(), prompt.clone()).await.map_err(|e| e.in_dialect(Dialect::Mlflow))?;
        let limit = usize::try_from(row_options.limit(&options, prompt_tokens, context_length)).ok().filter(|limit| *limit > prompt_tokens);
        let Some(limit) = limit else {
            // No room after the prompt: the wrapper answers without generating.
            predictions.push(prediction(chat, &model_name, "", "length", prompt_tokens, 0));
            continue;
        };
        if prompt_tokens == 0 {
            return Err(ApiError::invalid("The prompt is empty.").in_dialect(Dialect::Mlflow));
        }
        generate.max_length = Some(limit);
        generate.max_tokens = None;
        let facts = &model.facts;
        generate::resolve(&generate, &facts.search, facts.default_max_length, facts.context_length)
            .map_err(|e| ApiError::invalid(e.to_string()).in_dialect(Dialect::Mlflow))?;
        // The prompt is counted and the limit leaves room after it: what `submit` checks.
        let submitted = enqueue(&state, prompt, generate, prompt_tokens).map_err(|e| e.in_dialect(Dialect::Mlflow))?;
        let generated = run_to_end(&state, submitted, arrived).await.map_err(|e| e.in_dialect(Dialect::Mlflow))?;
        info = Some(info.map_or(generated.info, |sum| sum.add(generated.info)));
        let completion = generated.completion;
        let finish = finish_reason(completion.finish_reason).unwrap_or("stop");
        let usage = &completion.usage;
        predictions.push(prediction(chat, &model_name, &completion.text, finish, usage.prompt_tokens, usage.completion_tokens));
    }
    let answer = if request.unwrapped { Value::Array(predictions) } else { json!({"predictions": predictions}) };
    let mut response = Json(answer).into_response();
    if let Some(info) = info {
        response.extensions_mut().insert(info);
    }
    Ok(response)
}

/// One row's answer: a `chat.completion` for a chat row, the text for a prompt row.
fn prediction(chat: bool, model_name: &str, text: &str, finish: &str, prompt_tokens: usize, completion_tokens: usize) -> Value {
    if !chat {
        return Value::String(text.to_owned());
    }
    let identity = ReplyIdentity::new(model_name);
    json!({
        "id": identity.id,
        "object": "chat.completion",
        "created": identity.created,
        "model": identity.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
}

/// JSON only, with no parameter but `charset=utf-8` (MLflow answers 415 otherwise).
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let text = value.to_str().unwrap_or_default().to_ascii_lowercase();
    let mut parts = text.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    let parameters_ok = parts.all(|p| p.is_empty() || p.replace(' ', "") == "charset=utf-8");
    if media == "application/json" && parameters_ok {
        return Ok(());
    }
    Err(ApiError::unsupported_media_type(format!(
        "This server accepts only application/json (charset utf-8) on /invocations; got '{text}'."
    ))
    .in_dialect(Dialect::Mlflow))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_content_is_accepted() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            check_content_type(&headers)
        };
        assert!(with("application/json").is_ok());
        assert!(with("application/json; charset=utf-8").is_ok());
        assert_eq!(with("application/json; charset=latin-1").unwrap_err().status, 415);
        assert_eq!(with("text/plain").unwrap_err().status, 415);
    }
}
