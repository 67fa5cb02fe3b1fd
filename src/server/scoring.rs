//! MLflow's scoring protocol (`POST /invocations`) as `mlflow models serve` answers it for the
//! packages `modeldesk create` writes (`../shared/docs/mlflow-format.md` §8; behaviour captured
//! from MLflow 3.17.2 serving such packages):
//!
//! * Bodies: the unified LLM form (a top-level `messages` or `prompt`; answered unwrapped, as a
//!   JSON array) or exactly one of `dataframe_split`, `dataframe_records`, `instances`, `inputs`
//!   (answered as `{"predictions": [...]}`); `params` are ignored, as MLflow ignores them for a
//!   signature without a params schema.
//! * Chat rows: `messages` (role required, content a string), and `temperature`, `max_tokens`,
//!   `top_p`, `top_k` applied to the package's search options as the wrapper does (they do not
//!   turn sampling on); other columns are dropped, as MLflow's schema enforcement drops them.
//!   Each row gives a `chat.completion`. Prompt rows: `prompt`, a string, giving the text.
//! * Deliberate differences: `instances` also work for chat rows (MLflow fails to convert them),
//!   and a prompt that fills the window is a 400 instead of an empty reply.

use std::{path::Path, sync::Arc, time::Instant};

use axum::{
    Json,
    body::Body,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::{
    AppState,
    chat::{run_to_end, submit},
    errors::{ApiError, Dialect},
    http::{GenerationInfo, read_body},
    sse::{ReplyIdentity, finish_reason},
};
use crate::{
    engine::{ChatMessage, GenerateOptions, Prompt},
    mlflow::{mlmodel::MlModel, yaml::Node},
};

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

    /// `search` laid over `base`.
    fn options(&self, base: &GenerateOptions) -> GenerateOptions {
        let s = &self.search;
        GenerateOptions {
            max_length: s.max_length.or(base.max_length),
            temperature: s.temperature.or(base.temperature),
            top_p: s.top_p.or(base.top_p),
            top_k: s.top_k.or(base.top_k),
            do_sample: s.do_sample.or(base.do_sample),
            repetition_penalty: s.repetition_penalty.or(base.repetition_penalty),
            ..base.clone()
        }
    }
}

const INPUT_KEYS: [&str; 4] = ["dataframe_split", "dataframe_records", "instances", "inputs"];

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message).in_dialect(Dialect::Mlflow)
}

/// A row that does not fit the model's inputs (MLflow's schema enforcement failures).
fn invalid_value(message: impl Into<String>) -> ApiError {
    ApiError { code: Some("INVALID_PARAMETER_VALUE"), ..bad_request(message) }
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
    let (rows, unwrapped) = rows_of(&fields, state.config.scoring.task)?;
    let options = state.config.scoring.options(&state.config.base);
    let model_name = match &state.config.scoring.model_name {
        Some(name) => name.clone(),
        None => state.queue.model().map(|m| m.facts.name.clone()).unwrap_or_default(),
    };
    let mut predictions = Vec::with_capacity(rows.len());
    let mut info: Option<GenerationInfo> = None;
    for row in &rows {
        let (prompt, row_options, chat) = read_row(row, state.config.scoring.task, &options)?;
        let submitted = submit(&state, prompt, row_options).await.map_err(|e| e.in_dialect(Dialect::Mlflow))?;
        let generated = run_to_end(&state, submitted, arrived).await.map_err(|e| e.in_dialect(Dialect::Mlflow))?;
        info = Some(info.map_or(generated.info, |sum| sum.add(generated.info)));
        let completion = generated.completion;
        predictions.push(if chat {
            let identity = ReplyIdentity::new(&model_name);
            json!({
                "id": identity.id,
                "object": "chat.completion",
                "created": identity.created,
                "model": identity.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text}, "finish_reason": finish_reason(completion.finish_reason).unwrap_or("stop")}],
                "usage": {
                    "prompt_tokens": completion.usage.prompt_tokens,
                    "completion_tokens": completion.usage.completion_tokens,
                    "total_tokens": completion.usage.total_tokens,
                },
            })
        } else {
            Value::String(completion.text)
        });
    }
    let answer = if unwrapped { Value::Array(predictions) } else { json!({"predictions": predictions}) };
    let mut response = Json(answer).into_response();
    if let Some(info) = info {
        response.extensions_mut().insert(info);
    }
    Ok(response)
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

/// The request's rows as records, and whether the answer is unwrapped (the unified LLM form).
fn rows_of(fields: &Map<String, Value>, task: ScoringTask) -> Result<(Vec<Map<String, Value>>, bool), ApiError> {
    if ["messages", "prompt", "input"].iter().any(|key| fields.contains_key(*key)) {
        let mut row = fields.clone();
        row.remove("params");
        return Ok((vec![row], true));
    }
    let present: Vec<&str> = INPUT_KEYS.iter().copied().filter(|key| fields.contains_key(*key)).collect();
    let [key] = present[..] else {
        return Err(bad_request(format!(
            "The input must be a JSON dictionary with exactly one of the input fields {INPUT_KEYS:?}. Received dictionary with input fields: {present:?}."
        )));
    };
    let value = &fields[key];
    let rows = match key {
        "dataframe_records" => records(value, key)?,
        "dataframe_split" => split(value)?,
        "instances" => list_rows(value, key)?,
        _ => match value {
            Value::Object(columns) if task == ScoringTask::Chat || columns.contains_key("messages") => vec![columns.clone()],
            Value::Object(columns) => columns_to_rows(columns)?,
            Value::Array(_) => list_rows(value, key)?,
            _ => return Err(invalid_value("'inputs' must be a dictionary of columns or a list of rows.")),
        },
    };
    Ok((rows, false))
}

fn records(value: &Value, key: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    let Value::Array(items) = value else { return Err(bad_request(format!("'{key}' must be a list of records."))) };
    items
        .iter()
        .map(|item| item.as_object().cloned().ok_or_else(|| invalid_value(format!("Every item of '{key}' must be a record (a JSON object)."))))
        .collect()
}

/// Records, or bare values taken as prompts.
fn list_rows(value: &Value, key: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    let Value::Array(items) = value else { return Err(bad_request(format!("'{key}' must be a list."))) };
    Ok(items
        .iter()
        .map(|item| match item {
            Value::Object(record) => record.clone(),
            other => Map::from_iter([("prompt".to_owned(), other.clone())]),
        })
        .collect())
}

fn split(value: &Value) -> Result<Vec<Map<String, Value>>, ApiError> {
    let columns: Vec<String> = value
        .get("columns")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().map(|n| n.as_str().map(str::to_owned)).collect())
        .ok_or_else(|| bad_request("'dataframe_split' needs 'columns', a list of names."))?;
    let data = value.get("data").and_then(Value::as_array).ok_or_else(|| bad_request("'dataframe_split' needs 'data', a list of rows."))?;
    data.iter()
        .map(|row| match row.as_array() {
            Some(cells) if cells.len() == columns.len() => Ok(columns.iter().cloned().zip(cells.iter().cloned()).collect()),
            _ => Err(bad_request(format!("Every row of 'dataframe_split.data' must have {} values.", columns.len()))),
        })
        .collect()
}

/// `{"prompt": ["a", "b"]}` → two rows; scalars make one row.
fn columns_to_rows(columns: &Map<String, Value>) -> Result<Vec<Map<String, Value>>, ApiError> {
    let length = columns.values().find_map(Value::as_array).map(Vec::len);
    let Some(length) = length else { return Ok(vec![columns.clone()]) };
    (0..length)
        .map(|index| {
            columns
                .iter()
                .map(|(name, column)| match column {
                    Value::Array(cells) => cells
                        .get(index)
                        .map(|cell| (name.clone(), cell.clone()))
                        .ok_or_else(|| invalid_value("All columns of 'inputs' must have the same length.")),
                    scalar => Ok((name.clone(), scalar.clone())),
                })
                .collect()
        })
        .collect()
}

/// A row's prompt and options; `true` when it is a chat row.
fn read_row(row: &Map<String, Value>, task: ScoringTask, base: &GenerateOptions) -> Result<(Prompt, GenerateOptions, bool), ApiError> {
    let chat = match task {
        ScoringTask::Chat => true,
        ScoringTask::Prompt => false,
        ScoringTask::Auto => row.contains_key("messages"),
    };
    if !chat {
        return match row.get("prompt") {
            Some(Value::String(text)) => Ok((Prompt::Raw(text.clone()), base.clone(), false)),
            Some(_) => Err(invalid_value("Column 'prompt' must be a string.")),
            None => Err(invalid_value("Model is missing inputs ['prompt'].")),
        };
    }
    let Some(Value::Array(items)) = row.get("messages") else {
        return Err(invalid_value("Column 'messages' must be a list of messages (objects with 'role' and 'content')."));
    };
    let messages = items
        .iter()
        .map(|item| {
            let role = item.get("role").and_then(Value::as_str).ok_or_else(|| invalid_value("Every message needs 'role', a string."))?;
            let content = match item.get("content") {
                None | Some(Value::Null) => "",
                Some(Value::String(text)) => text.as_str(),
                Some(_) => return Err(invalid_value("A message's 'content' must be a string.")),
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let mut options = base.clone();
    let number = |name: &str| match row.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or_else(|| invalid_value(format!("Column '{name}' must be a number."))),
    };
    let integer = |name: &str| match row.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| invalid_value(format!("Column '{name}' must be a non-negative integer."))),
    };
    if let Some(t) = number("temperature")? {
        options.temperature = Some(t as f32);
    }
    if let Some(p) = number("top_p")? {
        options.top_p = Some(p as f32);
    }
    if let Some(k) = integer("top_k")? {
        options.top_k = Some(k);
    }
    if let Some(tokens) = integer("max_tokens")? {
        options.max_tokens = Some(tokens);
    }
    Ok((Prompt::Chat(messages), options, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn every_wrapper_gives_the_same_rows() {
        let row = json!({"prompt": "a"});
        let bodies = [
            json!({"dataframe_records": [{"prompt": "a"}, {"prompt": "b"}]}),
            json!({"dataframe_split": {"columns": ["prompt"], "data": [["a"], ["b"]]}}),
            json!({"instances": ["a", "b"]}),
            json!({"instances": [{"prompt": "a"}, {"prompt": "b"}]}),
            json!({"inputs": {"prompt": ["a", "b"]}}),
            json!({"inputs": ["a", "b"], "params": {"max_tokens": 3}}),
        ];
        for body in &bodies {
            let (rows, unwrapped) = rows_of(&object(body.clone()), ScoringTask::Prompt).unwrap();
            assert!(!unwrapped, "{body}");
            assert_eq!(rows.len(), 2, "{body}");
            assert_eq!(Value::Object(rows[0].clone()), row, "{body}");
        }
        assert_eq!(bodies.len(), 6);
    }

    #[test]
    fn the_unified_form_is_one_unwrapped_row_and_chat_inputs_are_one_row() {
        let (rows, unwrapped) = rows_of(&object(json!({"messages": [], "max_tokens": 3})), ScoringTask::Chat).unwrap();
        assert!(unwrapped);
        assert_eq!(rows.len(), 1);
        let (rows, _) = rows_of(&object(json!({"inputs": {"messages": [{"role": "user", "content": "x"}]}})), ScoringTask::Chat).unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn exactly_one_input_key_is_required() {
        for body in [json!({"foo": 1}), json!({"instances": [], "inputs": []})] {
            let error = rows_of(&object(body.clone()), ScoringTask::Auto).unwrap_err();
            assert_eq!(error.status, 400, "{body}");
        }
    }

    #[test]
    fn chat_rows_take_sampling_values_without_turning_sampling_on() {
        let row = object(json!({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.5, "max_tokens": 4, "do_sample": true}));
        let (prompt, options, chat) = read_row(&row, ScoringTask::Chat, &GenerateOptions::default()).unwrap();
        assert!(chat);
        assert_eq!(prompt, Prompt::Chat(vec![ChatMessage::new("user", "hi")]));
        assert_eq!((options.temperature, options.max_tokens, options.do_sample), (Some(0.5), Some(4), None));
        let bad = object(json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2.5}));
        assert!(read_row(&bad, ScoringTask::Chat, &GenerateOptions::default()).is_err());
        let no_role = object(json!({"messages": [{"content": "hi"}]}));
        assert!(read_row(&no_role, ScoringTask::Chat, &GenerateOptions::default()).is_err());
    }

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
